//! The listener's TLS settings on the real binary, observed by a rustls client:
//! `tls.session_resumption` (resumed or full handshakes), `tls.protocols` (which versions
//! are offered), and both applied by a reload to new connections.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind, ProtocolVersion, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const VERIFY_ON: &str = "      verify: on\n      ca: {dir}/ca.crt\n";

/// `base_config` with `tls_extra` added under `tls:`.
fn config_with_tls(pki: &Pki, upstream: std::net::SocketAddr, tls_extra: &str) -> String {
    let dir = pki.dir.path().display().to_string();
    let key_line = format!("      key: {dir}/server.key\n");
    base_config(pki, upstream, &VERIFY_ON.replace("{dir}", &dir), "")
        .replace(&key_line, &format!("{key_line}{tls_extra}"))
}

/// A client presenting `alice`, offering `versions`, with its own session store: a second
/// connection made with the same config offers the session of the first.
fn client_config(
    pki: &Pki,
    alice: &Issued,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut config = tls_client_config(pki, alice, versions);
    config.resumption = Resumption::in_memory_sessions(32);
    Arc::new(config)
}

/// One connection and one request; the handshake kind, the version and the status line.
async fn request(
    gw: &Gateway,
    config: &Arc<ClientConfig>,
) -> std::io::Result<(HandshakeKind, ProtocolVersion, String)> {
    let tcp = tokio::net::TcpStream::connect(gw.addr).await?;
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    // Reading to the end also takes in the TLS 1.3 session tickets sent after the handshake.
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response)).await;
    let (_, conn) = tls.get_ref();
    let status = String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    Ok((
        conn.handshake_kind().unwrap(),
        conn.protocol_version().unwrap(),
        status,
    ))
}

#[tokio::test]
async fn session_resumption_can_be_turned_off() {
    let pki = Pki::new();
    let alice = client_cert("alice", &pki.ca);
    let (upstream, seen) = start_upstream();
    for (version, name) in [
        (&rustls::version::TLS13, "1.3"),
        (&rustls::version::TLS12, "1.2"),
    ] {
        // Default: the second connection resumes the first one's session.
        let gw = start_gateway(&pki, &config_with_tls(&pki, upstream, ""));
        let config = client_config(&pki, &alice, &[version]);
        let (first, _, status) = request(&gw, &config).await.unwrap();
        assert_eq!(first, HandshakeKind::Full);
        assert_eq!(status, "HTTP/1.1 200 OK");
        let (second, _, status) = request(&gw, &config).await.unwrap();
        assert_eq!(second, HandshakeKind::Resumed, "TLS {name}, resumption on");
        assert_eq!(status, "HTTP/1.1 200 OK");
        drop(gw);

        // `session_resumption: false`: every handshake is a full one.
        let gw = start_gateway(
            &pki,
            &config_with_tls(&pki, upstream, "      session_resumption: false\n"),
        );
        let config = client_config(&pki, &alice, &[version]);
        for attempt in 0..3 {
            let (kind, _, status) = request(&gw, &config).await.unwrap();
            assert_eq!(kind, HandshakeKind::Full, "TLS {name}, attempt {attempt}");
            assert_eq!(status, "HTTP/1.1 200 OK", "{}", gw.log());
        }
    }
    assert_eq!(seen.count(), 10);
}

#[tokio::test]
async fn protocols_limit_the_versions_offered() {
    let pki = Pki::new();
    let alice = client_cert("alice", &pki.ca);
    let (upstream, seen) = start_upstream();
    let tls12_only = client_config(&pki, &alice, &[&rustls::version::TLS12]);
    let tls13_only = client_config(&pki, &alice, &[&rustls::version::TLS13]);
    let either = client_config(&pki, &alice, rustls::ALL_VERSIONS);

    let gw = start_gateway(
        &pki,
        &config_with_tls(&pki, upstream, "      protocols: [TLSv1.3]\n"),
    );
    assert!(
        request(&gw, &tls12_only).await.is_err(),
        "a TLS 1.2 client must be refused"
    );
    let (_, version, status) = request(&gw, &tls13_only).await.unwrap();
    assert_eq!(
        (version, status.as_str()),
        (ProtocolVersion::TLSv1_3, "HTTP/1.1 200 OK")
    );
    drop(gw);

    let gw = start_gateway(
        &pki,
        &config_with_tls(&pki, upstream, "      protocols: [TLSv1.2]\n"),
    );
    assert!(
        request(&gw, &tls13_only).await.is_err(),
        "a TLS 1.3 client must be refused"
    );
    let (_, version, status) = request(&gw, &either).await.unwrap();
    assert_eq!(
        (version, status.as_str()),
        (ProtocolVersion::TLSv1_2, "HTTP/1.1 200 OK")
    );
    assert_eq!(seen.count(), 2, "refused handshakes forward nothing");
}

#[tokio::test]
async fn reload_applies_new_tls_settings_to_new_connections() {
    let pki = Pki::new();
    let alice = client_cert("alice", &pki.ca);
    let (upstream, _seen) = start_upstream();
    let tls12_only = client_config(&pki, &alice, &[&rustls::version::TLS12]);
    let gw = start_gateway(&pki, &config_with_tls(&pki, upstream, ""));
    let (_, version, _) = request(&gw, &tls12_only).await.unwrap();
    assert_eq!(version, ProtocolVersion::TLSv1_2);

    let yaml = config_with_tls(&pki, upstream, "      protocols: [TLSv1.3]\n")
        .replace("{listen}", &gw.addr.to_string());
    let config = pki.write("gateway.yaml", &yaml);
    let out = Command::new(bin())
        .args(["-c", config.to_str().unwrap(), "reload", "--pid-file"])
        .arg(pki.path(&format!("certgate-{}.pid", gw.addr.port())))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while request(&gw, &tls12_only).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "TLS 1.2 still accepted after the reload:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tls13_only = client_config(&pki, &alice, &[&rustls::version::TLS13]);
    let (_, version, status) = request(&gw, &tls13_only).await.unwrap();
    assert_eq!(
        (version, status.as_str()),
        (ProtocolVersion::TLSv1_3, "HTTP/1.1 200 OK")
    );
}

#[test]
fn servers_sharing_an_address_must_agree_on_tls_versions() {
    let pki = Pki::new();
    let dir = pki.dir.path().display();
    let yaml = format!(
        r#"servers:
  - name: api
    listen: ["127.0.0.1:18999"]
    tls: {{ cert: {dir}/server.crt, key: {dir}/server.key }}
    client_auth: {{ verify: off }}
    routes: [{{ match: {{ path_prefix: / }}, upstream: app }}]
  - name: admin
    listen: ["127.0.0.1:18999"]
    server_names: [localhost]
    tls: {{ cert: {dir}/server.crt, key: {dir}/server.key, protocols: [TLSv1.3] }}
    client_auth: {{ verify: off }}
    routes: [{{ match: {{ path_prefix: / }}, upstream: app }}]
upstreams:
  app: {{ servers: ["127.0.0.1:1"] }}
"#
    );
    let config = pki.write("shared.yaml", &yaml);
    let out = Command::new(bin())
        .args(["-c", config.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("servers[1].tls.protocols: differs from server `api`, which also listens on 127.0.0.1:18999"),
        "{stderr}"
    );
}
