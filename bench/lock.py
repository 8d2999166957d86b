"""Benchmark: a database lock of a generated trial, run as the Airflow DAG, as the CLI
(`tract lock --validate`, the same steps with the Great Expectations gate) and in a process
that already runs, against the floor of copying the same Parquet bytes to the same store.

    .venv/bin/python bench/lock.py [--subjects 5000] [--store s3|local] [--level hard|soft]
                                   [--standalone]

It writes a synthetic trial (services/demo/synthetic.py), ingests it into a fresh platform
home (not timed as part of the lock), starts SeaweedFS on loopback for ``--store s3``, then
runs ``database_lock`` with ``dag.test()`` on a throwaway SQLite Airflow: first in a fresh
process (it pays Airflow's first-run set-up and every import, GX's included), then three
times more as a warm worker would (imports paid). Before each warm run it copies the first
lock's Parquet bytes (already in memory) to a new prefix of the same store with the same
retention: that is the floor a lock cannot beat. The machine's speed moves by a fifth within
minutes, so the floor and the warm run are each the median of three taken in turn (the warm
run's tasks are those of its median run; the ranges are printed). The CLI lock runs as a
fresh process, with and without the gate; the last lock runs in this process, where GX is
already imported (the web page, a worker). Each lock runs on its own copy of the home (a study
holds one lock in force), into its own prefix of the same store. With ``--standalone`` it also
starts `airflow standalone` (a real scheduler, whose LocalExecutor runs each task in a new
process, as the compose deployment does) and has the signer trigger the DAG over its REST
API, after a refused run (a scheduler's first task sets up what the later ones reuse), then
runs ``bench_airflow_floor`` (bench/airflow_floor_dag.py: eight tasks chained, passing XComs
as the lock's do, doing nothing) on the same scheduler: Airflow's own cost of a task process,
so that what the lock's tasks take beyond it is the platform's work as deployed. Every ratio
printed is to the floor of this run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STUDY = "SYN"
WARM = ("warm-1", "warm-2", "warm-3")
"""The warm runs' homes, each run after a copy to the floor."""
FLOOR_DAG = "bench_airflow_floor"
"""bench/airflow_floor_dag.py: eight chained tasks doing nothing (Airflow's own cost)."""
NO_REQUEST = "LR-" + "0" * 16
"""A request id of the right form that no one signed (the DAG refuses it)."""
SIGNER, PASSWORD = "bench.dm", "benchmark data manager password"
"""The data manager who signs `tract lock` (argon2 at its real cost: part of the wait)."""
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


def data_manager(home: Path) -> None:
    """Register :data:`SIGNER` in ``home`` (copied with it to every home the locks run on),
    the account recorded in the log as an administrator's `tract users add` records it."""
    from services.accounts import account_events
    from services.platform import Platform
    from services.users import UserStore

    users = UserStore.for_home(home)
    users.add(SIGNER, "data_manager", PASSWORD, "Bench Data Manager", temporary=False)
    platform = Platform.embedded(home)
    platform.record(account_events(users, [SIGNER], "ADD", "bench"))
    platform.bus.close()


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
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="also lock through `airflow standalone` (a scheduler whose LocalExecutor runs "
        "each task in a new process), triggered over its REST API as the signer after a "
        "refused run, then run eight empty tasks there (Airflow's own cost)",
    )
    args = parser.parse_args()

    load = os.getloadavg()[0]
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-lock-")))
        home = tmp / "home"
        rows, ingest_s = ingest(home, args.subjects)
        data_manager(home)
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

        homes = {}
        for name in (*WARM, "cli", "plain", "process", "standalone"):
            homes[name] = tmp / f"home-{name}"
            shutil.copytree(home, homes[name], ignore=shutil.ignore_patterns("objects"))
        airflow(tmp / "airflow")

        from airflow.dag_processing.dagbag import DagBag

        dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag("database_lock")
        reason = "benchmark lock of a generated trial"
        conf = {"study": STUDY, "request_id": sign_request(reason, args.level)}
        first, first_wall = dag_run(dag, conf)  # triggered by SIGNER, who signed the request

        from services.config import Settings
        from services.lock.snapshot import lock_prefix
        from services.store import MANIFEST, open_store

        store = open_store(Settings.from_env())
        prefix = lock_prefix(STUDY, "BENCH")
        manifest = json.loads(store.read(f"{prefix}/{MANIFEST}"))
        files = {name: store.read(f"{prefix}/{name}") for name in manifest["files"]}
        size = sum(len(b) for b in files.values())
        until = datetime.now(UTC) + timedelta(days=1) if args.level == "hard" else None

        def elsewhere(name: str) -> dict[str, str]:
            """The settings of the lock on ``homes[name]``, into its own prefix of the store."""
            where = env["TRACT_STORE"] + (f"/{name}" if args.store == "s3" else "")
            return {"TRACT_HOME": str(homes[name]), "TRACT_STORE": where}

        floors, warms = [], []
        for name in WARM:  # in turn: the floor, then a warm run
            started = time.perf_counter()
            store.write_snapshot(f"bench/{name}", files, json.dumps(manifest).encode(), until)
            floors.append(time.perf_counter() - started)
            os.environ |= elsewhere(name)
            sign_request(reason, args.level)  # this home's own log: the same request, signed
            warms.append(dag_run(dag, conf))
        floor = statistics.median(floors)
        warm, warm_wall = sorted(warms, key=lambda run: sum(run[0].values()))[len(warms) // 2]
        walls = sorted(wall for _, wall in warms)
        sums = sorted(sum(run.values()) for run, _ in warms)

        cli = cli_lock(elsewhere("cli"), args.level, validate=True)
        plain = cli_lock(elsewhere("plain"), args.level, validate=False)

        from services.platform import Platform

        os.environ |= elsewhere("process")
        platform = Platform.from_settings(Settings.from_env())
        started = time.perf_counter()
        platform.lock(STUDY, "PROC", reason, "bench", args.level, validate=True)
        in_process = time.perf_counter() - started
        platform.bus.close()
        gx_import = fresh_import("great_expectations")
        deployed: tuple[dict[str, float], float] | None = None
        empty: tuple[dict[str, float], float] | None = None
        if args.standalone:
            os.environ |= elsewhere("standalone")  # the home the scheduler's tasks are given
            request = sign_request(reason, args.level)
            with airflow_standalone(tmp / "standalone-airflow") as trigger:
                # a run whose request does not exist: the scheduler's first task sets up what
                # every later one reuses; the lock after it is what a running deployment pays
                first_task, _, refused = trigger({"study": STUDY, "request_id": NO_REQUEST}, "1")
                assert refused == "failed", refused
                tasks, wall, state = trigger({"study": STUDY, "request_id": request}, "2")
                assert state == "success", tasks
                deployed = tasks, wall
                tasks, wall, state = trigger({}, "3", FLOOR_DAG)
                assert state == "success", tasks
                empty = tasks, wall

    print(
        f"lock of a generated trial: {args.subjects} subjects, {rows} events ingested in "
        f"{ingest_s:.1f}s; store {args.store}, level {args.level}"
    )
    print(f"{len(files)} files, {size / 1e6:.2f} MB of Parquet and JSON")
    print(
        f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on "
        f"{os.cpu_count()} cores (other work on the machine moves every number below)\n"
    )
    print(f"{'DAG task':<22}{'first run':>10}{'warm':>8}  (seconds; warm: the median run)")
    for task in TASKS:
        print(f"{task:<22}{first[task]:>10.2f}{warm[task]:>8.2f}")
    print(f"{'sum of tasks':<22}{sum(first.values()):>10.2f}{sum(warm.values()):>8.2f}")
    print(f"{'DAG run wall time':<22}{first_wall:>10.2f}{warm_wall:>8.2f}\n")
    if deployed and empty:
        print(f"{'standalone task':<22}{'seconds':>10}{'empty':>8}  (a new process each)")
        for task in TASKS:
            print(f"{task:<22}{deployed[0][task]:>10.2f}{empty[0][task]:>8.2f}")
        setup = first_task["check_request"]
        print(f"(the scheduler's first task, a refused run's check_request: {setup:.2f} s)\n")
    rows_out = [
        ("copy floor", floor, f"the same bytes, same store, same retention ({span(floors)})"),
        ("DAG run, first", first_wall, "dag.test in a fresh process: Airflow's set-up, imports"),
        (
            "DAG run, warm",
            statistics.median(walls),
            f"the DAG again, a warm worker ({span(walls)})",
        ),
        ("DAG tasks, warm", sum(warm.values()), f"the sum of its tasks ({span(sums)})"),
        ("tract lock --validate", cli, "a fresh process: every import, GX's included"),
        ("tract lock", plain, "a fresh process, no GX gate"),
        ("lock --validate, warm", in_process, "Platform.lock in a running process (GX imported)"),
        ("import GX", gx_import, "`import great_expectations` alone, in a fresh process"),
    ]
    if deployed and empty:
        ours, airflows = sum(deployed[0].values()), sum(empty[0].values())
        what = "airflow standalone: each task a new process (LocalExecutor)"
        rows_out += [
            ("standalone tasks", ours, what),
            ("standalone run", deployed[1], "its REST trigger to its end"),
            ("Airflow's own, 8 tasks", airflows, f"{FLOOR_DAG}: eight chained tasks doing nothing"),
            ("standalone, beyond it", ours - airflows, "the lock's tasks' own work, deployed"),
        ]
    print(f"{'':<24}{'seconds':>8}{'x floor':>9}  (target: within 10x)")
    for label, seconds, what in rows_out:
        print(f"{label:<24}{seconds:>8.2f}{seconds / floor:>8.1f}x  {what}")


@contextmanager
def airflow_standalone(home: Path) -> Iterator[Callable[..., Any]]:
    """`airflow standalone` as the REST test runs it (tests/dags/conftest.py), its tasks given
    the platform of the environment, its DAGs the project's and ``bench_airflow_floor``
    (bench/airflow_floor_dag.py); yields ``trigger(conf, run_id, dag_id="database_lock")``:
    one run triggered over REST by SIGNER, its tasks' durations (by the names of :data:`TASKS`), its
    wall time from the trigger to the end, and its state."""
    import httpx

    from tests import servers
    from tests.dags.conftest import DAGS
    from tests.dags.conftest import airflow_standalone as standalone

    tract = {k: v for k, v in os.environ.items() if k.startswith("TRACT_")}
    dags = home / "dags"
    dags.mkdir(parents=True)
    for dag_file in [*DAGS.glob("*.py"), ROOT / "bench" / "airflow_floor_dag.py"]:
        (dags / dag_file.name).symlink_to(dag_file)
    with standalone(home, tract, f"admin:admin,{SIGNER}:user", home, dags) as airflow:
        admin, signer = airflow.client("admin"), airflow.client(SIGNER)
        for dag_id in ("database_lock", FLOOR_DAG):
            servers.wait_for(
                lambda d=dag_id: admin.get(f"/dags/{d}").status_code == 200, 120, dag_id, every=1
            )
            admin.patch(f"/dags/{dag_id}", json={"is_paused": False})

        def trigger(
            conf: dict[str, str], run_id: str, dag_id: str = "database_lock"
        ) -> tuple[dict[str, float], float, str]:
            runs = f"/dags/{dag_id}/dagRuns"
            started = time.perf_counter()
            run = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
            created = signer.post(runs, json=run)
            assert created.status_code == 200, created.text

            def ended() -> str | None:
                try:
                    state = admin.get(f"{runs}/{run_id}").json()["state"]
                except httpx.HTTPError:
                    return None
                return state if state in ("success", "failed") else None

            state = servers.wait_for(ended, 600, f"the standalone {dag_id}", every=0.5)
            wall = time.perf_counter() - started
            listed = admin.get(f"{runs}/{run_id}/taskInstances").json()
            tasks = {t["task_id"]: t["duration"] or 0.0 for t in listed["task_instances"]}
            if dag_id == FLOOR_DAG:  # step_1 ... step_8, in the lock's order
                return {task: tasks[f"step_{n}"] for n, task in enumerate(TASKS, 1)}, wall, state
            return {task: tasks[task] for task in TASKS}, wall, state

        yield trigger


def span(seconds: list[float]) -> str:
    """The range of a median's runs, as the table prints it."""
    return f"median of {len(seconds)}: {min(seconds):.2f}-{max(seconds):.2f} s"


def sign_request(reason: str, level: str) -> str:
    """SIGNER signs the lock the DAG takes (`tract lock --for-airflow`), in the home the
    environment names: the request id."""
    from services.config import Settings
    from services.platform import Platform
    from services.signatures import LOCK, Credentials, sign_as
    from services.users import UserStore

    settings = Settings.from_env()
    users = UserStore.for_home(settings.home)
    signer = Credentials(SIGNER, PASSWORD, "cli", "bench")
    platform = Platform.from_settings(settings)
    asked = platform.sign_lock_request(
        STUDY, "BENCH", reason, SIGNER, level, sign=sign_as(users, signer, LOCK)
    )
    platform.bus.close()
    return str(asked["request_id"])


def dag_run(dag: Any, conf: dict[str, str]) -> tuple[dict[str, float], float]:
    """One run of ``database_lock`` triggered by SIGNER: each task's duration, and the run's
    wall time."""
    from tests.dags.conftest import run_as

    started = time.perf_counter()
    run = run_as(dag, SIGNER, run_conf=conf)
    wall = time.perf_counter() - started
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert str(run.state) == "success", {t: str(ti.state) for t, ti in tis.items()}
    return {t: tis[t].duration or 0.0 for t in TASKS}, wall


def cli_lock(settings: dict[str, str], level: str, *, validate: bool) -> float:
    """Wall time of `tract lock` as a fresh process (the time a data manager waits)."""
    started = time.perf_counter()
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "tract"),
            "--home",
            settings["TRACT_HOME"],
            "--store",
            settings["TRACT_STORE"],
            "lock",
            "--study",
            STUDY,
            "--lock-id",
            "CLI",
            "--reason",
            "benchmark lock of a generated trial",
            "--as",
            SIGNER,
            "--password-stdin",
            "--level",
            level,
            *(["--validate"] if validate else []),
        ],
        capture_output=True,
        input=f"{PASSWORD}\n".encode(),
    )
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"`tract lock` failed: {done.stderr.decode().strip()}")
    return seconds


def fresh_import(module: str) -> float:
    """How long ``import module`` takes in a fresh interpreter (bytecode compiled)."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ | {"GX_ANALYTICS_ENABLED": "False"},
    )
    return float(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
