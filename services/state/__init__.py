"""The maintained state: outcomes, categories and conflicts kept up to date with the log.

Data walks one way: ingest -> log -> state -> lock. The state reads typed records
(:class:`~services.state.records.Records`) and never the platform above it.
"""

from services.state.maintained import MaintainedState
from services.state.records import Cut, Records, adjudicate_study

__all__ = ["Cut", "MaintainedState", "Records", "adjudicate_study"]
