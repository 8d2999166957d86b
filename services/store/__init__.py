"""The object store seam: where snapshots and locks are written, read back and verified.

``LocalStore`` (a folder, the default) and the S3 adapter both implement :class:`ObjectStore`.
``write_snapshot`` is the one operation that needs care: its files must never be visible
half-written, so the manifest is written last and a reader trusts only a prefix that has one.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from services.config import Settings

MANIFEST = "manifest.json"


class ObjectStore(Protocol):
    def read(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix``, sorted."""
        ...

    def write_snapshot(
        self,
        prefix: str,
        files: dict[str, bytes],
        manifest: bytes,
        retain_until: datetime | None = None,
    ) -> None:
        """Write ``files`` under ``prefix`` and then ``prefix/manifest.json``; with
        ``retain_until`` the objects cannot be changed or deleted before then."""
        ...

    def location(self, key: str) -> str:
        """Where a key lives, for people (a path or an s3:// URI)."""
        ...


def open_store(settings: Settings) -> ObjectStore:
    """The object store the settings name: a local folder (default) or an S3 bucket."""
    from services.store.errors import StoreError

    if settings.store == "local":
        from services.store.local import LocalStore

        return LocalStore(settings.home / "objects")
    if settings.store.startswith("s3://"):
        from services.store.s3 import S3Store

        return S3Store.from_settings(settings)
    raise StoreError(
        f"unknown store {settings.store!r}: use 'local' or s3://BUCKET (--store or TRACT_STORE)"
    )
