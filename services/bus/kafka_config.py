"""Kafka connection settings and the topic table, as frozen data.

Why a separate object: the adapter needs bootstrap servers, credentials, timeouts and the
topic names in one place it can hand to every kafka-python client; the topic names and
partition counts live in ``infra/topics.yaml`` (configuration is data), not in code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

import schemas
from services.bus.errors import BusError

if TYPE_CHECKING:
    from services.config import Secret, Settings

DEFAULT_TOPICS = Path(__file__).resolve().parents[2] / "infra" / "topics.yaml"
OUTPUT_KINDS = ("outcome_change", "conflict_change")
DEAD_LETTER_KIND = "rejected_row"


@dataclass(frozen=True)
class TopicSpec:
    kind: str
    name: str
    partitions: int


@dataclass(frozen=True)
class KafkaConfig:
    """Everything a kafka-python client needs; ``password`` never prints."""

    bootstrap: tuple[str, ...]
    topics: tuple[TopicSpec, ...]
    adjudicator_group: str
    replication_factor: int = 1
    client_id: str = "tract"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    timeout_s: float = 10.0
    retries: int = 3
    apply_wait_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaConfig:
        url = settings.bus
        hosts = tuple(h.strip() for h in url.removeprefix("kafka://").split(",") if h.strip())
        if not url.startswith("kafka://") or not hosts or any(":" not in h for h in hosts):
            raise BusError(
                f"bus {url!r} is not a Kafka address: use kafka://HOST:PORT[,HOST:PORT] "
                "(--bus or TRACT_BUS)"
            )
        path = settings.kafka_topics or DEFAULT_TOPICS
        raw = _read_topics(path)
        prefix = settings.kafka_prefix
        try:
            topics = tuple(
                TopicSpec(kind, prefix + spec["name"], int(spec["partitions"]))
                for kind, spec in raw["topics"].items()
            )
            group = prefix + raw["groups"]["adjudicator"]
            replication = int(raw.get("replication_factor", 1))
        except (KeyError, TypeError, ValueError) as exc:
            raise BusError(
                f"{path}: every topic needs a name and partitions, and groups.adjudicator a "
                f"name ({exc!r}); compare with {DEFAULT_TOPICS}"
            ) from exc
        listed = {t.kind for t in topics}
        topics += tuple(
            TopicSpec(kind, f"{prefix}tract.{kind}", 1)
            for kind in sorted(schemas.contracts())
            if kind not in listed
        )
        return cls(
            bootstrap=hosts,
            topics=topics,
            adjudicator_group=group,
            replication_factor=replication,
            client_id=settings.kafka_client_id,
            security_protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_username,
            password=settings.kafka_password,
            timeout_s=settings.kafka_timeout_s,
            retries=max(1, settings.kafka_retries),
            apply_wait_s=settings.kafka_apply_wait_s,
        )

    def topic(self, kind: str) -> str:
        try:
            return self._by_kind[kind]
        except KeyError:
            raise BusError(
                f"no Kafka topic for event kind {kind!r}; add it to the topics file"
            ) from None

    def kind(self, topic: str) -> str | None:
        return self._by_topic.get(topic)

    @cached_property
    def _by_kind(self) -> dict[str, str]:
        return {t.kind: t.name for t in self.topics}

    @cached_property
    def _by_topic(self) -> dict[str, str]:
        return {t.name: t.kind for t in self.topics}

    def input_kinds(self) -> tuple[str, ...]:
        """What the adjudicator reads: every kind except its own outputs."""
        return tuple(t.kind for t in self.topics if t.kind not in OUTPUT_KINDS)

    def client_options(self) -> dict[str, Any]:
        """Options shared by producer, consumer and admin client."""
        options: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "bootstrap_timeout_ms": int(self.timeout_s * 1000),
            "request_timeout_ms": int(self.timeout_s * 1000),
            "reconnect_backoff_max_ms": 2000,
        }
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.username
            options["sasl_plain_password"] = self.password.reveal() if self.password else None
        return options

    @property
    def where(self) -> str:
        return ",".join(self.bootstrap)


def _read_topics(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise BusError(
            f"cannot read the Kafka topics file {path} ({exc.strerror}); set TRACT_KAFKA_TOPICS "
            f"to a copy of {DEFAULT_TOPICS.name} from the project's infra/ folder"
        ) from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("topics"), dict):
        raise BusError(f"{path}: expected a mapping with a 'topics:' table")
    return raw
