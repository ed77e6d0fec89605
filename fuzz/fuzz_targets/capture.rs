//! Capture file → pipeline: the pcap/pcapng reader and replay's record handling take untrusted files,
//! and must never panic or loop, whatever the bytes. Each input is a whole capture file.
#![no_main]

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use vxtap::base::Feed;
use vxtap::ingest::pcap::{self, CaptureReader, Item};
use vxtap::ingest::replay::{Feeder, FileSummary};
use vxtap::wire::link::find_datagram;
use vxtap::pipeline::{Ingress, Pipeline};

struct Replay {
    pipeline: Pipeline,
    ingress: Ingress,
}

/// The pipeline lives as long as the fuzzer process, held in a static so that it stays reachable.
fn replay() -> &'static Mutex<Replay> {
    static REPLAY: OnceLock<Mutex<Replay>> = OnceLock::new();
    REPLAY.get_or_init(|| {
        let config =
            "[pipeline]\nshards = 1\n[sessions]\nmax_learned = 64\n[[module]]\nkind = \"stats\"\n";
        let config = vxtap::Config::parse(config, "fuzz.toml").expect("valid fuzz config");
        let pipeline = Pipeline::builder(config)
            .feed(Feed::Offline)
            .build()
            .and_then(|s| s.start_handoff())
            .expect("pipeline builds");
        let ingress = pipeline.ingress();
        Mutex::new(Replay { pipeline, ingress })
    })
}

fuzz_target!(|data: &[u8]| {
    // The reader alone, with the link-layer helpers on every frame.
    if let Ok(mut reader) = CaptureReader::new(data, Path::new("fuzz.pcap")) {
        let mut n = 0;
        while let Ok(Some(item)) = reader.next_item() {
            n += 1;
            assert!(
                n <= data.len(),
                "more records than input bytes: the reader loops"
            );
            if let Item::Frame(r) = item {
                let _ = pcap::l3(r.link, r.data);
                if let Some(d) = find_datagram(r.link, r.data) {
                    let _ = (d.payload(), d.source_port());
                }
            }
        }
    }
    // And the way replay feeds a pipeline.
    let mut guard = replay().lock().unwrap_or_else(|e| e.into_inner());
    let Replay { pipeline, ingress } = &mut *guard;
    if let Ok(mut reader) = CaptureReader::new(data, Path::new("fuzz.pcap")) {
        let mut summary = FileSummary::default();
        let _ = Feeder::default().feed(pipeline, ingress, &mut reader, &mut summary);
    }
});
