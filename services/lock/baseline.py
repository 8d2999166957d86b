"""The outcomes the lock in force froze, to flag what changed since (see
:mod:`services.state.postlock`): read once from the store, verified against the lock's LOCK
event, then kept beside the state that uses them.

One function for every process that keeps a maintained state: the platform (embedded log)
and the Kafka adjudicator service.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import polars as pl

from services.errors import TractError
from services.files import FILE_MODE, make_private_dirs
from services.lock.snapshot import lock_prefix, read_manifest, sha256
from services.state.postlock import LockBaseline
from services.store import ObjectStore

FILES = {"tracts": "tract_outcomes.parquet", "patients": "patient_outcomes.parquet"}


def lock_baseline(
    store: ObjectStore, cache: Path, study: str, lock: dict[str, Any]
) -> LockBaseline | None:
    """The tract outcomes and patient categories of ``lock`` (a LOCK event), or None when the
    store cannot give them verified (the flags then say "no lock" rather than guess; `tract
    verify` tells why). ``cache``: the folder they are kept in once read."""
    folder = Path(cache) / study / f"{lock['lock_id']}-{lock['manifest_sha256'][:16]}"
    if not all((folder / f"{name}.parquet").exists() for name in FILES):
        try:
            manifest = read_manifest(store, study, lock["lock_id"], lock["manifest_sha256"])
            frames = {}
            for name, file in FILES.items():
                data = store.read(f"{lock_prefix(study, lock['lock_id'])}/{file}")
                if sha256(data) != manifest["files"][file]["sha256"]:
                    return None
                frames[name] = pl.read_parquet(io.BytesIO(data))
        except (TractError, KeyError):
            return None
        make_private_dirs(folder)  # beside the state: the home's files are its owner's only
        for name, columns in (("tracts", ["tract_id", "outcome"]), ("patients", ["category"])):
            path = folder / f"{name}.parquet"
            frames[name].select("subject_id", *columns).write_parquet(path)
            path.chmod(FILE_MODE)
    return LockBaseline(
        lock["lock_id"],
        pl.read_parquet(folder / "tracts.parquet"),
        pl.read_parquet(folder / "patients.parquet"),
    )
