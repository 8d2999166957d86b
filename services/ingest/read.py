"""Read a transfer file into a frame of raw text values, one row per record.

Every column comes out as text (or null when empty) with ``_line``, the line the row came
from, so validation can name the place of every problem. Whole-file problems raise.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import polars as pl

from schemas import Contract
from services.ingest.errors import (
    EmptyFileError,
    MalformedFileError,
    MissingColumnsError,
    NotUtf8Error,
    UnknownColumnsError,
)

LINE = "_line"


def read_rows(path: Path, contract: Contract, data: bytes | None = None) -> pl.DataFrame:
    """Text values of every row of ``path`` (its bytes ``data`` when the caller has read them
    already), checked against the contract's columns."""
    text = _decode(path.name, path.read_bytes() if data is None else data)
    if contract.source and contract.source.format == "jsonl":
        return _read_jsonl(path.name, text, contract)
    return _read_csv(path.name, text, contract)


def _decode(name: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise NotUtf8Error(
            name,
            f"not UTF-8 (byte 0x{data[exc.start]:02x} on line {line})",
            "export the file again as UTF-8",
        ) from None
    # Trailing blank lines are the end of the file, not rows.
    text = text.removeprefix("\ufeff").rstrip("\r\n") + "\n"
    if not text.strip():
        raise EmptyFileError(name, "the file is empty", "send the export with its rows")
    return text


def _check_columns(file: str, found: list[str], contract: Contract) -> None:
    missing = [c for c in contract.columns if c not in found]
    unknown = [c for c in found if c not in contract.columns]
    repeated = sorted({c for c in found if found.count(c) > 1})
    if repeated:
        raise MalformedFileError(
            file,
            f"column(s) {', '.join(repeated)} appear more than once in the header",
            "keep one of each",
        )
    if missing:
        raise MissingColumnsError(
            file, f"missing column(s) {', '.join(missing)}", "add them to the export header"
        )
    if unknown:
        raise UnknownColumnsError(
            file,
            f"unknown column(s) {', '.join(unknown)}",
            f"remove them; the {contract.kind} contract v{contract.version} has "
            + ", ".join(contract.columns),
        )


def _read_csv(file: str, text: str, contract: Contract) -> pl.DataFrame:
    header = next(csv.reader(io.StringIO(text)))
    _check_columns(file, [h.strip() for h in header], contract)
    try:
        frame = pl.read_csv(
            io.StringIO(text), infer_schema=False, has_header=True, raise_if_empty=False
        )
    except pl.exceptions.ComputeError as exc:
        raise MalformedFileError(
            file, f"malformed CSV ({str(exc).splitlines()[0]})", "check quoting and field counts"
        ) from None
    if frame.height == 0:
        raise EmptyFileError(file, "the file has a header but no rows", "send the rows")
    lines = _record_lines(text)
    if len(lines) != frame.height:
        raise MalformedFileError(
            file,
            f"malformed CSV ({len(lines)} records by line, {frame.height} parsed)",
            "check quoting and field counts",
        )
    frame = frame.rename({c: c.strip() for c in frame.columns})
    return frame.with_columns(
        pl.col(pl.String).str.strip_chars().replace("", None),
        pl.Series(LINE, lines, dtype=pl.Int64),
    ).select(*contract.columns, LINE)


def _record_lines(text: str) -> list[int]:
    """The line each record after the header starts on: a quoted value may span lines."""
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    starts, start = [], reader.line_num + 1
    for _ in reader:
        starts.append(start)
        start = reader.line_num + 1
    return starts


def _read_jsonl(file: str, text: str, contract: Contract) -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    # Lines end at "\n" only: str.splitlines() would also split inside JSON strings that
    # hold U+2028, U+0085 and the like, which JSON allows unescaped.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_pairs_hook=_no_repeated_keys)
        except RepeatedKeyError as exc:
            raise MalformedFileError(
                file,
                f"line {number} has the key {exc.key!r} more than once",
                "send each field once per object",
            ) from None
        except json.JSONDecodeError as exc:
            raise MalformedFileError(
                file,
                f"line {number} is not valid JSON ({exc.msg})",
                "send one JSON object per line",
            ) from None
        if not isinstance(record, dict):
            raise MalformedFileError(
                file, f"line {number} is not a JSON object", "send one JSON object per line"
            )
        unknown = [k for k in record if k not in contract.columns]
        if unknown:
            _check_columns(file, list(record), contract)
        seen.update(record)
        rows.append({LINE: number, **{k: _as_text(v) for k, v in record.items()}})
    _check_columns(file, [c for c in contract.columns if c in seen], contract)
    schema = {c: pl.String() for c in contract.columns} | {LINE: pl.Int64()}
    return pl.DataFrame(rows, schema=schema).select(*contract.columns, LINE)


class RepeatedKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A key twice in one object is ambiguous (json keeps the last one silently)."""
    record: dict[str, Any] = {}
    for key, value in pairs:
        if key in record:
            raise RepeatedKeyError(key)
        record[key] = value
    return record


def _as_text(value: Any) -> str | None:
    """JSON values as the text validation reads: booleans Y/N like the CSV files."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, str):
        return value.strip() or None
    return str(value)
