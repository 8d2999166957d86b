"""The trial's tables (PROTOCOL.md, "Reports"), computed from outcome frames.

The same function serves the current state and a locked snapshot: it reads only the frames a
lock stores (tract and patient outcomes, conflicts, pathology), never the log.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import polars as pl

from services.adjudicator import stats
from services.adjudicator.committee import tract_mappings
from services.adjudicator.rules.patient import CATEGORIES, FULL_CLOSURE
from services.adjudicator.rules.sensitivity import DEFINITIONS

MARKERS = ("cd68_per_hpf", "cd20_per_hpf", "cd31_per_hpf", "inflammation_grade")
PATHOLOGY_VISITS = ("INJ1", "INJ2", "INJ3")
REPORT_TABLES = ("tracts", "patients", "conflicts")
"""The outcome tables a report is built from (with the pathology records)."""
PATHOLOGY_COLUMNS = ("subject_id", "tract_id", "visit", "specimen_adequate", *MARKERS)
"""The pathology reports' columns the report reads."""


def _pct(k: int, n: int) -> float | None:
    value = stats.proportion(k, n)
    return None if value is None else round(100 * value, 1)


def _ci(k: int, n: int, level: float) -> list[float] | None:
    interval = stats.clopper_pearson(k, n, level)
    return None if interval is None else [round(interval[0], 4), round(interval[1], 4)]


def completer_table(patients: pl.DataFrame, category: str, level: float) -> dict[str, Any]:
    completers = patients.lazy().filter(pl.col("subject_status") == "COMPLETED")
    found = dict(completers.group_by(category).len().collect().rows())
    n = sum(found.values())
    counts = {c: found.get(c, 0) for c in CATEGORIES}
    return {
        "n": n,
        **counts,
        "percent": {c: _pct(k, n) for c, k in counts.items()},
        "full_closure_ci": _ci(counts[FULL_CLOSURE], n, level),
    }


def itt_table(patients: pl.DataFrame, category: str, level: float) -> dict[str, Any]:
    """Every enrolled subject; withdrawn subjects and unfinished ones count as failures."""
    n = patients.height
    k = patients.filter(pl.col(category) == FULL_CLOSURE).height
    withdrawn = patients.filter(pl.col("subject_status") == "WITHDRAWN").height
    return {
        "n": n,
        "FULL_CLOSURE": k,
        "withdrawn": withdrawn,
        "percent": _pct(k, n),
        "ci": _ci(k, n, level),
    }


def _treated_completers(tracts: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """Completers' treated tracts, with only ``columns`` (the tract table is wide: filtering
    every column to count a few is most of a report's time at 100,000 subjects)."""
    return (
        tracts.lazy()
        .filter(pl.col("treated") & (pl.col("subject_status") == "COMPLETED"))
        .select(*columns)
        .collect()
    )


def tract_tables(tracts: pl.DataFrame, outcomes: list[str], level: float) -> dict[str, Any]:
    """Completers' treated tracts, per outcome column; the interval accounts for tracts
    clustered in patients. One pass for every definition: grouping by patient is the cost."""
    treated = _treated_completers(tracts, "subject_id", *outcomes)
    per_patient = treated.group_by("subject_id").agg(
        *[(pl.col(o) == "CLOSED").sum().alias(f"closed:{o}") for o in outcomes], size=pl.len()
    )
    counts = treated.select(
        *[(pl.col(o) == "PENDING").sum().alias(f"pending:{o}") for o in outcomes],
        *[(pl.col(o) == "NOT_EVALUABLE").sum().alias(f"not_evaluable:{o}") for o in outcomes],
    ).row(0, named=True)
    tables = {}
    for outcome in outcomes:
        closed_per_patient = per_patient[f"closed:{outcome}"]
        closed = int(closed_per_patient.sum())
        interval = stats.clustered_proportion_ci(closed_per_patient, per_patient["size"], level)
        tables[outcome] = {
            "treated": treated.height,
            "closed": closed,
            "percent": _pct(closed, treated.height),
            "ci": None
            if interval is None
            else [round(interval.lower, 4), round(interval.upper, 4)],
            "ci_method": None if interval is None else interval.method,
            "design_effect": None if interval is None else round(interval.design_effect, 3),
            "patients": per_patient.height,
            "pending": counts[f"pending:{outcome}"],
            "not_evaluable": counts[f"not_evaluable:{outcome}"],
        }
    return tables


def discharge_table(tracts: pl.DataFrame, level: float) -> dict[str, Any]:
    treated = _treated_completers(tracts, "discharge_improved")
    evaluable = treated.filter(pl.col("discharge_improved").is_not_null())
    improved = evaluable.filter(pl.col("discharge_improved")).height
    return {
        "improved": improved,
        "evaluable": evaluable.height,
        "not_evaluable": treated.height - evaluable.height,
        "percent": _pct(improved, evaluable.height),
        "ci": _ci(improved, evaluable.height, level),
    }


def reader_agreement(tracts: pl.DataFrame) -> dict[str, Any]:
    """Kappa R1 vs R2 over completers' treated tracts with both primary reads evaluable."""
    scope = _treated_completers(
        tracts,
        *("r1_evaluable", "r2_evaluable", "r1_healed", "r2_healed", "adj_evaluable"),
        *("adj_healed", "mri_basis", "mri", "mri_reads"),
    )
    pairs = scope.filter(
        pl.col("r1_evaluable").fill_null(False) & pl.col("r2_evaluable").fill_null(False)
    )
    disagree = pairs.filter(pl.col("r1_healed") != pl.col("r2_healed"))
    adjudicated = scope.filter(
        pl.col("adj_evaluable").fill_null(False) & pl.col("mri_basis").eq("adjudicator read")
    )
    with_adj = disagree.filter(pl.col("adj_evaluable").fill_null(False))
    return {
        "kappa": None
        if pairs.is_empty()
        else _round(stats.cohen_kappa(pairs["r1_healed"], pairs["r2_healed"])),
        "pairs": pairs.height,
        "disagreements": disagree.height,
        "adjudicated": adjudicated.height,
        "adjudication_rate": _round(
            stats.proportion(
                adjudicated.height,
                scope.filter(pl.col("mri").is_not_null() | pl.col("mri_reads").gt(0)).height,
            )
        ),
        "adj_sided_with_r1": with_adj.filter(pl.col("adj_healed") == pl.col("r1_healed")).height,
        "adj_sided_with_r2": with_adj.filter(pl.col("adj_healed") == pl.col("r2_healed")).height,
    }


def committee_overrides(tracts: pl.DataFrame, conflicts: pl.DataFrame) -> dict[str, Any]:
    """Decisions in force per conflict type, and how many changed the rule's outcome."""
    decided = conflicts.filter(pl.col("status") == "DECIDED")
    by_type = decided.group_by("type").agg(decisions=pl.len()).sort("type")
    overrides = tracts.filter(pl.col("decided_by") == "COMMITTEE")
    changed = (
        overrides.filter(pl.col("outcome") != pl.col("rule_outcome"))
        .group_by("override_conflict_type")
        .agg(changed=pl.len())
    )
    changed_by = dict(changed.iter_rows())
    return {
        "by_type": {
            t: {"decisions": n, "outcome_changed": changed_by.get(t, 0)}
            for t, n in by_type.iter_rows()
        },
        "tracts_overridden": overrides.height,
        "outcomes_changed": int(sum(changed_by.values())),
        "open_conflicts": conflicts.filter(pl.col("status") == "OPEN").height,
    }


def pathology_table(
    pathology: pl.DataFrame, tracts: pl.DataFrame, conflicts: pl.DataFrame
) -> dict[str, Any]:
    """Medians per injection visit and paired Wilcoxon INJ1 vs INJ3 per marker (adequate
    specimens of treated tracts only; the first report of a tract and visit pairs). A report
    filed under a tract id the committee MAPPED to a registry tract counts for that tract, as
    the exams and reads do."""
    key = ["subject_id", "tract_id"]
    treated = tracts.lazy().filter(pl.col("treated")).select(key)
    remap = tract_mappings(conflicts.lazy()).filter(pl.col("decision_status") == "MAPPED")
    remap = remap.select(*key, "maps_to").collect()
    adequate = pathology.lazy().filter(pl.col("specimen_adequate")).select(*key, "visit", *MARKERS)
    if remap.height:  # usually none: then no join
        adequate = adequate.join(remap.lazy(), on=key, how="left").with_columns(
            tract_id=pl.coalesce("maps_to", "tract_id")
        )
    adequate = adequate.join(treated, on=key, how="semi").collect().lazy()  # read twice below
    by_visit = (
        adequate.filter(pl.col("visit").is_in(PATHOLOGY_VISITS))
        .group_by("visit")
        .agg(*[pl.col(m).median() for m in MARKERS], n=pl.len())
    )
    first = adequate.filter(pl.col("visit").is_in(["INJ1", "INJ3"])).unique(
        [*key, "visit"], keep="first", maintain_order=True
    )
    paired = (
        first.filter(pl.col("visit") == "INJ1")
        .select(*key, *MARKERS)
        .join(first.filter(pl.col("visit") == "INJ3").select(*key, *MARKERS), on=key, suffix="_3")
    )
    by_visit, paired = pl.collect_all([by_visit, paired])
    found = {row["visit"]: row for row in by_visit.iter_rows(named=True)}
    medians = {
        visit: {m: _round(found.get(visit, {}).get(m)) for m in MARKERS}
        | {"n": found.get(visit, {}).get("n", 0)}
        for visit in PATHOLOGY_VISITS
    }
    tests = {}
    for marker in MARKERS:
        both = paired.select(pl.col(marker, f"{marker}_3").cast(pl.Float64)).drop_nulls()
        result = stats.paired_wilcoxon(both[marker], both[f"{marker}_3"])
        tests[marker] = None if result is None else asdict(result)
    return {"medians": medians, "inj1_vs_inj3": tests}


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def build_report(
    tracts: pl.DataFrame,
    patients: pl.DataFrame,
    conflicts: pl.DataFrame,
    pathology: pl.DataFrame,
    *,
    level: float,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """Every table of PROTOCOL.md's "Reports" as one JSON-ready dict."""
    by_outcome = tract_tables(
        tracts, ["outcome", "admire_outcome", "clinical_only_outcome", "in_window_outcome"], level
    )
    sensitivity: dict[str, Any] = {
        "ADMIRE_COMBINED": {
            "completers": completer_table(patients, "admire_category", level),
            "tracts": by_outcome["admire_outcome"],
        },
        "CLINICAL_ONLY": {
            "completers": completer_table(patients, "clinical_only_category", level),
            "tracts": by_outcome["clinical_only_outcome"],
        },
    }
    completers = patients.filter(pl.col("subject_status") == "COMPLETED")
    responders = completers.filter(pl.col("response_50").fill_null(False)).height
    sensitivity["RESPONSE_50"] = {
        "completers": {
            "n": completers.height,
            "responders": responders,
            "unknown": completers.filter(pl.col("response_50").is_null()).height,
            "percent": _pct(responders, completers.height),
            "ci": _ci(responders, completers.height, level),
        }
    }
    sensitivity["IN_WINDOW"] = {
        "completers": completer_table(patients, "in_window_category", level),
        "tracts": by_outcome["in_window_outcome"],
    }
    assert tuple(sensitivity) == DEFINITIONS
    return {
        **meta,
        "completers": completer_table(patients, "category", level),
        "itt": itt_table(patients, "category", level),
        "tracts": by_outcome["outcome"],
        "discharge_improved": discharge_table(tracts, level),
        "sensitivity": sensitivity,
        "readers": reader_agreement(tracts),
        "committee": committee_overrides(tracts, conflicts),
        "pathology": pathology_table(pathology, tracts, conflicts),
    }
