"""What a lock, an unlock or a read of a lock refuses."""

from services.errors import TractError


class LockError(TractError):
    """A lock-related request the platform refused."""


class LockBlockedError(LockError):
    """A database lock refused, naming what blocks it."""


class LockNotFoundError(LockError):
    pass


class SnapshotTamperedError(LockError):
    """A locked file whose bytes no longer match the manifest's sha256, or a manifest that no
    longer matches the lock event in the log."""


class LockRefusedError(LockError):
    """A lock or unlock request that cannot be honoured as asked (bad id, unlocked id, approvals)."""


class ValidationFailedError(LockError):
    """The Great Expectations gate found data a lock must not freeze; lists the failures."""


class LogAlteredError(LockError):
    """The event log no longer matches its hash chain (what ``tract verify`` finds): a lock is
    not taken on it."""
