"""Benchmark: full re-adjudication of generated trials against the floor of scanning the same
events from Parquet.

    .venv/bin/python bench/adjudicate.py [--sizes 1000 10000 100000]

For each size it writes a synthetic trial (about 30 events per subject), types the events
with the ingest validator into one Parquet file per kind, then measures in fresh processes:
the scan floor (read every event column from Parquet) and a full adjudication (current state,
rules, conflicts, patient categories) from the same files. It prints wall time, peak memory,
the ratio to the floor (target: at most 5x at 100,000 subjects) and the cost per subject
(which should stay flat: linear growth).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from services.adjudicator.state import EVIDENCE_KINDS as KINDS


def prepare(folder: Path, n_subjects: int) -> int:
    """Synthetic transfer files -> typed event Parquet files; returns the number of events."""
    import schemas
    from services.demo.synthetic import write_synthetic_trial
    from services.ingest.read import read_rows
    from services.ingest.validate import validate

    files = write_synthetic_trial(folder / "files", n_subjects, seed=1)
    by_kind = {c.kind: c for c in schemas.source_contracts().values()}
    total = 0
    for name, path in files.items():
        contract = schemas.source_contracts()[name]
        typed, rejected = validate(read_rows(path, contract), contract)
        assert rejected.is_empty(), rejected.head()
        events = (
            typed.drop("_line")
            .with_row_index("offset")
            .with_columns(
                pl.col("offset").cast(pl.Int64),
                event_id=pl.format("{}-{}", pl.lit(contract.kind), pl.col("offset")),
            )
        )
        events.write_parquet(folder / f"{contract.kind}.parquet")
        total += events.height
    assert set(by_kind) == set(KINDS)
    return total


def measure(mode: str, folder: Path) -> dict[str, float]:
    """Runs in a child process so peak memory belongs to one measurement."""
    from services.adjudicator.engine import adjudicate
    from services.adjudicator.ruleset import load_ruleset
    from services.adjudicator.state import Evidence, empty_records

    start = time.perf_counter()
    if mode == "scan":
        frames = pl.collect_all([pl.scan_parquet(folder / f"{kind}.parquet") for kind in KINDS])
        rows = sum(f.height for f in frames)
    else:
        records = {kind: pl.scan_parquet(folder / f"{kind}.parquet") for kind in KINDS}
        result = adjudicate(
            "SYN",
            Evidence.from_records(records),
            load_ruleset(),
            empty_records("committee_decision"),
            empty_records("conflict_change"),
        )
        rows = result.tracts.height
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": peak_rss_mb(), "rows": rows}


def peak_rss_mb() -> float:
    """This process's own peak resident memory. VmHWM, not ru_maxrss: Linux carries
    ru_maxrss over from the parent across fork and exec, which would report the parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(mode: str, folder: Path, repeat: int) -> dict[str, float]:
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, __file__, "--child", mode, str(folder)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for _ in range(repeat)
    ]
    best = min(runs, key=lambda r: r["seconds"])
    return best | {"peak_mb": max(r["peak_mb"] for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per measurement; the best is kept"
    )
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], Path(args.child[1]))))
        return

    columns = (
        "subjects",
        "events",
        "scan s",
        "adjudicate s",
        "ratio",
        "us/subject",
        "scan MB",
        "adj MB",
    )
    widths = (9, 10, 8, 13, 6, 11, 8, 7)
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            folder = Path(tmp) / str(n)
            events = prepare(folder, n)
            scan = child("scan", folder, args.repeat)
            adj = child("adjudicate", folder, args.repeat)
            ratio = adj["seconds"] / scan["seconds"]
            print(
                f"{n:>9,} {events:>10,} {scan['seconds']:>8.3f} {adj['seconds']:>13.3f} {ratio:>5.1f}x "
                f"{1e6 * adj['seconds'] / n:>11.1f} {scan['peak_mb']:>8.0f} {adj['peak_mb']:>7.0f}"
            )
    print(
        "target: adjudicate <= 5x the scan floor at 100,000 subjects; us/subject roughly flat (linear)"
    )


if __name__ == "__main__":
    main()
