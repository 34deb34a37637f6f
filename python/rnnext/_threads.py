"""Thread counts per call.

``rx.set_num_threads(n)`` sets the process-wide count. ``rx.threads(n)`` sets
the count for the calls made inside it in the current Python thread only
(each call reads it when it starts), so a server's request handler or a Dask
task can choose its own without touching the others. threadpoolctl, when
installed, sees rnnext's pool as ``user_api="rnnext"``:
``threadpoolctl.threadpool_limits(n)`` limits it in the calling thread, as it
does OpenMP's, and ``threadpool_info()`` lists it. The threads themselves are
rnnext's own workers (``src/cpp/pool.h``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import numbers
from typing import Iterator

from . import _core

__all__ = ["threads"]


def _check_threads(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n: expected a positive integer thread count, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n: expected a positive integer thread count, got {n}")
    return int(n)


@contextlib.contextmanager
def threads(n: int) -> Iterator[int]:
    """Use ``n`` threads for the rnnext calls made inside the ``with`` block
    by the current Python thread; the previous count (the thread's own, or
    the process-wide one) is back afterwards, also after an exception.
    Other Python threads are not affected. Nests; usable as a decorator.

    >>> with rx.threads(1):
    ...     out, h_n = model(x)        # one thread, whatever set_num_threads says

    Results do not depend on the thread count (forward outputs bit for bit;
    gradients for a fixed count and instruction set).
    """
    count = _check_threads(n)
    previous = _core.thread_num_threads()
    _core.set_thread_num_threads(count)
    try:
        yield count
    finally:
        _core.set_thread_num_threads(previous)


def register_threadpoolctl() -> bool:
    """Registers rnnext's controller with threadpoolctl when it is installed
    (called on import); returns whether it did."""
    if importlib.util.find_spec("threadpoolctl") is None:
        return False
    import threadpoolctl

    class RnnextController(threadpoolctl.LibController):  # type: ignore[misc]  # threadpoolctl has no types
        """rnnext's thread count, as threadpoolctl sees it: per calling
        thread."""

        user_api = "rnnext"
        internal_api = "rnnext"
        filename_prefixes = ("_core",)
        check_symbols = ("rnnext_get_num_threads", "rnnext_set_thread_num_threads")

        def get_num_threads(self) -> int:
            return int(self.dynlib.rnnext_get_num_threads())

        def set_num_threads(self, num_threads: int) -> None:
            # threadpool_limits restores the count it read when it started; back
            # at the process-wide count, the thread keeps no count of its own,
            # so a later set_num_threads reaches it again.
            own = 0 if num_threads == _core.process_num_threads() else max(int(num_threads), 1)
            self.dynlib.rnnext_set_thread_num_threads(own)

        def get_version(self) -> str:
            return str(_core.build_info()["version"])

    threadpoolctl.register(RnnextController)
    return True
