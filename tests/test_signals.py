"""Signals during a wait (PEP 475).

A signal whose handler returns does not end the wait early: the wait is
retried with the time that remains, so select(timeout) still waits at least
the timeout.  A handler that raises ends the wait at once and its exception
propagates out of select()/dispatch(); the selector keeps working after.
"""

import signal
import socket
import threading
import time

import pytest

import fastselectors
from fastselectors import EVENT_READ

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "setitimer"),
    reason="needs signal.setitimer (POSIX) to interrupt a wait")


# A timeout long enough that reaching it means the wait was not ended.
LONG = 8.0


class Interrupted(Exception):
    pass


@pytest.fixture
def alarm():
    """alarm(interval, handler): SIGALRM every `interval` seconds."""
    previous = signal.getsignal(signal.SIGALRM)

    def start(interval, handler):
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, interval, interval)

    yield start
    _quiet()
    signal.signal(signal.SIGALRM, previous)


def _quiet():
    """Stop the timer, and let a SIGALRM already on its way land on a
    handler that does nothing (it would kill the process with the default
    action, or raise in the next test)."""
    signal.signal(signal.SIGALRM, lambda signum, frame: None)
    signal.setitimer(signal.ITIMER_REAL, 0)
    time.sleep(0.05)


@pytest.fixture
def idle(selector):
    a, b = socket.socketpair()
    selector.register(a, EVENT_READ, lambda key, events: None)
    yield a, b
    a.close()
    b.close()


@pytest.mark.parametrize("method", ["select", "dispatch"])
def test_handled_signals_do_not_shorten_the_wait(selector, idle, alarm,
                                                 method):
    calls = []
    alarm(0.01, lambda signum, frame: calls.append(signum))
    start = time.monotonic()
    result = getattr(selector, method)(0.15)
    elapsed = time.monotonic() - start
    assert result in ([], 0)
    assert len(calls) >= 3              # the wait really was interrupted
    assert elapsed >= 0.15              # and retried with what remained


@pytest.mark.parametrize("method", ["select", "dispatch"])
def test_handler_exception_propagates_at_once(selector, idle, alarm,
                                              method):
    def handler(signum, frame):
        raise Interrupted()

    alarm(0.02, handler)
    with pytest.raises(Interrupted):
        getattr(selector, method)(None)     # would block forever
    _quiet()
    a, b = idle
    b.send(b"x")
    if method == "select":
        assert [key.fileobj for key, _ in selector.select(0)] == [a]
    else:
        assert selector.dispatch(0) == 1


def test_signal_does_not_lose_a_ready_event(selector, idle, alarm):
    a, b = idle
    alarm(0.005, lambda signum, frame: None)
    b.send(b"x")
    for _ in range(20):
        assert [key.fileobj for key, _ in selector.select(1)] == [a]


@pytest.mark.parametrize("method", ["select", "dispatch"])
def test_handler_that_closes_the_selector_ends_the_wait(selector, idle,
                                                        alarm, method):
    """The contract (_types.Core): a signal handler that closes the
    selector mid-wait (and returns) ends the wait at once with the closed
    error -- on every tier and class, never an OSError, an empty result, a
    retry on a closed (or by now reused) epoll fd, or a wait to the end of
    the timeout (a liveness bound 400 times the expected time, not a speed
    claim)."""
    closed = []

    def close_it(signum, frame):
        if not closed:
            closed.append(True)
            selector.close()

    alarm(0.02, close_it)
    start = time.monotonic()
    try:
        with pytest.raises(ValueError, match="closed selector"):
            getattr(selector, method)(LONG)
    finally:
        _quiet()
    assert closed
    assert time.monotonic() - start < LONG, "waited out the timeout"
    with pytest.raises(ValueError):
        selector.select(0)


@pytest.mark.parametrize("method", ["select", "dispatch"])
def test_handler_that_closes_the_selector_ends_a_wait_without_timeout(
        selector, idle, alarm, method):
    """The same with timeout=None: the wait must not go on forever.  A
    watchdog makes the fd readable after LONG seconds, so that a wait the
    close did not end fails this test instead of hanging it."""
    closed = []

    def close_it(signum, frame):
        if not closed:
            closed.append(True)
            selector.close()

    fired = []

    def wake_up():
        fired.append(True)
        idle[1].send(b"x")

    watchdog = threading.Timer(LONG, wake_up)
    alarm(0.02, close_it)
    watchdog.start()
    try:
        with pytest.raises(ValueError, match="closed selector"):
            getattr(selector, method)(None)
    finally:
        _quiet()
        watchdog.cancel()
        watchdog.join()
    assert not fired, "the close did not end the wait: the watchdog did"
