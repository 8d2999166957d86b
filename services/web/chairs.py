"""Who chairs the adjudication committee: a flag on committee members, kept beside the users.

The chair hands conflicts to members (``services/assignments.py``); everyone else reads the
assignments. The flag lives in its own table of ``<home>/web/users.db`` (owner-only, like the
users), set by an administrator with ``tract users chair NAME`` (``--off`` to clear), which
records the account in the log with it (``services/accounts.py``: a flag set in the file by
anyone else makes the account differ from the log's record, which signs its sessions out) and
an access event in the audit trail. Only an active committee member can chair.
"""

from __future__ import annotations

from services.errors import UserError
from services.users import UserStore


class Chairs:
    """The chair flags of one users file."""

    def __init__(self, users: UserStore) -> None:
        self.users = users

    def names(self) -> list[str]:
        """Active committee members who chair."""
        return sorted(set(self.users.with_role("committee")) & self.users.chair_flags())

    def is_chair(self, username: str) -> bool:
        return username in self.names()

    def set(self, username: str, on: bool = True) -> str:
        """Flag (or clear) ``username`` as a chair; refused for anyone but an active committee
        member. Returns the normalised user name."""
        user = self.users.user(username)
        if on and not (user.active and user.role == "committee"):
            raise UserError(
                f"{user.username} is a {user.role}{'' if user.active else ' (removed)'}; only an "
                "active committee member can chair the committee"
            )
        self.users.flag_chair(user.username, on)
        return user.username
