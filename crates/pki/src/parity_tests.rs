//! Differential tests: the same generated PKIs verified by [`ChainVerifier`] and by the
//! system's OpenSSL 3 with nginx's settings (`tests/nginx_verify.c`); the full sequence of
//! errors must agree, not just the final one.
//!
//! Ignored by default because they need a C compiler and the libssl headers:
//! `cargo test -p certgate-pki -- --ignored parity`.

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};

use crate::testpki::{ca_under, client_under, crl, crl_signed_by, current_crl, root, Issued, Spec};
use crate::ChainVerifier;

struct Scenario {
    name: &'static str,
    ca: Vec<CertificateDer<'static>>,
    trusted: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    depth: u32,
    chain: Vec<CertificateDer<'static>>,
}

fn ders(certs: &[&Issued]) -> Vec<CertificateDer<'static>> {
    certs.iter().map(|c| c.der()).collect()
}

fn scenario(name: &'static str, ca: &[&Issued], depth: u32, chain: &[&Issued]) -> Scenario {
    Scenario {
        name,
        ca: ders(ca),
        trusted: Vec::new(),
        crls: Vec::new(),
        depth,
        chain: ders(chain),
    }
}

fn with_crls(mut s: Scenario, crls: Vec<CertificateRevocationListDer<'static>>) -> Scenario {
    s.crls = crls;
    s
}

fn pem_file(dir: &Path, name: &str, tag: &str, items: &[&[u8]]) -> PathBuf {
    let path = dir.join(name);
    let text: String = items
        .iter()
        .map(|der| pem::encode(&pem::Pem::new(tag, der.to_vec())))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn build_harness(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nginx_verify.c");
    let exe = dir.join("nginx_verify");
    let status = Command::new("cc")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .args(["-lssl", "-lcrypto"])
        .status()
        .expect("running cc (a C compiler and libssl-dev are needed)");
    assert!(status.success(), "compiling {}", src.display());
    exe
}

/// Errors OpenSSL reports, as (code, depth), and its final code.
fn openssl_errors(exe: &Path, dir: &Path, s: &Scenario, now: u64) -> (Vec<(i32, usize)>, i32) {
    let arg = |name: &str, tag: &str, items: Vec<&[u8]>| {
        if items.is_empty() {
            "-".to_string()
        } else {
            pem_file(dir, name, tag, &items).display().to_string()
        }
    };
    let ca = arg(
        "ca.pem",
        "CERTIFICATE",
        s.ca.iter().map(|c| c.as_ref()).collect(),
    );
    let trusted = arg(
        "trusted.pem",
        "CERTIFICATE",
        s.trusted.iter().map(|c| c.as_ref()).collect(),
    );
    let crls = arg(
        "crls.pem",
        "X509 CRL",
        s.crls.iter().map(|c| c.as_ref()).collect(),
    );
    let chain = pem_file(
        dir,
        "chain.pem",
        "CERTIFICATE",
        &s.chain.iter().map(|c| c.as_ref()).collect::<Vec<_>>(),
    );
    let out = Command::new(exe)
        .args([
            ca,
            trusted,
            crls,
            s.depth.to_string(),
            chain.display().to_string(),
            now.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: harness failed: {:?}",
        s.name,
        out
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut errors = Vec::new();
    let mut result = -1;
    for line in stdout.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["E", code, depth] => errors.push((code.parse().unwrap(), depth.parse().unwrap())),
            ["R", code] => result = code.parse().unwrap(),
            _ => panic!("unexpected harness output {line:?}"),
        }
    }
    (errors, result)
}

fn scenarios() -> Vec<Scenario> {
    let root_ca = root("Parity Root");
    let int1 = ca_under("Parity Int 1", &root_ca);
    let int2 = ca_under("Parity Int 2", &int1);
    let leaf0 = client_under("leaf0", &root_ca);
    let leaf1 = client_under("leaf1", &int1);
    let leaf2 = client_under("leaf2", &int2);
    let other = root("Other Root");
    let other_int = ca_under("Other Int", &other);
    let other_leaf = client_under("other leaf", &other);
    let other_leaf1 = client_under("other leaf1", &other_int);
    let expired = Spec::client("expired").valid(-10, -2).issue(Some(&root_ca));
    let future = Spec::client("future").valid(2, 10).issue(Some(&root_ca));
    let other_expired = Spec::client("other expired")
        .valid(-10, -2)
        .issue(Some(&other));
    let old_int = Spec::ca("Old Int").valid(-10, -2).issue(Some(&root_ca));
    let leaf_old_int = client_under("leaf old int", &old_int);
    let old_root = Spec::ca("Old Root").valid(-10, -2).issue(None);
    let leaf_old_root = client_under("leaf old root", &old_root);
    let selfie = Spec::client("selfie").issue(None);
    let self_ca = Spec::ca("Self CA").issue(None);
    let server_only = Spec::client("server only")
        .eku(vec![ExtendedKeyUsagePurpose::ServerAuth])
        .issue(Some(&root_ca));
    let no_eku = Spec::client("no eku").eku(Vec::new()).issue(Some(&root_ca));
    let cert_sign_only = {
        let mut spec = Spec::client("cert sign only");
        spec.key_usages = Some(vec![KeyUsagePurpose::KeyCertSign]);
        spec.issue(Some(&root_ca))
    };
    let not_ca = client_under("not a CA", &root_ca);
    let leaf_not_ca = client_under("leaf under not a CA", &not_ca);
    let server_int = Spec::ca("Server Int")
        .eku(vec![ExtendedKeyUsagePurpose::ServerAuth])
        .issue(Some(&root_ca));
    let leaf_server_int = client_under("leaf server int", &server_int);
    let forged = {
        // Names the root and its key identifier, signed with another key.
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Parity Root");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_identifier_method =
            rcgen::KeyIdMethod::PreSpecified(root_ca.cert.key_identifier());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let fake_root = Issued {
            cert,
            key,
            serial: 0,
        };
        client_under("forged", &fake_root)
    };
    let pathlen0 = {
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Pathlen0 Int");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &root_ca.cert, &root_ca.key).unwrap();
        Issued {
            cert,
            key,
            serial: 0,
        }
    };
    let below_pathlen0 = ca_under("Below Pathlen0", &pathlen0);
    let leaf_pathlen = client_under("leaf pathlen", &below_pathlen0);
    let critical = {
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "critical");
        params.use_authority_key_identifier_extension = true;
        let mut ext = rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 99999, 1],
            vec![0x05, 0x00],
        );
        ext.set_criticality(true);
        params.custom_extensions = vec![ext];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &root_ca.cert, &root_ca.key).unwrap();
        Issued {
            cert,
            key,
            serial: 1,
        }
    };
    let constrained = {
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Constrained Int");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.use_authority_key_identifier_extension = true;
        params.name_constraints = Some(rcgen::NameConstraints {
            permitted_subtrees: vec![
                rcgen::GeneralSubtree::DnsName("example.org".into()),
                rcgen::GeneralSubtree::IpAddress(rcgen::CidrSubnet::V4(
                    [10, 0, 0, 0],
                    [255, 0, 0, 0],
                )),
            ],
            excluded_subtrees: vec![rcgen::GeneralSubtree::DnsName("bad.example.org".into())],
        });
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &root_ca.cert, &root_ca.key).unwrap();
        Issued {
            cert,
            key,
            serial: 2,
        }
    };
    let named = |cn: &str, sans: Vec<rcgen::SanType>| {
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.subject_alt_names = sans;
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params
            .signed_by(&key, &constrained.cert, &constrained.key)
            .unwrap();
        Issued {
            cert,
            key,
            serial: 3,
        }
    };
    let nc_ok = named("svc.example.org", Vec::new());
    let nc_cn_outside = named("svc.example.com", Vec::new());
    let nc_plain_cn = named("my-client", Vec::new());
    let nc_san_excluded = named(
        "x",
        vec![rcgen::SanType::DnsName(
            "a.bad.example.org".try_into().unwrap(),
        )],
    );
    let nc_ip_outside = named(
        "x",
        vec![rcgen::SanType::IpAddress("192.168.1.1".parse().unwrap())],
    );
    let nc_uri = named(
        "x",
        vec![rcgen::SanType::URI(
            "spiffe://example.org/ns/a".try_into().unwrap(),
        )],
    );
    let idp_crl = {
        let now = time::OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::days(1),
            next_update: now + time::Duration::days(7),
            crl_number: rcgen::SerialNumber::from(77u64),
            issuing_distribution_point: Some(rcgen::CrlIssuingDistributionPoint {
                distribution_point: rcgen::CrlDistributionPoint {
                    uris: vec!["http://crl.example/root.crl".into()],
                },
                scope: Some(rcgen::CrlScope::UserCertsOnly),
            }),
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::PreSpecified(root_ca.cert.key_identifier()),
        };
        params
            .signed_by(&root_ca.cert, &root_ca.key)
            .unwrap()
            .der()
            .clone()
    };
    let forged_key = rcgen::KeyPair::generate().unwrap();
    let v1_leaf = crate::testpki::v1_client_under("legacy v1", &root_ca);

    // The same root key under two spellings of its name: OpenSSL compares names after
    // canonicalization (case, spacing, string type), so the leaf chains to either.
    let shared_key = rcgen::KeyPair::generate().unwrap();
    let spelled = |value: rcgen::DnValue| {
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, value);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = rcgen::KeyPair::from_pem(&shared_key.serialize_pem()).unwrap();
        let cert = params.self_signed(&key).unwrap();
        Issued {
            cert,
            key,
            serial: 9,
        }
    };
    let canonical_root = spelled(rcgen::DnValue::Utf8String("Case  Root".into()));
    let printable_root = spelled(rcgen::DnValue::PrintableString(
        "  case root ".try_into().unwrap(),
    ));
    let differently_named_root = spelled(rcgen::DnValue::Utf8String("Case Root 2".into()));
    let case_leaf = client_under("case leaf", &canonical_root);

    let with_alg =
        |alg: &'static rcgen::SignatureAlgorithm| rcgen::KeyPair::generate_for(alg).unwrap();
    let p384_root =
        Spec::ca("P-384 Root").issue_with_key(None, with_alg(&rcgen::PKCS_ECDSA_P384_SHA384));
    let p384_leaf = Spec::client("p384 leaf")
        .issue_with_key(Some(&p384_root), with_alg(&rcgen::PKCS_ECDSA_P384_SHA384));
    let ed_root = Spec::ca("Ed25519 Root").issue_with_key(None, with_alg(&rcgen::PKCS_ED25519));
    let ed_leaf =
        Spec::client("ed leaf").issue_with_key(Some(&ed_root), with_alg(&rcgen::PKCS_ED25519));
    let mixed_leaf = Spec::client("mixed leaf")
        .issue_with_key(Some(&ed_root), rcgen::KeyPair::generate().unwrap());
    let rsa_root = Spec::ca("RSA Root").issue_with_key(None, rsa_key(2048));
    let rsa_leaf = Spec::client("rsa leaf").issue_with_key(Some(&rsa_root), rsa_key(2048));
    let ec_under_rsa = client_under("ec under rsa", &rsa_root);

    let mut out = vec![
        scenario("leaf under root, depth 0", &[&root_ca], 0, &[&leaf0]),
        scenario(
            "one intermediate, depth 0",
            &[&root_ca],
            0,
            &[&leaf1, &int1],
        ),
        scenario(
            "one intermediate, depth 1",
            &[&root_ca],
            1,
            &[&leaf1, &int1],
        ),
        scenario(
            "two intermediates, depth 1",
            &[&root_ca],
            1,
            &[&leaf2, &int2, &int1],
        ),
        scenario(
            "two intermediates, depth 2, reversed",
            &[&root_ca],
            2,
            &[&leaf2, &int1, &int2],
        ),
        scenario(
            "two intermediates, depth 0",
            &[&root_ca],
            0,
            &[&leaf2, &int1, &int2],
        ),
        scenario("root sent too", &[&root_ca], 1, &[&leaf1, &int1, &root_ca]),
        scenario(
            "root sent too, depth 0",
            &[&root_ca],
            0,
            &[&leaf1, &int1, &root_ca],
        ),
        scenario("missing intermediate", &[&root_ca], 1, &[&leaf1]),
        scenario("unknown CA", &[&root_ca], 1, &[&other_leaf]),
        scenario("unknown CA, depth 0", &[&root_ca], 0, &[&other_leaf]),
        scenario(
            "unknown intermediate",
            &[&root_ca],
            2,
            &[&other_leaf1, &other_int],
        ),
        scenario(
            "unknown chain with root",
            &[&root_ca],
            2,
            &[&other_leaf1, &other_int, &other],
        ),
        scenario(
            "only the intermediate trusted",
            &[&int1],
            1,
            &[&leaf1, &int1],
        ),
        scenario(
            "only the intermediate trusted, not sent",
            &[&int1],
            1,
            &[&leaf1],
        ),
        scenario("expired", &[&root_ca], 1, &[&expired]),
        scenario("not yet valid", &[&root_ca], 1, &[&future]),
        scenario("expired and unknown", &[&root_ca], 1, &[&other_expired]),
        scenario(
            "expired intermediate",
            &[&root_ca],
            1,
            &[&leaf_old_int, &old_int],
        ),
        scenario("expired root", &[&old_root], 1, &[&leaf_old_root]),
        scenario("self-signed client", &[&root_ca], 1, &[&selfie]),
        scenario("self-signed CA as client", &[&root_ca], 1, &[&self_ca]),
        scenario("root as client", &[&root_ca], 1, &[&root_ca]),
        scenario("serverAuth only", &[&root_ca], 1, &[&server_only]),
        scenario("no EKU", &[&root_ca], 1, &[&no_eku]),
        scenario(
            "keyCertSign-only key usage",
            &[&root_ca],
            1,
            &[&cert_sign_only],
        ),
        scenario(
            "issuer is not a CA",
            &[&root_ca],
            2,
            &[&leaf_not_ca, &not_ca],
        ),
        scenario(
            "serverAuth-only intermediate",
            &[&root_ca],
            2,
            &[&leaf_server_int, &server_int],
        ),
        scenario("forged signature", &[&root_ca], 1, &[&forged]),
        scenario(
            "path length exceeded",
            &[&root_ca],
            3,
            &[&leaf_pathlen, &below_pathlen0, &pathlen0],
        ),
        scenario("unknown critical extension", &[&root_ca], 1, &[&critical]),
        scenario("nc: CN inside", &[&root_ca], 1, &[&nc_ok, &constrained]),
        scenario(
            "nc: CN outside",
            &[&root_ca],
            1,
            &[&nc_cn_outside, &constrained],
        ),
        scenario(
            "nc: CN not a host name",
            &[&root_ca],
            1,
            &[&nc_plain_cn, &constrained],
        ),
        scenario(
            "nc: excluded SAN",
            &[&root_ca],
            1,
            &[&nc_san_excluded, &constrained],
        ),
        scenario(
            "nc: IP outside",
            &[&root_ca],
            1,
            &[&nc_ip_outside, &constrained],
        ),
        scenario(
            "nc: URI without URI constraints",
            &[&root_ca],
            1,
            &[&nc_uri, &constrained],
        ),
        with_crls(
            scenario("CRL: revoked", &[&root_ca], 1, &[&leaf0]),
            vec![current_crl(&root_ca, &[&leaf0])],
        ),
        with_crls(
            scenario("CRL: not revoked", &[&root_ca], 1, &[&leaf0]),
            vec![current_crl(&root_ca, &[&leaf1])],
        ),
        with_crls(
            scenario(
                "CRL: missing for intermediate",
                &[&root_ca],
                1,
                &[&leaf1, &int1],
            ),
            vec![current_crl(&root_ca, &[])],
        ),
        with_crls(
            scenario("CRL: only intermediate's", &[&root_ca], 1, &[&leaf1, &int1]),
            vec![current_crl(&int1, &[])],
        ),
        with_crls(
            scenario("CRL: both", &[&root_ca], 1, &[&leaf1, &int1]),
            vec![current_crl(&root_ca, &[]), current_crl(&int1, &[&leaf0])],
        ),
        with_crls(
            scenario(
                "CRL: intermediate revoked",
                &[&root_ca],
                1,
                &[&leaf1, &int1],
            ),
            vec![current_crl(&root_ca, &[&int1]), current_crl(&int1, &[])],
        ),
        with_crls(
            scenario(
                "CRL: revoked leaf, missing intermediate CRL",
                &[&root_ca],
                1,
                &[&leaf1, &int1],
            ),
            vec![current_crl(&int1, &[&leaf1])],
        ),
        with_crls(
            scenario("CRL: expired", &[&root_ca], 1, &[&leaf0]),
            vec![crl(&root_ca, &[], -10, -2)],
        ),
        with_crls(
            scenario("CRL: not yet valid", &[&root_ca], 1, &[&leaf0]),
            vec![crl(&root_ca, &[], 2, 10)],
        ),
        with_crls(
            scenario("CRL: expired and current", &[&root_ca], 1, &[&leaf0]),
            vec![crl(&root_ca, &[], -10, -2), current_crl(&root_ca, &[])],
        ),
        with_crls(
            scenario("CRL: stale revoking", &[&root_ca], 1, &[&leaf0]),
            vec![crl(&root_ca, &[&leaf0], -10, -2)],
        ),
        with_crls(
            scenario("CRL: forged signature", &[&root_ca], 1, &[&leaf0]),
            vec![crl_signed_by(&root_ca, &forged_key, &[], -1, 7)],
        ),
        with_crls(
            scenario("CRL: unknown CA", &[&root_ca], 1, &[&other_leaf]),
            vec![current_crl(&other, &[])],
        ),
        with_crls(
            scenario(
                "CRL: unknown intermediate",
                &[&root_ca],
                2,
                &[&other_leaf1, &other_int],
            ),
            vec![current_crl(&other, &[]), current_crl(&root_ca, &[])],
        ),
        with_crls(
            scenario("CRL: IDP scope", &[&root_ca], 1, &[&leaf1, &int1]),
            vec![idp_crl, current_crl(&int1, &[])],
        ),
        with_crls(
            scenario("CRL: expired leaf", &[&root_ca], 1, &[&expired]),
            vec![current_crl(&root_ca, &[&expired])],
        ),
    ];
    out.extend([
        scenario("v1 client certificate", &[&root_ca], 1, &[]),
        scenario(
            "names compare canonically",
            &[&printable_root],
            1,
            &[&case_leaf],
        ),
        scenario(
            "names compare canonically, same name twice",
            &[&canonical_root, &printable_root],
            1,
            &[&case_leaf],
        ),
        scenario(
            "different name, same key",
            &[&differently_named_root],
            1,
            &[&case_leaf],
        ),
        scenario("P-384", &[&p384_root], 1, &[&p384_leaf]),
        scenario("Ed25519", &[&ed_root], 1, &[&ed_leaf]),
        scenario("P-256 leaf under Ed25519", &[&ed_root], 1, &[&mixed_leaf]),
        scenario("RSA", &[&rsa_root], 1, &[&rsa_leaf]),
        scenario("P-256 leaf under RSA", &[&rsa_root], 1, &[&ec_under_rsa]),
    ]);
    if let Some(s) = out.iter_mut().find(|s| s.name == "v1 client certificate") {
        s.chain = vec![v1_leaf.der.clone()];
    }
    let mut trusted = scenario("trusted_ca anchors too", &[&other], 1, &[&leaf1, &int1]);
    trusted.trusted = ders(&[&root_ca]);
    out.push(trusted);
    let mut trusted_int = scenario(
        "trusted intermediate in trusted_ca",
        &[&root_ca],
        1,
        &[&leaf1],
    );
    trusted_int.trusted = ders(&[&int1]);
    out.push(trusted_int);
    out
}

/// An RSA key from the `openssl` command (rcgen on *ring* cannot generate RSA keys).
fn rsa_key(bits: u32) -> rcgen::KeyPair {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            &format!("rsa_keygen_bits:{bits}"),
        ])
        .output()
        .expect("running openssl genpkey");
    assert!(out.status.success(), "openssl genpkey: {out:?}");
    let pem = String::from_utf8(out.stdout).unwrap();
    rcgen::KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap()
}

#[test]
#[ignore = "needs a C compiler and libssl headers; run with --ignored"]
fn parity_with_openssl() {
    let dir = std::env::temp_dir().join(format!("certgate-pki-parity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = build_harness(&dir);
    let now = UnixTime::now();
    let mut mismatches = Vec::new();
    let all = scenarios();
    for s in &all {
        let (expected, final_code) = openssl_errors(&exe, &dir, s, now.as_secs());
        let v =
            ChainVerifier::new(s.ca.clone(), s.trusted.clone(), s.crls.clone(), s.depth).unwrap();
        let got = v.verify_detailed(&s.chain, now);
        let got_errors: Vec<(i32, usize)> = got.errors.iter().map(|e| (e.code, e.depth)).collect();
        let got_final = got.result.err().map_or(0, |e| e.code);
        if got_errors != expected || got_final != final_code {
            mismatches.push(format!(
                "{}: openssl {:?} -> {}, certgate {:?} -> {}",
                s.name, expected, final_code, got_errors, got_final
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        mismatches.is_empty(),
        "{} of {} scenarios differ:\n{}",
        mismatches.len(),
        all.len(),
        mismatches.join("\n")
    );
}
