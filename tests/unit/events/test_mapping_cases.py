"""Issue #22: tricky Identify events, each with the exact Inkit request or reason it must give.

One row per event. ``fields`` is the exact set of Inkit contact fields the webhook body carries
(nothing more, nothing less); the rest of the body is checked exactly too: every other trait
forwarded as given (``custom`` lists what differs), and the Segment ids. A ``str`` expectation is
a Skip or MappingError reason. The rule each row exercises is in docs/event-contract.md section 2.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from connector.errors import MappingError
from connector.events.mapping import CONTACT_FIELDS, SEGMENT_ID_FIELDS, Mapper, merge_text
from connector.models import InkitMode, InkitRequest, SegmentMessage, Skip
from connector.settings import DEFAULT_RENDER_URL, Settings

KEY = "key_live_123"
T = "tmpl_1"
BASE = Settings(bootstrap_servers="k:9092", topic="t", inkit_api_key=KEY)
STRICT = replace(BASE, require_full_address=True)
DEFAULT_TEMPLATE = replace(BASE, inkit_template_id="tmpl_default")
SEND_EXITS = replace(DEFAULT_TEMPLATE, send_audience_exits=True)
NICK = {"first_name": "Nick"}
ROCKET = {"street": "1 Rocket Road", "city": "Hawthorne", "state": "CA", "postalCode": "90250"}
US_FLAT = {
    "first_name": "Nick",
    "address_line_1": "1 Rocket Road",
    "address_city": "Hawthorne",
    "address_state": "CA",
    "address_zip": "90250",
    "address_country": "US",
}
NFD_E = unicodedata.normalize("NFD", "é")  # "e" + COMBINING ACUTE ACCENT: two code points
EXIT = {"personas": {"computation_class": "audience", "computation_key": "churn_risk"}}


@dataclass
class Case:
    id: str
    traits: dict[str, Any]
    expect: dict[str, str] | str  # the contact fields, or a skip / dead-letter reason
    settings: Settings = BASE
    custom: dict[str, Any] | None = None  # custom fields the mapping adds to the traits'
    envelope: dict[str, Any] = field(default_factory=dict)
    bare: bool = False  # True: no template_id is added to the traits


def addr(**fields: str) -> dict[str, str]:
    return {f"address_{k}": v for k, v in fields.items()}


CASES = [
    # -- countries: alpha-2, alpha-3 and English names become alpha-2 (pycountry) -----------
    Case("spec-example-USA", {**NICK, "address": {**ROCKET, "country": "USA"}},
         {**NICK, **addr(line_1="1 Rocket Road", city="Hawthorne", state="CA", zip="90250",
                         country="US")}),
    Case("flat-USA", {**NICK, "address_country": "USA"}, {**NICK, **addr(country="US")}),
    Case("United States", {**NICK, "address_country": "United States"},
         {**NICK, **addr(country="US")}),
    Case("united states of america", {**NICK, "address_country": "united states of america"},
         {**NICK, **addr(country="US")}),
    Case("U.S.A.", {**NICK, "address_country": "U.S.A."}, {**NICK, **addr(country="US")}),
    Case("UK-stays", {**NICK, "address_country": "uk"}, {**NICK, **addr(country="UK")}),
    Case("United Kingdom", {**NICK, "address_country": "United Kingdom"},
         {**NICK, **addr(country="GB")}),
    Case("GBR", {**NICK, "address_country": "gbr"}, {**NICK, **addr(country="GB")}),
    Case("Germany", {**NICK, "address_country": "Germany"}, {**NICK, **addr(country="DE")}),
    Case("DEU", {**NICK, "address_country": "DEU"}, {**NICK, **addr(country="DE")}),
    Case("official-name", {**NICK, "address_country": "Federal Republic of Germany"},
         {**NICK, **addr(country="DE")}),
    Case("country-spaces-case", {**NICK, "address_country": " us "},
         {**NICK, **addr(country="US")}),
    Case("Deutschland", {**NICK, "address_country": "Deutschland"}, "invalid_country"),
    Case("Narnia", {**NICK, "address_country": "Narnia"}, "invalid_country"),
    Case("country-digits", {**NICK, "address_country": "840"}, "invalid_country"),
    # -- states: USPS codes only for US addresses; elsewhere forwarded as given ----------------
    Case("US-state-name", {**US_FLAT, "address_state": "California"},
         {**US_FLAT, "address_state": "CA"}),
    Case("US-state-lower", {**US_FLAT, "address_state": "ca"}, US_FLAT),
    Case("US-territory", {**US_FLAT, "address_state": "PR"}, {**US_FLAT, "address_state": "PR"}),
    Case("US-state-ZZ", {**US_FLAT, "address_state": "ZZ"}, "invalid_state"),
    Case("US-state-Calif", {**US_FLAT, "address_state": "Calif."}, "invalid_state"),
    Case("AU-NSW", {**NICK, **addr(state="NSW", country="AU")},
         {**NICK, **addr(state="NSW", country="AU")}),
    Case("CA-Ontario", {**NICK, **addr(state="Ontario", country="CA")},
         {**NICK, **addr(state="Ontario", country="CA")}),
    Case("DE-Bayern", {**NICK, **addr(state="Bayern", country="DE")},
         {**NICK, **addr(state="Bayern", country="DE")}),
    Case("JP-Tokyo", {**NICK, "address": {"state": "Tokyo", "country": "Japan"}},
         {**NICK, **addr(state="Tokyo", country="JP")}),
    Case("state-no-country", {**NICK, "address_state": "California"},
         {**NICK, **addr(state="California")}),
    Case("state-two-letters-upper", {**NICK, **addr(state="on", country="CA")},
         {**NICK, **addr(state="ON", country="CA")}),
    # -- ZIPs: US ZIP+4 spellings become 12345-6789; numbers integer text; nothing rejected ----
    Case("zip+4-no-hyphen", {**US_FLAT, "address_zip": "902501234"},
         {**US_FLAT, "address_zip": "90250-1234"}),
    Case("zip+4-space", {**US_FLAT, "address_zip": "90250 1234"},
         {**US_FLAT, "address_zip": "90250-1234"}),
    Case("zip+4-int", {**US_FLAT, "address_zip": 902501234},
         {**US_FLAT, "address_zip": "90250-1234"}),
    Case("zip-int", {**US_FLAT, "address_zip": 90250}, US_FLAT),
    Case("zip-float-DE", {**NICK, **addr(country="DE"), "address_zip": 80331.0},
         {**NICK, **addr(zip="80331", country="DE")}),
    Case("zip-float-US", {**US_FLAT, "address_zip": 90250.0}, US_FLAT),
    Case("zip-4-digits-US", {**US_FLAT, "address_zip": "9025"},
         {**US_FLAT, "address_zip": "9025"}),
    Case("zip-GB", {**NICK, **addr(zip="SW1A 1AA", country="GB")},
         {**NICK, **addr(zip="SW1A 1AA", country="GB")}),
    Case("zip-9-digits-not-US", {**NICK, **addr(zip="902501234", country="BR")},
         {**NICK, **addr(zip="902501234", country="BR")}),
    Case("zip-float-fraction", {**NICK, "address_zip": 1234.5},
         {**NICK, **addr(zip="1234.5")}),
    # -- one address source, all or nothing ---------------------------------------------------
    Case("no-stitching", {**NICK, **addr(line_1="1 Rocket Road", state="CA", zip="90250"),
                          "address": {"city": "Springfield"}},
         {**NICK, **addr(line_1="1 Rocket Road", state="CA", zip="90250")}),
    Case("object-only", {**NICK, "address": {**ROCKET, "country": "US"}},
         {**NICK, **addr(line_1="1 Rocket Road", city="Hawthorne", state="CA", zip="90250",
                         country="US")}),
    Case("object-zip-alias", {**NICK, "address": {"zip": "10115", "country": "DE"}},
         {**NICK, **addr(zip="10115", country="DE")}),
    Case("object-postal_code", {**NICK, "address": {"postal_code": "10115"}},
         {**NICK, **addr(zip="10115")}),
    Case("object-PostalCode-casing", {**NICK, "address": {"PostalCode": "10115", "City": "Berlin"}},
         {**NICK, **addr(city="Berlin", zip="10115")}),
    Case("postalCode-before-zip", {**NICK, "address": {"zip": "1", "postalCode": "2"}},
         {**NICK, **addr(zip="2")}),
    Case("line-2-flat-selects-flat", {**NICK, "address_line_2": "Suite 1", "address": ROCKET},
         {**NICK, **addr(line_2="Suite 1")}),
    Case("empty-flat-falls-to-object", {**NICK, "address_city": " ", "address": ROCKET},
         {**NICK, **addr(line_1="1 Rocket Road", city="Hawthorne", state="CA", zip="90250")}),
    Case("object-bad-city-dropped", {**NICK, "address": {**ROCKET, "city": ["Hawthorne"]}},
         {**NICK, **addr(line_1="1 Rocket Road", state="CA", zip="90250")}),
    Case("address-as-string", {**NICK, "address": "1 Rocket Road, Hawthorne"}, NICK),
    Case("flat-zip-only", {**NICK, "address_zip": "90250", "address": ROCKET},
         {**NICK, **addr(zip="90250")}),
    Case("top-level-city-not-read", {**NICK, "city": "Hawthorne", "country": "Narnia"}, NICK),
    # -- names: the facade's firstName() / lastName() ------------------------------------------
    Case("firstName+name", {"firstName": "Natasha", "name": "Nick Fury"},
         {"first_name": "Natasha", "last_name": "Fury"}),
    Case("lastName+name", {"lastName": "Romanoff", "name": "Nick Fury"},
         {"first_name": "Nick", "last_name": "Romanoff"}),
    Case("first_name+name", {"first_name": "Nat", "name": "Nick Fury"},
         {"first_name": "Nat", "last_name": "Fury"}),
    Case("name-three-words", {"name": "Mary Ann Smith"},
         {"first_name": "Mary", "last_name": "Ann Smith"}),
    Case("name-one-word", {"name": " Cher "}, {"first_name": "Cher"}),
    Case("FirstName-casing", {"FirstName": "Nick", "LAST_NAME": "Fury"},
         {"first_name": "Nick", "last_name": "Fury"}),
    Case("inkit-name-wins", {"first_name": "Nat", "firstName": "Nick"}, {"first_name": "Nat"}),
    Case("empty-inkit-name", {"first_name": "", "firstName": "Nick"}, {"first_name": "Nick"}),
    Case("name-list-dropped", {"name": ["Nick", "Fury"], "lastName": "Fury"},
         {"last_name": "Fury"}),
    Case("name-nfd", {"first_name": f"Jos{NFD_E}"}, {"first_name": "José"}),
    # -- wrongly typed optional fields are dropped, never the letter ----------------------------
    Case("phone-list", {**NICK, "phone": ["3107099497"]}, NICK),
    Case("phones-first", {**NICK, "phones": ["3107099497", "555"]},
         {**NICK, "phone": "3107099497"}),
    Case("phone-wins-over-phones", {"phone": "1", "phones": ["2"]}, {"phone": "1"}),
    Case("phone-int", {"phone": 3107099497}, {"phone": "3107099497"}),
    Case("email-false", {**NICK, "email": False}, NICK),
    Case("email-object", {**NICK, "email": {"work": "x@y.z"}}, NICK),
    Case("first_name-true", {"first_name": True, "lastName": "Fury"}, {"last_name": "Fury"}),
    Case("company-list", {"company": ["SHIELD"]}, {}),
    Case("country-list", {**NICK, "address_country": ["US"], "address_city": "Hawthorne"},
         {**NICK, **addr(city="Hawthorne")}),
    Case("state-bool-US", {**US_FLAT, "address_state": True},
         {k: v for k, v in US_FLAT.items() if k != "address_state"}),
    # -- email: the facade falls back to an email-like userId ---------------------------------
    Case("email-from-userId", {}, {"email": "nick@shield.gov"},
         envelope={"user_id": "nick@shield.gov"}),
    Case("email-trait-wins", {"email": "a@b.co"}, {"email": "a@b.co"},
         envelope={"user_id": "nick@shield.gov"}),
    Case("userId-not-email", {**NICK}, NICK, envelope={"user_id": "nick"}),
    # -- company object: name to Inkit's company, the rest kept as company_<key> ---------------
    Case("company-object", {"company": {"name": "SHIELD", "plan": "gov", "id": 7}},
         {"company": "SHIELD"}, custom={"company_plan": "gov", "company_id": 7}),
    Case("company-no-name", {"company": {"plan": "gov"}}, {}, custom={"company_plan": "gov"}),
    Case("company-trait-wins", {"company": {"name": "S", "plan": "gov"}, "company_plan": "x"},
         {"company": "S"}, custom={"company_plan": "x"}),
    Case("company-string", {"company": " SHIELD "}, {"company": "SHIELD"}),
    # -- Segment ids are the envelope's ---------------------------------------------------------
    Case("segment_user_id-trait", {**NICK, "segment_user_id": "evil"}, NICK, custom={}),
    Case("segment_user_id-trait-no-userId", {**NICK, "segment_user_id": "evil"}, NICK,
         custom={}, envelope={"user_id": None, "anonymous_id": "a-1"}),
    # -- Unicode NFC before the 64-character rule ----------------------------------------------
    Case("line-1-64-nfd", {**NICK, "address_line_1": "a" * 63 + NFD_E},
         {**NICK, **addr(line_1="a" * 63 + "é")}),
    Case("line-1-65", {**NICK, "address_line_1": "a" * 65}, "address_line_1_too_long"),
    Case("line-1-64-trimmed", {**NICK, "address_line_1": f"  {'b' * 64}  "},
         {**NICK, **addr(line_1="b" * 64)}),
    Case("line-1-no-name", {"address_line_1": "1 Rocket Road"}, "missing_name"),
    Case("line-1-name-from-name", {"name": "Nick", "address_line_1": "1 Rocket Road"},
         {"first_name": "Nick", **addr(line_1="1 Rocket Road")}),
    # -- integrations: the facade's enabled() ---------------------------------------------------
    Case("all-false-lower", NICK, "integration_disabled",
         envelope={"integrations": {"all": False}}),
    Case("ALL-false", NICK, "integration_disabled", envelope={"integrations": {"ALL": False}}),
    Case("All-false-Inkit-string", NICK, NICK,
         envelope={"integrations": {"All": False, "Inkit": "yes"}}),
    Case("All-false-Inkit-null", NICK, NICK,
         envelope={"integrations": {"All": False, "Inkit": None}}),
    Case("All-string", NICK, NICK, envelope={"integrations": {"All": "false"}}),
    Case("inkit-lower-ignored", NICK, NICK, envelope={"integrations": {"inkit": False}}),
    Case("providers-false", NICK, "integration_disabled",
         envelope={"integrations": {"providers": {"Inkit": False}}}),
    # -- Engage audiences and INKIT_TEMPLATE_ID -------------------------------------------------
    Case("audience-exit", {"churn_risk": False}, "audience_exit", settings=DEFAULT_TEMPLATE,
         envelope={"context": EXIT}),
    Case("audience-exit-with-template", {"template_id": T, "churn_risk": False}, "audience_exit",
         envelope={"context": EXIT}),
    Case("audience-exit-sent", {"churn_risk": False}, {}, settings=SEND_EXITS,
         envelope={"context": EXIT}),
    Case("audience-entry", {"churn_risk": True}, {}, settings=DEFAULT_TEMPLATE,
         envelope={"context": EXIT}),
    Case("computed-trait-false", {"churn_risk": False}, {}, settings=DEFAULT_TEMPLATE,
         envelope={"context": {"personas": {"computation_class": "trait",
                                            "computation_key": "churn_risk"}}}),
    Case("audience-no-key", {"churn_risk": False}, {}, settings=DEFAULT_TEMPLATE,
         envelope={"context": {"personas": {"computation_class": "audience"}}}),
    Case("traits-empty-default-template", {}, "no_traits", settings=DEFAULT_TEMPLATE),
    Case("traits-all-null-default-template", {"x": None}, "no_traits", settings=DEFAULT_TEMPLATE),
    Case("traits-empty-no-default", {}, "missing_template_id", bare=True),
    Case("template-int", {"template_id": 12, **NICK}, NICK),
    Case("template-bool", {"template_id": True}, "invalid_template_id"),
    # -- INKIT_REQUIRE_FULL_ADDRESS: state and ZIP only where the address has them -------------
    Case("full-US", US_FLAT, US_FLAT, settings=STRICT),
    Case("full-UK-no-state", {**NICK, **addr(line_1="10 Downing St", city="London",
                                            zip="SW1A 2AA", country="United Kingdom")},
         {**NICK, **addr(line_1="10 Downing St", city="London", zip="SW1A 2AA", country="GB")},
         settings=STRICT),
    Case("full-IE-no-zip", {**NICK, **addr(line_1="1 Main St", city="Cork", country="IE")},
         {**NICK, **addr(line_1="1 Main St", city="Cork", country="IE")}, settings=STRICT),
    Case("full-US-no-state", {k: v for k, v in US_FLAT.items() if k != "address_state"},
         "incomplete_address", settings=STRICT),
    Case("full-US-no-zip", {k: v for k, v in US_FLAT.items() if k != "address_zip"},
         "incomplete_address", settings=STRICT),
    Case("full-no-country", {k: v for k, v in US_FLAT.items() if k != "address_country"},
         "incomplete_address", settings=STRICT),
]  # fmt: skip


def full_traits(case: Case) -> dict[str, Any]:
    """The traits as sent: ``template_id`` added unless the row is about its absence."""
    if case.bare or case.settings.inkit_template_id or "template_id" in case.traits:
        return case.traits
    return {"template_id": T, **case.traits}


def run(case: Case) -> InkitRequest | Skip | MappingError:
    envelope = {"user_id": "u-1", "message_id": "m-1", **case.envelope}
    event = SegmentMessage(type="identify", traits=full_traits(case), **envelope)
    try:
        return Mapper(case.settings).map(event)
    except MappingError as exc:
        return exc


def expected_body(case: Case) -> dict[str, Any]:
    """The whole webhook body the row implies: traits forwarded as given, the row's contact
    fields, its extra custom fields, the envelope's ids."""
    traits = full_traits(case)
    envelope = {"user_id": "u-1", "message_id": "m-1", **case.envelope}
    template = traits.get("template_id") or case.settings.inkit_template_id
    not_forwarded = {*CONTACT_FIELDS, *SEGMENT_ID_FIELDS, "template_id", "api_token"}
    forwarded = {k: v for k, v in traits.items() if k not in not_forwarded}
    ids = {
        name: envelope[key]
        for name, key in zip(
            SEGMENT_ID_FIELDS, ("user_id", "anonymous_id", "message_id"), strict=True
        )
        if envelope.get(key) is not None
    }
    assert isinstance(case.expect, dict)
    return {
        "api_token": KEY,
        "template_id": str(template),
        **forwarded,
        **(case.custom or {}),
        **case.expect,
        **ids,
    }


def test_there_are_at_least_80_cases_with_unique_ids() -> None:
    assert len(CASES) >= 80
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case(case: Case) -> None:
    result = run(case)
    if isinstance(case.expect, str):
        assert isinstance(result, Skip | MappingError), result
        assert result.reason == case.expect
        return
    assert isinstance(result, InkitRequest), result
    assert {k: v for k, v in result.body.items() if k in CONTACT_FIELDS} == case.expect
    assert result.body == expected_body(case)


RENDER = replace(
    BASE, inkit_mode=InkitMode.RENDER, inkit_api_url=DEFAULT_RENDER_URL, inkit_template_id=None
)


def test_render_mode_gets_the_same_fields_as_text() -> None:
    traits = {
        "template_id": T,
        "firstName": "Natasha",
        "name": "Nick Fury",
        "company": {"name": "SHIELD", "plan": "gov", "id": 7},
        "phone": ["x"],
        "address": {"street": "1 Rocket Road", "postalCode": 902501234, "country": "USA"},
        "segment_user_id": "from-trait",
    }
    event = SegmentMessage(type="identify", user_id="u-1", message_id="m-1", traits=traits)
    result = Mapper(RENDER).map(event)
    assert isinstance(result, InkitRequest)
    assert result.body == {
        "template_id": T,
        "merge_parameters": {
            "firstName": "Natasha",
            "name": "Nick Fury",
            "address": '{"street":"1 Rocket Road","postalCode":902501234,"country":"USA"}',
            "segment_user_id": "from-trait",  # render adds no ids: a trait is just a trait
            "company_plan": "gov",
            "company_id": "7",
            "first_name": "Natasha",
            "last_name": "Fury",
            "company": "SHIELD",
            "address_line_1": "1 Rocket Road",
            "address_zip": "90250-1234",
            "address_country": "US",
        },
        "description": "Segment message m-1",
    }


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case_in_render_mode(case: Case) -> None:
    """The same row in render mode: the same outcome, every merge parameter as text."""
    render_case = replace(
        case,
        settings=replace(
            case.settings, inkit_mode=InkitMode.RENDER, inkit_api_url=DEFAULT_RENDER_URL
        ),
    )
    result = run(render_case)
    if isinstance(case.expect, str):
        assert isinstance(result, Skip | MappingError), result
        assert result.reason == case.expect
        return
    assert isinstance(result, InkitRequest), result
    webhook = expected_body(case)
    custom = {
        k: v
        for k, v in webhook.items()
        if k not in {"api_token", "template_id", *SEGMENT_ID_FIELDS}
    }
    custom |= {k: v for k, v in full_traits(case).items() if k in SEGMENT_ID_FIELDS}
    assert result.body == {
        "template_id": webhook["template_id"],
        "merge_parameters": {k: merge_text(v) for k, v in custom.items()},
        "description": "Segment message m-1",
    }
