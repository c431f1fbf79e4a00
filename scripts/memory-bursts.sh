#!/usr/bin/env bash
# Memory after bursts (BENCHMARKS.md): starts the server given as $1 (default
# target/release/tributary) on benches/loadgen.toml, runs three rounds of
# large wildcard searches and prints the resident size after each.
set -u
cd "$(dirname "$0")/.."
BIN=${1:-target/release/tributary}
ROUND=$(mktemp)
$BIN --config benches/loadgen.toml > /dev/null 2>&1 &
PID=$!
for i in $(seq 1 100); do curl -s http://127.0.0.1:8080/healthz >/dev/null && break; sleep 0.5; done
rss() { awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/$PID/status; }
echo "start: $(rss) MiB"
for round in 1 2 3; do
  ./target/release/loadgen query --datasources tweets100k --query '*a*' --query '*e*' --query 'user.screen_name:*a*' --clients 10 --size 5000 --duration 10s --warmup 1s > "$ROUND" 2>&1
  peak=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$PID/status)
  sleep 3
  echo "round $round: $(grep throughput "$ROUND" | awk '{print $2}') req/s, peak $peak MiB, after 3 s idle $(rss) MiB"
done
kill $PID; wait $PID 2>/dev/null
