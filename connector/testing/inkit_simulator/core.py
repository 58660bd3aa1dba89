"""The simulated Inkit: plans a fault per request, validates and answers like Inkit, records
what it received, serves the /_sim/ control API."""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connector.testing.inkit_simulator.protocol import (
    _BASE62,
    _NO_PLAN,
    API_KEY_HEADER,
    CONTROL_PREFIX,
    RENDER_PATH,
    WEBHOOK_PATH,
    Faults,
    RecordedRequest,
    _error,
    _Fault,
    _json_bytes,
    _Plan,
    _Request,
    validate_fields,
)

SILENT_KEPT = 100_000  # bodies of dropped and hung requests kept for tests


class _SimCore:
    """All simulator state and the request logic, free of I/O. Methods are thread-safe: the server
    calls them from its loop thread while tests call them from theirs."""

    def __init__(
        self,
        api_key: str,
        faults: Faults,
        seed: int | None,
        max_records: int | None,
        clock: Callable[[], float] = time.monotonic,  # the rate limit's window
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.api_key = api_key
        self.faults = faults
        self._rng = random.Random(seed)
        # Ids come from their own stream so that fault draws don't depend on how many renders ran.
        self._id_rng = random.Random(None if seed is None else f"{seed}/render-ids")
        self._max_records = max_records
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._records: list[RecordedRequest] = []
            self._first_seq = 1
            self._next_seq = 1
            self._by_status: dict[int, int] = {}
            self._total = self._dropped = self._hung = 0
            self._silent: list[tuple[str, bytes]] = []  # (fault, body) of requests not answered
            self._passed: deque[float] = deque()  # monotonic times of requests within the limit

    def plan(self, req: _Request) -> _Plan:
        if req.error is not None or req.target.startswith(CONTROL_PREFIX):
            return _NO_PLAN  # control calls are never delayed, faulted or counted
        f = self.faults
        delay_ms = f.latency_ms
        if f.latency_max_ms is not None:
            delay_ms = self._rng.uniform(f.latency_ms, f.latency_max_ms)
        u = self._rng.random()
        fault: _Fault = "none"
        rates: tuple[tuple[_Fault, float], ...] = (
            ("drop", f.rate_drop),
            ("hang", f.rate_hang),
            ("429", f.rate_429),
            ("5xx", f.rate_5xx),
        )
        for name, rate in rates:
            if u < rate:
                fault = name
                break
            u -= rate
        status_5xx = self._rng.choice(f.statuses_5xx) if fault == "5xx" else 500
        return _Plan(delay_ms / 1000.0, fault, status_5xx)

    def count_silent(self, fault: _Fault, body: bytes = b"") -> None:
        with self._lock:
            self._total += 1
            if len(self._silent) < SILENT_KEPT:
                self._silent.append((fault, body))
            if fault == "drop":
                self._dropped += 1
            else:
                self._hung += 1

    def respond(self, req: _Request, plan: _Plan) -> tuple[int, bytes, str]:
        """Status, JSON body and extra header lines for one request whose delay has elapsed."""
        path = req.target.split("?", 1)[0]
        if req.error is None and path.startswith(CONTROL_PREFIX):
            return self._control(req, path)
        extra = ""
        faults = self.faults  # one snapshot: another thread may swap it
        if req.error is not None:
            status, body = _error(req.error.status, str(req.error))
        elif faults.outage_active(time.time()):
            status, body = _error(faults.outage_status or 503, "simulated outage")
        elif plan.fault == "429" or (
            faults.max_rate_per_s is not None and self._over_limit(faults.max_rate_per_s)
        ):
            status, body = _error(429, "rate limit exceeded")
            extra = f"Retry-After: {faults.retry_after_s:g}\r\n"
        elif plan.fault == "5xx":
            status, body = _error(plan.status_5xx, "simulated server error")
        else:
            status, body = self._inkit(req, path)
        with self._lock:
            self._total += 1
            self._by_status[status] = self._by_status.get(status, 0) + 1
        return status, body, extra

    def _over_limit(self, max_per_s: float) -> bool:
        """Sliding one-second window: True when ``max_per_s`` requests passed in the last second;
        otherwise count this one as passed."""
        now = self._clock()
        with self._lock:
            while self._passed and self._passed[0] <= now - 1.0:
                self._passed.popleft()
            if len(self._passed) >= max_per_s:
                return True
            self._passed.append(now)
            return False

    def _inkit(self, req: _Request, path: str) -> tuple[int, bytes]:
        if path not in (WEBHOOK_PATH, RENDER_PATH):
            return _error(404, "not found")
        if req.method != "POST":
            return _error(405, "method not allowed")
        if (
            path == RENDER_PATH
            and req.headers.get(API_KEY_HEADER, b"").decode("latin-1") != self.api_key
        ):
            return _error(401, "API key not authorized")
        try:
            payload = json.loads(req.body)
        except ValueError:
            return _error(400, "body is not valid JSON")
        if not isinstance(payload, dict):
            return _error(400, "body must be a JSON object")
        if path == WEBHOOK_PATH and payload.pop("api_token", None) != self.api_key:
            return _error(401, "API key not authorized")
        template_id = payload.get("template_id")
        if not isinstance(template_id, str) or not template_id:
            return _error(400, "template_id: required non-empty string")
        if template_id in self.faults.rejected_templates:
            return _error(422, "template_id: no such template")
        fields: Any = payload
        if path == RENDER_PATH:
            fields = payload.get("merge_parameters")
            if not isinstance(fields, dict):
                return _error(400, "merge_parameters: required object")
            if not isinstance(payload.get("destinations", {}), dict):
                return _error(400, "destinations: must be an object")
        problem = validate_fields(fields)
        if problem is not None:
            return _error(422, problem)
        render_id = None
        if path == RENDER_PATH:
            render_id = "rend_" + "".join(self._id_rng.choices(_BASE62, k=22))
        with self._lock:
            self._records.append(
                RecordedRequest(self._next_seq, req.arrival, path, payload, render_id)
            )
            self._next_seq += 1
            if self._max_records is not None and len(self._records) > self._max_records * 2:
                # Trim in bulk so that appends stay O(1) amortised; the tail is what tests page.
                cut = len(self._records) - self._max_records
                del self._records[:cut]
                self._first_seq += cut
        if render_id is not None:
            return 200, _json_bytes({"id": render_id, "template_id": template_id})
        return 202, b'{"status":"accepted"}'

    def unanswered(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self._silent)

    def requests(self, since: int = 0, limit: int | None = None) -> list[RecordedRequest]:
        with self._lock:
            start = max(0, since + 1 - self._first_seq)
            end = None if limit is None else start + limit
            return self._records[start:end]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self._total,
                "accepted": sum(n for s, n in self._by_status.items() if 200 <= s < 300),
                "by_status": dict(sorted(self._by_status.items())),
                "dropped": self._dropped,
                "hung": self._hung,
                "recorded": self._next_seq - 1,
            }

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults

    def set_outage(self, status: int | None, seconds: float | None) -> None:
        until = None if seconds is None else time.time() + seconds
        with self._lock:  # read-modify-write: don't lose a concurrent set_faults
            self.faults = dataclasses.replace(self.faults, outage_status=status, outage_until=until)

    def _control(self, req: _Request, path: str) -> tuple[int, bytes, str]:
        try:
            status, obj = self._control_obj(req, path)
        except (ValueError, TypeError, KeyError) as exc:
            status, obj = 400, {"error": str(exc), "code": 400}
        return status, _json_bytes(obj), ""

    def _control_obj(self, req: _Request, path: str) -> tuple[int, Any]:
        route = (req.method, path[len(CONTROL_PREFIX) :])
        body: Any = json.loads(req.body) if req.body else {}
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        if route == ("GET", "requests"):
            query = parse_qs(urlsplit(req.target).query)
            since = int(query.get("since", ["0"])[0])
            limit = int(query["limit"][0]) if "limit" in query else None
            return 200, [dataclasses.asdict(r) for r in self.requests(since, limit)]
        if route == ("GET", "stats"):
            stats = self.stats()
            stats["by_status"] = {str(k): v for k, v in stats["by_status"].items()}
            return 200, stats
        if route == ("POST", "reset"):
            self.reset()
            return 200, {"status": "reset"}
        if route == ("GET", "faults"):
            return 200, self.faults.to_dict()
        if route == ("POST", "faults"):
            self.set_faults(Faults.from_dict(body))
            return 200, self.faults.to_dict()
        if route == ("POST", "outage"):
            self.set_outage(body.get("status"), body.get("seconds"))
            return 200, self.faults.to_dict()
        if route == ("POST", "api-key"):
            key = body["api_key"]
            if not isinstance(key, str) or not key:
                raise ValueError("api_key must be a non-empty string")
            self.api_key = key
            return 200, {"status": "ok"}
        return 404, {"error": "unknown control endpoint", "code": 404}
