"""docker-compose.yml: the deployment of the Kafka path is complete and valid.

No Docker engine runs here, so the file is checked as data (every service, health check and
named volume the issue asks for) and, where a compose CLI is installed (`docker compose` or
Debian's `docker-compose`), with its own `config` validation as well."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
LONG_RUNNING = (
    "kafka",
    "minio",
    "postgres",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "adjudicator",
    "ingest",
)


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_every_service_is_there_with_a_health_check_and_named_volumes() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(LONG_RUNNING) <= set(services)
    for name in LONG_RUNNING:
        assert "healthcheck" in services[name], name
        assert services[name].get("restart") == "unless-stopped", name
    named = set(compose["volumes"])
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in named, f"{name}: {source} is not a named volume"
    assert {"kafka-data", "minio-data", "postgres-data", "tract-home"} <= named


def test_kafka_is_kraft_single_node_and_the_services_wait_for_it() -> None:
    services = _compose()["services"]
    env = services["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # topics come from topics.yaml
    for name in ("adjudicator", "ingest"):
        depends = services[name]["depends_on"]
        assert depends["kafka"]["condition"] == "service_healthy"
        assert depends["kafka-topics"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["TRACT_BUS"] == "kafka://kafka:9092"
    assert services["adjudicator"]["command"] == ["adjudicator", "run"]
    assert services["ingest"]["command"][-2:] == ["--watch", "/drop"]
    # the CLI, the watcher and the DAGs read the adjudicator's state from the same volume
    for name in ("adjudicator", "ingest", "airflow-scheduler"):
        assert "tract-home:/var/lib/tract" in services[name]["volumes"]


def test_the_image_builds_from_files_that_exist() -> None:
    dockerfile = ROOT / "infra" / "docker" / "Dockerfile"
    build = _compose()["services"]["adjudicator"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == dockerfile
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_the_compose_cli_validates_it_where_installed() -> None:
    candidates = []
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        candidates.append([docker, "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        done = subprocess.run(
            [*command, "-f", str(COMPOSE), "config", "-q"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{' '.join(command)} config: {done.stderr}"
    # without a compose CLI the checks above still stand
    assert COMPOSE.exists()
