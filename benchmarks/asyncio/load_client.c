/* Load generator for benchmarks/asyncio (run.py, callgrind.py).
 *
 *   load_client MODE PORT CONNECTIONS SECONDS [WARMUP_SECONDS]
 *   load_client MODE PORT CONNECTIONS -n COUNT
 *
 * MODE: echo (100-byte messages echoed back), http (a keep-alive GET,
 * answered by benchmarks/http's 78-byte response), resp (a RESP PING,
 * answered by +PONG).  CONNECTIONS TCP connections to 127.0.0.1:PORT, each
 * with one request in flight (closed loop): send it, wait until exactly the
 * expected answer came back, send again.  Runs SECONDS (after WARMUP
 * seconds unmeasured), or until COUNT answers in all (for instruction
 * counts: a fixed amount of work).  Prints one JSON line: answers counted.
 * A wrong byte, a closed connection or a 5 s stall is an error (exit 1).
 * In C, so that the client costs far less CPU than the Python servers.
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

static const char HTTP_REQ[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
static const char HTTP_RESP[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n"
    "Content-Type: text/plain\r\n\r\nHello, World!";
static const char RESP_REQ[] = "*1\r\n$4\r\nPING\r\n";
static const char RESP_RESP[] = "+PONG\r\n";

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
    size_t reqlen, resplen;
    double seconds = 0, warmup = 0, t_measure, t_end, last_progress;
    long long count = 0, done = 0, at_measure = -1;
    char *req, *resp, *buf;
    conn *conns;
    struct sockaddr_in addr;
    struct epoll_event evs[256];

    if (argc < 5) {
        fprintf(stderr, "usage: %s echo|http|resp PORT CONNECTIONS "
                "SECONDS [WARMUP] | -n COUNT\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "echo") == 0) {
        reqlen = resplen = 100;
        req = malloc(reqlen);
        for (i = 0; i < (int)reqlen; i++) {
            req[i] = (char)('a' + i % 26);
        }
        resp = req;
    }
    else if (strcmp(argv[1], "http") == 0) {
        req = (char *)HTTP_REQ;
        reqlen = sizeof(HTTP_REQ) - 1;
        resp = (char *)HTTP_RESP;
        resplen = sizeof(HTTP_RESP) - 1;
    }
    else if (strcmp(argv[1], "resp") == 0) {
        req = (char *)RESP_REQ;
        reqlen = sizeof(RESP_REQ) - 1;
        resp = (char *)RESP_RESP;
        resplen = sizeof(RESP_RESP) - 1;
    }
    else {
        fprintf(stderr, "unknown mode %s\n", argv[1]);
        return 2;
    }
    port = atoi(argv[2]);
    nconn = atoi(argv[3]);
    if (strcmp(argv[4], "-n") == 0 && argc > 5) {
        count = atoll(argv[5]);
    }
    else {
        seconds = atof(argv[4]);
        warmup = argc > 5 ? atof(argv[5]) : 0.0;
    }
    if (nconn <= 0 || (count <= 0 && seconds <= 0)) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    buf = malloc(resplen);
    conns = calloc((size_t)nconn, sizeof(*conns));
    if (!buf || !conns) {
        return fail("malloc");
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
    }
    /* Requests start only once every connection is up. */
    for (i = 0; i < nconn; i++) {
        if (send(conns[i].fd, req, reqlen, MSG_NOSIGNAL) != (ssize_t)reqlen) {
            return fail("send");
        }
    }
    t_measure = now() + warmup;
    t_end = t_measure + seconds;
    last_progress = now();
    for (;;) {
        double t = now();
        int n;
        if (count > 0 ? done >= count : t >= t_end) {
            break;
        }
        if (count <= 0 && at_measure < 0 && t >= t_measure) {
            at_measure = done;
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
            ssize_t r = recv(c->fd, buf + c->got, resplen - c->got, 0);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) {
                    continue;
                }
                return fail(r == 0 ? "server closed" : "recv");
            }
            if (memcmp(buf + c->got, resp + c->got, (size_t)r) != 0) {
                printf("{\"error\": \"wrong answer bytes\"}\n");
                return 1;
            }
            c->got += (size_t)r;
            if (c->got == resplen) {
                c->got = 0;
                done++;
                last_progress = t;
                if ((count <= 0 || done + nconn <= count)
                        && send(c->fd, req, reqlen, MSG_NOSIGNAL)
                           != (ssize_t)reqlen) {
                    return fail("send");
                }
            }
        }
    }
    printf("{\"answers\": %lld, \"total\": %lld}\n",
           count > 0 ? done : done - (at_measure < 0 ? 0 : at_measure),
           done);
    for (i = 0; i < nconn; i++) {
        close(conns[i].fd);
    }
    return 0;
}
