"""Who may do what on the web page: roles and permissions as data (no dependencies beyond the
signing rules, so the CLI and the user store can offer and check the roles without loading the
web stack). What each role may *see* is the visibility policy's (``web/visibility.py``); what
each role may *sign* is :data:`services.signatures.SIGNING_ROLES`, which the signing
permissions here mirror."""

from services.signatures import APPROVE_UNLOCK, REQUEST_UNLOCK, SIGNING_ROLES, VOTE

ROLES = ("committee", "data_manager", "monitor", "admin", "approver")
# A role missing from a permission's set is refused, and the refusal audited.
PERMISSIONS: dict[str, frozenset[str]] = {
    "view": frozenset(ROLES),
    "decide": SIGNING_ROLES[VOTE],
    "lock": frozenset({"data_manager", "admin"}),
    # site queries: record the site's answer, close, reopen (the data manager's review)
    "query": frozenset({"data_manager", "admin"}),
    "request_unlock": SIGNING_ROLES[REQUEST_UNLOCK],
    "approve_unlock": SIGNING_ROLES[APPROVE_UNLOCK],
}


def can(role: str | None, permission: str) -> bool:
    return role in PERMISSIONS[permission]
