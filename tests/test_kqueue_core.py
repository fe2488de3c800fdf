"""The kqueue core's logic, on every platform: the kevent changes it asks
for, over a kernel double that records them (no kqueue needed).

What a real kqueue then does with those changes is tested by the suite
on macOS (the workflow's jobs) and, approximately, on the simulated
platform (tests/simulate/fake_kqueue.py).
"""

import dis
import errno
import math
import sys
from selectors import EVENT_READ, EVENT_WRITE, SelectorKey

import pytest

from fastselectors import (EDGE, EVENT_PRIORITY, EVENT_RDHUP, EXCLUSIVE,
                           ONESHOT)
from fastselectors._kqueue_core import KqueueCore
from fastselectors._selectors import make_selector

BOTH = EVENT_READ | EVENT_WRITE
R, W = -1, -2                                   # EVFILT_READ, EVFILT_WRITE
ADD, DELETE, DISABLE, CLEAR, DISPATCH = 0x1, 0x2, 0x8, 0x20, 0x80


class Kernel:
    """Records every call; ``fail`` (errno or None) refuses change()s;
    ``events`` lists what the next wait()s return."""

    READ, WRITE = R, W
    ADD, DELETE, DISABLE, CLEAR, DISPATCH = ADD, DELETE, DISABLE, CLEAR, \
        DISPATCH

    def __init__(self):
        self.fd = 99
        self.log = []
        self.fail = []          # errnos for the next change()s
        self.events = []        # lists for the next wait()s

    def change(self, changes):
        self.log.append(("change", list(changes)))
        if self.fail:
            err = self.fail.pop(0)
            if err:
                raise OSError(err, "refused")

    def discard(self, changes):
        self.log.append(("discard", list(changes)))

    def wait(self, size, timeout):
        self.log.append(("wait", size, timeout))
        return self.events.pop(0) if self.events else []

    def kick(self):
        self.log.append(("kick",))

    def renew(self, changes):
        self.log.append(("renew", list(changes)))

    def close(self):
        self.log.append(("close",))
        self.fd = -1


class Core(KqueueCore):
    _Kernel = Kernel


Selector = make_selector("KqueueSelector", Core)


@pytest.fixture
def core():
    c = Core()
    yield c
    c.close()


def reg(core, fd, events):
    key = SelectorKey(fd, fd, events, None)
    core.register(fd, events, key)
    return key


def mod(core, fd, events):
    key = SelectorKey(fd, fd, events, None)
    core.modify(fd, events, key)
    return key


def changes(core):
    log, core._kernel.log = core._kernel.log, []
    return log


# -- the mapping --------------------------------------------------------------

@pytest.mark.parametrize("events, flags", [
    (EVENT_READ, ADD), (EVENT_READ | EDGE, ADD | CLEAR),
    (EVENT_READ | ONESHOT, ADD | DISPATCH),
    (EVENT_READ | EDGE | ONESHOT, ADD | CLEAR | DISPATCH)])
def test_register_adds_one_knote_per_filter(core, events, flags):
    reg(core, 5, events)
    assert changes(core) == [("change", [(5, R, flags)])]
    reg(core, 6, events | EVENT_WRITE)
    assert changes(core) == [("change", [(6, R, flags), (6, W, flags)])]


def test_supported_flags_and_the_linux_error_for_the_others():
    assert Selector.supports(EDGE) and Selector.supports(ONESHOT)
    assert Selector.supports(BOTH | EDGE | ONESHOT)
    for flag, name in ((EVENT_PRIORITY, "EVENT_PRIORITY"),
                       (EVENT_RDHUP, "EVENT_RDHUP"),
                       (EXCLUSIVE, "EXCLUSIVE")):
        assert not Selector.supports(flag)
        with Selector() as sel:
            with pytest.raises(ValueError, match="^KqueueSelector does not "
                               "support " + name + "$"):
                sel.register(5, EVENT_READ | flag)
            assert len(sel.get_map()) == 0


# -- modify ---------------------------------------------------------------

def test_level_modify_adds_the_wanted_knotes_deletes_the_others(core):
    # (An existing knote added again changes nothing; a closed fd's number
    # reused by a new file gets them all, as the stdlib's re-register.)
    reg(core, 5, EVENT_READ)
    changes(core)
    mod(core, 5, BOTH)
    assert changes(core) == [("change", [(5, R, ADD), (5, W, ADD)])]
    mod(core, 5, BOTH)                          # data only: no syscall
    assert changes(core) == []
    mod(core, 5, EVENT_WRITE)
    assert changes(core) == [("change", [(5, R, DELETE), (5, W, ADD)])]


@pytest.mark.parametrize("modifier, flags", [
    (EDGE, CLEAR), (ONESHOT, DISPATCH), (EDGE | ONESHOT, CLEAR | DISPATCH)])
def test_modify_of_edge_or_oneshot_makes_the_knotes_again(core, modifier,
                                                          flags):
    # A new knote is evaluated at once: an EDGE is re-checked, a ONESHOT
    # re-armed, by any modify(), even one that changes nothing.
    reg(core, 5, BOTH | modifier)
    changes(core)
    mod(core, 5, BOTH | modifier)
    assert changes(core) == [("change", [
        (5, R, DELETE), (5, W, DELETE), (5, R, ADD | flags),
        (5, W, ADD | flags)])]


def test_a_modifier_change_makes_the_knote_again(core):
    # EV_ADD on an existing knote changes neither EV_CLEAR nor EV_DISPATCH.
    reg(core, 5, EVENT_READ)
    changes(core)
    mod(core, 5, EVENT_READ | EDGE)
    assert changes(core) == [("change", [(5, R, DELETE), (5, R, ADD | CLEAR)])]
    mod(core, 5, EVENT_READ)
    assert changes(core) == [("change", [(5, R, DELETE), (5, R, ADD)])]


def test_modify_of_a_knote_gone_with_its_fd_adds_it_again(core):
    # The fd was closed (its knotes with it) and the number reused: the
    # stdlib's modify (unregister, which ignores that, + register) works.
    reg(core, 5, EVENT_READ | EDGE)
    changes(core)
    core._kernel.fail = [errno.ENOENT]
    mod(core, 5, EVENT_READ | EDGE)
    assert changes(core) == [
        ("change", [(5, R, DELETE), (5, R, ADD | CLEAR)]),
        ("discard", [(5, R, DELETE)]),
        ("change", [(5, R, ADD | CLEAR)])]


def test_a_refused_modify_leaves_every_knote_for_unregister(core):
    reg(core, 5, EVENT_READ)
    changes(core)
    core._kernel.fail = [errno.EBADF]
    with pytest.raises(OSError):
        mod(core, 5, EVENT_WRITE)
    core.unregister(5)      # what the selector does next
    log = changes(core)
    assert log[-1] == ("discard", [(5, R, DELETE), (5, W, DELETE)])


# -- register failures, unregister --------------------------------------------

def test_a_refused_register_takes_back_what_was_added(core):
    core._kernel.fail = [errno.EINVAL]
    with pytest.raises(OSError):
        reg(core, 5, BOTH)
    # The core's own take-back, then PyCore's rollback, which makes the
    # kernel match the table whatever raised (_reconcile): idempotent.
    assert changes(core) == [("change", [(5, R, ADD), (5, W, ADD)]),
                             ("discard", [(5, R, DELETE), (5, W, DELETE)]),
                             ("discard", [(5, R, DELETE), (5, W, DELETE)])]
    assert not core._knotes and not core._both and 5 not in core._keys


def test_unregister_deletes_the_knotes_errors_ignored(core):
    reg(core, 5, BOTH | EDGE)
    changes(core)
    core.unregister(5)
    assert changes(core) == [("discard", [(5, R, DELETE), (5, W, DELETE)])]
    assert not core._knotes and not core._both


# -- the wait -----------------------------------------------------------------

def test_one_pair_per_fd_in_the_order_of_its_first_knote(core):
    a = reg(core, 5, BOTH)
    b = reg(core, 6, EVENT_READ)
    core._kernel.events = [[(6, EVENT_READ), (5, EVENT_WRITE),
                            (5, EVENT_READ), (99, EVENT_READ)]]
    assert core.select(0) == [(b, EVENT_READ), (a, BOTH)]


def test_the_batch_is_every_knote_or_maxevents(core):
    reg(core, 5, BOTH)
    reg(core, 6, EVENT_READ)
    changes(core)
    core.select(0)
    core.select(0, 2)
    core.select(0, 7)
    assert [entry[1] for entry in changes(core)] == [3, 2, 3]


@pytest.mark.skipif(sys.gettrace() is not None,
                    reason="a tracer is active (coverage, a debugger): the "
                           "test interleaves with one of its own")
@pytest.mark.parametrize("first, nested", [(EVENT_READ, BOTH),
                                           (BOTH, EVENT_READ)])
def test_a_register_between_any_two_bytecodes_of_another_is_counted(
        first, nested):
    """A signal handler (or another thread) registering in the middle of a
    register(): whatever bytecode it comes after, the batch still takes
    every knote.  A running count ("+=", a read and a write with calls in
    between) lost the nested update: select(0) then left ready fds out
    (four of 200 in CI, four threads registering at once)."""
    code = KqueueCore._note.__code__
    tried = 0
    for at in [ins.offset for ins in dis.get_instructions(code)]:
        core = Core()
        fired = []

        def step(frame, event, arg, at=at, core=core, fired=fired):
            frame.f_trace_opcodes = True    # (3.13: again on every line)
            if event == "opcode" and frame.f_lasti == at and not fired:
                fired.append(at)
                reg(core, 6, nested)    # tracing is off inside a tracer
            return step

        def enter(frame, event, arg):
            if frame.f_code is not code:
                return None
            frame.f_trace_opcodes = True
            return step

        sys.settrace(enter)
        try:
            reg(core, 5, first)
        finally:
            sys.settrace(None)
        if fired:       # (not every instruction runs: the other branch)
            tried += 1
            changes(core)
            core.select(0)
            assert changes(core)[0][:2] == ("wait", 3), f"at offset {at}"
        core.close()
    assert tried > 10


def test_a_full_limited_batch_is_counted(core):
    reg(core, 5, BOTH)
    reg(core, 6, EVENT_READ)
    core._kernel.events = [[(5, EVENT_READ), (6, EVENT_READ)]]
    core.select(0, 2)
    assert core.stats()["full_batches"] == 1


def test_the_timeout_goes_to_kevent_in_nanoseconds_rounded_up(core):
    for timeout, expected in ((None, None), (0, 0.0), (-1, 0.0),
                              (0.0002, 0.0002), (1e-9, 1e-9)):
        core.select(timeout)
        (_, _, seen), = changes(core)
        if expected is None:
            assert seen is None
        else:
            assert seen >= expected and seen - expected < 1e-12


@pytest.mark.parametrize("bad", [math.nan, math.inf, 1e300, 2 ** 100, "1",
                                 b"1", 1j])
def test_timeouts_kevent_cannot_take_raise_its_typeerror(core, bad):
    with pytest.raises(TypeError):
        core.select(bad)
    assert changes(core) == []


def test_a_timeout_longer_than_a_millisecond_int_waits_in_slices(core):
    # kevent() takes up to 2**63 ns, as the stdlib's selector: a 30-day
    # timeout is valid, and never ends early.
    key = reg(core, 5, EVENT_READ)
    changes(core)
    core._kernel.events = [[], [(5, EVENT_READ)]]
    assert core.select(30 * 86400.0) == [(key, EVENT_READ)]
    (_, _, first), (_, _, second) = changes(core)
    assert 2e6 < first <= 2147483.648 and 2e6 < second <= 2147483.648


# -- ONESHOT ----------------------------------------------------------------

def test_a_oneshot_event_disables_the_other_knote(core):
    key = reg(core, 5, BOTH | ONESHOT)
    changes(core)
    core._kernel.events = [[(5, EVENT_READ)]]
    assert core.select(0) == [(key, EVENT_READ)]
    assert changes(core)[-1] == ("discard", [(5, R, DISABLE),
                                             (5, W, DISABLE)])


def test_a_single_knote_oneshot_needs_no_syscall_to_disarm(core):
    key = reg(core, 5, EVENT_READ | ONESHOT)
    changes(core)
    core._kernel.events = [[(5, EVENT_READ)]]
    assert core.select(0) == [(key, EVENT_READ)]
    assert [entry[0] for entry in changes(core)] == ["wait"]


def test_an_event_of_a_disarmed_fd_is_dropped(core):
    # Another thread's wait got the other knote before it was disabled.
    reg(core, 5, BOTH | ONESHOT)
    core._kernel.events = [[(5, EVENT_READ)], [(5, EVENT_WRITE)]]
    assert len(core.select(0)) == 1
    assert core.select(0) == []


# -- close, fork ------------------------------------------------------------

def test_close_kicks_waiting_threads_off_the_kqueue_first(core):
    core._waiting.append(None)  # as a thread inside the wait would have it
    core.close()
    # Kicked, and left open for the waiter: the last one out closes it
    # (closed under it, its fd number could be reused under its wait).
    assert changes(core) == [("kick",)]
    core._waiting.pop()
    core._released()        # as the waiter does on its way out
    assert changes(core) == [("close",)]


def test_after_fork_a_new_kqueue_gets_the_registrations(core):
    reg(core, 5, BOTH | EDGE)
    o = reg(core, 6, EVENT_READ | ONESHOT)
    core._kernel.events = [[(6, EVENT_READ)]]
    assert core.select(0) == [(o, EVENT_READ)]
    changes(core)
    core._after_fork()
    # The disarmed ONESHOT is added disabled: a modify() re-arms it.
    assert changes(core) == [("renew", [
        (5, R, ADD | CLEAR), (5, W, ADD | CLEAR),
        (6, R, ADD | DISPATCH | DISABLE)])]
