"""Pure mapping of a decoded Segment event to the Inkit request Segment's destination made.

Each rule is written down, with what it follows, in docs/event-contract.md section 2.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from connector import __version__
from connector.errors import MappingError
from connector.events import traits as facade
from connector.events.address import (
    MAX_ADDRESS_LINE_1,
    address_block,
    normalize_country,
    normalize_us_state,
    normalize_zip,
)
from connector.models import InkitMode, InkitRequest, SegmentMessage, Skip
from connector.observability.metrics import Metrics
from connector.settings import Settings

logger = logging.getLogger(__name__)

INTEGRATION_KEY = "Inkit"  # Segment: "Refer to it as Inkit in the Integrations object"

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
_CONTACT_FIELD_SET = frozenset(CONTACT_FIELDS)
# Traits that never travel as custom fields: template_id is sent on its own, and an event must
# never be able to choose the credential.
_NOT_FORWARDED = frozenset({"template_id", "api_token"})
# The Segment ids the connector adds in webhook mode; a trait of the same name is not forwarded.
SEGMENT_ID_FIELDS = ("segment_user_id", "segment_anonymous_id", "segment_message_id")


class SkipReason(StrEnum):
    """Why a valid event is not sent to Inkit."""

    NOT_IDENTIFY = "not_identify"
    INTEGRATION_DISABLED = "integration_disabled"
    AUDIENCE_EXIT = "audience_exit"
    NO_TRAITS = "no_traits"


class MappingReason(StrEnum):
    """Why an Identify cannot become an Inkit request. A closed set: metric label, DLQ header.

    ``invalid_field_type`` and ``invalid_zip`` are no longer raised (a wrongly typed contact field
    is dropped; Inkit documents no ZIP format); they stay in the set because dead-letter headers
    and dashboards written before may carry them.
    """

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
    """Builds the Inkit request for one event. No I/O and no clock.

    ``map`` returns an ``InkitRequest``, or a ``Skip`` for an event that is not for Inkit (not an
    identify, disabled in ``integrations``, an Engage audience exit, nothing to print). It raises
    ``MappingError`` (``reason`` is a ``MappingReason``) when the event breaks a rule Inkit
    documents; the detail names fields, never their values. A contact field of the wrong type is
    dropped, never the letter: it is counted in ``metrics`` (when given) and logged at DEBUG
    with its trait name, never its value.
    """

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self._mode = settings.inkit_mode
        self._url = settings.inkit_api_url
        self._api_key = settings.inkit_api_key or ""
        self._default_template_id = settings.inkit_template_id
        self._destinations = (
            None if settings.inkit_destinations is None else dict(settings.inkit_destinations)
        )
        self._require_full_address = settings.require_full_address
        self._send_audience_exits = settings.send_audience_exits
        self._metrics = metrics
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
        if not self._send_audience_exits and is_audience_exit(event):
            return Skip(SkipReason.AUDIENCE_EXIT.value)
        template_id = self._template_id(event.traits)
        if template_id is None:
            # INKIT_TEMPLATE_ID would print a letter for an Identify that carries nothing.
            return Skip(SkipReason.NO_TRAITS.value)
        dropped = facade.Dropped()
        contact, company_fields = contact_fields(event.traits, event.user_id, dropped)
        self._report_dropped(dropped, event.message_id)
        validate_contact(contact, require_full_address=self._require_full_address)
        custom = {**company_fields, **_custom_fields(event.traits)}
        if self._mode is InkitMode.WEBHOOK:
            body = self._webhook_body(event, template_id, custom, contact)
        else:
            body = self._render_body(event, template_id, custom, contact)
        return InkitRequest(self._url, dict(self._headers), body, event.message_id)

    def _template_id(self, traits: Mapping[str, Any]) -> str | None:
        """The template; None when only INKIT_TEMPLATE_ID has one and the traits are empty."""
        value = traits.get("template_id")
        if isinstance(value, bool) or not isinstance(value, str | int | float | None):
            raise _fail(MappingReason.INVALID_TEMPLATE_ID, "trait template_id must be text")
        own = facade.contact_text(value)  # an integral number becomes its integer text
        if own:
            return own
        if not self._default_template_id:
            raise _fail(
                MappingReason.MISSING_TEMPLATE_ID,
                "no template_id trait and no INKIT_TEMPLATE_ID setting",
            )
        if not any(value is not None for key, value in traits.items() if key != "template_id"):
            return None
        return self._default_template_id

    def _report_dropped(self, dropped: facade.Dropped, message_id: str | None) -> None:
        for inkit_field, trait_path in dropped.fields:
            if self._metrics is not None:
                self._metrics.dropped_fields.labels(inkit_field).inc()
            logger.debug(
                "message %s: trait %s dropped, not text (a boolean, list or object)",
                message_id,
                trait_path,
            )

    def _webhook_body(
        self,
        event: SegmentMessage,
        template_id: str,
        custom: dict[str, Any],
        contact: dict[str, str],
    ) -> dict[str, Any]:
        # Custom fields keep their JSON types: Inkit stores them as custom data.
        body: dict[str, Any] = {"api_token": self._api_key, "template_id": template_id}
        body.update(custom)
        body.update(contact)
        # Segment's destination received the whole message; Inkit has no idempotency key, so
        # the ids travel as custom data to link the contact to the profile and spot duplicates.
        # The names are the connector's: a trait of the same name never poses as the real id.
        for key, value in zip(
            SEGMENT_ID_FIELDS, (event.user_id, event.anonymous_id, event.message_id), strict=True
        ):
            body.pop(key, None)
            if value is not None:
                body[key] = value
        return body

    def _render_body(
        self,
        event: SegmentMessage,
        template_id: str,
        custom: dict[str, Any],
        contact: dict[str, str],
    ) -> dict[str, Any]:
        # The SDKs type merge_parameters as map[string]string: every value becomes text.
        merge = {key: merge_text(value) for key, value in custom.items()}
        merge.update(contact)
        body: dict[str, Any] = {"template_id": template_id, "merge_parameters": merge}
        if self._destinations is not None:
            body["destinations"] = copy.deepcopy(self._destinations)
        if event.message_id is not None:
            body["description"] = f"Segment message {event.message_id}"
        return body


def inkit_enabled(integrations: Mapping[str, Any]) -> bool:
    """Segment's facade ``enabled()`` (lib/facade.js) for the key ``Inkit``.

    ``All`` is read with obj-case, so ``all`` and ``ALL`` count, and only a boolean counts.
    A legacy ``providers.Inkit`` is read next. Then a present ``Inkit`` key decides: a boolean
    is the answer, any other value (an options object, a string, null) enables.
    """
    if not integrations:
        return True
    found = facade.lookup(integrations, "all")
    enabled = found[1] if found is not None and isinstance(found[1], bool) else True
    providers = integrations.get("providers")
    if isinstance(providers, dict) and INTEGRATION_KEY in providers:
        enabled = bool(providers[INTEGRATION_KEY])
    if INTEGRATION_KEY in integrations:
        own = integrations[INTEGRATION_KEY]
        enabled = own if isinstance(own, bool) else True
    return enabled


def is_audience_exit(event: SegmentMessage) -> bool:
    """An Engage audience exit: ``context.personas.computation_class`` is ``audience`` and the
    audience trait (``computation_key``) is ``false`` (Segment's Engage docs)."""
    personas = event.context.get("personas")
    if not isinstance(personas, dict) or personas.get("computation_class") != "audience":
        return False
    key = personas.get("computation_key")
    return isinstance(key, str) and event.traits.get(key) is False


def contact_fields(
    traits: Mapping[str, Any], user_id: str | None, dropped: facade.Dropped
) -> tuple[dict[str, str], dict[str, Any]]:
    """Inkit's contact fields (NFC, trimmed text) and the company object's custom fields.

    Names, email, phone and company follow the facade (connector/events/traits.py); the address
    comes from one source, all or nothing (connector/events/address.py).
    """
    traits = facade.Keyed(traits)  # one obj-case index for every name looked up below
    fields = facade.names(traits, dropped)
    company, company_fields = facade.company(traits, dropped)
    for name, value in (
        ("email", facade.email(traits, user_id, dropped)),
        ("company", company),
        ("phone", facade.phone(traits, dropped)),
    ):
        if value is not None:
            fields[name] = value
    fields.update(address_block(traits, dropped))
    # A trait of the same name wins over a company sub-field (it is forwarded as it is).
    company_fields = {k: v for k, v in company_fields.items() if k not in traits}
    return {name: fields[name] for name in CONTACT_FIELDS if name in fields}, company_fields


def validate_contact(fields: dict[str, str], *, require_full_address: bool) -> None:
    """Normalise what is deterministic, in place; raise only for what Inkit documents.

    Countries become alpha-2 (ISO alpha-3 codes and English names via pycountry), US states
    USPS codes (names too), US ZIP+4 ``12345-6789``. What cannot be normalised is forwarded as
    given, except a country that is no alpha-2 code and a US state that is no USPS code.
    """
    country = fields.get("address_country")
    if country is not None:
        code = normalize_country(country)
        if code is None:
            raise _fail(
                MappingReason.INVALID_COUNTRY,
                "address_country is no ISO 3166-1 alpha-2 code, alpha-3 code or English name",
            )
        country = fields["address_country"] = code
    state = fields.get("address_state")
    if state is not None and country == "US":
        usps = normalize_us_state(state)
        if usps is None:
            raise _fail(MappingReason.INVALID_STATE, "address_state is not a US state")
        fields["address_state"] = usps
    elif state is not None and len(state) == 2 and state.isascii() and state.isalpha():
        fields["address_state"] = state.upper()
    zip_code = fields.get("address_zip")
    if zip_code is not None:
        fields["address_zip"] = normalize_zip(zip_code, country=country)
    if require_full_address:
        _require_full_address(fields, country)
    line_1 = fields.get("address_line_1")
    if line_1 is not None and len(line_1) > MAX_ADDRESS_LINE_1:
        raise _fail(
            MappingReason.ADDRESS_LINE_1_TOO_LONG,
            f"address_line_1 has {len(line_1)} characters; Inkit allows {MAX_ADDRESS_LINE_1}",
        )
    if line_1 is not None and "first_name" not in fields and "last_name" not in fields:
        raise _fail(
            MappingReason.MISSING_NAME, "an address needs first_name or last_name (Inkit's rule)"
        )


def _require_full_address(fields: dict[str, str], country: str | None) -> None:
    """Physical mail: a name, line 1, city and country; state and ZIP for US addresses only
    (UK and Irish addresses have no state; Inkit's two-letter state is a US notion)."""
    required = ["address_line_1", "address_city", "address_country"]
    if country == "US":
        required[2:2] = ["address_state", "address_zip"]
    missing = [name for name in required if name not in fields]
    if "first_name" not in fields and "last_name" not in fields:
        missing.insert(0, "first_name or last_name")
    if missing:
        raise _fail(
            MappingReason.INCOMPLETE_ADDRESS,
            f"physical mail needs a full address; missing: {', '.join(missing)}",
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
