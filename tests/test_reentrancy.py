"""Re-entrancy: every place where our code runs user code -- a file
object's fileno(), an int subclass's __hash__/__eq__/__index__ as the fd,
data's __eq__ (modify() compares data), a finalizer run
when we drop a key (modify, unregister, close) or run by the garbage
collector in the middle of a call, a dispatch() callback -- that code may
call back into the same selector: register, modify, unregister, close,
select, dispatch.  hypothesis picks the place, the call and the fd.  The
outer call may complete or raise an ordinary exception (a re-entrant
dispatch() is a RuntimeError, a vanished fd a KeyError...), but nothing
crashes, and afterwards the selector keeps the invariants of world.py.
Run under ASan by tools/asan-tests, like the rest of the suite.
"""

import gc
import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastselectors import EVENT_READ, EVENT_WRITE
from world import World

EXAMPLES = int(os.environ.get("FASTSELECTORS_FUZZ_EXAMPLES", "0")) or 100
REFCOUNTED = sys.implementation.name == "cpython"

PLACES = ["fileno", "int-fd", "data-eq", "del-modify", "del-unregister",
          "del-close", "gc", "callback"]
ACTIONS = ["register", "modify", "unregister", "close", "select",
           "dispatch"]


def act(world, action, i):
    """The re-entrant call; what it raises is the test's business only if
    it is not an ordinary error."""
    sel, sock = world.sel, world.socks[i]
    try:
        if action == "register":
            sel.register(sock, EVENT_READ, world.callback)
        elif action == "modify":
            sel.modify(sock, EVENT_READ | EVENT_WRITE, world.callback)
        elif action == "unregister":
            sel.unregister(sock)
        elif action == "close":
            sel.close()
        elif action == "select":
            sel.select(0)
        else:
            sel.dispatch(0)
    except (KeyError, ValueError, RuntimeError):
        pass


class Fileno:
    """A file object whose fileno() acts first."""

    def __init__(self, fd, action):
        self.fd, self.action = fd, action

    def fileno(self):
        action, self.action = self.action, None
        if action is not None:
            action()
        return self.fd


class IntActs(int):
    """An int subclass as the fd: its __hash__, __eq__, __index__ and
    __int__ act (once) wherever our code would use them -- it must not:
    the fd is made an exact int at the boundary."""

    def __new__(cls, fd, action):
        self = super().__new__(cls, fd)
        self.action = action
        return self

    def _act(self):
        action, self.action = self.action, None
        if action is not None:
            action()

    def __hash__(self):
        self._act()
        return int.__hash__(self)

    def __eq__(self, other):
        self._act()
        return int.__eq__(self, other)

    def __index__(self):
        self._act()
        return int.__index__(self)

    def __int__(self):
        self._act()
        return int.__int__(self)


class EqActs:
    def __init__(self, action):
        self.action = action

    def __eq__(self, other):
        action, self.action = self.action, None
        if action is not None:
            action()
        return False

    __hash__ = object.__hash__

    def __call__(self, key, events):
        pass


class DelActs:
    def __init__(self, action):
        self.action = action

    def __del__(self):
        self.action()

    def __call__(self, key, events):
        pass


class Cycle:
    """Garbage in a reference cycle: its finalizer runs when the collector
    does, at some allocation inside our call."""

    def __init__(self, action):
        self.action, self.me = action, self

    def __del__(self):
        self.action()


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(place=st.sampled_from(PLACES), action=st.sampled_from(ACTIONS),
       target=st.integers(0, 5), victim=st.integers(0, 5))
def test_user_code_calling_back_into_the_selector(selector_cls, place,
                                                  action, target, victim):
    world = World(selector_cls)
    sel = world.sel
    sock = world.socks[victim]
    again = lambda: act(world, action, target)     # noqa: E731
    try:
        try:
            if place == "fileno":
                outer = Fileno(sock.fileno(), again)
                if victim < 4:
                    sel.modify(outer, EVENT_READ | EVENT_WRITE,
                               world.callback)
                else:
                    sel.register(outer, EVENT_READ, world.callback)
            elif place == "int-fd":
                outer = IntActs(sock.fileno(), again)
                if victim < 4:
                    sel.modify(outer, EVENT_READ | EVENT_WRITE,
                               world.callback)
                    sel.unregister(IntActs(sock.fileno(), again))
                else:
                    # Through fileno(): int() of it runs __int__ (as the
                    # stdlib's does), the rest must not run its methods.
                    sel.register(Fileno(outer, None), EVENT_READ,
                                 world.callback)
                    sel.select(0)
            elif place == "data-eq":
                if victim < 4:
                    sel.modify(sock, EVENT_READ, EqActs(again))
                    sel.modify(sock, EVENT_READ, world.callback)
            elif place == "del-modify":
                if victim < 4:
                    sel.modify(sock, EVENT_READ, DelActs(again))
                    sel.modify(sock, EVENT_READ, world.callback)
            elif place == "del-unregister":
                if victim < 4:
                    sel.modify(sock, EVENT_READ, DelActs(again))
                    sel.unregister(sock)
            elif place == "del-close":
                if victim < 4:
                    sel.modify(sock, EVENT_READ, DelActs(again))
                sel.close()
            elif place == "gc":
                # CPython: collections at nearly every allocation, so the
                # finalizer runs inside one of these calls.  (PyPy has no
                # thresholds: there it runs at the collection below.)
                thresholds = getattr(gc, "get_threshold", lambda: None)()
                Cycle(again)
                if thresholds:
                    gc.set_threshold(1, 1, 1)
                try:
                    sel.select(0)
                    sel.dispatch(0)
                    sel.register(world.socks[5], EVENT_READ, world.callback)
                finally:
                    if thresholds:
                        gc.set_threshold(*thresholds)
                gc.collect()    # (if it did not run inside, here)
            else:   # callback
                if victim < 4:
                    sel.modify(sock, EVENT_READ,
                               lambda key, events: again())
                sel.dispatch(0)
        except (KeyError, ValueError, RuntimeError):
            pass
        if not REFCOUNTED:      # PyPy: finalizers run at a collection
            gc.collect()
        world.check()
    finally:
        world.close()
