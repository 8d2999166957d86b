"""SDTM trial design domains (TS, TA, TE, TV) from the study metadata, the rule set and the
locked data (number of subjects, study start, data cut-off)."""

from __future__ import annotations

from typing import Any

import polars as pl

from services.export.source import Inputs
from services.export.spec import standard


def _frame(study: str, domain: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, infer_schema_length=None).with_columns(
        STUDYID=pl.lit(study), DOMAIN=pl.lit(domain)
    )


def primary_outcome_text(inp: Inputs) -> str:
    r = inp.rules
    return (
        f"Per treated tract at {r.primary_visit}: clinical closure sustained over "
        f"{', '.join(r.confirmation_visits)} (>= {r.clinical.min_gap_days} days apart) and healed on "
        f"MRI (no T2-hyperintense tract, no collection > {r.mri.collection_mm:g} mm in >= "
        f"{r.mri.collection_dims} dimensions)"
    )


def ts(inp: Inputs) -> pl.DataFrame:
    meta = inp.design
    subjects = inp.subjects
    start = subjects["enrolled_on"].min()
    values: dict[str, Any] = {
        "TITLE": " ".join(str(meta["title"]).split()),
        "TPHASE": meta["phase"],
        "INDIC": meta["indication"],
        "TRT": meta["treatment"]["name"],
        "ROUTE": meta["treatment"]["route"],
        "STYPE": "INTERVENTIONAL",
        "INTMODEL": "SINGLE GROUP",
        "RANDOM": "N",
        "TBLIND": "OPEN LABEL",
        "TCNTRL": "NONE",
        "NARMS": "1",
        "PLANSUB": meta.get("planned_subjects"),
        "ACTSUB": subjects.height,
        "SSTDTC": None if start is None else str(start),
        "DCUTDTC": inp.locked_at[:10] or None,
        "DCUTDESC": f"DATABASE LOCK {inp.lock_id}" if inp.lock_id else None,
        "OUTMSPRI": primary_outcome_text(inp),
        "SPONSOR": meta.get("sponsor"),
        "SDTIGVER": standard("sdtm").version,
        "SDTMVER": "2.0",
    }
    tests = standard("sdtm").datasets["TS"].tests
    rows = [
        {
            "TSSEQ": 1,
            "TSPARMCD": code,
            "TSPARM": tests[code]["test"],
            "TSVAL": None if value is None else str(value),
            "TSVALNF": "NI" if value is None else None,
        }
        for code, value in values.items()
    ]
    return _frame(inp.study, "TS", rows)


def ta(inp: Inputs) -> pl.DataFrame:
    arm = inp.design["arm"]
    rows = [
        {
            "ARMCD": arm["code"],
            "ARM": arm["name"],
            "TAETORD": i,
            "ETCD": e["code"],
            "ELEMENT": e["name"],
            "EPOCH": e["epoch"],
        }
        for i, e in enumerate(inp.design["elements"], start=1)
    ]
    return _frame(inp.study, "TA", rows)


def te(inp: Inputs) -> pl.DataFrame:
    rows = [
        {
            "ETCD": e["code"],
            "ELEMENT": e["name"],
            "TESTRL": e["start"],
            "TEENRL": e.get("end"),
            "TEDUR": e.get("duration"),
        }
        for e in inp.design["elements"]
    ]
    return _frame(inp.study, "TE", rows)


def tv(inp: Inputs) -> pl.DataFrame:
    arm = inp.design["arm"]
    rows = [
        {
            "VISITNUM": float(v["num"]),
            "VISIT": v["visit"],
            "VISITDY": v["day"] + 1 if v["day"] >= 0 else v["day"],
            "ARMCD": arm["code"],
            "ARM": arm["name"],
            "TVSTRL": v["start"],
            "TVENRL": v.get("end"),
        }
        for v in inp.design["visits"]
    ]
    return _frame(inp.study, "TV", rows)


def trial_design(inp: Inputs) -> dict[str, pl.DataFrame]:
    return {"TS": ts(inp), "TA": ta(inp), "TE": te(inp), "TV": tv(inp)}
