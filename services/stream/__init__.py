"""The platform on Kafka: the adjudicator service and the state it keeps.

    applied.py   its applied events (a columnar, hash-chained log) and bookkeeping
    frames.py    Kafka's per-event records as the log's frames
    service.py   the consumer-group member that applies, adjudicates and publishes
    changes.py   outcome changes against what was published
    view.py      the state as every other process reads it (never zeros while rebuilding)

``tract adjudicator run|status`` is services/cli/adjudicator.py.

Data walks one way: Kafka (services/bus) -> applied log (services/log) -> maintained state
(services/state) -> outputs on Kafka; the CLI, the web page and the DAGs read the view.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.bus.kafka import KafkaBus
    from services.config import Settings
    from services.stream.view import AppliedView


def open_kafka(settings: Settings) -> tuple[KafkaBus, AppliedView]:
    """The Kafka bus, and the adjudicator service's state as the records every command reads
    (writers wait on it for what they sent)."""
    from services.bus.kafka import KafkaBus
    from services.bus.kafka_config import KafkaConfig
    from services.stream.applied import LOG, applied_root
    from services.stream.view import AppliedView

    view = AppliedView(applied_root(settings.home) / LOG, settings.kafka_apply_wait_s)
    return KafkaBus(KafkaConfig.from_settings(settings), view), view
