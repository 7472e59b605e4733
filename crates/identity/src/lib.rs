//! # certgate-identity
//!
//! Who is calling, as headers a backend can trust. Pure logic, no I/O:
//! client-certificate DER and connection facts in, nginx-compatible variables
//! and prepared HTTP headers out.
//!
//! ```text
//! chain DER ──ClientCert::from_chain──► ClientCert ─┐
//! TlsInfo + VerifyResult ───────────────────────────┴► Identity
//! Identity ──HeaderPlan::prepare (once per connection)──► PreparedHeaders
//! PreparedHeaders ──copied into every request──► upstream
//! ```
//!
//! Values are byte-identical to Debian's nginx 1.22 with OpenSSL 3.0 for the
//! same certificate: `$ssl_client_s_dn` is `X509_NAME_print_ex(XN_FLAG_RFC2253)`
//! with OpenSSL's escaping, `$ssl_client_serial` is `i2a_ASN1_INTEGER`, dates are
//! `ASN1_TIME_print`, and so on (each module says which OpenSSL or nginx function
//! it reproduces). certgate adds `$ssl_client_s_dn_cn`, `_o`, `_ou`, the SAN
//! lists, `$ssl_client_spiffe_id`, `$ssl_client_fingerprint_sha256`,
//! `$ssl_client_xfcc` (Envoy) and the RFC 9440 values.
//!
//! Modules:
//! - [`cert`]: [`ClientCert`], the per-certificate values;
//! - [`vars`]: [`Variable`], [`VerifyResult`], [`Identity`];
//! - [`template`]: [`Template`], `proxy_set_header`-style values;
//! - [`headers`]: [`Preset`], [`HeaderPlan`], [`PreparedHeaders`], anti-spoofing;
//! - [`tls`]: [`TlsInfo`] and rustls → OpenSSL protocol/cipher names;
//! - `name`, `format`, `oid`: the OpenSSL/nginx formatters behind the values.
//!
//! ```
//! use certgate_identity::{HeaderPlan, Preset, Template};
//! let plan = HeaderPlan::new(&[Preset::Nginx], &[("X-Client-CN".into(), "$ssl_client_s_dn_cn".into())])?;
//! assert!(plan.stripped_names().any(|n| n == "x-client-cn"));
//! assert!(HeaderPlan::is_stripped("X-SSL-Client-Anything"));
//! assert!(Template::parse("$no_such_variable").is_err());
//! # Ok::<(), certgate_identity::IdentityError>(())
//! ```

#![forbid(unsafe_code)]

pub mod cert;
mod format;
pub mod headers;
mod name;
mod oid;
mod oid_table;
pub mod template;
pub mod tls;
pub mod vars;

#[cfg(test)]
mod tests;

pub use cert::ClientCert;
pub use headers::{HeaderPlan, PreparedHeaders, Preset};
pub use template::Template;
pub use tls::{openssl_cipher_name, openssl_protocol_name, TlsInfo};
pub use vars::{Identity, Variable, VerifyResult};

/// Errors from parsing certificates and compiling header templates.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the client sent no certificate")]
    EmptyChain,
    #[error("client certificate is not a valid DER X.509 certificate: {0}")]
    Parse(String),
    #[error("client certificate is followed by {0} unexpected bytes")]
    TrailingData(usize),
    #[error("client certificate {field} name cannot be printed: {reason}")]
    Name {
        field: &'static str,
        reason: &'static str,
    },
    #[error("client certificate has an unreadable subjectAltName extension: {0}")]
    SubjectAltName(String),
    #[error("unknown variable \"${0}\"")]
    UnknownVariable(String),
    #[error(
        "invalid variable name at byte {position} of \"{template}\" (expected $name or ${{name}})"
    )]
    InvalidVariableName { template: String, position: usize },
    #[error("the closing bracket of the variable at byte {position} of \"{template}\" is missing")]
    UnclosedVariable { template: String, position: usize },
    #[error("invalid header name \"{0}\"")]
    InvalidHeaderName(String),
    #[error("header \"{0}\" frames the message or manages the connection and cannot be set")]
    ForbiddenHeader(String),
    #[error("header {header}: {source}")]
    Header {
        header: String,
        #[source]
        source: Box<IdentityError>,
    },
}
