"""What every transfer file goes through before its format is read: UTF-8, universal newlines,
physical lines, and the columns against the contract.

Line numbers everywhere are those of the file as a person opens it: a line ends at LF, CR LF or
a lone CR (universal newlines), so a file from an old Mac export is numbered as it displays.
"""

from __future__ import annotations

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
"""The line a row starts on (Int64, 1-based)."""
MISSING = "_missing"
"""CSV: the columns a short row lacks, comma-separated (null when the row is complete)."""
JSON_TYPES = "_json"
"""JSON Lines: the JSON type of every value, a struct with one String field per column."""

# Bytes that never occur in a well-formed text file; one absent from the data splits lines fast.
_UNUSED = ("\x1f", "\x1e", "\x1d", "\x1c", "\x01")


def normalise(name: str, data: bytes) -> bytes:
    """UTF-8 checked bytes with LF line ends, no byte-order mark, and one final LF.

    Trailing blank lines are the end of the file, not rows. Replacing CR bytes is safe in UTF-8:
    they never occur inside a multi-byte character.
    """
    data = data.removeprefix(b"\xef\xbb\xbf")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    try:
        if not data.isascii():  # ASCII is UTF-8: only other bytes need decoding to check
            data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise NotUtf8Error(
            name,
            f"not UTF-8 (byte 0x{data[exc.start]:02x} on line {line})",
            "export the file again as UTF-8",
        ) from None
    if not data or data.isspace():
        raise EmptyFileError(name, "the file is empty", "send the export with its rows")
    if data.endswith(b"\n\n") or not data.endswith(b"\n"):  # copies: only when needed
        data = data.rstrip(b"\n") + b"\n"
    return data


def physical_lines(data: bytes) -> pl.Series:
    """Every line of normalised ``data`` as text, in file order (line n at index n - 1).

    Polars' CSV reader splits lines in parallel when given a separator the data does not hold
    and no quote character; Python's split is the fallback for a file holding all of them.
    """
    expected = data.count(b"\n")
    separator = next((s for s in _UNUSED if s.encode() not in data), None)
    if separator is not None:
        lines = pl.read_csv(
            data,
            has_header=False,
            separator=separator,
            quote_char=None,
            new_columns=["text"],
            infer_schema=False,
            empty_string_is_null=False,
            raise_if_empty=False,
        ).to_series()
        if lines.len() == expected:
            return lines
    return pl.Series("text", data.decode("utf-8").split("\n")[:expected], dtype=pl.String)


def check_columns(file: str, found: list[str], contract: Contract) -> None:
    """Refuse a header (or a set of JSON keys) that does not match the contract's columns."""
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
        shown = ", ".join(_short(c) for c in unknown[:10])
        raise UnknownColumnsError(
            file,
            f"unknown column(s) {shown}{' ...' if len(unknown) > 10 else ''}",
            f"remove them; the {contract.kind} contract v{contract.version} has "
            + ", ".join(contract.columns),
        )


def _short(text: str, limit: int = 60) -> str:
    """A name as shown in a message: a pasted page of text is cut, not echoed, and a lone
    surrogate (which no terminal can print) is shown as its escape."""
    shown = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(text)} characters)"
