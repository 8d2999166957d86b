"""CSV transfer files (a header row, RFC 4180 quoting) into rows of raw text with exact lines.

Three ways through, the first that applies:

1. **Clean**: every line after the header is one record with all its fields: Polars read as
   many records as there are lines, and the commas outside quoted values (the file's count
   less those inside the values read) are what complete rows hold. Row n is on line n + 2.
2. **Framed by line**: every line holds an even number of quotes (no quoted value spans
   lines) and its quoting is well formed. Fields per line are counted vectorised (commas
   outside quoted values), so short rows and blank lines are known; Polars reads the values.
3. **Record by record**: Python's csv module (strict) walks the file. Only a file with a
   quoted value over several lines, or quotes Polars reads differently, needs it.

A short row is kept with ``_missing`` naming the columns it lacks (validation rejects it); a
row with more fields than the header cannot be aligned with the columns and refuses the file,
as does quoting that cannot be framed. There is no field-size limit below the file's own
size: a long value is read and rejected against its column's ``max_length``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager

import polars as pl

from schemas import Contract
from services.ingest.errors import EmptyFileError, MalformedFileError
from services.ingest.framing import LINE, MISSING, check_columns, physical_lines

_QUOTED = r'"(?:[^"]|"")*"'
_FIELD = rf'(?:{_QUOTED}|[^",]*)'
_WELL_QUOTED = rf"^{_FIELD}(?:,{_FIELD})*$"
_FIX = "check quoting and field counts"


def read_csv(file: str, data: bytes, contract: Contract) -> pl.DataFrame:
    """Raw text rows of a normalised CSV file: contract columns, ``_line`` and ``_missing``."""
    header = _header(data)
    names = [h.strip() for h in header]
    check_columns(file, names, contract)
    width = len(names)
    quoted = b'"' in data

    values = _polars_values(data, names)
    if values is not None and _clean(data, values, width, quoted):
        numbered = values.with_columns(
            pl.int_range(2, values.height + 2, dtype=pl.Int64).alias(LINE),
            pl.lit(width, pl.Int64).alias("_fields"),
        )
        return _finish(file, numbered, names, contract, _to_trim(data, quoted, values))

    framing = _frame_by_line(file, data, width, quoted)
    if framing is not None and values is not None and values.height == framing.height:
        numbered = pl.concat([values, framing], how="horizontal").filter(~pl.col("_blank"))
        trim = _to_trim(data, quoted, values)
        return _finish(file, numbered.drop("_blank"), names, contract, trim)
    return _finish(file, _record_by_record(file, data, names), names, contract)


def _to_trim(data: bytes, quoted: bool, values: pl.DataFrame) -> list[str]:
    """The columns of Polars' ``values`` that trimming could change. In an unquoted ASCII file
    without tabs, vertical tabs or form feeds, an empty value is read as null and the only white
    space is a space: only a column with a value starting or ending in one needs trimming, which
    copies every value of the column twice. Otherwise every column is trimmed."""
    if quoted or not data.isascii() or any(c in data for c in (b"\t", b"\x0b", b"\x0c")):
        return values.columns
    if b" " not in data:
        return []
    edged = values.select(
        (pl.col(c).str.starts_with(" ") | pl.col(c).str.ends_with(" ")).any()
        for c in values.columns
    ).row(0)
    return [c for c, edge in zip(values.columns, edged, strict=True) if edge]


def _clean(data: bytes, values: pl.DataFrame, width: int, quoted: bool) -> bool:
    """One complete record on each line (blank lines and short rows fail the comma count)."""
    lines = data.count(b"\n")
    if values.height + 1 != lines:
        return False
    commas = data.count(b",")
    if quoted:
        inside = values.select(
            pl.sum_horizontal(
                pl.col(c).str.count_matches(",", literal=True).sum() for c in values.columns
            )
        )
        commas -= inside.item()
    return commas == (width - 1) * lines


def _header(data: bytes) -> list[str]:
    """The header row, read by the csv module (it may be quoted)."""
    with _field_limit(len(data)):
        stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline="")
        return next(csv.reader(stream), [])


def _polars_values(data: bytes, names: list[str]) -> pl.DataFrame | None:
    """Every record's values as text, or None when Polars cannot frame the file."""
    try:
        return pl.read_csv(
            data,
            has_header=True,
            new_columns=names,
            infer_schema=False,
            raise_if_empty=False,
        )
    except pl.exceptions.PolarsError:
        return None


def _frame_by_line(file: str, data: bytes, width: int, quoted: bool) -> pl.DataFrame | None:
    """``_line``, ``_fields`` and ``_blank`` of every line after the header, when each line is
    one record; None when a quoted value spans lines or quoting is not well formed."""
    text = pl.col("text")
    lines = physical_lines(data).to_frame()
    if quoted:
        has_quote = text.str.contains('"', literal=True)
        checked = lines.select(
            odd=(text.str.count_matches('"', literal=True) % 2 == 1).any(),
            bad=(has_quote & ~text.str.contains(_WELL_QUOTED)).any(),
        )
        if checked["odd"][0] or checked["bad"][0]:
            return None
        outside = pl.when(has_quote).then(text.str.replace_all(_QUOTED, "")).otherwise(text)
    else:
        outside = text
    framed = lines.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(LINE),
        (outside.str.count_matches(",", literal=True) + 1).cast(pl.Int64).alias("_fields"),
        (text.str.strip_chars() == "").alias("_blank"),
    ).slice(1)
    _refuse_long_rows(file, framed.filter(~pl.col("_blank")), width)
    return framed


def _refuse_long_rows(file: str, framed: pl.DataFrame, width: int) -> None:
    long = framed.filter(pl.col("_fields") > width)
    if long.height:
        line, fields = long.row(0, named=True)[LINE], long.row(0, named=True)["_fields"]
        more = f" (and {long.height - 1} more rows)" if long.height > 1 else ""
        raise MalformedFileError(
            file,
            f"malformed CSV (line {line} has {fields} fields, the header has {width}{more})",
            _FIX,
        )


def _record_by_record(file: str, data: bytes, names: list[str]) -> pl.DataFrame:
    """The general path: the csv module frames records (quoted values may span lines)."""
    text = data.decode("utf-8")
    physical = text.split("\n")
    width = len(names)
    rows: list[list[str | None]] = []
    starts: list[int] = []
    counts: list[int] = []
    with _field_limit(len(text)):
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        start = 1
        try:
            next(reader)
            start = reader.line_num + 1
            for row in reader:
                blank = reader.line_num == start and not physical[start - 1].strip()
                if not blank:
                    rows.append([*row, *([None] * (width - len(row)))])
                    starts.append(start)
                    counts.append(len(row))
                start = reader.line_num + 1
        except csv.Error as exc:
            raise MalformedFileError(
                file, f"malformed CSV (the record starting on line {start}: {exc})", _FIX
            ) from None
    framed = pl.DataFrame(
        {LINE: starts, "_fields": counts}, schema={LINE: pl.Int64, "_fields": pl.Int64}
    )
    _refuse_long_rows(file, framed, width)
    values = pl.DataFrame(rows, schema=dict.fromkeys(names, pl.String), orient="row")
    return pl.concat([values, framed], how="horizontal")


def _finish(
    file: str,
    rows: pl.DataFrame,
    names: list[str],
    contract: Contract,
    to_trim: list[str] | None = None,
) -> pl.DataFrame:
    """Trimmed text (empty is null) in contract order, with ``_line`` and ``_missing``.
    ``to_trim``: the columns that need it (:func:`_to_trim`); all when None."""
    if rows.height == 0:
        raise EmptyFileError(file, "the file has a header but no rows", "send the rows")
    width = len(names)
    fields = pl.col("_fields")
    missing: pl.Expr = pl.lit(None, pl.String)
    if (rows["_fields"] < width).any():
        for count in range(width - 1, 0, -1):
            missing = (
                pl.when(fields == count).then(pl.lit(", ".join(names[count:]))).otherwise(missing)
            )
    columns = contract.columns
    trim = [c for c in columns if to_trim is None or c in to_trim]
    trimmed = rows.select(
        *[pl.col(c).str.strip_chars() if c in trim else pl.col(c) for c in columns],
        LINE,
        missing.alias(MISSING),
    )
    # A second pass: in one, Polars would strip every value twice.
    return trimmed.with_columns(
        pl.when(pl.col(c).str.len_bytes() > 0).then(pl.col(c)).alias(c) for c in trim
    )


@contextmanager
def _field_limit(size: int) -> Iterator[None]:
    """Lift the csv module's field limit (128 KiB) to the file's size for one read."""
    previous = csv.field_size_limit(max(size + 1, csv.field_size_limit()))
    try:
        yield
    finally:
        csv.field_size_limit(previous)
