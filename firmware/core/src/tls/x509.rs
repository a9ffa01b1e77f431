//! Just enough X.509 (DER) to check a gateway's certificate against a pinned site CA: the
//! signed part, the signature, the subject key, the names and the extended key usage. No
//! allocation, no `der` crate; every length is checked, so hostile input yields `None`.

/// `ecdsa-with-SHA256` (1.2.840.10045.4.3.2).
const ECDSA_WITH_SHA256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02];
/// `id-ecPublicKey` (1.2.840.10045.2.1).
const EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
/// `prime256v1` / secp256r1 (1.2.840.10045.3.1.7).
const P256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
/// `subjectAltName` (2.5.29.17).
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1D, 0x11];
/// `extKeyUsage` (2.5.29.37).
const EXT_KEY_USAGE: &[u8] = &[0x55, 0x1D, 0x25];
/// `id-kp-serverAuth` (1.3.6.1.5.5.7.3.1).
pub const SERVER_AUTH: &[u8] = &[0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const VERSION: u8 = 0xA0;
const EXTENSIONS: u8 = 0xA3;
const SAN_DNS: u8 = 0x82;
const SAN_IP: u8 = 0x87;

/// One DER element: its tag, its contents and the whole encoding (header included).
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    value: &'a [u8],
    whole: &'a [u8],
}

/// Splits the first element off `der`. Definite lengths up to 64 KiB only (certificates are
/// far smaller); anything else is refused.
fn next(der: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 2 {
            return None;
        }
        let mut len = 0usize;
        for _ in 0..count {
            let (&b, r) = rest.split_first()?;
            len = (len << 8) | usize::from(b);
            rest = r;
        }
        len
    };
    let header = der.len() - rest.len();
    let value = rest.get(..len)?;
    let whole = der.get(..header + len)?;
    Some((Tlv { tag, value, whole }, &rest[len..]))
}

/// The first element of `der`, which must carry `tag`.
fn expect(der: &[u8], tag: u8) -> Option<(Tlv<'_>, &[u8])> {
    next(der).filter(|(tlv, _)| tlv.tag == tag)
}

/// The elements inside a constructed value.
fn children(mut der: &[u8]) -> impl Iterator<Item = Tlv<'_>> {
    core::iter::from_fn(move || {
        let (tlv, rest) = next(der)?;
        der = rest;
        Some(tlv)
    })
}

/// The parts of a certificate the pinned-CA check needs.
#[derive(Debug, Clone, Copy)]
pub struct Certificate<'a> {
    /// `tbsCertificate`, whole: what the issuer signed.
    pub signed: &'a [u8],
    /// The issuer's ECDSA signature (DER `Ecdsa-Sig-Value`), when the algorithm is
    /// ecdsa-with-SHA256; `None` for any other algorithm.
    pub ecdsa_sha256_signature: Option<&'a [u8]>,
    /// The subject's P-256 public key (SEC1 encoding), when the key is one.
    pub p256_key: Option<&'a [u8]>,
    /// The `subjectAltName` extension's contents (a sequence of GeneralName), if present.
    alt_names: Option<&'a [u8]>,
    /// The `extKeyUsage` extension's contents (a sequence of OIDs), if present.
    key_usages: Option<&'a [u8]>,
}

impl<'a> Certificate<'a> {
    /// Reads a DER certificate; `None` if it is not one this reader understands.
    pub fn parse(der: &'a [u8]) -> Option<Self> {
        let (cert, _) = expect(der, SEQUENCE)?;
        let (tbs, rest) = expect(cert.value, SEQUENCE)?;
        let (algorithm, rest) = expect(rest, SEQUENCE)?;
        let (signature, _) = expect(rest, BIT_STRING)?;
        let (algorithm_oid, _) = expect(algorithm.value, OID)?;
        let ecdsa_sha256_signature = (algorithm_oid.value == ECDSA_WITH_SHA256)
            .then(|| signature.value.strip_prefix(&[0]))
            .flatten();

        // tbsCertificate: [0] version, serial, signature, issuer, validity, subject, SPKI, ...
        let mut fields = tbs.value;
        if fields.first() == Some(&VERSION) {
            fields = next(fields)?.1;
        }
        for _ in 0..5 {
            fields = next(fields)?.1;
        }
        let (spki, mut fields) = expect(fields, SEQUENCE)?;
        let p256_key = p256_key_of(spki.value);

        let mut alt_names = None;
        let mut key_usages = None;
        while let Some((field, rest)) = next(fields) {
            fields = rest;
            if field.tag != EXTENSIONS {
                continue; // issuerUniqueID, subjectUniqueID
            }
            let (list, _) = expect(field.value, SEQUENCE)?;
            for extension in children(list.value) {
                let (id, rest) = expect(extension.value, OID)?;
                // `critical BOOLEAN DEFAULT FALSE` may sit between the ID and the value.
                let rest = match next(rest)? {
                    (flag, after) if flag.tag == 0x01 => after,
                    _ => rest,
                };
                let (value, _) = expect(rest, OCTET_STRING)?;
                if id.value == SUBJECT_ALT_NAME {
                    alt_names = Some(expect(value.value, SEQUENCE)?.0.value);
                } else if id.value == EXT_KEY_USAGE {
                    key_usages = Some(expect(value.value, SEQUENCE)?.0.value);
                }
            }
        }
        Some(Self {
            signed: tbs.whole,
            ecdsa_sha256_signature,
            p256_key,
            alt_names,
            key_usages,
        })
    }

    /// Whether the certificate may serve TLS: no extended key usage, or one that lists
    /// serverAuth (a device certificate, clientAuth only, cannot pose as the gateway).
    pub fn allows_server_auth(&self) -> bool {
        self.key_usages.is_none_or(|usages| {
            children(usages).any(|oid| oid.tag == OID && oid.value == SERVER_AUTH)
        })
    }

    /// Whether a `subjectAltName` entry names `name`: a DNS name (ASCII case-insensitive, no
    /// wildcards) or, for an IPv4 name, an IP address entry. The subject's CN is not
    /// consulted (as in browsers and rustls).
    pub fn names(&self, name: &ServerName<'_>) -> bool {
        let Some(alt_names) = self.alt_names else {
            return false;
        };
        children(alt_names).any(|entry| match (entry.tag, name) {
            (SAN_DNS, ServerName::Dns(dns)) => entry.value.eq_ignore_ascii_case(dns.as_bytes()),
            (SAN_IP, ServerName::Ipv4(ip)) => entry.value == ip.as_slice(),
            _ => false,
        })
    }
}

/// The P-256 key of a `SubjectPublicKeyInfo`'s contents, if it holds one.
fn p256_key_of(spki: &[u8]) -> Option<&[u8]> {
    let (algorithm, rest) = expect(spki, SEQUENCE)?;
    let (key, _) = expect(rest, BIT_STRING)?;
    let (kind, rest) = expect(algorithm.value, OID)?;
    let (curve, _) = expect(rest, OID)?;
    (kind.value == EC_PUBLIC_KEY && curve.value == P256)
        .then(|| key.value.strip_prefix(&[0]))
        .flatten()
}

/// The name the device expects in the gateway's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerName<'a> {
    /// A DNS name (also sent as SNI).
    Dns(&'a str),
    /// An IPv4 address (matched against IP address entries; no SNI).
    Ipv4([u8; 4]),
}

impl<'a> ServerName<'a> {
    /// `"gateway.site.lan"` or `"192.168.1.10"`; `None` for an empty name.
    pub fn parse(name: &'a str) -> Option<Self> {
        if name.is_empty() {
            return None;
        }
        Some(match parse_ipv4(name) {
            Some(ip) => Self::Ipv4(ip),
            None => Self::Dns(name),
        })
    }
}

fn parse_ipv4(text: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = text.split('.');
    for slot in &mut out {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = part.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(any(test, feature = "target-tests"))]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;

    #[cfg_attr(test, test)]
    pub(crate) fn names_parse_as_dns_or_ipv4() {
        assert_eq!(
            ServerName::parse("10.0.2.2"),
            Some(ServerName::Ipv4([10, 0, 2, 2]))
        );
        assert_eq!(
            ServerName::parse("gw.site.lan"),
            Some(ServerName::Dns("gw.site.lan"))
        );
        assert_eq!(
            ServerName::parse("10.0.2.256"),
            Some(ServerName::Dns("10.0.2.256"))
        );
        assert_eq!(ServerName::parse("1.2.3"), Some(ServerName::Dns("1.2.3")));
        assert_eq!(ServerName::parse(""), None);
    }

    #[cfg_attr(test, test)]
    pub(crate) fn lengths_are_checked() {
        assert!(next(&[]).is_none());
        assert!(next(&[0x30]).is_none());
        assert!(next(&[0x30, 0x05, 1, 2]).is_none()); // shorter than it says
        assert!(next(&[0x30, 0x80]).is_none()); // indefinite length
        assert!(next(&[0x30, 0x83, 0, 0, 1, 0]).is_none()); // 3 length bytes
        let (tlv, rest) = next(&[0x04, 0x81, 0x01, 0xAA, 0xBB]).unwrap();
        assert_eq!((tlv.tag, tlv.value, rest), (0x04, &[0xAA][..], &[0xBB][..]));
        assert_eq!(tlv.whole, &[0x04, 0x81, 0x01, 0xAA]);
    }

    #[cfg_attr(test, test)]
    pub(crate) fn garbage_is_refused_without_panicking() {
        let mut state = 0x1234_5678_u32;
        let mut buf = [0u8; 96];
        for round in 0..20_000 {
            for b in &mut buf {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                *b = state as u8;
            }
            // Plausible prefixes make the walker go deeper.
            buf[0] = 0x30;
            buf[1] = (round % 100) as u8;
            buf[2] = 0x30;
            let _ = Certificate::parse(&buf[..round % 96]);
        }
    }
}
