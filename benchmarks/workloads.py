"""Run one workload for one implementation, in this process, and print the
result: one JSON object per size on stdout.

    python workloads.py --impl fast-native-epoll --workload W2 --sizes 10,1000

The driver (run.py) starts one fresh process per implementation, workload
and round; this file can also be run by hand.  Workloads (see README.md):

- W1: N registered fds, all ready (socketpair ends, EVENT_WRITE).  The
  selector implementations call ``select(0)`` and count the results; the
  callback implementations (dispatch, event loops) invoke a counting
  callback per event.  Unit: ns per ready event.
- W2: one socketpair ping-ponging 1 byte beside N idle registered fds.
  Unit: ns per round trip (two waits, four 1-byte syscalls).
- W3: P socketpairs, one byte in flight in each; every callback reads the
  byte and writes it back.  Unit: ns per event (the driver shows events/s);
  ``baseline`` calls the same callbacks in a plain loop with no selector.

Every callback, in every implementation, is a plain function
``cb(a, b)``: selectors pass ``(key, events)``, raw epoll ``(fd, events)``,
the event loops the two ``None`` given at registration.

Every loop is bounded: a fixed count (``--events``) and a time cap
(``--cap``, checked every few waits).  Exit status: 0 (a size may still be
skipped, with a JSON ``skip`` reason), 3 when the implementation is not
available in this interpreter (one JSON line with ``skip``), else an error.
"""

import argparse
import gc
import json
import os
import platform
import resource
import socket
from selectors import EVENT_READ, EVENT_WRITE
import sys
import time

SKIP_EXIT = 3
FD_SETSIZE = 1024       # select(2) cannot take an fd at or above this
FD_RESERVE = 64         # fds kept free for the interpreter and the loops
TIERS = ("native", "cffi", "pure")
CLASSES = {"epoll": "EpollSelector", "poll": "PollSelector",
           "select": "SelectSelector"}
UNITS = {"W1": "ns/event", "W2": "ns/roundtrip", "W3": "ns/event"}


def chunk(workload, n):
    """Waits between two reads of the clock (the time cap's granularity):
    fewer where one wait scans many fds (poll, select with thousands)."""
    if workload == "W1":
        return max(1, min(16, 16000 // max(n, 1)))
    if workload == "W2":
        return max(2, min(64, 6400 // max(n, 1)) & ~1)
    return 4


class Skip(Exception):
    """The implementation (or one size of it) cannot run here."""


def raise_nofile():
    """Raise RLIMIT_NOFILE's soft limit to the hard one (20000 if
    unlimited); return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 20000 if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft if soft != resource.RLIM_INFINITY else want
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def socketpairs(count):
    pairs = []
    try:
        for _ in range(count):
            a, b = socket.socketpair()
            a.setblocking(False)
            b.setblocking(False)
            pairs.append((a, b))
    except BaseException:
        close_pairs(pairs)
        raise
    return pairs


def close_pairs(pairs):
    for a, b in pairs:
        a.close()
        b.close()


def drain(sock):
    try:
        while sock.recv(4096):
            pass
    except BlockingIOError:
        pass


# --- reactors: one per kind of implementation -------------------------------
#
# add(sock, write, cb) registers; run(waits, timeout, chunk, deadline) waits
# and calls callbacks until `waits` waits are done (selector-like reactors)
# or a callback calls stop() (event loops), or `deadline` passes; it returns
# the waits done (None for event loops, which do not count them).
# wait_only(...) is W1's select-and-count loop, returning (waits, events).


class SelectorReactor:
    """A selectors-style selector and the classic loop:
    ``for key, events in sel.select(timeout): key.data(key, events)``."""

    def __init__(self, sel_cls):
        self.sel = sel_cls()

    def stop(self):
        pass

    def add(self, sock, write, cb):
        self.sel.register(sock, EVENT_WRITE if write else EVENT_READ, cb)

    def fd_limit(self):
        return None

    def wait_only(self, waits, timeout, chunk, deadline):
        select = self.sel.select
        clock = time.perf_counter
        done = events = 0
        while done < waits:
            k = min(chunk, waits - done)
            for _ in range(k):
                events += len(select(timeout))
            done += k
            if clock() > deadline:
                break
        return done, events

    def run(self, waits, timeout, chunk, deadline):
        select = self.sel.select
        clock = time.perf_counter
        done = 0
        while done < waits:
            k = min(chunk, waits - done)
            for _ in range(k):
                for key, events in select(timeout):
                    key.data(key, events)
            done += k
            if clock() > deadline:
                break
        return done

    def close(self):
        self.sel.close()


class SelectSelectorReactor(SelectorReactor):
    def fd_limit(self):
        return FD_SETSIZE


class DispatchReactor(SelectorReactor):
    """A fastselectors selector driven by ``dispatch(timeout)``."""

    def __init__(self, sel_cls):
        super().__init__(sel_cls)
        if not hasattr(self.sel, "dispatch"):
            raise Skip("{} has no dispatch()".format(sel_cls.__name__))

    def run(self, waits, timeout, chunk, deadline):
        dispatch = self.sel.dispatch
        clock = time.perf_counter
        done = 0
        while done < waits:
            k = min(chunk, waits - done)
            for _ in range(k):
                dispatch(timeout)
            done += k
            if clock() > deadline:
                break
        return done


class SelectDispatchReactor(DispatchReactor):
    def fd_limit(self):
        return FD_SETSIZE


class RawEpollReactor:
    """``select.epoll`` itself: ``for fd, ev in ep.poll(t, maxevents):
    handlers[fd](fd, ev)`` -- no keys, no selectors layer."""

    def __init__(self):
        import select
        if not hasattr(select, "epoll"):
            raise Skip("select.epoll is not available here")
        self.ep = select.epoll()
        self.masks = (select.EPOLLIN, select.EPOLLOUT)
        self.handlers = {}

    def stop(self):
        pass

    def fd_limit(self):
        return None

    def add(self, sock, write, cb):
        fd = sock.fileno()
        self.ep.register(fd, self.masks[1] if write else self.masks[0])
        self.handlers[fd] = cb

    def wait_only(self, waits, timeout, chunk, deadline):
        poll = self.ep.poll
        maxevents = max(len(self.handlers), 1)
        clock = time.perf_counter
        done = events = 0
        while done < waits:
            k = min(chunk, waits - done)
            for _ in range(k):
                events += len(poll(timeout, maxevents))
            done += k
            if clock() > deadline:
                break
        return done, events

    def run(self, waits, timeout, chunk, deadline):
        poll = self.ep.poll
        handlers = self.handlers
        maxevents = max(len(handlers), 1)
        clock = time.perf_counter
        done = 0
        while done < waits:
            k = min(chunk, waits - done)
            for _ in range(k):
                for fd, events in poll(timeout, maxevents):
                    handlers[fd](fd, events)
            done += k
            if clock() > deadline:
                break
        return done

    def close(self):
        self.ep.close()


class AsyncioReactor:
    """An asyncio event loop: ``loop.add_reader``/``add_writer``, run with
    ``run_forever()`` until a callback calls ``loop.stop()``."""

    def __init__(self, flavour):
        import asyncio
        if flavour == "uvloop":
            try:
                import uvloop
            except ImportError as exc:
                raise Skip("uvloop is not installed ({})".format(exc))
            self.loop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()     # the default loop
        self.stop = self.loop.stop
        self.fds = []

    def fd_limit(self):
        return None

    def add(self, sock, write, cb):
        fd = sock.fileno()
        if write:
            self.loop.add_writer(fd, cb, None, None)
        else:
            self.loop.add_reader(fd, cb, None, None)
        self.fds.append((fd, write))

    def run(self, waits, timeout, chunk, deadline):
        loop = self.loop
        # The time cap: a timer that stops the loop (one heap entry).
        timer = loop.call_later(max(0.0, deadline - time.perf_counter()),
                                loop.stop)
        try:
            loop.run_forever()
        finally:
            timer.cancel()
        return None

    def close(self):
        for fd, write in self.fds:
            if write:
                self.loop.remove_writer(fd)
            else:
                self.loop.remove_reader(fd)
        self.loop.close()


class GeventReactor:
    """gevent's libev loop: ``loop.io(fd, 1|2)`` watchers started with the
    callback; the main greenlet waits on an Event that a callback sets, so
    the hub runs ``loop.run()`` meanwhile (gevent's normal way)."""

    def __init__(self):
        try:
            import gevent
            import gevent.event
        except ImportError as exc:
            raise Skip("gevent is not installed ({})".format(exc))
        self.loop = gevent.get_hub().loop
        self.done = gevent.event.Event()
        self.stop = self.done.set
        self.watchers = []

    def fd_limit(self):
        return None

    def add(self, sock, write, cb):
        watcher = self.loop.io(sock.fileno(), 2 if write else 1)
        watcher.start(cb, None, None)
        self.watchers.append(watcher)

    def run(self, waits, timeout, chunk, deadline):
        self.done.clear()
        self.done.wait(max(0.0, deadline - time.perf_counter()))
        return None

    def close(self):
        for watcher in self.watchers:
            watcher.stop()
            watcher.close()


class BaselineReactor:
    """No selector: W3's callbacks called in a plain loop, batch after
    batch, in the order the traffic makes them ready (what a perfect,
    free selector would deliver)."""

    def __init__(self):
        self.batches = None

    def stop(self):
        pass

    def fd_limit(self):
        return None

    def add(self, sock, write, cb):
        pass

    def run(self, waits, timeout, chunk, deadline):
        batches = self.batches
        clock = time.perf_counter
        done = 0
        while done < waits:
            k = min(chunk, waits - done)
            for i in range(done, done + k):
                for cb in batches[i & 1]:
                    cb(None, 1)
            done += k
            if clock() > deadline:
                break
        return done

    def close(self):
        pass


def make_reactor(name):
    """Build the reactor of implementation *name*; raise Skip if it is not
    available in this interpreter."""
    parts = name.split("-")
    if parts[0] == "fast" and len(parts) in (3, 4) and parts[1] in TIERS \
            and parts[2] in CLASSES:
        dispatch = len(parts) == 4
        if dispatch and parts[3] != "dispatch":
            raise ValueError("unknown implementation {!r}".format(name))
        os.environ["FASTSELECTORS_BACKEND"] = parts[1]
        try:
            import fastselectors
        except ImportError as exc:
            raise Skip("fastselectors tier {!r} unavailable: {}"
                       .format(parts[1], exc))
        if fastselectors.BACKEND != parts[1]:
            raise RuntimeError("asked for tier {}, got {}".format(
                parts[1], fastselectors.BACKEND))
        cls = getattr(fastselectors, CLASSES[parts[2]], None)
        if cls is None:
            raise Skip("fastselectors has no {} here".format(CLASSES[parts[2]]))
        if dispatch:
            kind = SelectDispatchReactor if parts[2] == "select" \
                else DispatchReactor
        else:
            kind = SelectSelectorReactor if parts[2] == "select" \
                else SelectorReactor
        return kind(cls)
    if parts[0] == "stdlib" and len(parts) == 2 and parts[1] in CLASSES:
        import selectors
        cls = getattr(selectors, CLASSES[parts[1]], None)
        if cls is None:
            raise Skip("selectors has no {} here".format(CLASSES[parts[1]]))
        kind = SelectSelectorReactor if parts[1] == "select" \
            else SelectorReactor
        return kind(cls)
    if name == "raw-epoll":
        return RawEpollReactor()
    if name in ("asyncio", "uvloop"):
        return AsyncioReactor(name)
    if name == "gevent":
        return GeventReactor()
    if name == "baseline":
        return BaselineReactor()
    raise ValueError("unknown implementation {!r}".format(name))


#: Implementations whose W1 is select()-and-count (no callbacks).
def select_mode(name):
    return name.startswith("stdlib-") or name == "raw-epoll" or (
        name.startswith("fast-") and not name.endswith("-dispatch"))


# --- the workloads ------------------------------------------------------------
#
# setup_*(reactor, name, n) returns (run_once, teardown, warm_unit) where
# run_once(target, deadline) -> units done (events, or round trips for W2).


def counting_callback(stop):
    """A callback that counts its calls and calls stop() at the target."""
    n = 0
    target = 0

    def tick(a, b):
        nonlocal n
        n += 1
        if n == target:
            stop()

    def reset(t):
        nonlocal n, target
        n = 0
        target = t

    return tick, reset, lambda: n


def check_fds(reactor, socks):
    limit = reactor.fd_limit()
    if limit is not None and max(s.fileno() for s in socks) >= limit:
        raise Skip("fd {} >= FD_SETSIZE ({}): select() cannot take it"
                   .format(max(s.fileno() for s in socks), limit))


def setup_w1(reactor, name, n):
    pairs = socketpairs(n // 2)
    socks = [s for pair in pairs for s in pair]
    try:
        check_fds(reactor, socks)
        if select_mode(name):
            for s in socks:
                reactor.add(s, True, None)

            def run_once(target, deadline):
                waits = max(1, target // len(socks))
                done, events = reactor.wait_only(waits, 0, chunk("W1", n),
                                                 deadline)
                if events != done * len(socks):
                    raise RuntimeError("W1: {} events in {} select() calls "
                                       "over {} ready fds".format(
                                           events, done, len(socks)))
                return events
        else:
            tick, reset, count = counting_callback(reactor.stop)
            for s in socks:
                reactor.add(s, True, tick)

            def run_once(target, deadline):
                waits = max(1, target // len(socks))
                reset(waits * len(socks))
                done = reactor.run(waits, 0, chunk("W1", n), deadline)
                if done is not None and count() != done * len(socks):
                    raise RuntimeError("W1: {} callbacks in {} waits over "
                                       "{} ready fds".format(
                                           count(), done, len(socks)))
                return count()
    except BaseException:
        close_pairs(pairs)
        raise

    def teardown():
        reactor.close()
        close_pairs(pairs)

    return run_once, teardown, 10 * len(socks)


def setup_w2(reactor, name, n):
    idle = socketpairs(n // 2)
    pairs = idle + socketpairs(1)
    a, b = pairs[-1]
    try:
        check_fds(reactor, [a, b])
        stop = reactor.stop
        n_rt = 0
        target = 0
        failures = []
        recv_a, send_a, recv_b, send_b = a.recv, a.send, b.recv, b.send

        def on_b(x, y):         # the far end: echo the byte back
            recv_b(1)
            send_b(b"x")

        def on_a(x, y):         # back home: one round trip done
            nonlocal n_rt
            recv_a(1)
            n_rt += 1
            if n_rt == target:
                stop()
            else:
                send_a(b"x")

        def on_idle(x, y):
            failures.append(x)
            stop()

        for pair in idle:
            for s in pair:
                reactor.add(s, False, on_idle)
        reactor.add(a, False, on_a)
        reactor.add(b, False, on_b)

        def run_once(t, deadline):
            nonlocal n_rt, target
            n_rt = 0
            target = t
            send_a(b"x")
            done = reactor.run(2 * t, 1.0, chunk("W2", n), deadline)
            drain(a)
            drain(b)
            if failures:
                raise RuntimeError("W2: an idle fd was reported ready")
            if done is not None and n_rt != done // 2:
                raise RuntimeError("W2: {} round trips in {} waits".format(
                    n_rt, done))
            return n_rt
    except BaseException:
        close_pairs(pairs)
        raise

    def teardown():
        reactor.close()
        close_pairs(pairs)

    return run_once, teardown, 200


def setup_w3(reactor, name, p):
    pairs = socketpairs(p)
    try:
        check_fds(reactor, [s for pair in pairs for s in pair])
        stop = reactor.stop
        count = 0
        target = 0

        def make_cb(sock):
            recv, send = sock.recv, sock.send

            def on_ready(x, y):     # read the byte, write it back
                nonlocal count
                recv(1)
                send(b"x")
                count += 1
                if count == target:
                    stop()
            return on_ready

        a_cbs, b_cbs = [], []
        for a, b in pairs:
            a_cbs.append(make_cb(a))
            b_cbs.append(make_cb(b))
            reactor.add(a, False, a_cbs[-1])
            reactor.add(b, False, b_cbs[-1])
        if isinstance(reactor, BaselineReactor):
            reactor.batches = (b_cbs, a_cbs)    # primed a -> b: b first

        def run_once(t, deadline):
            nonlocal count, target
            waits = max(1, t // p)
            count = 0
            target = waits * p
            for a, _ in pairs:
                a.send(b"x")                    # one byte in flight per pair
            done = reactor.run(waits, 1.0, chunk("W3", p), deadline)
            for pair in pairs:
                for s in pair:
                    drain(s)
            if done is not None and count != done * p:
                raise RuntimeError("W3: {} callbacks in {} waits over {} "
                                   "pairs".format(count, done, p))
            return count
    except BaseException:
        close_pairs(pairs)
        raise

    def teardown():
        reactor.close()
        close_pairs(pairs)

    return run_once, teardown, 10 * p


SETUP = {"W1": setup_w1, "W2": setup_w2, "W3": setup_w3}


def fds_needed(workload, n):
    return 2 * n if workload == "W3" else n + 2


def measure(name, workload, n, args, limit):
    """Set up, warm up, measure; return the JSON record for one size."""
    if name == "baseline" and workload != "W3":
        raise Skip("baseline is W3's callback cost only")
    actual = n
    if fds_needed(workload, n) > limit - FD_RESERVE:
        actual = limit - FD_RESERVE - 2
        actual = (actual // 2 if workload == "W3" else actual) & ~1
    reactor = make_reactor(name)
    try:
        run_once, teardown, warm_unit = SETUP[workload](reactor, name, actual)
    except BaseException:
        reactor.close()
        raise
    try:
        # Warm-up: fixed-size runs until both the event count and the time
        # are reached (at least one run; bounded by count and time).
        # A warm-up run stops at the warm-up's deadline (after at least one
        # chunk of waits) unless a warm-up event count is asked for.
        warmed = 0
        start = time.perf_counter()
        for _ in range(100000):
            deadline = start + args.warmup + (60.0 if args.warmup_events
                                             else 0.0)
            warmed += run_once(warm_unit, deadline)
            elapsed = time.perf_counter() - start
            if warmed >= args.warmup_events and elapsed >= args.warmup:
                break
            if elapsed > args.warmup + 60.0:
                break
        samples = []
        for _ in range(args.repeat):
            gc.collect()
            c0 = time.process_time()
            t0 = time.perf_counter()
            done = run_once(args.events, t0 + args.cap)
            secs = time.perf_counter() - t0
            cpu = time.process_time() - c0
            if done <= 0:
                raise RuntimeError("no events in the measured run")
            samples.append((secs * 1e9 / done, done, secs, cpu * 1e9 / done))
        samples.sort()
        value, done, secs, cpu_value = samples[len(samples) // 2]
    finally:
        teardown()
    return {"impl": name, "workload": workload, "n": n, "n_actual": actual,
            "unit": UNITS[workload], "value": round(value, 3),
            "cpu_value": round(cpu_value, 3),
            "events": done, "seconds": round(secs, 6),
            "capped": done < args.events}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", required=True)
    parser.add_argument("--workload", required=True, choices=sorted(SETUP))
    parser.add_argument("--sizes", required=True,
                        help="comma list: W1 ready fds, W2 idle fds, "
                             "W3 socketpairs")
    parser.add_argument("--events", type=int, default=200000,
                        help="events (W1, W3) or round trips (W2) per "
                             "measured run")
    parser.add_argument("--cap", type=float, default=0.25,
                        help="time cap of a measured run, seconds")
    parser.add_argument("--warmup", type=float, default=0.05,
                        help="warm-up seconds per size (at least)")
    parser.add_argument("--warmup-events", type=int, default=0,
                        help="warm-up events per size (at least)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measured runs per size; the median is printed")
    args = parser.parse_args(argv)
    limit = raise_nofile()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    for n in sizes:
        try:
            record = measure(args.impl, args.workload, n, args, limit)
        except Skip as exc:
            record = {"impl": args.impl, "workload": args.workload, "n": n,
                      "skip": str(exc)}
            if n == sizes[0] and "FD_SETSIZE" not in str(exc):
                print(json.dumps(record), flush=True)
                return SKIP_EXIT    # the implementation is not here at all
        record["python"] = "{} {}".format(platform.python_implementation(),
                                          platform.python_version())
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
