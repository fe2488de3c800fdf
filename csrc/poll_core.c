/* PollCore: the native poll(2) core (every POSIX system).
 *
 * poll() takes an array, so the core keeps a compact pollfd array with a
 * parallel array of keys, and an fd -> index dict for modify/unregister
 * (poll accepts any fd number, so an fd-indexed table could be huge).
 * Unregistering moves the last entry into the hole: order is unspecified,
 * as in the stdlib.
 *
 * The wait runs on a copy of the pollfd array (a memcpy, cheap next to the
 * O(n) poll itself): another thread may register or unregister while the
 * GIL is released, and must not move the memory the kernel writes to.  A
 * generation counter tells whether the copy still lines up with the key
 * array afterwards; if not, ready fds are looked up by number.
 */
#include "fastselectors.h"

#include <errno.h>
#include <poll.h>
#include "pythread.h"

typedef struct {
    PyObject_HEAD
    struct pollfd *fds;         /* compact, n entries */
    PyObject **keys;            /* keys[i] belongs to fds[i] (strong refs) */
    unsigned int *gevents;      /* gevents[i]: its events mask (ours) */
    Py_ssize_t n, cap;
    PyObject *index;            /* dict: fd -> index into fds/keys */
    struct pollfd *wait_buf;    /* reused copy of fds for the wait */
    Py_ssize_t wait_cap;
    int wait_busy;
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
} PollCore;

/* POLLRDHUP is Linux's (with _GNU_SOURCE, which pyconfig.h defines). */
#ifdef POLLRDHUP
#define FS_POLL_SUPPORTED (FS_READINESS | FS_ONESHOT)
#else
#define POLLRDHUP 0
#define FS_POLL_SUPPORTED (FS_EVENT_READ | FS_EVENT_WRITE | FS_EVENT_PRIORITY \
                           | FS_ONESHOT)
#endif

/* ONESHOT is emulated exactly: a reported entry is disarmed by negating its
 * fd (poll(2) ignores negative fds, so not even POLLHUP comes back) until
 * modify() re-arms it.  DISARMED(fd) maps both ways. */
#define DISARMED(fd) (-1 - (fd))
#define REAL_FD(fd) ((fd) < 0 ? DISARMED(fd) : (fd))

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
    self->ready = fs_state_of(type)->ready;
    self->index = PyDict_New();
    if (self->index == NULL) {
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
    Py_VISIT(self->pending);
    for (i = 0; i < self->n; i++) {
        Py_VISIT(self->keys[i]);
    }
    return 0;
}

static int
PollCore_clear(PollCore *self)
{
    /* Pop from the end, one at a time, with n updated before each DECREF:
     * a finalizer that re-enters the core sees a consistent state. */
    while (self->n > 0) {
        PyObject *key = self->keys[--self->n];
        self->generation++;
        Py_DECREF(key);
    }
    if (self->index != NULL) {
        PyDict_Clear(self->index);
    }
    Py_CLEAR(self->pending);
    return 0;
}

static void
PollCore_dealloc(PollCore *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    PollCore_clear(self);
    Py_CLEAR(self->index);
    PyMem_Free(self->fds);
    PyMem_Free(self->keys);
    PyMem_Free(self->gevents);
    PyMem_Free(self->wait_buf);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* index[fd] -> position, or -1 (no exception) if fd is not registered. */
static Py_ssize_t
find(PollCore *self, PyObject *fd_obj)
{
    PyObject *pos = PyDict_GetItemWithError(self->index, fd_obj);
    if (pos == NULL) {
        return PyErr_Occurred() ? -2 : -1;
    }
    return PyLong_AsSsize_t(pos);
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
    pos = find(self, args[0]);
    if (pos == -2) {
        return NULL;
    }
    if (pos >= 0) {
        PyErr_Format(PyExc_KeyError, "fd %d is already registered", fd);
        return NULL;
    }
    /* Everything that can fail happens before the arrays change. */
    if (reserve(self) < 0 || set_index(self, fd, self->n) < 0) {
        return NULL;
    }
    pos = self->n++;
    self->fds[pos].fd = fd;
    self->fds[pos].events = to_poll_mask(events);
    self->fds[pos].revents = 0;
    self->gevents[pos] = events;
    Py_INCREF(args[2]);
    self->keys[pos] = args[2];
    self->generation++;
    Py_RETURN_NONE;
}

static PyObject *
PollCore_modify_unlocked(PollCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    unsigned int events;
    Py_ssize_t pos;

    if (fs_parse_fd_events("modify", args, nargs, &fd, &events) < 0) {
        return NULL;
    }
    if (self->closed) {
        return fs_closed_error();
    }
    pos = find(self, args[0]);
    if (pos < 0) {
        if (pos == -1) {
            PyErr_Format(PyExc_KeyError, "fd %d is not registered", fd);
        }
        return NULL;
    }
    self->fds[pos].fd = fd;                 /* re-arms a ONESHOT entry */
    self->fds[pos].events = to_poll_mask(events);
    self->gevents[pos] = events;
    self->generation++;
    Py_INCREF(args[2]);
    Py_SETREF(self->keys[pos], args[2]);
    Py_RETURN_NONE;
}

static PyObject *
PollCore_unregister_unlocked(PollCore *self, PyObject *arg)
{
    int fd;
    Py_ssize_t pos, last;
    PyObject *key;

    if (fs_fd_converter(arg, &fd) < 0) {
        return NULL;
    }
    pos = find(self, arg);
    if (pos == -2) {
        return NULL;
    }
    if (pos == -1) {
        Py_RETURN_NONE;
    }
    last = self->n - 1;
    if (pos != last
            && set_index(self, REAL_FD(self->fds[last].fd), pos) < 0) {
        return NULL;
    }
    if (PyDict_DelItem(self->index, arg) < 0) {
        return NULL;
    }
    key = self->keys[pos];
    self->fds[pos] = self->fds[last];
    self->keys[pos] = self->keys[last];
    self->gevents[pos] = self->gevents[last];
    self->n = last;
    self->generation++;
    Py_DECREF(key);     /* last: may run arbitrary code */
    Py_RETURN_NONE;
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

/* Collect at most limit (0: all) ready entries of the wait copy.  With a
 * limit, the scan starts where the previous batch stopped, so that fds
 * early in the array cannot starve the others: the ones left out are still
 * ready (level-triggered) and come first next time. */
static PyObject *
build_result(PollCore *self, struct pollfd *fds, Py_ssize_t nfds, int nready,
             unsigned long generation, int limit)
{
    PyObject *result = PyList_New(0);
    Py_ssize_t k, start = 0, taken = 0;

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

        if (limit > 0 && taken == limit) {
            self->rotor = i;
            break;
        }

        if (fds[i].revents == 0) {
            continue;
        }
        nready--;
        if (generation != self->generation) {
            /* The arrays changed during the wait (or during this loop,
             * through a finalizer): find the fd's current entry, if any. */
            PyObject *fd_obj = PyLong_FromLong(fds[i].fd);
            if (fd_obj == NULL) {
                goto error;
            }
            pos = find(self, fd_obj);
            Py_DECREF(fd_obj);
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

/* ppoll() takes a timespec: sub-millisecond waits on Linux (glibc has had
 * it since 2.4, so manylinux2014 wheels may use it); elsewhere poll() and
 * milliseconds rounded up, like the stdlib. */
static int
poll_precise(struct pollfd *fds, nfds_t nfds, fs_timeout *timeout)
{
#ifdef __linux__
    if (timeout->ms > 0) {
        struct timespec ts;
        ts.tv_sec = (time_t)(timeout->ns / 1000000000LL);
        ts.tv_nsec = (long)(timeout->ns % 1000000000LL);
        return ppoll(fds, nfds, &ts, NULL);
    }
#endif
    return poll(fds, nfds, timeout->ms);
}

/* Wait (without the GIL, EINTR retried with the remaining time) on a copy
 * of the pollfd array and return [(key, events)]. */
static PyObject *
wait_and_collect(PollCore *self, PyObject *timeout_obj, int limit)
{
    PyObject *result = NULL;
    fs_timeout timeout;
    struct pollfd *fds;
    Py_ssize_t nfds;
    unsigned long generation;
    int n, own_buffer;

    if (fs_timeout_init(&timeout, timeout_obj) < 0) {
        return NULL;
    }
    nfds = self->n;
    own_buffer = !self->wait_busy;
    if (own_buffer) {
        if (self->wait_cap < nfds) {
            fds = PyMem_Realloc(self->wait_buf, (size_t)self->cap * sizeof(*fds));
            if (fds == NULL) {
                return PyErr_NoMemory();
            }
            self->wait_buf = fds;
            self->wait_cap = self->cap;
        }
        fds = self->wait_buf;
        self->wait_busy = 1;
    }
    else {
        fds = PyMem_Malloc((size_t)Py_MAX(nfds, 1) * sizeof(*fds));
        if (fds == NULL) {
            return PyErr_NoMemory();
        }
    }
    if (nfds > 0) {
        memcpy(fds, self->fds, (size_t)nfds * sizeof(*fds));
    }
    generation = self->generation;

    for (;;) {
        int saved_errno;
        Py_BEGIN_ALLOW_THREADS
        n = poll_precise(fds, (nfds_t)nfds, &timeout);
        saved_errno = errno;
        Py_END_ALLOW_THREADS
        if (n >= 0) {
            break;
        }
        if (saved_errno != EINTR) {
            errno = saved_errno;
            PyErr_SetFromErrno(PyExc_OSError);
            goto done;
        }
        if (PyErr_CheckSignals() < 0) {
            goto done;
        }
        if (self->closed) {
            /* A signal handler closed the selector: do not wait on. */
            fs_closed_error();
            goto done;
        }
        timeout.ms = fs_timeout_remaining(&timeout);
        if (timeout.ms == 0) {
            n = 0;
            break;
        }
    }
    if (limit <= 0) {
        limit = self->maxevents;
    }
    result = build_result(self, fds, nfds, n, generation, limit);

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

/* The current key of fd, borrowed, or NULL (no exception) if none. */
static PyObject *
current_key(PollCore *self, PyObject *key)
{
    PyObject *fd_obj;
    Py_ssize_t pos;

    if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != 4) {
        return NULL;
    }
    fd_obj = PyTuple_GET_ITEM(key, 1);      /* SelectorKey.fd */
    pos = find(self, fd_obj);
    if (pos < 0) {
        if (pos == -2) {
            PyErr_Clear();  /* an int key cannot fail to hash */
        }
        return NULL;
    }
    return self->keys[pos];
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

        self->pending_pos++;
        if (current_key(self, key) != key) {
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
        PollCore_clear(self);
    }
    Py_RETURN_NONE;
}

/* _after_fork(): poll has no kernel object to share with the parent; only
 * the claims of threads that do not exist in the child are dropped. */
static PyObject *
PollCore_after_fork_unlocked(PollCore *self, PyObject *Py_UNUSED(ignored))
{
    self->wait_busy = 0;
    self->dthread = 0;
    Py_RETURN_NONE;
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
    return PyLong_FromSsize_t(self->n);
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
FS_LOCKED(PyObject *, PollCore_get_maxevents, (PollCore *self, void *closure),
          self, closure)
FS_LOCKED(int, PollCore_set_maxevents, (PollCore *self, PyObject *value, void *closure),
          self, value, closure)
FS_LOCKED(PyObject *, PollCore_len, (PollCore *self, PyObject *ignored),
          self, ignored)

static PyMethodDef PollCore_methods[] = {
    {"register", (PyCFunction)(void (*)(void))PollCore_register,
     METH_FASTCALL, "register(fd, events, key): add fd to the poll set."},
    {"modify", (PyCFunction)(void (*)(void))PollCore_modify,
     METH_FASTCALL, "modify(fd, events, key): change interest and key."},
    {"unregister", (PyCFunction)PollCore_unregister, METH_O,
     "unregister(fd): remove fd if registered."},
    {"select", (PyCFunction)(void (*)(void))PollCore_select,
     METH_FASTCALL | METH_KEYWORDS,
     "select(timeout=None) -> list of (key, events)."},
    {"dispatch", (PyCFunction)(void (*)(void))PollCore_dispatch,
     METH_FASTCALL | METH_KEYWORDS,
     "dispatch(timeout=None) -> int: wait once, call key.data(key, events) "
     "for each ready registration."},
    {"_after_fork", (PyCFunction)PollCore_after_fork, METH_NOARGS,
     "_after_fork(): reset per-thread state in a child process."},
    {"close", (PyCFunction)PollCore_close, METH_NOARGS,
     "close(): drop every key; idempotent."},
    {"registered", (PyCFunction)PollCore_len, METH_NOARGS,
     "registered() -> how many fds are in the set."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef PollCore_getset[] = {
    {"closed", (getter)PollCore_get_closed, NULL, "True once closed.", NULL},
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
            || fs_set_supported(state->poll_core_type, FS_POLL_SUPPORTED) < 0) {
        return -1;
    }
    return PyModule_AddType(module, state->poll_core_type);
}
