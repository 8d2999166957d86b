"""``tract adjudicator run|status``: the adjudicator as a long-running Kafka service."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from services.adjudicator.errors import AdjudicatorError


def _kafka_only(settings: Any) -> None:
    if not settings.bus.startswith("kafka://"):
        raise AdjudicatorError(
            "the adjudicator service reads Kafka: pass --bus kafka://HOST:PORT or set TRACT_BUS "
            "(with the embedded log every command adjudicates by itself; nothing to run)"
        )


@click.group("adjudicator")
def adjudicator() -> None:
    """The adjudicator service: applies events from Kafka, publishes outcome changes."""


@adjudicator.command("run")
@click.option(
    "--max-batch",
    default=20_000,
    show_default=True,
    help="Most records applied in one batch (one recompute of the touched subjects).",
)
@click.option(
    "--max-lag",
    default=5.0,
    show_default=True,
    help="Seconds outcome changes may wait while more records keep arriving (bulk loads).",
)
@click.pass_obj
def run(obj: Any, max_batch: int, max_lag: float) -> None:
    """Serve until SIGTERM/SIGINT; state in <home>/adjudicator/state.db (read by the CLI)."""
    from services.adjudicator.service import AdjudicatorService
    from services.bus.kafka import open_kafka
    from services.serve import log_to_stderr, stop_on_signals

    _kafka_only(obj.settings)
    log_to_stderr()
    bus, applied = open_kafka(obj.settings)
    service = AdjudicatorService(bus, applied, max_batch=max_batch, max_lag_s=max_lag)
    click.echo(
        f"adjudicator: group {bus.config.adjudicator_group} on {bus.config.where}, "
        f"state {applied.path}",
        err=True,
    )
    try:
        service.run(stop_on_signals())
    finally:
        service.close()


@adjudicator.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.option("--check", is_flag=True, help="Exit 1 unless the service is running (health checks).")
@click.pass_obj
def status(obj: Any, as_json: bool, check: bool) -> None:
    """What the service has applied: events per kind, Kafka positions, heartbeat, outbox."""
    from services.adjudicator.applied import AppliedLog

    state = AppliedLog.at(obj.settings.home)
    age = state.heartbeat_age()
    data = {
        "state": str(state.path),
        "events": {k: v for k, v in state.positions().items() if not k.startswith("kafka/")},
        "kafka_applied": {f"{t}/{p}": o for (t, p), o in sorted(state.kafka_positions().items())},
        "heartbeat_age_s": None if age is None else round(age, 1),
        "running": age is not None and age < 15,
        "outbox": len(state.outbox()),
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        alive = "running" if data["running"] else "not running"
        click.echo(f"adjudicator {alive} (heartbeat {data['heartbeat_age_s']}s ago), {state.path}")
        for kind, n in sorted(data["events"].items()):
            click.echo(f"  {kind:20} {n}")
        click.echo(f"  outbox (not yet on Kafka): {data['outbox']}")
    if check and not data["running"]:
        sys.exit(1)
