//! What a certificate is fit for, as `certgate check` (and every load of the
//! configuration) needs to know before a client ever connects: is a server certificate
//! usable by TLS clients for the configured names, and is a `client_auth.ca` entry a CA
//! that can issue client certificates.
//!
//! The CA test is the verifier's own (`X509_check_ca` as OpenSSL 3.0 has it), so a file
//! refused here is one every client chain through it would fail with.

use std::net::IpAddr;

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use crate::cert::Cert;
use crate::PkiError;

/// What a certificate in a `client_auth.ca` / `trusted_ca` file can be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnchorKind {
    /// A CA certificate (basicConstraints CA:TRUE, or what OpenSSL also takes for one:
    /// a self-signed version 1 root, a keyUsage with keyCertSign and no basicConstraints).
    Ca,
    /// A CA whose extendedKeyUsage excludes clientAuth: OpenSSL's `sslclient` purpose
    /// check refuses every client chain through it ("unsuitable certificate purpose").
    CaWithoutClientAuth,
    /// A self-signed end-entity certificate: trusted as itself only (a client presenting
    /// exactly this certificate), it issues nothing.
    SelfSignedLeaf,
    /// An end-entity certificate issued by someone else: it can neither issue client
    /// certificates nor be trusted as itself (no PARTIAL_CHAIN), so it verifies nothing.
    Leaf,
}

/// Classifies one trust-anchor certificate.
pub fn anchor_kind(der: &CertificateDer<'_>) -> Result<AnchorKind, PkiError> {
    let cert = Cert::parse(der).map_err(|reason| PkiError::Certificate { reason })?;
    Ok(match cert.check_ca() {
        0 if cert.self_signed => AnchorKind::SelfSignedLeaf,
        0 => AnchorKind::Leaf,
        _ if cert.eku_client_auth == Some(false) => AnchorKind::CaWithoutClientAuth,
        _ => AnchorKind::Ca,
    })
}

/// The facts about a server certificate that decide whether TLS clients accept it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerCertUsage {
    /// `Some(has serverAuth)` when an extendedKeyUsage extension is present; without one,
    /// every purpose is allowed. anyExtendedKeyUsage alone does not count (OpenSSL and
    /// webpki both refuse it for a TLS server).
    pub eku_server_auth: Option<bool>,
    /// DNS names of the subjectAltName extension, lower-cased.
    pub dns_names: Vec<String>,
    /// IP addresses of the subjectAltName extension.
    pub ip_addresses: Vec<IpAddr>,
}

impl ServerCertUsage {
    /// Reads the extended key usage and subjectAltName of `der`.
    pub fn of(der: &CertificateDer<'_>) -> Result<ServerCertUsage, PkiError> {
        let (_, x509) =
            x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Certificate {
                reason: e.to_string(),
            })?;
        let mut usage = ServerCertUsage::default();
        for ext in x509.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    usage.eku_server_auth = Some(eku.server_auth);
                }
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        match name {
                            GeneralName::DNSName(n) => usage.dns_names.push(n.to_ascii_lowercase()),
                            GeneralName::IPAddress(bytes) => {
                                if let Some(ip) = ip_from_bytes(bytes) {
                                    usage.ip_addresses.push(ip);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(usage)
    }

    /// Whether the certificate names anything a browser or rustls client can check
    /// (they ignore the subject CN).
    pub fn has_names(&self) -> bool {
        !self.dns_names.is_empty() || !self.ip_addresses.is_empty()
    }

    /// Whether a client that asked for `name` (a configured `server_names` entry: a host
    /// name, `*.suffix`, or an IP address) accepts this certificate, as browsers match
    /// names: subjectAltName only, a `*.` wildcard stands for exactly one label.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = name.parse::<IpAddr>() {
            return self.ip_addresses.contains(&ip);
        }
        self.dns_names.iter().any(|san| {
            let san = san.trim_end_matches('.');
            if san == name {
                return true;
            }
            // A configured `*.example.org` is served for names one label below it; a
            // certificate for `*.example.org` covers exactly those.
            match san.strip_prefix("*.") {
                Some(suffix) if !name.starts_with("*.") => name
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
                _ => false,
            }
        })
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(dns: &[&str], ips: &[&str]) -> ServerCertUsage {
        ServerCertUsage {
            eku_server_auth: None,
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            ip_addresses: ips.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn names_match_as_browsers_match_them() {
        let u = usage(&["localhost", "*.example.org"], &["127.0.0.1"]);
        assert!(u.matches("localhost"));
        assert!(u.matches("LocalHost."));
        assert!(u.matches("a.example.org"));
        assert!(u.matches("*.example.org"));
        assert!(!u.matches("example.org"));
        assert!(!u.matches("a.b.example.org"));
        assert!(u.matches("127.0.0.1"));
        assert!(!u.matches("::1"));
        assert!(!u.matches("other.test"));
        assert!(!usage(&["a.example.org"], &[]).matches("*.example.org"));
    }

    #[test]
    fn anchors_are_classified_as_the_verifier_sees_them() {
        use crate::testpki::{client_under, root};
        let ca = root("Root");
        assert_eq!(anchor_kind(&ca.der()).unwrap(), AnchorKind::Ca);
        let leaf = client_under("alice", &ca);
        assert_eq!(anchor_kind(&leaf.der()).unwrap(), AnchorKind::Leaf);
    }
}
