"""Database locks through the library (what `tract lock` and the DAG tasks call), on a local
folder and on real S3 servers: refusals, idempotency, hard retention, tampering, outages."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from minio.commonconfig import COMPLIANCE

from services.errors import TransientError
from services.lock.catalog import list_snapshots
from services.lock.errors import LockBlockedError, LockRefusedError, SnapshotTamperedError
from services.lock.snapshot import lock_prefix, open_lock, read_manifest
from services.platform import Platform
from services.signatures import SignatureRefusedError
from services.store.errors import StoreUnavailableError
from services.store.s3 import S3Store
from tests import servers
from tests.signing import directory, signed_as
from tests.store.trials import STUDY, s3_settings


def _lock_events(platform: Platform) -> pl.DataFrame:
    """Published lock events (LOCK, UNLOCK); a CLAIM only reserves an id."""
    events = platform.records("lock", STUDY).sort("offset").collect()
    return events.filter(pl.col("action") != "CLAIM")


def test_open_conflicts_block_the_lock_and_are_listed(open_home: Path) -> None:
    platform = Platform.embedded(open_home)
    open_ids = platform.adjudicate(STUDY).conflicts.filter(pl.col("status") == "OPEN")[
        "conflict_id"
    ]
    assert len(open_ids) > 0
    with pytest.raises(LockBlockedError) as blocked:
        platform.lock(
            STUDY, "L1", "primary analysis", "dm.jones", open_queries_reason="sites answer later"
        )
    for conflict_id in open_ids:
        assert conflict_id in str(blocked.value)
    assert "resolve them in the committee queue" in str(blocked.value)
    assert platform.store.list("locks") == []
    assert _lock_events(platform).is_empty()


def test_the_same_lock_id_again_returns_the_same_lock(decided_home: Path) -> None:
    platform = Platform.embedded(decided_home)
    first = platform.lock(
        STUDY, "PRIMARY", "primary analysis", "dm.jones", open_queries_reason="sites answer later"
    )
    again = platform.lock(
        STUDY,
        "PRIMARY",
        "different words",
        "someone.else",
        open_queries_reason="sites answer later",
    )
    assert again.pop("already_locked") is True
    assert again == first
    # Asking for another level does not change a lock (issue 9: a soft lock stayed soft while
    # the answer said "already locked"); raising it is a signed step of its own.
    with pytest.raises(LockRefusedError, match="signed step"):
        platform.lock(
            STUDY,
            "PRIMARY",
            "different words",
            "someone.else",
            "hard",
            open_queries_reason="sites answer later",
        )
    assert _lock_events(platform).height == 1
    assert platform.lock_positions(STUDY) == first["positions"]


def test_unlock_needs_a_reason_and_two_approvers_other_than_the_requester(
    decided_home: Path,
) -> None:
    platform = Platform.embedded(decided_home)
    users = directory(decided_home)
    platform.lock(
        STUDY, "PRIMARY", "primary analysis", "dm.jones", open_queries_reason="sites answer later"
    )
    with pytest.raises(LockRefusedError, match="needs a reason"):
        platform.request_unlock(STUDY, "PRIMARY", "  ", signed_as("dm.jones"), users)
    asked = platform.request_unlock(
        STUDY, "PRIMARY", "late MRI reads", signed_as("dm.jones"), users
    )
    by_admin = platform.request_unlock(
        STUDY, "PRIMARY", "late data", signed_as("root.admin"), users
    )
    with pytest.raises(LockRefusedError, match=r"root\.admin requested it and cannot also approve"):
        platform.approve_unlock(by_admin.request_id, signed_as("ROOT.ADMIN"), users)
    refusals = {
        "data managers request, never approve": (
            "dm.jones",
            SignatureRefusedError,
            "data_manager, which may not sign an unlock approval",
        ),
        "committee member": ("dr.a", SignatureRefusedError, "may not sign an unlock approval"),
        "unknown person": ("ghost.approver", SignatureRefusedError, "unknown user"),
    }
    for case, (who, error, message) in refusals.items():
        with pytest.raises(error, match=message):
            platform.approve_unlock(asked.request_id, signed_as(who), users)
        assert platform.lock_state(STUDY, "PRIMARY") == "LOCK", case
    _, record = platform.approve_unlock(asked.request_id, signed_as("qa.lee"), users)
    assert record is None and platform.lock_state(STUDY, "PRIMARY") == "LOCK"  # one of two
    with pytest.raises(LockRefusedError, match="already approved"):
        platform.approve_unlock(asked.request_id, signed_as("QA.Lee"), users)
    _, record = platform.approve_unlock(asked.request_id, signed_as("root.admin"), users)
    assert record is not None and record["approvers"] == ["qa.lee", "root.admin"]
    assert record["request_id"] == asked.request_id
    assert "Quinn Lee (qa.lee)" in record["approvals"][0]
    assert platform.lock_positions(STUDY) is None  # no lock in force
    assert platform.apply_unlock(asked.request_id)["already_unlocked"]
    trail = platform.audit(STUDY).filter(pl.col("kind") == "lock")
    assert trail["action"].to_list() == ["LOCK", "UNLOCK"]
    assert trail["who"][-1] == "dm.jones approved by qa.lee, root.admin"
    assert trail["why"][-1] == "late MRI reads"
    # The old lock's files stay and still verify; its id cannot be locked again.
    assert open_lock(platform.store, STUDY, "PRIMARY").tables["tract_outcomes"].height > 0
    with pytest.raises(LockRefusedError, match="new lock id"):
        platform.lock(
            STUDY,
            "PRIMARY",
            "primary analysis",
            "dm.jones",
            open_queries_reason="sites answer later",
        )
    platform.lock(
        STUDY,
        "PRIMARY-2",
        "primary analysis, after the late reads",
        "dm.jones",
        open_queries_reason="sites answer later",
    )
    assert [(e.id, e.status) for e in list_snapshots(platform.store, STUDY)] == [
        ("PRIMARY", "UNLOCKED"),
        ("PRIMARY-2", "LOCKED"),
    ]


@pytest.mark.slow
def test_hard_lock_on_s3_is_retained_and_tampering_is_refused(
    decided_home: Path, seaweedfs: servers.S3Server, bucket_factory: Callable[..., str]
) -> None:
    settings = s3_settings(decided_home, seaweedfs, bucket_factory("hard"))
    platform = Platform.from_settings(settings)
    manifest = platform.lock(
        STUDY,
        "FINAL",
        "final analysis",
        "dm.jones",
        "hard",
        2,
        open_queries_reason="sites answer later",
    )
    assert manifest["retain_until"]

    store = platform.store
    assert isinstance(store, S3Store)
    client = seaweedfs.minio()
    prefix = f"{store.prefix}/{lock_prefix(STUDY, 'FINAL')}"
    names = [o.object_name for o in client.list_objects(store.bucket, prefix, recursive=True)]
    assert len(names) == len(manifest["files"]) + 1
    for name in names:
        retention = client.get_object_retention(store.bucket, name)
        assert retention.mode == COMPLIANCE
        assert (
            retention.retain_until_date.isoformat().replace("+00:00", "Z")
            == (manifest["retain_until"])
        )

    from services.verify import verify_home

    assert verify_home(decided_home, store).intact  # the log and the hard lock on S3 agree

    target = f"{prefix}/patient_outcomes.parquet"
    client.put_object(store.bucket, target, io.BytesIO(b"forged"), 6)
    with pytest.raises(SnapshotTamperedError, match=r"patient_outcomes\.parquet: sha256"):
        open_lock(store, STUDY, "FINAL")
    # a new version stacked on a retained object is what an auditor is told about
    verdict = verify_home(decided_home, store)
    assert not verdict.intact and "patient_outcomes.parquet" in str(verdict.first())
    client.remove_object(store.bucket, target)  # only a delete marker: the version stays
    with pytest.raises(SnapshotTamperedError, match="missing"):
        open_lock(store, STUDY, "FINAL")


class _FailingMidway(S3Store):
    """An S3 store whose server goes down after a few objects of a lock were written."""

    server: servers.S3Server
    after: int = 4

    def _put(self, key: str, data: bytes, retention: object) -> str | None:  # type: ignore[override]
        self.after -= 1
        if self.after < 0 and self.server.running:
            self.server.kill()  # an abrupt outage, mid-write
        return super()._put(key, data, retention)  # type: ignore[arg-type]


@pytest.mark.slow
def test_an_s3_outage_mid_lock_leaves_no_lock_and_a_rerun_succeeds(
    decided_home: Path, tmp_path: Path, bucket_factory: Callable[..., str]
) -> None:
    with servers.seaweedfs_s3(tmp_path / "weed") as s3:
        settings = s3_settings(decided_home, s3, bucket_factory("outage"))
        platform = Platform.from_settings(settings)
        failing = _FailingMidway(
            s3.minio(), platform.store.bucket, platform.store.prefix, endpoint=s3.url
        )
        failing.server = s3
        platform.store = failing
        with pytest.raises(StoreUnavailableError) as down:
            platform.lock(
                STUDY,
                "PRIMARY",
                "primary analysis",
                "dm.jones",
                "hard",
                1,
                open_queries_reason="sites answer later",
            )
        assert isinstance(down.value, TransientError)

        s3.start()
        store = S3Store.from_settings(settings)
        assert len(store.list("locks")) < 10  # at most a few files made it, never the manifest
        assert not store.exists(f"{lock_prefix(STUDY, 'PRIMARY')}/manifest.json")
        assert list_snapshots(store) == []  # nothing a reader would trust
        platform.store = store
        assert platform.lock_state(STUDY, "PRIMARY") is None  # and no lock event

        manifest = platform.lock(
            STUDY,
            "PRIMARY",
            "primary analysis",
            "dm.jones",
            "hard",
            1,
            open_queries_reason="sites answer later",
        )
        assert read_manifest(store, STUDY, "PRIMARY") == manifest
        assert open_lock(store, STUDY, "PRIMARY").tables["patient_outcomes"].height == 23
        assert platform.lock_state(STUDY, "PRIMARY") == "LOCK"
        assert json.loads(store.read(f"{lock_prefix(STUDY, 'PRIMARY')}/report.json"))["study"]
