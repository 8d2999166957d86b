"""Who may do what on the web page: roles and permissions as data (no dependencies, so the CLI
can offer the roles without loading the web stack). What each role may *see* is the
visibility policy's (``visibility.py``)."""

ROLES = ("committee", "data_manager", "monitor", "admin")
# A role missing from a permission's set is refused, and the refusal audited.
PERMISSIONS: dict[str, frozenset[str]] = {
    "view": frozenset(ROLES),
    "decide": frozenset({"committee"}),
    "lock": frozenset({"data_manager", "admin"}),
    # site queries: record the site's answer, close, reopen (the data manager's review)
    "query": frozenset({"data_manager", "admin"}),
}


def can(role: str | None, permission: str) -> bool:
    return role in PERMISSIONS[permission]
