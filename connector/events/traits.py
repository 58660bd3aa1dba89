"""Reading Segment traits as Segment's facade library does: key lookup, value types, names, phone.

Pure functions over a traits mapping. The rules cite ``segmentio/facade`` v3.4.10
(``lib/facade.js``, ``lib/identify.js``) and ``segmentio/obj-case`` 0.2.1, the key matcher the
facade uses; see docs/event-contract.md section 2.3.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

# obj-case's defaultNormalize: drop everything but [A-Za-z0-9.] and lower-case, so `firstName`,
# `first_name`, `FirstName` and `First Name` are one key (segmentio/obj-case index.js).
_NOT_KEY_CHARS = re.compile(r"[^a-zA-Z0-9.]+")
# facade lib/is-email.js: the userId stands in for a missing email when it looks like one.
_EMAIL = re.compile(r".+@.+\..+", re.DOTALL)
# Integral floats below 2**53 are exact, so 80331.0 is the integer 80331 (a ZIP sent as a float).
_EXACT_FLOAT_LIMIT = 2.0**53


class WrongType(Exception):  # a signal between two functions of this room, not an error
    """A contact value that is a boolean, a list or an object: it is dropped, never the letter."""


@dataclass
class Dropped:
    """Contact fields dropped for their type: the Inkit field (a closed set) and the trait path."""

    fields: list[tuple[str, str]] = field(default_factory=list)

    def add(self, inkit_field: str, trait_path: str) -> None:
        self.fields.append((inkit_field, trait_path))


@lru_cache(maxsize=4096)  # trait names repeat from event to event; the regex is the cost
def normalize_key(key: str) -> str:
    """obj-case's key normalisation (``A_b.C d`` -> ``ab.cd``)."""
    return _NOT_KEY_CHARS.sub("", key).lower()


class Keyed(Mapping[str, Any]):
    """A read-only view of one traits object with obj-case lookup by ``find``.

    The index (normalised name -> first key with a value, in the object's order) is built once,
    on the first ``find``: one pass over the keys instead of one per looked-up name.
    """

    __slots__ = ("_index", "_source")

    def __init__(self, source: Mapping[str, Any]) -> None:
        self._source = source
        self._index: dict[str, str] | None = None

    def __getitem__(self, key: str) -> Any:
        return self._source[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._source)

    def __len__(self) -> int:
        return len(self._source)

    def __contains__(self, key: object) -> bool:
        return key in self._source

    def get(self, key: str, default: Any = None) -> Any:
        # Mapping.get would raise and catch a KeyError for every absent key: slow on this path.
        return self._source.get(key, default)

    def find(self, name: str) -> tuple[str, Any] | None:
        """The first key obj-case matches to ``name``, with its value; None when absent.

        Null and blank values count as absent and the search goes on (obj-case stops at the
        first match, null or not; the connector has always treated empty as absent).
        """
        if self._index is None:
            # reversed: the first key of each normalised name is the one that stays
            self._index = {normalize_key(key): key for key in reversed(list(self._source))}
        wanted = normalize_key(name)
        found = self._index.get(wanted)
        if found is None:
            return None
        if _blank(self._source[found]):  # rare: a later spelling may hold the value
            return next(
                (
                    (k, v)
                    for k, v in self._source.items()
                    if not _blank(v) and normalize_key(k) == wanted
                ),
                None,
            )
        return found, self._source[found]


def lookup(source: Mapping[str, Any], name: str) -> tuple[str, Any] | None:
    """``Keyed.find`` on any mapping (wrap a mapping in ``Keyed`` once to look up many names)."""
    keyed = source if isinstance(source, Keyed) else Keyed(source)
    return keyed.find(name)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def contact_text(value: Any) -> str | None:
    """A contact value as Inkit's text: NFC, trimmed; numbers as text; empty -> None.

    Raises ``WrongType`` for booleans, lists and objects. NFC first, so a length check counts
    what a reader sees ("é" as one character, not "e" + a combining accent).
    """
    if value is None:
        return None
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value).strip() or None
    if isinstance(value, bool):
        raise WrongType
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < _EXACT_FLOAT_LIMIT:
            return str(int(value))  # 80331.0 -> "80331", never "80331.0" on an envelope
        return json.dumps(value)
    raise WrongType


def read_text(
    source: Mapping[str, Any], name: str, inkit_field: str, path: str, dropped: Dropped
) -> str | None:
    """``contact_text`` of the obj-case match of ``name``; a wrong type is recorded and dropped."""
    found = lookup(source, name)
    if found is None:
        return None
    key, value = found
    try:
        return contact_text(value)
    except WrongType:
        dropped.add(inkit_field, f"{path}{key}")
        return None


def exact_text(
    source: Mapping[str, Any], key: str, inkit_field: str, path: str, dropped: Dropped
) -> str | None:
    """Like ``read_text`` for one exact key (Inkit's own snake_case fields)."""
    value = source.get(key)
    try:
        return contact_text(value)
    except WrongType:
        dropped.add(inkit_field, f"{path}{key}")
        return None


def names(traits: Mapping[str, Any], dropped: Dropped) -> dict[str, str]:
    """``first_name`` and ``last_name``, each on its own (facade ``firstName()``/``lastName()``).

    Each is the Inkit trait, else the reserved ``firstName``/``lastName``, else split out of
    ``name``: the first word, and the rest after it. So ``firstName`` plus ``name`` gives both.
    """
    out: dict[str, str] = {}
    full = read_text(traits, "name", "name", "", dropped)
    # "Mary Ann Smith" -> "Mary" + "Ann Smith"; "Cher" -> "Cher" and no last name.
    first_word, *rest = (full or "").split(None, 1) or [""]
    for inkit_field, reserved, from_name in (
        ("first_name", "firstName", first_word),
        ("last_name", "lastName", rest[0] if rest else ""),
    ):
        value = exact_text(traits, inkit_field, inkit_field, "", dropped)
        if value is None:
            value = read_text(traits, reserved, inkit_field, "", dropped)
        if value is None and from_name:
            value = from_name
        if value is not None:
            out[inkit_field] = value
    return out


def email(traits: Mapping[str, Any], user_id: str | None, dropped: Dropped) -> str | None:
    """``traits.email``, else the userId when it looks like an email (facade ``email()``)."""
    value = read_text(traits, "email", "email", "", dropped)
    if value is None and user_id is not None and _EMAIL.fullmatch(user_id.strip()):
        value = unicodedata.normalize("NFC", user_id.strip())
    return value


def phone(traits: Mapping[str, Any], dropped: Dropped) -> str | None:
    """``traits.phone``, else the first of ``traits.phones`` (facade ``Facade.one``)."""
    value = read_text(traits, "phone", "phone", "", dropped)
    if value is not None:
        return value
    found = lookup(traits, "phones")
    if found is None or not isinstance(found[1], list) or not found[1]:
        return None
    try:
        return contact_text(found[1][0])
    except WrongType:
        dropped.add("phone", f"{found[0]}[0]")
        return None


def company(traits: Mapping[str, Any], dropped: Dropped) -> tuple[str | None, dict[str, Any]]:
    """Inkit's ``company`` text and the custom fields of a reserved company object.

    A string is the company. An object gives ``company.name`` (facade ``companyName()``), and
    every other key travels as ``company_<key>`` so nothing of it is lost (``plan``, ``id``...).
    """
    value = traits.get("company")
    if not isinstance(value, dict):
        return exact_text(traits, "company", "company", "", dropped), {}
    keyed = Keyed(value)
    name = read_text(keyed, "name", "company", "company.", dropped)
    name_key = (keyed.find("name") or ("", None))[0]
    extra = {f"company_{key}": item for key, item in value.items() if key != name_key}
    return name, extra
