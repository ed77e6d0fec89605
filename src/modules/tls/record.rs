//! The record writer: one EVE-shaped `tls` record per handshake (docs/modules/tls.md lists every
//! field). Field names are Suricata's where its EVE `tls` object has the field, so that jq recipes
//! and SIEM parsers written for EVE read these; the others are vxtap's and say what they hold.

use std::fmt::Write as _;

use super::parser::version;
use super::state::{flag, ClientSummary, Handshake};
use crate::base::Timestamp;
use crate::flow::Flow;
use crate::modules::eve::{self, JsonObject};

/// A protocol version as EVE spells it ("TLS 1.2", but "TLSv1" for 1.0), so that filters written for
/// Suricata's records match; versions EVE has no name for are written as hex (`"0x7f1c"`).
pub fn version_name(v: u16, out: &mut String) {
    match known_version(v) {
        Some(name) => out.push_str(name),
        None => {
            let _ = write!(out, "0x{v:04x}");
        }
    }
}

fn known_version(v: u16) -> Option<&'static str> {
    Some(match v {
        0x0002 => "SSLv2",
        version::SSL_3_0 => "SSLv3",
        version::TLS_1_0 => "TLSv1",
        version::TLS_1_1 => "TLS 1.1",
        version::TLS_1_2 => "TLS 1.2",
        version::TLS_1_3 => "TLS 1.3",
        _ => return None,
    })
}

/// The IANA name of the cipher suites servers choose today (TLS 1.3's five, and the TLS 1.2 AEAD and
/// CBC suites of current OpenSSL, BoringSSL, SChannel and NSS defaults). The record always carries
/// the code as `cipher_suite`; the name is a convenience for people reading it, not a registry.
pub fn cipher_name(code: u16) -> Option<&'static str> {
    Some(match code {
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        0x1304 => "TLS_AES_128_CCM_SHA256",
        0x1305 => "TLS_AES_128_CCM_8_SHA256",
        0xc02b => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        0xc02c => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        0xc02f => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        0xc030 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        0xcca8 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xcca9 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        0xc009 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        0xc00a => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        0xc013 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        0xc014 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        0xc023 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        0xc027 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        0x009c => "TLS_RSA_WITH_AES_128_GCM_SHA256",
        0x009d => "TLS_RSA_WITH_AES_256_GCM_SHA384",
        0x009e => "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        0x009f => "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
        0x002f => "TLS_RSA_WITH_AES_128_CBC_SHA",
        0x0035 => "TLS_RSA_WITH_AES_256_CBC_SHA",
        0x003c => "TLS_RSA_WITH_AES_128_CBC_SHA256",
        0x000a => "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        _ => return None,
    })
}

fn client_fields(t: &mut JsonObject<'_>, c: &ClientSummary) {
    t.array("client_versions", |a| {
        for &v in &c.versions {
            a.text(|w| VersionName(v).write_to(w));
        }
    });
    t.u64("client_cipher_count", c.ciphers as u64);
    t.u64("client_extension_count", c.extensions as u64);
    if !c.alpns.is_empty() {
        t.array("client_alpns", |a| {
            for p in &c.alpns {
                a.str(p);
            }
        });
    }
}

/// [`version_name`] for the JSON writer's escaping `text`.
struct VersionName(u16);

impl VersionName {
    // Straight to the record's buffer: a String per name would be an allocation per record.
    fn write_to<W: std::fmt::Write + ?Sized>(&self, out: &mut W) -> std::fmt::Result {
        match known_version(self.0) {
            Some(name) => out.write_str(name),
            None => write!(out, "0x{:04x}", self.0),
        }
    }
}

/// Writes the record for `hs` into `out` (the emitter's line buffer).
pub fn write(out: &mut String, ts: Timestamp, flow: &Flow<'_>, hs: &Handshake) {
    let mut o = eve::begin(out, ts, "tls", flow);
    o.object("tls", |t| {
        if let Some(sni) = hs.client.as_ref().and_then(|c| c.sni.as_deref()) {
            t.str("sni", sni);
        }
        if let Some(s) = &hs.server {
            t.text("version", |w| VersionName(s.version).write_to(w));
        }
        if let Some(leaf) = hs.chain.as_ref().and_then(|c| c.leaf.as_ref()) {
            t.str("subject", &leaf.subject);
            t.str("issuerdn", &leaf.issuer);
            t.str("serial", &leaf.serial);
            t.str("fingerprint_sha256", &leaf.fingerprint_sha256);
            t.str("notbefore", &leaf.not_before);
            t.str("notafter", &leaf.not_after);
            if !leaf.san_dns.is_empty() || !leaf.san_ip.is_empty() {
                t.array("subjectaltname", |a| {
                    for n in &leaf.san_dns {
                        a.str(n);
                    }
                    for ip in &leaf.san_ip {
                        a.ip(*ip);
                    }
                });
            }
        }
        if let Some(chain) = &hs.chain {
            t.u64("chain_length", chain.len as u64);
        }
        if let Some(c) = &hs.client {
            t.str("ja4", c.ja4.as_str());
        }
        if let Some(r) = &hs.retry {
            t.str("ja4_retry", r.ja4.as_str());
        }
        if let Some(s) = &hs.server {
            if let Some(alpn) = &s.alpn {
                t.array("server_alpns", |a| {
                    a.str(alpn);
                });
            }
            t.field("cipher_suite", |out| {
                out.push_str("\"0x");
                eve::push_hex4(out, s.cipher);
                out.push('"');
            });
            t.opt_str("cipher", cipher_name(s.cipher));
        }
        if let Some(c) = &hs.client {
            client_fields(t, c);
        }
        if hs.hello_retry {
            t.bool("hello_retry_request", true);
        }
        if hs.starttls {
            t.bool("starttls", true);
        }
        if hs.flags != 0 {
            t.array("flags", |a| {
                for (bit, name) in flag::NAMES {
                    if hs.flags & bit != 0 {
                        a.str(name);
                    }
                }
            });
        }
    });
    o.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_eve_spells_them() {
        let name = |v| {
            let mut s = String::new();
            version_name(v, &mut s);
            s
        };
        assert_eq!(name(0x0304), "TLS 1.3");
        assert_eq!(name(0x0303), "TLS 1.2");
        assert_eq!(name(0x0301), "TLSv1");
        assert_eq!(name(0x0300), "SSLv3");
        assert_eq!(name(0x7f1c), "0x7f1c");
        assert_eq!(cipher_name(0x1301), Some("TLS_AES_128_GCM_SHA256"));
        assert_eq!(cipher_name(0x5600), None);
    }
}
