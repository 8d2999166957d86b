"""
### Analysis of a new lock (downstream example)

Runs whenever `database_lock` publishes a lock: it is scheduled on the asset `tract://locks`,
whose events carry the study, the lock id, the level, the store location and the manifest's
sha256. For each lock that triggered the run it opens the lock **verified** and recomputes the
trial's tables (`services.analysis.job`), failing if they differ from the lock's `report.json`.

To follow one study only, schedule on its asset instead: `schedule=[Asset("tract://locks/EXO1")]`
(or one lock: `tract://locks/EXO1/PRIMARY`). Triggered by hand, it analyses the latest lock.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, dag, task

LOCKS = Asset(name="tract_locks", uri="tract://locks")


@dag(schedule=[LOCKS], catchup=False, doc_md=__doc__, tags=["tract", "lock", "downstream"])
def locked_study_analysis() -> None:
    @task(inlets=[LOCKS])
    def read_lock_events(
        *, triggering_asset_events: Any = None, inlet_events: Any = None
    ) -> list[dict[str, Any]]:
        """The locks behind this run: the triggering events, else (by hand) the latest one."""
        events = [e for batch in (triggering_asset_events or {}).values() for e in batch]
        if not events:
            events = list(inlet_events[LOCKS])[-1:]
        return [{"study": e.extra["study"], "lock_id": e.extra["lock_id"]} for e in events]

    @task(multiple_outputs=False)
    def recompute_tables(event: dict[str, Any]) -> dict[str, Any]:
        from services.tasks import analyse_lock

        return analyse_lock(event)

    recompute_tables.expand(event=read_lock_events())


locked_study_analysis()
