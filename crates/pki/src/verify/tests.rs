//! Behaviour of [`ChainVerifier`] on PKIs generated at test time. Every expected code and
//! reason here was checked against OpenSSL 3.0 with nginx's verify settings (see
//! `parity_tests`, which re-checks them against the local libssl when asked to).

use rcgen::ExtendedKeyUsagePurpose;
use rustls_pki_types::{CertificateDer, UnixTime};

use super::codes::*;
use super::*;
use crate::testpki::{ca_under, client_under, crl, current_crl, root, Spec};

fn ders(certs: &[&crate::testpki::Issued]) -> Vec<CertificateDer<'static>> {
    certs.iter().map(|c| c.der()).collect()
}

fn verifier(ca: &[&crate::testpki::Issued], depth: u32) -> ChainVerifier {
    ChainVerifier::new(ders(ca), Vec::new(), Vec::new(), depth).unwrap()
}

fn codes_of(v: &Verification) -> Vec<(i32, usize)> {
    v.errors.iter().map(|e| (e.code, e.depth)).collect()
}

#[track_caller]
fn assert_fails(result: Result<VerifiedChain, VerifyFailure>, code: i32, reason: &str) {
    let failure = result.expect_err("verification should fail");
    assert_eq!(
        (failure.code, failure.reason),
        (code, reason),
        "got {failure:?}"
    );
    assert_eq!(failure.to_string(), reason);
}

#[test]
fn leaf_directly_under_root_passes_with_depth_zero() {
    let ca = root("Root CA");
    let leaf = client_under("client", &ca);
    let v = verifier(&[&ca], 0);
    assert_eq!(
        v.verify(&ders(&[&leaf]), UnixTime::now()),
        Ok(VerifiedChain { depth: 0 })
    );
}

#[test]
fn one_intermediate_needs_depth_one() {
    let ca = root("Root CA");
    let int = ca_under("Intermediate", &ca);
    let leaf = client_under("client", &int);
    let chain = ders(&[&leaf, &int]);

    // nginx reports the last error OpenSSL's callback saw: chain building first flags the
    // chain as too long, then as ending at an untrusted certificate.
    let too_deep = verifier(&[&ca], 0).verify_detailed(&chain, UnixTime::now());
    assert_eq!(
        codes_of(&too_deep),
        vec![
            (CERT_CHAIN_TOO_LONG, 1),
            (UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 1)
        ]
    );
    assert_fails(
        too_deep.result,
        UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
        "unable to get local issuer certificate",
    );

    assert_eq!(
        verifier(&[&ca], 1).verify(&chain, UnixTime::now()),
        Ok(VerifiedChain { depth: 1 })
    );
}

#[test]
fn two_intermediates_need_depth_two_in_any_order() {
    let ca = root("Root CA");
    let int1 = ca_under("Intermediate 1", &ca);
    let int2 = ca_under("Intermediate 2", &int1);
    let leaf = client_under("client", &int2);

    let too_deep =
        verifier(&[&ca], 1).verify_detailed(&ders(&[&leaf, &int2, &int1]), UnixTime::now());
    assert_eq!(
        codes_of(&too_deep),
        vec![
            (CERT_CHAIN_TOO_LONG, 2),
            (UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 2)
        ]
    );

    let v = verifier(&[&ca], 2);
    assert_eq!(
        v.verify(&ders(&[&leaf, &int2, &int1]), UnixTime::now()),
        Ok(VerifiedChain { depth: 2 })
    );
    // Out of order, with an unrelated extra certificate and the root itself: all fine.
    let stranger = root("Stranger");
    assert_eq!(
        v.verify(
            &ders(&[&leaf, &ca, &stranger, &int1, &int2]),
            UnixTime::now()
        ),
        Ok(VerifiedChain { depth: 2 })
    );
}

#[test]
fn unknown_ca_reasons_match_openssl() {
    let ca = root("Root CA");
    let other = root("Other CA");
    let other_int = ca_under("Other Intermediate", &other);
    let v = verifier(&[&ca], 2);

    // A lone certificate from an unknown CA: OpenSSL adds "unable to verify the first
    // certificate" after "unable to get local issuer certificate", and nginx shows the former.
    let lone = v.verify_detailed(&ders(&[&client_under("c", &other)]), UnixTime::now());
    assert_eq!(
        codes_of(&lone),
        vec![
            (UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 0),
            (UNABLE_TO_VERIFY_LEAF_SIGNATURE, 0)
        ]
    );
    assert_fails(
        lone.result,
        UNABLE_TO_VERIFY_LEAF_SIGNATURE,
        "unable to verify the first certificate",
    );

    // With the unknown intermediate sent along, the chain ends at the intermediate.
    let with_int = v.verify(
        &ders(&[&client_under("c", &other_int), &other_int]),
        UnixTime::now(),
    );
    assert_fails(
        with_int,
        UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
        "unable to get local issuer certificate",
    );

    // ... and with the unknown root too, at a self-signed certificate.
    let with_root = v.verify(
        &ders(&[&client_under("c", &other_int), &other_int, &other]),
        UnixTime::now(),
    );
    assert_fails(
        with_root,
        SELF_SIGNED_CERT_IN_CHAIN,
        "self-signed certificate in certificate chain",
    );
}

#[test]
fn trusted_intermediate_is_not_an_anchor_without_its_root() {
    let ca = root("Root CA");
    let int = ca_under("Intermediate", &ca);
    let leaf = client_under("client", &int);
    let v = verifier(&[&int], 1);
    let result = v.verify_detailed(&ders(&[&leaf, &int]), UnixTime::now());
    assert_eq!(codes_of(&result), vec![(UNABLE_TO_GET_ISSUER_CERT, 1)]);
    assert_fails(
        result.result,
        UNABLE_TO_GET_ISSUER_CERT,
        "unable to get issuer certificate",
    );
}

#[test]
fn validity_dates() {
    let ca = root("Root CA");
    let v = verifier(&[&ca], 1);
    let expired = Spec::client("expired").valid(-10, -2).issue(Some(&ca));
    assert_fails(
        v.verify(&ders(&[&expired]), UnixTime::now()),
        CERT_HAS_EXPIRED,
        "certificate has expired",
    );
    let future = Spec::client("future").valid(2, 10).issue(Some(&ca));
    assert_fails(
        v.verify(&ders(&[&future]), UnixTime::now()),
        CERT_NOT_YET_VALID,
        "certificate is not yet valid",
    );

    // An expired intermediate is reported too (dates are checked on the whole chain).
    let old_int = Spec::ca("Old Intermediate").valid(-10, -2).issue(Some(&ca));
    let leaf = client_under("client", &old_int);
    let result = v.verify_detailed(&ders(&[&leaf, &old_int]), UnixTime::now());
    assert_eq!(codes_of(&result), vec![(CERT_HAS_EXPIRED, 1)]);

    // Expired and from an unknown CA: the date error comes last, so nginx shows it.
    let other = root("Other CA");
    let both = Spec::client("both").valid(-10, -2).issue(Some(&other));
    let result = v.verify_detailed(&ders(&[&both]), UnixTime::now());
    assert_eq!(
        codes_of(&result),
        vec![
            (UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 0),
            (UNABLE_TO_VERIFY_LEAF_SIGNATURE, 0),
            (CERT_HAS_EXPIRED, 0)
        ]
    );
}

#[test]
fn self_signed_client_certificate() {
    let ca = root("Root CA");
    let v = verifier(&[&ca], 1);
    let selfie = Spec::client("me").issue(None);
    assert_fails(
        v.verify(&ders(&[&selfie]), UnixTime::now()),
        DEPTH_ZERO_SELF_SIGNED_CERT,
        "self-signed certificate",
    );
}

#[test]
fn purpose_checks() {
    let ca = root("Root CA");
    let v = verifier(&[&ca], 1);
    let server_only = Spec::client("server")
        .eku(vec![ExtendedKeyUsagePurpose::ServerAuth])
        .issue(Some(&ca));
    assert_fails(
        v.verify(&ders(&[&server_only]), UnixTime::now()),
        INVALID_PURPOSE,
        "unsuitable certificate purpose",
    );

    // No EKU at all is fine.
    let no_eku = Spec::client("plain").eku(Vec::new()).issue(Some(&ca));
    assert_eq!(
        v.verify(&ders(&[&no_eku]), UnixTime::now()),
        Ok(VerifiedChain { depth: 0 })
    );

    // The trusted root presented as a client certificate: its keyUsage has no
    // digitalSignature, so OpenSSL's sslclient purpose refuses it.
    let result = v.verify_detailed(&ders(&[&ca]), UnixTime::now());
    assert_eq!(codes_of(&result), vec![(INVALID_PURPOSE, 0)]);

    // A non-CA certificate used as an issuer: not a CA, not fit for the CA role, and its
    // keyUsage does not allow signing certificates (the last is what nginx shows).
    let not_ca = client_under("not a CA", &ca);
    let leaf = client_under("client", &not_ca);
    let result = verifier(&[&ca], 2).verify_detailed(&ders(&[&leaf, &not_ca]), UnixTime::now());
    assert_eq!(
        codes_of(&result),
        vec![
            (INVALID_CA, 1),
            (INVALID_PURPOSE, 1),
            (KEYUSAGE_NO_CERTSIGN, 1)
        ]
    );
    assert_fails(
        result.result,
        KEYUSAGE_NO_CERTSIGN,
        "key usage does not include certificate signing",
    );
}

#[test]
fn signature_made_with_another_key_fails() {
    let ca = root("Root CA");
    let impostor = Spec::ca("Root CA").issue(None); // same name, different key
    let forged = client_under("client", &impostor);
    let v = verifier(&[&ca], 1);
    // rcgen adds an authority key identifier, so the real root is not even a candidate issuer.
    assert_fails(
        v.verify(&ders(&[&forged]), UnixTime::now()),
        UNABLE_TO_VERIFY_LEAF_SIGNATURE,
        "unable to verify the first certificate",
    );
}

#[test]
fn revoked_client_certificate() {
    let ca = root("Root CA");
    let leaf = client_under("client", &ca);
    let other = client_under("other client", &ca);
    let crls = vec![current_crl(&ca, &[&leaf])];
    let v = ChainVerifier::new(ders(&[&ca]), Vec::new(), crls, 1).unwrap();
    assert_fails(
        v.verify(&ders(&[&leaf]), UnixTime::now()),
        CERT_REVOKED,
        "certificate revoked",
    );
    assert_eq!(
        v.verify(&ders(&[&other]), UnixTime::now()),
        Ok(VerifiedChain { depth: 0 })
    );
}

#[test]
fn crl_check_covers_intermediates() {
    let ca = root("Root CA");
    let int = ca_under("Intermediate", &ca);
    let leaf = client_under("client", &int);
    let chain = ders(&[&leaf, &int]);

    // Only the root's CRL: nothing covers the client certificate (issued by the intermediate).
    let v = ChainVerifier::new(ders(&[&ca]), Vec::new(), vec![current_crl(&ca, &[])], 1).unwrap();
    let result = v.verify_detailed(&chain, UnixTime::now());
    assert_eq!(codes_of(&result), vec![(UNABLE_TO_GET_CRL, 0)]);
    assert_fails(
        result.result,
        UNABLE_TO_GET_CRL,
        "unable to get certificate CRL",
    );

    // Only the intermediate's CRL: the intermediate and the root (OpenSSL 3.0 checks it too) lack one.
    let v = ChainVerifier::new(ders(&[&ca]), Vec::new(), vec![current_crl(&int, &[])], 1).unwrap();
    let result = v.verify_detailed(&chain, UnixTime::now());
    assert_eq!(
        codes_of(&result),
        vec![(UNABLE_TO_GET_CRL, 1), (UNABLE_TO_GET_CRL, 2)]
    );

    // Both: fine. The root revoking the intermediate: revoked at depth 1.
    let v = ChainVerifier::new(
        ders(&[&ca]),
        Vec::new(),
        vec![current_crl(&ca, &[]), current_crl(&int, &[])],
        1,
    )
    .unwrap();
    assert_eq!(
        v.verify(&chain, UnixTime::now()),
        Ok(VerifiedChain { depth: 1 })
    );
    let v = ChainVerifier::new(
        ders(&[&ca]),
        Vec::new(),
        vec![current_crl(&ca, &[&int]), current_crl(&int, &[])],
        1,
    )
    .unwrap();
    let result = v.verify_detailed(&chain, UnixTime::now());
    assert_eq!(codes_of(&result), vec![(CERT_REVOKED, 1)]);
}

#[test]
fn crl_validity_and_signature() {
    let ca = root("Root CA");
    let leaf = client_under("client", &ca);
    let check = |crls| {
        ChainVerifier::new(ders(&[&ca]), Vec::new(), crls, 1)
            .unwrap()
            .verify_detailed(&ders(&[&leaf]), UnixTime::now())
    };

    // The root's CRL covers both the client certificate and the root itself.
    let expired = check(vec![crl(&ca, &[], -10, -2)]);
    assert_eq!(
        codes_of(&expired),
        vec![(CRL_HAS_EXPIRED, 0), (CRL_HAS_EXPIRED, 1)]
    );
    assert_fails(expired.result, CRL_HAS_EXPIRED, "CRL has expired");

    let future = check(vec![crl(&ca, &[], 2, 10)]);
    assert_eq!(
        codes_of(&future),
        vec![(CRL_NOT_YET_VALID, 0), (CRL_NOT_YET_VALID, 1)]
    );
    assert_fails(future.result, CRL_NOT_YET_VALID, "CRL is not yet valid");

    // A current CRL is preferred over an expired one.
    assert_eq!(
        check(vec![crl(&ca, &[], -10, -2), current_crl(&ca, &[])]).result,
        Ok(VerifiedChain { depth: 0 })
    );

    // A CRL signed by another key that claims the root's name and key identifier.
    let forged = check(vec![crate::testpki::crl_signed_by(
        &ca,
        &rcgen::KeyPair::generate().unwrap(),
        &[],
        -1,
        7,
    )]);
    assert_eq!(
        codes_of(&forged),
        vec![(CRL_SIGNATURE_FAILURE, 0), (CRL_SIGNATURE_FAILURE, 1)]
    );
    assert_fails(
        forged.result,
        CRL_SIGNATURE_FAILURE,
        "CRL signature failure",
    );

    // An expired CRL is still consulted: the revocation is reported after the CRL's date
    // error, and the root's own check (same CRL) comes last.
    let stale = check(vec![crl(&ca, &[&leaf], -10, -2)]);
    assert_eq!(
        codes_of(&stale),
        vec![
            (CRL_HAS_EXPIRED, 0),
            (CERT_REVOKED, 0),
            (CRL_HAS_EXPIRED, 1)
        ]
    );
}

#[test]
fn root_hints_name_ca_but_not_trusted_ca() {
    let ca = root("Named CA");
    let hidden = root("Hidden CA");
    let v = ChainVerifier::new(ders(&[&ca, &ca]), ders(&[&hidden]), Vec::new(), 1).unwrap();
    let hints = v.root_hint_subjects();
    assert_eq!(hints.len(), 1, "duplicates are named once");
    let (_, name) = <x509_parser::x509::X509Name as x509_parser::prelude::FromDer<_>>::from_der(
        hints[0].as_ref(),
    )
    .unwrap();
    assert_eq!(name.to_string(), "CN=Named CA");

    // Both are trusted.
    let from_hidden = client_under("client", &hidden);
    assert_eq!(
        v.verify(&ders(&[&from_hidden]), UnixTime::now()),
        Ok(VerifiedChain { depth: 0 })
    );
}

#[test]
fn name_constraints_of_the_issuer_apply() {
    let ca = root("Root CA");
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Constrained");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.use_authority_key_identifier_extension = true;
    params.name_constraints = Some(rcgen::NameConstraints {
        permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName("example.org".into())],
        excluded_subtrees: Vec::new(),
    });
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let constrained = crate::testpki::Issued {
        cert,
        key,
        serial: 0,
    };

    let v = verifier(&[&ca], 1);
    let inside = {
        let mut spec = Spec::client("client");
        spec.cn = "svc.example.org".into();
        spec.issue(Some(&constrained))
    };
    assert_eq!(
        v.verify(&ders(&[&inside, &constrained]), UnixTime::now()),
        Ok(VerifiedChain { depth: 1 })
    );
    let outside = {
        let mut spec = Spec::client("client");
        spec.cn = "svc.example.com".into();
        spec.issue(Some(&constrained))
    };
    assert_fails(
        v.verify(&ders(&[&outside, &constrained]), UnixTime::now()),
        PERMITTED_VIOLATION,
        "permitted subtree violation",
    );
}

#[test]
fn unparseable_client_certificate() {
    let ca = root("Root CA");
    let v = verifier(&[&ca], 1);
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
    assert_fails(
        v.verify(&[garbage], UnixTime::now()),
        UNSPECIFIED,
        "unspecified certificate verification error",
    );
    assert_eq!(
        v.verify(&[], UnixTime::now()).unwrap_err().code,
        UNSPECIFIED
    );
}

#[test]
fn no_trust_anchors_at_all() {
    let ca = root("Root CA");
    let v = ChainVerifier::new(Vec::new(), Vec::new(), Vec::new(), 1).unwrap();
    assert!(v.root_hint_subjects().is_empty());
    let result = v.verify(&ders(&[&client_under("client", &ca)]), UnixTime::now());
    assert_fails(
        result,
        UNABLE_TO_VERIFY_LEAF_SIGNATURE,
        "unable to verify the first certificate",
    );
}

#[test]
fn invalid_inputs_to_new_are_errors() {
    let bad = CertificateDer::from(vec![1, 2, 3]);
    let err = ChainVerifier::new(vec![bad], Vec::new(), Vec::new(), 1).unwrap_err();
    assert!(err.to_string().contains("trusted certificate #1"), "{err}");
    let bad_crl = rustls_pki_types::CertificateRevocationListDer::from(vec![1, 2, 3]);
    let err = ChainVerifier::new(Vec::new(), Vec::new(), vec![bad_crl], 1).unwrap_err();
    assert!(err.to_string().contains("CRL #1"), "{err}");
}

#[test]
fn a_remembered_success_never_outlives_the_certificate() {
    let ca = root("Root CA");
    // Valid from 10 days ago until 30 seconds from now (rounded to whole days by rcgen,
    // so use the certificate's own notAfter below).
    let leaf = Spec::client("short").valid(-10, 1).issue(Some(&ca));
    let chain = ders(&[&leaf]);
    let v = verifier(&[&ca], 0);
    let not_after = crate::cert::Cert::parse(&chain[0]).unwrap().not_after;

    let before =
        UnixTime::since_unix_epoch(std::time::Duration::from_secs((not_after - 20) as u64));
    assert_eq!(v.verify(&chain, before), Ok(VerifiedChain { depth: 0 }));
    // The same chain again, now past notAfter: the memo must not answer.
    let after = UnixTime::since_unix_epoch(std::time::Duration::from_secs((not_after + 1) as u64));
    assert_fails(
        v.verify(&chain, after),
        CERT_HAS_EXPIRED,
        "certificate has expired",
    );
    // And a failure is not remembered either: before notAfter it verifies again.
    assert_eq!(v.verify(&chain, before), Ok(VerifiedChain { depth: 0 }));
}

#[test]
fn a_remembered_success_is_for_that_exact_chain_and_verifier() {
    let ca = root("Root CA");
    let other = root("Other CA");
    let leaf = client_under("client", &ca);
    let stranger = client_under("client", &other);
    let v = verifier(&[&ca], 0);
    assert!(v.verify(&ders(&[&leaf]), UnixTime::now()).is_ok());
    assert!(v.verify(&ders(&[&leaf]), UnixTime::now()).is_ok());
    assert_fails(
        v.verify(&ders(&[&stranger]), UnixTime::now()),
        UNABLE_TO_VERIFY_LEAF_SIGNATURE,
        "unable to verify the first certificate",
    );
    // A new verifier (what a reload builds) starts with nothing remembered.
    let rotated = verifier(&[&other], 0);
    assert_fails(
        rotated.verify(&ders(&[&leaf]), UnixTime::now()),
        UNABLE_TO_VERIFY_LEAF_SIGNATURE,
        "unable to verify the first certificate",
    );
}
