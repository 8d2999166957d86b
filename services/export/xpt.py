"""SAS transport (XPT version 5) files with pyreadstat: the format FDA and PMDA take.

ADaM dates are written as SAS dates (days since 1960-01-01, format DATE9.); text nulls become
blanks and numeric nulls SAS missing values, as SAS itself would store them."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path

import polars as pl
import pyreadstat

from services.export.spec import Dataset

SAS_EPOCH = date(1960, 1, 1)


def sas_frame(frame: pl.DataFrame, dataset: Dataset) -> pl.DataFrame:
    """Dates as SAS day numbers, integers as floats (XPT stores every number as a double)."""
    return frame.with_columns(
        (pl.col(v.name) - pl.lit(SAS_EPOCH)).dt.total_days().cast(pl.Float64)
        if v.type == "sasdate"
        else pl.col(v.name).cast(pl.Float64)
        if v.type in ("integer", "float")
        else pl.col(v.name)
        for v in dataset.variables
    )


def xpt_bytes(frame: pl.DataFrame, dataset: Dataset) -> bytes:
    """The dataset as an XPT v5 file: names, labels and formats from the spec."""
    with tempfile.TemporaryDirectory(prefix="tract-xpt-") as tmp:
        path = Path(tmp) / f"{dataset.name.lower()}.xpt"
        pyreadstat.write_xport(
            sas_frame(frame, dataset).to_pandas(),
            str(path),
            file_label=dataset.label,
            column_labels={v.name: v.label for v in dataset.variables},
            table_name=dataset.name,
            file_format_version=5,
            variable_format={v.name: "DATE9." for v in dataset.variables if v.type == "sasdate"},
        )
        return path.read_bytes()
