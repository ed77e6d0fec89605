//! The fields of an X.509 certificate that a TLS record shows, in the forms Suricata's EVE `tls` object
//! writes them, so that tooling that reads EVE reads ours.
//!
//! Certificates come from [`super::parser::Certificate::chain`] (TLS ≤ 1.2 sends them in clear).
//! Decoding is x509-parser's (the parser Suricata itself uses): zero-copy over the DER, with the
//! distinguished-name printing EVE's `subject` and `issuerdn` come from. Allocation is fine here: only the
//! leaf is decoded, and the TLS state keeps its shard's recent leaves decoded, so this runs once per
//! distinct leaf a shard sees lately rather than once per handshake.
//!
//! Fingerprint: EVE's `fingerprint` is the SHA-1 of the DER; vxtap computes SHA-256 instead (issue 13:
//! SHA-1 is no longer a safe identifier), in the same colon-separated lowercase hex, and the field is
//! named [`CertInfo::fingerprint_sha256`] so that no reader mistakes one for the other.

use std::net::IpAddr;

use sha2::{Digest, Sha256};
use thiserror::Error;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::objects::oid_registry;
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;
use x509_parser::x509::X509Name;

/// Subject alternative names kept per certificate; past it [`CertInfo::sans_truncated`] is set. Public
/// CDN certificates carry up to a few hundred; records stay bounded.
pub const MAX_SANS: usize = 100;

/// Why a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CertError {
    /// The bytes are not a DER X.509 certificate.
    #[error("not a DER X.509 certificate: {0}")]
    Der(String),
    /// Bytes follow the certificate within its chain entry.
    #[error("{0} bytes after the certificate")]
    TrailingBytes(usize),
}

/// The EVE-visible fields of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject distinguished name, attributes in certificate order, `", "`-separated
    /// (`"C=US, O=Cloudflare, Inc., CN=cloudflare.com"`): EVE's `subject`.
    pub subject: String,
    /// Issuer distinguished name, same form: EVE's `issuerdn`.
    pub issuer: String,
    /// Serial number as encoded, colon-separated uppercase hex (`"0A:68:BB:..."`): EVE's `serial`.
    pub serial: String,
    /// Start of validity, UTC, `YYYY-MM-DDTHH:MM:SS`: EVE's `notbefore`.
    pub not_before: String,
    /// End of validity, same form: EVE's `notafter`.
    pub not_after: String,
    /// DNS names of the subjectAltName extension, in order.
    pub san_dns: Vec<String>,
    /// IP addresses of the subjectAltName extension, in order.
    pub san_ip: Vec<IpAddr>,
    /// Whether there were more than [`MAX_SANS`] names and addresses, and the lists stop there.
    pub sans_truncated: bool,
    /// Whether the subjectAltName extension was there but did not decode (lists then empty).
    pub sans_malformed: bool,
    /// SHA-256 of the DER, colon-separated lowercase hex (EVE's `fingerprint` form, other hash).
    pub fingerprint_sha256: String,
}

/// SHA-256 of a DER certificate as colon-separated lowercase hex, e.g. `"3b:0a:…"`; usable even when
/// the certificate itself does not decode.
pub fn fingerprint_sha256(der: &[u8]) -> String {
    colon_hex(&Sha256::digest(der), false)
}

fn colon_hex(bytes: &[u8], upper: bool) -> String {
    let mut out = String::new();
    crate::modules::eve::push_colon_hex(&mut out, bytes, upper);
    out
}

/// EVE's time form. Years outside 0..=9999 (which X.509 cannot encode) would print with more digits.
fn eve_time(t: &ASN1Time) -> String {
    let t = t.to_datetime();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A name as EVE prints it; a name whose attributes do not decode prints as `?` rather than failing the
/// whole certificate.
fn name(n: &X509Name<'_>) -> String {
    n.to_string_with_registry(oid_registry())
        .unwrap_or_else(|_| "?".to_owned())
}

/// Decodes one DER certificate into its EVE fields. The whole entry must be the certificate.
pub fn parse_certificate(der: &[u8]) -> Result<CertInfo, CertError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| CertError::Der(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CertError::TrailingBytes(rest.len()));
    }
    let mut info = CertInfo {
        subject: name(cert.subject()),
        issuer: name(cert.issuer()),
        serial: colon_hex(cert.raw_serial(), true),
        not_before: eve_time(&cert.validity().not_before),
        not_after: eve_time(&cert.validity().not_after),
        san_dns: Vec::new(),
        san_ip: Vec::new(),
        sans_truncated: false,
        sans_malformed: false,
        fingerprint_sha256: fingerprint_sha256(der),
    };
    match cert.subject_alternative_name() {
        Ok(None) => {}
        Ok(Some(san)) => {
            let mut kept = 0;
            for general in &san.value.general_names {
                let ip = match general {
                    GeneralName::DNSName(_) | GeneralName::IPAddress(_) if kept == MAX_SANS => {
                        info.sans_truncated = true;
                        break;
                    }
                    GeneralName::DNSName(dns) => {
                        info.san_dns.push((*dns).to_owned());
                        kept += 1;
                        continue;
                    }
                    GeneralName::IPAddress(ip) => ip,
                    _ => continue,
                };
                let addr = match ip.len() {
                    4 => <[u8; 4]>::try_from(*ip).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(*ip).ok().map(IpAddr::from),
                    _ => None,
                };
                match addr {
                    Some(addr) => {
                        info.san_ip.push(addr);
                        kept += 1;
                    }
                    None => info.sans_malformed = true,
                }
            }
        }
        Err(_) => info.sans_malformed = true,
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::tls::parser::{find_handshake, handshake_type, Certificate, Found};

    /// The chain cloudflare.com's server sent in tls-alpn-h2.pcap (testdata/README.md).
    fn chain() -> Vec<Vec<u8>> {
        let flight = include_bytes!("testdata/tls-alpn-h2-server-flight.bin");
        let mut scratch = Vec::new();
        let Found::Complete { body, .. } =
            find_handshake(flight, handshake_type::CERTIFICATE, &mut scratch)
        else {
            panic!("the fixture holds a Certificate message");
        };
        let chain = Certificate::parse(body).unwrap();
        chain.chain().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn leaf_and_intermediate_from_a_capture() {
        // Expected values from `openssl x509 -inform der` on the same DER, except the names of the EV
        // jurisdiction attributes (1.3.6.1.4.1.311.60.2.1.x), which OpenSSL abbreviates differently
        // from x509-parser's registry (and so from Suricata's EVE, which uses it too).
        let chain = chain();
        let leaf = parse_certificate(&chain[0]).unwrap();
        assert_eq!(
            leaf.subject,
            "businessCategory=Private Organization, msJurisdictionCountry=US, \
             msJurisdictionStateOrProvince=Delaware, serialNumber=4710875, C=US, ST=California, \
             L=San Francisco, O=Cloudflare, Inc., CN=cloudflare.com"
        );
        assert_eq!(
            leaf.issuer,
            "C=US, O=DigiCert Inc, OU=www.digicert.com, CN=DigiCert ECC Extended Validation Server CA"
        );
        assert_eq!(
            leaf.serial,
            "0A:68:BB:98:4A:50:73:99:F4:71:6E:80:9A:44:A7:B0"
        );
        assert_eq!(leaf.not_before, "2018-10-30T00:00:00");
        assert_eq!(leaf.not_after, "2020-11-03T12:00:00");
        assert_eq!(leaf.san_dns, ["cloudflare.com", "www.cloudflare.com"]);
        assert!(leaf.san_ip.is_empty() && !leaf.sans_truncated && !leaf.sans_malformed);
        assert_eq!(
            leaf.fingerprint_sha256,
            "84:69:46:45:cb:d1:83:bf:9b:e4:72:ce:70:2b:d1:89:24:6e:1f:cd:15:44:ff:ea:d4:66:d9:56:a7:16:90:bf"
        );

        let ca = parse_certificate(&chain[1]).unwrap();
        assert_eq!(ca.subject, leaf.issuer);
        assert_eq!(
            ca.issuer,
            "C=US, O=DigiCert Inc, OU=www.digicert.com, CN=DigiCert High Assurance EV Root CA"
        );
        assert_eq!(ca.serial, "02:97:07:56:0C:D4:A9:EB:BF:E2:72:F1:E0:96:D8:82");
        assert_eq!(ca.not_before, "2016-06-21T12:54:27");
        assert_eq!(ca.not_after, "2031-06-21T12:54:27");
        assert!(ca.san_dns.is_empty());
        assert!(ca.fingerprint_sha256.starts_with("fd:c8:98:6c:"));
    }

    #[test]
    fn broken_der_is_an_error() {
        let leaf = &chain()[0];
        assert!(matches!(parse_certificate(&[]), Err(CertError::Der(_))));
        assert!(matches!(
            parse_certificate(b"not a certificate"),
            Err(CertError::Der(_))
        ));
        for n in [1, 4, 100, leaf.len() - 1] {
            assert!(parse_certificate(&leaf[..n]).is_err(), "cut at {n}");
        }
        let mut long = leaf.clone();
        long.push(0);
        assert_eq!(parse_certificate(&long), Err(CertError::TrailingBytes(1)));
        // Every byte flipped in turn: errors or values, never a panic.
        let mut der = leaf.clone();
        for i in 0..der.len() {
            der[i] ^= 0xff;
            let _ = parse_certificate(&der);
            der[i] ^= 0xff;
        }
        assert_eq!(fingerprint_sha256(&[]).len(), 32 * 3 - 1);
    }
}
