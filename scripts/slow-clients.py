#!/usr/bin/env python3
"""Slow-client memory (BENCHMARKS.md): starts the server given as argv[1]
(default target/release/tributary) on benches/loadgen.toml with
slow_client_timeout = 10s, opens 20 websockets that each ask for 100,000
results (about 50 MB each) and never read, and prints the server's resident
size and its open sockets over time: before, while the clients hang, and
after slow_client_timeout plus close_timeout."""
import os
import socket
import subprocess
import sys
import time
import urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/tributary"
PORT = 8080
os.chdir(os.path.join(os.path.dirname(__file__), ".."))
env = dict(os.environ, TRIBUTARY_LIMITS__SLOW_CLIENT_TIMEOUT="10s", TRIBUTARY_LIMITS__CLOSE_TIMEOUT="2s")
server = subprocess.Popen([BIN, "--config", "benches/loadgen.toml"], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def rss_mib():
    with open(f"/proc/{server.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def sockets():
    out = subprocess.run(["ss", "-tnH", "state", "established", f"( sport = :{PORT} )"],
                         capture_output=True, text=True).stdout
    return len([line for line in out.splitlines() if line.strip()])


def frame(text):
    payload = text.encode()
    mask = os.urandom(4)
    head = bytes([0x81])
    n = len(payload)
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


for _ in range(200):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=1)
        break
    except OSError:
        time.sleep(0.25)
# Warm up first (20 clients that do read, large pages), so the baseline is a
# server in use and not the garbage of building its index.
subprocess.run(["target/release/loadgen", "query", "--datasources", "tweets100k", "--clients", "20",
                "--size", "5000", "--duration", "3s", "--warmup", "0s"], stdout=subprocess.DEVNULL)
time.sleep(3)
before = rss_mib()
print(f"before: {before} MiB, {sockets()} sockets")
clients = []
for _ in range(20):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", PORT))
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    s.sendall(frame('{"type":"ITEMS_REQUEST","datasources":["tweets100k"],"query":"*","size":100000}'))
    clients.append(s)
peak = before
start = time.time()
while time.time() - start < 16:
    peak = max(peak, rss_mib())
    t = time.time() - start
    if abs(t - round(t)) < 0.05 and round(t) % 2 == 0:
        print(f"  t={round(t):>2} s: {rss_mib()} MiB, {sockets()} sockets")
    time.sleep(0.05)
time.sleep(2)
print(f"peak while hanging: {peak} MiB (+{peak - before} MiB for 20 clients)")
print(f"after slow_client_timeout + close_timeout: {rss_mib()} MiB, {sockets()} sockets")
for s in clients:
    s.close()
server.terminate()
server.wait()
