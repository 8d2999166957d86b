"""A limit on how long one DAG task may run, enforced from outside the task's own thread.

Airflow's ``execution_timeout`` raises in the task's main thread from a SIGALRM handler, which
runs only when that thread next executes Python. A task stuck in native code (a Polars or Arrow
call waiting on a lock that another thread held when the scheduler forked the task's process)
never gets back to it, and the lock DAG, one run at a time, would wait for ever. faulthandler's
watchdog is a thread of its own: past the limit it writes every thread's stack to the task's
log and ends the process with exit code 1, which Airflow counts as a failed attempt (retried
where the DAG retries; the lock's steps may run again)."""

from __future__ import annotations

import faulthandler
from collections.abc import Iterator
from contextlib import contextmanager

STDERR = 2
"""The task's log: Airflow's supervisor reads the task process's standard error."""
_ARMED: list[float] = []
"""The limit in force (a process has one watchdog: an inner block keeps the outer's limit)."""


@contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Ends this process if the block is still running after ``seconds`` (none: no limit),
    every thread's stack written to standard error first."""
    if _ARMED or seconds <= 0:
        yield
        return
    faulthandler.dump_traceback_later(seconds, exit=True, file=STDERR)
    _ARMED.append(seconds)
    try:
        yield
    finally:
        _ARMED.clear()
        faulthandler.cancel_dump_traceback_later()
