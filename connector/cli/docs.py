"""The README's configuration and metrics tables, generated from ``SETTINGS`` and ``Metrics`` so
that the documentation cannot drift from the code (`python -m connector.cli.docs --check`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from connector.observability.metrics import Metrics
from connector.settings import SETTINGS

README = Path(__file__).resolve().parents[2] / "README.md"


def config_table() -> str:
    rows = ["| Variable | Default | What it does |", "|---|---|---|"]
    for s in SETTINGS:
        default = (
            s.default if s.default.startswith(("`", "(")) or not s.default else f"`{s.default}`"
        )
        rows.append(f"| `{s.name}` | {default} | {s.help} |")
    return "\n".join(rows)


def metrics_table() -> str:
    rows = ["| Metric | Type | Labels | Meaning |", "|---|---|---|---|"]
    metrics = Metrics(CollectorRegistry())
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        # prometheus-client keeps these as private attributes; they are stable across versions.
        kind = metric._type
        name = metric._name + ("_total" if kind == "counter" else "")
        labels = ", ".join(f"`{label}`" for label in metric._labelnames) or "—"
        rows.append(f"| `{name}` | {kind} | {labels} | {metric._documentation} |")
    return "\n".join(rows)


SECTIONS = {"config-table": config_table, "metrics-table": metrics_table}


def render(text: str) -> str:
    for name, build in SECTIONS.items():
        start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
        head, found, rest = text.partition(start)
        _, found_end, tail = rest.partition(end)
        if not found or not found_end:
            raise SystemExit(f"README.md has no {start.strip()} ... {end} markers")
        text = head + start + build() + "\n" + end + tail
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is stale")
    args = parser.parse_args(argv)
    current = README.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if wanted != current:
            sys.stderr.write("README.md tables are stale: run `python -m connector.cli.docs`\n")
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
