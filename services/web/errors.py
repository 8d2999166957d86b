"""What the web page refuses, each with the fix; all derive from the platform's root error."""

from services.errors import TractError


class WebError(TractError):
    """The web page refused a request or could not start."""


class WebConfigError(WebError):
    """A web setting (environment variable) with a value that cannot be used."""


class UserError(WebError):
    """A user command that cannot be carried out (unknown user, bad role, short password)."""


class SignInRefusedError(WebError):
    """Unknown user, wrong password, inactive account or too many failures.

    ``reason`` is for the audit trail; the person signing in only sees a generic message.
    """

    def __init__(self, reason: str) -> None:
        super().__init__("unknown user or wrong password")
        self.reason = reason


class AccessRefusedError(WebError):
    """A signed-in person asked for something their role or the request does not allow."""

    def __init__(self, message: str, status_code: int = 403) -> None:
        super().__init__(message)
        self.status_code = status_code
