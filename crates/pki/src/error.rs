//! The crate's error type for loading and preparing PKI material.
//!
//! Every variant that concerns a file carries its path, so that `certgate check` and reload
//! failures tell the operator which file to fix without further context.

use std::io;
use std::path::{Path, PathBuf};

/// Why a certificate, key or CRL could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The file could not be read at all (missing, permissions, a directory, …).
    // The io error is part of the message and deliberately not a `source`: with
    // `{:#}` chains it would otherwise be printed twice.
    #[error("cannot read {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },

    /// The file is empty, or holds no item of the expected kind.
    #[error("no {expected} found in {}{found}", path.display())]
    NotFound {
        path: PathBuf,
        /// What we looked for, e.g. "certificate".
        expected: &'static str,
        /// A hint about what the file holds instead (starts with "; "), or empty.
        found: String,
    },

    /// The PEM framing itself is broken (bad base64, unterminated block, …).
    #[error("{}: malformed PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },

    /// A certificate in the file is not a parseable X.509 certificate.
    #[error("{}: certificate #{index} is not a valid X.509 certificate: {reason}", path.display())]
    InvalidCertificate {
        path: PathBuf,
        /// 1-based position of the certificate in the file.
        index: usize,
        reason: String,
    },

    /// A CRL in the file is not a parseable X.509 CRL.
    #[error("{}: CRL #{index} is not a valid X.509 CRL: {reason}", path.display())]
    InvalidCrl {
        path: PathBuf,
        /// 1-based position of the CRL in the file.
        index: usize,
        reason: String,
    },

    /// The private key is encrypted; certgate (like nginx without `ssl_password_file`)
    /// needs an unencrypted key.
    #[error(
        "{}: the private key is encrypted; certgate needs an unencrypted key \
         (decrypt it with `openssl pkey -in {} -out <new file>`)",
        path.display(),
        path.display()
    )]
    EncryptedKey { path: PathBuf },

    /// A certificate handed over in memory (not from a file) could not be parsed.
    #[error("invalid certificate: {reason}")]
    Certificate { reason: String },

    /// A CRL handed over in memory (not from a file) could not be parsed.
    #[error("invalid CRL #{index}: {reason}")]
    Crl {
        /// 1-based position in the list handed to the verifier.
        index: usize,
        reason: String,
    },

    /// The private key is of a type or size the TLS stack cannot use.
    #[error("unsupported private key: {reason}")]
    UnsupportedKey { reason: String },

    /// A session ticket key file does not hold exactly 80 bytes (nginx's format).
    #[error("{}: expected 80 bytes, found {found}", path.display())]
    TicketKeyLength { path: PathBuf, found: usize },
    /// A signed-URL key file is not base64 text of at least 32 bytes.
    #[error(
        "{}: {reason}; expected at least 32 random bytes, base64 encoded \
         (`certgate certs url-key -o FILE` or `openssl rand -base64 32 > FILE`)",
        path.display()
    )]
    UrlKey { path: PathBuf, reason: String },
}

impl PkiError {
    pub(crate) fn read(path: &Path, source: io::Error) -> Self {
        PkiError::Read {
            path: path.to_path_buf(),
            error: source,
        }
    }
}
