"""One JSON Lines record, read in Python: the path for lines the vectorised reader leaves.

Those are lines with escapes, nested values, NaN, invalid JSON, or keys to refuse. Every
value comes back as (JSON type, text): numbers keep the digits that were sent (a 5,000-digit
integer is text, never a Python int), strings are decoded, nested values are compact JSON.
Nothing here recurses without a bound: a line is parsed whole only within the contract's
depth and size; beyond them its top-level values are cut out by a flat scan, and a value too
deep or too large to unfold keeps the text that was sent.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from schemas import Source
from services.ingest.errors import MalformedFileError

Typed = tuple[str, str | None]
"""(JSON type, text): string, number, boolean, null, array, object or lone_surrogate."""

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")
_CLOSE = {"[": "]", "{": "}"}
# Unicode White_Space, what Polars trims from the values of the vectorised path (Python's
# str.strip would also take U+001C..U+001F, which validation rejects as control characters).
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
_ONE_LINE = "send one JSON object per line"


class _Number(str):
    """A JSON number as the digits that were sent."""


class RepeatedKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def parse_line(file: str, number: int, line: str, source: Source) -> dict[str, Typed]:
    """The top-level keys of one object line with their (type, text); raise to refuse the file."""
    if len(line) <= source.max_line_chars and _depth(line) <= source.max_depth:
        record = _loads(file, number, line)
        if not isinstance(record, dict):
            raise MalformedFileError(file, f"line {number} is not a JSON object", _ONE_LINE)
        return {_escaped(key): _typed(value) for key, value in record.items()}
    if not line.lstrip().startswith("{"):
        raise MalformedFileError(file, f"line {number} is not a JSON object", _ONE_LINE)
    found: dict[str, Typed] = {}
    for key, span in _top_level(file, number, line):
        if key in found:
            raise _repeated(file, number, key)
        found[key] = _typed_span(file, number, span, source)
    return found


def _loads(file: str, number: int, text: str) -> Any:
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_repeated_keys,
            parse_int=_Number,
            parse_float=_Number,
            parse_constant=_constant,
        )
    except RepeatedKeyError as exc:
        raise _repeated(file, number, exc.key) from None
    except json.JSONDecodeError as exc:
        raise MalformedFileError(
            file, f"line {number} is not valid JSON ({exc.msg})", _ONE_LINE
        ) from None


def _repeated(file: str, number: int, key: str) -> MalformedFileError:
    return MalformedFileError(
        file, f"line {number} has the key {key!r} more than once", "send each field once per object"
    )


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A key twice in one object is ambiguous (json keeps the last one silently)."""
    record: dict[str, Any] = {}
    for key, value in pairs:
        if key in record:
            raise RepeatedKeyError(key)
        record[key] = value
    return record


def _constant(name: str) -> _Number:
    """NaN and Infinity are not JSON, but Python's reader takes them: kept as numbers that
    validation rejects (shown as Python prints them: nan, inf, -inf)."""
    return _Number(str(float(name)))


def _depth(text: str) -> int:
    """How deep brackets nest outside strings (0 for a scalar)."""
    if text.count("[") + text.count("{") <= 1:
        return text.count("[") + text.count("{")
    outside = _STRING.sub("", text)
    steps = (1 if c in "[{" else -1 for c in outside if c in "[]{}")
    return max(accumulate(steps, initial=0))


def _typed(value: Any) -> Typed:
    if value is None:
        return "null", None
    if isinstance(value, bool):
        return "boolean", "true" if value else "false"
    if isinstance(value, _Number):
        return "number", str(value)
    if isinstance(value, str):
        text = value.strip(_WHITESPACE) or None
        if text is not None and _SURROGATE.search(text):
            return "lone_surrogate", _escaped(text)
        return "string", text
    kind = "array" if isinstance(value, list) else "object"
    return kind, _escaped(_compact(value))


def _compact(value: Any) -> str:
    """Compact JSON of a nested value, numbers as sent (bounded depth: the line was checked)."""
    if isinstance(value, _Number):
        return str(value)
    if isinstance(value, list):
        return "[" + ",".join(_compact(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (json.dumps(k, ensure_ascii=False) + ":" + _compact(v) for k, v in value.items())
        return "{" + ",".join(items) + "}"
    return json.dumps(value, ensure_ascii=False)


def _escaped(text: str) -> str:
    """Text with each lone surrogate written as its escape: readable, and valid UTF-8."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _top_level(file: str, number: int, line: str) -> list[tuple[str, str]]:
    """(key, value text) of each member of an object line, without unfolding the values."""
    pairs: list[tuple[str, str]] = []
    stack: list[str] = []
    key: str | None = None
    start = 0
    expect = "{"  # what may come next at the top level: { key : value , }
    end = 0
    for match in _TOKEN.finditer(line):
        token, between = match.group(), line[end : match.start()]
        end = match.end()
        if len(stack) > 1 or (len(stack) == 1 and expect == "value"):
            if token in _CLOSE:
                stack.append(token)
            elif token in "]}" and token == _CLOSE[stack[-1]] and len(stack) > 1:
                stack.pop()
            elif token in "]}" and len(stack) > 1:
                raise _invalid(file, number, "brackets do not match")
            elif len(stack) == 1 and token in ",}":
                pairs.append((key or "", line[start : match.start()].strip()))
                expect = "key" if token == "," else "end"
                if token == "}":
                    stack.pop()
            continue
        if between.strip():
            raise _invalid(file, number, f"unexpected {between.strip()[:20]!r}")
        if expect == "{" and token == "{":
            stack, expect = ["{"], "key"
        elif expect == "key" and token.startswith('"'):
            key, expect = _escaped(_loads(file, number, token)), ":"
        elif expect == "key" and token == "}" and not pairs:
            stack, expect = [], "end"
        elif expect == ":" and token == ":":
            start, expect = end, "value"
        else:
            raise _invalid(file, number, f"unexpected {token[:20]!r}")
    if expect != "end" or line[end:].strip():
        raise _invalid(file, number, "the object is not closed")
    return pairs


def _typed_span(file: str, number: int, span: str, source: Source) -> Typed:
    """A top-level value's (type, text): parsed when within bounds, else kept as sent."""
    if len(span) <= source.max_line_chars and _depth(span) <= source.max_depth:
        return _typed(_loads(file, number, span))
    if span[:1] in _CLOSE:
        return ("array" if span[0] == "[" else "object"), _escaped(span)
    return _typed(_loads(file, number, span))


def _invalid(file: str, number: int, problem: str) -> MalformedFileError:
    return MalformedFileError(file, f"line {number} is not valid JSON ({problem})", _ONE_LINE)
