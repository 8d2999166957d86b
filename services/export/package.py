"""The submission package of one lock: SDTM and/or ADaM as XPT v5 and Dataset-JSON, a
define.xml per standard, the data dictionary and the conformance report, laid out as an eCTD
module 5 folder and listed, with sha256, in ``manifest.json``.

Nothing is written unless every conformance error rule passes; the folder is written beside
its final place and renamed into it, so a reader never sees half an export.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import yaml

from services.adjudicator.ruleset import RuleSet, load_ruleset
from services.dictionary import dictionary, dictionary_markdown
from services.events import utc_now
from services.export import adam, sdtm
from services.export.codelists import resolve
from services.export.conformance import Report, check
from services.export.datasetjson import dataset_json_bytes
from services.export.define import define_xml
from services.export.errors import ExportError
from services.export.source import read_inputs, study_design
from services.export.spec import standard
from services.export.xpt import xpt_bytes
from services.store import MANIFEST as STORE_MANIFEST

if TYPE_CHECKING:
    from services.lock.snapshot import Snapshot
    from services.store import ObjectStore

KINDS = ("sdtm", "adam")
FORMATS = ("xpt", "json")
MANIFEST = STORE_MANIFEST  # manifest.json, as in a lock


def folders(study: str) -> dict[str, str]:
    """Where each standard goes (eCTD module 5 layout)."""
    return {
        "sdtm": f"m5/datasets/{study}/tabulations/sdtm",
        "adam": f"m5/datasets/{study}/analysis/adam/datasets",
    }


@dataclass(frozen=True)
class Package:
    """Every dataset of the lock, built and checked, before anything is written."""

    study: str
    lock_id: str
    locked_at: str
    rules: RuleSet
    datasets: dict[str, dict[str, pl.DataFrame]]
    conformance: Report
    left_out: dict[str, int] = field(default_factory=dict)


def build(
    snapshot: Snapshot,
    kinds: tuple[str, ...] = KINDS,
    rules: RuleSet | None = None,
    study_meta: dict[str, Any] | None = None,
) -> Package:
    """SDTM (and ADaM, from the SDTM) of a verified lock, checked by the conformance suite.
    ADaM always needs SDTM, so SDTM is built even when only ADaM is asked for."""
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ExportError(
            f"export sdtm, adam or both, not {', '.join(sorted(unknown)) or 'nothing'}"
        )
    rules = rules or load_ruleset()
    inputs = read_inputs(snapshot, rules, study_design(study_meta))
    frames = {"sdtm": sdtm.build_sdtm(inputs)}
    frames["adam"] = adam.build_adam(frames["sdtm"], rules)
    standards = [standard(k) for k in KINDS]
    specs = {name: ds for s in standards for name, ds in s.datasets.items()}
    exported = {name for k in kinds for name in frames[k]}
    report = check(
        frames["sdtm"] | frames["adam"], specs, resolve(standards, inputs.design), only=exported
    )
    return Package(
        study=inputs.study,
        lock_id=inputs.lock_id,
        locked_at=inputs.locked_at,
        rules=rules,
        datasets={k: frames[k] for k in kinds},
        conformance=report,
        left_out=inputs.left_out,
    )


def package_files(
    package: Package,
    formats: tuple[str, ...] = FORMATS,
    created: str | None = None,
    study_meta: dict[str, Any] | None = None,
) -> dict[str, bytes]:
    """The export's files by path (without the manifest); refuses a package with conformance errors."""
    package.conformance.raise_on_errors()
    created = created or utc_now()
    version = metadata.version("tract-adjudication")
    design = study_design(study_meta)
    codelists = resolve([standard(k) for k in KINDS], design)
    files: dict[str, bytes] = {}
    for kind, frames in package.datasets.items():
        spec, folder = standard(kind), folders(package.study)[kind]
        for name, frame in frames.items():
            dataset = spec.datasets[name]
            if "xpt" in formats:
                files[f"{folder}/{name.lower()}.xpt"] = xpt_bytes(frame, dataset)
            if "json" in formats:
                files[f"{folder}/{name.lower()}.json"] = dataset_json_bytes(
                    frame,
                    dataset,
                    study=package.study,
                    created=created,
                    modified=package.locked_at or created,
                    system_version=version,
                )
        files[f"{folder}/define.xml"] = define_xml(
            spec,
            frames,
            codelists,
            package.rules,
            study=package.study,
            description=f"{package.study} {spec.name} {spec.version} from lock {package.lock_id} ({package.locked_at})",
            created=created,
            system_version=version,
            file_name="{name}.xpt" if "xpt" in formats else "{name}.json",
        )
    data = dictionary(package.rules)
    files["dictionary/dictionary.json"] = json.dumps(data, indent=2).encode()
    files["dictionary/DICTIONARY.md"] = dictionary_markdown(data).encode()
    files["conformance.json"] = json.dumps(package.conformance.to_dict(), indent=2).encode()
    return files


def manifest(package: Package, files: dict[str, bytes], created: str) -> dict[str, Any]:
    from services.lock.snapshot import file_entries

    return {
        "study": package.study,
        "lock_id": package.lock_id,
        "locked_at": package.locked_at,
        "exported_at": created,
        "rule_set": package.rules.label,
        "standards": {k: f"{standard(k).name} {standard(k).version}" for k in package.datasets},
        "records": {
            name: frame.height
            for frames in package.datasets.values()
            for name, frame in frames.items()
        },
        "left_out": package.left_out,
        "conformance": {
            "errors": len(package.conformance.errors),
            "warnings": len(package.conformance.warnings),
        },
        "code_version": metadata.version("tract-adjudication"),
        "files": file_entries(files),
    }


@dataclass(frozen=True)
class ExportResult:
    where: str
    manifest: dict[str, Any]
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, **self.manifest, "warnings": list(self.warnings)}

    def summary(self) -> str:
        records = ", ".join(f"{n} {c}" for n, c in self.manifest["records"].items())
        lines = [
            f"exported {self.manifest['study']} lock {self.manifest['lock_id']} "
            f"({', '.join(self.manifest['standards'].values())}) to {self.where}",
            f"  {len(self.manifest['files'])} files; records: {records}",
            f"  conformance: {self.manifest['conformance']['errors']} errors, "
            f"{self.manifest['conformance']['warnings']} warnings (conformance.json)",
        ]
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.manifest["left_out"]:
            lines.append(
                f"  left out (tracts neither registered nor decided new): {self.manifest['left_out']}"
            )
        return "\n".join(lines)


def _export(
    snapshot: Snapshot,
    kinds: tuple[str, ...],
    formats: tuple[str, ...],
    rules: RuleSet | None,
    study_meta: dict[str, Any] | None,
) -> tuple[Package, dict[str, bytes], dict[str, Any]]:
    package = build(snapshot, kinds, rules, study_meta)
    created = utc_now()
    files = package_files(package, formats, created, study_meta)
    return package, files, manifest(package, files, created)


def write_folder(out: Path, files: dict[str, bytes], manifest_bytes: bytes) -> None:
    """Write the export into ``out`` at once: staged beside it, then renamed into place (an
    earlier export there is replaced; a folder holding anything else is refused)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise ExportError(
            f"{out} is not empty and holds no earlier export ({MANIFEST}); choose an empty --out folder"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex}"
    for name, data in {**files, MANIFEST: manifest_bytes}.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(data)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def export_lock(
    store: ObjectStore,
    study: str,
    lock_id: str,
    out: Path | None = None,
    *,
    kinds: tuple[str, ...] = KINDS,
    formats: tuple[str, ...] = FORMATS,
    rules: RuleSet | None = None,
    study_meta: dict[str, Any] | None = None,
    receipt: str | None = None,
) -> ExportResult:
    """Export a verified lock into ``out``, or (``out`` None) into the store under
    ``exports/<study>/<lock_id>/`` with ``manifest.json`` as its manifest, written last.
    ``receipt``: the manifest's sha256 from the LOCK event (the lock must be that one)."""
    from services.lock.snapshot import open_lock

    prefix = export_prefix(study, lock_id)
    if out is None and store.exists(f"{prefix}/{MANIFEST}"):
        # A stored export is written once, like the lock it comes from: running again finds it.
        listing = json.loads(store.read(f"{prefix}/{MANIFEST}"))
        return ExportResult(
            where=store.location(prefix), manifest=listing | {"already_exported": True}, warnings=()
        )
    package, files, listing = _export(
        open_lock(store, study, lock_id, receipt), kinds, formats, rules, study_meta
    )
    manifest_bytes = json.dumps(listing, indent=2).encode()
    if out is not None:
        write_folder(out, files, manifest_bytes)
        where = str(out)
    else:
        store.write_snapshot(prefix, files, manifest_bytes)
        where = store.location(prefix)
    warnings = tuple(str(f) for f in package.conformance.warnings)
    return ExportResult(where=where, manifest=listing, warnings=warnings)


def export_prefix(study: str, lock_id: str) -> str:
    return f"exports/{study}/{lock_id}"


def load_study_meta(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ExportError(f"study metadata {path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise ExportError(
            f"study metadata {path}: expected a mapping of the keys of schemas/cdisc/study.yaml"
        )
    return loaded
