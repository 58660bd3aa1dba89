"""Load test of the Inkit simulator: requests/s at 0 ms, CPU per request, 1,000 slow connections."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from connector.testing.inkit_simulator import WEBHOOK_PATH, Faults, SimulatorClient

API_KEY = "bench-key"
BODY = json.dumps(
    {
        "api_token": API_KEY,
        "template_id": "tmpl_bench",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "address_line_1": "1 Main St",
        "address_city": "Springfield",
        "address_state": "IL",
        "address_zip": "62701",
        "address_country": "US",
    }
).encode()
REQUEST = (
    f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    f"Content-Length: {len(BODY)}\r\n\r\n"
).encode() + BODY
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Tally:
    ok: int = 0
    errors: int = 0
    latencies_s: list[float] = field(default_factory=list)


class _Client(asyncio.Protocol):
    """A keep-alive client that sends one request, waits for its response, and repeats."""

    def __init__(self, tally: Tally, deadline: float, done: asyncio.Future[None]) -> None:
        self._tally = tally
        self._deadline = deadline
        self._done = done
        self._buf = b""
        self._sent_at = 0.0
        self._transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        self._sent_at = time.perf_counter()
        self._transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            match = re.search(rb"content-length: *(\d+)", self._buf[:end], re.IGNORECASE)
            length = int(match.group(1)) if match else 0
            if len(self._buf) < end + 4 + length:
                return
            ok = self._buf.startswith(b"HTTP/1.1 202")
            self._buf = self._buf[end + 4 + length :]
            now = time.perf_counter()
            if ok:
                self._tally.ok += 1
                self._tally.latencies_s.append(now - self._sent_at)
            else:
                self._tally.errors += 1
            if now >= self._deadline:
                self._transport.close()
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result(None)


async def run_load(port: int, connections: int, duration_s: float) -> tuple[Tally, float]:
    loop = asyncio.get_running_loop()
    tally = Tally()
    deadline = time.perf_counter() + duration_s
    waiters = []
    started = time.perf_counter()
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        await loop.create_connection(
            lambda d=done: _Client(tally, deadline, d),  # type: ignore[misc]
            "127.0.0.1",
            port,
        )
        waiters.append(done)
    await asyncio.gather(*waiters)
    return tally, time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def start_simulator() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "connector.testing.inkit_simulator"),
            *("--port", "0", "--api-key", API_KEY, "--max-records", "10000"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"simulator did not start: {line!r}")
    return proc, int(match.group(1))


def report(name: str, tally: Tally, elapsed_s: float, sim_cpu_s: float | None) -> None:
    rate = tally.ok / elapsed_s
    lat = sorted(tally.latencies_s)
    p50 = statistics.median(lat) * 1000 if lat else float("nan")
    p99 = lat[int(len(lat) * 0.99)] * 1000 if lat else float("nan")
    line = f"{name}: {rate:,.0f} requests/s ({tally.ok} ok, {tally.errors} errors"
    line += f" in {elapsed_s:.1f}s), latency p50 {p50:.1f} ms p99 {p99:.1f} ms"
    if sim_cpu_s is not None and tally.ok:
        line += f", simulator CPU {sim_cpu_s / tally.ok * 1e6:.0f} us/request"
    print(line, flush=True)


def run_wrk(port: int, connections: int, duration_s: float) -> None:
    script = f"wrk.method = 'POST'\nwrk.body = {json.dumps(BODY.decode())}\n"
    script += "wrk.headers['Content-Type'] = 'application/json'\n"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            [
                *("wrk", "-t1", f"-c{connections}", f"-d{int(duration_s)}s", "-s", f.name),
                f"http://127.0.0.1:{port}{WEBHOOK_PATH}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    print(
        f"wrk -t1 -c{connections}: {float(rps.group(1)) if rps else 0:,.0f} requests/s"
        f" (non-2xx: {non2xx.group(1) if non2xx else 0})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--slow-connections", type=int, default=1000)
    parser.add_argument("--slow-latency-ms", type=float, default=50.0)
    parser.add_argument("--no-wrk", action="store_true", help="skip wrk even if installed")
    args = parser.parse_args()

    proc, port = start_simulator()
    control = SimulatorClient(f"http://127.0.0.1:{port}")
    try:
        control.wait_ready()
        before = cpu_seconds(proc.pid)
        tally, elapsed = asyncio.run(run_load(port, args.connections, args.duration_s))
        report(
            f"asyncio load, {args.connections} keep-alive connections, 0 ms",
            tally,
            elapsed,
            cpu_seconds(proc.pid) - before,
        )
        if shutil.which("wrk") and not args.no_wrk:
            # wrk (C) costs less per request than the Python generator, so it shows the
            # simulator's own ceiling: one core, since the simulator is one process.
            before = cpu_seconds(proc.pid)
            served = control.stats()["total"]
            run_wrk(port, args.connections, args.duration_s)
            served = control.stats()["total"] - served
            used = cpu_seconds(proc.pid) - before
            print(f"  simulator CPU under wrk: {used / served * 1e6:.0f} us/request", flush=True)

        control.set_faults(Faults(latency_ms=args.slow_latency_ms))
        before = cpu_seconds(proc.pid)
        tally, elapsed = asyncio.run(run_load(port, args.slow_connections, args.duration_s))
        report(
            f"asyncio load, {args.slow_connections} concurrent connections,"
            f" {args.slow_latency_ms:g} ms latency",
            tally,
            elapsed,
            cpu_seconds(proc.pid) - before,
        )
        print("simulator stats:", control.stats(), flush=True)
    finally:
        control.close()
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
