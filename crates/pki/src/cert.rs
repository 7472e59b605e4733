//! Owned, pre-digested views of certificates and CRLs: exactly the facts OpenSSL's
//! `x509v3_cache_extensions` and `x509_name_canon` derive, so that chain verification can
//! mirror OpenSSL's decisions field for field.
//!
//! Trust anchors and CRLs are digested once per configuration; client chains once per
//! verification. x509-parser does the parsing; [`crate::der`] supplies the raw encodings
//! that signature checks need.

use std::collections::HashMap;
use std::ops::Range;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::X509Name;

use crate::der;

/// A distinguished name: its DER encoding and OpenSSL's canonical form for comparisons.
#[derive(Clone, Debug)]
pub(crate) struct Name {
    /// The full DER encoding (SEQUENCE header included), as sent in CertificateRequest.
    pub raw: Vec<u8>,
    /// `None` when a string could not be converted to UTF-8: OpenSSL then treats the name
    /// as different from every other name.
    pub canon: Option<Vec<u8>>,
    /// `commonName` values as UTF-8 (for the name-constraints CN check).
    pub common_names: Vec<String>,
    /// `emailAddress` attribute values that are IA5Strings (checked as rfc822 names).
    pub emails: Vec<String>,
    /// An `emailAddress` attribute is not an IA5String (name constraints refuse those).
    pub non_ia5_email: bool,
    /// Number of attributes (OpenSSL's `X509_NAME_entry_count`).
    pub entry_count: usize,
}

impl Name {
    fn parse(name: &X509Name<'_>) -> Name {
        let mut common_names = Vec::new();
        let mut emails = Vec::new();
        let mut non_ia5_email = false;
        let mut entry_count = 0;
        for atv in name.iter_attributes() {
            entry_count += 1;
            let oid = atv.attr_type().to_id_string();
            let value = atv.attr_value();
            if oid == OID_COMMON_NAME {
                if let Some(s) = string_to_utf8(value.tag().0, value.data) {
                    common_names.push(s);
                }
            } else if oid == OID_EMAIL_ADDRESS {
                match std::str::from_utf8(value.data) {
                    Ok(s) if value.tag().0 == TAG_IA5 => emails.push(s.to_owned()),
                    _ => non_ia5_email = true,
                }
            }
        }
        Name {
            raw: name.as_raw().to_vec(),
            canon: canonical(name),
            common_names,
            emails,
            non_ia5_email,
            entry_count,
        }
    }

    /// OpenSSL's `X509_NAME_cmp(a, b) == 0`.
    pub fn matches(&self, other: &Name) -> bool {
        match (&self.canon, &other.canon) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

const OID_COMMON_NAME: &str = "2.5.4.3";
const OID_EMAIL_ADDRESS: &str = "1.2.840.113549.1.9.1";

// Universal tag numbers of the ASN.1 string types.
const TAG_UTF8: u32 = 12;
const TAG_PRINTABLE: u32 = 19;
const TAG_T61: u32 = 20;
const TAG_IA5: u32 = 22;
const TAG_VISIBLE: u32 = 26;
const TAG_UNIVERSAL: u32 = 28;
const TAG_BMP: u32 = 30;

/// The string types OpenSSL canonicalizes (`ASN1_MASK_CANON`), converted to UTF-8 the way
/// `ASN1_STRING_to_UTF8` does. `None` for other types or undecodable contents.
fn string_to_utf8(tag: u32, data: &[u8]) -> Option<String> {
    match tag {
        TAG_UTF8 => std::str::from_utf8(data).ok().map(str::to_owned),
        // OpenSSL reads these one byte per character (Latin-1 for T61String).
        TAG_PRINTABLE | TAG_T61 | TAG_IA5 | TAG_VISIBLE => {
            Some(data.iter().map(|&b| char::from(b)).collect())
        }
        TAG_BMP => {
            let chunks = data.chunks_exact(2);
            if !chunks.remainder().is_empty() {
                return None;
            }
            let units = chunks.map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        TAG_UNIVERSAL => {
            let chunks = data.chunks_exact(4);
            if !chunks.remainder().is_empty() {
                return None;
            }
            chunks
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<Option<String>>()
        }
        _ => None,
    }
}

fn is_canon_type(tag: u32) -> bool {
    matches!(
        tag,
        TAG_UTF8 | TAG_PRINTABLE | TAG_T61 | TAG_IA5 | TAG_VISIBLE | TAG_UNIVERSAL | TAG_BMP
    )
}

/// `asn1_string_canon`: trim ASCII whitespace, collapse inner runs to one space, lowercase
/// ASCII letters; bytes outside ASCII are kept as they are.
fn canon_string(s: &str) -> Vec<u8> {
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let bytes = s.as_bytes();
    let start = bytes
        .iter()
        .position(|&b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_space(b))
        .map_or(start, |i| i + 1);
    let mut out = Vec::with_capacity(end - start);
    let mut in_space = false;
    for &b in &bytes[start..end] {
        if is_space(b) {
            if !in_space {
                out.push(b' ');
            }
            in_space = true;
        } else {
            out.push(b.to_ascii_lowercase());
            in_space = false;
        }
    }
    out
}

fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A canonical form equal for two names exactly when OpenSSL's `X509_NAME_cmp` says they
/// are equal: same RDN structure, same attribute types, canonicalized string values
/// (other value types compared with their tag), attributes within an RDN unordered.
fn canonical(name: &X509Name<'_>) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for rdn in name.iter_rdn() {
        let mut avas = Vec::new();
        for atv in rdn.iter() {
            let mut ava = Vec::new();
            push_len_prefixed(&mut ava, atv.attr_type().as_bytes());
            let value = atv.attr_value();
            let tag = value.tag().0;
            if is_canon_type(tag) {
                ava.push(0);
                push_len_prefixed(&mut ava, &canon_string(&string_to_utf8(tag, value.data)?));
            } else {
                ava.push(1);
                ava.extend_from_slice(&tag.to_be_bytes());
                push_len_prefixed(&mut ava, value.data);
            }
            avas.push(ava);
        }
        avas.sort();
        out.push(0x31);
        push_len_prefixed(&mut out, &avas.concat());
    }
    Some(out)
}

/// An INTEGER's content bytes in a form where equal values compare equal
/// (redundant leading sign-extension bytes removed), as `ASN1_INTEGER_cmp` compares values.
pub(crate) fn normalize_integer(raw: &[u8]) -> Vec<u8> {
    let mut s = raw;
    while s.len() > 1 && ((s[0] == 0 && s[1] & 0x80 == 0) || (s[0] == 0xff && s[1] & 0x80 != 0)) {
        s = &s[1..];
    }
    s.to_vec()
}

/// A GeneralName reduced to what name constraints and CRL distribution points compare.
#[derive(Clone, Debug)]
pub(crate) enum GenName {
    Email(Vec<u8>),
    Dns(Vec<u8>),
    Uri(Vec<u8>),
    Ip(Vec<u8>),
    Dir(Name),
    /// Any other type, by its GeneralName CHOICE tag number, with its value bytes.
    Other(u8, Vec<u8>),
}

impl GenName {
    fn from_parsed(g: &GeneralName<'_>) -> GenName {
        match g {
            GeneralName::RFC822Name(s) => GenName::Email(s.as_bytes().to_vec()),
            GeneralName::DNSName(s) => GenName::Dns(s.as_bytes().to_vec()),
            GeneralName::URI(s) => GenName::Uri(s.as_bytes().to_vec()),
            GeneralName::IPAddress(b) => GenName::Ip(b.to_vec()),
            GeneralName::DirectoryName(n) => GenName::Dir(Name::parse(n)),
            GeneralName::OtherName(oid, v) => {
                let mut bytes = oid.as_bytes().to_vec();
                bytes.extend_from_slice(v);
                GenName::Other(0, bytes)
            }
            GeneralName::X400Address(a) => GenName::Other(3, a.data.to_vec()),
            GeneralName::EDIPartyName(a) => GenName::Other(5, a.data.to_vec()),
            GeneralName::RegisteredID(oid) => GenName::Other(8, oid.as_bytes().to_vec()),
        }
    }

    /// The GeneralName CHOICE tag number.
    pub fn type_id(&self) -> u8 {
        match self {
            GenName::Email(_) => 1,
            GenName::Dns(_) => 2,
            GenName::Dir(_) => 4,
            GenName::Uri(_) => 6,
            GenName::Ip(_) => 7,
            GenName::Other(t, _) => *t,
        }
    }

    /// OpenSSL's `GENERAL_NAME_cmp(a, b) == 0`: same type, byte-equal strings, equal names.
    pub fn same_as(&self, other: &GenName) -> bool {
        match (self, other) {
            (GenName::Email(a), GenName::Email(b))
            | (GenName::Dns(a), GenName::Dns(b))
            | (GenName::Uri(a), GenName::Uri(b))
            | (GenName::Ip(a), GenName::Ip(b)) => a == b,
            (GenName::Dir(a), GenName::Dir(b)) => a.matches(b),
            (GenName::Other(ta, a), GenName::Other(tb, b)) => ta == tb && a == b,
            _ => false,
        }
    }
}

/// A distribution point name (in a certificate's CRLDP or a CRL's IDP).
#[derive(Clone, Debug)]
pub(crate) enum DpName {
    Full(Vec<GenName>),
    /// `nameRelativeToCRLIssuer`, kept as the canonical form of the RDN.
    Relative(Option<Vec<u8>>),
}

impl DpName {
    fn from_parsed(n: &DistributionPointName<'_>) -> DpName {
        match n {
            DistributionPointName::FullName(names) => {
                DpName::Full(names.iter().map(GenName::from_parsed).collect())
            }
            DistributionPointName::NameRelativeToCRLIssuer(rdn) => {
                let name = X509Name::new(vec![rdn.clone()], &[]);
                DpName::Relative(canonical(&name))
            }
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct DistPoint {
    pub name: Option<DpName>,
    /// `cRLIssuer` directory names; `None` when the field is absent.
    pub crl_issuer: Option<Vec<Name>>,
}

/// Authority key identifier contents.
#[derive(Clone, Debug, Default)]
pub(crate) struct Akid {
    pub key_id: Option<Vec<u8>>,
    /// The first directoryName of `authorityCertIssuer` (OpenSSL only looks at that one).
    pub issuer: Option<Name>,
    pub serial: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct BasicConstraints {
    pub ca: bool,
    pub path_len: Option<u32>,
}

/// keyUsage bits (RFC 5280 numbering, bit 0 = digitalSignature).
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyUsage(pub u16);

impl KeyUsage {
    pub fn digital_signature(self) -> bool {
        self.0 & 1 != 0
    }
    pub fn key_agreement(self) -> bool {
        self.0 & (1 << 4) != 0
    }
    pub fn key_cert_sign(self) -> bool {
        self.0 & (1 << 5) != 0
    }
    pub fn crl_sign(self) -> bool {
        self.0 & (1 << 6) != 0
    }
}

/// Netscape certificate type bits that OpenSSL's purpose checks consult.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NsCertType {
    pub ssl_client: bool,
    pub ssl_ca: bool,
    pub any_ca: bool,
}

/// Name constraints, with the subtree forms OpenSSL refuses to evaluate flagged.
#[derive(Clone, Debug, Default)]
pub(crate) struct NameConstraints {
    pub permitted: Vec<GenName>,
    pub excluded: Vec<GenName>,
    /// The extension could not be parsed (e.g. it uses `minimum`/`maximum`), which OpenSSL
    /// reports as `X509_V_ERR_SUBTREE_MINMAX` once a name of a constrained type is checked.
    pub unparseable: bool,
}

/// What kind of public key a certificate holds, as far as OpenSSL's checks care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    Ec,
    Ed25519,
    Ed448,
    Dsa,
    Other,
}

/// A certificate, digested.
#[derive(Clone, Debug)]
pub(crate) struct Cert {
    pub der: Vec<u8>,
    pub subject: Name,
    pub issuer: Name,
    pub serial: Vec<u8>,
    /// `X509_get_version(x) == 0`.
    pub v1: bool,
    pub not_before: i64,
    pub not_after: i64,
    pub tbs: Range<usize>,
    pub sig_alg: Vec<u8>,
    /// Outer and inner signature algorithms are identical (`X509_verify` refuses otherwise).
    pub sig_alg_consistent: bool,
    pub signature: Vec<u8>,
    pub spki_der: Vec<u8>,
    pub spki_alg: Vec<u8>,
    pub spki_key: Vec<u8>,
    pub key_kind: KeyKind,
    /// Key strength in bits of security, when we know how to tell.
    pub key_secbits: Option<u32>,
    /// Strength of the digest this certificate was signed with, when known.
    pub sig_secbits: Option<u32>,
    /// The kind of key the signature algorithm needs (`check_sig_alg_match`).
    pub sig_key_kind: KeyKind,
    pub ec_explicit_params: bool,
    pub basic_constraints: Option<BasicConstraints>,
    pub key_usage: Option<KeyUsage>,
    /// `Some(has clientAuth)` when an extendedKeyUsage extension is present.
    pub eku_client_auth: Option<bool>,
    pub ns_cert_type: Option<NsCertType>,
    pub skid: Option<Vec<u8>>,
    pub akid: Option<Akid>,
    pub crl_dps: Vec<DistPoint>,
    pub name_constraints: Option<NameConstraints>,
    pub san: Vec<GenName>,
    /// Whether a subjectAltName extension is present at all.
    pub has_san_dns: bool,
    pub unhandled_critical: bool,
    pub proxy: bool,
    /// Subject equals issuer (EXFLAG_SI).
    pub self_issued: bool,
    /// Self-issued with a consistent AKID and key type (EXFLAG_SS); no signature check.
    pub self_signed: bool,
}

/// Extensions OpenSSL 3.0 understands (`X509_supported_extension`); any other critical
/// extension makes the certificate fail with "unhandled critical extension".
const SUPPORTED_EXTENSIONS: &[&str] = &[
    "2.16.840.1.113730.1.1", // nsCertType
    "2.5.29.15",             // keyUsage
    "2.5.29.17",             // subjectAltName
    "2.5.29.19",             // basicConstraints
    "2.5.29.32",             // certificatePolicies
    "2.5.29.31",             // cRLDistributionPoints
    "2.5.29.37",             // extKeyUsage
    "1.3.6.1.5.5.7.1.7",     // sbgp-ipAddrBlock
    "1.3.6.1.5.5.7.1.8",     // sbgp-autonomousSysNum
    "1.3.6.1.5.5.7.48.1.5",  // OCSP noCheck
    "2.5.29.36",             // policyConstraints
    "1.3.6.1.5.5.7.1.14",    // proxyCertInfo
    "2.5.29.30",             // nameConstraints
    "2.5.29.33",             // policyMappings
    "2.5.29.54",             // inhibitAnyPolicy
];

const OID_PROXY_CERT_INFO: &str = "1.3.6.1.5.5.7.1.14";

/// Security bits per signature digest, as OpenSSL 3.0's `X509_get_signature_info` reports.
fn sig_strength(sig_alg: &[u8]) -> (Option<u32>, KeyKind) {
    let Some((oid, params)) = der::expect(sig_alg, der::TAG_OID) else {
        return (None, KeyKind::Other);
    };
    let oid = oid_string(oid.content);
    let (bits, kind) = match oid.as_str() {
        "1.2.840.113549.1.1.4" => (Some(39), KeyKind::Rsa), // md5WithRSA
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => (Some(63), KeyKind::Rsa), // sha1WithRSA
        "1.2.840.113549.1.1.14" => (Some(112), KeyKind::Rsa),
        "1.2.840.113549.1.1.11" => (Some(128), KeyKind::Rsa),
        "1.2.840.113549.1.1.12" => (Some(192), KeyKind::Rsa),
        "1.2.840.113549.1.1.13" => (Some(256), KeyKind::Rsa),
        "1.2.840.113549.1.1.10" => (pss_strength(params), KeyKind::Rsa),
        "1.2.840.10045.4.1" => (Some(63), KeyKind::Ec),
        "1.2.840.10045.4.3.1" => (Some(112), KeyKind::Ec),
        "1.2.840.10045.4.3.2" => (Some(128), KeyKind::Ec),
        "1.2.840.10045.4.3.3" => (Some(192), KeyKind::Ec),
        "1.2.840.10045.4.3.4" => (Some(256), KeyKind::Ec),
        "1.2.840.10040.4.3" => (Some(63), KeyKind::Dsa),
        "2.16.840.1.101.3.4.3.1" => (Some(112), KeyKind::Dsa),
        "2.16.840.1.101.3.4.3.2" => (Some(128), KeyKind::Dsa),
        "1.3.101.112" => (Some(128), KeyKind::Ed25519),
        "1.3.101.113" => (Some(224), KeyKind::Ed448),
        _ => (None, KeyKind::Other),
    };
    (bits, kind)
}

/// RSASSA-PSS: the digest comes from the parameters (`[0] hashAlgorithm`, SHA-1 by default).
fn pss_strength(params: &[u8]) -> Option<u32> {
    let (seq, _) = der::expect(params, der::TAG_SEQUENCE)?;
    let hash = match der::read(seq.content) {
        Some((first, _)) if first.tag == der::TAG_CONTEXT_0 => {
            let (alg, _) = der::expect(first.content, der::TAG_SEQUENCE)?;
            let (oid, _) = der::expect(alg.content, der::TAG_OID)?;
            oid_string(oid.content)
        }
        _ => return Some(63),
    };
    match hash.as_str() {
        "1.3.14.3.2.26" => Some(63),
        "2.16.840.1.101.3.4.2.4" => Some(112),
        "2.16.840.1.101.3.4.2.1" => Some(128),
        "2.16.840.1.101.3.4.2.2" => Some(192),
        "2.16.840.1.101.3.4.2.3" => Some(256),
        _ => None,
    }
}

/// Public key kind and strength (`EVP_PKEY_get_security_bits`), plus whether an EC key
/// uses explicit curve parameters.
fn key_strength(spki: &der::Spki<'_>) -> (KeyKind, Option<u32>, bool) {
    match oid_string(spki.alg_oid).as_str() {
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => {
            (KeyKind::Rsa, rsa_strength(spki.key), false)
        }
        "1.2.840.10045.2.1" => match spki.params {
            Some(p) if p.tag == der::TAG_OID => {
                let bits = match oid_string(p.content).as_str() {
                    "1.2.840.10045.3.1.1" => Some(80),
                    "1.3.132.0.33" => Some(112),
                    "1.2.840.10045.3.1.7" | "1.3.132.0.10" | "1.3.36.3.3.2.8.1.1.7" => Some(128),
                    "1.3.132.0.34" | "1.3.36.3.3.2.8.1.1.11" => Some(192),
                    "1.3.132.0.35" | "1.3.36.3.3.2.8.1.1.13" => Some(256),
                    _ => None,
                };
                (KeyKind::Ec, bits, false)
            }
            Some(p) if p.tag == der::TAG_SEQUENCE => (KeyKind::Ec, None, true),
            _ => (KeyKind::Ec, None, false),
        },
        "1.3.101.112" => (KeyKind::Ed25519, Some(128), false),
        "1.3.101.113" => (KeyKind::Ed448, Some(224), false),
        "1.2.840.10040.4.1" => (KeyKind::Dsa, None, false),
        _ => (KeyKind::Other, None, false),
    }
}

/// Bits of security of an RSA modulus, following the thresholds OpenSSL uses.
fn rsa_strength(key: &[u8]) -> Option<u32> {
    let (seq, _) = der::expect(key, der::TAG_SEQUENCE)?;
    let (n, _) = der::expect(seq.content, der::TAG_INTEGER)?;
    let digits: &[u8] = {
        let mut d = n.content;
        while let [0, rest @ ..] = d {
            d = rest;
        }
        d
    };
    let bits = match digits.first() {
        Some(&b) => digits.len() * 8 - b.leading_zeros() as usize,
        None => 0,
    };
    Some(match bits {
        b if b >= 15360 => 256,
        b if b >= 7680 => 192,
        b if b >= 3072 => 128,
        b if b >= 2048 => 112,
        b if b >= 1024 => 80,
        _ => 0,
    })
}

/// Dotted-decimal form of an OID's content bytes.
pub(crate) fn oid_string(content: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in content {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() {
                let (first, second) = if acc < 40 {
                    (0, acc)
                } else if acc < 80 {
                    (1, acc - 40)
                } else {
                    (2, acc - 80)
                };
                parts.push(first);
                parts.push(second);
            } else {
                parts.push(acc);
            }
            acc = 0;
        }
    }
    parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

impl Cert {
    /// Digests a certificate. The error is x509-parser's description of what is wrong.
    pub fn parse(der_bytes: &[u8]) -> Result<Cert, String> {
        let (rest, x509) = X509Certificate::from_der(der_bytes).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            return Err("trailing data after the certificate".into());
        }
        let signed = der::signed(der_bytes).ok_or("malformed certificate structure")?;
        let (version, inner_alg) =
            der::tbs_certificate_head(signed.tbs.content).ok_or("malformed TBSCertificate")?;
        let spki_der = x509.tbs_certificate.subject_pki.raw;
        let spki = der::spki(spki_der).ok_or("malformed SubjectPublicKeyInfo")?;
        let (key_kind, key_secbits, ec_explicit_params) = key_strength(&spki);
        let (sig_secbits, sig_key_kind) = sig_strength(signed.sig_alg);
        let tbs_start = signed.tbs.raw.as_ptr() as usize - der_bytes.as_ptr() as usize;

        let mut cert = Cert {
            der: der_bytes.to_vec(),
            subject: Name::parse(x509.subject()),
            issuer: Name::parse(x509.issuer()),
            serial: normalize_integer(x509.raw_serial()),
            v1: version == 0,
            not_before: x509.validity().not_before.timestamp(),
            not_after: x509.validity().not_after.timestamp(),
            tbs: tbs_start..tbs_start + signed.tbs.raw.len(),
            sig_alg: signed.sig_alg.to_vec(),
            sig_alg_consistent: signed.sig_alg == inner_alg,
            signature: signed.signature.to_vec(),
            spki_der: spki_der.to_vec(),
            spki_alg: spki.alg.to_vec(),
            spki_key: spki.key.to_vec(),
            key_kind,
            key_secbits,
            sig_secbits,
            sig_key_kind,
            ec_explicit_params,
            basic_constraints: None,
            key_usage: None,
            eku_client_auth: None,
            ns_cert_type: None,
            skid: None,
            akid: None,
            crl_dps: Vec::new(),
            name_constraints: None,
            san: Vec::new(),
            has_san_dns: false,
            unhandled_critical: false,
            proxy: false,
            self_issued: false,
            self_signed: false,
        };

        for ext in x509.extensions() {
            let oid = ext.oid.to_id_string();
            if ext.critical && !SUPPORTED_EXTENSIONS.contains(&oid.as_str()) {
                cert.unhandled_critical = true;
            }
            if oid == OID_PROXY_CERT_INFO {
                cert.proxy = true;
            }
            // OpenSSL caches the first occurrence of each extension; so do we.
            match ext.parsed_extension() {
                ParsedExtension::BasicConstraints(bc) if cert.basic_constraints.is_none() => {
                    cert.basic_constraints = Some(BasicConstraints {
                        ca: bc.ca,
                        path_len: bc.path_len_constraint,
                    });
                }
                ParsedExtension::KeyUsage(ku) if cert.key_usage.is_none() => {
                    cert.key_usage = Some(KeyUsage(ku.flags));
                }
                ParsedExtension::ExtendedKeyUsage(eku) if cert.eku_client_auth.is_none() => {
                    cert.eku_client_auth = Some(eku.client_auth);
                }
                ParsedExtension::NSCertType(ns) if cert.ns_cert_type.is_none() => {
                    cert.ns_cert_type = Some(NsCertType {
                        ssl_client: ns.ssl_client(),
                        ssl_ca: ns.ssl_ca(),
                        any_ca: ns.ssl_ca() || ns.smime_ca() || ns.object_signing_ca(),
                    });
                }
                ParsedExtension::SubjectKeyIdentifier(kid) if cert.skid.is_none() => {
                    cert.skid = Some(kid.0.to_vec());
                }
                ParsedExtension::AuthorityKeyIdentifier(akid) if cert.akid.is_none() => {
                    cert.akid = Some(parse_akid(akid));
                }
                ParsedExtension::CRLDistributionPoints(dps) if cert.crl_dps.is_empty() => {
                    cert.crl_dps = dps
                        .points
                        .iter()
                        .map(|dp| DistPoint {
                            name: dp.distribution_point.as_ref().map(DpName::from_parsed),
                            crl_issuer: dp.crl_issuer.as_ref().map(|names| {
                                names
                                    .iter()
                                    .filter_map(|g| match g {
                                        GeneralName::DirectoryName(n) => Some(Name::parse(n)),
                                        _ => None,
                                    })
                                    .collect()
                            }),
                        })
                        .collect();
                }
                ParsedExtension::NameConstraints(nc) if cert.name_constraints.is_none() => {
                    let subtrees =
                        |s: &Option<Vec<x509_parser::extensions::GeneralSubtree<'_>>>| {
                            s.iter()
                                .flatten()
                                .map(|t| GenName::from_parsed(&t.base))
                                .collect()
                        };
                    cert.name_constraints = Some(NameConstraints {
                        permitted: subtrees(&nc.permitted_subtrees),
                        excluded: subtrees(&nc.excluded_subtrees),
                        unparseable: false,
                    });
                }
                ParsedExtension::SubjectAlternativeName(san) if cert.san.is_empty() => {
                    cert.san = san.general_names.iter().map(GenName::from_parsed).collect();
                    cert.has_san_dns = cert.san.iter().any(|g| matches!(g, GenName::Dns(_)));
                }
                ParsedExtension::ParseError { .. }
                | ParsedExtension::UnsupportedExtension { .. }
                    if oid == "2.5.29.30" && cert.name_constraints.is_none() =>
                {
                    cert.name_constraints = Some(NameConstraints {
                        unparseable: true,
                        ..Default::default()
                    });
                }
                _ => {}
            }
        }

        cert.self_issued = cert.subject.matches(&cert.issuer);
        cert.self_signed = cert.self_issued
            && cert.akid_matches(cert.akid.as_ref())
            && cert.sig_alg_matches(&cert);
        Ok(cert)
    }

    pub fn tbs(&self) -> &[u8] {
        &self.der[self.tbs.clone()]
    }

    pub fn is_ca_flagged(&self) -> bool {
        self.basic_constraints.is_some_and(|bc| bc.ca)
    }

    /// OpenSSL's `X509_check_akid(self, akid) == X509_V_OK`: does `akid` (taken from a
    /// certificate or CRL) point at this certificate?
    pub fn akid_matches(&self, akid: Option<&Akid>) -> bool {
        let Some(akid) = akid else { return true };
        if let (Some(kid), Some(skid)) = (&akid.key_id, &self.skid) {
            if kid != skid {
                return false;
            }
        }
        if let Some(serial) = &akid.serial {
            if *serial != self.serial {
                return false;
            }
        }
        if let Some(name) = &akid.issuer {
            if !name.matches(&self.issuer) {
                return false;
            }
        }
        true
    }

    /// `check_sig_alg_match`: is this certificate's key of the kind `subject`'s signature
    /// algorithm needs? (RSA-PSS signatures count as RSA.)
    pub fn sig_alg_matches(&self, subject: &Cert) -> bool {
        subject.sig_key_kind != KeyKind::Other && subject.sig_key_kind == self.key_kind
    }

    /// OpenSSL's `ossl_x509_likely_issued(self, subject)`: names, AKID and key type agree.
    /// The signature itself is not checked here, as in OpenSSL's chain building.
    pub fn likely_issued(&self, subject: &Cert) -> bool {
        self.subject.matches(&subject.issuer)
            && self.akid_matches(subject.akid.as_ref())
            && self.sig_alg_matches(subject)
    }

    /// `X509_check_ca`: 0 = not a CA, 1 = CA by basicConstraints, 3-5 = legacy CA forms.
    pub fn check_ca(&self) -> u8 {
        if self.key_usage.is_some_and(|ku| !ku.key_cert_sign()) {
            return 0;
        }
        match self.basic_constraints {
            Some(bc) => u8::from(bc.ca),
            None if self.v1 && self.self_signed => 3,
            None if self.key_usage.is_some() => 4,
            None if self.ns_cert_type.is_some_and(|ns| ns.any_ca) => 5,
            None => 0,
        }
    }
}

fn parse_akid(akid: &x509_parser::extensions::AuthorityKeyIdentifier<'_>) -> Akid {
    Akid {
        key_id: akid.key_identifier.as_ref().map(|k| k.0.to_vec()),
        issuer: akid.authority_cert_issuer.as_ref().and_then(|names| {
            names.iter().find_map(|g| match g {
                GeneralName::DirectoryName(n) => Some(Name::parse(n)),
                _ => None,
            })
        }),
        serial: akid.authority_cert_serial.map(normalize_integer),
    }
}

/// The issuing distribution point of a CRL.
#[derive(Clone, Debug, Default)]
pub(crate) struct Idp {
    pub name: Option<DpName>,
    pub only_user: bool,
    pub only_ca: bool,
    pub only_attr: bool,
    pub indirect: bool,
    pub reasons: bool,
}

/// A CRL, digested.
#[derive(Clone, Debug)]
pub(crate) struct Crl {
    pub der: Vec<u8>,
    pub issuer: Name,
    pub last_update: i64,
    pub next_update: Option<i64>,
    /// Revoked serials (normalized) to "the entry's reason is removeFromCRL".
    pub revoked: HashMap<Vec<u8>, bool>,
    pub akid: Option<Akid>,
    pub idp: Option<Idp>,
    pub idp_invalid: bool,
    /// A delta CRL; OpenSSL only uses those with `X509_V_FLAG_USE_DELTAS`, which nginx does not set.
    pub delta: bool,
    pub unhandled_critical: bool,
    pub tbs: Range<usize>,
    pub sig_alg: Vec<u8>,
    pub sig_alg_consistent: bool,
    pub signature: Vec<u8>,
}

const OID_CRL_IDP: &str = "2.5.29.28";
const OID_CRL_AKID: &str = "2.5.29.35";
const OID_CRL_DELTA: &str = "2.5.29.27";
const OID_CRL_ENTRY_CERT_ISSUER: &str = "2.5.29.29";
/// CRLReason removeFromCRL.
const REASON_REMOVE_FROM_CRL: u8 = 8;

impl Crl {
    pub fn parse(der_bytes: &[u8]) -> Result<Crl, String> {
        let (rest, crl) =
            CertificateRevocationList::from_der(der_bytes).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            return Err("trailing data after the CRL".into());
        }
        let signed = der::signed(der_bytes).ok_or("malformed CRL structure")?;
        let inner_alg = der::tbs_crl_sig_alg(signed.tbs.content).ok_or("malformed TBSCertList")?;
        let tbs_start = signed.tbs.raw.as_ptr() as usize - der_bytes.as_ptr() as usize;

        let mut out = Crl {
            der: der_bytes.to_vec(),
            issuer: Name::parse(crl.issuer()),
            last_update: crl.last_update().timestamp(),
            next_update: crl.next_update().map(|t| t.timestamp()),
            revoked: HashMap::new(),
            akid: None,
            idp: None,
            idp_invalid: false,
            delta: false,
            unhandled_critical: false,
            tbs: tbs_start..tbs_start + signed.tbs.raw.len(),
            sig_alg: signed.sig_alg.to_vec(),
            sig_alg_consistent: signed.sig_alg == inner_alg,
            signature: signed.signature.to_vec(),
        };
        for ext in crl.extensions() {
            let oid = ext.oid.to_id_string();
            if ext.critical && ![OID_CRL_IDP, OID_CRL_AKID, OID_CRL_DELTA].contains(&oid.as_str()) {
                out.unhandled_critical = true;
            }
            if oid == OID_CRL_DELTA {
                out.delta = true;
            }
            match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(akid) if out.akid.is_none() => {
                    out.akid = Some(parse_akid(akid))
                }
                ParsedExtension::IssuingDistributionPoint(idp) if out.idp.is_none() => {
                    let idp = Idp {
                        name: idp.distribution_point.as_ref().map(DpName::from_parsed),
                        only_user: idp.only_contains_user_certs,
                        only_ca: idp.only_contains_ca_certs,
                        only_attr: idp.only_contains_attribute_certs,
                        indirect: idp.indirect_crl,
                        reasons: idp.only_some_reasons.is_some(),
                    };
                    out.idp_invalid =
                        u8::from(idp.only_user) + u8::from(idp.only_ca) + u8::from(idp.only_attr)
                            > 1;
                    out.idp = Some(idp);
                }
                ParsedExtension::ParseError { .. } if oid == OID_CRL_IDP => out.idp_invalid = true,
                _ => {}
            }
        }
        for entry in crl.iter_revoked_certificates() {
            let mut remove = false;
            for ext in entry.extensions() {
                if ext.critical && ext.oid.to_id_string() != OID_CRL_ENTRY_CERT_ISSUER {
                    out.unhandled_critical = true;
                }
                if let ParsedExtension::ReasonCode(code) = ext.parsed_extension() {
                    remove = code.0 == REASON_REMOVE_FROM_CRL;
                }
            }
            out.revoked
                .insert(normalize_integer(entry.raw_serial()), remove);
        }
        Ok(out)
    }

    pub fn tbs(&self) -> &[u8] {
        &self.der[self.tbs.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_strings_follow_openssl() {
        assert_eq!(canon_string("  Hello \t  World  "), b"hello world");
        assert_eq!(canon_string("ÄBC"), "Äbc".as_bytes());
        assert_eq!(canon_string(""), b"");
    }

    #[test]
    fn integers_normalize() {
        assert_eq!(normalize_integer(&[0, 0, 5]), vec![5]);
        assert_eq!(normalize_integer(&[0, 0x80]), vec![0, 0x80]);
        // -128 has one minimal encoding: 0x80.
        assert_eq!(normalize_integer(&[0xff, 0xff, 0x80]), vec![0x80]);
    }

    #[test]
    fn oid_strings() {
        assert_eq!(oid_string(&[0x55, 0x04, 0x03]), "2.5.4.3");
        assert_eq!(
            oid_string(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
            "1.2.840.10045.2.1"
        );
    }

    #[test]
    fn bmp_and_universal_strings_decode() {
        assert_eq!(
            string_to_utf8(TAG_BMP, &[0, b'A', 0, b'b']).as_deref(),
            Some("Ab")
        );
        assert_eq!(
            string_to_utf8(TAG_UNIVERSAL, &[0, 0, 0, b'z']).as_deref(),
            Some("z")
        );
        assert_eq!(string_to_utf8(TAG_BMP, &[0]), None);
    }
}
