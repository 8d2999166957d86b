"""Server-side SVG plots (ElementTree, no JavaScript): the swimmer plot of tract status per visit.

One lane per treated tract, one cell per scheduled visit coloured by the rule ``clinical.status``
of that visit, and the tract's outcome at the end of the lane (a diamond when the committee
decided it). ElementTree escapes every text, so subject ids cannot inject markup.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence

import polars as pl

STATUS_FILL = {
    "CLOSED": "#2e7d32",
    "NOT_DRAINING": "#f2b233",
    "OPEN": "#c62828",
    "INCONSISTENT": "#7b1fa2",
}
MISSING_FILL = "#ffffff"
# Colour is never the only signal: each cell also carries a letter (and the legend says which).
STATUS_MARK = {"CLOSED": "C", "NOT_DRAINING": "N", "OPEN": "O", "INCONSISTENT": "!"}
MARK_INK = {"CLOSED": "#fff", "NOT_DRAINING": "#1f2933", "OPEN": "#fff", "INCONSISTENT": "#fff"}
OUTCOME_FILL = {
    "CLOSED": "#2e7d32",
    "NOT_CLOSED": "#c62828",
    "PENDING": "#9e9e9e",
    "NOT_EVALUABLE": "#5d6d7e",
}
LEGEND = (
    ("C closed", STATUS_FILL["CLOSED"]),
    ("N open, not draining", STATUS_FILL["NOT_DRAINING"]),
    ("O open, draining", STATUS_FILL["OPEN"]),
    ("! records disagree", STATUS_FILL["INCONSISTENT"]),
    ("no exam", MISSING_FILL),
)

LABEL_W, CELL_W, CELL_H, GAP, HEAD_H, LEGEND_H, OUTCOME_W = 92, 40, 13, 3, 22, 26, 132
CHAR_W = 6.4  # average glyph width at font-size 11, to lay out the legend


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: object) -> ET.Element:
    node = ET.SubElement(
        parent, tag, {k.rstrip("_").replace("_", "-"): str(v) for k, v in attrs.items()}
    )
    if text is not None:
        node.text = text
    return node


def swimmer_svg(
    visits: pl.DataFrame,
    tracts: pl.DataFrame,
    schedule: Sequence[str],
    highlight: tuple[str, str] | None = None,
    title: str = "Tract status over visits",
    link: Callable[[str], str] | None = None,
) -> str:
    """The swimmer plot as an ``<svg>`` string.

    ``visits``: Adjudication.visits (subject_id, tract_id, visit, status, inconsistent);
    ``tracts``: Adjudication.tracts (treated tracts are drawn, with outcome and decided_by).
    ``link(subject_id)``: where a lane's label leads (the subject's page).
    """
    lanes = tracts.filter(pl.col("treated")).sort("subject_id", "tract_id")
    status = {
        (r["subject_id"], r["tract_id"], r["visit"]): (
            "INCONSISTENT" if r["inconsistent"] else r["status"]
        )
        for r in visits.iter_rows(named=True)
    }
    legend = [*LEGEND, ("◆ committee decision", None)]
    legend_w = sum(16 + CHAR_W * len(label) + 12 for label, _ in legend)
    width = max(LABEL_W + len(schedule) * CELL_W + OUTCOME_W, int(legend_w))
    height = LEGEND_H + HEAD_H + max(lanes.height, 1) * (CELL_H + GAP) + 8
    svg = ET.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "width": str(width),
            "height": str(height),
            "viewBox": f"0 0 {width} {height}",
            # an image holds no links: with lane labels that link to subjects, a group
            "role": "img" if link is None else "group",
            "aria-label": title,
            "font-family": "system-ui, sans-serif",
            "font-size": "11",
        },
    )
    _el(svg, "title", title)
    x = 0.0
    for label, fill in legend:
        if fill is not None:
            _el(svg, "rect", x=x, y=4, width=12, height=12, fill=fill, stroke="#888")
            x += 16
        _el(svg, "text", label, x=round(x), y=14)
        x += CHAR_W * len(label) + 12
    top = LEGEND_H
    for i, visit in enumerate(schedule):
        _el(
            svg,
            "text",
            visit,
            x=LABEL_W + i * CELL_W + CELL_W / 2,
            y=top + 14,
            text_anchor="middle",
        )
    _el(svg, "text", "outcome", x=LABEL_W + len(schedule) * CELL_W + 10, y=top + 14)
    if lanes.is_empty():
        _el(svg, "text", "no treated tracts yet", x=LABEL_W, y=top + HEAD_H + CELL_H)
    for lane, row in enumerate(lanes.iter_rows(named=True)):
        y = top + HEAD_H + lane * (CELL_H + GAP)
        key = (row["subject_id"], row["tract_id"])
        withdrawn = row["subject_status"] == "WITHDRAWN"
        group = _el(svg, "g", class_="lane" + (" highlight" if key == highlight else ""))
        if key == highlight:
            _el(group, "rect", x=0, y=y - 2, width=width, height=CELL_H + 4, fill="#fff59d")
        label_parent = group if link is None else _el(group, "a", href=link(key[0]))
        _el(
            label_parent,
            "text",
            f"{key[0]} {key[1]}" + (" (wd)" if withdrawn else ""),
            x=4,
            y=y + CELL_H - 2,
            fill="#5f6b7a" if withdrawn else ("#1565a6" if link else "#222"),
            text_decoration="underline" if link else "none",
        )
        for i, visit in enumerate(schedule):
            state = status.get((*key, visit))
            cell = _el(
                group,
                "rect",
                x=LABEL_W + i * CELL_W + 1,
                y=y,
                width=CELL_W - 2,
                height=CELL_H,
                fill=STATUS_FILL.get(state or "", MISSING_FILL),
                stroke="#bbb",
                opacity="0.45" if withdrawn else "1",
            )
            _el(cell, "title", f"{key[0]}/{key[1]} {visit}: {state or 'no exam'}")
            if state in STATUS_MARK:
                _el(
                    group,
                    "text",
                    STATUS_MARK[state],
                    x=LABEL_W + i * CELL_W + CELL_W / 2,
                    y=y + CELL_H - 3,
                    text_anchor="middle",
                    font_size="9",
                    font_weight="700",
                    fill=MARK_INK[state],
                    aria_hidden="true",
                )
        outcome = row["outcome"] or "PENDING"
        ox = LABEL_W + len(schedule) * CELL_W + 8
        _el(
            group,
            "rect",
            x=ox,
            y=y,
            width=12,
            height=CELL_H,
            fill=OUTCOME_FILL.get(outcome, "#9e9e9e"),
        )
        mark = "◆ " if row["decided_by"] == "COMMITTEE" else ""
        _el(group, "text", f"{mark}{outcome}", x=ox + 16, y=y + CELL_H - 2)
    return ET.tostring(svg, encoding="unicode")
