//! Parsed client certificates shared between connections that present the same chain.
//! A `ClientCert` holds every identity value pre-rendered (DNs, escaped PEM, RFC 9440,
//! XFCC: several KB), and most clients reconnect with the same chain, so connections
//! share one `Arc` instead of parsing and storing their own copy. Entries are weak: a
//! certificate no connection uses any more is freed, and the map is pruned as it grows.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};

use certgate_identity::{ClientCert, IdentityError};

/// Entries kept before dead ones are pruned (and, if all are live, the map is cleared).
const PRUNE_AT: usize = 4096;

#[derive(Default)]
pub struct ClientCertCache {
    entries: Mutex<HashMap<u64, Weak<ClientCert>>>,
    hasher: RandomState,
}

fn same_chain<C: AsRef<[u8]>>(cert: &ClientCert, chain: &[C]) -> bool {
    let Some((leaf, rest)) = chain.split_first() else {
        return false;
    };
    cert.leaf_der() == leaf.as_ref()
        && cert.intermediates_der().len() == rest.len()
        && cert
            .intermediates_der()
            .iter()
            .zip(rest)
            .all(|(a, b)| a.as_slice() == b.as_ref())
}

impl ClientCertCache {
    /// The parsed certificate for `chain`, shared with any live connection that sent the
    /// same bytes.
    pub fn get_or_parse<C: AsRef<[u8]>>(
        &self,
        chain: &[C],
    ) -> Result<Arc<ClientCert>, IdentityError> {
        let mut h = self.hasher.build_hasher();
        for der in chain {
            der.as_ref().hash(&mut h);
        }
        let key = h.finish();
        if let Ok(entries) = self.entries.lock() {
            if let Some(cert) = entries.get(&key).and_then(Weak::upgrade) {
                if same_chain(&cert, chain) {
                    return Ok(cert);
                }
            }
        }
        // Parse outside the lock: it is the expensive part.
        let cert = Arc::new(ClientCert::from_chain(chain)?);
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= PRUNE_AT {
                entries.retain(|_, weak| weak.strong_count() > 0);
                if entries.len() >= PRUNE_AT {
                    entries.clear();
                }
            }
            entries.insert(key, Arc::downgrade(&cert));
        }
        Ok(cert)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(cn: &str) -> Vec<Vec<u8>> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        vec![params.self_signed(&key).unwrap().der().to_vec()]
    }

    #[test]
    fn same_chain_shares_one_parse_and_is_freed_with_its_last_user() {
        let cache = ClientCertCache::default();
        let alice = chain("alice");
        let first = cache.get_or_parse(&alice).unwrap();
        let second = cache.get_or_parse(&alice).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(first.subject_dn(), "CN=alice");

        let bob = cache.get_or_parse(&chain("bob")).unwrap();
        assert_eq!(bob.subject_dn(), "CN=bob");
        assert!(!Arc::ptr_eq(&first, &bob));

        let weak = Arc::downgrade(&first);
        drop(first);
        drop(second);
        assert!(
            weak.upgrade().is_none(),
            "the cache must not keep certificates alive"
        );
        // Parsed again on the next use.
        assert_eq!(cache.get_or_parse(&alice).unwrap().subject_dn(), "CN=alice");
    }

    #[test]
    fn unparseable_chains_are_errors() {
        let cache = ClientCertCache::default();
        assert!(cache
            .get_or_parse(&[b"not a certificate".to_vec()])
            .is_err());
    }
}
