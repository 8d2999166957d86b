"""CDISC Dataset-JSON 1.1 files (odmlib's model): the same datasets as the XPT files, with
the OIDs of define.xml, so a reviewer's tool can join data and metadata."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import polars as pl
from odmlib.dataset_json_1_1.model import Column, DatasetJSON, SourceSystem

from services.export.spec import Dataset

VERSION = "1.1.0"
TYPES = {
    "text": "string",
    "integer": "integer",
    "float": "double",
    "date": "date",
    "sasdate": "date",
}


def item_oid(dataset: str, variable: str) -> str:
    return f"IT.{dataset}.{variable}"


def dataset_json_bytes(
    frame: pl.DataFrame,
    dataset: Dataset,
    *,
    study: str,
    created: str,
    modified: str,
    system_version: str,
    define: str = "define.xml",
) -> bytes:
    """One Dataset-JSON 1.1 document; ``modified`` is the lock time (the data's last change)."""
    columns = [
        Column(
            itemOID=item_oid(dataset.name, v.name),
            name=v.name,
            label=v.label,
            dataType=TYPES[v.type],
            **({"targetDataType": "integer"} if v.type == "sasdate" else {}),
            **({"displayFormat": "DATE9."} if v.type == "sasdate" else {}),
            **({"keySequence": dataset.keys.index(v.name) + 1} if v.name in dataset.keys else {}),
        )
        for v in dataset.variables
    ]
    document = DatasetJSON(
        datasetJSONCreationDateTime=created,
        datasetJSONVersion=VERSION,
        fileOID=f"{study}.{dataset.name}",
        dbLastModifiedDateTime=modified,
        originator="tract",
        sourceSystem=SourceSystem(name="tract", version=system_version),
        studyOID=study,
        metaDataVersionOID=f"MDV.{study}",
        metaDataRef=define,
        itemGroupOID=f"IG.{dataset.name}",
        records=frame.height,
        name=dataset.name,
        label=dataset.label,
        columns=columns,
    )
    body = document.to_dict()
    body["rows"] = [list(row) for row in frame.rows()]
    return json.dumps(body, default=_iso, ensure_ascii=False).encode()


def _iso(value: Any) -> str:
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} to Dataset-JSON")
