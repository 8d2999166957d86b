"""SDTM findings about the fistula tracts: TU (each tract identified as a lesion), TR (the
clinical exam and MRI read results per tract and visit) and MI (the pathology markers), with
their supplemental qualifiers (SUPPTU, SUPPMI)."""

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
from services.export.source import Inputs
from services.export.spec import standard

EVALUATOR_IDS = {"R1": "READER 1", "R2": "READER 2", "ADJ": "ADJUDICATOR"}


def supp(
    parent: pl.DataFrame, rdomain: str, idvar: str, qnam: str, qval: pl.Expr, qorig: str, study: str
) -> pl.DataFrame:
    """SUPP-- rows for one qualifier: one per parent row whose value is not null."""
    label = standard("sdtm").datasets[f"SUPP{rdomain}"].qnams[qnam]["label"]
    return parent.select(
        STUDYID=pl.lit(study),
        RDOMAIN=pl.lit(rdomain),
        USUBJID="USUBJID",
        IDVAR=pl.lit(idvar),
        IDVARVAL=pl.col(idvar).cast(pl.String),
        QNAM=pl.lit(qnam),
        QLABEL=pl.lit(label),
        QVAL=qval.cast(pl.String),
        QORIG=pl.lit(qorig),
        QEVAL=pl.lit(None, pl.String),
    ).filter(pl.col("QVAL").is_not_null())


def _visit(inp: Inputs, visit: pl.Expr) -> dict[str, pl.Expr]:
    return {
        "VISITNUM": visit_number(visit, inp.design),
        "VISIT": visit,
        "EPOCH": epoch_of_visit(visit, inp.design),
    }


def tu(inp: Inputs) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Registry tracts (TARGET when treated, NON-TARGET otherwise) and the committee's new ones."""
    baseline = inp.rules.visits[0]
    subjects = inp.subjects.select("subject_id", "USUBJID", "first_dose", "enrolled_on")
    registry = (
        inp.evidence["tract"]
        .join(subjects, on="subject_id")
        .with_columns(
            _day=pl.coalesce("first_dose", "enrolled_on"),
            _visit=pl.when(pl.col("first_dose").is_not_null()).then(pl.lit(baseline)),
            _result=pl.when("treated").then(pl.lit("TARGET")).otherwise(pl.lit("NON-TARGET")),
            _method=pl.lit("PHYSICAL EXAMINATION"),
            _eval=pl.lit("INVESTIGATOR"),
        )
    )
    new = inp.new_tracts.join(subjects, on="subject_id").with_columns(
        _day=pl.col("decided_at").dt.date(),
        _visit=pl.lit(None, pl.String),
        _result=pl.lit("NEW"),
        _method=pl.lit(None, pl.String),
        _eval=pl.lit("ADJUDICATION COMMITTEE"),
    )
    columns = [
        "subject_id",
        "tract_id",
        "USUBJID",
        "first_dose",
        "_day",
        "_visit",
        "_result",
        "_method",
        "_eval",
    ]
    tracts = pl.concat([registry.select(columns), new.select(columns)])
    frame = tracts.select(
        STUDYID=pl.lit(inp.study),
        DOMAIN=pl.lit("TU"),
        USUBJID="USUBJID",
        TULNKID="tract_id",
        TUTESTCD=pl.lit("TUMIDENT"),
        TUTEST=pl.lit("Tumor Identification"),
        TUORRES="_result",
        TUSTRESC="_result",
        TULOC=pl.lit("PERIANAL REGION"),
        TUMETHOD="_method",
        TUEVAL="_eval",
        **_visit(inp, pl.col("_visit")),
        TUDTC=iso_date("_day"),
        TUDY=study_day(pl.col("_day"), pl.col("first_dose")),
    )
    frame = with_seq(frame, "TUSEQ", ["TULNKID"])
    keyed = (
        inp.evidence["tract"]
        .join(subjects, on="subject_id")
        .join(frame.select("USUBJID", "TUSEQ", tract_id="TULNKID"), on=["USUBJID", "tract_id"])
    )
    qualifiers = pl.concat(
        [
            supp(keyed, "TU", "TUSEQ", "PARKSTYP", pl.col("parks_type"), "CRF", inp.study),
            supp(
                keyed, "TU", "TUSEQ", "CLOCKPOS", pl.col("external_opening_clock"), "CRF", inp.study
            ),
            supp(
                keyed,
                "TU",
                "TUSEQ",
                "DRAINBL",
                yes_no(pl.col("draining_at_baseline")),
                "CRF",
                inp.study,
            ),
        ]
    )
    return frame, qualifiers


def _result(
    code: str, value: pl.Expr, numeric: pl.Expr | None = None, unit: str | None = None
) -> pl.Expr:
    """One TR/MI test as a struct: code, original and standard results, status."""
    spec = {**standard("sdtm").datasets["TR"].tests, **standard("sdtm").datasets["MI"].tests}[code]
    number = value.cast(pl.Float64, strict=False)
    whole = number.is_not_null() & (number == number.floor()) & (number.abs() < 1e15)
    text = (
        pl.when(whole).then(number.cast(pl.Int64).cast(pl.String)).otherwise(value.cast(pl.String))
    )
    return pl.struct(
        code=pl.lit(code),
        test=pl.lit(spec["test"]),
        orres=text,
        stresc=text,
        stresn=numeric.cast(pl.Float64) if numeric is not None else pl.lit(None, pl.Float64),
        unit=pl.when(value.is_not_null()).then(pl.lit(unit)) if unit else pl.lit(None, pl.String),
        stat=pl.when(value.is_null()).then(pl.lit("NOT DONE")),
        method=pl.lit(spec.get("method")),
    )


def _long(frame: pl.DataFrame, results: list[pl.Expr]) -> pl.DataFrame:
    """One row per record and test (the results' structs exploded)."""
    return (
        frame.with_columns(_r=pl.concat_list(results))
        .explode("_r")
        .unnest("_r")
        .filter(pl.col("code").is_not_null())
    )


def tr(inp: Inputs) -> pl.DataFrame:
    """Exam results per tract and visit (investigator) and MRI read results (central readers)."""
    grade = pl.col("discharge_grade")
    exams = _long(
        inp.evidence["clinical_exam"],
        [
            _result("EXTOPEN", pl.col("external_opening")),
            _result("DRAINCMP", yes_no(pl.col("drains_on_compression"))),
            _result("DISCHGR", grade, grade),
        ],
    ).select(
        "subject_id",
        "code",
        "test",
        "orres",
        "stresc",
        "stresn",
        "unit",
        "stat",
        "method",
        spid="record_id",
        tract="tract_id",
        visit="visit",
        day="exam_date",
        evaluator=pl.lit("INVESTIGATOR"),
        evalid=pl.lit(None, pl.String),
    )
    size = pl.col("collection_mm")
    has = size.is_not_null()
    dims = [
        pl.when(has).then(
            _result(
                f"COLLDIM{i + 1}",
                size.list.get(i, null_on_oob=True),
                size.list.get(i, null_on_oob=True),
                "mm",
            )
        )
        for i in range(3)
    ]
    reads = _long(
        inp.evidence["mri_read"],
        [
            _result("IMGQUAL", pl.col("image_quality")),
            _result("T2HYPER", yes_no(pl.col("t2_hyperintense"))),
            _result("FIBROTIC", yes_no(pl.col("fibrotic"))),
            _result("CONTRAST", yes_no(pl.col("contrast_given"))),
            _result("ENHANCE", yes_no(pl.col("enhancement"))),
            _result("COLLPRES", yes_no(has)),
            *dims,
        ],
    ).select(
        "subject_id",
        "code",
        "test",
        "orres",
        "stresc",
        "stresn",
        "unit",
        "stat",
        "method",
        spid="read_id",
        tract="tract_id",
        visit="timepoint",
        day="scan_date",
        evaluator=pl.lit("INDEPENDENT ASSESSOR"),
        evalid=pl.col("reader_role").replace_strict(EVALUATOR_IDS, return_dtype=pl.String),
    )
    subjects = inp.subjects.select("subject_id", "USUBJID", "first_dose")
    frame = (
        pl.concat([exams, reads])
        .join(subjects, on="subject_id")
        .select(
            STUDYID=pl.lit(inp.study),
            DOMAIN=pl.lit("TR"),
            USUBJID="USUBJID",
            TRSPID="spid",
            TRLNKID="tract",
            TRTESTCD="code",
            TRTEST="test",
            TRORRES="orres",
            TRORRESU="unit",
            TRSTRESC="stresc",
            TRSTRESN="stresn",
            TRSTRESU="unit",
            TRSTAT="stat",
            TRMETHOD="method",
            TREVAL="evaluator",
            TREVALID="evalid",
            **_visit(inp, pl.col("visit")),
            TRDTC=iso_date("day"),
            TRDY=study_day(pl.col("day"), pl.col("first_dose")),
        )
    )
    return with_seq(frame, "TRSEQ", ["TRLNKID", "VISITNUM", "TRDTC", "TRSPID", "TRTESTCD"])


def mi(inp: Inputs) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Pathology markers per biopsy; specimen adequacy as a qualifier of the sample."""
    markers = [
        ("INFLGR", "inflammation_grade", None),
        ("FIBRGR", "fibrosis_grade", None),
        ("CD68", "cd68_per_hpf", "/HPF"),
        ("CD20", "cd20_per_hpf", "/HPF"),
        ("CD31", "cd31_per_hpf", "/HPF"),
    ]
    reports = inp.evidence["pathology_report"]
    subjects = inp.subjects.select("subject_id", "USUBJID", "first_dose")
    frame = (
        _long(reports, [_result(code, pl.col(c), pl.col(c), unit) for code, c, unit in markers])
        .join(subjects, on="subject_id")
        .select(
            STUDYID=pl.lit(inp.study),
            DOMAIN=pl.lit("MI"),
            USUBJID="USUBJID",
            MIREFID="sample_id",
            MISPID="report_id",
            FOCID="tract_id",
            MITESTCD="code",
            MITEST="test",
            MIORRES="orres",
            MIORRESU="unit",
            MISTRESC="stresc",
            MISTRESN="stresn",
            MISTRESU="unit",
            MISTAT="stat",
            MISPEC=pl.lit("TISSUE"),
            MIMETHOD="method",
            **_visit(inp, pl.col("visit")),
            MIDTC=iso_date("collected_on"),
            MIDY=study_day(pl.col("collected_on"), pl.col("first_dose")),
        )
    )
    frame = with_seq(frame, "MISEQ", ["FOCID", "VISITNUM", "MIDTC", "MISPID", "MITESTCD"])
    samples = reports.join(subjects, on="subject_id").unique(["USUBJID", "sample_id"], keep="last")
    qualifiers = supp(
        samples.rename({"sample_id": "MIREFID"}),
        "MI",
        "MIREFID",
        "SPECADEQ",
        yes_no(pl.col("specimen_adequate")),
        "eDT",
        inp.study,
    )
    return frame, qualifiers
