"""The S3 object store (MinIO, SeaweedFS, AWS) behind :class:`~services.store.ObjectStore`.

The bucket is created with object lock, which turns versioning on. A hard lock's files are put
with COMPLIANCE retention, so no one (root included) can delete or shorten a locked version
before its date; a later PUT only stacks a new version, which readers catch because they check
every file's sha256 against the manifest. The manifest is put last: a prefix without one was
never published and is never trusted, and writing it again after a crash simply adds versions.

minio and urllib3 errors are translated here, through :data:`S3_CODES`, into the store's own
errors (retryable :class:`StoreUnavailableError` or final ones); nothing above this module
catches ``minio.error.*``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import COMPLIANCE
from minio.error import InvalidResponseError, S3Error, ServerError
from minio.helpers import MAX_PART_SIZE, MIN_PART_SIZE
from minio.retention import Retention

from services.store import MANIFEST
from services.store.errors import (
    ObjectLockedError,
    ObjectNotFoundError,
    StoreAuthError,
    StoreConfigError,
    StoreError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from services.config import Settings

#: S3 error codes and what they mean here; any other code is a final StoreError.
S3_CODES: dict[str, type[StoreError]] = {
    "NoSuchKey": ObjectNotFoundError,
    "NoSuchVersion": ObjectNotFoundError,
    "NoSuchBucket": StoreConfigError,
    "InvalidAccessKeyId": StoreAuthError,
    "SignatureDoesNotMatch": StoreAuthError,
    "AccessDenied": StoreAuthError,
    "ObjectLocked": ObjectLockedError,
    "SlowDown": StoreUnavailableError,
    "InternalError": StoreUnavailableError,
    "ServiceUnavailable": StoreUnavailableError,
    "RequestTimeout": StoreUnavailableError,
    "BadDigest": StoreUnavailableError,  # bytes damaged on the way: send them again
    "XAmzContentSHA256Mismatch": StoreUnavailableError,
}


#: Objects up to this size go in one PUT with a sha256 checksum; larger ones go multipart.
SINGLE_PUT_MAX = MAX_PART_SIZE


def _http_client(secure: bool) -> urllib3.PoolManager:
    """Bounded timeouts and a few quick retries: an outage surfaces in seconds, not minutes."""
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=5.0, read=60.0),
        maxsize=10,
        cert_reqs="CERT_REQUIRED" if secure else "CERT_NONE",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(
            total=3, connect=3, read=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
        ),
    )


def parse_store_uri(uri: str) -> tuple[str, str]:
    """``s3://BUCKET[/prefix]`` -> (bucket, prefix without slashes)."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise StoreConfigError(f"store {uri!r} is not s3://BUCKET[/prefix] (--store, TRACT_STORE)")
    return parts.netloc, parts.path.strip("/")


class S3Store:
    """An :class:`~services.store.ObjectStore` in one bucket (optionally under a prefix)."""

    def __init__(
        self,
        client: Minio,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str = "",
        create_bucket: bool = True,
    ) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")
        self.endpoint = endpoint or "the S3 endpoint"
        self._object_lock: bool | None = None
        if create_bucket:
            self.ensure_bucket()

    @classmethod
    def from_settings(cls, settings: Settings, *, create_bucket: bool = True) -> S3Store:
        """The store ``settings.store`` names, with endpoint and keys from the settings."""
        bucket, prefix = parse_store_uri(settings.store)
        missing = [
            var
            for name, var in (
                ("s3_endpoint", "TRACT_S3_ENDPOINT"),
                ("s3_access_key", "TRACT_S3_ACCESS_KEY"),
                ("s3_secret_key", "TRACT_S3_SECRET_KEY"),
            )
            if not getattr(settings, name)
        ]
        if missing:
            raise StoreConfigError(
                f"store {settings.store} needs {', '.join(missing)}: set them in the environment "
                "(checked: the process environment and the CLI's --store option)"
            )
        endpoint, secure = _endpoint(str(settings.s3_endpoint), settings.s3_secure)
        assert settings.s3_access_key is not None and settings.s3_secret_key is not None
        client = Minio(
            endpoint,
            access_key=settings.s3_access_key.reveal(),
            secret_key=settings.s3_secret_key.reveal(),
            secure=secure,
            region=settings.s3_region or "us-east-1",
            http_client=_http_client(secure),
        )
        where = f"{'https' if secure else 'http'}://{endpoint}"
        return cls(client, bucket, prefix, endpoint=where, create_bucket=create_bucket)

    # naming ---------------------------------------------------------------------------------
    def _name(self, key: str) -> str:
        key = key.strip("/")
        if not key or any(part in ("", ".", "..") for part in key.split("/")):
            raise ValueError(f"key {key!r} is not a plain object path")
        return f"{self.prefix}/{key}" if self.prefix else key

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._name(key)}"

    # errors ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Translate minio and urllib3 failures into the store's errors (the mapping table)."""
        try:
            yield
        except S3Error as exc:
            kind = S3_CODES.get(exc.code or "", StoreError)
            hint = {
                StoreAuthError: "check TRACT_S3_ACCESS_KEY / TRACT_S3_SECRET_KEY and the policy",
                StoreConfigError: f"create the bucket or fix TRACT_STORE ({self.bucket})",
                StoreUnavailableError: "retry",
                ObjectLockedError: "the object is under retention; write a new lock instead",
            }.get(kind, "see the server's log")
            raise kind(f"{doing}: {exc.code}: {exc.message}; {hint}") from exc
        except ServerError as exc:
            raise StoreUnavailableError(
                f"{doing}: {self.endpoint} answered HTTP {exc.status_code}; retry"
            ) from exc
        except (urllib3.exceptions.HTTPError, InvalidResponseError, OSError) as exc:
            raise StoreUnavailableError(
                f"{doing}: {self.endpoint} did not answer ({type(exc).__name__}); "
                "retry when the S3 server is back"
            ) from exc

    # bucket ---------------------------------------------------------------------------------
    def ensure_bucket(self) -> None:
        """Create the bucket with object lock (and so versioning) if it does not exist."""
        with self._errors(f"checking bucket {self.bucket} at {self.endpoint}"):
            if self.client.bucket_exists(self.bucket):
                return
        with self._errors(f"creating bucket {self.bucket} at {self.endpoint}"):
            try:
                self.client.make_bucket(self.bucket, object_lock=True)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        self._object_lock = True

    def object_lock_enabled(self) -> bool:
        """Whether the bucket can hold COMPLIANCE retention (asked once, then remembered)."""
        if self._object_lock is None:
            with self._errors(f"reading the object-lock setting of {self.bucket}"):
                try:
                    self._object_lock = self.client.get_object_lock_config(self.bucket) is not None
                except S3Error as exc:
                    if exc.code != "ObjectLockConfigurationNotFoundError":
                        raise
                    self._object_lock = False
        return self._object_lock

    # reading --------------------------------------------------------------------------------
    def read(self, key: str) -> bytes:
        name = self._name(key)
        try:
            with self._errors(f"reading {self.location(key)}"):
                response = self.client.get_object(self.bucket, name)
                try:
                    return response.read()
                finally:
                    response.close()
                    response.release_conn()
        except ObjectNotFoundError:
            raise ObjectNotFoundError(f"{self.location(key)} does not exist") from None

    def exists(self, key: str) -> bool:
        try:
            with self._errors(f"looking up {self.location(key)}"):
                self.client.stat_object(self.bucket, self._name(key))
        except ObjectNotFoundError:
            return False
        return True

    def list(self, prefix: str) -> list[str]:
        base = self._name(prefix) + "/" if prefix.strip("/") else (self.prefix + "/").lstrip("/")
        strip = len(self.prefix) + 1 if self.prefix else 0
        with self._errors(f"listing {self.location(prefix) if prefix else self.bucket}"):
            names = [
                obj.object_name[strip:]
                for obj in self.client.list_objects(self.bucket, prefix=base, recursive=True)
                if obj.object_name and not obj.is_dir
            ]
        return sorted(names)

    # writing --------------------------------------------------------------------------------
    def write_snapshot(
        self,
        prefix: str,
        files: dict[str, bytes],
        manifest: bytes,
        retain_until: datetime | None = None,
    ) -> None:
        manifest_key = f"{prefix}/{MANIFEST}"
        if self.exists(manifest_key):
            raise ObjectLockedError(
                f"{self.location(prefix)} is already published; it is never overwritten"
            )
        retention = None
        if retain_until is not None:
            if not self.object_lock_enabled():
                raise ObjectLockedError(
                    f"bucket {self.bucket} has no object lock, so it cannot retain a hard lock; "
                    "use a bucket that tract creates (with object lock) or a soft lock"
                )
            retention = Retention(COMPLIANCE, retain_until.replace(microsecond=0))
        for name, data in files.items():
            self._put(f"{prefix}/{name}", data, retention)
        self._put(manifest_key, manifest, retention)  # last: only now is the prefix published

    def _put(self, key: str, data: bytes, retention: Retention | None) -> str | None:
        """Put one object; the server checks the sha256 it received. Returns its version id."""
        headers: dict[str, str] = {}
        part_size = 0  # minio's choice: multipart above 5 MiB
        if len(data) <= SINGLE_PUT_MAX:
            # One PUT (no multipart, where a whole-object checksum header is refused), so the
            # server can check the sha256 of what it received.
            checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
            headers = {"x-amz-sdk-checksum-algorithm": "SHA256", "x-amz-checksum-sha256": checksum}
            part_size = max(len(data), MIN_PART_SIZE)
        with self._errors(f"writing {self.location(key)}"):
            result = self.client.put_object(
                self.bucket,
                self._name(key),
                io.BytesIO(data),
                len(data),
                content_type=_content_type(key),
                metadata=headers,  # type: ignore[arg-type]
                retention=retention,
                part_size=part_size,
            )
        return result.version_id


def _endpoint(value: str, secure: bool) -> tuple[str, bool]:
    """``host:port`` for minio, and TLS on or off (a URL's scheme wins over TRACT_S3_SECURE)."""
    if "://" not in value:
        return value.strip("/"), secure
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise StoreConfigError(f"TRACT_S3_ENDPOINT {value!r} must be host:port or http(s)://host")
    return parts.netloc, parts.scheme == "https"


def _content_type(key: str) -> str:
    if key.endswith(".json"):
        return "application/json"
    if key.endswith(".parquet"):
        return "application/vnd.apache.parquet"
    return "application/octet-stream"
