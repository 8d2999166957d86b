"""The embedded event log: append-only, columnar (one Parquet segment per batch) and
hash-chained. See :mod:`services.log.eventlog`."""

from services.log.eventlog import EventLog, Head
from services.log.segment import Batch

__all__ = ["Batch", "EventLog", "Head"]
