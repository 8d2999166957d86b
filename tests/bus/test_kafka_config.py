"""Kafka settings as data: the address, the topic table from infra/topics.yaml, the error
table, and what a user sees when the broker is not there."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import schemas
from services.bus.errors import BusError, BusUnavailableError
from services.bus.kafka import ERRORS, KafkaBus, translate
from services.bus.kafka_config import DEFAULT_TOPICS, KafkaConfig
from services.config import Settings
from services.platform import Platform
from services.stream.errors import NothingAppliedError
from tests import servers

from .samples import sample_event

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka.errors as kerr


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings.from_env({}, home=tmp_path, **kw)


def test_topics_come_from_the_infra_file_with_the_prefix(tmp_path: Path) -> None:
    config = KafkaConfig.from_settings(
        _settings(tmp_path, bus="kafka://127.0.0.1:1,127.0.0.2:2", kafka_prefix="qa.")
    )
    assert config.bootstrap == ("127.0.0.1:1", "127.0.0.2:2")
    assert config.topic("clinical_exam") == "qa.tract.clinical_exam"
    assert config.topic("rejected_row") == "qa.tract.dead_letter"
    assert config.topic("outcome_change") == "qa.tract.outcomes"
    assert config.topic("committee_decision") == "qa.tract.decisions"
    assert config.adjudicator_group == "qa.tract.adjudicator"
    assert {t.kind for t in config.topics} >= set(schemas.contracts())
    assert "outcome_change" not in config.input_kinds()
    assert "committee_decision" in config.input_kinds()
    assert DEFAULT_TOPICS.exists()


def test_a_kind_missing_from_the_file_gets_a_default_topic(tmp_path: Path) -> None:
    small = tmp_path / "topics.yaml"
    small.write_text(
        "topics:\n  subject: {name: x.subject, partitions: 2}\ngroups: {adjudicator: x.adj}\n"
    )
    config = KafkaConfig.from_settings(
        _settings(tmp_path, bus="kafka://h:1", kafka_topics=str(small))
    )
    assert config.topic("subject") == "x.subject"
    assert config.topic("mri_read") == "tract.mri_read"


@pytest.mark.parametrize("url", ["kafka://", "kafka://nohostport", "kafak://h:1"])
def test_a_bad_address_says_how_to_write_one(tmp_path: Path, url: str) -> None:
    with pytest.raises(BusError, match=r"kafka://HOST:PORT\[,HOST:PORT\]"):
        KafkaConfig.from_settings(_settings(tmp_path, bus=url))


def test_a_missing_topics_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(BusError, match="TRACT_KAFKA_TOPICS"):
        KafkaConfig.from_settings(
            _settings(tmp_path, bus="kafka://h:1", kafka_topics=str(tmp_path / "nope.yaml"))
        )


def test_the_password_never_prints(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"TRACT_KAFKA_PASSWORD": "hunter2", "TRACT_BUS": "kafka://h:1"}, home=tmp_path
    )
    config = KafkaConfig.from_settings(settings)
    assert "hunter2" not in repr(settings) + repr(config)
    assert settings.kafka_password is not None and settings.kafka_password.reveal() == "hunter2"


@pytest.mark.parametrize(
    ("error", "ours", "hint"),
    [
        (kerr.KafkaTimeoutError("x"), BusUnavailableError, "did not answer"),
        (kerr.KafkaConnectionError("x"), BusUnavailableError, "did not answer"),
        (kerr.NodeNotReadyError("x"), BusUnavailableError, "did not answer"),
        (kerr.UnknownTopicOrPartitionError("x"), BusError, "tract kafka topics"),
        (kerr.TopicAuthorizationFailedError("x"), BusError, "grant"),
        (kerr.SaslAuthenticationFailedError("x"), BusError, "TRACT_KAFKA_PASSWORD"),
        (kerr.MessageSizeTooLargeError("x"), BusError, "max.message.bytes"),
        (kerr.IllegalStateError("x"), BusError, "refused the operation"),
    ],
)
def test_the_error_table(error: Exception, ours: type, hint: str) -> None:
    translated = translate(error, "publishing to t", "h:1")
    assert type(translated) is ours
    assert hint in str(translated) and "h:1" in str(translated)


def test_the_table_covers_every_kafka_error() -> None:
    assert ERRORS[-1][0] is kerr.KafkaError


def test_an_unreachable_broker_is_a_clear_error_after_bounded_attempts(tmp_path: Path) -> None:
    """(How long the attempts take is measured in bench/, not asserted here.)"""
    settings = _settings(
        tmp_path,
        bus=f"kafka://127.0.0.1:{servers.free_port()}",  # nothing listens there
        kafka_timeout_s=1.0,
        kafka_retries=2,
    )
    platform = Platform.from_settings(settings)
    assert isinstance(platform.bus, KafkaBus)
    with pytest.raises(BusUnavailableError) as refused:
        platform.publish([sample_event("subject")])
    message = str(refused.value)
    assert "127.0.0.1" in message and "2 attempt(s)" in message
    assert "running the same command again is safe" in message
    assert platform.source.positions() == {}  # reading the applied state needs no broker
    with pytest.raises(NothingAppliedError, match="tract adjudicator run"):
        platform.studies()  # nothing applied yet: said, never answered as "no study"
