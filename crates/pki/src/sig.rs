//! Signature checks on certificates and CRLs (`X509_verify` / `X509_CRL_verify`), done with
//! *ring* and the algorithm identifiers rustls/webpki use.
//!
//! Beyond what rustls accepts for TLS, this also verifies RSA PKCS#1 signatures with SHA-1
//! and with 1024-bit keys, because OpenSSL verifies them too and reports their weakness
//! separately (security level checks); refusing them here would change which error wins.

use ring::signature::{self, VerificationAlgorithm};
use rustls_pki_types::alg_id;

/// `sha1WithRSAEncryption`, `sha256…`, `sha384…`, `sha512…` OIDs (content bytes, with tag).
const RSA_SHA1_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05,
];
const RSA_SHA256_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b,
];
const RSA_SHA384_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c,
];
const RSA_SHA512_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d,
];
const DER_NULL: &[u8] = &[0x05, 0x00];

/// Is `alg` the RSA PKCS#1 identifier `oid`, with NULL parameters or (illegally but
/// commonly accepted) none?
fn is_rsa_pkcs1(alg: &[u8], oid: &[u8]) -> bool {
    alg.strip_prefix(oid)
        .is_some_and(|params| params.is_empty() || params == DER_NULL)
}

fn algorithm(spki_alg: &[u8], sig_alg: &[u8]) -> Option<&'static dyn VerificationAlgorithm> {
    let ec = |curve: &[u8]| spki_alg == curve;
    if ec(&alg_id::ECDSA_P256) {
        return match sig_alg {
            a if a == &*alg_id::ECDSA_SHA256 => Some(&signature::ECDSA_P256_SHA256_ASN1),
            a if a == &*alg_id::ECDSA_SHA384 => Some(&signature::ECDSA_P256_SHA384_ASN1),
            _ => None,
        };
    }
    if ec(&alg_id::ECDSA_P384) {
        return match sig_alg {
            a if a == &*alg_id::ECDSA_SHA256 => Some(&signature::ECDSA_P384_SHA256_ASN1),
            a if a == &*alg_id::ECDSA_SHA384 => Some(&signature::ECDSA_P384_SHA384_ASN1),
            _ => None,
        };
    }
    if spki_alg == &*alg_id::ED25519 {
        return (sig_alg == &*alg_id::ED25519)
            .then_some(&signature::ED25519 as &dyn VerificationAlgorithm);
    }
    if spki_alg == &*alg_id::RSA_ENCRYPTION {
        let alg: &'static dyn VerificationAlgorithm = if is_rsa_pkcs1(sig_alg, RSA_SHA256_OID) {
            &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY
        } else if is_rsa_pkcs1(sig_alg, RSA_SHA384_OID) {
            &signature::RSA_PKCS1_2048_8192_SHA384
        } else if is_rsa_pkcs1(sig_alg, RSA_SHA512_OID) {
            &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY
        } else if is_rsa_pkcs1(sig_alg, RSA_SHA1_OID) {
            &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY
        } else if sig_alg == &*alg_id::RSA_PSS_SHA256 {
            &signature::RSA_PSS_2048_8192_SHA256
        } else if sig_alg == &*alg_id::RSA_PSS_SHA384 {
            &signature::RSA_PSS_2048_8192_SHA384
        } else if sig_alg == &*alg_id::RSA_PSS_SHA512 {
            &signature::RSA_PSS_2048_8192_SHA512
        } else {
            return None;
        };
        return Some(alg);
    }
    None
}

/// Verifies `signature` over `message` made with the key (`spki_alg`, `spki_key`) using
/// signature algorithm `sig_alg` (AlgorithmIdentifier contents). Unsupported algorithm
/// combinations count as failures, as a signature we cannot check proves nothing.
pub(crate) fn verify(
    spki_alg: &[u8],
    spki_key: &[u8],
    sig_alg: &[u8],
    message: &[u8],
    sig: &[u8],
) -> bool {
    match algorithm(spki_alg, sig_alg) {
        Some(alg) => signature::UnparsedPublicKey::new(alg, spki_key)
            .verify(message, sig)
            .is_ok(),
        None => false,
    }
}
