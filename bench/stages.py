"""CPU per event by stage, from py-spy's collapsed stacks of one pipeline run.

py-spy (``record --format raw``, every thread, on-CPU samples only: a thread blocked in a
syscall or waiting for the GIL is idle and not sampled) writes one line per distinct stack,
``frame;frame;...;leaf COUNT`` with frames as ``Func (file:line)``, root first. Each sample is
assigned to one stage; a stage's CPU milliseconds per event are its share of the samples times
the process's measured CPU per event:

    python bench/stages.py PROFILE.txt --cpu-ms-per-event 1.02 [--top 15]

``pipeline_bench.py --stages`` runs py-spy on every connector and floor run and adds this
breakdown to each result (``stages_ms_per_event`` in the JSON, a table after the summary).

Stages (the first rule that matches a sample wins):
    metrics   any prometheus_client frame (a metric update, wherever it is made)
    logging   any frame of the logging package
    http      under InkitClient.send / httpx / httpcore / h11 (the HTTP client's own work)
    decode    the deepest connector frame is in events/decoding, avro, sniff
    map       ... in the rest of events/ (mapping, segment, traits, address, shape)
    order     ... delivery/ordering.py (the per-user scheduler)
    offsets   ... delivery/offsets.py, commits.py (watermarks and commits)
    ledger    ... kafka/ledger.py (the sent-ledger: lookup, record, acks)
    results   ... delivery/results.py (a result becomes a done offset)
    hand-off  ... inkit/sender.py, delivery/dispatch.py (jobs to the sender loop and back)
    poll      the leaf frame is the consume loop itself (processor.py: librdkafka's consume()
              and the producers' poll(), C code that py-spy shows as the calling line)
    loop      ... other delivery/ modules (intake, flow control, handoffs, the step itself)
    asyncio   no connector frame, asyncio's own (the sender's event loop: selector, callbacks)
    other     anything else (interpreter start, the floor's own code, threading)
librdkafka's own threads (fetch, broker I/O) are not Python and never sampled: their CPU is
spread over the stages in proportion. A stage's figure is an estimate (about +-1 point of share
at 1,500 samples): good for "where did a regression come from", not for its third digit.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

STAGES = (
    "poll",
    "decode",
    "map",
    "order",
    "hand-off",
    "http",
    "asyncio",
    "results",
    "offsets",
    "ledger",
    "metrics",
    "logging",
    "loop",
    "other",
)
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")
_HTTP = ("httpx/", "httpcore/", "h11/", "anyio/", "connector/inkit/client.py")
_LOOP_ROOTS = ("Sender._run_loop ",)
_IDLE_LEAVES = (
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
    "EpollSelector.select (selectors.py",
    "_PollLikeSelector.select (selectors.py",
)
_BY_MODULE = (
    (
        ("connector/events/decoding.py", "connector/events/avro.py", "connector/events/sniff.py"),
        "decode",
    ),
    (("connector/events/",), "map"),
    (("connector/delivery/ordering.py",), "order"),
    (("connector/delivery/offsets.py", "connector/delivery/commits.py"), "offsets"),
    (("connector/kafka/ledger",), "ledger"),
    (("connector/delivery/results.py",), "results"),
    (("connector/inkit/sender.py", "connector/delivery/dispatch.py"), "hand-off"),
    (("connector/delivery/", "connector/kafka/", "connector/inkit/"), "loop"),
)


def parse(path: Path) -> Counter[tuple[str, ...]]:
    """py-spy raw output: stacks (root first, each frame 'Func (file:line)') and counts."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def _file(frame: str) -> str:
    match = _FRAME.match(frame)
    return match.group("file") if match else frame


def stage_of(stack: tuple[str, ...]) -> str:
    files = [_file(frame) for frame in stack]
    if any("prometheus_client/" in f for f in files):
        return "metrics"
    if any(f.startswith("logging/") for f in files):
        return "logging"
    if any(f.startswith(_HTTP) for f in files):
        return "http"
    leaf = files[-1] if files else ""
    if leaf == "connector/delivery/processor.py":
        return "poll"
    for frame, f in zip(reversed(stack), reversed(files), strict=True):
        if frame.startswith(_LOOP_ROOTS):
            continue  # the sender thread's root: what runs under it is asyncio's or below
        for prefixes, stage in _BY_MODULE:
            if f.startswith(prefixes):
                return stage
        if f.startswith("connector/"):
            return "loop"
    if any(f.startswith("asyncio/") for f in files):
        return "asyncio"
    return "other"


def is_idle(stack: tuple[str, ...]) -> bool:
    """A thread blocked in a wait py-spy still reports as active (a lock or condition wait with
    a timeout, the selector's epoll_wait): no CPU, left out."""
    return bool(stack) and stack[-1].startswith(_IDLE_LEAVES)


def by_stage(stacks: Counter[tuple[str, ...]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for stack, count in stacks.items():
        if not is_idle(stack):
            out[stage_of(stack)] += count
    return out


def top_frames(stacks: Counter[tuple[str, ...]], n: int = 15) -> list[tuple[str, int, int]]:
    """(frame, self samples, inclusive samples), by self samples."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for stack, count in stacks.items():
        if not stack or is_idle(stack):
            continue
        own[stack[-1]] += count
        for frame in set(stack):
            incl[frame] += count
    return [(frame, count, incl[frame]) for frame, count in own.most_common(n)]


def stage_ms_per_event(
    stacks: Counter[tuple[str, ...]], cpu_ms_per_event: float
) -> dict[str, float]:
    """Each stage's CPU milliseconds per delivered event: its share of the samples times the
    process's measured CPU per event."""
    counts = by_stage(stacks)
    total = sum(counts.values())
    if not total:
        return {}
    return {s: cpu_ms_per_event * counts.get(s, 0) / total for s in STAGES}


def report(path: Path, cpu_ms_per_event: float, top: int = 15) -> str:
    stacks = parse(path)
    per_event = stage_ms_per_event(stacks, cpu_ms_per_event)
    counts = by_stage(stacks)
    total = sum(counts.values()) or 1
    lines = [f"{path.name}: {total} on-CPU samples, {cpu_ms_per_event:.3f} CPU ms / event", ""]
    lines += ["| stage | samples | share | CPU ms / event |", "|---|---|---|---|"]
    for stage in STAGES:
        lines.append(
            f"| {stage} | {counts.get(stage, 0)} | {100 * counts.get(stage, 0) / total:.1f} % "
            f"| {per_event.get(stage, 0.0):.3f} |"
        )
    if top:
        lines += ["", "| self | inclusive | frame |", "|---|---|---|"]
        for frame, own, incl in top_frames(stacks, top):
            lines.append(f"| {100 * own / total:.1f} % | {100 * incl / total:.1f} % | `{frame}` |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--cpu-ms-per-event", type=float, required=True, help="as measured")
    parser.add_argument("--top", type=int, default=15, help="frames by self samples")
    args = parser.parse_args()
    for path in args.profiles:
        print(report(path, args.cpu_ms_per_event, args.top) + "\n")


if __name__ == "__main__":
    main()
