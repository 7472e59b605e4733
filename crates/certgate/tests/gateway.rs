//! The real `certgate` binary over real TLS on 127.0.0.1, in front of a real hyper
//! upstream, with a PKI generated at test time: verification modes, failure pages,
//! identity headers, anti-spoofing, forwarding headers, HTTP/2, errors and streaming.

mod common;

use common::*;

const VERIFY_ON: &str = "      verify: on\n      ca: {dir}/ca.crt\n";

fn auth(pki: &Pki, text: &str) -> String {
    text.replace("{dir}", &pki.dir.path().display().to_string())
}

#[tokio::test]
async fn verified_client_reaches_upstream_with_identity_headers() {
    let pki = Pki::new();
    let (upstream, seen) = start_upstream();
    let gw = start_gateway(
        &pki,
        &base_config(&pki, upstream, &auth(&pki, VERIFY_ON), ""),
    );
    let alice = client_cert("alice", &pki.ca);

    let response = client(&pki, &gw, Some((&[&alice], &alice)), false)
        .get(gw.url("/hello"))
        .header("X-SSL-Client-Verify", "SUCCESS-spoofed")
        .header("X-SSL-Client-S-DN", "CN=admin")
        .header("X-Forwarded-Client-Cert", "By=evil")
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gw.log());
    assert_eq!(response.text().await.unwrap(), "upstream ok");
    assert_eq!(seen.count(), 1);
    assert_eq!(
        seen.headers_named("x-ssl-client-verify"),
        vec!["SUCCESS".to_string()]
    );
    assert_eq!(
        seen.headers_named("x-ssl-client-s-dn"),
        vec!["CN=alice,O=certgate tests".to_string()]
    );
    assert_eq!(
        seen.header("x-ssl-client-i-dn").as_deref(),
        Some("CN=Test Root CA,O=certgate tests")
    );
    assert!(
        seen.header("x-forwarded-client-cert").is_none(),
        "spoofed XFCC must be removed"
    );
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(seen.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    let escaped = seen.header("x-ssl-client-cert").unwrap();
    assert!(
        escaped.starts_with("-----BEGIN%20CERTIFICATE-----%0A"),
        "{escaped}"
    );
    let fingerprint = seen.header("x-ssl-client-fingerprint").unwrap();
    assert_eq!(fingerprint.len(), 40);
}

#[tokio::test]
async fn missing_certificate_gets_nginx_400_and_nothing_is_forwarded() {
    let pki = Pki::new();
    let (upstream, seen) = start_upstream();
    let gw = start_gateway(
        &pki,
        &base_config(&pki, upstream, &auth(&pki, VERIFY_ON), ""),
    );

    let response = client(&pki, &gw, None, false)
        .get(gw.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("<title>400 No required SSL certificate was sent</title>"),
        "{body}"
    );
    assert_eq!(
        seen.count(),
        0,
        "a rejected request must never reach the upstream"
    );
}

#[tokio::test]
async fn certificate_from_another_ca_gets_ssl_certificate_error() {
    let pki = Pki::new();
    let (upstream, seen) = start_upstream();
    let gw = start_gateway(
        &pki,
        &base_config(&pki, upstream, &auth(&pki, VERIFY_ON), ""),
    );
    let other_ca = ca("Other CA");
    let mallory = client_cert("mallory", &other_ca);

    for http2 in [false, true] {
        let response = client(&pki, &gw, Some((&[&mallory], &mallory)), http2)
            .post(gw.url("/"))
            .body("secret payload")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let body = response.text().await.unwrap();
        assert!(
            body.contains("<title>400 The SSL certificate error</title>"),
            "{body}"
        );
    }
    assert_eq!(seen.count(), 0);
}

#[tokio::test]
async fn verify_depth_counts_intermediates_like_openssl() {
    let pki = Pki::new();
    let (upstream, seen) = start_upstream();
    let int1 = intermediate("Intermediate 1", &pki.ca);
    let int2 = intermediate("Intermediate 2", &int1);
    let one_deep = client_cert("one-deep", &int1);
    let two_deep = client_cert("two-deep", &int2);

    // Default verify_depth 1: one intermediate passes, two do not.
    let gw = start_gateway(
        &pki,
        &base_config(&pki, upstream, &auth(&pki, VERIFY_ON), ""),
    );
    let ok = client(&pki, &gw, Some((&[&one_deep, &int1], &one_deep)), false)
        .get(gw.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "{}", gw.log());
    let too_deep = client(
        &pki,
        &gw,
        Some((&[&two_deep, &int2, &int1], &two_deep)),
        false,
    )
    .get(gw.url("/"))
    .send()
    .await
    .unwrap();
    assert_eq!(too_deep.status(), 400);
    assert_eq!(seen.count(), 1);
    drop(gw);

    // verify_depth 0: only certificates issued directly by the CA.
    let depth0 = auth(
        &pki,
        "      verify: on\n      ca: {dir}/ca.crt\n      verify_depth: 0\n",
    );
    let gw = start_gateway(&pki, &base_config(&pki, upstream, &depth0, ""));
    let refused = client(&pki, &gw, Some((&[&one_deep, &int1], &one_deep)), false)
        .get(gw.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(seen.count(), 1);

    // verify_depth 2 accepts the two-intermediate chain.
    drop(gw);
    let depth2 = auth(
        &pki,
        "      verify: on\n      ca: {dir}/ca.crt\n      verify_depth: 2\n",
    );
    let gw = start_gateway(&pki, &base_config(&pki, upstream, &depth2, ""));
    let accepted = client(
        &pki,
        &gw,
        Some((&[&two_deep, &int2, &int1], &two_deep)),
        false,
    )
    .get(gw.url("/"))
    .send()
    .await
    .unwrap();
    assert_eq!(accepted.status(), 200);
    assert_eq!(seen.count(), 2);
}

#[tokio::test]
async fn optional_modes_forward_the_verification_result() {
    let pki = Pki::new();
    let (upstream, seen) = start_upstream();
    let optional = auth(&pki, "      verify: optional\n      ca: {dir}/ca.crt\n");
    let route_private = "      - match: { path_prefix: /private }\n        upstream: app\n        require_client_cert: true\n";
    let gw = start_gateway(&pki, &base_config(&pki, upstream, &optional, route_private));

    let response = client(&pki, &gw, None, false)
        .get(gw.url("/open"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(seen.header("x-ssl-client-verify").as_deref(), Some("NONE"));
    assert!(
        seen.header("x-ssl-client-s-dn").is_none(),
        "empty identity values are not sent, as nginx omits them"
    );

    // Under `optional`, a route marked `require_client_cert` refuses the anonymous caller.
    let refused = client(&pki, &gw, None, false)
        .get(gw.url("/private"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(seen.count(), 1);

    // A certificate that does not verify is still refused under `optional`, as nginx does.
    let other_ca = ca("Other CA");
    let stranger = client_cert("stranger", &other_ca);
    let refused = client(&pki, &gw, Some((&[&stranger], &stranger)), false)
        .get(gw.url("/open"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(seen.count(), 1);
    drop(gw);

    // `optional_no_ca` forwards it, with the reason, for the backend to decide.
    let no_ca = auth(
        &pki,
        "      verify: optional_no_ca\n      ca: {dir}/ca.crt\n",
    );
    let gw = start_gateway(&pki, &base_config(&pki, upstream, &no_ca, ""));
    let forwarded = client(&pki, &gw, Some((&[&stranger], &stranger)), false)
        .get(gw.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 200);
    assert_eq!(
        seen.header("x-ssl-client-verify").as_deref(),
        Some("FAILED:unable to verify the first certificate")
    );
    assert_eq!(
        seen.header("x-ssl-client-s-dn").as_deref(),
        Some("CN=stranger,O=certgate tests")
    );
    assert_eq!(seen.count(), 2);

    // ... but not a certificate that is expired: only "issuer not trusted" passes, as in nginx.
    let expired = client_cert_with("late", &pki.ca, |params| {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let refused = client(&pki, &gw, Some((&[&expired], &expired)), false)
        .get(gw.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("The SSL certificate error"));
    assert_eq!(seen.count(), 2);
}

#[tokio::test]
async fn handshake_failure_mode_refuses_in_tls() {
    let pki = Pki::new();
    let (upstream, seen) = start_upstream();
    let handshake = auth(
        &pki,
        "      verify: on\n      ca: {dir}/ca.crt\n      on_failure: handshake\n",
    );
    let gw = start_gateway(&pki, &base_config(&pki, upstream, &handshake, ""));
    let err = client(&pki, &gw, None, false).get(gw.url("/")).send().await;
    assert!(
        err.is_err(),
        "the handshake must fail without a certificate"
    );
    let other_ca = ca("Other CA");
    let stranger = client_cert("stranger", &other_ca);
    let err = client(&pki, &gw, Some((&[&stranger], &stranger)), false)
        .get(gw.url("/"))
        .send()
        .await;
    assert!(err.is_err(), "the handshake must fail for an unknown CA");
    let alice = client_cert("alice", &pki.ca);
    let ok = client(&pki, &gw, Some((&[&alice], &alice)), false)
        .get(gw.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(seen.count(), 1);
}

#[tokio::test]
async fn allow_rules_answer_403() {
    let pki = Pki::new();
    let (upstream, seen) = start_upstream();
    let route = "      - match: { path_prefix: /admin }\n        upstream: app\n        allow:\n          - cn: [root-operator]\n";
    let gw = start_gateway(
        &pki,
        &base_config(&pki, upstream, &auth(&pki, VERIFY_ON), route),
    );
    let alice = client_cert("alice", &pki.ca);
    let operator = client_cert("root-operator", &pki.ca);
    let denied = client(&pki, &gw, Some((&[&alice], &alice)), false)
        .get(gw.url("/admin/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    assert_eq!(seen.count(), 0);
    let allowed = client(&pki, &gw, Some((&[&operator], &operator)), false)
        .get(gw.url("/admin/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(seen.count(), 1);
}

#[tokio::test]
async fn http2_client_reaches_http1_upstream() {
    let pki = Pki::new();
    let (upstream, seen) = start_upstream();
    let gw = start_gateway(
        &pki,
        &base_config(&pki, upstream, &auth(&pki, VERIFY_ON), ""),
    );
    let alice = client_cert("alice", &pki.ca);
    let http = client(&pki, &gw, Some((&[&alice], &alice)), true);
    for _ in 0..3 {
        let response = http.get(gw.url("/h2")).send().await.unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
    }
    assert_eq!(seen.count(), 3);
    assert_eq!(
        seen.header("x-ssl-client-s-dn").as_deref(),
        Some("CN=alice,O=certgate tests")
    );
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_upstream_is_504() {
    let pki = Pki::new();
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gw = start_gateway(&pki, &base_config(&pki, dead, &auth(&pki, VERIFY_ON), ""));
    let alice = client_cert("alice", &pki.ca);
    let response = client(&pki, &gw, Some((&[&alice], &alice)), false)
        .get(gw.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    drop(gw);

    let (upstream, _seen) = start_upstream();
    let gw = start_gateway(
        &pki,
        &base_config(&pki, upstream, &auth(&pki, VERIFY_ON), ""),
    );
    let response = client(&pki, &gw, Some((&[&alice], &alice)), false)
        .get(gw.url("/slow"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
}

#[tokio::test]
async fn bodies_stream_in_both_directions() {
    let pki = Pki::new();
    let (upstream, _seen) = start_upstream();
    let unlimited = "      - match: { path_prefix: /upload }\n        upstream: app\n        max_body_size: 0\n";
    let gw = start_gateway(
        &pki,
        &base_config(&pki, upstream, &auth(&pki, VERIFY_ON), unlimited),
    );
    let alice = client_cert("alice", &pki.ca);
    let http = client(&pki, &gw, Some((&[&alice], &alice)), false);

    let size = 8 * 1024 * 1024 + 17;
    let body = http
        .get(gw.url(&format!("/bytes/{size}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len(), size);
    assert!(
        body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
        "download must be byte-exact"
    );

    let upload: Vec<u8> = (0..5_000_000u32).map(|i| (i % 253) as u8).collect();
    let sum: u64 = upload.iter().map(|b| *b as u64).sum();
    let echoed = http
        .post(gw.url("/upload"))
        .body(upload)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(echoed, format!("5000000 {sum}"));
}

#[tokio::test]
async fn max_body_size_defaults_to_nginx_one_megabyte() {
    let pki = Pki::new();
    let (upstream, seen) = start_upstream();
    let gw = start_gateway(
        &pki,
        &base_config(&pki, upstream, &auth(&pki, VERIFY_ON), ""),
    );
    let alice = client_cert("alice", &pki.ca);
    let response = client(&pki, &gw, Some((&[&alice], &alice)), false)
        .post(gw.url("/upload"))
        .body(vec![0u8; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(seen.count(), 0);
}

#[test]
fn check_reports_located_errors_and_success() {
    let pki = Pki::new();
    let good = pki.write(
        "good.yaml",
        &base_config(
            &pki,
            "127.0.0.1:5000".parse().unwrap(),
            &auth(&pki, VERIFY_ON),
            "",
        )
        .replace("{listen}", "127.0.0.1:18443"),
    );
    let out = std::process::Command::new(bin())
        .args(["-c", good.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("test is successful"), "{stdout}");

    let bad_depth = pki.write(
        "bad.yaml",
        &base_config(
            &pki,
            "127.0.0.1:5000".parse().unwrap(),
            &auth(
                &pki,
                "      verify: on\n      ca: {dir}/ca.crt\n      verify_depth: deep\n",
            ),
            "",
        )
        .replace("{listen}", "127.0.0.1:18443"),
    );
    let out = std::process::Command::new(bin())
        .args(["check", "-c", bad_depth.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.yaml:10:"), "{stderr}");
    assert!(
        stderr.contains("servers[0].client_auth.verify_depth"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let missing_key = pki.write(
        "missing.yaml",
        &base_config(
            &pki,
            "127.0.0.1:5000".parse().unwrap(),
            &auth(&pki, VERIFY_ON),
            "",
        )
        .replace("{listen}", "127.0.0.1:18443")
        .replace("server.key", "nope.key"),
    );
    let out = std::process::Command::new(bin())
        .args(["check", "-c", missing_key.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("servers[0].tls.key") && stderr.contains("nope.key"),
        "{stderr}"
    );

    // A key that belongs to another certificate.
    let other = client_cert("other", &pki.ca);
    pki.write("other.key", &other.key_pem());
    let mismatch = pki.write(
        "mismatch.yaml",
        &base_config(
            &pki,
            "127.0.0.1:5000".parse().unwrap(),
            &auth(&pki, VERIFY_ON),
            "",
        )
        .replace("{listen}", "127.0.0.1:18443")
        .replace("server.key", "other.key"),
    );
    let out = std::process::Command::new(bin())
        .args(["check", "-c", mismatch.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not match"), "{stderr}");
}

#[tokio::test]
async fn consistent_hash_keeps_a_caller_on_one_server() {
    let pki = Pki::new();
    let (first, seen_first) = start_upstream();
    let (second, seen_second) = start_upstream();
    let yaml = base_config(&pki, first, &auth(&pki, VERIFY_ON), "").replace(
        &format!("    servers: [\"{first}\"]\n"),
        &format!("    servers: [\"{first}\", \"{second}\"]\n    lb: consistent_hash\n"),
    );
    assert!(yaml.contains("consistent_hash"), "{yaml}");
    let gw = start_gateway(&pki, &yaml);
    // Fingerprints come from fresh random keys, so which server a caller lands on is a coin
    // toss: keep adding callers until both servers have one (20 all on one side is 1 in
    // 2^19), and every caller must stay on its server for all of its requests.
    let mut reached = Vec::new();
    for n in 0..20 {
        let cn = format!("caller-{n}");
        let cert = client_cert(&cn, &pki.ca);
        let http = client(&pki, &gw, Some((&[&cert], &cert)), false);
        let before = (seen_first.count(), seen_second.count());
        for _ in 0..5 {
            assert_eq!(http.get(gw.url("/")).send().await.unwrap().status(), 200);
        }
        let after = (seen_first.count(), seen_second.count());
        let delta = (after.0 - before.0, after.1 - before.1);
        assert!(
            delta == (5, 0) || delta == (0, 5),
            "{cn} was spread over servers: {delta:?}"
        );
        reached.push(delta.0 == 5);
        if reached.iter().any(|r| *r) && reached.iter().any(|r| !*r) {
            break;
        }
    }
    assert!(
        reached.iter().any(|r| *r) && reached.iter().any(|r| !*r),
        "{reached:?}"
    );
}

#[tokio::test]
async fn health_checks_take_a_dead_server_out_of_rotation() {
    let pki = Pki::new();
    let (alive, seen) = start_upstream();
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let yaml = base_config(&pki, alive, &auth(&pki, VERIFY_ON), "").replace(
        &format!("    servers: [\"{alive}\"]\n"),
        &format!("    servers: [\"{alive}\", \"{dead}\"]\n    health_check: {{ type: tcp, interval: 1s }}\n"),
    );
    let gw = start_gateway(&pki, &yaml);
    let alice = client_cert("alice", &pki.ca);
    let http = client(&pki, &gw, Some((&[&alice], &alice)), false);
    // The first check runs at start; give it a moment to mark the dead server down.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    for _ in 0..10 {
        assert_eq!(http.get(gw.url("/")).send().await.unwrap().status(), 200);
    }
    assert_eq!(seen.count(), 10);
}
