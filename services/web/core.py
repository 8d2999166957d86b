"""The platform as the web server uses it: one call at a time, and access events recorded.

The embedded log shares one SQLite connection across the server's threads, and a decision
reads, checks, then writes; committee traffic is a handful of people clicking, so serialising
every platform call is the simple, correct choice rather than a bottleneck.
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable
from typing import Any

from services.audit import PLATFORM_WIDE
from services.events import Event, make_event, utc_now
from services.platform import Platform


class SerialPlatform:
    """A :class:`Platform` whose every method call holds one re-entrant lock."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.mutex = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.platform, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            with self.mutex:
                return attr(*args, **kwargs)

        return call

    def publish(self, events: list[Event]) -> int:
        with self.mutex:
            return self.platform.bus.publish(events)


def access_event(
    *,
    who: str,
    role: str | None,
    action: str,
    outcome: str,
    detail: str | None = None,
    study: str | None = None,
    conflict_id: str | None = None,
    subject_id: str | None = None,
    tract_id: str | None = None,
    path: str | None = None,
    client: str | None = None,
) -> Event:
    """One access record; ``study`` None files it as platform-wide (shown in every trail)."""
    payload = {
        "access_id": uuid.uuid4().hex,
        "who": who or "anonymous",
        "role": role,
        "action": action,
        "outcome": outcome,
        "detail": detail,
        "conflict_id": conflict_id,
        "subject_id": subject_id,
        "tract_id": tract_id,
        "path": path,
        "client": client,
        "at": utc_now(),
    }
    return make_event(
        "access", study or PLATFORM_WIDE, subject_id or "", payload, payload["access_id"]
    )


Recorder = Callable[..., None]


def recorder(platform: SerialPlatform | Platform) -> Recorder:
    """A function that publishes one access event built from its keyword arguments."""

    def record(**fields: Any) -> None:
        event = access_event(**fields)
        if isinstance(platform, SerialPlatform):
            platform.publish([event])
        else:
            platform.bus.publish([event])

    return record
