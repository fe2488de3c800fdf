"""Does deferring epoll_ctl(MOD) until the next wait pay?

libuv queues interest changes and applies them just before epoll_wait, so a
change undone before the wait costs no syscall.  Whether that pays depends
on how often a change *is* undone before the next wait.  This program:

1. times a modify() pair (add write interest, remove it) on the stdlib and
   on fastselectors, and a data-only modify (no syscall) for the Python
   layer's share;
2. runs real asyncio streams on a selector that counts, per wait, how many
   fds had their events changed since the previous wait and how many of
   those changes were net no-ops (undone before the wait): the calls that
   deferral would save.  Two traffic shapes: request/response echo, and a
   bulk stream through small socket buffers (backpressure: the case where
   asyncio toggles write interest at all).

    python benchmarks/modify_study.py            # prints a small report

Medians of 5 interleaved rounds; the counts are exact.
"""

import asyncio
import selectors as stdlib
import socket
import statistics
import sys
import time

import fastselectors


def time_modify_pairs(cls, n=100000):
    a, b = socket.socketpair()
    sel = cls()
    sel.register(a, fastselectors.EVENT_READ, 0)
    modify = sel.modify
    start = time.perf_counter()
    for _ in range(n):
        modify(a, 3, 0)
        modify(a, 1, 0)
    pair = (time.perf_counter() - start) / n
    start = time.perf_counter()
    for i in range(n):
        modify(a, 1, i)
    data_only = (time.perf_counter() - start) / n
    sel.close()
    a.close()
    b.close()
    return pair * 1e9, data_only * 1e9


class CountingSelector(fastselectors.EpollSelector):
    """Counts interest changes between waits and the undone ones."""

    def __init__(self):
        super().__init__()
        self.waits = self.changed = self.undone = self.modifies = 0
        self._at_wait = {}      # fd -> events at the previous wait
        self._touched = set()

    def modify(self, fileobj, events, data=None):
        key = super().modify(fileobj, events, data)
        self.modifies += 1
        self._touched.add(key.fd)
        return key

    def select(self, timeout=None):
        now = {fd: k.events for fd, k in self._fd_to_key.items()}
        for fd in self._touched:
            if fd in now:
                self.changed += 1
                if self._at_wait.get(fd) == now[fd]:
                    self.undone += 1
        self._touched.clear()
        self._at_wait = now
        self.waits += 1
        return super().select(timeout)


async def echo_traffic(messages=3000, size=100):
    async def handle(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = b"x" * size
    for _ in range(messages):
        writer.write(payload)
        await writer.drain()
        await reader.readexactly(size)
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()


async def bulk_traffic(total=32 * 1024 * 1024, chunk=64 * 1024):
    received = 0
    done = asyncio.Event()

    async def handle(reader, writer):
        nonlocal received
        while data := await reader.read(65536):
            received += len(data)
        done.set()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    payload = b"y" * chunk
    for _ in range(total // chunk):
        writer.write(payload)
        await writer.drain()
    writer.close()
    await done.wait()
    server.close()
    await server.wait_closed()


def count(traffic):
    sel = CountingSelector()
    loop = asyncio.SelectorEventLoop(sel)
    try:
        loop.run_until_complete(traffic())
    finally:
        loop.close()
    return sel


def main():
    print("Python", sys.version.split()[0], "tier", fastselectors.BACKEND)
    rounds = {"stdlib": [], "fast": []}
    for _ in range(5):
        rounds["stdlib"].append(time_modify_pairs(stdlib.EpollSelector))
        rounds["fast"].append(time_modify_pairs(fastselectors.EpollSelector))
    print("modify() pair (add + remove write interest), ns; data-only "
          "modify, ns (median of 5):")
    for name, rs in rounds.items():
        print("  {:<7} pair {:>6.0f}   data-only {:>6.0f}".format(
            name, statistics.median(r[0] for r in rs),
            statistics.median(r[1] for r in rs)))
    print("asyncio traffic on a counting EpollSelector:")
    for name, traffic in (("echo 100 B x 3000", echo_traffic),
                          ("bulk 32 MiB, SO_SNDBUF 16 KiB", bulk_traffic)):
        sel = count(traffic)
        print("  {:<30} waits {:>6}  modify() {:>6}  fds changed at a "
              "wait {:>6}  of which undone {:>5}".format(
                  name, sel.waits, sel.modifies, sel.changed, sel.undone))


if __name__ == "__main__":
    main()
