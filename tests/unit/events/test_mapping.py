"""Mapping rules: Segment's four example calls as golden bodies, then one test per rule."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from connector import __version__
from connector.errors import MappingError
from connector.events.mapping import (
    CONTACT_FIELDS,
    Mapper,
    MappingReason,
    SkipReason,
    merge_text,
)
from connector.models import InkitMode, InkitRequest, SegmentMessage, Skip
from connector.settings import DEFAULT_RENDER_URL, DEFAULT_WEBHOOK_URL, Settings

KEY = "key_live_123"
TEMPLATE = "tmpl_3bDScFl9cwr3OAVR1RSdEC"
WEBHOOK = Settings(bootstrap_servers="k:9092", topic="t", inkit_api_key=KEY)
RENDER = replace(WEBHOOK, inkit_mode=InkitMode.RENDER, inkit_api_url=DEFAULT_RENDER_URL)


def identify(traits: dict[str, Any], **fields: Any) -> SegmentMessage:
    fields.setdefault("user_id", "userId123")
    fields.setdefault("message_id", "ajs-next-1")
    return SegmentMessage(type="identify", traits=traits, **fields)


def request(event: SegmentMessage, settings: Settings = WEBHOOK) -> InkitRequest:
    result = Mapper(settings).map(event)
    assert isinstance(result, InkitRequest)
    return result


def failure(event: SegmentMessage, settings: Settings = WEBHOOK) -> MappingError:
    with pytest.raises(MappingError) as info:
        Mapper(settings).map(event)
    return info.value


# -- golden: the four example calls on Segment's Inkit page -------------------------------------

FULL_CALL = {
    "template_id": TEMPLATE,
    "first_name": "Nick",
    "last_name": "Fury",
    "address_line_1": "1 Rocket Road",
    "address_line_2": "Suite 1",
    "address_city": "Hawthorne",
    "address_state": "CA",
    "address_zip": "90250",
    "address_country": "US",
}
LINE_2_CALL = {"template_id": TEMPLATE, "address_line_2": "Suite 1"}
BARE_CALL = {"template_id": TEMPLATE}
CUSTOM_CALL = {
    "template_id": TEMPLATE,
    "email": "n.fury@shield.com",
    "company": "SHIELD",
    "phone": "3107099497",
    "subscription": "premium",
    "custom_field_example": "content",
}


def test_golden_expected_requirements_call() -> None:
    sent = request(identify(FULL_CALL))
    assert sent.url == DEFAULT_WEBHOOK_URL
    assert sent.message_id == "ajs-next-1"
    assert sent.body == {
        "api_token": KEY,
        "template_id": TEMPLATE,
        "first_name": "Nick",
        "last_name": "Fury",
        "address_line_1": "1 Rocket Road",
        "address_line_2": "Suite 1",
        "address_city": "Hawthorne",
        "address_state": "CA",
        "address_zip": "90250",
        "address_country": "US",
        "segment_user_id": "userId123",
        "segment_message_id": "ajs-next-1",
    }


def test_golden_address_line_2_call() -> None:
    assert request(identify(LINE_2_CALL)).body == {
        "api_token": KEY,
        "template_id": TEMPLATE,
        "address_line_2": "Suite 1",
        "segment_user_id": "userId123",
        "segment_message_id": "ajs-next-1",
    }


def test_golden_bare_minimum_call() -> None:
    assert request(identify(BARE_CALL)).body == {
        "api_token": KEY,
        "template_id": TEMPLATE,
        "segment_user_id": "userId123",
        "segment_message_id": "ajs-next-1",
    }


def test_golden_custom_fields_call() -> None:
    assert request(identify(CUSTOM_CALL)).body == {
        "api_token": KEY,
        "template_id": TEMPLATE,
        "email": "n.fury@shield.com",
        "company": "SHIELD",
        "phone": "3107099497",
        "subscription": "premium",
        "custom_field_example": "content",
        "segment_user_id": "userId123",
        "segment_message_id": "ajs-next-1",
    }


def test_golden_render_mode_calls() -> None:
    sent = request(identify(FULL_CALL), replace(RENDER, inkit_destinations={"inkit_storage": {}}))
    assert sent.url == DEFAULT_RENDER_URL
    assert sent.body == {
        "template_id": TEMPLATE,
        "merge_parameters": {
            "first_name": "Nick",
            "last_name": "Fury",
            "address_line_1": "1 Rocket Road",
            "address_line_2": "Suite 1",
            "address_city": "Hawthorne",
            "address_state": "CA",
            "address_zip": "90250",
            "address_country": "US",
        },
        "destinations": {"inkit_storage": {}},
        "description": "Segment message ajs-next-1",
    }
    assert request(identify(CUSTOM_CALL), RENDER).body == {
        "template_id": TEMPLATE,
        "merge_parameters": {
            "email": "n.fury@shield.com",
            "company": "SHIELD",
            "phone": "3107099497",
            "subscription": "premium",
            "custom_field_example": "content",
        },
        "description": "Segment message ajs-next-1",
    }


# -- headers -----------------------------------------------------------------------------------


def test_headers_per_mode() -> None:
    agent = f"inkit-connector/{__version__}"
    webhook = request(identify(BARE_CALL))
    assert webhook.headers == {"Content-Type": "application/json", "User-Agent": agent}
    render = request(identify(BARE_CALL), RENDER)
    assert render.headers == {
        "Content-Type": "application/json",
        "User-Agent": agent,
        "X-Inkit-API-Token": KEY,
    }
    assert KEY not in json.dumps(render.redacted().headers)
    assert webhook.redacted().body["api_token"] == "[REDACTED]"


# -- Segment semantics: type, integrations, template_id -----------------------------------------


@pytest.mark.parametrize("event_type", ["track", "page", "group", "alias", "screen"])
def test_only_identify_is_delivered(event_type: str) -> None:
    event = replace(identify(BARE_CALL), type=event_type)
    assert Mapper(WEBHOOK).map(event) == Skip("not_identify")


def test_identify_type_is_case_insensitive() -> None:
    assert isinstance(
        Mapper(WEBHOOK).map(replace(identify(BARE_CALL), type="Identify")), InkitRequest
    )


@pytest.mark.parametrize(
    ("integrations", "delivered"),
    [
        ({}, True),
        ({"All": True}, True),
        ({"Inkit": True}, True),
        ({"Inkit": False}, False),
        ({"All": True, "Inkit": False}, False),
        ({"All": False}, False),
        ({"All": False, "Inkit": True}, True),
        ({"All": False, "Inkit": {"option": 1}}, True),
        ({"All": False, "Mixpanel": True}, False),
        ({"Mixpanel": False}, True),
        ({"inkit": False}, True),  # the integration key is case-sensitive (facade hasOwnProperty)
        ({"All": False, "Inkit": "yes"}, True),  # present and not a boolean: enabled (facade)
        ({"All": False, "Inkit": None}, True),
        ({"all": False}, False),  # `all` is read with obj-case: any casing (facade)
        ({"ALL": False, "Inkit": True}, True),
        ({"All": "no"}, True),  # a non-boolean `All` is ignored
        ({"providers": {"Inkit": False}}, False),  # legacy options.providers (facade)
    ],
)
def test_integrations_object(integrations: dict[str, Any], delivered: bool) -> None:
    result = Mapper(WEBHOOK).map(identify(BARE_CALL, integrations=integrations))
    assert isinstance(result, InkitRequest) if delivered else result == Skip("integration_disabled")


def test_template_id_from_settings_when_the_trait_is_absent() -> None:
    settings = replace(WEBHOOK, inkit_template_id="tmpl_default")
    named = {"first_name": "Nick"}
    assert request(identify(named), settings).body["template_id"] == "tmpl_default"
    blank = {"template_id": " ", **named}
    assert request(identify(blank), settings).body["template_id"] == "tmpl_default"
    # nothing to print: the default template does not turn an empty Identify into a letter
    assert Mapper(settings).map(identify({})) == Skip("no_traits")
    assert Mapper(settings).map(identify({"template_id": None, "x": None})) == Skip("no_traits")
    assert request(identify(BARE_CALL), settings).body["template_id"] == TEMPLATE
    assert request(identify({"template_id": f" {TEMPLATE} "})).body["template_id"] == TEMPLATE


def test_missing_and_invalid_template_id() -> None:
    assert failure(identify({})).reason == MappingReason.MISSING_TEMPLATE_ID
    assert failure(identify({"template_id": True})).reason == MappingReason.INVALID_TEMPLATE_ID
    assert failure(identify({"template_id": ["t"]})).reason == MappingReason.INVALID_TEMPLATE_ID
    assert request(identify({"template_id": 12})).body["template_id"] == "12"


# -- Segment's reserved traits -----------------------------------------------------------------


def contact(traits: dict[str, Any]) -> dict[str, Any]:
    body = request(identify({"template_id": TEMPLATE, **traits})).body
    return {k: v for k, v in body.items() if k in CONTACT_FIELDS}


def test_first_and_last_name_from_camel_case() -> None:
    assert contact({"firstName": "Nick", "lastName": "Fury"}) == {
        "first_name": "Nick",
        "last_name": "Fury",
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Nick Fury", {"first_name": "Nick", "last_name": "Fury"}),
        ("Mary Ann  Smith", {"first_name": "Mary", "last_name": "Ann  Smith"}),
        ("  Cher ", {"first_name": "Cher"}),
    ],
)
def test_name_is_split_first_token_and_rest(name: str, expected: dict[str, str]) -> None:
    assert contact({"name": name}) == expected


def test_name_fills_each_missing_half_on_its_own() -> None:
    # facade lib/identify.js: firstName() and lastName() each fall back to `name` separately
    assert contact({"name": "Nick Fury", "lastName": "Romanoff"}) == {
        "first_name": "Nick",
        "last_name": "Romanoff",
    }
    assert contact({"name": "Nick Fury", "firstName": "Natasha"}) == {
        "first_name": "Natasha",
        "last_name": "Fury",
    }


def test_explicit_inkit_trait_wins() -> None:
    traits = {
        "first_name": "Natasha",
        "firstName": "Nick",
        "address_city": "Los Angeles",
        "address": {"city": "Hawthorne", "street": "1 Rocket Road"},
    }
    got = contact(traits)
    assert got["first_name"] == "Natasha"
    # one address source, all or nothing: the flat fields win and nothing is stitched in
    assert got["address_city"] == "Los Angeles"
    assert "address_line_1" not in got


def test_address_object_fills_inkit_fields() -> None:
    address = {
        "street": "1 Rocket Road",
        "city": "Hawthorne",
        "state": "ca",
        "postalCode": "90250",
        "country": "us",
    }
    traits = {"firstName": "Nick", "address": address}
    assert contact(traits) == {
        "first_name": "Nick",
        "address_line_1": "1 Rocket Road",
        "address_city": "Hawthorne",
        "address_state": "CA",
        "address_zip": "90250",
        "address_country": "US",
    }
    # the reserved source traits are forwarded as-is too (see docs/event-contract.md)
    body = request(identify({**BARE_CALL, **traits})).body
    assert (body["address"], body["firstName"]) == (address, "Nick")
    assert contact({"address": {"postal_code": "SW1A 1AA"}})["address_zip"] == "SW1A 1AA"


def test_company_object_and_string() -> None:
    assert contact({"company": {"name": "SHIELD", "plan": "gov"}}) == {"company": "SHIELD"}
    assert contact({"company": "SHIELD"}) == {"company": "SHIELD"}
    assert contact({"company": {"plan": "gov"}}) == {}


def test_email_and_phone_pass_through_trimmed() -> None:
    body = request(
        identify({**BARE_CALL, "email": " n.fury@shield.com ", "phone": 3107099497})
    ).body
    assert (body["email"], body["phone"]) == ("n.fury@shield.com", "3107099497")


# -- validation of Inkit's documented rules ----------------------------------------------------

NAMED = {"template_id": TEMPLATE, "first_name": "Nick"}


def test_address_line_1_length_after_trimming() -> None:
    assert (
        request(identify({**NAMED, "address_line_1": " " + "a" * 64 + " "})).body["address_line_1"]
        == "a" * 64
    )
    error = failure(identify({**NAMED, "address_line_1": "b" * 65}))
    assert error.reason == MappingReason.ADDRESS_LINE_1_TOO_LONG
    assert "b" * 65 not in str(error)  # no PII in errors


@pytest.mark.parametrize("state", ["California", "C1", "C", "ÇA"])
def test_us_state_must_be_a_us_state(state: str) -> None:
    traits = {**NAMED, "address_state": state, "address_country": "US"}
    if state == "California":
        assert request(identify(traits)).body["address_state"] == "CA"
    else:
        assert failure(identify(traits)).reason == MappingReason.INVALID_STATE


@pytest.mark.parametrize("state", ["California", "C1", "NSW", "Bayern", "ÇA"])
def test_state_outside_the_us_is_forwarded_as_given(state: str) -> None:
    assert request(identify({**NAMED, "address_state": state})).body["address_state"] == state


def test_us_state_must_be_a_usps_code() -> None:
    us = {**NAMED, "address_country": "US"}
    assert failure(identify({**us, "address_state": "ZZ"})).reason == MappingReason.INVALID_STATE
    for state in ("CA", "dc", "PR", "AE"):
        assert (
            request(identify({**us, "address_state": state})).body["address_state"] == state.upper()
        )
    assert request(identify({**NAMED, "address_state": "ZZ"})).body["address_state"] == "ZZ"
    ontario = {**NAMED, "address_country": "CA", "address_state": "ON"}
    assert request(identify(ontario)).body["address_state"] == "ON"


@pytest.mark.parametrize("country", ["Narnia", "U", "1A", "ÜS"])
def test_country_must_be_iso_alpha_2(country: str) -> None:
    error = failure(identify({**NAMED, "address_country": country}))
    assert error.reason == MappingReason.INVALID_COUNTRY
    assert country not in error.detail


def test_country_case_and_space_are_normalised() -> None:
    assert request(identify({**NAMED, "address_country": " us "})).body["address_country"] == "US"


@pytest.mark.parametrize("zip_code", ["9025", "902501", "90250-12", "ABCDE", "٩٠٢٥٠", 2134])
def test_us_zip_not_normalisable_is_forwarded_as_given(zip_code: Any) -> None:
    # Inkit documents no ZIP format: nothing to dead-letter for
    traits = {**NAMED, "address_country": "US", "address_zip": zip_code}
    assert request(identify(traits)).body["address_zip"] == str(zip_code)


@pytest.mark.parametrize("zip_code", ["90250", "90250-1234", " 02134 ", 90250])
def test_valid_us_zips(zip_code: Any) -> None:
    traits = {**NAMED, "address_country": "US", "address_zip": zip_code}
    assert request(identify(traits)).body["address_zip"] == str(zip_code).strip()


def test_zip_is_not_checked_outside_the_us() -> None:
    for traits in ({"address_zip": "SW1A 1AA", "address_country": "GB"}, {"address_zip": "x"}):
        assert isinstance(Mapper(WEBHOOK).map(identify({**NAMED, **traits})), InkitRequest)


def test_an_address_needs_a_name() -> None:
    error = failure(identify({"template_id": TEMPLATE, "address_line_1": "1 Rocket Road"}))
    assert error.reason == MappingReason.MISSING_NAME
    for name in ({"last_name": "Fury"}, {"firstName": "Nick"}, {"name": "Nick"}):
        traits = {"template_id": TEMPLATE, "address_line_1": "1 Rocket Road", **name}
        assert isinstance(Mapper(WEBHOOK).map(identify(traits)), InkitRequest)


def test_require_full_address() -> None:
    strict = replace(WEBHOOK, require_full_address=True)
    assert isinstance(Mapper(strict).map(identify(FULL_CALL)), InkitRequest)
    for dropped in (
        "address_line_1",
        "address_city",
        "address_state",
        "address_zip",
        "address_country",
    ):
        traits = {k: v for k, v in FULL_CALL.items() if k != dropped}
        error = failure(identify(traits), strict)
        assert error.reason == MappingReason.INCOMPLETE_ADDRESS
        assert dropped in error.detail
    nameless = {k: v for k, v in FULL_CALL.items() if k not in ("first_name", "last_name")}
    assert failure(identify(nameless), strict).reason == MappingReason.INCOMPLETE_ADDRESS
    assert failure(identify(BARE_CALL), strict).reason == MappingReason.INCOMPLETE_ADDRESS


@pytest.mark.parametrize(
    "traits",
    [
        {"first_name": True},
        {"email": {"work": "x"}},
        {"address": {"city": ["x"]}},
        {"company": {"name": [1]}},
    ],
)
def test_wrongly_typed_contact_fields_are_dropped_not_the_letter(traits: dict[str, Any]) -> None:
    assert contact(traits) == {}


def test_empty_or_null_contact_fields_count_as_absent() -> None:
    body = request(
        identify({**BARE_CALL, "first_name": "", "firstName": "Nick", "last_name": None})
    ).body
    assert body["first_name"] == "Nick"
    assert "last_name" not in body


# -- non-string traits, custom fields and ids --------------------------------------------------

CUSTOM = {
    "order_completed_last_30days": True,
    "logins": 42,
    "score": 1.5,
    "unset": None,
    "tags": ["a", 1],
    "prefs": {"paper": "A4", "color": False},
}


def test_webhook_keeps_json_types_of_custom_fields() -> None:
    body = request(identify({**BARE_CALL, **CUSTOM})).body
    assert {k: body[k] for k in CUSTOM} == CUSTOM


def test_render_flattens_merge_parameters_to_strings() -> None:
    merge = request(identify({**BARE_CALL, **CUSTOM}), RENDER).body["merge_parameters"]
    assert merge == {
        "order_completed_last_30days": "true",
        "logins": "42",
        "score": "1.5",
        "unset": "",
        "tags": '["a",1]',
        "prefs": '{"paper":"A4","color":false}',
    }


def test_merge_text() -> None:
    assert [merge_text(v) for v in ("x", None, True, False, 7, 2.0, 1e300)] == [
        "x",
        "",
        "true",
        "false",
        "7",
        "2.0",
        "1e+300",
    ]


def test_an_event_cannot_choose_the_api_token() -> None:
    body = request(identify({**BARE_CALL, "api_token": "attacker"})).body
    assert body["api_token"] == KEY
    render = request(identify({**BARE_CALL, "api_token": "attacker"}), RENDER)
    assert "api_token" not in render.body["merge_parameters"]


def test_segment_ids_travel_as_custom_fields_in_webhook_mode() -> None:
    event = identify(BARE_CALL, user_id=None, anonymous_id="anon-1", message_id=None)
    body = request(event).body
    assert body["segment_anonymous_id"] == "anon-1"
    assert "segment_user_id" not in body
    assert "segment_message_id" not in body
    traits = {**BARE_CALL, "segment_user_id": "from-trait"}
    assert request(identify(traits)).body["segment_user_id"] == "userId123"
    assert "segment_user_id" not in request(identify(traits, user_id=None)).body


def test_render_mode_sends_ids_only_in_the_description() -> None:
    body = request(identify(BARE_CALL), RENDER).body
    assert body["description"] == "Segment message ajs-next-1"
    assert "userId123" not in json.dumps(body)
    assert "description" not in request(identify(BARE_CALL, message_id=None), RENDER).body


def test_destinations_are_copied_not_shared() -> None:
    settings = replace(RENDER, inkit_destinations={"inkit_storage": {"name": "x"}})
    mapper = Mapper(settings)
    first = mapper.map(identify(BARE_CALL))
    assert isinstance(first, InkitRequest)
    first.body["destinations"]["inkit_storage"]["name"] = "changed"
    second = mapper.map(identify(BARE_CALL))
    assert isinstance(second, InkitRequest)
    assert second.body["destinations"] == {"inkit_storage": {"name": "x"}}


# -- property: any event the schema allows maps to a request, a Skip or a MappingError ----------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=70)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=6,
)
TRAIT_KEYS = st.sampled_from(
    [
        "template_id",
        "first_name",
        "last_name",
        "firstName",
        "lastName",
        "name",
        "email",
        "phone",
        "company",
        "address",
        "address_line_1",
        "address_line_2",
        "address_city",
        "address_state",
        "address_zip",
        "address_country",
        "api_token",
    ]
) | st.text(max_size=10)
ADDRESS = st.fixed_dictionaries(
    {},
    optional={
        k: st.text(max_size=70) | SCALARS
        for k in ("street", "city", "state", "postalCode", "postal_code", "country")
    },
)


@st.composite
def messages(draw: st.DrawFn) -> SegmentMessage:
    traits = draw(st.dictionaries(TRAIT_KEYS, VALUES, max_size=8))
    if draw(st.booleans()):
        traits["address"] = draw(ADDRESS)
    integrations = draw(st.dictionaries(st.sampled_from(["All", "Inkit", "X"]), VALUES, max_size=2))
    return SegmentMessage(
        type=draw(
            st.sampled_from(["identify", "IDENTIFY", "track"]) | st.text(min_size=1, max_size=5)
        ),
        user_id=draw(st.none() | st.text(min_size=1, max_size=5)),
        anonymous_id=draw(st.none() | st.text(min_size=1, max_size=5)),
        message_id=draw(st.none() | st.text(max_size=5)),
        traits=traits,
        integrations=integrations,
    )


@hsettings(max_examples=300, deadline=None)
@given(messages(), st.sampled_from([WEBHOOK, RENDER]), st.booleans(), st.none() | st.just("tmpl_d"))
def test_any_event_maps_to_a_request_a_skip_or_a_mapping_error(
    event: SegmentMessage, settings: Settings, full: bool, default_template: str | None
) -> None:
    settings = replace(settings, require_full_address=full, inkit_template_id=default_template)
    result: InkitRequest | Skip | MappingError
    try:
        result = Mapper(settings).map(event)
    except MappingError as exc:
        result = exc
    if isinstance(result, MappingError):
        assert result.reason in set(MappingReason)
        return
    if isinstance(result, Skip):
        assert result.reason in set(SkipReason)
        return
    json.dumps(result.body, allow_nan=False)  # always sendable
    if settings.inkit_mode is InkitMode.RENDER:
        assert all(isinstance(v, str) for v in result.body["merge_parameters"].values())
    else:
        assert result.body["api_token"] == KEY
