"""The Great Expectations gate of a database lock: the suite in ``infra/gx/`` applied to the
staged Parquet before anything reaches the store.

The suite is data (YAML: frames, filters, GX expectations by name); this module only builds
the frames it names and reports every failing expectation. GX itself (imported once per
process, its context, the pandas conversion: GX 1.x does not validate Polars) is in
:mod:`services.lock.gate`.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml

import schemas
from services.adjudicator.state import EVIDENCE_KINDS, current
from services.lock.errors import ValidationFailedError
from services.lock.gate import gate, suite_name
from services.lock.staging import read_staged

SUITE = Path(__file__).resolve().parents[2] / "infra" / "gx" / "lock_suite.yaml"


@dataclass(frozen=True)
class Failure:
    """One expectation that did not hold, said the way a data manager can act on it."""

    frame: str
    about: str
    expectation: str
    arguments: str
    detail: str

    def __str__(self) -> str:
        return f"{self.frame}: {self.expectation}({self.arguments}): {self.detail} [{self.about}]"


@dataclass(frozen=True)
class ValidationReport:
    suite: str
    version: int
    evaluated: int
    failures: tuple[Failure, ...]

    @property
    def success(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"success": self.success}

    def summary(self) -> str:
        head = (
            f"GX suite {self.suite} v{self.version}: {self.evaluated} expectations, "
            f"{len(self.failures)} failed"
        )
        return "\n".join([head, *(f"  {f}" for f in self.failures)])

    def raise_on_failure(self) -> ValidationReport:
        if self.failures:
            raise ValidationFailedError(
                f"lock refused by the data-quality gate; fix the data (or the committee's "
                f"decisions) and lock again. {self.summary()}"
            )
        return self


def load_suite(path: Path | str | None = None) -> dict[str, Any]:
    """The suite file: ``path``, else ``$TRACT_GX_SUITE``, else ``infra/gx/lock_suite.yaml``."""
    chosen = Path(path or os.environ.get("TRACT_GX_SUITE") or SUITE)
    if not chosen.is_file():
        raise ValidationFailedError(
            f"GX suite not found at {chosen} (checked the argument, TRACT_GX_SUITE and {SUITE})"
        )
    return schemas.load_yaml(chosen.read_text())


def staged_frames(staging: Path) -> tuple[dict[str, pl.DataFrame], dict[str, Any]]:
    """Every staged Parquet file as a frame (``tract_outcomes``, ``events/mri_read``...), each
    checked against the staged manifest first."""
    files, manifest = read_staged(staging)
    frames = {
        name.removesuffix(".parquet"): pl.read_parquet(io.BytesIO(data))
        for name, data in files.items()
        if name.endswith(".parquet")
    }
    return frames, json.loads(manifest)


def views(frames: dict[str, pl.DataFrame], manifest: dict[str, Any]) -> dict[str, pl.DataFrame]:
    """The frames plus the derived ones the suite may name (current/<kind>, positions, files)."""
    out = dict(frames)
    for kind in EVIDENCE_KINDS:
        if f"events/{kind}" in frames:
            out[f"current/{kind}"] = current(
                frames[f"events/{kind}"].lazy(), schemas.contract(kind)
            ).collect()
    positions = manifest.get("positions", {})
    out["positions"] = pl.DataFrame(
        [
            {
                "kind": name.removeprefix("events/"),
                # a kind the log never saw has no position yet: its cut is offset 0
                "position": positions.get(name.removeprefix("events/"), 0),
                "next_offset": int(frame["offset"].max() + 1) if frame.height else 0,  # type: ignore[operator]
            }
            for name, frame in frames.items()
            if name.startswith("events/")
        ],
        schema={"kind": pl.String, "position": pl.Int64, "next_offset": pl.Int64},
    )
    counts = manifest.get("row_counts", {})
    out["files"] = pl.DataFrame(
        [
            {"name": name, "rows": frame.height, "manifest_rows": counts.get(f"{name}.parquet")}
            for name, frame in frames.items()
        ],
        schema={"name": pl.String, "rows": pl.Int64, "manifest_rows": pl.Int64},
    )
    for name, frame in out.items():
        if {"subject_id", "tract_id"} <= set(frame.columns):
            out[name] = frame.with_columns(
                subject_tract=pl.col("subject_id") + pl.lit("/") + pl.col("tract_id")
            )
    return out


def _filtered(frame: pl.DataFrame, where: dict[str, Any] | None) -> pl.DataFrame:
    for column, value in (where or {}).items():
        frame = frame.filter(pl.col(column) == value)
    return frame


def _resolve(args: dict[str, Any], frames: dict[str, pl.DataFrame]) -> dict[str, Any]:
    """Replace ``value_set: {from: FRAME, column: C, where: ...}`` with the values it names."""
    value_set = args.get("value_set")
    if not isinstance(value_set, dict):
        return args
    source = _filtered(frames[value_set["from"]], value_set.get("where"))
    values = source[value_set["column"]].drop_nulls().unique().sort().to_list()
    return args | {"value_set": values}


def _describe(args: dict[str, Any]) -> str:
    shown = {
        k: (f"<{len(v)} values>" if k == "value_set" and len(v) > 6 else v) for k, v in args.items()
    }
    return ", ".join(f"{k}={v}" for k, v in shown.items())


@dataclass(frozen=True)
class _Group:
    """Expectations that run as one GX validation, on one frame (and filter)."""

    label: str
    about: str
    specs: list[tuple[str, dict[str, Any]]]
    frame: pl.DataFrame | None  # None: the frame is missing from the snapshot
    parts: tuple[_Group, ...] = ()
    """For the stacked events: the same checks kind by kind, run to say which kind failed."""


def _planned(suite: dict[str, Any], every: dict[str, pl.DataFrame]) -> list[_Group]:
    """The suite's expectations grouped by the frame (and filter) they run on: one GX
    validation per group, not per check. ``events/*`` is validated once, over every event kind
    stacked with a ``kind`` column (a column's uniqueness becomes uniqueness within its kind);
    if that fails, kind by kind as the suite writes it, so the failure names its kind."""
    groups: dict[str, _Group] = {}
    events = sorted(n for n in every if n.startswith("events/"))
    for check in suite["checks"]:
        name, where = check["frame"], check.get("where")
        # each expectation carries its check's about (GX keeps meta in its results): checks
        # merged into one group are still told apart, whatever their arguments
        specs = [
            (kind, args | {"meta": args.get("meta", {}) | {"about": str(check["about"])}})
            for item in check["expect"]
            for kind, args in item.items()
        ]
        label = name + (f" where {where}" if where else "")
        if name == "events/*":
            stacked = [
                every[n].select(
                    pl.lit(n.removeprefix("events/")).alias("kind"),
                    pl.col("event_id").cast(pl.String),
                    pl.col("offset").cast(pl.Int64),
                )
                for n in events
            ]
            parts = tuple(
                _Group(n, check["about"], [(k, _resolve(a, every)) for k, a in specs], every[n])
                for n in events
            )
            by_kind = [
                (
                    "expect_compound_columns_to_be_unique",
                    {"column_list": ["kind", args["column"]], "meta": args["meta"]},
                )
                if kind == "expect_column_values_to_be_unique"
                else (kind, args)
                for kind, args in specs
            ]
            frame = pl.concat(stacked) if stacked else None
            groups[label] = _Group(label, check["about"], by_kind, frame, parts)
            continue
        frame = _filtered(every[name], where) if name in every else None
        group = groups.setdefault(label, _Group(label, check["about"], [], frame))
        group.specs.extend((kind, _resolve(args, every)) for kind, args in specs)
    return [g for g in groups.values() if g.frame is not None or g.specs]


def validate_frames(
    frames: dict[str, pl.DataFrame], manifest: dict[str, Any], suite: dict[str, Any] | None = None
) -> ValidationReport:
    """Apply the suite to the snapshot's frames; every failing expectation is reported.

    Each group runs first with GX's boolean-only results (the common case: everything holds,
    at the least cost); only a group that fails runs again for the details a data manager
    needs (how many rows, which values)."""
    suite = suite or load_suite()
    every = views(frames, manifest)
    failures: list[Failure] = []
    evaluated = 0
    with gate() as gx_run:
        for group in _planned(suite, every):
            if group.frame is None:
                failures.append(
                    Failure(group.label, group.about, "frame", "", "missing from the snapshot")
                )
                continue
            evaluated += len(group.specs)
            if gx_run(group.frame, group.specs, "BOOLEAN_ONLY").success:
                continue
            for part in group.parts or (group,):
                assert part.frame is not None
                for outcome in gx_run(part.frame, part.specs, "SUMMARY").results:
                    if outcome.success:
                        continue
                    config = outcome.expectation_config
                    kind = suite_name(config.type)
                    args = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
                    failures.append(
                        Failure(
                            part.label,
                            (config.meta or {}).get("about") or part.about,
                            kind,
                            _describe(args),
                            _detail(outcome, part.frame.height),
                        )
                    )
    return ValidationReport(suite["name"], int(suite.get("version", 1)), evaluated, tuple(failures))


def _detail(outcome: Any, rows: int) -> str:
    info = outcome.exception_info or {}
    if info.get("raised_exception"):
        return f"could not be evaluated: {info.get('exception_message')}"
    result = outcome.result or {}
    if "unexpected_count" in result:
        examples = result.get("partial_unexpected_list") or []
        shown = ", ".join(repr(_plain(v)) for v in examples[:5])
        return f"{result['unexpected_count']} of {rows} rows unexpected, e.g. {shown}"
    return f"observed {result.get('observed_value')!r}"


def _plain(value: Any) -> Any:
    """numpy scalars (and tuples of them) as plain Python values, for readable messages; a
    missing value (pandas' NA, NaN) as None, whichever way pandas holds it."""
    import pandas as pd

    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def validate_staged(staging: Path, suite: dict[str, Any] | None = None) -> ValidationReport:
    """Validate a staged lock; raises :class:`ValidationFailedError` listing every failure,
    else keeps the results in the staged lock (``validation.json``, the suite, the manifest's
    ``validation``)."""
    suite = suite or load_suite()
    frames, manifest = staged_frames(staging)
    report = validate_frames(frames, manifest, suite).raise_on_failure()
    record_validation(staging, report, suite)
    return report


def record_validation(staging: Path, report: ValidationReport, suite: dict[str, Any]) -> None:
    """Put the gate's results and the suite it ran into the staged lock, and say so in its
    manifest, so the lock itself tells that the checks ran and what they found."""
    from services.lock.staging import restage

    results = json.dumps(report.to_dict(), indent=2, default=str).encode()
    suite_text = yaml.safe_dump(suite, sort_keys=False).encode()
    restage(
        staging,
        {"validation.json": results, "gx_suite.yaml": suite_text},
        validation={
            "gate": "ran",
            "suite": report.suite,
            "version": report.version,
            "evaluated": report.evaluated,
            "failed": len(report.failures),
            "results": "validation.json",
            "suite_file": "gx_suite.yaml",
        },
    )
