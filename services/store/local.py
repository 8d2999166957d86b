"""The default object store: a local folder.

Snapshots are written into a staging folder, moved into place with one rename, and only then
given their manifest, so a crash never leaves a half snapshot that a reader would trust.
Published snapshot files are made read-only.
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from datetime import datetime
from pathlib import Path

from services.files import make_private_dirs
from services.store import MANIFEST
from services.store.errors import ObjectLockedError, ObjectNotFoundError

READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


class LocalStore:
    def __init__(self, root: Path | str) -> None:
        # Absolute from the start: keys are resolved against it, and a relative home
        # (the default ./tract-data) must not make listing compare relative and absolute paths.
        self.root = Path(root).resolve()
        make_private_dirs(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key {key!r} leaves the store")
        return path

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"{self.location(key)} does not exist") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.exists():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file())

    def location(self, key: str) -> str:
        return str(self._path(key))

    def write_snapshot(
        self,
        prefix: str,
        files: dict[str, bytes],
        manifest: bytes,
        retain_until: datetime | None = None,
    ) -> None:
        final = self._path(prefix)
        if (final / MANIFEST).exists():
            raise ObjectLockedError(f"{final} is already published; it is never overwritten")
        staging = self._path(f"_staging/{uuid.uuid4().hex}")
        for name, data in files.items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            _fsync(target)
        if final.exists():
            # Left by a crash before its manifest: never published, so never trusted.
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, final)
        tmp = final / f".{MANIFEST}.tmp"
        tmp.write_bytes(manifest)
        _fsync(tmp)
        os.replace(tmp, final / MANIFEST)
        for path in final.rglob("*"):
            if path.is_file():
                path.chmod(READ_ONLY)


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
