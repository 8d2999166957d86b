"""``tract kafka topics``: create the platform's topics (idempotent) and show the table."""

from __future__ import annotations

from typing import Any

import click

from services.bus.errors import BusError


@click.group("kafka")
def kafka() -> None:
    """Kafka administration for the platform's topics (infra/topics.yaml)."""


@kafka.command("topics")
@click.pass_obj
def topics(obj: Any) -> None:
    """Create the topics that do not exist yet; safe to run again."""
    from services.bus.kafka import KafkaBus
    from services.bus.kafka_config import KafkaConfig

    if not obj.settings.bus.startswith("kafka://"):
        raise BusError("name the broker: --bus kafka://HOST:PORT or TRACT_BUS")
    bus = KafkaBus(KafkaConfig.from_settings(obj.settings))
    created = set(bus.ensure_topics())
    for spec in bus.config.topics:
        note = "created" if spec.name in created else "exists"
        click.echo(f"{spec.name:32} {spec.partitions:3} partition(s)  {spec.kind:20} {note}")
