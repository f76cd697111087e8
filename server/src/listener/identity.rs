//! What a verified client certificate says about its holder: the subject
//! DN in RFC 4514 form, its first CN, and its DNS and URI subject
//! alternative names ([`CertIdentity`]), read with `x509-parser`.
//!
//! The DN string is the one `openssl x509 -noout -subject -nameopt RFC2253`
//! prints for the usual attributes (`CN=dev42,OU=Sensors,O=Acme`): RDNs
//! last to first, multi-valued RDNs joined by `+`, RFC 4514 escaping.
//! Attributes without a keyword are written as their dotted OID; values
//! that are not strings as `#` and the hex of their DER encoding.

use portcullis_core::gate::CertIdentity;
use x509_parser::der_parser::asn1_rs::{Any, Class, Tag};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::X509Name;

/// Reads the identity from a DER certificate (the leaf the client sent,
/// already verified by rustls). `None` if it cannot be parsed.
pub fn from_der(der: &[u8]) -> Option<CertIdentity> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let common_name = subject.iter_common_name().find_map(|cn| attr_string(cn.attr_value()));
    let mut san_dns = Vec::new();
    let mut san_uri = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => san_dns.push((*d).to_string()),
                GeneralName::URI(u) => san_uri.push((*u).to_string()),
                _ => {}
            }
        }
    }
    Some(CertIdentity { common_name, subject: rfc4514(subject), san_dns, san_uri })
}

/// Keywords for attribute types: RFC 4514's table, then the names OpenSSL
/// prints for a few more common ones.
const KEYWORDS: [(&str, &str); 14] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.6", "C"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
    ("2.5.4.5", "serialNumber"),
    ("2.5.4.4", "SN"),
    ("2.5.4.42", "GN"),
    ("2.5.4.12", "title"),
];

/// The DN as an RFC 4514 string.
fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = atv.attr_type().to_id_string();
            match KEYWORDS.iter().find(|(o, _)| *o == oid) {
                Some((_, keyword)) => out.push_str(keyword),
                None => out.push_str(&oid),
            }
            out.push('=');
            match attr_string(atv.attr_value()) {
                Some(s) => escape_into(&s, &mut out),
                None => {
                    out.push('#');
                    for b in der_encoding(atv.attr_value()) {
                        out.push_str(&format!("{b:02x}"));
                    }
                }
            }
        }
    }
    out
}

/// A string-typed attribute value as text (BMPString decoded from
/// UTF-16); `None` for other types.
fn attr_string(value: &Any<'_>) -> Option<String> {
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::NumericString | Tag::VisibleString => {
            std::str::from_utf8(value.data).ok().map(str::to_string)
        }
        Tag::BmpString => {
            if !value.data.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = value.data.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// RFC 4514 section 2.4 escaping.
fn escape_into(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
}

/// The DER encoding (tag, length, content) of a value with a low tag number.
fn der_encoding(value: &Any<'_>) -> Vec<u8> {
    let class = match value.class() {
        Class::Universal => 0u8,
        Class::Application => 1,
        Class::ContextSpecific => 2,
        Class::Private => 3,
    };
    let constructed = if value.header.is_constructed() { 0x20 } else { 0 };
    let tag = u8::try_from(value.tag().0).unwrap_or(0x1f).min(0x1f);
    let mut out = vec![(class << 6) | constructed | tag];
    let len = value.data.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value.data);
    out
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    use super::*;

    fn cert(dn: &[(DnType, &str)], sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        for (t, v) in dn {
            name.push(t.clone(), *v);
        }
        params.distinguished_name = name;
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn subject_in_rfc4514_order_with_cn_and_sans() {
        let der = cert(
            &[(DnType::CountryName, "DE"), (DnType::OrganizationName, "Acme, Inc."), (DnType::CommonName, "dev42")],
            vec![
                SanType::DnsName("dev42.example.com".try_into().unwrap()),
                SanType::URI("spiffe://acme/dev42".try_into().unwrap()),
                SanType::DnsName("alt.example.com".try_into().unwrap()),
            ],
        );
        let id = from_der(&der).unwrap();
        assert_eq!(id.subject, "CN=dev42,O=Acme\\, Inc.,C=DE");
        assert_eq!(id.common_name.as_deref(), Some("dev42"));
        assert_eq!(id.san_dns, ["dev42.example.com", "alt.example.com"]);
        assert_eq!(id.san_uri, ["spiffe://acme/dev42"]);
    }

    #[test]
    fn no_cn_and_escaping() {
        let der = cert(&[(DnType::OrganizationalUnitName, " #lead+trail ")], vec![]);
        let id = from_der(&der).unwrap();
        assert_eq!(id.common_name, None);
        assert_eq!(id.subject, "OU=\\ #lead\\+trail\\ ");
        assert!(id.san_dns.is_empty() && id.san_uri.is_empty());
    }

    #[test]
    fn unknown_attribute_is_a_dotted_oid() {
        let der =
            cert(&[(DnType::CustomDnType(vec![1, 3, 6, 1, 4, 1, 99999, 1]), "x"), (DnType::CommonName, "a")], vec![]);
        let id = from_der(&der).unwrap();
        assert_eq!(id.subject, "CN=a,1.3.6.1.4.1.99999.1=x");
    }

    #[test]
    fn garbage_is_none() {
        assert!(from_der(b"not a certificate").is_none());
        assert!(from_der(&[]).is_none());
    }
}
