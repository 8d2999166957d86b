"""Benchmark: raw transfer files to outcomes, the path a data manager takes, against a plain
DuckDB SQL script of the same primary rules over the same files, side by side in one run.

    .venv/bin/python bench/files_to_outcomes.py [--sizes 1000 10000 100000] [--repeat 3]

For each size it writes a generated trial (``services/demo/synthetic.py``, six files) and then,
interleaving the two so that machine load hits both alike, runs as fresh processes:

- tract: ``tract ingest --study SYN <six files>`` into a new home (validation, identities,
  dead letters, the columnar log, the maintained outcomes and conflicts), then
  ``tract report --study SYN --json`` (the trial's tables from the maintained state);
- DuckDB: ``bench/duckdb_primary.py DIR`` (``bench/primary_rules.sql``: read the files, keep
  current versions, decide tracts and patients; no validation, identities or audit).

It prints the median wall time of each, the ratio (target: within 3x at 10k and 100k), the
cost per subject (flat or falling) and peak memory (target: under 1.5 GB at 100k, from
``/usr/bin/time``). Then, in the largest home, one corrected exam row is ingested and that
subject's outcome read back, both as the CLI (two processes) and on the web page (its server
already running: the row ingested, then the subject's page as a data manager opens it),
against the full-trial time (target: under 1 s and under 1/20 of it).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACT = Path(sys.executable).parent / "tract"
STUDY = "SYN"
ORDER = (
    "subjects.csv",
    "tracts.csv",
    "injections.csv",
    "clinical_exams.csv",
    "mri_reads.jsonl",
    "pathology.csv",
)


def timed(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of one process."""
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *command], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return seconds, peak_kb / 1024, done.stdout


def run_tract(folder: Path, home: Path) -> tuple[float, float]:
    shutil.rmtree(home, ignore_errors=True)
    files = [str(folder / name) for name in ORDER]
    ingest_s, ingest_mb, _ = timed(
        [str(TRACT), "--home", str(home), "ingest", "--study", STUDY, "--quiet", *files]
    )
    report_s, report_mb, out = timed(
        [str(TRACT), "--home", str(home), "report", "--study", STUDY, "--json"]
    )
    assert json.loads(out)["completers"]["n"] > 0
    return ingest_s + report_s, max(ingest_mb, report_mb)


def run_duckdb(folder: Path) -> tuple[float, float]:
    seconds, mb, out = timed(
        [sys.executable, str(ROOT / "bench" / "duckdb_primary.py"), str(folder)]
    )
    assert "FULL_CLOSURE" in out
    return seconds, mb


def correction(folder: Path, home: Path, full_s: float) -> None:
    """One corrected FU6 exam of one subject, then that subject's outcome, end to end."""
    with (folder / "clinical_exams.csv").open() as handle:
        rows = csv.DictReader(handle)
        row = next(r for r in rows if r["visit"] == "FU6")
    subject = row["subject_id"]
    fixed = row | {
        "record_version": "2",
        "external_opening": "OPEN" if row["external_opening"] == "CLOSED" else "CLOSED",
        "drains_on_compression": "Y" if row["external_opening"] == "CLOSED" else "N",
        "change_reason": "source data verification",
    }
    path = folder.parent / "correction" / "clinical_exams.csv"
    path.parent.mkdir(exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, list(row), lineterminator="\n")
        writer.writeheader()
        writer.writerow(fixed)
    ingest_s, _, _ = timed(
        [str(TRACT), "--home", str(home), "ingest", "--study", STUDY, "--quiet", str(path)]
    )
    read_s, _, out = timed(
        [
            str(TRACT),
            "--home",
            str(home),
            "outcomes",
            "--study",
            STUDY,
            "--subject",
            subject,
            "--json",
        ]
    )
    tracts = json.loads(out)["tracts"]
    assert any(t["tract_id"] == row["tract_id"] for t in tracts)
    cli = ingest_s + read_s
    # the web page (its server already running): the row corrected back, then the page
    again = fixed | {"record_version": "3", "change_reason": "corrected back"}
    again |= {k: row[k] for k in ("external_opening", "drains_on_compression")}
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, list(row), lineterminator="\n")
        writer.writeheader()
        writer.writerow(again)
    inner = json.loads(
        subprocess.run(
            [sys.executable, "-c", PAGE_PATH, str(home), str(path), subject],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
    )
    print(
        f"one corrected row, then subject {subject}'s outcome: CLI {cli:.2f} s "
        f"(ingest {ingest_s:.2f} + outcomes {read_s:.2f}; {full_s / cli:.0f}x under the full "
        f"{full_s:.1f} s); the web page (its server already running: the row ingested, then "
        f"the subject's page as a data manager opens it) {inner['seconds']:.3f} s "
        f"(ingest {inner['ingest']:.3f} + page {inner['page']:.3f}; "
        f"{full_s / inner['seconds']:.0f}x under). Target: under 1 s and under 1/20."
    )


PAGE_PATH = """
import json, re, sys, time
from pathlib import Path
from fastapi.testclient import TestClient
from services.accounts import account_events
from services.platform import Platform
from services.users import UserStore
from services.web.app import create_app
from services.web.settings import WebSettings

home, correction, subject = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
platform = Platform.embedded(home)
settings = WebSettings.from_env(home, environ={})
users = UserStore.from_settings(settings)
if "dm.bench" not in {u.username for u in users.users()}:
    users.add("dm.bench", "data_manager", "a bench password", "Bench Manager", temporary=False)
    platform.record(account_events(users, ["dm.bench"], "ADD", "bench"))
client = TestClient(create_app(platform, settings, users), base_url="http://testserver")
token = re.compile(r'name="csrf_token" value="([^"]+)"')
form = {"username": "dm.bench", "password": "a bench password"}
form["csrf_token"] = token.search(client.get("/login").text).group(1)
assert client.post("/login", data=form, follow_redirects=False).status_code == 303
page = f"/subjects/{subject}?study=SYN"
assert client.get(page).status_code == 200  # the server is warm, as a running one is
started = time.perf_counter()
platform.ingest("SYN", [correction])
ingested = time.perf_counter()
shown = client.get(page)
done = time.perf_counter()
assert shown.status_code == 200 and subject in shown.text, shown.text[-2000:]
seconds = {"seconds": done - started, "ingest": ingested - started, "page": done - ingested}
print(json.dumps(seconds))
"""
"""What a data manager's running web page does with a late correction: the row ingested
(as the watcher or `tract ingest` would, into the same home), then the subject's page."""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; medians are shown")
    parser.add_argument("--keep", type=Path, help="keep the generated files and homes here")
    args = parser.parse_args()
    from services.demo.synthetic import write_synthetic_trial

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-files-"))
    header = (
        "subjects",
        "rows",
        "tract s",
        "duckdb s",
        "ratio",
        "us/subject",
        "tract MB",
        "duck MB",
    )
    widths = (9, 10, 8, 9, 6, 11, 9, 8)
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    last: tuple[Path, Path, float] | None = None
    try:
        for n in args.sizes:
            folder = work / f"files-{n}"
            files = write_synthetic_trial(folder, n, seed=1, study=STUDY)
            rows = sum(sum(1 for _ in open(p)) - 1 for p in files.values())  # noqa: SIM115
            home = work / f"home-{n}"
            tract, duck = [], []
            for _ in range(args.repeat):  # interleaved: load hits both alike
                tract.append(run_tract(folder, home))
                duck.append(run_duckdb(folder))
            t_s = statistics.median(s for s, _ in tract)
            d_s = statistics.median(s for s, _ in duck)
            t_mb = max(mb for _, mb in tract)
            d_mb = max(mb for _, mb in duck)
            print(
                f"{n:>9,} {rows:>10,} {t_s:>8.2f} {d_s:>9.2f} {t_s / d_s:>5.1f}x "
                f"{1e6 * t_s / n:>11.1f} {t_mb:>9.0f} {d_mb:>8.0f}",
                flush=True,
            )
            last = (folder, home, t_s)
        print("target: within 3x of DuckDB at 10k and 100k; us/subject flat or falling; < 1.5 GB")
        if last is not None:
            correction(*last)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
