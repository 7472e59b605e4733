//! The rule kinds `certgate import-nginx` writes for nginx's `$ssl_client_*` checks
//! (`subject_regex`, `issuer_regex`, `issuer`, `fingerprint_sha1`, `serial`,
//! `verified`), `deny` lists and `deny_all`, judged by the real binary over real TLS with
//! certificates generated here: who reaches the upstream, and the status the others get.

mod common;

use common::*;

/// A client certificate chain and the certificate whose key signs.
type Caller<'a> = (&'a [&'a Issued], &'a Issued);

/// One server under `verify: optional`, so that callers without a certificate reach the
/// routes and each route's own rules decide.
fn config(pki: &Pki, upstream: std::net::SocketAddr, routes: &str) -> String {
    let dir = pki.dir.path().display();
    let client_auth = format!("      verify: optional\n      ca: {dir}/ca.crt\n");
    base_config(pki, upstream, &client_auth, routes)
}

fn route(prefix: &str, rules: &str) -> String {
    format!("      - match: {{ path_prefix: {prefix} }}\n        upstream: app\n{rules}")
}

async fn status(pki: &Pki, gw: &Gateway, who: Option<(&[&Issued], &Issued)>, path: &str) -> u16 {
    client(pki, gw, who, false)
        .get(gw.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn nginx_style_rules_allow_and_refuse_real_certificates() {
    let pki = Pki::new();
    let (upstream, seen) = start_upstream();
    let ops_ca = intermediate("Ops Intermediate", &pki.ca);
    let alice = client_cert("alice", &pki.ca);
    let admin = client_cert("Admin-7", &pki.ca);
    let mallory = client_cert("mallory", &pki.ca);
    let via_ops = client_cert("carol", &ops_ca);
    let numbered = client_cert_with("dave", &pki.ca, |p| {
        p.serial_number = Some(rcgen::SerialNumber::from(vec![0x0a, 0x1b, 0xff]));
    });
    // $ssl_client_fingerprint as nginx prints it: lower-case SHA-1 of the DER.
    let alice_sha1 = certgate_identity::ClientCert::from_chain(&[alice.cert.der().as_ref()])
        .unwrap()
        .fingerprint_sha1_hex()
        .to_string();
    assert_eq!(alice_sha1.len(), 40);

    let routes = [
        // nginx: if ($ssl_client_s_dn !~* "cn=admin-[0-9]+") { return 403; }
        route(
            "/regex/",
            "        allow:\n          - subject_regex: [\"(?i)cn=admin-[0-9]+,\"]\n",
        ),
        // if ($ssl_client_i_dn !~ "^CN=Ops Intermediate,") { return 403; }
        route(
            "/issuer-regex/",
            "        allow:\n          - issuer_regex: \"^CN=Ops Intermediate,\"\n",
        ),
        // if ($ssl_client_i_dn != "CN=Test Root CA,O=certgate tests") { return 403; }
        route(
            "/issuer/",
            "        allow:\n          - issuer: \"CN=Test Root CA,O=certgate tests\"\n",
        ),
        route(
            "/sha1/",
            &format!(
                "        allow:\n          - fingerprint_sha1: [\"{}\"]\n",
                alice_sha1.to_ascii_uppercase()
            ),
        ),
        // $ssl_client_serial prints 0A1BFF; written with colons and lower case here.
        route(
            "/serial/",
            "        allow:\n          - serial: [\"0a:1b:ff\"]\n",
        ),
        // if ($ssl_client_s_dn ~ "CN=mallory") { return 403; }
        route(
            "/deny/",
            "        deny:\n          - subject_regex: [\"CN=mallory\"]\n",
        ),
        // if ($ssl_client_verify != SUCCESS) { return 403; }
        route("/verified/", "        allow:\n          - verified: true\n"),
        route("/closed/", "        deny_all: true\n"),
    ]
    .concat();
    let gw = start_gateway(&pki, &config(&pki, upstream, &routes));

    let alice_id: (&[&Issued], &Issued) = (&[&alice], &alice);
    let admin_id: (&[&Issued], &Issued) = (&[&admin], &admin);
    let mallory_id: (&[&Issued], &Issued) = (&[&mallory], &mallory);
    let via_ops_id: (&[&Issued], &Issued) = (&[&via_ops, &ops_ca], &via_ops);
    let numbered_id: (&[&Issued], &Issued) = (&[&numbered], &numbered);

    // (path, caller, expected status): 200 reached the upstream, 403 refused by the route.
    let cases: Vec<(&str, Option<Caller>, u16)> = vec![
        ("/regex/x", Some(admin_id), 200),
        ("/regex/x", Some(alice_id), 403),
        ("/regex/x", None, 403),
        ("/issuer-regex/x", Some(via_ops_id), 200),
        ("/issuer-regex/x", Some(alice_id), 403),
        ("/issuer/x", Some(alice_id), 200),
        ("/issuer/x", Some(via_ops_id), 403),
        ("/sha1/x", Some(alice_id), 200),
        ("/sha1/x", Some(admin_id), 403),
        ("/serial/x", Some(numbered_id), 200),
        ("/serial/x", Some(alice_id), 403),
        ("/deny/x", Some(alice_id), 200),
        ("/deny/x", Some(mallory_id), 403),
        // deny admits verified certificates only, like allow.
        ("/deny/x", None, 403),
        ("/verified/x", Some(mallory_id), 200),
        ("/verified/x", None, 403),
        ("/closed/x", Some(admin_id), 403),
        ("/closed/x", None, 403),
        // The open route: optional lets a caller without a certificate through.
        ("/open", None, 200),
    ];
    let mut reached = 0;
    for (path, who, expected) in cases {
        let before = seen.count();
        let got = status(&pki, &gw, who, path).await;
        assert_eq!(
            got,
            expected,
            "{path} {:?}\n{}",
            who.map(|w| w.0.len()),
            gw.log()
        );
        if expected == 200 {
            reached += 1;
            assert_eq!(seen.count(), before + 1, "{path} reached the upstream");
        } else {
            assert_eq!(
                seen.count(),
                before,
                "{path}: nothing forwarded when refused"
            );
        }
    }
    assert_eq!(seen.count(), reached);
}
