"""The maintained state's tables against what the log gives: which rows differ, named by key
with the columns that differ and both values (`tract verify`, and a page about one subject,
which shows the log's outcomes when the state's files were edited)."""

from __future__ import annotations

import polars as pl

from services.adjudicator.engine import Adjudication
from services.state.maintained import KEPT, KEYS

SHOWN = 3
"""Differing rows named per table (the count says how many there are)."""


def state_differences(found: Adjudication, expected: Adjudication) -> list[tuple[str, str]]:
    """Per table the state keeps that is not what the log gives, what differs (its first rows
    named by key, with the columns that differ and both values)."""
    said = []
    for table in KEPT:
        mine, theirs = getattr(found, table), getattr(expected, table)
        if mine.columns != theirs.columns or mine.dtypes != theirs.dtypes:
            said.append(
                (
                    table,
                    f"its columns are not the log's ({len(mine.columns)} vs {len(theirs.columns)})",
                )
            )
            continue
        if mine.equals(theirs):
            continue
        said.append((table, _rows_that_differ(mine, theirs, list(KEYS[table]))))
    return said


def _rows_that_differ(mine: pl.DataFrame, theirs: pl.DataFrame, keys: list[str]) -> str:
    """'N rows differ; subject_id=S, tract_id=T: outcome is X in the files, Y from the log'."""
    hashed = [f.with_columns(_row=f.hash_rows(seed=0)) for f in (mine, theirs)]
    joined = hashed[0].join(
        hashed[1], on=keys, how="full", suffix="_log", nulls_equal=True, maintain_order="left"
    )
    differ = joined.filter(pl.col("_row").ne_missing(pl.col("_row_log")))
    shown = []
    for row in differ.head(SHOWN).iter_rows(named=True):
        key = ", ".join(
            f"{k}={row[k] if row[k] is not None else row.get(f'{k}_log')}" for k in keys
        )
        columns = [c for c in mine.columns if c not in keys and row[c] != row[f"{c}_log"]]
        if row["_row"] is None:
            shown.append(f"{key}: missing from the files")
        elif row["_row_log"] is None:
            shown.append(f"{key}: in the files, not from the log")
        else:
            shown.append(
                f"{key}: "
                + "; ".join(
                    f"{c} is {row[c]!r} in the files, {row[c + '_log']!r} from the log"
                    for c in columns[:SHOWN]
                )
            )
    return f"{differ.height} row(s) differ; " + " | ".join(shown)
