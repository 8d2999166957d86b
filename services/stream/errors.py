"""What the Kafka adjudicator's state refuses: a read it cannot answer truthfully yet."""

from services.errors import TractError, TransientError


class StreamError(TractError):
    """The Kafka adjudicator service or its applied state refused an operation."""


class NothingAppliedError(StreamError, TransientError):
    """The service has applied nothing in this home yet: it never ran here, or its state was
    deleted. A read would answer zeros, so it answers this instead."""


class RebuildingError(StreamError, TransientError):
    """The service is rebuilding its state from the topics: a read would answer a part of the
    trial as if it were the whole, so it says how far the rebuild is instead."""
