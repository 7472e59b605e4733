//! PKCS#12 (`.p12`/`.pfx`) bundles of a client certificate, its chain and its private
//! key, for `certgate certs p12`: what browsers and OS key stores import.
//!
//! Two profiles, because importers disagree:
//! - modern (default): PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC, HMAC-SHA256 MAC, as
//!   OpenSSL 3 writes by default;
//! - legacy (`--legacy`): pbeWithSHAAnd3-KeyTripleDES-CBC and an HMAC-SHA1 MAC, for
//!   importers that predate PBES2 (older macOS Keychain, Windows before 10 1709, Java 8,
//!   old Android). 3DES rather than OpenSSL 1.x's RC2-40 for the certificates, so
//!   OpenSSL 3 still opens the file without its legacy provider.
//!
//! The writer is the `p12-keystore` crate; this module decides what goes in and checks it.

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Errors building a PKCS#12 file.
#[derive(Debug, thiserror::Error)]
pub enum P12Error {
    #[error("no certificate given")]
    NoCertificate,
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    #[error("unsupported private key: {0}")]
    BadKey(String),
    #[error("cannot build the PKCS#12 file: {0}")]
    Encode(String),
}

/// Encryption profile of the bundle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum P12Profile {
    /// AES-256-CBC / PBKDF2-HMAC-SHA256 / HMAC-SHA256 MAC.
    #[default]
    Modern,
    /// 3DES / SHA-1 KDF / HMAC-SHA1 MAC, for old importers.
    Legacy,
}

/// What to put in the bundle and how to protect it.
pub struct P12Options<'a> {
    /// May be empty; some importers (macOS Keychain) then refuse the file.
    pub password: &'a str,
    pub profile: P12Profile,
    /// friendlyName of the key bag; default: the certificate's CN. The certificate bags
    /// carry their subject DN (p12-keystore's writer sets them).
    pub friendly_name: Option<&'a str>,
}

/// PBKDF iterations for the modern profile (OpenSSL 3 uses 2048; Java 10000).
const MODERN_ITERATIONS: u32 = 10_000;
/// What OpenSSL 1.x used: higher counts break some of the old importers this is for.
const LEGACY_ITERATIONS: u32 = 2048;

/// Builds a PKCS#12 file from `chain` (leaf first, then its intermediates), the leaf's
/// private key (PKCS#8 DER) and `extra_ca` (typically the root, so importers can show
/// the whole path; certificates already in `chain` are not repeated).
pub fn build_p12(
    chain: &[CertificateDer<'_>],
    key_pkcs8: &[u8],
    extra_ca: &[CertificateDer<'_>],
    options: &P12Options<'_>,
) -> Result<Vec<u8>, P12Error> {
    let leaf = chain.first().ok_or(P12Error::NoCertificate)?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| P12Error::Encode(format!("invalid certificate: {e}")))?;
    // The gateway's own key check (`certgate check` uses it too).
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8));
    if !crate::key_matches_certificate(leaf, &key_der)
        .map_err(|e| P12Error::BadKey(e.to_string()))?
    {
        return Err(P12Error::KeyMismatch);
    }
    let name = match options.friendly_name {
        Some(name) => name.to_string(),
        None => parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| "certgate".into()),
    };

    let mut certs = Vec::new();
    let mut seen: Vec<&[u8]> = Vec::new();
    for cert in chain.iter().chain(extra_ca) {
        if seen.contains(&cert.as_ref()) {
            continue;
        }
        seen.push(cert.as_ref());
        certs.push(
            p12_keystore::Certificate::from_der(cert)
                .map_err(|e| P12Error::Encode(e.to_string()))?,
        );
    }
    let key = p12_keystore::PrivateKey::from_der(key_pkcs8)
        .map_err(|e| P12Error::BadKey(e.to_string()))?;
    // localKeyID ties the key to its certificate; openssl uses the certificate's SHA-1.
    let local_key_id = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, leaf)
        .as_ref()
        .to_vec();
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        &name,
        p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
            local_key_id,
            key,
            certs,
        )),
    );

    let writer = store.writer(options.password);
    let writer = match options.profile {
        P12Profile::Modern => writer
            .encryption_algorithm(p12_keystore::EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
            .encryption_iterations(MODERN_ITERATIONS)
            .mac_algorithm(p12_keystore::MacAlgorithm::HmacSha256)
            .mac_iterations(MODERN_ITERATIONS),
        P12Profile::Legacy => writer
            .encryption_algorithm(p12_keystore::EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
            .encryption_iterations(LEGACY_ITERATIONS)
            .mac_algorithm(p12_keystore::MacAlgorithm::HmacSha1)
            .mac_iterations(LEGACY_ITERATIONS),
    };
    writer.write().map_err(|e| P12Error::Encode(e.to_string()))
}

/// Whether `bytes` look like a PKCS#12 file (a DER `PFX`: a SEQUENCE starting with the
/// INTEGER version 3) rather than a DER certificate (a SEQUENCE starting with a SEQUENCE).
pub fn looks_like_pkcs12(bytes: &[u8]) -> bool {
    let Some((&0x30, rest)) = bytes.split_first() else {
        return false;
    };
    // Skip the outer length (short or long form).
    let rest = match rest.split_first() {
        Some((&len, rest)) if len < 0x80 => rest,
        Some((&len, rest)) => match rest.get(usize::from(len & 0x7f)..) {
            Some(rest) => rest,
            None => return false,
        },
        None => return false,
    };
    rest.starts_with(&[0x02, 0x01, 0x03])
}

/// Errors reading a PKCS#12 file.
#[derive(Debug, thiserror::Error)]
pub enum P12ReadError {
    #[error("cannot open it: wrong password, or not a PKCS#12 file certgate can read ({0})")]
    Open(String),
    #[error("it holds no certificate")]
    NoCertificate,
}

/// The certificates of a PKCS#12 file, the one paired with a private key (by localKeyID)
/// first, then the others in file order. The private key is never returned.
pub fn read_p12_certificates(
    bytes: &[u8],
    password: &str,
) -> Result<Vec<CertificateDer<'static>>, P12ReadError> {
    let archive = p12_keystore::Pkcs12Archive::from_pkcs12(bytes, password)
        .map_err(|e| P12ReadError::Open(e.to_string()))?;
    let key_ids: Vec<&[u8]> = archive
        .keys
        .iter()
        .filter_map(|k| k.local_key_id.as_ref().map(|id| id.as_ref()))
        .collect();
    let (mut leaves, others): (Vec<_>, Vec<_>) = archive.certs.iter().partition(|bag| {
        bag.local_key_id
            .as_deref()
            .is_some_and(|id| key_ids.contains(&id))
    });
    leaves.extend(others);
    if leaves.is_empty() {
        return Err(P12ReadError::NoCertificate);
    }
    Ok(leaves
        .into_iter()
        .map(|bag| CertificateDer::from(bag.cert.as_der().to_vec()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::{Authority, CertKind, IssueRequest, KeyAlgorithm};

    #[test]
    fn bundles_read_back_with_key_and_chain() {
        let (ca, root) = Authority::new_root("Root", None, 30, KeyAlgorithm::EcdsaP256).unwrap();
        let mut req = IssueRequest::new(CertKind::Client, "alice");
        req.days = 10;
        let alice = ca.issue(&req).unwrap();
        for profile in [P12Profile::Modern, P12Profile::Legacy] {
            let options = P12Options {
                password: "pw",
                profile,
                friendly_name: None,
            };
            let der = build_p12(&alice.chain, alice.key_pkcs8(), &root.chain, &options).unwrap();
            let store = p12_keystore::KeyStore::from_pkcs12(
                &der,
                "pw",
                p12_keystore::Pkcs12ImportPolicy::Strict,
            )
            .unwrap();
            let (alias, chain) = store.private_key_chain().unwrap();
            assert_eq!(alias, "alice");
            assert_eq!(chain.key().as_der(), alice.key_pkcs8());
            assert_eq!(chain.certs()[0].as_der(), alice.certificate.as_ref());
            assert!(p12_keystore::KeyStore::from_pkcs12(
                &der,
                "wrong",
                p12_keystore::Pkcs12ImportPolicy::Strict
            )
            .is_err());
        }
    }

    #[test]
    fn a_foreign_key_is_refused() {
        let (ca, _) = Authority::new_root("Root", None, 30, KeyAlgorithm::EcdsaP256).unwrap();
        let alice = ca
            .issue(&IssueRequest::new(CertKind::Client, "alice"))
            .unwrap();
        let bob = ca
            .issue(&IssueRequest::new(CertKind::Client, "bob"))
            .unwrap();
        let options = P12Options {
            password: "",
            profile: P12Profile::Modern,
            friendly_name: None,
        };
        assert!(matches!(
            build_p12(&alice.chain, bob.key_pkcs8(), &[], &options),
            Err(P12Error::KeyMismatch)
        ));
    }
}
