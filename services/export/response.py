"""SDTM RS (disease response): per treated tract and per subject, each response by the
protocol's definition with its evaluator, and the adjudication committee's decision in force.

Tract responses come from the lock's ``tract_outcomes`` (rule outcomes, reads that counted,
``decided_by``/``decision_id``), subject responses from ``patient_outcomes``. The rule's
record and the committee's record of a tract both appear; RSACPTFL marks the one in force.
"""

from __future__ import annotations

import polars as pl

from services.export.common import (
    epoch_of_visit,
    iso_date,
    study_day,
    visit_number,
    with_seq,
    yes_no,
)
from services.export.findings import EVALUATOR_IDS, supp
from services.export.source import TRACT_KEY, Inputs
from services.export.spec import standard

CATEGORY = "PERIANAL FISTULA RESPONSE"
WITHDRAWN = pl.col("subject_status") == "WITHDRAWN"


def _pending(outcome: str) -> pl.Expr:
    return pl.col(outcome).fill_null("PENDING")


def _tract_dates(inp: Inputs) -> pl.DataFrame:
    """Per tract: the primary-visit exam date, the scan date of each counted read, the decision time."""
    rules = inp.rules
    exams = (
        inp.evidence["clinical_exam"]
        .filter(pl.col("visit") == rules.primary_visit)
        .group_by(TRACT_KEY)
        .agg(exam_day=pl.col("exam_date").max())
    )
    scans = inp.evidence["mri_read"].select("event_id", "scan_date")
    frame = inp.tracts.filter("treated").join(exams, on=TRACT_KEY, how="left")
    for role in ("r1", "r2", "adj"):
        frame = frame.join(
            scans.rename({"event_id": f"{role}_event_id", "scan_date": f"{role}_scan"}),
            on=f"{role}_event_id",
            how="left",
        )
    decided = (
        inp.conflicts.select("decision_id", "decided_at")
        .drop_nulls("decision_id")
        .unique("decision_id")
    )
    return frame.join(decided, on="decision_id", how="left").with_columns(
        mri_day=pl.max_horizontal("r1_scan", "r2_scan", "adj_scan"),
        outcome_day=pl.max_horizontal("exam_day", "r1_scan", "r2_scan", "adj_scan"),
    )


_QUALIFIERS = ("_decision", "_conflict", "_basis", "_rule")


def _rows(
    frame: pl.DataFrame,
    code: str,
    value: pl.Expr,
    *,
    visit: str | None,
    day: pl.Expr,
    evaluator: str | None = None,
    evalid: pl.Expr | None = None,
    accepted: pl.Expr | None = None,
    not_done: pl.Expr | None = None,
    reason: str | None = None,
    tract: bool = True,
    qualifiers: dict[str, pl.Expr] | None = None,
) -> pl.DataFrame:
    """RS rows of one test; ``not_done`` rows have no result and RSSTAT NOT DONE (``reason``).
    ``qualifiers`` (``_decision``, ``_conflict``, ``_basis``, ``_rule``) become SUPPRS rows."""
    not_done = pl.lit(False) if not_done is None else not_done.fill_null(True)
    extra = {name: pl.lit(None, pl.String) for name in _QUALIFIERS} | (qualifiers or {})
    return frame.select(
        "subject_id",
        tract_id=pl.col("tract_id") if tract else pl.lit(None, pl.String),
        code=pl.lit(code),
        result=pl.when(~not_done).then(value),
        stat=pl.when(not_done).then(pl.lit("NOT DONE")),
        reasnd=pl.when(not_done).then(pl.lit(reason, pl.String)),
        evaluator=pl.lit(evaluator, pl.String),
        evalid=pl.lit(None, pl.String) if evalid is None else evalid,
        accepted=pl.lit(None, pl.String) if accepted is None else accepted,
        visit=pl.lit(visit, pl.String),
        day=day,
        **{name: expr.cast(pl.String) for name, expr in extra.items()},
    )


def _tract_rows(inp: Inputs) -> list[pl.DataFrame]:
    rules = inp.rules
    tracts = _tract_dates(inp)
    withdrawn = "SUBJECT WITHDRAWN"
    primary, final = rules.primary_visit, rules.final_mri
    committee = tracts.filter(pl.col("decided_by") == "COMMITTEE")
    fu6 = pl.col("fu6_closed")
    rule = pl.concat_str(
        [pl.col("rule_set"), pl.lit("@v"), pl.col("rule_set_version").cast(pl.String)]
    )
    rows = [
        _rows(
            tracts,
            "CLINCLS",
            _pending("clinical"),
            visit=primary,
            day=pl.col("exam_day"),
            evaluator="INVESTIGATOR",
            not_done=WITHDRAWN,
            reason=withdrawn,
            qualifiers={"_basis": pl.col("clinical_reason")},
        ),
        _rows(
            tracts,
            "PVCLS",
            pl.when(fu6)
            .then(pl.lit("CLOSED"))
            .when(~fu6)
            .then(pl.lit("NOT_CLOSED"))
            .otherwise(pl.lit("PENDING")),
            visit=primary,
            day=pl.col("exam_day"),
            evaluator="INVESTIGATOR",
            not_done=WITHDRAWN,
            reason=withdrawn,
        ),
        _rows(
            tracts,
            "MRICONS",
            _pending("mri"),
            visit=final,
            day=pl.col("mri_day"),
            not_done=WITHDRAWN,
            reason=withdrawn,
            qualifiers={"_basis": pl.col("mri_basis")},
        ),
        _rows(
            tracts,
            "MRINOCOL",
            yes_no(pl.col("mri_dry") == "HEALED"),
            visit=final,
            day=pl.col("mri_day"),
            not_done=WITHDRAWN | pl.col("mri_dry").is_null(),
            reason="NO MRI CONSENSUS",
        ),
        _rows(
            tracts,
            "TRCLOSE",
            pl.col("rule_outcome"),
            visit=primary,
            day=pl.col("outcome_day"),
            accepted=pl.when(pl.col("decided_by") == "RULE").then(pl.lit("Y")),
            not_done=WITHDRAWN,
            reason=withdrawn,
            qualifiers={"_rule": rule},
        ),
        _rows(
            committee,
            "TRCLOSE",
            pl.col("outcome"),
            visit=primary,
            day=pl.col("decided_at").dt.date(),
            evaluator="ADJUDICATION COMMITTEE",
            accepted=pl.lit("Y"),
            qualifiers={
                "_decision": pl.col("decision_id"),
                "_conflict": pl.col("override_conflict_type"),
                "_rule": rule,
            },
        ),
        _rows(
            tracts,
            "ADMCLS",
            pl.col("admire_outcome"),
            visit=primary,
            day=pl.col("outcome_day"),
            not_done=WITHDRAWN,
            reason=withdrawn,
        ),
        _rows(
            tracts,
            "DISCHIMP",
            yes_no(pl.col("discharge_improved")),
            visit=primary,
            day=pl.col("exam_day"),
            not_done=WITHDRAWN | pl.col("discharge_improved").is_null(),
            reason="DISCHARGE GRADE MISSING OR INCONSISTENT",
        ),
    ]
    for role, label in EVALUATOR_IDS.items():
        prefix = role.lower()
        read = tracts.filter(pl.col(f"{prefix}_event_id").is_not_null())
        healed = pl.col(f"{prefix}_healed")
        rows.append(
            _rows(
                read,
                "MRIHEAL",
                pl.when(healed).then(pl.lit("HEALED")).otherwise(pl.lit("NOT_HEALED")),
                visit=final,
                day=pl.col(f"{prefix}_scan"),
                evaluator="INDEPENDENT ASSESSOR",
                evalid=pl.lit(label),
                not_done=~pl.col(f"{prefix}_evaluable"),
                reason="IMAGE QUALITY INADEQUATE",
            )
        )
    return rows


def _subject_rows(inp: Inputs, tract_rows: pl.DataFrame) -> list[pl.DataFrame]:
    # The assessments' dates, not the committee's decision dates.
    last = (
        tract_rows.filter((pl.col("code") == "TRCLOSE") & pl.col("evaluator").is_null())
        .group_by("subject_id")
        .agg(tract_day=pl.col("day").max())
    )
    patients = (
        inp.patients.join(
            inp.subjects.select("subject_id", "withdrawn_on"), on="subject_id", how="left"
        )
        .join(last, on="subject_id", how="left")
        .with_columns(
            _day=pl.when(WITHDRAWN).then(pl.col("withdrawn_on")).otherwise(pl.col("tract_day")),
        )
    )
    completed = patients.filter(pl.col("subject_status") == "COMPLETED")
    others = patients.filter(pl.col("subject_status") != "COMPLETED")
    visit = inp.rules.primary_visit
    rows = []
    for code, column in (
        ("OVRLRESP", "category"),
        ("OVRLADM", "admire_category"),
        ("OVRLCLN", "clinical_only_category"),
    ):
        rows.append(
            _rows(completed, code, pl.col(column), visit=visit, day=pl.col("_day"), tract=False)
        )
        rows.append(
            _rows(others, code, pl.col(column), visit=None, day=pl.col("_day"), tract=False)
        )
    rows.append(
        _rows(
            patients,
            "RESP50",
            yes_no(pl.col("response_50")),
            visit=visit,
            day=pl.col("_day"),
            tract=False,
            not_done=WITHDRAWN | pl.col("response_50").is_null(),
            reason="PRIMARY VISIT STATUS UNKNOWN",
        )
    )
    return rows


def rs(inp: Inputs) -> tuple[pl.DataFrame, pl.DataFrame]:
    """RS and SUPPRS."""
    tests = standard("sdtm").datasets["RS"].tests
    tract_rows = pl.concat(_tract_rows(inp))
    rows = pl.concat([tract_rows, *_subject_rows(inp, tract_rows)])
    subjects = inp.subjects.select("subject_id", "USUBJID", "first_dose")
    visit = pl.col("visit")
    frame = rows.join(subjects, on="subject_id").with_columns(
        STUDYID=pl.lit(inp.study),
        DOMAIN=pl.lit("RS"),
        RSLNKID="tract_id",
        RSTESTCD="code",
        RSTEST=pl.col("code").replace_strict(
            {c: t["test"] for c, t in tests.items()}, return_dtype=pl.String
        ),
        RSCAT=pl.lit(CATEGORY),
        RSORRES="result",
        RSSTRESC="result",
        RSSTAT="stat",
        RSREASND="reasnd",
        RSEVAL="evaluator",
        RSEVALID="evalid",
        RSACPTFL="accepted",
        VISITNUM=visit_number(visit, inp.design),
        VISIT=visit,
        EPOCH=epoch_of_visit(visit, inp.design),
        RSDTC=iso_date("day"),
        RSDY=study_day(pl.col("day"), pl.col("first_dose")),
    )
    frame = with_seq(frame, "RSSEQ", ["RSLNKID", "RSTESTCD", "RSEVAL", "RSEVALID"])
    qualifiers = pl.concat(
        [
            supp(frame, "RS", "RSSEQ", "DECISID", pl.col("_decision"), "Assigned", inp.study),
            supp(frame, "RS", "RSSEQ", "CONFTYPE", pl.col("_conflict"), "Assigned", inp.study),
            supp(frame, "RS", "RSSEQ", "BASIS", pl.col("_basis"), "Derived", inp.study),
            supp(frame, "RS", "RSSEQ", "RULEID", pl.col("_rule"), "Assigned", inp.study),
        ]
    )
    return frame, qualifiers
