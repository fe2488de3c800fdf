"""cffi builder of the cffi tier: the module ``fastselectors._cffi_epoll``.

Out-of-line API mode: the declarations below are compiled against the real
system headers, so the C compiler -- not this file -- decides every constant
value, integer type and struct layout (marked ``...``).  That matters for
``struct epoll_event``, which is ``__attribute__((packed))`` on x86-64 only
(12 bytes there, 16 bytes elsewhere): a hand-written layout would be wrong on
one architecture or the other.

The C surface is deliberately tiny -- four syscalls and their constants --
and everything else (bookkeeping, timeouts, EINTR, result building) lives in
``src/fastselectors/_cffi_cores.py``, in Python, where PyPy's JIT can see it.
errno is read with ``ffi.errno``, which cffi saves right after each call, so
no errno binding is needed; the epoll fd is closed with ``os.close``.

epoll is Linux only: elsewhere (macOS, the BSDs) its declarations are left
out entirely, the module only binds poll(), and ``_cffi_cores`` then has no
``EpollCore``.

Used by setuptools through setup.py's
``cffi_modules=["csrc/ffi/build_ffi.py:ffibuilder"]``, which executes this
file from the repository root (as a plain file, not a module: it must stay
self-contained).  It lives outside ``src/`` so it is never shipped in a
wheel.  For a development build in place, run it directly::

    python3 csrc/ffi/build_ffi.py      # -> src/fastselectors/_cffi_epoll*.so
"""

import sys

from cffi import FFI

HAVE_EPOLL = sys.platform.startswith("linux")

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

int poll(struct pollfd *fds, nfds_t nfds, int timeout);
int fs_poll_ns(struct pollfd *fds, nfds_t nfds, int ms, long long ns);
"""

EPOLL_CDEF = """
typedef union epoll_data { int fd; uint64_t u64; ...; } epoll_data_t;
struct epoll_event { uint32_t events; epoll_data_t data; ...; };

#define EPOLLIN ...
#define EPOLLOUT ...
#define EPOLLPRI ...
#define EPOLLERR ...
#define EPOLLHUP ...
#define EPOLLRDHUP ...
#define EPOLLET ...
#define EPOLLONESHOT ...
#define EPOLLEXCLUSIVE ...
#define EPOLL_CLOEXEC ...
#define EPOLL_CTL_ADD ...
#define EPOLL_CTL_MOD ...
#define EPOLL_CTL_DEL ...

int epoll_create1(int flags);
int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event);
int epoll_wait(int epfd, struct epoll_event *events, int maxevents,
               int timeout);
int fs_epoll_wait_ns(int epfd, struct epoll_event *events, int maxevents,
                     int ms, long long ns);
int fs_pwait2_probe(int epfd);
"""

ffibuilder = FFI()
ffibuilder.cdef(POLL_CDEF + (EPOLL_CDEF if HAVE_EPOLL else ""))
# _GNU_SOURCE: POLLRDHUP (Linux).  Where a header lacks a flag -- POLLRDHUP
# off Linux, EPOLLEXCLUSIVE in manylinux2014's glibc 2.17 headers -- it is
# defined here: 0 where the OS has no such thing (the core then does not
# offer it), the kernel ABI's value for EPOLLEXCLUSIVE (Linux 4.5).
PREAMBLE = """
#define _GNU_SOURCE 1
#include <poll.h>
#include <time.h>
#ifndef POLLRDHUP
#define POLLRDHUP 0
#endif

/* Sub-millisecond waits (issue #4): ppoll() takes a timespec on Linux (in
 * glibc since 2.4); elsewhere poll() and ms.  ns is used when ms > 0. */
static int fs_poll_ns(struct pollfd *fds, nfds_t nfds, int ms, long long ns)
{
#ifdef __linux__
    if (ms > 0) {
        struct timespec ts;
        ts.tv_sec = (time_t)(ns / 1000000000LL);
        ts.tv_nsec = (long)(ns % 1000000000LL);
        return ppoll(fds, nfds, &ts, NULL);
    }
#endif
    return poll(fds, nfds, ms);
}
"""
EPOLL_PREAMBLE = """
#include <errno.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifndef EPOLLRDHUP
#define EPOLLRDHUP 0x2000
#endif
#ifndef EPOLLEXCLUSIVE
#define EPOLLEXCLUSIVE (1u << 28)
#endif

/* epoll_pwait2() (Linux 5.11) through syscall(), so that no glibc newer
 * than manylinux2014's 2.17 is needed; 441 on every architecture.  ENOSYS
 * (old kernel) or EPERM (old seccomp profiles): epoll_wait() from then on,
 * with ms rounded up like the stdlib.  The same as csrc/epoll_core.c. */
#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 441
#endif
static int fs_pwait2_usable = 1;

static int fs_epoll_wait_ns(int epfd, struct epoll_event *events,
                            int maxevents, int ms, long long ns)
{
    if (ms > 0 && fs_pwait2_usable) {
        struct timespec ts;
        int n;
        ts.tv_sec = (time_t)(ns / 1000000000LL);
        ts.tv_nsec = (long)(ns % 1000000000LL);
        n = (int)syscall(SYS_epoll_pwait2, epfd, events, maxevents, &ts,
                         NULL, (size_t)0);
        if (n >= 0 || (errno != ENOSYS && errno != EPERM))
            return n;
        fs_pwait2_usable = 0;
    }
    return epoll_wait(epfd, events, maxevents, ms);
}

/* 1 if waits use epoll_pwait2 in this process (probing with a zero wait). */
static int fs_pwait2_probe(int epfd)
{
    if (fs_pwait2_usable) {
        struct epoll_event ev;
        struct timespec ts = {0, 0};
        if (syscall(SYS_epoll_pwait2, epfd, &ev, 1, &ts, NULL, (size_t)0) < 0
                && (errno == ENOSYS || errno == EPERM))
            fs_pwait2_usable = 0;
    }
    return fs_pwait2_usable;
}
"""

ffibuilder.set_source(
    "fastselectors._cffi_epoll",
    PREAMBLE + (EPOLL_PREAMBLE if HAVE_EPOLL else ""),
    # cffi's generated layout check takes &ev->data to verify its type;
    # on x86-64 that member is packed, and GCC >= 9 warns about it.  The
    # check is compile-time only (nothing dereferences it), so the warning
    # is noise in every build log.  (A compiler older than the flag ignores
    # it -- GCC -- or warns -- clang; neither fails.)
    extra_compile_args=(["-Wno-address-of-packed-member"] if HAVE_EPOLL
                        else []),
)


def _build_in_place():
    """Compile into build/cffi and copy the extension into src/fastselectors
    (where ``PYTHONPATH=src`` finds it; ``*.so`` is git-ignored)."""
    import os
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
