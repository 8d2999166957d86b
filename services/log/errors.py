"""What the embedded event log refuses: a damaged or foreign log is reported by name, never
answered with zeros."""

from services.errors import BusError


class LogDamagedError(BusError):
    """Committed data of the log is missing or altered; nothing is served or written until a
    person has looked (the message names the file and what to do)."""


class NotALogError(LogDamagedError):
    """A folder or file where the log should be that is not a tract event log."""
