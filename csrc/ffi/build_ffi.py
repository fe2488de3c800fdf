"""cffi builder of the cffi tier: the module ``fastselectors._cffi_epoll``.

Out-of-line API mode: the declarations below are compiled against the real
system headers, so the C compiler -- not this file -- decides every constant
value, integer type and struct layout (marked ``...``).  That matters for
``struct epoll_event``, which is ``__attribute__((packed))`` on x86-64 only
(12 bytes there, 16 bytes elsewhere): a hand-written layout would be wrong on
one architecture or the other.

The C surface is deliberately tiny -- the syscalls, the waits of
``csrc/waits.h`` and their constants -- and everything else (bookkeeping,
timeouts, EINTR, result building) lives in ``src/fastselectors/``, in
Python, where PyPy's JIT can see it (``_kernel_cffi.py`` is the binding's
user).  errno is read with ``ffi.errno``, which cffi saves right after each
call, so no errno binding is needed.  The epoll instances themselves are
made and closed by ``select.epoll`` objects, whose deallocation no signal
handler can interrupt (``_kernel_cffi.EpollKernel``).

epoll is Linux only: elsewhere (macOS, the BSDs) its declarations are left
out entirely, the module only binds poll(), and ``_kernel_cffi`` then has no
``EpollKernel``.

Used by setuptools through setup.py's
``cffi_modules=["csrc/ffi/build_ffi.py:ffibuilder"]``, which executes this
file from the repository root (as a plain file, not a module: it must stay
self-contained).  It lives outside ``src/`` so it is never shipped in a
wheel.  For a development build in place, run it directly::

    python3 csrc/ffi/build_ffi.py      # -> src/fastselectors/_cffi_epoll*.so
"""

import os
import sys

from cffi import FFI

HAVE_EPOLL = sys.platform.startswith("linux")
# csrc/, for waits.h: this file is run from the repository root by
# setuptools, or directly (see _build_in_place).
CSRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

POLL_CDEF = """
typedef int... nfds_t;
struct pollfd { int fd; short events; short revents; ...; };

#define POLLIN ...
#define POLLOUT ...
#define POLLPRI ...
#define POLLERR ...
#define POLLHUP ...
#define POLLNVAL ...
#define POLLRDHUP ...

int fs_poll_ready(struct pollfd *fds, nfds_t nfds, int ms, long long ns,
                  int *fds_out, int *revents_out);
"""

EPOLL_CDEF = """
struct epoll_event { uint32_t events; ...; };

#define EPOLLIN ...
#define EPOLLOUT ...
#define EPOLLPRI ...
#define EPOLLERR ...
#define EPOLLHUP ...
#define EPOLLRDHUP ...
#define EPOLLET ...
#define EPOLLONESHOT ...
#define EPOLLEXCLUSIVE ...
#define EPOLL_CTL_ADD ...
#define EPOLL_CTL_MOD ...
#define EPOLL_CTL_DEL ...

int fs_epoll_ctl(int epfd, int op, int fd, uint32_t events);
int fs_epoll_ready(int epfd, struct epoll_event *events, int maxevents,
                   int ms, long long ns, int *fds_out,
                   unsigned int *revents_out);
int fs_pwait2_probe(int epfd);
"""

ffibuilder = FFI()
ffibuilder.cdef(POLL_CDEF + (EPOLL_CDEF if HAVE_EPOLL else ""))
# _GNU_SOURCE first: ppoll() and POLLRDHUP (Linux).  The waits themselves
# are csrc/waits.h, the native cores' copy.  Where a header lacks a flag --
# POLLRDHUP off Linux, EPOLLEXCLUSIVE in manylinux2014's glibc 2.17 headers
# -- it is defined here: 0 where the OS has no such thing (the core then
# does not offer it), the kernel ABI's value for EPOLLEXCLUSIVE (Linux 4.5).
#
# The two *_ready functions hand the results to Python as two int arrays
# (fds, revents), which ``ffi.unpack`` turns into lists at C speed: the
# Python cores then walk the same (fd, revents) pairs whatever the tier
# (``_pycore``), and nothing reads a struct field per event in Python.
PREAMBLE = """
#define _GNU_SOURCE 1
#include <poll.h>
#ifndef POLLRDHUP
#define POLLRDHUP 0
#endif
#include "waits.h"

/* poll(), then the ready entries (fd, revents), in the array's order. */
static int fs_poll_ready(struct pollfd *fds, nfds_t nfds, int ms,
                         long long ns, int *fds_out, int *revents_out)
{
    nfds_t i;
    int n = fs_poll_ns(fds, nfds, ms, ns), k = 0;
    for (i = 0; i < nfds && k < n; i++) {
        if (fds[i].revents) {
            fds_out[k] = fds[i].fd;
            revents_out[k] = fds[i].revents;
            k++;
        }
    }
    return n < 0 ? n : k;
}
"""
EPOLL_PREAMBLE = """
#include <stdint.h>
#include <string.h>
#ifndef EPOLLRDHUP
#define EPOLLRDHUP 0x2000
#endif
#ifndef EPOLLEXCLUSIVE
#define EPOLLEXCLUSIVE (1u << 28)
#endif

/* The event data is the fd: the Python cores need no more (_orphans.py). */
static int fs_epoll_ctl(int epfd, int op, int fd, uint32_t events)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.fd = fd;
    return epoll_ctl(epfd, op, fd, &ev);
}

/* epoll_wait (or epoll_pwait2), then each event's (data.fd, events). */
static int fs_epoll_ready(int epfd, struct epoll_event *events,
                          int maxevents, int ms, long long ns, int *fds_out,
                          unsigned int *revents_out)
{
    int i, n = fs_epoll_wait_ns(epfd, events, maxevents, ms, ns);
    for (i = 0; i < n; i++) {
        fds_out[i] = events[i].data.fd;
        revents_out[i] = events[i].events;
    }
    return n;
}
"""

ffibuilder.set_source(
    "fastselectors._cffi_epoll",
    PREAMBLE + (EPOLL_PREAMBLE if HAVE_EPOLL else ""),
    include_dirs=[CSRC],
    depends=[os.path.join(CSRC, "waits.h")],
)


def _build_in_place():
    """Compile into build/cffi and copy the extension into src/fastselectors
    (where ``PYTHONPATH=src`` finds it; ``*.so`` is git-ignored)."""
    import shutil

    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    tmpdir = os.path.join(root, "build", "cffi")
    built = ffibuilder.compile(tmpdir=tmpdir, verbose=True)
    dest = os.path.join(root, "src", "fastselectors")
    shutil.copy(built, dest)
    print("copied", os.path.basename(built), "to", dest)


if __name__ == "__main__":
    _build_in_place()
