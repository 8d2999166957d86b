"""infra/airflow/airflow_local_settings.py: what the scheduler makes ready before it forks the
DAGs' tasks, and that no other Airflow process pays for it."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.dags.conftest import PRELOAD

PROBE = """
import json, sys
sys.argv = ["airflow", *sys.argv[1:]]
import airflow_local_settings  # what Airflow imports first in each of its processes
import schemas
from services import dictionary
print(json.dumps({
    "gx": "great_expectations" in sys.modules,
    "tasks": "services.tasks" in sys.modules,
    "dag_files": all(m in sys.modules for m in airflow_local_settings.DAG_FILES),
    "contracts": schemas.contracts.cache_info().currsize,
    "dictionary": dictionary.dictionary_source.cache_info().currsize,
}))
"""


def _preloaded(*argv: str) -> dict[str, object]:
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(PRELOAD), "PATH": ""},
        check=True,
    )
    return json.loads(probe.stdout.splitlines()[-1])


def test_the_scheduler_imports_what_the_tasks_import_and_parses_the_contracts_once() -> None:
    preloaded = {"gx": True, "tasks": True, "dag_files": True, "contracts": 1, "dictionary": 1}
    assert _preloaded("scheduler") == preloaded
    elsewhere = _preloaded("api-server")  # the API server, the DAG processor...: nothing
    assert elsewhere == dict.fromkeys(["gx", "tasks", "dag_files"], False) | {
        "contracts": 0,
        "dictionary": 0,
    }
