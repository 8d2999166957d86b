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
subject's outcome read back, both as the CLI (two processes) and as the library path the web
page takes (one process already running), against the full-trial time (target: under 1 s and
under 1/20 of it).
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
    # the library path (the web page: one process, already running)
    again = fixed | {"record_version": "3", "change_reason": "corrected back"}
    again |= {k: row[k] for k in ("external_opening", "drains_on_compression")}
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, list(row), lineterminator="\n")
        writer.writeheader()
        writer.writerow(again)
    code = (
        "import sys, time, json\n"
        "from pathlib import Path\n"
        "from services.platform import Platform\n"
        f"p = Platform.embedded({str(home)!r}); p.outcomes({STUDY!r}, [{subject!r}])\n"
        "t = time.perf_counter()\n"
        f"p.ingest({STUDY!r}, [Path({str(path)!r})])\n"
        f"r = p.outcomes({STUDY!r}, [{subject!r}])\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'tracts': r.tracts.height}))\n"
    )
    inner = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout
    )
    print(
        f"one corrected row, then subject {subject}'s outcome: CLI {cli:.2f} s "
        f"(ingest {ingest_s:.2f} + outcomes {read_s:.2f}; {full_s / cli:.0f}x under the full "
        f"{full_s:.1f} s); library path (the web page) {inner['seconds']:.3f} s "
        f"({full_s / inner['seconds']:.0f}x under). Target: under 1 s and under 1/20."
    )


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
