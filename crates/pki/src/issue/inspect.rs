//! What `certgate certs inspect` shows about one certificate: serial, validity, SANs, key,
//! constraints, usages and fingerprints, formatted the way `openssl x509 -text` and
//! `-fingerprint` print them so the two can be compared line by line.
//!
//! Distinguished names are not formatted here: the identity crate owns the RFC 2253
//! formatting (byte-identical to nginx/OpenSSL), and the CLI uses it.

use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::public_key::PublicKey;

use super::IssueError;

/// The facts `certs inspect` prints for one certificate.
#[derive(Clone, Debug)]
pub struct CertificateSummary {
    /// Upper-case hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// `DNS:…`, `IP Address:…`, `URI:…`, `email:…` as openssl prints them.
    pub subject_alt_names: Vec<String>,
    /// e.g. `ECDSA P-256 (256 bit)`, `RSA (2048 bit)`.
    pub key: String,
    /// `CA:TRUE, pathlen:0` / `CA:FALSE`, if the extension is present.
    pub basic_constraints: Option<String>,
    pub key_usage: Vec<String>,
    /// openssl's names, e.g. `TLS Web Client Authentication`.
    pub extended_key_usage: Vec<String>,
    /// Colon-separated upper-case hex, as `openssl x509 -fingerprint` prints it.
    pub sha1_fingerprint: String,
    pub sha256_fingerprint: String,
    pub self_signed: bool,
}

impl CertificateSummary {
    /// Whole days until notAfter from now (negative once expired).
    pub fn days_left(&self) -> i64 {
        days_left(self.not_after, OffsetDateTime::now_utc())
    }

    /// Whether now is inside notBefore..notAfter.
    pub fn is_valid_now(&self) -> bool {
        let now = OffsetDateTime::now_utc();
        self.not_before <= now && now <= self.not_after
    }
}

/// Summarises one DER certificate.
pub fn summarize(der: &[u8]) -> Result<CertificateSummary, IssueError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| IssueError::Invalid(format!("not a valid X.509 certificate: {e}")))?;
    let mut summary = CertificateSummary {
        serial: serial_hex(cert.raw_serial()),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        subject_alt_names: Vec::new(),
        key: describe_key(&cert),
        basic_constraints: None,
        key_usage: Vec::new(),
        extended_key_usage: Vec::new(),
        sha1_fingerprint: fingerprint(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der),
        sha256_fingerprint: fingerprint(&ring::digest::SHA256, der),
        self_signed: cert.subject().as_raw() == cert.issuer().as_raw()
            && cert.verify_signature(None).is_ok(),
    };
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                summary
                    .subject_alt_names
                    .extend(san.general_names.iter().map(general_name));
            }
            ParsedExtension::BasicConstraints(bc) => {
                summary.basic_constraints = Some(match (bc.ca, bc.path_len_constraint) {
                    (true, Some(n)) => format!("CA:TRUE, pathlen:{n}"),
                    (true, None) => "CA:TRUE".into(),
                    (false, _) => "CA:FALSE".into(),
                });
            }
            ParsedExtension::KeyUsage(ku) => {
                let names = [
                    (ku.digital_signature(), "Digital Signature"),
                    (ku.non_repudiation(), "Non Repudiation"),
                    (ku.key_encipherment(), "Key Encipherment"),
                    (ku.data_encipherment(), "Data Encipherment"),
                    (ku.key_agreement(), "Key Agreement"),
                    (ku.key_cert_sign(), "Certificate Sign"),
                    (ku.crl_sign(), "CRL Sign"),
                    (ku.encipher_only(), "Encipher Only"),
                    (ku.decipher_only(), "Decipher Only"),
                ];
                summary.key_usage = names
                    .iter()
                    .filter(|(set, _)| *set)
                    .map(|(_, n)| n.to_string())
                    .collect();
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                let names = [
                    (eku.any, "Any Extended Key Usage"),
                    (eku.server_auth, "TLS Web Server Authentication"),
                    (eku.client_auth, "TLS Web Client Authentication"),
                    (eku.code_signing, "Code Signing"),
                    (eku.email_protection, "E-mail Protection"),
                    (eku.time_stamping, "Time Stamping"),
                    (eku.ocsp_signing, "OCSP Signing"),
                ];
                summary.extended_key_usage = names
                    .iter()
                    .filter(|(set, _)| *set)
                    .map(|(_, n)| n.to_string())
                    .collect();
                summary
                    .extended_key_usage
                    .extend(eku.other.iter().map(|oid| oid.to_id_string()));
            }
            _ => {}
        }
    }
    Ok(summary)
}

/// Serial number bytes as `openssl x509 -serial` prints them: upper-case hex, without the
/// sign-padding zero byte DER adds to positive numbers whose top bit is set.
pub fn serial_hex(raw: &[u8]) -> String {
    let trimmed = match raw {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => raw,
    };
    trimmed.iter().map(|b| format!("{b:02X}")).collect()
}

fn fingerprint(algorithm: &'static ring::digest::Algorithm, der: &[u8]) -> String {
    ring::digest::digest(algorithm, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn general_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(n) => format!("DNS:{n}"),
        GeneralName::RFC822Name(n) => format!("email:{n}"),
        GeneralName::URI(n) => format!("URI:{n}"),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => format!(
                "IP Address:{}",
                std::net::Ipv4Addr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
            ),
            16 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(bytes);
                // openssl prints every group, upper case, without `::` compression.
                let groups: Vec<String> = octets
                    .chunks(2)
                    .map(|g| format!("{:X}", u16::from_be_bytes([g[0], g[1]])))
                    .collect();
                format!("IP Address:{}", groups.join(":"))
            }
            _ => "IP Address:<invalid>".into(),
        },
        other => format!("{other}"),
    }
}

fn describe_key(cert: &x509_parser::certificate::X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA ({} bit)", rsa.key_size()),
        Ok(PublicKey::EC(point)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| match oid.to_id_string().as_str() {
                    "1.2.840.10045.3.1.7" => "P-256".to_string(),
                    "1.3.132.0.34" => "P-384".to_string(),
                    "1.3.132.0.35" => "P-521".to_string(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| "unknown curve".into());
            format!("ECDSA {curve} ({} bit)", point.key_size())
        }
        _ => match spki.algorithm.algorithm.to_id_string().as_str() {
            "1.3.101.112" => "Ed25519 (256 bit)".into(),
            "1.3.101.113" => "Ed448 (456 bit)".into(),
            other => format!("unknown key type {other}"),
        },
    }
}

/// Whole days from `now` to `not_after` (negative once expired).
pub fn days_left(not_after: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (not_after - now).whole_days()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_print_like_openssl() {
        assert_eq!(serial_hex(&[0x00, 0x9f, 0x01]), "9F01");
        assert_eq!(serial_hex(&[0x40, 0x01]), "4001");
        assert_eq!(serial_hex(&[0x00]), "00");
    }
}
