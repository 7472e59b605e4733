//! Distinguished names printed exactly as OpenSSL 3.0 prints them for nginx:
//! `X509_NAME_print_ex(.., XN_FLAG_RFC2253)` for `$ssl_client_s_dn`/`_i_dn`,
//! `X509_NAME_oneline` for the `_legacy` variants, and the raw UTF-8 value of
//! each attribute for allow-rules and `$ssl_client_s_dn_cn`.
//!
//! The rules below follow `crypto/asn1/a_strex.c` (`do_name_ex`, `do_print_ex`,
//! `do_buf`, `do_esc_char`, the `char_type` table) and `crypto/x509/x509_obj.c`.

use std::borrow::Cow;
use std::fmt::Write;

use x509_parser::x509::X509Name;

use crate::oid;

/// Universal tags of the attribute-value types OpenSSL distinguishes.
const TAG_BIT_STRING: u32 = 3;
const TAG_UTF8_STRING: u32 = 12;
const TAG_SEQUENCE: u32 = 16;
const TAG_SET: u32 = 17;
const TAG_NUMERIC_STRING: u32 = 18;
const TAG_PRINTABLE_STRING: u32 = 19;
const TAG_T61_STRING: u32 = 20;
const TAG_IA5_STRING: u32 = 22;
const TAG_UTC_TIME: u32 = 23;
const TAG_GENERALIZED_TIME: u32 = 24;
const TAG_VISIBLE_STRING: u32 = 26;
const TAG_GENERAL_STRING: u32 = 27;
const TAG_UNIVERSAL_STRING: u32 = 28;
const TAG_BMP_STRING: u32 = 30;

/// Why OpenSSL would not accept or print a name. OpenSSL rejects such a
/// certificate while decoding it (so nginx fails the handshake); certgate
/// refuses it too rather than print a subject nginx never would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameError {
    AttributeType,
    ValueType,
    Utf8String,
    BmpString,
    UniversalString,
    BitString,
}

impl NameError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            NameError::AttributeType => "an attribute type is not a valid OBJECT IDENTIFIER",
            NameError::ValueType => {
                "an attribute value has a type OpenSSL does not accept in names"
            }
            NameError::Utf8String => "a UTF8String is not valid UTF-8",
            NameError::BmpString => "a BMPString is not valid UCS-2",
            NameError::UniversalString => "a UniversalString is not valid UCS-4",
            NameError::BitString => "a BIT STRING value is malformed",
        }
    }
}

/// The attribute values `d2i_X509_NAME` accepts, as observed with OpenSSL 3.0.22
/// (`openssl x509` on certificates with each value type): the `ASN1_PRINTABLE`
/// string types, BIT STRING, SEQUENCE and a few "unknown" universal tags, all
/// primitive except SEQUENCE; and, because OpenSSL canonicalises every name to
/// UTF-8, only well-formed UTF8String/BMPString/UniversalString contents.
pub(crate) fn check(entries: &[Entry<'_>]) -> Result<(), NameError> {
    for e in entries {
        if !valid_oid(e.oid) {
            return Err(NameError::AttributeType);
        }
        if e.class != 0 || (e.constructed != (e.tag == TAG_SEQUENCE)) {
            return Err(NameError::ValueType);
        }
        match e.tag {
            TAG_UTF8_STRING => {
                std::str::from_utf8(e.content).map_err(|_| NameError::Utf8String)?;
            }
            TAG_BMP_STRING => {
                // UCS-2: every unit is a character, so surrogates are invalid even in pairs.
                let valid = e.content.len() % 2 == 0
                    && e.content.chunks(2).all(|c| !(0xd8..=0xdf).contains(&c[0]));
                if !valid {
                    return Err(NameError::BmpString);
                }
            }
            TAG_UNIVERSAL_STRING => {
                let valid = e.content.len() % 4 == 0
                    && e.content.chunks_exact(4).all(|c| {
                        char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])).is_some()
                    });
                if !valid {
                    return Err(NameError::UniversalString);
                }
            }
            TAG_BIT_STRING => {
                if !matches!(e.content.first(), Some(&unused) if unused <= 7) {
                    return Err(NameError::BitString);
                }
            }
            TAG_SEQUENCE | TAG_NUMERIC_STRING | TAG_PRINTABLE_STRING | TAG_T61_STRING
            | TAG_IA5_STRING => {}
            // ObjectDescriptor, EXTERNAL, REAL, EMBEDDED PDV, RELATIVE-OID,
            // reserved 14/15 and CHARACTER STRING: OpenSSL keeps them and prints
            // them as hex dumps.
            7 | 8 | 9 | 11 | 13 | 14 | 15 | 29 => {}
            _ => return Err(NameError::ValueType),
        }
    }
    Ok(())
}

/// `ossl_c2i_ASN1_OBJECT`'s checks, which x509-parser does not make: an OBJECT IDENTIFIER
/// has content, its last octet ends a sub-identifier, and no sub-identifier starts with
/// a 0x80 padding octet. (An empty attribute type would print as `=#…` in a DN.)
fn valid_oid(oid: &[u8]) -> bool {
    let Some(&last) = oid.last() else {
        return false;
    };
    last & 0x80 == 0
        && oid
            .iter()
            .enumerate()
            .all(|(i, &b)| !(b == 0x80 && (i == 0 || oid[i - 1] & 0x80 == 0)))
}

/// One attribute (AttributeTypeAndValue) of a name, in certificate order.
pub(crate) struct Entry<'a> {
    /// Index of the RDN (SET) it belongs to: equal indexes form a multi-valued RDN.
    set: usize,
    /// OID content octets.
    oid: &'a [u8],
    class: u8,
    constructed: bool,
    tag: u32,
    content: &'a [u8],
}

/// Flattens a name into its attributes, remembering which RDN each came from.
pub(crate) fn entries<'a>(name: &'a X509Name<'a>) -> Vec<Entry<'a>> {
    let mut out = Vec::new();
    for (set, rdn) in name.iter_rdn().enumerate() {
        for attr in rdn.iter() {
            let value = attr.attr_value();
            out.push(Entry {
                set,
                oid: attr.attr_type().as_bytes(),
                class: value.header.class() as u8,
                constructed: value.header.is_constructed(),
                tag: value.header.tag().0,
                content: value.data,
            });
        }
    }
    out
}

impl Entry<'_> {
    fn universal(&self, tag: u32) -> bool {
        self.class == 0 && self.tag == tag
    }

    /// OpenSSL's `tag2nbyte`: bytes per character (0 = UTF-8), or `None` for types
    /// it hex-dumps.
    fn char_width(&self) -> Option<u8> {
        if self.class != 0 || self.constructed {
            return None;
        }
        match self.tag {
            TAG_UTF8_STRING => Some(0),
            TAG_NUMERIC_STRING | TAG_PRINTABLE_STRING | TAG_T61_STRING | TAG_IA5_STRING
            | TAG_UTC_TIME | TAG_GENERALIZED_TIME | TAG_VISIBLE_STRING => Some(1),
            TAG_UNIVERSAL_STRING => Some(4),
            TAG_BMP_STRING => Some(2),
            _ => None,
        }
    }

    /// The value's DER encoding (identifier, definite length, content): what
    /// `do_dump` prints with `ASN1_STRFLGS_DUMP_DER`.
    fn der(&self) -> Vec<u8> {
        let mut der = Vec::with_capacity(self.content.len() + 8);
        let identifier = (self.class << 6) | if self.constructed { 0x20 } else { 0 };
        if self.tag < 31 {
            der.push(identifier | self.tag as u8);
        } else {
            der.push(identifier | 0x1f);
            let groups = (32 - self.tag.leading_zeros()).div_ceil(7);
            for i in (0..groups).rev() {
                let group = ((self.tag >> (7 * i)) & 0x7f) as u8;
                der.push(group | if i > 0 { 0x80 } else { 0 });
            }
        }
        let len = self.content.len();
        if len < 0x80 {
            der.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            der.push(0x80 | (bytes.len() - skip) as u8);
            der.extend_from_slice(&bytes[skip..]);
        }
        der.extend_from_slice(self.content);
        der
    }

    /// The value bytes `X509_NAME_oneline` walks: the ASN1_STRING data OpenSSL
    /// stored, i.e. the content octets, minus the unused-bits octet of a BIT
    /// STRING, and the whole encoding for SEQUENCE/SET values.
    fn oneline_bytes(&self) -> Cow<'_, [u8]> {
        if self.class == 0 && (self.tag == TAG_SEQUENCE || self.tag == TAG_SET) {
            return Cow::Owned(self.der());
        }
        if self.universal(TAG_BIT_STRING) && !self.content.is_empty() {
            return Cow::Borrowed(&self.content[1..]);
        }
        Cow::Borrowed(self.content)
    }

    /// The value as text, for allow-rules and the `_cn/_o/_ou` variables:
    /// `ASN1_STRING_to_UTF8` semantics (8-bit strings are Latin-1, BMP is UCS-2,
    /// Universal is UCS-4). `None` for non-string types and undecodable values,
    /// so a malformed value can never match a rule by accident.
    pub(crate) fn text(&self) -> Option<String> {
        match self.char_width()? {
            0 => String::from_utf8(self.content.to_vec()).ok(),
            1 => Some(self.content.iter().map(|&b| char::from(b)).collect()),
            2 => {
                if self.content.len() % 2 != 0 {
                    return None;
                }
                let units = self
                    .content
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]));
                char::decode_utf16(units)
                    .collect::<Result<String, _>>()
                    .ok()
            }
            _ => {
                if self.content.len() % 4 != 0 {
                    return None;
                }
                self.content
                    .chunks_exact(4)
                    .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                    .collect()
            }
        }
    }

    /// The attribute type as OpenSSL names it (`CN`, `emailAddress`, `1.2.3.4`).
    pub(crate) fn type_name(&self) -> Cow<'static, str> {
        oid::print_name(self.oid)
    }
}

/// `X509_NAME_print_ex(out, name, 0, XN_FLAG_RFC2253)`: attributes in reverse
/// order (also inside a multi-valued RDN), `,` between RDNs, `+` inside one,
/// short names, unknown types as `dotted.oid=#<DER hex>`, values escaped with
/// `ASN1_STRFLGS_RFC2253`.
pub(crate) fn rfc2253(entries: &[Entry<'_>]) -> Result<String, NameError> {
    let mut out = String::with_capacity(entries.len() * 24);
    let mut prev_set = None;
    for entry in entries.iter().rev() {
        if let Some(prev) = prev_set {
            out.push(if prev == entry.set { '+' } else { ',' });
        }
        prev_set = Some(entry.set);
        let known = oid::short_name(entry.oid);
        match known {
            Some(name) => out.push_str(name),
            None => out.push_str(&oid::dotted(entry.oid)),
        }
        out.push('=');
        // XN_FLAG_DUMP_UNKNOWN_FIELDS: values of unknown attribute types are dumped.
        match (known, entry.char_width()) {
            (Some(_), Some(width)) => write_escaped(&mut out, entry.content, width)?,
            _ => {
                out.push('#');
                for b in entry.der() {
                    push_hex_upper(&mut out, b);
                }
            }
        }
    }
    Ok(out)
}

/// Escape position of a character within its value (`do_buf`'s `orflags`).
/// The last character only gets the "last" flag, even when it is also the first:
/// that is why a value that is just `#` prints unescaped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Position {
    First,
    Middle,
    Last,
}

/// `do_buf` + `do_esc_char` with `ASN1_STRFLGS_RFC2253`. UTF8String bytes pass
/// through one by one (OpenSSL does not convert UTF-8 to UTF-8); other string
/// types are decoded to code points and re-encoded as UTF-8 first. Every byte
/// >= 0x80 then becomes `\XX`.
fn write_escaped(out: &mut String, content: &[u8], width: u8) -> Result<(), NameError> {
    let units = match width {
        0 | 1 => content.len(),
        2 if content.len() % 2 == 0 => content.len() / 2,
        2 => return Err(NameError::BmpString),
        _ if content.len() % 4 == 0 => content.len() / 4,
        _ => return Err(NameError::UniversalString),
    };
    for i in 0..units {
        let position = if i + 1 == units {
            Position::Last
        } else if i == 0 {
            Position::First
        } else {
            Position::Middle
        };
        let c = match width {
            0 | 1 => u32::from(content[i]),
            2 => u32::from(u16::from_be_bytes([content[2 * i], content[2 * i + 1]])),
            _ => u32::from_be_bytes([
                content[4 * i],
                content[4 * i + 1],
                content[4 * i + 2],
                content[4 * i + 3],
            ]),
        };
        if width == 0 {
            escape_byte(out, c as u8, position);
            continue;
        }
        let mut utf8 = [0u8; 4];
        for &b in utf8_putc(c, &mut utf8) {
            escape_byte(out, b, position);
        }
    }
    Ok(())
}

/// OpenSSL's `UTF8_putc`: surrogates and values past U+10FFFF encode to nothing,
/// so OpenSSL silently drops them from the printed name.
fn utf8_putc(c: u32, buf: &mut [u8; 4]) -> &[u8] {
    match char::from_u32(c) {
        Some(ch) => ch.encode_utf8(buf).as_bytes(),
        None => &[],
    }
}

/// `do_esc_char` for one byte under `ESC_2253 | ESC_CTRL | ESC_MSB`.
fn escape_byte(out: &mut String, b: u8, position: Position) {
    match b {
        b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\' => {
            out.push('\\');
            out.push(char::from(b));
        }
        b' ' if position != Position::Middle => out.push_str("\\ "),
        b'#' if position == Position::First => out.push_str("\\#"),
        0x00..=0x1f | 0x7f..=0xff => {
            out.push('\\');
            push_hex_upper(out, b);
        }
        _ => out.push(char::from(b)),
    }
}

/// `X509_NAME_oneline(name, NULL, 0)` as in OpenSSL 3.0.22 (checked with
/// `openssl x509 -nameopt compat`): `/type=value` per attribute in certificate
/// order, `+` before further attributes of a multi-valued RDN, `/` and `+` in
/// values backslash-escaped, bytes outside 0x20..=0x7e as `\xHH`.
pub(crate) fn oneline(entries: &[Entry<'_>]) -> String {
    let mut out = String::with_capacity(entries.len() * 24);
    let mut prev_set = None;
    for entry in entries {
        out.push(if prev_set == Some(entry.set) {
            '+'
        } else {
            '/'
        });
        prev_set = Some(entry.set);
        out.push_str(&entry.type_name());
        out.push('=');
        let bytes = entry.oneline_bytes();
        // A GeneralString whose length is a multiple of 4 and whose bytes are zero
        // except every fourth one is printed as those bytes only (an old hack for
        // UCS-4 text mislabelled as GeneralString).
        let mut print = [true; 4];
        if entry.universal(TAG_GENERAL_STRING) && bytes.len() % 4 == 0 {
            let mut nonzero = [false; 4];
            for (j, &b) in bytes.iter().enumerate() {
                nonzero[j & 3] |= b != 0;
            }
            if !(nonzero[0] || nonzero[1] || nonzero[2]) {
                print = [false, false, false, true];
            }
        }
        for (j, &b) in bytes.iter().enumerate() {
            if !print[j & 3] {
                continue;
            }
            match b {
                b' '..=b'~' => {
                    if b == b'/' || b == b'+' {
                        out.push('\\');
                    }
                    out.push(char::from(b));
                }
                _ => {
                    out.push_str("\\x");
                    push_hex_upper(&mut out, b);
                }
            }
        }
    }
    out
}

fn push_hex_upper(out: &mut String, b: u8) {
    let _ = write!(out, "{b:02X}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(set: usize, oid: &'static [u8], tag: u32, content: &'static [u8]) -> Entry<'static> {
        Entry {
            set,
            oid,
            class: 0,
            constructed: false,
            tag,
            content,
        }
    }

    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];

    fn dn(entries: &[Entry<'_>]) -> String {
        rfc2253(entries).expect("printable")
    }

    /// Found by the `identity_cert` fuzz target (fuzz/regressions/identity_cert/): an
    /// empty attribute type printed as `=#0C…`, a DN OpenSSL never prints (it refuses the
    /// certificate while decoding it).
    #[test]
    fn check_refuses_attribute_types_openssl_cannot_decode() {
        let type_error = Err(NameError::AttributeType);
        assert_eq!(check(&[entry(0, &[], TAG_UTF8_STRING, b"x")]), type_error);
        // The last octet continues a sub-identifier.
        assert_eq!(
            check(&[entry(0, &[0x55, 0x84], TAG_UTF8_STRING, b"x")]),
            type_error
        );
        // A sub-identifier padded with a leading 0x80 octet (first or later).
        assert_eq!(
            check(&[entry(0, &[0x80, 0x01], TAG_UTF8_STRING, b"x")]),
            type_error
        );
        assert_eq!(
            check(&[entry(0, &[0x55, 0x80, 0x03], TAG_UTF8_STRING, b"x")]),
            type_error
        );
        // 0x80 inside a multi-octet sub-identifier is a digit, not padding.
        assert_eq!(
            check(&[entry(0, &[0x55, 0x81, 0x80, 0x03], TAG_UTF8_STRING, b"x")]),
            Ok(())
        );
        assert_eq!(check(&[entry(0, CN, TAG_UTF8_STRING, b"x")]), Ok(()));
    }

    #[test]
    fn rfc2253_escapes_specials_and_edges() {
        assert_eq!(
            dn(&[entry(0, CN, TAG_UTF8_STRING, b"a,b+c\"d\\e<f>g;h")]),
            r#"CN=a\,b\+c\"d\\e\<f\>g\;h"#
        );
        assert_eq!(dn(&[entry(0, CN, TAG_UTF8_STRING, b"#x ")]), r"CN=\#x\ ");
        assert_eq!(dn(&[entry(0, CN, TAG_UTF8_STRING, b" x#")]), r"CN=\ x#");
        // A lone '#' carries only the "last" flag (see do_buf), a lone space is escaped.
        assert_eq!(dn(&[entry(0, CN, TAG_UTF8_STRING, b"#")]), "CN=#");
        assert_eq!(dn(&[entry(0, CN, TAG_UTF8_STRING, b" ")]), r"CN=\ ");
        assert_eq!(
            dn(&[entry(0, CN, TAG_UTF8_STRING, b"a\x01\x7fb=")]),
            r"CN=a\01\7Fb="
        );
        assert_eq!(dn(&[entry(0, CN, TAG_UTF8_STRING, b"")]), "CN=");
    }

    #[test]
    fn rfc2253_converts_non_utf8_types_to_utf8_before_escaping() {
        // Latin-1 e-acute in a T61String, then as BMP and Universal strings.
        assert_eq!(dn(&[entry(0, CN, TAG_T61_STRING, b"\xe9")]), r"CN=\C3\A9");
        assert_eq!(
            dn(&[entry(0, CN, TAG_BMP_STRING, b"\x00\xe9\x00a")]),
            r"CN=\C3\A9a"
        );
        assert_eq!(
            dn(&[entry(0, CN, TAG_UNIVERSAL_STRING, b"\x00\x01\xf6\x00")]),
            r"CN=\F0\9F\98\80"
        );
        // A lone surrogate cannot be encoded and vanishes, as with UTF8_putc.
        assert_eq!(
            dn(&[entry(0, CN, TAG_BMP_STRING, b"\xd8\x00\x00x")]),
            "CN=x"
        );
        assert_eq!(
            rfc2253(&[entry(0, CN, TAG_BMP_STRING, b"\x00")]),
            Err(NameError::BmpString)
        );
    }

    #[test]
    fn rfc2253_reverses_entries_and_joins_multi_valued_rdns() {
        let entries = [
            entry(0, O, TAG_UTF8_STRING, b"Org"),
            entry(1, CN, TAG_UTF8_STRING, b"a"),
            entry(
                1,
                &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01],
                TAG_UTF8_STRING,
                b"b",
            ),
        ];
        assert_eq!(dn(&entries), "UID=b+CN=a,O=Org");
        assert_eq!(oneline(&entries), "/O=Org/CN=a+UID=b");
    }

    #[test]
    fn unknown_types_and_values_are_dumped_as_der() {
        let unknown = entry(0, &[0x2a, 0x03, 0x04], TAG_UTF8_STRING, b"hi");
        assert_eq!(dn(&[unknown]), "1.2.3.4=#0C026869");
        let octets = entry(0, CN, 4, b"\x01\xff");
        assert_eq!(dn(&[octets]), "CN=#040201FF");
        let long = entry(0, &[0x2a, 0x03, 0x04], TAG_UTF8_STRING, &[b'x'; 200]);
        assert!(dn(&[long]).starts_with("1.2.3.4=#0C81C87878"));
        let mut high_tag = entry(0, CN, 0x1234, b"");
        high_tag.class = 2;
        assert_eq!(dn(&[high_tag]), "CN=#9FA43400");
    }

    #[test]
    fn oneline_escapes_like_openssl_3_0() {
        let entries = [entry(0, CN, TAG_UTF8_STRING, "a/b+c\u{fc}\n".as_bytes())];
        assert_eq!(oneline(&entries), r"/CN=a\/b\+c\xC3\xBC\x0A");
        assert_eq!(oneline(&[]), "");
    }

    #[test]
    fn text_decodes_every_string_type() {
        assert_eq!(
            entry(0, CN, TAG_UTF8_STRING, "Müller".as_bytes())
                .text()
                .as_deref(),
            Some("Müller")
        );
        assert_eq!(
            entry(0, CN, TAG_T61_STRING, b"M\xfcller").text().as_deref(),
            Some("Müller")
        );
        assert_eq!(
            entry(0, CN, TAG_BMP_STRING, b"\x6f\x22\x5b\x57")
                .text()
                .as_deref(),
            Some("漢字")
        );
        assert_eq!(entry(0, CN, TAG_UTF8_STRING, b"\xff").text(), None);
        assert_eq!(entry(0, CN, 4, b"x").text(), None);
    }
}
