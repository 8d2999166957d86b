"""Benchmark: a database lock of a generated trial, run as the Airflow DAG and as the CLI
(`tract lock --validate`, the same steps with the Great Expectations gate), against the floor
of copying the same Parquet bytes to the same store.

    .venv/bin/python bench/lock.py [--subjects 5000] [--store s3|local] [--level hard|soft]

It writes a synthetic trial (services/demo/synthetic.py), ingests it into a fresh platform
home (not timed as part of the lock), starts SeaweedFS on loopback for ``--store s3``, then
runs ``database_lock`` once with ``dag.test()`` on a throwaway SQLite Airflow, and prints the
wall time of the run split by task. In the same process it then copies the lock's Parquet
bytes (already in memory) to a new prefix of the same store with the same retention: that is
the floor a lock cannot beat. The ratio says what checking, computing, validating and
verifying cost on top of moving the bytes. The CLI lock runs as a fresh process on a copy of
the same home (a study holds one lock in force), into another prefix of the same store.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STUDY = "SYN"
TASKS = (
    "check_request",
    "check_conflicts",
    "freeze_cut",
    "materialise",
    "validate",
    "write_snapshot",
    "verify_hashes",
    "publish_lock_event",
)


def ingest(home: Path, n_subjects: int) -> tuple[int, float]:
    from services.demo.synthetic import write_synthetic_trial
    from services.platform import Platform

    files = write_synthetic_trial(home / "files", n_subjects, seed=1, study=STUDY)
    started = time.perf_counter()
    platform = Platform.embedded(home)
    outcome = platform.ingest(STUDY, list(files.values()))
    assert not outcome.refused, outcome.refused
    rows = sum(r.accepted for r in outcome.reports)
    platform.bus.close()
    return rows, time.perf_counter() - started


def airflow(home: Path) -> None:
    os.environ |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=5000)
    parser.add_argument("--store", choices=("s3", "local"), default="s3")
    parser.add_argument("--level", choices=("hard", "soft"), default="hard")
    args = parser.parse_args()

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-lock-")))
        home = tmp / "home"
        rows, ingest_s = ingest(home, args.subjects)
        env = {"TRACT_HOME": str(home), "TRACT_STORE": "local"}
        if args.store == "s3":
            from tests import servers

            s3 = stack.enter_context(servers.seaweedfs_s3(tmp / "weed"))
            env |= {
                "TRACT_STORE": "s3://bench-lock/tract",
                "TRACT_S3_ENDPOINT": s3.endpoint,
                "TRACT_S3_ACCESS_KEY": s3.access_key,
                "TRACT_S3_SECRET_KEY": s3.secret_key,
                "TRACT_S3_SECURE": "false",
            }
        os.environ |= env
        import shutil

        shutil.copytree(home, tmp / "home-cli", ignore=shutil.ignore_patterns("objects"))
        airflow(tmp / "airflow")

        from airflow.dag_processing.dagbag import DagBag

        dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag("database_lock")
        conf = {
            "study": STUDY,
            "lock_id": "BENCH",
            "level": args.level,
            "reason": "benchmark lock of a generated trial",
            "requested_by": "bench",
        }
        started = time.perf_counter()
        run = dag.test(run_conf=conf)
        wall = time.perf_counter() - started
        tis = {ti.task_id: ti for ti in run.get_task_instances()}
        assert str(run.state) == "success", {t: str(ti.state) for t, ti in tis.items()}

        from services.config import Settings
        from services.lock.snapshot import lock_prefix
        from services.store import MANIFEST, open_store

        store = open_store(Settings.from_env())
        prefix = lock_prefix(STUDY, "BENCH")
        manifest = json.loads(store.read(f"{prefix}/{MANIFEST}"))
        files = {name: store.read(f"{prefix}/{name}") for name in manifest["files"]}
        size = sum(len(b) for b in files.values())
        until = datetime.now(UTC) + timedelta(days=1) if args.level == "hard" else None
        started = time.perf_counter()
        store.write_snapshot("bench/floor", files, json.dumps(manifest).encode(), until)
        floor = time.perf_counter() - started

        cli_store = env["TRACT_STORE"] + ("/cli" if args.store == "s3" else "")
        started = time.perf_counter()
        subprocess.run(
            [
                str(Path(sys.executable).parent / "tract"),
                "--home",
                str(tmp / "home-cli"),
                "--store",
                cli_store,
                "lock",
                "--study",
                STUDY,
                "--lock-id",
                "CLI",
                "--reason",
                "benchmark lock of a generated trial",
                "--by",
                "bench",
                "--level",
                args.level,
                "--validate",
            ],
            check=True,
            capture_output=True,
        )
        cli = time.perf_counter() - started

    tasks_total = sum((tis[t].duration or 0.0) for t in TASKS)
    print(
        f"lock of a generated trial: {args.subjects} subjects, {rows} events ingested in "
        f"{ingest_s:.1f}s; store {args.store}, level {args.level}"
    )
    print(f"{len(files)} files, {size / 1e6:.2f} MB of Parquet and JSON\n")
    print(f"{'task':<22}{'seconds':>9}")
    for task in TASKS:
        print(f"{task:<22}{tis[task].duration or 0.0:>9.2f}")
    print(f"{'sum of tasks':<22}{tasks_total:>9.2f}")
    print(f"{'DAG run wall time':<22}{wall:>9.2f}  (dag.test: includes Airflow's own overhead)")
    print(f"{'copy floor':<22}{floor:>9.2f}  (the same bytes, same store, same retention)")
    print(f"{'tract lock --validate':<22}{cli:>9.2f}  (a fresh process: imports included)")
    print(
        f"ratio: DAG wall / floor = {wall / floor:.0f}x; sum of tasks / floor = "
        f"{tasks_total / floor:.0f}x; tract lock --validate / floor = {cli / floor:.0f}x "
        "(target: within 10x)"
    )


if __name__ == "__main__":
    main()
