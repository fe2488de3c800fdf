"""Several threads on one selector: nothing is lost, nothing is stale.

register() and modify() make a kernel call that may release the GIL (the
Python tiers always do); a thread waiting on the same selector can get the
fd's event at once -- with EDGE or ONESHOT the only one it will ever get --
and must find the new key.  And the waiter may run the fd's callback, which
unregisters it, before the registering thread is back: the map must not
resurrect it.
"""

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import fastselectors
from fastselectors import EDGE, EVENT_READ, EVENT_WRITE, ONESHOT
from leakcheck import count_fds

N = 150


def _epoll():
    cls = getattr(fastselectors, "EpollSelector", None)
    if cls is None:
        pytest.skip("several threads on one selector with ONESHOT/EDGE "
                    "needs epoll")
    return cls()


def _waiters(sel, on_event, count=4):
    stop = threading.Event()

    def wait():
        while not stop.is_set():
            for key, events in sel.select(0.05):
                on_event(key, events)

    threads = [threading.Thread(target=wait) for _ in range(count)]
    for t in threads:
        t.start()
    return stop, threads


@pytest.mark.parametrize("flag", [ONESHOT, EDGE], ids=["ONESHOT", "EDGE"])
def test_register_while_others_wait_loses_no_event(flag):
    sel = _epoll()
    seen, lock = set(), threading.Lock()

    def on_event(key, events):
        with lock:
            seen.add(key.data)

    stop, threads = _waiters(sel, on_event)
    pairs = []
    try:
        for i in range(N):
            a, b = socket.socketpair()
            pairs.append((a, b))
            b.send(b"x")                # ready before it is registered
            time.sleep(0.0005)          # let the waiters sit in the wait
            sel.register(a, EVENT_READ | flag, i)
        deadline = time.monotonic() + 10
        while len(seen) < N and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        sel.close()
        for a, b in pairs:
            a.close()
            b.close()
    assert sorted(set(range(N)) - seen) == []


def test_modify_while_others_wait_reports_the_new_key():
    sel = _epoll()
    stale, lock = [], threading.Lock()
    fresh = set()

    def on_event(key, events):
        with lock:
            if key.data[0] == "old":
                stale.append(key)
            else:
                fresh.add(key.data[1])

    stop, threads = _waiters(sel, on_event)
    pairs = []
    try:
        for i in range(N):
            a, b = socket.socketpair()
            pairs.append((a, b))
            sel.register(a, EVENT_READ | ONESHOT, ("old", i))   # not ready
            time.sleep(0.0005)
            # Writable at once: the modify's re-arm fires in a waiter.
            sel.modify(a, EVENT_WRITE | ONESHOT, ("new", i))
        deadline = time.monotonic() + 10
        while len(fresh) < N and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        sel.close()
        for a, b in pairs:
            a.close()
            b.close()
    assert stale == []
    assert sorted(set(range(N)) - fresh) == []


def test_callback_unregistering_during_a_modify_is_not_undone():
    """A waiter gets the re-armed fd and unregisters it (then the fd number
    is reused) while the modifying thread is still inside modify(): the
    map must not keep, or bring back, the dead registration."""
    sel = _epoll()
    done = threading.Event()

    def on_event(key, events):
        sel.unregister(key.fileobj)
        done.set()

    stop, threads = _waiters(sel, on_event, count=2)
    try:
        for _ in range(N):
            done.clear()
            a, b = socket.socketpair()
            try:
                sel.register(a, EVENT_READ | ONESHOT)
                sel.modify(a, EVENT_WRITE | ONESHOT)     # fires at once
                assert done.wait(10)
                assert a not in sel.get_map()
            finally:
                a.close()
                b.close()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        sel.close()


# -- what wakes a waiting select(), and a stress test on every class --------
#
# docs/api.md ("Threads") states the rules these tests pin down:
#   * epoll: register()/modify() of a ready fd from another thread wakes a
#     thread blocked in select() on the same selector (the kernel queues the
#     event on the instance it waits on);
#   * poll and select: a wait watches the fds it was given when it started;
#     a change made meanwhile is seen by the next select();
#   * close() from another thread ends a wait at once with the closed
#     error (the contract in _types.Core); the selector is closed from
#     then on.

def test_epoll_register_from_another_thread_wakes_the_waiter():
    sel = _epoll()
    a, b = socket.socketpair()
    got = []
    try:
        waiter = threading.Thread(target=lambda: got.extend(sel.select(30)))
        waiter.start()
        time.sleep(0.05)                # let it sit in epoll_wait
        b.send(b"x")
        sel.register(a, EVENT_READ, "late")
        waiter.join(30)
        # Woken by the registration: the new key, not a 30 s timeout's [].
        assert [(k.data, e) for k, e in got] == [("late", EVENT_READ)]
    finally:
        sel.close()
        a.close()
        b.close()


@pytest.mark.parametrize("timeout", [8.0, None])
def test_close_from_another_thread_ends_the_wait_with_the_closed_error(
        selector_cls, timeout):
    """The contract (_types.Core): close() from another thread ends a wait
    with the closed error, at once -- never an OSError or an empty result.
    A watchdog makes the fd readable after 8 s, so that a wait the close
    did not end fails this test instead of hanging it."""
    sel = selector_cls()
    a, b = socket.socketpair()
    outcome, fired = [], []

    def wait():
        try:
            outcome.append(sel.select(timeout))
        except (ValueError, OSError) as exc:
            outcome.append(exc)

    def wake_up():
        fired.append(True)
        b.send(b"x")

    watchdog = threading.Timer(8.0, wake_up)
    try:
        sel.register(a, EVENT_READ, "a")
        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.1)     # inside the wait by now (if not: see below)
        watchdog.start()
        sel.close()
        waiter.join(30)
        assert not waiter.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], ValueError), \
            outcome
        assert "closed selector" in str(outcome[0])
        assert not fired, "close() did not end the wait: the watchdog did"
        with pytest.raises(ValueError):
            sel.select(0)
    finally:
        watchdog.cancel()
        watchdog.join()
        a.close()
        b.close()


def test_stress_mutators_and_waiters(selector_cls):
    """Three threads register, modify and unregister their own sockets and
    write to them while waiters select() on the same selector.  Every report
    must be a live registration's readiness within its interest; no thread
    may raise; at the end every fd is reported.  (poll cannot have two
    waiters at once -- select.poll refuses concurrent poll() calls in the
    stdlib too -- so it gets one.)"""
    sel = selector_cls()
    waiters = 1 if selector_cls.__name__ == "PollSelector" else 2
    errors, bad = [], []
    stop = threading.Event()
    per_thread, rounds = 16, 60

    def wait():
        try:
            while not stop.is_set():
                for key, events in sel.select(0.01):
                    if events & ~key.events & (EVENT_READ | EVENT_WRITE):
                        bad.append((key, events))
        except BaseException as exc:        # reported below
            errors.append(exc)

    def mutate(seed):
        import random
        rng = random.Random(seed)
        pairs = [socket.socketpair() for _ in range(per_thread)]
        registered = {}
        try:
            for _ in range(rounds):
                i = rng.randrange(per_thread)
                a, b = pairs[i]
                op = rng.random()
                if i not in registered:
                    registered[i] = sel.register(a, rng.choice(
                        [EVENT_READ, EVENT_WRITE, EVENT_READ | EVENT_WRITE]),
                        (seed, i))
                elif op < 0.4:
                    registered[i] = sel.modify(a, rng.choice(
                        [EVENT_READ, EVENT_WRITE, EVENT_READ | EVENT_WRITE]),
                        (seed, i))
                elif op < 0.7:
                    sel.unregister(a)
                    del registered[i]
                else:
                    b.send(b"x")
                time.sleep(0.0002)
            # Finally: everything registered for READ and readable.
            for i, (a, b) in enumerate(pairs):
                if i in registered:
                    sel.modify(a, EVENT_READ, (seed, i))
                else:
                    sel.register(a, EVENT_READ, (seed, i))
                b.send(b"y")
        except BaseException as exc:
            errors.append(exc)
        return pairs

    results = {}
    threads = [threading.Thread(target=wait) for _ in range(waiters)]
    mutators = [threading.Thread(
        target=lambda s=s: results.__setitem__(s, mutate(s)))
        for s in range(3)]
    try:
        for t in threads + mutators:
            t.start()
        for t in mutators:
            t.join(60)
        stop.set()
        for t in threads:
            t.join(60)
        assert errors == []
        assert bad == []
        expected = {(s, i) for s in range(3) for i in range(per_thread)}
        assert {k.data for k in sel.get_map().values()} == expected
        assert {k.data for k, _ in sel.select(0)} == expected
    finally:
        sel.close()
        for pairs in results.values():
            for a, b in pairs:
                a.close()
                b.close()


def test_concurrent_mutators_leave_kernel_and_map_in_agreement(
        selector_cls):
    """Four threads register and unregister fds of their own at once, with
    a thread switch as often as the interpreter allows: afterwards, with
    every fd readable, select(0) reports exactly the map's fds.  The cffi
    poll table once lost entries here (two appends at one position: 5 of 20
    trials on CPython), which the stress test above found on PyPy."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(20):
            sel = selector_cls()
            pipes = [os.pipe() for _ in range(400)]
            try:
                for _, w in pipes:
                    os.write(w, b"x")

                def churn(mine):
                    for r, _ in mine:
                        sel.register(r, EVENT_READ)
                    for r, _ in mine[::2]:
                        sel.unregister(r)

                threads = [threading.Thread(target=churn,
                                            args=(pipes[i::4],))
                           for i in range(4)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
                expected = {key.fd for key in sel.get_map().values()}
                assert len(expected) == 200
                assert {key.fd for key, _ in sel.select(0)} == expected
            finally:
                sel.close()
                for r, w in pipes:
                    os.close(r)
                    os.close(w)
    finally:
        sys.setswitchinterval(interval)


def test_waits_in_many_threads_at_once_leave_close_releasing_every_fd(
        selector_cls):
    """Four threads wait on one selector over and over, with a thread switch
    as often as the interpreter allows; then close() must release every fd
    the selector made (the kernel instance, the waker).  close() releases
    them once no thread waits any more, which the core counts: a "+= 1"
    there, a read and a write, lost updates where a thread switch can come
    between any two bytecodes (PyPy, CPython 3.9), and the count then never
    came back to 0 (or went below it): the fds stayed open."""
    if fastselectors.BACKEND == "pure" \
            and selector_cls.__name__ == "PollSelector":
        pytest.skip("the pure poll core is the stdlib's select.poll, which "
                    "refuses concurrent poll() calls with RuntimeError")
    before = count_fds()
    if before is None:
        pytest.skip("no /proc/self/fd to count this process's fds")
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    r, w = os.pipe()
    try:
        for _ in range(3):
            sel = selector_cls()
            sel.register(r, EVENT_READ)     # never ready: every wait waits

            def wait():
                for i in range(400):
                    sel.select(0 if i % 2 else 1e-5)

            threads = [threading.Thread(target=wait) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            sel.close()
            assert count_fds() == before + 2    # (the pipe)
    finally:
        sys.setswitchinterval(interval)
        os.close(r)
        os.close(w)


def test_first_kicks_in_many_threads_at_once_make_one_always_readable_fd():
    """The process-wide always-readable pipe (epoll's kick) is made at the
    first kick: eight threads kicking first at once must share one, not
    make eight and keep one (the others' fds lost).  In a fresh process,
    where none has been made."""
    code = textwrap.dedent("""
        import os, sys, threading
        from fastselectors._waker import always_readable_fd
        sys.setswitchinterval(1e-6)
        before = len(os.listdir("/proc/self/fd"))
        barrier = threading.Barrier(8)
        got = []

        def first():
            barrier.wait()
            got.append(always_readable_fd())

        threads = [threading.Thread(target=first) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(len(set(got)), len(os.listdir("/proc/self/fd")) - before)
    """)
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("no /proc/self/fd to count this process's fds")
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", code], check=True,
                             capture_output=True, text=True).stdout
        assert out.split() == ["1", "1"]
