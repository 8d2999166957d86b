"""A DAG task stuck where Airflow's own timeout cannot reach it ends its process (the task's log
gets every thread's stack) instead of holding the DAG for ever: services/watchdog.py."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time

import services.tasks as tasks
from tests.dags.conftest import DAGS

ROOT = DAGS.parent
HELD_MUTEX = """
import ctypes
libc = ctypes.CDLL(None)
mutex = ctypes.create_string_buffer(64)  # a pthread mutex, unlocked
libc.pthread_mutex_lock(mutex)  # held, as a fork copies a mutex another thread held
def wait_for_ever(*_):
    libc.pthread_mutex_lock(mutex)  # in native code: no signal handler runs
"""

PUBLISHED = {"lock_id": "PRIMARY", "level": "soft", "at": "2026-12-02T10:00:00Z"}
PUBLISHED |= {"location": "local", "manifest_sha256": "0" * 64}
A_QUICK_TASK = f"""
import services.tasks as tasks
assert tasks.lock_asset_events("EXO1", {PUBLISHED!r})
"""


def _run(code: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", HELD_MUTEX + code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=os.environ | env,
    )
    return done, time.monotonic() - started


def test_a_task_stuck_in_native_code_ends_where_airflows_timeout_never_fires() -> None:
    stuck, took = _run(
        """
import signal
from services.watchdog import watchdog
def timed_out(*_):  # what Airflow's execution_timeout does on SIGALRM
    raise TimeoutError("execution_timeout")
signal.signal(signal.SIGALRM, timed_out)
with watchdog(2):
    signal.setitimer(signal.ITIMER_REAL, 0.3)  # the task's own timeout: never raised
    wait_for_ever()
"""
    )
    assert stuck.returncode == 1, stuck.stderr
    assert took < 30
    assert "Timeout (0:00:02)!" in stuck.stderr
    assert "in wait_for_ever" in stuck.stderr  # the stack shows where it hung
    assert "execution_timeout" not in stuck.stderr


def test_every_function_a_dag_calls_is_bounded_by_the_settings_limit() -> None:
    called = {
        alias.name
        for dag_file in DAGS.glob("*.py")
        for node in ast.walk(ast.parse(dag_file.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module == "services.tasks"
        for alias in node.names
    }
    assert "lock_materialise" in called
    assert [
        name for name in sorted(called) if not hasattr(getattr(tasks, name), "__wrapped__")
    ] == []

    stuck, took = _run(
        """
import services.tasks as tasks
tasks._platform = wait_for_ever  # the platform hangs as the task opens it
tasks.lock_freeze_cut({"study": "EXO1", "lock_id": "PRIMARY"})
""",
        TRACT_TASK_LIMIT_MINUTES="0.02",
    )
    assert stuck.returncode == 1, stuck.stderr
    assert took < 30
    assert "Timeout (0:00:01.2" in stuck.stderr
    assert "in lock_freeze_cut" in stuck.stderr


def test_a_task_that_ends_in_time_leaves_no_limit_behind() -> None:
    """dag.test() runs every task in one process: a task's limit ends with the task."""
    ended, took = _run(
        f"""
import time
{A_QUICK_TASK}
time.sleep(2.5)  # past the limit, after the task
""",
        TRACT_TASK_LIMIT_MINUTES="0.02",
    )
    assert ended.returncode == 0, ended.stderr
    assert "Timeout" not in ended.stderr
    assert took >= 2.5


def test_the_limit_is_a_setting_of_an_hour_by_default() -> None:
    from services.config import Settings

    assert Settings.from_env({}).task_limit_minutes == 60
    assert Settings.from_env({"TRACT_TASK_LIMIT_MINUTES": "90"}).task_limit_minutes == 90


def test_a_limit_of_zero_is_none() -> None:
    ended, _ = _run(A_QUICK_TASK, TRACT_TASK_LIMIT_MINUTES="0")
    assert ended.returncode == 0, ended.stderr
