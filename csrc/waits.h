/* The kernel waits with a nanosecond timeout: the one copy, included by the
 * native cores (csrc/epoll_core.c, csrc/poll_core.c) and by the cffi tier's
 * module (csrc/ffi/build_ffi.py puts csrc/ on its include path).
 *
 * Plain C, no Python.h.  The includer defines _GNU_SOURCE before its first
 * #include (Python.h's pyconfig.h does; so does the cffi preamble): ppoll()
 * and POLLRDHUP need it.
 *
 * Every function takes the wait both ways: ms for epoll_wait()/poll() (-1
 * forever, 0 poll, else rounded up, as the stdlib) and ns for the calls that
 * take a timespec (used when ms > 0; never more than ms).  They return what
 * the syscall returns: -1 with errno set on failure, EINTR included (the
 * caller runs the signal handlers and retries with the remaining time).
 */
#ifndef FS_WAITS_H
#define FS_WAITS_H

#include <errno.h>
#include <poll.h>
#include <time.h>
#ifdef __linux__
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

static inline struct timespec
fs_timespec(long long ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ns / 1000000000LL);
    ts.tv_nsec = (long)(ns % 1000000000LL);
    return ts;
}

/* ppoll() takes a timespec on Linux (glibc has had it since 2.4, so
 * manylinux2014 wheels may use it); elsewhere poll() and milliseconds. */
static inline int
fs_poll_ns(struct pollfd *fds, nfds_t nfds, int ms, long long ns)
{
#ifdef __linux__
    if (ms > 0) {
        struct timespec ts = fs_timespec(ns);
        return ppoll(fds, nfds, &ts, NULL);
    }
#endif
    return poll(fds, nfds, ms);
}

#ifdef __linux__

/* epoll_pwait2() (Linux 5.11) takes a timespec: sub-millisecond waits.
 * glibc has a wrapper only since 2.35, so it is called through syscall():
 * wheels stay manylinux2014 (glibc 2.17) compatible.  Its number is 441 on
 * every architecture (asm-generic).  Kernels without it answer ENOSYS, and
 * the seccomp profiles of older container runtimes EPERM: then every later
 * wait of the process uses epoll_wait(), rounding up to milliseconds like
 * the stdlib.  (A plain int per module: a lost race costs one more probe.) */
#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 441
#endif

static inline int *
fs_pwait2_usable(void)
{
    static int usable = 1;
    return &usable;
}

static inline int
fs_epoll_wait_ns(int epfd, struct epoll_event *events, int maxevents,
                 int ms, long long ns)
{
    if (ms > 0 && *fs_pwait2_usable()) {
        struct timespec ts = fs_timespec(ns);
        int n = (int)syscall(SYS_epoll_pwait2, epfd, events, maxevents, &ts,
                             NULL, (size_t)0);
        if (n >= 0 || (errno != ENOSYS && errno != EPERM)) {
            return n;
        }
        *fs_pwait2_usable() = 0;
    }
    return epoll_wait(epfd, events, maxevents, ms);
}

/* 1 if waits use epoll_pwait2 in this process (probing with a zero wait if
 * no wait has told yet). */
static inline int
fs_pwait2_probe(int epfd)
{
    if (*fs_pwait2_usable()) {
        struct epoll_event ev;
        struct timespec ts = {0, 0};
        if (syscall(SYS_epoll_pwait2, epfd, &ev, 1, &ts, NULL, (size_t)0) < 0
                && (errno == ENOSYS || errno == EPERM)) {
            *fs_pwait2_usable() = 0;
        }
    }
    return *fs_pwait2_usable();
}

#endif  /* __linux__ */

#endif  /* FS_WAITS_H */
