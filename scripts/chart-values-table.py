#!/usr/bin/env python3
"""Generate the values table of helm/inkit-connector/README.md from values.yaml's `# --` comments.

Usage: chart-values-table.py [--check]   (--check: exit 1 when README.md is out of date)

helm-docs is not installable here, so this does its job for our chart: every key with a `# --`
comment becomes a row (key, type, default, description); `# -- (type) text` names the type where
the default (often null) does not show it. A key without a comment is allowed only
inside a documented parent (e.g. `resources.requests`), whose default shows it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent.parent / "helm" / "inkit-connector"
START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"
_TYPE_HINT = re.compile(r"^\((?P<type>[^)]+)\)\s*")
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/]+):(?:\s|$)")


def documented_keys(text: str) -> list[tuple[str, str]]:
    """(dotted path, description) for each key that carries a `# --` comment, in file order."""
    rows: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the open mapping keys
    comment: list[str] | None = None
    list_indent: int | None = None  # inside a list value: keys there are not value keys
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip(" "))
        if stripped.startswith("# --"):
            comment = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if comment is not None:
                comment.append(stripped[1:].strip())
            continue
        if not stripped:
            continue
        if list_indent is not None and indent >= list_indent:
            continue
        list_indent = None
        if stripped.startswith("- "):
            list_indent = indent
            comment = None
            continue
        match = _KEY.match(line)
        if not match:
            comment = None
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if comment is not None:
            rows.append((".".join(k for _, k in stack), " ".join(comment)))
        comment = None
    return rows


def all_paths(values: Any, prefix: str = "") -> list[str]:
    """Every mapping key of the values, as dotted paths (lists are leaves)."""
    paths: list[str] = []
    if isinstance(values, dict):
        for key, value in values.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            paths.append(path)
            paths.extend(all_paths(value, path))
    return paths


def lookup(values: Any, path: str) -> Any:
    for part in path.split("."):
        values = values[part]
    return values


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}[
        type(value)
    ]


def table(values_text: str) -> str:
    values = yaml.safe_load(values_text)
    rows = documented_keys(values_text)
    documented = {path for path, _ in rows}
    for path in all_paths(values):
        parts = path.split(".")
        if not any(".".join(parts[:i]) in documented for i in range(1, len(parts) + 1)):
            raise SystemExit(f"values.yaml: {path} has no '# --' comment (nor has a parent)")
    lines = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for path, description in rows:
        value = lookup(values, path)
        parent = isinstance(value, dict) and any(p.startswith(path + ".") for p in documented)
        default = "" if parent else "`" + json.dumps(value, separators=(", ", ": ")) + "`"
        kind = "block" if parent else type_name(value)
        hint = _TYPE_HINT.match(description)
        if hint:  # helm-docs' "# -- (type) description"
            kind, description = hint["type"], description[hint.end() :]
        text = description.replace("|", "\\|")
        lines.append(f"| `{path}` | {kind} | {default} | {text} |")
    return "\n".join(lines)


def render_readme(readme: str, values_text: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table(values_text)}\n{END}{tail}"


def main(argv: list[str]) -> int:
    readme_path = CHART / "README.md"
    readme = readme_path.read_text()
    new = render_readme(readme, (CHART / "values.yaml").read_text())
    if "--check" in argv:
        if new != readme:
            sys.stderr.write(
                "helm/inkit-connector/README.md is out of date: run scripts/chart-values-table.py\n"
            )
            return 1
        return 0
    readme_path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
