"""database_lock with the submission export, its asset events, and the downstream DAG that
runs on them (dag.test() on SQLite, the local store)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.config import Settings
from services.export.package import MANIFEST, export_prefix
from services.lock.snapshot import sha256
from services.platform import Platform
from tests.dags.conftest import run_as, task_states
from tests.signing import lock_request
from tests.store.trials import STUDY

pytestmark = pytest.mark.slow

DOWNSTREAM = "locked_study_analysis"


def conf(settings: Settings, lock_id: str, export: str) -> dict[str, str]:
    """The run's conf: a lock request dm.jones signed, and the export asked for."""
    platform = Platform.from_settings(settings)
    asked = lock_request(platform, STUDY, lock_id, open_queries_reason="sites answer later")
    return {"study": STUDY, "request_id": asked, "export": export}


def _sync_and_unpause(dag_id: str) -> None:
    """Register the dags folder in the metadata DB (as the dag processor does) and unpause the
    downstream DAG, so an asset event queues a run of it as it would in production."""
    from airflow import settings
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from sqlalchemy import update

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    for bundle in manager.get_all_dag_bundles():
        if not bundle.is_initialized:
            bundle.initialize()
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        sync_bag_to_db(bag, bundle.name, bundle.version)
    with settings.Session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == dag_id).values(is_paused=False))
        session.commit()


def _asset_events(name: str) -> list[dict[str, Any]]:
    from airflow import settings
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    with settings.Session() as session:
        rows = session.execute(
            select(AssetEvent.extra, AssetEvent.source_dag_id)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name == name)
            .order_by(AssetEvent.id)
        ).all()
    return [dict(extra, source_dag_id=dag_id) for extra, dag_id in rows]


def _queued(dag_id: str) -> int:
    from airflow import settings
    from airflow.models.asset import AssetDagRunQueue
    from sqlalchemy import func, select

    with settings.Session() as session:
        return session.scalar(
            select(func.count())
            .select_from(AssetDagRunQueue)
            .where(AssetDagRunQueue.target_dag_id == dag_id)
        )


def test_a_lock_with_export_writes_the_package_and_emits_asset_events(
    dagbag: Any, tract_env: Any, decided_home: Path
) -> None:
    settings = Settings(home=decided_home)
    tract_env(settings)
    _sync_and_unpause(DOWNSTREAM)
    queued_before = _queued(DOWNSTREAM)

    run = run_as(
        dagbag.get_dag("database_lock"), "dm.jones", run_conf=conf(settings, "EXPORTED", "all")
    )
    states = task_states(run)
    assert str(run.state) == "success", states
    assert states["export_submission"] == "success"

    store = Platform.from_settings(settings).store
    prefix = export_prefix(STUDY, "EXPORTED")
    listing = json.loads(store.read(f"{prefix}/{MANIFEST}"))
    assert listing["conformance"]["errors"] == 0 and listing["records"]["ADRS"] > 0
    for name, entry in listing["files"].items():
        assert sha256(store.read(f"{prefix}/{name}")) == entry["sha256"], name
    assert any(n.endswith("analysis/adam/datasets/define.xml") for n in listing["files"])

    every = [e for e in _asset_events("tract_locks") if e["lock_id"] == "EXPORTED"]
    assert len(every) == 1 and every[0]["study"] == STUDY
    assert every[0]["uri"] == f"tract://locks/{STUDY}/EXPORTED"
    assert every[0]["source_dag_id"] == "database_lock"
    assert every[0]["location"] == store.location(f"locks/{STUDY}/EXPORTED")
    assert [e["lock_id"] for e in _asset_events(f"tract://locks/{STUDY}/EXPORTED")] == ["EXPORTED"]
    assert "EXPORTED" in [e["lock_id"] for e in _asset_events(f"tract://locks/{STUDY}")]
    # The scheduler would now start the downstream DAG: the event queued a run of it.
    assert _queued(DOWNSTREAM) > queued_before

    downstream = dagbag.get_dag(DOWNSTREAM).test()
    states = task_states(downstream)
    assert str(downstream.state) == "success", states
    assert states["recompute_tables[0]"] == "success"
    result = downstream.get_task_instance("recompute_tables", map_index=0).xcom_pull(
        task_ids="recompute_tables", map_indexes=0
    )
    assert result == {
        "study": STUDY,
        "lock_id": "EXPORTED",
        "reproduced": True,
        "completers": 20,
        "full_closure": 12,
    }


def test_without_export_the_export_task_is_skipped(
    dagbag: Any, tract_env: Any, decided_home: Path
) -> None:
    settings = Settings(home=decided_home)
    tract_env(settings)
    run = run_as(
        dagbag.get_dag("database_lock"), "dm.jones", run_conf=conf(settings, "PLAIN", "none")
    )
    states = task_states(run)
    assert str(run.state) == "success", states
    assert states["publish_lock_event"] == "success" and states["export_submission"] == "skipped"
    store = Platform.from_settings(settings).store
    assert not store.exists(f"{export_prefix(STUDY, 'PLAIN')}/{MANIFEST}")
