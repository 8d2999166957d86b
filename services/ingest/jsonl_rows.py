"""JSON Lines transfer files into rows of raw text, with the JSON type of every value.

Strict types need to know what was sent, not what it converts to: ``"1"``, ``1`` and ``1.0``
are three different values for an integer field. So each value arrives as its text (strings
decoded and trimmed, numbers as the digits sent, ``true``/``false``, arrays as compact JSON)
plus its JSON type in the ``_json`` struct; validation checks the type against the contract.

The common line is read vectorised: a flat object (strings, numbers, literals, arrays of
numbers; one regular expression says so) holding every contract key once, in the order the
file's first such line uses. Its ``"key":`` markers are found by literal search, and each value
is the bytes between its marker and the next. Any other line (escapes, nested values, NaN, a
surrogate escape, a key left out or out of order, keys to refuse, invalid JSON) is read by
``json_line`` in Python, one line at a time.
"""

from __future__ import annotations

import itertools

import polars as pl

from schemas import Contract
from services.ingest.errors import EmptyFileError
from services.ingest.framing import JSON_TYPES, LINE, check_columns, physical_lines
from services.ingest.json_line import Typed, parse_line

_WS = r"[ \t]*"
_STRING = r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'
_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_ATOM = rf"(?:{_NUMBER}|true|false|null)"
_ARRAY = rf"\[{_WS}(?:{_ATOM}(?:{_WS},{_WS}{_ATOM})*)?{_WS}\]"
_PAIR = rf"{_STRING}:{_WS}(?:{_STRING}|{_ATOM}|{_ARRAY})"  # "key":value, as writers write it
_FLAT = rf"^{_WS}\{{{_WS}(?:{_PAIR}(?:{_WS},{_WS}{_PAIR})*)?{_WS}\}}{_WS}$"
_SURROGATE_ESCAPE = r"\\u[dD][89a-fA-F]"
_FIRST_CHAR = {'"': "string", "[": "array", "t": "boolean", "f": "boolean", "n": "null"}


def read_jsonl(file: str, data: bytes, contract: Contract) -> pl.DataFrame:
    """Raw text rows of a normalised JSON Lines file: contract columns, ``_line``, ``_json``."""
    text = pl.col("text")
    columns = contract.columns
    lines = (
        physical_lines(data)
        .to_frame()
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(LINE))
        .filter(text.str.contains(r"\S"))  # Unicode White_Space, as str.strip_chars()
    )
    if lines.height == 0:
        raise EmptyFileError(file, "the file is empty", "send the export with its rows")
    found = lines.with_columns(
        *[text.str.find(_marker(name), literal=True).alias(name) for name in columns],
        # Python decodes a surrogate escape exactly (a lone one is rejected); Polars would not.
        _flat=text.str.contains(_FLAT) & ~text.str.contains(_SURROGATE_ESCAPE),
        _keys=text.str.count_matches('":', literal=True),  # every key of a flat line ends so
    )
    complete = (
        pl.col("_flat")
        & (pl.col("_keys") == len(columns))
        & pl.all_horizontal(pl.col(name).is_not_null() for name in columns)
    )
    order = _file_order(found, complete, columns)
    found = found.with_columns(_fast=complete & _in_order(order))
    fast = found.filter("_fast")
    slow = found.filter(~pl.col("_fast")).select("text", LINE)

    rows = _typed_columns(fast, order, contract, data)
    seen = set(columns) if fast.height else set()
    if slow.height == 0:  # the fast rows are in line order already
        check_columns(file, list(columns), contract)
        return rows
    rows = pl.concat([rows, _slow_rows(file, slow, contract, seen)])
    check_columns(file, [name for name in columns if name in seen], contract)
    return rows.sort(LINE)


def _marker(name: str) -> str:
    return f'"{name}":'


def _file_order(found: pl.DataFrame, complete: pl.Expr, columns: tuple[str, ...]) -> list[str]:
    """The writer's key order: the contract's, unless most ``complete`` lines use the first
    such line's."""
    first = found.lazy().filter(complete).select(columns).head(1).collect()
    if first.height == 0:
        return list(columns)
    order = sorted(columns, key=lambda name: first[name][0])
    counts = found.select(
        (complete & _in_order(list(columns))).sum().alias("contract"),
        (complete & _in_order(order)).sum().alias("first"),
    ).row(0)
    return list(columns) if counts[0] >= counts[1] else order


def _in_order(order: list[str]) -> pl.Expr:
    return pl.all_horizontal(pl.col(a) < pl.col(b) for a, b in itertools.pairwise(order))


def _typed_columns(
    lines: pl.DataFrame, order: list[str], contract: Contract, data: bytes
) -> pl.DataFrame:
    """(text, type) of each value: strings unquoted and trimmed, arrays compacted."""
    ascii_only = data.isascii()
    tokens = lines.select(LINE, *_values_by_position(order, ascii_only))
    columns = contract.columns
    escapes = b"\\" in data  # else no column needs decoding, nor its check
    # Per column, what the values hold: all strings is the common case and needs no lookup.
    # In an ASCII file the only white space a string holds unescaped is a space, so strings
    # with none at an edge, and none empty, are trimmed and non-empty already.
    summary = tokens.select(
        *[pl.col(n).str.starts_with('"').all().alias(f"{n}:text") for n in columns],
        *[pl.col(n).str.starts_with('"').any().alias(f"{n}:strings") for n in columns],
        *[pl.col(n).str.starts_with("[").any().alias(f"{n}:arrays") for n in columns],
        *[
            pl.col(n).str.contains("\\", literal=True).any().alias(f"{n}:escaped")
            for n in (columns if escapes else ())
        ],
        *[
            (pl.col(n).str.starts_with('" ') | pl.col(n).str.ends_with(' "') | (pl.col(n) == '""'))
            .any()
            .alias(f"{n}:edged")
            for n in columns
        ],
    ).row(0, named=True)
    kinds, values = [], []
    for name in columns:
        token = pl.col(name)
        escaped = summary.get(f"{name}:escaped", False)
        if summary[f"{name}:text"]:
            kind = pl.lit("string")
        else:
            kind = token.str.slice(0, 1).replace_strict(_FIRST_CHAR, default="number")
        inner = token.str.strip_chars('"')
        if escaped:  # decode the escapes; other values stand in as ""
            inner = pl.when(kind == "string").then(token).otherwise(pl.lit('""'))
            inner = inner.str.json_decode(pl.String)
        if escaped or summary[f"{name}:edged"] or not ascii_only:
            inner = inner.str.strip_chars()
            value = pl.when(inner != "").then(inner)
        else:
            value = inner
        if not summary[f"{name}:text"]:
            if not summary[f"{name}:strings"] and not summary[f"{name}:arrays"]:
                value = pl.when(kind != "null").then(token)  # numbers and literals as sent
            else:
                value = (
                    pl.when(kind == "string")
                    .then(value)
                    .when(kind == "array")
                    .then(token.str.replace_all(r"[ \t]", ""))
                    .when(kind != "null")
                    .then(token)
                )
        kinds.append(kind.alias(name))
        values.append(value.alias(name))
    return tokens.select(*values, LINE, pl.struct(kinds).alias(JSON_TYPES))


def _values_by_position(order: list[str], ascii_only: bool) -> list[pl.Expr]:
    """Each value's token, cut from the line between its key's marker and the next one (the
    markers' byte offsets are the key columns; each is in the line once, in ``order``): as
    bytes, since ``str.find`` counts bytes and ``str.slice`` characters, unless the file is
    ASCII (a byte is a character), which spares checking each cut is UTF-8."""
    text = pl.col("text")
    ends = [*(pl.col(name) for name in order[1:]), text.str.len_bytes()]

    def cut(start: pl.Expr, length: pl.Expr) -> pl.Expr:
        if ascii_only:
            return text.str.slice(start, length)
        return text.cast(pl.Binary).bin.slice(start, length).cast(pl.String)

    tokens = []
    for name, end in zip(order, ends, strict=True):
        start = pl.col(name) + len(_marker(name).encode())
        tokens.append(cut(start, end - start).str.strip_chars(" \t,}").alias(name))
    return tokens


def _slow_rows(file: str, lines: pl.DataFrame, contract: Contract, seen: set[str]) -> pl.DataFrame:
    """Rows of the lines the vectorised reader left, parsed one by one."""
    columns = contract.columns
    texts: dict[str, list[str | None]] = {name: [] for name in columns}
    types: dict[str, list[str]] = {name: [] for name in columns}
    numbers = lines[LINE].to_list()
    for number, line in zip(numbers, lines["text"].to_list(), strict=True):
        record = parse_line(file, number, line, contract.source)
        unknown = [key for key in record if key not in columns]
        if unknown:
            check_columns(file, list(record), contract)
        seen.update(record)
        for name in columns:
            kind, value = record.get(name, _ABSENT)
            types[name].append(kind)
            texts[name].append(value)
    frame = pl.DataFrame(
        {**texts, LINE: numbers}, schema={**dict.fromkeys(columns, pl.String), LINE: pl.Int64}
    )
    kinds = pl.DataFrame(types, schema=dict.fromkeys(columns, pl.String))
    return frame.with_columns(kinds.to_struct(JSON_TYPES))


_ABSENT: Typed = ("null", None)
