"""A local, fault-injecting stand-in for Inkit's HTTP API (legacy webhook and /v1/render).

protocol.py: paths, fault settings, recorded requests, Inkit's documented validation;
core.py: the simulated Inkit; server.py: the asyncio HTTP server and ``InkitSimulator``;
client.py: ``SimulatorClient`` and the command line
(``python -m connector.testing.inkit_simulator``).
"""

from connector.testing.inkit_simulator.client import SimulatorClient, main
from connector.testing.inkit_simulator.protocol import (
    ADDRESS_FIELDS,
    ADDRESS_LINE_MAX_CHARS,
    API_KEY_HEADER,
    CONTROL_PREFIX,
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    RENDER_PATH,
    WEBHOOK_PATH,
    Faults,
    RecordedRequest,
    validate_fields,
)
from connector.testing.inkit_simulator.server import InkitSimulator

__all__ = [
    "ADDRESS_FIELDS",
    "ADDRESS_LINE_MAX_CHARS",
    "API_KEY_HEADER",
    "CONTROL_PREFIX",
    "MAX_BODY_BYTES",
    "MAX_HEAD_BYTES",
    "RENDER_PATH",
    "WEBHOOK_PATH",
    "Faults",
    "InkitSimulator",
    "RecordedRequest",
    "SimulatorClient",
    "main",
    "validate_fields",
]
