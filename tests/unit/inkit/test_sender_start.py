"""A sender whose HTTP client cannot be built says so at start instead of hanging (the issue's
INKIT_CA_BUNDLE=/nope.pem left `run` up for ever with /readyz 503), and reports itself dead."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from connector.errors import StartupError
from connector.inkit.client import InkitClient
from connector.inkit.sender import Sender
from connector.observability.metrics import Metrics


def test_a_client_that_cannot_be_built_fails_start_and_the_sender_is_not_alive() -> None:
    def broken_client() -> InkitClient:
        raise FileNotFoundError(2, "No such file or directory")

    sender = Sender(broken_client, Metrics(CollectorRegistry()), retry_max_s=1.0)
    with pytest.raises(StartupError, match="sender could not start"):
        sender.start()
    assert not sender.alive
