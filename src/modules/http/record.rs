//! The `http` record: one per transaction, with Suricata's EVE `http` field names where EVE has the
//! field (see docs/modules/http.md), written when the response completes, or earlier when a gap
//! or an upgrade ends it, or at the flow's end with what is known.

use super::Tx;
use crate::flow::Flow;
use crate::modules::eve;
use crate::modules::Emitter;

fn protocol(minor: u8) -> &'static str {
    if minor == 0 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    }
}

/// Writes `tx` as a record about `flow`.
pub(super) fn write(flow: &Flow<'_>, tx: &Tx, out: &mut Emitter<'_>) {
    out.keyed(&flow.session().name).emit_line(|s| {
        let mut o = eve::begin(s, tx.ts, "http", flow);
        o.object("http", |h| {
            h.opt_str("hostname", tx.host.as_deref());
            h.opt_str("url", tx.uri.as_deref());
            h.opt_str("http_user_agent", tx.user_agent.as_deref());
            h.opt_str("xff", tx.xff.as_deref());
            h.opt_str("http_content_type", tx.content_type.as_deref());
            h.opt_str("http_refer", tx.referer.as_deref());
            h.opt_str("http_method", tx.method.as_deref());
            if let Some(v) = tx.request_version.or(tx.response_version) {
                h.str("protocol", protocol(v));
            }
            if let Some(status) = tx.status {
                h.u64("status", u64::from(status));
                h.u64("length", tx.response_body);
            }
            h.opt_str(
                "http_request_content_type",
                tx.request_content_type.as_deref(),
            );
            if tx.method.is_some() {
                h.u64("request_body_len", tx.request_body);
            }
            if let Some(why) = tx.interrupted {
                h.str("interrupted", why);
            }
            for (set, name) in [
                (tx.gap, "gap"),
                (tx.request_missing, "request_missing"),
                (tx.malformed, "malformed"),
                (tx.fields_cut, "fields_cut"),
                (tx.too_many_headers, "too_many_headers"),
                (tx.tunnel, "tunnel"),
            ] {
                if set {
                    h.bool(name, true);
                }
            }
        });
        o.end();
        Ok(())
    });
}
