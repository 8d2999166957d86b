"""What the web page refuses, each with the fix; all derive from the platform's root error.

The user store's refusals (``UserError``, ``SignInRefusedError``), the ``WebConfigError`` of its
settings and their ``WebError`` base are in :mod:`services.errors`: the CLI and the DAGs raise
them too.
"""

from services.errors import WebError


class AccessRefusedError(WebError):
    """A signed-in person asked for something their role or the request does not allow."""

    def __init__(self, message: str, status_code: int = 403) -> None:
        super().__init__(message)
        self.status_code = status_code
