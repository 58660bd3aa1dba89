"""Pure mapping of a decoded Segment event to the Inkit request Segment's destination made."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from connector import __version__
from connector.errors import MappingError
from connector.models import InkitMode, InkitRequest, SegmentMessage, Skip
from connector.settings import Settings

INTEGRATION_KEY = "Inkit"  # Segment: "Refer to it as Inkit in the Integrations object"
MAX_ADDRESS_LINE_1 = 64

# Inkit's contact fields (webhook contract, docs.inkit.com "Postcards"): always strings.
CONTACT_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "company",
    "phone",
    "address_line_1",
    "address_line_2",
    "address_city",
    "address_state",
    "address_zip",
    "address_country",
)
_FULL_ADDRESS = (
    "address_line_1",
    "address_city",
    "address_state",
    "address_zip",
    "address_country",
)
# Segment's reserved address sub-traits that fill Inkit's fields (postalCode also snake_case).
_ADDRESS_PARTS = (
    ("address_line_1", ("street",)),
    ("address_city", ("city",)),
    ("address_state", ("state",)),
    ("address_zip", ("postalCode", "postal_code")),
    ("address_country", ("country",)),
)
# Traits that never travel as custom fields: template_id is sent on its own, and an event must
# never be able to choose the credential.
_NOT_FORWARDED = frozenset({"template_id", "api_token"})

# USPS codes: 50 states, DC, territories (AS GU MP PR VI UM), freely associated states
# (FM MH PW) and the military "states" (AA AE AP).
US_STATE_CODES = frozenset(
    {
        "AL",
        "AK",
        "AZ",
        "AR",
        "CA",
        "CO",
        "CT",
        "DE",
        "FL",
        "GA",
        "HI",
        "ID",
        "IL",
        "IN",
        "IA",
        "KS",
        "KY",
        "LA",
        "ME",
        "MD",
        "MA",
        "MI",
        "MN",
        "MS",
        "MO",
        "MT",
        "NE",
        "NV",
        "NH",
        "NJ",
        "NM",
        "NY",
        "NC",
        "ND",
        "OH",
        "OK",
        "OR",
        "PA",
        "RI",
        "SC",
        "SD",
        "TN",
        "TX",
        "UT",
        "VT",
        "VA",
        "WA",
        "WV",
        "WI",
        "WY",
        "DC",
        "AS",
        "GU",
        "MP",
        "PR",
        "VI",
        "UM",
        "FM",
        "MH",
        "PW",
        "AA",
        "AE",
        "AP",
    }
)
_TWO_LETTERS = re.compile(r"[A-Za-z]{2}")
_US_ZIP = re.compile(r"[0-9]{5}(-[0-9]{4})?")  # [0-9], not \d: \d also matches non-ASCII digits


class SkipReason(StrEnum):
    """Why a valid event is not sent to Inkit."""

    NOT_IDENTIFY = "not_identify"
    INTEGRATION_DISABLED = "integration_disabled"


class MappingReason(StrEnum):
    """Why an Identify cannot become an Inkit request. A closed set: metric label, DLQ header."""

    MISSING_TEMPLATE_ID = "missing_template_id"
    INVALID_TEMPLATE_ID = "invalid_template_id"
    INVALID_FIELD_TYPE = "invalid_field_type"
    ADDRESS_LINE_1_TOO_LONG = "address_line_1_too_long"
    INVALID_STATE = "invalid_state"
    INVALID_COUNTRY = "invalid_country"
    INVALID_ZIP = "invalid_zip"
    MISSING_NAME = "missing_name"
    INCOMPLETE_ADDRESS = "incomplete_address"


def _fail(reason: MappingReason, detail: str) -> MappingError:
    return MappingError(detail, reason=reason.value)


class Mapper:
    """Builds the Inkit request for one event. Pure: no I/O, no logging, no clock.

    ``map`` returns an ``InkitRequest``, or a ``Skip`` for an event that is not for Inkit (not an
    identify, or disabled in ``integrations``). It raises ``MappingError`` (``reason`` is a
    ``MappingReason``) when the event can never make a valid request; the detail names fields,
    never their values.
    """

    def __init__(self, settings: Settings) -> None:
        self._mode = settings.inkit_mode
        self._url = settings.inkit_api_url
        self._api_key = settings.inkit_api_key or ""
        self._default_template_id = settings.inkit_template_id
        self._destinations = (
            None if settings.inkit_destinations is None else dict(settings.inkit_destinations)
        )
        self._require_full_address = settings.require_full_address
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": f"inkit-connector/{__version__}",
        }
        if self._mode is InkitMode.RENDER:
            self._headers["X-Inkit-API-Token"] = self._api_key

    def map(self, event: SegmentMessage) -> InkitRequest | Skip:
        # Segment's libraries send "identify"; casing is normalised ("be ready to accept any
        # casing", Segment's partner docs).
        if event.type.strip().lower() != "identify":
            return Skip(SkipReason.NOT_IDENTIFY.value)
        if not inkit_enabled(event.integrations):
            return Skip(SkipReason.INTEGRATION_DISABLED.value)
        traits = event.traits
        template_id = self._template_id(traits)
        contact = contact_fields(traits)
        validate_contact(contact, require_full_address=self._require_full_address)
        if self._mode is InkitMode.WEBHOOK:
            body = self._webhook_body(event, template_id, contact)
        else:
            body = self._render_body(event, template_id, contact)
        return InkitRequest(self._url, dict(self._headers), body, event.message_id)

    def _template_id(self, traits: Mapping[str, Any]) -> str:
        value = traits.get("template_id")
        if value is not None and not isinstance(value, str):
            raise _fail(MappingReason.INVALID_TEMPLATE_ID, "trait template_id must be a string")
        template_id = (value or "").strip() or self._default_template_id
        if not template_id:
            raise _fail(
                MappingReason.MISSING_TEMPLATE_ID,
                "no template_id trait and no INKIT_TEMPLATE_ID setting",
            )
        return template_id

    def _webhook_body(
        self, event: SegmentMessage, template_id: str, contact: dict[str, str]
    ) -> dict[str, Any]:
        # Custom fields keep their JSON types: Inkit stores them as custom data.
        body: dict[str, Any] = {"api_token": self._api_key, "template_id": template_id}
        body.update(_custom_fields(event.traits))
        body.update(contact)
        # Segment's destination received the whole message; Inkit has no idempotency key, so
        # the ids travel as custom data to link the contact to the profile and spot duplicates.
        for key, value in (
            ("segment_user_id", event.user_id),
            ("segment_anonymous_id", event.anonymous_id),
            ("segment_message_id", event.message_id),
        ):
            if value is not None and key not in body:
                body[key] = value
        return body

    def _render_body(
        self, event: SegmentMessage, template_id: str, contact: dict[str, str]
    ) -> dict[str, Any]:
        # The SDKs type merge_parameters as map[string]string: every value becomes text.
        merge = {key: merge_text(value) for key, value in _custom_fields(event.traits).items()}
        merge.update(contact)
        body: dict[str, Any] = {"template_id": template_id, "merge_parameters": merge}
        if self._destinations is not None:
            body["destinations"] = copy.deepcopy(self._destinations)
        if event.message_id is not None:
            body["description"] = f"Segment message {event.message_id}"
        return body


def inkit_enabled(integrations: Mapping[str, Any]) -> bool:
    """Segment's rule: ``Inkit`` (bool, or an options object = on) wins; else ``All``; else on."""
    own = integrations.get(INTEGRATION_KEY)
    if isinstance(own, bool):
        return own
    if isinstance(own, dict):
        return True
    every = integrations.get("All", True)
    return every if isinstance(every, bool) else True


def contact_fields(traits: Mapping[str, Any]) -> dict[str, str]:
    """Inkit's contact fields from the traits, trimmed; Segment's reserved traits fill gaps.

    An Inkit trait (``first_name``, ``address_zip``...) always wins over a reserved one
    (``firstName``, ``address.postalCode``...). Empty strings count as absent.
    """
    fields: dict[str, str] = {}
    company = traits.get("company")
    for name in CONTACT_FIELDS:
        if name == "company" and isinstance(company, dict):
            continue  # Segment's reserved company object: handled below
        value = _text(traits, name, name)
        if value is not None:
            fields[name] = value
    _fill(fields, "first_name", _text(traits, "firstName", "firstName"))
    _fill(fields, "last_name", _text(traits, "lastName", "lastName"))
    if "first_name" not in fields and "last_name" not in fields:
        full_name = _text(traits, "name", "name")
        if full_name is not None:
            # First token / the rest: "Mary Ann Smith" -> "Mary" + "Ann Smith"; "Cher" -> "Cher".
            first, *rest = full_name.split(None, 1)
            fields["first_name"] = first
            _fill(fields, "last_name", rest[0] if rest else None)
    if isinstance(company, dict):
        _fill(fields, "company", _text(company, "name", "company.name"))
    address = traits.get("address")
    if isinstance(address, dict):
        for name, keys in _ADDRESS_PARTS:
            for key in keys:
                _fill(fields, name, _text(address, key, f"address.{key}"))
    return fields


def validate_contact(fields: dict[str, str], *, require_full_address: bool) -> None:
    """Inkit's documented rules; normalises case of state and country in place.

    Only unambiguous fixes are made (case, surrounding space); nothing is guessed or truncated.
    """
    if require_full_address:
        missing = [name for name in _FULL_ADDRESS if name not in fields]
        if "first_name" not in fields and "last_name" not in fields:
            missing.insert(0, "first_name or last_name")
        if missing:
            raise _fail(
                MappingReason.INCOMPLETE_ADDRESS,
                f"physical mail needs a full address; missing: {', '.join(missing)}",
            )
    line_1 = fields.get("address_line_1")
    if line_1 is not None and len(line_1) > MAX_ADDRESS_LINE_1:
        raise _fail(
            MappingReason.ADDRESS_LINE_1_TOO_LONG,
            f"address_line_1 has {len(line_1)} characters; Inkit allows {MAX_ADDRESS_LINE_1}",
        )
    country = fields.get("address_country")
    if country is not None:
        if not _TWO_LETTERS.fullmatch(country):
            raise _fail(
                MappingReason.INVALID_COUNTRY,
                "address_country must be a two-letter ISO 3166-1 alpha-2 code",
            )
        country = fields["address_country"] = country.upper()
    state = fields.get("address_state")
    if state is not None:
        if not _TWO_LETTERS.fullmatch(state):
            raise _fail(MappingReason.INVALID_STATE, "address_state must be a two-letter code")
        state = fields["address_state"] = state.upper()
        if country == "US" and state not in US_STATE_CODES:
            raise _fail(MappingReason.INVALID_STATE, "address_state is not a US state code")
    zip_code = fields.get("address_zip")
    if country == "US" and zip_code is not None and not _US_ZIP.fullmatch(zip_code):
        raise _fail(MappingReason.INVALID_ZIP, "address_zip is not a US ZIP (12345 or 12345-6789)")
    if line_1 is not None and "first_name" not in fields and "last_name" not in fields:
        raise _fail(
            MappingReason.MISSING_NAME, "an address needs first_name or last_name (Inkit's rule)"
        )


def merge_text(value: Any) -> str:
    """A trait value as a render merge parameter: strings as-is, booleans ``true``/``false``,
    null as empty, numbers as JSON number text, objects and lists as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _custom_fields(traits: Mapping[str, Any]) -> dict[str, Any]:
    """Every trait except the ones sent otherwise; contact fields are re-added normalised."""
    return {
        key: value
        for key, value in traits.items()
        if key not in _NOT_FORWARDED and key not in _CONTACT_FIELD_SET
    }


_CONTACT_FIELD_SET = frozenset(CONTACT_FIELDS)


def _fill(fields: dict[str, str], name: str, value: str | None) -> None:
    if value is not None and name not in fields:
        fields[name] = value


def _text(source: Mapping[str, Any], key: str, label: str) -> str | None:
    """A contact value as trimmed text; numbers (a ZIP sent as 90250) become their JSON text."""
    value = source.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return json.dumps(value)
    raise _fail(MappingReason.INVALID_FIELD_TYPE, f"trait {label} must be a string or a number")
