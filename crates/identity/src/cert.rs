//! [`ClientCert`]: a client certificate chain parsed once per connection into
//! the ready-to-send strings behind every `$ssl_client_*` variable and the
//! fields the proxy's allow-rules match on.

use std::sync::OnceLock;

use sha1::{Digest, Sha1};
use sha2::Sha256;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::format;
use crate::name::{self, Entry};
use crate::IdentityError;

/// One subject attribute: OpenSSL's name for its type and its text.
#[derive(Debug, Clone)]
struct Attribute {
    /// `CN`, `O`, `OU`, `emailAddress`, … or the dotted OID when OpenSSL has no name.
    name: Box<str>,
    /// The value as UTF-8; `None` when it is not a decodable string.
    value: Option<Box<str>>,
}

/// A parsed client certificate (leaf plus the intermediates the client sent)
/// with every per-certificate value precomputed, so serving a request only
/// copies strings.
///
/// The bulky encodings (escaped PEM, RFC 9440 fields, XFCC) are built on first
/// use and then kept: most configurations need only some of them.
#[derive(Debug, Clone)]
pub struct ClientCert {
    leaf_der: Vec<u8>,
    intermediates_der: Vec<Vec<u8>>,
    subject: Vec<Attribute>,
    subject_dn: String,
    issuer_dn: String,
    subject_dn_legacy: String,
    issuer_dn_legacy: String,
    subject_cn: String,
    subject_o: String,
    subject_ou: String,
    serial: String,
    fingerprint_sha1: String,
    fingerprint_sha256: String,
    spki_sha256: String,
    not_before: String,
    not_after: String,
    not_after_unix: i64,
    san_dns: Vec<String>,
    san_uri: Vec<String>,
    san_email: Vec<String>,
    san_dns_joined: String,
    san_uri_joined: String,
    san_email_joined: String,
    escaped_pem: OnceLock<String>,
    rfc9440: OnceLock<String>,
    rfc9440_chain: OnceLock<String>,
    xfcc: OnceLock<String>,
}

impl ClientCert {
    /// Parses a chain as the client sent it: `chain[0]` is the leaf certificate's
    /// DER, the rest are intermediates (kept only for `Client-Cert-Chain`).
    ///
    /// Fails for an empty chain, a leaf that is not one complete DER certificate,
    /// an unreadable subjectAltName extension, or a subject or issuer OpenSSL
    /// would refuse to decode (nginx fails the handshake for those).
    pub fn from_chain<C: AsRef<[u8]>>(chain: &[C]) -> Result<ClientCert, IdentityError> {
        let leaf = chain.first().ok_or(IdentityError::EmptyChain)?.as_ref();
        let (rest, x509) =
            X509Certificate::from_der(leaf).map_err(|e| IdentityError::Parse(e.to_string()))?;
        // OpenSSL rejects a certificate message whose entry is longer than the
        // certificate it holds; hashing extra bytes would also skew fingerprints.
        if !rest.is_empty() {
            return Err(IdentityError::TrailingData(rest.len()));
        }

        let subject_entries = name::entries(x509.subject());
        let issuer_entries = name::entries(x509.issuer());
        let name_error = |field| {
            move |e: name::NameError| IdentityError::Name {
                field,
                reason: e.reason(),
            }
        };
        name::check(&subject_entries).map_err(name_error("subject"))?;
        name::check(&issuer_entries).map_err(name_error("issuer"))?;
        let subject_dn = name::rfc2253(&subject_entries).map_err(name_error("subject"))?;
        let issuer_dn = name::rfc2253(&issuer_entries).map_err(name_error("issuer"))?;
        let subject: Vec<Attribute> = subject_entries.iter().map(attribute).collect();

        let mut san_dns = Vec::new();
        let mut san_uri = Vec::new();
        let mut san_email = Vec::new();
        let san = x509
            .subject_alternative_name()
            .map_err(|e| IdentityError::SubjectAltName(e.to_string()))?;
        for general_name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
            match general_name {
                GeneralName::DNSName(s) => san_dns.push((*s).to_owned()),
                GeneralName::URI(s) => san_uri.push((*s).to_owned()),
                GeneralName::RFC822Name(s) => san_email.push((*s).to_owned()),
                _ => {}
            }
        }

        let validity = x509.validity();
        let not_after_unix = validity.not_after.timestamp();
        Ok(ClientCert {
            subject_cn: join_values(&subject, "CN"),
            subject_o: join_values(&subject, "O"),
            subject_ou: join_values(&subject, "OU"),
            subject_dn_legacy: name::oneline(&subject_entries),
            issuer_dn_legacy: name::oneline(&issuer_entries),
            subject,
            subject_dn,
            issuer_dn,
            serial: format::serial(x509.raw_serial()),
            fingerprint_sha1: format::hex_lower(&Sha1::digest(leaf)),
            fingerprint_sha256: format::hex_lower(&Sha256::digest(leaf)),
            spki_sha256: format::hex_lower(&Sha256::digest(x509.public_key().raw)),
            not_before: format::asn1_time(validity.not_before.timestamp()),
            not_after: format::asn1_time(not_after_unix),
            not_after_unix,
            san_dns_joined: san_dns.join(","),
            san_uri_joined: san_uri.join(","),
            san_email_joined: san_email.join(","),
            san_dns,
            san_uri,
            san_email,
            leaf_der: leaf.to_vec(),
            intermediates_der: chain[1..].iter().map(|c| c.as_ref().to_vec()).collect(),
            escaped_pem: OnceLock::new(),
            rfc9440: OnceLock::new(),
            rfc9440_chain: OnceLock::new(),
            xfcc: OnceLock::new(),
        })
    }

    /// The leaf certificate's DER encoding.
    pub fn leaf_der(&self) -> &[u8] {
        &self.leaf_der
    }

    /// The intermediates the client sent after its leaf, in order.
    pub fn intermediates_der(&self) -> &[Vec<u8>] {
        &self.intermediates_der
    }

    /// The first subject commonName, as UTF-8 text.
    pub fn subject_cn(&self) -> Option<&str> {
        self.subject
            .iter()
            .filter(|a| &*a.name == "CN")
            .find_map(|a| a.value.as_deref())
    }

    /// Every value of one subject attribute, in certificate order, as UTF-8 text.
    /// `short_name` is OpenSSL's short name (`CN`, `O`, `OU`, `C`, `emailAddress`,
    /// …, matched ASCII case-insensitively) or a dotted OID for attributes OpenSSL
    /// does not name. Values that are not decodable strings are left out.
    pub fn subject_values(&self, short_name: &str) -> Vec<&str> {
        self.subject
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case(short_name))
            .filter_map(|a| a.value.as_deref())
            .collect()
    }

    /// `$ssl_client_s_dn`: the subject in RFC 2253 form exactly as nginx prints it.
    pub fn subject_dn(&self) -> &str {
        &self.subject_dn
    }

    /// `$ssl_client_i_dn`: the issuer in RFC 2253 form exactly as nginx prints it.
    pub fn issuer_dn(&self) -> &str {
        &self.issuer_dn
    }

    /// `$ssl_client_s_dn_legacy`: the subject as `X509_NAME_oneline` prints it.
    pub fn subject_dn_legacy(&self) -> &str {
        &self.subject_dn_legacy
    }

    /// `$ssl_client_i_dn_legacy`: the issuer as `X509_NAME_oneline` prints it.
    pub fn issuer_dn_legacy(&self) -> &str {
        &self.issuer_dn_legacy
    }

    /// `$ssl_client_serial`: uppercase hex as OpenSSL's `i2a_ASN1_INTEGER` prints it.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// DNS names of the subjectAltName extension, in certificate order.
    pub fn san_dns(&self) -> &[String] {
        &self.san_dns
    }

    /// URIs of the subjectAltName extension (SPIFFE IDs among them).
    pub fn san_uri(&self) -> &[String] {
        &self.san_uri
    }

    /// E-mail addresses (rfc822Name) of the subjectAltName extension.
    pub fn san_email(&self) -> &[String] {
        &self.san_email
    }

    /// The first `spiffe://` URI SAN, if any.
    pub fn spiffe_id(&self) -> Option<&str> {
        self.san_uri
            .iter()
            .find(|u| {
                u.get(..9)
                    .is_some_and(|scheme| scheme.eq_ignore_ascii_case("spiffe://"))
            })
            .map(String::as_str)
    }

    /// `$ssl_client_fingerprint`: SHA-1 of the DER, lowercase hex without colons.
    pub fn fingerprint_sha1_hex(&self) -> &str {
        &self.fingerprint_sha1
    }

    /// SHA-256 of the leaf DER, lowercase hex without colons.
    pub fn fingerprint_sha256_hex(&self) -> &str {
        &self.fingerprint_sha256
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo, lowercase hex: a pin that
    /// survives re-issuing a certificate for the same key.
    pub fn spki_sha256_hex(&self) -> &str {
        &self.spki_sha256
    }

    /// `$ssl_client_v_start`, e.g. `Nov  2 09:05:01 2026 GMT`.
    pub fn not_before_text(&self) -> &str {
        &self.not_before
    }

    /// `$ssl_client_v_end`, e.g. `Nov  2 09:05:01 2027 GMT`.
    pub fn not_after_text(&self) -> &str {
        &self.not_after
    }

    /// notAfter as seconds since the Unix epoch.
    pub fn not_after_unix(&self) -> i64 {
        self.not_after_unix
    }

    /// `$ssl_client_v_remain` at `now_unix`.
    pub fn days_remaining(&self, now_unix: i64) -> String {
        format::days_remaining(self.not_after_unix, now_unix)
    }

    /// `$ssl_client_escaped_cert`: the leaf PEM, URI-component escaped as nginx does.
    pub fn escaped_pem(&self) -> &str {
        self.escaped_pem
            .get_or_init(|| format::escape_uri_component(&format::pem(&self.leaf_der)))
    }

    /// RFC 9440 `Client-Cert` value: the leaf DER as a structured-field byte sequence.
    pub fn rfc9440(&self) -> &str {
        self.rfc9440.get_or_init(|| {
            let mut out = String::with_capacity(self.leaf_der.len() * 4 / 3 + 6);
            format::push_sf_binary(&mut out, &self.leaf_der);
            out
        })
    }

    /// RFC 9440 `Client-Cert-Chain` value: the intermediates as an sf-list of byte
    /// sequences (`:…:, :…:`); empty when the client sent only its leaf.
    pub fn rfc9440_chain(&self) -> &str {
        self.rfc9440_chain.get_or_init(|| {
            let mut out = String::new();
            for (i, der) in self.intermediates_der.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                format::push_sf_binary(&mut out, der);
            }
            out
        })
    }

    /// Envoy's `x-forwarded-client-cert` element for this certificate, with the
    /// keys Envoy's SANITIZE_SET sends: `Hash=<sha256>;Subject="<s_dn>";URI=<uri>`
    /// (one `URI=` per URI SAN, an empty `URI=` when there is none) and one
    /// `DNS=<name>` per DNS SAN. `By` (the gateway's own URI SAN) is not known here.
    pub fn xfcc(&self) -> &str {
        self.xfcc.get_or_init(|| {
            let mut out = String::with_capacity(128 + self.subject_dn.len());
            out.push_str("Hash=");
            out.push_str(&self.fingerprint_sha256);
            // Envoy always quotes Subject and copies the RFC 2253 text, whose own
            // escaping already turns `"` into `\"`.
            out.push_str(";Subject=\"");
            out.push_str(&self.subject_dn);
            out.push('"');
            if self.san_uri.is_empty() {
                out.push_str(";URI=");
            }
            for uri in &self.san_uri {
                out.push_str(";URI=");
                format::push_xfcc_value(&mut out, uri);
            }
            for dns in &self.san_dns {
                out.push_str(";DNS=");
                format::push_xfcc_value(&mut out, dns);
            }
            out
        })
    }

    pub(crate) fn subject_cn_joined(&self) -> &str {
        &self.subject_cn
    }

    pub(crate) fn subject_o_joined(&self) -> &str {
        &self.subject_o
    }

    pub(crate) fn subject_ou_joined(&self) -> &str {
        &self.subject_ou
    }

    pub(crate) fn san_dns_joined(&self) -> &str {
        &self.san_dns_joined
    }

    pub(crate) fn san_uri_joined(&self) -> &str {
        &self.san_uri_joined
    }

    pub(crate) fn san_email_joined(&self) -> &str {
        &self.san_email_joined
    }
}

fn attribute(entry: &Entry<'_>) -> Attribute {
    Attribute {
        name: entry.type_name().into(),
        value: entry.text().map(String::into_boxed_str),
    }
}

/// All values of one attribute joined with `,` (for `$ssl_client_s_dn_cn` etc.).
fn join_values(subject: &[Attribute], short_name: &str) -> String {
    let mut out = String::new();
    for value in subject
        .iter()
        .filter(|a| &*a.name == short_name)
        .filter_map(|a| a.value.as_deref())
    {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(value);
    }
    out
}
