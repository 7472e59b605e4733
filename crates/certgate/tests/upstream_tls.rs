//! TLS to the upstream (`protocol: https | grpcs` with a `tls:` block): the real
//! `certgate` binary in front of a real hyper server over rustls that requires client
//! certificates. Covers the configured client certificate reaching the upstream, h2 by
//! ALPN, and the failure modes: unknown CA (with and without `sni`), wrong name,
//! expired certificate, no client certificate. Each failure is a 502 with the reason in
//! the log, and nothing reaches the upstream's handler.

mod common;

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair, SanType};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const VERIFY_ON: &str = "      verify: on\n      ca: {dir}/ca.crt\n";

/// What the TLS upstream saw: requests that reached the handler, the client certificate
/// of the last connection, the HTTP version of the last request.
#[derive(Default)]
struct TlsSeen {
    requests: AtomicUsize,
    client_cert: Mutex<Option<Vec<u8>>>,
    version: Mutex<Option<hyper::Version>>,
    s_dn: Mutex<Option<String>>,
}

/// A hyper server (h2 and HTTP/1.1 by ALPN) over rustls that requires a client
/// certificate issued by `client_ca`.
fn start_tls_upstream(server: &Issued, client_ca: &Issued) -> (SocketAddr, Arc<TlsSeen>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca.cert.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server.cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key.serialize_der())),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let seen = Arc::new(TlsSeen::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let peer: Option<Vec<u8>> = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.as_ref().to_vec());
                    *seen.client_cert.lock().unwrap() = peer;
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let seen = seen.clone();
                        async move {
                            seen.requests.fetch_add(1, Ordering::SeqCst);
                            *seen.version.lock().unwrap() = Some(req.version());
                            *seen.s_dn.lock().unwrap() = req
                                .headers()
                                .get("x-ssl-client-s-dn")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                                "tls upstream ok",
                            ))))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    });
    (addr, seen)
}

fn expired_server_cert(issuer: &Issued) -> Issued {
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params.distinguished_name = dn("localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer.cert, &issuer.key).unwrap();
    Issued { cert, key }
}

/// gateway.yaml with one upstream `up` of `protocol` at `addr` and the given `tls:` lines.
fn config(pki: &Pki, protocol: &str, addr: SocketAddr, tls: &str) -> String {
    let dir = pki.dir.path().display().to_string();
    format!(
        r#"servers:
  - name: api
    listen: ["{{listen}}"]
    tls:
      cert: {dir}/server.crt
      key: {dir}/server.key
    client_auth:
{auth}
    routes:
      - match: {{ path_prefix: / }}
        upstream: up
        timeouts: {{ connect: 2s, read: 5s, send: 5s }}
upstreams:
  up:
    servers: ["{addr}"]
    protocol: {protocol}
    tls:
{tls}"#,
        auth = VERIFY_ON.replace("{dir}", &dir),
        tls = tls.replace("{dir}", &dir),
    )
}

/// Writes the gateway's upstream client certificate and returns the `cert:`/`key:` lines.
fn upstream_identity(pki: &Pki, id: &Issued) -> &'static str {
    pki.write("upstream-client.crt", &id.cert_pem());
    pki.write("upstream-client.key", &id.key_pem());
    "      cert: {dir}/upstream-client.crt\n      key: {dir}/upstream-client.key\n"
}

async fn get(pki: &Pki, gw: &Gateway) -> (u16, String) {
    let alice = client_cert("alice", &pki.ca);
    let response = client(pki, gw, Some((&[&alice], &alice)), false)
        .get(gw.url("/via-tls"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Waits a little for `needle` to show up in the gateway log (log lines are flushed
/// asynchronously to the response).
fn log_contains(gw: &Gateway, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if gw.log().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[tokio::test]
async fn https_upstream_gets_the_configured_client_certificate() {
    let pki = Pki::new();
    let upstream_ca = ca("Upstream CA");
    let upstream_server = server_cert(&upstream_ca);
    let gateway_id = client_cert("certgate-gateway", &upstream_ca);
    let (addr, seen) = start_tls_upstream(&upstream_server, &upstream_ca);
    pki.write("upstream-ca.crt", &upstream_ca.cert_pem());
    let identity = upstream_identity(&pki, &gateway_id);

    // No `sni`: the certificate is still verified, against the address (IP SAN).
    for (protocol, sni, version) in [
        ("https", "", hyper::Version::HTTP_2),
        ("https", "      sni: localhost\n", hyper::Version::HTTP_2),
        ("grpcs", "      sni: localhost\n", hyper::Version::HTTP_2),
    ] {
        let tls = format!("      trusted_ca: {{dir}}/upstream-ca.crt\n{sni}{identity}");
        let gw = start_gateway(&pki, &config(&pki, protocol, addr, &tls));
        let before = seen.requests.load(Ordering::SeqCst);
        let (status, body) = get(&pki, &gw).await;
        assert_eq!(status, 200, "{protocol} {sni}: {body}\n{}", gw.log());
        assert_eq!(body, "tls upstream ok");
        assert_eq!(seen.requests.load(Ordering::SeqCst), before + 1);
        assert_eq!(
            seen.client_cert.lock().unwrap().as_deref(),
            Some(gateway_id.cert.der().as_ref()),
            "the upstream must see the configured client certificate"
        );
        assert_eq!(*seen.version.lock().unwrap(), Some(version));
        assert_eq!(
            seen.s_dn.lock().unwrap().as_deref(),
            Some("CN=alice,O=certgate tests")
        );
    }
}

#[tokio::test]
async fn upstream_tls_failures_are_502_with_the_reason_logged() {
    let pki = Pki::new();
    let upstream_ca = ca("Upstream CA");
    let other_ca = ca("Some Other CA");
    let gateway_id = client_cert("certgate-gateway", &upstream_ca);
    let (good, good_seen) = start_tls_upstream(&server_cert(&upstream_ca), &upstream_ca);
    let (expired, expired_seen) =
        start_tls_upstream(&expired_server_cert(&upstream_ca), &upstream_ca);
    pki.write("upstream-ca.crt", &upstream_ca.cert_pem());
    pki.write("other-ca.crt", &other_ca.cert_pem());
    let identity = upstream_identity(&pki, &gateway_id);

    let cases = [
        (
            "unknown CA, no sni",
            good,
            format!("      trusted_ca: {{dir}}/other-ca.crt\n{identity}"),
            "unknown CA",
        ),
        (
            "unknown CA, sni",
            good,
            format!("      trusted_ca: {{dir}}/other-ca.crt\n      sni: localhost\n{identity}"),
            "unknown CA",
        ),
        (
            "wrong name",
            good,
            format!(
                "      trusted_ca: {{dir}}/upstream-ca.crt\n      sni: backend.example\n{identity}"
            ),
            "name mismatch",
        ),
        (
            "expired",
            expired,
            format!("      trusted_ca: {{dir}}/upstream-ca.crt\n{identity}"),
            "certificate has expired",
        ),
        (
            "no client certificate",
            good,
            "      trusted_ca: {dir}/upstream-ca.crt\n".to_string(),
            "client certificate",
        ),
    ];
    for (name, addr, tls, reason) in cases {
        let gw = start_gateway(&pki, &config(&pki, "https", addr, &tls));
        let (status, body) = get(&pki, &gw).await;
        assert_eq!(status, 502, "{name}: {body}\n{}", gw.log());
        assert!(
            body.contains("<title>502 Bad Gateway</title>"),
            "{name}: {body}"
        );
        assert!(
            log_contains(&gw, reason),
            "{name}: log should say {reason:?}:\n{}",
            gw.log()
        );
    }
    assert_eq!(good_seen.requests.load(Ordering::SeqCst), 0);
    assert_eq!(expired_seen.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn verify_false_accepts_any_upstream_certificate() {
    let pki = Pki::new();
    let upstream_ca = ca("Upstream CA");
    let gateway_id = client_cert("certgate-gateway", &upstream_ca);
    let (addr, seen) = start_tls_upstream(&server_cert(&upstream_ca), &upstream_ca);
    let identity = upstream_identity(&pki, &gateway_id);
    // The system roots do not know the test CA: only `verify: false` lets this through.
    let tls = format!("      verify: false\n{identity}");
    let gw = start_gateway(&pki, &config(&pki, "https", addr, &tls));
    let (status, body) = get(&pki, &gw).await;
    assert_eq!(status, 200, "{body}\n{}", gw.log());
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);

    let tls = identity.to_string();
    let gw = start_gateway(&pki, &config(&pki, "https", addr, &tls));
    let (status, _) = get(&pki, &gw).await;
    assert_eq!(status, 502, "verify defaults to on:\n{}", gw.log());
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
}

#[test]
fn check_reports_unreadable_upstream_tls_files() {
    let pki = Pki::new();
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let tls = "      trusted_ca: {dir}/missing-ca.crt\n      cert: {dir}/server.crt\n      key: {dir}/ca.crt\n";
    let yaml = config(&pki, "grpcs", addr, tls).replace("{listen}", "127.0.0.1:1");
    let path = pki.write("check.yaml", &yaml);
    let out = std::process::Command::new(bin())
        .args(["-c", path.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("upstreams.up.tls.trusted_ca"), "{stderr}");
    assert!(stderr.contains("upstreams.up.tls.key"), "{stderr}");
}

#[tokio::test]
async fn h2c_upstream_speaks_http2_with_prior_knowledge() {
    // The shared hyper upstream answers HTTP/1.1 and h2c (prior knowledge) alike; with
    // `protocol: h2c` the gateway must open with the HTTP/2 preface, for h1 and h2 clients.
    let pki = Pki::new();
    let (upstream, seen) = start_upstream();
    let dir = pki.dir.path().display().to_string();
    let yaml = base_config(&pki, upstream, &VERIFY_ON.replace("{dir}", &dir), "").replace(
        &format!("    servers: [\"{upstream}\"]\n"),
        &format!("    servers: [\"{upstream}\"]\n    protocol: h2c\n"),
    );
    let gw = start_gateway(&pki, &yaml);
    let alice = client_cert("alice", &pki.ca);
    for http2 in [false, true] {
        let response = client(&pki, &gw, Some((&[&alice], &alice)), http2)
            .get(gw.url("/h2c"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", gw.log());
        assert_eq!(*seen.last_version.lock().unwrap(), "HTTP/2.0");
        assert_eq!(
            seen.header("x-ssl-client-s-dn").as_deref(),
            Some("CN=alice,O=certgate tests")
        );
    }
    assert_eq!(seen.count(), 2);
}
