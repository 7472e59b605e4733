//! Reload on file change (`watch: true`, `run --watch`) with the real binary: a Kubernetes
//! Secret volume update done exactly as kubelet does it (new timestamped directory,
//! `..data_tmp` symlink renamed over `..data`) puts the new server certificate in service;
//! an editor's write-then-rename of gateway.yaml takes effect, a broken one keeps the
//! running configuration, and the next good one is applied.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// How long a change may take to be served: 500 ms of quiet plus the reload, with room.
const PATIENCE: Duration = Duration::from_secs(10);

/// Writes `server`'s certificate and key into `volume/{timestamp}/` as kubelet writes a
/// Secret's payload.
fn write_payload(volume: &Path, timestamp: &str, server: &Issued) {
    let payload = volume.join(timestamp);
    std::fs::create_dir(&payload).unwrap();
    std::fs::write(payload.join("tls.crt"), server.cert_pem()).unwrap();
    std::fs::write(payload.join("tls.key"), server.key_pem()).unwrap();
}

/// The DER of the certificate the gateway presents on a new connection.
async fn served_certificate(pki: &Pki, gw: &Gateway, client: &Issued) -> Vec<u8> {
    let tls = tls_connect(pki, gw, client).await;
    let (_, connection) = tls.get_ref();
    connection.peer_certificates().unwrap()[0].to_vec()
}

async fn metrics(admin: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of one sample line (`name{labels} value`), exact label text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn reloads(admin: u16, result: &str) -> f64 {
    let series = format!("certgate_config_reloads_total{{result=\"{result}\"}}");
    sample(&metrics(admin).await, &series).unwrap_or(0.0)
}

#[tokio::test]
async fn kubernetes_secret_volume_update_serves_the_new_certificate() {
    let pki = Pki::new();
    let client = client_cert("alice", &pki.ca);
    let (upstream, _seen) = start_upstream();
    let admin = free_port();

    // The volume as kubelet first lays it out.
    let volume = pki.path("secret");
    std::fs::create_dir(&volume).unwrap();
    let first = "..2026_12_03_08_00_00.123456789";
    write_payload(&volume, first, &pki.server);
    symlink(first, volume.join("..data")).unwrap();
    symlink("..data/tls.crt", volume.join("tls.crt")).unwrap();
    symlink("..data/tls.key", volume.join("tls.key")).unwrap();

    let dir = pki.dir.path().display().to_string();
    let yaml = base_config(&pki, upstream, &format!("      ca: {dir}/ca.crt\n"), "")
        .replace(
            &format!("{dir}/server.crt"),
            &format!("{dir}/secret/tls.crt"),
        )
        .replace(
            &format!("{dir}/server.key"),
            &format!("{dir}/secret/tls.key"),
        );
    let yaml = format!(
        "watch: true\nadmin: {{ listen: 127.0.0.1:{admin} }}\nlog: {{ access: off }}\n{yaml}"
    );
    let gw = start_gateway(&pki, &yaml);
    let old = pki.server.cert.der().to_vec();
    assert_eq!(served_certificate(&pki, &gw, &client).await, old);

    // The update, step by step as kubelet's atomic writer does it.
    let renewed = server_cert(&pki.ca);
    let new = renewed.cert.der().to_vec();
    assert_ne!(new, old);
    let second = "..2026_12_03_09_00_00.987654321";
    write_payload(&volume, second, &renewed);
    symlink(second, volume.join("..data_tmp")).unwrap();
    std::fs::rename(volume.join("..data_tmp"), volume.join("..data")).unwrap();
    std::fs::remove_dir_all(volume.join(first)).unwrap();

    let deadline = Instant::now() + PATIENCE;
    while served_certificate(&pki, &gw, &client).await != new {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served within {PATIENCE:?}:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Four steps, one reload.
    assert_eq!(reloads(admin, "success").await, 1.0, "{}", gw.log());
    assert_eq!(reloads(admin, "failure").await, 0.0, "{}", gw.log());
    assert!(
        gw.log().contains("configuration changed on disk (") && gw.log().contains("secret/tls.crt"),
        "{}",
        gw.log()
    );
}

/// A config whose only route tags requests with `X-Config: {tag}`.
fn tagged_config(pki: &Pki, upstream: std::net::SocketAddr, admin: u16, tag: &str) -> String {
    format!(
        r#"admin: {{ listen: 127.0.0.1:{admin} }}
log: {{ access: off }}
servers:
  - name: api
    listen: ["{{listen}}"]
    tls: {{ cert: {dir}/server.crt, key: {dir}/server.key }}
    client_auth: {{ ca: {dir}/ca.crt }}
    routes:
      - match: {{ path_prefix: / }}
        upstream: app
        headers: {{ X-Config: {tag} }}
upstreams:
  app:
    servers: ["{upstream}"]
"#,
        dir = pki.dir.path().display()
    )
}

/// Writes gateway.yaml as editors do: a temporary file renamed over the original.
fn editor_write(pki: &Pki, gw: &Gateway, yaml: &str) {
    let tmp = pki.write(
        "gateway.yaml.tmp",
        &yaml.replace("{listen}", &gw.addr.to_string()),
    );
    std::fs::rename(tmp, pki.path("gateway.yaml")).unwrap();
}

/// Sends requests until the upstream sees `X-Config: {tag}`.
async fn wait_for_tag(gw: &Gateway, http: &reqwest::Client, seen: &Seen, tag: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = http.get(gw.url("/")).send().await.unwrap().status();
        assert_eq!(status, 200);
        if seen.header("x-config").as_deref() == Some(tag) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "X-Config: {tag} not seen within {PATIENCE:?} (last: {:?}):\n{}",
            seen.header("x-config"),
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn editor_writes_apply_and_a_broken_one_keeps_the_running_config() {
    let pki = Pki::new();
    let client = client_cert("alice", &pki.ca);
    let (upstream, seen) = start_upstream();
    let admin = free_port();
    // `--watch` on the command line; the file does not say `watch`.
    let gw = start_gateway_with_args(
        &pki,
        &tagged_config(&pki, upstream, admin, "one"),
        &["--watch"],
    );
    let http = common::client(&pki, &gw, Some((&[&client], &client)), false);
    wait_for_tag(&gw, &http, &seen, "one").await;

    editor_write(&pki, &gw, &tagged_config(&pki, upstream, admin, "two"));
    wait_for_tag(&gw, &http, &seen, "two").await;
    assert_eq!(reloads(admin, "success").await, 1.0, "{}", gw.log());

    // Half-written: invalid YAML. Counted as a failure, logged, the old config serves on.
    editor_write(
        &pki,
        &gw,
        "servers:\n  - name: api\n    listen: [\"{listen}\"\n",
    );
    let deadline = Instant::now() + PATIENCE;
    while reloads(admin, "failure").await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the broken write was not refused:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gw.log()
            .contains("reload failed, keeping the running configuration"),
        "{}",
        gw.log()
    );
    wait_for_tag(&gw, &http, &seen, "two").await;

    // The next change is tried again.
    editor_write(&pki, &gw, &tagged_config(&pki, upstream, admin, "three"));
    wait_for_tag(&gw, &http, &seen, "three").await;
    assert_eq!(reloads(admin, "success").await, 2.0, "{}", gw.log());
    assert_eq!(reloads(admin, "failure").await, 1.0, "{}", gw.log());
}
