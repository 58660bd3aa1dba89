"""A letter's postal address: one source, deterministic normalisation, Inkit's documented rules.

Inkit documents (Postcards and Letters guides, /work/shared/reference/inkit-api.md sections 1.1
and 6): ``address_line_1`` at most 64 characters, a two-letter state code, an ISO 3166-1 alpha-2
country, and a first or last name. Nothing else about an address is documented, so nothing else
dead-letters a letter: what cannot be normalised is forwarded as given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

import pycountry

from connector.events.traits import Dropped, Keyed, exact_text, lookup, read_text

MAX_ADDRESS_LINE_1 = 64

# Inkit's flat address fields (Segment's Inkit page) and, for Segment's reserved `address{}`
# object, the sub-traits that fill them. The facade reads the ZIP from `postalCode`, then `zip`
# (lib/address.js `trait("postalCode", "zip")`); obj-case also matches `postal_code`, `PostalCode`.
INKIT_ADDRESS_FIELDS = (
    "address_line_1",
    "address_line_2",
    "address_city",
    "address_state",
    "address_zip",
    "address_country",
)
_RESERVED_PARTS = (
    ("address_line_1", ("street",)),
    ("address_city", ("city",)),
    ("address_state", ("state",)),
    ("address_zip", ("postalCode", "zip")),
    ("address_country", ("country",)),
)

# USPS codes: 50 states, DC, territories (AS GU MP PR VI UM), freely associated states
# (FM MH PW) and the military "states" (AA AE AP). Not an ISO list, so not from pycountry.
_USPS = (
    "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ "
    "NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC AS GU MP PR VI UM FM MH PW "
    "AA AE AP"
)
US_STATE_CODES = frozenset(_USPS.split(" "))
_TWO_LETTERS = re.compile(r"[A-Za-z]{2}")
# [0-9], not \d: \d also matches non-ASCII digits. ZIP+4 written without its hyphen, or with a
# space, is unambiguous: 902501234 and "90250 1234" are 90250-1234.
_US_ZIP_PLUS_4 = re.compile(r"([0-9]{5})[ -]?([0-9]{4})")


def address_block(traits: Mapping[str, Any], dropped: Dropped) -> dict[str, str]:
    """Inkit's address fields from ONE source, all or nothing; never stitched from two.

    The source is Inkit's flat ``address_*`` traits if any of them has a value (Segment's page:
    the destination's own contract), else Segment's reserved ``address`` object. Fields missing
    from the chosen source stay missing: a city from one place and a street from another would
    make an address that does not exist.
    """
    flat: dict[str, str] = {}
    for name in INKIT_ADDRESS_FIELDS:
        value = exact_text(traits, name, name, "", dropped)
        if value is not None:
            flat[name] = value
    if flat:
        return flat
    found = lookup(traits, "address")
    if found is None or not isinstance(found[1], dict):
        return {}
    reserved: dict[str, str] = {}
    parts = Keyed(found[1])
    for name, keys in _RESERVED_PARTS:
        for key in keys:
            value = read_text(parts, key, name, f"{found[0]}.", dropped)
            if value is not None:
                reserved[name] = value
                break
    return reserved


@cache
def _country_index() -> dict[str, str]:
    """Alpha-3 codes and English names (short, official, common) -> alpha-2, case-folded."""
    index: dict[str, str] = {}
    for country in pycountry.countries:
        for attr in ("alpha_3", "name", "official_name", "common_name"):
            text = getattr(country, attr, None)
            if text:
                index[text.casefold()] = country.alpha_2
    return index


@cache
def _us_state_names() -> dict[str, str]:
    """ISO 3166-2:US subdivision names (``California``) -> USPS code (``CA``), case-folded."""
    return {
        sub.name.casefold(): sub.code.split("-", 1)[1]
        for sub in pycountry.subdivisions
        if sub.code.startswith("US-")
    }


def normalize_country(value: str) -> str | None:
    """The alpha-2 code for a country, or None when there is no deterministic one.

    Two letters are taken as alpha-2 (upper-cased; the list of assigned codes is Inkit's to
    check). Alpha-3 codes and English names come from pycountry's ISO 3166-1 data; a code
    written with full stops (``U.S.A.``) is read without them.
    """
    if _TWO_LETTERS.fullmatch(value):
        return value.upper()
    found = _country_index().get(value.casefold())
    if found is None and "." in value:  # "U.S." and "U.S.A." are the codes with stops
        undotted = value.replace(".", "").replace(" ", "")
        if undotted != value and "." not in undotted:
            return normalize_country(undotted)
    return found


def normalize_us_state(value: str) -> str | None:
    """The USPS code of a US state given as a code (any case) or an English name."""
    if _TWO_LETTERS.fullmatch(value):
        code = value.upper()
        return code if code in US_STATE_CODES else None
    return _us_state_names().get(value.casefold())


def normalize_zip(value: str, *, country: str | None) -> str:
    """US ZIP+4 spellings become ``12345-6789``; other ZIPs are forwarded as given."""
    if country != "US":
        return value
    plus_4 = _US_ZIP_PLUS_4.fullmatch(value)
    if plus_4:
        return f"{plus_4.group(1)}-{plus_4.group(2)}"
    return value
