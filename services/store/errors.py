from services.errors import TractError, TransientError


class StoreError(TractError):
    pass


class ObjectNotFoundError(StoreError):
    pass


class ObjectLockedError(StoreError):
    """The store refused to change or delete a retained object."""


class StoreUnavailableError(StoreError, TransientError):
    pass
