#!/usr/bin/env bash
# The query-cost attack (BENCHMARKS.md): starts the server given as $1 (default
# target/release/tributary) on benches/loadgen.toml; one heavy wildcard alone,
# then ten attackers beside a light client, then how long the CPU stays busy.
set -u
cd "$(dirname "$0")/.."
BIN=${1:-target/release/tributary}
OUT=$(mktemp -d)
$BIN --config benches/loadgen.toml > /dev/null 2>&1 &
PID=$!
for i in $(seq 1 100); do curl -s http://127.0.0.1:8080/healthz >/dev/null && break; sleep 0.5; done
ticks() { awk '{print $14+$15}' /proc/$PID/stat; }
T0=$(ticks)
./target/release/loadgen query --datasources tweets100k --query '*a*b*c*d*e*' --clients 1 --size 10 --duration 12s --warmup 0s > "$OUT/one.txt" 2>&1
T1=$(ticks)
N=$(grep -o 'n=[0-9]*' "$OUT/one.txt" | cut -d= -f2)
echo "heavy alone: n=$N, $(grep latency "$OUT/one.txt"), server CPU per request $(( (T1-T0)*10 / (N>0?N:1) )) ms"
./target/release/loadgen query --datasources tweets100k --query '*a*b*c*d*e*' --clients 10 --size 10 --duration 20s --warmup 0s > "$OUT/heavy.txt" 2>&1 &
LG=$!
sleep 2
./target/release/loadgen query --datasources tweets100k --query 'bitcoin' --clients 1 --size 10 --duration 10s --warmup 0s --rate 20 > "$OUT/light.txt" 2>&1
echo "light under attack: $(grep latency "$OUT/light.txt")"
wait $LG
echo "attackers: $(grep latency "$OUT/heavy.txt")"
# How long does the CPU stay busy after the attackers are gone?
for s in $(seq 1 120); do A=$(ticks); sleep 1; B=$(ticks); if [ $((B-A)) -lt 10 ]; then echo "busy for $((s-1)) s after the attack"; break; fi; done
echo "RSS $(awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/$PID/status) MiB"
kill $PID; wait $PID 2>/dev/null
