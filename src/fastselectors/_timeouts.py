"""How a timeout is rounded, for the Python tiers (the C tier's copy:
``fs_timeout_init`` in ``csrc/common.c``): None blocks, <= 0 polls, else
rounded *up* (a wait is never shorter than asked) -- to milliseconds as the
stdlib (``math.ceil(timeout * 1e3)``, hence its exceptions), to nanoseconds
where the kernel takes them; after EINTR (PEP 475), the time remaining.
"""

from __future__ import annotations

import math
from time import monotonic

from ._checks import INT_MAX

# CPython converts select.select()'s timeout to int64 nanoseconds.
_SELECT_TIMEOUT_LIMIT = 2 ** 63 / 1e9


def timeout_ms(timeout: float | None) -> int:
    """Seconds -> epoll_wait()/poll() milliseconds: -1 forever, 0 poll.

    Raises:
        TypeError: not a number (from the comparison or the product)
        ValueError: NaN; OverflowError: infinite, or more than INT_MAX ms
            (CPython's select module refuses those; PyPy's would return at
            once, i.e. before the timeout: CPython's error everywhere)
    """
    if timeout is None:
        return -1
    if timeout <= 0:
        return 0
    ms = math.ceil(timeout * 1e3)
    if ms > INT_MAX:
        raise OverflowError("timeout is too large")
    return ms


def timeout_ns(timeout: float | None, ms: int) -> int:
    """The exact wait in ns for epoll_pwait2()/ppoll(), rounded up, never
    longer than *ms*; 0 unless ms > 0 (then timeout is a positive number)."""
    if ms <= 0:
        return 0
    return min(math.ceil(timeout * 1e9),  # type: ignore[operator]  # > 0
               ms * 1000000)


def remaining(end: float) -> tuple[int, int]:
    """(ms, ns) left until *end*, rounded up; (0, 0) once it has passed."""
    left = end - monotonic()
    if left <= 0:
        return 0, 0
    ns = math.ceil(left * 1e9)
    return (ns + 999999) // 1000000, ns


def select_timeout(timeout: float | None) -> float | None:
    """select.select()'s rules, checked here so that every interpreter
    gives them (PyPy's select() accepts NaN and answers EINVAL for a huge
    timeout): None blocks, negative polls."""
    if timeout is None:
        return None
    if timeout != timeout:
        raise ValueError("Invalid value NaN (not a number)")
    timeout = max(timeout, 0)
    if timeout >= _SELECT_TIMEOUT_LIMIT:
        raise OverflowError("timeout is too large")
    return timeout
