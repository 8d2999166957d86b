"""What the event bus refuses: its two general errors (defined in services/errors.py, below
the embedded log that derives from them) and a malformed message."""

from services.errors import BusError, BusUnavailableError

__all__ = ["BusError", "BusUnavailableError", "MalformedEventError"]


class MalformedEventError(BusError):
    """A message that is not a valid event (envelope, headers or payload); it is dead-lettered
    with this reason and never retried."""

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")
