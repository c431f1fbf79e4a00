"""The package against a real tributary: run by tests/plugins.rs with
PLUGIN_TEST_TRIBUTARY set (the binary of the build).

Checks what the conformance kit does not: async results streamed in several
replies, publish() reaching a live query, a wrong token refused (no retry),
an exception in search() answered as `unavailable` with its message, and
health() reported as the datasource's health.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from websockets.asyncio.client import connect  # noqa: E402

from tributary_plugin import Datasource, Field, Page, Refused  # noqa: E402

TOKEN = "python-package-token"


class Numbers(Datasource):
    id = "numbers"
    name = "Numbers"
    fields = [Field("n", "long"), Field("word", "keyword")]

    async def search(self, request):
        if request.query == "boom":
            raise RuntimeError("the backend exploded")

        async def results():
            for n in range(request.from_, min(request.from_ + request.size, 5000)):
                if n % 500 == 0:
                    await asyncio.sleep(0)  # as if reading a backend page by page
                yield {"id": str(n), "fields": {"n": n, "word": "x" * 40}}

        return Page(total=5000, results=results())

    backend_up = False

    def health(self):
        if not self.backend_up:
            return {"ok": False, "message": "the numbers backend does not answer"}
        return {"ok": True, "latency_ms": 42}

    async def expand(self, request):
        # Every number's word is "x" * 40: one value next to any selection.
        selected = request["selected"][0]["value"]
        word = {"field": "word", "value": "x" * 40}
        return {
            "vertices": [dict(word, doc_count=5000, weight=5000)],
            "connections": [{"from": selected, "to": word, "doc_count": 1}],
            "method": "the numbers' own count",
        }


VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "conformance", "vectors")


class Vectors(Datasource):
    """The kit's vector records, searched with the query tributary parsed."""

    id = "vectors_py"
    name = "Vectors in Python"

    def __init__(self):
        super().__init__()
        with open(os.path.join(VECTORS, "records.ndjson"), encoding="utf-8") as source:
            records = [json.loads(line) for line in source if line.strip()]
        self.results = [{"id": r["id"], "fields": {k: v for k, v in r.items() if k != "id"}} for r in records]
        self.fields = []

    def search(self, request):
        # No declared types: typed from the values, as the dynamic mapping does.
        match = request.matcher([])
        hits = [r for r in self.results if match(r["fields"])]
        return Page(total=len(hits), results=hits[request.from_:request.from_ + request.size])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until_completed(ws, rid):
    messages = []
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), 20))
        messages.append(m)
        if m.get("type") == "REQUEST_COMPLETED" and m.get("request-id") == rid:
            return messages


async def main():
    port = free_port()
    folder = tempfile.mkdtemp()
    config = os.path.join(folder, "tributary.toml")
    with open(config, "w") as out:
        out.write(f'listen = "127.0.0.1:{port}"\n[services.numbers]\ntoken = "{TOKEN}"\ndatasources = ["*"]\n'
                  f'[datasources.vectors]\ntype = "embedded"\npath = "{os.path.abspath(VECTORS)}/records.ndjson"\n'
                  f'[limits]\nmax_messages_per_second = 10000\n')
    server = subprocess.Popen([os.environ["PLUGIN_TEST_TRIBUTARY"], "--config", config],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            assert server.poll() is None, "tributary exited at start"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        url = f"ws://127.0.0.1:{port}/ws/services"

        # A wrong token: refused at once, not retried.
        try:
            await asyncio.wait_for(Numbers().serve(url, "not-the-token"), 10)
            raise AssertionError("a wrong token was accepted")
        except Refused as refused:
            assert "wrong token" in str(refused), refused

        plugin = Numbers()
        serving = asyncio.ensure_future(plugin.serve(url, TOKEN))
        async with connect(f"ws://127.0.0.1:{port}/ws", close_timeout=0.2) as ws:
            listed = json.loads(await ws.recv())
            while "numbers" not in {d["id"] for d in listed["state"]["datasources"]}:
                listed = json.loads(await asyncio.wait_for(ws.recv(), 20))  # DATASOURCES_CHANGED
            await ws.send(json.dumps({"type": "ITEMS_REQUEST", "datasources": ["numbers"], "query": "*",
                                      "from": 100, "size": 2000, "request-id": "big"}))
            messages = await until_completed(ws, "big")
            results = [r for m in messages if m["type"] == "ITEMS_RECEIVE" for r in m["items"]["results"]]
            assert [r["id"] for r in results] == [str(n) for n in range(100, 2100)], len(results)
            assert messages[-1]["datasources"]["numbers"]["total"] == 5000, messages[-1]

            # An exception in search() is the datasource's error, in words.
            await ws.send(json.dumps({"type": "ITEMS_REQUEST", "datasources": ["numbers"], "query": "boom",
                                      "request-id": "boom"}))
            messages = await until_completed(ws, "boom")
            errors = [m for m in messages if m["type"] == "ERROR"]
            assert len(errors) == 1 and "the backend exploded" in errors[0]["error"]["message"], messages

            # expand() answers EXPAND_REQUEST (the plugin declared it).
            await ws.send(json.dumps({"type": "EXPAND_REQUEST", "datasources": ["numbers"], "request-id": "x",
                                      "values": [{"field": "n", "value": "7"}], "fields": ["word"]}))
            messages = await until_completed(ws, "x")
            found = [m for m in messages if m["type"] == "EXPAND_RECEIVE"]
            assert len(found) == 1 and found[0]["method"] == "the numbers' own count", messages
            assert found[0]["vertices"][0]["doc_count"] == 5000, found

            # health() is the datasource's health: its message, then its latency.
            def healthz():
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
                    return json.loads(answer.read())["datasources"]["numbers"]
            found = await asyncio.get_running_loop().run_in_executor(None, healthz)
            assert found == {"ok": False, "error": "the numbers backend does not answer"}, found
            plugin.backend_up = True
            found = await asyncio.get_running_loop().run_in_executor(None, healthz)
            assert found == {"ok": True}, found

            # A Python plugin answers the kit's query vectors as the embedded
            # datasource does, through the server.
            vectors = Vectors()
            serving_vectors = asyncio.ensure_future(vectors.serve(url, TOKEN))
            while True:
                changed = json.loads(await asyncio.wait_for(ws.recv(), 20))
                if changed.get("type") == "DATASOURCES_CHANGED" and \
                        "vectors_py" in {d["id"] for d in changed["state"]["datasources"]}:
                    break
            with open(os.path.join(VECTORS, "queries.json"), encoding="utf-8") as source:
                queries = [v["query"] for v in json.load(source)]
            differ = []
            for i, q in enumerate(queries):
                totals = []
                for datasource in ("vectors_py", "vectors"):
                    rid = f"{datasource}-{i}"
                    await ws.send(json.dumps({"type": "ITEMS_REQUEST", "datasources": [datasource], "query": q,
                                              "size": 0, "request-id": rid}))
                    done = (await until_completed(ws, rid))[-1]
                    totals.append(done["datasources"][datasource].get("total"))
                if totals[0] != totals[1]:
                    differ.append(f"`{q}`: python {totals[0]}, embedded {totals[1]}")
            assert not differ, "\n".join(differ)
            serving_vectors.cancel()

            # publish() reaches a live query.
            await ws.send(json.dumps({"type": "ITEMS_REQUEST", "datasources": ["numbers"], "query": "word:fresh",
                                      "size": 0, "live": True, "request-id": "live"}))
            while json.loads(await asyncio.wait_for(ws.recv(), 20))["type"] != "LIVE_STARTED":
                pass
            answer = await plugin.publish([{"id": "new-1", "n": 1, "word": "fresh"},
                                           {"id": "new-2", "n": 2, "word": "stale"}])
            assert answer["records"] == 2, answer
            append = json.loads(await asyncio.wait_for(ws.recv(), 20))
            assert append["items"]["append"] is True, append
            assert [r["id"] for r in append["items"]["results"]] == ["new-1"], append
        serving.cancel()
        print("OK: async results, errors, publish, refusal, expand, health, vectors")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    asyncio.run(main())
