//! The template variables (nginx's `$ssl_client_*` family and certgate's
//! additions), the verification outcome, and [`Identity`], which yields each
//! variable's value for one connection.

use std::borrow::Cow;
use std::fmt;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;

use crate::cert::ClientCert;
use crate::tls::TlsInfo;
use crate::IdentityError;

/// Outcome of client-certificate verification, printed as nginx prints
/// `$ssl_client_verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyResult {
    /// The chain verified: `SUCCESS`.
    Success,
    /// A certificate was sent but did not verify: `FAILED:<reason>`, the reason
    /// in OpenSSL's wording (`certificate has expired`, …).
    Failed(String),
    /// No certificate was sent: `NONE`.
    None,
    /// No certificate on this connection, but a valid signed URL minted over mTLS by the
    /// certificate this identity carries: `SIGNED` (certgate's signed URLs).
    Signed,
}

impl fmt::Display for VerifyResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyResult::Success => f.write_str("SUCCESS"),
            VerifyResult::Failed(reason) => write!(f, "FAILED:{reason}"),
            VerifyResult::None => f.write_str("NONE"),
            VerifyResult::Signed => f.write_str("SIGNED"),
        }
    }
}

macro_rules! variables {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )*) => {
        /// A template variable. Names are nginx's where nginx has one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Variable {
            $( $(#[$doc])* $variant, )*
        }

        impl Variable {
            /// Every variable, in declaration order.
            pub const ALL: &'static [Variable] = &[$(Variable::$variant),*];

            /// The name without `$`, e.g. `ssl_client_s_dn`.
            pub fn name(self) -> &'static str {
                match self {
                    $( Variable::$variant => $name, )*
                }
            }
        }
    };
}

variables! {
    /// `SUCCESS`, `FAILED:<reason>` or `NONE`.
    SslClientVerify => "ssl_client_verify",
    /// Subject DN, RFC 2253, as nginx prints it.
    SslClientSDn => "ssl_client_s_dn",
    /// Issuer DN, RFC 2253, as nginx prints it.
    SslClientIDn => "ssl_client_i_dn",
    /// Subject DN in `X509_NAME_oneline` form (`/C=US/O=Ex/CN=x`).
    SslClientSDnLegacy => "ssl_client_s_dn_legacy",
    /// Issuer DN in `X509_NAME_oneline` form.
    SslClientIDnLegacy => "ssl_client_i_dn_legacy",
    /// Serial number, uppercase hex.
    SslClientSerial => "ssl_client_serial",
    /// SHA-1 fingerprint, lowercase hex.
    SslClientFingerprint => "ssl_client_fingerprint",
    /// notBefore, e.g. `Nov  2 09:05:01 2026 GMT`.
    SslClientVStart => "ssl_client_v_start",
    /// notAfter, same format.
    SslClientVEnd => "ssl_client_v_end",
    /// Whole days until notAfter.
    SslClientVRemain => "ssl_client_v_remain",
    /// Leaf PEM, URI-component escaped.
    SslClientEscapedCert => "ssl_client_escaped_cert",
    /// `TLSv1.3`, `TLSv1.2`.
    SslProtocol => "ssl_protocol",
    /// OpenSSL cipher name.
    SslCipher => "ssl_cipher",
    /// SNI host name.
    SslServerName => "ssl_server_name",
    /// Client IP address.
    RemoteAddr => "remote_addr",
    /// Client port.
    RemotePort => "remote_port",
    /// Subject commonName values (raw UTF-8), joined with `,`.
    SslClientSDnCn => "ssl_client_s_dn_cn",
    /// Subject organizationName values, joined with `,`.
    SslClientSDnO => "ssl_client_s_dn_o",
    /// Subject organizationalUnitName values, joined with `,`.
    SslClientSDnOu => "ssl_client_s_dn_ou",
    /// DNS SANs, joined with `,`.
    SslClientSanDns => "ssl_client_san_dns",
    /// URI SANs, joined with `,`.
    SslClientSanUri => "ssl_client_san_uri",
    /// E-mail SANs, joined with `,`.
    SslClientSanEmail => "ssl_client_san_email",
    /// The first `spiffe://` URI SAN.
    SslClientSpiffeId => "ssl_client_spiffe_id",
    /// SHA-256 fingerprint, lowercase hex.
    SslClientFingerprintSha256 => "ssl_client_fingerprint_sha256",
    /// Envoy XFCC element; only for a verified certificate.
    SslClientXfcc => "ssl_client_xfcc",
    /// RFC 9440 `Client-Cert` value; only for a verified certificate.
    SslClientCertRfc9440 => "ssl_client_cert_rfc9440",
    /// RFC 9440 `Client-Cert-Chain` value; only for a verified certificate.
    SslClientCertChainRfc9440 => "ssl_client_cert_chain_rfc9440",
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}", self.name())
    }
}

impl FromStr for Variable {
    type Err = IdentityError;

    /// Parses a name without `$`; like nginx, ASCII case does not matter.
    fn from_str(s: &str) -> Result<Variable, IdentityError> {
        Variable::ALL
            .iter()
            .copied()
            .find(|v| v.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| IdentityError::UnknownVariable(s.to_owned()))
    }
}

/// Everything known about the caller of one connection.
#[derive(Debug, Clone)]
pub struct Identity {
    pub verify: VerifyResult,
    /// The client certificate, when one was sent and could be parsed.
    pub cert: Option<Arc<ClientCert>>,
    pub tls: TlsInfo,
}

impl Identity {
    /// The value of one variable; `""` when it does not apply (no certificate,
    /// no SNI, …), as nginx gives an empty value.
    pub fn var(&self, v: Variable, now_unix: i64) -> Cow<'_, str> {
        if let Some(s) = self.var_str(v) {
            return Cow::Borrowed(s);
        }
        let mut out = String::new();
        self.write_var(v, now_unix, &mut out);
        Cow::Owned(out)
    }

    /// Appends the value of `v` to `out` without an intermediate allocation.
    pub(crate) fn write_var(&self, v: Variable, now_unix: i64, out: &mut String) {
        if let Some(s) = self.var_str(v) {
            out.push_str(s);
            return;
        }
        match v {
            // Only `FAILED:<reason>` is not a ready string.
            Variable::SslClientVerify => {
                let _ = write!(out, "{}", self.verify);
            }
            Variable::SslClientVRemain => {
                if let Some(cert) = &self.cert {
                    out.push_str(&cert.days_remaining(now_unix));
                }
            }
            Variable::RemoteAddr => {
                let _ = write!(out, "{}", self.tls.remote_addr);
            }
            Variable::RemotePort => {
                let _ = write!(out, "{}", self.tls.remote_port);
            }
            _ => {}
        }
    }

    /// Values that already exist as strings; `None` for the computed ones.
    fn var_str(&self, v: Variable) -> Option<&str> {
        let cert = self.cert.as_deref();
        let from_cert = |f: fn(&ClientCert) -> &str| Some(cert.map_or("", f));
        // A signed URL carries a certificate that was verified when the URL was minted.
        let verified = matches!(self.verify, VerifyResult::Success | VerifyResult::Signed);
        match v {
            Variable::SslClientVerify => match &self.verify {
                VerifyResult::Success => Some("SUCCESS"),
                VerifyResult::None => Some("NONE"),
                VerifyResult::Signed => Some("SIGNED"),
                VerifyResult::Failed(_) => None,
            },
            Variable::SslClientSDn => from_cert(ClientCert::subject_dn),
            Variable::SslClientIDn => from_cert(ClientCert::issuer_dn),
            Variable::SslClientSDnLegacy => from_cert(ClientCert::subject_dn_legacy),
            Variable::SslClientIDnLegacy => from_cert(ClientCert::issuer_dn_legacy),
            Variable::SslClientSerial => from_cert(ClientCert::serial),
            Variable::SslClientFingerprint => from_cert(ClientCert::fingerprint_sha1_hex),
            Variable::SslClientVStart => from_cert(ClientCert::not_before_text),
            Variable::SslClientVEnd => from_cert(ClientCert::not_after_text),
            Variable::SslClientVRemain => None,
            Variable::SslClientEscapedCert => from_cert(ClientCert::escaped_pem),
            Variable::SslProtocol => Some(&self.tls.protocol),
            Variable::SslCipher => Some(&self.tls.cipher),
            Variable::SslServerName => Some(self.tls.server_name.as_deref().unwrap_or("")),
            Variable::RemoteAddr | Variable::RemotePort => None,
            Variable::SslClientSDnCn => from_cert(ClientCert::subject_cn_joined),
            Variable::SslClientSDnO => from_cert(ClientCert::subject_o_joined),
            Variable::SslClientSDnOu => from_cert(ClientCert::subject_ou_joined),
            Variable::SslClientSanDns => from_cert(ClientCert::san_dns_joined),
            Variable::SslClientSanUri => from_cert(ClientCert::san_uri_joined),
            Variable::SslClientSanEmail => from_cert(ClientCert::san_email_joined),
            Variable::SslClientSpiffeId => Some(cert.and_then(ClientCert::spiffe_id).unwrap_or("")),
            Variable::SslClientFingerprintSha256 => from_cert(ClientCert::fingerprint_sha256_hex),
            // These formats carry no verification status: Envoy and RFC 9440
            // consumers read their presence as "the proxy authenticated this
            // certificate", so they exist only for a verified one.
            Variable::SslClientXfcc if verified => from_cert(ClientCert::xfcc),
            Variable::SslClientCertRfc9440 if verified => from_cert(ClientCert::rfc9440),
            Variable::SslClientCertChainRfc9440 if verified => from_cert(ClientCert::rfc9440_chain),
            Variable::SslClientXfcc
            | Variable::SslClientCertRfc9440
            | Variable::SslClientCertChainRfc9440 => Some(""),
        }
    }
}
