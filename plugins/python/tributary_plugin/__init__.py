"""Write tributary datasources in Python.

A datasource is a subclass of :class:`Datasource` with an ``id``, a
``name``, its ``fields`` and a ``search`` method. :meth:`Datasource.run`
connects to tributary's services socket (``/ws/services``), identifies with a
service token, and serves searches until stopped, reconnecting with backoff
whenever the connection is lost::

    from tributary_plugin import Datasource, Field, Page, BadQuery

    class Cities(Datasource):
        id = "cities"
        name = "Cities"
        fields = [Field("name", "keyword"), Field("country", "keyword")]

        def search(self, request):
            rows = [{"id": "1", "fields": {"name": "Ghent", "country": "BE"}}]
            if request.query not in ("", "*"):
                raise BadQuery("only * is understood here")
            return Page(total=len(rows), results=rows[request.from_:request.from_ + request.size])

    Cities().run()   # TRIBUTARY_URL and TRIBUTARY_TOKEN from the environment

``search`` may be a plain or an ``async`` method; ``Page.results`` may be a
list, any iterable, or an async iterable (results are streamed to tributary
in replies of at most :data:`REPLY_BYTES` as they come). A search tributary
cancels (the user canceled, or it took too long) has its task cancelled.

The wire is Damon's framing, documented in tributary's ``docs/protocol.md``
("The services socket"); this package is one implementation of it.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any, AsyncIterable, Callable, Dict, Iterable, List, Optional, Union

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

__all__ = [
    "BadQuery",
    "Datasource",
    "DatasourceError",
    "Field",
    "Page",
    "Refused",
    "SearchRequest",
    "Unauthorized",
    "Unavailable",
]

log = logging.getLogger("tributary_plugin")

# Damon's op codes.
EVENT, IDENTIFY, DISCONNECT, PING, PONG, REPLY = range(6)

#: Largest reply this package sends, in bytes: under tributary's default
#: 64 KiB message limit (``limits.max_message_bytes``), with room to spare.
REPLY_BYTES = 48 * 1024
#: Most results in one reply.
REPLY_RESULTS = 500
#: Reconnect backoff: first wait, longest wait (seconds).
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0


@dataclass
class Field:
    """One field of the datasource: a dotted path and a type (``text``,
    ``keyword``, ``long``, ``double``, ``date``, ``boolean``)."""

    path: str
    type: str = "keyword"

    def to_json(self) -> Dict[str, str]:
        return {"path": self.path, "type": self.type}


@dataclass
class SearchRequest:
    """One search tributary asks for: the query as the user typed it, and
    the page ``from_ .. from_ + size``."""

    query: str
    from_: int
    size: int
    #: ``caller`` (the client's token name, or None) and ``timeout_ms``
    #: (how long tributary waits for the answer).
    context: Dict[str, Any]
    #: The event id tributary gave this search.
    id: Any = None
    #: The query as tributary's parser reads it (``{"version": 1, "query":
    #: {…}}``, or ``{"version": 1, "error": …}``; docs/protocol.md); None
    #: from a server that does not send it.
    parsed: Optional[Dict[str, Any]] = None

    def matcher(self, fields: Optional[List["Field"]] = None) -> Callable[[Dict[str, Any]], bool]:
        """A function telling whether a (flat or nested) record matches,
        as tributary's embedded datasource would decide (``fields``: the
        declared fields, for their types). Raises :class:`BadQuery` for a
        query tributary could not parse, and ``query.Unsupported`` (a
        ``BadQuery``) for a construct this package does not evaluate."""
        from . import query

        if self.parsed is None:
            return query.parse(self.query)
        return query.evaluate(self.parsed, fields)


@dataclass
class Page:
    """A search's answer: how many records match in all, and the page's
    results, each ``{"id": …, "fields": {…}}`` (fields may be nested;
    ``"highlight": {path: [fragments]}`` optional)."""

    total: int
    results: Union[Iterable[Dict[str, Any]], AsyncIterable[Dict[str, Any]]] = ()


class DatasourceError(Exception):
    """Why a search could not be answered; its message reaches the user."""

    kind = "unavailable"


class BadQuery(DatasourceError):
    """The query cannot be read or refers to something that does not exist."""

    kind = "bad_query"


class Unavailable(DatasourceError):
    """The backend behind the plugin is unreachable or failed."""

    kind = "unavailable"


class Unauthorized(DatasourceError):
    """The backend refused the plugin's credentials."""

    kind = "unauthorized"


class Refused(Exception):
    """tributary refused to let the plugin serve (a wrong token, a datasource
    id the token may not serve…): retrying would not help."""


class Datasource:
    """Subclass it: set ``id``, ``name`` and ``fields``, write ``search``."""

    #: The datasource id clients use (letters, digits, ``_``, ``-``, ``.``).
    id: str = ""
    #: Its display name (default: the id).
    name: Optional[str] = None
    #: Its fields, sent when identifying and answered to ``FIELDS``.
    fields: List[Field] = []

    def __init__(self) -> None:
        self._connection: Optional[_Connection] = None

    # -- what a plugin writes ------------------------------------------------

    def search(self, request: SearchRequest) -> Page:  # pragma: no cover - abstract
        """Answers one search (plain or ``async``). Raise :class:`BadQuery`,
        :class:`Unavailable` or :class:`Unauthorized` to fail it in words."""
        raise NotImplementedError("a Datasource must implement search()")

    def get_fields(self) -> List[Field]:
        """The fields, when tributary asks (default: ``self.fields``)."""
        return list(self.fields)

    #: Define ``expand(self, request: dict) -> dict`` (plain or ``async``) to
    #: answer expansions with your backend's own counts: ``request`` has
    #: ``selected`` (``[{"value": {"field", "value"}, "fields", "lowercase", "forms"}]``;
    #: ``forms``: the exact values to look for),
    #: ``fields``, ``size``, ``exclude``, ``mode``; return ``{"vertices":
    #: [{"field", "value", "doc_count", "weight"}], "connections": [{"from",
    #: "to", "doc_count"}], "method"}``. Without it, tributary counts
    #: expansions from a sample of ``search`` results.
    expand = None

    #: Define ``health(self)`` (plain or ``async``) to report your backend's
    #: health, as tributary's ``status:`` and ``latency:`` channels and the
    #: UI's dots show it: return ``True`` or ``False``, or ``{"ok": bool,
    #: "message": "why not, in the analyst's terms", "latency_ms": n}``
    #: (``latency_ms`` defaults to how long ``health()`` took); raising
    #: :class:`DatasourceError` says why not. Without it, the datasource is
    #: healthy while the plugin is connected.
    health = None

    # -- what a plugin calls -------------------------------------------------

    async def publish(self, records: List[Dict[str, Any]], timeout: float = 10.0) -> Dict[str, Any]:
        """Publishes new records to the datasource's live queries; returns
        tributary's answer (``{"records": n, …}``). Raises :class:`Unavailable`
        while disconnected, :class:`DatasourceError` if tributary refuses."""
        connection = self._connection
        if connection is None:
            raise Unavailable("not connected to tributary")
        return await connection.request("PUBLISH", {"records": records}, timeout)

    def run(self, url: Optional[str] = None, token: Optional[str] = None) -> None:
        """Serves until interrupted (or refused). ``url`` defaults to
        ``$TRIBUTARY_URL`` (else ``ws://127.0.0.1:8080/ws/services``),
        ``token`` to ``$TRIBUTARY_TOKEN``."""
        logging.basicConfig(level=os.environ.get("TRIBUTARY_LOG", "INFO"))
        try:
            asyncio.run(self.serve(url, token))
        except KeyboardInterrupt:
            pass

    async def serve(self, url: Optional[str] = None, token: Optional[str] = None) -> None:
        """Connects, identifies and serves; reconnects with backoff when the
        connection is lost. Returns only by raising :class:`Refused`."""
        url = url or os.environ.get("TRIBUTARY_URL", "ws://127.0.0.1:8080/ws/services")
        token = token or os.environ.get("TRIBUTARY_TOKEN")
        if not token:
            raise Refused("no service token: set TRIBUTARY_TOKEN (a [services.<name>] token of tributary's config)")
        if not self.id:
            raise Refused("the datasource has no id")
        backoff = BACKOFF_FIRST
        while True:
            try:
                # tributary pings every connection; it answers ours too.
                async with connect(url, open_timeout=10, max_size=None) as ws:
                    connection = _Connection(ws, self)
                    await connection.identify(token)
                    log.info("serving datasource %s at %s", self.id, url)
                    backoff = BACKOFF_FIRST
                    self._connection = connection
                    try:
                        await connection.serve()
                    finally:
                        self._connection = None
                        connection.stop()
            except Refused:
                raise
            except (OSError, ConnectionClosed, InvalidHandshake, asyncio.TimeoutError) as error:
                log.warning("connection to tributary lost (%s); retrying in %.1f s", error, backoff)
            except InvalidURI as error:
                raise Refused(f"invalid TRIBUTARY_URL: {error}") from error
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _declaration(self) -> Dict[str, Any]:
        declaration = {
            "id": self.id,
            "name": self.name or self.id,
            "fields": [f.to_json() for f in self.get_fields()],
        }
        if callable(self.expand):
            declaration["expand"] = True
        if callable(self.health):
            declaration["health"] = True
        return declaration


class _Connection:
    """One connection to tributary: the events it sends, the searches running."""

    def __init__(self, ws: Any, datasource: Datasource) -> None:
        self.ws = ws
        self.datasource = datasource
        self.running: Dict[str, asyncio.Task] = {}
        self.awaiting: Dict[str, asyncio.Future] = {}
        self.ids = itertools.count(1)
        self.early: List[Dict[str, Any]] = []

    async def send(self, message: Dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message, separators=(",", ":")))

    async def identify(self, token: str) -> None:
        await self.send({"id": "identify", "op": IDENTIFY, "data": {"token": token, "datasource": self.datasource._declaration()}})
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            left = deadline - asyncio.get_running_loop().time()
            answer = json.loads(await asyncio.wait_for(self.ws.recv(), max(left, 0.01)))
            if answer.get("op") == DISCONNECT:
                reason = (answer.get("data") or {}).get("reason", "no reason given")
                raise Refused(f"tributary refused the plugin: {reason}")
            if answer.get("op") == REPLY and answer.get("id") == "identify":
                break
            # Anything else before the answer is handled once serving.
            self.early.append(answer)

    async def request(self, event: str, data: Dict[str, Any], timeout: float) -> Dict[str, Any]:
        """Sends an event to tributary and waits for its reply."""
        id = f"p{next(self.ids)}"
        future = asyncio.get_running_loop().create_future()
        self.awaiting[_key(id)] = future
        try:
            await self.send({"id": id, "op": EVENT, "event": event, "data": data})
            return await asyncio.wait_for(future, timeout)
        except ConnectionClosed as closed:
            raise Unavailable(f"the connection to tributary was lost ({closed})") from closed
        except asyncio.TimeoutError as timed_out:
            raise Unavailable(f"tributary did not answer {event} within {timeout:g} s") from timed_out
        finally:
            self.awaiting.pop(_key(id), None)

    async def serve(self) -> None:
        for message in self.early:
            self.handle(message)
        self.early.clear()
        async for text in self.ws:
            try:
                message = json.loads(text)
            except ValueError:
                log.warning("tributary sent a frame that is not JSON: %.200s", text)
                continue
            self.handle(message)

    def handle(self, message: Dict[str, Any]) -> None:
        op, event, id = message.get("op"), message.get("event"), message.get("id")
        data = message.get("data") or {}
        if op == EVENT and event == "SEARCH":
            self.start(id, self.search(id, data))
        elif op == EVENT and event == "FIELDS":
            self.start(id, self.fields(id))
        elif op == EVENT and event == "EXPAND":
            self.start(id, self.expand(id, data))
        elif op == EVENT and event == "HEALTH":
            self.start(id, self.check_health(id))
        elif op == EVENT and event == "CANCEL":
            task = self.running.pop(_key(data.get("id")), None)
            if task is not None:
                task.cancel()
        elif op == EVENT and event == "ERROR":
            future = self.awaiting.get(_key(id)) if id is not None else None
            error = DatasourceError(data.get("message", "tributary refused the event"))
            if future is not None and not future.done():
                future.set_exception(error)
            else:
                log.warning("tributary: %s (%s)", data.get("message"), data.get("code"))
        elif op == REPLY:
            future = self.awaiting.get(_key(id))
            if future is not None and not future.done():
                future.set_result(data)
        elif op == PING:
            asyncio.ensure_future(self.send({"id": id, "op": PONG}))
        elif op == DISCONNECT:
            log.warning("tributary disconnects: %s", data.get("reason"))

    def start(self, id: Any, work: Any) -> None:
        key = _key(id)
        task = asyncio.ensure_future(work)
        self.running[key] = task
        task.add_done_callback(lambda _: self.running.pop(key, None))

    def stop(self) -> None:
        for task in self.running.values():
            task.cancel()
        self.running.clear()
        for future in self.awaiting.values():
            if not future.done():
                future.set_exception(Unavailable("the connection to tributary was lost"))

    async def reply(self, id: Any, data: Dict[str, Any]) -> None:
        await self.send({"id": id, "op": REPLY, "data": data})

    async def fail(self, id: Any, error: Exception) -> None:
        if isinstance(error, DatasourceError):
            kind, message = error.kind, str(error)
        else:
            # The analyst sees what failed, in their terms; the plugin's log
            # has the exception.
            log.exception("answering tributary failed", exc_info=error)
            plugin = self.datasource.name or self.datasource.id
            kind, message = "unavailable", (
                f"the {plugin} plugin failed: {error}"
                if str(error)
                else f"the {plugin} plugin failed (its log has the details)"
            )
        await self.reply(id, {"error": {"kind": kind, "message": message}})

    async def fields(self, id: Any) -> None:
        try:
            fields = await _call(self.datasource.get_fields)
            await self.reply(id, {"fields": [f.to_json() for f in fields]})
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - every failure is answered
            await self.fail(id, error)

    async def expand(self, id: Any, data: Dict[str, Any]) -> None:
        try:
            if not callable(self.datasource.expand):
                raise Unavailable("this plugin does not answer EXPAND")
            found = await _call(self.datasource.expand, data)
            if not isinstance(found, dict):
                raise TypeError(f"expand() must return a dict, not {type(found).__name__}")
            await self.reply(id, found)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - every failure is answered
            await self.fail(id, error)

    async def check_health(self, id: Any) -> None:
        try:
            if not callable(self.datasource.health):
                raise Unavailable("this plugin does not answer HEALTH")
            started = time.monotonic()
            verdict = await _call(self.datasource.health)
            took_ms = round((time.monotonic() - started) * 1000)
            if isinstance(verdict, bool):
                verdict = {"ok": verdict}
            if not isinstance(verdict, dict) or not isinstance(verdict.get("ok"), bool):
                raise TypeError('health() must return True, False or {"ok": True or False, ...}')
            verdict.setdefault("latency_ms", took_ms)
            await self.reply(id, verdict)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - every failure is answered
            await self.fail(id, error)

    async def search(self, id: Any, data: Dict[str, Any]) -> None:
        try:
            request = SearchRequest(
                query=str(data.get("query", "")),
                from_=int(data.get("from", 0)),
                size=int(data.get("size", 20)),
                context=data.get("context") or {},
                id=id,
                parsed=data.get("parsed"),
            )
            page = await _call(self.datasource.search, request)
            if not isinstance(page, Page):
                raise TypeError(f"search() must return a Page, not {type(page).__name__}")
            await self.stream(id, page, request.size)
        except asyncio.CancelledError:
            # tributary canceled it: it wants no answer.
            raise
        except Exception as error:  # noqa: BLE001 - every failure is answered
            await self.fail(id, error)

    async def stream(self, id: Any, page: Page, size: int) -> None:
        """Sends the page in replies of at most REPLY_BYTES / REPLY_RESULTS."""
        head = '{"id":%s,"op":%d,"data":{"total":%d,"results":[' % (json.dumps(id), REPLY, int(page.total))
        chunk: List[str] = []
        chunk_bytes = 0
        sent = 0
        async for result in _each(page.results):
            if sent >= size:
                break
            text = json.dumps(result, separators=(",", ":"))
            if len(text) + len(head) + 32 > REPLY_BYTES:
                raise Unavailable(f"result {result.get('id')!r} is {len(text)} bytes: more than one reply may carry")
            if chunk and (chunk_bytes + len(text) + len(head) + 32 > REPLY_BYTES or len(chunk) >= REPLY_RESULTS):
                await self.ws.send(head + ",".join(chunk) + '],"done":false}}')
                chunk, chunk_bytes = [], 0
            chunk.append(text)
            chunk_bytes += len(text) + 1
            sent += 1
        await self.ws.send(head + ",".join(chunk) + '],"done":true}}')


def _key(id: Any) -> str:
    """Ids compared as tributary does: by their JSON text."""
    return json.dumps(id)


async def _call(function: Any, *args: Any) -> Any:
    """Calls a plugin's method: awaited if async, else in a thread."""
    if inspect.iscoroutinefunction(function):
        return await function(*args)
    result = await asyncio.to_thread(function, *args)
    if inspect.isawaitable(result):
        return await result
    return result


async def _each(results: Any):
    if hasattr(results, "__aiter__"):
        async for result in results:
            yield result
    else:
        for result in results:
            yield result
