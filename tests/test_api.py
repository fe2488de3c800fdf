"""The public surface: what ``import fastselectors as selectors`` promises."""

import asyncio
import os
import pickle
import selectors
import sys
from selectors import EVENT_READ, EVENT_WRITE

import pytest

import fastselectors
from conftest import SIMULATED
from fastselectors import _backend


def test_every_name_in_all_exists():
    for name in fastselectors.__all__:
        assert hasattr(fastselectors, name), name


def test_every_public_stdlib_name_exists():
    names = ["BaseSelector", "SelectorKey", "EVENT_READ", "EVENT_WRITE",
             "SelectSelector", "PollSelector", "EpollSelector",
             "DevpollSelector", "KqueueSelector", "DefaultSelector"]
    for name in names:
        if hasattr(selectors, name):
            assert name in fastselectors.__all__, name
            assert hasattr(fastselectors, name), name


@pytest.mark.parametrize("name", ["SelectorKey", "EVENT_READ", "EVENT_WRITE",
                                  "BaseSelector"])
def test_shared_objects_are_the_stdlib_objects(name):
    assert getattr(fastselectors, name) is getattr(selectors, name)


def test_selector_classes_are_stdlib_base_selectors_without_private_bases(
        selector_cls):
    assert issubclass(selector_cls, selectors.BaseSelector)
    private = [getattr(selectors, name) for name in
               ("_BaseSelectorImpl", "_PollLikeSelector")
               if hasattr(selectors, name)]
    assert private, "the stdlib renamed its private classes: update the test"
    for cls in private:
        assert cls not in selector_cls.__mro__


def test_selector_instances_are_base_selectors(selector):
    assert isinstance(selector, selectors.BaseSelector)


def test_selector_classes_are_named_like_the_stdlib(selector_cls):
    assert selector_cls.__module__ == "fastselectors"
    assert getattr(fastselectors, selector_cls.__name__) is selector_cls
    assert getattr(selectors, selector_cls.__name__).__name__ == \
        selector_cls.__name__


def test_default_selector_is_one_of_ours():
    assert fastselectors.DefaultSelector in [
        getattr(fastselectors, name) for name in fastselectors.__all__
        if name.endswith("Selector") and name != "BaseSelector"]


def test_default_selector_is_ours_for_the_stdlibs_choice():
    """The stdlib's preference (kqueue, epoll, devpoll, poll, select, the
    first that works), with our class: on macOS our KqueueSelector."""
    assert fastselectors.DefaultSelector.__name__ == \
        selectors.DefaultSelector.__name__
    assert fastselectors.DefaultSelector.__module__ == "fastselectors"


def test_every_selector_class_has_the_extended_api():
    """The same API on every platform: no class is the stdlib's own."""
    names = [name for name in fastselectors.__all__
             if name.endswith("Selector") and name != "BaseSelector"]
    assert "DefaultSelector" in names
    for name in names:
        cls = getattr(fastselectors, name)
        assert cls.__module__ == "fastselectors", name
        for attr in ("dispatch", "supports", "rearm", "maxevents", "stats"):
            assert hasattr(cls, attr), (name, attr)
        assert cls.supports(fastselectors.EVENT_READ), name
    for flag in ("EDGE", "ONESHOT", "EXCLUSIVE", "EVENT_PRIORITY",
                 "EVENT_RDHUP", "READINESS", "MODIFIERS"):
        assert flag in fastselectors.__all__, flag


@pytest.mark.skipif(not sys.platform.startswith("linux") or bool(SIMULATED),
                    reason="epoll is Linux-only (and the simulated platform "
                           "has none)")
def test_default_selector_is_epoll_on_linux():
    assert fastselectors.DefaultSelector is fastselectors.EpollSelector


def test_backend_is_the_forced_tier_or_the_automatic_choice(monkeypatch):
    forced = os.environ.get(_backend.ENV_VAR, "").strip()
    if forced:
        assert fastselectors.BACKEND == forced
    else:
        monkeypatch.delenv(_backend.ENV_VAR, raising=False)
        assert fastselectors.BACKEND == _backend.choose()[0]
    assert fastselectors.BACKEND in _backend.TIERS


# -- EpollSelector.fileno() ----------------------------------------------

@pytest.fixture
def epoll_cls():
    cls = getattr(fastselectors, "EpollSelector", None)
    if cls is None:
        pytest.skip("no EpollSelector here: this platform (or a seccomp "
                    "filter) has no working epoll")
    return cls


def test_epoll_fileno_is_an_epoll_fd_closed_by_close(epoll_cls):
    sel = epoll_cls()
    fd = sel.fileno()
    assert type(fd) is int and fd >= 0
    assert os.readlink("/proc/self/fd/{}".format(fd)) == \
        "anon_inode:[eventpoll]"
    assert not os.get_inheritable(fd), "the epoll fd must be close-on-exec"
    before = os.fstat(fd)
    sel.close()
    try:
        after = os.fstat(fd)
    except OSError:
        pass                                # closed: the expected case
    else:                                   # the number was reused
        assert (after.st_dev, after.st_ino) != (before.st_dev,
                                                before.st_ino)
    with pytest.raises(ValueError):
        sel.fileno()


def test_each_epoll_selector_has_its_own_fd(epoll_cls):
    with epoll_cls() as a, epoll_cls() as b:
        assert a.fileno() != b.fileno()


# -- subclassing -------------------------------------------------------------

def test_a_subclass_overriding_select_gets_its_override_called(
        selector_cls, env):
    calls = []

    class Counting(selector_cls):
        def select(self, timeout=None):
            calls.append(timeout)
            return super().select(timeout)

    a, peer = env.socketpair("a", "peer")
    peer.send(b"x")
    with Counting() as sel:
        key = sel.register(a, EVENT_READ)
        assert sel.select(0) == [(key, EVENT_READ)]
        assert sel.select(timeout=0.001) == [(key, EVENT_READ)]
    assert calls == [0, 0.001]


def test_a_subclass_overriding_other_methods_keeps_working(selector_cls,
                                                           env):
    registered = []

    class Recording(selector_cls):
        def register(self, fileobj, events, data=None):
            registered.append(fileobj)
            return super().register(fileobj, events, data)

    a, _ = env.socketpair("a", "peer")
    with Recording() as sel:
        key = sel.register(a, EVENT_WRITE)
        assert registered == [a]
        assert sel.select(0) == [(key, EVENT_WRITE)]


def test_select_called_through_the_class_works(selector, env):
    a, _ = env.socketpair("a", "peer")
    key = selector.register(a, EVENT_WRITE)
    assert type(selector).select(selector, 0) == [(key, EVENT_WRITE)]


# -- keys --------------------------------------------------------------------

def test_returned_keys_pickle_round_trip(selector, env):
    r, w = env.pipe("r", "w")
    key = selector.register(w, EVENT_WRITE, ("data", 1))
    [(ready_key, events)] = selector.select(0)
    for k in (key, ready_key, selector.get_key(w)):
        copy = pickle.loads(pickle.dumps(k))
        assert type(copy) is selectors.SelectorKey
        assert copy == k
    assert events == EVENT_WRITE


# -- asyncio ------------------------------------------------------------------

async def _echo(loop, a, b):
    await loop.sock_sendall(a, b"ping")
    got = b""
    while len(got) < 4:
        got += await loop.sock_recv(b, 4 - len(got))
    await loop.sock_sendall(b, got.upper())
    back = b""
    while len(back) < 4:
        back += await loop.sock_recv(a, 4 - len(back))
    return back


def _run_echo(selector, env):
    a, b = env.socketpair("a", "b")
    loop = asyncio.SelectorEventLoop(selector)
    try:
        assert loop.run_until_complete(_echo(loop, a, b)) == b"PING"
    finally:
        loop.close()
    assert loop.is_closed()
    assert selector.get_map() is None, "loop.close() closes the selector"


def test_asyncio_echo_over_the_default_selector(env):
    _run_echo(fastselectors.DefaultSelector(), env)


def test_asyncio_echo_over_each_selector_waits_on_it(selector_cls, env):
    calls = []

    class Counting(selector_cls):
        def select(self, timeout=None):
            calls.append(timeout)
            return super().select(timeout)

    _run_echo(Counting(), env)
    assert calls, "the event loop never waited on our selector"
