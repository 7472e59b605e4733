//! `certgate certs …` end to end: the real binary in temporary directories, with the
//! `openssl` command-line tool as the independent judge of what it writes.

mod common;

use common::output_text as text;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_certgate");

/// Runs `certgate certs ARGS` in `dir` with extra environment variables.
fn certs(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.current_dir(dir).arg("certs").args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run certgate")
}

fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command-line tool is needed to judge these tests")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn ok(out: Output) -> Output {
    assert!(out.status.success(), "expected success\n{}", text(&out));
    out
}

/// Exit status 1 with a message on stderr, and never a panic.
#[track_caller]
fn fails(out: Output, message: &str) -> Output {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1\n{}",
        text(&out)
    );
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "panic\n{}", text(&out));
    assert!(
        err.contains(message),
        "stderr should contain {message:?}\n{}",
        text(&out)
    );
    out
}

fn x509_text(dir: &Path, cert: &str) -> String {
    stdout(&ok(openssl(dir, &["x509", "-in", cert, "-noout", "-text"])))
}

/// Every file in `dir` (recursively) with its contents, to prove nothing changed.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.clone(), fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn init(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["init"];
    args.extend_from_slice(extra);
    ok(certs(dir, &args, &[]))
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The public key of a certificate and of a private key, as openssl extracts them.
fn key_matches(dir: &Path, cert: &str, key: &str, passin: Option<&str>) -> bool {
    let from_cert = ok(openssl(dir, &["x509", "-in", cert, "-noout", "-pubkey"])).stdout;
    let mut args = vec!["pkey", "-in", key, "-pubout"];
    if let Some(p) = passin {
        args.extend(["-passin", p]);
    }
    let from_key = ok(openssl(dir, &args)).stdout;
    from_cert == from_key
}

fn serial(dir: &Path, cert: &str) -> String {
    stdout(&ok(openssl(
        dir,
        &["x509", "-in", cert, "-noout", "-serial"],
    )))
    .trim()
    .to_string()
}

#[test]
fn init_writes_a_pki_that_openssl_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = init(dir, &[]);
    let printed = stdout(&out);
    for name in [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
    ] {
        assert!(dir.join("certs").join(name).is_file(), "{name} missing");
        assert!(
            printed.contains(&format!("certs/{name}")),
            "{name} not listed\n{printed}"
        );
    }
    assert!(
        printed.contains("curl --cacert certs/ca.crt --cert certs/client.crt --key certs/client.key https://localhost:8443/"),
        "{printed}"
    );
    assert!(printed.contains("certgate run"), "{printed}");

    let c = dir.join("certs");
    let verified = ok(openssl(
        &c,
        &["verify", "-CAfile", "ca.crt", "server.crt", "client.crt"],
    ));
    assert_eq!(stdout(&verified), "server.crt: OK\nclient.crt: OK\n");
    // As a TLS server and client respectively, not merely as any chain.
    ok(openssl(
        &c,
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-purpose",
            "sslserver",
            "server.crt",
        ],
    ));
    ok(openssl(
        &c,
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-purpose",
            "sslclient",
            "client.crt",
        ],
    ));
    fails_openssl(
        &c,
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-purpose",
            "sslclient",
            "server.crt",
        ],
    );

    #[cfg(unix)]
    for key in ["ca.key", "server.key", "client.key"] {
        assert_eq!(mode(&c.join(key)), 0o600, "{key}");
    }
    for (cert, key) in [
        ("ca.crt", "ca.key"),
        ("server.crt", "server.key"),
        ("client.crt", "client.key"),
    ] {
        assert!(
            key_matches(&c, cert, key, None),
            "{key} does not match {cert}"
        );
    }

    let ca = x509_text(&c, "ca.crt");
    assert!(ca.contains("CA:TRUE"), "{ca}");
    assert!(ca.contains("Certificate Sign, CRL Sign"), "{ca}");
    assert!(
        ca.contains("NIST CURVE: P-256"),
        "ECDSA P-256 by default\n{ca}"
    );

    let server = x509_text(&c, "server.crt");
    assert!(
        server.contains("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1"),
        "{server}"
    );
    assert!(server.contains("TLS Web Server Authentication"), "{server}");
    assert!(server.contains("CA:FALSE"), "{server}");
    assert!(server.contains("X509v3 Subject Key Identifier"), "{server}");
    assert!(
        server.contains("X509v3 Authority Key Identifier"),
        "{server}"
    );

    let client = x509_text(&c, "client.crt");
    assert!(client.contains("TLS Web Client Authentication"), "{client}");
    assert!(client.contains("CN = certgate-client"), "{client}");
    assert!(
        !client.contains("TLS Web Server Authentication"),
        "{client}"
    );

    let serials = [
        serial(&c, "ca.crt"),
        serial(&c, "server.crt"),
        serial(&c, "client.crt"),
    ];
    assert!(
        serials[0] != serials[1] && serials[1] != serials[2] && serials[0] != serials[2],
        "{serials:?}"
    );
}

#[track_caller]
fn fails_openssl(dir: &Path, args: &[&str]) {
    let out = openssl(dir, args);
    assert!(
        !out.status.success(),
        "openssl {args:?} should fail\n{}",
        text(&out)
    );
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init(dir, &["--dir", "pki"]);
    let before = snapshot(dir);
    let out = fails(certs(dir, &["init", "--dir", "pki"], &[]), "already exist");
    assert!(stderr(&out).contains("--force"), "{}", text(&out));
    assert_eq!(
        snapshot(dir),
        before,
        "a refused init must leave every file untouched"
    );

    // One existing file is enough to refuse, and nothing else is written either.
    fs::remove_file(dir.join("pki/client.key")).unwrap();
    let before = snapshot(dir);
    fails(certs(dir, &["init", "--dir", "pki"], &[]), "already exist");
    assert_eq!(snapshot(dir), before);

    ok(certs(dir, &["init", "--dir", "pki", "--force"], &[]));
    let after = snapshot(dir);
    assert_ne!(
        after[&dir.join("pki/ca.crt")],
        before[&dir.join("pki/ca.crt")],
        "--force replaces the CA"
    );
    assert!(after.contains_key(&dir.join("pki/client.key")));
    // The six PKI files, and the gateway.yaml the first init wrote for them.
    assert!(after.contains_key(&dir.join("gateway.yaml")));
    assert_eq!(
        after.len(),
        7,
        "no temporary files left: {:?}",
        after.keys()
    );
    ok(openssl(
        &dir.join("pki"),
        &["verify", "-CAfile", "ca.crt", "server.crt", "client.crt"],
    ));
}

#[test]
fn init_with_rsa_makes_rsa_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init(
        dir,
        &[
            "--rsa",
            "2048",
            "--days",
            "30",
            "--dns",
            "gw.example.org",
            "--ip",
            "10.0.0.7",
        ],
    );
    let c = dir.join("certs");
    ok(openssl(
        &c,
        &["verify", "-CAfile", "ca.crt", "server.crt", "client.crt"],
    ));
    for cert in ["ca.crt", "server.crt", "client.crt"] {
        let t = x509_text(&c, cert);
        assert!(
            t.contains("Public Key Algorithm: rsaEncryption"),
            "{cert}\n{t}"
        );
        assert!(t.contains("Public-Key: (2048 bit)"), "{cert}\n{t}");
        assert!(t.contains("sha256WithRSAEncryption"), "{cert}\n{t}");
    }
    let server = x509_text(&c, "server.crt");
    assert!(
        server.contains("DNS:localhost, DNS:gw.example.org, IP Address:127.0.0.1"),
        "{server}"
    );
    assert!(server.contains("IP Address:10.0.0.7"), "{server}");
    assert!(
        server.contains("Digital Signature, Key Encipherment"),
        "{server}"
    );
    let key = stdout(&ok(openssl(
        &c,
        &["pkey", "-in", "server.key", "-noout", "-text"],
    )));
    assert!(key.contains("Private-Key: (2048 bit"), "{key}");
    assert!(key_matches(&c, "server.crt", "server.key", None));

    fails(
        certs(dir, &["init", "--dir", "other", "--rsa", "1024"], &[]),
        "2048, 3072 or 4096",
    );
    assert!(!dir.join("other").exists());
}

#[test]
fn intermediates_build_chains_of_depth_two_and_three() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init(dir, &[]);
    let c = dir.join("certs");

    ok(certs(
        dir,
        &[
            "issue",
            "intermediate",
            "--cn",
            "Team CA",
            "--pathlen",
            "1",
            "--out",
            "certs/int1",
        ],
        &[],
    ));
    let int1 = x509_text(&c, "int1.crt");
    assert!(int1.contains("CA:TRUE, pathlen:1"), "{int1}");
    assert!(int1.contains("Certificate Sign, CRL Sign"), "{int1}");
    ok(openssl(&c, &["verify", "-CAfile", "ca.crt", "int1.crt"]));

    // Depth 2: leaf <- int1 <- root.
    let out = ok(certs(
        dir,
        &["issue", "client", "--cn", "alice", "--ca", "certs/int1.crt"],
        &[],
    ));
    assert!(stdout(&out).contains("certs/alice.crt"), "{}", text(&out));
    let alice = fs::read_to_string(c.join("alice.crt")).unwrap();
    assert_eq!(
        alice.matches("BEGIN CERTIFICATE").count(),
        2,
        "alice.crt is the full chain (leaf + int1)"
    );
    let v = ok(openssl(
        &c,
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-untrusted",
            "int1.crt",
            "alice.crt",
        ],
    ));
    assert_eq!(stdout(&v), "alice.crt: OK\n");
    fails_openssl(&c, &["verify", "-CAfile", "ca.crt", "alice.crt"]);

    // Depth 3: server <- int2 <- int1 <- root; the chain files carry the intermediates.
    ok(certs(
        dir,
        &[
            "issue",
            "intermediate",
            "--cn",
            "Sub CA",
            "--ca",
            "certs/int1.crt",
            "--out",
            "certs/int2",
        ],
        &[],
    ));
    assert!(x509_text(&c, "int2.crt").contains("CA:TRUE, pathlen:0"));
    ok(certs(
        dir,
        &[
            "issue",
            "server",
            "--dns",
            "api.internal",
            "--ca",
            "certs/int2.crt",
            "--out",
            "certs/api.crt",
        ],
        &[],
    ));
    let api = fs::read_to_string(c.join("api.crt")).unwrap();
    assert_eq!(
        api.matches("BEGIN CERTIFICATE").count(),
        3,
        "leaf + int2 + int1"
    );
    ok(openssl(
        &c,
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-untrusted",
            "int2.crt",
            "-purpose",
            "sslserver",
            "api.crt",
        ],
    ));
    assert!(key_matches(&c, "api.crt", "api.key", None));

    // int2 has pathlen:0: it signs leaves only.
    let before = snapshot(dir);
    fails(
        certs(
            dir,
            &[
                "issue",
                "intermediate",
                "--cn",
                "Too deep",
                "--ca",
                "certs/int2.crt",
                "--out",
                "certs/int3",
            ],
            &[],
        ),
        "pathlen:0",
    );
    assert_eq!(snapshot(dir), before);

    // A leaf cannot sign.
    fails(
        certs(
            dir,
            &[
                "issue",
                "client",
                "--cn",
                "mallory",
                "--ca",
                "certs/alice.crt",
            ],
            &[],
        ),
        "not a CA",
    );
}

#[test]
fn issued_certificates_carry_the_requested_names_and_extensions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init(dir, &[]);
    let c = dir.join("certs");
    ok(certs(
        dir,
        &[
            "issue",
            "client",
            "--cn",
            "alice",
            "--o",
            "Example",
            "--ou",
            "payments",
            "--dns",
            "alice.example.org",
            "--ip",
            "10.1.2.3",
            "--uri",
            "spiffe://example.org/ns/prod/sa/alice",
            "--email",
            "alice@example.org",
            "--days",
            "90",
        ],
        &[],
    ));
    let t = x509_text(&c, "alice.crt");
    for expected in [
        "DNS:alice.example.org",
        "IP Address:10.1.2.3",
        "URI:spiffe://example.org/ns/prod/sa/alice",
        "email:alice@example.org",
        "TLS Web Client Authentication",
        "CA:FALSE",
        "Digital Signature",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
    ] {
        assert!(t.contains(expected), "missing {expected}\n{t}");
    }
    let subject = stdout(&ok(openssl(
        &c,
        &[
            "x509",
            "-in",
            "alice.crt",
            "-noout",
            "-subject",
            "-nameopt",
            "RFC2253",
        ],
    )));
    assert_eq!(subject, "subject=CN=alice,OU=payments,O=Example\n");
    let days = stdout(&ok(openssl(
        &c,
        &[
            "x509",
            "-in",
            "alice.crt",
            "-noout",
            "-checkend",
            &(89 * 86400).to_string(),
        ],
    )));
    assert!(days.contains("will not expire"), "{days}");
    fails_openssl(
        &c,
        &[
            "x509",
            "-in",
            "alice.crt",
            "-noout",
            "-checkend",
            &(91 * 86400).to_string(),
        ],
    );

    // The AKI names the CA's SKI.
    let ca = x509_text(&c, "ca.crt");
    let ski = ca
        .split("X509v3 Subject Key Identifier:")
        .nth(1)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    let aki_section = t.split("X509v3 Authority Key Identifier:").nth(1).unwrap();
    let aki = aki_section
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .trim_start_matches("keyid:")
        .to_string();
    assert_eq!(aki, ski);

    // Server: serverAuth and the SANs given; serials are random and distinct.
    ok(certs(
        dir,
        &[
            "issue",
            "server",
            "--dns",
            "api.example.org",
            "--dns",
            "*.api.example.org",
            "--out",
            "certs/api",
        ],
        &[],
    ));
    ok(certs(
        dir,
        &[
            "issue",
            "server",
            "--dns",
            "api.example.org",
            "--out",
            "certs/api2",
        ],
        &[],
    ));
    let t = x509_text(&c, "api.crt");
    assert!(
        t.contains("DNS:api.example.org, DNS:*.api.example.org"),
        "{t}"
    );
    assert!(t.contains("TLS Web Server Authentication"), "{t}");
    assert!(
        t.contains("Subject: CN = api.example.org"),
        "the CN defaults to the first DNS name\n{t}"
    );
    assert_ne!(serial(&c, "api.crt"), serial(&c, "api2.crt"));
    ok(openssl(
        &c,
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-purpose",
            "sslserver",
            "api.crt",
            "api2.crt",
        ],
    ));
}

#[test]
fn bad_issue_requests_fail_cleanly_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init(dir, &[]);
    let before = snapshot(dir);
    fails(certs(dir, &["issue", "client"], &[]), "--cn is required");
    fails(
        certs(dir, &["issue", "server", "--dns", "not a host"], &[]),
        "not a valid DNS name",
    );
    fails(
        certs(
            dir,
            &["issue", "client", "--cn", "x", "--uri", "no-scheme"],
            &[],
        ),
        "not a valid URI",
    );
    fails(
        certs(
            dir,
            &["issue", "client", "--cn", "x", "--email", "nobody"],
            &[],
        ),
        "not a valid e-mail",
    );
    fails(
        certs(dir, &["issue", "client", "--cn", "x", "--days", "0"], &[]),
        "validity",
    );
    fails(
        certs(
            dir,
            &["issue", "client", "--cn", "x", "--ca", "certs/missing.crt"],
            &[],
        ),
        "cannot read certs/missing.crt",
    );
    // The CA key does not belong to the CA certificate.
    fails(
        certs(
            dir,
            &[
                "issue",
                "client",
                "--cn",
                "x",
                "--ca-key",
                "certs/client.key",
            ],
            &[],
        ),
        "does not match the certificate certs/ca.crt",
    );
    fs::write(dir.join("garbage.crt"), "this is not a certificate\n").unwrap();
    fails(
        certs(
            dir,
            &[
                "issue",
                "client",
                "--cn",
                "x",
                "--ca",
                "garbage.crt",
                "--ca-key",
                "certs/ca.key",
            ],
            &[],
        ),
        "garbage.crt",
    );
    fs::remove_file(dir.join("garbage.crt")).unwrap();
    assert_eq!(
        snapshot(dir),
        before,
        "failed requests must not write anything"
    );

    // An existing output is not replaced without --force.
    ok(certs(dir, &["issue", "client", "--cn", "bob"], &[]));
    let before = snapshot(dir);
    fails(
        certs(dir, &["issue", "client", "--cn", "bob"], &[]),
        "already exist",
    );
    assert_eq!(snapshot(dir), before);
    ok(certs(
        dir,
        &["issue", "client", "--cn", "bob", "--force"],
        &[],
    ));
}

#[test]
fn an_encrypted_ca_key_round_trips_and_a_wrong_passphrase_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pass = [("CA_PASS", "correct horse battery staple")];
    let out = ok(certs(
        dir,
        &["init", "--ca-passphrase-env", "CA_PASS"],
        &pass,
    ));
    assert!(stdout(&out).contains("encrypted"), "{}", text(&out));
    let c = dir.join("certs");
    let key = fs::read_to_string(c.join("ca.key")).unwrap();
    assert!(
        key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"),
        "{key}"
    );

    // openssl opens it with the passphrase, as with a key made by `openssl genpkey -aes256`.
    let opened = Command::new("openssl")
        .current_dir(&c)
        .args([
            "pkey",
            "-in",
            "ca.key",
            "-passin",
            "env:CA_PASS",
            "-noout",
            "-text",
        ])
        .env("CA_PASS", pass[0].1)
        .output()
        .unwrap();
    assert!(opened.status.success(), "{}", text(&opened));
    let asn1 = stdout(&ok(openssl(&c, &["asn1parse", "-in", "ca.key"])));
    assert!(
        asn1.contains("PBES2") && asn1.contains("hmacWithSHA256") && asn1.contains("aes-256-cbc"),
        "{asn1}"
    );
    fails_openssl(
        &c,
        &["pkey", "-in", "ca.key", "-passin", "pass:wrong", "-noout"],
    );
    assert!(key_matches(
        &c,
        "ca.crt",
        "ca.key",
        Some("pass:correct horse battery staple")
    ));
    // The other keys are not encrypted: the gateway loads them without a passphrase.
    assert!(fs::read_to_string(c.join("server.key"))
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));

    ok(certs(
        dir,
        &[
            "issue",
            "client",
            "--cn",
            "bob",
            "--ca-passphrase-env",
            "CA_PASS",
        ],
        &pass,
    ));
    ok(openssl(&c, &["verify", "-CAfile", "ca.crt", "bob.crt"]));

    let before = snapshot(dir);
    fails(
        certs(
            dir,
            &[
                "issue",
                "client",
                "--cn",
                "carol",
                "--ca-passphrase-env",
                "CA_PASS",
            ],
            &[("CA_PASS", "wrong")],
        ),
        "wrong passphrase for certs/ca.key",
    );
    fails(
        certs(dir, &["issue", "client", "--cn", "carol"], &[]),
        "--ca-passphrase-env",
    );
    fails(
        certs(
            dir,
            &[
                "issue",
                "client",
                "--cn",
                "carol",
                "--ca-passphrase-env",
                "UNSET_VAR_FOR_TEST",
            ],
            &[],
        ),
        "not set",
    );
    assert_eq!(
        snapshot(dir),
        before,
        "nothing written after a failed unlock"
    );

    // An intermediate key can be written encrypted too, and used as a CA.
    let both = [("CA_PASS", pass[0].1), ("INT_PASS", "another one")];
    ok(certs(
        dir,
        &[
            "issue",
            "intermediate",
            "--cn",
            "Int",
            "--out",
            "certs/int",
            "--ca-passphrase-env",
            "CA_PASS",
            "--key-passphrase-env",
            "INT_PASS",
        ],
        &both,
    ));
    assert!(fs::read_to_string(c.join("int.key"))
        .unwrap()
        .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    ok(certs(
        dir,
        &[
            "issue",
            "client",
            "--cn",
            "dave",
            "--ca",
            "certs/int.crt",
            "--ca-passphrase-env",
            "INT_PASS",
        ],
        &both,
    ));
    ok(openssl(
        &c,
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-untrusted",
            "int.crt",
            "dave.crt",
        ],
    ));
}

#[test]
fn an_openssl_made_ca_can_sign() {
    // Users coming from the openssl recipe keep their CA: PKCS#8 and SEC1 keys both work.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-out",
            "ca.key",
        ],
    ));
    ok(openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/C=CN/O=Recipe/CN=Recipe CA",
            "-days",
            "30",
            "-out",
            "ca.crt",
        ],
    ));
    assert!(fs::read_to_string(dir.join("ca.key"))
        .unwrap()
        .contains("BEGIN EC PRIVATE KEY"));
    ok(certs(
        dir,
        &[
            "issue", "client", "--cn", "alice", "--ca", "ca.crt", "--days", "10",
        ],
        &[],
    ));
    let v = ok(openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-purpose",
            "sslclient",
            "alice.crt",
        ],
    ));
    assert_eq!(stdout(&v), "alice.crt: OK\n");
    let issuer = stdout(&ok(openssl(
        dir,
        &[
            "x509",
            "-in",
            "alice.crt",
            "-noout",
            "-issuer",
            "-nameopt",
            "RFC2253",
        ],
    )));
    assert_eq!(issuer, "issuer=CN=Recipe CA,O=Recipe,C=CN\n");
}

#[test]
fn p12_bundles_open_in_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init(dir, &[]);
    let c = dir.join("certs");

    // No --password-env: an empty password, which openssl takes as `-passin pass:`.
    let out = ok(certs(
        dir,
        &[
            "p12",
            "--cert",
            "certs/client.crt",
            "--key",
            "certs/client.key",
            "--ca",
            "certs/ca.crt",
            "--out",
            "certs/client.p12",
        ],
        &[],
    ));
    assert!(stdout(&out).contains("certs/client.p12"), "{}", text(&out));
    #[cfg(unix)]
    assert_eq!(
        mode(&c.join("client.p12")),
        0o600,
        "the bundle holds the private key"
    );
    let info = ok(openssl(
        &c,
        &[
            "pkcs12",
            "-info",
            "-in",
            "client.p12",
            "-passin",
            "pass:",
            "-noout",
        ],
    ));
    let info = stderr(&info) + &stdout(&info);
    assert!(
        info.contains("AES-256-CBC") && info.contains("MAC: sha256"),
        "{info}"
    );

    // With a password: the right one opens it, a wrong one does not.
    let pw = [("P12_PASSWORD", "s3cret")];
    ok(certs(
        dir,
        &[
            "p12",
            "--cert",
            "certs/client.crt",
            "--key",
            "certs/client.key",
            "--ca",
            "certs/ca.crt",
            "--out",
            "certs/pw.p12",
            "--password-env",
            "P12_PASSWORD",
        ],
        &pw,
    ));
    ok(openssl(
        &c,
        &[
            "pkcs12",
            "-info",
            "-in",
            "pw.p12",
            "-passin",
            "pass:s3cret",
            "-noout",
        ],
    ));
    fails_openssl(
        &c,
        &[
            "pkcs12",
            "-info",
            "-in",
            "pw.p12",
            "-passin",
            "pass:wrong",
            "-noout",
        ],
    );
    // Its key and certificate are the ones given, and the CA came along.
    let pem = stdout(&ok(openssl(
        &c,
        &[
            "pkcs12",
            "-in",
            "pw.p12",
            "-passin",
            "pass:s3cret",
            "-nodes",
        ],
    )));
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2, "{pem}");
    fs::write(c.join("extracted.pem"), &pem).unwrap();
    assert!(key_matches(&c, "client.crt", "extracted.pem", None));
    let cert_subjects = stdout(&ok(openssl(
        &c,
        &[
            "pkcs12",
            "-in",
            "pw.p12",
            "-passin",
            "pass:s3cret",
            "-nokeys",
            "-clcerts",
        ],
    )));
    assert!(
        cert_subjects.contains("CN = certgate-client"),
        "{cert_subjects}"
    );

    // --legacy: 3DES and a SHA-1 MAC, which the oldest importers need.
    ok(certs(
        dir,
        &[
            "p12",
            "--cert",
            "certs/client.crt",
            "--key",
            "certs/client.key",
            "--out",
            "certs/legacy.p12",
            "--password-env",
            "P12_PASSWORD",
            "--legacy",
        ],
        &pw,
    ));
    let mut info = openssl(
        &c,
        &[
            "pkcs12",
            "-info",
            "-in",
            "legacy.p12",
            "-passin",
            "pass:s3cret",
            "-noout",
        ],
    );
    if !info.status.success() {
        info = ok(openssl(
            &c,
            &[
                "pkcs12",
                "-legacy",
                "-info",
                "-in",
                "legacy.p12",
                "-passin",
                "pass:s3cret",
                "-noout",
            ],
        ));
    }
    let info = stderr(&info) + &stdout(&info);
    assert!(
        info.contains("pbeWithSHA1And3-KeyTripleDES-CBC") && info.contains("MAC: sha1"),
        "{info}"
    );

    // The key must belong to the certificate; nothing is written otherwise.
    fails(
        certs(
            dir,
            &[
                "p12",
                "--cert",
                "certs/client.crt",
                "--key",
                "certs/server.key",
                "--out",
                "certs/bad.p12",
            ],
            &[],
        ),
        "does not match",
    );
    assert!(!c.join("bad.p12").exists());
    fails(
        certs(
            dir,
            &[
                "p12",
                "--cert",
                "certs/client.crt",
                "--key",
                "certs/nope.key",
                "--out",
                "certs/bad.p12",
            ],
            &[],
        ),
        "cannot read certs/nope.key",
    );
    fails(
        certs(
            dir,
            &[
                "p12",
                "--cert",
                "certs/client.crt",
                "--key",
                "certs/client.key",
                "--out",
                "certs/client.p12",
            ],
            &[],
        ),
        "already exist",
    );
}

#[test]
fn inspect_matches_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init(dir, &[]);
    let c = dir.join("certs");
    ok(certs(
        dir,
        &[
            "issue",
            "intermediate",
            "--cn",
            "Team CA",
            "--out",
            "certs/int",
        ],
        &[],
    ));
    ok(certs(
        dir,
        &[
            "issue",
            "client",
            "--cn",
            "alice",
            "--o",
            "Example",
            "--uri",
            "spiffe://example.org/a",
            "--ca",
            "certs/int.crt",
        ],
        &[],
    ));

    let shown = stdout(&ok(certs(dir, &["inspect", "certs/alice.crt"], &[])));
    let facts = stdout(&ok(openssl(
        &c,
        &[
            "x509",
            "-in",
            "alice.crt",
            "-noout",
            "-subject",
            "-issuer",
            "-nameopt",
            "RFC2253",
            "-serial",
            "-fingerprint",
            "-sha256",
        ],
    )));
    let sha1 = stdout(&ok(openssl(
        &c,
        &[
            "x509",
            "-in",
            "alice.crt",
            "-noout",
            "-fingerprint",
            "-sha1",
        ],
    )));
    let field = |s: &str, prefix: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {s}"))
            .trim()
            .to_string()
    };
    assert_eq!(field(&shown, "  Subject:"), field(&facts, "subject="));
    assert_eq!(field(&shown, "  Issuer:"), field(&facts, "issuer="));
    assert_eq!(field(&shown, "  Serial:"), field(&facts, "serial="));
    assert_eq!(
        field(&shown, "  SHA-256:"),
        field(&facts, "sha256 Fingerprint=")
    );
    assert_eq!(field(&shown, "  SHA-1:"), field(&sha1, "sha1 Fingerprint="));
    assert_eq!(field(&shown, "  Subject:"), "CN=alice,O=Example");
    assert!(shown.contains("Certificate 1 of 2 (leaf)"), "{shown}");
    assert!(
        shown.contains("Certificate 2 of 2 (intermediate)"),
        "{shown}"
    );
    assert!(shown.contains("URI:spiffe://example.org/a"), "{shown}");
    assert!(shown.contains("ECDSA P-256"), "{shown}");
    assert!(shown.contains("TLS Web Client Authentication"), "{shown}");
    assert!(shown.contains("days left"), "{shown}");
    // The headers a backend would receive.
    assert!(shown.contains("x-ssl-client-verify: SUCCESS"), "{shown}");
    assert!(
        shown.contains("x-ssl-client-s-dn: CN=alice,O=Example"),
        "{shown}"
    );
    assert!(shown.contains("x-ssl-client-i-dn: CN=Team CA"), "{shown}");

    // DER input, one certificate.
    ok(openssl(
        &c,
        &["x509", "-in", "ca.crt", "-outform", "DER", "-out", "ca.der"],
    ));
    let shown = stdout(&ok(certs(dir, &["inspect", "certs/ca.der"], &[])));
    let subject = stdout(&ok(openssl(
        &c,
        &[
            "x509", "-in", "ca.crt", "-noout", "-subject", "-nameopt", "RFC2253",
        ],
    )));
    assert_eq!(field(&shown, "  Subject:"), field(&subject, "subject="));
    assert!(shown.contains("CA:TRUE"), "{shown}");

    // Unreadable and malformed input: a clear error, exit 1, no panic.
    fails(
        certs(dir, &["inspect", "certs/missing.crt"], &[]),
        "cannot read certs/missing.crt",
    );
    fs::write(
        dir.join("junk.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    fails(certs(dir, &["inspect", "junk.pem"], &[]), "junk.pem");
    fs::write(dir.join("junk.der"), [0x30, 0x03, 0x02, 0x01]).unwrap();
    fails(certs(dir, &["inspect", "junk.der"], &[]), "junk.der");
}

/// The dev CA as rcgen sees it, to make what `certs` deliberately cannot: expired
/// certificates and CRLs.
fn rcgen_ca(ca_dir: &Path) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key =
        rcgen::KeyPair::from_pem(&fs::read_to_string(ca_dir.join("ca.key")).unwrap()).unwrap();
    let params = rcgen::CertificateParams::from_ca_cert_pem(
        &fs::read_to_string(ca_dir.join("ca.crt")).unwrap(),
    )
    .unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert, key)
}

#[test]
fn verify_uses_the_gateway_verifier() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init(dir, &[]);
    let c = dir.join("certs");

    let out = ok(certs(
        dir,
        &["verify", "--ca", "certs/ca.crt", "certs/client.crt"],
        &[],
    ));
    assert_eq!(stdout(&out), "OK\n");

    // Signed by another CA.
    init(dir, &["--dir", "other"]);
    let out = fails(
        certs(
            dir,
            &["verify", "--ca", "certs/ca.crt", "other/client.crt"],
            &[],
        ),
        "unable to get local issuer certificate",
    );
    assert!(stdout(&out).is_empty(), "{}", text(&out));
    fails_openssl(
        dir,
        &["verify", "-CAfile", "certs/ca.crt", "other/client.crt"],
    );

    // Expired.
    let (ca, ca_key) = rcgen_ca(&c);
    let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "expired");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let key = rcgen::KeyPair::generate().unwrap();
    fs::write(
        c.join("expired.crt"),
        params.signed_by(&key, &ca, &ca_key).unwrap().pem(),
    )
    .unwrap();
    let openssl_says = openssl(&c, &["verify", "-CAfile", "ca.crt", "expired.crt"]);
    assert!(
        stdout(&openssl_says).contains("certificate has expired")
            || stderr(&openssl_says).contains("certificate has expired")
    );
    fails(
        certs(
            dir,
            &["verify", "--ca", "certs/ca.crt", "certs/expired.crt"],
            &[],
        ),
        "certificate has expired",
    );

    // Depth: one intermediate needs --depth 1 (the default, as verify_depth).
    ok(certs(
        dir,
        &["issue", "intermediate", "--cn", "Int", "--out", "certs/int"],
        &[],
    ));
    ok(certs(
        dir,
        &["issue", "client", "--cn", "alice", "--ca", "certs/int.crt"],
        &[],
    ));
    assert_eq!(
        stdout(&ok(certs(
            dir,
            &["verify", "--ca", "certs/ca.crt", "certs/alice.crt"],
            &[]
        ))),
        "OK\n"
    );
    fails(
        certs(
            dir,
            &[
                "verify",
                "--ca",
                "certs/ca.crt",
                "--depth",
                "0",
                "certs/alice.crt",
            ],
            &[],
        ),
        "certificate chain too long",
    );
    // Without the intermediate the chain cannot be built.
    let leaf_only: String = fs::read_to_string(c.join("alice.crt"))
        .unwrap()
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap()
        .to_string();
    fs::write(c.join("alice-leaf.crt"), leaf_only).unwrap();
    fails(
        certs(
            dir,
            &["verify", "--ca", "certs/ca.crt", "certs/alice-leaf.crt"],
            &[],
        ),
        "unable to get local issuer certificate",
    );

    // Revoked, by a CRL from the CA; openssl agrees.
    let client_serial = serial(&c, "client.crt");
    let hex = client_serial.trim_start_matches("serial=");
    let serial_bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let crl = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2024, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(&serial_bytes),
            revocation_time: rcgen::date_time_ymd(2024, 1, 1),
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: ca.params().key_identifier_method.clone(),
    }
    .signed_by(&ca, &ca_key)
    .unwrap();
    fs::write(c.join("ca.crl"), crl.pem().unwrap()).unwrap();
    let openssl_says = openssl(
        &c,
        &[
            "verify",
            "-crl_check",
            "-CRLfile",
            "ca.crl",
            "-CAfile",
            "ca.crt",
            "client.crt",
        ],
    );
    assert!(
        !openssl_says.status.success() && text(&openssl_says).contains("certificate revoked"),
        "{}",
        text(&openssl_says)
    );
    fails(
        certs(
            dir,
            &[
                "verify",
                "--ca",
                "certs/ca.crt",
                "--crl",
                "certs/ca.crl",
                "certs/client.crt",
            ],
            &[],
        ),
        "certificate revoked",
    );
    // A certificate the CRL does not list still verifies with it.
    ok(certs(dir, &["issue", "client", "--cn", "bob"], &[]));
    let out = ok(certs(
        dir,
        &[
            "verify",
            "--ca",
            "certs/ca.crt",
            "--crl",
            "certs/ca.crl",
            "certs/bob.crt",
        ],
        &[],
    ));
    assert_eq!(stdout(&out), "OK\n");
    // A server certificate is not a client certificate (EKU serverAuth only).
    fails(
        certs(
            dir,
            &["verify", "--ca", "certs/ca.crt", "certs/server.crt"],
            &[],
        ),
        "unsuitable certificate purpose",
    );

    // Unreadable inputs.
    fails(
        certs(
            dir,
            &["verify", "--ca", "certs/nope.crt", "certs/client.crt"],
            &[],
        ),
        "certs/nope.crt",
    );
    fails(
        certs(
            dir,
            &["verify", "--ca", "certs/ca.crt", "certs/nope.crt"],
            &[],
        ),
        "certs/nope.crt",
    );
}

/// `inspect` as its help says: .p12 input understood (or refused in words), purpose
/// problems reported as `verify` reports them, and a configuration's identity applied.
#[test]
fn inspect_reads_p12_and_shows_what_the_gateway_would_do() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init(dir, &[]);
    let p12 = |out: &str, env: &[(&str, &str)]| {
        let mut args = vec![
            "p12",
            "--cert",
            "certs/client.crt",
            "--key",
            "certs/client.key",
            "--ca",
            "certs/ca.crt",
            "--out",
            out,
        ];
        if !env.is_empty() {
            args.extend(["--password-env", "P12_PASSWORD"]);
        }
        ok(certs(dir, &args, env));
    };
    let pw = [("P12_PASSWORD", "s3cret")];
    p12("open.p12", &[]);
    p12("locked.p12", &pw);

    // The bundle's certificates, the key's first, as for the .crt.
    let shown = stdout(&ok(certs(dir, &["inspect", "open.p12"], &[])));
    assert!(shown.contains("Certificate 1 of 2 (leaf)"), "{shown}");
    assert!(
        shown.contains("  Subject:      CN=certgate-client,O=certgate dev"),
        "{shown}"
    );
    assert!(shown.contains("x-ssl-client-verify: SUCCESS"), "{shown}");
    let shown = stdout(&ok(certs(
        dir,
        &["inspect", "locked.p12", "--password-env", "P12_PASSWORD"],
        &pw,
    )));
    assert!(shown.contains("CN=certgate-client"), "{shown}");
    // A wrong or missing password: words, not a Debug dump.
    let out = fails(
        certs(dir, &["inspect", "locked.p12"], &[]),
        "locked.p12: a PKCS#12 file: cannot open it: wrong password",
    );
    assert!(stderr(&out).contains("--password-env"), "{}", text(&out));
    assert!(!stderr(&out).contains("UnexpectedTag"), "{}", text(&out));
    fails(
        certs(
            dir,
            &["inspect", "certs/client.crt", "--password-env", "X"],
            &[],
        ),
        "not one",
    );

    // A server-only certificate is no client certificate, as `verify` says.
    fails(
        certs(
            dir,
            &["verify", "--ca", "certs/ca.crt", "certs/server.crt"],
            &[],
        ),
        "unsuitable certificate purpose",
    );
    let shown = stdout(&ok(certs(dir, &["inspect", "certs/server.crt"], &[])));
    assert!(
        shown.contains("FAILED:unsuitable certificate purpose"),
        "{shown}"
    );
    assert!(!shown.contains("x-ssl-client-verify: SUCCESS"), "{shown}");

    // With a configuration: its CAs and its identity (presets and set).
    fs::write(
        dir.join("gw.yaml"),
        "servers:\n  - name: api\n    listen: [\"127.0.0.1:0\"]\n    tls: { cert: certs/server.crt, key: certs/server.key }\n    client_auth: { verify: on, ca: certs/ca.crt }\n    identity:\n      preset: xfcc\n      set: { X-Client-CN: \"$ssl_client_s_dn_cn\", X-Verify: \"$ssl_client_verify\" }\n    routes: [{ match: { path_prefix: / }, upstream: app }]\nupstreams:\n  app: { servers: [\"127.0.0.1:1\"] }\n",
    )
    .unwrap();
    for args in [
        &["inspect", "-c", "gw.yaml", "certs/client.crt"][..],
        &[
            "inspect",
            "certs/client.crt",
            "--config",
            "gw.yaml",
            "--server",
            "api",
        ],
    ] {
        let shown = stdout(&ok(certs(dir, args, &[])));
        assert!(shown.contains("server `api` of gw.yaml"), "{shown}");
        assert!(shown.contains("x-client-cn: certgate-client"), "{shown}");
        assert!(shown.contains("x-verify: SUCCESS"), "{shown}");
        assert!(shown.contains("x-forwarded-client-cert: "), "{shown}");
        assert!(!shown.contains("x-ssl-client-s-dn"), "{shown}");
    }
    // Before `certs` too, as for the gateway's own commands.
    let out = ok(Command::new(BIN)
        .current_dir(dir)
        .args(["-c", "gw.yaml", "certs", "inspect", "certs/client.crt"])
        .output()
        .unwrap());
    assert!(
        stdout(&out).contains("x-client-cn: certgate-client"),
        "{}",
        text(&out)
    );
    // A certificate from another CA (of the same name) does not verify there.
    ok(certs(dir, &["init", "--dir", "other"], &[]));
    let shown = stdout(&ok(certs(
        dir,
        &["inspect", "-c", "gw.yaml", "other/client.crt"],
        &[],
    )));
    assert!(
        shown.contains("the gateway refuses this certificate: FAILED:"),
        "{shown}"
    );
    assert!(!shown.contains("SUCCESS"), "{shown}");
    fails(
        certs(
            dir,
            &[
                "inspect",
                "-c",
                "gw.yaml",
                "--server",
                "nope",
                "certs/client.crt",
            ],
            &[],
        ),
        "no server named \"nope\"",
    );
}
