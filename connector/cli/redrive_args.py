"""The command line of `inkit-connector redrive`: its flags, their spelling, its exit codes.
Light on imports: `inkit-connector --help` builds every parser."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

from connector.delivery.selection import Selection, parse_offsets, parse_time

# Exit codes besides 0 (nothing failed again), 1 (an error) and 2 (bad flags or configuration).
EXIT_FAILED_AGAIN = 3
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class RedriveOptions:
    """The command line of one redrive (the filters' ``group`` is filled in from settings)."""

    selection: Selection = field(default_factory=Selection)
    limit: int | None = None
    dry_run: bool = False
    group_id: str | None = None


def add_parser(commands: Any, epilog: str) -> None:
    """The `redrive` subcommand and its flags (bad values exit 2, as argparse does)."""
    parser = commands.add_parser(
        "redrive",
        help="send the dead letters again, with the current configuration; safe to run twice",
        description="Read KAFKA_DLQ_TOPIC up to the end offsets it finds at start and send each "
        "selected dead letter again, decoded from its original bytes and mapped with the "
        "current configuration, with the guarantees of `run`. Its consumer group "
        "(<KAFKA_GROUP_ID>.redrive) commits as it goes: a redrive stopped halfway resumes "
        "where it stopped; records the filters leave out are committed past. Events the "
        "sent-ledger remembers are skipped, so a second redrive sends nothing twice. A record "
        "that fails again is dead-lettered again with inkit.redrive.attempt counted up. "
        f"Exit 0: nothing failed again; {EXIT_FAILED_AGAIN}: some records failed again; "
        f"{EXIT_INTERRUPTED}: interrupted before the end; 1: an error; 2: bad flags or "
        "configuration.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--reason",
        action="append",
        default=[],
        metavar="CODE",
        help="only dead letters with this reason (header inkit.error.reason, e.g. http_422, "
        "retry_exhausted); repeat for several",
    )
    parser.add_argument(
        "--since",
        type=_time,
        metavar="TIME",
        help="only those dead-lettered at or after TIME: ISO-8601 (2026-12-03T10:00:00Z, UTC "
        "without a zone) or a duration ago (30m, 2h, 1d)",
    )
    parser.add_argument(
        "--until", type=_time, metavar="TIME", help="only those dead-lettered before TIME"
    )
    parser.add_argument(
        "--partition",
        type=_non_negative,
        action="append",
        default=[],
        metavar="N",
        help="only records that came from this partition of KAFKA_TOPIC; repeat for several",
    )
    parser.add_argument(
        "--offset",
        type=_offsets,
        metavar="N|N-M|N-",
        help="only records that came from this offset (or inclusive range) of KAFKA_TOPIC",
    )
    parser.add_argument(
        "--limit",
        type=_non_negative,
        metavar="N",
        help="stop after N selected dead letters; the rest stays for the next redrive",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be sent, counted by reason; send, write and commit nothing "
        "(INKIT_API_KEY is not needed)",
    )
    parser.add_argument(
        "--group-id",
        metavar="GROUP",
        help="consumer group of the redrive (default <KAFKA_GROUP_ID>.redrive); a new one "
        "reads the dead-letter topic from its start again",
    )


def options_from(args: argparse.Namespace) -> RedriveOptions:
    return RedriveOptions(
        selection=Selection(
            reasons=frozenset(args.reason),
            since_ms=args.since,
            until_ms=args.until,
            partitions=frozenset(args.partition),
            offsets=args.offset,
        ),
        limit=args.limit,
        dry_run=args.dry_run,
        group_id=args.group_id,
    )


def _time(text: str) -> int:
    try:
        return parse_time(text, time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _offsets(text: str) -> tuple[int, int | None]:
    try:
        return parse_offsets(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)
