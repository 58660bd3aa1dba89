"""What `redrive` prints: progress while it runs (a bar redrawn in place on a terminal, a plain
line every PLAIN_INTERVAL_S otherwise) and the summary at the end. No record content: counts
and reason codes only."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TextIO

from connector.delivery.redrive import RedriveTally

TTY_INTERVAL_S = 0.2
PLAIN_INTERVAL_S = 10.0
BAR_WIDTH = 24


def _by_reason(counts: Counter[str]) -> str:
    if not counts:
        return ""
    return " (" + ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items())) + ")"


class Progress:
    """Called after every loop turn; draws at most every TTY_INTERVAL_S (terminal) or
    PLAIN_INTERVAL_S (a log file, a Kubernetes Job)."""

    def __init__(
        self,
        out: TextIO,
        total: int,
        *,
        tty: bool,
        dry_run: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out = out
        self._total = total
        self._tty = tty
        self._dry_run = dry_run
        self._clock = clock
        self._next = clock() if tty else clock() + PLAIN_INTERVAL_S
        self._drawn = False

    def __call__(self, tally: RedriveTally) -> None:
        now = self._clock()
        if now < self._next:
            return
        self._next = now + (TTY_INTERVAL_S if self._tty else PLAIN_INTERVAL_S)
        self.draw(tally)

    def draw(self, tally: RedriveTally) -> None:
        done = tally.finished
        total = max(self._total, done)
        share = done / total if total else 1.0
        sent = "would send" if self._dry_run else "re-sent"
        text = (
            f"{done}/{total} dead letters ({share:.0%}): {sent} {sum(tally.resent.values())}, "
            f"already sent {tally.already_sent}, failed again {sum(tally.failed.values())}, "
            f"not selected {tally.not_selected}"
        )
        if self._tty:
            filled = int(BAR_WIDTH * share)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            self._out.write(f"\rredrive [{bar}] {text}\x1b[K")
            self._drawn = True
        else:
            self._out.write(f"redrive progress: {text}\n")
        self._out.flush()

    def close(self, tally: RedriveTally) -> None:
        """The last state, then a new line so that the summary starts on its own."""
        if self._tty:
            self.draw(tally)
            self._out.write("\n")
            self._out.flush()


def summary(
    tally: RedriveTally,
    *,
    topic: str,
    group: str,
    filters: str,
    dry_run: bool,
    completed: bool,
    limit: int | None,
) -> str:
    """The closing report: what was re-sent (by the reason it had been dead-lettered for),
    skipped as already sent, not selected, skipped by rule, and failed again (by new reason)."""
    head = "dry run of redrive" if dry_run else "redrive"
    if completed:
        end = "stopped after --limit" if limit is not None and tally.selected >= limit else ""
        state = end or "read to the end offsets found at start"
    else:
        state = "interrupted before the end (run it again to resume)"
    lines = [
        f"{head} of {topic} (group {group}, {filters}): {state}",
        f"  {'would send' if dry_run else 're-sent'}: {sum(tally.resent.values())}"
        + _by_reason(tally.resent),
        f"  skipped, already sent: {tally.already_sent}",
        f"  not selected{'' if dry_run else ' (committed past)'}: {tally.not_selected}",
    ]
    if tally.skipped:
        lines.append(
            f"  skipped by rule: {sum(tally.skipped.values())}" + _by_reason(tally.skipped)
        )
    verb = "would fail" if dry_run else "failed again (dead-lettered again)"
    lines.append(f"  {verb}: {sum(tally.failed.values())}" + _by_reason(tally.failed))
    return "\n".join(lines)
