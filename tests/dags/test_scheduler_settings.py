"""The deployment's scheduler settings (docker-compose.yml): each is an option Airflow
documents and reads as its type (a misspelt key would be ignored without a word), and the
tests' scheduler runs with them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dags.conftest import compose_scheduler_settings

READ = """
import json, sys
from airflow.configuration import conf
section, option = sys.argv[1:]
known = conf.configuration_description.get(section, {}).get("options", {})
kind = (known.get(option) or {}).get("type")
read = {"float": conf.getfloat, "integer": conf.getint, "boolean": conf.getboolean}.get(
    kind, conf.get
)
print(json.dumps({"known": option in known, "value": read(section, option)}))
"""


def test_compose_loops_the_scheduler_every_fifth_of_a_second_when_idle() -> None:
    assert compose_scheduler_settings()["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] == "0.2"


@pytest.mark.parametrize("key,value", sorted(compose_scheduler_settings().items()))
def test_airflow_knows_and_reads_each_scheduler_setting_of_the_compose_file(
    key: str, value: str, tmp_path: Path
) -> None:
    section, option = key.removeprefix("AIRFLOW__").lower().split("__", 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env |= {"AIRFLOW_HOME": str(tmp_path), key: value}
    read = subprocess.run(
        [sys.executable, "-c", READ, section, option],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    found = json.loads(read.stdout.splitlines()[-1])
    assert found["known"], f"[{section}] {option} is not an Airflow option: {key} is ignored"
    assert str(found["value"]) == value
