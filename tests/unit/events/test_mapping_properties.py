"""Issue #22's properties: what Segment forwarded is dead-lettered only by a rule Inkit documents;
an address never comes from two sources; a dropped field is counted by name, never logged."""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import replace
from typing import Any

import pycountry
import pytest
from hypothesis import given, settings as hsettings, strategies as st
from prometheus_client import CollectorRegistry

from connector.errors import ConfigError, MappingError
from connector.events.address import US_STATE_CODES
from connector.events.mapping import Mapper, MappingReason
from connector.models import InkitMode, InkitRequest, SegmentMessage, Skip
from connector.observability.metrics import DROPPABLE_FIELDS, Metrics
from connector.settings import DEFAULT_RENDER_URL, Settings

KEY = "key_live_123"
WEBHOOK = Settings(bootstrap_servers="k:9092", topic="t", inkit_api_key=KEY)
RENDER = replace(WEBHOOK, inkit_mode=InkitMode.RENDER, inkit_api_url=DEFAULT_RENDER_URL)
# The rules Inkit documents (inkit-api.md sections 1.1 and 6): the only ones that may
# dead-letter an event Segment's destination would have forwarded.
DOCUMENTED = {
    MappingReason.ADDRESS_LINE_1_TOO_LONG,  # "64-character limit"
    MappingReason.MISSING_NAME,  # "either first_name or last_name is required"
    MappingReason.INVALID_COUNTRY,  # "two-letter ISO alpha-2 country code"
    MappingReason.INVALID_STATE,  # "two-letter state code", checked for US addresses only
}
FLAT = ("address_line_1", "address_city", "address_state", "address_zip", "address_country")
OBJECT = {"street": "address_line_1", "city": "address_city", "state": "address_state",
          "postalCode": "address_zip", "country": "address_country"}  # fmt: skip

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=70)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=5,
)
KEYS = st.sampled_from(
    [*FLAT, "address_line_2", "first_name", "last_name", "firstName", "lastName", "name",
     "email", "phone", "phones", "company", "segment_user_id", "FirstName", "api_token"]
) | st.text(max_size=10)  # fmt: skip
ADDRESS_OBJECT = st.dictionaries(
    st.sampled_from([*OBJECT, "zip", "postal_code", "PostalCode"]), VALUES, max_size=6
)


@st.composite
def forwarded_by_segment(draw: st.DrawFn) -> SegmentMessage:
    """An Identify Segment's destination forwarded: enabled, with a template_id (its only must)."""
    traits = draw(st.dictionaries(KEYS, VALUES, max_size=10))
    if draw(st.booleans()):
        traits["address"] = draw(ADDRESS_OBJECT)
    traits["template_id"] = draw(st.text(min_size=1, max_size=8).filter(str.strip))
    return SegmentMessage(
        type="identify",
        user_id=draw(st.none() | st.text(min_size=1, max_size=12)),
        anonymous_id="anon-1",
        message_id="m-1",
        traits=traits,
    )


@hsettings(max_examples=60, deadline=None)
@given(forwarded_by_segment(), st.sampled_from([WEBHOOK, RENDER]))
def test_what_segment_forwarded_is_dead_lettered_only_by_a_rule_inkit_documents(
    event: SegmentMessage, settings: Settings
) -> None:
    result: InkitRequest | Skip | MappingError
    try:
        result = Mapper(settings).map(event)
    except MappingError as exc:
        result = exc
    if isinstance(result, MappingError):
        assert result.reason in DOCUMENTED
    else:
        assert isinstance(result, InkitRequest)


@hsettings(max_examples=30, deadline=None)
@given(forwarded_by_segment())
def test_an_address_never_comes_from_two_sources(event: SegmentMessage) -> None:
    try:
        result = Mapper(WEBHOOK).map(event)
    except MappingError:
        return
    assert isinstance(result, InkitRequest)
    sent = {k for k in FLAT if k in result.body}
    flat_given = {k for k in (*FLAT, "address_line_2") if _has_text(event.traits.get(k))}
    if flat_given:
        assert sent <= flat_given
    else:
        address = event.traits.get("address")
        assert not sent or isinstance(address, dict)


def _has_text(value: Any) -> bool:
    return (
        isinstance(value, int | float | str)
        and not isinstance(value, bool)
        and (not isinstance(value, str) or bool(value.strip()))
    )


def _spellings(country: Any) -> list[str]:
    names = [country.alpha_2, country.alpha_2.lower(), country.alpha_3, country.name.upper()]
    return [*names, getattr(country, "official_name", country.name)]


COUNTRIES = st.sampled_from(list(pycountry.countries)).flatmap(
    lambda c: st.tuples(st.just(c.alpha_2), st.sampled_from(_spellings(c)))
)
LINE_1 = st.text(min_size=1, max_size=64).map(lambda s: unicodedata.normalize("NFC", s).strip())


@hsettings(max_examples=50, deadline=None)
@given(
    COUNTRIES,
    LINE_1.filter(lambda s: 0 < len(s) <= 64),
    st.sampled_from(sorted(US_STATE_CODES)),
    st.text(max_size=20),
    st.dictionaries(st.sampled_from(["phone", "email", "company", "phones", "x"]), VALUES),
    st.booleans(),
    VALUES,
)
def test_an_address_that_meets_inkits_documented_rules_is_always_sent(
    country: tuple[str, str],
    line_1: str,
    us_state: str,
    other_state: str,
    junk: dict[str, Any],
    as_object: bool,
    zip_code: Any,
) -> None:
    alpha_2, spelling = country
    state = us_state if alpha_2 == "US" else other_state
    parts = {"street": line_1, "city": "X", "state": state, "postalCode": zip_code,
             "country": spelling}  # fmt: skip
    if as_object:
        traits: dict[str, Any] = {"address": parts}
    else:
        traits = {OBJECT[k]: v for k, v in parts.items()}
    traits |= {"template_id": "t", "lastName": "Fury", **junk}
    result = Mapper(WEBHOOK).map(SegmentMessage(type="identify", user_id="u", traits=traits))
    assert isinstance(result, InkitRequest)
    assert result.body["address_country"] == alpha_2
    assert result.body["address_line_1"] == line_1


def test_a_dropped_field_is_counted_by_inkit_field_and_logged_without_its_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics(CollectorRegistry())
    traits = {"template_id": "t", "phone": ["555-0100"], "email": False, "name": {"x": "Nick"}}
    caplog.set_level(logging.DEBUG, logger="connector.events.mapping")
    result = Mapper(WEBHOOK, metrics).map(
        SegmentMessage(type="identify", user_id="u", traits=traits)
    )
    assert isinstance(result, InkitRequest)  # the letter goes, without the three fields
    assert not {"phone", "email", "first_name", "last_name"} & set(result.body)

    def count(name: str) -> float:
        value = metrics.registry.get_sample_value(
            "inkit_connector_dropped_fields_total", {"field": name}
        )
        assert value is not None  # every label of the closed set exists from the start
        return value

    assert {name: count(name) for name in DROPPABLE_FIELDS if count(name)} == {
        "phone": 1,
        "email": 1,
        "name": 1,
    }
    assert "555-0100" not in caplog.text
    assert "Nick" not in caplog.text
    assert "trait phone dropped" in caplog.text


def test_the_default_template_does_not_print_an_empty_identify() -> None:
    event = SegmentMessage(type="identify", user_id="u", traits={})
    assert Mapper(replace(WEBHOOK, inkit_template_id="t")).map(event) == Skip("no_traits")


def test_sending_audience_exits_is_a_validated_setting() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "KAFKA_TOPIC": "t", "INKIT_API_KEY": "k"}
    env["KAFKA_VALUE_FORMAT"] = "json"
    assert Settings.from_env(env).send_audience_exits is False
    assert Settings.from_env({**env, "INKIT_SEND_AUDIENCE_EXITS": "true"}).send_audience_exits
    with pytest.raises(ConfigError, match="INKIT_SEND_AUDIENCE_EXITS"):
        Settings.from_env({**env, "INKIT_SEND_AUDIENCE_EXITS": "maybe"})
