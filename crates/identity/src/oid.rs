//! Attribute-type names as OpenSSL prints them: the short name when OpenSSL knows
//! the OID (`OBJ_nid2sn`), else the dotted form `OBJ_obj2txt(.., no_name = 1)`
//! writes into the 80-byte buffers `X509_NAME_print_ex`/`X509_NAME_oneline` use.

use std::borrow::Cow;

use crate::oid_table::OID_SHORT_NAMES;

/// OpenSSL formats unknown attribute types into `char objtmp[80]`, so at most 79
/// characters survive; longer OIDs are cut, and nginx prints the cut form.
const OBJTXT_MAX: usize = 79;

/// OpenSSL's short name for the OID with these DER content octets, if it has one.
pub(crate) fn short_name(oid: &[u8]) -> Option<&'static str> {
    OID_SHORT_NAMES
        .binary_search_by(|(der, _)| (*der).cmp(oid))
        .ok()
        .map(|i| OID_SHORT_NAMES[i].1)
}

/// The name OpenSSL prints for an attribute type: short name or dotted numbers.
pub(crate) fn print_name(oid: &[u8]) -> Cow<'static, str> {
    match short_name(oid) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(dotted(oid)),
    }
}

/// `OBJ_obj2txt(buf, 80, oid, 1)`: dotted decimal, arcs of any size, the first two
/// arcs split as X.690 says (values >= 80 all belong to arc 2), cut to 79 characters.
pub(crate) fn dotted(oid: &[u8]) -> String {
    let mut out = String::with_capacity(oid.len() * 3);
    let mut first = true;
    let mut arc = BigArc::default();
    for &byte in oid {
        arc.push7(byte & 0x7f);
        if byte & 0x80 != 0 {
            continue;
        }
        if first {
            first = false;
            let leading = if arc.at_least_80() {
                arc.sub_small(80);
                2
            } else {
                let v = arc.small();
                let leading = v / 40;
                arc = BigArc::from_small(v - leading * 40);
                leading
            };
            out.push(char::from(b'0' + leading as u8));
        }
        out.push('.');
        arc.write_decimal(&mut out);
        arc = BigArc::default();
    }
    // An encoding that ends inside a sub-identifier is invalid; OpenSSL stops at the
    // error and keeps what it wrote, which is what `out` holds.
    out.truncate(OBJTXT_MAX.min(out.len()));
    out
}

/// An OID arc of any size, as little-endian base-10^9 limbs (OpenSSL switches to
/// a BIGNUM past `ULONG_MAX`; arcs that large only appear in hostile certificates,
/// and they must still print the same).
#[derive(Default)]
struct BigArc {
    limbs: Vec<u32>,
}

const LIMB: u64 = 1_000_000_000;

impl BigArc {
    fn from_small(v: u64) -> BigArc {
        let mut arc = BigArc::default();
        arc.add_mul(1, v);
        arc
    }

    /// `self = self * 128 + digit`.
    fn push7(&mut self, digit: u8) {
        self.add_mul(128, u64::from(digit));
    }

    fn add_mul(&mut self, mul: u64, add: u64) {
        let mut carry = add;
        for limb in &mut self.limbs {
            let v = u64::from(*limb) * mul + carry;
            *limb = (v % LIMB) as u32;
            carry = v / LIMB;
        }
        while carry > 0 {
            self.limbs.push((carry % LIMB) as u32);
            carry /= LIMB;
        }
    }

    fn at_least_80(&self) -> bool {
        self.limbs.len() > 1 || self.limbs.first().is_some_and(|&l| l >= 80)
    }

    /// The value when it fits one limb (callers check `at_least_80` first).
    fn small(&self) -> u64 {
        self.limbs.first().map_or(0, |&l| u64::from(l))
    }

    fn sub_small(&mut self, v: u32) {
        let mut borrow = v;
        for limb in &mut self.limbs {
            if *limb >= borrow {
                *limb -= borrow;
                break;
            }
            *limb = *limb + LIMB as u32 - borrow;
            borrow = 1;
        }
        while self.limbs.last() == Some(&0) {
            self.limbs.pop();
        }
    }

    fn write_decimal(&self, out: &mut String) {
        use std::fmt::Write;
        match self.limbs.split_last() {
            None => out.push('0'),
            Some((top, rest)) => {
                let _ = write!(out, "{top}");
                for limb in rest.iter().rev() {
                    let _ = write!(out, "{limb:09}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_match_openssl() {
        assert_eq!(short_name(&[0x55, 0x04, 0x03]), Some("CN"));
        assert_eq!(short_name(&[0x55, 0x04, 0x0b]), Some("OU"));
        assert_eq!(
            short_name(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]),
            Some("emailAddress")
        );
        assert_eq!(
            short_name(&[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19]),
            Some("DC")
        );
        // 2.5.4.97, the eIDAS organizationIdentifier.
        assert_eq!(
            short_name(&[0x55, 0x04, 0x61]),
            Some("organizationIdentifier")
        );
        assert_eq!(short_name(&[0x2a, 0x03, 0x04]), None);
    }

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(OID_SHORT_NAMES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn dotted_form_splits_first_arcs_like_openssl() {
        assert_eq!(dotted(&[0x2a, 0x03, 0x04]), "1.2.3.4");
        assert_eq!(dotted(&[0x55, 0x04, 0x03]), "2.5.4.3");
        assert_eq!(dotted(&[0x00]), "0.0");
        // 2.999.3: first sub-identifier 1079 = 80 + 999.
        assert_eq!(dotted(&[0x88, 0x37, 0x03]), "2.999.3");
        assert_eq!(
            dotted(&[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0xe4, 0x71, 0x01]),
            "1.3.6.1.4.1.45681.1"
        );
    }

    #[test]
    fn dotted_form_handles_arcs_beyond_u64() {
        // 1.2.(2^70): ten groups of seven bits.
        let mut der = vec![0x2a, 0x81];
        der.extend(std::iter::repeat_n(0x80, 9));
        der.push(0x00);
        assert_eq!(dotted(&der), "1.2.1180591620717411303424");
    }

    #[test]
    fn dotted_form_is_cut_at_79_characters() {
        let mut der = vec![0x2a];
        for _ in 0..40 {
            der.extend([0x86, 0x8d, 0x20]); // 100000
        }
        let text = dotted(&der);
        // "1.2" then ".100000" repeated, cut after 79 characters.
        let full = format!("1.2{}", ".100000".repeat(40));
        assert_eq!(text, full[..79]);
    }
}
