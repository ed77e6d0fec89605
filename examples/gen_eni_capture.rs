//! Writes a deterministic VXLAN mirror capture that looks like real ENIs' traffic (issue 14, goal 1):
//! flows that open, talk and close in time order with bounded concurrency, carrying real DNS, TLS,
//! HTTP and SSH payloads. The traffic model is in `benches/common/eni.rs`.
//!
//! ```text
//! gen_eni_capture OUT.pcap [--flows N] [--concurrent N] [--sessions N] [--seed N]
//! ```
//!
//! Defaults: 170,000 flows, at most 50,000 live at once, 3 sessions, seed 14 (about 2 M packets).
//! Same arguments, same bytes. A summary goes to stderr.

use std::io::{self, BufWriter, Write};
use std::time::Instant;

#[path = "../benches/common/payloads.rs"]
mod payloads;

#[path = "../benches/common/eni.rs"]
mod eni;

fn main() -> io::Result<()> {
    let usage = || {
        io::Error::other(
            "usage: gen_eni_capture OUT.pcap [--flows N] [--concurrent N] [--sessions N] [--seed N]",
        )
    };
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .filter(|a| !a.starts_with('-'))
        .ok_or_else(usage)?;
    let mut cfg = eni::EniConfig::default();
    while let Some(flag) = args.next() {
        let value: u64 = args.next().and_then(|v| v.parse().ok()).ok_or_else(usage)?;
        match flag.as_str() {
            "--flows" => cfg.flows = value,
            "--concurrent" => cfg.concurrent = value,
            "--sessions" => cfg.sessions = u32::try_from(value).map_err(|_| usage())?,
            "--seed" => cfg.seed = value,
            _ => return Err(usage()),
        }
    }
    let began = Instant::now();
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&out)?);
    let s = eni::write_pcap(cfg, &mut w)?;
    w.flush()?;
    let secs = began.elapsed().as_secs_f64();

    let pct = |n: u64, of: u64| 100.0 * n as f64 / of.max(1) as f64;
    eprintln!(
        "gen_eni_capture: {out}: {} flows, {} packets, {} bytes, {} sessions, seed {}",
        s.flows,
        s.packets,
        s.bytes + 24 + 16 * s.packets,
        cfg.sessions,
        cfg.seed
    );
    eprintln!(
        "  peak concurrency {} flows (limit {}), reached after {:.1} s; mean {:.0} from then to the last \
         arrival at {:.1} s; packet time {:.1} s; generated in {secs:.1} s",
        s.peak_live,
        cfg.concurrent,
        s.fill_end_us.saturating_sub(s.first_us) as f64 / 1e6,
        s.steady_concurrency(),
        (s.last_arrival_us - s.first_us) as f64 / 1e6,
        (s.last_us - s.first_us) as f64 / 1e6
    );
    let mix: Vec<String> = eni::Kind::ALL
        .iter()
        .zip(s.by_kind.iter().zip(&s.packets_by_kind))
        .map(|(k, (f, p))| {
            format!(
                "{} {:.1}%/{:.1}%",
                k.name(),
                pct(*f, s.flows),
                pct(*p, s.packets)
            )
        })
        .collect();
    eprintln!("  mix (flows/packets): {}", mix.join(", "));
    eprintln!(
        "  IPv6 {:.1}% of flows, VLAN-tagged {:.1}%, inbound {:.1}%; TCP closed by FIN {}, by RST {}, left idle {}; \
         retransmitted segments {}, swapped pairs {}; damaged datagrams {} ({:.2}%)",
        pct(s.ipv6_flows, s.flows),
        pct(s.vlan_flows, s.flows),
        pct(s.inbound_flows, s.flows),
        s.closed_fin,
        s.closed_rst,
        s.left_idle,
        s.retransmissions,
        s.swapped_pairs,
        s.damaged,
        pct(s.damaged, s.packets)
    );
    Ok(())
}
