//! Just enough DER to find an RSA public key in an X.509 certificate: the
//! key a QZ site certificate signs calls with. Every read is bounds-checked;
//! anything unexpected is `None`.

/// One DER element: its tag and contents.
struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
}

/// Reads the element at the start of `b`; returns it and what follows.
fn tlv(b: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        // Certificates are far below 16 MiB; longer length fields are refused.
        if n == 0 || n > 3 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, &x| a << 8 | usize::from(x));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((
        Tlv {
            tag,
            body: &rest[..len],
        },
        &rest[len..],
    ))
}

const SEQUENCE: u8 = 0x30;
const BIT_STRING: u8 = 0x03;
const EXPLICIT_0: u8 = 0xa0;
/// 1.2.840.113549.1.1.1, rsaEncryption.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// The `RSAPublicKey` (PKCS #1) inside a certificate's SubjectPublicKeyInfo,
/// or `None` when `cert` is not an X.509 certificate with an RSA key.
pub fn rsa_public_key(cert: &[u8]) -> Option<&[u8]> {
    let (c, _) = tlv(cert).filter(|(c, _)| c.tag == SEQUENCE)?;
    let (tbs, _) = tlv(c.body).filter(|(t, _)| t.tag == SEQUENCE)?;
    let mut rest = tbs.body;
    // version [0] is optional; serial, signature, issuer, validity, subject follow.
    let (first, after) = tlv(rest)?;
    rest = if first.tag == EXPLICIT_0 { after } else { rest };
    for _ in 0..5 {
        rest = tlv(rest)?.1;
    }
    let (spki, _) = tlv(rest).filter(|(s, _)| s.tag == SEQUENCE)?;
    let (alg, key) = tlv(spki.body).filter(|(a, _)| a.tag == SEQUENCE)?;
    let (oid, _) = tlv(alg.body)?;
    if oid.tag != 0x06 || oid.body != RSA_ENCRYPTION {
        return None;
    }
    let (bits, _) = tlv(key).filter(|(k, _)| k.tag == BIT_STRING)?;
    // The first byte counts unused bits; a key has none.
    match bits.body.split_first() {
        Some((0, key)) if tlv(key).is_some_and(|(k, _)| k.tag == SEQUENCE) => Some(key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_key_openssl_finds() {
        // tests/fixtures/qz/site-cert.pem as DER, and its key as
        // `openssl rsa -pubin -RSAPublicKey_out -outform DER` wrote it.
        let cert = include_bytes!("fixtures/site-cert.der");
        let key = include_bytes!("fixtures/site-key-pkcs1.der");
        assert_eq!(rsa_public_key(cert), Some(&key[..]));
        // Cut anywhere, it is not a certificate.
        for n in 0..cert.len() {
            assert!(rsa_public_key(&cert[..n]).is_none(), "cut at {n}");
        }
    }

    #[test]
    fn lengths_past_the_end_and_odd_tags_are_none() {
        assert!(rsa_public_key(&[]).is_none());
        assert!(rsa_public_key(&[0x30]).is_none());
        assert!(rsa_public_key(&[0x30, 0x05, 0x30]).is_none());
        assert!(rsa_public_key(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(rsa_public_key(&[0x31, 0x00]).is_none());
        assert!(rsa_public_key(&[0x30, 0x02, 0x30, 0x00]).is_none());
    }
}
