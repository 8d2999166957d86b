"""What an ingest run reports: every row accounted for, read = accepted + duplicates + rejected."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Rejection:
    file: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.reason}"


@dataclass(frozen=True)
class IngestReport:
    file: str
    kind: str
    ingest_run: str
    read: int
    accepted: int
    duplicates: int
    rejected: tuple[Rejection, ...]

    def __post_init__(self) -> None:
        if self.read != self.accepted + self.duplicates + len(self.rejected):
            raise AssertionError(f"{self.file}: rows were lost in accounting: {self}")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["rejections"] = [
            {"line": r.line, "field": r.field, "reason": r.reason} for r in self.rejected
        ]
        data["rejected"] = len(self.rejected)
        return data

    def summary(self) -> str:
        return (
            f"{self.file}: read {self.read} = accepted {self.accepted} + duplicates "
            f"{self.duplicates} + rejected {len(self.rejected)}"
        )
