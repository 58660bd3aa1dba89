"""What format a record's bytes look like, for the operator's benefit: the breaker's log line and
`check` name it when KAFKA_VALUE_FORMAT does not match the topic."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable

from connector.errors import DecodeError
from connector.events import avro
from connector.events.decoding import AvroDecoder

# Value of KAFKA_VALUE_FORMAT a look-alike corresponds to.
FORMAT_NAMES = {
    "json": "JSON",
    "confluent-avro": "Confluent wire format (magic byte 0 + schema id + Avro)",
    "avro": "bare Avro (no header)",
}


def guess_format(value: bytes | None) -> str | None:
    """``json``, ``confluent-avro`` or ``avro`` when the bytes look like it, else None."""
    if not value:
        return None
    stripped = value.lstrip()
    if stripped[:1] in (b"{", b"["):
        try:
            json.loads(stripped)
        except ValueError:
            pass
        else:
            return "json"
    decoder = AvroDecoder()
    # The wire format first: a bare Avro record can start with a zero byte too, but a 5-byte
    # header followed by a readable record (our bundled schema) settles it.
    if value[0] == avro.MAGIC_BYTE and len(value) > avro.HEADER.size:
        try:
            decoder.decode(value[avro.HEADER.size :])
        except DecodeError:
            pass
        else:
            return "confluent-avro"
    try:
        decoder.decode(value)
    except DecodeError:
        pass
    else:
        return "avro"
    if value[0] == avro.MAGIC_BYTE and len(value) > avro.HEADER.size:
        return "confluent-avro"  # another writer schema: the header is still telling
    return None


def likely_format(values: Iterable[bytes | None]) -> str | None:
    """The format most of ``values`` look like (None when none looks like anything known)."""
    counts = Counter(f for f in map(guess_format, values) if f is not None)
    return counts.most_common(1)[0][0] if counts else None


def describe(fmt: str | None) -> str:
    return FORMAT_NAMES.get(fmt or "", "neither JSON nor Avro")
