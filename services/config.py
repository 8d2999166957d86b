"""Settings: one typed, frozen object read from the environment (and CLI options).

Secrets are held as :class:`Secret`, which never prints its value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, get_args, get_type_hints

from services.errors import TractError


class ConfigError(TractError):
    """A setting whose value cannot be used; the message names the variable."""


class Secret(str):
    """A string that shows as ``'***'`` in reprs and logs; use ``.reveal()`` to read it."""

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def reveal(self) -> str:
        return str.__str__(self)


@dataclass(frozen=True)
class Settings:
    """Where the platform keeps its data and which adapters it uses.

    ``bus``: ``embedded`` (default) or ``kafka://HOST:PORT[,HOST:PORT]``.
    ``store``: ``local`` (default, ``<home>/objects``) or ``s3://BUCKET[/prefix]`` (with
    ``s3_endpoint``, the keys, ``s3_secure`` and ``s3_region``).
    """

    home: Path = Path("tract-data")
    bus: str = "embedded"
    store: str = "local"
    s3_endpoint: str | None = None
    s3_access_key: Secret | None = field(default=None, repr=False)
    s3_secret_key: Secret | None = field(default=None, repr=False)
    s3_secure: bool = True
    s3_region: str | None = None
    hard_lock_retention_days: int = 3650
    task_limit_minutes: float = 60.0
    """How long one DAG task may run before its process ends itself (services/watchdog.py);
    0: no limit."""
    # Kafka (``bus = kafka://...``): see services/bus/kafka_config.py and infra/topics.yaml
    kafka_prefix: str = ""
    kafka_topics: Path | None = None
    kafka_client_id: str = "tract"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_username: str | None = None
    kafka_password: Secret | None = field(default=None, repr=False)
    kafka_timeout_s: float = 10.0
    kafka_retries: int = 3
    kafka_apply_wait_s: float = 30.0

    ENV: ClassVar[dict[str, str]] = {
        "home": "TRACT_HOME",
        "bus": "TRACT_BUS",
        "store": "TRACT_STORE",
        "s3_endpoint": "TRACT_S3_ENDPOINT",
        "s3_access_key": "TRACT_S3_ACCESS_KEY",
        "s3_secret_key": "TRACT_S3_SECRET_KEY",
        "s3_secure": "TRACT_S3_SECURE",
        "s3_region": "TRACT_S3_REGION",
        "hard_lock_retention_days": "TRACT_HARD_LOCK_RETENTION_DAYS",
        "task_limit_minutes": "TRACT_TASK_LIMIT_MINUTES",
        "kafka_prefix": "TRACT_KAFKA_PREFIX",
        "kafka_topics": "TRACT_KAFKA_TOPICS",
        "kafka_client_id": "TRACT_KAFKA_CLIENT_ID",
        "kafka_security_protocol": "TRACT_KAFKA_SECURITY_PROTOCOL",
        "kafka_sasl_mechanism": "TRACT_KAFKA_SASL_MECHANISM",
        "kafka_username": "TRACT_KAFKA_USERNAME",
        "kafka_password": "TRACT_KAFKA_PASSWORD",
        "kafka_timeout_s": "TRACT_KAFKA_TIMEOUT_S",
        "kafka_retries": "TRACT_KAFKA_RETRIES",
        "kafka_apply_wait_s": "TRACT_KAFKA_APPLY_WAIT_S",
    }

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from ``TRACT_*`` variables; explicit ``overrides`` (CLI options) win.
        Each value is converted to its field's type (a bad one names its variable)."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            name: env[var] for name, var in cls.ENV.items() if env.get(var, "") != ""
        }
        values |= {k: v for k, v in overrides.items() if v is not None}
        types = get_type_hints(cls)
        return cls(
            **{name: _convert(name, value, types[name], cls.ENV) for name, value in values.items()}
        )


def _convert(name: str, value: object, hint: object, env: dict[str, str]) -> object:
    """``value`` (text from the environment, or an override) as the field's type."""
    kinds = [t for t in get_args(hint) if t is not type(None)] or [hint]
    kind = kinds[0]
    if isinstance(value, kind):  # type: ignore[arg-type]
        return Secret(value) if kind is Secret and not isinstance(value, Secret) else value
    text = str(value).strip()
    try:
        if kind is bool:
            return text.lower() in ("1", "true", "yes", "y", "on")
        return kind(text)  # type: ignore[operator]
    except ValueError:
        raise ConfigError(
            f"{env.get(name, name)}={text!r} is not a valid {getattr(kind, '__name__', kind)} for {name}"
        ) from None
