"""SimulatorClient (the /_sim/ control API over HTTP) and the command line:
python -m connector.testing.inkit_simulator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

import httpx

from connector.testing.inkit_simulator.core import _SimCore
from connector.testing.inkit_simulator.protocol import CONTROL_PREFIX, Faults, RecordedRequest
from connector.testing.inkit_simulator.server import _Server

logger = logging.getLogger(__name__)


class SimulatorClient:
    """Drives a simulator running elsewhere (another process) through its `/_sim/` HTTP API.

    Methods mirror `InkitSimulator`'s; they block and raise `httpx.HTTPError` on failure.
    """

    def __init__(self, base_url: str, *, timeout_s: float = 5.0) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/") + CONTROL_PREFIX, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SimulatorClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Block until the simulator answers, e.g. right after spawning its process."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.stats()
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def requests(self, since: int = 0, limit: int | None = None) -> list[RecordedRequest]:
        params: dict[str, int] = {"since": since}
        if limit is not None:
            params["limit"] = limit
        return [RecordedRequest.from_dict(r) for r in self._call("GET", "requests", params=params)]

    def reset(self) -> None:
        self._call("POST", "reset")

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._call("GET", "stats")
        stats["by_status"] = {int(k): v for k, v in stats["by_status"].items()}
        return stats

    def faults(self) -> Faults:
        return Faults.from_dict(self._call("GET", "faults"))

    def set_faults(self, faults: Faults) -> None:
        self._call("POST", "faults", json=faults.to_dict())

    def outage(self, status: int, seconds: float | None = None) -> None:
        self._call("POST", "outage", json={"status": status, "seconds": seconds})

    def clear_outage(self) -> None:
        self._call("POST", "outage", json={"status": None, "seconds": None})

    def set_api_key(self, key: str) -> None:
        self._call("POST", "api-key", json={"api_key": key})


async def _serve_forever(host: str, port: int, core: _SimCore) -> None:
    server = _Server(core)
    bound = await server.open(host, port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    logger.info("inkit simulator listening on http://%s:%d", host, bound)
    await stopping.wait()
    await server.close()
    logger.info("inkit simulator stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--api-key", default="test-api-key")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--latency-max-ms", type=float, default=None)
    parser.add_argument("--rate-429", type=float, default=0.0)
    parser.add_argument("--retry-after-s", type=float, default=1.0)
    parser.add_argument("--rate-5xx", type=float, default=0.0)
    parser.add_argument("--rate-hang", type=float, default=0.0)
    parser.add_argument("--hang-s", type=float, default=30.0)
    parser.add_argument("--rate-drop", type=float, default=0.0)
    parser.add_argument(
        "--max-rate", type=float, default=None, help="answer 429 above N requests/s"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--max-records", type=int, default=None, help="keep only the newest N")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    faults = Faults(
        latency_ms=args.latency_ms,
        latency_max_ms=args.latency_max_ms,
        rate_429=args.rate_429,
        retry_after_s=args.retry_after_s,
        rate_5xx=args.rate_5xx,
        rate_hang=args.rate_hang,
        hang_s=args.hang_s,
        rate_drop=args.rate_drop,
        max_rate_per_s=args.max_rate,
    )
    core = _SimCore(args.api_key, faults, args.seed, args.max_records)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.host, args.port, core))
