"""``tract adjudicator run|status``: the adjudicator as a long-running Kafka service."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from services.stream.errors import StreamError


def _kafka_only(settings: Any) -> None:
    if not settings.bus.startswith("kafka://"):
        raise StreamError(
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
    """Serve until SIGTERM/SIGINT; state in <home>/adjudicator/ (read by the CLI)."""
    from services.adjudicator.ruleset import load_ruleset
    from services.bus.kafka import KafkaBus
    from services.bus.kafka_config import KafkaConfig
    from services.lock.baseline import lock_baseline
    from services.serve import log_to_stderr, stop_on_signals
    from services.store import open_store
    from services.stream.applied import AppliedLog
    from services.stream.service import AdjudicatorService

    settings = obj.settings
    _kafka_only(settings)
    log_to_stderr()
    applied = AppliedLog.at(settings.home)
    store = open_store(settings)
    service = AdjudicatorService(
        KafkaBus(KafkaConfig.from_settings(settings)),
        applied,
        load_ruleset(),
        lambda study, lock: lock_baseline(store, applied.root / "baselines", study, lock),
        max_batch=max_batch,
        max_lag_s=max_lag,
    )
    click.echo(
        f"adjudicator: group {service.bus.config.adjudicator_group} on "
        f"{service.bus.config.where}, state {applied.root}",
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
    """What the service has applied: events per kind, Kafka positions, heartbeat, outbox,
    and how far a rebuild from the topics is."""
    from services.stream.view import ALIVE_S, AppliedView, rebuilding_text

    state = AppliedView.at(obj.settings.home)
    age = state.heartbeat_age()
    targets = state.rebuild_targets()
    applied = state.kafka_positions()
    head = state.head()
    data = {
        "state": str(state.root),
        "events": state.positions(),
        "kafka_applied": {f"{t}/{p}": o for (t, p), o in sorted(applied.items())},
        "head": {"seq": head.seq, "hash": head.hash},
        "heartbeat_age_s": None if age is None else round(age, 1),
        "running": age is not None and age < ALIVE_S,
        "outbox": len(state.outbox()),
        "rebuilding": rebuilding_text(applied, targets) if targets else None,
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        alive = "running" if data["running"] else "not running"
        click.echo(f"adjudicator {alive} (heartbeat {data['heartbeat_age_s']}s ago), {state.root}")
        if data["rebuilding"]:
            click.echo(f"  {data['rebuilding']}")
        for kind, n in sorted(data["events"].items()):
            click.echo(f"  {kind:20} {n}")
        click.echo(f"  outbox (not yet on Kafka): {data['outbox']}")
        click.echo(f"  chain head: {head}")
    if check and not data["running"]:
        sys.exit(1)
