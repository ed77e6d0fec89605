#!/usr/bin/env python3
"""Steady-rate CPU cost of vxtap builds (issue 6): each receives the same paced stream, well below its
drain capacity, as a live appliance does; the figure is the CPU time the vxtap process spent per
datagram (utime + stime from /proc, start-up excluded), with its drops by reason. Builds alternate
order every round; medians and the ratio of the first build to the second are printed. Loopback only.

    bench/steady_cpu.py BIN1,BIN2 ROUNDS PPS CAPTURE
    e.g. target/release/examples/gen_capture /tmp/c.pcap 1000000 20000
         bench/steady_cpu.py target/release/vxtap,/tmp/vxtap-before 5 200000 /tmp/c.pcap

The stream is `BIN1 send --pps PPS CAPTURE` (the first build's sender for both). Modules: stats, plus
bench/flowlog.toml unless FLOWLOG=0. Two workers, 128 MiB socket buffers (needs rmem_max)."""
import json, os, signal, subprocess, sys, tempfile, time, threading
bins = sys.argv[1].split(",")
rounds = int(sys.argv[2]); pps = sys.argv[3]; pcap = sys.argv[4]
extra = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "flowlog.toml")).read() if os.environ.get("FLOWLOG", "1") == "1" else ""
tick = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
res = {b: [] for b in bins}
for r in range(rounds):
    for b in (bins if r % 2 == 0 else bins[::-1]):
        # Removed after the run, as is the process, if anything below fails.
        with tempfile.TemporaryDirectory(prefix="vxtap-steady-") as d:
            cfg = os.path.join(d, "v.toml")
            open(cfg, "w").write('[ingest]\nvxlan = ["127.0.0.1:0"]\nworkers = 2\nreceive_buffer_bytes = 134217728\n\n[[module]]\nkind = "stats"\ninterval_secs = 10\n\n' + extra)
            p = subprocess.Popen([b, "--log-format", "json", "run", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                addr = None; lines = []
                for line in p.stderr:
                    v = json.loads(line); lines.append(v)
                    if v.get("message") == "Listening.": addr = v["addr"]
                    if v.get("message") == "vxtap is running.": break
                rest = []
                t = threading.Thread(target=lambda: rest.extend(json.loads(l) for l in p.stderr)); t.start()
                time.sleep(0.5)
                c0 = cpu(p.pid)
                s = subprocess.run([bins[0], "send", "--to", addr, "--pps", pps, pcap], capture_output=True, text=True)
                time.sleep(0.5)
                c1 = cpu(p.pid)
                p.send_signal(signal.SIGINT); p.wait(); t.join()
                st = next(v for v in rest if v.get("message") == "Stopped.")
                mode = "inline" if any("run-to-completion" in str(v.get("message")) for v in lines) else "handoff"
                us = (c1 - c0) / st["received"] * 1e6
                res[b].append(us)
                print(f"round {r} {b} ({mode}): received={st['received']} dispatched={st['dispatched']} drops={st['drops']} cpu={c1-c0:.2f}s = {us:.3f} us/datagram", flush=True)
            finally:
                if p.poll() is None:
                    p.kill(); p.wait()
for b in bins:
    v = sorted(res[b]); print(f"MEDIAN {b}: {v[len(v)//2]:.3f} us/datagram")
m = [sorted(res[b])[len(res[b])//2] for b in bins]
print(f"RESULT steady cpu_per_datagram ratio {bins[0]}/{bins[1]} = {m[0]/m[1]:.3f}")
