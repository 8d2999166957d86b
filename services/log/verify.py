"""The auditor's walk of an embedded log: every entry of the chain and every byte of every
segment, reporting (never raising) the first thing that does not match.

It reads the folder directly (read-only), so it works on a copy of a trial home and on a log
the platform itself would refuse to open.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

from services.log.chain import Entry, file_sha256, walk
from services.log.eventlog import _COLUMNS, HEAD, INDEX, MARKER, SEGMENTS


@dataclass(frozen=True)
class Finding:
    """Something that does not match, said where it is."""

    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


@dataclass
class LogVerdict:
    folder: str
    segments: int = 0
    events: int = 0
    head_seq: int = 0
    head_hash: str | None = None
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list, repr=False)

    @property
    def intact(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("entries")
        data["intact"] = self.intact
        data["findings"] = [str(f) for f in self.findings]
        return data

    def hash_at(self, seq: int) -> str | None:
        if 1 <= seq <= len(self.entries) and self.entries[seq - 1].seq == seq:
            return self.entries[seq - 1].hash
        return None


def verify_log(folder: Path | str) -> LogVerdict:
    """Walk the log in ``folder``: marker, index, chain, every segment's bytes and rows."""
    folder = Path(folder)
    verdict = LogVerdict(str(folder))
    if not folder.exists():
        verdict.notes.append("no event log here yet (nothing was ever ingested)")
        return verdict
    try:
        marker = json.loads((folder / MARKER).read_bytes())
        log_id = str(marker["log_id"])
    except (OSError, ValueError, KeyError, TypeError):
        verdict.findings.append(Finding(str(folder / MARKER), "missing or not a tract log marker"))
        return verdict
    entries = _entries(folder / INDEX, verdict)
    if entries is None:
        return verdict
    verdict.entries = entries
    problem, _ = walk(log_id, entries)
    if problem is not None:
        verdict.findings.append(Finding(f"{folder / INDEX} segment {problem.seq}", problem.problem))
    for e in entries:
        finding = _check_segment(folder, e)
        if finding is not None:
            verdict.findings.append(finding)
    verdict.segments = len(entries)
    verdict.events = sum(e.count for e in entries)
    if entries:
        verdict.head_seq, verdict.head_hash = entries[-1].seq, entries[-1].hash
    _check_head(folder, verdict)
    _note_uncommitted(folder, verdict)
    return verdict


def _entries(index: Path, verdict: LogVerdict) -> list[Entry] | None:
    if not index.is_file() or index.stat().st_size == 0:
        verdict.findings.append(
            Finding(str(index), "missing or empty: the chain of segments is lost")
        )
        return None
    try:
        db = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
        try:
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            rows = db.execute(f"SELECT {_COLUMNS} FROM segments ORDER BY seq").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        verdict.findings.append(Finding(str(index), f"not readable as SQLite ({exc})"))
        return None
    if check != "ok":
        verdict.findings.append(Finding(str(index), f"SQLite quick_check: {check}"))
    return [Entry(*row) for row in rows]


def _check_segment(folder: Path, e: Entry) -> Finding | None:
    path = folder / e.file
    where = f"{path} (segment {e.seq}: {e.count} {e.topic} event(s) of {e.study})"
    try:
        digest, _ = file_sha256(path)
    except FileNotFoundError:
        return Finding(where, "missing")
    if digest != e.sha256:
        return Finding(
            where,
            f"sha256 {digest[:16]}… does not match the index ({e.sha256[:16]}…): "
            "the file was changed after it was written",
        )
    try:
        frame = pl.read_parquet(path, columns=["offset", "study"])
    except Exception as exc:
        return Finding(where, f"not readable as Parquet ({exc})")
    expected = pl.int_range(e.first_offset, e.end, dtype=pl.Int64)
    matches = (
        frame.height == e.end - e.first_offset
        and frame.select(
            (pl.col("offset") == expected).fill_null(False).all()
            & (pl.col("study") == e.study).fill_null(False).all()
        ).item()
    )
    if not matches:
        return Finding(where, "its rows do not match the index entry (offsets or study)")
    return None


def _check_head(folder: Path, verdict: LogVerdict) -> None:
    path = folder / HEAD
    if not path.exists():
        if verdict.head_seq:
            verdict.notes.append(f"{path} is missing (a crash right after a commit leaves it so)")
        return
    try:
        seq_text, hash_ = path.read_text().split()
        seq = int(seq_text)
    except ValueError:
        verdict.findings.append(Finding(str(path), "damaged"))
        return
    if seq > verdict.head_seq:
        verdict.findings.append(
            Finding(
                str(path), f"says segment {seq} was committed; the index ends at {verdict.head_seq}"
            )
        )
    elif seq and verdict.hash_at(seq) != hash_:
        verdict.findings.append(Finding(str(path), f"does not match segment {seq} of the index"))


def _note_uncommitted(folder: Path, verdict: LogVerdict) -> None:
    seg = folder / SEGMENTS
    if not seg.exists():
        return
    known = {e.file.split("/")[-1] for e in verdict.entries}
    extra = sorted(
        p.name for p in seg.iterdir() if p.name.endswith(".parquet") and p.name not in known
    )
    beyond = [
        n for n in extra if n.split(".")[0].isdigit() and int(n.split(".")[0]) > verdict.head_seq
    ]
    inside = [n for n in extra if n not in beyond]
    if beyond:
        verdict.notes.append(
            f"{len(beyond)} segment file(s) beyond the last commit ({', '.join(beyond[:3])}): "
            "an append that crashed before committing; the next ingest removes them"
        )
    for name in inside:
        verdict.findings.append(
            Finding(
                str(seg / name),
                "a segment file the index does not list (inserted or its entry removed)",
            )
        )
