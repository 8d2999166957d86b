"""Rule ``primary.closure``: closed on clinical examination AND on MRI, three-valued."""

from __future__ import annotations

import polars as pl

CLOSED, NOT_CLOSED, PENDING = "CLOSED", "NOT_CLOSED", "PENDING"


def closure(clinical: pl.Expr, mri: pl.Expr) -> pl.Expr:
    """One side definitively not closed decides NOT_CLOSED even while the other is undecided;
    both sides closed make CLOSED; anything else is PENDING."""
    return (
        pl.when((clinical == "NOT_CLOSED") | (mri == "NOT_HEALED"))
        .then(pl.lit(NOT_CLOSED))
        .when((clinical == "CLOSED") & (mri == "HEALED"))
        .then(pl.lit(CLOSED))
        .otherwise(pl.lit(PENDING))
    )


def discordance(clinical: pl.Expr, mri: pl.Expr) -> pl.Expr:
    """Both sides decided and disagreeing: NOT_CLOSED by rule, and a conflict for the committee."""
    return (
        ((clinical == "CLOSED") & (mri == "NOT_HEALED"))
        | ((clinical == "NOT_CLOSED") & (mri == "HEALED"))
    ).fill_null(False)


def primary_outcome(tracts: pl.LazyFrame) -> pl.LazyFrame:
    """Adds ``rule_outcome`` and ``discordant`` from ``clinical`` and ``mri``."""
    clinical, mri = pl.col("clinical"), pl.col("mri")
    return tracts.with_columns(
        rule_outcome=closure(clinical, mri), discordant=discordance(clinical, mri)
    )
