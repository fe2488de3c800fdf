"""Asynchronous exceptions: a signal handler can raise between any two
bytecodes of our Python code (KeyboardInterrupt is the usual one).
Whatever raises where, the selector must stay consistent:

- every key select() and dispatch() report is in get_map() (the same key
  object), each fd at most once;
- get_map() and the kernel agree: with every registered fd readable,
  select(0) reports exactly the map's fds -- and for epoll,
  /proc/self/fdinfo/<epfd> lists exactly them;
- a re-register works, and reports once.

The injection is deterministic: a trace function raises KeyboardInterrupt
at the N-th point of our package's Python code where CPython can run a
signal handler -- a function's entry, a backward jump, the instruction
after a call returns (every version checks its "eval breaker" there) --
during one operation, for every N until the operation completes untouched
(raising from a trace function also turns tracing off: one exception per
run).  On the native tier only the Python layer runs bytecode (the cores'
methods are C, atomic for a signal handler).

``FASTSELECTORS_INJECT_STRIDE`` (default 1) tries every N-th point only,
for a quicker run; tools/fuzz-long runs ``FASTSELECTORS_FUZZ_EXAMPLES``
random sequences (default here: 60).
"""

import dis
import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastselectors
from fastselectors import EVENT_READ, EVENT_WRITE
from leakcheck import count_fds
from world import World

PACKAGE = os.path.dirname(fastselectors.__file__) + os.sep
STRIDE = int(os.environ.get("FASTSELECTORS_INJECT_STRIDE", "1"))
RANDOM_STEPS = int(os.environ.get("FASTSELECTORS_FUZZ_EXAMPLES", "0")) or 60

pytestmark = pytest.mark.skipif(
    sys.gettrace() is not None,
    reason="a tracer is active (coverage, a debugger): the injection is one")


class Injected(KeyboardInterrupt):
    """What the fake signal handler raises."""


_POINTS = {}     # code object -> the offsets where a handler can run


def signal_points(code):
    """The offsets of *code*'s instructions before which CPython may run a
    signal handler: the first, the backward jumps, and the ones right after
    a call."""
    points = _POINTS.get(code)
    if points is None:
        instructions = list(dis.get_instructions(code))
        points = {instructions[0].offset} if instructions else set()
        for before, ins in zip(instructions, instructions[1:]):
            if before.opname.startswith("CALL"):
                points.add(ins.offset)
            if ins.opname == "JUMP_BACKWARD" or (
                    ins.opname == "JUMP_ABSOLUTE"
                    and ins.argval <= ins.offset):
                points.add(ins.offset)
        _POINTS[code] = points
    return points


class Injector:
    """Raise Injected at the at-th signal point (signal_points) of
    fastselectors' Python code run under it."""

    def __init__(self, at):
        self.at = at
        self.count = 0

    def _global(self, frame, event, arg):
        if frame.f_code.co_filename.startswith(PACKAGE):
            frame.f_trace_opcodes = True
            return self._local
        return None

    def _local(self, frame, event, arg):
        if event != "opcode":
            # 3.13 sometimes ignores the flag set in the "call" event
            # (then only "line" events come): set again, it takes.
            frame.f_trace_opcodes = True
        elif frame.f_lasti in signal_points(frame.f_code):
            self.count += 1
            if self.count == self.at:
                raise Injected()
        return self._local

    def run(self, fn, *args):
        """fn(*args) under injection: True if Injected was raised."""
        sys.settrace(self._global)
        try:
            fn(*args)
        except Injected:
            return True
        finally:
            sys.settrace(None)
        return False


# The operations, each on a fresh World.
OPERATIONS = {
    "register": lambda w: w.sel.register(w.socks[4], EVENT_READ, w.callback),
    "modify-events": lambda w: w.sel.modify(
        w.socks[1], EVENT_READ | EVENT_WRITE, w.callback),
    "modify-data": lambda w: w.sel.modify(w.socks[2], EVENT_READ, w.other),
    "unregister": lambda w: w.sel.unregister(w.socks[3]),
    "select": lambda w: w.sel.select(0),
    "dispatch": lambda w: w.sel.dispatch(0),
    "close": lambda w: w.sel.close(),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_an_exception_at_every_bytecode_leaves_the_selector_consistent(
        selector_cls, operation):
    op = OPERATIONS[operation]
    at = 1
    points = 0
    while True:
        fds = count_fds()
        world = World(selector_cls)
        try:
            inj = Injector(at)
            fired = inj.run(op, world)
            world.check()
        finally:
            world.close()
        # close() after an interrupted one -- even an interrupted close()
        # -- released everything: no fd is left for the collector.
        assert count_fds() == fds, (operation, at)
        if not fired:
            break
        points += 1
        at += STRIDE
    # The native cores' select(), dispatch() and close() are C: no bytecode
    # of ours runs there (and no signal handler can run inside).
    if type(world.sel._core).__module__ != "fastselectors._native" or \
            operation not in ("select", "dispatch", "close"):
        assert points > 0, "no bytecode of ours ran: nothing was tested"


@settings(max_examples=RANDOM_STEPS, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(steps=st.lists(st.tuples(st.sampled_from(sorted(OPERATIONS)),
                                st.integers(1, 400), st.integers(0, 5)),
                      min_size=1, max_size=8))
def test_random_sequences_with_an_exception_anywhere(selector_cls, steps):
    """Sequences of operations on varying sockets, each interrupted at a
    random bytecode (or not at all, when it runs fewer): the invariants
    after every step."""
    fds = count_fds()
    world = World(selector_cls)
    try:
        for name, at, i in steps:
            sock = world.socks[i]
            ops = {
                "register": lambda: world.sel.register(sock, EVENT_READ,
                                                       world.callback),
                "modify-events": lambda: world.sel.modify(
                    sock, EVENT_READ | EVENT_WRITE, world.callback),
                "modify-data": lambda: world.sel.modify(sock, EVENT_READ,
                                                        world.other),
                "unregister": lambda: world.sel.unregister(sock),
                "select": lambda: world.sel.select(0),
                "dispatch": lambda: world.sel.dispatch(0),
                "close": lambda: world.sel.close(),
            }
            try:
                Injector(at).run(ops[name])
            except (KeyError, ValueError, TypeError):
                pass    # not registered, already registered, closed
            world.check()
    finally:
        world.close()
    assert count_fds() == fds, steps
