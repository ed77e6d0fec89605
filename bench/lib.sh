# Shared by bench/run.sh and bench/reliability.sh (sourced, not run): how a benchmark script reports,
# and the machine facts every result file starts with, since figures from these shared, noisy
# machines mean nothing without the load and commit they were measured at. Expects $OUT and $SUMMARY.

say() { printf '\n==> %s\n' "$*"; }
result() { echo "RESULT $*" | tee -a "$SUMMARY"; }
wants() { [[ ",$ONLY," == *",$1,"* ]]; }

# Writes the machine's description to $OUT/machine.txt and appends it to the summary.
describe_machine() {
    say "machine"
    {
        echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "nproc: $(nproc)"
        echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
        echo "kernel: $(uname -r)"
        echo "rustc: $(rustc --version)"
        echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    } | tee "$OUT/machine.txt" | tee -a "$SUMMARY"
}
