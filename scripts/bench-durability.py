#!/usr/bin/env python3
"""Durability figures for BENCHMARKS.md: publishing into a data directory,
and the restart of a node that holds many published records; with
`--cluster`, two nodes on a Redis of their own (with and without its
append-only file): publishing, a node catching up after a restart, and a
new node recovering from a peer once the stream was trimmed.

    cargo build --release --bin tributary
    scripts/bench-durability.py --records 1000000 --batch 5000
    scripts/bench-durability.py --cluster --records 200000 --batch 1000 [--nodes 3]

One embedded datasource (the demo tweets as its base) with publishing open
and its data directory in a temporary folder. Publishes `--records`
tweets-shaped records with ids in POSTs of `--batch`, one publisher, and
reports records a second and the server's CPU per 1,000 records (from
/proc/<pid>/stat). Then stops the server with SIGTERM and starts it again,
and kills it with SIGKILL and starts it again, each time timing until it
listens and until its first search counts every record; and publishes the
last batch again to show nothing is doubled.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BENCH_BINARY", os.path.join(ROOT, "target", "release", "tributary"))
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port, patience=600):
    began = time.monotonic()
    while time.monotonic() - began < patience:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
                if answer.status == 200:
                    return time.monotonic() - began
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit(f"node on {port} never ready")


def start(folder, port):
    log = open(os.path.join(folder, "server.log"), "ab")
    began = time.monotonic()
    server = subprocess.Popen(
        [BIN, "--config", os.path.join(folder, "tributary.toml"), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=log,
    )
    server.stdout.readline()  # the address, once it listens
    return server, time.monotonic() - began


def post(port, body):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/datasources/tweets/records", data=body, method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.loads(answer.read())


def total(port):
    """The datasource's total, from an ITEMS_REQUEST over the websocket."""
    import asyncio

    import websockets

    async def ask():
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "ITEMS_REQUEST", "datasources": ["tweets"], "query": "*",
                                      "from": 0, "size": 0, "color": "#000"}))
            while True:
                message = json.loads(await ws.recv())
                if message.get("type") == "ITEMS_RECEIVE":
                    return message["items"]["total"]

    return asyncio.run(ask())


def batch(first, count):
    lines = []
    for n in range(first, first + count):
        lines.append(json.dumps({
            "id": f"p{n}", "created_at": "2026-11-23T10:00:00Z",
            "text": f"published record {n} about #durability and #bench{n % 97}",
            "user": {"screen_name": f"user{n % 5000}", "followers_count": n % 1000},
        }))
    return ("\n".join(lines) + "\n").encode()


def cluster(args):
    for persistence in (["--appendonly", "no"], ["--appendonly", "yes", "--appendfsync", "always"]):
        folder = tempfile.mkdtemp(prefix="tributary-cluster-")
        redis_port = free_port()
        redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                  "--save", "", "--dir", folder] + persistence, stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        nodes = []
        for name in "abc"[: args.nodes]:
            node = os.path.join(folder, name)
            os.makedirs(node)
            with open(os.path.join(node, "tributary.toml"), "w") as f:
                f.write(
                    "[publish]\nenabled = true\nmax_body_bytes = 67108864\n\n"
                    f"[broker]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{redis_port}\"\n"
                    "records_kept_for = \"0s\"\n\n"
                    "[datasources.tweets]\ntype = \"embedded\"\nembedded = \"tweets\"\n"
                    f"max_records = {2 * args.records + 10_000}\n"
                )
            port = free_port()
            server, _ = start(node, port)
            ready(port)
            nodes.append([node, port, server])
        (a_dir, a_port, a), (b_dir, b_port, b) = nodes[0], nodes[1]
        others = [server for _, _, server in nodes[2:]]
        pids = [server.pid for _, _, server in nodes] + [redis.pid]
        began = time.monotonic()
        cpu = sum(cpu_seconds(pid) for pid in pids)
        for first in range(0, args.records, args.batch):
            post(a_port, batch(first, min(args.batch, args.records - first)))
        took = time.monotonic() - began
        cpu = sum(cpu_seconds(pid) for pid in pids) - cpu
        print(f"redis {' '.join(persistence)}, {args.nodes} nodes: {args.records} records in POSTs of {args.batch} to node A: "
              f"{args.records / took:,.0f} records/s, CPU (every node and Redis) "
              f"{cpu * 1000 / (args.records / 1000):.0f} ms per 1,000 records")
        # B is killed, misses as many records again, and restarts on its data.
        b.send_signal(signal.SIGKILL)
        b.wait()
        for first in range(args.records, 2 * args.records, args.batch):
            post(a_port, batch(first, args.batch))
        b, listening = start(b_dir, b_port)
        caught_up = ready(b_port) + listening
        assert total(b_port) == total(a_port) == 3000 + 2 * args.records
        print(f"  node B restarted {args.records} records behind: listening after {listening:.1f} s, "
              f"ready (every record) after {caught_up:.1f} s")
        # Once every node holds them, the stream lets them go; a new node
        # then copies a peer's records (peer recovery) and starts on them.
        stream = "tributary:stream:records:tweets"
        began = time.monotonic()
        while subprocess.run(["redis-cli", "-p", str(redis_port), "XLEN", stream],
                             capture_output=True, text=True).stdout.strip() != "0":
            if time.monotonic() - began > 120:
                raise SystemExit("the stream was never trimmed")
            time.sleep(0.2)
        d_dir = os.path.join(folder, "d")
        os.makedirs(d_dir)
        with open(os.path.join(a_dir, "tributary.toml")) as f:
            config = f.read()
        with open(os.path.join(d_dir, "tributary.toml"), "w") as f:
            f.write(config)
        d_port = free_port()
        began = time.monotonic()
        d, _ = start(d_dir, d_port)
        ready(d_port)
        recovered = time.monotonic() - began
        assert total(d_port) == total(a_port)
        log_mib = os.path.getsize(os.path.join(d_dir, "data", "tweets", "published.log")) / 2**20
        print(f"  a new node, the stream trimmed: ready after {recovered:.1f} s "
              f"(a peer's {2 * args.records} records, {log_mib:.0f} MiB, copied, checked and loaded)")
        others.append(d)
        for process in [a, b, redis] + others:
            process.send_signal(signal.SIGKILL)
            process.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--cluster", action="store_true")
    parser.add_argument("--nodes", type=int, default=2, help="with --cluster: 2 or 3")
    args = parser.parse_args()
    if args.cluster:
        return cluster(args)
    folder = tempfile.mkdtemp(prefix="tributary-durability-")
    with open(os.path.join(folder, "tributary.toml"), "w") as f:
        f.write(
            "[publish]\nenabled = true\nmax_body_bytes = 67108864\n\n"
            "[datasources.tweets]\ntype = \"embedded\"\nembedded = \"tweets\"\n"
            f"max_records = {args.records + 10_000}\n"
        )
    port = free_port()
    server, _ = start(folder, port)
    base = total(port)
    cpu_before = cpu_seconds(server.pid)
    began = time.monotonic()
    for first in range(0, args.records, args.batch):
        reply = post(port, batch(first, min(args.batch, args.records - first)))
        assert reply["searchable"], reply
    took = time.monotonic() - began
    cpu = cpu_seconds(server.pid) - cpu_before
    log = os.path.join(folder, "data", "tweets", "published.log")
    print(f"published {args.records} records in POSTs of {args.batch}: {took:.1f} s, "
          f"{args.records / took:,.0f} records/s, server CPU {cpu * 1000 / (args.records / 1000):.0f} ms per 1,000 records; "
          f"log {os.path.getsize(log) / 2**20:.0f} MiB")
    expected = base + args.records
    assert total(port) == expected

    for how in (signal.SIGTERM, signal.SIGKILL):
        server.send_signal(how)
        server.wait()
        began = time.monotonic()
        server, listening = start(folder, port)
        held = total(port)
        searchable = time.monotonic() - began
        assert held == expected, (held, expected)
        print(f"after {how.name}: listening after {listening:.1f} s, every record searchable after "
              f"{searchable:.1f} s, server CPU {cpu_seconds(server.pid):.1f} s, peak RSS {peak_rss_mib(server.pid):,.0f} MiB")
    reply = post(port, batch(args.records - args.batch, args.batch))
    assert reply["replaced"] == args.batch and total(port) == expected, reply
    print(f"the last batch published again: replaced {reply['replaced']}, total still {expected}")
    server.send_signal(signal.SIGTERM)
    server.wait()
    with open(os.path.join(folder, "server.log")) as f:
        for line in f:
            if "read back" in line:
                print("log:", line.strip()[:200])


if __name__ == "__main__":
    sys.exit(main())
