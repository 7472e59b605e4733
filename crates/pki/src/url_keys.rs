//! The HMAC-SHA256 keys of signed URLs (`routes[].signed_urls.key_file`): loading the key
//! files, naming each key by an id derived from it, signing with the first key and
//! verifying with any listed key in constant time.
//!
//! A key file holds base64 text of at least 32 random bytes (`certgate certs url-key`, or
//! `openssl rand -base64 32`). Text rather than raw bytes so it fits a Kubernetes Secret or
//! an environment variable unchanged. The key id is the first 4 bytes of
//! SHA-256("certgate url key" || key), hex: a URL names the key that signed it, so rotation
//! (new key first, old key after it until the URLs it signed have expired) never has to try
//! several keys. The id reveals nothing usable about the key.
//!
//! Key material is never logged; `Debug` shows only the key ids.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroize;

use crate::PkiError;

/// The shortest key accepted: HMAC-SHA256's block-size security needs 256 bits.
pub const MIN_KEY_LEN: usize = 32;
/// Bytes of a key made by [`new_key_file`].
pub const NEW_KEY_LEN: usize = 32;
/// Length of a key id in hex digits.
pub const KEY_ID_LEN: usize = 8;

/// Why a list of signed-URL keys cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UrlKeysError {
    #[error("no signed-URL key given")]
    Empty,
    /// The same key (same id) appears twice: a copy, not a second key.
    #[error("key #{second} is the same key as key #{first}")]
    Duplicate { first: usize, second: usize },
    #[error("the system random number generator failed")]
    Random,
}

struct UrlKey {
    id: String,
    key: hmac::Key,
}

/// The keys of one `signed_urls` block, in file order: the first signs, all verify.
pub struct UrlKeys {
    keys: Vec<UrlKey>,
}

impl fmt::Debug for UrlKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UrlKeys")
            .field("ids", &self.keys.iter().map(|k| &k.id).collect::<Vec<_>>())
            .finish()
    }
}

/// The id of `key`: 8 lowercase hex digits.
pub fn key_id(key: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"certgate url key");
    ctx.update(key);
    let digest = ctx.finish();
    digest.as_ref()[..KEY_ID_LEN / 2]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl UrlKeys {
    /// Builds the key list from the decoded contents of each key file, in order.
    pub fn new(mut files: Vec<Vec<u8>>) -> Result<UrlKeys, UrlKeysError> {
        if files.is_empty() {
            return Err(UrlKeysError::Empty);
        }
        let mut keys: Vec<UrlKey> = Vec::with_capacity(files.len());
        for (i, bytes) in files.iter_mut().enumerate() {
            let id = key_id(bytes);
            if let Some(first) = keys.iter().position(|k| k.id == id) {
                return Err(UrlKeysError::Duplicate { first, second: i });
            }
            keys.push(UrlKey {
                id,
                key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
            });
            bytes.zeroize();
        }
        Ok(UrlKeys { keys })
    }

    /// Signs `message` with the first key: its id and the 32-byte tag.
    pub fn sign(&self, message: &[u8]) -> (&str, hmac::Tag) {
        let first = &self.keys[0];
        (&first.id, hmac::sign(&first.key, message))
    }

    /// Whether the key named `id` is listed.
    pub fn has(&self, id: &str) -> bool {
        self.keys.iter().any(|k| k.id == id)
    }

    /// Whether `tag` is the key `id`'s HMAC of `message`, compared in constant time.
    /// `false` when no listed key has that id.
    pub fn verify(&self, id: &str, message: &[u8], tag: &[u8]) -> bool {
        self.keys
            .iter()
            .find(|k| k.id == id)
            .is_some_and(|k| hmac::verify(&k.key, message, tag).is_ok())
    }

    /// The ids, first (signing) key first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }
}

/// Reads one key file: base64 (standard or URL-safe alphabet, padding and surrounding
/// whitespace allowed) of at least [`MIN_KEY_LEN`] bytes.
pub fn load_url_key(path: &Path) -> Result<Vec<u8>, PkiError> {
    let mut text = std::fs::read(path).map_err(|e| PkiError::read(path, e))?;
    let decoded = decode_key(&text);
    text.zeroize();
    decoded.map_err(|reason| PkiError::UrlKey {
        path: path.to_path_buf(),
        reason,
    })
}

fn decode_key(text: &[u8]) -> Result<Vec<u8>, String> {
    let trimmed: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if trimmed.is_empty() {
        return Err("the file is empty".into());
    }
    let unpadded: Vec<u8> = trimmed.iter().copied().take_while(|b| *b != b'=').collect();
    let engine = if unpadded.iter().any(|b| *b == b'-' || *b == b'_') {
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
    } else {
        &base64::engine::general_purpose::STANDARD_NO_PAD
    };
    let key = engine
        .decode(&unpadded)
        .map_err(|_| "not base64 text".to_string())?;
    if key.len() < MIN_KEY_LEN {
        return Err(format!("holds {} bytes", key.len()));
    }
    Ok(key)
}

/// The contents of a new key file: [`NEW_KEY_LEN`] random bytes, base64, with a newline.
pub fn new_key_file() -> Result<String, UrlKeysError> {
    let mut key = [0u8; NEW_KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| UrlKeysError::Random)?;
    let text = base64::engine::general_purpose::STANDARD.encode(key);
    key.zeroize();
    Ok(format!("{text}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_key_signs_every_key_verifies_and_ids_name_keys() {
        let old = vec![1u8; 32];
        let new = vec![2u8; 32];
        let keys = UrlKeys::new(vec![new.clone(), old.clone()]).unwrap();
        let (id, tag) = keys.sign(b"message");
        assert_eq!(id, key_id(&new));
        assert!(keys.verify(id, b"message", tag.as_ref()));
        assert!(!keys.verify(id, b"messagf", tag.as_ref()));
        let old_only = UrlKeys::new(vec![old.clone()]).unwrap();
        let (old_id, old_tag) = old_only.sign(b"message");
        assert!(keys.verify(old_id, b"message", old_tag.as_ref()));
        // Once removed, the old key's URLs no longer verify.
        let new_only = UrlKeys::new(vec![new]).unwrap();
        assert!(!new_only.verify(old_id, b"message", old_tag.as_ref()));
        assert!(!new_only.has(old_id));
        // A tag under a wrong id does not verify.
        assert!(!keys.verify(id, b"message", old_tag.as_ref()));
        assert_eq!(id.len(), KEY_ID_LEN);
    }

    #[test]
    fn duplicate_and_empty_lists_are_refused() {
        assert!(matches!(UrlKeys::new(vec![]), Err(UrlKeysError::Empty)));
        assert!(matches!(
            UrlKeys::new(vec![vec![3; 32], vec![4; 32], vec![3; 32]]),
            Err(UrlKeysError::Duplicate {
                first: 0,
                second: 2
            })
        ));
    }

    #[test]
    fn key_files_are_base64_of_at_least_32_bytes() {
        let made = new_key_file().unwrap();
        let key = decode_key(made.as_bytes()).unwrap();
        assert_eq!(key.len(), 32);
        assert_ne!(new_key_file().unwrap(), made);
        // URL-safe alphabet and missing padding are fine too.
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfb; 40]);
        assert_eq!(decode_key(url_safe.as_bytes()).unwrap(), vec![0xfb; 40]);
        assert!(decode_key(b"  \n").unwrap_err().contains("empty"));
        assert!(decode_key(b"c2hvcnQ=\n")
            .unwrap_err()
            .contains("holds 5 bytes"));
        assert!(decode_key(b"not base64 at all!").is_err());
    }

    #[test]
    fn debug_shows_ids_only() {
        let keys = UrlKeys::new(vec![vec![7; 32]]).unwrap();
        let text = format!("{keys:?}");
        assert!(text.contains(&key_id(&[7; 32])));
        assert!(!text.contains("7, 7"));
    }
}
