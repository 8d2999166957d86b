"""Plain-text views of the platform's results, for people at a terminal."""

from __future__ import annotations

from typing import Any

import polars as pl


def _ci(ci: list[float] | None) -> str:
    return "n/a" if not ci else f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}%"


def _p(value: float) -> str:
    return "<0.0001" if value < 0.0001 else f"{value:.4f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def report_text(report: dict[str, Any]) -> str:
    c, itt, t, d = (
        report["completers"],
        report["itt"],
        report["tracts"],
        report["discharge_improved"],
    )
    source = (
        f"lock {report['lock_id']} ({report['locked_at']})"
        if report.get("lock_id")
        else "current data (not locked)"
    )
    lines = [
        f"Study {report['study']}: {source}; rules {report['rule_set']} v{report['rule_set_version']}",
        *_since_lock(report.get("since_lock")),
        "",
        f"Completers (n = {c['n']})",
        f"  FULL_CLOSURE  {c['FULL_CLOSURE']:>3}  {_pct(c['percent']['FULL_CLOSURE']):>6}"
        f"  95% CI {_ci(c['full_closure_ci'])} (Clopper-Pearson)",
        f"  IMPROVED      {c['IMPROVED']:>3}  {_pct(c['percent']['IMPROVED']):>6}",
        f"  RESISTANT     {c['RESISTANT']:>3}  {_pct(c['percent']['RESISTANT']):>6}",
        f"  PENDING       {c['PENDING']:>3}",
        f"Intention to treat (n = {itt['n']}, withdrawn = failure): full closure {itt['FULL_CLOSURE']} "
        f"({_pct(itt['percent'])}, 95% CI {_ci(itt['ci'])})",
        f"Tracts: {t['closed']} of {t['treated']} treated tracts closed ({_pct(t['percent'])}, 95% CI "
        f"{_ci(t['ci'])}, clustered in {t['patients']} patients, design effect {t['design_effect']})",
        f"Discharge improved: {d['improved']} of {d['evaluable']} evaluable tracts ({_pct(d['percent'])})",
        "",
        "Sensitivity definitions (committee decisions not applied)",
    ]
    for name, table in report["sensitivity"].items():
        if "tracts" in table:
            s, st = table["completers"], table["tracts"]
            lines.append(
                f"  {name:<16} full closure {s['FULL_CLOSURE']}/{s['n']}, improved {s['IMPROVED']}, "
                f"resistant {s['RESISTANT']}, pending {s['PENDING']}; tracts {st['closed']}/{st['treated']}"
            )
        else:
            s = table["completers"]
            lines.append(
                f"  {name:<16} responders {s['responders']}/{s['n']} ({_pct(s['percent'])}, 95% CI {_ci(s['ci'])})"
            )
    r = report["readers"]
    kappa = "n/a" if r["kappa"] is None else f"{r['kappa']:.3f}"
    rate = "n/a" if r["adjudication_rate"] is None else f"{100 * r['adjudication_rate']:.1f}%"
    lines += [
        "",
        f"MRI readers: kappa R1 vs R2 {kappa} over {r['pairs']} tracts; adjudication rate {rate}; "
        f"ADJ sided with R1 {r['adj_sided_with_r1']}, with R2 {r['adj_sided_with_r2']}",
    ]
    cm = report["committee"]
    by_type = ", ".join(
        f"{k} {v['decisions']} ({v['outcome_changed']} changed)" for k, v in cm["by_type"].items()
    )
    lines.append(f"Committee: {by_type or 'no decisions'}; open conflicts {cm['open_conflicts']}")
    p = report["pathology"]
    lines.append("Pathology medians      INJ1    INJ2    INJ3   INJ1 vs INJ3 (Wilcoxon p)")
    for marker in ("cd68_per_hpf", "cd20_per_hpf", "cd31_per_hpf", "inflammation_grade"):
        values = [p["medians"][v][marker] for v in ("INJ1", "INJ2", "INJ3")]
        test = p["inj1_vs_inj3"][marker]
        cells = "".join("     n/a" if v is None else f"{v:>8.1f}" for v in values)
        p_value = "n/a" if test is None else _p(test["p_value"])
        lines.append(f"  {marker:<20}{cells}   {p_value}")
    return "\n".join(lines)


def table_text(frame: pl.DataFrame, columns: list[str]) -> str:
    if frame.is_empty():
        return "(none)"
    rows = [
        [str(v) if v is not None else "" for v in row] for row in frame.select(columns).iter_rows()
    ]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    head = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([head, *body])


def _since_lock(since: dict[str, Any] | None) -> list[str]:
    """What differs from the lock in force (current reports only)."""
    if not since or not since.get("lock_id"):
        return []
    if not (since["tracts"] or since["patients"] or since["post_lock_data"]):
        return [f"Since lock {since['lock_id']}: no outcome or category changed, no data after it"]
    return [
        f"Since lock {since['lock_id']}: {since['tracts']} tract outcome(s) and "
        f"{since['patients']} patient categor{'y' if since['patients'] == 1 else 'ies'} changed; "
        f"{since['post_lock_data']} treated tract(s) with data or decisions after the lock"
    ]
