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
