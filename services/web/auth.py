"""The web page's own part of signing in: cookies and form tokens.

The cookie carries the session token signed with the home's secret (itsdangerous), and so does
the sign-in form's token; every form's CSRF token is compared in constant time. The users,
their sessions and the sign-in throttle are the platform's (:mod:`services.users`): the CLI and
the DAGs sign through them too.
"""

from __future__ import annotations

import hmac

from itsdangerous import BadSignature, URLSafeSerializer


def tokens_match(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a CSRF token."""
    return bool(given) and hmac.compare_digest(expected.encode(), str(given).encode())


class CookieSigner:
    """Signs session tokens (and the sign-in form's token) with the home's secret."""

    def __init__(self, secret: str) -> None:
        self._session = URLSafeSerializer(secret, salt="tract-session")
        self._login = URLSafeSerializer(secret, salt="tract-login-csrf")

    def session_cookie(self, token: str) -> str:
        return self._session.dumps(token)

    def session_token(self, cookie: str | None) -> str | None:
        return _loads(self._session, cookie)

    def login_cookie(self, token: str) -> str:
        return self._login.dumps(token)

    def login_token(self, cookie: str | None) -> str | None:
        return _loads(self._login, cookie)


def _loads(serializer: URLSafeSerializer, cookie: str | None) -> str | None:
    if not cookie:
        return None
    try:
        value = serializer.loads(cookie)
    except BadSignature:
        return None
    return value if isinstance(value, str) else None
