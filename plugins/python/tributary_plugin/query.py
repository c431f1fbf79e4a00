"""A small part of tributary's query language, for plugins over records in
memory (a CSV file, an API's list): terms, ``field:value``, quoted phrases,
``*`` wildcards, ``+``/``-``, ``AND``/``OR``/``NOT`` and parentheses, combined
as Lucene combines them (without operators a clause is optional: any may
match). Matching is case-insensitive on words (letters and digits).

    >>> match = parse('team:red AND "customer 2"')
    >>> match({"name": "customer 2", "team": "Red"})
    True
    >>> match({"name": "customer 3", "team": "red"})
    False
    >>> parse("(a b")
    Traceback (most recent call last):
    ...
    tributary_plugin.BadQuery: cannot parse query "(a b": missing closing parenthesis at character 4

Ranges, fuzzy and regular-expression queries are refused with
:class:`~tributary_plugin.BadQuery`: a plugin that needs them passes the
query to its backend instead.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import BadQuery

Record = Dict[str, Any]
Matcher = Callable[[Record], bool]

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SPECIAL = set('()"+-:')


def words(value: Any) -> List[str]:
    """The lowercased words of a value (lists: of each element)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [w for v in value for w in words(v)]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    return _WORD.findall(str(value).lower())


def flatten(record: Record, prefix: str = "") -> Record:
    """Nested objects as dotted paths, as tributary shows fields."""
    flat: Record = {}
    for key, value in record.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def parse(query: str) -> Matcher:
    """Parses ``query``; returns a function telling whether a (flat or
    nested) record matches. Raises :class:`BadQuery` in words, with the
    character position, for what it cannot read."""
    parser = _Parser(query)
    matcher = parser.group(top=True)
    return lambda record: matcher(flatten(record))


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._lex(text)
        self.at = 0

    def fail(self, message: str, position: int) -> BadQuery:
        return BadQuery(f'cannot parse query "{self.text}": {message} at character {position}')

    def _lex(self, text: str) -> List[Tuple[str, str, int]]:
        tokens: List[Tuple[str, str, int]] = []
        i = 0
        while i < len(text):
            c = text[i]
            if c.isspace():
                i += 1
            elif c == '"':
                end = text.find('"', i + 1)
                if end < 0:
                    raise self.fail("missing closing quote", len(text))
                tokens.append(("phrase", text[i + 1 : end], i))
                i = end + 1
            elif c in "()+-:":
                tokens.append((c, c, i))
                i += 1
            else:
                start = i
                while i < len(text) and not text[i].isspace() and text[i] not in _SPECIAL:
                    i += 1
                word = text[start:i]
                if word in ("AND", "OR", "NOT", "&&", "||"):
                    tokens.append(({"&&": "AND", "||": "OR"}.get(word, word), word, start))
                elif word[:1] in "[{<>" or any(ch in word for ch in "~/^") or word == "_exists_":
                    # Refused, never read as a word: `amount:>49000` would silently match nothing.
                    raise self.fail(f"`{word}`: ranges, `_exists_`, fuzzy, boosts and regular expressions are "
                                    "not supported here (use request.matcher())", start)
                else:
                    tokens.append(("word", word, start))
        return tokens

    def peek(self) -> Optional[Tuple[str, str, int]]:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> Tuple[str, str, int]:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def group(self, top: bool) -> Matcher:
        must: List[Matcher] = []
        must_not: List[Matcher] = []
        should: List[Matcher] = []
        clauses: List[Tuple[str, Matcher]] = []  # (occur, matcher)
        conjunction: Optional[str] = None
        while True:
            token = self.peek()
            if token is None:
                if not top:
                    raise self.fail("missing closing parenthesis", len(self.text))
                break
            if token[0] == ")":
                if top:
                    raise self.fail("unexpected `)`", token[2])
                self.take()
                break
            if token[0] in ("AND", "OR"):
                if not clauses:
                    raise self.fail(f"`{token[1]}` needs a clause before it", token[2])
                self.take()
                conjunction = token[0]
                if conjunction == "AND":
                    # Lucene: `a AND b` makes a required too.
                    occur, matcher = clauses[-1]
                    if occur == "should":
                        clauses[-1] = ("must", matcher)
                if self.peek() is None or self.peek()[0] in (")", "AND", "OR"):
                    raise self.fail(f"`{token[1]}` needs a clause after it", token[2])
                continue
            occur = "should"
            if token[0] in ("+", "-", "NOT"):
                self.take()
                occur = {"+": "must", "-": "must_not", "NOT": "must_not"}[token[0]]
                if self.peek() is None:
                    raise self.fail(f"`{token[1]}` needs a clause after it", token[2])
            elif conjunction == "AND":
                occur = "must"
            matcher = self.clause()
            clauses.append((occur, matcher))
            conjunction = None
        for occur, matcher in clauses:
            {"must": must, "must_not": must_not, "should": should}[occur].append(matcher)
        if not clauses:
            # An empty query (or `()`) matches every record.
            return lambda record: True
        return _combined(must, should, must_not)

    def clause(self) -> Matcher:
        token = self.take()
        kind, text, position = token
        if kind == "(":
            return self.group(top=False)
        if kind == "phrase":
            return _phrase(None, text)
        if kind != "word":
            raise self.fail(f"unexpected `{text}`", position)
        following = self.peek()
        if following is not None and following[0] == ":":
            self.take()
            value = self.peek()
            if value is None:
                raise self.fail(f"`{text}:` needs a value", following[2])
            self.take()
            if value[0] == "phrase":
                return _phrase(text, value[1])
            if value[0] == "(":
                raise self.fail("field groups `field:(a b)` are not supported here", value[2])
            if value[0] != "word":
                raise self.fail(f"unexpected `{value[1]}`", value[2])
            return _term(text, value[1])
        return _term(None, text)


def _combined(must: List[Matcher], should: List[Matcher], must_not: List[Matcher]) -> Matcher:
    """Clauses combined as Lucene combines them: no ``must_not``, every
    ``must``; without a ``must``, one ``should`` (optional clauses only rank
    beside required ones; a group of exclusions alone matches the rest)."""

    def matches(record: Record) -> bool:
        if any(m(record) for m in must_not):
            return False
        if must:
            return all(m(record) for m in must)
        return not should or any(m(record) for m in should)

    return matches


def _fields(record: Record, field: Optional[str]) -> List[Any]:
    if field is None:
        return list(record.values())
    if "*" in field:
        return [v for k, v in record.items() if fnmatch.fnmatchcase(k, field)]
    return [record[field]] if field in record else []


def _term(field: Optional[str], value: str) -> Matcher:
    if value == "*":
        if field is None:
            return lambda record: True
        return lambda record: any(v not in (None, "", []) for v in _fields(record, field))
    wanted = value.lower()
    if "*" in wanted or "?" in wanted:
        return lambda record: any(
            fnmatch.fnmatchcase(w, wanted) for v in _fields(record, field) for w in words(v) + [str(v).lower()]
        )
    terms = words(wanted)
    if len(terms) != 1:
        # `user@example.org` reads as the phrase of its words, as analysers do.
        return _phrase(field, value)
    return lambda record: any(terms[0] in words(v) for v in _fields(record, field))


def _phrase(field: Optional[str], text: str) -> Matcher:
    wanted = words(text)
    if not wanted:
        return lambda record: False

    def matches(record: Record) -> bool:
        for value in _fields(record, field):
            have = words(value)
            for i in range(len(have) - len(wanted) + 1):
                if have[i : i + len(wanted)] == wanted:
                    return True
        return False

    return matches


# -- the parsed query tributary sends with every SEARCH ---------------------
#
# ``request.parsed`` is the query as tributary's own parser reads it
# (docs/protocol.md, "The parsed query"). :func:`evaluate` matches records
# in memory against it as tributary's embedded datasource does, for the
# constructs it can evaluate exactly; any other construct is refused with
# :class:`Unsupported`, naming it: never a silently different answer.

import datetime as _datetime
import decimal as _decimal
import struct as _struct

TREE_VERSION = 1

# A word as the standard analyzer makes it, for scripts written with spaces
# (Unicode's word boundaries): letters, digits and ``_``, joined across
# ``. ' : ·`` between letters and ``. ' , ;`` between digits.
_STANDARD_WORD = re.compile(
    r"(?:[^\W_]|_|(?<=[^\W\d_])[:·'’.](?=[^\W\d_])|(?<=\d)[,;.'’](?=\d))+"
)
_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?"
)


class Unsupported(BadQuery):
    """A construct this package does not evaluate exactly (tributary's
    answer would differ): the search is refused, naming it."""


def analyze(text: str) -> List[str]:
    """The words of a text as tributary's standard analyzer makes them:
    split at word boundaries, lowercased letter by letter (``Σ`` is ``σ``,
    ``İ`` is ``i``)."""
    return [_lower(w) for w in _STANDARD_WORD.findall(text)]


def _lower(text: str) -> str:
    return "".join(c.lower()[0] for c in text)


def evaluate(parsed: Dict[str, Any], fields: Optional[List[Any]] = None) -> Matcher:
    """A matcher for ``parsed`` (``request.parsed``) over (flat or nested)
    records. ``fields``: the datasource's :class:`~tributary_plugin.Field`
    list, which gives each field's type (others are typed by their value:
    strings ``text`` with a ``.keyword``, numbers, booleans). Raises
    :class:`BadQuery` for a query tributary could not parse and
    :class:`Unsupported` for a construct evaluated only by tributary."""
    if "error" in parsed:
        raise BadQuery(parsed["error"])
    if parsed.get("version") != TREE_VERSION:
        raise Unsupported(f"unsupported: the query tree's version {parsed.get('version')!r} (this package reads {TREE_VERSION})")
    types = {f.path: f.type for f in fields or []}
    compiled = _Evaluator(types).node(parsed["query"])
    if compiled is None:
        return lambda record: False
    return lambda record: compiled(flatten(record))


class _Evaluator:
    def __init__(self, types: Dict[str, str]) -> None:
        self.types = types

    def node(self, node: Dict[str, Any]) -> Optional[Matcher]:
        kind = node["type"]
        if kind == "all":
            return lambda record: True
        if kind == "boost":
            return self.node(node["query"])
        if kind == "bool":
            return self.bool(node["clauses"])
        if kind == "exists":
            return self.exists(node["field"])
        if kind == "regex":
            raise Unsupported(f"unsupported: regular expressions (/{node['pattern']}/)")
        if kind == "fuzzy":
            if node["edits"] != 0:
                raise Unsupported(f"unsupported: fuzzy terms ({node['text']}~{node['edits']})")
            return self.per_field(node["field"], lambda path, t: self.term(path, t, node["text"], None))
        if kind == "term":
            return self.per_field(node["field"], lambda path, t: self.term(path, t, node["text"], None))
        if kind == "phrase":
            return self.per_field(node["field"], lambda path, t: self.term(path, t, node["text"], node["slop"]))
        if kind in ("prefix", "wildcard"):
            pattern = _wildcard(node["pattern"]) if kind == "wildcard" else re.escape(node["text"]) + ".*"
            return self.per_field(node["field"], lambda path, t: self.pattern(path, t, pattern))
        if kind == "range":
            return self.per_field(node["field"], lambda path, t: self.range(path, t, node))
        raise Unsupported(f"unsupported: query nodes of type {kind!r}")

    def bool(self, clauses: List[Dict[str, Any]]) -> Optional[Matcher]:
        must, should, must_not = [], [], []
        for clause in clauses:
            matcher = self.node(clause["query"])
            if matcher is None:
                continue  # nothing to search for: the clause is dropped, as Lucene does
            {"must": must, "should": should, "must_not": must_not}[clause["occur"]].append(matcher)
        if not (must or should or must_not):
            return None
        return _combined(must, should, must_not)

    # -- fields ------------------------------------------------------------

    def typed_fields(self, record: Record, field: Optional[str]) -> List[Tuple[str, str, List[Any]]]:
        """(path, type, values) of the fields a leaf looks at in a record."""
        out = []
        for path, value in record.items():
            values = [v for v in (value if isinstance(value, list) else [value]) if v is not None]
            kinds = [self.type_of(path, values)]
            if kinds[0] == "text" and path not in self.types:
                kinds.append("keyword")  # the `.keyword` of a dynamically mapped string
            for kind in kinds:
                name = path + ".keyword" if kind == "keyword" and len(kinds) == 2 else path
                if field is None or field == "*" or field == name or ("*" in field and fnmatch.fnmatchcase(name, field)):
                    if field is None and name.endswith(".keyword") and len(kinds) == 2:
                        continue  # multi-fields are not in the default field
                    out.append((name, kind, values))
        return out

    def type_of(self, path: str, values: List[Any]) -> str:
        if path in self.types:
            return self.types[path]
        first = values[0] if values else None
        if isinstance(first, bool):
            return "boolean"
        if isinstance(first, int):
            return "long"
        if isinstance(first, float):
            return "float"
        if isinstance(first, str) and _DATE.fullmatch(first) and not first.isdigit() or (isinstance(first, str) and re.fullmatch(r"\d{4}", first)):
            return "date"
        return "text"

    def per_field(self, field: Optional[str], leaf: Callable[[str, str], Optional[Callable[[List[Any]], bool]]]) -> Optional[Matcher]:
        # A leaf's test per field type is made once per (path, type).
        cache: Dict[Tuple[str, str], Optional[Callable[[List[Any]], bool]]] = {}

        def test(path: str, kind: str) -> Optional[Callable[[List[Any]], bool]]:
            key = (path, kind)
            if key not in cache:
                cache[key] = leaf(path, kind)
            return cache[key]

        def matches(record: Record) -> bool:
            for path, kind, values in self.typed_fields(record, field):
                check = test(path, kind)
                if check is not None and check(values):
                    return True
            return False

        return matches

    def exists(self, field: str) -> Matcher:
        def matches(record: Record) -> bool:
            for path, value in record.items():
                names = [path, path + ".keyword"]
                hit = any(n == field or fnmatch.fnmatchcase(n, field) or n.startswith(field + ".") for n in names)
                if hit and value not in (None, [], ""):
                    return True
            return False

        return matches

    # -- leaves ------------------------------------------------------------

    def term(self, path: str, kind: str, text: str, slop: Optional[int]):
        if kind == "text":
            wanted = analyze(text)
            if not wanted:
                return None
            if slop is None or len(wanted) == 1:
                return lambda values: any(w in analyze(str(v)) for v in values for w in wanted) if slop is None else \
                    any(wanted[0] in analyze(str(v)) for v in values)
            if slop < 0:
                return lambda values: False
            if slop > 0:
                raise Unsupported(f'unsupported: sloppy phrases ("{text}"~{slop})')
            n = len(wanted)
            return lambda values: any(
                words[i:i + n] == wanted for v in values for words in [analyze(str(v))] for i in range(len(words) - n + 1)
            )
        if kind == "keyword":
            return lambda values: any(str(v) == text for v in values)
        if kind in ("long", "integer", "short", "byte"):
            number = _whole(text)
            return lambda values: number is not None and any(_as_number(v) == number for v in values)
        if kind in ("double", "float"):
            number = _decimal_value(text, kind)
            return lambda values: number is not None and any(_decimal_of(v, kind) == number for v in values)
        if kind == "boolean":
            if text not in ("true", "false"):
                return lambda values: False
            return lambda values: any(v is (text == "true") for v in values)
        if kind == "date":
            span = _date_span(text)
            return lambda values: any(_in_span(_date_ms(v), span) for v in values)
        return lambda values: False

    def pattern(self, path: str, kind: str, pattern: str):
        if kind == "text":
            compiled = re.compile(_lower(pattern), re.S)
            return lambda values: any(compiled.fullmatch(w) for v in values for w in analyze(str(v)))
        if kind == "keyword":
            compiled = re.compile(pattern, re.S)
            return lambda values: any(compiled.fullmatch(str(v)) for v in values)
        return lambda values: False

    def range(self, path: str, kind: str, node: Dict[str, Any]):
        lower, upper = node["lower"], node["upper"]
        low_in, high_in = node["include_lower"], node["include_upper"]
        if kind in ("long", "integer", "short", "byte", "double", "float"):
            try:
                low = _decimal.Decimal(lower) if lower is not None else None
                high = _decimal.Decimal(upper) if upper is not None else None
            except _decimal.InvalidOperation:
                return lambda values: False
            if (lower is not None and lower.strip() != lower) or (upper is not None and upper.strip() != upper):
                return lambda values: False
            if kind in ("double", "float"):
                low = _decimal.Decimal(_decimal_value(lower, kind)) if lower is not None else None
                high = _decimal.Decimal(_decimal_value(upper, kind)) if upper is not None else None

            def number_in(values):
                for v in values:
                    x = _as_number(v) if kind not in ("double", "float") else _decimal_of(v, kind)
                    if x is None:
                        continue
                    if _between(_decimal.Decimal(x), low, high, low_in, high_in):
                        return True
                return False

            return number_in
        if kind == "date":
            low = _date_span(lower)[0 if low_in else 1] if lower is not None else None
            high = _date_span(upper)[1 if high_in else 0] if upper is not None else None
            if (lower is not None and low is None) or (upper is not None and high is None):
                return lambda values: False

            def date_in(values):
                for v in values:
                    ms = _date_ms(v)
                    if ms is None:
                        continue
                    if low is not None and (ms < low if low_in else ms <= low):
                        continue
                    if high is not None and (ms > high if high_in else ms >= high):
                        continue
                    return True
                return False

            return date_in
        if kind in ("text", "keyword"):
            norm = _lower if kind == "text" else (lambda s: s)
            low = norm(lower).encode() if lower is not None else None
            high = norm(upper).encode() if upper is not None else None

            def bytes_in(values):
                terms = [w.encode() for v in values for w in (analyze(str(v)) if kind == "text" else [str(v)])]
                return any(_between(t, low, high, low_in, high_in) for t in terms)

            return bytes_in
        if kind == "boolean":
            raise Unsupported("unsupported: ranges on booleans")
        return lambda values: False


def _between(x: Any, low: Any, high: Any, low_in: bool, high_in: bool) -> bool:
    """Is ``x`` within the bounds (``None``: open)?"""
    if low is not None and (x < low or (x == low and not low_in)):
        return False
    return not (high is not None and (x > high or (x == high and not high_in)))


def _wildcard(pattern: str) -> str:
    out, escaped = [], False
    for c in pattern:
        if escaped:
            out.append(re.escape(c))
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        else:
            out.append(re.escape(c))
    return "".join(out)


def _as_number(value: Any) -> Optional[_decimal.Decimal]:
    if isinstance(value, bool):
        return None
    try:
        return _decimal.Decimal(str(value))
    except _decimal.InvalidOperation:
        return None


def _whole(text: str) -> Optional[_decimal.Decimal]:
    """A query's whole number as Elasticsearch reads it: no spaces, ``1e2``
    is 100, a decimal matches nothing."""
    if text.strip() != text or not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        return None
    value = _decimal.Decimal(text)
    if value != value.to_integral_value() or abs(value) > 2**63:
        return None
    return value


def _decimal_value(text: str, kind: str) -> Optional[float]:
    stripped = text.strip()
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[fFdD]?", stripped):
        return None
    value = float(stripped.rstrip("fFdD"))
    if value in (float("inf"), float("-inf")):
        return None
    return _struct.unpack("f", _struct.pack("f", value))[0] if kind == "float" else value


def _decimal_of(value: Any, kind: str) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return _struct.unpack("f", _struct.pack("f", value))[0] if kind == "float" else value


def _date_ms(value: Any) -> Optional[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        span = _date_span(value)
        return span[0] if span else None
    return None


def _date_span(text: str) -> Optional[Tuple[int, int]]:
    """The first and last millisecond a date written as Elasticsearch's
    ``strict_date_optional_time`` (or epoch milliseconds) covers; date
    math is refused."""
    if text.startswith("now") or "||" in text:
        raise Unsupported(f"unsupported: date math ({text})")
    if re.fullmatch(r"-?\d+", text) and len(text.lstrip("-")) != 4:
        return (int(text), int(text))
    m = _DATE.fullmatch(text)
    if not m:
        return None
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        tz = _datetime.timezone.utc
        if zone and zone != "Z":
            digits = zone[1:].replace(":", "")
            offset = _datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
            tz = _datetime.timezone(offset if zone[0] == "+" else -offset)
        start = _datetime.datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                                   int(second or 0), int((fraction or "0").ljust(6, "0")[:6]), tzinfo=tz)
    except ValueError:
        return None
    first = int(start.timestamp() * 1000)
    if fraction is not None and len(fraction) >= 3:
        return (first, first)
    if second is not None:
        step = _datetime.timedelta(seconds=1)
    elif minute is not None:
        step = _datetime.timedelta(minutes=1)
    elif hour is not None:
        step = _datetime.timedelta(hours=1)
    elif day is not None:
        step = _datetime.timedelta(days=1)
    elif month is not None:
        nxt = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
        return (first, int(nxt.timestamp() * 1000) - 1)
    else:
        nxt = start.replace(year=start.year + 1)
        return (first, int(nxt.timestamp() * 1000) - 1)
    return (first, int((start + step).timestamp() * 1000) - 1)


def _in_span(ms: Optional[int], span: Optional[Tuple[int, int]]) -> bool:
    return ms is not None and span is not None and span[0] <= ms <= span[1]
