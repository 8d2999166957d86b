"""The tamper-evident chain: every segment's entry is hashed together with its predecessor's.

An entry names its place (sequence number, kind, study, offsets), the sha256 of its file and
when it was appended. Changing, removing or inserting any entry, or any byte of a segment
file, breaks the chain from that point on; rewriting the whole chain after an edit is caught
by any anchor kept elsewhere (a lock's manifest records the chain head at its cut, and
``tract verify`` prints the head for an auditor to keep).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

GENESIS = "0" * 64
FORMAT = "tract-log-v1"


@dataclass(frozen=True)
class Entry:
    """One segment as the index records it."""

    seq: int
    topic: str
    study: str
    first_offset: int
    count: int
    file: str
    bytes: int
    sha256: str
    appended_at: str
    prev_hash: str
    hash: str

    @property
    def end(self) -> int:
        """The offset after this segment's last event."""
        return self.first_offset + self.count

    def to_dict(self) -> dict:
        return asdict(self)


def link(
    log_id: str,
    seq: int,
    topic: str,
    study: str,
    first_offset: int,
    count: int,
    sha256: str,
    appended_at: str,
    prev_hash: str,
) -> str:
    """The hash of one entry, which commits to everything before it through ``prev_hash``."""
    text = "|".join(
        map(
            str,
            (
                FORMAT,
                log_id,
                seq,
                topic,
                study,
                first_offset,
                count,
                sha256,
                appended_at,
                prev_hash,
            ),
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Break:
    """The first place the chain does not hold, in words an auditor can act on."""

    seq: int
    problem: str


def walk(
    log_id: str,
    entries: Iterable[Entry],
    previous: str = GENESIS,
    ends: dict[str, int] | None = None,
) -> tuple[Break | None, dict[str, int]]:
    """Check sequence, links, hashes and per-kind offset continuity of ``entries``, which follow
    the entry whose hash is ``previous`` (the genesis by default; ``ends``: each kind's end
    offset before them). Returns the first break (or None) and the ends after them."""
    ends = dict(ends or {})
    expected_seq = None
    for e in entries:
        if expected_seq is None:
            expected_seq = 1 if previous == GENESIS else e.seq
        if e.seq != expected_seq:
            return Break(
                expected_seq,
                f"segment {expected_seq} is missing from the index (the next one is {e.seq})",
            ), ends
        if e.prev_hash != previous:
            return Break(e.seq, f"segment {e.seq} does not link to the segment before it"), ends
        recomputed = link(
            log_id,
            e.seq,
            e.topic,
            e.study,
            e.first_offset,
            e.count,
            e.sha256,
            e.appended_at,
            e.prev_hash,
        )
        if recomputed != e.hash:
            return Break(
                e.seq, f"segment {e.seq}'s index entry was changed after it was written"
            ), ends
        if e.first_offset != ends.get(e.topic, 0):
            return Break(
                e.seq,
                f"segment {e.seq} starts {e.topic} at offset {e.first_offset}, "
                f"expected {ends.get(e.topic, 0)}: events are missing before it",
            ), ends
        ends[e.topic] = e.end
        previous, expected_seq = e.hash, e.seq + 1
    return None, ends


def file_sha256(path: Path) -> tuple[str, int]:
    """A segment file's sha256 and size, read from disk in chunks (what a verifier reads)."""
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256")
        return digest.hexdigest(), handle.tell()
