//! Client-certificate chain verification with the semantics of nginx 1.22 on OpenSSL 3.0.
//!
//! [`ChainVerifier`] is an immutable snapshot of the trust configuration (`ca`,
//! `trusted_ca`, `crl`, `verify_depth`); a reload builds a new one. [`ChainVerifier::verify`]
//! replays the steps of OpenSSL's `X509_verify_cert` in OpenSSL's order — chain building,
//! extension and purpose checks, key-strength checks, CRLs, signatures and validity dates,
//! name constraints — with the verify callback nginx installs, which accepts every error
//! and lets verification continue. OpenSSL therefore ends with the *last* error it met, and
//! that is what nginx reports as `$ssl_client_verify = FAILED:<reason>`; so do we.
//! [`ChainVerifier::verify_detailed`] also returns every error on the way, which is what
//! `openssl verify` prints and what an operator wants to see (e.g. "certificate chain too
//! long" before nginx's final "unable to get local issuer certificate").
//!
//! Checked against OpenSSL 3.0.x with nginx's settings (purpose `sslclient`, security
//! level 2, `X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL` when CRLs are configured,
//! `SSL_CTX_set_verify_depth(verify_depth)`). Not modelled: certificate policies (nginx
//! does not enable policy checking), DANE, proxy certificates (rejected), delta CRLs and
//! indirect CRLs (ignored, as without `X509_V_FLAG_USE_DELTAS`/extended CRL support).

use std::collections::HashMap;
use std::fmt;

use rustls::DistinguishedName;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};

use crate::cert::{Cert, Crl, DpName, GenName, Name, NameConstraints};
use crate::{sig, PkiError};

/// `X509_V_ERR_*` codes this verifier reports (OpenSSL 3.0 numbering).
pub mod codes {
    pub const UNSPECIFIED: i32 = 1;
    pub const UNABLE_TO_GET_ISSUER_CERT: i32 = 2;
    pub const UNABLE_TO_GET_CRL: i32 = 3;
    pub const UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: i32 = 6;
    pub const CERT_SIGNATURE_FAILURE: i32 = 7;
    pub const CRL_SIGNATURE_FAILURE: i32 = 8;
    pub const CERT_NOT_YET_VALID: i32 = 9;
    pub const CERT_HAS_EXPIRED: i32 = 10;
    pub const CRL_NOT_YET_VALID: i32 = 11;
    pub const CRL_HAS_EXPIRED: i32 = 12;
    pub const DEPTH_ZERO_SELF_SIGNED_CERT: i32 = 18;
    pub const SELF_SIGNED_CERT_IN_CHAIN: i32 = 19;
    pub const UNABLE_TO_GET_ISSUER_CERT_LOCALLY: i32 = 20;
    pub const UNABLE_TO_VERIFY_LEAF_SIGNATURE: i32 = 21;
    pub const CERT_CHAIN_TOO_LONG: i32 = 22;
    pub const CERT_REVOKED: i32 = 23;
    pub const KEYUSAGE_NO_CERTSIGN: i32 = 32;
    pub const PATH_LENGTH_EXCEEDED: i32 = 25;
    pub const INVALID_PURPOSE: i32 = 26;
    pub const UNHANDLED_CRITICAL_EXTENSION: i32 = 34;
    pub const KEYUSAGE_NO_CRL_SIGN: i32 = 35;
    pub const UNHANDLED_CRITICAL_CRL_EXTENSION: i32 = 36;
    pub const PROXY_CERTIFICATES_NOT_ALLOWED: i32 = 40;
    pub const DIFFERENT_CRL_SCOPE: i32 = 44;
    pub const PERMITTED_VIOLATION: i32 = 47;
    pub const EXCLUDED_VIOLATION: i32 = 48;
    pub const SUBTREE_MINMAX: i32 = 49;
    pub const UNSUPPORTED_CONSTRAINT_TYPE: i32 = 51;
    pub const UNSUPPORTED_NAME_SYNTAX: i32 = 53;
    pub const EE_KEY_TOO_SMALL: i32 = 66;
    pub const CA_KEY_TOO_SMALL: i32 = 67;
    pub const CA_MD_TOO_WEAK: i32 = 68;
    pub const INVALID_CA: i32 = 79;
    pub const EC_KEY_EXPLICIT_PARAMS: i32 = 94;
}

/// OpenSSL 3.0's `X509_verify_cert_error_string` for the codes above.
pub fn error_string(code: i32) -> &'static str {
    use codes::*;
    match code {
        0 => "ok",
        UNSPECIFIED => "unspecified certificate verification error",
        UNABLE_TO_GET_ISSUER_CERT => "unable to get issuer certificate",
        UNABLE_TO_GET_CRL => "unable to get certificate CRL",
        UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY => "unable to decode issuer public key",
        CERT_SIGNATURE_FAILURE => "certificate signature failure",
        CRL_SIGNATURE_FAILURE => "CRL signature failure",
        CERT_NOT_YET_VALID => "certificate is not yet valid",
        CERT_HAS_EXPIRED => "certificate has expired",
        CRL_NOT_YET_VALID => "CRL is not yet valid",
        CRL_HAS_EXPIRED => "CRL has expired",
        DEPTH_ZERO_SELF_SIGNED_CERT => "self-signed certificate",
        SELF_SIGNED_CERT_IN_CHAIN => "self-signed certificate in certificate chain",
        UNABLE_TO_GET_ISSUER_CERT_LOCALLY => "unable to get local issuer certificate",
        UNABLE_TO_VERIFY_LEAF_SIGNATURE => "unable to verify the first certificate",
        CERT_CHAIN_TOO_LONG => "certificate chain too long",
        CERT_REVOKED => "certificate revoked",
        KEYUSAGE_NO_CERTSIGN => "key usage does not include certificate signing",
        PATH_LENGTH_EXCEEDED => "path length constraint exceeded",
        INVALID_PURPOSE => "unsuitable certificate purpose",
        UNHANDLED_CRITICAL_EXTENSION => "unhandled critical extension",
        KEYUSAGE_NO_CRL_SIGN => "key usage does not include CRL signing",
        UNHANDLED_CRITICAL_CRL_EXTENSION => "unhandled critical CRL extension",
        PROXY_CERTIFICATES_NOT_ALLOWED => {
            "proxy certificates not allowed, please set the appropriate flag"
        }
        DIFFERENT_CRL_SCOPE => "different CRL scope",
        PERMITTED_VIOLATION => "permitted subtree violation",
        EXCLUDED_VIOLATION => "excluded subtree violation",
        SUBTREE_MINMAX => "name constraints minimum and maximum not supported",
        UNSUPPORTED_CONSTRAINT_TYPE => "unsupported name constraint type",
        UNSUPPORTED_NAME_SYNTAX => "unsupported or invalid name syntax",
        EE_KEY_TOO_SMALL => "EE certificate key too weak",
        CA_KEY_TOO_SMALL => "CA certificate key too weak",
        CA_MD_TOO_WEAK => "CA signature digest algorithm too weak",
        INVALID_CA => "invalid CA certificate",
        EC_KEY_EXPLICIT_PARAMS => "Certificate public key has explicit ECC parameters",
        _ => "unknown certificate verification error",
    }
}

/// A successful verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedChain {
    /// Number of intermediate CA certificates between the client certificate and the
    /// trust anchor.
    pub depth: usize,
}

/// Why a chain was rejected, in OpenSSL's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyFailure {
    /// The `X509_V_ERR_*` number (see [`codes`]).
    pub code: i32,
    /// OpenSSL's text for `code`: what nginx puts after `FAILED:` in `$ssl_client_verify`.
    pub reason: &'static str,
    /// Position in the built chain of the certificate the error is about (0 = the client's).
    pub depth: usize,
}

impl VerifyFailure {
    fn new(code: i32, depth: usize) -> Self {
        VerifyFailure {
            code,
            reason: error_string(code),
            depth,
        }
    }

    /// Whether `verify: optional_no_ca` lets a certificate with this failure through:
    /// only "the issuer is not trusted" errors, as nginx's `ngx_ssl_verify_error_optional`.
    /// Expired, revoked or wrong-purpose certificates are refused in every mode.
    pub fn is_untrusted_issuer_only(&self) -> bool {
        untrusted_issuer_only(self.code)
    }
}

/// See [`VerifyFailure::is_untrusted_issuer_only`].
pub fn untrusted_issuer_only(code: i32) -> bool {
    matches!(
        code,
        codes::UNABLE_TO_GET_ISSUER_CERT
            | codes::DEPTH_ZERO_SELF_SIGNED_CERT
            | codes::SELF_SIGNED_CERT_IN_CHAIN
            | codes::UNABLE_TO_GET_ISSUER_CERT_LOCALLY
            | codes::UNABLE_TO_VERIFY_LEAF_SIGNATURE
    )
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for VerifyFailure {}

/// The full outcome of a verification: the result nginx would report, and every error
/// OpenSSL's verify callback saw on the way (the last one is the reported failure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub result: Result<VerifiedChain, VerifyFailure>,
    pub errors: Vec<VerifyFailure>,
}

/// An immutable, ready-to-use trust configuration. Build a new one on reload.
pub struct ChainVerifier {
    /// `ca` then `trusted_ca`, duplicates removed.
    anchors: Vec<Cert>,
    anchors_by_subject: HashMap<Vec<u8>, Vec<usize>>,
    crls: Vec<Crl>,
    crls_by_issuer: HashMap<Vec<u8>, Vec<usize>>,
    verify_depth: u32,
    hints: Vec<DistinguishedName>,
    /// The earliest `nextUpdate` of the CRLs: no verification result outlives it.
    crls_valid_until: i64,
    memo: Memo,
}

/// Successful verifications of recently seen chains. Every handshake verifies the chain
/// (rustls's verifier on a full handshake, then again for the connection's identity, and
/// on resumption), and most clients present the same chain again and again: a hit saves
/// the signature checks. The inputs are fixed for this verifier's lifetime (a reload
/// builds a new verifier with an empty memo), except time, so an entry lives at most
/// [`MEMO_TTL_SECS`] and never past the chain's earliest `notAfter` or the CRLs'
/// `nextUpdate`. Failures are not memoised: they are rare and must name their reason.
struct Memo {
    entries: std::sync::Mutex<HashMap<u64, MemoEntry>>,
    hasher: std::collections::hash_map::RandomState,
}

struct MemoEntry {
    chain: Vec<Vec<u8>>,
    depth: usize,
    valid_until: i64,
}

const MEMO_TTL_SECS: i64 = 60;
const MEMO_CAPACITY: usize = 1024;

impl Memo {
    fn new() -> Self {
        Memo {
            entries: std::sync::Mutex::new(HashMap::new()),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn key(&self, chain: &[CertificateDer<'_>]) -> u64 {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = self.hasher.build_hasher();
        for der in chain {
            der.as_ref().hash(&mut h);
        }
        h.finish()
    }

    fn get(&self, key: u64, chain: &[CertificateDer<'_>], now: i64) -> Option<usize> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(&key)?;
        let same = entry.chain.len() == chain.len()
            && entry
                .chain
                .iter()
                .zip(chain)
                .all(|(a, b)| a.as_slice() == b.as_ref());
        (same && now < entry.valid_until).then_some(entry.depth)
    }

    fn insert(&self, key: u64, chain: &[CertificateDer<'_>], depth: usize, valid_until: i64) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MEMO_CAPACITY {
            // Bounded memory; a full memo starts over rather than tracking recency.
            entries.clear();
        }
        let chain = chain.iter().map(|c| c.as_ref().to_vec()).collect();
        entries.insert(
            key,
            MemoEntry {
                chain,
                depth,
                valid_until,
            },
        );
    }
}

impl fmt::Debug for ChainVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainVerifier")
            .field("anchors", &self.anchors.len())
            .field("hinted", &self.hints.len())
            .field("crls", &self.crls.len())
            .field("verify_depth", &self.verify_depth)
            .finish()
    }
}

// OpenSSL's CRL scores (x509_vfy.c).
const CRL_SCORE_NOCRITICAL: u32 = 0x100;
const CRL_SCORE_SCOPE: u32 = 0x080;
const CRL_SCORE_TIME: u32 = 0x040;
const CRL_SCORE_ISSUER_NAME: u32 = 0x020;
const CRL_SCORE_ISSUER_CERT: u32 = 0x018;
const CRL_SCORE_SAME_PATH: u32 = 0x008;
const CRL_SCORE_AKID: u32 = 0x004;

/// Minimum bits of security at OpenSSL security level 2, Debian's default, which nginx
/// does not change.
const MIN_SECURITY_BITS: u32 = 112;

impl ChainVerifier {
    /// Builds a verifier.
    ///
    /// - `ca`: trusted, and named in the CertificateRequest (`ssl_client_certificate`);
    /// - `trusted_ca`: trusted but not named (`ssl_trusted_certificate`);
    /// - `crls`: when non-empty, every certificate of every chain must be covered by a CRL
    ///   from its issuer (nginx's `ssl_crl`, which sets OpenSSL's CRL_CHECK_ALL);
    /// - `verify_depth`: at most this many intermediates between the client certificate and
    ///   the trust anchor (`ssl_verify_depth`, OpenSSL >= 1.1 semantics).
    ///
    /// No trust anchors at all is allowed (`verify: optional_no_ca` without a CA): every
    /// chain then fails with the reason OpenSSL would give.
    pub fn new(
        ca: Vec<CertificateDer<'static>>,
        trusted_ca: Vec<CertificateDer<'static>>,
        crls: Vec<CertificateRevocationListDer<'static>>,
        verify_depth: u32,
    ) -> Result<ChainVerifier, PkiError> {
        let mut anchors: Vec<Cert> = Vec::with_capacity(ca.len() + trusted_ca.len());
        let mut hints: Vec<DistinguishedName> = Vec::new();
        let mut hinted: Vec<Name> = Vec::new();
        for (i, der) in ca.iter().chain(trusted_ca.iter()).enumerate() {
            let cert = Cert::parse(der).map_err(|reason| PkiError::Certificate {
                reason: format!("trusted certificate #{}: {reason}", i + 1),
            })?;
            // Like SSL_load_client_CA_file: each subject is named once, in file order.
            if i < ca.len()
                && !hinted
                    .iter()
                    .any(|n| n.matches(&cert.subject) || n.raw == cert.subject.raw)
            {
                hints.push(DistinguishedName::from(cert.subject.raw.clone()));
                hinted.push(cert.subject.clone());
            }
            // Like X509_STORE_add_cert: an identical certificate is stored once.
            if !anchors.iter().any(|a| a.der == cert.der) {
                anchors.push(cert);
            }
        }
        let mut anchors_by_subject: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
        for (i, a) in anchors.iter().enumerate() {
            if let Some(canon) = &a.subject.canon {
                anchors_by_subject.entry(canon.clone()).or_default().push(i);
            }
        }

        let mut parsed_crls = Vec::with_capacity(crls.len());
        for (i, der) in crls.iter().enumerate() {
            let crl = Crl::parse(der).map_err(|reason| PkiError::Crl {
                index: i + 1,
                reason,
            })?;
            parsed_crls.push(crl);
        }
        let mut crls_by_issuer: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
        for (i, c) in parsed_crls.iter().enumerate() {
            if let Some(canon) = &c.issuer.canon {
                crls_by_issuer.entry(canon.clone()).or_default().push(i);
            }
        }

        let crls_valid_until = parsed_crls
            .iter()
            .filter_map(|c| c.next_update)
            .min()
            .unwrap_or(i64::MAX);
        Ok(ChainVerifier {
            anchors,
            anchors_by_subject,
            crls: parsed_crls,
            crls_by_issuer,
            verify_depth,
            hints,
            crls_valid_until,
            memo: Memo::new(),
        })
    }

    /// Subjects of the `ca` certificates (not `trusted_ca`), for the CertificateRequest's
    /// certificate_authorities list, as nginx sends for `ssl_client_certificate`.
    pub fn root_hint_subjects(&self) -> Vec<DistinguishedName> {
        self.hints.clone()
    }

    pub(crate) fn hints(&self) -> &[DistinguishedName] {
        &self.hints
    }

    /// The configured `verify_depth`.
    pub fn verify_depth(&self) -> u32 {
        self.verify_depth
    }

    /// Verifies a client chain (`chain[0]` is the client's certificate, then whatever
    /// intermediates it sent, in any order) at time `now`.
    pub fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<VerifiedChain, VerifyFailure> {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let key = self.memo.key(chain);
        if let Some(depth) = self.memo.get(key, chain, now) {
            return Ok(VerifiedChain { depth });
        }
        let mut run = Run {
            v: self,
            now,
            errors: Vec::new(),
            valid_until: i64::MAX,
        };
        let result = run.verify(chain);
        if let Ok(verified) = &result {
            let valid_until = run
                .valid_until
                .min(self.crls_valid_until)
                .min(now.saturating_add(MEMO_TTL_SECS));
            self.memo.insert(key, chain, verified.depth, valid_until);
        }
        result
    }

    /// Like [`verify`](Self::verify), and also lists every error met on the way, in the
    /// order OpenSSL's verify callback sees them.
    pub fn verify_detailed(&self, chain: &[CertificateDer<'_>], now: UnixTime) -> Verification {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let mut run = Run {
            v: self,
            now,
            errors: Vec::new(),
            valid_until: i64::MAX,
        };
        let result = run.verify(chain);
        Verification {
            result,
            errors: run.errors,
        }
    }

    /// OpenSSL's `X509_STORE_CTX_get1_issuer`: a trusted certificate that issued `cert`,
    /// preferring one valid now, else the one expiring last. Among several valid ones, one
    /// whose signature on `cert` verifies is preferred (OpenSSL takes an arbitrary one,
    /// which matters only for CAs re-keyed under the same name without key identifiers).
    fn trusted_issuer(&self, cert: &Cert, now: i64) -> Option<&Cert> {
        let canon = cert.issuer.canon.as_ref()?;
        let candidates = self.anchors_by_subject.get(canon)?;
        let mut valid: Vec<&Cert> = Vec::new();
        let mut latest: Option<&Cert> = None;
        for &i in candidates {
            let c = &self.anchors[i];
            if !c.likely_issued(cert) {
                continue;
            }
            if time_valid(c, now) {
                valid.push(c);
            } else if latest.is_none_or(|l| c.not_after > l.not_after) {
                latest = Some(c);
            }
        }
        match valid.as_slice() {
            [] => latest,
            [only] => Some(only),
            several => several
                .iter()
                .copied()
                .find(|c| signature_ok(c, cert))
                .or(Some(several[0])),
        }
    }
}

/// The purpose and CA checks alone (OpenSSL's `check_extensions` for `sslclient`) on a
/// chain as given, without trust anchors, dates or signatures: what `certgate certs
/// inspect` can say about a file without a CA. A server-only certificate fails here
/// with the reason the gateway would give it ("unsuitable certificate purpose").
pub fn check_purpose(chain: &[CertificateDer<'_>]) -> Result<(), VerifyFailure> {
    let mut certs = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        certs.push(Cert::parse(der).map_err(|_| VerifyFailure::new(codes::UNSPECIFIED, i))?);
    }
    if certs.is_empty() {
        return Err(VerifyFailure::new(codes::UNSPECIFIED, 0));
    }
    let verifier = ChainVerifier::new(Vec::new(), Vec::new(), Vec::new(), 0)
        .map_err(|_| VerifyFailure::new(codes::UNSPECIFIED, 0))?;
    let mut run = Run {
        v: &verifier,
        now: 0,
        errors: Vec::new(),
        valid_until: i64::MAX,
    };
    let refs: Vec<&Cert> = certs.iter().collect();
    run.check_extensions(&refs);
    match run.errors.last() {
        Some(last) => Err(*last),
        None => Ok(()),
    }
}

fn time_valid(c: &Cert, now: i64) -> bool {
    // X509_cmp_time semantics: valid from notBefore (inclusive) until notAfter (exclusive).
    c.not_before <= now && now < c.not_after
}

fn signature_ok(issuer: &Cert, subject: &Cert) -> bool {
    subject.sig_alg_consistent
        && sig::verify(
            &issuer.spki_alg,
            &issuer.spki_key,
            &subject.sig_alg,
            subject.tbs(),
            &subject.signature,
        )
}

/// One verification in progress: the errors the verify callback has seen so far.
struct Run<'v> {
    v: &'v ChainVerifier,
    now: i64,
    errors: Vec<VerifyFailure>,
    /// After a success: the earliest `notAfter` of the built chain.
    valid_until: i64,
}

impl<'v> Run<'v> {
    fn fail(&mut self, code: i32, depth: usize) {
        self.errors.push(VerifyFailure::new(code, depth));
    }

    fn verify(&mut self, chain: &[CertificateDer<'_>]) -> Result<VerifiedChain, VerifyFailure> {
        if chain.is_empty() {
            self.fail(codes::UNSPECIFIED, 0);
            return Err(VerifyFailure::new(codes::UNSPECIFIED, 0));
        }
        // OpenSSL's TLS layer refuses a Certificate message it cannot decode before any
        // verification; there is no better reason than "unspecified" for that here.
        let mut sent = Vec::with_capacity(chain.len());
        for (i, der) in chain.iter().enumerate() {
            match Cert::parse(der) {
                Ok(c) => sent.push(c),
                Err(_) => {
                    self.fail(codes::UNSPECIFIED, i);
                    return Err(VerifyFailure::new(codes::UNSPECIFIED, i));
                }
            }
        }

        // x509_verify_x509: the client's key strength is checked before anything else.
        if !key_strong_enough(&sent[0]) {
            self.fail(codes::EE_KEY_TOO_SMALL, 0);
        }
        let v = self.v;
        let built = self.build_chain(v, &sent);
        self.check_extensions(&built);
        self.check_auth_level(&built);
        if !v.crls.is_empty() {
            self.check_revocation(&built);
        }
        self.internal_verify(&built);
        self.check_name_constraints(&built);

        self.valid_until = built.iter().map(|c| c.not_after).min().unwrap_or(i64::MAX);
        match self.errors.last() {
            Some(last) => Err(*last),
            None => Ok(VerifiedChain {
                depth: built.len().saturating_sub(2),
            }),
        }
    }

    /// `build_chain` with X509_V_FLAG_TRUSTED_FIRST (OpenSSL's default) and without
    /// PARTIAL_CHAIN: a chain is trusted only once it reaches a self-signed trusted
    /// certificate; a trusted intermediate alone is not enough.
    fn build_chain<'c>(&mut self, v: &'c ChainVerifier, sent: &'c [Cert]) -> Vec<&'c Cert> {
        let max_depth = (self.v.verify_depth.min(i32::MAX as u32 / 2) as usize) + 1;
        let mut chain: Vec<&Cert> = vec![&sent[0]];
        let mut num_untrusted = 1;
        let mut consumed = vec![false; sent.len()];
        let mut search_untrusted = true;
        let mut search_trusted = true;
        let mut trusted = false;
        // Trusted intermediates issuing each other in a loop would otherwise only stop at
        // the depth limit; a chain can never usefully be longer than every certificate we have.
        let hard_limit = sent.len() + v.anchors.len() + 1;

        while (search_untrusted || search_trusted) && chain.len() <= hard_limit {
            let num = chain.len();
            if search_trusted {
                let curr = chain[num - 1];
                let issuer = if num > max_depth {
                    None
                } else {
                    v.trusted_issuer(curr, self.now)
                };
                if let Some(issuer) = issuer {
                    let mut ok = true;
                    let self_signed;
                    if !curr.self_signed {
                        chain.push(issuer);
                        self_signed = issuer.self_signed;
                    } else if curr.der != issuer.der {
                        // A self-signed certificate merely named like a trust anchor.
                        ok = false;
                        self_signed = true;
                    } else {
                        // The client sent the trust anchor itself: use the trusted copy.
                        chain[num - 1] = issuer;
                        num_untrusted = num - 1;
                        self_signed = true;
                    }
                    if ok {
                        search_untrusted = false;
                        // check_trust: a self-signed trusted certificate ends the chain.
                        if self_signed {
                            trusted = true;
                            break;
                        }
                        continue;
                    }
                }
                if !search_untrusted {
                    break;
                }
            }
            if search_untrusted {
                let num = chain.len();
                let curr = chain[num - 1];
                let found = if curr.self_signed || num > max_depth {
                    None
                } else {
                    best_untrusted_issuer(curr, &chain, sent, &consumed, self.now)
                };
                match found {
                    Some(i) => {
                        consumed[i] = true;
                        chain.push(&sent[i]);
                        num_untrusted += 1;
                    }
                    None => {
                        search_untrusted = false;
                        search_trusted = true;
                    }
                }
            }
        }

        if !trusted {
            let num = chain.len();
            if num > max_depth {
                self.fail(codes::CERT_CHAIN_TOO_LONG, num - 1);
            }
            let code = if chain[num - 1].self_signed {
                if num == 1 {
                    codes::DEPTH_ZERO_SELF_SIGNED_CERT
                } else {
                    codes::SELF_SIGNED_CERT_IN_CHAIN
                }
            } else if num_untrusted < num {
                codes::UNABLE_TO_GET_ISSUER_CERT
            } else {
                codes::UNABLE_TO_GET_ISSUER_CERT_LOCALLY
            };
            self.fail(code, num - 1);
        }
        chain
    }

    /// `check_extensions` for purpose `sslclient`: critical extensions, CA flags of every
    /// issuer, the purpose of every certificate, path length constraints.
    fn check_extensions(&mut self, chain: &[&Cert]) {
        let num = chain.len();
        let mut plen: u64 = 0;
        for (i, x) in chain.iter().enumerate() {
            if x.unhandled_critical {
                self.fail(codes::UNHANDLED_CRITICAL_EXTENSION, i);
            }
            if x.proxy {
                self.fail(codes::PROXY_CERTIFICATES_NOT_ALLOWED, i);
            }
            if i > 0 {
                let ca = x.check_ca();
                // Below the top, only a real CA (basicConstraints cA) will do.
                if ca == 0 || (i + 1 < num && ca != 1) {
                    self.fail(codes::INVALID_CA, i);
                }
            }
            if num > 1 && x.ec_explicit_params {
                self.fail(codes::EC_KEY_EXPLICIT_PARAMS, i);
            }
            if !ssl_client_purpose(x, i > 0) {
                self.fail(codes::INVALID_PURPOSE, i);
            }
            if i > 1 {
                if let Some(limit) = x.basic_constraints.and_then(|bc| bc.path_len) {
                    if plen > u64::from(limit) {
                        self.fail(codes::PATH_LENGTH_EXCEEDED, i);
                    }
                }
            }
            if i > 0 && !x.self_issued {
                plen += 1;
            }
        }
    }

    /// `check_auth_level` at security level 2: issuer keys and non-anchor signature digests.
    fn check_auth_level(&mut self, chain: &[&Cert]) {
        let num = chain.len();
        for (i, x) in chain.iter().enumerate() {
            if i > 0 && !key_strong_enough(x) {
                self.fail(codes::CA_KEY_TOO_SMALL, i);
            }
            if i + 1 < num && x.sig_secbits.is_some_and(|b| b < MIN_SECURITY_BITS) {
                self.fail(codes::CA_MD_TOO_WEAK, i);
            }
        }
    }

    /// `check_revocation` with CRL_CHECK_ALL: every certificate of the chain, the top one
    /// included (OpenSSL 3.0 does not skip self-signed roots), needs a CRL from its issuer.
    fn check_revocation(&mut self, chain: &[&Cert]) {
        for i in 0..chain.len() {
            if chain[i].proxy {
                continue;
            }
            self.check_cert_crl(chain, i);
        }
    }

    fn check_cert_crl(&mut self, chain: &[&Cert], i: usize) {
        let x = chain[i];
        let last = chain.len() - 1;
        let mut best: Option<(&Crl, u32, usize)> = None;
        let candidates = x
            .issuer
            .canon
            .as_ref()
            .and_then(|c| self.v.crls_by_issuer.get(c));
        for &ci in candidates.into_iter().flatten() {
            let crl = &self.v.crls[ci];
            // get_crl_score: unusable without extended CRL support or deltas.
            if crl.idp_invalid
                || crl.delta
                || crl.idp.as_ref().is_some_and(|p| p.indirect || p.reasons)
            {
                continue;
            }
            let mut score = CRL_SCORE_ISSUER_NAME;
            if !crl.unhandled_critical {
                score |= CRL_SCORE_NOCRITICAL;
            }
            if crl_time_valid(crl, self.now) {
                score |= CRL_SCORE_TIME;
            }
            // crl_akid_check: the certificate above (or the top one itself) first, without a
            // name check, as OpenSSL 3.0 does; then further up the chain by name and AKID.
            let first = if i != last { i + 1 } else { i };
            let issuer_idx = if chain[first].akid_matches(crl.akid.as_ref()) {
                score |= CRL_SCORE_AKID | CRL_SCORE_ISSUER_CERT;
                Some(first)
            } else {
                let found = (first + 1..chain.len()).find(|&c| {
                    chain[c].subject.matches(&crl.issuer)
                        && chain[c].akid_matches(crl.akid.as_ref())
                });
                if found.is_some() {
                    score |= CRL_SCORE_AKID | CRL_SCORE_SAME_PATH;
                }
                found
            };
            let Some(issuer_idx) = issuer_idx else {
                continue;
            };
            if crl_in_scope(x, crl) {
                score |= CRL_SCORE_SCOPE;
            }
            if let Some((b, bs, _)) = best {
                // get_crl_sk: a better score wins; on a tie, a strictly newer CRL.
                if score < bs || (score == bs && crl.last_update <= b.last_update) {
                    continue;
                }
            }
            best = Some((crl, score, issuer_idx));
        }

        let Some((crl, score, issuer_idx)) = best else {
            self.fail(codes::UNABLE_TO_GET_CRL, i);
            return;
        };
        let issuer = chain[issuer_idx];
        // check_crl
        if issuer.key_usage.is_some_and(|ku| !ku.crl_sign()) {
            self.fail(codes::KEYUSAGE_NO_CRL_SIGN, i);
        }
        if score & CRL_SCORE_SCOPE == 0 {
            self.fail(codes::DIFFERENT_CRL_SCOPE, i);
        }
        if score & CRL_SCORE_TIME == 0 {
            if crl.last_update > self.now {
                self.fail(codes::CRL_NOT_YET_VALID, i);
            }
            if crl.next_update.is_some_and(|n| n <= self.now) {
                self.fail(codes::CRL_HAS_EXPIRED, i);
            }
        }
        let signature_ok = crl.sig_alg_consistent
            && sig::verify(
                &issuer.spki_alg,
                &issuer.spki_key,
                &crl.sig_alg,
                crl.tbs(),
                &crl.signature,
            );
        if !signature_ok {
            self.fail(codes::CRL_SIGNATURE_FAILURE, i);
        }
        // cert_crl
        if crl.unhandled_critical {
            self.fail(codes::UNHANDLED_CRITICAL_CRL_EXTENSION, i);
        }
        if crl.revoked.get(&x.serial) == Some(&false) {
            self.fail(codes::CERT_REVOKED, i);
        }
        // An out-of-scope CRL covers no revocation reasons, so OpenSSL's check_cert loop
        // ends without full coverage and reports the CRL as missing as well.
        if score & CRL_SCORE_SCOPE == 0 {
            self.fail(codes::UNABLE_TO_GET_CRL, i);
        }
    }

    /// `internal_verify`: signatures and validity dates, from the anchor down to the client
    /// certificate. A self-signed top certificate's own signature is not checked (OpenSSL
    /// skips it unless asked); a top certificate that is not self-issued is not itself
    /// checked, and if it is the only one, the chain is reported as unverifiable.
    fn internal_verify(&mut self, chain: &[&Cert]) {
        let top = chain.len() - 1;
        let mut xi = top;
        let mut xs = top;
        if !chain[top].likely_issued(chain[top]) {
            if top == 0 {
                self.fail(codes::UNABLE_TO_VERIFY_LEAF_SIGNATURE, 0);
            } else {
                xs = top - 1;
            }
        }
        loop {
            if xs != xi {
                // RFC 5280 6.1.4 (n): an issuer whose keyUsage forbids certificate signing
                // is reported (at the issuer's depth) before its signature is checked.
                if chain[xi].key_usage.is_some_and(|ku| !ku.key_cert_sign()) {
                    self.fail(codes::KEYUSAGE_NO_CERTSIGN, xi);
                }
                if !signature_ok(chain[xi], chain[xs]) {
                    self.fail(codes::CERT_SIGNATURE_FAILURE, xs);
                }
            }
            let c = chain[xs];
            if c.not_before > self.now {
                self.fail(codes::CERT_NOT_YET_VALID, xs);
            }
            if c.not_after <= self.now {
                self.fail(codes::CERT_HAS_EXPIRED, xs);
            }
            if xs == 0 {
                break;
            }
            xi = xs;
            xs -= 1;
        }
    }

    /// `check_name_constraints`: every certificate (self-issued intermediates excepted)
    /// against the name constraints of every certificate above it.
    fn check_name_constraints(&mut self, chain: &[&Cert]) {
        let num = chain.len();
        for i in (0..num).rev() {
            let x = chain[i];
            if i != 0 && x.self_issued {
                continue;
            }
            for j in (i + 1..num).rev() {
                let Some(nc) = &chain[j].name_constraints else {
                    continue;
                };
                let mut rv = nc_check(x, nc);
                if rv == 0 && i == 0 && !x.has_san_dns {
                    rv = nc_check_cn(x, nc);
                }
                if rv != 0 {
                    self.fail(rv, i);
                }
            }
        }
    }
}

/// `get0_best_issuer_sk` over the client's certificates: not already used, not already in
/// the chain (except a lone self-issued certificate), issued `curr`; the first valid one
/// now, else the one expiring last.
fn best_untrusted_issuer(
    curr: &Cert,
    chain: &[&Cert],
    sent: &[Cert],
    consumed: &[bool],
    now: i64,
) -> Option<usize> {
    let allow_dup = curr.self_issued && chain.len() == 1;
    let mut fallback: Option<usize> = None;
    for (i, cand) in sent.iter().enumerate() {
        if consumed[i] || (!allow_dup && chain.iter().any(|c| c.der == cand.der)) {
            continue;
        }
        if !cand.likely_issued(curr) {
            continue;
        }
        if time_valid(cand, now) {
            return Some(i);
        }
        if fallback.is_none_or(|f| cand.not_after > sent[f].not_after) {
            fallback = Some(i);
        }
    }
    fallback
}

fn key_strong_enough(c: &Cert) -> bool {
    c.key_secbits.is_none_or(|b| b >= MIN_SECURITY_BITS)
}

/// `check_purpose_ssl_client`: EKU must allow clientAuth when present; issuers must be
/// CAs (`check_ssl_ca`); the client's own keyUsage must allow signing or key agreement
/// and its Netscape type, when present, SSL client use.
fn ssl_client_purpose(x: &Cert, require_ca: bool) -> bool {
    if x.eku_client_auth == Some(false) {
        return false;
    }
    if require_ca {
        return match x.check_ca() {
            0 => false,
            5 => x.ns_cert_type.is_some_and(|ns| ns.ssl_ca),
            _ => true,
        };
    }
    if x.key_usage
        .is_some_and(|ku| !(ku.digital_signature() || ku.key_agreement()))
    {
        return false;
    }
    if x.ns_cert_type.is_some_and(|ns| !ns.ssl_client) {
        return false;
    }
    true
}

fn crl_time_valid(crl: &Crl, now: i64) -> bool {
    crl.last_update <= now && crl.next_update.is_none_or(|n| now < n)
}

/// `crl_crldp_check`: is the certificate within the CRL's scope?
fn crl_in_scope(x: &Cert, crl: &Crl) -> bool {
    if let Some(idp) = &crl.idp {
        if idp.only_attr {
            return false;
        }
        if x.is_ca_flagged() {
            if idp.only_user {
                return false;
            }
        } else if idp.only_ca {
            return false;
        }
    }
    for dp in &x.crl_dps {
        let issuer_ok = match &dp.crl_issuer {
            None => true,
            Some(names) => names.iter().any(|n| n.matches(&crl.issuer)),
        };
        if issuer_ok {
            match &crl.idp {
                None => return true,
                Some(idp) if dp_names_match(dp.name.as_ref(), idp.name.as_ref()) => return true,
                Some(_) => {}
            }
        }
    }
    crl.idp.as_ref().is_none_or(|idp| idp.name.is_none())
}

/// `idp_check_dp`. A relative name compared with a full name is treated as different
/// (OpenSSL would expand it against the issuer's name; CRLs using that form are very rare).
fn dp_names_match(a: Option<&DpName>, b: Option<&DpName>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => true,
        (Some(DpName::Relative(x)), Some(DpName::Relative(y))) => x.is_some() && x == y,
        (Some(DpName::Full(x)), Some(DpName::Full(y))) => {
            x.iter().any(|g| y.iter().any(|h| g.same_as(h)))
        }
        _ => false,
    }
}

/// `NAME_CONSTRAINTS_check`: subject (as a directory name and its emailAddress attributes)
/// and subjectAltNames. Returns 0 or an `X509_V_ERR_*` code.
fn nc_check(x: &Cert, nc: &NameConstraints) -> i32 {
    if x.subject.entry_count > 0 {
        let r = nc_match(&GenName::Dir(x.subject.clone()), nc);
        if r != 0 {
            return r;
        }
        if x.subject.non_ia5_email {
            return codes::UNSUPPORTED_NAME_SYNTAX;
        }
        for email in &x.subject.emails {
            let r = nc_match(&GenName::Email(email.as_bytes().to_vec()), nc);
            if r != 0 {
                return r;
            }
        }
    }
    for name in &x.san {
        let r = nc_match(name, nc);
        if r != 0 {
            return r;
        }
    }
    0
}

/// `NAME_CONSTRAINTS_check_CN`: common names that look like host names are checked as
/// DNS names when the certificate has no DNS subjectAltName.
fn nc_check_cn(x: &Cert, nc: &NameConstraints) -> i32 {
    for cn in &x.subject.common_names {
        let trimmed = cn.trim_end_matches('\0');
        if trimmed.contains('\0') {
            return codes::UNSUPPORTED_NAME_SYNTAX;
        }
        if looks_like_dns_name(trimmed.as_bytes()) {
            let r = nc_match(&GenName::Dns(trimmed.as_bytes().to_vec()), nc);
            if r != 0 {
                return r;
            }
        }
    }
    0
}

/// `cn2dnsid`: letters, digits, `_`, inner `-`, and at least one well-placed inner `.`.
fn looks_like_dns_name(v: &[u8]) -> bool {
    let mut is_dns = false;
    for (i, &c) in v.iter().enumerate() {
        if c.is_ascii_alphanumeric() || c == b'_' {
            continue;
        }
        if i > 0 && i + 1 < v.len() {
            if c == b'-' {
                continue;
            }
            if c == b'.' && v[i + 1] != b'.' && v[i - 1] != b'-' && v[i + 1] != b'-' {
                is_dns = true;
                continue;
            }
        }
        return false;
    }
    is_dns
}

/// `nc_match`: permitted subtrees of the name's type must contain it (when there are
/// any), excluded subtrees must not.
fn nc_match(name: &GenName, nc: &NameConstraints) -> i32 {
    if nc.unparseable {
        return codes::SUBTREE_MINMAX;
    }
    let ty = name.type_id();
    let mut seen = false;
    let mut matched = false;
    for base in nc.permitted.iter().filter(|b| b.type_id() == ty) {
        if matched {
            continue;
        }
        seen = true;
        match nc_match_single(name, base) {
            0 => matched = true,
            codes::PERMITTED_VIOLATION => {}
            other => return other,
        }
    }
    if seen && !matched {
        return codes::PERMITTED_VIOLATION;
    }
    for base in nc.excluded.iter().filter(|b| b.type_id() == ty) {
        match nc_match_single(name, base) {
            0 => return codes::EXCLUDED_VIOLATION,
            codes::PERMITTED_VIOLATION => {}
            other => return other,
        }
    }
    0
}

fn nc_match_single(name: &GenName, base: &GenName) -> i32 {
    let ok = |b: bool| if b { 0 } else { codes::PERMITTED_VIOLATION };
    match (name, base) {
        (GenName::Dir(n), GenName::Dir(b)) => match (&n.canon, &b.canon) {
            (Some(n), Some(b)) => ok(n.starts_with(b)),
            _ => codes::PERMITTED_VIOLATION,
        },
        (GenName::Dns(n), GenName::Dns(b)) => ok(nc_dns(n, b)),
        (GenName::Email(n), GenName::Email(b)) => nc_email(n, b),
        (GenName::Uri(n), GenName::Uri(b)) => nc_uri(n, b),
        (GenName::Ip(n), GenName::Ip(b)) => nc_ip(n, b),
        _ => codes::UNSUPPORTED_CONSTRAINT_TYPE,
    }
}

fn nc_dns(dns: &[u8], base: &[u8]) -> bool {
    if base.is_empty() {
        return true;
    }
    if dns.len() < base.len() {
        return false;
    }
    let split = dns.len() - base.len();
    if split > 0 && base[0] != b'.' && dns[split - 1] != b'.' {
        return false;
    }
    dns[split..].eq_ignore_ascii_case(base)
}

fn nc_email(eml: &[u8], base: &[u8]) -> i32 {
    let Some(eml_at) = eml.iter().rposition(|&c| c == b'@') else {
        return codes::UNSUPPORTED_NAME_SYNTAX;
    };
    let base_at = base.iter().rposition(|&c| c == b'@');
    if base_at.is_none() && base.first() == Some(&b'.') {
        let matched =
            eml.len() > base.len() && eml[eml.len() - base.len()..].eq_ignore_ascii_case(base);
        return if matched {
            0
        } else {
            codes::PERMITTED_VIOLATION
        };
    }
    let mut base_host = base;
    if let Some(at) = base_at {
        if at != 0 {
            // The local part is compared case-sensitively.
            if at != eml_at {
                return codes::PERMITTED_VIOLATION;
            }
            if base[..at].contains(&0) || eml[..eml_at].contains(&0) {
                return codes::UNSUPPORTED_NAME_SYNTAX;
            }
            if base[..at] != eml[..eml_at] {
                return codes::PERMITTED_VIOLATION;
            }
        }
        base_host = &base[at + 1..];
    }
    let eml_host = &eml[eml_at + 1..];
    if eml_host.eq_ignore_ascii_case(base_host) {
        0
    } else {
        codes::PERMITTED_VIOLATION
    }
}

fn nc_uri(uri: &[u8], base: &[u8]) -> i32 {
    let Some(colon) = uri.iter().position(|&c| c == b':') else {
        return codes::UNSUPPORTED_NAME_SYNTAX;
    };
    if uri.len() < colon + 3 || uri[colon + 1] != b'/' || uri[colon + 2] != b'/' {
        return codes::UNSUPPORTED_NAME_SYNTAX;
    }
    let host_part = &uri[colon + 3..];
    let end = host_part
        .iter()
        .position(|&c| c == b':')
        .or_else(|| host_part.iter().position(|&c| c == b'/'))
        .unwrap_or(host_part.len());
    let host = &host_part[..end];
    if host.is_empty() {
        return codes::UNSUPPORTED_NAME_SYNTAX;
    }
    if base.first() == Some(&b'.') {
        let matched =
            host.len() > base.len() && host[host.len() - base.len()..].eq_ignore_ascii_case(base);
        return if matched {
            0
        } else {
            codes::PERMITTED_VIOLATION
        };
    }
    if host.eq_ignore_ascii_case(base) {
        0
    } else {
        codes::PERMITTED_VIOLATION
    }
}

fn nc_ip(ip: &[u8], base: &[u8]) -> i32 {
    if !(ip.len() == 4 || ip.len() == 16) || !(base.len() == 8 || base.len() == 32) {
        return codes::UNSUPPORTED_NAME_SYNTAX;
    }
    if ip.len() * 2 != base.len() {
        return codes::PERMITTED_VIOLATION;
    }
    let (addr, mask) = base.split_at(ip.len());
    let inside = ip
        .iter()
        .zip(addr)
        .zip(mask)
        .all(|((h, a), m)| h & m == a & m);
    if inside {
        0
    } else {
        codes::PERMITTED_VIOLATION
    }
}

#[cfg(test)]
mod tests;
