"""Trial homes for lock tests: the scripted demo trial ingested, with or without the
committee's decisions, built once per session and copied per test (copying an event log is
much faster than ingesting it again)."""

from __future__ import annotations

import shutil
from pathlib import Path

from services.config import Secret, Settings
from services.demo.run import decide_demo_conflicts, demo_committee
from services.demo.trial import DEMO_STUDY, write_demo_trial
from services.platform import Platform

STUDY = DEMO_STUDY


def build_home(home: Path, decided: bool) -> Path:
    """Ingest the demo trial into ``home``; with ``decided`` the committee settles every
    conflict (so the study can be locked), without it the conflicts stay open."""
    if (home / "log" / "LOG").exists():
        return home
    staging = home.with_name(home.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    platform = Platform.embedded(staging)
    files = write_demo_trial(staging / "files")
    platform.ingest(STUDY, list(files.values()))
    if decided:  # the demo committee's members sign their votes
        from tests.signing import fast_hasher

        decide_demo_conflicts(platform, demo_committee(platform, fast_hasher()))
    platform.bus.close()
    staging.rename(home)
    return home


def copy_home(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, ignore=shutil.ignore_patterns("files", "objects", "staging"))
    return dest


def s3_settings(home: Path, server: object, bucket: str) -> Settings:
    """Settings for a store in ``bucket`` (under a prefix) on a test S3 server."""
    return Settings(
        home=home,
        store=f"s3://{bucket}/tract",
        s3_endpoint=server.endpoint,  # type: ignore[attr-defined]
        s3_access_key=Secret(server.access_key),  # type: ignore[attr-defined]
        s3_secret_key=Secret(server.secret_key),  # type: ignore[attr-defined]
        s3_secure=False,
    )


def env_of(settings: Settings) -> dict[str, str]:
    """The TRACT_* variables that make ``Settings.from_env()`` equal ``settings``."""
    env = {"TRACT_HOME": str(settings.home), "TRACT_STORE": settings.store}
    if settings.store.startswith("s3://"):
        assert settings.s3_access_key is not None and settings.s3_secret_key is not None
        env |= {
            "TRACT_S3_ENDPOINT": str(settings.s3_endpoint),
            "TRACT_S3_ACCESS_KEY": settings.s3_access_key.reveal(),
            "TRACT_S3_SECRET_KEY": settings.s3_secret_key.reveal(),
            "TRACT_S3_SECURE": "false",
        }
    return env


def alter_an_exam(home: Path) -> Path:
    """What one insider with write access to the home can do: rewrite a clinical exam segment
    in place, one exam turned from OPEN to CLOSED (or back), padded to the byte size the log's
    index records (the size is all a read checks; the sha256 is what `tract verify` checks).
    Its path."""
    import io

    import polars as pl

    for path in sorted((home / "log" / "segments").glob("*.parquet")):
        frame = pl.read_parquet(path)
        if "external_opening" not in frame.columns:
            continue
        first = pl.int_range(pl.len()) == 0
        flipped = pl.when(pl.col("external_opening") == "OPEN").then(pl.lit("CLOSED"))
        edited = frame.with_columns(
            external_opening=pl.when(first)
            .then(flipped.otherwise(pl.lit("OPEN")))
            .otherwise(pl.col("external_opening"))
        )
        buffer = io.BytesIO()
        edited.write_parquet(buffer, compression="zstd", compression_level=22)
        data, size = buffer.getvalue(), path.stat().st_size
        assert len(data) <= size, "the edit did not compress below the original"
        footer = int.from_bytes(data[-8:-4], "little") + 8  # metadata, its length, PAR1
        data = data[:-footer] + b"\0" * (size - len(data)) + data[-footer:]
        path.chmod(0o600)
        path.write_bytes(data)
        assert not pl.read_parquet(path).equals(frame)
        return path
    raise AssertionError(f"no clinical exam segment in {home}")
