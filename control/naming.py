"""Charger names: what a valid name is, and telling a duplicate apart. Pure.

Two chargers at one location with the same name are a trap (which "Bay 1" did I just stop?), so
a rename that collides with another charger of the same site is refused with a suggestion. Names
compare case- and whitespace-insensitively: "bay  1" is "Bay 1".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

MAX_NAME_LENGTH: Final = 60


@dataclass(frozen=True, slots=True)
class NameVerdict:
    ok: bool
    name: str            # the cleaned name (single spaces, trimmed)
    message: str         # plain English: why it was refused, or what will be saved
    suggestion: str | None = None


def clean(name: str) -> str:
    return " ".join(name.split())


def _key(name: str) -> str:
    return clean(name).casefold()


def suggest(name: str, taken: Iterable[str]) -> str:
    """The first of "Name (2)", "Name (3)", ... that nobody at the location uses."""
    used = {_key(t) for t in taken}
    base = clean(name)
    n = 2
    while _key(f"{base} ({n})") in used:
        n += 1
    return f"{base} ({n})"


def check_name(name: str, *, others: Iterable[str], location: str) -> NameVerdict:
    """May a charger be called ``name``, given the names of the *other* chargers at its location?"""
    cleaned = clean(name)
    if not cleaned:
        return NameVerdict(False, cleaned, "A charger needs a name.")
    if len(cleaned) > MAX_NAME_LENGTH:
        return NameVerdict(False, cleaned, f"Keep the name under {MAX_NAME_LENGTH} characters "
                                           f"({len(cleaned)} now).")
    other_names = list(others)
    if _key(cleaned) in {_key(o) for o in other_names}:
        alt = suggest(cleaned, other_names)
        return NameVerdict(False, cleaned, f"{cleaned} already exists at {location}: choose a different name, "
                                           f"e.g. '{alt}'.", alt)
    return NameVerdict(True, cleaned, f"The charger will be called {cleaned}.")
