//! The small OpenSSL and nginx formatters behind the `$ssl_client_*` values:
//! `i2a_ASN1_INTEGER` (serial), `ASN1_TIME_print` (validity dates), nginx's
//! days-remaining computation, `PEM_write_bio_X509`, `ngx_escape_uri` with
//! `NGX_ESCAPE_URI_COMPONENT`, and Envoy's XFCC value quoting.

use base64::Engine as _;
use std::fmt::Write;

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// `i2a_ASN1_INTEGER` of a DER INTEGER's content octets, as nginx prints
/// `$ssl_client_serial`: the magnitude OpenSSL stores (`c2i_ASN1_INTEGER` drops
/// a leading 0x00 / 0xFF sign octet and negates negative values), uppercase hex,
/// `-` for negative, `00` for an empty magnitude, and OpenSSL's `\` + newline
/// after every 35 octets (only reachable with serials far beyond RFC 5280's 20).
pub(crate) fn serial(content: &[u8]) -> String {
    let (negative, magnitude) = integer_magnitude(content);
    let mut out = String::with_capacity(magnitude.len() * 2 + 2);
    if negative {
        out.push('-');
    }
    if magnitude.is_empty() {
        out.push_str("00");
    }
    for (i, b) in magnitude.iter().enumerate() {
        if i != 0 && i % 35 == 0 {
            out.push_str("\\\n");
        }
        out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
        out.push(char::from(HEX_UPPER[usize::from(b & 0x0f)]));
    }
    out
}

/// `c2i_ibuf`: sign and magnitude of a two's-complement big-endian integer.
fn integer_magnitude(content: &[u8]) -> (bool, Vec<u8>) {
    let Some(&first) = content.first() else {
        return (false, Vec::new());
    };
    let negative = first & 0x80 != 0;
    if content.len() == 1 {
        let b = if negative {
            (first ^ 0xff).wrapping_add(1)
        } else {
            first
        };
        return (negative, vec![b]);
    }
    // One padding octet is dropped: 0x00 before a positive value with its top bit
    // set, 0xFF before a negative one unless the value is the minimal -2^(8n).
    let pad = match first {
        0x00 => 1,
        0xff if content[1..].iter().any(|&b| b != 0) => 1,
        _ => 0,
    };
    let body = &content[pad..];
    if !negative {
        return (false, body.to_vec());
    }
    // Two's complement: invert and add one, from the last octet.
    let mut out = vec![0u8; body.len()];
    let mut carry = 1u16;
    for (dst, &src) in out.iter_mut().rev().zip(body.iter().rev()) {
        let v = u16::from(src ^ 0xff) + carry;
        *dst = v as u8;
        carry = v >> 8;
    }
    (true, out)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A UTC calendar time split into fields.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

fn civil(unix: i64) -> Civil {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400) as u32;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: secs / 3600,
        minute: secs / 60 % 60,
        second: secs % 60,
    }
}

/// `ASN1_TIME_print` of a certificate time (always UTC in DER, hence ` GMT`):
/// `Nov  2 09:05:01 2026 GMT`, the day space-padded.
pub(crate) fn asn1_time(unix: i64) -> String {
    let t = civil(unix);
    let month = MONTHS[(t.month - 1) as usize];
    format!(
        "{month} {:2} {:02}:{:02}:{:02} {} GMT",
        t.day, t.hour, t.minute, t.second, t.year
    )
}

/// nginx's `ngx_ssl_get_client_v_remain`: whole days until notAfter, `0` within
/// the last day or after expiry. nginx reads notAfter back from the
/// `ASN1_TIME_print` text, which needs a four-digit year, and its parser's error
/// value is -1, so those certificates give an empty value, as here.
pub(crate) fn days_remaining(not_after: i64, now: i64) -> String {
    if not_after == -1 || civil(not_after).year < 1000 {
        return String::new();
    }
    if not_after < now.saturating_add(86_400) {
        return "0".to_owned();
    }
    ((not_after - now) / 86_400).to_string()
}

/// `PEM_write_bio_X509`: base64 in 64-column lines between the BEGIN/END lines,
/// every line ending in `\n`.
pub(crate) fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 56);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// nginx's `NGX_ESCAPE_URI_COMPONENT` table: one bit per byte, set when the byte
/// is `%XX`-escaped (everything but ALPHA, DIGIT, `-`, `.`, `_`, `~`). nginx
/// releases differ in a few sub-delimiters (`!'()*`), none of which can occur in
/// a PEM certificate, so `$ssl_client_escaped_cert` is the same for all of them.
const URI_COMPONENT: [u32; 8] = [
    0xffff_ffff, // 0x00-0x1f
    0xfc00_9fff, // ?>=< ;:98 7654 3210  /.-, +*)( '&%$ #"!
    0x7800_0001, // _^]\ [ZYX WVUT SRQP  ONML KJIH GFED CBA@
    0xb800_0001, //  ~}| {zyx wvut srqp  onml kjih gfed cba`
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
];

/// `ngx_escape_uri(.., NGX_ESCAPE_URI_COMPONENT)`, uppercase hex digits.
pub(crate) fn escape_uri_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for &b in s.as_bytes() {
        if URI_COMPONENT[usize::from(b >> 5)] & (1 << (b & 0x1f)) != 0 {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(b & 0x0f)]));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// An XFCC value as Envoy documents it: double-quoted when it contains `,`, `;`,
/// `=` or `"`, with `"` written as `\"`.
pub(crate) fn push_xfcc_value(out: &mut String, value: &str) {
    if value.contains([',', ';', '=', '"']) {
        out.push('"');
        for c in value.chars() {
            if c == '"' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// RFC 8941 sf-binary: `:` base64 (with padding) `:`.
pub(crate) fn push_sf_binary(out: &mut String, der: &[u8]) {
    out.push(':');
    base64::engine::general_purpose::STANDARD.encode_string(der, out);
    out.push(':');
}

/// Lowercase hex, as `ngx_hex_dump` writes fingerprints.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_drops_sign_octet_and_keeps_other_leading_zeros() {
        assert_eq!(serial(&[0x00, 0x8f, 0x01]), "8F01");
        assert_eq!(serial(&[0x01]), "01");
        assert_eq!(serial(&[0x00]), "00");
        assert_eq!(serial(&[0x0a, 0x00, 0xff]), "0A00FF");
        assert_eq!(serial(&[]), "00");
    }

    #[test]
    fn serial_prints_negative_values_as_openssl_does() {
        assert_eq!(serial(&[0xff]), "-01");
        assert_eq!(serial(&[0x80]), "-80");
        assert_eq!(serial(&[0xff, 0x7f]), "-81");
        // -256 is minimal as FF 00: the FF is not padding.
        assert_eq!(serial(&[0xff, 0x00]), "-0100");
    }

    #[test]
    fn serial_wraps_every_35_octets() {
        let long: Vec<u8> = (1..=36).collect();
        let printed = serial(&long);
        assert_eq!(&printed[68..72], "23\\\n");
        assert!(printed.ends_with("24"));
    }

    #[test]
    fn asn1_time_pads_the_day_with_a_space() {
        // 2026-11-02T09:05:01Z
        assert_eq!(asn1_time(1_793_610_301), "Nov  2 09:05:01 2026 GMT");
        assert_eq!(asn1_time(0), "Jan  1 00:00:00 1970 GMT");
        assert_eq!(asn1_time(951_782_400), "Feb 29 00:00:00 2000 GMT");
        assert_eq!(asn1_time(-631_152_000), "Jan  1 00:00:00 1950 GMT");
        assert_eq!(asn1_time(253_402_300_799), "Dec 31 23:59:59 9999 GMT");
    }

    #[test]
    fn days_remaining_follows_nginx() {
        let now = 1_700_000_000;
        assert_eq!(days_remaining(now + 86_399, now), "0");
        assert_eq!(days_remaining(now + 86_400, now), "1");
        assert_eq!(days_remaining(now + 30 * 86_400 + 5, now), "30");
        assert_eq!(days_remaining(now - 5, now), "0");
        assert_eq!(days_remaining(-1, now), "");
    }

    #[test]
    fn escape_uri_component_matches_nginx() {
        assert_eq!(escape_uri_component("aZ09-._~"), "aZ09-._~");
        assert_eq!(escape_uri_component("a b\n+/=%"), "a%20b%0A%2B%2F%3D%25");
        assert_eq!(escape_uri_component("é"), "%C3%A9");
    }

    #[test]
    fn pem_wraps_at_64_columns() {
        let der = [0u8; 60];
        let text = pem(&der);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2], "AAAAAAAAAAAAAAAA"); // 60 bytes = 80 base64 characters
        assert_eq!(lines[3], "-----END CERTIFICATE-----");
        assert!(text.ends_with("-----\n"));
    }

    #[test]
    fn xfcc_values_are_quoted_only_when_needed() {
        let mut out = String::new();
        push_xfcc_value(&mut out, "spiffe://a/b");
        out.push('|');
        push_xfcc_value(&mut out, "a=\"b\";c,d");
        assert_eq!(out, r#"spiffe://a/b|"a=\"b\";c,d""#);
    }
}
