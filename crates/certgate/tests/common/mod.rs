//! Test harness: a PKI generated with rcgen at test time, a real hyper upstream that
//! records what reaches it, and the real `certgate` binary started on 127.0.0.1.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// A certificate with its key, as PEM.
pub struct Issued {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl Issued {
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

pub fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "certgate tests");
    dn.push(DnType::CommonName, cn);
    dn
}

pub fn ca(cn: &str) -> Issued {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Issued { cert, key }
}

pub fn intermediate(cn: &str, issuer: &Issued) -> Issued {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer.cert, &issuer.key).unwrap();
    Issued { cert, key }
}

pub fn server_cert(issuer: &Issued) -> Issued {
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params.distinguished_name = dn("localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer.cert, &issuer.key).unwrap();
    Issued { cert, key }
}

pub fn client_cert(cn: &str, issuer: &Issued) -> Issued {
    client_cert_with(cn, issuer, |_| {})
}

pub fn client_cert_with(
    cn: &str,
    issuer: &Issued,
    edit: impl FnOnce(&mut CertificateParams),
) -> Issued {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    edit(&mut params);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer.cert, &issuer.key).unwrap();
    Issued { cert, key }
}

/// Everything one test needs on disk.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Issued,
    pub server: Issued,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("Test Root CA");
        let server = server_cert(&ca);
        std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
        std::fs::write(dir.path().join("server.crt"), server.cert_pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), server.key_pem()).unwrap();
        Pki { dir, ca, server }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

/// What the upstream saw.
#[derive(Default)]
pub struct Seen {
    pub count: AtomicUsize,
    pub last_headers: Mutex<Vec<(String, String)>>,
    /// HTTP version of the last request (`"HTTP/1.1"`, `"HTTP/2.0"`).
    pub last_version: Mutex<String>,
}

impl Seen {
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.last_headers
            .lock()
            .unwrap()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
    pub fn headers_named(&self, name: &str) -> Vec<String> {
        self.last_headers
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn upstream_handler(
    req: Request<Incoming>,
    seen: Arc<Seen>,
) -> Result<Response<BoxBody>, Infallible> {
    seen.count.fetch_add(1, Ordering::SeqCst);
    *seen.last_version.lock().unwrap() = format!("{:?}", req.version());
    *seen.last_headers.lock().unwrap() = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let path = req.uri().path().to_string();
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if let Some(size) = path.strip_prefix("/bytes/") {
        // Streams `size` bytes of a repeating pattern in 64 KiB chunks.
        let size: usize = size.parse().unwrap_or(0);
        let stream = futures_util::stream::unfold(0usize, move |sent| async move {
            if sent >= size {
                return None;
            }
            let n = (size - sent).min(65536);
            let chunk: Vec<u8> = (sent..sent + n).map(|i| (i % 251) as u8).collect();
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))),
                sent + n,
            ))
        });
        return Ok(Response::new(BodyExt::boxed(StreamBody::new(stream))));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = if path == "/upload" {
        let sum: u64 = body.iter().map(|b| *b as u64).sum();
        format!("{} {}", body.len(), sum)
    } else {
        "upstream ok".to_string()
    };
    Ok(Response::new(BodyExt::boxed(Full::new(Bytes::from(text)))))
}

/// A real HTTP/1.1 upstream on 127.0.0.1, on its own runtime thread.
pub fn start_upstream() -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
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
                let (stream, _) = listener.accept().await.unwrap();
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| upstream_handler(req, seen.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    (addr, seen)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `certgate` process; killed on drop.
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.addr.port(), path)
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_certgate")
}

/// Writes `yaml` (with `{listen}` replaced) next to the PKI and starts the gateway on it.
pub fn start_gateway(pki: &Pki, yaml: &str) -> Gateway {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = pki.write("gateway.yaml", &yaml.replace("{listen}", &addr.to_string()));
    let log = pki.path(&format!("gateway-{port}.log"));
    let child = Command::new(bin())
        .args(["-c", config.to_str().unwrap(), "run", "--pid-file"])
        .arg(pki.path(&format!("certgate-{port}.pid")))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut gateway = Gateway { child, addr, log };
    wait_for_port(&mut gateway);
    gateway
}

fn listening(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).is_ok_and(|stream| stream.local_addr().ok() != Some(addr))
}

fn wait_for_port(gateway: &mut Gateway) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = gateway.child.try_wait() {
            panic!("certgate exited early ({status}):\n{}", gateway.log());
        }
        // A connection to a port nothing listens on can connect to itself (TCP
        // simultaneous open, when the kernel picks the same port as the source): only a
        // connection from another port counts, and twice in a row with certgate alive.
        if listening(gateway.addr) {
            std::thread::sleep(Duration::from_millis(50));
            if listening(gateway.addr) && matches!(gateway.child.try_wait(), Ok(None)) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "certgate did not listen on {}:\n{}",
        gateway.addr,
        gateway.log()
    );
}

/// A reqwest client that trusts the test CA and optionally presents a client certificate chain.
pub fn client(
    pki: &Pki,
    gateway: &Gateway,
    identity: Option<(&[&Issued], &Issued)>,
    http2: bool,
) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .resolve("localhost", gateway.addr)
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.cert_pem().as_bytes()).unwrap())
        .timeout(Duration::from_secs(30));
    if let Some((chain, key_owner)) = identity {
        let mut pem = String::new();
        for cert in chain {
            pem.push_str(&cert.cert_pem());
        }
        pem.push_str(&key_owner.key_pem());
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    if http2 {
        builder = builder.http2_prior_knowledge();
    } else {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

/// The minimal config every test starts from; `{listen}`, `{dir}` and `{upstream}` are filled in.
pub fn base_config(
    pki: &Pki,
    upstream: SocketAddr,
    client_auth: &str,
    extra_route: &str,
) -> String {
    format!(
        r#"servers:
  - name: api
    listen: ["{{listen}}"]
    tls:
      cert: {dir}/server.crt
      key: {dir}/server.key
    client_auth:
{client_auth}
    routes:
{extra_route}      - match: {{ path_prefix: / }}
        upstream: app
        timeouts: {{ connect: 1s, read: 1s, send: 5s }}
upstreams:
  app:
    servers: ["{upstream}"]
"#,
        dir = pki.dir.path().display()
    )
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// A rustls client config presenting `cert`, trusting the test CA, offering `versions` and
/// ALPN http/1.1.
pub fn tls_client_config(
    pki: &Pki,
    cert: &Issued,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![cert.cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key.serialize_der())),
        )
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// A raw TLS connection to the gateway (ALPN http/1.1) presenting `cert`, for tests that
/// watch the connection itself rather than an HTTP client's view of it.
pub async fn tls_connect(
    pki: &Pki,
    gateway: &Gateway,
    cert: &Issued,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_connect_alpn(pki, gateway, cert, b"http/1.1").await
}

/// [`tls_connect`] offering `alpn` (`b"h2"`) instead of http/1.1.
pub async fn tls_connect_alpn(pki: &Pki, gateway: &Gateway, cert: &Issued, alpn: &[u8]) -> Tls {
    tls_connect_as(pki, gateway, Some(cert), alpn).await
}

pub type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A raw TLS connection presenting `cert` (or none) and offering `alpn`.
pub async fn tls_connect_as(pki: &Pki, gw: &Gateway, cert: Option<&Issued>, alpn: &[u8]) -> Tls {
    let mut config = match cert {
        Some(cert) => tls_client_config(pki, cert, rustls::DEFAULT_VERSIONS),
        None => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pki.ca.cert.der().clone()).unwrap();
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

/// Reads until the peer closes (or errs), at most `wait`: what came, and when it closed.
pub async fn read_to_close<S: AsyncRead + Unpin>(
    stream: &mut S,
    wait: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    let closed = tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    (got, closed.ok().map(|()| started.elapsed()))
}

/// The status of `GET target` (sent byte for byte, no client normalizes it) over HTTP/1.1, on a new connection presenting `cert`.
pub async fn h1_status(pki: &Pki, gw: &Gateway, cert: Option<&Issued>, target: &str) -> u16 {
    let mut tls = tls_connect_as(pki, gw, cert, b"http/1.1").await;
    let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let (got, _) = read_to_close(&mut tls, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&got);
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP/1.1 answer to {target}: {answer:?}"))
}

/// The status of `GET https://localhost{path}` over HTTP/2, on a new connection presenting
/// `cert`, or why there was none.
pub async fn h2_status(
    pki: &Pki,
    gw: &Gateway,
    cert: Option<&Issued>,
    path: &str,
) -> Result<u16, String> {
    let tls = tls_connect_as(pki, gw, cert, b"h2").await;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(connection);
    let request = Request::get(format!("https://localhost{path}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| format!("{path} is not a URI the client can send: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(10), sender.send_request(request)).await {
        Err(_) => Err("no answer within 10 s".into()),
        Ok(Err(e)) => Err(format!("no response: {e}")),
        Ok(Ok(response)) => Ok(response.status().as_u16()),
    }
}

/// [`start_gateway`] with more arguments after `run` (`--watch`).
pub fn start_gateway_with_args(pki: &Pki, yaml: &str, run_args: &[&str]) -> Gateway {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = pki.write("gateway.yaml", &yaml.replace("{listen}", &addr.to_string()));
    let log = pki.path(&format!("gateway-{port}.log"));
    let child = Command::new(bin())
        .args(["-c", config.to_str().unwrap(), "run"])
        .args(run_args)
        .arg("--pid-file")
        .arg(pki.path(&format!("certgate-{port}.pid")))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut gateway = Gateway { child, addr, log };
    wait_for_port(&mut gateway);
    gateway
}

/// Writes `yaml` (with `{listen}` replaced) next to the PKI and runs `certgate -c
/// gateway.yaml {args…}` exactly as given (no `--pid-file` added), until it listens.
pub fn spawn_gateway(pki: &Pki, yaml: &str, args: &[&str]) -> Gateway {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = pki.write("gateway.yaml", &yaml.replace("{listen}", &addr.to_string()));
    let log = pki.path(&format!("gateway-{port}.log"));
    let child = Command::new(bin())
        .arg("-c")
        .arg(&config)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut gateway = Gateway { child, addr, log };
    wait_for_port(&mut gateway);
    gateway
}

/// The real binary run in `dir` with `args`, to completion.
pub fn certgate_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run certgate")
}

/// A finished command's status and both streams, for assertion messages.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits (at most 15 s) for `what` to appear in the gateway's log.
pub fn wait_for_log(gw: &Gateway, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !gw.log().contains(what) {
        assert!(
            Instant::now() < deadline,
            "no {what:?} in the log:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
