//! The hyper request path seen from outside: the real `certgate` binary over real TLS on
//! 127.0.0.1, in front of real hyper upstreams that record what reaches them. Covers
//! `max_body_size` for HTTP/2 and HTTP/1.1 uploads with and without a declared length
//! (curl and a hyper client), HTTP/1.1 request-smuggling shapes (400, nothing forwarded),
//! an upstream chain longer than the upstream `verify_depth` (502, reason logged), and an
//! HTTP/1.1 `Upgrade` tunnelled through the gateway.

mod common;

use std::convert::Infallible;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1024 * 1024;

/// One request as the upstream's handler saw it.
#[derive(Clone, Default)]
struct Got {
    path: String,
    headers: Vec<(String, String)>,
    /// Body bytes received so far.
    bytes: usize,
    /// The whole body, once it ended cleanly.
    complete: Option<Vec<u8>>,
    /// The body ended with an error (the gateway aborted it).
    failed: bool,
}

/// Bodies are shown by length: failure messages stay readable.
impl std::fmt::Debug for Got {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Got")
            .field("path", &self.path)
            .field("headers", &self.headers)
            .field("bytes", &self.bytes)
            .field("complete", &self.complete.as_ref().map(Vec::len))
            .field("failed", &self.failed)
            .finish()
    }
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Everything that reached an upstream's handler, in order.
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
    /// Waits (up to 3 s) until every request's body has ended one way or the other, so
    /// that an assertion about bodies is not made while one is still arriving.
    fn settled(&self) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let all = self.all();
            if all.iter().all(|g| g.complete.is_some() || g.failed) || Instant::now() > deadline {
                return all;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn record(
    req: Request<Incoming>,
    rec: Arc<Recorder>,
) -> Result<Response<BoxBody>, Infallible> {
    let index = {
        let mut got = rec.got.lock().unwrap();
        got.push(Got {
            path: req.uri().path().to_string(),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            ..Got::default()
        });
        got.len() - 1
    };

    if req
        .headers()
        .get(hyper::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"echo"))
    {
        // Switch to the `echo` protocol: every byte that arrives is written back.
        let mut req = req;
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 4096];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if io.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(hyper::header::CONNECTION, "upgrade")
            .header(hyper::header::UPGRADE, "echo")
            .body(BodyExt::boxed(Full::new(Bytes::new())))
            .unwrap();
        return Ok(response);
    }

    let mut body = req.into_body();
    let mut received = Vec::new();
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    received.extend_from_slice(data);
                    rec.got.lock().unwrap()[index].bytes = received.len();
                }
            }
            Some(Err(_)) => {
                rec.got.lock().unwrap()[index].failed = true;
                let text = "body failed";
                return Ok(Response::new(BodyExt::boxed(Full::new(Bytes::from(text)))));
            }
            None => break,
        }
    }
    let text = format!("received {} bytes", received.len());
    rec.got.lock().unwrap()[index].complete = Some(received);
    Ok(Response::new(BodyExt::boxed(Full::new(Bytes::from(text)))))
}

/// A hyper upstream (HTTP/1.1 with upgrades, and h2c) on 127.0.0.1 that records every
/// request and its body; over TLS (h2 and http/1.1 by ALPN) when `tls` is given.
fn start_recorder(tls: Option<rustls::ServerConfig>) -> (SocketAddr, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(|config| tokio_rustls::TlsAcceptor::from(Arc::new(config)));
    let rec2 = rec.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let rec = rec2.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| record(req, rec.clone()));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                                .await;
                        }
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                                .await;
                        }
                    }
                });
            }
        });
    });
    (addr, rec)
}

/// A TLS server config that presents `chain` (leaf first) with `key` and asks for no
/// client certificate.
fn tls_server_config(chain: &[&Issued], key: &Issued) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            chain.iter().map(|c| c.cert.der().clone()).collect(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.key.serialize_der())),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// gateway.yaml: one server requiring client certificates from the test CA, one route `/`
/// to upstream `app` at `addr` with the extra `route` lines, and the extra `upstream` lines.
fn gateway_yaml(pki: &Pki, addr: SocketAddr, route: &str, upstream: &str) -> String {
    let dir = pki.dir.path().display();
    format!(
        r#"servers:
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
{route}upstreams:
  app:
    servers: ["{addr}"]
{upstream}"#
    )
}

/// Waits a little for `needle` to show up in the gateway log.
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

/// `len` bytes of a repeating pattern, so a truncated or shifted copy is noticed.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// What curl printed: `%{http_code}`, `%{http_version}`, its exit status and its stderr.
struct CurlRun {
    code: String,
    version: String,
    exit: std::process::ExitStatus,
    stderr: String,
}

impl std::fmt::Display for CurlRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // curl -v without the TLS handshake and certificate lines.
        let verbose: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !(l.starts_with("{ [") || l.starts_with("} [") || l.starts_with("*  ")))
            .filter(|l| !l.contains("TLSv1"))
            .collect();
        write!(
            f,
            "curl printed {:?} (HTTP {}), {}\n--- curl -v ---\n{}",
            self.code,
            self.version,
            self.exit,
            verbose.join("\n")
        )
    }
}

/// Runs curl against the gateway as alice (client cert and key written as PEM files),
/// trusting the test CA; `stdin` is written to curl's standard input (for `-T -`).
fn curl(pki: &Pki, gw: &Gateway, path: &str, args: &[&str], stdin: Option<Vec<u8>>) -> CurlRun {
    let port = gw.addr.port();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-v", "--max-time", "30"])
        .arg("--resolve")
        .arg(format!("localhost:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(pki.path("ca.crt"))
        .arg("--cert")
        .arg(pki.path("alice.crt"))
        .arg("--key")
        .arg(pki.path("alice.key"))
        .args(["-o", "/dev/null", "-w", "%{http_code} %{http_version}"])
        .args(args)
        .arg(gw.url(path))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().expect("curl must be installed");
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().unwrap();
        // curl may stop reading once it has the answer: a broken pipe is expected then.
        std::thread::spawn(move || {
            for chunk in data.chunks(16 * 1024) {
                if pipe.write_all(chunk).is_err() {
                    return;
                }
            }
        })
    });
    let out = child.wait_with_output().unwrap();
    if let Some(writer) = writer {
        writer.join().unwrap();
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = stdout.split_whitespace();
    CurlRun {
        code: parts.next().unwrap_or_default().to_string(),
        version: parts.next().unwrap_or_default().to_string(),
        exit: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes alice's certificate and key where [`curl`] finds them.
fn write_alice(pki: &Pki, alice: &Issued) {
    pki.write("alice.crt", &alice.cert_pem());
    pki.write("alice.key", &alice.key_pem());
}

/// Whether curl's verbose output shows a `content-length` request header (HTTP/1.1
/// `> Content-Length:`, HTTP/2 `[content-length: …]`).
fn curl_sent_content_length(stderr: &str) -> bool {
    stderr.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        (line.starts_with("> content-length:")) || line.contains("[content-length:")
    })
}

/// Checks that no request body over `limit` reached the upstream whole, and that the
/// upstream never received more than `limit` bytes of any body.
fn check_no_body_over(rec: &Recorder, limit: usize, what: &str, failures: &mut Vec<String>) {
    for got in rec.settled() {
        if let Some(body) = got.complete.as_ref().filter(|b| b.len() > limit) {
            failures.push(format!(
                "{what}: the upstream received a complete body of {} bytes on {}",
                body.len(),
                got.path
            ));
        }
        if got.bytes > limit {
            failures.push(format!(
                "{what}: the upstream received {} body bytes on {} (limit {limit})",
                got.bytes, got.path
            ));
        }
    }
}

/// Collects a failed check instead of stopping at it, so one run reports every case.
macro_rules! check {
    ($failures:expr, $cond:expr, $($msg:tt)+) => {
        if !$cond {
            $failures.push(format!($($msg)+));
        }
    };
}

/// Sends `request` on a fresh HTTP/2 connection (TLS, ALPN h2, alice's certificate) and
/// returns the status, or why there was none.
async fn h2_send<B>(
    pki: &Pki,
    gw: &Gateway,
    alice: &Issued,
    request: Request<B>,
) -> Result<u16, String>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = tls_connect_alpn(pki, gw, alice, b"h2").await;
    if tls.get_ref().1.alpn_protocol() != Some(&b"h2"[..]) {
        return Err("the gateway did not pick h2".to_string());
    }
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(connection);
    match tokio::time::timeout(Duration::from_secs(20), sender.send_request(request)).await {
        Err(_) => Err("no answer within 20 s".to_string()),
        Ok(Err(e)) => Err(format!(
            "no response: {e} ({:?})",
            std::error::Error::source(&e)
        )),
        Ok(Ok(response)) => Ok(response.status().as_u16()),
    }
}

/// The recorder's count once no request has arrived for 300 ms: a refused upload that was
/// already forwarded in part may be recorded after its client has the answer.
async fn settled_count(rec: &Recorder) -> usize {
    loop {
        let count = rec.count();
        tokio::time::sleep(Duration::from_millis(300)).await;
        if rec.count() == count {
            return count;
        }
    }
}

#[tokio::test]
async fn h2_body_over_max_body_size_gets_413() {
    let pki = Pki::new();
    let (addr, rec) = start_recorder(None);
    let gw = start_gateway(
        &pki,
        &gateway_yaml(&pki, addr, "        max_body_size: 1m\n", ""),
    );
    let alice = client_cert("alice", &pki.ca);
    write_alice(&pki, &alice);
    let big = pattern(2 * MIB);
    let big_file = pki.path("big.bin");
    std::fs::write(&big_file, &big).unwrap();
    let big_arg = format!("@{}", big_file.display());
    let mut failures: Vec<String> = Vec::new();

    // The issue, as reported: `curl --http2` with a 2 MB body on a 1m route prints 413.
    // (curl declares the length, so the gateway can answer before reading the body.)
    let before = rec.count();
    let run = curl(
        &pki,
        &gw,
        "/upload",
        &["--http2", "--data-binary", &big_arg],
        None,
    );
    check!(
        failures,
        run.code == "413",
        "curl --http2, 2 MB declared: {run}"
    );
    check!(
        failures,
        run.version == "2" || run.code == "000",
        "curl must use HTTP/2: {run}"
    );
    check!(
        failures,
        curl_sent_content_length(&run.stderr),
        "curl declared no length: {run}"
    );
    check!(
        failures,
        rec.count() == before,
        "curl --http2, 2 MB declared: a declared length over the limit must be refused \
         before anything is forwarded, the upstream saw {:?}",
        rec.all().get(before..)
    );

    // (a) HTTP/2, streamed with no Content-Length: curl uploading from a pipe.
    let run = curl(
        &pki,
        &gw,
        "/upload",
        &["--http2", "-X", "POST", "-T", "-"],
        Some(big.clone()),
    );
    check!(
        failures,
        run.code == "413",
        "curl --http2, 2 MB streamed: {run}"
    );
    check!(
        failures,
        run.version == "2" || run.code == "000",
        "curl must use HTTP/2: {run}"
    );
    check!(
        failures,
        !curl_sent_content_length(&run.stderr),
        "the upload must be sent without a length: {run}"
    );
    check_no_body_over(&rec, MIB, "curl --http2, 2 MB streamed", &mut failures);

    // (a') the same from a hyper HTTP/2 client: 2 MiB in 32 DATA frames, no Content-Length.
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = big
        .chunks(64 * 1024)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let request = Request::post(gw.url("/upload"))
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap();
    assert!(request.headers().get("content-length").is_none());
    let status = h2_send(&pki, &gw, &alice, request).await;
    check!(
        failures,
        status == Ok(413),
        "hyper h2, 2 MiB streamed: {status:?}"
    );
    check_no_body_over(&rec, MIB, "hyper h2, 2 MiB streamed", &mut failures);

    // (b) HTTP/2 with a declared Content-Length of 2 MiB, from a hyper client.
    let before = rec.count();
    let request = Request::post(gw.url("/upload"))
        .header("content-length", big.len())
        .body(Full::new(Bytes::from(big.clone())))
        .unwrap();
    let status = h2_send(&pki, &gw, &alice, request).await;
    check!(
        failures,
        status == Ok(413),
        "hyper h2, 2 MiB declared: {status:?}"
    );
    check!(
        failures,
        rec.count() == before,
        "hyper h2, 2 MiB declared: nothing may be forwarded, the upstream saw {:?}",
        rec.all().get(before..)
    );

    // (c) HTTP/1.1 chunked upload of 2 MiB.
    let run = curl(
        &pki,
        &gw,
        "/upload",
        &[
            "--http1.1",
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Expect:",
            "--data-binary",
            &big_arg,
        ],
        None,
    );
    check!(
        failures,
        run.code == "413",
        "curl --http1.1, 2 MB chunked: {run}"
    );
    check!(
        failures,
        run.stderr.contains("> Transfer-Encoding: chunked")
            && !curl_sent_content_length(&run.stderr),
        "curl must send chunked: {run}"
    );
    check_no_body_over(&rec, MIB, "curl --http1.1, 2 MB chunked", &mut failures);

    // (c') HTTP/1.1 with a declared Content-Length of 2 MiB: refused, nothing forwarded.
    // (c)'s request may reach the recorder after curl has its 413: count once it has.
    let before = settled_count(&rec).await;
    let run = curl(
        &pki,
        &gw,
        "/upload",
        &["--http1.1", "-H", "Expect:", "--data-binary", &big_arg],
        None,
    );
    check!(
        failures,
        run.code == "413",
        "curl --http1.1, 2 MB declared: {run}"
    );
    check!(
        failures,
        rec.count() == before,
        "curl --http1.1, 2 MB declared: nothing may be forwarded, the upstream saw {:?}",
        rec.all().get(before..)
    );
    check_no_body_over(&rec, MIB, "all 2 MB uploads", &mut failures);

    // (d) 512 KiB on the same route passes, byte-exact, declared or streamed, h2 or h1.
    let small = pattern(512 * 1024);
    let small_file = pki.path("small.bin");
    std::fs::write(&small_file, &small).unwrap();
    let small_arg = format!("@{}", small_file.display());
    // (name, curl arguments, whether the body comes from curl's stdin)
    let cases = [
        (
            "h2 declared",
            vec!["--http2", "--data-binary", &small_arg],
            false,
        ),
        (
            "h2 streamed",
            vec!["--http2", "-X", "POST", "-T", "-"],
            true,
        ),
        (
            "h1 chunked",
            vec![
                "--http1.1",
                "-H",
                "Transfer-Encoding: chunked",
                "-H",
                "Expect:",
                "--data-binary",
                &small_arg,
            ],
            false,
        ),
        (
            "h1 declared",
            vec!["--http1.1", "-H", "Expect:", "--data-binary", &small_arg],
            false,
        ),
    ];
    for (name, args, from_stdin) in cases {
        let before = rec.count();
        let run = curl(
            &pki,
            &gw,
            "/small",
            &args,
            from_stdin.then(|| small.clone()),
        );
        check!(failures, run.code == "200", "512 KiB {name}: {run}");
        let all = rec.settled();
        let forwarded = all.get(before..).unwrap_or_default();
        match forwarded {
            [got] => {
                check!(failures, got.path == "/small", "512 KiB {name}: {got:?}");
                let body = got.complete.as_deref().unwrap_or_default();
                check!(
                    failures,
                    body == small.as_slice(),
                    "512 KiB {name}: the upstream's body is not the one sent \
                     ({} of {} bytes, complete: {})",
                    body.len(),
                    small.len(),
                    got.complete.is_some()
                );
            }
            _ => failures.push(format!(
                "512 KiB {name}: expected one request upstream, got {}",
                forwarded.len()
            )),
        }
    }

    assert!(
        failures.is_empty(),
        "{} check(s) failed:\n\n{}\n\n--- gateway log ---\n{}",
        failures.len(),
        failures.join("\n\n"),
        gw.log()
    );
}

/// Sends `bytes` on a fresh TLS connection (ALPN http/1.1, alice's certificate) and
/// returns what the gateway answers: its first response (head and `Content-Length` bytes
/// of body; whatever arrived if the connection closed or 5 s passed first), and anything
/// else within the next half second. (After a refusal the gateway keeps reading for a
/// while before it closes, as nginx's lingering close does, so waiting for the close would
/// only slow the test down.)
async fn raw_exchange(pki: &Pki, gw: &Gateway, alice: &Issued, bytes: &[u8]) -> String {
    let mut tls = tls_connect(pki, gw, alice).await;
    tls.write_all(bytes).await.unwrap();
    tls.flush().await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        while !response_complete(&answer) {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    // Anything more within half a second (a second response would be a smuggled request
    // answered) is returned too.
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        let mut buf = [0u8; 4096];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Whether `bytes` hold a response head and as many body bytes as its `Content-Length`
/// (none without one).
fn response_complete(bytes: &[u8]) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    bytes.len() >= end + 4 + length
}

#[tokio::test]
async fn smuggling_attempts_get_400_and_are_not_forwarded() {
    let pki = Pki::new();
    let (addr, rec) = start_recorder(None);
    let gw = start_gateway(&pki, &gateway_yaml(&pki, addr, "", ""));
    let alice = client_cert("alice", &pki.ca);

    let attempts: [(&str, &[u8]); 5] = [
        (
            "Content-Length then Transfer-Encoding",
            b"POST /cl-te HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "Transfer-Encoding then Content-Length",
            b"POST /te-cl HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        ),
        (
            "two Content-Length lines",
            b"POST /two-cl HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        ),
        (
            "obs-fold",
            b"GET /obs-fold HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n b\r\n\r\n",
        ),
        (
            "CL.TE with a smuggled request behind it",
            b"POST /cl-te-smuggle HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ),
    ];
    for (name, bytes) in attempts {
        let answer = raw_exchange(&pki, &gw, &alice, bytes).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{name}: expected a 400 status line, got {answer:?}\n{}",
            gw.log()
        );
        assert!(
            !answer[1..].contains("HTTP/1.1 "),
            "{name}: only one answer may come back: {answer:?}"
        );
        // raw_exchange waited half a second after the answer: anything forwarded is there.
        let all = rec.all();
        assert!(
            all.is_empty(),
            "{name}: nothing may reach the upstream, it saw {all:?}"
        );
    }

    // Control: a plain POST with a Content-Length is answered and forwarded.
    let answer = raw_exchange(
        &pki,
        &gw,
        &alice,
        b"POST /control HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "control: {answer:?}\n{}",
        gw.log()
    );
    assert!(answer.ends_with("received 5 bytes"), "control: {answer:?}");
    let all = rec.settled();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].path, "/control");
    assert_eq!(all[0].complete.as_deref(), Some(&b"hello"[..]));
}

#[tokio::test]
async fn upstream_chain_longer_than_verify_depth_is_502_with_reason() {
    let pki = Pki::new();
    let upstream_root = ca("Upstream Root CA");
    let int1 = intermediate("Upstream Intermediate 1", &upstream_root);
    let int2 = intermediate("Upstream Intermediate 2", &int1);
    let leaf = server_cert(&int2);
    let (addr, rec) = start_recorder(Some(tls_server_config(&[&leaf, &int2, &int1], &leaf)));
    pki.write("upstream-root.crt", &upstream_root.cert_pem());
    let alice = client_cert("alice", &pki.ca);
    let dir = pki.dir.path().display().to_string();
    let upstream = |depth: u32| {
        format!(
            "    protocol: https\n    tls: {{ trusted_ca: {dir}/upstream-root.crt, sni: localhost, verify_depth: {depth} }}\n"
        )
    };

    // Two intermediates, verify_depth 1: the upstream handshake fails.
    let gw = start_gateway(&pki, &gateway_yaml(&pki, addr, "", &upstream(1)));
    let http = client(&pki, &gw, Some((&[&alice], &alice)), false);
    let response = http.get(gw.url("/deep")).send().await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 502, "{body}\n{}", gw.log());
    assert!(body.contains("<title>502 Bad Gateway</title>"), "{body}");
    // The reason, in the words docs/config.md promises.
    assert!(
        log_contains(
            &gw,
            "certificate chain too long (2 intermediates, verify_depth 1)"
        ),
        "the log should give the reason:\n{}",
        gw.log()
    );
    assert_eq!(rec.count(), 0, "nothing may reach the upstream");
    drop(gw);

    // verify_depth 2 accepts the same upstream.
    let gw = start_gateway(&pki, &gateway_yaml(&pki, addr, "", &upstream(2)));
    let http = client(&pki, &gw, Some((&[&alice], &alice)), false);
    let response = http.get(gw.url("/deep")).send().await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", gw.log());
    assert_eq!(body, "received 0 bytes");
    let all = rec.all();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].path, "/deep");
    assert!(
        !gw.log().contains("certificate chain too long"),
        "{}",
        gw.log()
    );
}

#[tokio::test]
async fn websocket_style_upgrade_is_tunnelled() {
    let pki = Pki::new();
    let (addr, rec) = start_recorder(None);
    let gw = start_gateway(&pki, &gateway_yaml(&pki, addr, "", ""));
    let alice = client_cert("alice", &pki.ca);

    let mut tls = tls_connect(&pki, &gw, &alice).await;
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    tls.flush().await.unwrap();

    // Read the response head.
    let mut head = Vec::new();
    let read_head = async {
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match tls.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_head)
        .await
        .expect("no response head within 10 s");
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(
        head.starts_with("HTTP/1.1 101"),
        "expected 101 Switching Protocols, got {head:?}\n{}",
        gw.log()
    );
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo"),
        "{head:?}"
    );

    // Bytes go through the tunnel and come back, twice.
    for message in [
        &b"hello through the tunnel"[..],
        &[0u8, 1, 2, 255, 254, 13, 10],
    ] {
        tls.write_all(message).await.unwrap();
        tls.flush().await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut echoed))
            .await
            .expect("no echo within 10 s")
            .unwrap();
        assert_eq!(echoed, message);
    }

    // The upstream saw one upgrade request, with the caller's identity.
    let all = rec.all();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].path, "/ws");
    assert_eq!(all[0].header("upgrade"), Some("echo"));
    assert_eq!(
        all[0].header("x-ssl-client-s-dn"),
        Some("CN=alice,O=certgate tests")
    );
}

/// A client that waits for the gateway to close after a refusal (`openssl s_time -www`,
/// HTTP/1.0 clients reading to the end) sees the end of the answer at once: the lingering
/// close shuts the write side first and only then drains what the client still sends.
#[tokio::test]
async fn a_refused_request_is_answered_and_closed_without_waiting_for_the_client() {
    let pki = Pki::new();
    let (addr, rec) = start_recorder(None);
    let gw = start_gateway(&pki, &gateway_yaml(&pki, addr, "", ""));
    let stranger_ca = ca("Stranger CA");
    let stranger = client_cert("mallory", &stranger_ca);

    for (name, cert, request) in [
        (
            "certificate from another CA, HTTP/1.0",
            &stranger,
            &b"GET / HTTP/1.0\r\n\r\n"[..],
        ),
        (
            "smuggling attempt",
            &client_cert("alice", &pki.ca),
            &b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"[..],
        ),
    ] {
        let mut tls = tls_connect(&pki, &gw, cert).await;
        tls.write_all(request).await.unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(4), tls.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            read.is_ok(),
            "{name}: the gateway kept the connection open after answering {answer:?}"
        );
        assert!(answer.starts_with("HTTP/1."), "{name}: {answer:?}");
        assert!(answer.contains(" 400 "), "{name}: {answer:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{name}: took {:?}",
            started.elapsed()
        );
    }
    assert!(rec.all().is_empty(), "nothing may be forwarded");
}

/// nginx's `proxy_read_timeout` counts between two reads of the response body too: an
/// upstream that stalls in the middle of a body does not hold the client forever.
#[tokio::test]
async fn an_upstream_that_stalls_mid_body_is_cut_off_after_the_read_timeout() {
    let pki = Pki::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = socket.read(&mut head).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
                    .await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    let yaml = gateway_yaml(&pki, addr, "", "").replace("read: 10s", "read: 1s");
    let gw = start_gateway(&pki, &yaml);
    let alice = client_cert("alice", &pki.ca);

    let mut tls = tls_connect(&pki, &gw, &alice).await;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), tls.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        read.is_ok(),
        "the client was held past the read timeout: {answer:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(
        answer.ends_with("hello"),
        "the body must end short: {answer:?}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "cut off after {took:?}"
    );
}

#[tokio::test]
async fn upstream_path_replaces_the_matched_prefix_on_http1_http2_and_websocket() {
    let pki = Pki::new();
    let (addr, rec) = start_recorder(None);
    let yaml = gateway_yaml(&pki, addr, "", "").replace(
        "      - match: { path_prefix: / }\n",
        "      - match: { path_prefix: /api/ }\n        upstream: app\n        upstream_path: /v2/\n\
         \x20     - match: { path_prefix: /static }\n        upstream: app\n        upstream_path: /files/\n\
         \x20     - match: { path_prefix: / }\n",
    );
    let gw = start_gateway(&pki, &yaml);
    let alice = client_cert("alice", &pki.ca);

    // nginx's `location /api/ { proxy_pass http://app/v2/; }`, on the normalized path, with
    // the query as sent.
    assert_eq!(
        h1_status(&pki, &gw, Some(&alice), "/api/orders/7?x=/api/").await,
        200
    );
    assert_eq!(
        h2_status(&pki, &gw, Some(&alice), "/api//./orders/8").await,
        Ok(200)
    );
    assert_eq!(
        h1_status(&pki, &gw, Some(&alice), "/other/api/x").await,
        200
    );
    let seen: Vec<String> = rec.all().into_iter().map(|g| g.path).collect();
    assert_eq!(seen, ["/v2/orders/7", "/v2/orders/8", "/other/api/x"]);

    // The off-by-slash traversal (`/static..` would be `/files/..` upstream) is refused.
    let before = rec.count();
    for path in ["/static../etc/passwd", "/static.."] {
        assert_eq!(
            h1_status(&pki, &gw, Some(&alice), path).await,
            400,
            "{path}"
        );
    }
    assert_eq!(
        h1_status(&pki, &gw, Some(&alice), "/static/a.css").await,
        200
    );
    assert_eq!(
        rec.all()[before..]
            .iter()
            .map(|g| g.path.clone())
            .collect::<Vec<_>>(),
        ["/files/a.css"]
    );

    // A WebSocket-style upgrade is rewritten the same way.
    let mut tls = tls_connect(&pki, &gw, &alice).await;
    tls.write_all(
        b"GET /api/ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    tls.flush().await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    assert_eq!(
        rec.all().last().map(|g| g.path.clone()).as_deref(),
        Some("/v2/ws")
    );
}
