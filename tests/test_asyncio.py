"""Real asyncio programs on fastselectors.asyncio's loop, on the active tier.

Every program runs under ``asyncio.wait_for`` with a bounded timeout (no
wall-clock asserts) and checks that the running loop's selector really is a
fastselectors selector.  Every loop, transport and socket is closed: leaks
are ResourceWarnings, errors under this suite's warning filter.
"""

import asyncio
import contextlib
import os
import selectors
import signal
import socket
import sys
import warnings

import pytest

import fastselectors
import fastselectors.asyncio as fsasyncio

TIMEOUT = 10.0   # seconds; a hang fails instead of blocking the suite


def assert_our_selector(loop):
    sel = loop._selector
    assert type(sel).__module__ == "fastselectors", type(sel)
    assert isinstance(sel, selectors.BaseSelector)
    assert type(sel) is fastselectors.DefaultSelector


async def _bounded(coro):
    assert_our_selector(asyncio.get_running_loop())
    return await asyncio.wait_for(coro, TIMEOUT)


def run(coro):
    """Run *coro* on our loop via fastselectors.asyncio.run()."""
    return fsasyncio.run(_bounded(coro))


@contextlib.contextmanager
def policy_calls_allowed():
    """asyncio's policy functions warn from 3.14 on; not before."""
    with warnings.catch_warnings():
        if sys.version_info >= (3, 14):
            warnings.simplefilter("ignore", DeprecationWarning)
        yield


def test_module_is_not_the_stdlib_shadow():
    # ``import asyncio`` inside fastselectors/asyncio.py must be the stdlib.
    assert fsasyncio._asyncio is asyncio
    assert fsasyncio.__name__ == "fastselectors.asyncio"
    assert set(fsasyncio.__all__) == {"new_event_loop", "EventLoop",
                                      "EventLoopPolicy", "install", "run"}


# -- loop creation ---------------------------------------------------------

def test_new_event_loop():
    loop = fsasyncio.new_event_loop()
    try:
        assert isinstance(loop, asyncio.SelectorEventLoop)
        assert_our_selector(loop)

        async def main():
            await asyncio.sleep(0)
            return asyncio.get_running_loop()

        assert loop.run_until_complete(main()) is loop
    finally:
        loop.close()
    assert loop.is_closed()


def test_run_returns_result_and_closes_loop():
    seen = []

    async def main():
        loop = asyncio.get_running_loop()
        seen.append(loop)
        await asyncio.sleep(0)
        return 42

    assert run(main()) == 42
    assert seen[0].is_closed()


def test_run_propagates_exception():
    async def main():
        await asyncio.sleep(0)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        run(main())


def test_run_debug_flag():
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert fsasyncio.run(main(), debug=True) is True
    assert fsasyncio.run(main(), debug=False) is False


def test_run_inside_running_loop_refused():
    async def main():
        inner = asyncio.sleep(0)
        try:
            with pytest.raises(RuntimeError, match="running event loop"):
                fsasyncio.run(inner)
            with pytest.raises(RuntimeError, match="running event loop"):
                fsasyncio._run_fallback(inner, None)
        finally:
            inner.close()

    run(main())


@pytest.mark.parametrize("runner", [fsasyncio.run,
                                    lambda m: fsasyncio._run_fallback(m,
                                                                     None)],
                         ids=["run", "fallback_3_9"])
def test_run_cancels_leftovers_and_shuts_down_asyncgens(runner):
    events = []

    async def forever():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            events.append("task cancelled")
            raise

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            events.append("agen finalized")

    async def main():
        assert_our_selector(asyncio.get_running_loop())
        asyncio.get_running_loop().create_task(forever())
        gen = agen()
        assert await gen.__anext__() == 1
        await asyncio.sleep(0)
        main.gen = gen          # keep it alive past main()
        return "done"

    assert runner(main()) == "done"
    assert sorted(events) == ["agen finalized", "task cancelled"]


def test_fallback_refuses_non_coroutine():
    with pytest.raises(ValueError):
        fsasyncio._run_fallback(lambda: None, None)


def test_event_loop_policy():
    with policy_calls_allowed():
        policy = fsasyncio.EventLoopPolicy()
        if sys.platform == "win32":
            assert isinstance(policy,
                              asyncio.WindowsSelectorEventLoopPolicy)
        else:
            assert isinstance(policy, asyncio.DefaultEventLoopPolicy)
    loop = policy.new_event_loop()
    try:
        assert_our_selector(loop)
        assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"
    finally:
        loop.close()


def test_install_makes_asyncio_run_use_our_loop():
    with policy_calls_allowed():
        previous = asyncio.get_event_loop_policy()
    try:
        with policy_calls_allowed():
            fsasyncio.install()
            assert isinstance(asyncio.get_event_loop_policy(),
                              fsasyncio.EventLoopPolicy)

        async def main():
            assert_our_selector(asyncio.get_running_loop())
            await asyncio.sleep(0)
            return "installed"

        assert asyncio.run(main()) == "installed"
        loop = asyncio.new_event_loop()
        try:
            assert_our_selector(loop)
        finally:
            loop.close()
    finally:
        with policy_calls_allowed():
            asyncio.set_event_loop_policy(previous)


# -- streams ---------------------------------------------------------------

N_CLIENTS = 50
N_MESSAGES = 5


def test_streams_echo_many_concurrent_clients():
    async def handle(reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                writer.write(line)
                await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()

    async def client(port, i):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            got = []
            for j in range(N_MESSAGES):
                msg = "client {} message {} {}\n".format(i, j, "x" * (i * j))
                writer.write(msg.encode())
                await writer.drain()
                got.append((await reader.readline()).decode())
                assert got[-1] == msg
            writer.write_eof()
            assert await reader.read() == b""
            return got
        finally:
            writer.close()
            await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            results = await asyncio.gather(
                *(client(port, i) for i in range(N_CLIENTS)))
        finally:
            server.close()
            await server.wait_closed()
        return results

    results = run(main())
    assert len(results) == N_CLIENTS
    assert all(len(r) == N_MESSAGES for r in results)


def test_streams_large_payload_backpressure():
    payload = os.urandom(4 * 1024 * 1024)

    async def handle(reader, writer):
        try:
            data = await reader.readexactly(len(payload))
            writer.write(data)
            await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(payload)
                await writer.drain()
                echoed = await reader.readexactly(len(payload))
            finally:
                writer.close()
                await writer.wait_closed()
        finally:
            server.close()
            await server.wait_closed()
        return echoed

    assert run(main()) == payload


# -- loop.sock_* -----------------------------------------------------------

def test_sock_methods():
    async def main():
        loop = asyncio.get_running_loop()
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            listener.setblocking(False)
            with socket.socket() as client:
                client.setblocking(False)
                accept = loop.create_task(loop.sock_accept(listener))
                await loop.sock_connect(client, listener.getsockname())
                conn, _ = await accept
                with conn:
                    conn.setblocking(False)
                    await loop.sock_sendall(client, b"ping" * 1000)
                    got = b""
                    while len(got) < 4000:
                        chunk = await loop.sock_recv(conn, 65536)
                        assert chunk
                        got += chunk
                    assert got == b"ping" * 1000

                    # a big reply that cannot fit in the socket buffers
                    big = b"y" * (8 * 1024 * 1024)
                    send = loop.create_task(loop.sock_sendall(conn, big))
                    received = 0
                    while received < len(big):
                        chunk = await loop.sock_recv(client, 1 << 20)
                        assert chunk
                        received += len(chunk)
                    await send
                    conn.shutdown(socket.SHUT_WR)
                    assert await loop.sock_recv(client, 10) == b""
        return "ok"

    assert run(main()) == "ok"


# -- add_reader / add_writer ----------------------------------------------

def test_add_remove_reader_writer():
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.setblocking(False)

            # writer: a fresh socket is writable at once
            writable = loop.create_future()
            loop.add_writer(a.fileno(), writable.set_result, "w")
            assert await writable == "w"
            assert loop.remove_writer(a.fileno()) is True
            assert loop.remove_writer(a.fileno()) is False

            # reader: fires once data arrives, repeatedly until drained
            got = []
            done = loop.create_future()

            def on_readable():
                got.append(b.recv(100))
                if b"".join(got) == b"hello world" and not done.done():
                    done.set_result(None)

            loop.add_reader(b, on_readable)
            a.send(b"hello ")
            await asyncio.sleep(0)
            a.send(b"world")
            await done
            assert loop.remove_reader(b) is True
            assert loop.remove_reader(b) is False

            # both interests on one fd at once
            r_fut, w_fut = loop.create_future(), loop.create_future()
            loop.add_reader(a, lambda: r_fut.done() or r_fut.set_result(1))
            loop.add_writer(a, lambda: w_fut.done() or w_fut.set_result(2))
            assert await w_fut == 2
            b.send(b"!")
            assert await r_fut == 1
            assert a.recv(10) == b"!"
            assert loop.remove_writer(a) is True
            assert loop.remove_reader(a) is True

            # replacing a reader callback, then no callback after removal
            calls = []
            fired = loop.create_future()
            loop.add_reader(b, calls.append, "old")
            loop.add_reader(b, lambda: (calls.append("new"),
                                        b.recv(10),
                                        fired.done() or fired.set_result(0)))
            a.send(b"x")
            await fired
            assert "old" not in calls
            assert loop.remove_reader(b) is True
            a.send(b"y")
            for _ in range(5):
                await asyncio.sleep(0)
            assert calls == ["new"]
            assert b.recv(10) == b"y"
        return "ok"

    assert run(main()) == "ok"


def test_reader_sees_peer_close():
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        with b:
            b.setblocking(False)
            eof = loop.create_future()

            def on_readable():
                data = b.recv(10)
                if data == b"" and not eof.done():
                    eof.set_result("eof")

            loop.add_reader(b, on_readable)
            try:
                a.close()
                assert await eof == "eof"
            finally:
                loop.remove_reader(b)
        return "ok"

    assert run(main()) == "ok"


# -- subprocesses ----------------------------------------------------------

def test_subprocess_pipes_communicate():
    code = ("import sys\n"
            "data = sys.stdin.buffer.read()\n"
            "sys.stdout.buffer.write(data.upper())\n"
            "sys.stderr.write('err')\n")

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(b"hello subprocess " * 1000)
        return proc.returncode, out, err

    rc, out, err = run(main())
    assert rc == 0
    assert out == b"HELLO SUBPROCESS " * 1000
    assert err == b"err"


def test_subprocess_stream_lines():
    code = ("import sys\n"
            "for line in sys.stdin:\n"
            "    sys.stdout.write(line[::-1].strip() + '\\n')\n"
            "    sys.stdout.flush()\n")

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        replies = []
        for word in ("abc", "hello", "xyz"):
            proc.stdin.write(word.encode() + b"\n")
            await proc.stdin.drain()
            replies.append((await proc.stdout.readline()).strip())
        proc.stdin.close()
        await proc.stdin.wait_closed()
        assert await proc.stdout.read() == b""
        return await proc.wait(), replies

    rc, replies = run(main())
    assert rc == 0
    assert replies == [b"cba", b"olleh", b"zyx"]


# -- signals ---------------------------------------------------------------

@pytest.mark.skipif(not hasattr(signal, "SIGUSR1")
                    or sys.platform == "win32",
                    reason="loop.add_signal_handler and SIGUSR1 are POSIX "
                           "only")
def test_signal_handler():
    async def main():
        loop = asyncio.get_running_loop()
        got = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1,
                                lambda tag: got.done() or got.set_result(tag),
                                "usr1")
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            return await got
        finally:
            assert loop.remove_signal_handler(signal.SIGUSR1) is True

    previous = signal.getsignal(signal.SIGUSR1)
    try:
        assert run(main()) == "usr1"
    finally:
        signal.signal(signal.SIGUSR1, previous)
