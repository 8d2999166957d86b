"""Benchmark: reading and validating the six transfer files of a generated trial.

    .venv/bin/python bench/read_validate.py [--subjects 100000] [--repeat 3] [--folder DIR]

Writes a synthetic trial (``services.demo.synthetic``; reused when ``--folder`` already holds
one), then times ``read_rows`` and ``validate`` per file, best of ``--repeat`` runs, and prints
rows per second. Also times the same files with every value quoted and with CR LF line ends
(the second way through the CSV reader), and a JSON Lines file written with spaces and
escapes (``json.dumps`` defaults: the per-line path for every line), so a slow path shows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

import schemas
from services.demo.synthetic import write_synthetic_trial
from services.ingest.read import read_rows
from services.ingest.validate import validate


def best(fn: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """Best wall time and best CPU time (all threads) of ``repeat`` runs, and the result.
    CPU time shows the work when other processes share the machine."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), result


def measure(label: str, path: Path, contract: schemas.Contract, repeat: int) -> float:
    data = path.read_bytes()
    read_s, read_cpu, raw = best(lambda: read_rows(path, contract, data), repeat)
    assert isinstance(raw, pl.DataFrame)
    validate_s, validate_cpu, result = best(lambda: validate(raw, contract), repeat)
    _, rejected = result  # type: ignore[misc]
    assert rejected.is_empty(), rejected.head()
    total = read_s + validate_s
    print(
        f"{label:34} {raw.height:>9,} rows {len(data) / 1e6:6.1f} MB  read {read_s:5.2f} s "
        f"(cpu {read_cpu:5.2f})  validate {validate_s:5.2f} s (cpu {validate_cpu:5.2f})  "
        f"{raw.height / total:>10,.0f} rows/s"
    )
    return total


def variants(folder: Path, out: Path) -> list[tuple[str, Path, schemas.Contract]]:
    """The exams quoted with CR LF ends, and the reads as json.dumps writes them."""
    out.mkdir(parents=True, exist_ok=True)
    exams = out / "clinical_exams.csv"
    pl.read_csv(folder / "clinical_exams.csv", infer_schema=False).write_csv(
        exams, quote_style="always", line_terminator="\r\n"
    )
    reads = out / "mri_reads.jsonl"
    with (folder / "mri_reads.jsonl").open() as src, reads.open("w") as dst:
        for line in src:
            record = json.loads(line)
            record["reader_id"] += "\u00e9"  # json.dumps writes it as an escape
            dst.write(json.dumps(record) + "\n")
    return [
        ("clinical_exams.csv (quoted, CRLF)", exams, schemas.contract("clinical_exam")),
        ("mri_reads.jsonl (json.dumps)", reads, schemas.contract("mri_read")),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--folder", type=Path, help="reuse or keep the generated files here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp) / "trial"
        if not (folder / "mri_reads.jsonl").exists():
            start = time.perf_counter()
            write_synthetic_trial(folder, args.subjects, seed=1)
            print(f"wrote a {args.subjects:,}-subject trial in {time.perf_counter() - start:.1f} s")
        total = 0.0
        for name, contract in schemas.source_contracts().items():
            total += measure(name, folder / name, contract, args.repeat)
        print(f"{'six files':34} read + validate {total:6.2f} s")
        for label, path, contract in variants(folder, Path(tmp) / "variants"):
            measure(label, path, contract, args.repeat)


if __name__ == "__main__":
    main()
