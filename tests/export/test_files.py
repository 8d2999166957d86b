"""The written files: XPT v5 round-trips through pyreadstat and pandas, Dataset-JSON matches the
data, define.xml is valid Define-XML 2.1, lists every exported variable and carries the rule
set's thresholds in its derivations."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path

import odmlib
import pandas as pd
import polars as pl
import pyreadstat
import xmlschema
from lxml import etree

from services.adjudicator.ruleset import MriParams
from services.export.codelists import resolve
from services.export.define import define_xml
from services.export.package import Package, folders
from services.export.source import study_design
from services.export.spec import standard
from tests.store.trials import STUDY

NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3", "def": "http://www.cdisc.org/ns/def/v2.1"}
XSD = Path(odmlib.__file__).parent / "schemas" / "define" / "2.1" / "define2-1-0.xsd"


def folder(out: Path, kind: str) -> Path:
    return out / folders(STUDY)[kind]


def test_xpt_files_round_trip_through_pyreadstat_and_pandas(
    demo_export: Path, demo_package: Package
) -> None:
    for kind, frames in demo_package.datasets.items():
        for name, frame in frames.items():
            path = folder(demo_export, kind) / f"{name.lower()}.xpt"
            assert path.read_bytes().startswith(
                b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!"
            )  # v5
            data, meta = pyreadstat.read_xport(str(path))
            spec = standard(kind).datasets[name]
            assert meta.table_name == name and meta.file_label == spec.label
            assert meta.column_names == list(spec.columns)
            assert meta.column_labels == [v.label for v in spec.variables]
            assert len(data) == frame.height
            read_back = pd.read_sas(path, format="xport", encoding="ascii")
            assert list(read_back.columns) == list(spec.columns) and len(read_back) == frame.height
    adsl, meta = pyreadstat.read_xport(str(folder(demo_export, "adam") / "adsl.xpt"))
    assert meta.original_variable_types["TRTSDT"] == "DATE9"
    expected = demo_package.datasets["adam"]["ADSL"]
    assert list(adsl["TRTSDT"]) == expected["TRTSDT"].to_list()
    assert list(adsl["USUBJID"]) == expected["USUBJID"].to_list()
    assert list(adsl["NTRTTR"].astype(int)) == expected["NTRTTR"].to_list()
    rs, _ = pyreadstat.read_xport(str(folder(demo_export, "sdtm") / "rs.xpt"))
    rs_expected = demo_package.datasets["sdtm"]["RS"]
    assert list(rs["RSSTRESC"]) == [
        v or "" for v in rs_expected["RSSTRESC"].to_list()
    ]  # SAS: blank


def test_dataset_json_holds_the_same_data_with_define_oids(
    demo_export: Path, demo_package: Package
) -> None:
    body = json.loads((folder(demo_export, "adam") / "adrs.json").read_text())
    frame = demo_package.datasets["adam"]["ADRS"]
    assert body["datasetJSONVersion"].startswith("1.1") and body["itemGroupOID"] == "IG.ADRS"
    assert body["records"] == frame.height == len(body["rows"])
    assert [c["name"] for c in body["columns"]] == frame.columns
    adt = next(c for c in body["columns"] if c["name"] == "ADT")
    assert (adt["dataType"], adt["targetDataType"]) == ("date", "integer")
    first = dict(zip(frame.columns, body["rows"][0], strict=True))
    assert first["USUBJID"] == frame["USUBJID"][0]
    dm = json.loads((folder(demo_export, "sdtm") / "dm.json").read_text())
    assert dm["metaDataRef"] == "define.xml" and dm["columns"][2]["keySequence"] == 2


def test_define_xml_is_valid_and_lists_every_exported_variable(
    demo_export: Path, demo_package: Package
) -> None:
    schema = xmlschema.XMLSchema(str(XSD))
    for kind, frames in demo_package.datasets.items():
        path = folder(demo_export, kind) / "define.xml"
        assert list(schema.iter_errors(str(path))) == []
        doc = etree.parse(str(path))
        groups = {g.get("Name"): g for g in doc.iterfind(".//odm:ItemGroupDef", NS)}
        assert set(groups) == set(frames)
        items = {i.get("OID"): i for i in doc.iterfind(".//odm:ItemDef", NS)}
        codelists = {c.get("OID") for c in doc.iterfind(".//odm:CodeList", NS)}
        methods = {m.get("OID") for m in doc.iterfind(".//odm:MethodDef", NS)}
        for name, frame in frames.items():
            refs = [r.get("ItemOID") for r in groups[name].iterfind("odm:ItemRef", NS)]
            assert refs == [f"IT.{name}.{c}" for c in frame.columns]
            for ref in groups[name].iterfind("odm:ItemRef", NS):
                assert ref.get("MethodOID") in (None, *methods)
            href = groups[name].find("def:leaf", NS).get("{http://www.w3.org/1999/xlink}href")
            assert (path.parent / href).is_file()
            for column in frame.columns:
                item = items[f"IT.{name}.{column}"]
                cl = item.find("odm:CodeListRef", NS)
                assert cl is None or cl.get("CodeListOID") in codelists
                assert item.find("def:Origin", NS) is not None


def _method(document: bytes, oid: str) -> str:
    doc = etree.fromstring(document)
    method = doc.find(f".//odm:MethodDef[@OID='{oid}']", NS)
    return "".join(method.itertext())


def test_define_xml_derivations_follow_the_rule_set(demo_package: Package) -> None:
    rules = demo_package.rules
    frames = demo_package.datasets["sdtm"]
    codelists = resolve([standard("sdtm"), standard("adam")], study_design())
    kwargs = {
        "study": STUDY,
        "description": "test",
        "created": "2026-01-01T00:00:00Z",
        "system_version": "test",
    }
    before = define_xml(standard("sdtm"), frames, codelists, rules, **kwargs)
    results = _method(before, "MT.RS.RSORRES")  # the derivation of each RS test
    mm, dims = f"{rules.mri.collection_mm:g}", rules.mri.collection_dims
    assert f"MRIHEAL: Rule mri.healed ({rules.label})" in results
    assert f"no collection larger than {mm} mm in at least {dims} of its 3" in results
    assert (
        f"each of FU5, FU6, consecutive closed visits at least {rules.clinical.min_gap_days} days"
        in results
    )
    assert "RESP50: " in results and "at least 50% of the subject's treated tracts" in results
    changed = dataclasses.replace(rules, mri=MriParams(collection_mm=25, collection_dims=3))
    after = _method(
        define_xml(standard("sdtm"), frames, codelists, changed, **kwargs), "MT.RS.RSORRES"
    )
    assert "no collection larger than 25 mm in at least 3 of its 3" in after
    assert f"no collection larger than {mm} mm" not in after


def test_sas_dates_are_days_since_1960(demo_export: Path) -> None:
    adsl, _ = pyreadstat.read_xport(
        str(folder(demo_export, "adam") / "adsl.xpt"), disable_datetime_conversion=True
    )
    first = pl.from_pandas(adsl)["TRTSDT"][0]
    assert first == (date(2024, 1, 8) - date(1960, 1, 1)).days
