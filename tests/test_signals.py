"""Signals during a wait (PEP 475, issue #5).

A signal whose handler returns does not end the wait early: the wait is
retried with the time that remains, so select(timeout) still waits at least
the timeout.  A handler that raises ends the wait at once and its exception
propagates out of select()/dispatch(); the selector keeps working after.
"""

import signal
import socket
import time

import pytest

import fastselectors
from fastselectors import EVENT_READ

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "setitimer"),
    reason="needs signal.setitimer (POSIX) to interrupt a wait")


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
    """A handler that closes the selector mid-wait (and returns): the
    native cores and the cffi epoll core stop with the closed-selector
    error instead of retrying on a closed -- or by now reused -- epoll fd.
    (select.poll and select.select, under the pure tier and every
    SelectSelector, retry inside the stdlib call: they wait out the
    timeout, then return nothing or fail cleanly.)  Never a crash; the
    selector is closed afterwards."""
    closed = []

    def close_it(signum, frame):
        if not closed:
            closed.append(True)
            selector.close()

    alarm(0.02, close_it)
    try:
        outcome = getattr(selector, method)(0.5)
    except (ValueError, OSError) as exc:
        outcome = type(exc)
    finally:
        _quiet()
    assert closed
    assert outcome in (ValueError, OSError, [], 0)
    if fastselectors.BACKEND == "native" and hasattr(selector._core,
                                                    "registered"):
        assert outcome is ValueError    # the C cores check after a signal
    with pytest.raises(ValueError):
        selector.select(0)
