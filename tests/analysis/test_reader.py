"""Reading locks: verified LazyFrames in Python, `tract snapshot list/open`, the analysis job
on a tampered lock, and DuckDB over the same Parquet (verified export, and straight from S3)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from services.analysis import open_locked
from services.config import Settings
from services.lock.errors import SnapshotTamperedError
from services.platform import Platform
from tests import servers
from tests.store.trials import STUDY, env_of, s3_settings

TRACT = [str(Path(sys.executable).parent / "tract")]
CLOSED_BY_OUTCOME = (
    "SELECT outcome, count(*) AS n FROM tracts WHERE treated AND subject_status = 'COMPLETED' "
    "GROUP BY outcome ORDER BY outcome"
)


def _run(argv: list[str], settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACT_")} | env_of(settings)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def locked_local(decided_home: Path) -> Settings:
    settings = Settings(home=decided_home)
    Platform.from_settings(settings).lock(
        STUDY, "PRIMARY", "primary analysis", "dm.jones", open_queries_reason="sites answer later"
    )
    return settings


def test_open_locked_returns_verified_lazy_frames(locked_local: Settings) -> None:
    frames = open_locked(STUDY, "PRIMARY", locked_local)
    assert all(isinstance(f, pl.LazyFrame) for f in frames.values())
    assert {"tract_outcomes", "patient_outcomes", "conflicts", "audit"} <= set(frames)
    closed = frames["tract_outcomes"].filter(
        pl.col("treated") & (pl.col("subject_status") == "COMPLETED")
    )
    assert closed.group_by("outcome").len().sort("outcome").collect().rows() == [
        ("CLOSED", 30),
        ("NOT_CLOSED", 13),
    ]


def test_a_tampered_file_is_refused_by_the_reader_the_cli_and_the_job(
    locked_local: Settings,
) -> None:
    target = locked_local.home / "objects/locks" / STUDY / "PRIMARY" / "conflicts.parquet"
    target.chmod(target.stat().st_mode | stat.S_IWUSR)
    original = pl.read_parquet(target)
    original.with_columns(status=pl.lit("DECIDED")).head(3).write_parquet(target)

    with pytest.raises(SnapshotTamperedError, match=r"conflicts\.parquet: sha256 .* altered"):
        open_locked(STUDY, "PRIMARY", locked_local)
    cli = _run([*TRACT, "snapshot", "open", "--study", STUDY, "--lock", "PRIMARY"], locked_local)
    assert cli.returncode == 1
    assert "conflicts.parquet: sha256" in cli.stderr and "do not use it" in cli.stderr
    argv = ["-m", "services.analysis.job", "--store", "local", "--study", STUDY]
    job = _run([sys.executable, *argv, "--lock", "PRIMARY"], locked_local)
    assert job.returncode == 1 and "altered" in job.stderr


def test_snapshot_cli_lists_opens_and_exports_for_duckdb(
    locked_local: Settings, tmp_path: Path
) -> None:
    listed = _run([*TRACT, "snapshot", "list"], locked_local)
    assert listed.returncode == 0
    assert "PRIMARY" in listed.stdout and "LOCKED" in listed.stdout
    export = tmp_path / "export"
    opened = _run(
        [
            *TRACT,
            "snapshot",
            "open",
            "--study",
            STUDY,
            "--lock",
            "PRIMARY",
            "--export",
            str(export),
        ],
        locked_local,
    )
    assert opened.returncode == 0, opened.stderr
    assert "every sha256 verified" in opened.stdout
    assert "FULL_CLOSURE   12" in opened.stdout
    tracts = duckdb.read_parquet(str(export / "tract_outcomes.parquet"))  # noqa: F841
    assert duckdb.sql(CLOSED_BY_OUTCOME).fetchall() == [("CLOSED", 30), ("NOT_CLOSED", 13)]


@pytest.mark.slow
def test_duckdb_reads_the_locked_parquet_straight_from_s3(
    decided_home: Path, seaweedfs: servers.S3Server, bucket_factory: Callable[..., str]
) -> None:
    settings = s3_settings(decided_home, seaweedfs, bucket_factory("duck"))
    Platform.from_settings(settings).lock(
        STUDY, "PRIMARY", "primary analysis", "dm.jones", open_queries_reason="sites answer later"
    )
    verified = open_locked(STUDY, "PRIMARY", settings)["tract_outcomes"].collect()

    s3 = pafs.S3FileSystem(
        endpoint_override=seaweedfs.endpoint,
        scheme="http",
        access_key=seaweedfs.access_key,
        secret_key=seaweedfs.secret_key,
        region="us-east-1",
    )
    bucket, prefix = settings.store.removeprefix("s3://").split("/", 1)
    path = f"{bucket}/{prefix}/locks/{STUDY}/PRIMARY/tract_outcomes.parquet"
    tracts = ds.dataset(path, filesystem=s3, format="parquet")  # noqa: F841
    assert duckdb.sql(CLOSED_BY_OUTCOME).fetchall() == [("CLOSED", 30), ("NOT_CLOSED", 13)]
    assert duckdb.sql("SELECT count(*) FROM tracts").fetchall() == [(verified.height,)]
