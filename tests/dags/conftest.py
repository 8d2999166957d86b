"""Airflow for DAG tests: a throwaway AIRFLOW_HOME on SQLite, migrated once per session.

Airflow reads its configuration when first imported, so the environment is set here before
any test imports it, and stays for the session (one Airflow per process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


def airflow_env(home: Path, dags: Path = DAGS) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
    }


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("airflow")
    if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != str(home):
        raise RuntimeError("airflow was imported before the test AIRFLOW_HOME was set")
    os.environ.update(airflow_env(home))
    migrated = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if migrated.returncode:
        raise RuntimeError(f"airflow db migrate failed:\n{migrated.stdout}\n{migrated.stderr}")
    return home


@pytest.fixture(scope="session")
def dagbag(airflow_home: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture
def tract_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``tract_env(settings)`` points the DAG tasks (in-process under dag.test) at a platform."""
    from tests.store.trials import env_of

    def apply(settings: Any) -> None:
        for var in ("TRACT_S3_ENDPOINT", "TRACT_S3_ACCESS_KEY", "TRACT_S3_SECRET_KEY"):
            monkeypatch.delenv(var, raising=False)
        for var, value in env_of(settings).items():
            monkeypatch.setenv(var, value)

    yield apply


def task_states(run: Any) -> dict[str, str]:
    return {
        ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): str(ti.state)
        for ti in run.get_task_instances()
    }


def run_as(dag: Any, user: str | None, **test_kwargs: Any) -> Any:
    """``dag.test(**test_kwargs)``, the run triggered by ``user`` as the UI or the REST API
    records its signed-in user (``None``: as a scheduled run, no user).

    Airflow 3.3's ``dag.test()`` records the triggering user ``dag_test``; here Airflow's own
    ``get_or_create_dagrun`` creates the run, told ``user`` instead, and the tasks run as
    ``dag.test()`` runs them (they read the user from their run, through the Task SDK)."""
    from unittest import mock

    from airflow.models import dagrun

    real = dagrun.get_or_create_dagrun
    created: list[Any] = []

    def create(**kwargs: Any) -> Any:
        created.append(real(**kwargs | {"triggering_user_name": user}))
        return created[-1]

    with mock.patch.object(dagrun, "get_or_create_dagrun", create):
        run = dag.test(**test_kwargs)
    if not created:
        raise RuntimeError("dag.test() no longer creates its run with get_or_create_dagrun")
    return run


PRELOAD = DAGS.parent / "infra" / "airflow"
"""Where ``airflow_local_settings.py`` is (docker-compose.yml puts it on the PYTHONPATH)."""
COMPOSE = DAGS.parent / "docker-compose.yml"


def compose_scheduler_settings() -> dict[str, str]:
    """The deployment's ``AIRFLOW__SCHEDULER__*`` settings (the environment docker-compose.yml
    gives its scheduler service), so that the tests' scheduler loops as the deployed one does."""
    import yaml

    services = yaml.safe_load(COMPOSE.read_text())["services"]
    environment = services["airflow-scheduler"]["environment"]
    return {k: str(v) for k, v in environment.items() if k.startswith("AIRFLOW__SCHEDULER__")}


@dataclass
class Standalone:
    """A running `airflow standalone`: its URL, its server (for its log), and its users."""

    url: str
    server: Any
    passwords: dict[str, str]

    def client(self, user: str) -> Any:
        """An ``httpx.Client`` on the REST API (``/api/v2``), signed in as ``user``."""
        import httpx

        login = {"username": user, "password": self.passwords[user]}
        token = httpx.post(f"{self.url}/auth/token", json=login, timeout=10).json()
        bearer = {"Authorization": f"Bearer {token['access_token']}"}
        return httpx.Client(base_url=f"{self.url}/api/v2", headers=bearer, timeout=30)


@contextmanager
def airflow_standalone(
    home: Path, env: dict[str, str], users: str, workdir: Path, dags: Path = DAGS
) -> Iterator[Standalone]:
    """`airflow standalone` on SQLite, its Airflow home ``home``, as the compose deployment
    runs Airflow: a scheduler whose LocalExecutor forks a process per task, after preloading
    what the tasks import (:data:`PRELOAD`), looping as the deployed one does
    (:func:`compose_scheduler_settings`). ``env``: the platform's settings for the tasks;
    ``users``: the simple auth manager's ``name:role,...``; its log and files in ``workdir``;
    ``dags``: its DAGs folder."""
    import httpx

    from tests import servers

    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    env = (
        env
        | airflow_env(home, dags)
        | compose_scheduler_settings()
        | {
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": users,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            "PYTHONPATH": str(PRELOAD),
            # standalone starts its components as `airflow ...`: the venv's bin must be on PATH
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )

    def healthy(_: Any) -> bool:
        try:
            health = httpx.get(f"{url}/api/v2/monitor/health", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return False
        parts = ("metadatabase", "scheduler", "dag_processor")
        return all((health.get(part) or {}).get("status") == "healthy" for part in parts)

    server = servers.ManagedServer(
        "airflow-standalone",
        [sys.executable, "-m", "airflow", "standalone"],
        log_path=workdir / "standalone.log",
        ready=healthy,
        start_timeout=180,
        stop_timeout=30,
        env=env,
        cwd=workdir,
    )
    server.start()
    try:
        passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        yield Standalone(url, server, passwords)
    finally:
        server.stop()
