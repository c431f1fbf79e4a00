#!/usr/bin/env bash
# Two server builds side by side, interleaved in one run (BENCHMARKS.md):
# for each, the closed-loop query mode (100 clients, size 50) and the stream
# mode (100,000 items), with the server's own CPU time (utime + stime from
# /proc/<pid>/stat) per 1,000 requests. Usage: scripts/compare.sh OLD NEW [rounds]
set -u
cd "$(dirname "$0")/.."
OLD=$1; NEW=$2; ROUNDS=${3:-2}
LOADGEN=target/release/loadgen
MIX=(--query '*' --query 'hashtags:bitcoin' --query 'user.screen_name:annad0' --query '"new report"' --query 'user.followers_count:[1000 TO 5000]')
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
HZ=$(getconf CLK_TCK)
for round in $(seq 1 "$ROUNDS"); do
  for name in old new; do
    bin=$OLD; [ $name = new ] && bin=$NEW
    $bin --config benches/loadgen.toml > /dev/null 2>&1 &
    PID=$!
    for i in $(seq 1 100); do curl -s http://127.0.0.1:8080/healthz >/dev/null && break; sleep 0.3; done
    $LOADGEN query --clients 100 --size 50 --datasources tweets100k --duration 2s --warmup 0s "${MIX[@]}" > /dev/null
    before=$(ticks $PID)
    out=$($LOADGEN --json query --clients 100 --size 50 --datasources tweets100k --duration 10s --warmup 1s "${MIX[@]}")
    after=$(ticks $PID)
    python3 - "$name" "$round" "$before" "$after" "$HZ" "$out" <<'PY'
import json, sys
name, rnd, before, after, hz, out = sys.argv[1:]
r = json.loads(out)
# CPU over the 11 s run; requests over the 10 s measured: scale to 11 s.
reqs = r["requests_per_s"] * 11
cpu_ms = (int(after) - int(before)) * 1000 / int(hz)
print(f"round {rnd} {name}: query {r['requests_per_s']:.0f} req/s, p50 {r['latency']['p50_ms']:.2f} ms, p99 {r['latency']['p99_ms']:.2f} ms, server CPU {cpu_ms / reqs * 1000:.0f} ms per 1,000 requests")
PY
    before=$(ticks $PID)
    out=$($LOADGEN --json stream --datasources tweets100k --size 100000 --repeat 3)
    after=$(ticks $PID)
    python3 - "$name" "$round" "$before" "$after" "$HZ" "$out" <<'PY'
import json, sys
name, rnd, before, after, hz, out = sys.argv[1:]
runs = json.loads(out)["runs"]
best = max(r["items_per_s"] for r in runs)
first = min(r["first_batch_ms"] for r in runs)
cpu_ms = (int(after) - int(before)) * 1000 / int(hz)
print(f"round {rnd} {name}: stream best {best:,.0f} items/s, first batch {first:.2f} ms, server CPU {cpu_ms / 3:.0f} ms per 100,000 items")
PY
    kill $PID; wait $PID 2>/dev/null
  done
done
