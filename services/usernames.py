"""User names and printed names: one normaliser, so that every comparison of people (who signs,
who requested, who approved, who is distinct from whom) means the same thing everywhere.

A user name is an identity: ``DR.A``, ``dr.a`` and its full-width form are one person
(Unicode NFKC, then case-folded), and anything that only *looks* like a name is refused rather
than guessed at: invisible and format characters (Unicode category Cf, e.g. U+200B ZERO WIDTH
SPACE), control characters, and any non-ASCII letter left after NFKC (``dr.a`` spelt with a
Cyrillic letter a would otherwise be a second person who reads as the first). What remains must match
:data:`USERNAME`, the same pattern ``tract users add`` has always required.

A printed name (``Dr Anna Adams``) is what a signature shows; it is for people, so any script
is allowed, but it is NFC-normalised, its spaces collapsed and invisible characters refused.
"""

from __future__ import annotations

import re
import unicodedata

from services.errors import TractError

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
PRINTED_NAME_MAX = 128
_INVISIBLE = frozenset({"Cf", "Cc", "Co", "Cs", "Cn", "Zl", "Zp"})


class InvalidNameError(TractError):
    """A user name or printed name that cannot name a person unambiguously."""


def _refuse_invisible(text: str, what: str) -> None:
    for char in text:
        if unicodedata.category(char) in _INVISIBLE:
            raise InvalidNameError(
                f"{what} {text!r} contains the invisible or control character "
                f"U+{ord(char):04X} ({unicodedata.name(char, 'unnamed')}); type the name again"
            )


def normalise_username(name: str) -> str:
    """The one form of a user name every comparison uses, or :class:`InvalidNameError` saying why
    the name cannot be one (see the module docstring)."""
    if not isinstance(name, str):
        raise InvalidNameError(f"a user name must be text, got {type(name).__name__}")
    _refuse_invisible(name, "user name")
    folded = unicodedata.normalize("NFKC", name).strip().casefold()
    if not folded.isascii():
        odd = next(c for c in folded if not c.isascii())
        raise InvalidNameError(
            f"user name {name!r} contains the non-ASCII character {odd!r} "
            f"(U+{ord(odd):04X} {unicodedata.name(odd, 'unnamed')}); user names are ASCII "
            "letters, digits, '.', '_' or '-', so a look-alike cannot pass for someone else"
        )
    if not USERNAME.match(folded):
        raise InvalidNameError(
            f"user name {name!r} must be 2-64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return folded


def distinct_people(names: list[str]) -> list[str]:
    """``names`` normalised, in order, each person once (raises on any name that is not one)."""
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(normalise_username(name), None)
    return list(seen)


def normalise_printed_name(text: str) -> str:
    """A printed (full) name as signatures show it: NFC, single spaces, 2-128 characters."""
    _refuse_invisible(text, "printed name")
    cleaned = " ".join(unicodedata.normalize("NFC", text).split())
    if len(cleaned) < 2 or len(cleaned) > PRINTED_NAME_MAX:
        raise InvalidNameError(
            f"a printed name must be 2-{PRINTED_NAME_MAX} characters (e.g. 'Dr Anna Adams'), "
            f"got {cleaned!r}"
        )
    return cleaned


def same_printed_name(a: str, b: str) -> bool:
    """Whether two printed names would read as the same person on a signature."""
    return _folded(a) == _folded(b)


def _folded(text: str) -> str:
    return unicodedata.normalize("NFKC", " ".join(text.split())).casefold()
