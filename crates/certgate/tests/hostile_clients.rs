//! Hostile clients against the real `certgate` binary over real TLS on 127.0.0.1, in front of
//! a real hyper upstream that records every request reaching it: slow headers and bodies
//! with and without a client certificate, oversized header lines and blocks, too many
//! headers, underscore and case spellings of the identity headers (HTTP/1.1 and HTTP/2),
//! request smuggling shapes, pipelining, plain HTTP and garbage on the TLS port, HTTP/2
//! rapid reset and CONTINUATION floods, and connection floods. Each test asserts what the
//! client gets, what the upstream saw (nothing, for an attack), and that the gateway still
//! serves a good client afterwards. Path spellings (`/public/../admin/x`, `%61dmin`, `..;`,
//! `%2F`, …) must never reach a backend under a route whose rules refuse the path they
//! mean, over HTTP/1.1 and HTTP/2, and the backend is sent the normalized path.
//!
//! The limits are set small (`client_header_timeout: 2s`, `large_client_header_buffers:
//! 4 1k`, `max_headers: 20`) so the suite runs in seconds; docs/security.md has the defaults.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
struct Got {
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    /// The body arrived whole.
    body_complete: bool,
}

#[derive(Default)]
struct Recorder {
    got: Mutex<Vec<Got>>,
}

impl Recorder {
    fn all(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
    fn paths(&self) -> Vec<String> {
        self.all().into_iter().map(|g| g.path).collect()
    }
}

/// An HTTP/1.1 upstream answering `path=<path>` and recording each request.
fn start_recorder() -> (SocketAddr, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let rec2 = rec.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let rec = rec2.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let rec = rec.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let query = req.uri().query().map(str::to_string);
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(n, v)| {
                                    (
                                        n.as_str().to_string(),
                                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                    )
                                })
                                .collect();
                            let index = {
                                let mut got = rec.got.lock().unwrap();
                                got.push(Got {
                                    path: path.clone(),
                                    query,
                                    headers,
                                    body_complete: false,
                                });
                                got.len() - 1
                            };
                            let complete = req.into_body().collect().await.is_ok();
                            rec.got.lock().unwrap()[index].body_complete = complete;
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                                "path={path}"
                            )))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    (addr, rec)
}

/// A gateway requiring client certificates (nginx's 400 page without one), with small
/// limits; `top` adds top-level keys.
fn config(pki: &Pki, upstream: SocketAddr, top: &str) -> String {
    let dir = pki.dir.path().display();
    format!(
        r#"client_header_timeout: 2s
client_body_timeout: 2s
large_client_header_buffers: 4 1k
max_headers: 20
{top}
servers:
  - name: api
    listen: ["{{listen}}"]
    tls:
      cert: {dir}/server.crt
      key: {dir}/server.key
    client_auth:
      verify: on
      ca: {dir}/ca.crt
    routes:
      - match: {{ path_prefix: / }}
        upstream: app
        timeouts: {{ connect: 2s, read: 10s, send: 10s }}
upstreams:
  app:
    servers: ["{upstream}"]
"#
    )
}

/// Sends `bytes` on a connection with `alice`'s certificate and returns what comes back
/// before the gateway closes the connection (at most 5 s).
async fn exchange(pki: &Pki, gw: &Gateway, alice: &Issued, bytes: &[u8]) -> String {
    let mut tls = tls_connect_as(pki, gw, Some(alice), b"http/1.1").await;
    // The gateway may answer and close before an oversized request is all written (a
    // broken pipe here); its answer is read all the same.
    let _ = tls.write_all(bytes).await;
    let _ = tls.flush().await;
    let (got, _) = read_to_close(&mut tls, Duration::from_secs(5)).await;
    String::from_utf8_lossy(&got).into_owned()
}

/// A good client still gets through.
async fn assert_serves_a_good_client(pki: &Pki, gw: &Gateway, alice: &Issued, rec: &Recorder) {
    let before = rec.count();
    let answer = exchange(
        pki,
        gw,
        alice,
        b"GET /good HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("path=/good"),
        "a good client must still be served: {answer:?}\n{}",
        gw.log()
    );
    assert_eq!(rec.count(), before + 1);
}

fn rss_kib(gw: &Gateway) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The value of one `certgate_client_errors_total` series from the admin listener.
fn client_errors(admin: u16, kind: &str) -> u64 {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", admin)).unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    let series = format!("certgate_client_errors_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test]
async fn slow_headers_are_cut_after_client_header_timeout_with_and_without_a_certificate() {
    let pki = Pki::new();
    let (upstream, rec) = start_recorder();
    let gw = start_gateway(&pki, &config(&pki, upstream, ""));
    let alice = client_cert("alice", &pki.ca);

    // Slowloris: a header one byte at a time, with and without a certificate; a connection
    // that completes its handshake and sends nothing; one that never starts TLS.
    let mut tasks = Vec::new();
    for with_cert in [true, false] {
        for _ in 0..3 {
            let mut tls = tls_connect_as(&pki, &gw, with_cert.then_some(&alice), b"http/1.1").await;
            tasks.push(tokio::spawn(async move {
                let started = Instant::now();
                for b in b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
                    .iter()
                    .cycle()
                {
                    if tls.write_all(&[*b]).await.is_err() || tls.flush().await.is_err() {
                        break;
                    }
                    // Stop once the gateway has closed: a read would see it.
                    let mut buf = [0u8; 64];
                    match tokio::time::timeout(Duration::from_millis(200), tls.read(&mut buf)).await
                    {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        Ok(Ok(_)) => panic!("the gateway answered a header that never ended"),
                        Err(_) => {}
                    }
                    if started.elapsed() > Duration::from_secs(20) {
                        panic!("still open after 20 s");
                    }
                }
                ("slow header", with_cert, started.elapsed())
            }));
        }
    }
    let mut idle = tls_connect_as(&pki, &gw, Some(&alice), b"http/1.1").await;
    tasks.push(tokio::spawn(async move {
        let started = Instant::now();
        let (got, closed) = read_to_close(&mut idle, Duration::from_secs(20)).await;
        assert!(
            got.is_empty(),
            "nothing is sent to a client that sent nothing"
        );
        assert!(closed.is_some(), "an idle TLS connection must be closed");
        ("nothing after the handshake", true, started.elapsed())
    }));
    let mut raw = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tasks.push(tokio::spawn(async move {
        let started = Instant::now();
        let (_, closed) = read_to_close(&mut raw, Duration::from_secs(20)).await;
        assert!(
            closed.is_some(),
            "a connection that never starts TLS must be closed"
        );
        ("no TLS at all", false, started.elapsed())
    }));

    for task in tasks {
        let (what, with_cert, after) = task.await.unwrap();
        // Closed at client_header_timeout (counted from the accept or the header's first
        // byte), not at the 60 s keepalive_timeout.
        assert!(
            after >= HEADER_TIMEOUT - Duration::from_millis(300) && after < HEADER_TIMEOUT * 3,
            "{what} (certificate: {with_cert}) closed after {after:?}"
        );
    }
    assert_eq!(rec.count(), 0, "nothing may be forwarded: {:?}", rec.all());
    assert_serves_a_good_client(&pki, &gw, &alice, &rec).await;
}

#[tokio::test]
async fn a_header_sent_slowly_but_within_the_timeout_is_served() {
    let pki = Pki::new();
    let (upstream, rec) = start_recorder();
    let gw = start_gateway(&pki, &config(&pki, upstream, ""));
    let alice = client_cert("alice", &pki.ca);
    let mut tls = tls_connect_as(&pki, &gw, Some(&alice), b"http/1.1").await;
    // Two requests on one connection, each header in pieces over about a second: the clock
    // restarts for each header, and a kept-alive wait between them does not count.
    for path in ["/first", "/second"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nX-A: b\r\n\r\n");
        for piece in request.as_bytes().chunks(8) {
            tls.write_all(piece).await.unwrap();
            tls.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        assert!(answer.ends_with(&format!("path={path}")), "{answer:?}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert_eq!(rec.paths(), ["/first", "/second"]);
}

#[tokio::test]
async fn slow_headers_without_a_certificate_hold_bounded_memory_and_are_closed() {
    let pki = Pki::new();
    let (upstream, rec) = start_recorder();
    // The default header buffers (4 8k), so each connection may hold a full 32 KB header.
    let gw = start_gateway(
        &pki,
        &config(&pki, upstream, "").replace("large_client_header_buffers: 4 1k\n", ""),
    );
    let alice = client_cert("alice", &pki.ca);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(&gw);

    // 200 connections without a certificate, each sending a header of 30 KB (under the
    // 32 KB limit) and then stalling.
    // Four lines of 7.5 KB: each within one 8 KB buffer, and under 100 header lines.
    let header = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\n{}",
        format!("X-Fill: {}\r\n", "f".repeat(7500)).repeat(4)
    );
    assert!(header.len() > 30_000 && header.len() < 32_768);
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(tls_connect_as(&pki, &gw, None, b"http/1.1").await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let connected = rss_kib(&gw);
    for tls in &mut held {
        tls.write_all(header.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = rss_kib(&gw);
    let per_connection = during.saturating_sub(before) * 1024 / 200;
    eprintln!(
        "RSS {before} KiB, {connected} KiB after 200 handshakes, {during} KiB with 200 stalled headers: {per_connection} bytes each"
    );
    // docs/security.md: an unauthenticated connection holds at most about 100 KB with the
    // default limits (hyper's read buffer up to 48 KB, TLS buffers, state).
    assert!(
        per_connection < 100 * 1024,
        "{per_connection} bytes per stalled connection"
    );

    // All are closed at client_header_timeout (2 s; counted from the accept).
    let started = Instant::now();
    for mut tls in held {
        let (got, closed) = read_to_close(&mut tls, Duration::from_secs(10)).await;
        assert!(
            got.is_empty(),
            "a header that never ended gets no answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(closed.is_some(), "a stalled header must be cut off");
    }
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(rec.count(), 0);
    assert_serves_a_good_client(&pki, &gw, &alice, &rec).await;
}

#[tokio::test]
async fn oversized_header_lines_and_blocks_and_too_many_headers_are_refused() {
    let pki = Pki::new();
    let (upstream, rec) = start_recorder();
    let gw = start_gateway(&pki, &config(&pki, upstream, ""));
    let alice = client_cert("alice", &pki.ca);

    let long_target = format!(
        "GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(1100)
    );
    let long_line = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nCookie: {}\r\n\r\n",
        "c".repeat(1100)
    );
    // Each line under 1 KB, 5 KB in all (the limit is 4 x 1 KB).
    let big_block = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        format!("X-Big: {}\r\n", "b".repeat(900)).repeat(6)
    );
    let many = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        (0..30).map(|i| format!("X-{i}: v\r\n")).collect::<String>()
    );
    // A single line of 200 KB (the issue's 100-900 KB lines): never forwarded.
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Huge: {}\r\n\r\n",
        "h".repeat(200_000)
    );
    let cases: [(&str, &str, &str); 5] = [
        ("request line over one buffer", &long_target, "HTTP/1.1 414"),
        ("header line over one buffer", &long_line, "HTTP/1.1 400"),
        ("header block over all buffers", &big_block, "HTTP/1.1 431"),
        ("more than max_headers", &many, "HTTP/1.1 431"),
        ("a 200 KB header line", &huge, "HTTP/1.1 "),
    ];
    for (what, request, status) in cases {
        let answer = exchange(&pki, &gw, &alice, request.as_bytes()).await;
        assert!(answer.starts_with(status), "{what}: {answer:?}");
        assert!(
            !answer.starts_with("HTTP/1.1 200"),
            "{what}: must be refused: {answer:?}"
        );
        assert_eq!(rec.count(), 0, "{what}: forwarded {:?}", rec.all());
    }
    let answer = exchange(&pki, &gw, &alice, long_line.as_bytes()).await;
    assert!(
        answer.contains("Request Header Or Cookie Too Large"),
        "nginx's page for a long header line: {answer:?}"
    );

    // HTTP/2: the same header list limit and count.
    let client = client(&pki, &gw, Some((&[&alice], &alice)), true);
    let too_many = (0..30).fold(client.get(gw.url("/h2-many")), |req, i| {
        req.header(format!("x-{i}"), "v")
    });
    let response = too_many.send().await;
    assert!(
        response.as_ref().map_or(true, |r| r.status() == 431),
        "HTTP/2 with 30 headers: {response:?}"
    );
    let response = client
        .get(gw.url("/h2-big"))
        .header("x-big", "b".repeat(6000))
        .send()
        .await;
    assert!(
        response.as_ref().map_or(true, |r| r.status() == 431),
        "HTTP/2 header list over the limit: {response:?}"
    );
    assert_eq!(rec.count(), 0, "forwarded {:?}", rec.all());
    let ok = client.get(gw.url("/h2-ok")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_serves_a_good_client(&pki, &gw, &alice, &rec).await;
}

/// Spellings of identity and forwarding headers a client might send to impersonate
/// someone: case, dashes as underscores, mixed.
const SPOOFS: &[(&str, &str)] = &[
    ("X-SSL-Client-S-DN", "CN=evil-dash"),
    ("x-ssl-client-s-dn", "CN=evil-lower"),
    ("X_SSL_Client_S_DN", "CN=evil-underscore"),
    ("x_ssl_client_s_dn", "CN=evil-underscore-lower"),
    ("X-SSL-Client_S_DN", "CN=evil-mixed"),
    ("x-ssl-client_verify", "SUCCESS"),
    ("X_SSL_CLIENT_VERIFY", "SUCCESS"),
    ("X_Forwarded_Client_Cert", "By=evil"),
    ("X_Real_IP", "10.6.6.6"),
    ("X_Forwarded_Proto", "http"),
    ("X_Custom_Thing", "1"),
];

fn assert_no_spoof_reached(got: &Got, alice_dn: &str, underscores_allowed: bool) {
    let folded = |name: &str| name.to_ascii_lowercase().replace('_', "-");
    for (name, value) in &got.headers {
        assert!(
            !value.contains("evil") && !value.contains("10.6.6.6"),
            "a spoofed value reached the upstream: {name}: {value} in {:?}",
            got.headers
        );
        if name.contains('_') {
            assert!(
                underscores_allowed,
                "underscore header {name} reached the upstream"
            );
            let f = folded(name);
            assert!(
                !f.starts_with("x-ssl-client-")
                    && !["x-forwarded-client-cert", "x-real-ip", "x-forwarded-proto"]
                        .contains(&f.as_str()),
                "an identity spelling reached the upstream: {name}"
            );
        }
    }
    let dns: Vec<&str> = got
        .headers
        .iter()
        .filter(|(n, _)| folded(n) == "x-ssl-client-s-dn")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(dns, [alice_dn], "exactly the real subject");
    let verify: Vec<&str> = got
        .headers
        .iter()
        .filter(|(n, _)| folded(n) == "x-ssl-client-verify")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(verify, ["SUCCESS"]);
}

#[tokio::test]
async fn no_spelling_of_an_identity_header_reaches_the_backend() {
    let pki = Pki::new();
    let (upstream, rec) = start_recorder();
    let alice = client_cert("alice", &pki.ca);
    let alice_dn = "CN=alice,O=certgate tests";

    for underscores in [false, true] {
        let top = format!("underscores_in_headers: {underscores}");
        let gw = start_gateway(&pki, &config(&pki, upstream, &top));
        rec.got.lock().unwrap().clear();

        // HTTP/1.1, written byte for byte as the spellings are.
        let mut request =
            String::from("GET /h1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for (name, value) in SPOOFS {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let answer = exchange(&pki, &gw, &alice, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");

        // HTTP/2.
        let client = client(&pki, &gw, Some((&[&alice], &alice)), true);
        let mut req = client.get(gw.url("/h2"));
        for (name, value) in SPOOFS {
            req = req.header(*name, *value);
        }
        assert_eq!(req.send().await.unwrap().status(), 200);

        let all = rec.all();
        assert_eq!(all.len(), 2, "{all:?}");
        for got in &all {
            assert_no_spoof_reached(got, alice_dn, underscores);
            let custom = got.headers.iter().any(|(n, _)| n == "x_custom_thing");
            assert_eq!(
                custom, underscores,
                "{}: an innocent underscore header passes only when allowed",
                got.path
            );
        }
    }
}

#[tokio::test]
async fn smuggling_shapes_are_refused_and_never_forwarded() {
    let pki = Pki::new();
    let (upstream, rec) = start_recorder();
    let gw = start_gateway(&pki, &config(&pki, upstream, ""));
    let alice = client_cert("alice", &pki.ca);
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "CL.TE",
            b"POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "HTTP/1.1 400",
        ),
        (
            "TE.CL",
            b"POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
            "HTTP/1.1 400",
        ),
        (
            "duplicate Content-Length",
            b"POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            "HTTP/1.1 400",
        ),
        (
            "Content-Length list",
            b"POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5, 5\r\n\r\nhello",
            "HTTP/1.1 400",
        ),
        (
            "obs-fold",
            b"GET /a HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n b\r\n\r\n",
            "HTTP/1.1 400",
        ),
        (
            "bad chunk size",
            b"POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            "",
        ),
        (
            "chunk size overflow",
            b"POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
            "",
        ),
        (
            "bare CR in a header",
            b"GET /a HTTP/1.1\r\nHost: localhost\r\nX-A: a\rX-B: b\r\n\r\n",
            "HTTP/1.1 400",
        ),
        (
            "NUL in a header value",
            b"GET /a HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00b\r\n\r\n",
            "HTTP/1.1 400",
        ),
        (
            "space before the colon",
            b"GET /a HTTP/1.1\r\nHost: localhost\r\nContent-Length : 5\r\n\r\nhello",
            "HTTP/1.1 400",
        ),
        (
            "Transfer-Encoding: gzip, chunked",
            b"POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "HTTP/1.1 501",
        ),
        (
            "two Transfer-Encoding lines",
            b"POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "HTTP/1.1 400",
        ),
        (
            "Transfer-Encoding: gzip",
            b"POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\nhello",
            "HTTP/1.1 400",
        ),
    ];
    for (what, bytes, status) in cases {
        let answer = exchange(&pki, &gw, &alice, bytes).await;
        assert!(
            answer.starts_with(status),
            "{what}: {answer:?}\n{}",
            gw.log()
        );
        assert!(
            !answer.contains("HTTP/1.1 200"),
            "{what}: nothing may be answered 200: {answer:?}"
        );
        // A chunked body whose size line is broken may have its head forwarded before the
        // size is read (bodies stream), but never a whole body, and never a second request.
        let all = rec.all();
        assert!(
            all.iter().all(|g| !g.body_complete && g.path == "/a") && all.len() <= 1,
            "{what}: forwarded {all:?}"
        );
        rec.got.lock().unwrap().clear();
    }
    assert_serves_a_good_client(&pki, &gw, &alice, &rec).await;
}

#[tokio::test]
async fn pipelined_requests_are_all_answered_in_order() {
    let pki = Pki::new();
    let (upstream, rec) = start_recorder();
    let gw = start_gateway(&pki, &config(&pki, upstream, ""));
    let alice = client_cert("alice", &pki.ca);
    let pipeline = b"GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n\
POST /two HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello\
GET /three HTTP/1.1\r\nHost: localhost\r\n\r\n\
POST /four HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
GET /five HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let answer = exchange(&pki, &gw, &alice, pipeline).await;
    let bodies: Vec<&str> = answer
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|r| {
            assert!(r.starts_with("200"), "{r:?}");
            r.rsplit("\r\n\r\n").next().unwrap()
        })
        .collect();
    assert_eq!(
        bodies,
        [
            "path=/one",
            "path=/two",
            "path=/three",
            "path=/four",
            "path=/five"
        ],
        "{answer:?}"
    );
    assert_eq!(rec.paths(), ["/one", "/two", "/three", "/four", "/five"]);
    assert!(rec.all().iter().all(|g| g.body_complete));
}

#[tokio::test]
async fn a_stalled_request_body_gets_408_after_client_body_timeout() {
    let pki = Pki::new();
    let (upstream, rec) = start_recorder();
    let gw = start_gateway(&pki, &config(&pki, upstream, ""));
    let alice = client_cert("alice", &pki.ca);
    let mut tls = tls_connect_as(&pki, &gw, Some(&alice), b"http/1.1").await;
    tls.write_all(
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    tls.flush().await.unwrap();
    let started = Instant::now();
    let (got, closed) = read_to_close(&mut tls, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&got);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "{answer:?}\n{}",
        gw.log()
    );
    assert!(closed.is_some());
    assert!(
        started.elapsed() >= Duration::from_millis(1700),
        "{:?}",
        started.elapsed()
    );
    let all = rec.all();
    assert!(
        all.iter().all(|g| !g.body_complete),
        "the upstream must not get the body as complete: {all:?}"
    );
    assert_serves_a_good_client(&pki, &gw, &alice, &rec).await;
}

#[tokio::test]
async fn plain_http_and_garbage_on_the_tls_port_are_answered_counted_and_not_logged_as_errors() {
    let pki = Pki::new();
    let (upstream, rec) = start_recorder();
    let admin = free_port();
    let gw = start_gateway(
        &pki,
        &config(
            &pki,
            upstream,
            &format!("admin: {{ listen: 127.0.0.1:{admin} }}"),
        ),
    );
    let alice = client_cert("alice", &pki.ca);

    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_to_close(&mut tcp, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&got);
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer:?}"
    );
    assert!(
        answer.contains("<title>400 The plain HTTP request was sent to HTTPS port</title>"),
        "{answer:?}"
    );
    assert!(closed.is_some());
    drop(tcp);

    // 50 connections of each: plain HTTP, garbage bytes, a TLS record cut short, a reset.
    for i in 0..50u8 {
        let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(b"POST /x HTTP/1.0\r\n\r\n").await.unwrap();
        let _ = read_to_close(&mut tcp, Duration::from_secs(5)).await;

        let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(&[0, 1, 2, i, 0xff, 0xfe]).await.unwrap();
        let (got, closed) = read_to_close(&mut tcp, Duration::from_secs(5)).await;
        assert!(got.is_empty() && closed.is_some(), "garbage gets a close");

        let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(&[0x16, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3, i])
            .await
            .unwrap();
        drop(tcp);

        let tcp = std::net::TcpStream::connect(gw.addr).unwrap();
        let socket = socket2::SockRef::from(&tcp);
        socket.set_linger(Some(Duration::ZERO)).unwrap();
        drop(tcp);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(client_errors(admin, "plain_http"), 51);
    assert_eq!(client_errors(admin, "not_tls"), 50);
    assert!(client_errors(admin, "tls_handshake") >= 45);
    let log = gw.log();
    assert!(
        !log.contains("ERROR") && !log.contains("WARN"),
        "client mistakes are logged at debug only:\n{log}"
    );
    assert_eq!(rec.count(), 0);
    assert_serves_a_good_client(&pki, &gw, &alice, &rec).await;
}

// --- HTTP/2 frames, written by hand -------------------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK for `GET https://localhost/`: indexed :method GET, :scheme https, :path /, and
/// :authority as a literal with an indexed name.
fn get_block() -> Vec<u8> {
    let mut block = vec![0x82, 0x87, 0x84, 0x01, 9];
    block.extend_from_slice(b"localhost");
    block
}

/// Reads frames until the connection closes or `wait` passes: the GOAWAY error code if one
/// came, and whether the connection closed.
async fn read_frames<S: AsyncRead + Unpin>(stream: &mut S, wait: Duration) -> (Option<u32>, bool) {
    let (bytes, closed) = read_to_close(stream, wait).await;
    let mut goaway = None;
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = (usize::from(bytes[at]) << 16)
            | (usize::from(bytes[at + 1]) << 8)
            | usize::from(bytes[at + 2]);
        if bytes[at + 3] == GOAWAY && at + 9 + 8 <= bytes.len() {
            let code = &bytes[at + 9 + 4..at + 9 + 8];
            goaway = Some(u32::from_be_bytes([code[0], code[1], code[2], code[3]]));
        }
        at += 9 + len;
    }
    (goaway, closed.is_some())
}

async fn h2_start<S: AsyncWrite + Unpin>(stream: &mut S) {
    stream.write_all(PREFACE).await.unwrap();
    stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
}

#[tokio::test]
async fn http2_rapid_reset_ends_the_connection_and_reaches_the_upstream_little() {
    let pki = Pki::new();
    let (upstream, rec) = start_recorder();
    let gw = start_gateway(&pki, &config(&pki, upstream, ""));
    let alice = client_cert("alice", &pki.ca);
    let mut tls = tls_connect_as(&pki, &gw, Some(&alice), b"h2").await;
    h2_start(&mut tls).await;
    let block = get_block();
    let mut burst = Vec::new();
    for i in 0..5000u32 {
        let stream = 2 * i + 1;
        burst.extend(frame(HEADERS, END_STREAM | END_HEADERS, stream, &block));
        burst.extend(frame(RST_STREAM, 0, stream, &8u32.to_be_bytes()));
    }
    let _ = tls.write_all(&burst).await;
    let _ = tls.flush().await;
    let (goaway, closed) = read_frames(&mut tls, Duration::from_secs(10)).await;
    eprintln!(
        "rapid reset: GOAWAY {goaway:?}, closed {closed}, upstream saw {}",
        rec.count()
    );
    assert!(closed, "the gateway must end a rapid-reset connection");
    // ENHANCE_YOUR_CALM (0xb) from h2's limit on streams reset before being served.
    assert_eq!(goaway, Some(0xb), "GOAWAY code");
    assert!(
        rec.count() < 200,
        "5000 reset streams must not become 5000 upstream requests: {}",
        rec.count()
    );
    assert_serves_a_good_client(&pki, &gw, &alice, &rec).await;
}

#[tokio::test]
async fn http2_continuation_flood_is_cut_off() {
    let pki = Pki::new();
    let (upstream, rec) = start_recorder();
    let gw = start_gateway(&pki, &config(&pki, upstream, ""));
    let alice = client_cert("alice", &pki.ca);
    let before = rss_kib(&gw);
    let mut tls = tls_connect_as(&pki, &gw, Some(&alice), b"h2").await;
    h2_start(&mut tls).await;
    tls.write_all(&frame(HEADERS, 0, 1, &get_block()))
        .await
        .unwrap();
    // Literal headers `x-a: bbbb…` (100 bytes each), 10 per CONTINUATION frame, without end.
    let mut junk = Vec::new();
    for _ in 0..10 {
        junk.extend_from_slice(&[0x00, 3, b'x', b'-', b'a', 100]);
        junk.extend_from_slice(&[b'b'; 100]);
    }
    let junk_frame = frame(CONTINUATION, 0, 1, &junk);
    let mut sent = 0usize;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if tls.write_all(&junk_frame).await.is_err() {
            break;
        }
        sent += junk_frame.len();
        if sent > 50 * 1024 * 1024 {
            break;
        }
    }
    let (goaway, closed) = read_frames(&mut tls, Duration::from_secs(5)).await;
    let after = rss_kib(&gw);
    eprintln!(
        "CONTINUATION flood: sent {sent} bytes, GOAWAY {goaway:?}, closed {closed}, RSS {before} -> {after} KiB"
    );
    assert!(closed, "the gateway must end a CONTINUATION flood");
    assert!(
        sent < 50 * 1024 * 1024,
        "the gateway kept reading: {sent} bytes"
    );
    assert!(
        after < before + 20 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    assert_eq!(rec.count(), 0);
    assert_serves_a_good_client(&pki, &gw, &alice, &rec).await;
}

#[tokio::test]
async fn a_connection_flood_pauses_accepting_at_max_connections_without_crashing() {
    let pki = Pki::new();
    let (upstream, rec) = start_recorder();
    let gw = start_gateway(&pki, &config(&pki, upstream, "max_connections: 20"));
    let alice = client_cert("alice", &pki.ca);

    // 60 connections that never send anything: 20 are accepted, the rest wait in the backlog.
    let mut flood = Vec::new();
    for _ in 0..60 {
        flood.push(tokio::net::TcpStream::connect(gw.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A good client queues behind them: its handshake cannot finish while all 20 slots are
    // held, and it does once they are freed (each closed at client_header_timeout, 2 s).
    let started = Instant::now();
    let answer = exchange(
        &pki,
        &gw,
        &alice,
        b"GET /after-flood HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    let waited = started.elapsed();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer:?}\n{}",
        gw.log()
    );
    assert!(
        waited >= Duration::from_millis(1500),
        "served after {waited:?}: accepting did not pause at max_connections"
    );
    assert!(
        gw.log().contains("max_connections (20) reached"),
        "{}",
        gw.log()
    );
    drop(flood);
    assert_eq!(rec.paths(), ["/after-flood"]);
    assert_serves_a_good_client(&pki, &gw, &alice, &rec).await;
}

// ---------------------------------------------------------------------------------------
// Path spellings: every decision is made on the normalized path, which is what is forwarded.
// ---------------------------------------------------------------------------------------

/// `verify: optional`, with `/admin/` for `root-operator` only, `/private/` needing a
/// certificate, `/audit` (a `path_regex`) for `root-operator` only, and `/` open to anyone.
fn path_config(pki: &Pki, upstream: SocketAddr, admin: u16) -> String {
    let dir = pki.dir.path().display();
    format!(
        r#"admin: {{ listen: "127.0.0.1:{admin}" }}
log:
  access: {dir}/access.log
servers:
  - name: api
    listen: ["{{listen}}"]
    tls:
      cert: {dir}/server.crt
      key: {dir}/server.key
    client_auth:
      verify: optional
      ca: {dir}/ca.crt
    routes:
      - match: {{ path_prefix: /admin/ }}
        upstream: app
        allow:
          - cn: [root-operator]
      - match: {{ path_prefix: /private/ }}
        upstream: app
        require_client_cert: true
      - match: {{ path_regex: "^/audit(/.*)?$" }}
        upstream: app
        allow:
          - cn: [root-operator]
      - match: {{ path_prefix: / }}
        upstream: app
upstreams:
  app:
    servers: ["{upstream}"]
"#
    )
}

/// Spellings of `/admin/x` that normalize to it. `DIR` stands for the protected directory.
const MEANS_DIR_X: &[&str] = &[
    "/DIR/x",
    "/public/../DIR/x",
    "/public/%2e%2e/DIR/x",
    "/public/.%2e/DIR/x",
    "/public/%2E%2E/DIR/x",
    "/public/a/b/../../../DIR/x",
    "//DIR/x",
    "/DIR//x",
    "/./DIR/x",
    "/%2e/DIR/x",
    "/DIR/./x",
    "/DIR/y/../x",
];

/// Spellings that no normalization can settle: refused with 400 whoever asks.
const REFUSED: &[&str] = &[
    "/public/..%2fDIR/x",
    "/public%2f..%2fDIR/x",
    "/DIR%2fx",
    "/DIR%2Fx",
    "/DIR%5cx",
    "/public/..;/DIR/x",
    "/public/.;/DIR/x",
    "/public/%2e%2e;/DIR/x",
    "/public\\..\\DIR/x",
    "/DIR\\x",
    "/DIR/x%00",
    "/DIR/%00/../x",
    "/public/%c0%ae%c0%ae/DIR/x",
    "/%c0%afDIR/x",
    "/../DIR/x",
    "/public/../../DIR/x",
    "/DIR;jsessionid=1/x",
];

/// Sends `path` over both protocols as `cert`; the two statuses.
async fn both_protocols(pki: &Pki, gw: &Gateway, cert: Option<&Issued>, path: &str) -> [u16; 2] {
    let h1 = h1_status(pki, gw, cert, path).await;
    let h2 = h2_status(pki, gw, cert, path)
        .await
        .unwrap_or_else(|e| panic!("HTTP/2 {path}: {e}"));
    [h1, h2]
}

#[tokio::test]
async fn no_spelling_reaches_a_route_whose_rules_refuse_the_path_it_means() {
    let pki = Pki::new();
    let (upstream, rec) = start_recorder();
    let admin = free_port();
    let gw = start_gateway(&pki, &path_config(&pki, upstream, admin));
    let alice = client_cert("alice", &pki.ca);
    let root = client_cert("root-operator", &pki.ca);
    let mut failures = Vec::new();

    // (protected directory, who is refused there, the refusal's status)
    let cases: [(&str, Option<&Issued>, u16); 3] = [
        ("admin", Some(&alice), 403),
        ("audit", Some(&alice), 403),
        ("private", None, 400),
    ];
    for (dir, refused_caller, refusal) in cases {
        for spelling in MEANS_DIR_X {
            let path = spelling.replace("DIR", dir);
            let before = rec.count();
            let got = both_protocols(&pki, &gw, refused_caller, &path).await;
            if got != [refusal; 2] || rec.count() != before {
                failures.push(format!(
                    "{path}: refused caller got {got:?} (want {refusal}), upstream saw {:?}",
                    &rec.paths()[before..]
                ));
            }
            // Whoever may reach the path gets it, and the backend is told the path meant.
            let got = both_protocols(&pki, &gw, Some(&root), &path).await;
            let seen = rec.paths()[before..].to_vec();
            let want = format!("/{dir}/x");
            if got != [200; 2] || seen != [want.clone(), want.clone()] {
                failures.push(format!(
                    "{path}: allowed caller got {got:?}, upstream saw {seen:?} (want {want} twice)"
                ));
            }
        }
        for spelling in REFUSED {
            let path = spelling.replace("DIR", dir);
            let before = rec.count();
            for who in [refused_caller, Some(&root)] {
                let h1 = h1_status(&pki, &gw, who, &path).await;
                let h2 = h2_status(&pki, &gw, who, &path).await;
                if h1 != 400 || h2 != Ok(400) {
                    failures.push(format!(
                        "{path}: got HTTP/1.1 {h1}, HTTP/2 {h2:?}; want 400"
                    ));
                }
            }
            if rec.count() != before {
                failures.push(format!(
                    "{path}: reached the upstream as {:?}",
                    &rec.paths()[before..]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        gw.log()
    );
    assert!(
        client_errors(admin, "bad_path") >= (3 * 2 * 2 * REFUSED.len()) as u64,
        "each refused spelling is counted as bad_path"
    );
    assert_serves_a_good_client(&pki, &gw, &alice, &rec).await;
}

#[tokio::test]
async fn request_target_forms_fragments_and_the_query_string() {
    let pki = Pki::new();
    let (upstream, rec) = start_recorder();
    let admin = free_port();
    let gw = start_gateway(&pki, &path_config(&pki, upstream, admin));
    let alice = client_cert("alice", &pki.ca);

    // Absolute-form targets are routed on their normalized path too.
    for target in [
        "https://localhost/admin/x",
        "https://localhost/public/../admin/x",
        "https://localhost//admin/x",
    ] {
        assert_eq!(
            h1_status(&pki, &gw, Some(&alice), target).await,
            403,
            "{target}"
        );
    }
    // `*` names no resource a route could cover.
    let answer = exchange(
        &pki,
        &gw,
        &alice,
        b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // CONNECT names an authority, not a path: still the 405 of a reverse proxy.
    let answer = exchange(
        &pki,
        &gw,
        &alice,
        b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert_eq!(rec.count(), 0, "{:?}", rec.paths());

    // A fragment is not part of the path: what follows `#` is dropped, never resolved.
    let status = h1_status(&pki, &gw, Some(&alice), "/public/x#/../../admin/x").await;
    let seen = rec.paths();
    assert!(
        status == 400 || (status == 200 && seen == ["/public/x"]),
        "fragment: {status}, upstream saw {seen:?}"
    );

    // The backend gets the normal path and the query exactly as sent, dots and escapes too.
    let before = rec.count();
    let status = h1_status(
        &pki,
        &gw,
        Some(&alice),
        "/public/./a//b/%7efile%3b?next=/../admin/&q=%2e%2e%2F",
    )
    .await;
    assert_eq!(status, 200);
    let got = &rec.all()[before];
    assert_eq!(got.path, "/public/a/b/~file%3B");
    assert_eq!(got.query.as_deref(), Some("next=/../admin/&q=%2e%2e%2F"));

    // The access log (written off the request path, so a moment later) shows the path
    // that was decided on.
    let line = "\"GET /public/a/b/~file%3B?next=/../admin/&q=%2e%2e%2F HTTP/1.1\" 200";
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut log = String::new();
    while Instant::now() < deadline {
        log = std::fs::read_to_string(pki.path("access.log")).unwrap_or_default();
        if log.contains(line) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(log.contains(line), "{log}");
}

#[tokio::test]
async fn an_http2_path_without_a_leading_slash_is_never_forwarded() {
    let pki = Pki::new();
    let (upstream, rec) = start_recorder();
    let admin = free_port();
    let gw = start_gateway(&pki, &path_config(&pki, upstream, admin));
    let alice = client_cert("alice", &pki.ca);
    for path in [&b"admin/x"[..], b"*", b"public/../admin/x"] {
        let mut tls = tls_connect_as(&pki, &gw, Some(&alice), b"h2").await;
        h2_start(&mut tls).await;
        // :method GET, :scheme https, then :path and :authority as literals.
        let mut block = vec![0x82, 0x87, 0x04, path.len() as u8];
        block.extend_from_slice(path);
        block.extend_from_slice(&[0x01, 9]);
        block.extend_from_slice(b"localhost");
        tls.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block))
            .await
            .unwrap();
        tls.flush().await.unwrap();
        let (bytes, _) = read_to_close(&mut tls, Duration::from_secs(2)).await;
        // No HEADERS frame of the answer may start with `:status: 200` (static index 8).
        let mut at = 0;
        while at + 9 <= bytes.len() {
            let len = (usize::from(bytes[at]) << 16)
                | (usize::from(bytes[at + 1]) << 8)
                | usize::from(bytes[at + 2]);
            if bytes[at + 3] == HEADERS {
                assert_ne!(bytes.get(at + 9), Some(&0x88), "{path:?} was answered 200");
            }
            at += 9 + len;
        }
    }
    assert_eq!(rec.count(), 0, "{:?}", rec.paths());
    assert_serves_a_good_client(&pki, &gw, &alice, &rec).await;
}
