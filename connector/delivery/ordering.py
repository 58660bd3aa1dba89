"""KeyedScheduler: releases jobs concurrently across users but strictly in order within one user."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar


class Keyed(Protocol):
    @property
    def order_key(self) -> Hashable: ...


J = TypeVar("J", bound=Keyed)


class KeyedScheduler(Generic[J]):
    """Holds jobs that may not start yet because an earlier job of the same key is unfinished.

    Contract: ``add`` jobs in offset order; ``take`` returns jobs whose key has nothing earlier
    outstanding; call ``done`` when a taken job finished, which releases the key's next job.
    A key is active from the moment its head job is ready until its last job is done, so two
    jobs of one key are never out at once. Not thread-safe: the consume loop owns it.
    """

    def __init__(self) -> None:
        self._ready: deque[J] = deque()
        self._waiting: dict[Hashable, deque[J]] = {}
        self._active: set[Hashable] = set()

    def add(self, job: J) -> None:
        key = job.order_key
        if key in self._active:
            self._waiting.setdefault(key, deque()).append(job)
        else:
            self._active.add(key)
            self._ready.append(job)

    def take(self, limit: int, where: Callable[[J], bool] | None = None) -> list[J]:
        """Up to ``limit`` jobs that may start now, oldest first; with ``where``, only the jobs
        it accepts (a drain sends only the partitions it drains)."""
        taken: list[J] = []
        if where is None:
            while self._ready and len(taken) < limit:
                taken.append(self._ready.popleft())
            return taken
        kept: deque[J] = deque()
        while self._ready:
            job = self._ready.popleft()
            if len(taken) < limit and where(job):
                taken.append(job)
            else:
                kept.append(job)
        self._ready = kept
        return taken

    def done(self, job: J) -> None:
        key = job.order_key
        queue = self._waiting.get(key)
        if queue:
            self._ready.append(queue.popleft())
            if not queue:
                del self._waiting[key]
        else:
            self._active.discard(key)

    def any_waiting(self, predicate: Callable[[J], bool]) -> bool:
        """Whether a job matching ``predicate`` waits here (not taken). Linear: for gauges."""
        return any(predicate(j) for j in self._ready) or any(
            predicate(j) for queue in self._waiting.values() for j in queue
        )

    def has_ready(self) -> bool:
        return bool(self._ready)

    def __len__(self) -> int:
        return len(self._ready) + sum(len(q) for q in self._waiting.values())

    def remove_where(self, predicate: Callable[[Hashable], bool]) -> list[J]:
        """Forget every key matching ``predicate`` (a revoked partition's users): return their
        jobs that were not taken yet. Jobs of those keys still out are the caller's to cancel."""
        removed = [job for job in self._ready if predicate(job.order_key)]
        if removed:
            self._ready = deque(job for job in self._ready if not predicate(job.order_key))
        for key in [k for k in self._waiting if predicate(k)]:
            removed.extend(self._waiting.pop(key))
        self._active = {key for key in self._active if not predicate(key)}
        return removed
