//! Test-only PKI factory: roots, intermediates and client certificates made with rcgen at
//! test time (no key material is committed), with knobs for every property verification
//! looks at.

use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use time::{Duration, OffsetDateTime};

static SERIAL: AtomicU64 = AtomicU64::new(1000);

/// A certificate with its key.
pub(crate) struct Issued {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
    pub serial: u64,
}

impl Issued {
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }
}

/// What to issue.
#[derive(Clone)]
pub(crate) struct Spec {
    pub cn: String,
    pub ca: bool,
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    pub key_usages: Option<Vec<KeyUsagePurpose>>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Spec {
    /// A client certificate (EKU clientAuth), valid from yesterday for 30 days.
    pub fn client(cn: &str) -> Spec {
        let now = OffsetDateTime::now_utc();
        Spec {
            cn: cn.into(),
            ca: false,
            eku: vec![ExtendedKeyUsagePurpose::ClientAuth],
            key_usages: Some(vec![KeyUsagePurpose::DigitalSignature]),
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(30),
        }
    }

    /// A CA certificate (basicConstraints cA, keyCertSign + cRLSign).
    pub fn ca(cn: &str) -> Spec {
        Spec {
            ca: true,
            eku: Vec::new(),
            key_usages: Some(vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign]),
            ..Spec::client(cn)
        }
    }

    pub fn valid(mut self, from_days: i64, to_days: i64) -> Spec {
        let now = OffsetDateTime::now_utc();
        self.not_before = now + Duration::days(from_days);
        self.not_after = now + Duration::days(to_days);
        self
    }

    pub fn eku(mut self, eku: Vec<ExtendedKeyUsagePurpose>) -> Spec {
        self.eku = eku;
        self
    }

    /// Signed by `issuer`, or self-signed when `None`.
    pub fn issue(&self, issuer: Option<&Issued>) -> Issued {
        let key = KeyPair::generate().expect("key generation");
        self.issue_with_key(issuer, key)
    }

    pub fn issue_with_key(&self, issuer: Option<&Issued>, key: KeyPair) -> Issued {
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, self.cn.as_str());
        params.distinguished_name = dn;
        params.serial_number = Some(SerialNumber::from(serial));
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        params.is_ca = if self.ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        params.extended_key_usages = self.eku.clone();
        params.key_usages = self.key_usages.clone().unwrap_or_default();
        params.use_authority_key_identifier_extension = issuer.is_some();
        let cert = match issuer {
            Some(i) => params.signed_by(&key, &i.cert, &i.key),
            None => params.self_signed(&key),
        }
        .expect("certificate signing");
        Issued { cert, key, serial }
    }
}

pub(crate) fn root(cn: &str) -> Issued {
    Spec::ca(cn).issue(None)
}

pub(crate) fn ca_under(cn: &str, issuer: &Issued) -> Issued {
    Spec::ca(cn).issue(Some(issuer))
}

pub(crate) fn client_under(cn: &str, issuer: &Issued) -> Issued {
    Spec::client(cn).issue(Some(issuer))
}

/// A CRL from `issuer` listing `revoked`, valid from `from_days` to `to_days` around now.
pub(crate) fn crl(
    issuer: &Issued,
    revoked: &[&Issued],
    from_days: i64,
    to_days: i64,
) -> CertificateRevocationListDer<'static> {
    crl_signed_by(issuer, &issuer.key, revoked, from_days, to_days)
}

/// A CRL naming `issuer` (name and key identifier) but signed with `signer`: a forgery
/// when `signer` is not the issuer's key.
pub(crate) fn crl_signed_by(
    issuer: &Issued,
    signer: &KeyPair,
    revoked: &[&Issued],
    from_days: i64,
    to_days: i64,
) -> CertificateRevocationListDer<'static> {
    let now = OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update: now + Duration::days(from_days),
        next_update: now + Duration::days(to_days),
        crl_number: SerialNumber::from(SERIAL.fetch_add(1, Ordering::Relaxed)),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|c| RevokedCertParams {
                serial_number: SerialNumber::from(c.serial),
                revocation_time: now - Duration::days(1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::PreSpecified(issuer.cert.key_identifier()),
    };
    params
        .signed_by(&issuer.cert, signer)
        .expect("CRL signing")
        .der()
        .clone()
}

/// A current CRL from `issuer` listing `revoked`.
pub(crate) fn current_crl(
    issuer: &Issued,
    revoked: &[&Issued],
) -> CertificateRevocationListDer<'static> {
    crl(issuer, revoked, -1, 7)
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

fn utc_time(t: OffsetDateTime) -> Vec<u8> {
    let s = format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        t.year() % 100,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    tlv(0x17, s.as_bytes())
}

/// An X.509 **v1** client certificate (no extensions at all), as `openssl x509 -req`
/// produced before OpenSSL 3.0 and many tutorials still do. rcgen only writes v3, so this
/// is assembled by hand and signed with ECDSA P-256 / SHA-256.
pub(crate) fn v1_client_under(cn: &str, issuer: &Issued) -> V1 {
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    use x509_parser::prelude::FromDer;

    let key = KeyPair::generate().expect("key generation");
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    let (_, issuer_x509) =
        x509_parser::certificate::X509Certificate::from_der(issuer.cert.der()).expect("issuer");
    let ecdsa_sha256 = tlv(
        0x30,
        &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
    );
    let subject = tlv(
        0x30,
        &tlv(
            0x31,
            &tlv(
                0x30,
                &[tlv(0x06, &[0x55, 0x04, 0x03]), tlv(0x0c, cn.as_bytes())].concat(),
            ),
        ),
    );
    let now = OffsetDateTime::now_utc();
    let validity = tlv(
        0x30,
        &[
            utc_time(now - Duration::days(1)),
            utc_time(now + Duration::days(30)),
        ]
        .concat(),
    );
    let tbs = tlv(
        0x30,
        &[
            // A minimal positive INTEGER: a non-zero first byte below 0x80.
            tlv(
                0x02,
                &[
                    0x01,
                    (serial >> 16) as u8,
                    (serial >> 8) as u8,
                    serial as u8,
                ],
            ),
            ecdsa_sha256.clone(),
            issuer_x509.subject().as_raw().to_vec(),
            validity,
            subject,
            key.public_key_der(),
        ]
        .concat(),
    );
    let rng = ring::rand::SystemRandom::new();
    let signer = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &issuer.key.serialize_der(),
        &rng,
    )
    .expect("issuer key is ECDSA P-256");
    let signature = signer.sign(&rng, &tbs).expect("signing");
    let mut bits = vec![0u8];
    bits.extend_from_slice(signature.as_ref());
    let der = tlv(0x30, &[tbs, ecdsa_sha256, tlv(0x03, &bits)].concat());
    V1 {
        der: CertificateDer::from(der),
        key,
    }
}

/// A hand-made certificate and its key (see [`v1_client_under`]).
pub(crate) struct V1 {
    pub der: CertificateDer<'static>,
    pub key: KeyPair,
}

impl V1 {
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }
}
