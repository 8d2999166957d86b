"""The S3 store on real servers (moto for the contract, SeaweedFS for object lock)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from minio.commonconfig import COMPLIANCE
from minio.error import S3Error
from minio.retention import Retention

from services.config import Secret, Settings
from services.errors import TransientError
from services.store import open_store
from services.store.errors import (
    ObjectLockedError,
    ObjectNotFoundError,
    StoreAuthError,
    StoreConfigError,
)
from services.store.s3 import S3Store, parse_store_uri
from tests import servers

pytestmark = pytest.mark.slow


@pytest.fixture(params=["moto_s3", "seaweedfs"])
def s3(request: pytest.FixtureRequest) -> servers.S3Server:
    return request.getfixturevalue(request.param)


def test_store_contract(s3: servers.S3Server, bucket_factory: Callable[..., str]) -> None:
    store = S3Store(s3.minio(), bucket_factory("contract"), "trial/a", endpoint=s3.url)
    assert store.object_lock_enabled()  # created by the store: object lock, versioning
    big = bytes(range(256)) * (6 * 4096)  # 6 MiB: above minio's multipart threshold
    files = {"tables/t.parquet": b"PAR1...", "report.json": b"{}", "big.parquet": big}
    store.write_snapshot("locks/S/L1", files, b'{"files": {}}')

    assert store.list("locks") == [
        "locks/S/L1/big.parquet",
        "locks/S/L1/manifest.json",
        "locks/S/L1/report.json",
        "locks/S/L1/tables/t.parquet",
    ]
    assert store.read("locks/S/L1/tables/t.parquet") == b"PAR1..."
    assert store.read("locks/S/L1/big.parquet") == big
    assert store.exists("locks/S/L1/manifest.json")
    assert not store.exists("locks/S/L2/manifest.json")
    assert store.location("locks/S/L1").startswith("s3://contract-")
    assert store.location("locks/S/L1").endswith("/trial/a/locks/S/L1")
    with pytest.raises(ObjectLockedError, match="already published"):
        store.write_snapshot("locks/S/L1", files, b"{}")
    with pytest.raises(ObjectNotFoundError, match="does not exist"):
        store.read("locks/S/L1/nope.parquet")
    assert store.list("nothing-here") == []


def test_hard_retention_refuses_delete_and_shortening(
    seaweedfs: servers.S3Server, bucket_factory: Callable[..., str]
) -> None:
    bucket = bucket_factory("retain")
    store = S3Store(seaweedfs.minio(), bucket, endpoint=seaweedfs.url)
    until = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    store.write_snapshot("locks/S/H", {"a.parquet": b"locked bytes"}, b"{}", until)

    client = seaweedfs.minio()
    locked: dict[str, str] = {}
    for name in ("locks/S/H/a.parquet", "locks/S/H/manifest.json"):
        [version] = [
            o.version_id for o in client.list_objects(bucket, prefix=name, include_version=True)
        ]
        locked[name] = version
        retention = client.get_object_retention(bucket, name, version_id=version)
        assert (retention.mode, retention.retain_until_date) == (COMPLIANCE, until)
        with pytest.raises(S3Error) as refused:
            client.remove_object(bucket, name, version_id=version)
        assert refused.value.code == "AccessDenied"
        with pytest.raises(S3Error):
            client.set_object_retention(
                bucket, name, Retention(COMPLIANCE, until - timedelta(days=1)), version_id=version
            )
    # An overwrite only stacks a new version: the locked one is still there, byte for byte.
    client.put_object(bucket, "locks/S/H/a.parquet", io.BytesIO(b"forged"), 6)
    versions = list(client.list_objects(bucket, prefix="locks/S/H/a.", include_version=True))
    assert len(versions) == 2
    response = client.get_object(
        bucket, "locks/S/H/a.parquet", version_id=locked["locks/S/H/a.parquet"]
    )
    try:
        assert response.read() == b"locked bytes"
    finally:
        response.close()
        response.release_conn()


def test_hard_lock_needs_an_object_lock_bucket(
    seaweedfs: servers.S3Server, bucket_factory: Callable[..., str]
) -> None:
    bucket = bucket_factory("plain")
    seaweedfs.minio().make_bucket(bucket)  # no object lock
    store = S3Store(seaweedfs.minio(), bucket, endpoint=seaweedfs.url)
    with pytest.raises(ObjectLockedError, match="no object lock"):
        store.write_snapshot("locks/S/H", {"a": b"x"}, b"{}", datetime.now(UTC) + timedelta(1))
    assert store.list("locks") == []  # refused before anything was written
    store.write_snapshot("locks/S/soft", {"a": b"x"}, b"{}")  # a soft lock is fine


def test_settings_select_the_s3_store(
    seaweedfs: servers.S3Server, bucket_factory: Callable[..., str], tmp_path: Path
) -> None:
    bucket = bucket_factory("settings")
    env = {
        "TRACT_HOME": str(tmp_path),
        "TRACT_STORE": f"s3://{bucket}/p",
        "TRACT_S3_ENDPOINT": f"http://{seaweedfs.endpoint}",
        "TRACT_S3_ACCESS_KEY": seaweedfs.access_key,
        "TRACT_S3_SECRET_KEY": seaweedfs.secret_key,
    }
    settings = Settings.from_env(env)
    assert seaweedfs.secret_key not in repr(settings)
    store = open_store(settings)
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix) == (bucket, "p")
    assert seaweedfs.minio().bucket_exists(bucket)


def test_missing_settings_name_every_variable(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, store="s3://b-1")
    with pytest.raises(StoreConfigError) as missing:
        open_store(settings)
    for var in ("TRACT_S3_ENDPOINT", "TRACT_S3_ACCESS_KEY", "TRACT_S3_SECRET_KEY"):
        assert var in str(missing.value)
    assert parse_store_uri("s3://bucket/a/b/") == ("bucket", "a/b")
    with pytest.raises(StoreConfigError):
        parse_store_uri("gs://bucket")


def test_wrong_keys_are_final_not_retryable(
    seaweedfs: servers.S3Server, bucket_factory: Callable[..., str], tmp_path: Path
) -> None:
    settings = Settings(
        home=tmp_path,
        store=f"s3://{bucket_factory('auth')}",
        s3_endpoint=seaweedfs.endpoint,
        s3_access_key=Secret(seaweedfs.access_key),
        s3_secret_key=Secret("not-the-secret"),
        s3_secure=False,
    )
    with pytest.raises(StoreAuthError) as refused:
        open_store(settings)
    assert not isinstance(refused.value, TransientError)
    assert "not-the-secret" not in str(refused.value)


def test_a_stopped_server_is_a_retryable_error(
    tmp_path: Path, bucket_factory: Callable[..., str]
) -> None:
    with servers.seaweedfs_s3(tmp_path / "weed") as s3:
        store = S3Store.from_settings(
            Settings(
                home=tmp_path,
                store=f"s3://{bucket_factory('down')}",
                s3_endpoint=s3.endpoint,
                s3_access_key=Secret(s3.access_key),
                s3_secret_key=Secret(s3.secret_key),
                s3_secure=False,
            )
        )
        store.write_snapshot("x", {"a": b"1"}, json.dumps({}).encode())
        s3.stop()
        with pytest.raises(TransientError, match="did not answer"):
            store.read("x/a")
        s3.start()
        assert store.read("x/a") == b"1"
