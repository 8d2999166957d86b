"""The root of every error the platform raises on purpose.

Each package has its own ``errors.py`` whose classes derive from :class:`TractError`, so a
caller can catch "anything the platform refused" in one place and leave bugs alone.
"""


class TractError(Exception):
    """Something the platform refused, with a message that says what to do next."""


class TransientError(TractError):
    """A failure worth retrying as it is (a broker or store that did not answer)."""
