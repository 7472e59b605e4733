//! Issuing certificates for `certgate certs init|issue` and for `certgate demo`: a root CA,
//! intermediates, server and client certificates with the extensions each kind needs
//! (basicConstraints, keyUsage, extendedKeyUsage, SKI/AKI, SANs) and random serials.
//!
//! This module owns the "openssl recipe" replacement; it does not verify chains (that is
//! [`crate::ChainVerifier`]'s job, shared with the gateway). Certificates are made with
//! rcgen; private keys are handled in [`keys`] (generation, every openssl format, PKCS#8
//! encryption) and files are written all-or-nothing by [`files`].

pub mod files;
pub mod inspect;
pub mod keys;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

pub use files::{read_certificates, write_file_set, OutputFile};
pub use keys::{read_private_key, KeyAlgorithm};

/// Errors of the issuing tooling. Each names the file or setting at fault and, where
/// there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        /// Shown in the message, so deliberately not an error `source` (which would
        /// print it twice in a `{:#}` chain).
        error: std::io::Error,
    },
    #[error("cannot write {}: {error}", path.display())]
    Write {
        path: PathBuf,
        /// Shown in the message, so deliberately not an error `source` (which would
        /// print it twice in a `{:#}` chain).
        error: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    BadInput { path: PathBuf, reason: String },
    #[error("{} is an encrypted private key and no passphrase was given", path.display())]
    KeyEncrypted { path: PathBuf },
    #[error("wrong passphrase for {} (or the file is damaged)", path.display())]
    WrongPassphrase { path: PathBuf },
    #[error("the private key {} does not match the certificate {}", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("{} cannot sign certificates: {reason}", path.display())]
    NotCa { path: PathBuf, reason: String },
    #[error("{} already exist{}; nothing was written (use --force to replace)", list_paths(paths), if paths.len() == 1 { "s" } else { "" })]
    Exists { paths: Vec<PathBuf> },
    #[error("{0}")]
    Invalid(String),
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("key generation failed: {0}")]
    KeyGeneration(String),
    #[error("{0}")]
    Crypto(String),
    /// Loading shared with the gateway (`certgate_pki::load_certs`, key matching).
    #[error(transparent)]
    Pki(#[from] crate::PkiError),
}

impl IssueError {
    pub(crate) fn bad_input(path: &Path, reason: impl Into<String>) -> Self {
        IssueError::BadInput {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What kind of certificate to issue; decides basicConstraints, keyUsage and EKU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertKind {
    /// TLS client (EKU clientAuth, CA:FALSE, digitalSignature): what the gateway verifies.
    Client,
    /// TLS server (EKU serverAuth, CA:FALSE, digitalSignature (+keyEncipherment for RSA)).
    Server,
    /// A CA below the root (CA:TRUE, pathlen, keyCertSign + cRLSign). `path_len` is how
    /// many further intermediates may sit below it: 0 means it signs only leaves.
    Intermediate { path_len: u8 },
}

/// One certificate to issue.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    pub kind: CertKind,
    pub common_name: String,
    pub organization: Option<String>,
    pub organizational_unit: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// URI SANs, e.g. a SPIFFE ID `spiffe://example.org/ns/prod/sa/api`.
    pub uris: Vec<String>,
    pub emails: Vec<String>,
    pub days: u32,
    pub key: KeyAlgorithm,
}

impl IssueRequest {
    pub fn new(kind: CertKind, common_name: impl Into<String>) -> Self {
        IssueRequest {
            kind,
            common_name: common_name.into(),
            organization: None,
            organizational_unit: None,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: Vec::new(),
            emails: Vec::new(),
            days: match kind {
                CertKind::Intermediate { .. } => 1825,
                _ => 365,
            },
            key: KeyAlgorithm::EcdsaP256,
        }
    }
}

/// A freshly issued certificate and its private key.
pub struct Issued {
    /// The new certificate.
    pub certificate: CertificateDer<'static>,
    /// The new certificate followed by the issuing intermediates (never the root): what a
    /// server or client presents, and what `certgate` wants in `tls.cert`.
    pub chain: Vec<CertificateDer<'static>>,
    /// Serial number, upper-case hex as `openssl x509 -serial` prints it.
    pub serial: String,
    pub not_after: OffsetDateTime,
    /// Adjustments made to the request (e.g. validity shortened to the CA's).
    pub warnings: Vec<String>,
    key_pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// The chain as PEM, leaf first.
    pub fn chain_pem(&self) -> String {
        files::certificates_pem(&self.chain)
    }

    /// The new certificate alone as PEM.
    pub fn certificate_pem(&self) -> String {
        files::certificates_pem(std::slice::from_ref(&self.certificate))
    }

    /// The private key, PKCS#8 DER.
    pub fn key_pkcs8(&self) -> &[u8] {
        &self.key_pkcs8
    }

    /// The private key as an unencrypted `PRIVATE KEY` PEM block.
    pub fn key_pem(&self) -> Zeroizing<String> {
        keys::pkcs8_pem(&self.key_pkcs8)
    }

    /// The private key as `ENCRYPTED PRIVATE KEY` (PBES2, AES-256-CBC) when a passphrase
    /// is given, else unencrypted.
    pub fn key_pem_with(&self, passphrase: Option<&str>) -> Result<Zeroizing<String>, IssueError> {
        match passphrase {
            Some(p) => Ok(Zeroizing::new(keys::encrypt_pkcs8_pem(&self.key_pkcs8, p)?)),
            None => Ok(self.key_pem()),
        }
    }

    /// Writes `cert_path` (the chain) and `key_path` (0600), both or neither.
    pub fn write(
        &self,
        cert_path: &Path,
        key_path: &Path,
        key_passphrase: Option<&str>,
        force: bool,
    ) -> Result<(), IssueError> {
        let key = self.key_pem_with(key_passphrase)?;
        write_file_set(
            &[
                OutputFile::public(cert_path, self.chain_pem()),
                OutputFile::secret(key_path, key.as_bytes().to_vec()),
            ],
            force,
        )
    }
}

/// A CA that signs: its certificate (and the intermediates above it), its key.
pub struct Authority {
    certificate: CertificateDer<'static>,
    /// Intermediates to append to what this CA issues: the CA file's certificates
    /// without self-signed roots.
    chain_tail: Vec<CertificateDer<'static>>,
    /// rcgen's view of the CA: only its subject, key identifier and key usages are used.
    issuer: rcgen::Certificate,
    key: rcgen::KeyPair,
    /// basicConstraints pathlen; `None` is unconstrained.
    path_len: Option<u32>,
    not_after: OffsetDateTime,
    subject_raw: Vec<u8>,
    spki_raw: Vec<u8>,
}

impl Authority {
    /// Loads a CA from its certificate file (PEM, the signing certificate first; any
    /// further certificates are its chain) and its key (any openssl format, encrypted
    /// PKCS#8 with `passphrase`).
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        passphrase: Option<&str>,
    ) -> Result<Self, IssueError> {
        let chain = read_certificates(cert_path)?;
        let key = keys::read_private_key(key_path, passphrase)?;
        Self::from_parts(chain, &key, cert_path, key_path)
    }

    /// Builds a CA from certificates (signing certificate first) and a PKCS#8 key; the
    /// paths only name the inputs in errors.
    pub fn from_parts(
        chain: Vec<CertificateDer<'static>>,
        key_pkcs8: &[u8],
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Self, IssueError> {
        let Some(certificate) = chain.first().cloned() else {
            return Err(IssueError::bad_input(cert_path, "no certificate found"));
        };
        let (_, x509) = x509_parser::parse_x509_certificate(&certificate).map_err(|e| {
            IssueError::bad_input(cert_path, format!("not a valid certificate: {e}"))
        })?;
        let not_ca = |reason: &str| IssueError::NotCa {
            path: cert_path.to_path_buf(),
            reason: reason.into(),
        };

        let constraints = x509
            .basic_constraints()
            .map_err(|_| not_ca("its basicConstraints extension is malformed"))?
            .map(|ext| ext.value.clone());
        let path_len = match constraints {
            Some(bc) if bc.ca => bc.path_len_constraint,
            _ => {
                return Err(not_ca(
                    "it is not a CA certificate (basicConstraints CA:TRUE is missing)",
                ))
            }
        };
        if let Ok(Some(usage)) = x509.key_usage() {
            if !usage.value.key_cert_sign() {
                return Err(not_ca("its keyUsage does not include keyCertSign"));
            }
        }
        let not_after = x509.validity().not_after.to_datetime();
        if not_after <= OffsetDateTime::now_utc() {
            return Err(not_ca(&format!("it expired on {}", format_time(not_after))));
        }
        for rdn in x509.subject().iter() {
            if rdn.iter().count() != 1 {
                return Err(IssueError::bad_input(
                    cert_path,
                    "the CA subject has a multi-valued RDN, which certgate cannot reproduce",
                ));
            }
        }

        let key = keys::key_pair(key_pkcs8)
            .map_err(|e| IssueError::bad_input(key_path, e.to_string()))?;
        // The gateway's own check (`certgate check` uses it too).
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8));
        let matches = crate::key_matches_certificate(&certificate, &key_der)
            .map_err(|e| IssueError::bad_input(key_path, e.to_string()))?;
        if !matches {
            return Err(IssueError::KeyMismatch {
                key: key_path.to_path_buf(),
                cert: cert_path.to_path_buf(),
            });
        }

        let parsed = CertificateParams::from_ca_cert_der(&certificate).map_err(|e| {
            IssueError::bad_input(cert_path, format!("cannot use this CA certificate: {e}"))
        })?;
        let mut minimal = CertificateParams::default();
        minimal.distinguished_name = parsed.distinguished_name;
        minimal.key_identifier_method = parsed.key_identifier_method;
        minimal.key_usages = parsed.key_usages;
        minimal.is_ca = parsed.is_ca;
        let issuer = minimal.self_signed(&key)?;

        let chain_tail = chain
            .into_iter()
            .skip(1)
            .filter(|c| !is_self_signed(c))
            .collect();
        Ok(Authority {
            subject_raw: x509.subject().as_raw().to_vec(),
            spki_raw: x509.public_key().raw.to_vec(),
            certificate,
            chain_tail,
            issuer,
            key,
            path_len,
            not_after,
        })
    }

    /// Creates a self-signed root CA valid for `days`, with a new key of `algorithm`.
    pub fn new_root(
        common_name: &str,
        organization: Option<&str>,
        days: u32,
        algorithm: KeyAlgorithm,
    ) -> Result<(Authority, Issued), IssueError> {
        check_days(days)?;
        check_text("common name", common_name)?;
        let key_pkcs8 = keys::generate(algorithm)?;
        let key = keys::key_pair(&key_pkcs8)?;
        let now = now();
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(common_name, organization, None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(i64::from(days));
        let not_after = params.not_after;
        let cert = params.self_signed(&key)?;
        let der = cert.der().clone();
        let issued = Issued {
            serial: serial_hex(&der),
            certificate: der.clone(),
            chain: vec![der.clone()],
            not_after,
            warnings: Vec::new(),
            key_pkcs8,
        };
        let authority = Authority::from_parts(
            vec![der],
            issued.key_pkcs8(),
            Path::new("<new CA>"),
            Path::new("<new CA key>"),
        )?;
        Ok((authority, issued))
    }

    /// The CA's own certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// Issues one certificate signed by this CA, with a new key.
    pub fn issue(&self, request: &IssueRequest) -> Result<Issued, IssueError> {
        check_days(request.days)?;
        let sans = subject_alt_names(request)?;
        if let CertKind::Intermediate { path_len } = request.kind {
            match self.path_len {
                Some(0) => {
                    return Err(IssueError::Invalid(
                        "this CA has pathlen:0: it may sign only leaf certificates, not intermediates".into(),
                    ))
                }
                Some(limit) if u32::from(path_len) >= limit => {
                    return Err(IssueError::Invalid(format!(
                        "this CA has pathlen:{limit}: an intermediate below it may have at most pathlen:{}",
                        limit - 1
                    )))
                }
                _ => {}
            }
        }

        let mut warnings = Vec::new();
        let now = now();
        let mut not_after = now + Duration::days(i64::from(request.days));
        if not_after > self.not_after {
            not_after = self.not_after;
            warnings.push(format!(
                "validity shortened to the CA's: the certificate expires on {}",
                format_time(not_after)
            ));
        }

        let key_pkcs8 = keys::generate(request.key)?;
        let key = keys::key_pair(&key_pkcs8)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(
            &request.common_name,
            request.organization.as_deref(),
            request.organizational_unit.as_deref(),
        );
        params.subject_alt_names = sans;
        params.serial_number = Some(random_serial()?);
        params.not_before = now - Duration::minutes(5);
        params.not_after = not_after;
        params.use_authority_key_identifier_extension = true;
        match request.kind {
            CertKind::Client => {
                params.is_ca = IsCa::ExplicitNoCa;
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
            CertKind::Server => {
                params.is_ca = IsCa::ExplicitNoCa;
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                if request.key.is_rsa() {
                    // TLS 1.2 RSA key exchange, still offered by some old clients.
                    params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
                }
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }
            CertKind::Intermediate { path_len } => {
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
                params.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
            }
        }
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        let der = cert.der().clone();
        self.check_issued(&der)?;

        let mut chain = vec![der.clone()];
        if !is_self_signed(&self.certificate) {
            chain.push(self.certificate.clone());
        }
        chain.extend(self.chain_tail.iter().cloned());
        Ok(Issued {
            serial: serial_hex(&der),
            certificate: der,
            chain,
            not_after,
            warnings,
            key_pkcs8,
        })
    }

    /// The new certificate must name this CA byte for byte (rustls-webpki compares issuer
    /// and subject as bytes) and carry a signature this CA's public key verifies.
    fn check_issued(&self, der: &[u8]) -> Result<(), IssueError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IssueError::Crypto(format!("the new certificate does not parse: {e}")))?;
        if cert.issuer().as_raw() != self.subject_raw.as_slice() {
            return Err(IssueError::Crypto(
                "cannot reproduce the CA's subject byte for byte; the certificate would not chain"
                    .into(),
            ));
        }
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&self.spki_raw)
            .map_err(|e| IssueError::Crypto(format!("CA public key: {e}")))?;
        cert.verify_signature(Some(&spki)).map_err(|e| {
            IssueError::Crypto(format!(
                "the new certificate's signature does not verify: {e}"
            ))
        })
    }
}

fn is_self_signed(der: &[u8]) -> bool {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => {
            cert.subject().as_raw() == cert.issuer().as_raw() && cert.verify_signature(None).is_ok()
        }
        Err(_) => false,
    }
}

fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// `2026-05-01 12:00:00 UTC`.
pub fn format_time(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn check_days(days: u32) -> Result<(), IssueError> {
    if days == 0 || days > 36_500 {
        return Err(IssueError::Invalid(format!(
            "validity must be 1 to 36500 days, not {days}"
        )));
    }
    Ok(())
}

fn check_text(what: &str, value: &str) -> Result<(), IssueError> {
    if value.trim().is_empty() {
        return Err(IssueError::Invalid(format!("the {what} is empty")));
    }
    // RFC 5280 upper bounds (ub-common-name, ub-organization-name, …) are all 64.
    if value.chars().count() > 64 {
        return Err(IssueError::Invalid(format!(
            "the {what} is longer than 64 characters: {value:?}"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(IssueError::Invalid(format!(
            "the {what} contains control characters: {value:?}"
        )));
    }
    Ok(())
}

fn distinguished_name(
    common_name: &str,
    organization: Option<&str>,
    unit: Option<&str>,
) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    if let Some(ou) = unit {
        dn.push(DnType::OrganizationalUnitName, ou);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn subject_alt_names(request: &IssueRequest) -> Result<Vec<SanType>, IssueError> {
    check_text("common name (--cn)", &request.common_name)?;
    if let Some(o) = &request.organization {
        check_text("organization (--o)", o)?;
    }
    if let Some(ou) = &request.organizational_unit {
        check_text("organizational unit (--ou)", ou)?;
    }
    let mut sans = Vec::new();
    let mut dns_names = request.dns_names.clone();
    if request.kind == CertKind::Server && dns_names.is_empty() && request.ip_addresses.is_empty() {
        // Clients match the SAN, never the CN: a server certificate needs one.
        if is_dns_name(&request.common_name) {
            dns_names.push(request.common_name.clone());
        } else {
            return Err(IssueError::Invalid(format!(
                "a server certificate needs a DNS name or IP address (--dns/--ip); the common name {:?} is not a DNS name",
                request.common_name
            )));
        }
    }
    for name in &dns_names {
        if !is_dns_name(name) {
            return Err(IssueError::Invalid(format!(
                "not a valid DNS name: {name:?}"
            )));
        }
        sans.push(SanType::DnsName(ia5(name)?));
    }
    sans.extend(
        request
            .ip_addresses
            .iter()
            .map(|ip| SanType::IpAddress(*ip)),
    );
    for uri in &request.uris {
        if !is_uri(uri) {
            return Err(IssueError::Invalid(format!(
                "not a valid URI: {uri:?} (expected scheme:…, e.g. spiffe://example.org/service)"
            )));
        }
        sans.push(SanType::URI(ia5(uri)?));
    }
    for email in &request.emails {
        let valid = email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && is_dns_name(domain) && !email.chars().any(|c| c.is_whitespace())
        });
        if !valid {
            return Err(IssueError::Invalid(format!(
                "not a valid e-mail address: {email:?}"
            )));
        }
        sans.push(SanType::Rfc822Name(ia5(email)?));
    }
    Ok(sans)
}

fn ia5(value: &str) -> Result<rcgen::Ia5String, IssueError> {
    rcgen::Ia5String::try_from(value)
        .map_err(|_| IssueError::Invalid(format!("not ASCII: {value:?}")))
}

/// A host name as it may appear in a dNSName SAN: ASCII labels of letters, digits and
/// hyphens, optionally a leading `*.` wildcard label.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn is_uri(uri: &str) -> bool {
    match uri.split_once(':') {
        Some((scheme, rest)) => {
            !rest.is_empty()
                && scheme
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && uri.chars().all(|c| c.is_ascii_graphic())
        }
        None => false,
    }
}

fn random_serial() -> Result<SerialNumber, IssueError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| IssueError::Crypto("the system random generator failed".into()))?;
    // Positive (top bit clear) and without a leading zero byte, so it stays 16 bytes
    // (128 bits, 127 of them random: well above CA/B Forum's 64).
    bytes[0] &= 0x7f;
    bytes[0] |= 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn serial_hex(der: &[u8]) -> String {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => inspect::serial_hex(cert.raw_serial()),
        Err(_) => String::new(),
    }
}

/// Settings for [`dev_pki`].
#[derive(Clone, Debug)]
pub struct DevPkiOptions {
    pub key: KeyAlgorithm,
    /// Validity of the CA.
    pub ca_days: u32,
    /// Validity of the server and client certificates.
    pub days: u32,
    /// Server SANs beyond `localhost`, `127.0.0.1` and `::1`.
    pub extra_dns: Vec<String>,
    pub extra_ips: Vec<IpAddr>,
    pub client_cn: String,
    pub organization: String,
    /// Encrypt `ca.key` with this passphrase (PKCS#8 PBES2, AES-256-CBC).
    pub ca_key_passphrase: Option<String>,
}

impl Default for DevPkiOptions {
    fn default() -> Self {
        DevPkiOptions {
            key: KeyAlgorithm::EcdsaP256,
            ca_days: 3650,
            days: 365,
            extra_dns: Vec::new(),
            extra_ips: Vec::new(),
            client_cn: "certgate-client".into(),
            organization: "certgate dev".into(),
            ca_key_passphrase: None,
        }
    }
}

/// A development PKI, all PEM: a root CA, a server certificate for localhost and one
/// client certificate, both signed by the CA.
pub struct DevPki {
    pub ca_cert_pem: String,
    /// Encrypted when [`DevPkiOptions::ca_key_passphrase`] was set.
    pub ca_key_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl Drop for DevPki {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.ca_key_pem.zeroize();
        self.server_key_pem.zeroize();
        self.client_key_pem.zeroize();
    }
}

/// Makes a development PKI in memory (`certgate certs init`, `certgate demo`).
pub fn dev_pki(options: &DevPkiOptions) -> Result<DevPki, IssueError> {
    let org = Some(options.organization.as_str());
    let (ca, ca_issued) = Authority::new_root(
        &format!("{} CA", options.organization),
        org,
        options.ca_days,
        options.key,
    )?;

    let mut server = IssueRequest::new(CertKind::Server, "localhost");
    server.organization = Some(options.organization.clone());
    server.dns_names = vec!["localhost".into()];
    server.dns_names.extend(options.extra_dns.iter().cloned());
    server.ip_addresses = vec![
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ];
    server
        .ip_addresses
        .extend(options.extra_ips.iter().copied());
    server.days = options.days;
    server.key = options.key;
    let server = ca.issue(&server)?;

    let mut client = IssueRequest::new(CertKind::Client, options.client_cn.clone());
    client.organization = Some(options.organization.clone());
    client.days = options.days;
    client.key = options.key;
    let client = ca.issue(&client)?;

    Ok(DevPki {
        ca_cert_pem: ca_issued.certificate_pem(),
        ca_key_pem: ca_issued
            .key_pem_with(options.ca_key_passphrase.as_deref())?
            .to_string(),
        server_cert_pem: server.chain_pem(),
        server_key_pem: server.key_pem().to_string(),
        client_cert_pem: client.chain_pem(),
        client_key_pem: client.key_pem().to_string(),
    })
}

/// The file names [`write_dev_pki`] writes in its directory, in order.
pub const DEV_PKI_FILES: [&str; 6] = [
    "ca.crt",
    "ca.key",
    "server.crt",
    "server.key",
    "client.crt",
    "client.key",
];

/// Writes `ca.crt`, `ca.key`, `server.crt`, `server.key`, `client.crt`, `client.key` into
/// `dir` (created if missing), keys 0600, all or nothing. Without `force`, refuses if any
/// of them exists and leaves the directory untouched. Returns the paths written.
pub fn write_dev_pki(pki: &DevPki, dir: &Path, force: bool) -> Result<Vec<PathBuf>, IssueError> {
    let files = [
        OutputFile::public(dir.join(DEV_PKI_FILES[0]), pki.ca_cert_pem.as_bytes()),
        OutputFile::secret(dir.join(DEV_PKI_FILES[1]), pki.ca_key_pem.as_bytes()),
        OutputFile::public(dir.join(DEV_PKI_FILES[2]), pki.server_cert_pem.as_bytes()),
        OutputFile::secret(dir.join(DEV_PKI_FILES[3]), pki.server_key_pem.as_bytes()),
        OutputFile::public(dir.join(DEV_PKI_FILES[4]), pki.client_cert_pem.as_bytes()),
        OutputFile::secret(dir.join(DEV_PKI_FILES[5]), pki.client_key_pem.as_bytes()),
    ];
    write_file_set(&files, force)?;
    Ok(files.into_iter().map(|f| f.path).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn parse(der: &[u8]) -> X509Certificate<'_> {
        x509_parser::parse_x509_certificate(der).unwrap().1
    }

    #[test]
    fn dev_pki_has_the_right_extensions() {
        let pki = dev_pki(&DevPkiOptions::default()).unwrap();
        let ca = ::pem::parse(&pki.ca_cert_pem).unwrap();
        let ca = parse(ca.contents());
        let bc = ca.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert!(ca.key_usage().unwrap().unwrap().value.key_cert_sign());

        let server = ::pem::parse_many(&pki.server_cert_pem).unwrap();
        assert_eq!(server.len(), 1, "a root-signed leaf is served alone");
        let server = parse(server[0].contents());
        assert!(
            server
                .extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .server_auth
        );
        assert!(!server.basic_constraints().unwrap().unwrap().value.ca);
        let san = server.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| format!("{n}"))
            .collect();
        assert!(names.iter().any(|n| n.contains("localhost")), "{names:?}");
        assert_eq!(san.value.general_names.len(), 3, "{names:?}");
        assert_eq!(server.issuer().as_raw(), ca.subject().as_raw());
        let aki = server
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.clone(),
                _ => None,
            })
            .unwrap();
        let ski = ca
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(aki.0, ski.0);

        let client = ::pem::parse(&pki.client_cert_pem).unwrap();
        let client = parse(client.contents());
        assert!(
            client
                .extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .client_auth
        );
        assert_ne!(client.raw_serial(), server.raw_serial());
        assert_eq!(client.raw_serial().len(), 16);
    }

    #[test]
    fn intermediates_chain_and_respect_pathlen() {
        let (root, _) = Authority::new_root("Root", None, 30, KeyAlgorithm::EcdsaP256).unwrap();
        let int1 = root
            .issue(&IssueRequest::new(
                CertKind::Intermediate { path_len: 1 },
                "Int 1",
            ))
            .unwrap();
        let int1_ca = Authority::from_parts(
            int1.chain.clone(),
            int1.key_pkcs8(),
            Path::new("i1"),
            Path::new("k1"),
        )
        .unwrap();
        let int2 = int1_ca
            .issue(&IssueRequest::new(
                CertKind::Intermediate { path_len: 0 },
                "Int 2",
            ))
            .unwrap();
        assert_eq!(int2.chain.len(), 2);
        let int2_ca = Authority::from_parts(
            int2.chain.clone(),
            int2.key_pkcs8(),
            Path::new("i2"),
            Path::new("k2"),
        )
        .unwrap();
        let leaf = int2_ca
            .issue(&IssueRequest::new(CertKind::Client, "alice"))
            .unwrap();
        assert_eq!(leaf.chain.len(), 3, "leaf, int 2, int 1");
        let err = int2_ca
            .issue(&IssueRequest::new(
                CertKind::Intermediate { path_len: 0 },
                "Int 3",
            ))
            .unwrap_err();
        assert!(err.to_string().contains("pathlen:0"), "{err}");
        // The validity was clamped to the 30-day root.
        assert!(
            int1.warnings.iter().any(|w| w.contains("shortened")),
            "{:?}",
            int1.warnings
        );
    }

    #[test]
    fn a_key_that_does_not_match_is_refused() {
        let (_, root) = Authority::new_root("Root", None, 30, KeyAlgorithm::EcdsaP256).unwrap();
        let other = keys::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let err = Authority::from_parts(
            root.chain.clone(),
            &other,
            Path::new("ca.crt"),
            Path::new("ca.key"),
        )
        .err()
        .unwrap();
        assert!(matches!(err, IssueError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn leaves_cannot_sign() {
        let (root, _) = Authority::new_root("Root", None, 30, KeyAlgorithm::EcdsaP256).unwrap();
        let leaf = root
            .issue(&IssueRequest::new(CertKind::Client, "alice"))
            .unwrap();
        let err = Authority::from_parts(
            leaf.chain.clone(),
            leaf.key_pkcs8(),
            Path::new("a.crt"),
            Path::new("a.key"),
        )
        .err()
        .unwrap();
        assert!(matches!(err, IssueError::NotCa { .. }), "{err}");
    }

    #[test]
    fn bad_names_are_refused() {
        let (root, _) = Authority::new_root("Root", None, 30, KeyAlgorithm::EcdsaP256).unwrap();
        let mut req = IssueRequest::new(CertKind::Server, "my server");
        assert!(
            root.issue(&req).is_err(),
            "server without SAN and a CN that is no DNS name"
        );
        req.dns_names = vec!["bad name".into()];
        assert!(root.issue(&req).is_err());
        req.dns_names = vec!["*.example.org".into()];
        req.uris = vec!["no-scheme".into()];
        assert!(root.issue(&req).is_err());
        req.uris = vec!["spiffe://example.org/ns/prod/sa/api".into()];
        req.emails = vec!["ops@example.org".into()];
        root.issue(&req).unwrap();
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_name("localhost"));
        assert!(is_dns_name("*.svc.example.org"));
        assert!(!is_dns_name("a..b"));
        assert!(!is_dns_name("-a.b"));
        assert!(!is_dns_name("a b"));
    }
}
