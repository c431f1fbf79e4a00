#!/usr/bin/env python3
"""The conformance kit for tributary datasource plugins.

Starts a tributary server (with a service token for the plugin), starts the
plugin, and checks its behaviour through tributary as a client sees it:

  identify     the plugin identifies and its datasource is announced
  pings        the plugin answers tributary's websocket pings while idle
  fields       FIELDS_REQUEST lists {path, type} fields
  paging       pages with totals: consistent totals, pages that join up,
               unique ids, an empty page past the end, never more than `size`,
               `total` in every reply
  large-page   a page of thousands of results arrives whole, in several replies
  concurrent   several searches at once all complete, each with its own results
  expand       EXPAND_REQUEST from a result's value answers values of other fields
  live         (with --live-query Q) records the plugin publishes reach a live
               query on Q as appends, each once, with its fields
  bad-query    an unreadable query is a bad_query ERROR, in words
  cancel       a search canceled while the plugin works on it stops; the
               plugin goes on serving
  disconnect   a plugin killed mid-request ends that request cleanly
  restart      the plugin started again serves again
  reconnect    after tributary restarts, the plugin comes back by itself

Usage:

  python3 plugins/conformance/conformance.py [--tributary BIN] [--query Q]
      [--bad-query Q] -- PLUGIN COMMAND...

The plugin command gets TRIBUTARY_URL and TRIBUTARY_TOKEN in its
environment. Exit status 0 when every check passes. Needs the `websockets`
package (pip install websockets).
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from websockets.asyncio.client import connect

TOKEN = "conformance-kit-token"
PATIENCE = 20.0
# tributary's heartbeat in the kit: a connection silent this long after a
# ping is closed (1008).
PING_INTERVAL, PONG_TIMEOUT = 1, 2
# What the close codes tributary uses on a plugin's connection mean.
CLOSE_CODES = {
    "1008": "a policy violation: no frame within ping_interval + pong_timeout "
            "after a websocket ping (answer pings), or a refused identification",
    "4420": "a limit: a message over limits.max_message_bytes (64 KiB: split "
            "results into several replies), too many messages a second, or an "
            "outbox tributary could not empty",
}
KNOWN_TYPES = {"text", "keyword", "long", "integer", "short", "byte", "double", "float",
               "half_float", "scaled_float", "date", "boolean", "ip", "geo_point", "object"}


CHECKS = 13


class Failed(Exception):
    pass


class Skipped(Exception):
    """A check the options leave nothing to check with."""


def check(condition, message):
    if not condition:
        raise Failed(message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Kit:
    def __init__(self, options):
        self.options = options
        self.port = free_port()
        self.folder = tempfile.mkdtemp(prefix="tributary-conformance-")
        self.config = os.path.join(self.folder, "tributary.toml")
        with open(self.config, "w") as out:
            out.write(f'listen = "127.0.0.1:{self.port}"\n'
                      f'default_timeout = "{options.timeout}s"\n'
                      f'[services.conformance]\ntoken = "{TOKEN}"\ndatasources = ["*"]\n'
                      f'[limits]\nmax_messages_per_second = 1000\n'
                      f'ping_interval = "{PING_INTERVAL}s"\npong_timeout = "{PONG_TIMEOUT}s"\n')
        self.server = None
        self.plugin = None
        self.datasource = options.datasource
        self.results = []
        self.skipped = []

    # -- processes -----------------------------------------------------------

    def start_server(self):
        log = open(os.path.join(self.folder, "tributary.log"), "ab")
        self.server = subprocess.Popen([self.options.tributary, "--config", self.config],
                                       stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            check(self.server.poll() is None, f"tributary exited at start; see {log.name}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1).read()
                return
            except Exception:
                time.sleep(0.1)
        raise Failed("tributary did not start within 60 s")

    def stop_server(self):
        if self.server and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(15)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()

    def start_plugin(self):
        env = dict(os.environ, TRIBUTARY_URL=f"ws://127.0.0.1:{self.port}/ws/services",
                   TRIBUTARY_TOKEN=TOKEN)
        log = open(os.path.join(self.folder, "plugin.log"), "ab")
        self.plugin = subprocess.Popen(self.options.plugin, env=env, stdout=log, stderr=subprocess.STDOUT)

    def kill_plugin(self):
        if self.plugin and self.plugin.poll() is None:
            self.plugin.kill()
            self.plugin.wait()

    def health(self):
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5).read()
        except urllib.error.HTTPError as error:
            body = error.read()
        return json.loads(body)

    def metric(self, name, outcome=None, **labels):
        """A counter of /metrics for the datasource (and `outcome`), or with `labels`."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()
        pattern = re.compile(r'^%s\{(.*)\} (\S+)$' % re.escape(name), re.M)
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        if not labels:
            wanted.append(f'datasource="{self.datasource}"')
        if outcome is not None:
            wanted.append(f'outcome="{outcome}"')
        for found, value in pattern.findall(text):
            if all(w in found for w in wanted):
                return float(value)
        return 0.0

    def closes(self):
        """Connections tributary closed so far, by close code."""
        return {code: self.metric("tributary_closes_total", code=code) for code in CLOSE_CODES}

    def why_closed(self, before):
        """What closes since `before` say about the plugin, in words ("" if none)."""
        said = []
        for code, count in self.closes().items():
            if count > before.get(code, 0):
                said.append(f"tributary closed a connection with {code}: {CLOSE_CODES[code]}")
        return "; ".join(said)

    def past_size(self):
        return self.metric("tributary_remote_results_past_size_total")

    def without_total(self):
        return self.metric("tributary_remote_replies_without_total_total")

    # -- the client side ---------------------------------------------------

    async def client(self):
        # The server lingers up to a second after the closing handshake: do not wait for it.
        ws = await connect(f"ws://127.0.0.1:{self.port}/ws", max_size=None, close_timeout=0.2)
        initial = json.loads(await asyncio.wait_for(ws.recv(), PATIENCE))
        check(initial.get("type") == "INITIAL_STATE_RECEIVE", f"no INITIAL_STATE_RECEIVE: {initial}")
        return ws, initial

    async def ask(self, ws, message, patience=PATIENCE):
        """Sends a request; returns its messages up to REQUEST_COMPLETED (or REQUEST_CANCELED)."""
        await ws.send(json.dumps(message))
        rid = message["request-id"]
        seen = []
        deadline = time.time() + patience
        while True:
            left = deadline - time.time()
            check(left > 0, f"request {rid} did not complete within {patience:.0f} s")
            m = json.loads(await asyncio.wait_for(ws.recv(), left))
            if m.get("request-id") != rid and m.get("type") not in ("ITEMS_RECEIVE", "FIELDS_RECEIVE"):
                continue
            seen.append(m)
            if m.get("type") in ("REQUEST_COMPLETED", "REQUEST_CANCELED") and m.get("request-id") == rid:
                return seen

    async def search(self, ws, rid, query, start, size, patience=PATIENCE):
        messages = await self.ask(ws, {"type": "ITEMS_REQUEST", "request-id": rid, "datasources": [self.datasource],
                                       "query": query, "from": start, "size": size, "color": "#123456"}, patience)
        errors = [m for m in messages if m.get("type") == "ERROR"]
        batches = [m["items"] for m in messages
                   if m.get("type") == "ITEMS_RECEIVE" and m["items"].get("server") == self.datasource]
        results = [r for b in batches for r in b.get("results", [])]
        return messages, errors, batches, results

    # -- the checks --------------------------------------------------------

    async def check_identify(self):
        ws, initial = await self.client()
        listed = {d["id"] for d in initial["state"]["datasources"]}
        self.start_plugin()
        deadline = time.time() + PATIENCE
        while True:
            left = deadline - time.time()
            check(left > 0, "no DATASOURCES_CHANGED announced the plugin's datasource within 20 s (see plugin.log)")
            m = json.loads(await asyncio.wait_for(ws.recv(), left))
            if m.get("type") != "DATASOURCES_CHANGED":
                continue
            new = [d for d in m["state"]["datasources"] if d["id"] not in listed]
            if self.datasource:
                new = [d for d in new if d["id"] == self.datasource]
            if new:
                check(new[0].get("type") == "remote", f"announced with type {new[0].get('type')!r}, not remote")
                self.datasource = new[0]["id"]
                await ws.close()
                return f"datasource `{self.datasource}` ({new[0].get('name')!r}) announced"

    async def check_pings(self):
        closes = self.closes()
        # Idle past tributary's heartbeat: a plugin that answers pings keeps its connection.
        await asyncio.sleep(PING_INTERVAL + PONG_TIMEOUT + 1.5)
        said = self.why_closed(closes)
        check(not said, "the plugin does not answer tributary's websocket pings: " + said)
        status = self.health().get("datasources", {}).get(self.datasource, {})
        check(status.get("ok") is True, f"/healthz says the datasource is not served: {status}")
        return f"idle {PING_INTERVAL + PONG_TIMEOUT + 1.5:.1f} s through pings every {PING_INTERVAL} s; still connected"

    async def check_concurrent(self):
        ws, _ = await self.client()
        q = self.options.query
        size = min(self.total, 200)
        starts = [0, 5, 10, 15]
        for i, start in enumerate(starts):
            await ws.send(json.dumps({"type": "ITEMS_REQUEST", "request-id": f"at-once-{i}",
                                      "datasources": [self.datasource], "query": q, "from": start, "size": size}))
        got = {f"at-once-{i}": [] for i in range(len(starts))}
        done = set()
        deadline = time.time() + PATIENCE
        while len(done) < len(starts):
            left = deadline - time.time()
            check(left > 0, f"{len(starts) - len(done)} of {len(starts)} searches sent at once did not complete "
                            "within 20 s: serve searches concurrently")
            m = json.loads(await asyncio.wait_for(ws.recv(), left))
            rid = m.get("request-id")
            if m.get("type") == "ITEMS_RECEIVE" and rid in got:
                got[rid].extend(r["id"] for r in m["items"].get("results", []))
            elif m.get("type") == "ERROR" and rid in got:
                raise Failed(f"search {rid} sent at once with others failed: {m['error'].get('message')}")
            elif m.get("type") == "REQUEST_COMPLETED" and rid in got:
                done.add(rid)
        _, _, _, whole = await self.search(ws, "whole", q, 0, size + starts[-1])
        ids = [r["id"] for r in whole]
        for i, start in enumerate(starts):
            check(got[f"at-once-{i}"] == ids[start:start + size],
                  f"search from {start} sent at once with others got other results than alone: "
                  "keep each search's state apart")
        await ws.close()
        return f"{len(starts)} searches at once, each its own {size} results"

    async def check_expand(self):
        ws, _ = await self.client()
        _, errors, _, results = await self.search(ws, "to-expand", self.options.query, 0, 10)
        check(not errors and results, f"no results to expand from: {errors}")
        picked = None
        for r in results:
            for path, value in r["fields"].items():
                if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
                    picked = (path, str(value))
                    break
            if picked:
                break
        check(picked, "no result has a text or number field to expand from")
        others = [f for f in self.fields if f != picked[0]][:3] or [picked[0]]
        messages = await self.ask(ws, {"type": "EXPAND_REQUEST", "request-id": "expand", "datasources": [self.datasource],
                                       "values": [{"field": picked[0], "value": picked[1]}], "fields": others})
        errors = [m for m in messages if m.get("type") == "ERROR"]
        check(not errors, f"expanding {picked[0]}={picked[1]!r} failed: {errors[0]['error'].get('message') if errors else ''}")
        found = [m for m in messages if m.get("type") == "EXPAND_RECEIVE"]
        check(len(found) == 1, f"one EXPAND_RECEIVE expected, got {len(found)}")
        for vertex in found[0].get("vertices", []):
            check(vertex.get("field") in others, f"a value of field {vertex.get('field')!r}, which was not asked for")
            check(isinstance(vertex.get("doc_count"), int) and vertex["doc_count"] >= 1,
                  f"a value without a count of the records holding it: {vertex}")
        await ws.close()
        return (f"{picked[0]}={picked[1]!r} → {len(found[0].get('vertices', []))} values of {others} "
                f"({found[0].get('method')})")

    async def check_live(self):
        query = self.options.live_query
        if not query:
            # Without --live-query the kit cannot tell what the plugin publishes.
            raise Skipped("give --live-query with a query the records the plugin publishes match")
        ws, _ = await self.client()
        await ws.send(json.dumps({"type": "ITEMS_REQUEST", "request-id": "live", "datasources": [self.datasource],
                                  "query": query, "size": 0, "live": True}))
        deadline = time.time() + PATIENCE
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.time())))
            if m.get("request-id") == "live" and m.get("type") == "ERROR":
                raise Failed(f"a live query on {query!r} failed: {m['error'].get('message')}")
            if m.get("request-id") == "live" and m.get("type") == "LIVE_STARTED":
                break
        seen, appended = set(), 0
        deadline = time.time() + self.options.live_wait
        while appended < 2:
            left = deadline - time.time()
            check(left > 0, f"{appended} of the plugin's published records reached the live query {query!r} within "
                            f"{self.options.live_wait} s: publish flat records ({{\"id\", …}}) matching it with PUBLISH "
                            f"(see plugin.log and tributary.log for a refused PUBLISH)")
            try:
                m = json.loads(await asyncio.wait_for(ws.recv(), left))
            except asyncio.TimeoutError:
                continue
            if m.get("request-id") != "live" or m.get("type") != "ITEMS_RECEIVE":
                continue
            items = m["items"]
            check(items.get("append") is True, f"a live query's later batch is not an append: {items}")
            for r in items.get("results", []):
                check(r.get("id") not in seen, f"record {r.get('id')} arrived twice on the live query")
                check(r.get("fields"), f"published record {r.get('id')} arrived without fields")
                seen.add(r.get("id"))
                appended += 1
        await ws.send(json.dumps({"type": "CANCEL_REQUEST", "request-id": "live"}))
        await ws.close()
        return f"{appended} published records appended to the live query {query!r}, each once"

    async def check_fields(self):
        ws, _ = await self.client()
        messages = await self.ask(ws, {"type": "FIELDS_REQUEST", "request-id": "fields", "datasources": [self.datasource]})
        errors = [m for m in messages if m.get("type") == "ERROR"]
        check(not errors, f"FIELDS_REQUEST failed: {errors}")
        fields = [m for m in messages if m.get("type") == "FIELDS_RECEIVE"]
        check(len(fields) == 1, f"one FIELDS_RECEIVE expected, got {len(fields)}")
        listed = fields[0]["fields"]["fields"]
        check(listed, "the field list is empty")
        self.fields = [f.get("path") for f in listed]
        for f in listed:
            check(isinstance(f.get("path"), str) and f["path"], f"a field without a path: {f}")
            check(f.get("type") in KNOWN_TYPES, f"field {f['path']}: unknown type {f.get('type')!r}")
        await ws.close()
        return f"{len(listed)} fields"

    async def check_paging(self):
        self.past_before = self.past_size()
        no_total = self.without_total()
        ws, _ = await self.client()
        q = self.options.query
        _, errors, batches_a, a = await self.search(ws, "page-a", q, 0, 10)
        check(not errors, f"search failed: {errors}")
        check(batches_a, "no ITEMS_RECEIVE for the datasource")
        missing = self.without_total() - no_total
        check(missing == 0, f"{missing:.0f} SEARCH replies came without `total`: every reply carries the number "
                            "of records matching in all (not only those of the page)")
        total = batches_a[0]["total"]
        check(isinstance(total, int) and total >= 0, f"total {total!r} is not a count")
        check(total >= 20, f"query {q!r} matches {total} records; the kit needs at least 20 (use --query)")
        _, _, batches_b, b = await self.search(ws, "page-b", q, 10, 10)
        _, _, _, c = await self.search(ws, "page-c", q, 0, 20)
        for name, batches in (("first", batches_a), ("second", batches_b)):
            check(all(x["total"] == total for x in batches), f"the {name} page's total differs from {total}")
        check(len(a) == 10 and len(b) == 10, f"pages of 10 hold {len(a)} and {len(b)} results")
        ids = lambda rs: [r.get("id") for r in rs]
        for r in c:
            check(isinstance(r.get("id"), str) and r["id"], f"a result without an id: {r}")
            check(isinstance(r.get("fields"), dict), f"result {r.get('id')}: fields must be an object")
        check(len(set(ids(c))) == len(c), "ids repeat within a page")
        check(ids(a) + ids(b) == ids(c), "from 0 size 10 then from 10 size 10 differ from from 0 size 20: "
                                         "results must come in a stable order")
        check(self.past_size() == self.past_before,
              f"the plugin sent {self.past_size() - self.past_before:.0f} results past the `size` a SEARCH asked for "
              f"(tributary dropped them): send at most `size` results, from `from`")
        _, errors, past, rest = await self.search(ws, "past-end", q, total + 5, 10)
        check(not errors and not rest, f"a page past the end must be empty: {errors or rest[:1]}")
        check(past and past[0]["total"] == total, "a page past the end must still carry the total")
        self.total = total
        await ws.close()
        return f"total {total}; pages join up"

    async def check_large_page(self):
        ws, _ = await self.client()
        size = min(self.total, self.options.large)
        before = self.metric("tributary_remote_replies_total", "taken")
        closes = self.closes()
        started = time.time()
        _, errors, _, results = await self.search(ws, "large", self.options.query, 0, size)
        took = time.time() - started
        check(not errors, f"the large page failed: {errors}. {self.why_closed(closes)}")
        check(len(results) == size, f"{size} results asked, {len(results)} arrived")
        check(len({r['id'] for r in results}) == size, "ids repeat in the large page")
        replies = self.metric("tributary_remote_replies_total", "taken") - before
        payload = sum(len(json.dumps(r)) for r in results)
        if payload > 64 * 1024:
            check(replies >= 2, f"{payload} bytes of results came in {replies:.0f} replies")
        await ws.close()
        return f"{size} results ({payload // 1024} KiB) in {replies:.0f} replies, {took * 1000:.0f} ms"

    async def check_bad_query(self):
        ws, _ = await self.client()
        messages, errors, _, _ = await self.search(ws, "bad", self.options.bad_query, 0, 10)
        check(len(errors) == 1, f"one ERROR expected for query {self.options.bad_query!r}, got {len(errors)}")
        error = errors[0]["error"]
        check(error.get("datasource") == self.datasource, f"the ERROR is not about the datasource: {error}")
        check(error.get("code") == "bad_query", f"code {error.get('code')!r}, not bad_query: {error.get('message')}")
        check(messages[-1]["datasources"][self.datasource].get("error"), "REQUEST_COMPLETED does not list the error")
        await ws.close()
        return f"\"{error.get('message')}\""

    async def check_cancel(self):
        ws, _ = await self.client()
        # Canceled once the plugin is at work on it (its first results are
        # in), so the plugin receives CANCEL while it still has replies to send.
        await ws.send(json.dumps({"type": "ITEMS_REQUEST", "request-id": "cancel-me", "datasources": [self.datasource],
                                  "query": self.options.query, "size": min(self.total, self.options.large)}))
        deadline = time.time() + PATIENCE
        ended = None
        while ended is None:
            m = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.time())))
            if m.get("request-id") != "cancel-me":
                continue
            if m.get("type") == "ITEMS_RECEIVE":
                await ws.send(json.dumps({"type": "CANCEL_REQUEST", "request-id": "cancel-me"}))
                canceled_at = time.time()
                break
            if m.get("type") in ("REQUEST_CANCELED", "REQUEST_COMPLETED"):
                ended = m["type"]
        if ended is None:
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.time())))
                if m.get("request-id") == "cancel-me" and m.get("type") in ("REQUEST_CANCELED", "REQUEST_COMPLETED"):
                    break
            # Replies after the cancel are counted as late; they must stop
            # once the plugin has had time to read CANCEL.
            # (Replies already on their way when CANCEL left arrive within moments.)
            await asyncio.sleep(max(0.0, canceled_at + 0.25 - time.time()))
            late = self.metric("tributary_remote_replies_total", "late")
            await asyncio.sleep(1.75)
            more = self.metric("tributary_remote_replies_total", "late") - late
            check(more == 0,
                  f"the plugin ignores CANCEL: {more:.0f} more replies to the canceled search came between "
                  "0.25 s and 2 s after tributary sent CANCEL; stop the search that CANCEL's data.id names")
        else:
            late = 0.0
        _, errors, _, results = await self.search(ws, "after-cancel", self.options.query, 0, 10)
        check(not errors and len(results) == 10, f"the plugin does not serve after a cancel: {errors}")
        await ws.close()
        if ended is not None:
            return f"the search had {ended.lower()} before its first results: nothing to cancel; serving on"
        return f"{m['type']} while the plugin worked; {late:.0f} late replies dropped, then none; serving on"

    async def check_disconnect(self):
        ws, _ = await self.client()
        await ws.send(json.dumps({"type": "ITEMS_REQUEST", "request-id": "cut", "datasources": [self.datasource],
                                  "query": self.options.query, "size": min(self.total, self.options.large)}))
        self.kill_plugin()
        deadline = time.time() + self.options.timeout + PATIENCE
        outcome = None
        while outcome is None:
            m = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.time())))
            if m.get("request-id") == "cut" and m.get("type") == "REQUEST_COMPLETED":
                outcome = m["datasources"][self.datasource]
        await ws.send(json.dumps({"type": "PING", "t": 1}))
        pong = json.loads(await asyncio.wait_for(ws.recv(), PATIENCE))
        check(pong.get("type") == "PONG", f"the connection is not usable after the plugin died: {pong}")
        health = self.health()
        status = health.get("datasources", {}).get(self.datasource, {})
        check(status.get("ok") is False, f"/healthz does not say the datasource is down: {status}")
        await ws.close()
        if outcome.get("error"):
            return f"request ended with \"{outcome['error']}\"; /healthz: {status.get('error')}"
        return "the request had finished before the plugin died; /healthz says it is down"

    async def until_served(self, patience):
        """Waits until /healthz says a service serves the datasource."""
        deadline = time.time() + patience
        while True:
            status = self.health().get("datasources", {}).get(self.datasource, {})
            if status.get("ok") is True:
                return time.time() - (deadline - patience)
            check(time.time() < deadline, f"no service served the datasource within {patience:.0f} s: {status}")
            await asyncio.sleep(0.1)

    async def check_restart(self):
        self.start_plugin()
        waited = await self.until_served(PATIENCE * 2)
        ws, initial = await self.client()
        count = sum(1 for d in initial["state"]["datasources"] if d["id"] == self.datasource)
        check(count == 1, f"the datasource is listed {count} times")
        _, errors, _, results = await self.search(ws, "restarted", self.options.query, 0, 10, patience=PATIENCE + 10)
        check(not errors and len(results) == 10, f"the restarted plugin does not serve: {errors}")
        await ws.close()
        return f"identified again after {waited:.1f} s and served"

    async def check_reconnect(self):
        self.stop_server()
        time.sleep(1.0)
        self.start_server()
        # The plugin's backoff may have grown while tributary was down
        # (at most 10 s between attempts with the Python package).
        deadline = time.time() + PATIENCE * 3
        while True:
            ws, initial = await self.client()
            if any(d["id"] == self.datasource for d in initial["state"]["datasources"]):
                break
            await ws.close()
            check(time.time() < deadline, "the plugin did not come back within 60 s of tributary's restart")
            await asyncio.sleep(0.2)
        _, errors, _, results = await self.search(ws, "reconnected", self.options.query, 0, 10)
        check(not errors and len(results) == 10, f"the plugin does not serve after reconnecting: {errors}")
        await ws.close()
        return "reconnected by itself and serving"

    async def run(self):
        checks = [
            ("identify", self.check_identify),
            ("pings", self.check_pings),
            ("fields", self.check_fields),
            ("paging", self.check_paging),
            ("large-page", self.check_large_page),
            ("concurrent", self.check_concurrent),
            ("expand", self.check_expand),
            ("live", self.check_live),
            ("bad-query", self.check_bad_query),
            ("cancel", self.check_cancel),
            ("disconnect", self.check_disconnect),
            ("restart", self.check_restart),
            ("reconnect", self.check_reconnect),
        ]
        self.start_server()
        for name, run in checks:
            started = time.time()
            try:
                detail = await run()
                self.results.append((name, True, detail))
                print(f"PASS {name:<11} {detail} ({(time.time() - started) * 1000:.0f} ms)", flush=True)
            except Skipped as skipped:
                self.skipped.append(name)
                print(f"SKIP {name:<11} {skipped}", flush=True)
            except (Failed, asyncio.TimeoutError, OSError) as error:
                message = str(error) or type(error).__name__
                self.results.append((name, False, message))
                print(f"FAIL {name:<11} {message}", flush=True)
                if name in ("identify", "paging"):
                    print("     (the checks after it need it; stopping)", flush=True)
                    break
        return all(ok for _, ok, _ in self.results) and len(self.results) + len(self.skipped) == len(checks)

    def close(self, keep_logs):
        self.kill_plugin()
        self.stop_server()
        if keep_logs:
            print(f"logs: {self.folder}", flush=True)
        else:
            shutil.rmtree(self.folder, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description="Checks a tributary datasource plugin through tributary.")
    parser.add_argument("--tributary", default=os.environ.get("CONFORMANCE_TRIBUTARY", "target/release/tributary"),
                        help="the tributary binary (default: $CONFORMANCE_TRIBUTARY or target/release/tributary)")
    parser.add_argument("--datasource", default=None, help="the id the plugin serves (default: the one it announces)")
    parser.add_argument("--query", default="*", help="a query matching at least 20 records (default: *)")
    parser.add_argument("--bad-query", default="(unclosed", help="a query the plugin must refuse as bad_query")
    parser.add_argument("--large", type=int, default=3000, help="the large page's size (default: 3000)")
    parser.add_argument("--live-query", default=None,
                        help="a query the records the plugin publishes match: checks they reach a live query")
    parser.add_argument("--live-wait", type=int, default=30,
                        help="how long to wait for two published records (seconds, default 30)")
    parser.add_argument("--timeout", type=int, default=10, help="tributary's datasource timeout, seconds")
    parser.add_argument("plugin", nargs=argparse.REMAINDER, help="-- then the plugin's command")
    options = parser.parse_args()
    if options.plugin[:1] == ["--"]:
        options.plugin = options.plugin[1:]
    if not options.plugin:
        parser.error("give the plugin's command after --")
    kit = Kit(options)
    ok = False
    try:
        ok = asyncio.run(kit.run())
    except Failed as error:
        print(f"FAIL setup      {error}", flush=True)
    finally:
        kit.close(keep_logs=not ok)
    passed = sum(1 for _, ok_, _ in kit.results if ok_)
    skipped = f" ({len(kit.skipped)} skipped: {', '.join(kit.skipped)})" if kit.skipped else ""
    print(f"{passed}/{CHECKS - len(kit.skipped)} checks passed{skipped}", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
