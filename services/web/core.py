"""The platform as the web server uses it: one call at a time, and access events recorded
(each bounded in size by :func:`services.audit.access_event`, repeated refusals aggregated).

The embedded log shares one SQLite connection across the server's threads, and a decision
reads, checks, then writes; committee traffic is a handful of people clicking, so serialising
every platform call is the simple, correct choice rather than a bottleneck.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.audit import FIELD_LIMITS, PLATFORM_WIDE, access_event, bounded
from services.events import Event
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


# Refusals recorded one by one per (study, address, person, action) and minute; the rest of
# that minute is counted and written as one summary event.
INDIVIDUAL_PER_MINUTE = 5
# Anonymous refusals recorded one by one per minute over every address (many addresses
# cannot grow the log without bound either); past it they are summarised together.
ANONYMOUS_PER_MINUTE = 100
SHOWN_IN_SUMMARY = 5


@dataclass
class _Pending:
    """Refusals of one key in one minute: how many were recorded, how many are only counted."""

    minute: datetime
    recorded: int = 0
    counted: int = 0
    first: str = ""
    last: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)
    names: Counter[str] = field(default_factory=Counter)
    clients: Counter[str] = field(default_factory=Counter)


def _top(counter: Counter[str]) -> str:
    shown = ", ".join(f"{k} x{n}" for k, n in counter.most_common(SHOWN_IN_SUMMARY))
    more = len(counter) - SHOWN_IN_SUMMARY
    return shown + (f" and {more} more" if more > 0 else "")


class AccessRecorder:
    """Publishes access events: allowed actions as they come, refusals aggregated so that a
    flood cannot grow the log without bound.

    Per (study, client address, person or "anonymous", action) and minute, the first
    ``INDIVIDUAL_PER_MINUTE`` refusals are recorded one by one; the others are counted and
    written as one summary event ("N more refusals of SIGN_IN from ADDRESS between ... : reasons
    ...; names tried ...") when the minute is over and the next access event is recorded, or
    at :meth:`flush` (``tract serve`` flushes on shutdown). A refusal that names a study the
    platform does not hold is filed platform-wide, so it shows in every trail rather than in
    none.
    """

    def __init__(
        self,
        publish: Callable[[list[Event]], Any],
        studies: Callable[[], list[str]],
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.publish, self.studies = publish, studies
        self.clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._pending: dict[tuple[Any, ...], _Pending] = {}
        self._known: set[str] = set()
        self._anonymous: tuple[datetime | None, int] = (None, 0)

    def __call__(self, **fields: Any) -> None:
        with self._lock:
            now = self.clock()
            minute = now.replace(second=0, microsecond=0)
            events = self._close(minute)
            if fields.get("outcome") == "REFUSED":
                events += self._refusal(fields, now, minute)
            else:
                events.append(self._event(fields))
            if events:
                self.publish(events)

    def flush(self) -> None:
        """Write the summaries of every refusal still only counted."""
        with self._lock:
            events = self._close(None)
            if events:
                self.publish(events)

    def _refusal(self, fields: dict[str, Any], now: datetime, minute: datetime) -> list[Event]:
        anonymous = fields.get("role") is None
        who = "anonymous" if anonymous else fields.get("who")
        client = fields.get("client")
        at, used = self._anonymous
        used = used if at == minute else 0
        if anonymous and used >= ANONYMOUS_PER_MINUTE:
            client = "*"  # many addresses: one summary for all of them
        key = (fields.get("study"), client, who, fields.get("role"), fields.get("action"))
        pending = self._pending.get(key)
        if pending is None or pending.minute != minute:
            pending = self._pending[key] = _Pending(minute)
        if client != "*" and pending.recorded < INDIVIDUAL_PER_MINUTE:
            pending.recorded += 1
            self._anonymous = (minute, used + anonymous)
            return [self._event(fields)]
        stamp = now.strftime("%H:%M:%S")
        pending.counted += 1
        pending.first = pending.first or stamp
        pending.last = stamp
        pending.fields = {k: fields.get(k) for k in ("study", "role", "action", "path")} | {
            "who": who,
            "client": client,
        }
        pending.reasons[bounded(fields.get("detail"), 120) or "no reason"] += 1
        pending.names[bounded(fields.get("who"), 64) or "anonymous"] += 1
        pending.clients[bounded(fields.get("client"), 64) or "unknown"] += 1
        return []

    def _close(self, minute: datetime | None) -> list[Event]:
        """Summaries of the minutes before ``minute`` (of every minute when None)."""
        events = []
        for key, pending in list(self._pending.items()):
            if minute is not None and pending.minute >= minute:
                continue
            del self._pending[key]
            if not pending.counted:
                continue
            f = pending.fields
            detail = (
                f"{pending.counted} more refusals of {f['action']} from "
                f"{'many addresses' if f['client'] == '*' else f['client']} between "
                f"{pending.minute:%Y-%m-%d} {pending.first} and {pending.last} UTC "
                f"(aggregated: at most {INDIVIDUAL_PER_MINUTE} a minute are recorded one by "
                f"one); reasons: {_top(pending.reasons)}"
            )
            if f["role"] is None:
                detail += f"; names tried: {_top(pending.names)}"
            if f["client"] == "*":
                detail += f"; addresses: {_top(pending.clients)}"
            events.append(self._event(f | {"outcome": "REFUSED", "detail": detail}))
        return events

    def _event(self, fields: dict[str, Any]) -> Event:
        study = fields.get("study")
        if study not in (None, PLATFORM_WIDE) and study not in self._known:
            self._known = set(self.studies())
            if study not in self._known:
                note = f"[study {bounded(study, FIELD_LIMITS['study'])!r} unknown] "
                fields = fields | {"study": None, "detail": note + (fields.get("detail") or "")}
        return access_event(**fields)


Recorder = AccessRecorder


def recorder(platform: SerialPlatform | Platform) -> AccessRecorder:
    """The access recorder of ``platform`` (serialised like every other platform call)."""
    if isinstance(platform, SerialPlatform):
        return AccessRecorder(platform.publish, platform.studies)
    return AccessRecorder(platform.bus.publish, platform.studies)
