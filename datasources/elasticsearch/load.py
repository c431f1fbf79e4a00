#!/usr/bin/env python3
"""Loads the demo datasets into Elasticsearch: one index per dataset, created
with datasources/demo/<name>.mapping.json (the mapping the embedded
`embedded` datasource indexes with too), then bulk-loaded from
datasources/demo/<name>.ndjson with each record's `id` as `_id`.

    python3 load.py --url http://localhost:9200 [--prefix demo-] [--replace] tweets emails

Standard library only, so it runs in a bare python image. Idempotent: an index
that already holds every record is left alone; --replace rebuilds it.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "demo"
BATCH = 1000


def call(url, method, path, body=None, content_type="application/json"):
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw)
        except ValueError:
            return error.code, raw.decode(errors="replace")


def wait_for(url, seconds):
    deadline = time.time() + seconds
    while True:
        try:
            status, _ = call(url, "GET", "/")
            if status == 200:
                return
        except (urllib.error.URLError, OSError):
            pass
        if time.time() > deadline:
            sys.exit(f"Elasticsearch at {url} did not come up within {seconds} s")
        time.sleep(2)


def load(url, name, index, replace):
    records = [json.loads(line) for line in (FIXTURES / f"{name}.ndjson").open() if line.strip()]
    status, _ = call(url, "GET", f"/{index}/_count")
    if status == 200 and not replace:
        _, count = call(url, "GET", f"/{index}/_count")
        if count.get("count") == len(records):
            print(f"{index}: already holds {len(records)} records")
            return
    if status == 200:
        call(url, "DELETE", f"/{index}")
    mapping = (FIXTURES / f"{name}.mapping.json").read_text()
    status, body = call(url, "PUT", f"/{index}", mapping)
    if status != 200:
        sys.exit(f"{index}: cannot create the index: {status} {body}")
    for start in range(0, len(records), BATCH):
        lines = []
        for record in records[start:start + BATCH]:
            lines.append(json.dumps({"index": {"_index": index, "_id": str(record["id"])}}))
            lines.append(json.dumps(record))
        status, body = call(url, "POST", "/_bulk", "\n".join(lines) + "\n", "application/x-ndjson")
        if status != 200 or body.get("errors"):
            failed = next((i for i in body.get("items", []) if i["index"].get("error")), body) if isinstance(body, dict) else body
            sys.exit(f"{index}: bulk load failed: {status} {failed}")
    call(url, "POST", f"/{index}/_refresh")
    print(f"{index}: loaded {len(records)} records")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://localhost:9200")
    parser.add_argument("--prefix", default="demo-")
    parser.add_argument("--replace", action="store_true")
    parser.add_argument("--wait", type=int, default=120, help="seconds to wait for Elasticsearch")
    parser.add_argument("datasets", nargs="*", default=["tweets", "emails"])
    args = parser.parse_args()
    wait_for(args.url, args.wait)
    for name in args.datasets:
        load(args.url, name, args.prefix + name, args.replace)


if __name__ == "__main__":
    main()
