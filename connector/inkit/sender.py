"""Sender: runs HTTP deliveries concurrently on an asyncio loop in a background thread, with
retries, a shared 429 throttle, an optional rate limit and an auth circuit breaker."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from connector.errors import (
    AmbiguousSend,
    AuthError,
    InkitUnavailable,
    RateLimited,
    RecordError,
    RejectedError,
    StartupError,
)
from connector.inkit.client import InkitClient
from connector.inkit.outage_log import OutageLog
from connector.inkit.ratelimit import RateControl
from connector.inkit.retry import Backoff
from connector.models import AmbiguousPolicy, InkitRequest, RecordRef
from connector.observability.metrics import Metrics

logger = logging.getLogger(__name__)

AUTH_PROBE_FIRST_S = 5.0
AUTH_PROBE_MAX_S = 60.0


@dataclass(eq=False, slots=True)
class Job:
    """One record on its way to Inkit. ``order_key`` = (topic, partition, user key)."""

    ref: RecordRef
    order_key: Hashable
    request: InkitRequest
    record: Any  # the confluent_kafka.Message, kept for the dead-letter copy
    timestamp_s: float | None
    generation: int
    identity: str | None = None  # for the sent-ledger (kafka/ledger.py); None: not kept
    cancelled: bool = False
    attempts: int = 0  # requests sent so far (set on the sender's loop; read for the gauge)
    # A request of this job may have reached Inkit and no answer was read (an ambiguous error,
    # or cancelled mid-request): its sent-ledger intent must stay open (AMBIGUOUS_SEND_POLICY).
    unanswered: bool = False
    intent: bool = False  # a sent-ledger intent was written for it (see delivery/dispatch.py)
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class ResultKind(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"  # can never succeed: dead-letter it
    CANCELLED = "cancelled"  # abandoned on revoke / shutdown: neither done nor dead-lettered


@dataclass(slots=True)
class Result:
    job: Job
    kind: ResultKind
    status: int | None = None
    error: RecordError | None = None
    finished_at: float = 0.0


class RetryExhausted(RecordError):
    """Transient failures lasted longer than INKIT_RETRY_MAX_SECONDS."""

    reason = "retry_exhausted"
    error_class = "http"

    def __init__(self, last_reason: str, status: int | None, attempts: int) -> None:
        super().__init__(
            f"still failing after {attempts} attempts (last: {last_reason})",
            reason="retry_exhausted",
        )
        self.status = status
        self.last_reason = last_reason


class DeliveryCrashed(RecordError):
    """A delivery raised something no rule classifies (a bug, or a library error we did not
    foresee): the record is dead-lettered with the exception's type, never left without a
    result (which would hold its user's later events, an in-flight slot and the watermark)."""

    reason = "unexpected_error"
    error_class = "internal"

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"delivery raised {type(exc).__name__}", reason="unexpected_error")


class Sender:
    """Delivers jobs on a private event loop thread.

    Contract: ``submit`` and ``cancel`` are thread-safe and never block; results are collected
    with ``drain_results`` (from the consume loop) and ``wakeup`` is set whenever one arrives.
    A job is retried on 408/429/5xx (not 501)/timeouts/connection errors until it succeeds or
    ``retry_max_s`` of failure passed (then FAILED with ``RetryExhausted``). Time spent blocked on
    a refused API key does not count: good events are never dead-lettered for a bad key. A
    failure after which the request may have reached Inkit (``InkitUnavailable.ambiguous``) is
    retried under ``AmbiguousPolicy.RESEND`` and FAILED with ``AmbiguousSend`` under
    ``DEAD_LETTER``.
    """

    def __init__(
        self,
        client_factory: Callable[[], InkitClient],
        metrics: Metrics,
        *,
        retry_max_s: float,
        rate_control: RateControl | None = None,
        backoff: Backoff | None = None,
        auth_probe_first_s: float = AUTH_PROBE_FIRST_S,
        close_client: Callable[[], Coroutine[Any, Any, None]] | None = None,
        ambiguous_policy: AmbiguousPolicy = AmbiguousPolicy.RESEND,
    ) -> None:
        self._client_factory = client_factory
        self._metrics = metrics
        self._retry_max_s = retry_max_s
        self._rate = rate_control
        self._backoff = backoff or Backoff()
        self._auth_probe_first_s = auth_probe_first_s
        self._close_client = close_client
        self._ambiguous = ambiguous_policy
        self._results: deque[Result] = deque()
        self._closing = False  # set on the loop thread when stop() begins
        self.wakeup = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="inkit-sender", daemon=True)
        self._client: InkitClient | None = None
        self._not_before = 0.0  # monotonic time before which nobody sends (shared 429 throttle)
        self._auth_ok: asyncio.Event | None = None
        self._prober: Job | None = None
        self._gate_waiters = 0  # jobs waiting at the auth gate for the prober's verdict
        self.auth_blocked = False  # read by the consume loop; written only on the loop thread
        self._outage = OutageLog()
        self._start_error = "unknown error"

    # -- lifecycle (consume-loop thread) ---------------------------------------------------
    def start(self) -> None:
        ready = threading.Event()
        self._loop.call_soon(ready.set)
        self._thread.start()
        while not ready.wait(0.1):
            if not self._thread.is_alive():  # the client could not be built: say so, not hang
                raise StartupError(f"the Inkit sender could not start ({self._start_error})")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Cancel whatever still runs, close the HTTP client and end the loop thread."""
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            future.result(timeout_s)
        except TimeoutError:
            logger.warning("sender did not stop within %.0fs", timeout_s)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)

    def submit(self, jobs: list[Job]) -> None:
        if jobs:
            self._loop.call_soon_threadsafe(self._spawn, jobs)

    def cancel(self, jobs: list[Job]) -> None:
        for job in jobs:
            job.cancelled = True
        if jobs:
            self._loop.call_soon_threadsafe(self._cancel_tasks, jobs)

    def set_rate_share(self, share: float) -> None:
        """This member's share of the group's rate limit (thread-safe; see group_share.py)."""
        if self._rate is not None:
            self._loop.call_soon_threadsafe(self._rate.set_share, share)

    @property
    def needs_probe(self) -> bool:
        """The key was refused and nobody is probing it any more (the prober and every job
        waiting behind it were abandoned on a revoke or a loss): the consume loop must send one
        job, which probes (issue #13, defect 1: without it the pod never sent again). Read from
        the consume loop; the fields are written on the sender's loop thread."""
        return self.auth_blocked and self._prober is None and self._gate_waiters == 0

    def drain_results(self) -> list[Result]:
        results: list[Result] = []
        self.wakeup.clear()
        while self._results:
            results.append(self._results.popleft())
        return results

    # -- the loop thread -----------------------------------------------------------------
    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._client = self._client_factory()
        except Exception as exc:  # noqa: BLE001 - the thread's top level: start() reports it
            self._start_error = f"{type(exc).__name__}: {exc}"
            return
        self._auth_ok = asyncio.Event()
        self._auth_ok.set()
        self._loop.run_forever()

    async def _shutdown(self) -> None:
        self._closing = True
        tasks = [t for t in asyncio.all_tasks(self._loop) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._close_client is not None:
            await self._close_client()

    def _spawn(self, jobs: list[Job]) -> None:
        for job in jobs:
            if job.cancelled or self._closing:
                self._finish(Result(job, ResultKind.CANCELLED))
                continue
            self._metrics.in_flight.inc()
            job.task = self._loop.create_task(self._deliver(job))

    def _cancel_tasks(self, jobs: list[Job]) -> None:
        for job in jobs:
            if job.task is not None:
                job.task.cancel()

    def _finish(self, result: Result) -> None:
        result.finished_at = time.time()
        self._results.append(result)
        self.wakeup.set()

    async def _deliver(self, job: Job) -> None:
        try:
            result = await self._attempts(job)
        except asyncio.CancelledError:
            result = Result(job, ResultKind.CANCELLED)
        except Exception as exc:  # noqa: BLE001 - every job must end as a result (issue #13)
            if self._closing:
                # The client is being closed under it (shutdown): not the record's fault. It
                # stays uncommitted and its next owner sends it; never a dead letter.
                result = Result(job, ResultKind.CANCELLED)
            else:
                # Only the type: an exception text may quote the request (PII).
                logger.error("delivery of %s raised %s", job.ref, type(exc).__name__)
                result = Result(job, ResultKind.FAILED, error=DeliveryCrashed(exc))
        finally:
            self._metrics.in_flight.dec()
            if self._prober is job and self._auth_ok is not None:
                # The prober was abandoned (revoke, shutdown): let the waiters try; the next one
                # refused becomes the prober. auth_blocked stays set until a request succeeds.
                self._prober = None
                self._auth_ok.set()
        self._finish(result)

    async def _attempts(self, job: Job) -> Result:
        client, auth_ok = self._client, self._auth_ok
        if client is None or auth_ok is None:
            raise RuntimeError("sender used before start()")
        started = time.monotonic()
        blocked_s = 0.0  # time spent waiting out a refused key: not charged to the retry budget
        attempt = 0
        probe_delay = self._auth_probe_first_s
        status_seen: int | None
        while True:
            if not auth_ok.is_set() and self._prober is not job:
                wait_started = time.monotonic()
                self._gate_waiters += 1
                try:
                    await auth_ok.wait()
                finally:
                    self._gate_waiters -= 1
                blocked_s += time.monotonic() - wait_started
            await self._respect_throttle()
            if self._rate is not None:
                await self._rate.acquire()
            attempt += 1
            job.attempts = attempt
            job.unanswered = True  # until an answer (or a failure that sent nothing) says more
            try:
                status = await client.send(job.request)
            except AuthError as exc:
                job.unanswered = False
                # Inkit refused the key. One job (the prober) re-sends itself periodically;
                # every other job waits at the gate above until the key is accepted again.
                if self._prober is None:
                    self._block(job, exc.status)
                if self._prober is job:
                    await asyncio.sleep(probe_delay)
                    blocked_s += probe_delay
                    probe_delay = min(probe_delay * 2, AUTH_PROBE_MAX_S)
                attempt -= 1
                continue
            except RateLimited as exc:
                job.unanswered = False
                self._unblock(job)
                delay = self._backoff.delay(attempt, exc.retry_after)
                if self._rate is not None and self._rate.adaptive:
                    # The adaptive rate steps down instead: pausing the whole client for every
                    # 429 as well would cost far more throughput than the 429 signals.
                    self._rate.on_rate_limited()
                else:
                    self._not_before = max(self._not_before, time.monotonic() + delay)
                retry_reason, status_seen = "rate_limited", 429
            except InkitUnavailable as exc:
                job.unanswered = exc.ambiguous
                self._unblock(job)
                if exc.ambiguous:
                    if self._ambiguous is AmbiguousPolicy.DEAD_LETTER:
                        self._metrics.ambiguous_sends.labels(self._ambiguous, "dead_lettered").inc()
                        self._outage.failed(exc.reason, exc.status, _fields(job))
                        return Result(job, ResultKind.FAILED, error=AmbiguousSend(exc.reason))
                    self._metrics.ambiguous_sends.labels(self._ambiguous, "retried").inc()
                delay = self._backoff.delay(attempt, exc.retry_after)
                retry_reason, status_seen = exc.reason, exc.status
            except RejectedError as exc:
                job.unanswered = False
                self._unblock(job)
                self._outage.answered()
                return Result(job, ResultKind.FAILED, status=exc.status, error=exc)
            else:
                job.unanswered = False
                self._unblock(job)
                self._outage.answered()
                if self._rate is not None:
                    self._rate.on_delivered()
                return Result(job, ResultKind.DELIVERED, status=status)
            self._outage.failed(retry_reason, status_seen, _fields(job))
            failing_s = time.monotonic() - started - blocked_s
            if failing_s + delay > self._retry_max_s:
                error = RetryExhausted(retry_reason, status_seen, attempt)
                return Result(job, ResultKind.FAILED, status=status_seen, error=error)
            self._metrics.retries.labels(retry_reason).inc()
            logger.debug(
                "retrying %s in %.2fs (%s)",
                job.ref,
                delay,
                retry_reason,
                extra={**_fields(job), "reason": retry_reason},
            )
            await asyncio.sleep(delay)

    def _block(self, prober: Job, status: int) -> None:
        self._prober = prober
        if self._auth_ok is not None:
            self._auth_ok.clear()
        if not self.auth_blocked:
            self.auth_blocked = True
            self._metrics.auth_blocked.set(1)
            logger.error(
                "Inkit refused the API key (HTTP %s): delivery paused, probing periodically "
                "until the key is accepted. Check INKIT_API_KEY.",
                status,
            )

    def _unblock(self, job: Job) -> None:
        """Any answer but 401/403 means the key works again."""
        if not self.auth_blocked or (self._prober is not None and self._prober is not job):
            return
        self._prober = None
        self.auth_blocked = False
        self._metrics.auth_blocked.set(0)
        if self._auth_ok is not None:
            self._auth_ok.set()
        logger.info("Inkit accepts the API key again: delivery resumed")

    async def _respect_throttle(self) -> None:
        while (wait := self._not_before - time.monotonic()) > 0:
            await asyncio.sleep(wait)


def _fields(job: Job) -> dict[str, Any]:
    """JSON log fields of a job's record (LOG_FORMAT=json): where it is, never what it holds."""
    return {"topic": job.ref.topic, "partition": job.ref.partition, "offset": job.ref.offset}
