"""Child processes that die with the test run: no orphan JVMs after a crash or a Ctrl-C."""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Protocol


class Stoppable(Protocol):
    def stop(self, timeout_s: float = ...) -> None: ...


def die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGKILL the child when its parent dies (no orphan JVMs)."""
    pr_set_pdeathsig = 1
    try:
        # Resolved before fork: dlopen in the forked child could deadlock on a lock held by one
        # of the parent's other threads (librdkafka runs several).
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: atexit and the signal handlers are all we have

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


# Non-detached brokers still running, stopped at interpreter exit or on SIGTERM/SIGHUP.
_live: set[Stoppable] = set()
_cleanup_installed = False


def register_for_cleanup(broker: Stoppable) -> None:
    """Stop ``broker`` at interpreter exit or on SIGTERM/SIGHUP unless it stopped before."""
    global _cleanup_installed
    _live.add(broker)
    if _cleanup_installed:
        return
    _cleanup_installed = True
    atexit.register(_stop_all, 10.0)
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be installed from the main thread
    for signum in (signal.SIGTERM, signal.SIGHUP):
        # Only take over the default action; an application's own handler stays in charge.
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _stop_all_and_die)


def _stop_all(timeout_s: float) -> None:
    for broker in list(_live):
        broker.stop(timeout_s)


def _stop_all_and_die(signum: int, frame: FrameType | None) -> None:
    _stop_all(5.0)
    # Die of the same signal, as the default action would have done.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def forget_for_cleanup(broker: Stoppable) -> None:
    """``broker`` stopped by itself: nothing left to clean up."""
    _live.discard(broker)
