"""Deliberately broken exports fail the conformance suite with the rule and the record named."""

from __future__ import annotations

import polars as pl
import pytest

from services.export.codelists import resolve
from services.export.conformance import Report, check, rules
from services.export.errors import ConformanceError
from services.export.package import Package
from services.export.source import study_design
from services.export.spec import standard
from tests.store.trials import STUDY


def run(frames: dict[str, pl.DataFrame]) -> Report:
    standards = [standard("sdtm"), standard("adam")]
    specs = {n: d for s in standards for n, d in s.datasets.items()}
    return check(frames, specs, resolve(standards, study_design()))


def frames_of(package: Package) -> dict[str, pl.DataFrame]:
    return package.datasets["sdtm"] | package.datasets["adam"]


def errors(report: Report, rule: str) -> list[str]:
    return [str(f) for f in report.errors if f.rule == rule]


def test_the_demo_export_has_no_error(demo_package: Package) -> None:
    report = run(frames_of(demo_package))
    assert report.errors == ()
    assert report.rules == len(rules())
    # Demographics are not in the transfer files: warned about, never invented.
    assert {(f.dataset, f.variable) for f in report.warnings} >= {("DM", "SEX"), ("DM", "COUNTRY")}


def test_a_subject_missing_from_dm_is_named_in_every_dataset(demo_package: Package) -> None:
    frames = frames_of(demo_package)
    frames["DM"] = frames["DM"].filter(pl.col("USUBJID") != f"{STUDY}-S07")
    found = errors(run(frames), "TR-DM-001")
    assert found and all(f"USUBJID {STUDY}-S07" in f for f in found)
    assert any(f.startswith("TR-DM-001 DS record 13 ") for f in found), found[:3]
    with pytest.raises(ConformanceError, match="TR-DM-001 DS record 13"):
        run(frames).raise_on_errors()


def test_a_null_usubjid_in_dm_is_a_required_value_missing(demo_package: Package) -> None:
    frames = frames_of(demo_package)
    frames["DM"] = (
        frames["DM"]
        .with_row_index()
        .with_columns(USUBJID=pl.when(pl.col("index") == 4).then(None).otherwise(pl.col("USUBJID")))
        .drop("index")
    )
    assert errors(run(frames), "TR-REQ-001") == [
        "TR-REQ-001 DM record 5 USUBJID=None: a Required variable is missing or null"
    ]


def test_a_value_outside_its_codelist_is_named(demo_package: Package) -> None:
    frames = frames_of(demo_package)
    rs = frames["RS"].with_row_index()
    row = rs.filter(pl.col("RSTESTCD") == "TRCLOSE")["index"][0]
    frames["RS"] = rs.with_columns(
        RSSTRESC=pl.when(pl.col("index") == row).then(pl.lit("MOSTLY_CLOSED")).otherwise("RSSTRESC")
    ).drop("index")
    found = errors(run(frames), "TR-CT-001")
    assert found == [
        f"TR-CT-001 RS record {row + 1} (USUBJID {rs['USUBJID'][row]}) RSSTRESC='MOSTLY_CLOSED': "
        "value not in the variable's codelist"
    ]


def test_a_result_outside_its_tests_codelist_is_named(demo_package: Package) -> None:
    frames = frames_of(demo_package)
    tr = frames["TR"].with_row_index()
    row = tr.filter(pl.col("TRTESTCD") == "EXTOPEN")["index"][0]
    frames["TR"] = tr.with_columns(
        TRORRES=pl.when(pl.col("index") == row).then(pl.lit("AJAR")).otherwise("TRORRES")
    ).drop("index")
    assert [f.record for f in run(frames).errors if f.rule == "TR-CT-002"] == [row + 1]


def test_a_duplicate_key_is_named(demo_package: Package) -> None:
    frames = frames_of(demo_package)
    frames["TU"] = pl.concat([frames["TU"], frames["TU"].slice(2, 1)])
    found = [f for f in run(frames).errors if f.rule == "TR-KEY-001" and f.dataset == "TU"]
    assert [f.record for f in found] == [3, frames["TU"].height]
    assert found[0].value.startswith(f"{STUDY}|{STUDY}-")


def test_an_adrs_record_without_its_source_is_named(demo_package: Package) -> None:
    frames = frames_of(demo_package)
    frames["ADRS"] = (
        frames["ADRS"]
        .with_row_index()
        .with_columns(SRCSEQ=pl.when(pl.col("index") == 9).then(999).otherwise("SRCSEQ"))
        .drop("index")
    )
    found = errors(run(frames), "TR-TRACE-001")
    assert len(found) == 1 and found[0].startswith("TR-TRACE-001 ADRS record 10 ")
    assert "SRCDOM+SRCSEQ='RS.999'" in found[0]


def test_a_supplemental_qualifier_without_its_parent_is_named(demo_package: Package) -> None:
    frames = frames_of(demo_package)
    frames["SUPPTU"] = frames["SUPPTU"].with_columns(
        IDVARVAL=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("77")).otherwise("IDVARVAL")
    )
    assert [f.record for f in run(frames).errors if f.rule == "TR-SUPP-001"] == [1]


def test_a_date_that_is_not_iso_8601_is_named(demo_package: Package) -> None:
    frames = frames_of(demo_package)
    frames["EX"] = frames["EX"].with_columns(
        EXSTDTC=pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("08/01/2024")).otherwise("EXSTDTC")
    )
    assert [(f.record, f.value) for f in run(frames).errors if f.rule == "TR-DTC-001"] == [
        (2, "08/01/2024")
    ]
