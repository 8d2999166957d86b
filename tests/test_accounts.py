"""An account signs only as the log last recorded it (services/accounts.py).

Found as an insider with write access to the home: the user store is a SQLite file. Raising a
monitor's role there, replacing a member's password hash with one the insider knows, or
inserting a committee member gave accounts that signed votes (a quorum forged), and `tract
verify` said INTACT. Each attack here goes through the real CLI on a real home.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from argon2 import PasswordHasher

from services.platform import Platform
from services.users import users_file
from tests.store.trials import STUDY
from tests.test_signatures_cli import READER_DISAGREEMENT_S05, add_user, tract, vote

INSIDER_PASSWORD = "the insider knows this one"


def edit_store(home: Path, sql: str, *params: object) -> None:
    """What someone with write access to the home can do without any `tract` command."""
    with sqlite3.connect(users_file(home)) as db:
        db.execute(sql, params)


def votes(home: Path) -> list[str]:
    return Platform.embedded(home).votes(STUDY)["voter"].to_list()


def test_an_account_edited_in_the_user_store_signs_nothing(open_home: Path) -> None:
    add_user(open_home, "dr.a", "committee", "Dr Alice Able")
    add_user(open_home, "dr.b", "committee", "Dr Bruno Baker")
    add_user(open_home, "mon.kim", "monitor", "Min Kim")
    code, out = tract(open_home, "verify")
    assert code == 0 and "accounts: 3 in the user store, each as the log records it" in out

    # a monitor's role raised in the file
    edit_store(open_home, "UPDATE users SET role = 'committee' WHERE username = 'mon.kim'")
    code, out = vote(open_home, "mon.kim", "CLOSED")
    assert code == 1 and "mon.kim's role in the user store differs from the log's record" in out
    # a member's password hash replaced by one the insider knows
    known = PasswordHasher().hash(INSIDER_PASSWORD)
    edit_store(open_home, "UPDATE users SET password_hash = ? WHERE username = 'dr.b'", known)
    code, out = tract(
        open_home, "vote", READER_DISAGREEMENT_S05, "--status", "CLOSED", "--rationale", "x",
        "--as", "dr.b", "--password-stdin", stdin=INSIDER_PASSWORD + "\n",
    )  # fmt: skip
    assert code == 1 and "dr.b's password hash in the user store differ" in out
    # a committee member inserted
    edit_store(
        open_home,
        "INSERT INTO users (username, role, password_hash, active, created_at, updated_at, "
        "full_name) VALUES ('dr.ghost', 'committee', ?, 1, '2026-01-01T00:00:00Z', "
        "'2026-01-01T00:00:00Z', 'Dr Ghost')",
        known,
    )
    code, out = tract(
        open_home, "vote", READER_DISAGREEMENT_S05, "--status", "CLOSED", "--rationale", "x",
        "--as", "dr.ghost", "--password-stdin", stdin=INSIDER_PASSWORD + "\n",
    )  # fmt: skip
    assert code == 1 and "dr.ghost is in the user store but the log has no record" in out
    assert "`tract users record dr.ghost`" in out
    assert votes(open_home) == []  # no quorum formed, no vote at all

    code, out = tract(open_home, "verify", "--json")
    verdict = json.loads(out)
    assert code == 1 and verdict["verdict"] == "ALTERED"
    found = "\n".join(verdict["findings"])
    assert "mon.kim's role" in found and "dr.b's password hash" in found
    assert "dr.ghost is in the user store but the log has no record" in found
    assert verdict["accounts"] == "3 of 4 differ from the log's record (signing refused)"
    # the accounts nobody touched still sign
    code, out = vote(open_home, "dr.a", "CLOSED")
    assert code == 0, out
    assert votes(open_home) == ["dr.a"]


def test_a_change_recorded_in_the_open_signs_and_the_trail_shows_it(open_home: Path) -> None:
    """A home whose users were made before accounts were recorded (or a store restored from a
    backup): an administrator records them, and the audit trail says who did, and when."""
    add_user(open_home, "dr.a", "committee", "Dr Alice Able")
    edit_store(open_home, "UPDATE users SET full_name = 'Dr A. Able' WHERE username = 'dr.a'")
    code, out = vote(open_home, "dr.a", "CLOSED")
    assert code == 1 and "dr.a's printed name in the user store differ" in out

    code, out = tract(open_home, "users", "record", "nobody")
    assert code == 1 and "no user 'nobody'" in out
    code, out = tract(open_home, "users", "record")
    assert code == 0, out
    assert "was: dr.a's printed name in the user store differs" in out and "recorded dr.a" in out
    code, out = tract(open_home, "users", "record")
    assert code == 0 and "every account is recorded as the user store holds it" in out
    code, out = vote(open_home, "dr.a", "CLOSED")
    assert code == 0 and "signed: Dr A. Able (dr.a)" in out
    _, out = tract(open_home, "audit", "--study", STUDY, "--json")
    recorded = [r for r in json.loads(out) if r["action"] == "USER_RECORD ALLOWED"]
    assert len(recorded) == 1 and recorded[0]["who"].startswith("cli:")
    assert recorded[0]["why"] == "recorded as the user store holds them: dr.a"
    # every record of the account, however it was written, is in the trail with who wrote it
    accounts = [r for r in json.loads(out) if r["kind"] == "account"]
    assert [r["action"] for r in accounts] == ["ADD", "PASSWORD", "RECORD"]
    assert accounts[-1]["who"].startswith("cli:") and accounts[-1]["what"] == "dr.a"
    assert accounts[-1]["new_value"].startswith("committee, signs as Dr A. Able, password ")
    code, out = tract(open_home, "verify")
    assert code == 0 and "accounts: 1 in the user store, each as the log records it" in out


def test_every_user_command_records_the_account_it_changes(open_home: Path) -> None:
    add_user(open_home, "dr.a", "committee", "Dr Alice Able")
    assert tract(open_home, "users", "set-name", "dr.a", "--full-name", "Dr Alice B. Able")[0] == 0
    code, _ = tract(
        open_home, "users", "passwd", "dr.a", "--password-stdin", stdin="a brand new passphrase\n"
    )
    assert code == 0
    assert tract(open_home, "users", "remove", "dr.a")[0] == 0
    records = Platform.embedded(open_home).records("account", "*").collect()
    # add_user: added, then the member's own password (by user:dr.a)
    assert records["action"].to_list() == ["ADD", "PASSWORD", "NAME", "PASSWORD", "REMOVE"]
    assert records["full_name"].to_list()[1:3] == ["Dr Alice Able", "Dr Alice B. Able"]
    credentials = records["credential"].to_list()
    assert credentials[1] == credentials[2] != credentials[3] == credentials[4]
    assert records["active"].to_list() == [True, True, True, True, False]
    assert records["temporary"].to_list() == [True, False, False, True, True]
    assert [by.split(":")[0] for by in records["by"]] == ["cli", "user", "cli", "cli", "cli"]
    assert tract(open_home, "verify")[0] == 0
    code, out = vote(open_home, "dr.a", "CLOSED")
    assert code == 1 and "signature refused" in out


def test_a_chair_flag_set_in_the_user_store_assigns_nothing(open_home: Path) -> None:
    """The chair assigns conflicts to members; the flag is in the user store's file, so it is
    recorded with the account: set by hand there, it makes the account differ from the log
    (its signatures refused, its sessions signed out, `tract verify` naming it)."""
    add_user(open_home, "dr.a", "committee", "Dr Alice Able")
    add_user(open_home, "dr.b", "committee", "Dr Bruno Baker")
    edit_store(open_home, "INSERT INTO chairs VALUES ('dr.b', '2026-01-01T00:00:00Z')")
    code, out = vote(open_home, "dr.b", "CLOSED")
    assert code == 1 and "dr.b's chair flag in the user store differs from the log's record" in out
    code, out = tract(open_home, "verify")
    assert code == 1 and "dr.b's chair flag in the user store differs" in out

    edit_store(open_home, "DELETE FROM chairs")
    code, out = tract(open_home, "users", "chair", "dr.a")  # an administrator, in the open
    assert code == 0 and "dr.a now chairs the committee" in out
    records = Platform.embedded(open_home).records("account", "*").collect()
    chaired = records.filter(records["action"] == "CHAIR").row(-1, named=True)
    assert (chaired["username"], chaired["chair"], chaired["by"][:4]) == ("dr.a", True, "cli:")
    assert tract(open_home, "verify")[0] == 0
    code, out = vote(open_home, "dr.a", "CLOSED")
    assert code == 0, out
    code, out = tract(open_home, "users", "chair", "dr.a", "--off")
    assert code == 0 and tract(open_home, "verify")[0] == 0
    last = Platform.embedded(open_home).records("account", "*").collect().row(-1, named=True)
    assert (last["action"], last["chair"]) == ("CHAIR", False)
    _, out = tract(open_home, "audit", "--study", STUDY, "--json")
    trail = [r["new_value"] for r in json.loads(out) if r["action"] == "CHAIR"]
    assert [value.endswith(", chairs the committee") for value in trail] == [True, False]
