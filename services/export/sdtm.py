"""SDTM (SDTMIG 3.4) from a lock: the subject-level and event domains here (DM, DS, EX, PR),
the findings in ``findings.py`` (TU, TR, MI), the responses in ``response.py`` (RS), the trial
design in ``design.py``. Every frame leaves with exactly the columns of ``schemas/cdisc/sdtm.yaml``."""

from __future__ import annotations

import polars as pl

from services.export import design, findings, response
from services.export.common import (
    epoch_by_date,
    epoch_of_visit,
    iso_date,
    study_day,
    visit_number,
    with_seq,
)
from services.export.source import Inputs
from services.export.spec import conform, standard

TREATED = pl.col("first_dose").is_not_null()


def _base(inp: Inputs, domain: str) -> dict[str, pl.Expr]:
    return {"STUDYID": pl.lit(inp.study), "DOMAIN": pl.lit(domain), "USUBJID": pl.col("USUBJID")}


def dm(inp: Inputs) -> pl.DataFrame:
    meta, arm = inp.design, inp.design["arm"]
    countries = meta.get("countries") or {}
    return inp.subjects.select(
        **_base(inp, "DM"),
        SUBJID="subject_id",
        RFSTDTC=iso_date("first_dose"),
        RFENDTC=iso_date("last_date"),
        RFXSTDTC=iso_date("first_dose"),
        RFXENDTC=iso_date("last_dose"),
        RFICDTC=pl.lit(None, pl.String),
        RFPENDTC=iso_date("last_date"),
        DTHFL=pl.lit(None, pl.String),
        SITEID="site_id",
        AGE=pl.lit(None, pl.Int64),
        AGEU=pl.lit(None, pl.String),
        SEX=pl.lit(None, pl.String),
        ARMCD=pl.lit(arm["code"]),
        ARM=pl.lit(arm["name"]),
        ACTARMCD=pl.when(TREATED).then(pl.lit(arm["code"])),
        ACTARM=pl.when(TREATED).then(pl.lit(arm["name"])),
        ARMNRS=pl.when(~TREATED).then(pl.lit("ASSIGNED, NOT TREATED")),
        COUNTRY=pl.col("site_id").replace_strict(
            countries, default=meta.get("default_country"), return_dtype=pl.String
        ),
    )


def _withdrawal_decode(inp: Inputs) -> pl.Expr:
    reason = pl.col("withdrawal_reason").str.to_lowercase()
    expr: pl.Expr = pl.lit("OTHER")
    for entry in reversed(inp.design["withdrawal_reasons"]):
        expr = (
            pl.when(reason.str.contains(entry["contains"].lower(), literal=True))
            .then(pl.lit(entry["decode"]))
            .otherwise(expr)
        )
    return expr


def ds(inp: Inputs) -> pl.DataFrame:
    subjects = inp.subjects
    milestone = subjects.select(
        **_base(inp, "DS"),
        DSTERM=pl.lit("ENROLLED"),
        DSDECOD=pl.lit("ENROLLED"),
        DSCAT=pl.lit("PROTOCOL MILESTONE"),
        _day=pl.col("enrolled_on"),
        _first=pl.col("first_dose"),
    )
    done = subjects.filter(pl.col("status").is_in(["COMPLETED", "WITHDRAWN"])).select(
        **_base(inp, "DS"),
        DSTERM=pl.when(pl.col("status") == "COMPLETED")
        .then(pl.lit("COMPLETED"))
        .otherwise(pl.col("withdrawal_reason").fill_null("WITHDRAWN, REASON NOT GIVEN")),
        DSDECOD=pl.when(pl.col("status") == "COMPLETED")
        .then(pl.lit("COMPLETED"))
        .otherwise(_withdrawal_decode(inp)),
        DSCAT=pl.lit("DISPOSITION EVENT"),
        _day=pl.when(pl.col("status") == "COMPLETED")
        .then(pl.coalesce("last_visit", "last_date"))
        .otherwise(pl.coalesce("withdrawn_on", "last_date")),
        _first=pl.col("first_dose"),
    )
    frame = pl.concat([milestone, done]).with_columns(
        EPOCH=epoch_by_date(pl.col("_day"), pl.col("_first"), inp.design),
        DSSTDTC=iso_date("_day"),
        DSSTDY=study_day(pl.col("_day"), pl.col("_first")),
    )
    return with_seq(frame, "DSSEQ", ["DSSTDTC", "DSCAT"])


def _first_dose(inp: Inputs) -> pl.DataFrame:
    return inp.subjects.select("subject_id", "USUBJID", "first_dose")


def _visits(inp: Inputs, visit: str) -> dict[str, pl.Expr]:
    return {
        "VISITNUM": visit_number(pl.col(visit), inp.design),
        "VISIT": pl.col(visit),
        "EPOCH": epoch_of_visit(pl.col(visit), inp.design),
    }


def ex(inp: Inputs) -> pl.DataFrame:
    treatment = inp.design["treatment"]
    day = pl.col("administered_on")
    frame = (
        inp.evidence["injection"]
        .join(_first_dose(inp), on="subject_id")
        .select(
            **_base(inp, "EX"),
            EXSPID="record_id",
            FOCID="tract_id",
            EXTRT=pl.lit(treatment["name"]),
            EXDOSE="volume_ml",
            EXDOSU=pl.lit(treatment["dose_unit"]),
            EXDOSFRM=pl.lit(treatment["dose_form"]),
            EXROUTE=pl.lit(treatment["route"]),
            **_visits(inp, "visit"),
            EXSTDTC=iso_date(day),
            EXENDTC=iso_date(day),
            EXSTDY=study_day(day, pl.col("first_dose")),
            EXENDY=study_day(day, pl.col("first_dose")),
        )
    )
    return with_seq(frame, "EXSEQ", ["FOCID", "EXSTDTC", "EXSPID"])


def pr(inp: Inputs) -> pl.DataFrame:
    """MRI scans (one per subject, timepoint and scan date) and biopsies (one per sample)."""
    scans = inp.evidence["mri_read"].select(
        "subject_id",
        spid="timepoint",
        focid=pl.lit(None, pl.String),
        trt=pl.lit("MAGNETIC RESONANCE IMAGING"),
        visit="timepoint",
        day="scan_date",
    )
    biopsies = inp.evidence["pathology_report"].select(
        "subject_id",
        spid="sample_id",
        focid="tract_id",
        trt=pl.lit("BIOPSY"),
        visit="visit",
        day="collected_on",
    )
    frame = (
        pl.concat([scans, biopsies])
        .unique()
        .join(_first_dose(inp), on="subject_id")
        .select(
            **_base(inp, "PR"),
            PRSPID="spid",
            FOCID="focid",
            PRTRT="trt",
            **_visits(inp, "visit"),
            PRSTDTC=iso_date("day"),
            PRSTDY=study_day(pl.col("day"), pl.col("first_dose")),
        )
    )
    return with_seq(frame, "PRSEQ", ["PRSTDTC", "PRTRT", "FOCID", "PRSPID"])


def build_sdtm(inp: Inputs) -> dict[str, pl.DataFrame]:
    """Every SDTM dataset of the export, conformed to its spec, by name."""
    tu, supptu = findings.tu(inp)
    mi, suppmi = findings.mi(inp)
    rs, supprs = response.rs(inp)
    frames = {
        "DM": dm(inp),
        "DS": ds(inp),
        "EX": ex(inp),
        "PR": pr(inp),
        "TU": tu,
        "TR": findings.tr(inp),
        "MI": mi,
        "RS": rs,
        "SUPPTU": supptu,
        "SUPPMI": suppmi,
        "SUPPRS": supprs,
        **design.trial_design(inp),
    }
    spec = standard("sdtm")
    return {name: conform(frames[name], spec.datasets[name]) for name in spec.datasets}
