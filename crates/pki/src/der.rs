//! A minimal DER reader for the few structural fields x509-parser does not hand out as raw
//! bytes: the exact `AlgorithmIdentifier` encodings and signature bits that signature
//! verification needs, and the `SubjectPublicKeyInfo` pieces used to compare keys.
//!
//! It only understands single-byte tags and definite lengths, which is all that X.509
//! certificates, CRLs and keys use; anything else is reported as malformed.

/// One DER element: its tag byte, its content, and its whole encoding.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub raw: &'a [u8],
}

pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_BIT_STRING: u8 = 0x03;
pub(crate) const TAG_OID: u8 = 0x06;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;
/// `[0]` constructed: the certificate version wrapper.
pub(crate) const TAG_CONTEXT_0: u8 = 0xa0;

/// Reads one element from the front of `input`, returning it and the remaining bytes.
pub(crate) fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    // High-tag-number form (low five bits all set) never occurs in the structures we read.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        // Indefinite lengths (n == 0) are BER, not DER; more than 4 length bytes is absurd here.
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header_len = input.len() - rest.len();
    let raw = &input[..header_len + len];
    Some((
        Tlv {
            tag,
            content: &rest[..len],
            raw,
        },
        &rest[len..],
    ))
}

/// Reads one element and requires its tag.
pub(crate) fn expect(input: &[u8], tag: u8) -> Option<(Tlv<'_>, &[u8])> {
    read(input).filter(|(tlv, _)| tlv.tag == tag)
}

/// The pieces of a signed structure (certificate or CRL):
/// `SEQUENCE { tbs, signatureAlgorithm, signatureValue }`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Signed<'a> {
    /// The whole encoding of the to-be-signed part: the signed message.
    pub tbs: Tlv<'a>,
    /// The content of the outer `AlgorithmIdentifier`.
    pub sig_alg: &'a [u8],
    /// The signature bits.
    pub signature: &'a [u8],
}

pub(crate) fn signed(der: &[u8]) -> Option<Signed<'_>> {
    let (outer, _) = expect(der, TAG_SEQUENCE)?;
    let (tbs, rest) = expect(outer.content, TAG_SEQUENCE)?;
    let (alg, rest) = expect(rest, TAG_SEQUENCE)?;
    let (sig, _) = expect(rest, TAG_BIT_STRING)?;
    Some(Signed {
        tbs,
        sig_alg: alg.content,
        signature: bit_string_bytes(sig.content)?,
    })
}

/// The bytes of a BIT STRING whose length is a whole number of octets.
pub(crate) fn bit_string_bytes(content: &[u8]) -> Option<&[u8]> {
    match content.split_first() {
        Some((0, bits)) => Some(bits),
        _ => None,
    }
}

/// The pieces of a `SubjectPublicKeyInfo`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spki<'a> {
    /// The content of the `AlgorithmIdentifier` (OID and parameters).
    pub alg: &'a [u8],
    /// The algorithm OID's content bytes.
    pub alg_oid: &'a [u8],
    /// The parameters element following the OID, if any.
    pub params: Option<Tlv<'a>>,
    /// The public key bits.
    pub key: &'a [u8],
}

pub(crate) fn spki(der: &[u8]) -> Option<Spki<'_>> {
    let (outer, _) = expect(der, TAG_SEQUENCE)?;
    let (alg, rest) = expect(outer.content, TAG_SEQUENCE)?;
    let (key, _) = expect(rest, TAG_BIT_STRING)?;
    let (oid, params) = expect(alg.content, TAG_OID)?;
    let params = read(params).map(|(p, _)| p);
    Some(Spki {
        alg: alg.content,
        alg_oid: oid.content,
        params,
        key: bit_string_bytes(key.content)?,
    })
}

/// The `TBSCertificate` fields signature verification and version checks need:
/// the version number (0 = v1) and the inner signature `AlgorithmIdentifier` content.
pub(crate) fn tbs_certificate_head(tbs_content: &[u8]) -> Option<(u32, &[u8])> {
    let (version, rest) = match read(tbs_content)? {
        (v, rest) if v.tag == TAG_CONTEXT_0 => {
            let (int, _) = expect(v.content, TAG_INTEGER)?;
            let version = match int.content {
                [n] => u32::from(*n),
                _ => return None,
            };
            (version, rest)
        }
        _ => (0, tbs_content),
    };
    let (_serial, rest) = expect(rest, TAG_INTEGER)?;
    let (alg, _) = expect(rest, TAG_SEQUENCE)?;
    Some((version, alg.content))
}

/// The inner signature `AlgorithmIdentifier` content of a `TBSCertList`
/// (`version` is an untagged optional INTEGER there).
pub(crate) fn tbs_crl_sig_alg(tbs_content: &[u8]) -> Option<&[u8]> {
    let rest = match read(tbs_content)? {
        (v, rest) if v.tag == TAG_INTEGER => rest,
        _ => tbs_content,
    };
    let (alg, _) = expect(rest, TAG_SEQUENCE)?;
    Some(alg.content)
}

/// Whether a DER `PrivateKeyInfo`-shaped blob is really an `EncryptedPrivateKeyInfo`
/// (`SEQUENCE { AlgorithmIdentifier, OCTET STRING }` instead of starting with a version).
pub(crate) fn is_encrypted_pkcs8(der: &[u8]) -> bool {
    match expect(der, TAG_SEQUENCE) {
        Some((outer, _)) => {
            matches!(read(outer.content), Some((first, _)) if first.tag == TAG_SEQUENCE)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let short = [0x04, 0x02, 0xaa, 0xbb, 0xff];
        let (tlv, rest) = read(&short).unwrap();
        assert_eq!(
            (tlv.tag, tlv.content, rest),
            (0x04, &[0xaa, 0xbb][..], &[0xff][..])
        );

        let mut long = vec![0x04, 0x81, 0x80];
        long.extend(vec![7u8; 0x80]);
        let (tlv, rest) = read(&long).unwrap();
        assert_eq!(tlv.content.len(), 0x80);
        assert_eq!(tlv.raw.len(), long.len());
        assert!(rest.is_empty());
    }

    #[test]
    fn rejects_truncated_and_indefinite() {
        assert!(read(&[0x30, 0x05, 0x01]).is_none());
        assert!(read(&[0x30, 0x80, 0x00, 0x00]).is_none());
        assert!(read(&[0x1f, 0x01, 0x00]).is_none());
        assert!(read(&[]).is_none());
    }
}
