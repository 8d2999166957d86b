"""What every long-running command shares: log lines on stderr and a clean stop on a signal.

Why: ``tract adjudicator run`` and ``tract ingest --watch`` run under a terminal, systemd or
Docker; all three stop a process with SIGTERM or SIGINT, and the loop must finish its batch
(or file) before it exits, never in the middle of one.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
from collections.abc import Callable
from types import FrameType


def log_to_stderr(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kafka", "urllib3"):  # their INFO lines are about sockets, not our data
        logging.getLogger(noisy).setLevel(logging.WARNING)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: where is it?


def stop_on_signals() -> Callable[[], bool]:
    """A ``should_stop()`` that turns true on SIGTERM or SIGINT (a second one exits at once)."""
    state = {"stop": False}

    def handle(signum: int, _frame: FrameType | None) -> None:
        if state["stop"]:
            raise SystemExit(128 + signum)
        state["stop"] = True
        logging.getLogger("tract").info("stopping after the current batch (signal %d)", signum)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return lambda: state["stop"]
