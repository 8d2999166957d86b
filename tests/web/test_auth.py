"""Users, passwords, sessions, cookie signing and the web settings, without HTTP."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from services.errors import SignInRefusedError, UserError, WebConfigError
from services.platform import Platform
from services.roles import PERMISSIONS, ROLES, can
from services.users import UserStore, _unknown_user_hash
from services.web.app import create_app
from services.web.auth import CookieSigner, tokens_match
from services.web.settings import WebSettings
from tests.web.conftest import fast_hasher

PASSWORD = "a long enough password"


@pytest.fixture
def store(tmp_path: Path) -> UserStore:
    return UserStore(tmp_path / "web" / "users.db", hasher=fast_hasher(), max_failed_sign_ins=3)


def test_passwords_are_stored_as_argon2id_hashes(store: UserStore) -> None:
    store.add("dr.adams", "committee", PASSWORD)
    raw = store.path.read_bytes()
    assert PASSWORD.encode() not in raw
    assert b"$argon2id$" in raw
    assert store.authenticate("DR.Adams ", PASSWORD).role == "committee"


def test_an_unknown_user_is_checked_against_one_hash_made_when_first_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening the store hashes nothing (every command that opens it paid 0.2 s for this
    hash); an unknown user's password is checked against a hash of the store's own cost, made
    once per process and cost, and the web page makes it as it starts."""
    hashed: list[int] = []
    original = PasswordHasher.hash
    monkeypatch.setattr(
        PasswordHasher,
        "hash",
        lambda self, *a, **k: hashed.append(self.time_cost) or original(self, *a, **k),
    )
    _unknown_user_hash.cache_clear()
    store = UserStore(tmp_path / "users.db", hasher=fast_hasher())
    assert hashed == []
    for _ in range(2):
        with pytest.raises(SignInRefusedError, match="unknown user"):
            store.authenticate("nobody", PASSWORD)
    assert hashed == [fast_hasher().time_cost]
    assert store.unknown_user_hash().startswith("$argon2id$v=19$m=8,t=1,p=1$")
    _unknown_user_hash.cache_clear()
    create_app(
        Platform.embedded(tmp_path / "home"),
        WebSettings.from_env(tmp_path / "home", environ={}),
        store,
    )
    assert hashed == [fast_hasher().time_cost] * 2


def test_wrong_password_and_unknown_user_are_refused_with_a_reason(store: UserStore) -> None:
    store.add("dr.adams", "committee", PASSWORD)
    with pytest.raises(SignInRefusedError) as wrong:
        store.authenticate("dr.adams", "not it at all")
    assert wrong.value.reason == "wrong password"
    assert str(wrong.value) == "unknown user or wrong password"
    with pytest.raises(SignInRefusedError) as unknown:
        store.authenticate("nobody", PASSWORD)
    assert unknown.value.reason == "unknown user"


def test_too_many_failures_lock_the_account_for_a_while(store: UserStore) -> None:
    store.add("dr.adams", "committee", PASSWORD)
    for _ in range(3):
        with pytest.raises(SignInRefusedError):
            store.authenticate("dr.adams", "wrong password!")
    with pytest.raises(SignInRefusedError) as locked:
        store.authenticate("dr.adams", PASSWORD)
    assert "locked out" in locked.value.reason


def test_a_success_clears_earlier_failures(store: UserStore) -> None:
    store.add("dr.adams", "committee", PASSWORD)
    for _ in range(2):
        with pytest.raises(SignInRefusedError):
            store.authenticate("dr.adams", "wrong password!")
    store.authenticate("dr.adams", PASSWORD)
    for _ in range(2):
        with pytest.raises(SignInRefusedError):
            store.authenticate("dr.adams", "wrong password!")
    assert store.authenticate("dr.adams", PASSWORD).username == "dr.adams"


@pytest.mark.parametrize(
    ("username", "role", "password", "message"),
    [
        ("dr.adams", "chair", PASSWORD, "role must be one of"),
        ("Dr Adams!", "committee", PASSWORD, "user name 'Dr Adams!' must be 2-64"),
        ("dr.\u0430dams", "committee", PASSWORD, "non-ASCII character"),  # Cyrillic a
        ("dr.adams\u200b", "committee", PASSWORD, "invisible or control character U\\+200B"),
        ("dr.adams", "committee", "short", "at least 10 characters"),
    ],
)
def test_bad_users_are_refused_with_the_fix(
    store: UserStore, username: str, role: str, password: str, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        store.add(username, role, password)


def test_an_existing_user_is_not_overwritten_but_a_removed_one_can_return(
    store: UserStore,
) -> None:
    store.add("dr.adams", "committee", PASSWORD)
    with pytest.raises(UserError, match="exists"):
        store.add("dr.adams", "admin", PASSWORD)
    store.remove("dr.adams")
    with pytest.raises(SignInRefusedError) as removed:
        store.authenticate("dr.adams", PASSWORD)
    assert removed.value.reason == "account removed"
    assert store.add("dr.adams", "monitor", "another password").role == "monitor"


def test_sessions_are_stored_hashed_and_end_on_sign_out_or_password_change(
    store: UserStore,
) -> None:
    user = store.add("dr.adams", "committee", PASSWORD)
    token = store.open_session(user)
    assert token.encode() not in store.path.read_bytes()
    session = store.session(token)
    assert session is not None and session.role == "committee" and session.can("decide")
    assert store.open_session(user) != token  # a fresh token at every sign-in
    store.close_session(token)
    assert store.session(token) is None
    again = store.open_session(user)
    store.set_password("dr.adams", "a brand new password")
    assert store.session(again) is None


def test_sessions_expire(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "u.db", hasher=fast_hasher(), session_hours=-1)
    token = store.open_session(store.add("dr.adams", "committee", PASSWORD))
    assert store.session(token) is None


def test_roles_and_permissions() -> None:
    assert set(ROLES) == {"committee", "data_manager", "monitor", "admin", "approver"}
    assert can("committee", "decide") and not can("monitor", "decide")
    assert can("data_manager", "request_unlock") and not can("data_manager", "approve_unlock")
    assert can("approver", "approve_unlock") and can("admin", "approve_unlock")
    assert not any(can("committee", p) for p in ("lock", "request_unlock", "approve_unlock"))
    assert not can("committee", "lock") and can("data_manager", "lock")
    assert all(can(role, "view") for role in ROLES)
    assert not can(None, "view") and set(PERMISSIONS) >= {"view", "decide", "lock"}


def test_signed_cookies_refuse_tampering() -> None:
    signer = CookieSigner("secret-one")
    cookie = signer.session_cookie("token")
    assert signer.session_token(cookie) == "token"
    assert signer.session_token(cookie + "x") is None
    assert CookieSigner("secret-two").session_token(cookie) is None
    assert signer.login_token(cookie) is None  # a session cookie is not a sign-in token
    assert signer.session_token(None) is None


def test_csrf_tokens_compare_in_constant_time_and_need_a_value() -> None:
    assert tokens_match("abc", "abc")
    assert not tokens_match("abc", "abd") and not tokens_match("abc", None)
    assert not tokens_match("abc", "")


def test_the_secret_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    first = WebSettings.from_env(tmp_path, environ={})
    second = WebSettings.from_env(tmp_path, environ={})
    assert first.secret.reveal() == second.secret.reveal() and len(first.secret.reveal()) > 40
    path = tmp_path / "web" / "secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "***" in repr(first.secret) and first.secret.reveal() not in repr(first)
    assert first.users_db == tmp_path / "web" / "users.db"


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    settings = WebSettings.from_env(
        tmp_path,
        environ={
            "TRACT_WEB_SECRET": "from-env",
            "TRACT_WEB_OVERDUE_DAYS": "21",
            "TRACT_WEB_SECURE_COOKIES": "yes",
            "TRACT_WEB_SESSION_HOURS": "8",
        },
    )
    assert settings.secret.reveal() == "from-env"
    assert (settings.overdue_days, settings.secure_cookies, settings.session_hours) == (21, True, 8)
    assert not (tmp_path / "web" / "secret").exists()
    assert WebSettings.from_env(tmp_path, environ={}).secure_cookies is None  # auto


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TRACT_WEB_OVERDUE_DAYS", "two weeks"),
        ("TRACT_WEB_OVERDUE_DAYS", "-1"),
        ("TRACT_WEB_SECURE_COOKIES", "perhaps"),
        ("TRACT_WEB_SESSION_HOURS", "0"),
    ],
)
def test_a_bad_setting_names_its_variable(tmp_path: Path, variable: str, value: str) -> None:
    with pytest.raises(WebConfigError, match=variable):
        WebSettings.from_env(tmp_path, environ={variable: value, "TRACT_WEB_SECRET": "s"})


# -- printed names and signatures (21 CFR 11.50, 11.200) ----------------------------------------
def test_a_user_has_a_printed_name_that_tells_them_apart(store: UserStore) -> None:
    store.add("dr.adams", "committee", PASSWORD, "  Dr   Anna Adams ")
    assert store.user("DR.ADAMS").full_name == "Dr Anna Adams"
    with pytest.raises(UserError, match=r"already dr\.adams's"):
        store.add("dr.other", "committee", PASSWORD, "dr anna ADAMS")
    with pytest.raises(UserError, match="invisible"):
        store.add("dr.other", "committee", PASSWORD, "Dr Anna\u200b Adams")
    store.add("dr.other", "committee", PASSWORD)  # may sign in and read, not sign
    assert store.user("dr.other").full_name == ""
    assert store.set_full_name("dr.other", "Dr Otto Other").full_name == "Dr Otto Other"


def test_a_users_file_from_before_printed_names_opens(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "web" / "users.db"
    path.parent.mkdir(mode=0o700)
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE users (username TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT "
        "NOT NULL, active INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL, updated_at TEXT "
        "NOT NULL)"
    )
    db.execute("INSERT INTO users VALUES ('dr.old', 'committee', 'x', 1, 'then', 'then')")
    db.commit()
    db.close()
    store = UserStore(path, hasher=fast_hasher())
    assert store.user("dr.old").full_name == ""


def test_a_signature_checks_the_password_again_and_counts_failures(store: UserStore) -> None:
    from services.signatures import SignatureRefusedError

    store.add("dr.adams", "committee", PASSWORD, "Dr Anna Adams", temporary=False)
    assert store.check_signature("dr.adams", PASSWORD, "cli:ana").full_name == "Dr Anna Adams"
    for _ in range(3):
        with pytest.raises(SignatureRefusedError, match="unknown user or wrong password"):
            store.check_signature("dr.adams", "guess guess guess", "cli:eve")
    with pytest.raises(SignatureRefusedError, match="locked out"):
        store.check_signature("dr.adams", PASSWORD, "cli:eve")
    store.remove("dr.adams")
    with pytest.raises(SignatureRefusedError, match="account removed"):
        store.check_signature("dr.adams", PASSWORD, "cli:ana")
