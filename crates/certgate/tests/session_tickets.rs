//! `tls.session_ticket_keys` on two real certgate processes sharing one PKI, as replicas
//! behind a load balancer: a TLS 1.3 session ticket issued by one resumes on the other
//! when both read the same key file, keeps resuming while a rotation keeps the old key
//! second, and is refused (full handshake) once the key is rotated out by a reload.
//! `certgate certs ticket-key` writes the key files.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const VERIFY_ON: &str = "      verify: on\n      ca: {dir}/ca.crt\n";

/// `base_config` with `session_ticket_keys` (none when `keys` is empty).
fn config(pki: &Pki, upstream: std::net::SocketAddr, keys: &[&Path]) -> String {
    let dir = pki.dir.path().display().to_string();
    let key_line = format!("      key: {dir}/server.key\n");
    let tickets = if keys.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = keys.iter().map(|k| path_str(k)).collect();
        format!("      session_ticket_keys: [{}]\n", list.join(", "))
    };
    base_config(pki, upstream, &VERIFY_ON.replace("{dir}", &dir), "")
        .replace(&key_line, &format!("{key_line}{tickets}"))
}

/// `certgate certs ticket-key --out <pki>/<name>`.
fn new_key(pki: &Pki, name: &str) -> PathBuf {
    let path = pki.path(name);
    let out = Command::new(bin())
        .args(["certs", "ticket-key", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(&path).unwrap().len(), 80);
    path
}

/// A fresh client (TLS 1.3 only) presenting `alice`, with its own session store: every
/// connection made with it offers the newest ticket it holds for `localhost`, whichever
/// gateway issued it.
fn fresh_client(pki: &Pki, alice: &Issued) -> Arc<ClientConfig> {
    let mut config = tls_client_config(pki, alice, &[&rustls::version::TLS13]);
    config.resumption = Resumption::in_memory_sessions(32);
    Arc::new(config)
}

/// One connection and one request: how the handshake went.
async fn handshake(gw: &Gateway, config: &Arc<ClientConfig>) -> HandshakeKind {
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // Reading to the end also takes in the session tickets sent after the handshake.
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response)).await;
    let status = String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(status, "HTTP/1.1 200 OK", "{}", gw.log());
    tls.get_ref().1.handshake_kind().unwrap()
}

/// Points the shared config file at `gw` with `yaml`, runs `certgate reload` and waits for
/// the gateway to log the new generation.
async fn reload(pki: &Pki, gw: &Gateway, yaml: &str) {
    let before = gw.log().matches("configuration reloaded").count();
    let config = pki.write(
        "gateway.yaml",
        &yaml.replace("{listen}", &gw.addr.to_string()),
    );
    let out = Command::new(bin())
        .args(["-c", config.to_str().unwrap(), "reload", "--pid-file"])
        .arg(pki.path(&format!("certgate-{}.pid", gw.addr.port())))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.log().matches("configuration reloaded").count() == before {
        assert!(Instant::now() < deadline, "no reload:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_ticket_resumes_on_another_process_with_the_same_key_file_until_rotated_out() {
    let pki = Pki::new();
    let alice = client_cert("alice", &pki.ca);
    let (upstream, seen) = start_upstream();
    let shared = new_key(&pki, "shared.key");
    let a = start_gateway(&pki, &config(&pki, upstream, &[&shared]));
    let b = start_gateway(&pki, &config(&pki, upstream, &[&shared]));

    // Issued by A, resumed on B.
    let client = fresh_client(&pki, &alice);
    assert_eq!(handshake(&a, &client).await, HandshakeKind::Full);
    assert_eq!(handshake(&b, &client).await, HandshakeKind::Resumed);
    // And the other way round.
    let client = fresh_client(&pki, &alice);
    assert_eq!(handshake(&b, &client).await, HandshakeKind::Full);
    assert_eq!(handshake(&a, &client).await, HandshakeKind::Resumed);

    // Rotation, step 1 on B: a new key seals, the shared one still opens.
    let new = new_key(&pki, "new.key");
    reload(&pki, &b, &config(&pki, upstream, &[&new, &shared])).await;
    let client = fresh_client(&pki, &alice);
    assert_eq!(handshake(&a, &client).await, HandshakeKind::Full);
    assert_eq!(
        handshake(&b, &client).await,
        HandshakeKind::Resumed,
        "the second key opens A's ticket"
    );
    let client = fresh_client(&pki, &alice);
    assert_eq!(handshake(&b, &client).await, HandshakeKind::Full);
    assert_eq!(
        handshake(&a, &client).await,
        HandshakeKind::Full,
        "B seals with its first key, which A does not have"
    );

    // Step 2 on B: the shared key rotated out; A's tickets are refused.
    reload(&pki, &b, &config(&pki, upstream, &[&new])).await;
    let client = fresh_client(&pki, &alice);
    assert_eq!(handshake(&a, &client).await, HandshakeKind::Full);
    assert_eq!(
        handshake(&b, &client).await,
        HandshakeKind::Full,
        "a ticket sealed with a key B no longer has"
    );
    assert_eq!(
        handshake(&b, &client).await,
        HandshakeKind::Resumed,
        "B's own tickets still resume"
    );
    assert_eq!(seen.count(), 11);

    // Key material never reaches the logs.
    for gw in [&a, &b] {
        let log = gw.log();
        for key in [&shared, &new] {
            let bytes = std::fs::read(key).unwrap();
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            assert!(!log.contains(&hex[..32]), "{log}");
            assert!(!log.contains(&format!("{:?}", &bytes[..16])), "{log}");
        }
    }
}

#[tokio::test]
async fn without_ticket_keys_sessions_resume_only_where_they_started() {
    let pki = Pki::new();
    let alice = client_cert("alice", &pki.ca);
    let (upstream, _seen) = start_upstream();
    let a = start_gateway(&pki, &config(&pki, upstream, &[]));
    let b = start_gateway(&pki, &config(&pki, upstream, &[]));
    let client = fresh_client(&pki, &alice);
    assert_eq!(handshake(&a, &client).await, HandshakeKind::Full);
    assert_eq!(handshake(&b, &client).await, HandshakeKind::Full);
    assert_eq!(
        handshake(&a, &client).await,
        HandshakeKind::Full,
        "B's ticket"
    );
    assert_eq!(handshake(&a, &client).await, HandshakeKind::Resumed);
}

/// `certgate check` output for `yaml` (with a fixed listen address).
fn check(pki: &Pki, yaml: &str) -> (bool, String) {
    let path = pki.write("check.yaml", &yaml.replace("{listen}", "127.0.0.1:18997"));
    let out = Command::new(bin())
        .args(["-c", path.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn key_files_are_checked_with_their_location() {
    let pki = Pki::new();
    let upstream = "127.0.0.1:1".parse().unwrap();
    let good = new_key(&pki, "t1.key");
    let short = pki.path("t2.key");
    std::fs::write(&short, [7u8; 48]).unwrap();
    let (ok, stderr) = check(&pki, &config(&pki, upstream, &[&good, &short]));
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "servers[0].tls.session_ticket_keys[1]: {}: expected 80 bytes, found 48",
            short.display()
        )),
        "{stderr}"
    );

    let missing = pki.path("missing.key");
    let (ok, stderr) = check(&pki, &config(&pki, upstream, &[&missing]));
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "servers[0].tls.session_ticket_keys[0]: cannot read {}",
            missing.display()
        )),
        "{stderr}"
    );

    let (ok, stderr) = check(&pki, &config(&pki, upstream, &[&good, &good]));
    assert!(!ok);
    assert!(
        stderr.contains("servers[0].tls.session_ticket_keys[1]: ")
            && stderr.contains("same key name (first 16 bytes) as session_ticket_keys[0]"),
        "{stderr}"
    );

    let (ok, stderr) = check(&pki, &config(&pki, upstream, &[&good]));
    assert!(ok, "{stderr}");

    // `certs ticket-key` refuses to replace a key without --force.
    let out = Command::new(bin())
        .args(["certs", "ticket-key", "--out"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let before = std::fs::read(&good).unwrap();
    let out = Command::new(bin())
        .args(["certs", "ticket-key", "--force", "--out"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_ne!(std::fs::read(&good).unwrap(), before);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&good).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn servers_sharing_an_address_must_agree_on_ticket_keys() {
    let pki = Pki::new();
    let key = new_key(&pki, "t.key");
    let dir = pki.dir.path().display();
    let yaml = format!(
        r#"servers:
  - name: api
    listen: ["{{listen}}"]
    tls: {{ cert: {dir}/server.crt, key: {dir}/server.key, session_ticket_keys: [{key}] }}
    client_auth: {{ verify: off }}
    routes: [{{ match: {{ path_prefix: / }}, upstream: app }}]
  - name: admin
    listen: ["{{listen}}"]
    server_names: [localhost]
    tls: {{ cert: {dir}/server.crt, key: {dir}/server.key }}
    client_auth: {{ verify: off }}
    routes: [{{ match: {{ path_prefix: / }}, upstream: app }}]
upstreams:
  app: {{ servers: ["127.0.0.1:1"] }}
"#,
        key = key.display()
    );
    let (ok, stderr) = check(&pki, &yaml);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("servers[1].tls.session_ticket_keys: differs from server `api`, which also listens on 127.0.0.1:18997"),
        "{stderr}"
    );
}
