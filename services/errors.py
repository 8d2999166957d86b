"""The root of every error the platform raises on purpose.

Each package has its own ``errors.py`` whose classes derive from :class:`TractError`, so a
caller can catch "anything the platform refused" in one place and leave bugs alone.

The event bus's two general errors live here (:class:`BusError`, :class:`BusUnavailableError`):
the embedded log below the bus derives its own from them; ``services.bus.errors`` hands them on.

The user store's refusals live here too (:class:`UserError`, :class:`SignInRefusedError`):
the store (``services/users.py``) and its sign-in throttle (``services/throttle.py``) raise
them for the CLI, the DAGs and the web page alike, as they raise :class:`WebConfigError` for a
``TRACT_WEB_*`` variable that cannot be used. They keep the :class:`WebError` base they were
born under, so whatever caught them still does.
"""


class TractError(Exception):
    """Something the platform refused, with a message that says what to do next."""


class TransientError(TractError):
    """A failure worth retrying as it is (a broker or store that did not answer)."""


class BusError(TractError):
    """The event log refused or failed an operation (the embedded log's refusals derive from
    it too, so the log needs nothing from the bus above it)."""


class BusUnavailableError(BusError, TransientError):
    """The log or broker could not be reached; retrying may help."""


class WebError(TractError):
    """The web page refused a request or could not start."""


class WebConfigError(WebError):
    """A web or user store setting (a ``TRACT_WEB_*`` variable) with a value that cannot be used."""


class UserError(WebError):
    """A user command that cannot be carried out (unknown user, bad role, short password)."""


class SignInRefusedError(WebError):
    """Unknown user, wrong password, inactive account or too many failures.

    ``reason`` is for the audit trail; the person signing in only sees a generic message.
    """

    def __init__(self, reason: str) -> None:
        super().__init__("unknown user or wrong password")
        self.reason = reason
