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


def _consensus(decision: str) -> dict[str, pl.Expr]:
    """The consensus of R1, R2 and ADJ on one per-read decision (``healed`` or ``dry``).

    Readers must be independent: R1 and R2 by one reader count as fewer than two primary
    reads, and an ADJ read by R1's or R2's reader does not count.
    """
    r1, r2, adj = (pl.col(f"{r}_{decision}") for r in ("r1", "r2", "adj"))
    r1_reader, r2_reader, adj_reader = (pl.col(f"{r}_reader") for r in ("r1", "r2", "adj"))
    evaluable = pl.col("r1_evaluable").fill_null(False) & pl.col("r2_evaluable").fill_null(False)
    same_primary = (r1_reader == r2_reader).fill_null(False)
    both = evaluable & ~same_primary
    adj_independent = ~((adj_reader == r1_reader) | (adj_reader == r2_reader)).fill_null(False)
    adj_ok = pl.col("adj_evaluable").fill_null(False) & adj_independent
    agree = both & (r1 == r2)
    adjudicated = adj_ok & ~agree
    value = pl.when(agree).then(r1).when(adjudicated).then(adj)
    return {
        "value": pl.when(value).then(pl.lit(HEALED)).when(~value).then(pl.lit(NOT_HEALED)),
        "basis": pl.when(agree)
        .then(pl.lit("R1 and R2 agree"))
        .when(adjudicated)
        .then(pl.lit("adjudicator read"))
        .when(evaluable & same_primary)
        .then(pl.lit("R1 and R2 read by the same reader; no independent adjudicator read"))
        .when(both)
        .then(pl.lit("R1 and R2 disagree; no evaluable adjudicator read"))
        .otherwise(
            pl.lit("fewer than two evaluable primary reads and no evaluable adjudicator read")
        ),
        "disagree": both & (r1 != r2),
        "needs_adjudicator": both & (r1 != r2) & ~adj_ok,
        "missing": ~evaluable & ~adj_ok,
        "not_independent": same_primary | ~adj_independent,
    }


def mri_consensus(tracts: pl.LazyFrame, reads: pl.LazyFrame, rules: RuleSet) -> pl.LazyFrame:
    """Rule mri.consensus at the final MRI: adds its columns to ``tracts`` (one row per tract).

    Two evaluable primary reads that agree decide; otherwise an evaluable ADJ read decides.
    ``mri`` is null while undecided; ``needs_adjudicator`` marks a reader disagreement without an
    evaluable ADJ read, ``missing_reads`` fewer than two evaluable primaries and no ADJ.
    ``mri_dry`` is the same consensus on the collection-only view (for ADMIRE_COMBINED).
    A role read more than once counts with its latest read. ``readers_not_independent``
    marks final reads of one tract by the same reader in two roles (READER_NOT_INDEPENDENT).
    """
    final = mri_healed(reads.filter(pl.col("timepoint") == rules.final_mri), rules.mri)
    role_key = [*TRACT_KEY, "reader_role"]
    counted = final.with_columns(
        mri_reads=pl.len().over(TRACT_KEY), _role_reads=pl.len().over(role_key)
    )
    # A role read twice is rare: only those rows are sorted to find the latest.
    latest = pl.concat(
        [
            counted.filter(pl.col("_role_reads") == 1),
            counted.filter(pl.col("_role_reads") > 1)
            .sort("read_at", "offset")
            .unique(role_key, keep="last"),
        ]
    )
    per_role = tracts
    for role in ROLES:
        prefix = role.lower()
        per_role = per_role.join(
            latest.filter(pl.col("reader_role") == role).select(
                *TRACT_KEY,
                pl.col("healed").alias(f"{prefix}_healed"),
                pl.col("dry").alias(f"{prefix}_dry"),
                pl.col("evaluable").alias(f"{prefix}_evaluable"),
                pl.col("reader_id").alias(f"{prefix}_reader"),
                pl.col("event_id").alias(f"{prefix}_event_id"),
                pl.col("mri_reads").alias(f"_reads_{prefix}"),
            ),
            on=TRACT_KEY,
            how="left",
            maintain_order="left",
        )
    healed, dry = _consensus("healed"), _consensus("dry")
    return per_role.with_columns(
        mri_reads=pl.coalesce("_reads_r1", "_reads_r2", "_reads_adj").fill_null(0),
        mri=healed["value"],
        mri_basis=healed["basis"],
        readers_disagree=healed["disagree"],
        needs_adjudicator=healed["needs_adjudicator"],
        missing_reads=healed["missing"],
        readers_not_independent=healed["not_independent"],
        mri_dry=dry["value"],
    ).drop("_reads_r1", "_reads_r2", "_reads_adj", "r1_dry", "r2_dry", "adj_dry")
