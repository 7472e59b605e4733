//! certgate's PKI crate: loading certificates, keys and CRLs ([`load`]), verifying client
//! certificate chains exactly as nginx 1.22 on OpenSSL 3.0 does ([`verify`]), the rustls
//! client-certificate verifier the listeners use ([`client_verifier`]), the server-certificate
//! verifiers for TLS upstreams ([`upstream_verifier`]), and the certificate-issuing tooling
//! behind `certgate certs` ([`issue`], [`p12`]), and session tickets sealed with keys shared
//! between processes ([`tickets`]), and the HMAC keys of signed URLs ([`url_keys`]).
//!
//! Only [`load`] (and the issuing tooling) touches the file system; verification works on
//! DER bytes handed to it, so it is pure and can be swapped atomically on reload.

#![forbid(unsafe_code)]

mod cert;
pub mod client_verifier;
mod der;
mod error;
pub mod issue;
pub mod load;
pub mod p12;
#[cfg(test)]
mod parity_tests;
mod sig;
#[cfg(test)]
mod testpki;
pub mod tickets;
pub mod upstream_verifier;
pub mod url_keys;
pub mod usage;
pub mod verify;

pub use client_verifier::{ClientAuthMode, ClientAuthVerifier};
pub use error::PkiError;
pub use load::{
    key_matches_certificate, load_certs, load_crls, load_private_key, parse_certs, parse_crls,
    parse_private_key, summarize, CertSummary,
};
pub use tickets::{load_ticket_key, TicketKeys, TicketKeysError};
pub use upstream_verifier::{
    ChainTooLong, NoUpstreamVerification, UpstreamVerifier, UpstreamVerifierError,
};
pub use url_keys::{load_url_key, UrlKeys, UrlKeysError};
pub use usage::{anchor_kind, AnchorKind, ServerCertUsage};
pub use verify::{ChainVerifier, Verification, VerifiedChain, VerifyFailure};
