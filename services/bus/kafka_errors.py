"""kafka-python errors into ours, through one table, and a watchdog for calls that hang.

Only the ``kafka*`` modules of this package import kafka-python; nothing above the adapter
catches ``kafka.errors.*``.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from services.bus.errors import BusError, BusUnavailableError

with warnings.catch_warnings():
    # kafka-python 3.0.12 loads its protocol schemas with deprecated importlib.resources calls
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka.errors as kerr

ERRORS: tuple[tuple[type[Exception], type[BusError], str], ...] = (
    (
        kerr.SaslAuthenticationFailedError,
        BusError,
        "the broker refused the credentials; check TRACT_KAFKA_USERNAME and TRACT_KAFKA_PASSWORD",
    ),
    (
        kerr.AuthorizationError,
        BusError,
        "the broker refused this client; grant its principal access to the tract topics",
    ),
    (
        kerr.UnknownTopicOrPartitionError,
        BusError,
        "a topic is missing; create them with `tract kafka topics`",
    ),
    (
        kerr.MessageSizeTooLargeError,
        BusError,
        "an event is larger than the broker accepts; raise max.message.bytes on the topic",
    ),
    (
        kerr.RetriableError,
        BusUnavailableError,
        "the broker did not answer; check that it is running and that --bus/TRACT_BUS names it",
    ),
    (kerr.KafkaError, BusError, "the broker refused the operation"),
)
"""kafka-python error -> our error and the next step, first match wins (most specific first)."""


def translate(exc: Exception, doing: str, where: str) -> BusError:
    for source, target, hint in ERRORS:
        if isinstance(exc, source):
            return target(f"{doing} on Kafka at {where}: {hint} ({type(exc).__name__}: {exc})")
    raise exc


@contextlib.contextmanager
def translated(doing: str, where: str) -> Iterator[None]:
    try:
        yield
    except kerr.KafkaError as exc:
        raise translate(exc, doing, where) from exc


def bounded(action: Callable[[], Any], seconds: float, doing: str, where: str) -> Any:
    """``action()``, or BusUnavailableError if it has not returned within ``seconds``.

    A watchdog for client set-up and admin calls: kafka-python bounds each request, but a
    broker that comes back in the middle of a bootstrap was seen to leave a call waiting for
    good once in a dozen restarts; the stuck client is abandoned (a daemon thread)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = action()
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    worker = threading.Thread(target=run, name=f"tract-kafka: {doing}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise BusUnavailableError(
            f"{doing} on Kafka at {where}: no answer within {seconds:.0f}s; check the broker"
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
