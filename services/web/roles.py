"""Who may do what on the web page: roles and permissions as data (no dependencies, so the CLI
can offer the roles without loading the web stack)."""

ROLES = ("committee", "data_manager", "monitor", "admin")
# A role missing from a permission's set is refused, and the refusal audited.
PERMISSIONS: dict[str, frozenset[str]] = {
    "view": frozenset(ROLES),
    "decide": frozenset({"committee"}),
    "lock": frozenset({"data_manager", "admin"}),
    "see_reader_ids": frozenset({"data_manager", "monitor", "admin"}),
}


def can(role: str | None, permission: str) -> bool:
    return role in PERMISSIONS[permission]
