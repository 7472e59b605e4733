//! Reading certificates, private keys and CRLs from files: the only I/O in this crate.
//!
//! Files may be PEM (any number of blocks, other block types ignored) or a single DER
//! object, as nginx and OpenSSL accept. Everything read is parsed once here, so that a
//! configuration check fails on the file that is wrong, with its path in the message.

use std::path::{Path, PathBuf};

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls_pki_types::{PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use x509_parser::prelude::FromDer;

use crate::cert::Cert;
use crate::{der, PkiError};

fn read(path: &Path) -> Result<Vec<u8>, PkiError> {
    std::fs::read(path).map_err(|e| PkiError::read(path, e))
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// Every PEM item of a file, or the reason its PEM framing is broken.
fn pem_items(path: &Path, bytes: &[u8]) -> Result<Vec<rustls_pemfile::Item>, PkiError> {
    rustls_pemfile::read_all(&mut &bytes[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// A hint for "found nothing of the expected kind": what the file holds instead.
fn found_instead(items: &[rustls_pemfile::Item], bytes: &[u8]) -> String {
    use rustls_pemfile::Item;
    let mut kinds: Vec<&str> = items
        .iter()
        .map(|item| match item {
            Item::X509Certificate(_) => "a certificate",
            Item::Pkcs1Key(_) | Item::Pkcs8Key(_) | Item::Sec1Key(_) => "a private key",
            Item::Crl(_) => "a CRL",
            Item::Csr(_) => "a certificate request",
            _ => "another PEM block",
        })
        .collect();
    if contains(bytes, b"ENCRYPTED PRIVATE KEY") {
        kinds.push("an encrypted private key");
    }
    kinds.dedup();
    if kinds.is_empty() {
        String::new()
    } else {
        format!(" (it contains {})", kinds.join(", "))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Loads the certificates of a PEM file (one or more `CERTIFICATE` blocks, e.g. a chain or
/// a CA bundle) or of a DER file (exactly one certificate). Each one must parse.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    parse_certs(path, &read(path)?)
}

/// [`load_certs`] on bytes already read: pure, `path` only names the file in errors
/// (the fuzz target `pki_pem` calls it directly).
pub fn parse_certs(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let not_found = |found: String| PkiError::NotFound {
        path: path.to_path_buf(),
        expected: "certificate",
        found,
    };
    if is_blank(bytes) {
        return Err(not_found(" (the file is empty)".into()));
    }
    let certs: Vec<CertificateDer<'static>> = if is_pem(bytes) {
        let items = pem_items(path, bytes)?;
        let certs: Vec<_> = items
            .iter()
            .filter_map(|item| match item {
                rustls_pemfile::Item::X509Certificate(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(not_found(found_instead(&items, bytes)));
        }
        certs
    } else {
        vec![CertificateDer::from(bytes.to_vec())]
    };
    for (i, cert) in certs.iter().enumerate() {
        Cert::parse(cert).map_err(|reason| PkiError::InvalidCertificate {
            path: path.to_path_buf(),
            index: i + 1,
            reason,
        })?;
    }
    Ok(certs)
}

/// Loads the first private key of a PEM file (`PRIVATE KEY` = PKCS#8, `EC PRIVATE KEY` =
/// SEC1, `RSA PRIVATE KEY` = PKCS#1) or of a DER file. Encrypted keys are refused with a
/// message saying so: certgate has no passphrase setting (nginx's `ssl_password_file`).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    parse_private_key(path, &read(path)?)
}

/// [`load_private_key`] on bytes already read: pure, `path` only names the file in errors.
pub fn parse_private_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, PkiError> {
    let not_found = |found: String| PkiError::NotFound {
        path: path.to_path_buf(),
        expected: "private key",
        found,
    };
    if is_blank(bytes) {
        return Err(not_found(" (the file is empty)".into()));
    }
    let encrypted = || PkiError::EncryptedKey {
        path: path.to_path_buf(),
    };
    if is_pem(bytes) {
        // rustls-pemfile skips blocks it does not know, so encrypted keys are detected here:
        // PKCS#8 `ENCRYPTED PRIVATE KEY` and OpenSSL's legacy `Proc-Type: 4,ENCRYPTED`.
        if contains(bytes, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
            || contains(bytes, b"Proc-Type: 4,ENCRYPTED")
        {
            return Err(encrypted());
        }
        let items = pem_items(path, bytes)?;
        let key = items.iter().find_map(|item| match item {
            rustls_pemfile::Item::Pkcs8Key(k) => Some(PrivateKeyDer::Pkcs8(k.clone_key())),
            rustls_pemfile::Item::Sec1Key(k) => Some(PrivateKeyDer::Sec1(k.clone_key())),
            rustls_pemfile::Item::Pkcs1Key(k) => Some(PrivateKeyDer::Pkcs1(k.clone_key())),
            _ => None,
        });
        return key.ok_or_else(|| not_found(found_instead(&items, bytes)));
    }
    if der::is_encrypted_pkcs8(bytes) {
        return Err(encrypted());
    }
    let owned = || bytes.to_vec();
    match PrivateKeyDer::try_from(bytes) {
        Ok(PrivateKeyDer::Pkcs8(_)) => Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(owned()))),
        Ok(PrivateKeyDer::Sec1(_)) => Ok(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(owned()))),
        Ok(PrivateKeyDer::Pkcs1(_)) => Ok(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(owned()))),
        _ => Err(not_found(" (neither PEM nor a DER private key)".into())),
    }
}

/// Loads every CRL of the given files (PEM `X509 CRL` blocks, or one DER CRL per file).
/// An empty list of paths gives an empty list: no revocation checking.
pub fn load_crls(
    paths: &[PathBuf],
) -> Result<Vec<CertificateRevocationListDer<'static>>, PkiError> {
    let mut all = Vec::new();
    for path in paths {
        all.extend(parse_crls(path, &read(path)?)?);
    }
    Ok(all)
}

/// The CRLs of one file already read (PEM `X509 CRL` blocks, or one DER CRL): pure, `path`
/// only names the file in errors (the fuzz target `pki_crl` calls it directly).
pub fn parse_crls(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateRevocationListDer<'static>>, PkiError> {
    let not_found = |found: String| PkiError::NotFound {
        path: path.to_path_buf(),
        expected: "CRL",
        found,
    };
    if is_blank(bytes) {
        return Err(not_found(" (the file is empty)".into()));
    }
    let crls: Vec<CertificateRevocationListDer<'static>> = if is_pem(bytes) {
        let items = pem_items(path, bytes)?;
        let crls: Vec<_> = items
            .iter()
            .filter_map(|item| match item {
                rustls_pemfile::Item::Crl(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        if crls.is_empty() {
            return Err(not_found(found_instead(&items, bytes)));
        }
        crls
    } else {
        vec![CertificateRevocationListDer::from(bytes.to_vec())]
    };
    for (i, crl) in crls.iter().enumerate() {
        crate::cert::Crl::parse(crl).map_err(|reason| PkiError::InvalidCrl {
            path: path.to_path_buf(),
            index: i + 1,
            reason,
        })?;
    }
    Ok(crls)
}

/// Whether `key` is the private key of `cert`, by comparing the public key derived from
/// the private key with the certificate's (algorithm and key bits). Errors when the key is
/// of a type the TLS stack cannot use, or the certificate cannot be parsed.
pub fn key_matches_certificate(
    cert: &CertificateDer<'_>,
    key: &PrivateKeyDer<'_>,
) -> Result<bool, PkiError> {
    let signing_key = rustls::crypto::ring::sign::any_supported_type(key).map_err(|e| {
        PkiError::UnsupportedKey {
            reason: e.to_string(),
        }
    })?;
    let Some(key_spki) = signing_key.public_key() else {
        return Err(PkiError::UnsupportedKey {
            reason: "cannot derive its public key".into(),
        });
    };
    let cert = Cert::parse(cert).map_err(|reason| PkiError::Certificate { reason })?;
    let derived = der::spki(key_spki.as_ref()).ok_or_else(|| PkiError::UnsupportedKey {
        reason: "cannot derive its public key".into(),
    })?;
    let certified = der::spki(&cert.spki_der).ok_or_else(|| PkiError::Certificate {
        reason: "malformed SubjectPublicKeyInfo".into(),
    })?;
    // Parameters may be encoded differently (e.g. RSA with or without NULL); the algorithm
    // and the key bits are what identify a key.
    Ok(derived.alg_oid == certified.alg_oid && derived.key == certified.key)
}

/// The facts `certgate check` needs about a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSummary {
    /// The subject as x509-parser prints it (`CN=…, O=…`), for messages.
    pub subject: String,
    pub not_after_unix: i64,
    pub not_before_unix: i64,
    /// basicConstraints cA is set.
    pub is_ca: bool,
}

pub fn summarize(cert: &CertificateDer<'_>) -> Result<CertSummary, PkiError> {
    let (_, x509) = x509_parser::certificate::X509Certificate::from_der(cert).map_err(|e| {
        PkiError::Certificate {
            reason: e.to_string(),
        }
    })?;
    Ok(CertSummary {
        subject: x509.subject().to_string(),
        not_after_unix: x509.validity().not_after.timestamp(),
        not_before_unix: x509.validity().not_before.timestamp(),
        is_ca: x509.is_ca(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::testpki::{client_under, current_crl, root};

    /// A scratch directory removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "certgate-pki-load-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, contents).unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn pem(tag: &str, der: &[u8]) -> String {
        pem::encode(&pem::Pem::new(tag, der.to_vec()))
    }

    #[track_caller]
    fn assert_names(err: &PkiError, path: &Path, needle: &str) {
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()),
            "{msg:?} should name {}",
            path.display()
        );
        assert!(msg.contains(needle), "{msg:?} should say {needle:?}");
    }

    #[test]
    fn certificates_from_pem_and_der() {
        let dir = Scratch::new();
        let ca = root("Load CA");
        let leaf = client_under("leaf", &ca);
        let bundle = dir.write(
            "chain.pem",
            format!("# comment\n{}{}", leaf.cert.pem(), ca.cert.pem()),
        );
        assert_eq!(load_certs(&bundle).unwrap(), vec![leaf.der(), ca.der()]);
        let der = dir.write("leaf.der", leaf.der().as_ref());
        assert_eq!(load_certs(&der).unwrap(), vec![leaf.der()]);
    }

    #[test]
    fn certificate_errors_name_the_file() {
        let dir = Scratch::new();
        let missing = dir.0.join("missing.pem");
        assert_names(&load_certs(&missing).unwrap_err(), &missing, "cannot read");

        let empty = dir.write("empty.pem", "\n");
        assert_names(
            &load_certs(&empty).unwrap_err(),
            &empty,
            "no certificate found",
        );

        let ca = root("Load CA");
        let key_only = dir.write("key.pem", ca.key.serialize_pem());
        assert_names(
            &load_certs(&key_only).unwrap_err(),
            &key_only,
            "it contains a private key",
        );

        let garbage = dir.write("garbage.der", [0x30, 0x03, 0x02, 0x01, 0x01]);
        assert_names(
            &load_certs(&garbage).unwrap_err(),
            &garbage,
            "certificate #1 is not a valid X.509 certificate",
        );

        let bad_second = dir.write(
            "bad.pem",
            format!(
                "{}{}",
                ca.cert.pem(),
                pem("CERTIFICATE", b"not a certificate")
            ),
        );
        assert_names(
            &load_certs(&bad_second).unwrap_err(),
            &bad_second,
            "certificate #2",
        );

        let broken = dir.write(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        assert_names(&load_certs(&broken).unwrap_err(), &broken, "malformed PEM");
    }

    /// The SEC1 `ECPrivateKey` inside a PKCS#8 `PrivateKeyInfo`.
    fn sec1_from_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
        let (outer, _) = der::expect(pkcs8, der::TAG_SEQUENCE).unwrap();
        let (_version, rest) = der::expect(outer.content, der::TAG_INTEGER).unwrap();
        let (_alg, rest) = der::expect(rest, der::TAG_SEQUENCE).unwrap();
        let (key, _) = der::expect(rest, 0x04).unwrap();
        key.content.to_vec()
    }

    #[test]
    fn private_keys_in_every_unencrypted_format() {
        let dir = Scratch::new();
        let ca = root("Key CA");
        let leaf = client_under("leaf", &ca);
        let pkcs8 = leaf.key.serialize_der();

        let path = dir.write("pkcs8.pem", leaf.key.serialize_pem());
        let key = load_private_key(&path).unwrap();
        assert!(matches!(key, PrivateKeyDer::Pkcs8(_)));
        assert!(key_matches_certificate(&leaf.der(), &key).unwrap());

        let path = dir.write("sec1.pem", pem("EC PRIVATE KEY", &sec1_from_pkcs8(&pkcs8)));
        let key = load_private_key(&path).unwrap();
        assert!(matches!(key, PrivateKeyDer::Sec1(_)));
        assert!(key_matches_certificate(&leaf.der(), &key).unwrap());

        let path = dir.write("pkcs8.der", &pkcs8);
        assert!(matches!(
            load_private_key(&path).unwrap(),
            PrivateKeyDer::Pkcs8(_)
        ));

        // PKCS#1 is recognised by its label; a textbook-sized RSA key (n = 3233) is not
        // usable by the TLS stack, which key_matches_certificate reports as such.
        let toy_rsa = [
            der::TAG_SEQUENCE,
            0x15,
            0x02,
            0x01,
            0x00, // version
            0x02,
            0x02,
            0x0c,
            0xa1, // n = 3233
            0x02,
            0x01,
            0x11, // e = 17
            0x02,
            0x02,
            0x0a,
            0xc1, // d = 2753
            0x02,
            0x01,
            0x3d, // p = 61
            0x02,
            0x01,
            0x35, // q = 53
            0x02,
            0x01,
            0x35, // dp = 53
        ];
        let path = dir.write("rsa.pem", pem("RSA PRIVATE KEY", &toy_rsa));
        let key = load_private_key(&path).unwrap();
        assert!(matches!(key, PrivateKeyDer::Pkcs1(_)));
        let err = key_matches_certificate(&leaf.der(), &key).unwrap_err();
        assert!(
            err.to_string().starts_with("unsupported private key"),
            "{err}"
        );
    }

    #[test]
    fn key_mismatch_is_detected() {
        let ca = root("Key CA");
        let leaf = client_under("leaf", &ca);
        let other = client_under("other", &ca);
        assert!(key_matches_certificate(&leaf.der(), &leaf.key_der()).unwrap());
        assert!(!key_matches_certificate(&leaf.der(), &other.key_der()).unwrap());
        let bad_cert = CertificateDer::from(vec![1, 2, 3]);
        assert!(matches!(
            key_matches_certificate(&bad_cert, &leaf.key_der()),
            Err(PkiError::Certificate { .. })
        ));
    }

    #[test]
    fn key_errors_name_the_file() {
        let dir = Scratch::new();
        let missing = dir.0.join("missing.key");
        assert_names(
            &load_private_key(&missing).unwrap_err(),
            &missing,
            "cannot read",
        );

        let empty = dir.write("empty.key", "");
        assert_names(
            &load_private_key(&empty).unwrap_err(),
            &empty,
            "no private key found",
        );

        let ca = root("Key CA");
        let cert_only = dir.write("cert.pem", ca.cert.pem());
        assert_names(
            &load_private_key(&cert_only).unwrap_err(),
            &cert_only,
            "it contains a certificate",
        );

        // EncryptedPrivateKeyInfo: SEQUENCE { AlgorithmIdentifier (PBES2), OCTET STRING }.
        let encrypted = [
            der::TAG_SEQUENCE,
            0x13,
            der::TAG_SEQUENCE,
            0x0b,
            0x06,
            0x09,
            0x2a,
            0x86,
            0x48,
            0x86,
            0xf7,
            0x0d,
            0x01,
            0x05,
            0x0d,
            0x04,
            0x04,
            0xde,
            0xad,
            0xbe,
            0xef,
        ];
        for (name, contents) in [
            ("pkcs8-enc.pem", pem("ENCRYPTED PRIVATE KEY", &encrypted).into_bytes()),
            (
                "legacy-enc.pem",
                "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"
                    .as_bytes()
                    .to_vec(),
            ),
            ("pkcs8-enc.der", encrypted.to_vec()),
        ] {
            let path = dir.write(name, contents);
            let err = load_private_key(&path).unwrap_err();
            assert!(matches!(err, PkiError::EncryptedKey { .. }), "{name}: {err}");
            assert_names(&err, &path, "is encrypted");
        }
    }

    #[test]
    fn crls_from_pem_and_der() {
        let dir = Scratch::new();
        let ca = root("CRL CA");
        let crl = current_crl(&ca, &[]);
        let pem_path = dir.write("ca.crl.pem", pem("X509 CRL", crl.as_ref()));
        let der_path = dir.write("ca.crl", crl.as_ref());
        let loaded = load_crls(&[pem_path, der_path]).unwrap();
        assert_eq!(loaded, vec![crl.clone(), crl]);
        assert!(load_crls(&[]).unwrap().is_empty());
    }

    #[test]
    fn crl_errors_name_the_file() {
        let dir = Scratch::new();
        let missing = dir.0.join("missing.crl");
        assert_names(
            &load_crls(std::slice::from_ref(&missing)).unwrap_err(),
            &missing,
            "cannot read",
        );
        let empty = dir.write("empty.crl", " ");
        assert_names(
            &load_crls(std::slice::from_ref(&empty)).unwrap_err(),
            &empty,
            "no CRL found",
        );
        let ca = root("CRL CA");
        let cert = dir.write("cert.pem", ca.cert.pem());
        assert_names(
            &load_crls(std::slice::from_ref(&cert)).unwrap_err(),
            &cert,
            "it contains a certificate",
        );
        let garbage = dir.write("garbage.crl", [0x30, 0x00]);
        assert_names(
            &load_crls(std::slice::from_ref(&garbage)).unwrap_err(),
            &garbage,
            "CRL #1 is not a valid X.509 CRL",
        );
    }

    #[test]
    fn summary_for_expiry_warnings() {
        let ca = root("Summary CA");
        let leaf = client_under("summary leaf", &ca);
        let ca_summary = summarize(&ca.der()).unwrap();
        assert!(ca_summary.is_ca);
        assert_eq!(ca_summary.subject, "CN=Summary CA");
        let leaf_summary = summarize(&leaf.der()).unwrap();
        assert!(!leaf_summary.is_ca);
        let expected_end =
            (time::OffsetDateTime::now_utc() + time::Duration::days(30)).unix_timestamp();
        assert!((leaf_summary.not_after_unix - expected_end).abs() < 60);
        assert!(leaf_summary.not_before_unix < leaf_summary.not_after_unix);
        assert!(summarize(&CertificateDer::from(vec![0u8; 3])).is_err());
    }
}
