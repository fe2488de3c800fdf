"""Sub-millisecond timeouts.

epoll_pwait2 (Linux 5.11, called through syscall()) and ppoll take a
timespec; select() always took a timeval.  A wait is never shorter than its
timeout; where the kernel allows, a 0.2 ms timeout is not rounded up to the
millisecond as the stdlib does.  No absolute time is asserted: the lower
bound cannot flake, and the precision check compares two medians of the same
run.
"""

import os
import platform
import socket
import statistics
import time

import pytest

import fastselectors
from fastselectors import EVENT_READ


def _kernel_at_least(major, minor):
    try:
        found = tuple(int(x) for x in platform.release().split(".")[:2])
    except ValueError:
        return False
    return found >= (major, minor)


def _precise(name):
    """Why this selector cannot wait less than a millisecond here, or None."""
    if name == "SelectSelector":
        return None                     # timeval: microseconds everywhere
    if fastselectors.BACKEND == "pure":
        return ("the pure tier waits through the stdlib's select.epoll and "
                "select.poll, which take milliseconds")
    if not platform.system() == "Linux":
        return "ppoll and epoll_pwait2 are Linux calls"
    if name == "EpollSelector" and not _kernel_at_least(5, 11):
        return "epoll_pwait2 needs Linux 5.11, this is " + platform.release()
    return None


@pytest.fixture
def idle_pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


@pytest.mark.parametrize("timeout", [0.0002, 0.0005, 0.0011])
def test_wait_is_never_shorter_than_the_timeout(selector, idle_pair,
                                                timeout):
    selector.register(idle_pair[0], EVENT_READ)
    for _ in range(20):
        start = time.perf_counter()
        assert selector.select(timeout) == []
        assert time.perf_counter() - start >= timeout
        start = time.perf_counter()
        assert selector.dispatch(timeout) == 0
        assert time.perf_counter() - start >= timeout


def test_sub_millisecond_timeout_is_not_rounded_up(selector, idle_pair):
    reason = _precise(type(selector).__name__)
    if reason:
        pytest.skip(reason)
    if os.environ.get("FASTSELECTORS_NO_TIMING_TESTS"):
        pytest.skip("timing comparisons disabled by the environment")
    probe = getattr(selector._core, "precise_timeouts", None)
    if probe is not None and not probe():
        pytest.skip("the kernel refuses epoll_pwait2 here (ENOSYS or EPERM: "
                    "an old kernel, a seccomp profile, or valgrind)")
    selector.register(idle_pair[0], EVENT_READ)
    short, whole = [], []
    for _ in range(40):                 # interleaved: drift hits both
        for timeout, samples in ((0.0002, short), (0.001, whole)):
            start = time.perf_counter()
            selector.select(timeout)
            samples.append(time.perf_counter() - start)
    # Rounded up to 1 ms, the two medians would be equal.
    assert statistics.median(short) < 0.75 * statistics.median(whole), (
        statistics.median(short), statistics.median(whole))
