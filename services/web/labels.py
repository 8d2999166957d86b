"""The reviewer's words for the platform's codes: conflict types, statuses, outcomes, Parks
types, what a conflict is about. Pages show the name and keep the code in a tooltip (the code is
what the CLI, the exports and the audit trail use, so a reader can always match the two).

Pure data and two lookups; the templates reach them through the ``human`` and ``meaning``
filters (``app.py``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Label:
    name: str
    meaning: str = ""


CONFLICT_TYPES: dict[str, Label] = {
    "UNMATCHED_TRACT": Label(
        "Tract not in the registry",
        "Evidence names a tract the subject's baseline registry does not list: either a "
        "mis-keyed tract id (map it to the registry tract it is about) or a new tract "
        "(reported, never in a denominator).",
    ),
    "INCONSISTENT_EXAM": Label(
        "Exams disagree at one visit",
        "Two current exam records of the same visit disagree on something a rule reads "
        "(status, discharge grade or date).",
    ),
    "MISSING_ASSESSMENT": Label(
        "Assessment missing",
        "A completer lacks an exam or an MRI read the outcome needs.",
    ),
    "READER_DISAGREEMENT": Label(
        "MRI readers disagree",
        "Reader 1 and Reader 2 disagree on healing at the final MRI and no evaluable "
        "adjudicator read settles it.",
    ),
    "CLINICAL_MRI_DISCORDANCE": Label(
        "Clinical and MRI disagree",
        "Sustained clinical closure and MRI healing point different ways; the primary "
        "outcome needs both.",
    ),
    "OUT_OF_WINDOW": Label(
        "Assessment outside its visit window",
        "An exam or scan an outcome reads was done outside the protocol's window; the "
        "committee judges whether it stands (the primary outcome counts it meanwhile).",
    ),
    "VISIT_ORDER": Label(
        "Visits out of date order",
        "A confirmation visit is dated on or after the next one: the dates or the visit "
        "labels are wrong (a site query).",
    ),
    "READER_NOT_INDEPENDENT": Label(
        "MRI reads not independent",
        "One reader read the tract in two roles; the core lab must re-read (a core-lab query).",
    ),
    "DUPLICATE_REGISTRATION": Label(
        "Registered twice",
        "A subject or tract has two current registry records; until the site retires one, "
        "the first received counts (a site query).",
    ),
    "UNKNOWN_SUBJECT": Label(
        "Subject not registered",
        "Evidence arrived for a subject id with no subject record (a site query).",
    ),
}

CONFLICT_STATUSES: dict[str, Label] = {
    "OPEN": Label("Open", "Holds, and no decision on these inputs: the committee must decide."),
    "DECIDED": Label("Decided", "Holds, and the committee decided it on the same inputs."),
    "RESOLVED": Label(
        "Resolved by data",
        "No longer holds (e.g. the adjudicator's read or a corrected record arrived); a "
        "decision on it stops applying.",
    ),
    "ALL": Label("Any status"),
}

DECISION_STATUSES: dict[str, Label] = {
    "CLOSED": Label(
        "Closed",
        "The tract counts as closed for the primary outcome (the committee's status replaces "
        "the rule's for this tract, primary definition only).",
    ),
    "NOT_CLOSED": Label(
        "Not closed",
        "The tract counts as not closed for the primary outcome.",
    ),
    "NOT_EVALUABLE": Label(
        "Not evaluable",
        "The evidence cannot say; counted as not closed for the patient's category and kept "
        "in every denominator.",
    ),
    "MAPPED": Label(
        "Same as a registry tract (map)",
        "The unregistered tract id is a mis-keyed registry tract: its evidence counts for the "
        "registry tract you choose, in every definition.",
    ),
    "NEW_TRACT": Label(
        "New tract",
        "A tract that appeared after baseline: reported, never in a denominator.",
    ),
}

VISIT_STATUSES: dict[str, Label] = {
    "CLOSED": Label("Closed", "External opening closed, no drainage on compression."),
    "NOT_DRAINING": Label("Open, not draining", "Opening still open, but no drainage."),
    "OPEN": Label("Open, draining", "Opening open and draining on compression."),
    "INCONSISTENT": Label("Records disagree", "Two current records of the visit disagree."),
    "missing": Label("No exam", "No exam recorded for this visit."),
}

OUTCOMES: dict[str, Label] = {
    "CLOSED": Label("Closed", "Sustained clinical closure and MRI healed."),
    "NOT_CLOSED": Label("Not closed"),
    "PENDING": Label("Pending", "The rules cannot decide yet (evidence missing or in conflict)."),
    "NOT_EVALUABLE": Label("Not evaluable", "The committee found the tract not evaluable."),
    "HEALED": Label("Healed"),
    "NOT_HEALED": Label("Not healed"),
    "FULL_CLOSURE": Label("Full closure", "Every treated tract closed."),
    "IMPROVED": Label("Improved", "Some but not all treated tracts closed."),
    "RESISTANT": Label("Resistant", "No treated tract closed."),
    "RULE": Label("the rules"),
    "COMMITTEE": Label("the committee"),
}

SUBJECT_STATUSES: dict[str, Label] = {
    "ENROLLED": Label("In follow-up"),
    "COMPLETED": Label("Completed"),
    "WITHDRAWN": Label("Withdrawn"),
}

PARKS: dict[str, Label] = {
    "SUPERFICIAL": Label("Superficial"),
    "INTERSPHINCTERIC": Label("Intersphincteric"),
    "TRANSSPHINCTERIC": Label("Trans-sphincteric"),
    "SUPRASPHINCTERIC": Label("Suprasphincteric"),
    "EXTRASPHINCTERIC": Label("Extrasphincteric"),
}

ABOUT: dict[str, str] = {
    "registry": "the tract registry",
    "subject": "the subject registry",
    "clinical": "the clinical exams",
    "mri": "the MRI reads",
    "primary": "the primary outcome (clinical and MRI together)",
    "readers": "the MRI readers",
    "MRI_FINAL": "the final MRI",
    "MRI_BL": "the baseline MRI",
}

QUERY_STATUSES: dict[str, Label] = {
    "OPEN": Label("Open", "Waiting for the site (or core lab) to answer."),
    "ANSWERED": Label(
        "Answered",
        "A corrected row arrived, the data resolved the conflict, or the site's note was "
        "recorded: the data manager reviews and closes it.",
    ),
    "CLOSED": Label("Closed", "Reviewed and closed by the data manager."),
}

ROLES: dict[str, str] = {
    "committee": "Committee member",
    "data_manager": "Data manager",
    "monitor": "Monitor",
    "admin": "Administrator",
}

_TABLES: dict[str, dict[str, Label]] = {
    "conflict_type": CONFLICT_TYPES,
    "conflict_status": CONFLICT_STATUSES,
    "decision": DECISION_STATUSES,
    "visit": VISIT_STATUSES,
    "outcome": OUTCOMES,
    "subject_status": SUBJECT_STATUSES,
    "parks": PARKS,
    "query_status": QUERY_STATUSES,
}


def human(code: str | None, table: str) -> str:
    """The reviewer's name for ``code`` in ``table`` (the code itself when it has none)."""
    if code is None or code == "":
        return "—"
    if table == "about":
        return ABOUT.get(code, code)
    if table == "role":
        return ROLES.get(code, code.replace("_", " "))
    label = _TABLES[table].get(code)
    return label.name if label else code.replace("_", " ").capitalize()


def meaning(code: str | None, table: str) -> str:
    """What ``code`` means, for a tooltip or a definition list ("" when nothing to add)."""
    if not code:
        return ""
    label = _TABLES[table].get(code)
    return label.meaning if label else ""


def tidy(detail: str | None) -> str:
    """The rule engine's note on a conflict, without the repeats its templates can produce
    ("clinical assessment missing: missing: FU5")."""
    if not detail:
        return ""
    for repeat in ("missing: missing: ", "missing: missing:"):
        detail = detail.replace(repeat, "missing: ")
    return detail
