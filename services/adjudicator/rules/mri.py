"""Rules ``mri.healed`` (per read) and ``mri.consensus`` (R1, R2 and the adjudicator, per tract)."""

from __future__ import annotations

import polars as pl

from services.adjudicator.rules import TRACT_KEY
from services.adjudicator.ruleset import MriParams, RuleSet

HEALED, NOT_HEALED = "HEALED", "NOT_HEALED"
ROLES = ("R1", "R2", "ADJ")


def large_collection(p: MriParams) -> pl.Expr:
    """A collection larger than p.collection_mm in at least p.collection_dims dimensions."""
    big = pl.col("collection_mm").list.eval(pl.element() > p.collection_mm).list.sum()
    return big.fill_null(0) >= p.collection_dims


def mri_healed(reads: pl.LazyFrame, p: MriParams) -> pl.LazyFrame:
    """Rule mri.healed: no T2-hyperintense tract and no large collection; INADEQUATE images
    make the read not evaluable. ``dry`` is the collection-only view (T2 ignored)."""
    evaluable = pl.col("image_quality") != "INADEQUATE"
    return reads.with_columns(
        evaluable=evaluable,
        healed=pl.when(evaluable).then(~pl.col("t2_hyperintense") & ~large_collection(p)),
        dry=pl.when(evaluable).then(~large_collection(p)),
    )


def mri_consensus(
    tracts: pl.LazyFrame, reads: pl.LazyFrame, rules: RuleSet, decision: str = "healed"
) -> pl.LazyFrame:
    """Rule mri.consensus at the final MRI, one row per tract of ``tracts``.

    Two evaluable primary reads that agree decide; otherwise an evaluable ADJ read decides.
    ``mri`` is null while undecided; ``needs_adjudicator`` marks a reader disagreement without an
    evaluable ADJ read, ``missing_reads`` fewer than two evaluable primaries and no ADJ.
    ``decision`` picks the per-read column: ``healed`` (primary) or ``dry`` (collection only).
    """
    final = (
        mri_healed(reads.filter(pl.col("timepoint") == rules.final_mri), rules.mri)
        .with_columns(pl.col(decision).alias("_decision"))
        .sort("read_at", "offset")
    )
    per_role = final.group_by(TRACT_KEY).agg(
        *[
            expr
            for role in ROLES
            for expr in (
                pl.col("_decision")
                .filter(pl.col("reader_role") == role)
                .last()
                .alias(f"{role.lower()}_healed"),
                pl.col("evaluable")
                .filter(pl.col("reader_role") == role)
                .last()
                .alias(f"{role.lower()}_evaluable"),
                pl.col("reader_id")
                .filter(pl.col("reader_role") == role)
                .last()
                .alias(f"{role.lower()}_reader"),
            )
        ],
        mri_reads=pl.len(),
    )
    r1, r2, adj = (pl.col(f"{r}_healed") for r in ("r1", "r2", "adj"))
    both = pl.col("r1_evaluable").fill_null(False) & pl.col("r2_evaluable").fill_null(False)
    adj_ok = pl.col("adj_evaluable").fill_null(False)
    agree = both & (r1 == r2)
    adjudicated = adj_ok & ~agree
    value = pl.when(agree).then(r1).when(adjudicated).then(adj)
    return (
        tracts.select(TRACT_KEY)
        .join(per_role, on=TRACT_KEY, how="left")
        .with_columns(pl.col("mri_reads").fill_null(0))
        .with_columns(
            mri=pl.when(value).then(pl.lit(HEALED)).when(~value).then(pl.lit(NOT_HEALED)),
            mri_basis=pl.when(agree)
            .then(pl.lit("R1 and R2 agree"))
            .when(adjudicated)
            .then(pl.lit("adjudicator read"))
            .when(both)
            .then(pl.lit("R1 and R2 disagree; no evaluable adjudicator read"))
            .otherwise(
                pl.lit("fewer than two evaluable primary reads and no evaluable adjudicator read")
            ),
            readers_disagree=both & (r1 != r2),
            needs_adjudicator=both & (r1 != r2) & ~adj_ok,
            missing_reads=~both & ~adj_ok,
        )
    )
