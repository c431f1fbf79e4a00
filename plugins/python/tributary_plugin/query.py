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
                elif word[:1] in "[{" or any(ch in word for ch in "~/^"):
                    raise self.fail(f"`{word}`: ranges, fuzzy, boosts and regular expressions are not supported here", start)
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

        def matches(record: Record) -> bool:
            if any(m(record) for m in must_not):
                return False
            if must:
                # Optional clauses only rank when some are required.
                return all(m(record) for m in must)
            # Without required clauses, one optional clause must match (a
            # group of exclusions alone matches everything else).
            return not should or any(m(record) for m in should)

        return matches

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
