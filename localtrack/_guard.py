"""The writer-call protocol: one call at a time from any thread, a signal handler's call deferred.

Any thread may call a run's writer: a re-entrant mutex keeps one call at a time. A signal
handler runs in the main thread between any two bytecodes, possibly in the middle of a call
that holds the mutex; ``_busy`` then says so, and the handler's call is queued and made when
the interrupted call ends, never in the middle of it (see docs/reliability.md, "Signals").
``History.log`` writes this protocol out inline (a call less per row); every other writer
method takes it through ``critical``.

The public calls that wait or take locks of their own (finish(), save(), log_artifact(),
use_artifact(), and the waits for artifact commits) are ``entry`` calls: a signal that
interrupts one in the main thread has its action (for SIGTERM: finish every run, then die)
queued for the end of the outermost one. Run inside it, that action would take a lock the
interrupted code holds: a second SIGTERM (SLURM's and a sweep agent's, or Ctrl-C twice)
landing inside the first one's finish() hung for good.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

_F = TypeVar("_F", bound=Callable[..., None])
P = ParamSpec("P")
R = TypeVar("R")

_entered = 0  # how deep the main thread is in entry calls
_queued: list[Callable[[], Any]] = []  # signal handlers' actions that came meanwhile


class Guarded:
    """The state of the protocol; a writer class derives from it."""

    def __init__(self) -> None:
        self._mutex = threading.RLock()  # one writer call at a time, from any thread
        self._busy = False  # a writer call holds the mutex and is under way
        self._deferred: list[Callable[[], Any]] = []  # calls a signal handler made meanwhile

    def _interrupted(self) -> bool:
        """In a signal handler (main thread): whether it interrupted a writer call.

        Taking the mutex waits for another thread's call to end; it is taken at once when
        the interrupted main thread holds it, and then ``_busy`` tells whether a call is
        under way (not just entering or leaving)."""
        with self._mutex:
            return self._busy

    def _defer(self, call: Callable[[], Any]) -> None:
        """Queue ``call`` for the end of the interrupted writer call (see _interrupted)."""
        self._deferred.append(call)

    def _run_deferred(self) -> None:
        """Make the calls queued while a writer call was interrupted, in order, in the main
        thread (the one signal handlers run in), after that call released the mutex."""
        if threading.current_thread() is not threading.main_thread():
            return
        while self._deferred:
            self._deferred.pop(0)()

    def _renew_mutex(self) -> None:
        """In a forked child: the mutex may have been held by a thread that does not exist
        there; a new one, and nothing queued."""
        self._mutex = threading.RLock()
        self._busy = False
        self._deferred = []


def critical(method: _F) -> _F:
    """Run a writer method under the protocol; one re-entered by a signal handler is queued."""
    @functools.wraps(method)
    def guarded(self: Guarded, *args: Any, **kwargs: Any) -> None:
        mutex = self._mutex
        mutex.acquire()
        if self._busy:
            mutex.release()
            self._deferred.append(functools.partial(method, self, *args, **kwargs))
            return
        self._busy = True
        try:
            method(self, *args, **kwargs)
        finally:
            self._busy = False
            mutex.release()
            if self._deferred:
                self._run_deferred()
    return guarded  # type: ignore[return-value]


def entry(fn: Callable[P, R]) -> Callable[P, R]:
    """A public call that waits or takes locks of its own: in the main thread, a signal
    handler's action that interrupts it is made when the outermost such call ends."""
    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        global _entered
        if threading.current_thread() is not threading.main_thread():
            return fn(*args, **kwargs)
        _entered += 1
        try:
            return fn(*args, **kwargs)
        finally:
            _entered -= 1
            if not _entered:
                while _queued:
                    _queued.pop(0)()
    return call


def in_entry() -> bool:
    """In a signal handler: whether it interrupted an entry call (the handler runs in the
    main thread, the only one that counts)."""
    return _entered > 0


def queue_for_entry(action: Callable[[], Any]) -> None:
    """Make ``action`` when the interrupted entry call ends (see in_entry)."""
    _queued.append(action)


def _after_fork_in_child() -> None:
    """A child forked inside an entry call (by another thread) never returns from it."""
    global _entered
    _entered = 0
    _queued.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
