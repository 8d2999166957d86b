from services.errors import TractError


class AdjudicatorError(TractError):
    """The adjudicator refused a request."""


class RuleSetError(AdjudicatorError):
    """The rule-set file is missing a parameter or has a wrong value."""


class UnknownConflictError(AdjudicatorError):
    pass


class DecisionRefusedError(AdjudicatorError):
    """A committee decision that does not meet the protocol (quorum, rationale, status)."""


class StaleReviewError(DecisionRefusedError):
    """A decision confirmed by someone who saw other evidence, or another decision in force,
    than there is now."""


class LockBlockedError(AdjudicatorError):
    """A database lock refused, naming what blocks it."""


class LockNotFoundError(AdjudicatorError):
    pass


class SnapshotTamperedError(AdjudicatorError):
    """A locked file whose bytes no longer match the manifest's sha256."""


class LockRefusedError(AdjudicatorError):
    """A lock or unlock request that cannot be honoured as asked (bad id, unlocked id, approvals)."""


class ValidationFailedError(AdjudicatorError):
    """The Great Expectations gate found data a lock must not freeze; lists the failures."""
