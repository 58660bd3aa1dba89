"""`redrive`'s command line (bad flags exit 2 before anything connects) and what it prints:
a bar redrawn in place on a terminal, plain lines otherwise, and the summary."""

from __future__ import annotations

import argparse
import io
from collections import Counter
from pathlib import Path

import pytest

from connector.cli.main import build_parser, main
from connector.cli.redrive_args import EXIT_FAILED_AGAIN, EXIT_INTERRUPTED, options_from
from connector.cli.redrive_report import PLAIN_INTERVAL_S, Progress, summary
from connector.delivery.redrive import RedriveTally


@pytest.mark.parametrize(
    "args",
    [
        ["--since", "yesterday"],
        ["--until", "soon"],
        ["--offset", "9-3"],
        ["--limit", "-1"],
        ["--partition", "x"],
        ["--bogus"],
    ],
)
def test_bad_flags_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["redrive", *args])
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_flags_become_the_selection() -> None:
    args = build_parser().parse_args(
        [
            *("redrive", "--reason", "http_422", "--reason", "retry_exhausted"),
            *("--partition", "3", "--offset", "10-", "--limit", "5", "--dry-run"),
            *("--since", "2026-12-01T00:00:00Z", "--group-id", "g.other"),
        ]
    )
    options = options_from(args)
    assert options.selection.reasons == {"http_422", "retry_exhausted"}
    assert options.selection.partitions == {3}
    assert options.selection.offsets == (10, None)
    assert options.selection.since_ms == 1_796_083_200_000
    assert (options.limit, options.dry_run, options.group_id) == (5, True, "g.other")


def tally() -> RedriveTally:
    return RedriveTally(
        resent=Counter({"http_422": 7, "retry_exhausted": 1}),
        already_sent=2,
        not_selected=3,
        failed=Counter({"http_422": 1}),
        selected=11,
    )


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_bar_is_redrawn_in_place() -> None:
    out, now = FakeTerminal(), [0.0]
    progress = Progress(out, total=20, tty=True, clock=lambda: now[0])
    progress(tally())
    progress(tally())  # within the interval: not drawn again
    progress.close(tally())
    text = out.getvalue()
    assert text.count("\r") == 2
    assert "14/20 dead letters (70%): re-sent 8, already sent 2, failed again 1" in text
    assert "[################--------]" in text
    assert text.endswith("\n")


def test_elsewhere_a_plain_line_every_interval() -> None:
    out, now = io.StringIO(), [0.0]
    progress = Progress(out, total=20, tty=False, dry_run=True, clock=lambda: now[0])
    progress(tally())
    now[0] = PLAIN_INTERVAL_S
    progress(tally())
    progress(tally())
    progress.close(tally())
    lines = out.getvalue().splitlines()
    assert lines == [
        "redrive progress: 14/20 dead letters (70%): would send 8, already sent 2, "
        "failed again 1, not selected 3"
    ]


def test_the_summary_counts_by_reason() -> None:
    text = summary(
        tally(),
        topic="identify.dlq",
        group="inkit-connector.redrive",
        filters="every dead letter",
        dry_run=False,
        completed=True,
        limit=None,
    )
    assert text.splitlines() == [
        "redrive of identify.dlq (group inkit-connector.redrive, every dead letter): "
        "read to the end offsets found at start",
        "  re-sent: 8 (http_422: 7, retry_exhausted: 1)",
        "  skipped, already sent: 2",
        "  not selected (committed past): 3",
        "  failed again (dead-lettered again): 1 (http_422: 1)",
    ]
    interrupted = summary(
        RedriveTally(),
        topic="d",
        group="g",
        filters="f",
        dry_run=True,
        completed=False,
        limit=None,
    )
    assert "interrupted before the end (run it again to resume)" in interrupted
    assert "would send: 0" in interrupted


def test_the_readme_documents_every_flag_and_exit_code() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme.split("## Redrive: dead letters come back", 1)[1].split("\n## ", 1)[0]
    redrive = next(
        action
        for action in build_parser()._subparsers._group_actions  # type: ignore[union-attr]
        if isinstance(action, argparse._SubParsersAction)
    ).choices["redrive"]
    flags = {o for a in redrive._actions for o in a.option_strings if o.startswith("--")}
    missing = {f for f in flags - {"--help"} if f"`{f}" not in section}
    assert not missing, f"README's Redrive section lacks {sorted(missing)}"
    for code in ("0", str(EXIT_FAILED_AGAIN), str(EXIT_INTERRUPTED), "1", "2"):
        assert f"{code}: " in section.split("**Exit codes.**", 1)[1].split("\n- ", 1)[0]
