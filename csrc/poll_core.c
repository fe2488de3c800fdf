/* PollCore: the native poll(2) core (every POSIX system).
 *
 * poll() takes an array, so the core keeps a master pollfd array in
 * registration order, a parallel array of keys, and an fd -> position dict
 * for modify/unregister (poll accepts any fd number, so an fd-indexed table
 * could be huge).  The results come in the stdlib's order, registration
 * order (the contract in _types.Core):
 *  - unregister leaves a hole (fd -1, which poll skips) instead of moving
 *    entries; a compacted copy, order kept, replaces the arrays once holes
 *    outnumber live entries (O(1) amortised per unregister);
 *  - ONESHOT is emulated exactly: a reported entry is disarmed by storing
 *    DISARMED(fd), negative, which poll skips (not even POLLHUP comes back);
 *    modify() re-arms it as a new registration would be: the old entry
 *    becomes a hole and the fd is appended (the Python tiers, which drop
 *    the fd from their poll set, do the same).
 *
 * The dict's keys are exact ints made here from the C fd, never the
 * caller's object: an int subclass's __hash__/__eq__ would otherwise run
 * in the middle of an update.  Everything that can fail (allocation, dict
 * insertion) happens before the arrays change; a key's last DECREF, which
 * may run a finalizer that re-enters the core, comes last.
 *
 * The wait runs on a copy of the array (a memcpy, cheap next to the O(n)
 * poll itself): another thread may register or unregister while the GIL is
 * released, and must not move the memory the kernel writes to.  A
 * generation counter tells whether the copy still lines up with the master
 * afterwards; if not, ready fds are looked up by number.  A waker pipe
 * (made on the first blocking wait) is polled after the entries: close()
 * from another thread or a signal handler writes to it, and the wait ends
 * at once with the closed error.
 */
#include "fastselectors.h"

#include <fcntl.h>
#include <unistd.h>
#include "pythread.h"
#include "waits.h"

typedef struct {
    PyObject_HEAD
    struct pollfd *fds;         /* master: n entries, holes have fd -1 */
    PyObject **keys;            /* keys[i] belongs to fds[i]; NULL: hole */
    unsigned int *gevents;      /* gevents[i]: its events mask (ours) */
    Py_ssize_t n, cap, holes;
    PyObject *index;            /* dict: exact int fd -> position */
    PyObject *map;              /* dict fd -> key: the selector's map (the
                                   same keys as the array: fs_keys_set) */
    struct pollfd *wait_buf;    /* reused copy of fds for the wait */
    Py_ssize_t wait_cap;
    int wait_busy;
    int nwaiting;               /* threads inside poll() */
    int wake_r, wake_w;         /* the waker pipe, -1 until needed */
    unsigned long generation;   /* bumped by every change of fds/keys */
    int closed;
    /* dispatch(): the batch of its last wait, as [(key, events)], and the
     * first item not yet delivered.  A pending event is delivered only if
     * its fd's current key is still the very same object: every
     * register/modify/unregister stores a new key, and the list's strong
     * reference keeps the old one's identity from being recycled. */
    PyObject *pending;
    Py_ssize_t pending_pos;
    unsigned long dthread;      /* thread inside dispatch(), 0 if none */
    PyObject **ready;           /* the module's ints 0..FS_READY_MAX-1 */
    int maxevents;              /* default batch size; 0: every ready fd */
    Py_ssize_t rotor;           /* where the next batch starts scanning */
    fs_stats stats;             /* stats() */
} PollCore;

/* POLLRDHUP is Linux's (with _GNU_SOURCE, which pyconfig.h defines). */
#ifdef POLLRDHUP
#define FS_POLL_SUPPORTED (FS_READINESS | FS_ONESHOT)
#else
#define POLLRDHUP 0
#define FS_POLL_SUPPORTED (FS_EVENT_READ | FS_EVENT_WRITE | FS_EVENT_PRIORITY \
                           | FS_ONESHOT)
#endif

#define HOLE (-1)
/* A disarmed ONESHOT entry; maps both ways; never HOLE. */
#define DISARMED(fd) (-2 - (fd))

static short
to_poll_mask(unsigned int events)
{
    short mask = 0;
    if (events & FS_EVENT_READ) {
        mask |= POLLIN;
    }
    if (events & FS_EVENT_WRITE) {
        mask |= POLLOUT;
    }
    if (events & FS_EVENT_PRIORITY) {
        mask |= POLLPRI;
    }
    if (events & FS_EVENT_RDHUP) {
        mask |= POLLRDHUP;
    }
    return mask;
}

/* The stdlib's rule: anything but IN (OUT, HUP, ERR, NVAL) wakes write
 * interest, anything but OUT wakes read interest; PRI and RDHUP are also
 * reported as themselves.  Always < FS_READY_MAX. */
static unsigned int
from_poll_mask(short mask)
{
    unsigned int events = 0;
    if (mask & ~POLLIN) {
        events |= FS_EVENT_WRITE;
    }
    if (mask & ~POLLOUT) {
        events |= FS_EVENT_READ;
    }
    if (mask & POLLPRI) {
        events |= FS_EVENT_PRIORITY;
    }
    if (mask & POLLRDHUP) {
        events |= FS_EVENT_RDHUP;
    }
    return events;
}

static PyObject *
PollCore_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PollCore *self;

    if (fs_check_no_args("PollCore", args, kwds) < 0) {
        return NULL;
    }
    self = (PollCore *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->wake_r = self->wake_w = -1;
    self->ready = fs_state_of(type)->ready;
    self->index = PyDict_New();
    self->map = PyDict_New();
    if (self->index == NULL || self->map == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
PollCore_traverse(PollCore *self, visitproc visit, void *arg)
{
    Py_ssize_t i;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->index);
    Py_VISIT(self->map);
    Py_VISIT(self->pending);
    for (i = 0; i < self->n; i++) {
        Py_VISIT(self->keys[i]);
    }
    return 0;
}

/* Drop every registration.  The dicts go first (the index: exact ints;
 * the map: the array still holds each key; no user code runs), so a
 * finalizer run by a key's DECREF that re-enters the core finds nothing
 * registered; then the entries, from the end, n updated before each
 * DECREF. */
static int
PollCore_clear(PollCore *self)
{
    if (self->index != NULL) {
        PyDict_Clear(self->index);
    }
    if (self->map != NULL) {
        PyDict_Clear(self->map);
    }
    while (self->n > 0) {
        PyObject *key = self->keys[--self->n];
        self->generation++;
        Py_XDECREF(key);
    }
    self->holes = 0;
    Py_CLEAR(self->pending);
    return 0;
}

static void
close_waker(PollCore *self)
{
    if (self->wake_r >= 0) {
        close(self->wake_r);
        close(self->wake_w);
        self->wake_r = self->wake_w = -1;
    }
}

static void
PollCore_dealloc(PollCore *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    self->closed = 1;
    PollCore_clear(self);
    Py_CLEAR(self->index);
    Py_CLEAR(self->map);
    close_waker(self);
    PyMem_Free(self->fds);
    PyMem_Free(self->keys);
    PyMem_Free(self->gevents);
    PyMem_Free(self->wait_buf);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* index[fd] -> position; -1 (no exception) if fd is not registered, -2
 * with an exception set on failure (MemoryError only: the key is an exact
 * int). */
static Py_ssize_t
find(PollCore *self, int fd)
{
    PyObject *fd_obj = PyLong_FromLong(fd), *pos;
    Py_ssize_t result;

    if (fd_obj == NULL) {
        return -2;
    }
    pos = PyDict_GetItemWithError(self->index, fd_obj);
    Py_DECREF(fd_obj);
    if (pos == NULL) {
        return PyErr_Occurred() ? -2 : -1;
    }
    result = PyLong_AsSsize_t(pos);
    return result < 0 ? -2 : result;
}

static int
set_index(PollCore *self, int fd, Py_ssize_t pos)
{
    PyObject *k = PyLong_FromLong(fd), *v;
    int rc;
    if (k == NULL) {
        return -1;
    }
    v = PyLong_FromSsize_t(pos);
    if (v == NULL) {
        Py_DECREF(k);
        return -1;
    }
    rc = PyDict_SetItem(self->index, k, v);
    Py_DECREF(k);
    Py_DECREF(v);
    return rc;
}

static int
del_index(PollCore *self, int fd)
{
    PyObject *k = PyLong_FromLong(fd);
    int rc;
    if (k == NULL) {
        return -1;
    }
    rc = PyDict_DelItem(self->index, k);
    Py_DECREF(k);
    return rc;
}

/* Room for one more entry at the end. */
static int
reserve(PollCore *self)
{
    Py_ssize_t cap;
    struct pollfd *fds;
    PyObject **keys;
    unsigned int *gevents;

    if (self->n < self->cap) {
        return 0;
    }
    cap = self->cap ? 2 * self->cap : 16;
    fds = PyMem_Realloc(self->fds, (size_t)cap * sizeof(*fds));
    if (fds == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->fds = fds;
    keys = PyMem_Realloc(self->keys, (size_t)cap * sizeof(*keys));
    if (keys == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->keys = keys;
    gevents = PyMem_Realloc(self->gevents, (size_t)cap * sizeof(*gevents));
    if (gevents == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->gevents = gevents;
    self->cap = cap;
    return 0;
}

/* Replace the arrays and the index by copies without holes, order kept.
 * Optional work: on failure (-1) nothing changes, and no exception is
 * left. */
static int
compact(PollCore *self)
{
    Py_ssize_t i, j = 0, live = self->n - self->holes;
    Py_ssize_t cap = Py_MAX(2 * live, 16);
    struct pollfd *fds = PyMem_Malloc((size_t)cap * sizeof(*fds));
    PyObject **keys = PyMem_Malloc((size_t)cap * sizeof(*keys));
    unsigned int *gevents = PyMem_Malloc((size_t)cap * sizeof(*gevents));
    PyObject *index = PyDict_New(), *old_index;

    if (fds == NULL || keys == NULL || gevents == NULL || index == NULL) {
        goto fail;
    }
    for (i = 0; i < self->n; i++) {
        PyObject *k, *v;
        int rc, fd = self->fds[i].fd;
        if (fd == HOLE) {
            continue;
        }
        k = PyLong_FromLong(fd < 0 ? DISARMED(fd) : fd);
        v = PyLong_FromSsize_t(j);
        rc = (k == NULL || v == NULL) ? -1 : PyDict_SetItem(index, k, v);
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (rc < 0) {
            goto fail;
        }
        fds[j] = self->fds[i];
        keys[j] = self->keys[i];
        gevents[j] = self->gevents[i];
        j++;
    }
    PyMem_Free(self->fds);
    PyMem_Free(self->keys);
    PyMem_Free(self->gevents);
    self->fds = fds;
    self->keys = keys;
    self->gevents = gevents;
    self->cap = cap;
    self->n = j;
    self->holes = 0;
    self->generation++;
    old_index = self->index;
    self->index = index;
    Py_DECREF(old_index);   /* exact ints only: no user code */
    return 0;

fail:
    PyErr_Clear();
    PyMem_Free(fds);
    PyMem_Free(keys);
    PyMem_Free(gevents);
    Py_XDECREF(index);
    return -1;
}

/* Append (fd, events, key) at the end; the index must already say n. */
static void
append_entry(PollCore *self, int fd, unsigned int events, PyObject *key)
{
    Py_ssize_t pos = self->n++;
    self->fds[pos].fd = fd;
    self->fds[pos].events = to_poll_mask(events);
    self->fds[pos].revents = 0;
    self->gevents[pos] = events;
    Py_INCREF(key);
    self->keys[pos] = key;
    self->generation++;
}

/* Turn entry pos into a hole; returns its key (the caller DECREFs it once
 * the core is consistent). */
static PyObject *
make_hole(PollCore *self, Py_ssize_t pos)
{
    PyObject *key = self->keys[pos];
    self->keys[pos] = NULL;
    self->fds[pos].fd = HOLE;
    self->holes++;
    self->generation++;
    return key;
}

static PyObject *
PollCore_register_unlocked(PollCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    unsigned int events;
    Py_ssize_t pos;

    if (fs_parse_fd_events("register", args, nargs, &fd, &events) < 0) {
        return NULL;
    }
    if (self->closed) {
        return fs_closed_error();
    }
    pos = find(self, fd);
    if (pos == -2) {
        return NULL;
    }
    if (pos >= 0) {
        PyErr_Format(PyExc_KeyError, "fd %d is already registered", fd);
        return NULL;
    }
    if (reserve(self) < 0 || set_index(self, fd, self->n) < 0) {
        return NULL;
    }
    if (fs_keys_set(self->map, fd, args[2]) < 0) {
        (void)del_index(self, fd);
        return NULL;
    }
    append_entry(self, fd, events, args[2]);
    Py_RETURN_NONE;
}

static PyObject *
PollCore_modify_unlocked(PollCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    unsigned int events;
    Py_ssize_t pos;
    PyObject *old;

    if (fs_parse_fd_events("modify", args, nargs, &fd, &events) < 0) {
        return NULL;
    }
    if (self->closed) {
        return fs_closed_error();
    }
    pos = find(self, fd);
    if (pos < 0) {
        if (pos == -1) {
            PyErr_Format(PyExc_KeyError, "fd %d is not registered", fd);
        }
        return NULL;
    }
    /* Replacing a dict value allocates nothing: this cannot fail. */
    if (fs_keys_set(self->map, fd, args[2]) < 0) {
        return NULL;
    }
    if (self->fds[pos].fd < 0) {
        /* A disarmed ONESHOT: re-armed as a new registration, at the end
         * (see the top of this file). */
        if (reserve(self) < 0 || set_index(self, fd, self->n) < 0) {
            return NULL;
        }
        old = make_hole(self, pos);
        append_entry(self, fd, events, args[2]);
        if (2 * self->holes > self->n) {
            (void)compact(self);
        }
    }
    else {
        self->fds[pos].events = to_poll_mask(events);
        self->gevents[pos] = events;
        self->generation++;
        old = self->keys[pos];
        Py_INCREF(args[2]);
        self->keys[pos] = args[2];
    }
    Py_DECREF(old);     /* last: may run arbitrary code */
    Py_RETURN_NONE;
}

static PyObject *
PollCore_unregister_unlocked(PollCore *self, PyObject *arg)
{
    int fd;
    Py_ssize_t pos;
    PyObject *key;

    if (fs_fd_converter(arg, &fd) < 0) {
        return NULL;
    }
    pos = find(self, fd);
    if (pos == -2) {
        return NULL;
    }
    if (pos == -1) {
        Py_RETURN_NONE;
    }
    if (del_index(self, fd) < 0) {
        return NULL;
    }
    key = make_hole(self, pos);
    fs_keys_del(self->map, fd);
    if (2 * self->holes > self->n) {
        (void)compact(self);
    }
    return key;     /* the caller releases it: may run arbitrary code */
}

static PyObject *
append_ready(PyObject *result, PyObject *key, PyObject *ready)
{
    PyObject *pair;
    int rc;

    pair = PyTuple_Pack(2, key, ready);
    if (pair == NULL) {
        return NULL;
    }
    rc = PyList_Append(result, pair);
    Py_DECREF(pair);
    return rc < 0 ? NULL : result;
}

/* Collect at most limit (0: all) ready entries of the wait copy, in the
 * array's order.  With a limit, the scan starts where the previous batch
 * stopped, so that fds early in the array cannot starve the others: the
 * ones left out are still ready (level-triggered) and come first next
 * time.  *full: the limit cut the batch short. */
static PyObject *
build_result(PollCore *self, struct pollfd *fds, Py_ssize_t nfds, int nready,
             unsigned long generation, int limit, int *full)
{
    PyObject *result = PyList_New(0);
    Py_ssize_t k, start = 0, taken = 0;

    *full = 0;
    if (result == NULL) {
        return NULL;
    }
    if (limit > 0 && nfds > 0) {
        start = self->rotor % nfds;
    }
    for (k = 0; k < nfds && nready > 0; k++) {
        Py_ssize_t i = (start + k) % nfds, pos = i;
        unsigned int mask;
        PyObject *key, *ready;

        if (fds[i].revents == 0) {
            continue;
        }
        if (limit > 0 && taken == limit) {
            self->rotor = i;
            *full = 1;
            break;
        }
        nready--;
        if (generation != self->generation) {
            /* The arrays changed during the wait (or during this loop,
             * through a finalizer): find the fd's current entry, if any. */
            pos = find(self, fds[i].fd);
            if (pos == -2) {
                goto error;
            }
            if (pos == -1) {
                continue;
            }
        }
        if (self->fds[pos].fd < 0) {
            continue;   /* disarmed ONESHOT, reported by an earlier wait */
        }
        mask = from_poll_mask(fds[i].revents) & self->gevents[pos]
               & FS_READINESS;
        if (mask == 0) {
            continue;   /* the interest changed during the wait */
        }
        ready = self->ready[mask];
        if (self->gevents[pos] & FS_ONESHOT) {
            self->fds[pos].fd = DISARMED(self->fds[pos].fd);
            self->generation++;
        }
        key = self->keys[pos];
        Py_INCREF(key);
        /* May run a finalizer that changes the arrays: pos is stale now. */
        if (append_ready(result, key, ready) == NULL) {
            Py_DECREF(key);
            goto error;
        }
        Py_DECREF(key);
        taken++;
    }
    return result;

error:
    Py_DECREF(result);
    return NULL;
}

/* The waker (top of this file): made on the first blocking wait.  If no
 * pipe can be made (EMFILE), waits go on without one. */
static void
make_waker(PollCore *self)
{
    int fds[2];
    /* Non-blocking: the write end for close() (a full pipe has woken the
     * waiters already); the read end is only polled. */
    if (fs_pipe_cloexec(fds, 1) < 0) {
        return;
    }
    self->wake_r = fds[0];
    self->wake_w = fds[1];
}

/* The wait's copy of the master (plus the waker, if with_waker and there
 * is one): in the shared buffer if free, else in a private one.  Returns the
 * number of pollfds, or -1 with an exception set. */
static Py_ssize_t
fill_wait_buffer(PollCore *self, struct pollfd **fds, int *own_buffer,
                 int with_waker)
{
    Py_ssize_t nfds = self->n, npoll = nfds + (with_waker && self->wake_r >= 0);

    if (*fds == NULL) {
        *own_buffer = !self->wait_busy;
    }
    if (*own_buffer) {
        if (self->wait_cap < npoll) {
            Py_ssize_t cap = Py_MAX(self->cap + 1, npoll);
            struct pollfd *grown = PyMem_Realloc(self->wait_buf,
                                                 (size_t)cap * sizeof(*grown));
            if (grown == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            self->wait_buf = grown;
            self->wait_cap = cap;
        }
        *fds = self->wait_buf;
        self->wait_busy = 1;
    }
    else {
        struct pollfd *mine = PyMem_Realloc(*fds, (size_t)Py_MAX(npoll, 1)
                                                  * sizeof(*mine));
        if (mine == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *fds = mine;
    }
    if (nfds > 0) {
        memcpy(*fds, self->fds, (size_t)nfds * sizeof(**fds));
    }
    if (npoll > nfds) {
        (*fds)[nfds].fd = self->wake_r;
        (*fds)[nfds].events = POLLIN;
        (*fds)[nfds].revents = 0;
    }
    return npoll;
}

/* Wait (without the GIL, EINTR retried with the remaining time) on a copy
 * of the pollfd array and return [(key, events)]. */
static PyObject *
wait_and_collect(PollCore *self, PyObject *timeout_obj, int limit)
{
    PyObject *result = NULL;
    fs_timeout timeout;
    struct pollfd *fds = NULL;
    Py_ssize_t nfds, npoll;
    unsigned long generation;
    long long start = 0;
    int n, own_buffer = 0, full = 0, with_waker = 0;

    if (fs_timeout_init(&timeout, timeout_obj) < 0) {
        return NULL;
    }
    if (timeout.ms != 0) {
        start = fs_now_ns();
        if (self->wake_r < 0) {
            make_waker(self);
        }
        with_waker = 1;
    }
    npoll = fill_wait_buffer(self, &fds, &own_buffer, with_waker);
    if (npoll < 0) {
        goto done;
    }
    nfds = self->n;
    generation = self->generation;

    self->nwaiting++;
    for (;;) {
        int saved_errno;
        Py_BEGIN_ALLOW_THREADS
        n = fs_poll_ns(fds, (nfds_t)npoll, timeout.ms, timeout.ns);
        saved_errno = errno;
        Py_END_ALLOW_THREADS
        if (n >= 0) {
            break;
        }
        if (saved_errno == EINVAL && !self->closed
                && (self->holes > 0 || npoll > nfds)) {
            /* More entries than RLIMIT_NOFILE: the stdlib would not have
             * counted our holes, nor the waker; poll without them. */
            if (self->holes == 0) {
                with_waker = 0;
            }
            else if (compact(self) < 0) {
                errno = saved_errno;
                PyErr_SetFromErrno(PyExc_OSError);
                break;
            }
            npoll = fill_wait_buffer(self, &fds, &own_buffer, with_waker);
            if (npoll < 0) {
                break;
            }
            nfds = self->n;
            generation = self->generation;
            continue;
        }
        if (saved_errno != EINTR) {
            if (!self->closed) {
                errno = saved_errno;
                PyErr_SetFromErrno(PyExc_OSError);
            }
            break;
        }
        if (PyErr_CheckSignals() < 0 || self->closed) {
            break;      /* a handler raised, or closed the selector */
        }
        timeout.ms = fs_timeout_remaining(&timeout);
        if (timeout.ms == 0) {
            n = 0;
            break;
        }
    }
    self->nwaiting--;
    if (self->closed && self->nwaiting == 0) {
        close_waker(self);      /* the last waiter out of a closed core */
    }
    if (PyErr_Occurred()) {
        goto done;
    }
    if (self->closed) {
        /* By a signal handler or another thread (its close() woke us). */
        fs_closed_error();
        goto done;
    }
    if (npoll > nfds && fds[nfds].revents) {
        n--;    /* the waker: not an entry (closed is checked above) */
    }
    if (limit <= 0) {
        limit = self->maxevents;
    }
    result = build_result(self, fds, nfds, n, generation, limit, &full);
    if (start) {
        self->stats.idle_ns += fs_now_ns() - start;
    }
    if (result != NULL) {
        fs_stats_wait(&self->stats, PyList_GET_SIZE(result), full);
    }

done:
    if (own_buffer) {
        self->wait_busy = 0;
    }
    else {
        PyMem_Free(fds);
    }
    return result;
}

static PyObject *
PollCore_select_unlocked(PollCore *self, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    PyObject *timeout_obj;
    int maxevents;

    if (fs_parse_select_args("select", args, nargs, kwnames, &timeout_obj,
                             &maxevents) < 0) {
        return NULL;
    }
    if (self->closed) {
        return fs_closed_error();
    }
    if (fs_check_not_in_callback(self->dthread, "select") < 0) {
        return NULL;
    }
    return wait_and_collect(self, timeout_obj, maxevents);
}

/* Is key still the current key of its fd?  1 yes, 0 no, -1 error. */
static int
is_current(PollCore *self, PyObject *key)
{
    int fd;
    Py_ssize_t pos;

    long value;

    /* SelectorKey.fd: an int (no user code runs to read it) */
    if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != 4
            || !PyLong_Check(PyTuple_GET_ITEM(key, 1))) {
        return 0;
    }
    value = PyLong_AsLong(PyTuple_GET_ITEM(key, 1));
    if (value < 0 || value > INT_MAX) {
        PyErr_Clear();
        return 0;
    }
    fd = (int)value;
    pos = find(self, fd);
    if (pos == -2) {
        return -1;
    }
    return pos >= 0 && self->keys[pos] == key;
}

/* Deliver the pending part of the dispatch batch, counting the callbacks
 * run in *count.  Returns -1 if a callback raised (the rest stays pending),
 * else 0. */
static int
deliver_pending(PollCore *self, Py_ssize_t *count)
{
    while (self->pending != NULL
           && self->pending_pos < PyList_GET_SIZE(self->pending)) {
        PyObject *pair = PyList_GET_ITEM(self->pending, self->pending_pos);
        PyObject *key = PyTuple_GET_ITEM(pair, 0), *result;
        PyObject *argv[3];
        int current;

        self->pending_pos++;
        current = is_current(self, key);
        if (current < 0) {
            return -1;
        }
        if (!current) {
            continue;       /* unregistered or changed since the wait */
        }
        Py_INCREF(pair);    /* close() may drop the pending list */
        argv[0] = NULL;
        argv[1] = key;
        argv[2] = PyTuple_GET_ITEM(pair, 1);
        result = PyObject_Vectorcall(PyTuple_GET_ITEM(key, 3),  /* .data */
                                     argv + 1,
                                     2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_DECREF(pair);
        if (result == NULL) {
            return -1;
        }
        Py_DECREF(result);
        (*count)++;
        self->stats.callbacks++;
        if (self->closed) {
            break;          /* a callback closed the selector */
        }
    }
    return 0;
}

/* dispatch(timeout=None) -> int; the contract is written in
 * _selectors.CoreSelector.dispatch. */
static PyObject *
PollCore_dispatch_unlocked(PollCore *self, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames)
{
    PyObject *timeout_obj;
    Py_ssize_t count = 0;
    int rc, maxevents;

    if (fs_parse_select_args("dispatch", args, nargs, kwnames, &timeout_obj,
                             &maxevents) < 0) {
        return NULL;
    }
    if (self->closed) {
        return fs_closed_error();
    }
    if (fs_dispatch_enter(&self->dthread) < 0) {
        return NULL;
    }
    /* Events left by a callback that raised come first, without a wait. */
    rc = deliver_pending(self, &count);
    if (rc == 0 && count == 0 && !self->closed) {
        PyObject *batch = wait_and_collect(self, timeout_obj, maxevents);
        if (batch == NULL) {
            rc = -1;
        }
        else {
            Py_XSETREF(self->pending, batch);
            self->pending_pos = 0;
            rc = deliver_pending(self, &count);
        }
    }
    self->dthread = 0;
    if (rc == 0 || self->closed) {
        /* Delivered (or moot): do not keep the keys of the batch alive. */
        Py_CLEAR(self->pending);
    }
    if (rc < 0) {
        return NULL;
    }
    return PyLong_FromSsize_t(count);
}

static PyObject *
PollCore_close_unlocked(PollCore *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->closed) {
        self->closed = 1;
        if (self->wake_w >= 0) {
            if (self->nwaiting > 0) {
                /* Wake the waiters: they raise the closed error, and the
                 * last one out closes the pipe. */
                (void)write(self->wake_w, "", 1);
            }
            else {
                close_waker(self);
            }
        }
        PollCore_clear(self);
    }
    Py_RETURN_NONE;
}

/* _after_fork(): poll has no kernel object to share with the parent; only
 * the claims of threads that do not exist in the child are dropped, and the
 * waker pipe, which the parent shares, is the child's no more. */
static PyObject *
PollCore_after_fork_unlocked(PollCore *self, PyObject *Py_UNUSED(ignored))
{
    self->wait_busy = 0;
    self->dthread = 0;
    self->nwaiting = 0;
    close_waker(self);
    Py_CLEAR(self->pending);    /* the parent delivers its own batch */
    Py_RETURN_NONE;
}

/* _after_fork_readd(), _reattach(fd): nothing for poll, which names its
 * fds anew in every wait (epoll_core.c has the story). */
static PyObject *
PollCore_nothing(PollCore *self, PyObject *Py_UNUSED(ignored))
{
    Py_RETURN_NONE;
}

static PyObject *
PollCore_get_keys_unlocked(PollCore *self, void *Py_UNUSED(closure))
{
    Py_INCREF(self->map);
    return self->map;
}

static PyObject *
PollCore_get_closed_unlocked(PollCore *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->closed);
}

static PyObject *
PollCore_get_maxevents_unlocked(PollCore *self, void *Py_UNUSED(closure))
{
    return fs_maxevents_get(self->maxevents);
}

static int
PollCore_set_maxevents_unlocked(PollCore *self, PyObject *value,
                       void *Py_UNUSED(closure))
{
    if (value == NULL) {
        value = Py_None;
    }
    return fs_maxevents_converter(value, &self->maxevents);
}

static PyObject *
PollCore_len_unlocked(PollCore *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(self->n - self->holes);
}

static PyObject *
PollCore_stats_unlocked(PollCore *self, PyObject *const *args,
                        Py_ssize_t nargs, PyObject *kwnames)
{
    return fs_stats_get(&self->stats, args, nargs, kwnames);
}

/* The methods, each inside a critical section on the core (free-
 * threaded CPython; nothing elsewhere): fastselectors.h. */
FS_LOCKED(PyObject *, PollCore_register, (PollCore *self, PyObject *const *args, Py_ssize_t nargs),
          self, args, nargs)
FS_LOCKED(PyObject *, PollCore_modify, (PollCore *self, PyObject *const *args, Py_ssize_t nargs),
          self, args, nargs)
FS_LOCKED(PyObject *, PollCore_unregister, (PollCore *self, PyObject *arg),
          self, arg)
FS_LOCKED(PyObject *, PollCore_select, (PollCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames),
          self, args, nargs, kwnames)
FS_LOCKED(PyObject *, PollCore_dispatch, (PollCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames),
          self, args, nargs, kwnames)
FS_LOCKED(PyObject *, PollCore_close, (PollCore *self, PyObject *ignored),
          self, ignored)
FS_LOCKED(PyObject *, PollCore_after_fork, (PollCore *self, PyObject *ignored),
          self, ignored)
FS_LOCKED(PyObject *, PollCore_get_closed, (PollCore *self, void *closure),
          self, closure)
FS_LOCKED(PyObject *, PollCore_get_keys, (PollCore *self, void *closure),
          self, closure)
FS_LOCKED(PyObject *, PollCore_get_maxevents, (PollCore *self, void *closure),
          self, closure)
FS_LOCKED(int, PollCore_set_maxevents, (PollCore *self, PyObject *value, void *closure),
          self, value, closure)
FS_LOCKED(PyObject *, PollCore_len, (PollCore *self, PyObject *ignored),
          self, ignored)
FS_LOCKED(PyObject *, PollCore_stats, (PollCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames),
          self, args, nargs, kwnames)

static PyMethodDef PollCore_methods[] = {
    {"register", (PyCFunction)(void (*)(void))PollCore_register,
     METH_FASTCALL, "register(fd, events, key): add fd to the poll set."},
    {"modify", (PyCFunction)(void (*)(void))PollCore_modify,
     METH_FASTCALL, "modify(fd, events, key): change interest and key."},
    {"unregister", (PyCFunction)PollCore_unregister, METH_O,
     "unregister(fd) -> the key removed, or None."},
    {"select", (PyCFunction)(void (*)(void))PollCore_select,
     METH_FASTCALL | METH_KEYWORDS,
     "select(timeout=None) -> list of (key, events)."},
    {"dispatch", (PyCFunction)(void (*)(void))PollCore_dispatch,
     METH_FASTCALL | METH_KEYWORDS,
     "dispatch(timeout=None) -> int: wait once, call key.data(key, events) "
     "for each ready registration."},
    {"_after_fork", (PyCFunction)PollCore_after_fork, METH_NOARGS,
     "_after_fork(): reset per-thread state in a child process."},
    {"_after_fork_readd", (PyCFunction)PollCore_nothing, METH_NOARGS,
     "_after_fork_readd(): nothing to do for poll."},
    {"_reattach", (PyCFunction)PollCore_nothing, METH_O,
     "_reattach(fd): nothing to do for poll."},
    {"close", (PyCFunction)PollCore_close, METH_NOARGS,
     "close(): drop every key; idempotent."},
    {"registered", (PyCFunction)PollCore_len, METH_NOARGS,
     "registered() -> how many fds are in the set."},
    {"stats", (PyCFunction)(void (*)(void))PollCore_stats,
     METH_FASTCALL | METH_KEYWORDS,
     "stats(reset=False) -> dict of the counters (docs/api.md)."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef PollCore_getset[] = {
    {"closed", (getter)PollCore_get_closed, NULL, "True once closed.", NULL},
    {"keys", (getter)PollCore_get_keys, NULL,
     "The table, fd -> key: the selector's map.", NULL},
    {"maxevents", (getter)PollCore_get_maxevents,
     (setter)PollCore_set_maxevents,
     "Default batch size of a wait; None: every ready fd.", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyType_Slot PollCore_slots[] = {
    {Py_tp_new, PollCore_new},
    {Py_tp_dealloc, PollCore_dealloc},
    {Py_tp_traverse, PollCore_traverse},
    {Py_tp_clear, PollCore_clear},
    {Py_tp_methods, PollCore_methods},
    {Py_tp_getset, PollCore_getset},
    {Py_tp_doc, "The poll core of the native tier."},
    {0, NULL}
};

static PyType_Spec PollCore_spec = {
    .name = "fastselectors._native.PollCore",
    .basicsize = sizeof(PollCore),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = PollCore_slots,
};

int
fs_poll_core_init(PyObject *module, fs_module_state *state)
{
    state->poll_core_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &PollCore_spec, NULL);
    if (state->poll_core_type == NULL
            || fs_set_class_flags(state->poll_core_type, FS_POLL_SUPPORTED,
                                  0, 0) < 0) {
        return -1;
    }
    return PyModule_AddType(module, state->poll_core_type);
}
