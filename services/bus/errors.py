from services.errors import TractError, TransientError


class BusError(TractError):
    """The event log refused or failed an operation."""


class BusUnavailableError(BusError, TransientError):
    """The log or broker could not be reached; retrying may help."""
