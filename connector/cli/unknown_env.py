"""A warning for environment variables that look like ours but are not (`INKIT_MAX_INFLIGHT`):
a misspelled setting is otherwise ignored silently and its default used."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import TextIO

from connector.settings import KAFKA_PASSTHROUGH_PREFIX, SETTINGS

# Prefixes of the connector's own variables: a name with one of them is ours or a mistake.
OUR_PREFIXES = ("INKIT_", "KAFKA_", "SCHEMA_REGISTRY_", "BREAKER_")
# Variables with those prefixes that belong to other software and are not mistakes: Kafka's
# own scripts, the test tooling's cache, `make kafka-up`'s port.
FOREIGN = frozenset(
    {
        "KAFKA_HEAP_OPTS",
        "KAFKA_OPTS",
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "KAFKA_LOG4J_OPTS",
        "KAFKA_HOME",
        "INKIT_CONNECTOR_CACHE",
    }
)
# Kubernetes injects these for every Service in the namespace (a Service `kafka` gives
# KAFKA_SERVICE_HOST, KAFKA_PORT, KAFKA_PORT_9092_TCP_ADDR, ...): never a user's typo.
SERVICE_LINK = re.compile(r"_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)\w*)?)$")


def unknown_variables(env: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """(name, closest known name or None) for every unknown variable that looks like ours."""
    known = [s.name for s in SETTINGS if not s.name.endswith(">")]
    found = []
    for name in sorted(env):
        if name in known or name in FOREIGN or name.startswith(KAFKA_PASSTHROUGH_PREFIX):
            continue
        if SERVICE_LINK.search(name):
            continue
        if not name.startswith(OUR_PREFIXES):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        found.append((name, close[0] if close else None))
    return found


def warn_unknown_variables(env: Mapping[str, str], out: TextIO) -> None:
    """One line on ``out`` per unknown variable (the name only, never its value)."""
    for name, close in unknown_variables(env):
        hint = f"; did you mean {close}?" if close else ""
        print(f"inkit-connector: warning: {name} is not a setting and is ignored{hint}", file=out)
