#!/usr/bin/env bash
# Live delivery beside Centrifuge (BENCHMARKS.md): the same load tool, the
# same 483-byte records, one record to N subscribers, tributary (durability
# on: benches/live.toml) and a minimal server on the Centrifuge library
# (bench/centrifuge-peer, memory broker) measured in turn, twice each.
#
# Needs Debian's Go and Centrifuge packages:
#   apt-get install -y golang-go golang-github-centrifugal-centrifuge-dev \
#     golang-github-centrifugal-protocol-dev golang-github-fzambia-eagle-dev \
#     golang-github-igm-sockjs-go-dev golang-github-mna-redisc-dev
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p tributary -p tributary-tools --bins
GO111MODULE=off GOPATH=/usr/share/gocode go build -o target/centrifuge-peer ./bench/centrifuge-peer
rm -rf target/live-bench-data
./target/release/tributary --config benches/live.toml > target/live-bench.log 2>&1 &
T=$!
./target/centrifuge-peer -addr 127.0.0.1:18800 > target/centrifuge-peer.log 2>&1 &
C=$!
trap 'kill $T $C 2>/dev/null' EXIT
sleep 2
run() { # connections rate
  for round in 1 2; do
    echo "== N=$1 at $2/s, round $round"
    ./target/release/loadgen --url ws://127.0.0.1:18700/ws live \
      --connections "$1" --rate "$2" --batch 1 --duration 10s --pid $T | sed -n 1,5p
    ./target/release/loadgen --url ws://127.0.0.1:18800/connection/websocket live --centrifuge \
      --connections "$1" --rate "$2" --batch 1 --duration 10s --pid $C | sed -n 1,5p
  done
}
run 100 10
run 1000 10
run 1000 100
