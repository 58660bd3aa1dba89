"""A dead letter read back, and the headers of its copy when it fails again after a redrive."""

from __future__ import annotations

from connector.errors import DecodeError, RejectedError
from connector.kafka.dead_letter import (
    ATTEMPT_HEADER,
    DeadLetter,
    DeadLetterRecord,
    read_dead_letter,
    redrive_headers,
)
from connector.kafka.dlq import dead_letter_headers
from tests.fakes import FakeMessage


def first_copy(**extra: bytes) -> FakeMessage:
    """A dead-letter record as `run` writes it: a copy of identify[2]@41 with a trace header."""
    original = FakeMessage(
        "identify", 2, 41, b"u1", b"{}", 1_700_000_000_123, [("trace-id", b"abc")]
    )
    headers = dead_letter_headers(original, RejectedError(422, "bad"), "inkit-connector")
    headers += list(extra.items())
    return FakeMessage("identify.dlq", 0, 7, b"u1", b"{}", 1_800_000_000_000, headers)


def test_the_headers_run_writes_are_read_back() -> None:
    letter = read_dead_letter(first_copy().headers())
    assert letter.reason == "http_422"
    assert letter.original_topic == "identify"
    assert (letter.original_partition, letter.original_offset) == (2, 41)
    assert letter.original_timestamp_ms == 1_700_000_000_123
    assert letter.group == "inkit-connector"
    assert letter.failed_at_ms is not None
    assert letter.attempt == 0


def test_a_record_not_written_by_the_connector_reads_as_unknown() -> None:
    assert read_dead_letter(None) == DeadLetter()
    bad = read_dead_letter([("inkit.original.offset", b"x"), ("inkit.redrive.attempt", b"-3")])
    assert bad.original_offset is None
    assert bad.attempt == 0


def test_the_record_keeps_its_own_coordinates_and_carries_the_events_time() -> None:
    message = first_copy()
    record = DeadLetterRecord(message, read_dead_letter(message.headers()))
    assert (record.topic(), record.partition(), record.offset()) == ("identify.dlq", 0, 7)
    assert (record.key(), record.value()) == (b"u1", b"{}")
    assert record.timestamp() == (1, 1_700_000_000_123)


def test_a_copy_that_fails_again_keeps_its_origin_and_counts_the_attempt() -> None:
    message = first_copy()
    record = DeadLetterRecord(message, read_dead_letter(message.headers()))
    headers = redrive_headers(record, DecodeError("bad", reason="invalid_avro"), "inkit-connector")
    values = dict(headers)
    assert values["inkit.original.topic"] == b"identify"
    assert values["inkit.original.partition"] == b"2"
    assert values["inkit.original.offset"] == b"41"
    assert values["inkit.original.timestamp"] == b"1700000000123"
    assert values["inkit.error.reason"] == b"invalid_avro"
    assert values["inkit.consumer.group"] == b"inkit-connector"
    assert values[ATTEMPT_HEADER] == b"1"
    assert "inkit.http.status" not in values  # the old failure's details do not linger
    # Each header once; the record's own headers last, as in every copy.
    assert len({k for k, _ in headers}) == len(headers)
    assert headers[-1] == ("trace-id", b"abc")

    again = FakeMessage("identify.dlq", 1, 3, b"u1", b"{}", 1_800_000_000_000, headers)
    second = DeadLetterRecord(again, read_dead_letter(headers))
    assert dict(redrive_headers(second, RejectedError(422, "x")))[ATTEMPT_HEADER] == b"2"
