#!/usr/bin/env python3
"""A plugin with one deliberate fault, to see the conformance kit name it.

    python3 plugins/conformance/conformance.py -- \\
        python3 plugins/conformance/faulty_plugin.py --fault ignore-cancel

Serves 5,000 numbered records with the Python package, streamed in replies
of 100, 50 ms apart, as a plugin reading its backend page by
page would. With ``--fault``:

  ignore-cancel   goes on sending a canceled search's replies
  oversize        sends 5 results more than each search's ``size``
  ignore-pings    never answers tributary's websocket pings
  no-total        sends replies without ``total``
  bad-publish     publishes its new records in a shape tributary refuses

Without a fault (and with ``bad-publish``) it publishes a new record
(``parity:fresh``) every half second, for the kit's ``--live-query
parity:fresh``; with the other faults it stays idle between searches (a
connection that sends anything is not closed for missed pings).
  none            no fault: passes the kit
"""

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import tributary_plugin  # noqa: E402
from tributary_plugin import Datasource, Field, Page  # noqa: E402

RECORDS = 5000


class Numbers(Datasource):
    id = "numbers"
    name = "Numbers"
    fields = [Field("n", "long"), Field("parity", "keyword")]

    async def search(self, request):
        if request.query.startswith("("):
            raise tributary_plugin.BadQuery(f"cannot parse query {request.query!r}: missing closing parenthesis")

        async def results():
            for n in range(request.from_, RECORDS):
                if n % 100 == 0:
                    await asyncio.sleep(0.05)  # the next page of the backend
                yield {"id": f"{n:05d}", "fields": {"n": n, "parity": "even" if n % 2 == 0 else "odd"}}

        return Page(total=RECORDS, results=results())


def with_fault(fault):
    connection = tributary_plugin._Connection
    if fault == "ignore-cancel":
        handle = connection.handle

        def ignoring_cancel(self, message):
            if message.get("event") != "CANCEL":
                handle(self, message)

        connection.handle = ignoring_cancel
    elif fault == "oversize":
        stream = connection.stream

        async def oversize(self, id, page, size):
            await stream(self, id, page, size + 5)

        connection.stream = oversize
    elif fault == "no-total":
        import json

        async def without_total(self, id, page, size):
            chunk = []
            async for result in tributary_plugin._each(page.results):
                if len(chunk) == size:
                    break
                chunk.append(result)
            for start in range(0, max(len(chunk), 1), 100):
                done = start + 100 >= len(chunk)
                await self.ws.send(json.dumps({"id": id, "op": 5, "data": {
                    "results": chunk[start:start + 100], "done": done}}))

        connection.stream = without_total
    elif fault == "ignore-pings":
        from websockets.frames import Opcode
        from websockets.protocol import Protocol

        send_frame = Protocol.send_frame

        def no_pong(self, frame):
            if frame.opcode != Opcode.PONG:
                send_frame(self, frame)

        Protocol.send_frame = no_pong


async def publishing(numbers, fault):
    """Serves, and publishes a new record every half second."""
    serving = asyncio.ensure_future(numbers.serve())
    k = 0
    while not serving.done():
        await asyncio.sleep(0.5)
        if fault not in ("none", "bad-publish"):
            continue
        k += 1
        record = {"id": f"new-{k}", "n": RECORDS + k, "parity": "fresh"}
        try:
            # The fault: a list where tributary takes objects.
            await numbers.publish([list(record.items())] if fault == "bad-publish" else [record])
        except tributary_plugin.DatasourceError as error:
            print(f"publish refused: {error}", file=sys.stderr, flush=True)
    await serving


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--fault", choices=["none", "ignore-cancel", "oversize", "ignore-pings", "no-total", "bad-publish"], default="none")
    fault = parser.parse_args().fault
    with_fault(fault)
    try:
        asyncio.run(publishing(Numbers(), fault))
    except KeyboardInterrupt:
        pass
