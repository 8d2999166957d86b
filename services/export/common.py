"""Expressions every SDTM and ADaM builder shares: ISO 8601 dates, study days, visit numbers,
epochs, sequence numbers, Y/N flags. Polars expressions only: no per-row Python."""

from __future__ import annotations

from typing import Any

import polars as pl


def iso_date(column: str | pl.Expr) -> pl.Expr:
    """A Date (or the date part of a Datetime) as ISO 8601 text, null stays null."""
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.dt.to_string("%Y-%m-%d")


def study_day(day: pl.Expr, reference: pl.Expr) -> pl.Expr:
    """SDTM --DY / ADaM ADY: days from the reference, plus 1 on or after it (no day 0)."""
    days = (day - reference).dt.total_days()
    return pl.when(days >= 0).then(days + 1).otherwise(days)


def yes_no(flag: pl.Expr) -> pl.Expr:
    return pl.when(flag).then(pl.lit("Y")).when(~flag).then(pl.lit("N"))


def visit_number(visit: pl.Expr, design: dict[str, Any]) -> pl.Expr:
    numbers = {v["visit"]: float(v["num"]) for v in design["visits"]}
    return visit.replace_strict(numbers, default=None, return_dtype=pl.Float64)


def epoch_of_visit(visit: pl.Expr, design: dict[str, Any]) -> pl.Expr:
    epochs = {e["code"]: e["epoch"] for e in design["elements"]}
    by_visit = {v["visit"]: epochs[v["element"]] for v in design["visits"]}
    return visit.replace_strict(by_visit, default=None, return_dtype=pl.String)


def epoch_by_date(day: pl.Expr, first_dose: pl.Expr, design: dict[str, Any]) -> pl.Expr:
    """The epoch whose element had started by ``day`` (protocol days from the first dose;
    an element starts at the earliest planned day of its visits). Before any dose: the first."""
    epochs = {e["code"]: e["epoch"] for e in design["elements"]}
    starts: dict[str, int] = {}
    for v in design["visits"]:
        starts[v["element"]] = min(starts.get(v["element"], v["day"]), v["day"])
    order = sorted(starts.items(), key=lambda item: item[1])
    protocol_day = (day - first_dose).dt.total_days()
    expr = pl.lit(epochs[order[0][0]])
    for element, start in order[1:]:
        expr = (
            pl.when(first_dose.is_not_null() & (protocol_day >= start))
            .then(pl.lit(epochs[element]))
            .otherwise(expr)
        )
    return pl.when(day.is_not_null()).then(expr)


def with_seq(frame: pl.DataFrame, column: str, order: list[str]) -> pl.DataFrame:
    """``column`` numbered 1.. within USUBJID, rows sorted by USUBJID then ``order``."""
    ordered = frame.sort(["USUBJID", *order], nulls_last=True)
    return ordered.with_columns(pl.int_range(1, pl.len() + 1).over("USUBJID").alias(column))
