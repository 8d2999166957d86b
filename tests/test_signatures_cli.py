"""Issue 9, items 1, 2 and 9 replayed through the `tract` command: nobody decides alone or for
anyone else, an unlock needs two other people's signatures, names cannot be doubled or
disguised, and raising a soft lock to hard is a signed step."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from services.cli import cli
from services.errors import TractError
from services.lock.lock import take_by
from services.platform import Platform
from tests.store.trials import STUDY

PASSWORD = "correct horse battery\n"
QUERIES_REASON = ("--open-queries-reason", "sites answer later")  # the demo has open queries
LOCK = ("lock", *QUERIES_REASON, "--as", "dm.jones", "--password-stdin")  # stdin: PASSWORD
READER_DISAGREEMENT_S05 = "C-8e7c0d8f4e05"


def tract(home: Path, *args: str, stdin: str | None = None) -> tuple[int, str]:
    """Run a command as `tract` does (a refusal is exit 1 with its message)."""
    result = CliRunner().invoke(cli, ["--home", str(home), *args], input=stdin)
    if isinstance(result.exception, TractError):
        return 1, result.output + str(result.exception)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


TEMPORARY = "an administrator's password"


def add_user(home: Path, name: str, role: str, printed: str) -> None:
    """`tract users add` (with an administrator's password), then the person's own password
    (`tract password`): what every signer does before their first signature."""
    args = ("users", "add", name, "--role", role, "--full-name", printed, "--password-stdin")
    code, out = tract(home, *args, stdin=TEMPORARY)
    assert code == 0, out
    changed = ("password", "--as", name, "--password-stdin")
    code, out = tract(home, *changed, stdin=f"{TEMPORARY}\n{PASSWORD}\n")
    assert code == 0, out


def vote(
    home: Path, signer: str, status: str, *extra: str, stdin_password: str = PASSWORD
) -> tuple[int, str]:
    return tract(
        home,
        "vote",
        READER_DISAGREEMENT_S05,
        "--status",
        status,
        "--rationale",
        f"{signer} reviewed the reads",
        "--as",
        signer,
        "--password-stdin",
        *extra,
        stdin=stdin_password,
    )


def status_of(home: Path, conflict_id: str) -> str:
    _, out = tract(home, "conflicts", "--all", "--json")
    return next(c["status"] for c in json.loads(out) if c["conflict_id"] == conflict_id)


def test_a_member_cannot_decide_alone_or_for_anyone_else(open_home: Path) -> None:
    """Item 1: a decision "in force" named ghost.one, =1+1 and an HTML string as deciders."""
    code, out = tract(
        open_home,
        "decide",
        READER_DISAGREEMENT_S05,
        "--status",
        "CLOSED",
        "--rationale",
        "x",
        "--members",
        "ghost.one,=1+1,<b>x</b>",
    )
    assert code == 1 and "`tract decide` is gone" in out
    assert Platform.embedded(open_home).records("committee_decision", STUDY).collect().is_empty()
    add_user(open_home, "dr.a", "committee", "Dr Alice Able")
    add_user(open_home, "dr.b", "committee", "Dr Bruno Baker")
    for name in ("ghost.one", "=1+1", "<img src=x onerror=alert(1)>"):
        code, out = vote(open_home, name, "CLOSED")
        assert code == 1 and "signature refused" in out, name
    _, out = tract(open_home, "audit", "--study", STUDY, "--json")
    refused = [r for r in json.loads(out) if r["action"] == "VOTE REFUSED"]
    assert [r["who"].split(" ")[0] for r in refused] == ["ghost.one", "=1+1", "<img"]
    assert all("signature refused" in r["why"] for r in refused)
    code, out = tract(
        open_home, "vote", READER_DISAGREEMENT_S05, "--status", "CLOSED", "--rationale", "x",
        "--as", "dr.a", "--password", "correct horse battery",
    )  # fmt: skip
    assert code == 2 and "--password is not accepted" in out
    assert Platform.embedded(open_home).votes(STUDY).is_empty()

    code, out = vote(open_home, "dr.a", "CLOSED")
    assert code == 0, out
    assert "signed: Dr Alice Able (dr.a), " in out and ": decided CLOSED" in out
    assert "1 of 2 signatures for CLOSED: waiting for 1 more concordant vote" in out
    assert status_of(open_home, READER_DISAGREEMENT_S05) == "OPEN"
    # Item 1's second half: contradictory votes within a minute: no decision, side by side
    code, out = vote(open_home, "dr.b", "NOT_CLOSED")
    assert code == 0 and "discordant votes" in out
    assert status_of(open_home, READER_DISAGREEMENT_S05) == "OPEN"
    code, out = tract(open_home, "votes", READER_DISAGREEMENT_S05)
    assert "Dr Bruno Baker (dr.b)" in out and "Dr Alice Able (dr.a)" in out
    assert "discordant votes" in out
    # Item 9: another spelling of dr.a is dr.a; invisible and look-alike names are refused
    for disguised in ("dr.b\u200b", "dr.\u0430"):
        code, out = vote(open_home, disguised, "NOT_CLOSED")
        assert code == 1 and "signature refused" in out
    code, out = vote(open_home, "DR.A", "NOT_CLOSED")
    assert code == 0 and "is now in force: NOT_CLOSED, signed by:" in out
    assert "Dr Alice Able (dr.a)" in out and "Dr Bruno Baker (dr.b)" in out
    assert status_of(open_home, READER_DISAGREEMENT_S05) == "DECIDED"
    code, out = tract(open_home, "audit", "--study", STUDY, "--json")
    trail = pl.DataFrame(json.loads(out), infer_schema_length=None)
    votes = trail.filter(pl.col("kind") == "committee_vote")
    assert votes["who"].to_list() == [
        "Dr Alice Able (dr.a)",
        "Dr Bruno Baker (dr.b)",
        "Dr Alice Able (dr.a)",
    ]


def test_an_unlock_needs_two_other_signatures(decided_home: Path) -> None:
    """Item 2: `tract unlock --by dm.jones --approvers "dm.jones<U+200B>,ghost.approver"`
    unlocked a hard lock (exit 0)."""
    args = ("--study", STUDY, "--lock-id", "PRIMARY", "--reason", "late MRI reads")
    for name, role, printed in (
        ("dm.jones", "data_manager", "Dana Jones"),
        ("qa.lee", "approver", "Quinn Lee"),
        ("root.admin", "admin", "Ada Admin"),
        ("dr.cole", "committee", "Dr Cara Cole"),
    ):
        add_user(decided_home, name, role, printed)
    code, out = tract(decided_home, *LOCK, *args, "--level", "hard", stdin=PASSWORD)
    assert code == 0, out
    code, out = tract(
        decided_home, "unlock", *args, "--by", "dm.jones", "--approvers",
        "dm.jones\u200b,ghost.approver",
    )  # fmt: skip
    assert code == 2 and "tract unlock request" in out
    assert Platform.embedded(decided_home).lock_state(STUDY, "PRIMARY") == "LOCK"
    code, out = tract(decided_home, "unlock", "request", *args, "--password-stdin", stdin=PASSWORD)
    assert code == 2 and "--as" in out  # nobody requests anonymously (was: recorded as "cli")
    code, out = tract(
        decided_home, "unlock", "request", *args, "--as", "dm.jones", "--password-stdin",
        stdin=PASSWORD,
    )  # fmt: skip
    assert code == 0 and "signed: Dana Jones (dm.jones)" in out, out
    request_id = json.loads(tract(decided_home, "unlock", "list", "--json")[1])[0]["request_id"]

    def approve(name: str) -> tuple[int, str]:
        return tract(
            decided_home, "unlock", "approve", request_id, "--as", name, "--password-stdin",
            stdin=PASSWORD,
        )  # fmt: skip

    for name, message in (
        ("dm.jones", "may not sign an unlock approval"),
        ("dm.jones\u200b", "invisible or control character"),
        ("ghost.approver", "unknown user or wrong password"),
        ("dr.cole", "may not sign an unlock approval"),  # a committee member
    ):
        code, out = approve(name)
        assert code == 1 and message in out, (name, out)
    _, out = tract(decided_home, "audit", "--study", STUDY, "--json")
    refused = [r for r in json.loads(out) if r["action"] == "UNLOCK_APPROVE REFUSED"]
    assert [r["who"] for r in refused] == [
        "dm.jones",
        "dm.jones\u200b",
        "ghost.approver",
        "dr.cole",
    ]
    assert "correct horse" not in out
    code, out = approve("qa.lee")
    assert code == 0 and "1 of 2 approvals; waiting for 1 more" in out
    assert Platform.embedded(decided_home).lock_state(STUDY, "PRIMARY") == "LOCK"
    code, out = approve("QA.LEE")
    assert code == 1 and "already approved" in out
    code, out = approve("root.admin")
    assert code == 0 and "unlocked: DEMO PRIMARY" in out
    assert Platform.embedded(decided_home).lock_state(STUDY, "PRIMARY") == "UNLOCK"
    code, out = tract(decided_home, "unlock", "list")
    assert "Quinn Lee (qa.lee)" in out and "Ada Admin (root.admin)" in out and "unlocked" in out


def test_raising_a_soft_lock_to_hard_is_a_signed_step(decided_home: Path) -> None:
    """Item 9 (part): hard on a soft id said "already locked"; the pointer it gives now works."""
    args = ("--study", STUDY, "--lock-id", "PRIMARY", "--reason", "primary analysis")
    add_user(decided_home, "dm.jones", "data_manager", "Dana Jones")
    assert tract(decided_home, *LOCK, *args, stdin=PASSWORD)[0] == 0
    code, out = tract(decided_home, *LOCK, *args, "--level", "hard", stdin=PASSWORD)
    assert code == 1 and "tract lock-raise --study DEMO --lock-id PRIMARY" in out
    raise_args = ("lock-raise", *args, "--password-stdin")
    code, out = tract(
        decided_home, *raise_args, "--as", "dr.sato", stdin="demo-committee-password\n"
    )
    assert code == 1 and "may not sign raising a lock to hard" in out
    _, out = tract(decided_home, "audit", "--study", STUDY, "--json")
    refused = [r for r in json.loads(out) if r["action"] == "LOCK_RAISE REFUSED"]
    assert len(refused) == 1 and "may not sign raising" in refused[0]["why"]
    assert refused[0]["who"] == "dr.sato" and "demo-committee-password" not in out
    code, out = tract(decided_home, *raise_args, "--as", "dm.jones", stdin=PASSWORD)
    assert code == 0 and "signed: Dana Jones (dm.jones)" in out and "raised to hard" in out
    hard = json.loads((decided_home / "objects/raised/DEMO/PRIMARY/manifest.json").read_text())
    soft = (decided_home / "objects/locks/DEMO/PRIMARY/manifest.json").read_text()
    assert hard["level"] == "hard" and hard["retain_until"]
    assert hard["files"] == json.loads(soft)["files"]  # the same bytes, now retained
    assert hard["raised"]["signer"] == "dm.jones"
    code, out = tract(decided_home, *raise_args, "--as", "dm.jones", stdin=PASSWORD)
    assert code == 0 and "already raised" in out
    code, out = tract(decided_home, *LOCK, *args, "--level", "hard", stdin=PASSWORD)
    assert code == 0 and "already locked" in out  # a hard request now finds a hard lock
    code, out = tract(decided_home, "audit", "--study", STUDY, "--json")
    actions = [r["action"] for r in json.loads(out) if r["kind"] == "lock"]
    assert actions == ["LOCK", "RAISE"]
    # One lock in force: another id is refused until the signed unlock
    code, out = tract(decided_home, "lock", "--study", STUDY, "--lock-id", "SECOND",
                      "--reason", "again", "--as", "dm.jones", "--password-stdin",
                      stdin=PASSWORD)  # fmt: skip
    assert code == 1 and "tract unlock request" in out


LOCK_PRIMARY = ("--study", STUDY, "--lock-id", "PRIMARY", "--reason", "primary analysis")


def test_a_lock_is_no_longer_taken_under_a_typed_name(decided_home: Path) -> None:
    """Found as an insider: `tract lock --by ANYNAME` froze the database under a name nobody
    had, with no password; the option now says what to use instead."""
    code, out = tract(decided_home, "lock", *QUERIES_REASON, *LOCK_PRIMARY, "--by", "ghost")
    assert code == 2 and "no longer named by --by" in out and "--as NAME" in out
    assert Platform.embedded(decided_home).records("lock", STUDY).collect().is_empty()
    assert not (decided_home / "objects" / "locks").exists()


def test_a_lock_signed_by_nobody_the_wrong_role_or_password_locks_nothing(
    decided_home: Path,
) -> None:
    add_user(decided_home, "dm.jones", "data_manager", "Dana Jones")
    for who, password, message in (
        ("ghost", PASSWORD, "unknown user or wrong password"),  # nobody
        ("dr.sato", "demo-committee-password\n", "may not sign a database lock"),  # committee
        ("dm.jones", "a guess\n", "unknown user or wrong password"),  # not their password
    ):
        code, out = tract(
            decided_home, "lock", *QUERIES_REASON, *LOCK_PRIMARY, "--as", who, "--password-stdin",
            stdin=password,
        )  # fmt: skip
        assert code == 1 and "signature refused" in out and message in out, (who, out)
    platform = Platform.embedded(decided_home)
    assert platform.records("lock", STUDY).collect().is_empty()  # not even a claim
    assert not (decided_home / "objects" / "locks").exists()
    _, out = tract(decided_home, "audit", "--study", STUDY, "--json")
    refused = [r for r in json.loads(out) if r["action"] == "LOCK REFUSED"]
    assert [r["who"] for r in refused] == ["ghost", "dr.sato", "dm.jones"]
    assert all("signature refused" in r["why"] for r in refused)
    assert "a guess" not in out and "correct horse" not in out and "demo-committee" not in out


def test_the_lock_state_is_checked_before_a_password_is_asked(decided_home: Path) -> None:
    """Nothing to sign, no password asked: the site queries refuse first (stdin is empty)."""
    add_user(decided_home, "dm.jones", "data_manager", "Dana Jones")
    code, out = tract(decided_home, "lock", *LOCK_PRIMARY, "--as", "dm.jones", "--password-stdin")
    assert code == 1 and "site queries are not closed" in out and "password" not in out
    code, out = tract(
        decided_home, "lock", *QUERIES_REASON, *LOCK_PRIMARY[:1], "EXO9", *LOCK_PRIMARY[2:],
        "--as", "dm.jones", "--password-stdin",
    )  # fmt: skip
    assert code == 1 and "EXO9" in out and "password" not in out
    _, out = tract(decided_home, "audit", "--study", STUDY, "--json")
    assert not [r for r in json.loads(out) if r["action"] == "LOCK REFUSED"]


def test_a_lock_carries_the_signature_of_the_data_manager_who_took_it(
    decided_home: Path,
) -> None:
    add_user(decided_home, "dm.jones", "data_manager", "Dana Jones")
    code, out = tract(
        decided_home, "lock", *QUERIES_REASON, *LOCK_PRIMARY, "--as", "DM.Jones",
        "--password-stdin", stdin=PASSWORD,
    )  # fmt: skip
    meaning = "locked DEMO PRIMARY (soft lock): primary analysis"
    assert code == 0 and "signed: Dana Jones (dm.jones), " in out and meaning in out, out
    path = decided_home / "objects" / "locks" / STUDY / "PRIMARY" / "manifest.json"
    manifest = json.loads(path.read_text())
    signature = manifest["signature"]
    assert manifest["requested_by"] == signature["signer"] == "dm.jones"
    assert (signature["printed_name"], signature["role"]) == ("Dana Jones", "data_manager")
    assert (signature["meaning"], signature["signed_via"]) == (meaning, "cli")
    assert signature["authentication"].startswith("password re-entered (cli, OS user ")
    assert signature["signed_at"] <= manifest["locked_at"]
    event = Platform.embedded(decided_home).lock_event(STUDY, "PRIMARY")
    assert event is not None and event["requested_by"] == "dm.jones"
    assert event["manifest_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()  # bound
    _, out = tract(decided_home, "audit", "--study", STUDY, "--json")
    locks = [r for r in json.loads(out) if r["kind"] == "lock"]
    assert [(r["action"], r["who"], r["why"]) for r in locks] == [
        ("LOCK", "dm.jones", "primary analysis")
    ]
    assert locks[0]["at"] == manifest["locked_at"]
    code, out = tract(decided_home, "snapshot", "open", "--study", STUDY, "--lock", "PRIMARY")
    assert code == 0 and "by dm.jones (soft): primary analysis" in out  # shown with its data
    assert "signed: Dana Jones (dm.jones), " in out and meaning in out, out
    code, out = tract(decided_home, *LOCK, *LOCK_PRIMARY)
    assert code == 0 and "already locked" in out and "signed:" not in out  # nothing to sign


def test_a_lock_for_airflow_is_signed_now_and_locks_nothing_yet(decided_home: Path) -> None:
    """`tract lock --for-airflow`: the data manager signs (password re-entered) and the
    database_lock DAG takes the lock later, triggered by them (tests/dags); nobody else's
    password, role or name signs one, and a refusal is in the audit trail."""
    add_user(decided_home, "dm.jones", "data_manager", "Dana Jones")
    code, out = tract(
        decided_home, "lock", *QUERIES_REASON, *LOCK_PRIMARY, "--as", "dr.sato",
        "--password-stdin", "--for-airflow", stdin="demo-committee-password\n",
    )  # fmt: skip
    assert code == 1 and "may not sign a database lock" in out, out
    code, out = tract(
        decided_home, "lock", *QUERIES_REASON, *LOCK_PRIMARY, "--level", "hard",
        "--as", "DM.Jones", "--password-stdin", "--for-airflow", stdin=PASSWORD,
    )  # fmt: skip
    meaning = "locked DEMO PRIMARY (hard lock): primary analysis"
    assert code == 0 and "signed: Dana Jones (dm.jones), " in out and meaning in out, out
    assert "nothing is locked yet" in out and "trigger database_lock" in out
    platform = Platform.embedded(decided_home)
    asked = platform.records("lock_request", STUDY).collect()
    assert asked.select("lock_id", "level", "signer", "printed_name", "meaning").rows() == [
        ("PRIMARY", "hard", "dm.jones", "Dana Jones", meaning)
    ]
    assert f"request_id {asked['request_id'][0]}" in out
    by = take_by(asked["signed_at"][0].strftime("%Y-%m-%dT%H:%M:%SZ"))  # then it expires
    assert f"by {by:%Y-%m-%d %H:%M} UTC (a signed lock not taken by then expires)" in out
    assert platform.records("lock", STUDY).collect().is_empty()  # not even a claim
    assert not (decided_home / "objects" / "locks").exists()
    _, out = tract(decided_home, "audit", "--study", STUDY, "--json")
    trail = json.loads(out)
    assert [r["who"] for r in trail if r["action"] == "LOCK REFUSED"] == ["dr.sato"]
    requested = [r for r in trail if r["kind"] == "lock_request"]
    assert [(r["action"], r["why"]) for r in requested] == [("REQUEST", "primary analysis")]
    assert requested[0]["who"] == "Dana Jones (dm.jones)"
    code, out = tract(
        decided_home, "lock", *QUERIES_REASON, *LOCK_PRIMARY, "--as", "dm.jones",
        "--password-stdin", "--for-airflow", "--validate", stdin=PASSWORD,
    )  # fmt: skip
    assert code == 1 and "the DAG always validates" in out


def test_a_refused_vote_on_several_conflicts_is_recorded_for_each(open_home: Path) -> None:
    """A signature refused at the terminal is in the audit trail as the web page's refusals
    are: one REFUSED event per conflict the vote was for, the password nowhere in it."""
    add_user(open_home, "dr.a", "committee", "Dr Alice Able")
    _, out = tract(open_home, "conflicts", "--json")
    kinds = ("READER_DISAGREEMENT", "CLINICAL_MRI_DISCORDANCE")  # CLOSED is a vote for these
    chosen = [c["conflict_id"] for c in json.loads(out) if c["type"] in kinds]
    assert len(chosen) == 3
    code, out = tract(
        open_home, "vote", *chosen, "--status", "CLOSED", "--rationale", "x", "--as", "dr.a",
        "--password-stdin", stdin="wrong horse battery\n",
    )  # fmt: skip
    assert code == 1 and "signature refused" in out
    _, out = tract(open_home, "audit", "--study", STUDY, "--json")
    refused = [r for r in json.loads(out) if r["action"] == "VOTE REFUSED"]
    assert sorted(r["what"] for r in refused) == sorted(chosen)
    assert all(
        r["subject_id"] and r["tract_id"] for r in refused
    )  # found by subject, as on the web
    assert {r["who"] for r in refused} == {"dr.a"}
    assert "wrong horse" not in out
    assert Platform.embedded(open_home).votes(STUDY).is_empty()


@pytest.mark.parametrize(
    "command",
    [
        ("vote", "C-1", "--status", "CLOSED", "--rationale", "x"),
        ("lock", "--study", STUDY, "--lock-id", "L", "--reason", "x"),
    ],
)
def test_signing_commands_never_take_a_password_from_argv(tmp_path: Path, command: tuple) -> None:
    code, out = tract(tmp_path, *command, "--as", "dr.a", "--password", "pw")
    assert code == 2 and "visible to other local accounts" in out


def test_a_vote_signs_the_evidence_the_log_gives_not_an_edited_state_file(
    open_home: Path,
) -> None:
    """Insider: the conflict's evidence fingerprint and its tract's rule outcome rewritten in
    the state's files (what pages read). A member's signed vote carried those values (its
    decision then never formed: the votes did not match the evidence). The vote now takes the
    conflict and its subject from the log."""
    add_user(open_home, "dr.a", "committee", "Dr Alice Able")
    add_user(open_home, "dr.b", "committee", "Dr Bruno Baker")
    platform = Platform.embedded(open_home)
    honest = platform.outcomes(STUDY).conflicts.filter(
        pl.col("conflict_id") == READER_DISAGREEMENT_S05
    )
    subject, tract_id = honest["subject_id"][0], honest["tract_id"][0]
    rule = platform.outcomes(STUDY, [subject]).tracts.filter(pl.col("tract_id") == tract_id)
    state = open_home / "state" / STUDY
    generation = state / (state / "CURRENT").read_text().strip()
    for bucket in generation.glob("conflicts/*.parquet"):
        frame = pl.read_parquet(bucket)
        frame.with_columns(
            fingerprint=pl.when(pl.col("conflict_id") == READER_DISAGREEMENT_S05)
            .then(pl.lit("forged-fingerprint"))
            .otherwise(pl.col("fingerprint"))
        ).write_parquet(bucket)
    for bucket in generation.glob("tracts/*.parquet"):
        frame = pl.read_parquet(bucket)
        here = (pl.col("subject_id") == subject) & (pl.col("tract_id") == tract_id)
        frame.with_columns(
            rule_outcome=pl.when(here).then(pl.lit("FORGED")).otherwise(pl.col("rule_outcome"))
        ).write_parquet(bucket)

    for member in ("dr.a", "dr.b"):
        code, out = vote(open_home, member, "CLOSED")
        assert code == 0, out
    votes = Platform.embedded(open_home).votes(STUDY)
    assert votes["fingerprint"].to_list() == [honest["fingerprint"][0]] * 2
    assert votes["rule_outcome"].to_list() == [rule["rule_outcome"][0]] * 2
    assert status_of(open_home, READER_DISAGREEMENT_S05) == "DECIDED"


def test_a_password_an_administrator_set_signs_nothing_until_its_owner_changes_it(
    open_home: Path,
) -> None:
    """Found as an insider: the administrator typed every member's password at `tract users
    add` and, with no way for a member to change it, could sign as any of them for ever. Now
    that password is temporary: it signs nothing; its owner chooses their own; a reset makes it
    temporary again; and clearing the flag in the user store's file is caught like any edit."""
    args = ("users", "add", "dr.a", "--role", "committee", "--full-name", "Dr Alice Able")
    code, out = tract(open_home, *args, "--password-stdin", stdin=TEMPORARY)
    assert code == 0 and "this password is temporary" in out
    code, out = vote(open_home, "dr.a", "CLOSED", stdin_password=TEMPORARY)
    assert code == 1 and "password was set by an administrator" in out
    assert "`tract password --as dr.a`" in out
    _, listed = tract(open_home, "users", "list")
    assert "dr.a" in listed and "(temporary password: signs nothing until changed)" in listed

    own = ("password", "--as", "dr.a", "--password-stdin")
    code, out = tract(open_home, *own, stdin=f"a wrong guess here\n{PASSWORD}")
    assert code == 1 and "password not changed: wrong password" in out
    code, out = tract(open_home, *own, stdin=f"{TEMPORARY}\n{TEMPORARY}\n")
    assert code == 1 and "other than the current one" in out
    code, out = tract(open_home, *own, stdin=f"{TEMPORARY}\n{PASSWORD}")
    assert code == 0 and "only you know it now" in out
    code, out = vote(open_home, "dr.a", "CLOSED")
    assert code == 0 and "signed: Dr Alice Able (dr.a)" in out

    code, out = tract(open_home, "users", "passwd", "dr.a", "--password-stdin", stdin=TEMPORARY)
    assert code == 0
    code, out = vote(open_home, "dr.a", "NOT_CLOSED", stdin_password=TEMPORARY)
    assert code == 1 and "password was set by an administrator" in out

    # the administrator clears the flag in the file to sign with the password they typed
    with sqlite3.connect(open_home / "web" / "users.db") as db:
        db.execute("UPDATE users SET temporary = 0 WHERE username = 'dr.a'")
    code, out = vote(open_home, "dr.a", "NOT_CLOSED", stdin_password=TEMPORARY)
    assert code == 1 and "temporary-password flag in the user store differs" in out

    _, out = tract(open_home, "audit", "--study", STUDY, "--json")
    accounts = [r for r in json.loads(out) if r["kind"] == "account" and r["what"] == "dr.a"]
    assert [(r["action"], r["who"].split(":")[0]) for r in accounts] == [
        ("ADD", "cli"),
        ("PASSWORD", "user"),
        ("PASSWORD", "cli"),
    ]
    assert [r["new_value"].endswith("(temporary: set by an administrator)") for r in accounts] == [
        True,
        False,
        True,
    ]
    changes = [r for r in json.loads(out) if r["action"].startswith("PASSWORD_CHANGE")]
    assert [r["action"] for r in changes] == [
        "PASSWORD_CHANGE REFUSED",
        "PASSWORD_CHANGE REFUSED",
        "PASSWORD_CHANGE ALLOWED",
    ]
