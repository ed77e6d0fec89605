//! Datagram → packet: the whole path untrusted bytes take, from a UDP payload through decapsulation,
//! session lookup, inner dissection, steering and a shard's module, must never panic. The first input
//! byte picks VXLAN or GENEVE, the second the outer source; the rest is the payload.
#![no_main]

use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use vxtap::base::Feed;
use vxtap::base::{Packet, Timestamp};
use vxtap::pipeline::{Encap, Ingress, Pipeline};
use vxtap::wire::inner::dissect;

/// The pipeline lives as long as the fuzzer process, held in a static so that it stays reachable.
fn ingress() -> &'static Mutex<Ingress> {
    static PIPELINE: OnceLock<(Pipeline, Mutex<Ingress>)> = OnceLock::new();
    &PIPELINE.get_or_init(|| {
        let config = "[pipeline]\nshards = 1\n[sessions]\nmax_learned = 64\n[[module]]\nkind = \"stats\"\n";
        let config = vxtap::Config::parse(config, "fuzz.toml").expect("valid fuzz config");
        let pipeline = Pipeline::builder(config)
            .feed(Feed::Offline)
            .build()
            .and_then(|s| s.start_handoff())
            .expect("pipeline builds");
        let ingress = Mutex::new(pipeline.ingress());
        (pipeline, ingress)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let [mode, host, payload @ ..] = data else { return };
    let encap = if mode & 1 == 0 { Encap::Vxlan } else { Encap::Geneve };
    let source = IpAddr::from([10, 0, 0, *host]);

    // The pure parts, with every accessor a module may call.
    if let Ok(d) = vxtap::pipeline::decap::decapsulate(encap, payload) {
        let layers = dissect(d.frame);
        let session = std::sync::Arc::new(vxtap::base::Session::plain("fuzz", 1));
        let pkt = Packet { session: &session, ts: Timestamp::from_secs(1), frame: d.frame, orig_len: d.frame.len() as u32, layers: &layers };
        let _ = (pkt.flow(), pkt.l3().len(), pkt.payload().len(), pkt.ip_len(), pkt.truncated(), pkt.is_fragment());
        let _ = vxtap::pipeline::steer::symmetric_hash(1, &layers);
    }

    // And the real core, as the sockets drive it.
    let mut ingress = ingress().lock().unwrap_or_else(|e| e.into_inner());
    ingress.datagram(Timestamp::from_secs(u64::from(*host)), source, encap, payload);
    ingress.send_pending();
});
