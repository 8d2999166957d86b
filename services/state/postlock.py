"""Post-lock changes: what differs from the lock in force, whatever caused it.

A tract whose outcome (or a patient whose category) is not what the lock froze, because of a
decision, a correction or new data, is flagged ``changed_since_lock`` with the locked value
beside it; a tract or patient the lock did not have at all counts as changed too. Evidence
that arrived after the lock keeps its own flag (``post_lock``, set by the engine), and a tract
with either flag is post-lock.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import polars as pl

from services.adjudicator.engine import Adjudication


@dataclass(frozen=True)
class LockBaseline:
    """The outcomes a lock froze: per tract ``outcome``, per patient ``category``."""

    lock_id: str
    tracts: pl.DataFrame  # subject_id, tract_id, outcome
    patients: pl.DataFrame  # subject_id, category


def flag_changes(result: Adjudication, baseline: LockBaseline | None) -> Adjudication:
    """``result`` with ``locked_outcome``/``locked_category``, ``changed_since_lock`` and the
    lock's id on every tract and patient (nulls and False when no lock is in force)."""
    tracts, patients = result.tracts, result.patients
    if baseline is None:
        tracts = tracts.with_columns(
            locked_outcome=pl.lit(None, pl.String),
            changed_since_lock=pl.lit(False),
            lock_id=pl.lit(None, pl.String),
        )
        patients = patients.with_columns(
            locked_category=pl.lit(None, pl.String),
            changed_since_lock=pl.lit(False),
            lock_id=pl.lit(None, pl.String),
        )
    else:
        locked_tracts = baseline.tracts.select(
            "subject_id", "tract_id", locked_outcome="outcome", _in_lock=pl.lit(True)
        )
        tracts = (
            tracts.drop("locked_outcome", "changed_since_lock", "lock_id", strict=False)
            .join(locked_tracts, on=["subject_id", "tract_id"], how="left", maintain_order="left")
            .with_columns(
                changed_since_lock=pl.col("_in_lock").is_null()
                | (pl.col("outcome") != pl.col("locked_outcome")).fill_null(True),
                lock_id=pl.lit(baseline.lock_id),
            )
            .drop("_in_lock")
        )
        tracts = tracts.with_columns(post_lock=pl.col("post_lock") | pl.col("changed_since_lock"))
        locked_patients = baseline.patients.select(
            "subject_id", locked_category="category", _in_lock=pl.lit(True)
        )
        patients = (
            patients.drop("locked_category", "changed_since_lock", "lock_id", strict=False)
            .join(locked_patients, on="subject_id", how="left", maintain_order="left")
            .with_columns(
                changed_since_lock=pl.col("_in_lock").is_null()
                | (pl.col("category") != pl.col("locked_category")).fill_null(True),
                lock_id=pl.lit(baseline.lock_id),
            )
            .drop("_in_lock")
        )
    values = {f.name: getattr(result, f.name) for f in fields(result)}
    return Adjudication(**(values | {"tracts": tracts, "patients": patients}))


def changes_since_lock(result: Adjudication) -> dict[str, int | str | None]:
    """How many treated tracts' outcomes and patients' categories differ from the lock in force
    (what the dashboard, ``tract report`` and the next lock's manifest say)."""
    tracts = result.tracts
    lock_ids = tracts["lock_id"].drop_nulls() if "lock_id" in tracts.columns else pl.Series([])
    if lock_ids.is_empty():
        return {"lock_id": None, "tracts": 0, "patients": 0, "post_lock_data": 0}
    treated = tracts.filter(pl.col("treated"))
    return {
        "lock_id": lock_ids[0],
        "tracts": int(treated["changed_since_lock"].sum()),
        "patients": int(result.patients["changed_since_lock"].sum()),
        "post_lock_data": int(treated["post_lock"].sum()),
    }
