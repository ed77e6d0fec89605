//! TLS parsers: the bytes of one TCP direction, untrusted. The content probe, the handshake
//! accumulation helper, the ClientHello/ServerHello/Certificate parsers, JA4 and the X.509 decoding
//! must never panic or loop, whatever the bytes; each parser is also fed the raw input as a message
//! body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vxtap::modules::tls::cert::parse_certificate;
use vxtap::modules::tls::ja4::{ja4, Transport};
use vxtap::modules::tls::parser::{
    find_handshake, handshake_message, handshake_status, handshake_type, probe,
    skip_compat_change_cipher_spec, Certificate, ClientHello, Found, ServerHello,
};

fn client_hello(body: &[u8]) {
    if let Ok(hello) = ClientHello::parse(body) {
        let fp = ja4(&hello, Transport::Tcp);
        assert_eq!(fp.as_str().len(), 36);
        let _ = hello.server_name_str();
        let _ = hello.alpn().count() + hello.extensions().count();
        let _ = hello.supported_groups().count() + hello.ec_point_formats().len();
    }
}

fn server_hello(body: &[u8]) {
    if let Ok(hello) = ServerHello::parse(body) {
        let _ = (
            hello.version(),
            hello.alpn(),
            hello.is_hello_retry_request(),
        );
        let _ = hello.extension_types().count();
    }
}

fn certificate(body: &[u8]) {
    if let Ok(chain) = Certificate::parse(body) {
        for der in chain.chain() {
            let _ = parse_certificate(der);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = probe(data);
    let mut scratch = Vec::new();
    for ty in [
        handshake_type::CLIENT_HELLO,
        handshake_type::SERVER_HELLO,
        handshake_type::CERTIFICATE,
    ] {
        let status = handshake_status(data, ty);
        if let Found::Complete { body, end } = find_handshake(data, ty, &mut scratch) {
            assert!(end <= data.len(), "end past the stream");
            assert!(
                matches!(status, vxtap::modules::tls::parser::Status::Complete { len, end: e } if len == body.len() && e == end),
                "status and find disagree"
            );
            match ty {
                handshake_type::CLIENT_HELLO => {
                    client_hello(body);
                    // A second ClientHello after a HelloRetryRequest.
                    let rest = &data[end..];
                    let at = skip_compat_change_cipher_spec(rest);
                    let _ = handshake_status(&rest[at..], ty);
                }
                handshake_type::SERVER_HELLO => server_hello(body),
                _ => certificate(body),
            }
        }
    }
    client_hello(data);
    server_hello(data);
    certificate(data);
    // Record-less handshake bytes, as QUIC CRYPTO frames carry them.
    if let Ok((handshake_type::CLIENT_HELLO, body)) = handshake_message(data) {
        client_hello(body);
    }
});
