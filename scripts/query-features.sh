#!/usr/bin/env bash
# What each query feature costs (BENCHMARKS.md, "Query semantics equal to
# Elasticsearch's"): each query alone on tweets100k, closed loop, 20 clients,
# size 50, with the server's own CPU time per request from /proc/<pid>/stat.
# Usage: scripts/query-features.sh [server binary]   (needs target/tweets-100k.ndjson)
cd "$(dirname "$0")/.."
BIN=${1:-target/release/tributary}
$BIN --config benches/loadgen.toml > /dev/null 2>&1 &
PID=$!
for i in $(seq 1 100); do curl -s http://127.0.0.1:8080/healthz >/dev/null && break; sleep 0.3; done
HZ=$(getconf CLK_TCK)
for q in 'bitcoin' 'user.screen_name:annad0' '"meetup opendata"' '"opendata meetup"~3' 'bitc*' '*coin' '/bitc.*n/' 'bitcion~' 'opendta~1' 'created_at:[2024-03-01 TO 2024-04-01}' 'created_at:[now-3y/d TO now]' 'NOT bitcoin' 'bitcoin && opendata'; do
  before=$(awk '{print $14 + $15}' /proc/$PID/stat)
  out=$(target/release/loadgen --json query --clients 20 --size 50 --datasources tweets100k --duration 5s --warmup 1s --query "$q")
  after=$(awk '{print $14 + $15}' /proc/$PID/stat)
  python3 - "$q" "$before" "$after" "$HZ" "$out" <<'PY'
import json, sys
q, before, after, hz, out = sys.argv[1:]
r = json.loads(out)
reqs = r["requests_per_s"] * 6
cpu_ms = (int(after) - int(before)) * 1000 / int(hz)
print(f"| `{q}` | {r['requests_per_s']:.0f} | {r['latency']['p50_ms']:.2f} | {r['latency']['p99_ms']:.2f} | {cpu_ms / reqs * 1000:.0f} |")
PY
done
kill $PID
