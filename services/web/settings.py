"""The web page's settings: one frozen object read from ``TRACT_WEB_*`` variables.

The session secret signs cookies; when ``TRACT_WEB_SECRET`` is unset one is generated once and
kept in ``<home>/web/secret`` (mode 0600, in a 0700 folder), so sessions survive a restart.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from services.config import Secret
from services.errors import WebConfigError
from services.files import private_dir, private_file
from services.users import UserSettings, read_settings, user_setting, users_file, whole_number


def web_folder(home: Path) -> Path:
    """Where the web page keeps its users, sessions and secret, under the platform home."""
    return Path(home) / "web"


@dataclass(frozen=True)
class WebSettings(UserSettings):
    """The user store's settings (:class:`services.users.UserSettings`: the users file, the
    session's lifetime, the sign-in limits) and the web page's own.

    ``secure_cookies``: None marks cookies Secure only for requests that came over https
    (behind a TLS proxy, with ``--proxy-headers``); True always; False never.

    Sign-in failures within ``lockout_minutes`` are counted three ways (see
    ``services/throttle.py``): per account and client address (``max_failed_sign_ins``), per
    address over every account (``max_failed_per_client``) and per account over every address
    (``max_failed_per_account``, which only refuses addresses the account has never signed in
    from).
    ``committee_sees_results``: whether the committee role sees study-level efficacy figures
    (off by default: an endpoint committee is kept away from aggregate results).
    """

    secret: Secret = field(repr=False, kw_only=True)
    overdue_days: int = 14
    secure_cookies: bool | None = None
    committee_sees_results: bool = False
    image_url: str | None = None
    """A link to a read's images in the core lab's viewer: an http(s) URL template over
    {study}, {subject}, {tract}, {timepoint} and {read_id} (each filled URL-encoded)."""

    ENV: ClassVar[dict[str, str]] = {
        "secret": "TRACT_WEB_SECRET",
        "overdue_days": "TRACT_WEB_OVERDUE_DAYS",
        "secure_cookies": "TRACT_WEB_SECURE_COOKIES",
        **UserSettings.ENV,
        "committee_sees_results": "TRACT_WEB_COMMITTEE_SEES_RESULTS",
        "image_url": "TRACT_WEB_IMAGE_URL",
    }

    @classmethod
    def from_env(
        cls, home: Path, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> WebSettings:
        """Settings from the environment; explicit ``overrides`` win (tests, CLI options)."""
        values = read_settings(cls.ENV, environ, overrides, _setting)
        if "secret" not in values:
            values["secret"] = stored_secret(home)
        values.setdefault("users_db", users_file(home))
        values["secret"] = Secret(str(values["secret"]))
        return cls(**values)  # type: ignore[arg-type]


def _setting(name: str, value: object) -> object:
    """``value`` as the web setting ``name`` wants it (ValueError when it cannot be used)."""
    if name == "overdue_days":
        return whole_number(value)
    if name == "secure_cookies":
        return _tristate(value)
    if name == "image_url":
        return check_image_url(str(value))
    if name == "committee_sees_results":
        if (sees := _tristate(value)) is None:
            raise ValueError(value)
        return sees
    return user_setting(name, value)


IMAGE_FIELDS = ("study", "subject", "tract", "timepoint", "read_id")


def check_image_url(template: str) -> str:
    """``template`` if it is an http(s) URL whose only placeholders are ``IMAGE_FIELDS``."""
    import string

    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    unknown = sorted(set(fields) - set(IMAGE_FIELDS))
    if not template.startswith(("https://", "http://")) or unknown:
        raise WebConfigError(
            f"TRACT_WEB_IMAGE_URL={template!r} must be an http(s) URL using only "
            + ", ".join("{" + f + "}" for f in IMAGE_FIELDS)
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            + ", e.g. https://viewer.corelab.example/study/{study}/read/{read_id}"
        )
    return template


def image_link(template: str | None, study: str, read: dict[str, object]) -> str | None:
    """The viewer link of one MRI read (values URL-encoded), or None without a template."""
    if not template:
        return None
    from urllib.parse import quote

    values = {
        "study": study,
        "subject": read.get("subject_id"),
        "tract": read.get("tract_id"),
        "timepoint": read.get("timepoint"),
        "read_id": read.get("read_id"),
    }
    return template.format(**{k: quote(str(v or ""), safe="") for k, v in values.items()})


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
    """The home's session secret, created on first use (owner-only permissions; a looser
    file or folder left by an older version is tightened)."""
    path = web_folder(home) / "secret"
    private_dir(path.parent)
    if path.exists():
        return private_file(path).read_text().strip()
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value
