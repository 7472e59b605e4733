//! TLS session tickets sealed with keys read from files (`tls.session_ticket_keys`, nginx's
//! `ssl_session_ticket_key`), so that a session started on one certgate process resumes on
//! any other process given the same files: the replicas behind a load balancer.
//!
//! Key files use nginx's 80-byte layout: a 16-byte key name, a 32-byte HMAC secret and a
//! 32-byte AES key (`openssl rand 80 > ticket.key`, or `certgate certs ticket-key`). The
//! first key seals new tickets; every key opens them, picked by the key name at the head of
//! the ticket, so keys rotate without refusing sessions: add the new key last, then move
//! it first, keep the old one after it for a ticket lifetime, then drop it.
//!
//! The ticket format is certgate's own, `key name (16) || nonce (12) || AES-256-GCM(issue
//! time (8, big-endian seconds) || session state) || tag (16)`, with the key name as
//! additional authenticated data. The AES key of the file is the AEAD key; the GCM tag
//! authenticates, so the HMAC secret is not used. nginx's tickets (AES-256-CBC with
//! HMAC-SHA256) and certgate's cannot open each other: the key files are interchangeable,
//! the tickets are not.
//!
//! Anyone holding a key file can open the tickets sealed with it (clients send them in
//! clear when resuming) and so resume those sessions under the client certificate they
//! carry, and for TLS 1.2 decrypt recorded traffic: key files are as secret as private
//! keys, and rotating them bounds what a leaked file exposes. Nothing here logs key
//! material; the `Debug` output names only the number of keys.

use std::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;
use zeroize::Zeroize;

use crate::PkiError;

/// Size of a key file: nginx's 80-byte `ssl_session_ticket_key` format.
pub const KEY_FILE_LEN: usize = 80;
const NAME_LEN: usize = 16;
/// Offset of the AES key in a key file (after the name and the HMAC secret).
const AES_KEY_AT: usize = 48;
const TIME_LEN: usize = 8;
const TAG_LEN: usize = 16;

/// How long a ticket is good for, in seconds: sent to clients as the ticket lifetime, and
/// enforced when a ticket comes back (a ticket sealed longer ago is refused). Six hours, as
/// rustls's own ticketer.
pub const TICKET_LIFETIME_SECS: u32 = 6 * 60 * 60;

/// Replicas' clocks differ a little: a ticket issued by a process whose clock is ahead by
/// up to this many seconds is still accepted.
const CLOCK_SKEW_SECS: u64 = 300;

/// Why a set of ticket keys cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TicketKeysError {
    /// An empty list: there is no key to seal tickets with.
    #[error("no session ticket key given")]
    Empty,
    /// Two keys share a key name, so a ticket would not say which one sealed it.
    #[error(
        "key #{second} has the same key name (first 16 bytes) as key #{first}; \
         generate each key file separately"
    )]
    DuplicateName {
        /// 0-based positions in the list.
        first: usize,
        second: usize,
    },
    /// The system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// The AEAD key could not be set up (not expected: every 32-byte string is a key).
    #[error("cannot set up the AES-256-GCM key")]
    Aead,
}

struct TicketKey {
    name: [u8; NAME_LEN],
    aead: LessSafeKey,
}

/// The ticket keys of one listen address, as rustls's [`ProducesTickets`]: seals with the
/// first key, opens with any of them.
pub struct TicketKeys {
    keys: Vec<TicketKey>,
    rng: SystemRandom,
}

impl fmt::Debug for TicketKeys {
    /// Never the key material, nor the key names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKeys")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl TicketKeys {
    /// Keys from the contents of key files, in order: the first seals new tickets. The
    /// given bytes are wiped before this returns.
    pub fn from_files_bytes(mut files: Vec<[u8; KEY_FILE_LEN]>) -> Result<Self, TicketKeysError> {
        let keys = Self::keys(&files);
        for file in &mut files {
            file.zeroize();
        }
        Ok(TicketKeys {
            keys: keys?,
            rng: SystemRandom::new(),
        })
    }

    fn keys(files: &[[u8; KEY_FILE_LEN]]) -> Result<Vec<TicketKey>, TicketKeysError> {
        if files.is_empty() {
            return Err(TicketKeysError::Empty);
        }
        let mut keys: Vec<TicketKey> = Vec::with_capacity(files.len());
        for (i, file) in files.iter().enumerate() {
            let mut name = [0u8; NAME_LEN];
            name.copy_from_slice(&file[..NAME_LEN]);
            if let Some(first) = keys.iter().position(|k| k.name == name) {
                return Err(TicketKeysError::DuplicateName { first, second: i });
            }
            let unbound = UnboundKey::new(&AES_256_GCM, &file[AES_KEY_AT..])
                .map_err(|_| TicketKeysError::Aead)?;
            keys.push(TicketKey {
                name,
                aead: LessSafeKey::new(unbound),
            });
        }
        Ok(keys)
    }

    /// How many keys open tickets (the first also seals them).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    fn seal_at(&self, plain: &[u8], now: u64) -> Option<Vec<u8>> {
        let key = self.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut ticket =
            Vec::with_capacity(NAME_LEN + NONCE_LEN + TIME_LEN + plain.len() + TAG_LEN);
        ticket.extend_from_slice(&key.name);
        ticket.extend_from_slice(&nonce);
        let body = ticket.len();
        ticket.extend_from_slice(&now.to_be_bytes());
        ticket.extend_from_slice(plain);
        let tag = key
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.name),
                &mut ticket[body..],
            )
            .ok()?;
        ticket.extend_from_slice(tag.as_ref());
        Some(ticket)
    }

    fn open_at(&self, ticket: &[u8], now: u64) -> Option<Vec<u8>> {
        if ticket.len() < NAME_LEN + NONCE_LEN + TIME_LEN + TAG_LEN {
            return None;
        }
        let (name, rest) = ticket.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        // Key names are not secret: a plain comparison is fine.
        let key = self.keys.iter().find(|k| k.name[..] == *name)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = sealed.to_vec();
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(name), &mut buffer)
            .ok()?;
        let (issued, state) = plain.split_at(TIME_LEN);
        let issued = u64::from_be_bytes(issued.try_into().ok()?);
        let fresh = issued <= now.saturating_add(CLOCK_SKEW_SECS)
            && now.saturating_sub(issued) <= u64::from(TICKET_LIFETIME_SECS);
        fresh.then(|| state.to_vec())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ProducesTickets for TicketKeys {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        TICKET_LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal_at(plain, unix_now())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open_at(cipher, unix_now())
    }
}

/// Reads one key file: exactly [`KEY_FILE_LEN`] bytes. The error names the file and its
/// size, never its contents.
pub fn load_ticket_key(path: &Path) -> Result<[u8; KEY_FILE_LEN], PkiError> {
    let mut bytes = std::fs::read(path).map_err(|e| PkiError::read(path, e))?;
    let key = <[u8; KEY_FILE_LEN]>::try_from(bytes.as_slice());
    let found = bytes.len();
    bytes.zeroize();
    key.map_err(|_| PkiError::TicketKeyLength {
        path: path.to_path_buf(),
        found,
    })
}

/// The contents of a new key file: [`KEY_FILE_LEN`] random bytes.
pub fn new_key_file() -> Result<[u8; KEY_FILE_LEN], TicketKeysError> {
    let mut key = [0u8; KEY_FILE_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| TicketKeysError::Random)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn key(seed: u8) -> [u8; KEY_FILE_LEN] {
        let mut k = [0u8; KEY_FILE_LEN];
        for (i, b) in k.iter_mut().enumerate() {
            *b = seed.wrapping_mul(31).wrapping_add(i as u8);
        }
        k
    }

    fn keys(seeds: &[u8]) -> TicketKeys {
        TicketKeys::from_files_bytes(seeds.iter().map(|s| key(*s)).collect()).unwrap()
    }

    #[test]
    fn round_trip() {
        let k = keys(&[1]);
        assert!(k.enabled());
        let ticket = k.seal_at(b"session state", NOW).unwrap();
        assert_eq!(&ticket[..NAME_LEN], &key(1)[..NAME_LEN]);
        assert_eq!(
            ticket.len(),
            NAME_LEN + NONCE_LEN + TIME_LEN + b"session state".len() + TAG_LEN
        );
        assert_eq!(k.open_at(&ticket, NOW).unwrap(), b"session state");
        // The same state sealed twice gives different tickets (a fresh nonce each time).
        assert_ne!(ticket, k.seal_at(b"session state", NOW).unwrap());
        // Through the rustls interface, with the real clock.
        let ticket = k.encrypt(b"").unwrap();
        assert_eq!(k.decrypt(&ticket).unwrap(), b"");
    }

    #[test]
    fn another_process_with_the_same_file_opens_the_ticket() {
        let ticket = keys(&[1]).seal_at(b"state", NOW).unwrap();
        assert_eq!(keys(&[1]).open_at(&ticket, NOW).unwrap(), b"state");
    }

    #[test]
    fn rotation_seals_with_the_first_key_and_opens_with_any() {
        let old = keys(&[1]);
        let old_ticket = old.seal_at(b"old", NOW).unwrap();
        // Step 1: the new key first, the old one kept second.
        let rotated = keys(&[2, 1]);
        assert_eq!(rotated.key_count(), 2);
        assert_eq!(rotated.open_at(&old_ticket, NOW).unwrap(), b"old");
        let new_ticket = rotated.seal_at(b"new", NOW).unwrap();
        assert_eq!(&new_ticket[..NAME_LEN], &key(2)[..NAME_LEN]);
        assert_eq!(
            old.open_at(&new_ticket, NOW),
            None,
            "sealed with the new key"
        );
        // Step 2: the old key dropped; its tickets are refused.
        let new_only = keys(&[2]);
        assert_eq!(new_only.open_at(&old_ticket, NOW), None);
        assert_eq!(new_only.open_at(&new_ticket, NOW).unwrap(), b"new");
    }

    #[test]
    fn tampered_truncated_and_unknown_tickets_are_refused() {
        let k = keys(&[1]);
        let ticket = k.seal_at(b"session state", NOW).unwrap();
        for i in 0..ticket.len() {
            let mut bad = ticket.clone();
            bad[i] ^= 0x01;
            assert_eq!(k.open_at(&bad, NOW), None, "byte {i} flipped");
        }
        for len in 0..ticket.len() {
            assert_eq!(k.open_at(&ticket[..len], NOW), None, "cut at {len}");
        }
        // Another key with the same name cannot forge or open tickets.
        let mut impostor = key(9);
        impostor[..NAME_LEN].copy_from_slice(&key(1)[..NAME_LEN]);
        let impostor = TicketKeys::from_files_bytes(vec![impostor]).unwrap();
        assert_eq!(impostor.open_at(&ticket, NOW), None);
        assert_eq!(
            k.open_at(&impostor.seal_at(b"forged", NOW).unwrap(), NOW),
            None
        );
        assert_eq!(keys(&[3]).open_at(&ticket, NOW), None, "unknown key name");
        assert_eq!(k.open_at(&[0u8; 200], NOW), None);
    }

    #[test]
    fn lifetime_is_announced_and_enforced() {
        let k = keys(&[1]);
        assert_eq!(k.lifetime(), TICKET_LIFETIME_SECS);
        assert_eq!(TICKET_LIFETIME_SECS, 6 * 3600);
        let ticket = k.seal_at(b"state", NOW).unwrap();
        let lifetime = u64::from(TICKET_LIFETIME_SECS);
        assert!(k.open_at(&ticket, NOW + lifetime).is_some());
        assert_eq!(k.open_at(&ticket, NOW + lifetime + 1), None, "expired");
        // Issued by a replica whose clock runs a little ahead: accepted; far ahead: refused.
        assert!(k.open_at(&ticket, NOW - CLOCK_SKEW_SECS).is_some());
        assert_eq!(k.open_at(&ticket, NOW - CLOCK_SKEW_SECS - 1), None);
    }

    #[test]
    fn bad_key_lists_are_refused() {
        assert!(matches!(
            TicketKeys::from_files_bytes(vec![]),
            Err(TicketKeysError::Empty)
        ));
        let err = TicketKeys::from_files_bytes(vec![key(1), key(2), key(1)]).unwrap_err();
        assert!(matches!(
            err,
            TicketKeysError::DuplicateName {
                first: 0,
                second: 2
            }
        ));
        assert_eq!(
            err.to_string(),
            "key #2 has the same key name (first 16 bytes) as key #0; generate each key file separately"
        );
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let text = format!("{:?}", keys(&[1, 2]));
        assert_eq!(text, "TicketKeys { keys: 2, .. }");
    }

    #[test]
    fn key_files_must_be_80_bytes() {
        let dir = std::env::temp_dir().join(format!("certgate-tickets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.key");
        std::fs::write(&good, key(1)).unwrap();
        assert_eq!(load_ticket_key(&good).unwrap(), key(1));
        let short = dir.join("short.key");
        std::fs::write(&short, &key(1)[..48]).unwrap();
        assert_eq!(
            load_ticket_key(&short).unwrap_err().to_string(),
            format!("{}: expected 80 bytes, found 48", short.display())
        );
        let missing = dir.join("missing.key");
        assert!(load_ticket_key(&missing)
            .unwrap_err()
            .to_string()
            .starts_with(&format!("cannot read {}", missing.display())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn new_key_files_are_random() {
        let (a, b) = (new_key_file().unwrap(), new_key_file().unwrap());
        assert_ne!(a, b);
        assert!(TicketKeys::from_files_bytes(vec![a, b]).is_ok());
    }
}
