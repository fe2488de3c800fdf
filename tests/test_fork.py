"""fork(): the child gets a working selector with the same registrations,
on a kernel object of its own, and nothing it does changes what the parent
sees.  Rebuilt automatically (os.register_at_fork)."""

import os
import socket

import pytest

from fastselectors import EVENT_READ, ONESHOT

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"),
                                reason="the platform has no fork()")


def _in_child(fn):
    """Run fn() in a forked child; return what it wrote (a line of text),
    raising if it failed."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                            # the child
        os.close(r)
        code = 0
        try:
            result = fn()
        except BaseException as exc:        # reported to the parent
            result, code = "error: {!r}".format(exc), 1
        os.write(w, str(result).encode())
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, out
    return out


@pytest.fixture
def pairs():
    made = [socket.socketpair() for _ in range(2)]
    yield made
    for a, b in made:
        a.close()
        b.close()


def test_child_keeps_the_registrations(selector, pairs):
    (a, pa), (b, pb) = pairs
    selector.register(a, EVENT_READ, "a")
    pa.send(b"x")

    def child():
        ready = selector.select(0)
        return sorted(key.data for key, _ in ready)

    assert _in_child(child) == "['a']"
    assert [k.data for k, _ in selector.select(0)] == ["a"]


def test_child_changes_do_not_reach_the_parent(selector, pairs):
    (a, pa), (b, pb) = pairs
    selector.register(a, EVENT_READ, "a")

    def child():
        selector.unregister(a)
        selector.register(b, EVENT_READ, "b")
        pb.send(b"y")
        return sorted(key.data for key, _ in selector.select(1))

    assert _in_child(child) == "['b']"
    # The parent still has a (and only a): the child's unregister and
    # register went to its own kernel object.
    assert sorted(selector.get_map()) == [a.fileno()]
    pa.send(b"x")
    assert [k.data for k, _ in selector.select(1)] == ["a"]
    b.recv(1)


def test_child_does_not_steal_the_parents_oneshot_events(selector_cls,
                                                          pairs):
    if not selector_cls.supports(ONESHOT):
        pytest.skip("{} does not support ONESHOT".format(
            selector_cls.__name__))
    (a, pa), _ = pairs
    sel = selector_cls()
    try:
        sel.register(a, EVENT_READ | ONESHOT, "a")
        pa.send(b"x")
        # The child consumes the one-shot report on its own instance...
        assert _in_child(lambda: [k.data for k, _ in sel.select(1)]) \
            == "['a']"
        # ...and the parent's registration is still armed.
        assert [k.data for k, _ in sel.select(1)] == ["a"]
    finally:
        sel.close()


def test_closed_selector_survives_fork(selector_cls):
    sel = selector_cls()
    sel.close()
    assert _in_child(lambda: sel.get_map()) == "None"
