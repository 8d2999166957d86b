"""The web page's settings: one frozen object read from ``TRACT_WEB_*`` variables.

The session secret signs cookies; when ``TRACT_WEB_SECRET`` is unset one is generated once and
kept in ``<home>/web/secret`` (mode 0600), so sessions survive a restart.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from services.config import Secret
from services.web.errors import WebConfigError


def web_folder(home: Path) -> Path:
    """Where the web page keeps its users, sessions and secret, under the platform home."""
    return Path(home) / "web"


@dataclass(frozen=True)
class WebSettings:
    """``secure_cookies``: None marks cookies Secure only for requests that came over https
    (behind a TLS proxy, with ``--proxy-headers``); True always; False never."""

    secret: Secret = field(repr=False)
    users_db: Path = Path("tract-data/web/users.db")
    overdue_days: int = 14
    secure_cookies: bool | None = None
    session_hours: float = 12.0
    max_failed_sign_ins: int = 5
    lockout_minutes: int = 15

    ENV: ClassVar[dict[str, str]] = {
        "secret": "TRACT_WEB_SECRET",
        "overdue_days": "TRACT_WEB_OVERDUE_DAYS",
        "secure_cookies": "TRACT_WEB_SECURE_COOKIES",
        "session_hours": "TRACT_WEB_SESSION_HOURS",
        "max_failed_sign_ins": "TRACT_WEB_MAX_FAILED_SIGN_INS",
        "lockout_minutes": "TRACT_WEB_LOCKOUT_MINUTES",
    }

    @classmethod
    def from_env(
        cls, home: Path, environ: dict[str, str] | None = None, **overrides: object
    ) -> WebSettings:
        """Settings from the environment; explicit ``overrides`` win (tests, CLI options)."""
        env = os.environ if environ is None else environ
        raw: dict[str, object] = {
            name: env[var] for name, var in cls.ENV.items() if env.get(var, "") != ""
        }
        raw |= {k: v for k, v in overrides.items() if v is not None}
        values: dict[str, object] = {}
        for name, value in raw.items():
            var = cls.ENV.get(name, name)
            try:
                if name in ("overdue_days", "max_failed_sign_ins", "lockout_minutes"):
                    values[name] = int(str(value))
                    if values[name] < 0:  # type: ignore[operator]
                        raise ValueError
                elif name == "session_hours":
                    values[name] = float(str(value))
                    if values[name] <= 0:  # type: ignore[operator]
                        raise ValueError
                elif name == "secure_cookies":
                    values[name] = _tristate(value)
                else:
                    values[name] = value
            except ValueError:
                raise WebConfigError(
                    f"{var}={value!r} is not a valid value for {name}; "
                    "use a non-negative number (or 1/0/auto for TRACT_WEB_SECURE_COOKIES)"
                ) from None
        if "secret" not in values:
            values["secret"] = stored_secret(home)
        values.setdefault("users_db", web_folder(home) / "users.db")
        values["secret"] = Secret(str(values["secret"]))
        return cls(**values)  # type: ignore[arg-type]


def _tristate(value: object) -> bool | None:
    if isinstance(value, bool) or value is None:
        return value
    text = str(value).strip().lower()
    if text in ("auto", ""):
        return None
    if text in ("1", "true", "yes", "y", "on"):
        return True
    if text in ("0", "false", "no", "n", "off"):
        return False
    raise ValueError(text)


def stored_secret(home: Path) -> str:
    """The home's session secret, created on first use (owner-only permissions)."""
    path = web_folder(home) / "secret"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value
