"""docker-compose.yml: the deployment of the Kafka path is complete and valid.

No Docker engine runs here, so the file is validated as data: every service, health check and
named volume the deployment needs, and what a compose CLI would refuse (a dependency on a
service that does not exist or with an unknown condition, a health check that is not a
command, a duration it cannot read, a variable with neither a default nor a line in
example.env, a volume that is not declared)."""

from __future__ import annotations

import re
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


DURATION = re.compile(r"^(\d+(\.\d+)?(us|ms|s|m|h))+$")
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(:?-[^}]*)?\}")


def test_what_compose_would_refuse_is_not_there() -> None:
    compose = _compose()
    services = compose["services"]
    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name}: neither image nor build"
        for needed, how in (service.get("depends_on") or {}).items():
            assert needed in services, f"{name} depends on {needed}, which is not a service"
            assert how["condition"] in CONDITIONS, f"{name}: condition {how['condition']}"
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[needed], f"{needed} has no health check"
        check = service.get("healthcheck")
        if check:
            assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name
            for key in ("interval", "timeout", "start_period"):
                if key in check:
                    assert DURATION.match(str(check[key])), f"{name}: {key} {check[key]}"
        for key in ("stop_grace_period",):
            if key in service:
                assert DURATION.match(str(service[key])), f"{name}: {key} {service[key]}"
        assert isinstance(service.get("environment", {}), dict), f"{name}: environment"


def test_every_variable_has_a_default_or_an_example() -> None:
    example = ROOT / "infra" / "docker" / "example.env"
    documented = {
        line.split("=", 1)[0]
        for line in example.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    used = VARIABLE.findall(COMPOSE.read_text())
    assert used, "the file names no variable: the pattern is wrong"
    undocumented = {name for name, default in used if not default and name not in documented}
    assert not undocumented, f"no default and not in {example.name}: {sorted(undocumented)}"
    secrets = {"MINIO_ROOT_PASSWORD", "POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET"}
    assert secrets <= documented  # a real deployment sets them in .env
