from services.errors import TractError, TransientError


class BusError(TractError):
    """The event log refused or failed an operation."""


class BusUnavailableError(BusError, TransientError):
    """The log or broker could not be reached; retrying may help."""


class MalformedEventError(BusError):
    """A message that is not a valid event (envelope, headers or payload); it is dead-lettered
    with this reason and never retried."""

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")
