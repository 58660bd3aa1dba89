"""The demo's event stream: Segment's four Inkit examples, generated users and a few bad records,
each with the outcome the connector is expected to give it."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_SEED = 20240822  # Segment's Inkit page: "last modified 22 Aug 2024"
TEMPLATE_ID = "tmpl_demo_welcome_letter"
SEGMENT_EXAMPLE_USER = "userId123"
_BASE_TIME = datetime(2024, 8, 22, 9, 0, tzinfo=UTC)

# Names are common ones; every email is @example.com and every phone in the 555-01xx range that
# US numbering reserves for fiction, so nobody mistakes a demo contact for a real person.
_FIRST_NAMES = (
    "Ava", "Ben", "Chloe", "Daniel", "Elena", "Felix", "Grace", "Hugo", "Iris", "Jack", "Kara",
    "Liam", "Maya", "Noah", "Olivia", "Pablo", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Victor",
    "Wendy", "Xavier", "Yara", "Zoe",
)  # fmt: skip
_LAST_NAMES = (
    "Anderson", "Brooks", "Carter", "Diaz", "Evans", "Foster", "Garcia", "Hughes", "Iverson",
    "Jensen", "Kim", "Lopez", "Morgan", "Nguyen", "Ortiz", "Patel", "Reed", "Silva", "Turner",
    "Walker", "Young",
)  # fmt: skip
_STREETS = (
    "Maple", "Oak", "Cedar", "Elm", "Willow", "Lakeview", "Hillcrest", "Sunset", "Park",
    "Washington", "Lincoln", "Riverside", "Meadow", "Highland",
)  # fmt: skip
_STREET_TYPES = ("St", "Ave", "Rd", "Ln", "Blvd", "Dr", "Ct", "Way")
# (city, USPS state code, ZIP): real places with one of their ZIP codes.
_PLACES = (
    ("Hawthorne", "CA", "90250"),
    ("Portland", "OR", "97205"),
    ("Austin", "TX", "78701"),
    ("Denver", "CO", "80202"),
    ("Madison", "WI", "53703"),
    ("Burlington", "VT", "05401"),
    ("Boise", "ID", "83702"),
    ("Savannah", "GA", "31401"),
    ("Albuquerque", "NM", "87102"),
    ("Providence", "RI", "02903"),
    ("Ann Arbor", "MI", "48104"),
    ("Asheville", "NC", "28801"),
    ("Omaha", "NE", "68102"),
    ("Tucson", "AZ", "85701"),
    ("Anchorage", "AK", "99501"),
    ("Honolulu", "HI", "96813"),
    ("Washington", "DC", "20001"),
)
_COMPANIES = ("Acme Corp", "Globex", "Initech", "Umbrella Labs", "Stark Industries", "Hooli")
_PLANS = ("free", "starter", "premium", "enterprise")
_AUDIENCES = ("order_completed_last_30days", "high_value_customer", "churn_risk")


@dataclass
class DemoStream:
    """What the demo produces and what it expects back.

    ``events`` are Segment JSON messages for ``inkit-connector produce`` (in per-user order).
    ``raw`` are (key, value) records that ``produce`` cannot write, because they are not valid
    events at all. ``expected`` counts (outcome, reason) as ``inkit_connector_records_total``
    labels them, over both lists.
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    raw: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    expected: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return len(self.events) + len(self.raw)

    @property
    def dead_letters(self) -> int:
        return sum(n for (outcome, _), n in self.expected.items() if outcome == "dead_lettered")


def segment_examples(template_id: str = TEMPLATE_ID) -> list[dict[str, Any]]:
    """The traits of the four identify calls on Segment's Inkit destination page, verbatim."""
    return [
        {
            "template_id": template_id,
            "first_name": "Nick",
            "last_name": "Fury",
            "address_line_1": "1 Rocket Road",
            "address_line_2": "Suite 1",
            "address_city": "Hawthorne",
            "address_state": "CA",
            "address_zip": "90250",
            "address_country": "US",
        },
        {"template_id": template_id, "address_line_2": "Suite 1"},
        {"template_id": template_id},
        {
            "template_id": template_id,
            "email": "n.fury@shield.com",
            "company": "SHIELD",
            "phone": "3107099497",
            "subscription": "premium",
            "custom_field_example": "content",
        },
    ]


class _Builder:
    """Builds messages with deterministic ids from one random generator."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def message(
        self,
        kind: str,
        user_id: str,
        *,
        traits: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        integrations: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": kind,
            "messageId": str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
            "userId": user_id,
            "channel": "server",
            "version": 2,
            "context": {
                "library": {"name": "analytics-node", "version": "2.1.0"},
                **(context or {}),
            },
            "integrations": integrations or {},
            **extra,
        }
        if traits is not None:
            message["traits"] = traits
        return message

    def person(self, template_id: str) -> dict[str, Any]:
        """Traits of one generated user, in one of the two vocabularies the connector maps."""
        rng = self._rng
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        street = f"{rng.randint(1, 9899)} {rng.choice(_STREETS)} {rng.choice(_STREET_TYPES)}"
        city, state, zip_code = rng.choice(_PLACES)
        traits: dict[str, Any] = {
            "template_id": template_id,
            "email": f"{first}.{last}{rng.randint(1, 99)}@example.com".lower(),
            "phone": f"+1-555-01{rng.randint(0, 99):02d}",
            "plan": rng.choice(_PLANS),
        }
        if rng.random() < 0.6:  # Inkit's own field names, as Segment's page shows them
            traits |= {
                "first_name": first,
                "last_name": last,
                "address_line_1": street,
                "address_city": city,
                "address_state": state,
                "address_zip": zip_code,
                "address_country": "US",
            }
            if rng.random() < 0.3:
                traits["address_line_2"] = f"Apt {rng.randint(1, 40)}{rng.choice('ABCD')}"
        else:  # Segment's reserved traits; the connector derives Inkit's fields from them
            traits |= {
                "firstName": first,
                "lastName": last,
                "address": {
                    "street": street,
                    "city": city,
                    "state": state,
                    "postalCode": zip_code,
                    "country": "US",
                },
            }
        if rng.random() < 0.4:
            traits["company"] = {"name": rng.choice(_COMPANIES), "plan": rng.choice(_PLANS)}
        return traits


def build_demo_stream(
    users: int, *, seed: int = DEFAULT_SEED, template_id: str = TEMPLATE_ID
) -> DemoStream:
    """The same stream for the same arguments: ``users`` generated users (plus Segment's
    examples), some events that are skipped and a few that are dead-lettered."""
    if users < 1:
        raise ValueError("users must be at least 1")
    rng = random.Random(seed)
    build = _Builder(rng)
    stream = DemoStream()
    # Per user, in the order that user's events must reach Inkit.
    timelines: list[list[dict[str, Any]]] = []

    def add(
        timeline: list[dict[str, Any]],
        message: dict[str, Any],
        outcome: str = "delivered",
        reason: str = "ok",
    ) -> None:
        timeline.append(message)
        stream.expected[(outcome, reason)] += 1

    examples: list[dict[str, Any]] = []
    for traits in segment_examples(template_id):
        add(examples, build.message("identify", SEGMENT_EXAMPLE_USER, traits=traits))
    timelines.append(examples)

    for n in range(1, users + 1):
        user_id = f"demo-user-{n:04d}"
        timeline: list[dict[str, Any]] = []
        traits = build.person(template_id)
        add(timeline, build.message("identify", user_id, traits=traits))
        if rng.random() < 0.25:  # a later update: per-user order matters
            update = {"template_id": template_id, "plan": rng.choice(_PLANS)}
            add(timeline, build.message("identify", user_id, traits=update))
        if rng.random() < 0.15:
            props = {"plan": traits["plan"], "revenue": rng.randint(10, 500)}
            track = build.message("track", user_id, event="Order Completed", properties=props)
            add(timeline, track, "skipped", "not_identify")
        if rng.random() < 0.08:
            page = build.message("page", user_id, name="Pricing", properties={"path": "/pricing"})
            add(timeline, page, "skipped", "not_identify")
        if n % 40 == 15:  # Engage: an audience membership synced as a boolean trait
            audience, entered = rng.choice(_AUDIENCES), rng.random() < 0.7
            engage = build.message(
                "identify",
                user_id,
                traits={"template_id": template_id, audience: entered},
                context={
                    "personas": {"computation_class": "audience", "computation_key": audience}
                },
            )
            # an exit (the audience trait false) is no letter unless INKIT_SEND_AUDIENCE_EXITS
            add(timeline, engage, *(() if entered else ("skipped", "audience_exit")))
        if n % 60 == 25:  # this source turned Inkit off for the message
            off = build.message(
                "identify", user_id, traits=dict(traits), integrations={"Inkit": False}
            )
            add(timeline, off, "skipped", "integration_disabled")
        timelines.append(timeline)

    # Records the connector must dead-letter: valid Avro, but Inkit could never accept them.
    broken: list[dict[str, Any]] = []
    long_line = "Building 7, Industrial Park, 1200 Very Long Boulevard Northwest, Loading Dock B"
    for n, (traits, reason) in enumerate(
        (
            ({"first_name": "Lena", "address_line_1": long_line}, "address_line_1_too_long"),
            (
                {
                    "first_name": "Omar",
                    "address_line_1": "4 Elm St",
                    "address_city": "Boise",
                    "address_state": "ZZ",
                    "address_zip": "83702",
                    "address_country": "US",
                },
                "invalid_state",
            ),
            ({"first_name": "Pia", "email": "pia@example.com"}, "missing_template_id"),
        ),
        start=1,
    ):
        if reason != "missing_template_id":
            traits = {"template_id": template_id, **traits}
        message = build.message("identify", f"demo-broken-{n}", traits=traits)
        add(broken, message, "dead_lettered", reason)
    timelines.append(broken)
    stream.events = _interleave(timelines, rng)
    for position, message in enumerate(stream.events):
        moment = (_BASE_TIME + timedelta(seconds=position)).isoformat(timespec="milliseconds")
        message["timestamp"] = message["sentAt"] = moment.replace("+00:00", "Z")

    # Records that are not events at all: `produce` cannot write them, the demo does directly.
    stream.raw = [
        (b"demo-raw-1", b"plain text on an Avro topic"),
        (b"demo-raw-2", b'{"type":"identify","userId":"json-on-an-avro-topic"}'),
        (b"demo-raw-3", b"\x00\x00\x00\x27\x0f\x02\x10identify"),  # schema id 9999: unknown
        (b"demo-raw-4", None),  # a compaction tombstone
    ]
    stream.expected[("dead_lettered", "bad_magic_byte")] += 2
    stream.expected[("dead_lettered", "unknown_schema_id")] += 1
    stream.expected[("skipped", "tombstone")] += 1
    return stream


def _interleave(timelines: list[list[dict[str, Any]]], rng: random.Random) -> list[dict[str, Any]]:
    """Merge the users' timelines in random order, keeping each user's own order."""
    slots = [i for i, timeline in enumerate(timelines) for _ in timeline]
    rng.shuffle(slots)
    cursors = [iter(timeline) for timeline in timelines]
    return [next(cursors[i]) for i in slots]
