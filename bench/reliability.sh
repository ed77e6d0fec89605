#!/usr/bin/env bash
# vxtap's reliability benchmarks (issue 14, "Reliability"); figures and findings in docs/reliability.md.
#   overload: a sender many times faster than vxtap with every module on (bench/reliability.toml) for
#             OVERLOAD_SECONDS: every datagram sent is accounted for by the kernel's counters and
#             vxtap's /metrics, exactly; peak RSS under RSS_BOUND_MIB; /healthz 200 at every poll.
#   spoof:    raw datagrams with random public outer sources and random VNIs against the default
#             allowlist: no session learned, RSS flat, every one counted as source_refused; then new
#             VNIs from one allowed source: learning stops at [sessions] max_learned and the rest are
#             counted as session_table_full.
#   soak:     SOAK_SECONDS at SOAK_PPS with every module on: RSS at start and end, and the flowlog
#             records' packet totals equal to what an offline replay of the same capture counts, times
#             the number of passes sent (no record lost). The RSS check compares the end with the
#             sample after the first minute (a sixth of shorter soaks, which may still be warming up).
#   fuzz:     every fuzz target (fuzz/fuzz_targets) for FUZZ_RUNS executions, one at a time.
# Everything runs in a network namespace this script creates (only its loopback is up), so the
# kernel's UDP counters (/proc/net/snmp) count this benchmark's traffic and nothing else, and no
# datagram, forged or not, can leave the machine. Needs root (namespace, raw socket). Each load is
# bounded in count and time. Not part of CI.
#
# Settings (environment): ONLY=overload,spoof,soak,fuzz OUT=target/reliability
#   OVERLOAD_SECONDS=60 OVERLOAD_WORKERS=1 OVERLOAD_RECEIVER_NICE=19 RSS_BOUND_MIB=1024 SOAK_SECONDS=600 SOAK_PPS=20000 SPOOF_COUNT=300000
#   SPOOF_VNIS=20000 SPOOF_PPS=50000 FUZZ_RUNS=10000000 FUZZ_MAX_SECS=2400 FUZZ_TARGETS=(all)
#   FLOWS=40000 CONCURRENT=12000 (the ENI-like capture, examples/gen_eni_capture.rs)
#   RCVBUF=67108864 (the namespace's net.core.rmem_max is raised to it: see below)
# Results: $OUT/summary.txt (RESULT and PASS/FAIL lines), details in $OUT/<part>/.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

ONLY=${ONLY:-overload,spoof,soak,fuzz}
OUT=${OUT:-target/reliability}
OVERLOAD_SECONDS=${OVERLOAD_SECONDS:-60}
RSS_BOUND_MIB=${RSS_BOUND_MIB:-1024}
OVERLOAD_WORKERS=${OVERLOAD_WORKERS:-1}
OVERLOAD_RECEIVER_NICE=${OVERLOAD_RECEIVER_NICE:-19}
SOAK_SECONDS=${SOAK_SECONDS:-600}
SOAK_PPS=${SOAK_PPS:-20000}
SPOOF_COUNT=${SPOOF_COUNT:-300000}
SPOOF_VNIS=${SPOOF_VNIS:-20000}
SPOOF_PPS=${SPOOF_PPS:-50000}
FUZZ_RUNS=${FUZZ_RUNS:-10000000}
FUZZ_MAX_SECS=${FUZZ_MAX_SECS:-2400}
FUZZ_TARGETS=${FUZZ_TARGETS:-$(ls fuzz/fuzz_targets | sed 's/\.rs$//' | tr '\n' ' ')}
FLOWS=${FLOWS:-40000}
CONCURRENT=${CONCURRENT:-12000}
RCVBUF=${RCVBUF:-67108864}
PORT=4789
HEALTH=127.0.0.1:18080
ADMIN=127.0.0.1:19090
FORWARD='[::1]:4790'

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SUMMARY="$OUT/summary.txt"
: >>"$SUMMARY"
NS=vxtap-rel-$$
PIDS=()

verdict() { # verdict NAME CONDITION-EXIT-STATUS DETAIL
    if [ "$2" = 0 ]; then echo "PASS $1: $3" | tee -a "$SUMMARY"; else echo "FAIL $1: $3" | tee -a "$SUMMARY"; fi
}
nsx() { ip netns exec "$NS" "$@"; }

old_rmem=$(cat /proc/sys/net/core/rmem_max)
corpus=
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    # The fuzz part's working copy of a corpus, when the script stops in the middle of a target.
    [ -z "$corpus" ] || rm -rf "$corpus"
}
trap cleanup EXIT

describe_machine

if wants overload || wants spoof || wants soak; then
    say "build (release)"
    cargo build --release --quiet --bin vxtap --example reliability_load --example gen_eni_capture
    BIN=target/release/vxtap
    LOAD=target/release/examples/reliability_load
    CAPTURE="$OUT/eni-$FLOWS.pcap"
    if [ ! -s "$CAPTURE" ]; then
        target/release/examples/gen_eni_capture "$CAPTURE" --flows "$FLOWS" --concurrent "$CONCURRENT" 2>&1 | tee "$OUT/capture.txt"
    fi
    # A new namespace takes net.core.rmem_max from the initial one when it is created, and cannot
    # change it itself (Linux 6.18), so the value is raised only for the moment of the creation and
    # put back at once if nobody else changed it meanwhile (other benchmarks on the machine set it too).
    if [ "$old_rmem" -lt "$RCVBUF" ]; then echo "$RCVBUF" >/proc/sys/net/core/rmem_max; fi
    ip netns add "$NS"
    if [ "$old_rmem" -lt "$RCVBUF" ] && [ "$(cat /proc/sys/net/core/rmem_max)" = "$RCVBUF" ]; then
        echo "$old_rmem" >/proc/sys/net/core/rmem_max
    fi
    echo "net.core.rmem_max in the namespace: $(nsx cat /proc/sys/net/core/rmem_max)" | tee -a "$OUT/machine.txt"
    ip -n "$NS" link set lo up
fi

# Counter N of a /proc/net/snmp line ("Udp:" by default) by name.
snmp() {
    nsx cat /proc/net/snmp | awk -v want="$1" '$1 == "Udp:" { if (!h) { for (i = 2; i <= NF; i++) name[i] = $i; h = 1 } else { for (i = 2; i <= NF; i++) if (name[i] == want) print $i } }'
}
# Datagrams dropped by every CPU's input backlog (loopback hands datagrams to it): global, not per
# namespace.
softnet_drops() {
    local s=0 h
    for h in $(awk '{ print $2 }' /proc/net/softnet_stat); do s=$((s + 16#$h)); done
    echo "$s"
}
# rx_queue bytes and drops, summed over the sockets bound to 127.0.0.1:$PORT in the namespace.
udp_socket() {
    local rx=0 d=0 q n
    while read -r q n; do rx=$((rx + 16#$q)); d=$((d + n)); done < <(nsx cat /proc/net/udp |
        awk -v want="$(printf '0100007F:%04X' "$PORT")" '$2 == want { split($5, q, ":"); print q[2], $NF }')
    echo "$rx $d"
}
metrics() { nsx curl -s --max-time 5 "http://$ADMIN/metrics"; }
metric() { awk -v m="$1" '$1 == m { printf "%.0f\n", $2 }' "$2"; }
drops_by_reason() { awk '/^vxtap_datagrams_dropped_total\{/ { if ($2 + 0 > 0) printf "%s ", $1 "=" $2 }' "$1" | sed 's/vxtap_datagrams_dropped_total{reason="\([a-z_]*\)"}/\1/g'; }
dropped_sum() { awk '/^vxtap_datagrams_dropped_total\{/ { s += $2 } END { printf "%.0f\n", s }' "$1"; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# Starts vxtap in the namespace with $1 (module tables) after a header; $2 = extra header TOML.
# Sets VX (pid) and waits until /healthz answers 200.
start_vxtap() {
    local dir=$1 modules=$2 extra=${3:-}
    mkdir -p "$dir"
    {
        printf '[ingest]\nvxlan = ["127.0.0.1:%s"]\nreceive_buffer_bytes = %s\n' "$PORT" "$RCVBUF"
        [ -n "${VX_WORKERS:-}" ] && printf 'workers = %s\n\n[pipeline]\nshards = %s\ndispatch = "inline"\n' "$VX_WORKERS" "$VX_WORKERS"
        echo
        printf '[health]\nlisten = "%s"\ndrain_seconds = 0\n\n[admin]\nlisten = "%s"\n\n' "$HEALTH" "$ADMIN"
        printf '%s\n' "$extra"
        sed -e "s|@OUT@|$dir|g" -e "s|@FORWARD@|$FORWARD|g" "$modules"
    } >"$dir/vxtap.toml"
    "$BIN" check-config "$dir/vxtap.toml" >"$dir/check-config.txt"
    ip netns exec "$NS" "$BIN" --log-format json run --config "$dir/vxtap.toml" >"$dir/stdout.txt" 2>"$dir/vxtap.log" &
    VX=$!
    PIDS+=("$VX")
    for _ in $(seq 1 100); do
        [ "$(nsx curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$HEALTH/healthz" || true)" = 200 ] && return 0
        sleep 0.1
    done
    echo "vxtap did not turn healthy; log:" >&2
    tail -20 "$dir/vxtap.log" >&2
    return 1
}

# Samples "unix_secs rss_kib health_code" every $2 seconds into $1 until killed.
monitor() {
    local into=$1 every=$2
    while kill -0 "$VX" 2>/dev/null; do
        code=$(nsx curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$HEALTH/healthz" || true)
        echo "$(date +%s.%N | cut -c1-14) $(rss_kib "$VX") ${code:-000}" >>"$into"
        sleep "$every"
    done
}

# Waits until vxtap's sockets are empty, then one more tick for the shards to publish.
settle() {
    for _ in $(seq 1 200); do
        [ "$(udp_socket | cut -d' ' -f1)" = 0 ] && break
        sleep 0.05
    done
    sleep 1.5
}

# SIGINT, wait for the exit; prints the final "Stopped." line.
stop_vxtap() {
    local dir=$1
    kill -INT "$VX"
    for _ in $(seq 1 600); do kill -0 "$VX" 2>/dev/null || break; sleep 0.1; done
    wait "$VX" || echo "vxtap exited with status $?" | tee -a "$dir/exit.txt"
    grep '"Stopped."' "$dir/vxtap.log" | tail -1 >"$dir/stopped.json" || true
}

if wants overload; then
    say "overload: unpaced sender for ${OVERLOAD_SECONDS}s, every module on"
    dir="$OUT/overload"
    rm -rf "$dir" && mkdir -p "$dir"
    ip netns exec "$NS" "$LOAD" discard --bind "$FORWARD" --secs $((OVERLOAD_SECONDS + 120)) >"$dir/discard.txt" &
    PIDS+=("$!")
    VX_WORKERS=$OVERLOAD_WORKERS start_vxtap "$dir" bench/reliability.toml
    # The receiver at the lowest CPU priority (the sender keeps the default): on a loopback the
    # kernel's own receive path runs on the sender's time, so only a starved receiver falls 10 x behind.
    renice -n "$OVERLOAD_RECEIVER_NICE" -p "$VX" >/dev/null
    for t in /proc/"$VX"/task/*; do renice -n "$OVERLOAD_RECEIVER_NICE" -p "${t##*/}" >/dev/null; done
    read -r _ drops0 < <(udp_socket)
    in0=$(snmp InDatagrams); err0=$(snmp InErrors); rcvbuf0=$(snmp RcvbufErrors); noport0=$(snmp NoPorts); soft0=$(softnet_drops)
    monitor "$dir/samples.txt" 0.5 &
    MON=$!
    PIDS+=("$MON")
    nsx "$LOAD" blast --to "127.0.0.1:$PORT" --capture "$CAPTURE" --secs "$OVERLOAD_SECONDS" | tee "$dir/blast.txt"
    settle
    metrics >"$dir/metrics.txt"
    read -r rx1 drops1 < <(udp_socket)
    in1=$(snmp InDatagrams); err1=$(snmp InErrors); rcvbuf1=$(snmp RcvbufErrors); noport1=$(snmp NoPorts); soft1=$(softnet_drops)
    kill "$MON" 2>/dev/null || true
    stop_vxtap "$dir"
    sent=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' "$dir/blast.txt")
    secs=$(sed -n 's/.*secs=\([0-9.]*\).*/\1/p' "$dir/blast.txt")
    received=$(metric vxtap_datagrams_received_total "$dir/metrics.txt")
    dispatched=$(metric vxtap_datagrams_dispatched_total "$dir/metrics.txt")
    dropped=$(dropped_sum "$dir/metrics.txt")
    k_in=$((in1 - in0)); k_err=$((err1 - err0)); k_rcvbuf=$((rcvbuf1 - rcvbuf0)); k_noport=$((noport1 - noport0))
    k_soft=$((soft1 - soft0)); k_sock=$((drops1 - drops0))
    peak=$(awk '{ if ($2 > m) m = $2 } END { print m + 0 }' "$dir/samples.txt")
    polls=$(wc -l <"$dir/samples.txt")
    not200=$(awk '$3 != 200' "$dir/samples.txt" | wc -l)
    overload=$(awk -v s="$sent" -v r="$received" 'BEGIN { printf "%.2f", (r > 0 ? s / r : 0) }')
    result "overload sent=$sent secs=$secs offered_pps=$(awk -v s="$sent" -v t="$secs" 'BEGIN { printf "%.0f", s / t }') received=$received received_pps=$(awk -v s="$received" -v t="$secs" 'BEGIN { printf "%.0f", s / t }') offered_over_received=$overload"
    result "overload kernel in_datagrams=$k_in in_errors=$k_err rcvbuf_errors=$k_rcvbuf no_ports=$k_noport socket_drops=$k_sock backlog_drops=$k_soft rx_queue_left=$rx1"
    result "overload vxtap received=$received dispatched=$dispatched dropped=$dropped drops: $(drops_by_reason "$dir/metrics.txt")"
    result "overload peak_rss_kib=$peak bound_kib=$((RSS_BOUND_MIB * 1024)) health_polls=$polls not_200=$not200"
    if [ "$k_in" = "$received" ]; then st=0; else st=1; fi
    verdict "overload: vxtap received every datagram the kernel delivered" $st "kernel InDatagrams $k_in, vxtap received $received"
    if [ "$received" = $((dispatched + dropped)) ]; then st=0; else st=1; fi
    verdict "overload: received = dispatched + dropped" $st "$received = $dispatched + $dropped"
    if [ "$sent" = $((k_in + k_err + k_noport + k_soft)) ]; then st=0; else st=1; fi
    verdict "overload: sent = delivered + kernel drops" $st "$sent vs $k_in + $k_err (InErrors, of which RcvbufErrors $k_rcvbuf; socket drops $k_sock) + $k_noport + $k_soft (backlog)"
    if awk -v s="$sent" -v r="$received" 'BEGIN { exit !(s >= 10 * r) }'; then st=0; else st=1; fi
    verdict "overload: offered load at least 10 x what vxtap processed" $st "$overload x"
    if [ "$peak" -lt $((RSS_BOUND_MIB * 1024)) ]; then st=0; else st=1; fi
    verdict "overload: peak RSS under ${RSS_BOUND_MIB} MiB" $st "$((peak / 1024)) MiB"
    if [ "$not200" = 0 ] && [ "$polls" -gt 0 ]; then st=0; else st=1; fi
    verdict "overload: /healthz 200 at every poll" $st "$polls polls, $not200 not 200"
fi

if wants spoof; then
    say "spoof: $SPOOF_COUNT datagrams from random public sources with random VNIs, then $SPOOF_VNIS new VNIs from one allowed source"
    dir="$OUT/spoof"
    rm -rf "$dir" && mkdir -p "$dir"
    printf '[[module]]\nkind = "stats"\ninterval_secs = 10\n\n[[module]]\nkind = "flowlog"\n[module.output]\ndir = "@OUT@/flowlog"\n' >"$dir/modules.toml"
    start_vxtap "$dir" "$dir/modules.toml"
    monitor "$dir/samples.txt" 0.5 &
    MON=$!
    PIDS+=("$MON")
    sleep 1
    rss0=$(rss_kib "$VX")
    in0=$(snmp InDatagrams); err0=$(snmp InErrors)
    nsx "$LOAD" spoof --to "127.0.0.1:$PORT" --mode public --count "$SPOOF_COUNT" --pps "$SPOOF_PPS" --secs 120 | tee "$dir/public.txt"
    settle
    metrics >"$dir/metrics-public.txt"
    nsx curl -s "http://$ADMIN/sessions" >"$dir/sessions-public.json"
    rss1=$(rss_kib "$VX")
    in1=$(snmp InDatagrams); err1=$(snmp InErrors)
    sent=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' "$dir/public.txt")
    refused=$(awk '$1 == "vxtap_datagrams_dropped_total{reason=\"source_refused\"}" { printf "%.0f", $2 }' "$dir/metrics-public.txt")
    learned=$(awk '$1 == "vxtap_sessions{kind=\"learned\"}" { printf "%.0f", $2 }' "$dir/metrics-public.txt")
    received=$(metric vxtap_datagrams_received_total "$dir/metrics-public.txt")
    result "spoof-public sent=$sent kernel_delivered=$((in1 - in0)) kernel_errors=$((err1 - err0)) received=$received source_refused=$refused learned_sessions=$learned rss_before_kib=$rss0 rss_after_kib=$rss1 drops: $(drops_by_reason "$dir/metrics-public.txt")"
    if [ "$learned" = 0 ] && [ "$(tr -d ' \n' <"$dir/sessions-public.json")" = "[]" ]; then st=0; else st=1; fi
    verdict "spoof-public: no session learned" $st "vxtap_sessions{kind=learned} $learned, /sessions $(head -c 80 "$dir/sessions-public.json")"
    if [ "$refused" = "$received" ] && [ "$received" = $((in1 - in0)) ] && [ "$sent" = $((in1 - in0 + err1 - err0)) ]; then st=0; else st=1; fi
    verdict "spoof-public: every datagram counted as source_refused" $st "sent $sent, kernel delivered $((in1 - in0)) (+ $((err1 - err0)) kernel drops), source_refused $refused"
    if [ $((rss1 - rss0)) -lt 4096 ]; then st=0; else st=1; fi
    verdict "spoof-public: RSS flat (grew < 4 MiB)" $st "$rss0 -> $rss1 KiB"

    max_learned=1024 # [sessions] max_learned, left at its default
    in0=$(snmp InDatagrams); err0=$(snmp InErrors)
    base_full=$(awk '$1 == "vxtap_datagrams_dropped_total{reason=\"session_table_full\"}" { printf "%.0f", $2 }' "$dir/metrics-public.txt")
    rss2=$(rss_kib "$VX")
    nsx "$LOAD" spoof --to "127.0.0.1:$PORT" --mode vnis --source 10.200.0.1 --count "$SPOOF_VNIS" --pps "$SPOOF_PPS" --secs 120 | tee "$dir/vnis.txt"
    settle
    metrics >"$dir/metrics-vnis.txt"
    nsx curl -s "http://$ADMIN/sessions" >"$dir/sessions-vnis.json"
    rss3=$(rss_kib "$VX")
    in1=$(snmp InDatagrams); err1=$(snmp InErrors)
    sent=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' "$dir/vnis.txt")
    full=$(awk '$1 == "vxtap_datagrams_dropped_total{reason=\"session_table_full\"}" { printf "%.0f", $2 }' "$dir/metrics-vnis.txt")
    full=$((full - base_full))
    learned=$(awk '$1 == "vxtap_sessions{kind=\"learned\"}" { printf "%.0f", $2 }' "$dir/metrics-vnis.txt")
    listed=$(grep -o '"key"' "$dir/sessions-vnis.json" | wc -l)
    delivered=$((in1 - in0))
    result "spoof-vnis sent=$sent kernel_delivered=$delivered kernel_errors=$((err1 - err0)) learned_sessions=$learned sessions_listed=$listed session_table_full=$full max_learned=$max_learned rss_before_kib=$rss2 rss_after_kib=$rss3 drops: $(drops_by_reason "$dir/metrics-vnis.txt")"
    if [ "$learned" = "$max_learned" ] && [ "$listed" = "$max_learned" ]; then st=0; else st=1; fi
    verdict "spoof-vnis: learning stops at max_learned" $st "learned $learned, /sessions lists $listed, cap $max_learned"
    if [ "$full" = $((delivered - max_learned)) ]; then st=0; else st=1; fi
    verdict "spoof-vnis: the rest counted as session_table_full" $st "$full = $delivered delivered - $max_learned learned"
    stop_vxtap "$dir"
    kill "$MON" 2>/dev/null || true
fi

if wants soak; then
    say "soak: ${SOAK_SECONDS}s at $SOAK_PPS datagrams/s, every module on"
    dir="$OUT/soak"
    rm -rf "$dir" && mkdir -p "$dir/offline"
    # What flowlog counts for one pass of the capture, offline, with the same flowlog settings.
    printf '[[module]]\nkind = "flowlog"\nmax_flows = 400000\n[module.output]\ndir = "%s/offline"\n' "$dir" >"$dir/offline.toml"
    "$BIN" --log-level warn replay --config "$dir/offline.toml" "$CAPTURE" >"$dir/offline-summary.txt" 2>&1
    per_pass=$(cat "$dir"/offline/* | awk '$9 ~ /^[0-9]+$/ { s += $9 } END { printf "%.0f\n", s }')
    skip_offline=$(cat "$dir"/offline/* | grep -c SKIPDATA || true)
    datagrams=$("$LOAD" blast --to 127.0.0.1:9 --capture "$CAPTURE" --max 0 --secs 1 | sed -n 's/.*capture_datagrams=\([0-9]*\).*/\1/p')
    passes=$(((SOAK_SECONDS * SOAK_PPS + datagrams / 2) / datagrams))
    [ "$passes" -ge 1 ] || passes=1
    ip netns exec "$NS" "$LOAD" discard --bind "$FORWARD" --secs $((SOAK_SECONDS * 2 + 120)) >"$dir/discard.txt" &
    PIDS+=("$!")
    start_vxtap "$dir" bench/reliability.toml
    read -r _ drops0 < <(udp_socket)
    in0=$(snmp InDatagrams); err0=$(snmp InErrors)
    monitor "$dir/samples.txt" 5 &
    MON=$!
    PIDS+=("$MON")
    nsx "$LOAD" blast --to "127.0.0.1:$PORT" --capture "$CAPTURE" --pps "$SOAK_PPS" --passes "$passes" \
        --secs $((SOAK_SECONDS * 2 + 60)) | tee "$dir/blast.txt"
    settle
    metrics >"$dir/metrics.txt"
    read -r _ drops1 < <(udp_socket)
    in1=$(snmp InDatagrams); err1=$(snmp InErrors)
    kill "$MON" 2>/dev/null || true
    stop_vxtap "$dir"
    sent=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' "$dir/blast.txt")
    secs=$(sed -n 's/.*secs=\([0-9.]*\).*/\1/p' "$dir/blast.txt")
    live=$(cat "$dir"/flowlog/* | awk '$9 ~ /^[0-9]+$/ { s += $9 } END { printf "%.0f\n", s }')
    skip_live=$(cat "$dir"/flowlog/* | grep -c SKIPDATA || true)
    received=$(metric vxtap_datagrams_received_total "$dir/metrics.txt")
    dropped=$(dropped_sum "$dir/metrics.txt")
    # RSS after the first minute (buffers and tables warmed up; a sixth of a shorter soak) against the
    # last sample.
    warm=$((SOAK_SECONDS / 6 < 60 ? SOAK_SECONDS / 6 : 60))
    rss_start=$(awk -v w="$warm" 'NR == 1 { t0 = $1 } $1 - t0 >= w { print $2; exit }' "$dir/samples.txt")
    rss_first=$(awk 'NR == 1 { print $2 }' "$dir/samples.txt")
    rss_end=$(awk 'END { print $2 }' "$dir/samples.txt")
    rss_peak=$(awk '{ if ($2 > m) m = $2 } END { print m + 0 }' "$dir/samples.txt")
    not200=$(awk '$3 != 200' "$dir/samples.txt" | wc -l)
    result "soak secs=$secs pps=$SOAK_PPS passes=$passes capture_datagrams=$datagrams sent=$sent kernel_delivered=$((in1 - in0)) kernel_errors=$((err1 - err0)) received=$received dropped=$dropped"
    result "soak flowlog_packets_live=$live expected=$((passes * per_pass)) per_pass_offline=$per_pass skipdata_live=$skip_live skipdata_offline=$skip_offline"
    result "soak rss_first_kib=${rss_first:-0} rss_at_${warm}s_kib=${rss_start:-0} rss_end_kib=$rss_end rss_peak_kib=$rss_peak health_not_200=$not200"
    # The capture's damaged datagrams are dropped with a reason on every pass, offline and live.
    dropped_per_pass=$(sed -n 's/^packets: .* \([0-9]*\) dropped$/\1/p' "$dir/offline-summary.txt")
    if [ "$sent" = $((passes * datagrams)) ] && [ "$received" = "$sent" ] && [ "$dropped" = $((passes * dropped_per_pass)) ]; then st=0; else st=1; fi
    verdict "soak: every datagram sent was received, dropped only as offline" $st "sent $sent of $((passes * datagrams)), received $received, dropped $dropped vs $passes x $dropped_per_pass offline, kernel drops $((err1 - err0))"
    if [ "$live" = $((passes * per_pass)) ] && [ "$skip_live" = 0 ]; then st=0; else st=1; fi
    verdict "soak: flowlog packet totals = passes x offline totals (no record lost)" $st "$live vs $passes x $per_pass = $((passes * per_pass)); SKIPDATA $skip_live"
    if [ -n "${rss_start:-}" ] && awk -v a="$rss_start" -v b="$rss_end" 'BEGIN { exit !(b <= a * 1.10 + 8192) }'; then st=0; else st=1; fi
    verdict "soak: RSS flat (end within 10 % + 8 MiB of the sample at ${warm}s)" $st "${rss_start:-?} -> $rss_end KiB"
fi

if wants fuzz; then
    say "fuzz: each target for $FUZZ_RUNS executions (at most ${FUZZ_MAX_SECS}s each)"
    dir="$OUT/fuzz"
    mkdir -p "$dir"
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
    for t in $FUZZ_TARGETS; do
        corpus=$(mktemp -d -t vxtap-fuzz-corpus-XXXXXX)
        cp -r "fuzz/corpus/$t/." "$corpus"
        start=$(date +%s)
        status=0
        RUSTC_BOOTSTRAP=1 nice -n 15 cargo fuzz run "$t" "$corpus" -- -runs="$FUZZ_RUNS" \
            -max_total_time="$FUZZ_MAX_SECS" -rss_limit_mb=2048 -print_final_stats=1 \
            >"$dir/$t.log" 2>&1 || status=$?
        wall=$(($(date +%s) - start))
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/$t.log" | tail -1)
        eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/$t.log" | tail -1)
        rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$dir/$t.log" | tail -1)
        cov=$(grep -o 'cov: [0-9]*' "$dir/$t.log" | tail -1 | cut -d' ' -f2)
        crash=$(grep -m1 -o 'artifact_prefix=[^;]*; Test unit written to [^ ]*' "$dir/$t.log" || true)
        result "fuzz target=$t execs=${execs:-0} exec_per_sec=${eps:-0} wall_secs=$wall peak_rss_mb=${rss:-?} cov=${cov:-?} exit=$status corpus_in=$(ls "fuzz/corpus/$t" | wc -l) corpus_out=$(ls "$corpus" | wc -l)${crash:+ crash=$crash}"
        if [ "$status" = 0 ] && [ -z "$crash" ]; then st=0; else st=1; fi
        verdict "fuzz $t: no crash" $st "${execs:-0} executions, exit $status"
        if [ "${execs:-0}" -ge "$FUZZ_RUNS" ]; then st=0; else st=1; fi
        verdict "fuzz $t: at least $FUZZ_RUNS executions" $st "${execs:-0} in ${wall}s"
        rm -rf "$corpus"
        corpus=
    done
fi

say "summary ($SUMMARY)"
grep -E '^(PASS|FAIL)' "$SUMMARY" | tail -40
