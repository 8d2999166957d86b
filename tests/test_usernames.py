"""One normaliser for people's names (issue 9, item 9: `dr.a,DR.A` counted as two people in one
command and one in another; `dr.a<U+200B>` and a Cyrillic look-alike passed both)."""

from __future__ import annotations

import pytest

from services.usernames import (
    InvalidNameError,
    distinct_people,
    normalise_printed_name,
    normalise_username,
    same_printed_name,
)


@pytest.mark.parametrize("name", ["dr.a", "DR.A", " Dr.A ", "\uff24\uff32.\uff41"])
def test_one_person_however_typed(name: str) -> None:
    assert normalise_username(name) == "dr.a"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("dr.a\u200b", "U\\+200B"),  # zero-width space
        ("dr.\u200da", "U\\+200D"),  # zero-width joiner
        ("\u202edr.a", "U\\+202E"),  # right-to-left override
        ("dr.a\x00", "U\\+0000"),
        ("dr.\u0430", "non-ASCII"),  # Cyrillic a
        ("d\u0433.a", "non-ASCII"),  # Cyrillic ghe
        ("=1+1", "2-64 lower-case"),
        ("<b>x</b>", "2-64 lower-case"),
        ("a", "2-64 lower-case"),
        ("", "2-64 lower-case"),
    ],
)
def test_names_that_only_look_like_someone_are_refused(name: str, why: str) -> None:
    with pytest.raises(InvalidNameError, match=why):
        normalise_username(name)


def test_distinct_people_counts_each_person_once() -> None:
    assert distinct_people(["dr.a", "DR.A", "dr.b"]) == ["dr.a", "dr.b"]
    with pytest.raises(InvalidNameError):
        distinct_people(["dr.a", "dr.a\u200b"])


def test_printed_names() -> None:
    assert normalise_printed_name("  Dr   Zoë  Ångström ") == "Dr Zoë Ångström"
    assert same_printed_name("Dr Anna Adams", "dr  anna ADAMS")
    with pytest.raises(InvalidNameError, match="invisible"):
        normalise_printed_name("Dr Anna\u200b Adams")
    with pytest.raises(InvalidNameError, match="2-128"):
        normalise_printed_name("x")
