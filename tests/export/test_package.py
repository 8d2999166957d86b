"""`tract export` end to end: the demo and a 1,000-subject trial pass the conformance suite,
the folder is what a submission team expects, and the trial's tables come back from ADaM alone."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyreadstat
import pytest

from services.export.package import Package, build, folders
from services.export.spec import default_study
from tests.export.conftest import LOCK, Locked
from tests.store.trials import STUDY

TRACT = str(Path(sys.executable).parent / "tract")


def adam_frame(out: Path, name: str) -> pl.DataFrame:
    frame, _ = pyreadstat.read_xport(str(out / folders(STUDY)["adam"] / f"{name}.xpt"))
    return pl.from_pandas(frame)


def tables_from_adam(adsl: pl.DataFrame, adrs: pl.DataFrame) -> dict:
    """The primary tables recomputed from ADSL + ADRS with Polars (no platform code)."""
    completers = adsl.filter(pl.col("COMPLFL") == "Y")
    response = adrs.filter((pl.col("PARAMCD") == "OVRLRESP") & (pl.col("ANL01FL") == "Y"))
    counts = dict(response.group_by("AVALC").len().iter_rows())
    tracts = adrs.filter((pl.col("PARAMCD") == "TRCLOSE") & (pl.col("ANL01FL") == "Y"))
    itt = adrs.filter(pl.col("PARAMCD") == "FCLSITT")
    discharge = adrs.filter((pl.col("PARAMCD") == "DISCHIMP") & (pl.col("ANL01FL") == "Y"))
    return {
        "completers": (
            completers.height,
            *(counts.get(c, 0) for c in ("FULL_CLOSURE", "IMPROVED", "RESISTANT")),
        ),
        "tracts": (tracts.filter(pl.col("CRIT1FL") == "Y").height, tracts.height),
        "itt": (itt.filter(pl.col("CRIT1FL") == "Y").height, itt.height),
        "discharge": (
            discharge.filter(pl.col("AVALC") == "Y").height,
            discharge.filter(pl.col("AVALC").is_not_null()).height,
        ),
    }


def tables_from_report(report: dict) -> dict:
    c = report["completers"]
    return {
        "completers": (c["n"], c["FULL_CLOSURE"], c["IMPROVED"], c["RESISTANT"]),
        "tracts": (report["tracts"]["closed"], report["tracts"]["treated"]),
        "itt": (report["itt"]["FULL_CLOSURE"], report["itt"]["n"]),
        "discharge": (
            report["discharge_improved"]["improved"],
            report["discharge_improved"]["evaluable"],
        ),
    }


def test_demo_export_is_a_submission_folder_listed_with_hashes(demo_export: Path) -> None:
    listing = json.loads((demo_export / "manifest.json").read_text())
    sdtm, adam = (demo_export / folders(STUDY)[k] for k in ("sdtm", "adam"))
    for name in (
        "dm",
        "ds",
        "ex",
        "pr",
        "tu",
        "tr",
        "mi",
        "rs",
        "supptu",
        "suppmi",
        "supprs",
        "ts",
        "ta",
        "te",
        "tv",
    ):
        assert (sdtm / f"{name}.xpt").is_file() and (sdtm / f"{name}.json").is_file(), name
    for name in ("adsl", "adrs", "adtr"):
        assert (adam / f"{name}.xpt").is_file() and (adam / f"{name}.json").is_file(), name
    assert (sdtm / "define.xml").is_file() and (adam / "define.xml").is_file()
    assert (demo_export / "dictionary" / "DICTIONARY.md").is_file()
    assert listing["lock_id"] == LOCK and listing["conformance"]["errors"] == 0
    for name, entry in listing["files"].items():
        assert hashlib.sha256((demo_export / name).read_bytes()).hexdigest() == entry["sha256"], (
            name
        )
    on_disk = {str(p.relative_to(demo_export)) for p in demo_export.rglob("*") if p.is_file()}
    assert on_disk == set(listing["files"]) | {"manifest.json"}


def test_the_trial_table_comes_back_from_adam_alone(demo_export: Path, demo_lock: Locked) -> None:
    adsl, adrs = adam_frame(demo_export, "adsl"), adam_frame(demo_export, "adrs")
    recomputed = tables_from_adam(adsl, adrs)
    assert recomputed["completers"] == (20, 12, 4, 4)
    assert recomputed["tracts"] == (30, 43)
    assert recomputed == tables_from_report(demo_lock.report)


def test_a_generated_1000_subject_trial_passes_and_matches_its_report(
    synthetic_lock: Locked,
) -> None:
    package = build(synthetic_lock.snapshot)
    assert package.conformance.errors == ()
    assert package.datasets["sdtm"]["DM"].height == 1000
    recomputed = tables_from_adam(
        package.datasets["adam"]["ADSL"], package.datasets["adam"]["ADRS"]
    )
    assert recomputed == tables_from_report(synthetic_lock.report)


def test_every_response_names_its_sdtm_source_and_the_committee_is_visible(
    demo_package: Package, demo_lock: Locked
) -> None:
    sdtm, adam = demo_package.datasets["sdtm"], demo_package.datasets["adam"]
    rs = sdtm["RS"]
    traced = adam["ADRS"].join(
        pl.concat(
            [
                rs.select("USUBJID", SRCDOM=pl.lit("RS"), SRCSEQ="RSSEQ"),
                sdtm["DS"].select("USUBJID", SRCDOM=pl.lit("DS"), SRCSEQ="DSSEQ"),
            ]
        ),
        on=["USUBJID", "SRCDOM", "SRCSEQ"],
        how="anti",
    )
    assert traced.is_empty()
    # S13/T3: clinically closed, MRI not healed; the committee decided NOT_CLOSED.
    t3 = rs.filter(
        (pl.col("USUBJID") == f"{STUDY}-S13")
        & (pl.col("RSLNKID") == "T3")
        & (pl.col("RSTESTCD") == "TRCLOSE")
    )
    committee = t3.filter(pl.col("RSEVAL") == "ADJUDICATION COMMITTEE")
    assert committee["RSSTRESC"].to_list() == ["NOT_CLOSED"] and committee[
        "RSACPTFL"
    ].to_list() == ["Y"]
    assert t3.filter(pl.col("RSEVAL").is_null())["RSACPTFL"].to_list() == [None]
    decision = sdtm["SUPPRS"].filter(
        (pl.col("USUBJID") == f"{STUDY}-S13")
        & (pl.col("IDVARVAL") == str(committee["RSSEQ"][0]))
        & (pl.col("QNAM") == "DECISID")
    )
    outcome = demo_lock.snapshot.tables["tract_outcomes"].filter(
        (pl.col("subject_id") == "S13") & (pl.col("tract_id") == "T3")
    )
    assert outcome["decided_by"].to_list() == ["COMMITTEE"]
    assert decision["QVAL"].to_list() == outcome["decision_id"].to_list()
    readers = rs.filter(
        (pl.col("USUBJID") == f"{STUDY}-S13")
        & (pl.col("RSTESTCD") == "MRIHEAL")
        & (pl.col("RSLNKID") == "T3")
    )
    assert set(readers["RSEVALID"]) == {"READER 1", "READER 2"}


def test_withdrawn_subjects_are_failures_in_itt_by_imputation(demo_package: Package) -> None:
    adrs = demo_package.datasets["adam"]["ADRS"]
    withdrawn = adrs.filter((pl.col("PARAMCD") == "FCLSITT") & (pl.col("DTYPE") == "NRI"))
    assert withdrawn["USUBJID"].to_list() == [f"{STUDY}-S21", f"{STUDY}-S22", f"{STUDY}-S23"]
    assert set(withdrawn["AVALC"]) == {"N"} and set(withdrawn["SRCDOM"]) == {"DS"}
    ds = demo_package.datasets["sdtm"]["DS"]
    reasons = ds.filter(pl.col("DSCAT") == "DISPOSITION EVENT").filter(
        pl.col("DSDECOD") != "COMPLETED"
    )
    assert reasons["DSDECOD"].to_list() == [
        "WITHDRAWAL BY SUBJECT",
        "ADVERSE EVENT",
        "LOST TO FOLLOW-UP",
    ]


def test_a_failing_export_exits_1_names_the_rule_and_record_and_writes_nothing(
    demo_lock: Locked, tmp_path: Path
) -> None:
    # Study metadata whose visit list forgot FU6: every FU6 record breaks the VISIT codelist.
    meta = tmp_path / "study.yaml"
    visits = [v for v in default_study()["visits"] if v["visit"] != "FU6"]
    meta.write_text(json.dumps({"visits": visits}))
    out = tmp_path / "out"
    done = subprocess.run(
        [
            TRACT,
            "--home",
            str(demo_lock.home),
            "export",
            "sdtm",
            "--study",
            STUDY,
            "--lock",
            LOCK,
            "--out",
            str(out),
            "--study-meta",
            str(meta),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 1, done.stderr
    assert "conformance failed" in done.stderr and "TR-CT-001" in done.stderr
    assert "VISIT='FU6'" in done.stderr and "record" in done.stderr
    assert not out.exists()


def test_rule_set_other_than_the_locks_is_refused(demo_lock: Locked, tmp_path: Path) -> None:
    from schemas import rules_path
    from services.adjudicator.ruleset import load_ruleset
    from services.export.errors import ExportError

    other = tmp_path / "rules-v2.yaml"
    other.write_text(rules_path(1).read_text().replace("version: 1", "version: 99"))
    with pytest.raises(ExportError, match="--rules"):
        build(demo_lock.snapshot, rules=load_ruleset(other))
