#!/usr/bin/env bash
# vxtap's benchmarks (issue 6), each against a baseline measured in the same run on this machine:
#   (a) drain:   how fast vxtap empties full UDP sockets vs a bare recvmmsg counting loop
#                (examples/bare_recvmmsg.rs), same sockets and threads, alternating runs, and vs
#                the same loop asking for source addresses and timestamps ("bare+meta"); once per
#                DRAIN_SETS entry traffic:modules (traffic uniform or eni, the ENI-like model; modules
#                stats, or flowlog for stats + flowlog), RESULT lines "drain traffic=...";
#   (b) offline: `vxtap replay` of generated VXLAN captures vs a bare single-threaded decap-and-count
#                loop (examples/bare_replay.rs) and Suricata when installed; peak RSS at two file sizes.
#                Two captures: "uniform" (examples/gen_capture.rs: flows drawn uniformly at random, all
#                alive from the start; RESULT lines "offline ... capture=uniform") and "eni"
#                (examples/gen_eni_capture.rs: flows that open, talk and close in time order, at most
#                ENI_CONCURRENT live, real DNS/TLS/HTTP payloads; RESULT lines "offline-eni ... capture=eni");
#   (c) micro:   per-packet medians (benches/datapath.rs) vs memcpy and etherparse's slicer; the flow
#                table per packet with > 300 k live flow directions (benches/flowtable.rs) vs an FxHashMap;
#   (d) memory:  resident memory per tracked flow with 1 M concurrent flows (examples/flow_memory.rs);
#   (e) flows:   the flow layer reassembling every TCP direction for a null consumer
#                (examples/replay_streams.rs) vs flowlog alone, one shard, on the ENI-like capture.
#   (f) forward: the drain benchmark with stats only, then with a forward module re-sending every
#                packet as VXLAN to a loopback receiver that discards (a bound socket never read: the
#                kernel drops, so the receiver costs no CPU), same settings; the ratio of the rates.
#   (g) scope:   accessscope with ten scopes of every statement kind (bench/accessscope.toml,
#                bench/scopes/) added to flowlog vs flowlog alone and vs flowlog plus the flow table
#                (accessscope with one scope nothing matches), and added to the L7 set (flowlog + dns +
#                tls + http, which keeps a flow table already) vs that set alone, one shard, on the
#                ENI-like capture. With valgrind installed, the same replays counted in instructions
#                (cachegrind): "scope instructions" (SCOPE_INSTRUCTIONS=0 skips it, ~5 minutes).
#   (h) l7:      flowlog + dns + tls + http vs Suricata 7 with its default EVE logging, ENI-like capture.
#   (i) base:    this build against another build's binary (BASE_BIN, e.g. main's target/release/vxtap),
#                alternating runs, one shard, ENI-like capture: flowlog alone, and flowlog + accessscope
#                (10 scopes); records compared byte for byte. Skipped without BASE_BIN.
#   (j) long:    peak RSS over a long ENI-like capture streamed from the generator into
#                `vxtap replay -` (LONG_FLOWS flows, about 1,800 s of packet time by default: three
#                times the ten-minute established-TCP timeout, after which idle connections leave the
#                table as fast as new ones come), sampled every second: the peak in the run's first
#                half against its second half (flat: the second is no higher), for the L7 set and for
#                stats + flowlog, default shards. Nothing is written to disk. Not in the default ONLY.
# Every timed run records wall seconds, peak RSS and user + system CPU seconds; parts (b) and (i) also
# report median CPU milliseconds (cpu_ms=), steadier than rates on a loaded machine.
# Loopback only; bounded in packets and time (a few minutes in all). Not part of CI's test pass.
#
# Settings (environment): RUNS=5 PACKETS=2000000 FLOWS=160000 THREADS=2 RCVBUF=134217728
#   MEM_FLOWS=1000000 SURICATA_RUNS=3 ONLY=drain,offline,micro,memory,flows,forward,scope,l7,base OUT=target/bench
#   LONG_FLOWS=5440000 (part (j), ONLY=long) SCOPE_INSTRUCTIONS=1 (part (g), needs valgrind)
#   BASE_BIN=/path/to/other/vxtap (part (i))
#   CAPTURE=both (or uniform, eni: which offline captures) ENI_FLOWS=170000 ENI_CONCURRENT=50000 ENI_SESSIONS=3
#   DRAIN_SETS="uniform:flowlog eni:stats eni:flowlog"
# The drain benchmark raises net.core.rmem_max to RCVBUF when it can (root) and restores it after.
# Results: $OUT/summary.txt (RESULT lines), details in $OUT/*.log.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

RUNS=${RUNS:-5}
PACKETS=${PACKETS:-2000000}
FLOWS=${FLOWS:-160000}
THREADS=${THREADS:-2}
RCVBUF=${RCVBUF:-134217728}
MEM_FLOWS=${MEM_FLOWS:-1000000}
SURICATA_RUNS=${SURICATA_RUNS:-3}
ONLY=${ONLY:-drain,offline,micro,memory,flows,forward,scope,l7,base}
BASE_BIN=${BASE_BIN:-}
CAPTURE=${CAPTURE:-both}
ENI_FLOWS=${ENI_FLOWS:-170000}
ENI_CONCURRENT=${ENI_CONCURRENT:-50000}
ENI_SESSIONS=${ENI_SESSIONS:-3}
DRAIN_SETS=${DRAIN_SETS:-uniform:flowlog eni:stats eni:flowlog}
LONG_FLOWS=${LONG_FLOWS:-5440000}
SCOPE_INSTRUCTIONS=${SCOPE_INSTRUCTIONS:-1}
OUT=${OUT:-target/bench}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"

skip() { echo "SKIP $*" | tee -a "$SUMMARY"; }
wants_capture() { [ "$CAPTURE" = both ] || [ "$CAPTURE" = "$1" ]; }
case "$CAPTURE" in both | uniform | eni) ;; *) echo "CAPTURE must be both, uniform or eni" >&2 && exit 2 ;; esac
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) printf "%.0f\n", v[(NR+1)/2]; else printf "%.0f\n", (v[NR/2]+v[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.3f", a/b; else print "nan"}'; }
# Median CPU milliseconds (user + system, all threads) of a file of `timed` lines.
cpu_ms() { awk '{print ($3 + $4) * 1000}' "$1" | median; }

describe_machine

say "build (release)"
cargo build --release --quiet --bin vxtap \
    --example bare_recvmmsg --example drain_bench --example gen_capture \
    --example bare_replay --example flow_memory --example gen_eni_capture --example replay_streams --example bare_sendmmsg
BIN=target/release
EX=target/release/examples

# flowlog (issue 5) joins the drain, replay and memory runs as soon as the build knows the kind.
printf '[ingest]\nvxlan = ["127.0.0.1:0"]\n\n' >"$OUT/probe.toml"
cat bench/flowlog.toml >>"$OUT/probe.toml"
if "$BIN/vxtap" check-config "$OUT/probe.toml" >"$OUT/flowlog-probe.log" 2>&1; then
    FLOWLOG=1
    echo "flowlog: in this build; measured with stats + flowlog"
else
    FLOWLOG=0
    skip "flowlog: not in this build ($(tail -1 "$OUT/flowlog-probe.log")); modules measured: stats only"
fi

if wants drain; then
    say "(a) drain: vxtap vs bare recvmmsg, $THREADS socket(s)/thread(s), $RUNS alternating pairs"
    old_rmem=$(cat /proc/sys/net/core/rmem_max)
    restore_rmem() { [ -w /proc/sys/net/core/rmem_max ] && echo "$old_rmem" >/proc/sys/net/core/rmem_max || true; }
    if [ "$old_rmem" -lt "$RCVBUF" ]; then
        if [ -w /proc/sys/net/core/rmem_max ]; then
            echo "$RCVBUF" >/proc/sys/net/core/rmem_max
            trap restore_rmem EXIT
        else
            echo "net.core.rmem_max is $old_rmem (< $RCVBUF) and not writable: buffers will be smaller"
        fi
    fi
    for set in $DRAIN_SETS; do
        traffic=${set%%:*}
        extra=()
        modules=stats
        if [ "${set#*:}" = flowlog ] && [ "$FLOWLOG" = 1 ]; then
            extra=(--extra-config bench/flowlog.toml)
            modules=stats+flowlog
        fi
        echo "--- drain: $traffic traffic, $modules"
        "$EX/drain_bench" --vxtap "$BIN/vxtap" --bare "$EX/bare_recvmmsg" --threads "$THREADS" \
            --runs "$RUNS" --rcvbuf "$RCVBUF" --bare-meta 1 --traffic "$traffic" "${extra[@]}" |
            tee "$OUT/drain-$traffic-$modules.log" | grep -v '^RESULT'
        grep '^RESULT' "$OUT/drain-$traffic-$modules.log" | sed 's/^RESULT //' | while read -r line; do result "$line modules=$modules"; done
    done
    restore_rmem
fi

# Runs a command, appending "wall_secs peak_rss_kib" to $2.
timed() {
    local into=$1
    shift
    /usr/bin/time -f '%e %M %U %S' -o "$OUT/time.tmp" "$@"
    cat "$OUT/time.tmp" >>"$into"
}

# The offline part on one capture: $1 = name (uniform|eni), $2 = capture, $3 = its packet count,
# $4 = a capture about half its size (peak RSS flatness). RESULT lines as described in the header.
offline_on() {
    local name=$1 cap=$2 packets=$3 half=$4 part=offline tag=" capture=$1"
    [ "$name" = eni ] && part=offline-eni
    : >"$OUT/bare-$name.times"
    : >"$OUT/replay-$name.times"
    : >"$OUT/replay-half-$name.times"
    for i in $(seq 1 "$RUNS"); do
        timed "$OUT/bare-$name.times" "$EX/bare_replay" "$cap" >>"$OUT/offline-$name.log"
        if [ "$have_replay" = 1 ]; then
            timed "$OUT/replay-$name.times" "$BIN/vxtap" --log-level warn replay --config "$OUT/replay.toml" "$cap" \
                >/dev/null 2>>"$OUT/offline-$name.log"
            timed "$OUT/replay-half-$name.times" "$BIN/vxtap" --log-level warn replay --config "$OUT/replay.toml" "$half" \
                >/dev/null 2>>"$OUT/offline-$name.log"
        fi
    done
    bare_pps=$(awk -v n="$packets" '{print n/$1}' "$OUT/bare-$name.times" | median)
    bare_rss=$(awk '{print $2}' "$OUT/bare-$name.times" | median)
    result "$part bare_loop pps=$bare_pps peak_rss_kib=$bare_rss runs=$RUNS$tag"
    if [ "$have_replay" = 1 ]; then
        vx_pps=$(awk -v n="$packets" '{print n/$1}' "$OUT/replay-$name.times" | median)
        vx_rss=$(awk '{print $2}' "$OUT/replay-$name.times" | median)
        vx_rss_half=$(awk '{print $2}' "$OUT/replay-half-$name.times" | median)
        result "$part vxtap_replay pps=$vx_pps peak_rss_kib=$vx_rss peak_rss_half_file_kib=$vx_rss_half ratio_vs_bare=$(ratio "$vx_pps" "$bare_pps") cpu_ms=$(cpu_ms "$OUT/replay-$name.times") bare_cpu_ms=$(cpu_ms "$OUT/bare-$name.times")$tag"
    fi
    if command -v suricata >/dev/null; then
        : >"$OUT/suricata-$name.times"
        for i in $(seq 1 "$SURICATA_RUNS"); do
            rm -rf "$OUT/suricata" && mkdir -p "$OUT/suricata"
            timed "$OUT/suricata-$name.times" suricata -r "$cap" -l "$OUT/suricata" -k none >>"$OUT/suricata-$name.log" 2>&1
        done
        s_pps=$(awk -v n="$packets" '{print n/$1}' "$OUT/suricata-$name.times" | median)
        s_rss=$(awk '{print $2}' "$OUT/suricata-$name.times" | median)
        line="$part suricata pps=$s_pps peak_rss_kib=$s_rss cpu_ms=$(cpu_ms "$OUT/suricata-$name.times") runs=$SURICATA_RUNS ($(suricata -V | grep -o 'version [^ ]*'), default suricata.yaml, eve log) bare_vs_suricata=$(ratio "$bare_pps" "$s_pps")"
        [ "$have_replay" = 1 ] && line="$line vxtap_vs_suricata=$(ratio "$vx_pps" "$s_pps")"
        result "$line$tag"
    else
        skip "$part suricata: not installed (Debian: apt-get install -t bookworm-backports suricata)$tag"
    fi
}

# Writes the ENI-like capture $1 of $2 flows unless it exists; its packet count goes to $1.packets.
gen_eni() {
    if [ ! -s "$1" ] || [ ! -s "$1.packets" ]; then
        "$EX/gen_eni_capture" "$1" --flows "$2" --concurrent "$ENI_CONCURRENT" --sessions "$ENI_SESSIONS" \
            2>"$1.summary"
        cat "$1.summary" >&2
        sed -n 's/.* flows, \([0-9]*\) packets,.*/\1/p' "$1.summary" | head -1 >"$1.packets"
    fi
    cat "$1.packets"
}

if wants offline; then
    printf '[ingest]\nvxlan = ["127.0.0.1:0"]\n\n[[module]]\nkind = "stats"\ninterval_secs = 10\n\n' >"$OUT/replay.toml"
    [ "$FLOWLOG" = 1 ] && cat bench/flowlog.toml >>"$OUT/replay.toml"
    have_replay=0
    if "$BIN/vxtap" replay --help >/dev/null 2>&1; then
        have_replay=1
    else
        skip "offline vxtap: this build has no 'vxtap replay' subcommand (issue 4 not merged); baselines only"
    fi
    if wants_capture uniform; then
        say "(b) offline, uniform capture: $PACKETS packets, $FLOWS flows"
        cap="$OUT/capture-$PACKETS-$FLOWS.pcap"
        half="$OUT/capture-$((PACKETS / 2))-$FLOWS.pcap"
        [ -s "$cap" ] || "$EX/gen_capture" "$cap" "$PACKETS" "$FLOWS"
        [ -s "$half" ] || "$EX/gen_capture" "$half" "$((PACKETS / 2))" "$FLOWS"
        offline_on uniform "$cap" "$PACKETS" "$half"
    fi
    if wants_capture eni; then
        say "(b) offline, ENI-like capture: $ENI_FLOWS flows, at most $ENI_CONCURRENT live, $ENI_SESSIONS sessions"
        # Named after the generator's source too, so a changed model is never measured on a stale file.
        model=$(cat benches/common/eni.rs benches/common/payloads.rs | sha256sum | cut -c1-10)
        cap="$OUT/eni-$model-$ENI_FLOWS-$ENI_CONCURRENT-$ENI_SESSIONS.pcap"
        half="$OUT/eni-$model-$((ENI_FLOWS / 2))-$ENI_CONCURRENT-$ENI_SESSIONS.pcap"
        eni_packets=$(gen_eni "$cap" "$ENI_FLOWS")
        gen_eni "$half" "$((ENI_FLOWS / 2))" >/dev/null
        offline_on eni "$cap" "$eni_packets" "$half"
    fi
fi

if wants micro; then
    say "(c) micro benchmarks (divan medians, per packet)"
    cargo bench --quiet --bench datapath 2>/dev/null | tee "$OUT/micro.log"
    # Median column of a divan row, in ns.
    med() {
        awk -F'│' -v name="$1" '{
            line = $0; sub(/^(│ *)+/, "", line); split(line, f, "│");
            if (f[1] ~ ("[─ ]" name " ")) {
                split(f[3], m, " "); v = m[1]; u = m[2];
                if (u == "µs") v *= 1000; else if (u == "ms") v *= 1000000; else if (u == "ps") v /= 1000;
                print v; exit } }' "$OUT/micro.log"
    }
    # Fastest sample too: the ingest batch waits for the shards between samples, so its median on a
    # loaded machine includes cold caches and descheduling.
    fastest() {
        awk -F'│' -v name="$1" '{
            line = $0; sub(/^(│ *)+/, "", line); split(line, f, "│");
            if (f[1] ~ ("[─ ]" name " ")) {
                n = split(f[1], m, " "); v = m[n-1]; u = m[n];
                if (u == "µs") v *= 1000; else if (u == "ms") v *= 1000000; else if (u == "ps") v /= 1000;
                print v; exit } }' "$OUT/micro.log"
    }
    core=$(med core)
    batch=$(med ingress_batch64)
    memcpy=$(med memcpy_frame)
    sliced=$(med etherparse_sliced)
    core_general=$(med core_general)
    per_dgram=$(awk -v b="$batch" 'BEGIN {printf "%.1f", b/64}')
    per_dgram_fastest=$(awk -v b="$(fastest ingress_batch64)" 'BEGIN {printf "%.1f", b/64}')
    cargo bench --quiet --bench flowtable 2>"$OUT/micro-flowtable.err" | tee "$OUT/micro-flowtable.log"
    table=$(micro="$OUT/micro-flowtable.log"; awk -F'│' '{
            line = $0; sub(/^(│ *)+/, "", line); split(line, f, "│");
            if (f[1] ~ /[─ ]flow_table /) { split(f[3], m, " "); v = m[1]; u = m[2];
                if (u == "µs") v *= 1000; else if (u == "ps") v /= 1000; print v; exit } }' "$micro")
    fxmap=$(awk -F'│' '{
            line = $0; sub(/^(│ *)+/, "", line); split(line, f, "│");
            if (f[1] ~ /[─ ]baseline_fx_hashmap /) { split(f[3], m, " "); v = m[1]; u = m[2];
                if (u == "µs") v *= 1000; else if (u == "ps") v /= 1000; print v; exit } }' "$OUT/micro-flowtable.log")
    intervals=$(awk -F'│' '{
            line = $0; sub(/^(│ *)+/, "", line); split(line, f, "│");
            if (f[1] ~ /[─ ]flow_table_with_intervals /) { split(f[3], m, " "); v = m[1]; u = m[2];
                if (u == "µs") v *= 1000; else if (u == "ps") v /= 1000; print v; exit } }' "$OUT/micro-flowtable.log")
    result "micro-flowtable flow_table_ns=$table with_intervals_ns=$intervals intervals_vs_table=$(ratio "$intervals" "$table") fx_hashmap_ns=$fxmap table_vs_fx_hashmap=$(ratio "$table" "$fxmap") $(sed -n 's/.* \([0-9]*\) flow directions in the table.*/live_directions=\1/p' "$OUT/micro-flowtable.err" | head -1)"
    result "micro core_ns=$core decap_ns=$(med decap) session_lookup_ns=$(med session_lookup) dissect_ns=$(med dissect) dissect_general_ns=$(med dissect_general) core_general_ns=$core_general steer_ns=$(med steer) ingress_per_datagram_ns=$per_dgram ingress_per_datagram_fastest_ns=$per_dgram_fastest memcpy_ns=$memcpy etherparse_sliced_ns=$sliced core_vs_etherparse=$(ratio "$core" "$sliced") core_vs_core_general=$(ratio "$core" "$core_general") core_vs_memcpy=$(ratio "$core" "$memcpy") ingress_vs_etherparse=$(ratio "$per_dgram" "$sliced")"
fi

if wants memory; then
    say "(d) memory per flow: $MEM_FLOWS concurrent flows"
    if [ "$FLOWLOG" = 1 ]; then
        "$EX/flow_memory" "$MEM_FLOWS" bench/flowlog-1m.toml 2>"$OUT/memory.log" >/dev/null
    else
        "$EX/flow_memory" "$MEM_FLOWS" 2>"$OUT/memory.log" >/dev/null
    fi
    grep '^RESULT' "$OUT/memory.log" | sed 's/^RESULT //' | while read -r line; do result "$line modules=stats$([ "$FLOWLOG" = 1 ] && echo +flowlog)"; done
fi

if wants flows; then
    # Issue 12: the flow layer with reassembly of every TCP direction (a module that asks for all of
    # them and discards the bytes: examples/replay_streams.rs), against flowlog alone, one shard, on
    # the ENI-like capture; peak RSS at two file sizes.
    say "(e) flows: flow table + reassembly of every TCP direction vs flowlog alone, ENI-like capture"
    model=$(cat benches/common/eni.rs benches/common/payloads.rs | sha256sum | cut -c1-10)
    cap="$OUT/eni-$model-$ENI_FLOWS-$ENI_CONCURRENT-$ENI_SESSIONS.pcap"
    half="$OUT/eni-$model-$((ENI_FLOWS / 2))-$ENI_CONCURRENT-$ENI_SESSIONS.pcap"
    packets=$(gen_eni "$cap" "$ENI_FLOWS")
    gen_eni "$half" "$((ENI_FLOWS / 2))" >/dev/null
    printf '[ingest]\nvxlan = ["127.0.0.1:0"]\n[pipeline]\nshards = 1\n' >"$OUT/flows-none.toml"
    cp "$OUT/flows-none.toml" "$OUT/flows-flowlog.toml"
    printf '[[module]]\nkind = "flowlog"\nmax_flows = 400000\n' >>"$OUT/flows-flowlog.toml"
    for f in flowlog streams flowlog_streams streams_half; do : >"$OUT/flows-$f.times"; done
    for i in $(seq 1 "$RUNS"); do
        timed "$OUT/flows-flowlog.times" "$BIN/vxtap" --log-level warn replay --config "$OUT/flows-flowlog.toml" "$cap" \
            >/dev/null 2>>"$OUT/flows.log"
        timed "$OUT/flows-streams.times" "$EX/replay_streams" "$OUT/flows-none.toml" "$cap" >/dev/null 2>>"$OUT/flows.log"
        timed "$OUT/flows-flowlog_streams.times" "$EX/replay_streams" "$OUT/flows-flowlog.toml" "$cap" \
            >/dev/null 2>>"$OUT/flows.log"
        timed "$OUT/flows-streams_half.times" "$EX/replay_streams" "$OUT/flows-none.toml" "$half" >/dev/null 2>>"$OUT/flows.log"
    done
    pps() { awk -v n="$packets" '{print n/$1}' "$OUT/flows-$1.times" | median; }
    rss() { awk '{print $2}' "$OUT/flows-$1.times" | median; }
    fl=$(pps flowlog)
    st=$(pps streams)
    fs=$(pps flowlog_streams)
    result "flows flowlog_only pps=$fl peak_rss_kib=$(rss flowlog) capture=eni runs=$RUNS"
    result "flows streams_only pps=$st peak_rss_kib=$(rss streams) peak_rss_half_file_kib=$(rss streams_half) ratio_vs_flowlog=$(ratio "$st" "$fl") capture=eni"
    result "flows flowlog_plus_streams pps=$fs peak_rss_kib=$(rss flowlog_streams) ratio_vs_flowlog=$(ratio "$fs" "$fl") capture=eni"
fi

if wants forward; then
    say "(f) forward: drain with stats only vs stats + forward (VXLAN to a discarding loopback receiver)"
    discard_port_file="$OUT/discard.port"
    python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.bind(("127.0.0.1", 0))
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
time.sleep(3600)' "$discard_port_file" &
    discard_pid=$!
    for _ in $(seq 50); do [ -s "$discard_port_file" ] && break; sleep 0.1; done
    printf '[[module]]\nkind = "forward"\n[[module.output]]\ntype = "vxlan"\nto = ["127.0.0.1:%s"]\n' \
        "$(cat "$discard_port_file")" >"$OUT/forward.toml"
    for mode in stats forward; do
        extra=()
        [ "$mode" = forward ] && extra=(--extra-config "$OUT/forward.toml")
        "$EX/drain_bench" --vxtap "$BIN/vxtap" --bare "$EX/bare_recvmmsg" --threads "$THREADS" \
            --runs "$RUNS" --rcvbuf "$RCVBUF" "${extra[@]}" | tee "$OUT/forward-$mode.log" | grep -v '^RESULT'
    done
    kill "$discard_pid" 2>/dev/null || true
    # The kernel's share: a bare sendmmsg loop with the same payloads to the same kind of receiver.
    "$EX/bare_sendmmsg" 1000000 | tee "$OUT/forward-bare-send.log"
    field() { grep "^RESULT $2" "$OUT/$1.log" | sed -n "s/.*[ ]$3=\([0-9.]*\).*/\1/p" | head -1; }
    stats_mps=$(field forward-stats drain vxtap_mps)
    forward_mps=$(field forward-forward drain vxtap_mps)
    stats_cpu=$(field forward-stats drain cpu_ns_vxtap)
    forward_cpu=$(field forward-forward drain cpu_ns_vxtap)
    send_cpu=$(field forward-bare-send bare_send cpu_ns_per_datagram)
    added=$(awk -v a="$forward_cpu" -v b="$stats_cpu" 'BEGIN {printf "%.0f", a - b}')
    result "forward stats_mps=$stats_mps forward_mps=$forward_mps forward_vs_stats=$(ratio "$forward_mps" "$stats_mps") cpu_ns_stats=$stats_cpu cpu_ns_forward=$forward_cpu added_cpu_ns=$added bare_send_cpu_ns=$send_cpu added_vs_bare_send=$(ratio "$added" "$send_cpu")"
fi

if wants scope; then
    # Issue 16: accessscope judges each flow once at its start against every scope and adds a
    # finding's packets to its aggregates; the acceptance bar is >= 0.9 x the replay without it.
    # The ratio includes the flow table, which accessscope is the only module here to ask for; the
    # last line holds accessscope against the L7 set, whose modules keep that table already.
    say "(g) scope: flowlog + accessscope (10 scopes) vs flowlog alone, ENI-like capture"
    model=$(cat benches/common/eni.rs benches/common/payloads.rs | sha256sum | cut -c1-10)
    cap="$OUT/eni-$model-$ENI_FLOWS-$ENI_CONCURRENT-$ENI_SESSIONS.pcap"
    packets=$(gen_eni "$cap" "$ENI_FLOWS")
    printf '[ingest]\nvxlan = ["127.0.0.1:0"]\n[pipeline]\nshards = 1\n' >"$OUT/scope-flowlog.toml"
    cat bench/flowlog.toml >>"$OUT/scope-flowlog.toml"
    cp "$OUT/scope-flowlog.toml" "$OUT/scope-accessscope.toml"
    cat bench/accessscope.toml >>"$OUT/scope-accessscope.toml"
    cp "$OUT/scope-flowlog.toml" "$OUT/scope-flowtable.toml"
    cat bench/accessscope-null.toml >>"$OUT/scope-flowtable.toml"
    # And on a shard that tracks flows already (the L7 set: dns, tls and http ask for the flow
    # table), where accessscope adds only its own work.
    cp "$OUT/scope-flowlog.toml" "$OUT/scope-l7.toml"
    printf '[[module]]\nkind = "dns"\n[[module]]\nkind = "tls"\n[[module]]\nkind = "http"\n' >>"$OUT/scope-l7.toml"
    cp "$OUT/scope-l7.toml" "$OUT/scope-l7scope.toml"
    cat bench/accessscope.toml >>"$OUT/scope-l7scope.toml"
    for f in flowlog flowtable accessscope l7 l7scope; do : >"$OUT/scope-$f.times"; done
    "$BIN/vxtap" --log-level warn replay --config "$OUT/scope-accessscope.toml" "$cap" 2>/dev/null |
        { grep -c '"event_type":"accessscope"' || true; } >"$OUT/scope-records.txt"
    for i in $(seq 1 "$RUNS"); do
        for f in flowlog flowtable accessscope l7 l7scope; do
            timed "$OUT/scope-$f.times" "$BIN/vxtap" --log-level warn replay --config "$OUT/scope-$f.toml" "$cap" \
                >/dev/null 2>>"$OUT/scope.log"
        done
    done
    pps() { awk -v n="$packets" '{print n/$1}' "$OUT/scope-$1.times" | median; }
    rss() { awk '{print $2}' "$OUT/scope-$1.times" | median; }
    fl=$(pps flowlog)
    ft=$(pps flowtable)
    sc=$(pps accessscope)
    result "scope flowlog_only pps=$fl peak_rss_kib=$(rss flowlog) capture=eni runs=$RUNS"
    result "scope flowlog_plus_flow_table pps=$ft peak_rss_kib=$(rss flowtable) ratio_vs_flowlog=$(ratio "$ft" "$fl") capture=eni"
    result "scope flowlog_plus_accessscope pps=$sc peak_rss_kib=$(rss accessscope) ratio_vs_flowlog=$(ratio "$sc" "$fl") ratio_vs_flow_table=$(ratio "$sc" "$ft") records=$(cat "$OUT/scope-records.txt") capture=eni"
    l7=$(pps l7)
    l7s=$(pps l7scope)
    l7_cpu=$(cpu_ms "$OUT/scope-l7.times")
    l7s_cpu=$(cpu_ms "$OUT/scope-l7scope.times")
    result "scope l7_plus_accessscope pps=$l7s l7_pps=$l7 ratio_vs_l7=$(ratio "$l7s" "$l7") cpu_ms=$l7s_cpu l7_cpu_ms=$l7_cpu cpu_ratio_vs_l7=$(ratio "$l7_cpu" "$l7s_cpu") peak_rss_kib=$(rss l7scope) l7_peak_rss_kib=$(rss l7) capture=eni"
    # The same four replays counted in instructions (cachegrind, no cache simulation): exactly
    # repeatable, where the wall-clock ratios above move by +-5 % between runs on a shared
    # two-core machine. Instructions ignore cache misses and wait, so they are a floor for the
    # time a change saves, not the time itself; and valgrind hides the CPU's SHA extensions, so
    # JA4's SHA-256 and the Community IDs' SHA-1 run in software in every one of these runs.
    if [ "$SCOPE_INSTRUCTIONS" = 0 ]; then
        skip "scope instructions: SCOPE_INSTRUCTIONS=0"
    elif ! command -v valgrind >/dev/null; then
        skip "scope instructions: valgrind not installed (Debian: apt-get install valgrind)"
    else
        for pair in "flowlog accessscope" "l7 l7scope"; do
            for f in $pair; do
                valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
                    --log-file="$OUT/scope-$f.cachegrind" \
                    "$BIN/vxtap" --log-level warn replay --config "$OUT/scope-$f.toml" "$cap" \
                    >/dev/null 2>>"$OUT/scope.log" &
            done
            wait
        done
        ir() { sed -n 's/.*I *refs: *//p' "$OUT/scope-$1.cachegrind" | tr -d ,; }
        result "scope instructions flowlog=$(ir flowlog) flowlog_plus_accessscope=$(ir accessscope) ratio_vs_flowlog=$(ratio "$(ir flowlog)" "$(ir accessscope)") l7=$(ir l7) l7_plus_accessscope=$(ir l7scope) ratio_vs_l7=$(ratio "$(ir l7)" "$(ir l7scope)") capture=eni"
    fi
fi

if wants l7; then
    # Issue 13: flowlog + dns + tls + http against Suricata 7 with its default EVE logging (alerts,
    # flows, dns, tls, http...) on the ENI-like capture, which carries real DNS/TLS/HTTP payloads;
    # default threads for both (vxtap replay: one shard per core, its default; Suricata: its
    # default runmode, every core), peak RSS at two file sizes. Then what each module costs alone, one
    # shard, on the half-size capture ("l7-module" lines: CPU seconds, user + system, which the
    # other builds on the machine disturb less than wall time).
    say "(h) l7: flowlog + dns + tls + http vs Suricata with its default EVE logging, ENI-like capture"
    model=$(cat benches/common/eni.rs benches/common/payloads.rs | sha256sum | cut -c1-10)
    cap="$OUT/eni-$model-$ENI_FLOWS-$ENI_CONCURRENT-$ENI_SESSIONS.pcap"
    half="$OUT/eni-$model-$((ENI_FLOWS / 2))-$ENI_CONCURRENT-$ENI_SESSIONS.pcap"
    packets=$(gen_eni "$cap" "$ENI_FLOWS")
    gen_eni "$half" "$((ENI_FLOWS / 2))" >/dev/null
    printf '[ingest]\nvxlan = ["127.0.0.1:0"]\n' >"$OUT/l7.toml"
    printf '[[module]]\nkind = "flowlog"\n[[module]]\nkind = "dns"\n[[module]]\nkind = "tls"\n[[module]]\nkind = "http"\n' \
        >>"$OUT/l7.toml"
    : >"$OUT/l7-vxtap.times"
    : >"$OUT/l7-vxtap-half.times"
    : >"$OUT/l7-suricata.times"
    for i in $(seq 1 "$RUNS"); do
        timed "$OUT/l7-vxtap.times" "$BIN/vxtap" --log-level warn replay --config "$OUT/l7.toml" "$cap" \
            >"$OUT/l7-records.json" 2>>"$OUT/l7.log"
        timed "$OUT/l7-vxtap-half.times" "$BIN/vxtap" --log-level warn replay --config "$OUT/l7.toml" "$half" \
            >/dev/null 2>>"$OUT/l7.log"
    done
    vx=$(awk -v n="$packets" '{print n/$1}' "$OUT/l7-vxtap.times" | median)
    rss=$(awk '{print $2}' "$OUT/l7-vxtap.times" | median)
    rss_half=$(awk '{print $2}' "$OUT/l7-vxtap-half.times" | median)
    records=$(grep -c . "$OUT/l7-records.json" || true)
    if command -v suricata >/dev/null; then
        for i in $(seq 1 "$SURICATA_RUNS"); do
            rm -rf "$OUT/suricata-l7" && mkdir -p "$OUT/suricata-l7"
            timed "$OUT/l7-suricata.times" suricata -r "$cap" -l "$OUT/suricata-l7" -k none \
                >>"$OUT/suricata-l7.log" 2>&1
        done
        su=$(awk -v n="$packets" '{print n/$1}' "$OUT/l7-suricata.times" | median)
        su_rss=$(awk '{print $2}' "$OUT/l7-suricata.times" | median)
        result "l7 vxtap pps=$vx peak_rss_kib=$rss peak_rss_half_file_kib=$rss_half records=$records suricata_pps=$su suricata_rss_kib=$su_rss vxtap_vs_suricata=$(ratio "$vx" "$su") capture=eni"
    else
        result "l7 vxtap pps=$vx peak_rss_kib=$rss peak_rss_half_file_kib=$rss_half records=$records capture=eni (suricata not installed)"
    fi
    for kind in stats flowlog dns tls http all; do
        printf '[ingest]\nvxlan = ["127.0.0.1:0"]\n' >"$OUT/l7-$kind.toml"
        if [ "$kind" = all ]; then
            tail -n +3 "$OUT/l7.toml" >>"$OUT/l7-$kind.toml"
        else
            printf '[[module]]\nkind = "%s"\n' "$kind" >>"$OUT/l7-$kind.toml"
        fi
        : >"$OUT/l7-$kind.cpu"
        for i in $(seq 1 "$RUNS"); do
            /usr/bin/time -f '%e %M %U %S' -o "$OUT/time.tmp" "$BIN/vxtap" --log-level warn replay \
                --config "$OUT/l7-$kind.toml" "$half" >/dev/null 2>>"$OUT/l7.log"
            cat "$OUT/time.tmp" >>"$OUT/l7-$kind.cpu"
        done
        cpu=$(awk '{print $3 + $4}' "$OUT/l7-$kind.cpu" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
        result "l7-module kind=$kind cpu_secs=$cpu peak_rss_kib=$(awk '{print $2}' "$OUT/l7-$kind.cpu" | median) capture=eni-half runs=$RUNS"
    done
fi

if wants long; then
    # Issue 13's "RSS flat in file size" past the captures a disk holds: a capture long enough
    # for the flow table to reach its steady state (idle connections are held for the ten-minute
    # established timeout) and stay there for twice as long again.
    say "(j) long: peak RSS over $LONG_FLOWS flows streamed into vxtap replay -"
    printf '[ingest]\nvxlan = ["127.0.0.1:0"]\n' >"$OUT/long-l7.toml"
    printf '[[module]]\nkind = "flowlog"\n[[module]]\nkind = "dns"\n[[module]]\nkind = "tls"\n[[module]]\nkind = "http"\n' \
        >>"$OUT/long-l7.toml"
    printf '[ingest]\nvxlan = ["127.0.0.1:0"]\n\n[[module]]\nkind = "stats"\ninterval_secs = 10\n\n' >"$OUT/long-flowlog.toml"
    cat bench/flowlog.toml >>"$OUT/long-flowlog.toml"
    for set in l7 flowlog; do
        samples="$OUT/long-$set.rss"
        : >"$samples"
        "$EX/gen_eni_capture" /dev/stdout --flows "$LONG_FLOWS" --concurrent "$ENI_CONCURRENT" \
            --sessions "$ENI_SESSIONS" 2>"$OUT/long-$set.summary" |
            "$BIN/vxtap" --log-level warn replay --config "$OUT/long-$set.toml" - >/dev/null 2>>"$OUT/long.log" &
        pid=$!
        # Bounded: the generator's flow count bounds the run; a sample a second until vxtap exits.
        while kill -0 "$pid" 2>/dev/null; do
            awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null >>"$samples" || true
            sleep 1
        done
        wait "$pid"
        packet_secs=$(sed -n 's/.*packet time \([0-9.]*\) s.*/\1/p' "$OUT/long-$set.summary" | head -1)
        packets=$(sed -n 's/.* flows, \([0-9]*\) packets,.*/\1/p' "$OUT/long-$set.summary" | head -1)
        n=$(grep -c . "$samples" || true)
        first=$(head -n "$((n / 2))" "$samples" | sort -g | tail -1)
        second=$(tail -n "$((n - n / 2))" "$samples" | sort -g | tail -1)
        result "long $set flows=$LONG_FLOWS packets=$packets packet_secs=$packet_secs samples=$n peak_rss_first_half_kib=$first peak_rss_second_half_kib=$second growth_kib=$((second - first)) capture=eni-stream"
    done
fi

say "summary ($SUMMARY)"
cat "$SUMMARY"

if wants base; then
    if [ -z "$BASE_BIN" ]; then
        skip "(i) base: BASE_BIN not set"
    else
        say "(i) base: this build vs $BASE_BIN, flowlog alone and flowlog + accessscope, ENI-like capture"
        model=$(cat benches/common/eni.rs benches/common/payloads.rs | sha256sum | cut -c1-10)
        cap="$OUT/eni-$model-$ENI_FLOWS-$ENI_CONCURRENT-$ENI_SESSIONS.pcap"
        packets=$(gen_eni "$cap" "$ENI_FLOWS")
        printf '[ingest]\nvxlan = ["127.0.0.1:0"]\n[pipeline]\nshards = 1\n' >"$OUT/base-flowlog.toml"
        cat bench/flowlog.toml >>"$OUT/base-flowlog.toml"
        cp "$OUT/base-flowlog.toml" "$OUT/base-accessscope.toml"
        cat bench/accessscope.toml >>"$OUT/base-accessscope.toml"
        for cfg in flowlog accessscope; do
            "$BASE_BIN" --log-level warn replay --config "$OUT/base-$cfg.toml" "$cap" 2>/dev/null >"$OUT/base-$cfg-base.out"
            "$BIN/vxtap" --log-level warn replay --config "$OUT/base-$cfg.toml" "$cap" 2>/dev/null >"$OUT/base-$cfg-this.out"
            if cmp -s "$OUT/base-$cfg-base.out" "$OUT/base-$cfg-this.out"; then same=yes; else same=no; fi
            echo "$same" >"$OUT/base-$cfg.same"
            : >"$OUT/base-$cfg-base.times"
            : >"$OUT/base-$cfg-this.times"
        done
        for _ in $(seq "$RUNS"); do
            for cfg in flowlog accessscope; do
                timed "$OUT/base-$cfg-base.times" "$BASE_BIN" --log-level warn replay --config "$OUT/base-$cfg.toml" "$cap" \
                    >/dev/null 2>>"$OUT/base.log"
                timed "$OUT/base-$cfg-this.times" "$BIN/vxtap" --log-level warn replay --config "$OUT/base-$cfg.toml" "$cap" \
                    >/dev/null 2>>"$OUT/base.log"
            done
        done
        pps() { awk -v n="$packets" '{print n/$1}' "$OUT/base-$1.times" | median; }
        rss() { awk '{print $2}' "$OUT/base-$1.times" | median; }
        for cfg in flowlog accessscope; do
            b=$(pps "$cfg-base")
            t=$(pps "$cfg-this")
            result "base $cfg base_pps=$b pps=$t ratio_vs_base=$(ratio "$t" "$b") base_cpu_ms=$(cpu_ms "$OUT/base-$cfg-base.times") cpu_ms=$(cpu_ms "$OUT/base-$cfg-this.times") base_peak_rss_kib=$(rss "$cfg-base") peak_rss_kib=$(rss "$cfg-this") output_identical=$(cat "$OUT/base-$cfg.same") capture=eni runs=$RUNS"
        done
        fl=$(pps flowlog-this)
        sc=$(pps accessscope-this)
        result "base accessscope_vs_flowlog pps_flowlog=$fl pps_accessscope=$sc ratio=$(ratio "$sc" "$fl") base_ratio=$(ratio "$(pps accessscope-base)" "$(pps flowlog-base)") capture=eni"
    fi
fi
