/* Load generator for the streams echo benchmark (benchmarks/asyncio/run.py).
 *
 *   echo_client PORT CONNECTIONS MSG_BYTES SECONDS [WARMUP_SECONDS]
 *
 * CONNECTIONS TCP connections to 127.0.0.1:PORT; each sends MSG_BYTES,
 * waits until exactly those bytes came back, and sends again (closed loop,
 * one message in flight per connection).  Prints one JSON line: messages
 * echoed during the measured SECONDS (after WARMUP_SECONDS unmeasured), and
 * errors.  A wrong byte, a short connection or a stall of 5 s is an error
 * (exit 1).  Written in C so the client costs far less CPU than the Python
 * servers it drives.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    size_t got;
} conn;

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
fail(const char *what)
{
    printf("{\"error\": \"%s: %s\"}\n", what, strerror(errno));
    return 1;
}

int
main(int argc, char **argv)
{
    int port, nconn, i, ep;
    size_t msize;
    double seconds, warmup, t_start, t_measure, t_end, last_progress;
    char *msg, *buf;
    conn *conns;
    long long done = 0, measured = 0;
    struct sockaddr_in addr;
    struct epoll_event evs[256];

    if (argc < 5) {
        fprintf(stderr, "usage: %s PORT CONNECTIONS MSG_BYTES SECONDS "
                "[WARMUP]\n", argv[0]);
        return 2;
    }
    port = atoi(argv[1]);
    nconn = atoi(argv[2]);
    msize = (size_t)atol(argv[3]);
    seconds = atof(argv[4]);
    warmup = argc > 5 ? atof(argv[5]) : 0.0;
    if (nconn <= 0 || msize == 0 || seconds <= 0) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    msg = malloc(msize);
    buf = malloc(msize);
    conns = calloc((size_t)nconn, sizeof(*conns));
    if (!msg || !buf || !conns) {
        return fail("malloc");
    }
    for (i = 0; i < (int)msize; i++) {
        msg[i] = (char)('a' + i % 26);
    }
    ep = epoll_create1(0);
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (i = 0; i < nconn; i++) {
        int one = 1;
        struct epoll_event ev;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr,
                              sizeof(addr)) < 0) {
            return fail("connect");
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conns[i].fd = fd;
        ev.events = EPOLLIN;
        ev.data.u32 = (unsigned)i;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            return fail("epoll_ctl");
        }
        if (send(fd, msg, msize, MSG_NOSIGNAL) != (ssize_t)msize) {
            return fail("send");
        }
    }
    t_start = now();
    t_measure = t_start + warmup;
    t_end = t_measure + seconds;
    last_progress = t_start;
    for (;;) {
        double t = now();
        int n;
        if (t >= t_end) {
            break;
        }
        if (t >= t_measure && measured == 0 && done > 0) {
            measured = -done;       /* start counting from here */
        }
        if (t - last_progress > 5.0) {
            printf("{\"error\": \"stalled for 5 s\"}\n");
            return 1;
        }
        n = epoll_wait(ep, evs, 256, 100);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return fail("epoll_wait");
        }
        for (i = 0; i < n; i++) {
            conn *c = &conns[evs[i].data.u32];
            ssize_t r = recv(c->fd, buf + c->got, msize - c->got, 0);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) {
                    continue;
                }
                return fail(r == 0 ? "server closed" : "recv");
            }
            if (memcmp(buf + c->got, msg + c->got, (size_t)r) != 0) {
                printf("{\"error\": \"wrong bytes echoed\"}\n");
                return 1;
            }
            c->got += (size_t)r;
            if (c->got == msize) {
                c->got = 0;
                done++;
                last_progress = t;
                if (send(c->fd, msg, msize, MSG_NOSIGNAL)
                        != (ssize_t)msize) {
                    return fail("send");
                }
            }
        }
    }
    if (measured <= 0) {
        measured += done;
    }
    printf("{\"messages\": %lld, \"total\": %lld, \"seconds\": %.3f}\n",
           measured, done, seconds);
    for (i = 0; i < nconn; i++) {
        close(conns[i].fd);
    }
    return 0;
}
