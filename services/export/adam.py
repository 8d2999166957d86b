"""ADaM (ADaMIG 1.3) from the SDTM datasets alone: ADSL, ADRS (BDS responses per tract and per
subject) and ADTR (tract status per visit, for the swimmer plot). Every ADRS/ADTR record names
its SDTM source record (SRCDOM, SRCVAR, SRCSEQ), so an analysis traces back to the lock."""

from __future__ import annotations

from typing import Any

import polars as pl

from services.adjudicator.rules.clinical import visit_status
from services.adjudicator.ruleset import RuleSet
from services.export.common import study_day
from services.export.spec import conform, standard

SUBJECT_COLUMNS = ("USUBJID", "SITEID", "TRT01P", "TRT01A", "ITTFL", "COMPLFL", "TRTSDT")


def _date(column: str) -> pl.Expr:
    return pl.col(column).str.to_date("%Y-%m-%d", strict=False)


def adsl(sdtm: dict[str, pl.DataFrame]) -> pl.DataFrame:
    ds = sdtm["DS"]
    disposition = ds.filter(pl.col("DSCAT") == "DISPOSITION EVENT").select(
        "USUBJID", _decod="DSDECOD", _term="DSTERM", EOSDT=_date("DSSTDTC")
    )
    enrolled = ds.filter(pl.col("DSDECOD") == "ENROLLED").select("USUBJID", ENRLDT=_date("DSSTDTC"))
    tracts = (
        sdtm["TU"]
        .filter(pl.col("TUORRES") == "TARGET")
        .group_by("USUBJID")
        .agg(NTRTTR=pl.len().cast(pl.Int64))
    )
    completed = pl.col("_decod") == "COMPLETED"
    return (
        sdtm["DM"]
        .join(disposition, on="USUBJID", how="left")
        .join(enrolled, on="USUBJID", how="left")
        .join(tracts, on="USUBJID", how="left")
        .with_columns(
            TRT01P="ARM",
            TRT01A="ACTARM",
            TRTSDT=_date("RFXSTDTC"),
            TRTEDT=_date("RFXENDTC"),
            ENRLFL=pl.lit("Y"),
            ITTFL=pl.lit("Y"),
            SAFFL=pl.when(pl.col("RFXSTDTC").is_not_null())
            .then(pl.lit("Y"))
            .otherwise(pl.lit("N")),
            COMPLFL=pl.when(completed).then(pl.lit("Y")).otherwise(pl.lit("N")),
            EOSSTT=pl.when(completed)
            .then(pl.lit("COMPLETED"))
            .when(pl.col("_decod").is_not_null())
            .then(pl.lit("DISCONTINUED"))
            .otherwise(pl.lit("ONGOING")),
            DCSREAS=pl.when(~completed).then(pl.col("_decod")),
            DCSREASP=pl.when(~completed).then(pl.col("_term")),
            NTRTTR=pl.col("NTRTTR").fill_null(0),
        )
        .sort("USUBJID")
    )


def _coded(values: dict[str, int]) -> pl.Expr:
    return pl.col("AVALC").replace_strict(values, default=None, return_dtype=pl.Int64)


def _bds(frame: pl.DataFrame, paramcd: str, spec: dict[str, Any]) -> pl.DataFrame:
    """PARAM columns, AVAL from AVALC, CRIT1 from the parameter's responder values."""
    responder = pl.col("AVALC").is_in(spec.get("responder", []))
    return frame.with_columns(
        PARAMCD=pl.lit(paramcd),
        PARAM=pl.lit(spec["param"]),
        PARCAT1=pl.lit(spec["level"]),
        PARCAT2=pl.lit(spec["category"]),
        AVAL=_coded(spec["values"]) if "values" in spec else pl.col("AVAL"),
        CRIT1=pl.lit(spec.get("crit1"), pl.String),
        CRIT1FL=pl.when(pl.lit("crit1" in spec)).then(
            pl.when(responder).then(pl.lit("Y")).otherwise(pl.lit("N"))
        ),
    )


def _from_rs(rs: pl.DataFrame, paramcd: str, spec: dict[str, Any]) -> pl.DataFrame:
    """One record per subject (and tract) from the RS records of the parameter's test."""
    records = rs.filter(pl.col("RSTESTCD") == spec["test"])
    if spec.get("accepted"):
        records = records.filter(pl.col("RSACPTFL") == "Y")
    elif spec["test"] in ("CLINCLS",):
        records = records.filter(pl.col("RSEVAL") == "INVESTIGATOR")
    frame = records.select(
        "USUBJID",
        RSLNKID="RSLNKID",
        AVALC="RSSTRESC",
        ADT=_date("RSDTC"),
        AVISIT="VISIT",
        AVISITN="VISITNUM",
        DTYPE=pl.lit(None, pl.String),
        RSEVAL="RSEVAL",
        SRCDOM=pl.lit("RS"),
        SRCVAR=pl.lit("RSSTRESC"),
        SRCSEQ="RSSEQ",
    )
    return _bds(frame, paramcd, spec)


def _itt(
    rs: pl.DataFrame,
    ds: pl.DataFrame,
    subjects: pl.DataFrame,
    spec: dict[str, Any],
    rules: RuleSet,
    visitnum: float | None,
) -> pl.DataFrame:
    """Full closure over every enrolled subject: completers from OVRLRESP, the others imputed as
    failures (DTYPE = NRI) from their disposition (or enrolment while still in follow-up)."""
    observed = _from_rs(rs, "FCLSITT", spec).with_columns(
        AVALC=pl.when(pl.col("AVALC") == "FULL_CLOSURE").then(pl.lit("Y")).otherwise(pl.lit("N"))
    )
    completers = subjects.filter(pl.col("COMPLFL") == "Y").select("USUBJID")
    observed = observed.join(completers, on="USUBJID", how="semi")
    source = (
        ds.sort("DSSEQ")
        .filter(pl.col("DSCAT") == "DISPOSITION EVENT")
        .unique("USUBJID", keep="last")
        .select("USUBJID", "DSSEQ")
    )
    enrolled = ds.filter(pl.col("DSDECOD") == "ENROLLED").select("USUBJID", _enrol="DSSEQ")
    imputed = (
        subjects.filter(pl.col("COMPLFL") != "Y")
        .select("USUBJID")
        .join(source, on="USUBJID", how="left")
        .join(enrolled, on="USUBJID", how="left")
        .select(
            "USUBJID",
            RSLNKID=pl.lit(None, pl.String),
            AVALC=pl.lit("N"),
            ADT=pl.lit(None, pl.Date),
            AVISIT=pl.lit(rules.primary_visit),
            AVISITN=pl.lit(visitnum, pl.Float64),
            DTYPE=pl.lit("NRI"),
            RSEVAL=pl.lit(None, pl.String),
            SRCDOM=pl.lit("DS"),
            SRCVAR=pl.lit("DSDECOD"),
            SRCSEQ=pl.coalesce("DSSEQ", "_enrol"),
        )
    )
    return _bds(pl.concat([observed.select(imputed.columns), imputed]), "FCLSITT", spec)


def _subject_columns(frame: pl.DataFrame, subjects: pl.DataFrame) -> pl.DataFrame:
    return frame.join(subjects.select(SUBJECT_COLUMNS), on="USUBJID", how="left").with_columns(
        STUDYID=pl.lit(subjects["STUDYID"][0] if subjects.height else None, pl.String),
        ADY=study_day(pl.col("ADT"), pl.col("TRTSDT")),
    )


def _aseq(frame: pl.DataFrame, order: list[str]) -> pl.DataFrame:
    return frame.sort(["USUBJID", *order], nulls_last=True).with_columns(
        ASEQ=pl.int_range(1, pl.len() + 1).over("USUBJID")
    )


def adrs(sdtm: dict[str, pl.DataFrame], subjects: pl.DataFrame, rules: RuleSet) -> pl.DataFrame:
    params = standard("adam").datasets["ADRS"].params
    visitnum = sdtm["TV"].filter(pl.col("VISIT") == rules.primary_visit)["VISITNUM"].first()
    parts = [
        _itt(sdtm["RS"], sdtm["DS"], subjects, spec, rules, visitnum)
        if spec.get("itt")
        else _from_rs(sdtm["RS"], code, spec)
        for code, spec in params.items()
    ]
    frame = _subject_columns(pl.concat(parts, how="diagonal_relaxed"), subjects).with_columns(
        ANL01FL=pl.when((pl.col("PARAMCD") == "FCLSITT") | (pl.col("COMPLFL") == "Y")).then(
            pl.lit("Y")
        )
    )
    return _aseq(frame, ["PARAMCD", "RSLNKID", "AVISITN"])


def _exams(tr: pl.DataFrame) -> pl.DataFrame:
    """TR's clinical exam records back in the shape the clinical.status rule reads."""
    exams = tr.filter(pl.col("TRTESTCD").is_in(["EXTOPEN", "DRAINCMP", "DISCHGR"]))
    return exams.pivot(
        on="TRTESTCD",
        index=["USUBJID", "TRSPID", "TRLNKID", "VISIT", "VISITNUM", "TRDTC"],
        values="TRORRES",
        aggregate_function="first",
    ).select(
        subject_id="USUBJID",
        tract_id="TRLNKID",
        visit="VISIT",
        visitnum="VISITNUM",
        exam_date=_date("TRDTC"),
        external_opening="EXTOPEN",
        drains_on_compression=pl.col("DRAINCMP") == "Y",
        discharge_grade=pl.col("DISCHGR").cast(pl.Int64, strict=False),
        event_id="TRSPID",
    )


def adtr(sdtm: dict[str, pl.DataFrame], subjects: pl.DataFrame, rules: RuleSet) -> pl.DataFrame:
    tr = sdtm["TR"]
    exams = _exams(tr)
    visits = (
        visit_status(exams.lazy())
        .collect()
        .join(exams.select("visit", "visitnum").unique(), on="visit", how="left")
    )
    seq = tr.select("USUBJID", "TRSPID", "TRTESTCD", "TRSEQ")

    def source(test: str) -> pl.DataFrame:
        first = pl.col("event_ids").list.sort().list.first()
        return visits.with_columns(TRSPID=first).join(
            seq.filter(pl.col("TRTESTCD") == test).rename({"USUBJID": "subject_id"}),
            on=["subject_id", "TRSPID"],
            how="left",
        )

    params = standard("adam").datasets["ADTR"].params
    common = {
        "USUBJID": pl.col("subject_id"),
        "TRLNKID": pl.col("tract_id"),
        "ADT": pl.col("exam_date"),
        "AVISIT": pl.col("visit"),
        "AVISITN": pl.col("visitnum"),
        "SRCDOM": pl.lit("TR"),
        "SRCSEQ": pl.col("TRSEQ"),
    }
    status = source("EXTOPEN").select(
        **common,
        AVALC=pl.col("status").fill_null("INCONSISTENT"),
        SRCVAR=pl.lit("TRORRES"),
        BASE=pl.lit(None, pl.Float64),
        ABLFL=pl.lit(None, pl.String),
    )
    status = _bds(status, "TRSTAT", params["TRSTAT"])
    baseline = pl.col("visit") == rules.baseline_discharge_visit
    grade = (
        source("DISCHGR")
        .with_columns(
            BASE=pl.col("discharge_grade")
            .filter(baseline)
            .first()
            .over(["subject_id", "tract_id"])
            .cast(pl.Float64)
        )
        .select(
            **common,
            AVAL=pl.col("discharge_grade").cast(pl.Float64),
            AVALC=pl.lit(None, pl.String),
            SRCVAR=pl.lit("TRSTRESN"),
            BASE="BASE",
            ABLFL=pl.when(baseline).then(pl.lit("Y")),
        )
    )
    grade = _bds(grade, "DISCHGR", params["DISCHGR"]).with_columns(
        CHG=pl.when(pl.col("ABLFL").is_null()).then(pl.col("AVAL") - pl.col("BASE"))
    )
    frame = _subject_columns(
        pl.concat(
            [status.with_columns(CHG=pl.lit(None, pl.Float64)), grade], how="diagonal_relaxed"
        ),
        subjects,
    )
    frame = frame.with_columns(AVAL=pl.col("AVAL").cast(pl.Float64), ANL01FL=pl.lit("Y"))
    return _aseq(frame, ["TRLNKID", "PARAMCD", "AVISITN"])


def build_adam(sdtm: dict[str, pl.DataFrame], rules: RuleSet) -> dict[str, pl.DataFrame]:
    """ADSL, ADRS and ADTR conformed to ``schemas/cdisc/adam.yaml``."""
    subjects = adsl(sdtm)
    frames = {
        "ADSL": subjects,
        "ADRS": adrs(sdtm, subjects, rules),
        "ADTR": adtr(sdtm, subjects, rules),
    }
    spec = standard("adam")
    return {name: conform(frames[name], spec.datasets[name]) for name in spec.datasets}
