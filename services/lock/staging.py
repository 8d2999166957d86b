"""A lock's files while they wait between steps: staged under the platform home, checked
against their staged manifest before anything is written to the store.

The DAG's tasks run apart (materialise, validate, write); only a path travels between them,
so the staging folder is replaced atomically and read back verified.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from services.lock.errors import LockRefusedError
from services.lock.snapshot import file_entries, sha256
from services.store import MANIFEST


def staging_dir(home: Path, study: str, lock_id: str) -> Path:
    """Where a lock's Parquet waits between materialise and write (under the platform home)."""
    return Path(home) / "staging" / "locks" / study / lock_id


def stage(staging: Path, files: dict[str, bytes], manifest: bytes) -> Path:
    """Write files and manifest into ``staging``, replacing an earlier attempt atomically."""
    staging = Path(staging)
    staging.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging.parent / f".{staging.name}.{uuid.uuid4().hex}"
    for name, data in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(data)
    (tmp / MANIFEST).write_bytes(manifest)
    if staging.exists():
        shutil.rmtree(staging)
    tmp.rename(staging)
    return staging


def restage(staging: Path, files: dict[str, bytes], **manifest_changes: Any) -> None:
    """Add ``files`` to a staged lock and update its manifest (``files`` and
    ``manifest_changes``), before anything is written to the store."""
    staged, manifest_bytes_ = read_staged(staging)
    manifest = json.loads(manifest_bytes_) | manifest_changes
    manifest["files"] |= file_entries(files)
    stage(staging, staged | files, json.dumps(manifest, indent=2).encode())


def read_staged(staging: Path) -> tuple[dict[str, bytes], bytes]:
    """The staged files and manifest bytes, each file checked against the staged manifest."""
    manifest_path = Path(staging) / MANIFEST
    if not manifest_path.is_file():
        raise LockRefusedError(
            f"nothing staged at {staging}: run the materialise step (or the whole DAG) again"
        )
    manifest_bytes_ = manifest_path.read_bytes()
    files: dict[str, bytes] = {}
    for name, expected in json.loads(manifest_bytes_)["files"].items():
        data = (Path(staging) / name).read_bytes()
        if sha256(data) != expected["sha256"]:
            raise LockRefusedError(
                f"staged file {Path(staging) / name} changed after materialise; run it again"
            )
        files[name] = data
    return files, manifest_bytes_


def discard_staging(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
