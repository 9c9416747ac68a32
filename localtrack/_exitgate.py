"""Arrow work of daemon threads is let finish before the interpreter finalizes.

Python 3.11-3.13 end a daemon thread that wants the GIL back once finalization has begun
with pthread_exit, which unwinds the thread's C++ frames; in a frame that may not throw
(pyarrow's ParquetReader dealloc, which frees the reader without the GIL) that is
std::terminate: the process dies of SIGABRT after its own work is done ("terminate called
without an active exception"; about one exit in 30-60 of a process whose daemon thread
reads history: the dashboard's request threads, a user's reader thread); pyarrow compute in
such a thread crashed a plain script's exit too (SIGSEGV, 2 exits in 60). So the segment and
log reads, the Api's history reads and each dashboard request run inside ``arrow_work()``;
at exit (atexit, before finalization) new entries of daemon threads wait for good and the
ones inside are waited for, up to DRAIN_SECONDS. The main thread never waits: it is the one finalizing.
"""

from __future__ import annotations

import atexit
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

DRAIN_SECONDS = 10.0  # a read longer than this at exit risks the abort rather than a hang

_cond = threading.Condition()
_inside = 0
_closing = False


class _Depth(threading.local):
    n = 0  # how deep this thread is in arrow_work()


_depth = _Depth()


@contextmanager
def arrow_work() -> Iterator[None]:
    """Mark a stretch of Arrow work (and the lifetime of the Arrow objects it makes)."""
    global _inside
    if threading.current_thread() is threading.main_thread() or _depth.n:
        yield  # the main thread, or a stretch inside another
        return
    with _cond:
        while _closing:  # the process is exiting: this thread is ended where it stands
            _cond.wait()
        _inside += 1
    _depth.n = 1
    try:
        yield
    finally:
        _depth.n = 0
        with _cond:
            _inside -= 1
            _cond.notify_all()


def gated(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` runs inside arrow_work()."""
    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        with arrow_work():
            return fn(*args, **kwargs)
    return call


def _drain() -> None:
    global _closing
    with _cond:
        _closing = True
        _cond.wait_for(lambda: _inside == 0, timeout=DRAIN_SECONDS)


atexit.register(_drain)
