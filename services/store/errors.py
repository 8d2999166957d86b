from services.errors import TractError, TransientError


class StoreError(TractError):
    pass


class ObjectNotFoundError(StoreError):
    pass


class ObjectLockedError(StoreError):
    """The store refused to change or delete a retained object."""


class StoreUnavailableError(StoreError, TransientError):
    pass


class StoreConfigError(StoreError):
    """The store's settings are missing or wrong; the message names every place checked."""


class StoreAuthError(StoreError):
    """The store refused the credentials or the permission; retrying will not help."""
