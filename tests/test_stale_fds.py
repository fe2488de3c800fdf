"""Closed, dup'd and reused fds.

The kernel side of the story is written at the top of csrc/epoll_core.c.
In short: an epoll registration belongs to the open file description, so
an fd closed while a dup keeps its file alive leaves a registration that
``EPOLL_CTL_DEL`` can no longer reach.  The stdlib's EpollSelector then
wakes up forever for it (the classic 100 % CPU spin), and if the fd number
is reused by a new registration, the orphan's events reach the new key.
fastselectors never delivers an orphan's event and wakes at most once for
it; these tests pin that down on every tier and class, and show the
stdlib's behaviour they differ from.

poll and select keep no kernel-side state: for them an unregistered fd is
simply gone, so the same tests must pass trivially there.
"""

import os
import select
import selectors
import socket

import pytest

from fastselectors import EDGE, EVENT_READ, ONESHOT

pytestmark = pytest.mark.skipif(
    os.name != "posix",
    reason="dup'd socket fds: on Windows a socket is no C runtime fd "
           "(os.dup fails), and there is no epoll")


def _is_epoll(sel):
    return hasattr(sel, "fileno")


def _kernel_has_events(sel):
    """True if the epoll fd itself polls readable: the next wait returns at
    once.  Staying readable after every select() is the spin."""
    return bool(select.select([sel.fileno()], [], [], 0)[0])


@pytest.fixture
def raw_fds():
    """Raw fds to close at the end (the dups that keep files alive)."""
    fds = []
    yield fds
    for fd in fds:
        os.close(fd)


def make_orphan(sel, sockets, raw_fds, data="orphan"):
    """Register a socket, dup it, close it, unregister it: the kernel keeps
    the registration (the dup holds the file).  Then make it readable.
    Returns the fd number the orphan was registered under."""
    a, b = sockets()
    sel.register(a, EVENT_READ, data)
    number = a.fileno()
    raw_fds.append(os.dup(number))
    a.close()
    key = sel.unregister(a)
    assert key.data == data
    b.send(b"x")
    return number


def socket_at(number, sockets):
    """A connected socket whose fd is *number*, and its peer."""
    c, peer = sockets()
    if c.fileno() == number:        # the lowest free number: reused at once
        return c, peer
    os.dup2(c.fileno(), number)
    c.close()
    return sockets.adopt(socket.socket(fileno=number)), peer


def test_unregistered_orphan_never_reported_and_no_spin(selector, sockets,
                                                        raw_fds):
    make_orphan(selector, sockets, raw_fds)
    for _ in range(3):
        assert selector.select(0) == []
    if _is_epoll(selector):
        # The stale event woke at most one wait; the instance is clean now.
        assert not _kernel_has_events(selector)
    assert selector.dispatch(0) == 0


def test_stdlib_epoll_spins_on_the_same_orphan(sockets, raw_fds):
    """The behaviour the test above differs from: the stdlib's epoll fd
    stays readable forever, so every select() returns at once."""
    if not hasattr(selectors, "EpollSelector"):
        pytest.skip("no epoll on this platform")
    with selectors.EpollSelector() as std:
        make_orphan(std, sockets, raw_fds)
        for _ in range(3):
            assert std.select(0) == []
            assert _kernel_has_events(std)


def test_orphan_events_never_reach_a_new_key_of_the_same_number(
        selector, sockets, raw_fds):
    number = make_orphan(selector, sockets, raw_fds)
    new, new_peer = socket_at(number, sockets)
    selector.register(new, EVENT_READ, "new")
    # Only the orphan is readable: nothing may be reported.
    assert selector.select(0) == []
    assert selector.select(0) == []
    # The new registration still works, under its own key.
    new_peer.send(b"y")
    [(key, events)] = selector.select(0)
    assert (key.fileobj, key.data, events) == (new, "new", EVENT_READ)


def test_stdlib_epoll_delivers_the_orphan_to_the_new_key(sockets, raw_fds):
    """What the test above prevents: the stdlib reports the orphan's
    readiness as the new, idle socket's."""
    if not hasattr(selectors, "EpollSelector"):
        pytest.skip("no epoll on this platform")
    with selectors.EpollSelector() as std:
        number = make_orphan(std, sockets, raw_fds)
        new, _ = socket_at(number, sockets)
        std.register(new, EVENT_READ, "new")
        [(key, _)] = std.select(0)
        assert key.data == "new"        # but `new` has nothing to read


def test_dispatch_never_calls_back_for_an_orphan(selector, sockets, raw_fds):
    calls = []
    number = make_orphan(selector, sockets, raw_fds)
    new, new_peer = socket_at(number, sockets)
    selector.register(new, EVENT_READ,
                      lambda key, events: calls.append((key.fileobj, events)))
    assert selector.dispatch(0) == 0
    new_peer.send(b"y")
    assert selector.dispatch(0) == 1
    assert calls == [(new, EVENT_READ)]


def test_rebuild_keeps_fileno_and_every_live_registration(selector, sockets,
                                                          raw_fds):
    if not _is_epoll(selector):
        pytest.skip("only epoll keeps kernel-side registrations to rebuild")
    epfd = selector.fileno()
    live = [sockets() for _ in range(5)]
    for i, (sock, _) in enumerate(live):
        selector.register(sock, EVENT_READ, i)
    make_orphan(selector, sockets, raw_fds)
    assert selector.select(0) == []             # the orphan's one wake-up
    assert selector.fileno() == epfd            # dup3: same number
    assert not _kernel_has_events(selector)
    for _, peer in live:
        peer.send(b"z")
    got = sorted(key.data for key, _ in selector.select(0))
    assert got == list(range(5))


def test_edge_registration_works_after_a_rebuild(selector, sockets, raw_fds):
    if not selector.supports(EDGE):
        pytest.skip("{} does not support EDGE".format(type(selector).__name__))
    e, e_peer = sockets()
    selector.register(e, EVENT_READ | EDGE, "e")
    make_orphan(selector, sockets, raw_fds)
    assert selector.select(0) == []
    e_peer.send(b"1")
    assert [k.data for k, _ in selector.select(0)] == ["e"]
    assert selector.select(0) == []              # edge: once per edge


def test_disarmed_oneshot_stays_disarmed_across_a_rebuild(selector, sockets,
                                                          raw_fds):
    if not selector.supports(ONESHOT):
        pytest.skip("{} does not support ONESHOT".format(
            type(selector).__name__))
    o, o_peer = sockets()
    selector.register(o, EVENT_READ | ONESHOT, "o")
    o_peer.send(b"1")
    assert [k.data for k, _ in selector.select(0)] == ["o"]
    # Disarmed now; a rebuild must not re-arm it behind the owner's back.
    make_orphan(selector, sockets, raw_fds)
    assert selector.select(0) == []
    assert selector.select(0) == []
    selector.rearm(o)
    assert [k.data for k, _ in selector.select(0)] == ["o"]
    assert selector.select(0) == []             # one shot again


def test_rebuild_does_not_resurrect_a_closed_fd_under_its_old_key(
        selector, sockets, raw_fds):
    """Closed without unregister (no dup: the kernel dropped it), then the
    number reused by a socket this selector does not watch.  A rebuild must
    not watch that socket under the old key."""
    if not _is_epoll(selector):
        pytest.skip("poll and select watch fd numbers, not files: a reused "
                    "number is the registered one (as in the stdlib)")
    a, _ = sockets()
    selector.register(a, EVENT_READ, "old")
    number = a.fileno()
    a.close()
    other, other_peer = socket_at(number, sockets)
    make_orphan(selector, sockets, raw_fds)
    assert selector.select(0) == []             # rebuilds here
    other_peer.send(b"!")
    assert selector.select(0) == []
    assert selector.get_key(a).data == "old"    # still in the map


def test_closed_without_unregister_keeps_the_key_like_the_stdlib(
        selector_pair, sockets):
    """The key of a closed fd stays until unregister(), which succeeds."""
    for cls in (selector_pair.ours, selector_pair.stdlib):
        with cls() as sel:
            a, _ = sockets()
            sel.register(a, EVENT_READ, "a")
            a.close()
            assert sel.get_key(a).data == "a"
            assert len(sel.get_map()) == 1
            assert sel.unregister(a).data == "a"
            assert len(sel.get_map()) == 0


def test_unregistering_an_orphan_twice_fails_like_the_stdlib(selector_pair,
                                                              sockets,
                                                              raw_fds):
    """The second time, the closed socket is neither a valid fd nor in the
    map: ValueError("Invalid file descriptor: -1"), as in the stdlib."""
    errors = []
    for cls in (selector_pair.ours, selector_pair.stdlib):
        with cls() as sel:
            a, _ = sockets()
            sel.register(a, EVENT_READ)
            raw_fds.append(os.dup(a.fileno()))
            a.close()
            sel.unregister(a)
            with pytest.raises(Exception) as info:
                sel.unregister(a)
            errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1]
    assert errors[0][0] is ValueError


def test_many_orphans_one_rebuild(selector, sockets, raw_fds):
    """Orphans made in bulk cost one extra wake-up, not one each."""
    for i in range(20):
        make_orphan(selector, sockets, raw_fds, data=i)
    assert selector.select(0) == []
    if _is_epoll(selector):
        assert not _kernel_has_events(selector)
    assert selector.select(0) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_child_rebuild_keeps_fileno(selector, sockets):
    """After fork() the child's epoll instance is rebuilt at the same fd
    number (dup3), so a fileno() taken before the fork stays valid."""
    if not _is_epoll(selector):
        pytest.skip("only epoll has an instance to rebuild")
    a, b = sockets()
    selector.register(a, EVENT_READ, "a")
    epfd = selector.fileno()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:        # child: report, never return into pytest
        ok = 0
        try:
            b.send(b"x")
            ok = (selector.fileno() == epfd
                  and [k.data for k, _ in selector.select(1)] == ["a"])
        finally:
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"1"
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    # The parent's instance is its own: same fd, and it sees the byte the
    # child sent (the socket is shared) under its own registration.
    assert selector.fileno() == epfd
    assert [k.data for k, _ in selector.select(1)] == ["a"]


def test_exclusive_registration_survives_a_rebuild(selector, sockets,
                                                   raw_fds):
    """The rebuild checks each registration with EPOLL_CTL_MOD, which an
    EXCLUSIVE one always refuses (EINVAL): it must still be carried over."""
    from fastselectors import EXCLUSIVE
    if not selector.supports(EXCLUSIVE):
        pytest.skip("{} does not support EXCLUSIVE".format(
            type(selector).__name__))
    x, x_peer = sockets()
    selector.register(x, EVENT_READ | EXCLUSIVE, "x")
    make_orphan(selector, sockets, raw_fds)
    assert selector.select(0) == []             # rebuilds here
    x_peer.send(b"1")
    assert [k.data for k, _ in selector.select(0)] == ["x"]
