"""Who a lock the DAG takes names: the Airflow user who triggered the run, as check_request
reads it from the run (services.tasks.lock_requester; the DAG runs are in
test_database_lock.py and test_rest_api.py)."""

from __future__ import annotations

import pytest

from services.lock.errors import LockRefusedError
from services.tasks import lock_requester


@pytest.mark.parametrize(
    ("user", "conf", "named"),
    [
        ("dm.jones", None, "dm.jones"),
        ("DM.Jones", {}, "dm.jones"),  # one form of a user name, as everywhere in tract
        ("dm.jones", {"requested_by": ""}, "dm.jones"),
        ("dm.jones", {"requested_by": "DM.JONES"}, "dm.jones"),  # their own name: accepted
    ],
)
def test_a_manual_run_names_the_user_who_triggered_it(
    user: str, conf: dict[str, str] | None, named: str
) -> None:
    assert lock_requester(user, "manual", conf) == named


@pytest.mark.parametrize(
    "run_type", ["scheduled", "backfill", "asset_triggered", "operator_triggered"]
)
def test_a_run_no_person_triggered_is_refused(run_type: str) -> None:
    with pytest.raises(LockRefusedError, match=rf"this is a {run_type} run.*trigger it as a user"):
        lock_requester("dm.jones", run_type)


@pytest.mark.parametrize("user", [None, "", "dag_test", "Anonymous"])
def test_a_run_without_a_signed_in_user_is_refused(user: str | None) -> None:
    with pytest.raises(
        LockRefusedError, match=r"no triggering user.*the Airflow UI or the REST API"
    ):
        lock_requester(user, "manual", {"requested_by": "dm.jones"})


@pytest.mark.parametrize(
    "typed", ["dm.smith", "dm.jones\u200b", "dm.j\u043enes", 7]
)  # U+043E: a Cyrillic o
def test_a_conf_naming_anyone_else_is_refused(typed: object) -> None:
    with pytest.raises(LockRefusedError, match=r"but dm\.jones triggered it"):
        lock_requester("dm.jones", "manual", {"requested_by": typed})


def test_an_airflow_user_name_that_is_no_user_name_is_refused() -> None:
    with pytest.raises(LockRefusedError, match="cannot name a lock's requester"):
        lock_requester("dana@example.org", "manual")
