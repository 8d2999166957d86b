"""Errors of the submission export: each says which dataset, record, rule or file to fix."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.errors import TractError

if TYPE_CHECKING:
    from services.export.conformance import Finding


class ExportError(TractError):
    """The export was refused: a lock it cannot read, metadata it needs, a spec that is wrong."""


class ConformanceError(ExportError):
    """The datasets broke a rule of the conformance suite; nothing was written."""

    def __init__(self, findings: tuple[Finding, ...], limit: int = 20) -> None:
        self.findings = findings
        shown = "\n".join(f"  {f}" for f in findings[:limit])
        more = f"\n  ... and {len(findings) - limit} more" if len(findings) > limit else ""
        rules = sorted({f.rule for f in findings})
        super().__init__(
            f"conformance failed: {len(findings)} error(s) in rule(s) {', '.join(rules)}; "
            f"nothing was written. Fix the data or the mapping named below:\n{shown}{more}"
        )
