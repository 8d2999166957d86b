"""define.xml (Define-XML 2.1, built with odmlib): every exported dataset, variable, codelist,
origin and derivation. Derivation texts come from ``schemas/cdisc/*.yaml`` with the rule set's
parameters filled in, so a threshold changed in the rule set shows here."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import odmlib.define_2_1.model as DEFINE
import polars as pl

from services.adjudicator.ruleset import RuleSet
from services.dictionary import rule_parameters
from services.export.codelists import Codelist
from services.export.datasetjson import item_oid
from services.export.spec import Dataset, Standard, Variable

DATA_TYPES = {
    "text": "text",
    "integer": "integer",
    "float": "float",
    "date": "date",
    "sasdate": "integer",
}
REFERENCE = ("TA", "TE", "TV", "TS")
NOT_DERIVED = {"see RSTESTCD", "see TRTESTCD", "see MITESTCD", "see QNAM"}


def _text(value: str) -> DEFINE.Description:
    return DEFINE.Description(TranslatedText=[DEFINE.TranslatedText(_content=value, lang="en")])


def method_texts(standard: Standard, rules: RuleSet) -> dict[str, str]:
    """Each derivation of the standard, its rule-set parameters filled in."""
    params = rule_parameters(rules)
    return {key: text.format(**params) for key, text in standard.methods.items()}


def _test_method(dataset: Dataset, methods: dict[str, str]) -> str:
    """A result variable derived per test: the derivation of each test, one after the other."""
    parts = [
        f"{code}: {methods[spec['method']]}"
        for code, spec in dataset.tests.items()
        if spec.get("method") in methods
    ]
    return " | ".join(parts)


def _length(frame: pl.DataFrame, variable: Variable) -> dict[str, Any]:
    column = frame.get_column(variable.name)
    if variable.type == "text":
        longest = column.str.len_bytes().max()
        return {"Length": max(int(longest or 1), 1)}
    if variable.type == "integer":
        widest = column.cast(pl.String).str.len_chars().max()
        return {"Length": max(int(widest or 1), 1)}
    if variable.type == "float":
        decimals = (
            column.drop_nulls().cast(pl.String).str.extract(r"\.(\d*?)0*$", 1).str.len_chars().max()
        )
        return {"Length": 8, "SignificantDigits": int(decimals or 0)}
    return {}


def _origin(variable: Variable) -> DEFINE.Origin:
    kwargs: dict[str, Any] = {"Type": variable.origin}
    if variable.origin == "Collected" and variable.by:
        kwargs["Source"] = variable.by
    if variable.source and variable.origin in ("Collected", "Predecessor"):
        kwargs["Description"] = _text(variable.source)
    return DEFINE.Origin(**kwargs)


def _codelist(codelist: Codelist) -> DEFINE.CodeList:
    decoded = any(d is not None for d in codelist.terms.values())
    kwargs: dict[str, Any] = {
        "OID": codelist.oid,
        "Name": codelist.name,
        "DataType": "float" if codelist.type == "float" else "text",
    }
    items = []
    for order, (value, decode) in enumerate(codelist.terms.items(), start=1):
        extended = {"ExtendedValue": "Yes"} if value in codelist.extended else {}
        if decoded:
            items.append(
                DEFINE.CodeListItem(
                    CodedValue=value,
                    OrderNumber=order,
                    **extended,
                    Decode=DEFINE.Decode(
                        TranslatedText=[DEFINE.TranslatedText(_content=decode or value, lang="en")]
                    ),
                )
            )
        else:
            items.append(DEFINE.EnumeratedItem(CodedValue=value, OrderNumber=order, **extended))
    kwargs["CodeListItem" if decoded else "EnumeratedItem"] = items
    if codelist.nci:
        kwargs["Alias"] = [DEFINE.Alias(Context="nci:ExtCodeID", Name=codelist.nci)]
    return DEFINE.CodeList(**kwargs)


def define_xml(
    standard: Standard,
    frames: dict[str, pl.DataFrame],
    codelists: dict[str, Codelist],
    rules: RuleSet,
    *,
    study: str,
    description: str,
    created: str,
    system_version: str,
    file_name: str = "{name}.xpt",
) -> bytes:
    """The define.xml of the given datasets (all of one standard)."""
    methods = method_texts(standard, rules)
    std_oid = f"STD.{standard.name}"
    groups, items, used_methods, comments, used_codelists = [], [], {}, {}, set()
    for name, frame in frames.items():
        dataset = standard.datasets[name]
        refs = []
        for order, variable in enumerate(dataset.variables, start=1):
            oid = item_oid(name, variable.name)
            ref: dict[str, Any] = {
                "ItemOID": oid,
                "OrderNumber": order,
                "Mandatory": "Yes" if variable.core == "Req" else "No",
            }
            if variable.name in dataset.keys:
                ref["KeySequence"] = dataset.keys.index(variable.name) + 1
            if variable.origin == "Derived" and variable.method:
                key = (
                    f"{name}.{variable.name}" if variable.method in NOT_DERIVED else variable.method
                )
                text = (
                    _test_method(dataset, methods)
                    if variable.method in NOT_DERIVED
                    else methods.get(key)
                )
                if text:
                    used_methods[key] = text
                    ref["MethodOID"] = f"MT.{key}"
            refs.append(DEFINE.ItemRef(**ref))
            item: dict[str, Any] = {
                "OID": oid,
                "Name": variable.name,
                "SASFieldName": variable.name,
                "DataType": DATA_TYPES[variable.type],
                **_length(frame, variable),
                "Description": _text(variable.label),
                "Origin": [_origin(variable)],
            }
            if variable.type == "sasdate":
                item["DisplayFormat"] = "DATE9."
            if variable.codelist:
                item["CodeListRef"] = DEFINE.CodeListRef(
                    CodeListOID=codelists[variable.codelist].oid
                )
                used_codelists.add(variable.codelist)
            if variable.comment:
                comments[f"COM.{name}.{variable.name}"] = variable.comment
                item["CommentOID"] = f"COM.{name}.{variable.name}"
            items.append(DEFINE.ItemDef(**item))
        leaf = f"LF.{name}"
        href = file_name.format(name=name.lower())
        groups.append(
            DEFINE.ItemGroupDef(
                OID=f"IG.{name}",
                Name=name,
                Repeating="No" if name in ("DM", "ADSL") or name in REFERENCE else "Yes",
                IsReferenceData="Yes" if name in REFERENCE else "No",
                SASDatasetName=name,
                **(
                    {"Domain": name}
                    if standard.publishing_set == "SDTM" and not name.startswith("SUPP")
                    else {}
                ),
                Purpose=standard.purpose,
                Structure=dataset.structure,
                ArchiveLocationID=leaf,
                StandardOID=std_oid,
                Description=_text(dataset.label),
                ItemRef=refs,
                Class=DEFINE.Class(Name=dataset.cls),
                leaf=DEFINE.leaf(ID=leaf, href=href, title=DEFINE.title(_content=href)),
            )
        )
    mdv = DEFINE.MetaDataVersion(
        OID=f"MDV.{study}",
        Name=f"{study} {standard.name} {standard.version}",
        Description=description,
        DefineVersion="2.1.0",
        Standards=DEFINE.Standards(
            Standard=[
                DEFINE.Standard(
                    OID=std_oid,
                    Name=standard.name,
                    Type="IG",
                    Version=standard.version,
                    Status="Final",
                )
            ]
        ),
        ItemGroupDef=groups,
        ItemDef=items,
        CodeList=[_codelist(codelists[c]) for c in sorted(used_codelists)],
        MethodDef=[
            DEFINE.MethodDef(
                OID=f"MT.{key}",
                Name=f"Algorithm for {key}",
                Type="Computation",
                Description=_text(text),
            )
            for key, text in sorted(used_methods.items())
        ],
        CommentDef=[
            DEFINE.CommentDef(OID=oid, Description=_text(text))
            for oid, text in sorted(comments.items())
        ],
    )
    odm = DEFINE.ODM(
        FileType="Snapshot",
        FileOID=f"DEFINE.{study}.{standard.publishing_set}",
        CreationDateTime=created,
        ODMVersion="1.3.2",
        Originator="tract",
        SourceSystem="tract",
        SourceSystemVersion=system_version,
        Context="Submission",
        Study=DEFINE.Study(
            OID=f"ST.{study}",
            GlobalVariables=DEFINE.GlobalVariables(
                StudyName=DEFINE.StudyName(_content=study),
                StudyDescription=DEFINE.StudyDescription(_content=description),
                ProtocolName=DEFINE.ProtocolName(_content=f"{rules.id} v{rules.version}"),
            ),
            MetaDataVersion=mdv,
        ),
    )
    with tempfile.TemporaryDirectory(prefix="tract-define-") as tmp:
        path = Path(tmp) / "define.xml"
        odm.write_xml(str(path))
        return path.read_bytes()
