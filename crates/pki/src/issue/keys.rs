//! Private keys for the certs tooling: generating them (ECDSA P-256 with ring; RSA with
//! the `rsa` crate, because ring cannot generate RSA keys), reading every unencrypted
//! format openssl writes (PKCS#8, PKCS#1 `RSA PRIVATE KEY`, SEC1 `EC PRIVATE KEY`) and
//! encrypted PKCS#8 (`ENCRYPTED PRIVATE KEY`), and writing PKCS#8, optionally encrypted
//! with PBES2 (PBKDF2-HMAC-SHA256 + AES-256-CBC), which is what `openssl genpkey -aes256`
//! writes and what `openssl pkey -passin` reads.
//!
//! Everything is normalised to PKCS#8 DER, the one format rcgen (on ring) signs with.

use std::path::Path;

use der::asn1::{AnyRef, OctetString, OctetStringRef};
use der::{Decode, Encode};
use pkcs5::pbes2::{self, Kdf, Pbkdf2Prf};
use pkcs5::EncryptionScheme;
use pkcs8::{
    AlgorithmIdentifierRef, EncryptedPrivateKeyInfoOwned, EncryptedPrivateKeyInfoRef,
    PrivateKeyInfoRef,
};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::IssueError;

/// PBKDF2 iterations for keys we encrypt: OWASP's 2023 figure for PBKDF2-HMAC-SHA256.
/// openssl's own default (2048) is far too low for a CA key that may leak.
pub const PBKDF2_ITERATIONS: u32 = 600_000;

const RSA_ENCRYPTION: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// The kind of key to generate for a new certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256 signatures: small, fast, accepted by every TLS stack.
    #[default]
    EcdsaP256,
    /// RSA with this modulus size (2048, 3072 or 4096 bits), for clients that cannot do ECDSA.
    Rsa(u32),
}

impl KeyAlgorithm {
    /// An RSA key size, refusing sizes that are too weak (< 2048) or that ring cannot sign
    /// with efficiently enough to be worth offering.
    pub fn rsa(bits: u32) -> Result<Self, IssueError> {
        match bits {
            2048 | 3072 | 4096 => Ok(KeyAlgorithm::Rsa(bits)),
            _ => Err(IssueError::Invalid(format!(
                "RSA key size must be 2048, 3072 or 4096 bits, not {bits}"
            ))),
        }
    }

    pub fn is_rsa(&self) -> bool {
        matches!(self, KeyAlgorithm::Rsa(_))
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyAlgorithm::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyAlgorithm::Rsa(bits) => write!(f, "RSA {bits}"),
        }
    }
}

/// Generates a new private key, returned as PKCS#8 DER.
pub fn generate(algorithm: KeyAlgorithm) -> Result<Zeroizing<Vec<u8>>, IssueError> {
    match algorithm {
        KeyAlgorithm::EcdsaP256 => {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            Ok(Zeroizing::new(key.serialize_der()))
        }
        KeyAlgorithm::Rsa(bits) => {
            use rsa::pkcs8::EncodePrivateKey;
            let mut rng = rsa::rand_core::OsRng;
            let key = rsa::RsaPrivateKey::new(&mut rng, bits as usize)
                .map_err(|e| IssueError::KeyGeneration(e.to_string()))?;
            let doc = key
                .to_pkcs8_der()
                .map_err(|e| IssueError::KeyGeneration(e.to_string()))?;
            Ok(Zeroizing::new(doc.as_bytes().to_vec()))
        }
    }
}

/// A signing key pair for rcgen from PKCS#8 DER; the signature algorithm follows the key
/// (ECDSA P-256/P-384 with SHA-256/384, RSA with SHA-256, Ed25519).
pub fn key_pair(pkcs8: &[u8]) -> Result<rcgen::KeyPair, IssueError> {
    rcgen::KeyPair::try_from(pkcs8)
        .map_err(|e| IssueError::Crypto(format!("unsupported private key: {e}")))
}

/// PKCS#8 DER as an unencrypted `PRIVATE KEY` PEM block.
pub fn pkcs8_pem(pkcs8: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(pem::encode_config(
        &pem::Pem::new("PRIVATE KEY", pkcs8.to_vec()),
        pem_config(),
    ))
}

pub(crate) fn pem_config() -> pem::EncodeConfig {
    pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF)
}

fn random_bytes<const N: usize>() -> Result<[u8; N], IssueError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| IssueError::Crypto("the system random generator failed".into()))?;
    Ok(out)
}

/// Encrypts PKCS#8 DER into an `ENCRYPTED PRIVATE KEY` PEM block (PBES2:
/// PBKDF2-HMAC-SHA256 with a random 16-byte salt, AES-256-CBC with a random IV).
pub fn encrypt_pkcs8_pem(pkcs8: &[u8], passphrase: &str) -> Result<String, IssueError> {
    if passphrase.is_empty() {
        return Err(IssueError::Invalid("the passphrase is empty".into()));
    }
    let salt: [u8; 16] = random_bytes()?;
    let iv: [u8; 16] = random_bytes()?;
    let params = pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(PBKDF2_ITERATIONS, &salt, iv)
        .map_err(|e| IssueError::Crypto(format!("PBES2 parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    pbkdf2(
        Pbkdf2Prf::HmacWithSha256,
        PBKDF2_ITERATIONS,
        &salt,
        passphrase.as_bytes(),
        key.as_mut(),
    )?;
    let ciphertext = aes_cbc_encrypt(&key[..], &iv, pkcs8)?;
    let info = EncryptedPrivateKeyInfoOwned {
        encryption_algorithm: EncryptionScheme::Pbes2(params),
        encrypted_data: OctetString::new(ciphertext).map_err(der_error)?,
    };
    let der = info.to_der().map_err(der_error)?;
    Ok(pem::encode_config(
        &pem::Pem::new("ENCRYPTED PRIVATE KEY", der),
        pem_config(),
    ))
}

/// Decrypts an `EncryptedPrivateKeyInfo` (DER) into PKCS#8 DER.
///
/// PBKDF2 + AES-CBC (what we and `openssl genpkey -aes256` write) is derived with ring,
/// which is fast even in debug builds; other PBES2 variants (scrypt, AES-GCM) go through
/// the `pkcs5` crate.
pub fn decrypt_pkcs8(
    der: &[u8],
    passphrase: &str,
    source: &Path,
) -> Result<Zeroizing<Vec<u8>>, IssueError> {
    let info = EncryptedPrivateKeyInfoRef::from_der(der).map_err(|e| {
        IssueError::bad_input(source, format!("not a valid encrypted PKCS#8 key: {e}"))
    })?;
    let ciphertext = info.encrypted_data.as_bytes();
    let wrong = || IssueError::WrongPassphrase {
        path: source.to_path_buf(),
    };
    let plain: Zeroizing<Vec<u8>> = match fast_path(&info.encryption_algorithm) {
        Some(fast) => {
            let mut key = Zeroizing::new(vec![0u8; fast.key_len]);
            pbkdf2(
                fast.prf,
                fast.iterations,
                fast.salt,
                passphrase.as_bytes(),
                &mut key,
            )?;
            Zeroizing::new(aes_cbc_decrypt(&key, &fast.iv, ciphertext).ok_or_else(wrong)?)
        }
        None => Zeroizing::new(
            info.encryption_algorithm
                .decrypt(passphrase, ciphertext)
                .map_err(|e| match e {
                    pkcs5::Error::DecryptFailed => wrong(),
                    other => IssueError::bad_input(
                        source,
                        format!("unsupported key encryption: {other}"),
                    ),
                })?,
        ),
    };
    // CBC padding alone accepts a wrong key about once in 256 tries: the plaintext must
    // also be a PKCS#8 structure.
    PrivateKeyInfoRef::from_der(&plain).map_err(|_| wrong())?;
    Ok(plain)
}

/// PBKDF2 + AES-CBC parameters, for decrypting with ring's PBKDF2.
struct Pbkdf2AesCbc<'a> {
    prf: Pbkdf2Prf,
    iterations: u32,
    salt: &'a [u8],
    key_len: usize,
    iv: [u8; 16],
}

/// The parameters when the scheme is PBKDF2 + AES-CBC, else `None`.
fn fast_path(scheme: &EncryptionScheme) -> Option<Pbkdf2AesCbc<'_>> {
    let params = scheme.pbes2()?;
    let Kdf::Pbkdf2(kdf) = &params.kdf else {
        return None;
    };
    let (key_len, iv) = match params.encryption {
        pbes2::EncryptionScheme::Aes128Cbc { iv } => (16, iv),
        pbes2::EncryptionScheme::Aes192Cbc { iv } => (24, iv),
        pbes2::EncryptionScheme::Aes256Cbc { iv } => (32, iv),
        _ => return None,
    };
    if kdf
        .key_length
        .is_some_and(|len| usize::from(len) != key_len)
    {
        return None;
    }
    match kdf.prf {
        Pbkdf2Prf::HmacWithSha1
        | Pbkdf2Prf::HmacWithSha256
        | Pbkdf2Prf::HmacWithSha384
        | Pbkdf2Prf::HmacWithSha512 => {}
        _ => return None,
    }
    Some(Pbkdf2AesCbc {
        prf: kdf.prf,
        iterations: kdf.iteration_count,
        salt: kdf.salt.as_bytes(),
        key_len,
        iv,
    })
}

fn pbkdf2(
    prf: Pbkdf2Prf,
    iterations: u32,
    salt: &[u8],
    secret: &[u8],
    out: &mut [u8],
) -> Result<(), IssueError> {
    let algorithm = match prf {
        Pbkdf2Prf::HmacWithSha1 => ring::pbkdf2::PBKDF2_HMAC_SHA1,
        Pbkdf2Prf::HmacWithSha256 => ring::pbkdf2::PBKDF2_HMAC_SHA256,
        Pbkdf2Prf::HmacWithSha384 => ring::pbkdf2::PBKDF2_HMAC_SHA384,
        Pbkdf2Prf::HmacWithSha512 => ring::pbkdf2::PBKDF2_HMAC_SHA512,
        other => {
            return Err(IssueError::Crypto(format!(
                "unsupported PBKDF2 hash {other:?}"
            )))
        }
    };
    let iterations = std::num::NonZeroU32::new(iterations)
        .ok_or_else(|| IssueError::Crypto("PBKDF2 iteration count is zero".into()))?;
    ring::pbkdf2::derive(algorithm, iterations, salt, secret, out);
    Ok(())
}

fn aes_cbc_encrypt(key: &[u8], iv: &[u8; 16], plain: &[u8]) -> Result<Vec<u8>, IssueError> {
    use cbc::cipher::{block_padding::Pkcs7, BlockModeEncrypt, KeyIvInit};
    let encryptor = cbc::Encryptor::<aes::Aes256Enc>::new_from_slices(key, iv)
        .map_err(|_| IssueError::Crypto("AES-256-CBC key setup failed".into()))?;
    Ok(encryptor.encrypt_padded_vec::<Pkcs7>(plain))
}

fn aes_cbc_decrypt(key: &[u8], iv: &[u8; 16], ciphertext: &[u8]) -> Option<Vec<u8>> {
    use cbc::cipher::{block_padding::Pkcs7, BlockModeDecrypt, KeyIvInit};
    match key.len() {
        16 => cbc::Decryptor::<aes::Aes128Dec>::new_from_slices(key, iv)
            .ok()?
            .decrypt_padded_vec::<Pkcs7>(ciphertext)
            .ok(),
        24 => cbc::Decryptor::<aes::Aes192Dec>::new_from_slices(key, iv)
            .ok()?
            .decrypt_padded_vec::<Pkcs7>(ciphertext)
            .ok(),
        32 => cbc::Decryptor::<aes::Aes256Dec>::new_from_slices(key, iv)
            .ok()?
            .decrypt_padded_vec::<Pkcs7>(ciphertext)
            .ok(),
        _ => None,
    }
}

fn der_error(e: der::Error) -> IssueError {
    IssueError::Crypto(format!("DER encoding failed: {e}"))
}

/// Whether a key file is encrypted (so a caller can ask for a passphrase only when needed).
pub fn is_encrypted_key(contents: &[u8]) -> bool {
    match pem::parse_many(contents) {
        Ok(blocks) => blocks.iter().any(|b| {
            b.tag() == "ENCRYPTED PRIVATE KEY"
                || (b.tag().ends_with("PRIVATE KEY") && b.headers().get("Proc-Type").is_some())
        }),
        Err(_) => false,
    }
}

/// Reads a private key file (PEM or DER; PKCS#8, PKCS#1, SEC1 or encrypted PKCS#8) and
/// returns it as PKCS#8 DER. `passphrase` is used only if the key is encrypted.
pub fn read_private_key(
    path: &Path,
    passphrase: Option<&str>,
) -> Result<Zeroizing<Vec<u8>>, IssueError> {
    let contents = Zeroizing::new(std::fs::read(path).map_err(|error| IssueError::Read {
        path: path.to_path_buf(),
        error,
    })?);
    parse_private_key(&contents, path, passphrase)
}

/// [`read_private_key`] on bytes already read; `source` names them in errors.
pub fn parse_private_key(
    contents: &[u8],
    source: &Path,
    passphrase: Option<&str>,
) -> Result<Zeroizing<Vec<u8>>, IssueError> {
    let blocks = pem::parse_many(contents).unwrap_or_default();
    if blocks.is_empty() {
        // Not PEM: try DER, PKCS#8 first (the only DER openssl writes by default).
        if PrivateKeyInfoRef::from_der(contents).is_ok() {
            return Ok(Zeroizing::new(contents.to_vec()));
        }
        if EncryptedPrivateKeyInfoRef::from_der(contents).is_ok() {
            let passphrase = passphrase.ok_or_else(|| IssueError::KeyEncrypted {
                path: source.to_path_buf(),
            })?;
            return decrypt_pkcs8(contents, passphrase, source);
        }
        return Err(IssueError::bad_input(
            source,
            "no private key found (expected PEM or DER)",
        ));
    }
    let Some(block) = blocks.iter().find(|b| b.tag().ends_with("PRIVATE KEY")) else {
        return Err(IssueError::bad_input(source, "no PRIVATE KEY block found"));
    };
    if block.headers().get("Proc-Type").is_some() {
        return Err(IssueError::bad_input(
            source,
            "uses openssl's legacy PEM encryption (Proc-Type: 4,ENCRYPTED); convert it with \
             `openssl pkcs8 -topk8 -v2 aes256 -in OLD -out NEW`",
        ));
    }
    let der = Zeroizing::new(block.contents().to_vec());
    match block.tag() {
        "PRIVATE KEY" => {
            PrivateKeyInfoRef::from_der(&der).map_err(|e| {
                IssueError::bad_input(source, format!("invalid PKCS#8 private key: {e}"))
            })?;
            Ok(der)
        }
        "ENCRYPTED PRIVATE KEY" => {
            let passphrase = passphrase.ok_or_else(|| IssueError::KeyEncrypted {
                path: source.to_path_buf(),
            })?;
            decrypt_pkcs8(&der, passphrase, source)
        }
        "RSA PRIVATE KEY" => wrap_pkcs1(&der).map_err(|e| IssueError::bad_input(source, e)),
        "EC PRIVATE KEY" => wrap_sec1(&der).map_err(|e| IssueError::bad_input(source, e)),
        other => Err(IssueError::bad_input(
            source,
            format!("unsupported key type {other}"),
        )),
    }
}

/// PKCS#1 `RSAPrivateKey` → PKCS#8 (`rsaEncryption`, NULL parameters, as openssl writes).
fn wrap_pkcs1(pkcs1: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    let info = PrivateKeyInfoRef::new(
        AlgorithmIdentifierRef {
            oid: RSA_ENCRYPTION,
            parameters: Some(AnyRef::NULL),
        },
        OctetStringRef::new(pkcs1).map_err(|e| e.to_string())?,
    );
    Ok(Zeroizing::new(
        info.to_der()
            .map_err(|e| format!("invalid RSA private key: {e}"))?,
    ))
}

/// SEC1 `ECPrivateKey` → PKCS#8 (`id-ecPublicKey` with the named curve from the key).
fn wrap_sec1(sec1_der: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    let key = sec1::EcPrivateKey::from_der(sec1_der)
        .map_err(|e| format!("invalid EC private key: {e}"))?;
    let Some(sec1::EcParameters::NamedCurve(curve)) = key.parameters else {
        return Err("EC private key without a named curve".into());
    };
    let curve_der = curve.to_der().map_err(|e| e.to_string())?;
    let info = PrivateKeyInfoRef::new(
        AlgorithmIdentifierRef {
            oid: EC_PUBLIC_KEY,
            parameters: Some(AnyRef::from_der(&curve_der).map_err(|e| e.to_string())?),
        },
        OctetStringRef::new(sec1_der).map_err(|e| e.to_string())?,
    );
    Ok(Zeroizing::new(
        info.to_der()
            .map_err(|e| format!("invalid EC private key: {e}"))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_key_round_trips_and_rejects_a_wrong_passphrase() {
        let key = generate(KeyAlgorithm::EcdsaP256).unwrap();
        let pem = encrypt_pkcs8_pem(&key, "correct horse").unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
        assert!(is_encrypted_key(pem.as_bytes()));
        let path = Path::new("ca.key");
        let back = parse_private_key(pem.as_bytes(), path, Some("correct horse")).unwrap();
        assert_eq!(&back[..], &key[..]);
        assert!(matches!(
            parse_private_key(pem.as_bytes(), path, Some("wrong")),
            Err(IssueError::WrongPassphrase { .. })
        ));
        assert!(matches!(
            parse_private_key(pem.as_bytes(), path, None),
            Err(IssueError::KeyEncrypted { .. })
        ));
    }

    #[test]
    fn the_pkcs5_crate_decrypts_what_we_encrypt() {
        // An independent implementation of PBES2 agrees with our ring + AES-CBC composition.
        let key = generate(KeyAlgorithm::EcdsaP256).unwrap();
        let pem = encrypt_pkcs8_pem(&key, "pw").unwrap();
        let block = pem::parse(pem.as_bytes()).unwrap();
        let info = EncryptedPrivateKeyInfoRef::from_der(block.contents()).unwrap();
        let plain = info
            .encryption_algorithm
            .decrypt("pw", info.encrypted_data.as_bytes())
            .unwrap();
        assert_eq!(plain, key.to_vec());
    }

    #[test]
    fn legacy_pem_encryption_is_explained() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let err = parse_private_key(pem.as_bytes(), Path::new("old.key"), Some("x")).unwrap_err();
        assert!(err.to_string().contains("openssl pkcs8 -topk8"), "{err}");
    }

    #[test]
    fn rsa_sizes_are_checked() {
        assert!(KeyAlgorithm::rsa(1024).is_err());
        assert_eq!(KeyAlgorithm::rsa(3072).unwrap(), KeyAlgorithm::Rsa(3072));
    }
}
