//! The checks behind certgate's fuzz targets, one function per target.
//!
//! Each `fuzz_targets/<name>.rs` only hands its input to the function of the same name
//! here, so that the same checks also run without the fuzzer: the workspace test
//! `crates/certgate/tests/fuzz_regressions.rs` replays every seed (`fuzz/corpus/`) and every
//! input a fuzzer once crashed on (`fuzz/regressions/`) through these functions on the
//! stable toolchain. A function panics (the fuzzer's "crash") when the code under test
//! panics or when one of the invariants asserted here does not hold.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use certgate_config::{Config, Location};
use certgate_identity::{ClientCert, HeaderPlan, Identity, Preset, Template, TlsInfo, Variable};
use certgate_identity::{IdentityError, VerifyResult};
use certgate_pki::{ChainVerifier, PkiError};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::FromDer;

/// The CA that signed the client certificate and the CRLs of the seed corpora (public
/// certificate only; made by `fuzz/gen-seeds.py`).
const FIXTURE_CA: &[u8] = include_bytes!("../fixtures/ca.der");
/// A client certificate issued by [`FIXTURE_CA`].
const FIXTURE_CLIENT: &[u8] = include_bytes!("../fixtures/client.der");

/// "Now" for verification and `$ssl_client_v_remain`: 2027-01-15, inside the fixtures'
/// validity. A fixed value keeps every run of an input the same.
const NOW: i64 = 1_800_000_000;

/// Where the fuzzed "files" claim to come from, for error messages.
const FILE: &str = "/nonexistent/fuzz/input";

// ---------------------------------------------------------------------------------------
// config_yaml

/// `gateway.yaml` text → [`Config::parse`] (what `certgate check` and `run` call after
/// reading the file; it opens nothing), then the identity header plans the proxy compiles
/// from each server.
///
/// Invariants: every error and warning has a line and column inside the text (line 0 is
/// reserved for "the whole file", which parsing text never reports) and prints with the
/// file name in front; a key path is only reported with a position.
pub fn config_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/nonexistent/fuzz/gateway.yaml");
    match Config::parse(text, file) {
        Err(errors) => {
            assert!(!errors.is_empty(), "a failed parse reports no error");
            for error in errors.iter() {
                check_location(&error.location, text, file, &error.to_string());
                assert!(!error.message.is_empty(), "an error without a message");
                assert!(
                    error.to_string().starts_with(&file.display().to_string()),
                    "an error that does not name the file: {error}"
                );
            }
        }
        Ok(config) => {
            for warning in config.warnings() {
                check_location(&warning.location, text, file, &warning.to_string());
            }
            assert!(!config.servers.is_empty() && !config.upstreams.is_empty());
            for (i, server) in config.servers.iter().enumerate() {
                let presets: Vec<Preset> = server
                    .identity
                    .presets
                    .iter()
                    .map(|p| match p {
                        certgate_config::Preset::Nginx => Preset::Nginx,
                        certgate_config::Preset::Xfcc => Preset::Xfcc,
                        certgate_config::Preset::Rfc9440 => Preset::Rfc9440,
                        certgate_config::Preset::None => Preset::None,
                    })
                    .collect();
                // A template error is a configuration error the proxy reports at
                // `servers[i].identity.set`; both outcomes are fine here.
                let _ = HeaderPlan::new(&presets, &server.identity.set);
                let located = config.locate(&format!("servers[{i}].identity.set"));
                check_location(&located, text, file, "Config::locate");
            }
        }
    }
}

/// Lines in `text` as YAML counts them (`\n`, `\r\n`, lone `\r`), plus one for a
/// position just past the end.
fn line_count(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut lines = 1;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
            lines += 1;
        }
    }
    lines + 1
}

fn check_location(location: &Location, text: &str, file: &Path, what: &str) {
    assert_eq!(location.file, file, "{what}");
    assert!(
        location.line >= 1 && location.column >= 1,
        "no line/column: {what}"
    );
    assert!(
        location.line <= line_count(text),
        "line {} past the end of a {}-line text: {what}",
        location.line,
        line_count(text) - 1
    );
}

// ---------------------------------------------------------------------------------------
// identity_cert

/// Client certificate DER (as it arrives in the TLS handshake) → [`ClientCert`] and every
/// variable and header derived from it, and the client-certificate verifier.
///
/// Invariants: the DNs are printable ASCII (OpenSSL's RFC 2253 escaping leaves nothing
/// else, so they are always valid header values) and parse back, as RFC 2253, into the
/// certificate's RDN structure and commonName values; the escaped PEM and the RFC 9440
/// values decode back to the certificate; XFCC quotes the subject without an unescaped `"`;
/// every prepared header is what its template renders; the verifier's memoised and
/// detailed paths agree.
pub fn identity_cert(data: &[u8]) {
    verify_agrees(&fixture_verifier(Vec::new()), &[CertificateDer::from(data)]);
    let Ok(cert) = ClientCert::from_chain(&[data, FIXTURE_CA]) else {
        return;
    };
    assert_eq!(cert.leaf_der(), data);
    let (_, x509) = x509_parser::certificate::X509Certificate::from_der(data)
        .unwrap_or_else(|e| panic!("ClientCert accepted what x509-parser rejects: {e}"));

    for (dn, name) in [
        (cert.subject_dn(), x509.subject()),
        (cert.issuer_dn(), x509.issuer()),
    ] {
        assert!(printable_ascii(dn), "DN is not printable ASCII: {dn:?}");
        let parsed = parse_rfc2253(dn).unwrap_or_else(|| panic!("not RFC 2253: {dn:?}"));
        let mut expected: Vec<usize> = name
            .iter_rdn()
            .map(|rdn| rdn.iter().count())
            .filter(|&n| n > 0)
            .collect();
        expected.reverse();
        let got: Vec<usize> = parsed.iter().map(Vec::len).collect();
        assert_eq!(got, expected, "RDN structure of {dn:?}");
    }
    let parsed = parse_rfc2253(cert.subject_dn()).unwrap_or_default();
    let mut cns: Vec<String> = parsed
        .iter()
        .flatten()
        .filter(|(kind, _)| kind == "CN")
        .filter_map(|(_, value)| match value {
            DnValue::Text(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            DnValue::Hex(_) => None,
        })
        .collect();
    cns.reverse();
    assert_eq!(
        cns,
        cert.subject_values("CN"),
        "CN values in {:?}",
        cert.subject_dn()
    );
    for legacy in [cert.subject_dn_legacy(), cert.issuer_dn_legacy()] {
        assert!(printable_ascii(legacy), "legacy DN: {legacy:?}");
    }

    for fingerprint in [
        cert.fingerprint_sha1_hex(),
        cert.fingerprint_sha256_hex(),
        cert.spki_sha256_hex(),
    ] {
        assert!(fingerprint
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
    assert_eq!(cert.fingerprint_sha1_hex().len(), 40);
    assert_eq!(cert.fingerprint_sha256_hex().len(), 64);
    let serial = cert.serial();
    assert!(
        !serial.is_empty()
            && serial
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b) || b"-\\\n".contains(&b)),
        "serial {serial:?}"
    );

    assert_eq!(decode_escaped_pem(cert.escaped_pem()), data);
    assert_eq!(decode_sf_binary(cert.rfc9440()), data);
    assert_eq!(decode_sf_binary(cert.rfc9440_chain()), FIXTURE_CA);
    let xfcc = cert.xfcc();
    let subject = format!(";Subject=\"{}\"", cert.subject_dn());
    assert!(
        xfcc.starts_with(&format!("Hash={}{subject}", cert.fingerprint_sha256_hex())),
        "xfcc {xfcc:?}"
    );
    assert!(
        parse_rfc2253(cert.subject_dn()).is_some() && !has_unescaped(cert.subject_dn(), b'"'),
        "an unescaped quote ends XFCC's Subject early: {xfcc:?}"
    );
    if let Some(spiffe) = cert.spiffe_id() {
        assert!(cert.san_uri().iter().any(|u| u == spiffe));
    }
    for now in [0, NOW, cert.not_after_unix(), i64::from(u32::MAX)] {
        let _ = cert.days_remaining(now);
    }

    let cert = Arc::new(cert);
    let set: Vec<(String, String)> = Variable::ALL
        .iter()
        .map(|v| {
            (
                format!("x-fuzz-{}", v.name().replace('_', "-")),
                format!("{v}"),
            )
        })
        .collect();
    let plan = HeaderPlan::new(&[Preset::Nginx, Preset::Xfcc, Preset::Rfc9440], &set)
        .unwrap_or_else(|e| panic!("a plan of every variable: {e}"));
    for verify in [
        VerifyResult::Success,
        VerifyResult::Failed("certificate has expired".into()),
        VerifyResult::None,
    ] {
        let identity = Identity {
            verify,
            cert: Some(Arc::clone(&cert)),
            tls: tls_info(),
        };
        let prepared = plan.prepare(&identity, NOW);
        for (name, template) in plan.iter() {
            let rendered = template.render(&identity, NOW);
            match prepared.get(name.as_str()) {
                Some(value) => assert_eq!(value.as_bytes(), rendered.as_bytes(), "{name}"),
                None => assert!(
                    rendered.is_empty() || http::HeaderValue::try_from(rendered.as_str()).is_err(),
                    "{name} was dropped though {rendered:?} is a header value"
                ),
            }
        }
    }
}

fn tls_info() -> TlsInfo {
    TlsInfo {
        protocol: "TLSv1.3".into(),
        cipher: "TLS_AES_128_GCM_SHA256".into(),
        server_name: Some("gateway.example".into()),
        remote_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        remote_port: 50_000,
    }
}

fn printable_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// One attribute value of a DN printed by `X509_NAME_print_ex(.., XN_FLAG_RFC2253)`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DnValue {
    /// A string value, unescaped (`\,` → `,`, `\C3\A9` → bytes C3 A9).
    Text(Vec<u8>),
    /// `#` and the DER of a value OpenSSL dumps (unknown type, non-string value).
    Hex(Vec<u8>),
}

/// Parses RFC 2253 text back into RDNs of (type, value), or `None` when it is not
/// well-formed (a dangling `\`, a bad hex escape or dump, a missing `=`).
fn parse_rfc2253(dn: &str) -> Option<Vec<Vec<(String, DnValue)>>> {
    let bytes = dn.as_bytes();
    let mut rdns: Vec<Vec<(String, DnValue)>> = Vec::new();
    if bytes.is_empty() {
        return Some(rdns);
    }
    let mut current = Vec::new();
    let mut i = 0;
    loop {
        let eq = i + bytes[i..].iter().position(|&b| b == b'=')?;
        let kind = std::str::from_utf8(&bytes[i..eq]).ok()?.to_owned();
        if kind.is_empty() || kind.bytes().any(|b| b",+\\".contains(&b)) {
            return None;
        }
        i = eq + 1;
        let value = if bytes.get(i) == Some(&b'#') {
            i += 1;
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
                i += 1;
            }
            let hex = &bytes[start..i];
            if hex.is_empty() {
                // A value that is just `#` is printed unescaped (OpenSSL escapes a leading
                // `#` only when it is not also the last character).
                DnValue::Text(b"#".to_vec())
            } else if !hex.len().is_multiple_of(2) {
                return None;
            } else {
                DnValue::Hex(
                    hex.chunks(2)
                        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
                        .collect::<Option<Vec<u8>>>()?,
                )
            }
        } else {
            let mut out = Vec::new();
            while i < bytes.len() && bytes[i] != b',' && bytes[i] != b'+' {
                if bytes[i] == b'\\' {
                    let next = *bytes.get(i + 1)?;
                    if next.is_ascii_hexdigit() {
                        let pair = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                        out.push(u8::from_str_radix(pair, 16).ok()?);
                        i += 3;
                    } else if b"\"+,;<>\\ #".contains(&next) {
                        out.push(next);
                        i += 2;
                    } else {
                        return None;
                    }
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            DnValue::Text(out)
        };
        current.push((kind, value));
        match bytes.get(i) {
            None => break,
            Some(b',') => rdns.push(std::mem::take(&mut current)),
            Some(_) => {}
        }
        i += 1;
        if i == bytes.len() {
            return None;
        }
    }
    rdns.push(current);
    Some(rdns)
}

/// Whether `byte` occurs in `s` other than right after a `\`.
fn has_unescaped(s: &str, byte: u8) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == byte => return true,
            _ => i += 1,
        }
    }
    false
}

/// `$ssl_client_escaped_cert` → DER: percent-decoding, then the PEM body.
fn decode_escaped_pem(escaped: &str) -> Vec<u8> {
    let bytes = escaped.as_bytes();
    let mut pem = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ASCII escape");
            pem.push(u8::from_str_radix(hex, 16).expect("hex escape"));
            i += 3;
        } else {
            pem.push(bytes[i]);
            i += 1;
        }
    }
    let pem = String::from_utf8(pem).expect("PEM is ASCII");
    let body = pem
        .strip_prefix("-----BEGIN CERTIFICATE-----\n")
        .and_then(|rest| rest.strip_suffix("-----END CERTIFICATE-----\n"))
        .unwrap_or_else(|| panic!("PEM framing: {pem:?}"));
    assert!(body.lines().all(|line| line.len() <= 64), "PEM line width");
    base64::engine::general_purpose::STANDARD
        .decode(body.replace('\n', ""))
        .expect("PEM base64")
}

/// An RFC 8941 sf-binary (`:base64:`) → bytes.
fn decode_sf_binary(value: &str) -> Vec<u8> {
    let inner = value
        .strip_prefix(':')
        .and_then(|v| v.strip_suffix(':'))
        .unwrap_or_else(|| panic!("sf-binary framing: {value:?}"));
    base64::engine::general_purpose::STANDARD
        .decode(inner)
        .expect("sf-binary base64")
}

// ---------------------------------------------------------------------------------------
// identity_template

/// Header template text (`identity.set` values in `gateway.yaml`) → [`Template::parse`],
/// rendering, and a header plan. The first line is also tried as a header name.
///
/// Invariants: a parsed template keeps its source, has one variable per `$`, and renders
/// a template without variables as its text; an error's byte position points at the `$`
/// of the variable it blames, and an unknown variable's name is in the text.
pub fn identity_template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Template::parse(text) {
        Ok(template) => {
            assert_eq!(template.source(), text);
            let dollars = text.bytes().filter(|&b| b == b'$').count();
            assert_eq!(template.variables().count(), dollars, "{text:?}");
            let client = ClientCert::from_chain(&[FIXTURE_CLIENT])
                .unwrap_or_else(|e| panic!("fixture client certificate: {e}"));
            for cert in [None, Some(Arc::new(client))] {
                let identity = Identity {
                    verify: VerifyResult::Success,
                    cert,
                    tls: tls_info(),
                };
                let rendered = template.render(&identity, NOW);
                if dollars == 0 {
                    assert_eq!(rendered, text);
                }
            }
            assert_eq!(Template::parse(template.source()).ok(), Some(template));
        }
        Err(
            IdentityError::InvalidVariableName { template, position }
            | IdentityError::UnclosedVariable { template, position },
        ) => {
            assert_eq!(template, text);
            assert_eq!(text.as_bytes().get(position), Some(&b'$'), "{text:?}");
        }
        Err(IdentityError::UnknownVariable(name)) => {
            assert!(
                text.to_ascii_lowercase()
                    .contains(&name.to_ascii_lowercase()),
                "{name:?} not in {text:?}"
            );
        }
        Err(e) => panic!("unexpected template error {e:?}"),
    }
    if let Some((name, value)) = text.split_once('\n') {
        let _ = HeaderPlan::new(&[Preset::Nginx], &[(name.to_owned(), value.to_owned())]);
    }
}

// ---------------------------------------------------------------------------------------
// pki_pem

/// A certificate or key file's bytes (PEM bundle or DER) → the loaders' pure parsers
/// ([`certgate_pki::parse_certs`], [`certgate_pki::parse_private_key`]), then the loaded
/// certificates as a trust store and as a chain to verify.
///
/// Invariants: errors name the file; loaded certificates are non-empty, summarize, and
/// always make a valid trust store (loading already parsed them); the verifier's
/// memoised and detailed paths agree.
pub fn pki_pem(data: &[u8]) {
    let path = Path::new(FILE);
    if let Err(e) = certgate_pki::parse_private_key(path, data) {
        check_names_file(&e);
    }
    let certs = match certgate_pki::parse_certs(path, data) {
        Ok(certs) => certs,
        Err(e) => {
            check_names_file(&e);
            return;
        }
    };
    assert!(!certs.is_empty());
    for cert in &certs {
        certgate_pki::summarize(cert)
            .unwrap_or_else(|e| panic!("a loaded certificate does not summarize: {e}"));
    }
    let store = ChainVerifier::new(certs.clone(), Vec::new(), Vec::new(), 9)
        .unwrap_or_else(|e| panic!("loaded certificates are not a trust store: {e}"));
    verify_agrees(&store, &certs);
    verify_agrees(&fixture_verifier(Vec::new()), &certs);
}

// ---------------------------------------------------------------------------------------
// pki_crl

/// A CRL file's bytes (PEM `X509 CRL` blocks or one DER CRL) →
/// [`certgate_pki::parse_crls`], then a verifier with those CRLs checking the fixture
/// client certificate.
///
/// Invariants: errors name the file; loaded CRLs always make a valid verifier; its
/// memoised and detailed paths agree.
pub fn pki_crl(data: &[u8]) {
    let path = Path::new(FILE);
    let crls = match certgate_pki::parse_crls(path, data) {
        Ok(crls) => crls,
        Err(e) => {
            check_names_file(&e);
            return;
        }
    };
    assert!(!crls.is_empty());
    let verifier = fixture_verifier(crls);
    verify_agrees(&verifier, &[CertificateDer::from(FIXTURE_CLIENT)]);
}

fn check_names_file(error: &PkiError) {
    assert!(error.to_string().contains(FILE), "{error}");
}

fn fixture_verifier(
    crls: Vec<rustls_pki_types::CertificateRevocationListDer<'static>>,
) -> ChainVerifier {
    ChainVerifier::new(
        vec![CertificateDer::from(FIXTURE_CA.to_vec())],
        Vec::new(),
        crls,
        9,
    )
    .unwrap_or_else(|e| panic!("fixture verifier: {e}"))
}

/// Verifies `chain` twice, through the memoised and the detailed path, which must agree.
fn verify_agrees(verifier: &ChainVerifier, chain: &[CertificateDer<'_>]) {
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(NOW as u64));
    let fast = verifier.verify(chain, now);
    let detailed = verifier.verify_detailed(chain, now);
    assert_eq!(
        fast.is_ok(),
        detailed.result.is_ok(),
        "verify and verify_detailed disagree"
    );
    // Again: a memoised success must not change the answer.
    assert_eq!(verifier.verify(chain, now).is_ok(), fast.is_ok());
}

// ---------------------------------------------------------------------------------------
// nginx_import

/// nginx configuration text → `certgate import-nginx`'s parser and converter (an operator's
/// file, read whole). A parse error names the file and a position inside the text; a
/// conversion's listed directives name lines of the text; and whatever YAML the converter
/// writes is a gateway.yaml certgate itself reads without a syntax or schema error (files
/// it names need not exist: that is `certgate check`'s business, not the parser's).
pub fn nginx_import(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let name = "nginx.conf";
    let lines = text.lines().count().max(1);
    let directives =
        match certgate_nginx_import::load(name, text, &mut certgate_nginx_import::NoIncludes) {
            Ok(directives) => directives,
            Err(certgate_nginx_import::LoadError::Parse(e)) => {
                assert_eq!(e.file, name);
                assert!(
                    e.line >= 1 && e.line <= lines + 1,
                    "{e} (text has {lines} lines)"
                );
                return;
            }
            Err(certgate_nginx_import::LoadError::Include { file, .. }) => {
                assert_eq!(file, name);
                return;
            }
        };
    let options = certgate_nginx_import::Options {
        source: name.to_string(),
        conf_dir: "/etc/nginx".into(),
        out_dir: "/etc/certgate".into(),
    };
    let conversion = match certgate_nginx_import::convert(&directives, &options) {
        Ok(conversion) => conversion,
        Err(nothing) => {
            for u in &nothing.unsupported {
                assert!(u.line >= 1 && u.line <= lines + 1, "{u}");
            }
            return;
        }
    };
    for u in &conversion.unsupported {
        assert!(u.line >= 1 && u.line <= lines + 1, "{u}");
    }
    let config = match Config::parse(&conversion.yaml, Path::new("/etc/certgate/gateway.yaml")) {
        Ok(config) => config,
        // Only the checks that open nothing count: a converted config must be valid YAML
        // with known keys and well-formed values.
        Err(errors) => panic!(
            "the converted gateway.yaml does not load:\n{errors}\n---\n{}",
            conversion.yaml
        ),
    };
    // Fail closed: an access check that could not be carried over is listed, and a route
    // that refuses every request (deny_all) names it in a comment.
    for u in &conversion.access_denied {
        assert!(
            conversion.unsupported.contains(u),
            "{u} is not listed as not carried over"
        );
        assert!(
            u.why.starts_with(certgate_nginx_import::ACCESS_DENIED),
            "{u}"
        );
        assert!(
            conversion
                .yaml
                .contains(&format!("\n        #   {}:{}: ", u.file, u.line)),
            "no route names {u}\n---\n{}",
            conversion.yaml
        );
    }
    if !conversion.access_denied.is_empty() {
        assert!(
            config
                .servers
                .iter()
                .flat_map(|s| &s.routes)
                .any(|r| r.deny_all),
            "an unconverted access check, but no route denies everything:\n{}",
            conversion.yaml
        );
    }
}

// ---------------------------------------------------------------------------------------
// path_normalize

/// A request path → [`certgate_path::normalize`]; the first byte picks the options (odd:
/// `encoded_slashes: keep`), the rest is the path.
///
/// Invariants of a normalized path: it starts with `/`, has no `//`, no `.` or `..`
/// segment, no escape of an unreserved character, only upper-case escapes, no backslash
/// or control byte, and (under `reject`) no `%2F`/`%5C`; it is never longer than the input
/// and normalizes to itself, borrowed (idempotent, and free the second time); an input
/// that is already normal comes back borrowed; a target the `http` crate accepts stays one
/// it accepts (the proxy rebuilds the URI from it); the servlet reading of a normal path is
/// normal too (a `;` can never hide a dot segment).
pub fn path_normalize(data: &[u8]) {
    use certgate_path::{EncodedSlashes, Options};
    use std::borrow::Cow;
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(path) = std::str::from_utf8(rest) else {
        return;
    };
    let encoded_slashes = if first & 1 == 1 {
        EncodedSlashes::Keep
    } else {
        EncodedSlashes::Reject
    };
    let options = Options { encoded_slashes };
    let Ok(normal) = certgate_path::normalize(path, options) else {
        assert!(!certgate_path::is_normal(path, options), "{path:?}");
        return;
    };
    let out: &str = &normal;
    assert!(out.starts_with('/'), "{path:?} -> {out:?}");
    assert!(!out.contains("//"), "{path:?} -> {out:?}");
    assert!(out.len() <= path.len(), "{path:?} -> {out:?}");
    assert!(
        out.split('/').all(|s| s != "." && s != ".."),
        "{path:?} -> {out:?}"
    );
    assert!(
        !out.bytes().any(|b| b == b'\\' || b < 0x20 || b == 0x7f),
        "{path:?} -> {out:?}"
    );
    let bytes = out.as_bytes();
    for (i, _) in out.match_indices('%') {
        let hex = &bytes[i + 1..i + 3];
        assert!(
            hex.iter()
                .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c)),
            "{path:?} -> {out:?}"
        );
        let value = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16)
            .unwrap_or_else(|_| panic!("{path:?} -> {out:?}"));
        assert!(
            !(value.is_ascii_alphanumeric() || b"-._~".contains(&value)),
            "unreserved {value:#x} still escaped: {path:?} -> {out:?}"
        );
        if encoded_slashes == EncodedSlashes::Reject {
            assert!(value != b'/' && value != b'\\', "{path:?} -> {out:?}");
        }
    }
    assert!(
        matches!(certgate_path::normalize(out, options), Ok(Cow::Borrowed(again)) if again == out),
        "not idempotent: {path:?} -> {out:?}"
    );
    assert!(
        certgate_path::is_normal(out, options),
        "{path:?} -> {out:?}"
    );
    if certgate_path::is_normal(path, options) {
        assert!(matches!(normal, Cow::Borrowed(_)), "{path:?}");
    }
    // Only for inputs that are a path as `http` reads one (no `?` query, no `#` fragment):
    // what the proxy hands to `normalize` is `uri.path()`.
    if http::uri::PathAndQuery::try_from(path).is_ok_and(|pq| pq.path() == path) {
        assert!(
            http::uri::PathAndQuery::try_from(out).is_ok_and(|pq| pq.path() == out),
            "{path:?} -> {out:?} no longer parses as the same path"
        );
    }
    if let Some(servlet) = certgate_path::without_parameters(out) {
        assert!(
            matches!(
                certgate_path::normalize(&servlet, options),
                Ok(Cow::Borrowed(_))
            ),
            "{path:?} -> {out:?} reads as {servlet:?}"
        );
    }
}
