"""Read a transfer file into a frame of raw text values, one row per record.

Every contract column comes out as text (null when empty) with ``_line``, the line the record
starts on, so validation can name the place of every problem. A format adds what validation
needs beyond the text, in columns whose names start with "_": CSV rows carry ``_missing`` (the
columns a short row lacks), JSON Lines rows ``_json`` (the JSON type of each value). Whole-file
problems raise a ``FileRefusedError``; a bad row never does.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from schemas import Contract
from services.ingest.csv_rows import read_csv
from services.ingest.framing import JSON_TYPES, LINE, MISSING, normalise
from services.ingest.jsonl_rows import read_jsonl

__all__ = ["JSON_TYPES", "LINE", "MISSING", "read_rows"]


def read_rows(path: Path, contract: Contract, data: bytes | None = None) -> pl.DataFrame:
    """Text values of every row of ``path`` (its bytes ``data`` when the caller has read them
    already), checked against the contract's columns."""
    text = normalise(path.name, path.read_bytes() if data is None else data)
    if contract.source and contract.source.format == "jsonl":
        return read_jsonl(path.name, text, contract)
    return read_csv(path.name, text, contract)
