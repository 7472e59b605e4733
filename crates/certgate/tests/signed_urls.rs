//! Signed, expiring URLs end to end with the real binary: minting over mTLS, signed requests
//! without a certificate reaching a real hyper upstream (which records every request and
//! serves byte ranges), tampering, expiry, key rotation by reload, `bind: client_ip`, and
//! the access log never holding a usable signature.

mod common;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// The media file the upstream serves under `/videos/` and `/private/`.
const FILE_LEN: usize = 200_000;

fn file_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// One request as the upstream received it.
#[derive(Clone, Debug)]
struct Got {
    target: String,
    headers: Vec<(String, String)>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Upstream {
    got: Mutex<Vec<Got>>,
}

impl Upstream {
    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
    fn last(&self) -> Got {
        self.got.lock().unwrap().last().cloned().unwrap()
    }
}

/// `bytes=a-b` / `bytes=a-` / `bytes=-n` of a `FILE_LEN`-byte file.
fn range(value: &str) -> Option<(usize, usize)> {
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (false, true) => (a.parse().ok()?, FILE_LEN - 1),
        (false, false) => (a.parse().ok()?, b.parse::<usize>().ok()?.min(FILE_LEN - 1)),
        (true, false) => (FILE_LEN - b.parse::<usize>().ok()?, FILE_LEN - 1),
        (true, true) => return None,
    };
    (start <= end && end < FILE_LEN).then_some((start, end))
}

async fn serve(
    req: Request<Incoming>,
    up: Arc<Upstream>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let got = Got {
        target: req.uri().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect(),
    };
    up.got.lock().unwrap().push(got);
    let path = req.uri().path();
    if !(path.starts_with("/videos/") || path.starts_with("/private/")) {
        return Ok(Response::new(Full::new(Bytes::from_static(b"upstream ok"))));
    }
    let file: Vec<u8> = (0..FILE_LEN).map(file_byte).collect();
    let requested = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(range);
    let mut response = match requested {
        Some((start, end)) => {
            let mut r = Response::new(Full::new(Bytes::from(file[start..=end].to_vec())));
            *r.status_mut() = hyper::StatusCode::PARTIAL_CONTENT;
            r.headers_mut().insert(
                "content-range",
                format!("bytes {start}-{end}/{FILE_LEN}").parse().unwrap(),
            );
            r
        }
        None => Response::new(Full::new(Bytes::from(file))),
    };
    response
        .headers_mut()
        .insert("accept-ranges", "bytes".parse().unwrap());
    response
        .headers_mut()
        .insert("content-type", "video/mp4".parse().unwrap());
    Ok(response)
}

fn start_media_upstream() -> (SocketAddr, Arc<Upstream>) {
    let up = Arc::new(Upstream::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let up2 = up.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let up = up2.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| serve(req, up.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    (addr, up)
}

/// Writes a new key file with `certgate certs url-key`.
fn url_key(pki: &Pki, name: &str) -> String {
    let path = pki.path(name);
    let out = Command::new(bin())
        .args(["certs", "url-key", "-o"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key files are written 0600");
    path_str(&path)
}

struct Setup {
    keys: Vec<String>,
    bind: &'static str,
    max_ttl: &'static str,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            keys: Vec::new(),
            bind: "none",
            max_ttl: "5m",
        }
    }
}

fn config(pki: &Pki, upstream: SocketAddr, admin: u16, setup: &Setup) -> String {
    let keys = setup
        .keys
        .iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"admin: {{ listen: "127.0.0.1:{admin}" }}
log:
  access: {dir}/access.log
servers:
  - name: media
    listen: ["{{listen}}"]
    tls:
      cert: {dir}/server.crt
      key: {dir}/server.key
    client_auth:
      verify: on
      ca: {dir}/ca.crt
    routes:
      - match: {{ path_prefix: /videos/ }}
        upstream: app
        allow:
          - cn: [alice, carol]
        signed_urls: {{ key_file: [{keys}], max_ttl: {max_ttl}, bind: {bind} }}
      - match: {{ path_prefix: /private/ }}
        upstream: app
        allow:
          - cn: [carol]
        signed_urls: {{ key_file: [{keys}] }}
      - match: {{ path_prefix: / }}
        upstream: app
upstreams:
  app:
    servers: ["{upstream}"]
"#,
        dir = pki.dir.path().display(),
        max_ttl = setup.max_ttl,
        bind = setup.bind,
    )
}

struct World {
    pki: Pki,
    gw: Gateway,
    up: Arc<Upstream>,
    admin: u16,
    alice: Issued,
    carol: Issued,
}

fn start(setup: Setup) -> World {
    let pki = Pki::new();
    let mut setup = setup;
    if setup.keys.is_empty() {
        setup.keys = vec![url_key(&pki, "url.key")];
    }
    let (addr, up) = start_media_upstream();
    let admin = free_port();
    let gw = start_gateway(&pki, &config(&pki, addr, admin, &setup));
    let alice = client_cert("alice", &pki.ca);
    let carol = client_cert("carol", &pki.ca);
    World {
        pki,
        gw,
        up,
        admin,
        alice,
        carol,
    }
}

impl World {
    fn with_cert(&self, who: &Issued) -> reqwest::Client {
        client(&self.pki, &self.gw, Some((&[who], who)), false)
    }
    fn without_cert(&self, http2: bool) -> reqwest::Client {
        client(&self.pki, &self.gw, None, http2)
    }
    /// Mints over mTLS as `who`; the response status and JSON.
    async fn mint_as(&self, who: &Issued, query: &str) -> (u16, serde_json::Value) {
        let response = self
            .with_cert(who)
            .post(self.gw.url(&format!("/.certgate/sign?{query}")))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        if status == 200 {
            assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
        }
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json)
    }
    async fn mint(&self, query: &str) -> String {
        let (status, json) = self.mint_as(&self.alice, query).await;
        assert_eq!(status, 200, "{json}");
        json["url"].as_str().unwrap().to_string()
    }
    async fn get(&self, url: &str) -> reqwest::Response {
        self.without_cert(false)
            .get(self.gw.url(url))
            .send()
            .await
            .unwrap()
    }
    fn metric(&self, series: &str) -> Option<f64> {
        let out = Command::new("curl")
            .args(["-sS", &format!("http://127.0.0.1:{}/metrics", self.admin)])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
    fn access_log(&self) -> String {
        std::fs::read_to_string(self.pki.path("access.log")).unwrap_or_default()
    }
    /// Rewrites the config and reloads with `certgate reload`; waits for the reload to count.
    async fn reload(&self, setup: &Setup, reloads_before: f64) {
        let addr: SocketAddr = self.up_addr();
        let yaml = config(&self.pki, addr, self.admin, setup)
            .replace("{listen}", &self.gw.addr.to_string());
        let file = self.pki.write("gateway.yaml", &yaml);
        let out = Command::new(bin())
            .args(["-c", file.to_str().unwrap(), "reload", "--pid-file"])
            .arg(
                self.pki
                    .path(&format!("certgate-{}.pid", self.gw.addr.port())),
            )
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.metric("certgate_config_reloads_total{result=\"success\"}")
            != Some(reloads_before + 1.0)
        {
            assert!(Instant::now() < deadline, "reload not counted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    fn up_addr(&self) -> SocketAddr {
        let yaml = std::fs::read_to_string(self.pki.path("gateway.yaml")).unwrap();
        let line = yaml
            .lines()
            .find(|l| l.contains("servers: [\"127.0.0.1:"))
            .unwrap();
        line.split('"').nth(1).unwrap().parse().unwrap()
    }
}

/// Replaces the value of query parameter `name` in `url`.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let (path, query) = url.split_once('?').unwrap();
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((n, _)) if n == name => format!("{n}={value}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

fn param<'a>(url: &'a str, name: &str) -> &'a str {
    url.split_once('?')
        .unwrap()
        .1
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .unwrap()
}

const IDENTITY_HEADERS: &[&str] = &[
    "x-ssl-client-s-dn",
    "x-ssl-client-i-dn",
    "x-ssl-client-serial",
    "x-ssl-client-fingerprint",
    "x-ssl-client-v-start",
    "x-ssl-client-v-end",
    "x-ssl-client-cert",
];

#[tokio::test]
async fn a_signed_url_reaches_the_backend_with_the_minting_identity_and_no_signature() {
    let w = start(Setup::default());

    // The identity headers an mTLS request with alice's certificate produces.
    let direct = w
        .with_cert(&w.alice)
        .get(w.gw.url("/videos/a.mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200);
    let mtls = w.up.last();
    assert_eq!(mtls.header("x-ssl-client-verify"), Some("SUCCESS"));

    let (status, json) = w.mint_as(&w.alice, "path=/videos/a.mp4&ttl=60").await;
    assert_eq!(status, 200, "{json}");
    let url = json["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("/videos/a.mp4?cg_exp="), "{url}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires = json["expires"].as_u64().unwrap();
    assert!((now + 55..=now + 65).contains(&expires), "{json}");
    assert_eq!(
        json["absolute_url"].as_str().unwrap(),
        w.gw.url(&url),
        "the absolute URL names the host the client used"
    );

    let before = w.up.count();
    for http2 in [false, true] {
        let response = w
            .without_cert(http2)
            .get(w.gw.url(&format!("{url}&quality=hd")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.bytes().await.unwrap().len(), FILE_LEN);
        let signed = w.up.last();
        assert_eq!(
            signed.target, "/videos/a.mp4?quality=hd",
            "cg_* parameters are removed, the application's kept"
        );
        assert_eq!(signed.header("x-ssl-client-verify"), Some("SIGNED"));
        for name in IDENTITY_HEADERS {
            assert_eq!(
                signed.header(name),
                mtls.header(name),
                "{name} must be the same as for an mTLS request of the minting certificate"
            );
            assert!(signed.header(name).is_some(), "{name}");
        }
        assert_eq!(
            signed.header("x-ssl-client-s-dn"),
            Some("CN=alice,O=certgate tests")
        );
    }
    assert_eq!(w.up.count(), before + 2);
    assert_eq!(
        w.metric(
            "certgate_signed_url_requests_total{result=\"ok\",route=\"/videos/\",server=\"media\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        w.metric("certgate_signed_url_requests_total{result=\"minted\",route=\"/videos/\",server=\"media\"}"),
        Some(1.0)
    );

    // Every other request on the server still needs a certificate (nginx's 400 page).
    let before = w.up.count();
    for path in ["/videos/a.mp4", "/other", "/other?cg_sig=x"] {
        let response = w.get(path).await;
        assert_eq!(response.status(), 400, "{path}");
        assert!(response
            .text()
            .await
            .unwrap()
            .contains("No required SSL certificate was sent"));
    }
    assert_eq!(w.up.count(), before, "nothing forwarded");

    // The signature never reaches the access log.
    let sig = param(&url, "cg_sig");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !w.access_log().contains("SIGNED ") {
        assert!(Instant::now() < deadline, "{}", w.access_log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = w.access_log();
    assert!(!log.contains(sig), "{log}");
    assert!(!log.contains(param(&url, "cg_id")), "{log}");
    assert!(log.contains("cg_sig=REDACTED"), "{log}");
    assert!(
        log.contains("\"CN=alice,O=certgate tests\" SIGNED"),
        "{log}"
    );
}

#[tokio::test]
async fn range_requests_seek_through_one_signed_url() {
    let w = start(Setup::default());
    let url = w.mint("path=/videos/movie.mp4&ttl=30").await;
    // A player: first the start, then seeks back and forth, then the tail, on one
    // connection and on fresh ones, over HTTP/1.1 and HTTP/2.
    let player = w.without_cert(false);
    let h2 = w.without_cert(true);
    for (client, range) in [
        (&player, "bytes=0-"),
        (&player, "bytes=150000-150999"),
        (&h2, "bytes=1000-1999"),
        (&w.without_cert(false), "bytes=-500"),
        (&h2, "bytes=199999-"),
    ] {
        let response = client
            .get(w.gw.url(&url))
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 206, "{range}");
        assert_eq!(
            w.up.last().header("range"),
            Some(range),
            "Range passes through"
        );
        let content_range = response.headers()["content-range"]
            .to_str()
            .unwrap()
            .to_string();
        let (start, end) = range_of(&content_range);
        let body = response.bytes().await.unwrap();
        assert_eq!(body.len(), end - start + 1, "{range}");
        assert!(
            body.iter()
                .enumerate()
                .all(|(i, b)| *b == file_byte(start + i)),
            "{range}: wrong bytes"
        );
    }
}

fn range_of(content_range: &str) -> (usize, usize) {
    let spec = content_range.strip_prefix("bytes ").unwrap();
    let (range, _) = spec.split_once('/').unwrap();
    let (a, b) = range.split_once('-').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

#[tokio::test]
async fn minting_needs_a_certificate_the_allow_rules_and_a_signed_route() {
    let w = start(Setup::default());
    let before = w.up.count();

    // No certificate: nginx's 400 page.
    let response = w
        .without_cert(false)
        .post(w.gw.url("/.certgate/sign?path=/videos/a.mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // A certificate the route's allow rules refuse.
    let bob = client_cert("bob", &w.pki.ca);
    let (status, json) = w.mint_as(&bob, "path=/videos/a.mp4").await;
    assert_eq!(status, 403, "{json}");
    assert!(json["error"].as_str().unwrap().contains("allow"), "{json}");
    // alice may mint for /videos/ but not for /private/ (carol only).
    assert_eq!(w.mint_as(&w.alice, "path=/private/p.mp4").await.0, 403);
    assert_eq!(w.mint_as(&w.carol, "path=/private/p.mp4").await.0, 200);

    // Paths outside any signed route, TTLs over max_ttl, malformed requests.
    let (status, json) = w.mint_as(&w.alice, "path=/api/x").await;
    assert_eq!(status, 404, "{json}");
    assert!(
        json["error"].as_str().unwrap().contains("no signed_urls"),
        "{json}"
    );
    let (status, json) = w.mint_as(&w.alice, "path=/videos/a.mp4&ttl=301").await;
    assert_eq!(status, 400, "{json}");
    assert!(
        json["error"].as_str().unwrap().contains("max_ttl of 300"),
        "{json}"
    );
    for bad in [
        "",
        "path=videos/a",
        "path=/videos/../api/x",
        "prefix=/videos",
        "path=/videos/a&ttl=x",
    ] {
        assert_eq!(w.mint_as(&w.alice, bad).await.0, 400, "{bad}");
    }
    // Without ttl, the route's max_ttl.
    let (_, json) = w.mint_as(&w.alice, "path=/videos/a.mp4").await;
    assert_eq!(json["ttl"], 300);

    // Minting is a POST.
    let response = w
        .with_cert(&w.alice)
        .get(w.gw.url("/.certgate/sign?path=/videos/a.mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");

    assert_eq!(
        w.up.count(),
        before,
        "minting is answered by certgate, never forwarded"
    );

    // A client certificate that fails verification is refused even with a valid URL.
    let url = w.mint("path=/videos/a.mp4").await;
    let stranger_ca = ca("Stranger CA");
    let stranger = client_cert("alice", &stranger_ca);
    let response = client(&w.pki, &w.gw, Some((&[&stranger], &stranger)), false)
        .get(w.gw.url(&url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("The SSL certificate error"));
    assert_eq!(w.up.count(), before);
}

#[tokio::test]
async fn expired_altered_and_foreign_signatures_are_403_and_never_forwarded() {
    let w = start(Setup::default());
    let url = w.mint("path=/videos/a.mp4&ttl=60").await;
    let short = w.mint("path=/videos/a.mp4&ttl=1").await;
    let carols = {
        let (status, json) = w.mint_as(&w.carol, "path=/videos/a.mp4").await;
        assert_eq!(status, 200);
        json["url"].as_str().unwrap().to_string()
    };
    // One connection, two URLs minted by different certificates: each request carries the
    // identity of its own URL.
    let player = w.without_cert(false);
    for (signed, cn) in [(&url, "alice"), (&carols, "carol"), (&url, "alice")] {
        let response = player.get(w.gw.url(signed)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            w.up.last().header("x-ssl-client-s-dn"),
            Some(format!("CN={cn},O=certgate tests").as_str())
        );
    }
    let before = w.up.count();

    let exp: u64 = param(&url, "cg_exp").parse().unwrap();
    let sig = param(&url, "cg_sig").to_string();
    let mut flipped = sig.clone().into_bytes();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let other_path = url.replacen("/videos/a.mp4", "/videos/b.mp4", 1);
    let cases = [
        ("other path", other_path),
        (
            "later expiry",
            with_param(&url, "cg_exp", &(exp + 10).to_string()),
        ),
        (
            "earlier expiry",
            with_param(&url, "cg_exp", &(exp - 10).to_string()),
        ),
        // carol's certificate with alice's signature: identity swapped.
        (
            "other identity",
            with_param(&url, "cg_id", param(&carols, "cg_id")),
        ),
        ("altered signature", with_param(&url, "cg_sig", &flipped)),
        (
            "truncated signature",
            with_param(&url, "cg_sig", &sig[..20]),
        ),
        ("unknown key", with_param(&url, "cg_kid", "00000000")),
        ("signed as a prefix", format!("{url}&cg_pfx=%2Fvideos%2F")),
        ("repeated parameter", format!("{url}&cg_sig={sig}")),
        (
            "missing expiry",
            url.replacen(&format!("cg_exp={exp}&"), "", 1),
        ),
    ];
    for (what, bad) in &cases {
        let response = w.get(bad).await;
        assert_eq!(response.status(), 403, "{what}: {bad}");
    }

    // A signed URL fetches; it never writes, even to the path it names.
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = w
            .without_cert(false)
            .request(method.clone(), w.gw.url(&url))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{method}");
    }
    let head = w
        .without_cert(false)
        .head(w.gw.url(&url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let before = before + 1;
    assert_eq!(w.up.count(), before, "only the HEAD was forwarded");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(w.get(&short).await.status(), 403, "expired");
    assert_eq!(w.up.count(), before, "none of these was forwarded");
    assert_eq!(
        w.metric("certgate_signed_url_requests_total{result=\"expired\",route=\"/videos/\",server=\"media\"}"),
        Some(1.0)
    );
    assert_eq!(
        w.metric("certgate_signed_url_requests_total{result=\"bad_signature\",route=\"/videos/\",server=\"media\"}"),
        Some(7.0)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !w.access_log().contains("SIGNED_FAILED:expired") {
        assert!(Instant::now() < deadline, "{}", w.access_log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!w.access_log().contains(&sig));

    // A URL signed by another gateway's key (same server name, same path) is refused.
    let other = start(Setup::default());
    let foreign = other.mint("path=/videos/a.mp4").await;
    let before = w.up.count();
    assert_eq!(w.get(&foreign).await.status(), 403);
    assert_eq!(w.up.count(), before);
    assert_eq!(
        w.metric("certgate_signed_url_requests_total{result=\"unknown_key\",route=\"/videos/\",server=\"media\"}"),
        Some(2.0)
    );

    // A URL is checked against the allow rules of the route it is used on: alice's
    // signature for /videos/ does not open /private/ (carol only), even as a prefix.
    let (status, json) = w.mint_as(&w.alice, "prefix=/videos/").await;
    assert_eq!(status, 200, "{json}");
    let prefix_url = json["url"].as_str().unwrap().to_string();
    let query = prefix_url.split_once('?').unwrap().1;
    assert_eq!(
        w.get(&format!("/videos/x/y.mp4?{query}")).await.status(),
        200
    );
    assert_eq!(
        w.get(&format!("/private/p.mp4?{query}")).await.status(),
        403
    );
    assert_eq!(
        w.get(&format!("/videos/%2e%2e/private/p.mp4?{query}"))
            .await
            .status(),
        403
    );
}

#[tokio::test]
async fn a_signed_prefix_opens_nothing_outside_it_by_any_spelling() {
    let w = start(Setup::default());
    let (status, json) = w.mint_as(&w.alice, "prefix=/videos/").await;
    assert_eq!(status, 200, "{json}");
    let url = json["url"].as_str().unwrap().to_string();
    let query = url.split_once('?').unwrap().1;
    // Sent byte for byte (an HTTP client library would resolve the dots itself), without a
    // certificate, over both protocols.
    let ok = format!("/videos/x/../a.mp4?{query}");
    assert_eq!(h1_status(&w.pki, &w.gw, None, &ok).await, 200);
    assert_eq!(h2_status(&w.pki, &w.gw, None, &ok).await, Ok(200));
    assert!(
        w.up.last().target.starts_with("/videos/a.mp4"),
        "{}",
        w.up.last().target
    );
    let before = w.up.count();
    for (spelling, want) in [
        // Normalized to /private/p.mp4 (carol's route; alice's prefix is not under it).
        ("/videos/../private/p.mp4", 403),
        ("/videos/%2e%2e/private/p.mp4", 403),
        ("/videos/.%2E/private/p.mp4", 403),
        ("//videos/../private/p.mp4", 403),
        ("/videos/./../%70rivate/p.mp4", 403),
        // Normalized to /api/x: no signed route, and no certificate.
        ("/videos/../api/x", 400),
        // Refused as spelled.
        ("/videos/..%2fprivate/p.mp4", 400),
        ("/videos%2f..%2fprivate/p.mp4", 400),
        ("/videos/..;/private/p.mp4", 400),
        ("/videos/..\\private/p.mp4", 400),
        ("/videos/%2e%2e/%2e%2e/etc/passwd", 400),
        ("/videos/%c0%ae%c0%ae/private/p.mp4", 400),
        ("/videos/a.mp4%00.html", 400),
    ] {
        let target = format!("{spelling}?{query}");
        assert_eq!(
            h1_status(&w.pki, &w.gw, None, &target).await,
            want,
            "HTTP/1.1 {spelling}"
        );
        assert_eq!(
            h2_status(&w.pki, &w.gw, None, &target).await,
            Ok(want),
            "HTTP/2 {spelling}"
        );
    }
    assert_eq!(w.up.count(), before, "none of these may be forwarded");
}

#[tokio::test]
async fn keys_rotate_by_reload_old_urls_verify_while_their_key_is_listed() {
    let w = start(Setup::default());
    let old_key = path_str(&w.pki.path("url.key"));
    let old_url = w.mint("path=/videos/a.mp4").await;
    let new_key = url_key(&w.pki, "url-2.key");

    // New key first (it signs), old key still listed (it verifies).
    let rotated = Setup {
        keys: vec![new_key.clone(), old_key.clone()],
        ..Setup::default()
    };
    w.reload(&rotated, 0.0).await;
    assert_eq!(w.get(&old_url).await.status(), 200);
    let new_url = w.mint("path=/videos/a.mp4").await;
    assert_ne!(param(&new_url, "cg_kid"), param(&old_url, "cg_kid"));
    assert_eq!(w.get(&new_url).await.status(), 200);

    // A broken key file keeps the running keys.
    std::fs::write(w.pki.path("url-3.key"), "too short\n").unwrap();
    let broken = Setup {
        keys: vec![path_str(&w.pki.path("url-3.key"))],
        ..Setup::default()
    };
    let yaml =
        config(&w.pki, w.up_addr(), w.admin, &broken).replace("{listen}", &w.gw.addr.to_string());
    let file = w.pki.write("gateway.yaml", &yaml);
    let out = Command::new(bin())
        .args(["-c", file.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("signed_urls.key_file[0]") && stderr.contains("at least 32"),
        "{stderr}"
    );
    assert_eq!(w.get(&new_url).await.status(), 200);

    // Old key removed: its URLs are refused, the new key's still work.
    let new_only = Setup {
        keys: vec![new_key],
        ..Setup::default()
    };
    w.reload(&new_only, 1.0).await;
    let before = w.up.count();
    assert_eq!(w.get(&old_url).await.status(), 403);
    assert_eq!(w.up.count(), before);
    assert_eq!(w.get(&new_url).await.status(), 200);
}

#[tokio::test]
async fn bind_client_ip_refuses_the_url_from_another_address() {
    let w = start(Setup {
        bind: "client_ip",
        ..Setup::default()
    });
    let url = w.mint("path=/videos/a.mp4").await;
    assert_eq!(w.get(&url).await.status(), 200, "from the minting address");

    // The same URL from 127.0.0.2 (another loopback address, as another machine would be).
    let from = |ip: &str| {
        reqwest::Client::builder()
            .resolve("localhost", w.gw.addr)
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(w.pki.ca.cert_pem().as_bytes()).unwrap(),
            )
            .local_address(ip.parse::<IpAddr>().unwrap())
            .http1_only()
            .build()
            .unwrap()
    };
    let before = w.up.count();
    let response = from("127.0.0.2").get(w.gw.url(&url)).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(w.up.count(), before);
    let response = from("127.0.0.1").get(w.gw.url(&url)).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[test]
fn signed_urls_need_the_handshake_to_finish_without_a_certificate() {
    let pki = Pki::new();
    let key = url_key(&pki, "url.key");
    let yaml = format!(
        r#"servers:
  - listen: ["127.0.0.1:1"]
    tls: {{ cert: {dir}/server.crt, key: {dir}/server.key }}
    client_auth: {{ verify: on, ca: {dir}/ca.crt, on_failure: handshake }}
    routes:
      - match: {{ path_prefix: / }}
        upstream: app
        signed_urls: {{ key_file: {key} }}
upstreams:
  app: {{ servers: ["127.0.0.1:2"] }}
"#,
        dir = pki.dir.path().display()
    );
    let file = pki.write("gateway.yaml", &yaml);
    let out = Command::new(bin())
        .args(["-c", file.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("servers[0].routes[0].signed_urls")
            && stderr.contains("set on_failure: http"),
        "{stderr}"
    );
}

#[tokio::test]
async fn signature_parameters_do_not_tell_a_client_without_a_certificate_which_paths_exist() {
    let pki = Pki::new();
    let key = url_key(&pki, "url.key");
    let (addr, up) = start_media_upstream();
    let dir = pki.dir.path().display();
    // No catch-all route: /elsewhere matches nothing.
    let yaml = format!(
        r#"servers:
  - name: media
    listen: ["{{listen}}"]
    tls:
      cert: {dir}/server.crt
      key: {dir}/server.key
    client_auth:
      verify: on
      ca: {dir}/ca.crt
    routes:
      - match: {{ path_prefix: /videos/ }}
        upstream: app
        signed_urls: {{ key_file: "{key}" }}
upstreams:
  app:
    servers: ["{addr}"]
"#
    );
    let gw = start_gateway(&pki, &yaml);
    let alice = client_cert("alice", &pki.ca);
    let probe = "/elsewhere/x?cg_exp=9999999999&cg_kid=00000000&cg_id=AA&cg_sig=AA";

    let anonymous = client(&pki, &gw, None, false);
    let response = anonymous.get(gw.url(probe)).send().await.unwrap();
    assert_eq!(
        response.status(),
        400,
        "the 400 page, as without the parameters"
    );
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("No required SSL certificate was sent"));
    // With a certificate the same path is an ordinary 404.
    let verified = client(&pki, &gw, Some((&[&alice], &alice)), false);
    assert_eq!(
        verified.get(gw.url(probe)).send().await.unwrap().status(),
        404
    );
    assert_eq!(up.count(), 0);
}
