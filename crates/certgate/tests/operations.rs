//! Operating the real `certgate` binary: `certgate reload` under continuous load (no request
//! lost, each config takes effect, a broken one is refused and keeps the old), CA rotation
//! by replacing files, the admin listener's metrics, and the SIGTERM drain.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A config whose only route tags requests with `X-Config: {tag}`; `{admin}` is the admin port.
fn tagged_config(pki: &Pki, upstream: std::net::SocketAddr, admin: u16, tag: &str) -> String {
    format!(
        r#"admin:
  listen: 127.0.0.1:{admin}
log:
  access: {dir}/access.log
  format: json
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
        headers: {{ X-Config: {tag} }}
upstreams:
  app:
    servers: ["{upstream}"]
"#,
        dir = pki.dir.path().display()
    )
}

/// Rewrites the config file in place (as an operator would) and runs `certgate reload`.
fn write_and_reload(pki: &Pki, gw: &Gateway, yaml: &str) -> std::process::Output {
    let config = pki.write(
        "gateway.yaml",
        &yaml.replace("{listen}", &gw.addr.to_string()),
    );
    Command::new(bin())
        .args(["-c", config.to_str().unwrap(), "reload", "--pid-file"])
        .arg(pki.path(&format!("certgate-{}.pid", gw.addr.port())))
        .output()
        .unwrap()
}

fn metrics(admin: u16) -> String {
    let out = Command::new("curl")
        .args(["-sS", &format!("http://127.0.0.1:{admin}/metrics")])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// The value of one sample line (`name{labels} value`), exact label text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_under_continuous_load_loses_no_request() {
    let pki = Pki::new();
    let alice = client_cert("alice", &pki.ca);
    let (upstream, seen) = start_upstream();
    let admin = free_port();
    let config_a = tagged_config(&pki, upstream, admin, "a");
    let config_b = tagged_config(&pki, upstream, admin, "b");
    let gw = start_gateway(&pki, &config_a);

    const CLIENTS: usize = 6;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        // Half keep connections alive across reloads, half over HTTP/2.
        let client = client(&pki, &gw, Some((&[&alice], &alice)), i % 2 == 0);
        let url = gw.url(&format!("/load/{i}"));
        let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => match r.text().await {
                        Ok(body) if body == "upstream ok" => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures.lock().unwrap().push(format!("body: {other:?}")),
                    },
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("status {}", r.status())),
                    Err(e) => failures.lock().unwrap().push(format!("error: {e:?}")),
                }
            }
        }));
    }

    wait_until("the load reaches the upstream", || seen.count() > 20).await;
    for round in 0..20 {
        let (yaml, tag) = if round % 2 == 0 {
            (&config_b, "b")
        } else {
            (&config_a, "a")
        };
        let out = write_and_reload(&pki, &gw, yaml);
        assert!(out.status.success(), "reload {round} failed: {out:?}");
        // Every request sent after the swap carries the new header.
        let before = seen.count();
        wait_until(
            &format!("config {tag} takes effect (round {round})"),
            || seen.count() > before + CLIENTS && seen.header("x-config").as_deref() == Some(tag),
        )
        .await;
    }

    // A broken config: `certgate reload` prints the located error and signals nothing.
    let broken = config_a.replace("upstream: app\n", "upstream: app\n        bogus: 1\n");
    let out = write_and_reload(&pki, &gw, &broken);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gateway.yaml:") && stderr.contains("bogus"),
        "{stderr}"
    );
    // Signalled directly (as `kill -HUP` would), the gateway refuses it and keeps serving.
    let pid = gw.child.id() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_until("the broken reload is counted", || {
        sample(
            &metrics(admin),
            "certgate_config_reloads_total{result=\"failure\"}",
        ) == Some(1.0)
    })
    .await;
    let before = ok.load(Ordering::Relaxed);
    wait_until("requests keep flowing on the old config", || {
        ok.load(Ordering::Relaxed) > before + 50
    })
    .await;
    assert_eq!(seen.header("x-config").as_deref(), Some("a"));

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across 20 reloads: {:?}\n{}",
        failures.len(),
        failures.len() + ok.load(Ordering::Relaxed),
        &failures[..failures.len().min(10)],
        gw.log()
    );
    let text = metrics(admin);
    assert_eq!(
        sample(&text, "certgate_config_reloads_total{result=\"success\"}"),
        Some(20.0)
    );
    let served = sample(
        &text,
        "certgate_requests_total{code=\"200\",route=\"/\",server=\"api\"}",
    )
    .unwrap_or(0.0);
    assert!(served >= ok.load(Ordering::Relaxed) as f64, "{text}");
    assert!(
        gw.log().contains("gateway.yaml:"),
        "the failed reload is logged with its location:\n{}",
        gw.log()
    );
}

#[tokio::test]
async fn ca_rotation_refuses_old_clients_on_new_connections() {
    let pki = Pki::new();
    let old_client = client_cert("old-client", &pki.ca);
    let new_ca = ca("Rotated Root CA");
    let new_client = client_cert("new-client", &new_ca);
    let (upstream, _seen) = start_upstream();
    let admin = free_port();
    let config = tagged_config(&pki, upstream, admin, "x");
    let gw = start_gateway(&pki, &config);

    let old = client(&pki, &gw, Some((&[&old_client], &old_client)), false);
    assert_eq!(old.get(gw.url("/")).send().await.unwrap().status(), 200);

    // Rotation as an operator does it: replace the file, reload.
    pki.write("ca.crt", &new_ca.cert_pem());
    let out = write_and_reload(&pki, &gw, &config);
    assert!(out.status.success(), "{out:?}");
    wait_until("the reload is counted", || {
        sample(
            &metrics(admin),
            "certgate_config_reloads_total{result=\"success\"}",
        ) == Some(1.0)
    })
    .await;

    // Fresh clients: new connections, new handshakes.
    let old = client(&pki, &gw, Some((&[&old_client], &old_client)), false);
    let refused = old.get(gw.url("/")).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("The SSL certificate error"));
    let new = client(&pki, &gw, Some((&[&new_client], &new_client)), false);
    assert_eq!(new.get(gw.url("/")).send().await.unwrap().status(), 200);

    let text = metrics(admin);
    assert!(
        text.contains("certgate_client_cert_verifications_total{reason=\"unable to verify the first certificate\",result=\"failure\",server=\"api\"} 1"),
        "{text}"
    );
    // The expiry gauge now shows the new CA only.
    assert!(
        text.contains(
            "kind=\"client_ca\",server=\"api\",subject=\"O=certgate tests, CN=Rotated Root CA\""
        ),
        "{text}"
    );
    assert!(!text.contains("CN=Test Root CA\"}"), "{text}");
}

type ClientTls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Sends `GET /` on `conn` and returns what one read brings back (empty if the connection
/// was closed).
async fn get_root(conn: &mut ClientTls) -> String {
    conn.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 4096];
    let n = conn.read(&mut answer).await.unwrap_or(0);
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

/// An HTTP/1.1 connection on which `GET /` has been answered 200, left open.
async fn answered_keepalive_connection(pki: &Pki, gw: &Gateway, cert: &Issued) -> ClientTls {
    let mut conn = tls_connect(pki, gw, cert).await;
    let answer = get_root(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    conn
}

/// A gateway with `keepalive_timeout` set, and a client certificate it accepts.
fn gateway_with_keepalive_timeout(timeout: &str) -> (Pki, Issued, Gateway) {
    let pki = Pki::new();
    let alice = client_cert("alice", &pki.ca);
    let (upstream, _seen) = start_upstream();
    let admin = free_port();
    let yaml = format!(
        "keepalive_timeout: {timeout}\n{}",
        tagged_config(&pki, upstream, admin, "x")
    );
    let gw = start_gateway(&pki, &yaml);
    (pki, alice, gw)
}

#[tokio::test]
async fn sigterm_lets_requests_in_flight_finish_then_exits_zero() {
    let pki = Pki::new();
    let alice = client_cert("alice", &pki.ca);
    let (upstream, _seen) = start_upstream();
    let admin = free_port();
    let yaml = format!(
        "shutdown_grace: 20s\n{}",
        tagged_config(&pki, upstream, admin, "x")
    )
    .replace(
        "upstream: app\n        headers",
        "upstream: app\n        timeouts: { read: 10s }\n        headers",
    );
    let mut gw = start_gateway(&pki, &yaml);
    let c = client(&pki, &gw, Some((&[&alice], &alice)), false);
    // The test upstream answers /slow after 3 seconds.
    let slow = tokio::spawn({
        let c = c.clone();
        let url = gw.url("/slow");
        async move { c.get(url).send().await?.text().await }
    });
    wait_until("the slow request is in flight", || {
        sample(&metrics(admin), "certgate_requests_in_flight") == Some(1.0)
    })
    .await;
    // A keep-alive connection that has been answered and now sits idle.
    let mut idle = answered_keepalive_connection(&pki, &gw, &alice).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gw.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // From the signal on: not ready (the admin listener closes too), and new connections
    // are not served.
    wait_until("readyz stops answering ready", || {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://127.0.0.1:{admin}/readyz"))
            .output()
            .unwrap();
        out.stdout != b"200"
    })
    .await;
    // The idle keep-alive connection is closed at once, as nginx closes them, while the
    // request in flight still runs.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), idle.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the idle keep-alive connection stayed open after SIGTERM"
    );
    assert!(
        !slow.is_finished(),
        "the slow request ended before the check"
    );
    let fresh = client(&pki, &gw, Some((&[&alice], &alice)), false);
    assert!(
        fresh.get(gw.url("/")).send().await.is_err(),
        "a new connection was served after SIGTERM"
    );
    let body = slow
        .await
        .unwrap()
        .expect("the request in flight completes");
    assert_eq!(body, "upstream ok");
    let status = tokio::task::spawn_blocking(move || {
        let status = gw.child.wait();
        (status, gw)
    })
    .await
    .unwrap();
    assert_eq!(status.0.unwrap().code(), Some(0), "{}", status.1.log());
}

#[tokio::test]
async fn idle_client_connections_close_after_keepalive_timeout() {
    let (pki, alice, gw) = gateway_with_keepalive_timeout("1s");

    // HTTP/1.1: answered, then idle.
    let mut h1 = answered_keepalive_connection(&pki, &gw, &alice).await;

    // HTTP/2: the connection preface and SETTINGS, then no stream at all.
    let mut h2 = tls_connect_alpn(&pki, &gw, &alice, b"h2").await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();

    // Both are closed by the gateway soon after the timeout; without one they stay open.
    let started = Instant::now();
    let mut rest = Vec::new();
    let h1_closed = tokio::time::timeout(Duration::from_secs(10), h1.read_to_end(&mut rest)).await;
    assert!(
        h1_closed.is_ok(),
        "the idle HTTP/1.1 connection stayed open"
    );
    let h2_closed = tokio::time::timeout(Duration::from_secs(10), h2.read_to_end(&mut rest)).await;
    assert!(h2_closed.is_ok(), "the idle HTTP/2 connection stayed open");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed before the timeout"
    );
}

#[tokio::test]
async fn keepalive_timeout_counts_from_the_last_answer() {
    let (pki, alice, gw) = gateway_with_keepalive_timeout("3s");

    // Answered at ~0 s, ~2 s and ~4 s: each wait is shorter than 3 s, though the last
    // request comes after 3 s counted from the first answer.
    let mut conn = answered_keepalive_connection(&pki, &gw, &alice).await;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let answer = get_root(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "answer: {answer:?}");
    }
    // Then idle: closed by the gateway.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection stayed open");
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_request_is_a_499_not_an_error() {
    let pki = Pki::new();
    let alice = client_cert("alice", &pki.ca);
    let (upstream, _seen) = start_upstream();
    let admin = free_port();
    let gw = start_gateway(&pki, &tagged_config(&pki, upstream, admin, "x"));
    // The test upstream answers /slow after 3 seconds; the client leaves before that.
    let mut conn = tls_connect(&pki, &gw, &alice).await;
    conn.write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    wait_until("the slow request is in flight", || {
        sample(&metrics(admin), "certgate_requests_in_flight") == Some(1.0)
    })
    .await;
    drop(conn);
    wait_until("the abandoned request is counted", || {
        sample(
            &metrics(admin),
            r#"certgate_requests_total{code="499",route="/",server="api"}"#,
        ) == Some(1.0)
    })
    .await;
    let access = pki.path("access.log");
    wait_until("the access log has the request", || {
        std::fs::read_to_string(&access).is_ok_and(|log| log.contains("/slow"))
    })
    .await;
    let line = std::fs::read_to_string(&access).unwrap();
    assert!(line.contains(r#""status":499"#), "{line}");
    // As in nginx, a client going away is not logged as an error of the gateway.
    let log = gw.log();
    assert!(!log.contains("ERROR"), "{log}");
}

#[tokio::test]
async fn handshake_refusals_are_counted_with_openssl_reason() {
    let pki = Pki::new();
    let stranger_ca = ca("Stranger CA");
    let stranger = client_cert("stranger", &stranger_ca);
    let (upstream, seen) = start_upstream();
    let admin = free_port();
    let yaml = tagged_config(&pki, upstream, admin, "x").replace(
        "      verify: on\n",
        "      verify: on\n      on_failure: handshake\n",
    );
    let gw = start_gateway(&pki, &yaml);
    let c = client(&pki, &gw, Some((&[&stranger], &stranger)), false);
    assert!(c.get(gw.url("/")).send().await.is_err());
    assert_eq!(seen.count(), 0);
    let text = metrics(admin);
    assert_eq!(
        sample(
            &text,
            "certgate_tls_handshakes_total{result=\"failure\",server=\"api\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.contains("certgate_client_cert_verifications_total{reason=\"unable to verify the first certificate\",result=\"failure\",server=\"api\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn listen_change_needs_a_restart_and_keeps_serving() {
    let pki = Pki::new();
    let alice = client_cert("alice", &pki.ca);
    let (upstream, _seen) = start_upstream();
    let admin = free_port();
    let yaml = tagged_config(&pki, upstream, admin, "x");
    let gw = start_gateway(&pki, &yaml);
    let moved = yaml.replace("{listen}", &format!("127.0.0.1:{}", free_port()));
    // The file itself is valid, so `certgate reload` signals; the gateway refuses the
    // change, and `certgate reload` reports that answer.
    let out = write_and_reload(&pki, &gw, &moved);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("restart certgate"), "{stderr}");
    wait_until("the refused reload is counted", || {
        sample(
            &metrics(admin),
            "certgate_config_reloads_total{result=\"failure\"}",
        ) == Some(1.0)
    })
    .await;
    assert!(gw.log().contains("restart certgate"), "{}", gw.log());
    let c = client(&pki, &gw, Some((&[&alice], &alice)), false);
    assert_eq!(c.get(gw.url("/")).send().await.unwrap().status(), 200);
}
