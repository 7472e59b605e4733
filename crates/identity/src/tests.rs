//! Crate tests against nginx/OpenSSL reference output. Certificates are issued
//! with rcgen at test time; the expected strings are literals obtained by running
//! `tools/compare_with_nginx.sh` (Debian 12: nginx 1.22.1, OpenSSL 3.0.22) on
//! the same certificates, so they do not depend on this crate's own output.
//! Keys are random per run, so fingerprints are checked against an independent
//! hash of the DER instead of literals.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, BmpString, CertificateParams, DistinguishedName, DnType, DnValue, IsCa,
    KeyPair, SanType, SerialNumber, UniversalString,
};
use time::OffsetDateTime;

use crate::*;

/// 2026-11-02T09:05:01Z, checked with `date -u -d @1793610301`.
const NOT_BEFORE: i64 = 1_793_610_301;
/// 2027-01-31T00:00:00Z.
const NOT_AFTER: i64 = 1_801_353_600;

/// Minimal DER writer for names rcgen cannot express (multi-valued RDNs,
/// repeated attributes, T61 Latin-1, unknown OIDs with odd types).
mod der {
    pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
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

    /// One attribute: OID content octets, value tag, value bytes.
    pub type Attr<'a> = (&'a [u8], u8, &'a [u8]);

    /// A Name from RDNs of attributes.
    pub fn name(rdns: &[&[Attr<'_>]]) -> Vec<u8> {
        let mut seq = Vec::new();
        for rdn in rdns {
            let mut set = Vec::new();
            for (oid, tag, value) in rdn.iter() {
                let mut atv = tlv(0x06, oid);
                atv.extend(tlv(*tag, value));
                set.extend(tlv(0x30, &atv));
            }
            seq.extend(tlv(0x31, &set));
        }
        tlv(0x30, &seq)
    }

    /// `(header length, content length)` of the TLV at the start of `buf`.
    fn header(buf: &[u8]) -> (usize, usize) {
        match buf[1] {
            n if n < 0x80 => (2, usize::from(n)),
            0x81 => (3, usize::from(buf[2])),
            0x82 => (4, usize::from(buf[2]) << 8 | usize::from(buf[3])),
            n => panic!("length form {n:#x} not used by rcgen certificates"),
        }
    }

    fn split(mut buf: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let (h, l) = header(buf);
            out.push(&buf[..h + l]);
            buf = &buf[h + l..];
        }
        out
    }

    /// Replaces TBSCertificate fields (numbered after the optional version:
    /// 0 serial, 1 signature, 2 issuer, 3 validity, 4 subject, …). The signature
    /// no longer matches, which does not matter here: only the fields are printed.
    pub fn with_tbs_fields(cert: &[u8], replace: &[(usize, &[u8])]) -> Vec<u8> {
        let (h, _) = header(cert);
        let top = split(&cert[h..]);
        let (th, _) = header(top[0]);
        let mut fields: Vec<&[u8]> = split(&top[0][th..]);
        let offset = usize::from(fields[0][0] == 0xa0);
        for &(index, bytes) in replace {
            fields[index + offset] = bytes;
        }
        let mut body = tlv(0x30, &fields.concat());
        for part in &top[1..] {
            body.extend_from_slice(part);
        }
        tlv(0x30, &body)
    }

    pub fn with_subject(cert: &[u8], subject: &[u8]) -> Vec<u8> {
        with_tbs_fields(cert, &[(4, subject)])
    }
}

const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_L: &[u8] = &[0x55, 0x04, 0x07];
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];
const OID_OU: &[u8] = &[0x55, 0x04, 0x0b];
const OID_TITLE: &[u8] = &[0x55, 0x04, 0x0c];
const OID_STREET: &[u8] = &[0x55, 0x04, 0x09];
const OID_SERIAL_NUMBER: &[u8] = &[0x55, 0x04, 0x05];
const OID_UID: &[u8] = &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01];
const OID_DC: &[u8] = &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19];
const OID_UNKNOWN: &[u8] = &[0x2a, 0x03, 0x04, 0x05];
const UTF8: u8 = 0x0c;
const PRINTABLE: u8 = 0x13;
const T61: u8 = 0x14;
const IA5: u8 = 0x16;

struct Issued {
    /// The chain as a client sends it: leaf first.
    chain: Vec<Vec<u8>>,
    /// Leaf key, only for `dump_fixtures` (handshakes with the real nginx).
    key_pem: String,
    /// rcgen's own PEM of the leaf and DER of its public key, as references
    /// independent of this crate's encoders.
    rcgen_pem: String,
    spki_der: Vec<u8>,
}

impl Issued {
    fn new(cert: &rcgen::Certificate, key: &KeyPair) -> Issued {
        Issued {
            chain: vec![cert.der().to_vec()],
            key_pem: key.serialize_pem(),
            rcgen_pem: cert.pem(),
            spki_der: key.public_key_der(),
        }
    }
}

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).expect("valid timestamp")
}

fn ca(dn: &[(DnType, DnValue)], issuer: Option<&Ca>) -> Ca {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for (ty, value) in dn {
        params.distinguished_name.push(ty.clone(), value.clone());
    }
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = at(NOT_BEFORE - 86_400);
    params.not_after = at(NOT_AFTER + 86_400);
    let key = KeyPair::generate().expect("key");
    let cert = match issuer {
        Some(parent) => params.signed_by(&key, &parent.cert, &parent.key),
        None => params.self_signed(&key),
    }
    .expect("CA certificate");
    Ca { cert, key }
}

fn root_ca() -> Ca {
    ca(
        &[
            (DnType::CountryName, "US".into()),
            (DnType::OrganizationName, "Example Trust".into()),
            (DnType::CommonName, "Example Root CA Ä".into()),
        ],
        None,
    )
}

fn leaf(params: CertificateParams, issuer: &Ca) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let cert = params
        .signed_by(&key, &issuer.cert, &issuer.key)
        .expect("leaf certificate");
    (cert, key)
}

fn base_params(dn: &[(DnType, DnValue)], serial: &[u8]) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for (ty, value) in dn {
        params.distinguished_name.push(ty.clone(), value.clone());
    }
    params.serial_number = Some(SerialNumber::from_slice(serial));
    params.not_before = at(NOT_BEFORE);
    params.not_after = at(NOT_AFTER);
    params
}

fn email_type() -> DnType {
    DnType::CustomDnType(vec![1, 2, 840, 113_549, 1, 9, 1])
}

/// UTF-8 subject with every RFC 2253 special, emailAddress, SANs of each kind,
/// and a serial whose DER needs a leading 0x00.
fn latin_fixture() -> Issued {
    let root = root_ca();
    let mut params = base_params(
        &[
            (
                DnType::CountryName,
                DnValue::PrintableString("DE".try_into().expect("printable")),
            ),
            (DnType::StateOrProvinceName, "Baden-Württemberg".into()),
            (DnType::LocalityName, "Zürich".into()),
            (DnType::OrganizationName, "Müller & Söhne, GmbH".into()),
            (DnType::OrganizationalUnitName, "R&D+QA".into()),
            (DnType::CommonName, "#Jörg \"JJ\" <j@x>; \\ ".into()),
            (
                email_type(),
                DnValue::Ia5String("joerg@example.com".try_into().expect("ia5")),
            ),
        ],
        &[0x8f, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0],
    );
    params.subject_alt_names = vec![
        SanType::DnsName("client.example.org".try_into().expect("dns")),
        SanType::DnsName("*.svc.example.org".try_into().expect("dns")),
        SanType::URI(
            "spiffe://example.org/ns/prod/sa/api"
                .try_into()
                .expect("uri"),
        ),
        SanType::URI("https://example.org/x?a=1,b".try_into().expect("uri")),
        SanType::Rfc822Name("joerg@example.com".try_into().expect("email")),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
    ];
    let (cert, key) = leaf(params, &root);
    Issued::new(&cert, &key)
}

/// CJK UTF-8, BMPString, UniversalString (outside the BMP) and a one-octet serial.
fn cjk_fixture() -> Issued {
    let root = root_ca();
    let params = base_params(
        &[
            (
                DnType::LocalityName,
                DnValue::PrintableString("Tokyo".try_into().expect("printable")),
            ),
            (
                DnType::OrganizationName,
                DnValue::BmpString(BmpString::try_from("Ünïcødé GmbH").expect("bmp")),
            ),
            (
                DnType::OrganizationalUnitName,
                DnValue::UniversalString(UniversalString::try_from("😀 team").expect("universal")),
            ),
            (DnType::CommonName, "漢字テスト".into()),
        ],
        &[0x01],
    );
    let (cert, key) = leaf(params, &root);
    Issued::new(&cert, &key)
}

/// Names rcgen cannot write, spliced into an rcgen certificate: DCs, a leading
/// space, repeated OU, a multi-valued RDN, an unknown OID, a lone `#`, a
/// trailing space, T61 Latin-1 and control characters.
fn spliced_fixture() -> Issued {
    let root = root_ca();
    let params = base_params(&[(DnType::CommonName, "placeholder".into())], &[0x7f, 0xff]);
    let (cert, key) = leaf(params, &root);
    let subject = der::name(&[
        &[(OID_DC, IA5, b"org")],
        &[(OID_DC, IA5, b"example")],
        &[(OID_O, UTF8, b" lead")],
        &[(OID_OU, UTF8, b"a")],
        &[(OID_OU, UTF8, b"b")],
        &[(OID_CN, UTF8, b"multi"), (OID_UID, UTF8, b"u1")],
        &[(OID_UNKNOWN, UTF8, b"custom")],
        &[(OID_TITLE, UTF8, b"#")],
        &[(OID_SERIAL_NUMBER, PRINTABLE, b"trail ")],
        &[(OID_L, T61, b"M\xfcnchen")],
        &[(OID_STREET, UTF8, b"a\x01b\tc/d+e")],
    ]);
    Issued {
        chain: vec![der::with_subject(cert.der(), &subject)],
        ..Issued::new(&cert, &key)
    }
}

/// Leaf issued by an intermediate, sent with that intermediate.
fn chain_fixture() -> Issued {
    let root = root_ca();
    let intermediate = ca(
        &[
            (DnType::OrganizationName, "Example Trust".into()),
            (DnType::CommonName, "Example Issuing CA 1".into()),
        ],
        Some(&root),
    );
    let mut params = base_params(&[(DnType::CommonName, "svc-a".into())], &[0x0a, 0x0b]);
    params.subject_alt_names = vec![SanType::URI(
        "spiffe://example.org/svc-a".try_into().expect("uri"),
    )];
    let (cert, key) = leaf(params, &intermediate);
    Issued {
        chain: vec![cert.der().to_vec(), intermediate.cert.der().to_vec()],
        ..Issued::new(&cert, &key)
    }
}

/// One attribute `CN` (or an unknown OID) per entry: value types OpenSSL 3.0
/// accepts (printed as text or hex dumps) and ones it refuses to decode.
fn edge_subject_accepted() -> Vec<u8> {
    let seq_x = der::tlv(0x0c, b"x");
    der::name(&[
        &[(OID_UNKNOWN, PRINTABLE, b"pr")],
        &[(OID_CN, 0x03, b"\x00AB")],
        &[(OID_CN, 0x30, &seq_x)],
        &[(OID_CN, 0x07, b"\x01")],
        &[(OID_CN, 0x12, b"123 456")],
        &[(OID_CN, IA5, b"a\xe9")],
        &[(OID_CN, PRINTABLE, b"a*b")],
        &[(OID_CN, UTF8, b"")],
        &[(OID_CN, UTF8, b"A\x00B")],
        &[(OID_CN, 0x1c, b"\x00\x10\xff\xff")],
        &[(OID_CN, 0x1e, b"\x00\xe9")],
    ])
}

/// `(name, tag, value)` of single-attribute subjects OpenSSL 3.0 cannot decode.
const EDGE_REFUSED: &[(&str, u8, &[u8])] = &[
    ("enumerated", 0x0a, b"\x01"),
    ("visible_string", 0x1a, b"ab"),
    ("general_string", 0x1b, b"ab"),
    ("utc_time", 0x17, b"ab"),
    ("set", 0x31, b"\x0c\x01x"),
    ("context_specific", 0x80, b"\x01"),
    ("bmp_odd_length", 0x1e, b"\x00"),
    ("bmp_surrogate_pair", 0x1e, b"\xd8\x3d\xde\x00"),
    ("universal_beyond_unicode", 0x1c, b"\x00\x11\x00\x00"),
    ("utf8_invalid_byte", UTF8, b"a\xffb"),
    ("utf8_overlong", UTF8, b"\xc0\xaf"),
    ("utf8_surrogate", UTF8, b"\xed\xa0\x80"),
];

fn spliced_leaf(subject: &[u8], issuer: &Ca) -> Issued {
    let (cert, key) = leaf(
        base_params(&[(DnType::CommonName, "edge".into())], &[0x42]),
        issuer,
    );
    Issued {
        chain: vec![der::with_subject(cert.der(), subject)],
        ..Issued::new(&cert, &key)
    }
}

fn negative_serial_fixture() -> Issued {
    let root = root_ca();
    let (cert, key) = leaf(
        base_params(&[(DnType::CommonName, "negative serial".into())], &[0x42]),
        &root,
    );
    let serial = der::tlv(0x02, &[0xff, 0x7f]);
    Issued {
        chain: vec![der::with_tbs_fields(cert.der(), &[(0, &serial)])],
        ..Issued::new(&cert, &key)
    }
}

fn edge_fixtures() -> Vec<(String, Issued)> {
    let root = root_ca();
    let mut out = vec![
        (
            "edge_accepted".to_owned(),
            spliced_leaf(&edge_subject_accepted(), &root),
        ),
        ("edge_negative_serial".to_owned(), negative_serial_fixture()),
    ];
    for (name, tag, value) in EDGE_REFUSED {
        out.push((
            format!("edge_refused_{name}"),
            spliced_leaf(&der::name(&[&[(OID_CN, *tag, value)]]), &root),
        ));
    }
    out
}

fn identity(cert: &Issued, verify: VerifyResult) -> Identity {
    Identity {
        verify,
        cert: Some(Arc::new(
            ClientCert::from_chain(&cert.chain).expect("parses"),
        )),
        tls: TlsInfo {
            protocol: "TLSv1.3".into(),
            cipher: "TLS_AES_256_GCM_SHA384".into(),
            server_name: Some("api.example.org".into()),
            remote_addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
            remote_port: 50_123,
        },
    }
}

/// Writes every fixture (PEM chain and leaf key) and this crate's values for it
/// into `$CERTGATE_IDENTITY_DUMP`, for `tools/compare_with_nginx.sh`.
#[test]
#[ignore = "development aid: run with CERTGATE_IDENTITY_DUMP=<dir> --ignored"]
fn dump_fixtures() {
    let Ok(dir) = std::env::var("CERTGATE_IDENTITY_DUMP") else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir).expect("dump dir");
    let mut fixtures: Vec<(String, Issued)> = vec![
        ("latin".into(), latin_fixture()),
        ("cjk".into(), cjk_fixture()),
        ("spliced".into(), spliced_fixture()),
        ("chain".into(), chain_fixture()),
    ];
    fixtures.extend(edge_fixtures());
    for (name, fixture) in fixtures {
        let chain: String = fixture.chain.iter().map(|der| format::pem(der)).collect();
        std::fs::write(dir.join(format!("{name}.crt")), chain).expect("write chain");
        std::fs::write(dir.join(format!("{name}.key")), &fixture.key_pem).expect("write key");
        let Ok(cert) = ClientCert::from_chain(&fixture.chain) else {
            std::fs::write(dir.join(format!("{name}.ours")), "unparseable\n")
                .expect("write values");
            continue;
        };
        let mut id = identity(
            &fixture,
            VerifyResult::Failed("self-signed certificate in certificate chain".into()),
        );
        id.cert = Some(Arc::new(cert));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let values: String = Variable::ALL
            .iter()
            .map(|&v| format!("{}={}\n", v.name(), id.var(v, now)))
            .collect();
        std::fs::write(dir.join(format!("{name}.ours")), values).expect("write values");
    }
}

fn no_cert_identity(verify: VerifyResult) -> Identity {
    Identity {
        verify,
        cert: None,
        tls: TlsInfo {
            protocol: "TLSv1.2".into(),
            cipher: "ECDHE-ECDSA-AES128-GCM-SHA256".into(),
            server_name: None,
            remote_addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            remote_port: 443,
        },
    }
}

fn var(id: &Identity, v: Variable) -> String {
    id.var(v, NOT_BEFORE).into_owned()
}

/// `ngx_unescape_uri` for the escaped PEM: `%XX` back to bytes.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("hex escape"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("PEM is ASCII")
}

// Expected DN, serial and date strings below are what nginx 1.22.1 / OpenSSL
// 3.0.22 returned for these certificates ($ssl_client_* through
// tools/compare_with_nginx.sh, and `openssl x509 -nameopt RFC2253|compat
// -serial -dates`, which agree).

#[test]
fn latin_subject_with_rfc2253_specials_matches_nginx() {
    let id = identity(&latin_fixture(), VerifyResult::Success);
    assert_eq!(
        var(&id, Variable::SslClientSDn),
        r#"emailAddress=joerg@example.com,CN=\#J\C3\B6rg \"JJ\" \<j@x\>\; \\\ ,OU=R&D\+QA,O=M\C3\BCller & S\C3\B6hne\, GmbH,L=Z\C3\BCrich,ST=Baden-W\C3\BCrttemberg,C=DE"#
    );
    assert_eq!(
        var(&id, Variable::SslClientSDnLegacy),
        r#"/C=DE/ST=Baden-W\xC3\xBCrttemberg/L=Z\xC3\xBCrich/O=M\xC3\xBCller & S\xC3\xB6hne, GmbH/OU=R&D\+QA/CN=#J\xC3\xB6rg "JJ" <j@x>; \ /emailAddress=joerg@example.com"#
    );
    assert_eq!(
        var(&id, Variable::SslClientIDn),
        r"CN=Example Root CA \C3\84,O=Example Trust,C=US"
    );
    assert_eq!(
        var(&id, Variable::SslClientIDnLegacy),
        r"/C=US/O=Example Trust/CN=Example Root CA \xC3\x84"
    );
    // DER serial 00 8F 12 …: the sign octet is not printed.
    assert_eq!(var(&id, Variable::SslClientSerial), "8F123456789ABCDEF0");
    assert_eq!(
        var(&id, Variable::SslClientVStart),
        "Nov  2 09:05:01 2026 GMT"
    );
    assert_eq!(
        var(&id, Variable::SslClientVEnd),
        "Jan 31 00:00:00 2027 GMT"
    );
}

#[test]
fn cjk_bmp_and_universal_strings_match_nginx() {
    let id = identity(&cjk_fixture(), VerifyResult::Success);
    assert_eq!(
        var(&id, Variable::SslClientSDn),
        r"CN=\E6\BC\A2\E5\AD\97\E3\83\86\E3\82\B9\E3\83\88,OU=\F0\9F\98\80 team,O=\C3\9Cn\C3\AFc\C3\B8d\C3\A9 GmbH,L=Tokyo"
    );
    // X509_NAME_oneline prints the raw BMP/Universal octets.
    assert_eq!(
        var(&id, Variable::SslClientSDnLegacy),
        r"/L=Tokyo/O=\x00\xDC\x00n\x00\xEF\x00c\x00\xF8\x00d\x00\xE9\x00 \x00G\x00m\x00b\x00H/OU=\x00\x01\xF6\x00\x00\x00\x00 \x00\x00\x00t\x00\x00\x00e\x00\x00\x00a\x00\x00\x00m/CN=\xE6\xBC\xA2\xE5\xAD\x97\xE3\x83\x86\xE3\x82\xB9\xE3\x83\x88"
    );
    assert_eq!(var(&id, Variable::SslClientSerial), "01");
    let cert = id.cert.as_deref().expect("cert");
    assert_eq!(cert.subject_cn(), Some("漢字テスト"));
    assert_eq!(cert.subject_values("O"), ["Ünïcødé GmbH"]);
    assert_eq!(cert.subject_values("OU"), ["😀 team"]);
    assert_eq!(var(&id, Variable::SslClientSDnCn), "漢字テスト");
}

#[test]
fn multi_valued_rdn_repeated_and_unknown_attributes_match_nginx() {
    let id = identity(&spliced_fixture(), VerifyResult::Success);
    assert_eq!(
        var(&id, Variable::SslClientSDn),
        r"street=a\01b\09c/d\+e,L=M\C3\BCnchen,serialNumber=trail\ ,title=#,1.2.3.4.5=#0C06637573746F6D,UID=u1+CN=multi,OU=b,OU=a,O=\ lead,DC=example,DC=org"
    );
    assert_eq!(
        var(&id, Variable::SslClientSDnLegacy),
        r"/DC=org/DC=example/O= lead/OU=a/OU=b/CN=multi+UID=u1/1.2.3.4.5=custom/title=#/serialNumber=trail /L=M\xFCnchen/street=a\x01b\x09c\/d\+e"
    );
    assert_eq!(var(&id, Variable::SslClientSerial), "7FFF");

    let cert = id.cert.as_deref().expect("cert");
    assert_eq!(cert.subject_values("OU"), ["a", "b"]);
    assert_eq!(cert.subject_values("dc"), ["org", "example"]);
    assert_eq!(cert.subject_values("UID"), ["u1"]);
    assert_eq!(cert.subject_values("1.2.3.4.5"), ["custom"]);
    assert_eq!(cert.subject_values("L"), ["München"]);
    assert_eq!(cert.subject_values("O"), [" lead"]);
    assert!(cert.subject_values("C").is_empty());
    assert_eq!(cert.subject_cn(), Some("multi"));
    assert_eq!(var(&id, Variable::SslClientSDnOu), "a,b");
    assert_eq!(var(&id, Variable::SslClientSDnCn), "multi");
}

#[test]
fn value_types_openssl_dumps_or_converts_match_nginx() {
    let root = root_ca();
    let id = identity(
        &spliced_leaf(&edge_subject_accepted(), &root),
        VerifyResult::Success,
    );
    assert_eq!(
        var(&id, Variable::SslClientSDn),
        r"CN=\C3\A9,CN=\F4\8F\BF\BF,CN=A\00B,CN=,CN=a*b,CN=a\C3\A9,CN=123 456,CN=#070101,CN=#30030C0178,CN=#0303004142,1.2.3.4.5=#13027072"
    );
    assert_eq!(
        var(&id, Variable::SslClientSDnLegacy),
        r"/1.2.3.4.5=pr/CN=AB/CN=0\x03\x0C\x01x/CN=\x01/CN=123 456/CN=a\xE9/CN=a*b/CN=/CN=A\x00B/CN=\x00\x10\xFF\xFF/CN=\x00\xE9"
    );
}

#[test]
fn names_openssl_refuses_to_decode_are_refused() {
    // nginx fails the handshake for each of these (tools/compare_with_nginx.sh).
    let root = root_ca();
    for (name, tag, value) in EDGE_REFUSED {
        let fixture = spliced_leaf(&der::name(&[&[(OID_CN, *tag, value)]]), &root);
        match ClientCert::from_chain(&fixture.chain) {
            Err(IdentityError::Name {
                field: "subject", ..
            }) => {}
            other => panic!("{name}: expected a name error, got {other:?}"),
        }
    }
}

#[test]
fn negative_serial_matches_nginx() {
    let id = identity(&negative_serial_fixture(), VerifyResult::Success);
    assert_eq!(var(&id, Variable::SslClientSerial), "-81");
}

#[test]
fn fingerprints_hash_the_leaf_der_and_spki() {
    use sha1::Digest as _;
    let fixture = latin_fixture();
    let id = identity(&fixture, VerifyResult::Success);
    let cert = id.cert.as_deref().expect("cert");
    let sha1_hex = hex::encode(sha1::Sha1::digest(&fixture.chain[0]));
    let sha256_hex = hex::encode(sha2::Sha256::digest(&fixture.chain[0]));
    assert_eq!(var(&id, Variable::SslClientFingerprint), sha1_hex);
    assert_eq!(var(&id, Variable::SslClientFingerprintSha256), sha256_hex);
    assert_eq!(cert.fingerprint_sha256_hex(), sha256_hex);
    assert_eq!(
        cert.spki_sha256_hex(),
        hex::encode(sha2::Sha256::digest(&fixture.spki_der))
    );
    assert_ne!(cert.spki_sha256_hex(), cert.fingerprint_sha256_hex());
    assert_eq!(cert.leaf_der(), &fixture.chain[0][..]);
    assert_eq!(cert.not_after_unix(), NOT_AFTER);
}

#[test]
fn escaped_cert_is_the_pem_escaped_as_nginx_does() {
    let fixture = latin_fixture();
    let id = identity(&fixture, VerifyResult::Success);
    let escaped = var(&id, Variable::SslClientEscapedCert);
    // Shape nginx produced for these certificates.
    assert!(
        escaped.starts_with("-----BEGIN%20CERTIFICATE-----%0AMII"),
        "{escaped}"
    );
    assert!(
        escaped.ends_with("%0A-----END%20CERTIFICATE-----%0A"),
        "{escaped}"
    );
    assert!(!escaped.contains(['+', '/', '=', ' ', '\n']));
    assert_eq!(percent_decode(&escaped), fixture.rcgen_pem);
}

#[test]
fn days_remaining_uses_the_given_clock() {
    let id = identity(&latin_fixture(), VerifyResult::Success);
    // (NOT_AFTER - NOT_BEFORE) / 86400 = 89.6 days.
    assert_eq!(id.var(Variable::SslClientVRemain, NOT_BEFORE), "89");
    assert_eq!(id.var(Variable::SslClientVRemain, NOT_AFTER - 86_401), "1");
    assert_eq!(id.var(Variable::SslClientVRemain, NOT_AFTER - 100), "0");
    assert_eq!(id.var(Variable::SslClientVRemain, NOT_AFTER + 100), "0");
}

#[test]
fn certgate_variables_give_raw_values_and_sans() {
    let id = identity(&latin_fixture(), VerifyResult::Success);
    assert_eq!(
        var(&id, Variable::SslClientSDnCn),
        "#Jörg \"JJ\" <j@x>; \\ "
    );
    assert_eq!(var(&id, Variable::SslClientSDnO), "Müller & Söhne, GmbH");
    assert_eq!(var(&id, Variable::SslClientSDnOu), "R&D+QA");
    assert_eq!(
        var(&id, Variable::SslClientSanDns),
        "client.example.org,*.svc.example.org"
    );
    assert_eq!(
        var(&id, Variable::SslClientSanUri),
        "spiffe://example.org/ns/prod/sa/api,https://example.org/x?a=1,b"
    );
    assert_eq!(var(&id, Variable::SslClientSanEmail), "joerg@example.com");
    assert_eq!(
        var(&id, Variable::SslClientSpiffeId),
        "spiffe://example.org/ns/prod/sa/api"
    );
    let cert = id.cert.as_deref().expect("cert");
    assert_eq!(cert.san_dns(), ["client.example.org", "*.svc.example.org"]);
    assert_eq!(cert.san_uri().len(), 2);
    assert_eq!(cert.san_email(), ["joerg@example.com"]);
    assert_eq!(cert.subject_values("emailAddress"), ["joerg@example.com"]);
    assert_eq!(cert.subject_dn(), var(&id, Variable::SslClientSDn));
}

#[test]
fn xfcc_follows_envoy_and_needs_a_verified_certificate() {
    let fixture = latin_fixture();
    let id = identity(&fixture, VerifyResult::Success);
    let cert = id.cert.as_deref().expect("cert");
    let expected = format!(
        "Hash={};Subject=\"{}\";URI=spiffe://example.org/ns/prod/sa/api;URI=\"https://example.org/x?a=1,b\";DNS=client.example.org;DNS=*.svc.example.org",
        cert.fingerprint_sha256_hex(),
        r#"emailAddress=joerg@example.com,CN=\#J\C3\B6rg \"JJ\" \<j@x\>\; \\\ ,OU=R&D\+QA,O=M\C3\BCller & S\C3\B6hne\, GmbH,L=Z\C3\BCrich,ST=Baden-W\C3\BCrttemberg,C=DE"#
    );
    assert_eq!(var(&id, Variable::SslClientXfcc), expected);

    let no_uri = identity(&cjk_fixture(), VerifyResult::Success);
    assert!(var(&no_uri, Variable::SslClientXfcc).ends_with(";URI="));

    let failed = identity(
        &fixture,
        VerifyResult::Failed("certificate has expired".into()),
    );
    assert_eq!(var(&failed, Variable::SslClientXfcc), "");
    assert_eq!(var(&failed, Variable::SslClientCertRfc9440), "");
}

#[test]
fn rfc9440_fields_are_sf_binary_der() {
    use base64::Engine as _;
    let fixture = chain_fixture();
    let id = identity(&fixture, VerifyResult::Success);
    let decode = |field: &str| {
        let inner = field
            .strip_prefix(':')
            .and_then(|f| f.strip_suffix(':'))
            .expect("sf-binary");
        base64::engine::general_purpose::STANDARD
            .decode(inner)
            .expect("base64")
    };
    assert_eq!(
        decode(&var(&id, Variable::SslClientCertRfc9440)),
        fixture.chain[0]
    );
    assert_eq!(
        decode(&var(&id, Variable::SslClientCertChainRfc9440)),
        fixture.chain[1]
    );
    assert_eq!(
        var(&id, Variable::SslClientIDn),
        "CN=Example Issuing CA 1,O=Example Trust"
    );
    assert_eq!(
        var(&id, Variable::SslClientIDnLegacy),
        "/O=Example Trust/CN=Example Issuing CA 1"
    );
    assert_eq!(var(&id, Variable::SslClientSerial), "0A0B");

    // Two intermediates: an sf-list, members separated by ", ".
    let mut longer = fixture.chain.clone();
    longer.push(fixture.chain[1].clone());
    let cert = ClientCert::from_chain(&longer).expect("parses");
    let list = cert.rfc9440_chain();
    let members: Vec<&str> = list.split(", ").collect();
    assert_eq!(members.len(), 2);
    assert_eq!(decode(members[1]), fixture.chain[1]);

    // Leaf only: no chain value.
    let single = identity(&latin_fixture(), VerifyResult::Success);
    assert_eq!(var(&single, Variable::SslClientCertChainRfc9440), "");
}

#[test]
fn connection_variables_and_verify_status() {
    let id = identity(&latin_fixture(), VerifyResult::Success);
    assert_eq!(var(&id, Variable::SslClientVerify), "SUCCESS");
    assert_eq!(var(&id, Variable::SslProtocol), "TLSv1.3");
    assert_eq!(var(&id, Variable::SslCipher), "TLS_AES_256_GCM_SHA384");
    assert_eq!(var(&id, Variable::SslServerName), "api.example.org");
    assert_eq!(var(&id, Variable::RemoteAddr), "::1");
    assert_eq!(var(&id, Variable::RemotePort), "50123");

    let failed = identity(
        &latin_fixture(),
        VerifyResult::Failed("unable to get local issuer certificate".into()),
    );
    assert_eq!(
        var(&failed, Variable::SslClientVerify),
        "FAILED:unable to get local issuer certificate"
    );
    // A failed certificate is still described, as nginx does with optional_no_ca.
    assert_eq!(
        var(&failed, Variable::SslClientSerial),
        "8F123456789ABCDEF0"
    );
}

#[test]
fn without_a_certificate_every_certificate_variable_is_empty() {
    let id = no_cert_identity(VerifyResult::None);
    assert_eq!(var(&id, Variable::SslClientVerify), "NONE");
    assert_eq!(var(&id, Variable::SslServerName), "");
    assert_eq!(var(&id, Variable::RemoteAddr), "192.0.2.7");
    let connection = [
        Variable::SslClientVerify,
        Variable::SslProtocol,
        Variable::SslCipher,
        Variable::RemoteAddr,
        Variable::RemotePort,
    ];
    for &v in Variable::ALL.iter().filter(|v| !connection.contains(v)) {
        assert_eq!(var(&id, v), "", "{v}");
    }
}

#[test]
fn malformed_chains_are_errors() {
    let empty: [Vec<u8>; 0] = [];
    assert!(matches!(
        ClientCert::from_chain(&empty),
        Err(IdentityError::EmptyChain)
    ));
    assert!(matches!(
        ClientCert::from_chain(&[b"not a certificate".to_vec()]),
        Err(IdentityError::Parse(_))
    ));
    let mut trailing = latin_fixture().chain[0].clone();
    trailing.extend_from_slice(&[0, 0]);
    assert!(matches!(
        ClientCert::from_chain(&[trailing]),
        Err(IdentityError::TrailingData(2))
    ));
}

#[test]
fn variable_names_round_trip() {
    for &v in Variable::ALL {
        assert_eq!(v.name().parse::<Variable>().expect("known"), v);
        assert_eq!(v.to_string(), format!("${}", v.name()));
    }
    assert_eq!(
        "SSL_Client_S_DN"
            .parse::<Variable>()
            .expect("case-insensitive"),
        Variable::SslClientSDn
    );
    let err = "ssl_client_nope".parse::<Variable>().expect_err("unknown");
    assert_eq!(err.to_string(), "unknown variable \"$ssl_client_nope\"");
    assert_eq!(Variable::ALL.len(), 27);
}

#[test]
fn templates_parse_like_nginx() {
    let id = identity(&chain_fixture(), VerifyResult::Success);
    let render = |t: &str| Template::parse(t).expect("valid").render(&id, NOT_BEFORE);
    assert_eq!(render("$ssl_client_s_dn"), "CN=svc-a");
    assert_eq!(
        render("cn=${ssl_client_s_dn_cn}_x;v=$ssl_client_verify"),
        "cn=svc-a_x;v=SUCCESS"
    );
    // A name ends at the first byte that cannot be part of it.
    assert_eq!(render("$ssl_client_s_dn_cn-$remote_port"), "svc-a-50123");
    assert_eq!(render("$SSL_CLIENT_VERIFY"), "SUCCESS");
    assert_eq!(render("plain text"), "plain text");
    assert_eq!(render(""), "");
    let t = Template::parse("a${ssl_protocol}b$ssl_cipher").expect("valid");
    assert_eq!(
        t.variables().collect::<Vec<_>>(),
        [Variable::SslProtocol, Variable::SslCipher]
    );
    assert_eq!(t.source(), "a${ssl_protocol}b$ssl_cipher");
}

#[test]
fn template_errors_name_the_problem() {
    let err = |t: &str| Template::parse(t).expect_err("invalid").to_string();
    assert_eq!(
        err("x $ssl_client_nope y"),
        "unknown variable \"$ssl_client_nope\""
    );
    assert_eq!(
        err("${ssl_client_bogus}"),
        "unknown variable \"$ssl_client_bogus\""
    );
    assert!(
        err("trailing $").starts_with("invalid variable name at byte 9"),
        "{}",
        err("trailing $")
    );
    assert!(err("a$-b").starts_with("invalid variable name at byte 1"));
    assert!(err("${}").starts_with("invalid variable name"));
    assert!(err("${ssl_client_s_dn").starts_with("the closing bracket of the variable at byte 0"));
    assert!(err("${ssl client}").starts_with("the closing bracket"));
}

fn header_names(plan: &HeaderPlan) -> Vec<&str> {
    plan.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn presets_set_the_documented_headers() {
    let nginx = HeaderPlan::new(&[Preset::Nginx], &[]).expect("plan");
    assert_eq!(
        header_names(&nginx),
        [
            "x-ssl-client-verify",
            "x-ssl-client-s-dn",
            "x-ssl-client-i-dn",
            "x-ssl-client-serial",
            "x-ssl-client-fingerprint",
            "x-ssl-client-v-start",
            "x-ssl-client-v-end",
            "x-ssl-client-cert",
        ]
    );
    let all = HeaderPlan::new(
        &[Preset::Xfcc, Preset::Rfc9440, Preset::Xfcc, Preset::None],
        &[],
    )
    .expect("plan");
    assert_eq!(
        header_names(&all),
        [
            "x-forwarded-client-cert",
            "client-cert",
            "client-cert-chain"
        ]
    );
    assert!(header_names(&HeaderPlan::new(&[Preset::None], &[]).expect("plan")).is_empty());
}

#[test]
fn set_overrides_presets_case_insensitively_and_keeps_order() {
    let set = vec![
        ("X-Client-CN".to_owned(), "$ssl_client_s_dn_cn".to_owned()),
        (
            "X-SSL-Client-Verify".to_owned(),
            "verify=$ssl_client_verify".to_owned(),
        ),
        ("X-Route-Id".to_owned(), "static".to_owned()),
        (
            "x-client-cn".to_owned(),
            "cn:$ssl_client_s_dn_cn".to_owned(),
        ),
    ];
    let plan = HeaderPlan::new(&[Preset::Nginx], &set).expect("plan");
    let names = header_names(&plan);
    assert_eq!(
        names
            .iter()
            .filter(|n| **n == "x-ssl-client-verify")
            .count(),
        1
    );
    assert_eq!(
        &names[names.len() - 3..],
        ["x-ssl-client-verify", "x-route-id", "x-client-cn"]
    );

    let id = identity(&chain_fixture(), VerifyResult::Success);
    let prepared = plan.prepare(&id, NOT_BEFORE);
    assert_eq!(
        prepared.get("X-SSL-Client-Verify").expect("set"),
        "verify=SUCCESS"
    );
    assert_eq!(prepared.get("x-client-cn").expect("set"), "cn:svc-a");
    assert_eq!(prepared.get("x-route-id").expect("set"), "static");
    assert_eq!(prepared.get("x-ssl-client-s-dn").expect("set"), "CN=svc-a");
    assert_eq!(prepared.headers.len(), 10);
}

#[test]
fn plan_errors_name_the_header() {
    let bad_template =
        HeaderPlan::new(&[], &[("X-Who".into(), "$nobody".into())]).expect_err("unknown variable");
    assert_eq!(
        bad_template.to_string(),
        "header X-Who: unknown variable \"$nobody\""
    );
    let bad_name = HeaderPlan::new(&[], &[("X Who".into(), "x".into())]).expect_err("invalid name");
    assert_eq!(bad_name.to_string(), "invalid header name \"X Who\"");
    let framing =
        HeaderPlan::new(&[], &[("Content-Length".into(), "0".into())]).expect_err("framing header");
    assert!(matches!(framing, IdentityError::ForbiddenHeader(ref h) if h == "Content-Length"));
}

#[test]
fn prepared_headers_omit_empty_and_invalid_values() {
    let set = vec![("X-Client-CN".to_owned(), "$ssl_client_s_dn_cn".to_owned())];
    let plan =
        HeaderPlan::new(&[Preset::Nginx, Preset::Xfcc, Preset::Rfc9440], &set).expect("plan");

    // No certificate: only the verify status has a value.
    let none = plan.prepare(&no_cert_identity(VerifyResult::None), NOT_BEFORE);
    assert_eq!(none.headers.len(), 1);
    assert_eq!(none.get("x-ssl-client-verify").expect("set"), "NONE");

    // Unverified certificate: nginx headers yes, XFCC / RFC 9440 no.
    let failed = plan.prepare(
        &identity(
            &chain_fixture(),
            VerifyResult::Failed("certificate revoked".into()),
        ),
        NOT_BEFORE,
    );
    assert_eq!(
        failed.get("x-ssl-client-verify").expect("set"),
        "FAILED:certificate revoked"
    );
    assert!(failed.get("x-ssl-client-cert").is_some());
    assert!(failed.get("x-forwarded-client-cert").is_none());
    assert!(failed.get("client-cert").is_none());

    // Verified chain: everything, header values byte-identical to the variables.
    let id = identity(&chain_fixture(), VerifyResult::Success);
    let ok = plan.prepare(&id, NOT_BEFORE);
    assert_eq!(ok.headers.len(), 12);
    assert_eq!(
        ok.get("x-ssl-client-cert").expect("set"),
        var(&id, Variable::SslClientEscapedCert).as_str()
    );
    assert_eq!(
        ok.get("client-cert-chain").expect("set"),
        var(&id, Variable::SslClientCertChainRfc9440).as_str()
    );

    // A raw CN with a NUL byte cannot be a header value: that header is dropped,
    // the escaped DN (which is safe) is still sent.
    let root = root_ca();
    let nul = identity(
        &spliced_leaf(&der::name(&[&[(OID_CN, UTF8, b"A\x00B")]]), &root),
        VerifyResult::Success,
    );
    let prepared = plan.prepare(&nul, NOT_BEFORE);
    assert!(prepared.get("x-client-cn").is_none());
    assert_eq!(prepared.get("x-ssl-client-s-dn").expect("set"), r"CN=A\00B");
}

#[test]
fn anti_spoofing_covers_identity_headers_and_plan_names() {
    for name in [
        "X-SSL-Client-S-DN",
        "x-ssl-client-verify",
        "X-SSL-CLIENT-anything",
        "X-Forwarded-Client-Cert",
    ] {
        assert!(HeaderPlan::is_stripped(name), "{name}");
    }
    for name in ["Client-Cert", "client-cert-chain", "CLIENT-CERT"] {
        assert!(HeaderPlan::is_stripped(name), "{name}");
    }
    for name in [
        "x-ssl-clientx",
        "x-ssl-client",
        "client-certs",
        "x-real-ip",
        "authorization",
        "",
    ] {
        assert!(!HeaderPlan::is_stripped(name), "{name}");
    }
    let set = vec![("X-Client-CN".to_owned(), "$ssl_client_s_dn_cn".to_owned())];
    let plan = HeaderPlan::new(&[Preset::Rfc9440], &set).expect("plan");
    let stripped: Vec<&str> = plan.stripped_names().map(|n| n.as_str()).collect();
    assert_eq!(
        stripped,
        ["client-cert", "client-cert-chain", "x-client-cn"]
    );
}

#[test]
fn a_signed_request_carries_the_minting_certificate_with_verify_signed() {
    let fixture = latin_fixture();
    let mtls = identity(&fixture, VerifyResult::Success);
    let signed = identity(&fixture, VerifyResult::Signed);
    assert_eq!(var(&signed, Variable::SslClientVerify), "SIGNED");
    assert_eq!(VerifyResult::Signed.to_string(), "SIGNED");
    // Every certificate value is the one an mTLS request of that certificate gets,
    // including those that exist only for a certificate certgate vouches for.
    for v in Variable::ALL
        .iter()
        .filter(|v| **v != Variable::SslClientVerify)
    {
        assert_eq!(var(&signed, *v), var(&mtls, *v), "{v}");
    }
    assert!(!var(&signed, Variable::SslClientXfcc).is_empty());
    assert!(!var(&signed, Variable::SslClientCertRfc9440).is_empty());
}
