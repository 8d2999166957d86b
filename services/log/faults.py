"""Crash points: where a test may kill the process, deterministically, to prove that a crash
there loses nothing and doubles nothing.

``TRACT_CRASH_AT=<point>`` (or ``<point>@<n>``, the n-th time the point is reached) makes the
process SIGKILL itself at that point; unset (always, outside tests) it costs one dictionary
lookup. The points are named where they are reached, in :mod:`services.log.eventlog`.
"""

from __future__ import annotations

import os
import signal

POINTS = ("segment-written", "segments-written", "index-committed")
_reached: dict[str, int] = {}


def crash_point(point: str) -> None:
    wanted = os.environ.get("TRACT_CRASH_AT")
    if not wanted:
        return
    name, _, nth = wanted.partition("@")
    if name != point:
        return
    _reached[point] = _reached.get(point, 0) + 1
    if _reached[point] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
