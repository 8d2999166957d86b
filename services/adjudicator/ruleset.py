"""The versioned rule set: every threshold of PROTOCOL.md as data, loaded into frozen objects."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

import schemas
from services.adjudicator.errors import RuleSetError


@dataclass(frozen=True)
class ClinicalParams:
    confirmations: int
    min_gap_days: int


@dataclass(frozen=True)
class MriParams:
    collection_mm: float
    collection_dims: int


@dataclass(frozen=True)
class DischargeParams:
    min_drop: int


@dataclass(frozen=True)
class RuleSet:
    id: str
    version: int
    sha256: str
    visits: tuple[str, ...]
    primary_visit: str
    baseline_discharge_visit: str
    final_mri: str
    clinical: ClinicalParams
    mri: MriParams
    discharge: DischargeParams
    quorum: int
    response_fraction: float
    confidence_level: float

    @property
    def label(self) -> str:
        return f"{self.id}@v{self.version}"

    @property
    def confirmation_visits(self) -> tuple[str, ...]:
        """The visits that must all be closed for sustained closure, ending at the primary one."""
        end = self.visits.index(self.primary_visit) + 1
        return self.visits[end - self.clinical.confirmations : end]


def load_ruleset(path: Path | None = None) -> RuleSet:
    """Load a rule-set file (default: the project's ``schemas/rules-v1.yaml``)."""
    path = path or schemas.rules_path(1)
    try:
        text = path.read_text()
        raw = yaml.safe_load(text)
        rules = RuleSet(
            id=raw["id"],
            version=int(raw["version"]),
            sha256=hashlib.sha256(text.encode()).hexdigest(),
            visits=tuple(raw["schedule"]["visits"]),
            primary_visit=raw["schedule"]["primary_visit"],
            baseline_discharge_visit=raw["schedule"]["baseline_discharge_visit"],
            final_mri=raw["schedule"]["final_mri"],
            clinical=ClinicalParams(**raw["clinical"]),
            mri=MriParams(**raw["mri"]),
            discharge=DischargeParams(**raw["discharge"]),
            quorum=int(raw["committee"]["quorum"]),
            response_fraction=float(raw["sensitivity"]["response_fraction"]),
            confidence_level=float(raw["reports"]["confidence_level"]),
        )
    except FileNotFoundError:
        raise RuleSetError(f"rule set {path} does not exist") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise RuleSetError(f"rule set {path}: missing or malformed parameter {exc}") from None
    if rules.primary_visit not in rules.visits or not 1 <= rules.clinical.confirmations <= len(
        rules.visits
    ):
        raise RuleSetError(
            f"rule set {path}: primary_visit and clinical.confirmations do not fit the schedule"
        )
    if rules.baseline_discharge_visit in rules.confirmation_visits:
        raise RuleSetError(
            f"rule set {path}: the discharge baseline visit cannot be a closure confirmation visit"
        )
    if rules.quorum < 1:
        raise RuleSetError(f"rule set {path}: committee.quorum must be at least 1")
    return rules
