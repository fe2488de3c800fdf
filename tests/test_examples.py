"""The servers in examples/, run as real processes and driven over TCP.

Each test starts one example (reactor.py once per selector class of the
active tier) with ``sys.executable`` (same interpreter, same
fastselectors package, same tier), reads the port it prints, runs CLIENTS
concurrent clients against it and checks every reply byte for byte, then
stops the server with SIGTERM and checks that it exited cleanly.

A client sends LINES short lines plus one large line, in sends of irregular
sizes (several lines per send, lines cut across sends), then a final line
without its b"\\n" (never answered), then shuts down its sending side; it
reads concurrently until EOF.  Client 0's large line is bigger than a fully
grown loopback socket buffer, so the server must keep a partial line over
many reads and send its reply over many writable events.
"""

import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import fastselectors
import platforms        # tests/simulate (conftest puts it on sys.path)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: Bound on every blocking step (socket op, process start or exit).  Never
#: reached when things work; generous for slow CI machines and PyPy.
TIMEOUT = 30.0
CLIENTS = 20
LINES = 50
BIG_LINE = 6 << 20          # client 0: above a grown loopback buffer (4 MiB)
MEDIUM_LINE = 128 << 10     # other clients: above a new socket's buffer

SELECTOR_NAMES = [name for name in
                  ("EpollSelector", "KqueueSelector", "DevpollSelector",
                   "PollSelector", "SelectSelector")
                  if hasattr(fastselectors, name)]


def epoll_supports(flag_name):
    cls = getattr(fastselectors, "EpollSelector", None)
    return cls is not None and cls.supports(getattr(fastselectors, flag_name))


# -- the server process ------------------------------------------------------

class Server:
    """An example server in a subprocess (its own process group, so that a
    worker that outlives it can still be found and killed)."""

    def __init__(self, script, *args):
        env = dict(os.environ)
        # The child imports the very package and tier this test runs on.
        pkg_root = str(Path(fastselectors.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(
            [pkg_root] + [p for p in [env.get("PYTHONPATH")] if p])
        env["FASTSELECTORS_BACKEND"] = fastselectors.BACKEND
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / script), "--port", "0",
             "--max-seconds", "120", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, start_new_session=True)
        self.stdout, self.stderr = [], []
        self._stdout_q = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, daemon=True,
                             args=(self.proc.stdout, self.stdout,
                                   self._stdout_q)),
            threading.Thread(target=self._read, daemon=True,
                             args=(self.proc.stderr, self.stderr, None)),
        ]
        for reader in self._readers:
            reader.start()
        self.port = None

    @staticmethod
    def _read(pipe, lines, lines_q):
        for raw in pipe:
            line = raw.decode("utf-8", "replace")
            lines.append(line)
            if lines_q is not None:
                lines_q.put(line)
        if lines_q is not None:
            lines_q.put(None)       # EOF

    def __enter__(self):
        try:
            first = self._stdout_q.get(timeout=TIMEOUT)
        except queue.Empty:
            first = None
        if first is None or not first.strip().isdigit():
            self.close()
            pytest.fail("the server did not print its port (first stdout "
                        "line {!r}); stderr:\n{}".format(first,
                                                         self.stderr_text()))
        self.port = int(first)
        return self

    def __exit__(self, *exc):
        self.close()

    def stderr_text(self):
        return "".join(self.stderr)

    def wait_for_stderr(self, predicate, what):
        """Wait until *predicate(lines)* is true of the stderr lines read so
        far (another thread reads them); return its value."""
        for _ in range(int(TIMEOUT / 0.05)):
            found = predicate(list(self.stderr))
            if found:
                return found
            threading.Event().wait(0.05)
        pytest.fail("no {} on stderr:\n{}".format(what, self.stderr_text()))

    def stop(self):
        """SIGTERM, then the exit status (a failure if it does not exit)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail("the server ignored SIGTERM; stderr:\n"
                        + self.stderr_text())

    def close(self):
        """Always safe: kill whatever is left, reap it, close the pipes."""
        proc = self.proc
        try:
            if proc.poll() is None:     # the leader lives: its group exists
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=TIMEOUT)
        finally:
            for reader in self._readers:
                reader.join(TIMEOUT / 10)
            if any(reader.is_alive() for reader in self._readers):
                # Someone in the group (a forked worker) still holds the
                # pipes: the group still exists, so its id is still ours.
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                for reader in self._readers:
                    reader.join(TIMEOUT)
            proc.stdout.close()
            proc.stderr.close()

    def check_clean_exit(self, rc):
        err = self.stderr_text()
        assert rc == 0, "exit status {}; stderr:\n{}".format(rc, err)
        assert "Traceback" not in err, err


# -- the clients --------------------------------------------------------------

class Client:
    """One connection's script: what it sends, and the exact reply due."""

    def __init__(self, cid, lines=LINES, big=None):
        rng = random.Random(cid)
        body = [b"client %d line %d %s" % (cid, i, b"." * rng.randrange(60))
                for i in range(lines)]
        head, tail = body, []
        if big:
            at = rng.randrange(len(body) + 1)
            head, tail = body[:at], body[at:]
        head = b"".join(line + b"\n" for line in head)
        tail = b"".join(line + b"\n" for line in tail)
        # Random bytes: any reordering or loss shows.  No b"\n" inside.
        big_line = rng.randbytes(big).replace(b"\n", b"N") + b"\n" if big \
            else b""
        self.expected = head + big_line + tail
        last = b"a last line without its newline"
        # Sends of 1 to 300 bytes: several lines per send, lines cut across
        # sends; the large line in one sendall().
        self.chunks = (self._cut(head, rng) + ([big_line] if big else [])
                       + self._cut(tail + last, rng))
        self.received = None
        self.local_port = None
        self.error = None

    @staticmethod
    def _cut(data, rng):
        chunks, pos = [], 0
        while pos < len(data):
            end = pos + rng.randrange(1, 300)
            chunks.append(data[pos:end])
            pos = end
        return chunks

    def run(self, port):
        try:
            self._run(port)
        except BaseException as exc:    # reported by check()
            self.error = exc

    def _run(self, port):
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        send_error = []

        def send():
            try:
                for chunk in self.chunks:
                    sock.sendall(chunk)
                sock.shutdown(socket.SHUT_WR)
            except BaseException as exc:
                send_error.append(exc)

        # Read while sending: the server may stop reading from a client that
        # does not read its replies (backpressure).
        sender = threading.Thread(target=send, daemon=True)
        try:
            self.local_port = sock.getsockname()[1]
            sender.start()
            received = bytearray()
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    break
                received += data
            self.received = bytes(received)
        finally:
            if sender.is_alive():
                try:
                    sock.shutdown(socket.SHUT_RDWR)     # unblock the sender
                except OSError:
                    pass
            if sender.ident is not None:
                sender.join(TIMEOUT)
            sock.close()
        if send_error:
            raise send_error[0]

    def check(self):
        if self.error is not None:
            raise AssertionError("client failed: {!r}".format(
                self.error)) from self.error
        got, want = self.received, self.expected
        if got != want:     # not `assert got == want`: megabytes to diff
            at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                      min(len(got), len(want)))
            pytest.fail("reply differs at byte {} of {} (got {}): got {!r}, "
                        "want {!r}".format(at, len(want), len(got),
                                           got[at:at + 40], want[at:at + 40]))


def run_clients(port, clients):
    threads = [threading.Thread(target=c.run, args=(port,), daemon=True)
               for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        # Every socket op has a timeout, so this ends; the bound is a guard.
        thread.join(TIMEOUT * 4)
        assert not thread.is_alive(), "a client hung"
    for client in clients:
        client.check()


def standard_clients():
    return [Client(cid, big=BIG_LINE if cid == 0 else MEDIUM_LINE)
            for cid in range(CLIENTS)]


def exercise(server):
    """The common check: concurrent clients, then a clean stop with one
    client still connected (the server must close it, not hang)."""
    run_clients(server.port, standard_clients())
    idle = socket.create_connection(("127.0.0.1", server.port),
                                    timeout=TIMEOUT)
    try:
        idle.sendall(b"ping\n")
        assert recv_exactly(idle, 5) == b"ping\n"
        server.check_clean_exit(server.stop())
        assert idle.recv(1) == b""          # closed by the server
    finally:
        idle.close()


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


# -- the tests ----------------------------------------------------------------

@pytest.mark.parametrize("selector_name", SELECTOR_NAMES)
def test_reactor(selector_name):
    with Server("reactor.py", "--selector", selector_name) as server:
        exercise(server)


def test_threaded():
    with Server("threaded.py", "--workers", "4") as server:
        exercise(server)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="prefork.py needs fork()")
@pytest.mark.skipif(not hasattr(fastselectors, "EpollSelector"),
                    reason="prefork.py needs EpollSelector (epoll, Linux)")
def test_prefork():
    accepted = re.compile(r"worker (\d+) accepted 127\.0\.0\.1:(\d+)$")
    with Server("prefork.py", "--workers", "4") as server:
        if epoll_supports("EXCLUSIVE"):
            notice = "with EVENT_READ | EXCLUSIVE"
        else:
            notice = "EXCLUSIVE is not supported"
        server.wait_for_stderr(
            lambda lines: any(notice in line for line in lines), notice)

        def workers_of(clients):
            """port -> pid of the worker that accepted it, from the log."""
            ports = {c.local_port for c in clients}

            def all_logged(lines):
                seen = {}
                for line in lines:
                    m = accepted.match(line.strip())
                    if m and int(m.group(2)) in ports:
                        seen[int(m.group(2))] = int(m.group(1))
                return seen if len(seen) == len(ports) else None
            return server.wait_for_stderr(all_logged,
                                          "accept line for every client")

        clients = standard_clients()
        run_clients(server.port, clients)
        pids = set(workers_of(clients).values())
        # Concurrent clients almost always reach several workers at once;
        # if not, more rounds of them (this bounds the loop, not the time).
        for round_ in range(20):
            if len(pids) > 1:
                break
            extra = [Client(1000 * (round_ + 1) + i, lines=3)
                     for i in range(CLIENTS)]
            run_clients(server.port, extra)
            pids |= set(workers_of(extra).values())
        assert len(pids) > 1, "one worker served every connection"
        assert server.proc.pid not in pids, "the parent accepted"
        server.check_clean_exit(server.stop())


@pytest.mark.skipif(not fastselectors.DefaultSelector.supports(
                        fastselectors.EDGE),
                    reason="EDGE needs epoll or kqueue; this platform's "
                    "DefaultSelector has neither")
@pytest.mark.skipif(platforms.active == "kqueue",
                    reason="the simulated kqueue's EV_CLEAR misses write "
                    "edges between two of its scans (fake_kqueue.py); the "
                    "macOS jobs run this on a real kqueue")
def test_edge():
    with Server("edge.py") as server:
        exercise(server)


@pytest.mark.skipif(not epoll_supports("ONESHOT"),
                    reason="oneshot.py needs EpollSelector: the ONESHOT of "
                    "poll/select is emulated per call, unsafe across threads")
def test_oneshot():
    with Server("oneshot.py", "--threads", "4") as server:
        exercise(server)
