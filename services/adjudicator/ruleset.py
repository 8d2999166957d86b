"""The versioned rule set: every threshold of PROTOCOL.md as data, loaded into frozen objects."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

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
class Window:
    """Where a scheduled assessment may fall: study day ``day`` (day 0 = INJ1), at most
    ``early`` days before and ``late`` days after it (both ends allowed)."""

    name: str
    day: int
    early: int
    late: int


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
    day0_visit: str = "INJ1"
    windows: tuple[Window, ...] = ()
    """Empty in rule sets before v2: no window is checked."""

    @property
    def label(self) -> str:
        return f"{self.id}@v{self.version}"

    @property
    def confirmation_visits(self) -> tuple[str, ...]:
        """The visits that must all be closed for sustained closure, ending at the primary one."""
        end = self.visits.index(self.primary_visit) + 1
        return self.visits[end - self.clinical.confirmations : end]

    @property
    def outcome_assessments(self) -> tuple[str, ...]:
        """The visits and MRI timepoint whose assessments an outcome rule reads: an
        out-of-window one among them needs the committee (OUT_OF_WINDOW)."""
        return (*self.confirmation_visits, self.baseline_discharge_visit, self.final_mri)


CURRENT_VERSION = 2
"""The rule set in force (``schemas/rules-v2.yaml``); earlier files stay for the record."""


def _windows(raw: dict | None) -> tuple[str, tuple[Window, ...]]:
    if raw is None:
        return "INJ1", ()
    windows = tuple(
        Window(name, int(w["day"]), int(w["early"]), int(w["late"]))
        for name, w in raw["allowed"].items()
    )
    if any(w.early < 0 or w.late < 0 for w in windows):
        raise ValueError("windows: early and late must not be negative")
    return raw["day0_visit"], windows


def load_ruleset(path: Path | None = None) -> RuleSet:
    """Load a rule-set file (default: the one in force, ``schemas/rules-v2.yaml``)."""
    path = path or schemas.rules_path(CURRENT_VERSION)
    try:
        text = path.read_text()
        raw = schemas.load_yaml(text)
        day0_visit, windows = _windows(raw.get("windows"))
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
            day0_visit=day0_visit,
            windows=windows,
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
    unscheduled = {w.name for w in rules.windows} - {*rules.visits, "MRI_BL", rules.final_mri}
    if unscheduled or (rules.windows and rules.day0_visit not in rules.visits):
        raise RuleSetError(
            f"rule set {path}: windows name assessments outside the schedule "
            f"({', '.join(sorted(unscheduled)) or rules.day0_visit})"
        )
    if rules.quorum < 1:
        raise RuleSetError(f"rule set {path}: committee.quorum must be at least 1")
    return rules
