/* The floor: the benchmark workloads in C, with the same syscalls as the
 * Python loops (epoll_wait, plus read/write of 1 byte on AF_UNIX
 * socketpairs) and a callback through a function pointer per event, as an
 * event loop does.  No Python anywhere: what no Python selector can beat.
 *
 * Built by benchmarks/impls.py at run time (cc -O2 into a temp dir):
 *
 *     floor W1|W2|W3 SIZES TARGET WARMUP_EVENTS WARMUP_SECONDS CAP_SECONDS
 *
 * SIZES is a comma list (W1: ready fds; W2: idle fds; W3: socketpairs).
 * TARGET is ready events (W1, W3) or round trips (W2) per measurement.
 * Prints one JSON object per size, like workloads.py.  Every loop is
 * bounded by TARGET and by CAP_SECONDS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FD_RESERVE 64

typedef struct handler handler;
struct handler {
    int fd;
    void (*cb)(handler *);
};

static long count;          /* events (W1, W3) or round trips (W2) */
static long target;
static int failed;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_now(void)     /* this process's CPU time (user + sys) */
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
    fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

static long raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit");
    rlim_t want = rl.rlim_max == RLIM_INFINITY ? 20000 : rl.rlim_max;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            die("setrlimit");
    }
    return (long)rl.rlim_cur;
}

static void xpair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        die("socketpair");
}

static void xread(int fd)
{
    char c;
    if (read(fd, &c, 1) != 1)
        die("read");
}

static void xwrite(int fd)
{
    if (write(fd, "x", 1) != 1)
        die("write");
}

static void drain(int fd)
{
    char buf[256];
    while (read(fd, buf, sizeof buf) > 0)
        ;
}

/* ---- callbacks ---------------------------------------------------------- */

static void on_tick(handler *h)         /* W1: count the ready event */
{
    (void)h;
    count++;
}

static int w2_a;                        /* W2: the active pair's ends */

static void on_w2_b(handler *h)         /* the far end: echo the byte */
{
    xread(h->fd);
    xwrite(h->fd);
}

static void on_w2_a(handler *h)         /* back home: one round trip */
{
    xread(h->fd);
    if (++count != target)
        xwrite(h->fd);
}

static void on_w3(handler *h)           /* read one byte, send it back */
{
    xread(h->fd);
    xwrite(h->fd);
    count++;
}

static void on_idle(handler *h)
{
    (void)h;
    failed = 1;
}

/* ---- the loop ----------------------------------------------------------- */

typedef struct {
    int ep;
    int nreg;
    struct epoll_event *buf;
    handler *handlers;
    int *fds;               /* every fd we opened, to close */
    int nfds;
} bench;

static void bench_init(bench *b, int capacity)
{
    b->ep = epoll_create1(EPOLL_CLOEXEC);
    if (b->ep < 0)
        die("epoll_create1");
    b->nreg = 0;
    b->buf = calloc(capacity, sizeof *b->buf);
    b->handlers = calloc(capacity, sizeof *b->handlers);
    b->fds = calloc(capacity, sizeof *b->fds);
    b->nfds = 0;
    if (!b->buf || !b->handlers || !b->fds)
        die("calloc");
}

static void bench_add(bench *b, int fd, unsigned events, void (*cb)(handler *))
{
    handler *h = &b->handlers[b->nreg++];
    struct epoll_event ev;
    h->fd = fd;
    h->cb = cb;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.ptr = h;
    if (epoll_ctl(b->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl");
}

static void bench_pair(bench *b, int sv[2])
{
    xpair(sv);
    b->fds[b->nfds++] = sv[0];
    b->fds[b->nfds++] = sv[1];
}

static void bench_free(bench *b)
{
    for (int i = 0; i < b->nfds; i++)
        close(b->fds[i]);
    close(b->ep);
    free(b->buf);
    free(b->handlers);
    free(b->fds);
}

/* Up to `waits` waits, each followed by the callbacks of its batch; the
 * clock is read every `chunk` waits and the loop ends past `deadline`. */
static long run_waits(bench *b, long waits, int timeout_ms, int chunk,
                      double deadline)
{
    long done = 0;
    while (done < waits) {
        long k = waits - done < chunk ? waits - done : chunk;
        for (long i = 0; i < k; i++) {
            int n = epoll_wait(b->ep, b->buf, b->nreg, timeout_ms);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                die("epoll_wait");
            }
            for (int j = 0; j < n; j++) {
                handler *h = b->buf[j].data.ptr;
                h->cb(h);
            }
        }
        done += k;
        if (now() > deadline)
            break;
    }
    return done;
}

/* ---- workloads: one run of `t` units; returns the units done ------------ */

static int w1_setup(bench *b, int n)
{
    int sv[2];
    bench_init(b, n + 1);
    for (int i = 0; i < n / 2; i++) {
        bench_pair(b, sv);
        bench_add(b, sv[0], EPOLLOUT, on_tick);
        bench_add(b, sv[1], EPOLLOUT, on_tick);
    }
    return 0;
}

static long w1_run(bench *b, int n, long t, double deadline)
{
    (void)n;
    count = 0;
    target = t;
    long waits = t / b->nreg > 0 ? t / b->nreg : 1;
    run_waits(b, waits, 0, 16, deadline);
    return count;
}

static int w2_setup(bench *b, int n)
{
    int sv[2];
    bench_init(b, n + 3);
    for (int i = 0; i < n / 2; i++) {
        bench_pair(b, sv);
        bench_add(b, sv[0], EPOLLIN, on_idle);
        bench_add(b, sv[1], EPOLLIN, on_idle);
    }
    bench_pair(b, sv);
    w2_a = sv[0];
    bench_add(b, sv[0], EPOLLIN, on_w2_a);
    bench_add(b, sv[1], EPOLLIN, on_w2_b);
    return 0;
}

static long w2_run(bench *b, int n, long t, double deadline)
{
    (void)n;
    count = 0;
    target = t;
    xwrite(w2_a);
    run_waits(b, 2 * t, 1000, 64, deadline);
    for (int i = b->nfds - 2; i < b->nfds; i++)
        drain(b->fds[i]);
    return count;
}

static int w3_setup(bench *b, int p)
{
    int sv[2];
    bench_init(b, 2 * p + 1);
    for (int i = 0; i < p; i++) {
        bench_pair(b, sv);
        bench_add(b, sv[0], EPOLLIN, on_w3);
        bench_add(b, sv[1], EPOLLIN, on_w3);
    }
    return 0;
}

static long w3_run(bench *b, int p, long t, double deadline)
{
    count = 0;
    target = t;
    for (int i = 0; i < b->nfds; i += 2)
        xwrite(b->fds[i]);              /* prime: one byte in flight */
    long waits = t / p > 0 ? t / p : 1;
    run_waits(b, waits, 1000, 4, deadline);
    for (int i = 0; i < b->nfds; i++)
        drain(b->fds[i]);
    return count;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s W1|W2|W3 SIZES TARGET WARMUP_EVENTS "
                "WARMUP_SECONDS CAP_SECONDS\n", argv[0]);
        return 2;
    }
    const char *w = argv[1];
    long tgt = atol(argv[3]);
    long warm_events = atol(argv[4]);
    double warm_s = atof(argv[5]);
    double cap = atof(argv[6]);
    long limit = raise_nofile();
    int (*setup)(bench *, int);
    long (*run)(bench *, int, long, double);
    const char *unit;

    if (!strcmp(w, "W1")) {
        setup = w1_setup; run = w1_run; unit = "ns/event";
    } else if (!strcmp(w, "W2")) {
        setup = w2_setup; run = w2_run; unit = "ns/roundtrip";
    } else if (!strcmp(w, "W3")) {
        setup = w3_setup; run = w3_run; unit = "ns/event";
    } else {
        fprintf(stderr, "floor: unknown workload %s\n", w);
        return 2;
    }
    if (tgt <= 0)
        tgt = 1;

    char *sizes = strdup(argv[2]);
    for (char *tok = strtok(sizes, ","); tok; tok = strtok(NULL, ",")) {
        int n = atoi(tok), actual = n;
        long fds_needed = !strcmp(w, "W3") ? 2L * n : n + 2;
        if (fds_needed > limit - FD_RESERVE) {      /* RLIMIT_NOFILE cap */
            actual = (int)(limit - FD_RESERVE - 2);
            if (!strcmp(w, "W3"))
                actual /= 2;
            actual &= ~1;
        }
        bench b;
        setup(&b, actual);
        /* Warm-up: fixed-size runs until both the event count and the
         * time are reached (bounded: at most 100000 runs). */
        long unit_size = !strcmp(w, "W2") ? 200 : (!strcmp(w, "W1") ? 10L * b.nreg : 10L * actual);
        long warmed = 0;
        double t0 = now();
        for (int i = 0; i < 100000; i++) {
            warmed += run(&b, actual, unit_size, t0 + warm_s + 5.0);
            if (warmed >= warm_events && now() - t0 >= warm_s)
                break;
        }
        double cpu0 = cpu_now();
        double start = now();
        long done = run(&b, actual, tgt, start + cap);
        double secs = now() - start;
        double cpu = cpu_now() - cpu0;
        if (failed) {
            fprintf(stderr, "floor: an idle fd was reported ready\n");
            return 1;
        }
        if (done <= 0) {
            fprintf(stderr, "floor: no events in the measured run\n");
            return 1;
        }
        printf("{\"impl\": \"floor-c\", \"workload\": \"%s\", \"n\": %d, "
               "\"n_actual\": %d, \"unit\": \"%s\", \"value\": %.3f, "
               "\"cpu_value\": %.3f, "
               "\"events\": %ld, \"seconds\": %.6f, \"capped\": %s}\n",
               w, n, actual, unit, secs * 1e9 / done, cpu * 1e9 / done, done, secs,
               done < tgt ? "true" : "false");
        fflush(stdout);
        bench_free(&b);
    }
    free(sizes);
    return 0;
}
