/* EpollCore: the native epoll core (Linux).
 *
 * It owns the epoll fd, an fd-indexed table of (key, interest), the dict
 * fd -> key that is the selector's map (one truth: select() cannot report
 * a key the map lacks, and no signal handler can run between the two, as
 * every method is C) and an event buffer reused across waits.  Rules, after
 * CPython's selectmodule.c and libuv's uv__io_poll:
 *  - close() sets epfd to -1 before closing, so it is idempotent, and every
 *    method starts with the closed-guard.  Threads waiting in it are kicked
 *    off the instance (an always-readable pipe added to it: they raise the
 *    closed error), and the last one out closes the fd ("zombie"): closed
 *    under them, its number could be reused before their epoll_wait();
 *  - the GIL is released around epoll_wait() only.  epoll_ctl() keeps it:
 *    it never blocks, and holding the GIL means no other thread can see a
 *    kernel registration whose key is not in the table yet (an edge-
 *    triggered event delivered in that window would be lost);
 *  - EINTR: run the signal handlers, then retry with the remaining time
 *    (PEP 475);
 *  - each event is masked by the registration's *current* interest, read
 *    from the table after the wait, never from a copy made before it;
 *  - Python code can run in the middle of select() (a GC finalizer during
 *    an allocation, or another thread while the GIL is released), and it
 *    may register, unregister or even select() again.  So the table is
 *    re-read for every event, and a select() that finds the shared buffer
 *    in use waits into a private one.
 *
 * Closed and dup'd fds, or: why every event carries a generation.
 *
 * An epoll registration does not belong to an fd number.  The kernel keys it
 * by (open file description, fd number) and drops it only when the *file
 * description* is closed for the last time.  So:
 *
 *  - close(fd) without unregister(), no dup: the kernel drops the
 *    registration silently.  The key stays in the map (the stdlib does the
 *    same), never reports again, and unregister() still works: its
 *    EPOLL_CTL_DEL fails with EBADF (or ENOENT if the number was reused),
 *    which is expected and ignored.
 *  - close(fd) while a dup (another fd, a forked child, a socket passed
 *    over SCM_RIGHTS) keeps the file description alive: the registration
 *    lives on, and keeps reporting with the old fd number in its data.
 *    While the key is still registered it reports as that key, like the
 *    stdlib.  But unregister() cannot remove it any more: EPOLL_CTL_DEL
 *    takes an fd number, and that number is closed or names another file.
 *    The stdlib then wakes up forever for an fd it no longer knows (a
 *    level-triggered registration: the classic 100 % CPU spin), and if the
 *    number is reused by a new registration, the orphan's events reach the
 *    *new* key: an event delivered to the wrong connection.
 *
 * What this core does about it:
 *  - every registration gets a generation, and the kernel's event data is
 *    (generation << 32 | fd).  An event whose generation is not the one in
 *    the table is an orphan's: it is never delivered, whatever key now has
 *    that fd number;
 *  - every EPOLL_CTL_DEL that fails counts a possible orphan.  The first
 *    stale event seen while one may exist rebuilds the epoll instance: a
 *    fresh one, with every registration the old one still really holds
 *    (checked by an EPOLL_CTL_MOD on the old instance, which fails for an
 *    fd that is closed or now names another file), moved onto the old fd
 *    number with dup3() so fileno() does not change.  The orphan dies with
 *    the old instance: one extra wake-up at most, never a spin.  Threads
 *    waiting on the old instance are kicked off it (they wait again on the
 *    new one): a rebuild cannot wait for them to leave, as a level-
 *    triggered orphan would never let them (the stdlib's spin, again);
 *  - ONESHOT registrations that fired and were not re-armed are not added
 *    to the new instance ("parked"): adding them would re-arm them behind
 *    the back of the thread that owns the event.  modify()/rearm() adds a
 *    parked fd back.  (One that another thread re-armed during the wait
 *    that reported it is not taken as disarmed: note_batch.)
 *
 * Nested selectors, or: why a rebuild has to tell the others.  A selector
 * may watch another selector's epoll fd (outer.register(inner.fileno())).
 * Its registration is of inner's *file*, and a rebuild replaces that file
 * at the same number: the old one, closed, leaves outer's set, and outer
 * would never report inner again.  fileno() keeping its number is worth
 * keeping (users store it), so instead the rebuild calls the module's hook
 * (_selectors.replaced): every selector of ours that has the number
 * registered adds it again (_reattach: a new generation, and one more
 * possible orphan, as the old file may live on in a forked child).  After
 * fork, where every selector gets a new instance, the child does it in two
 * passes: every selector a new empty instance first, then every selector
 * its registrations, added by fd number -- so an outer re-adds its inner's
 * *new* instance whichever was made first.  The trade-off: only our
 * selectors are told; a stdlib selector (or another process) watching a
 * rebuilt instance loses it.  The other design -- a new fd number per
 * rebuild, nothing else to tell -- breaks every user that stored fileno().
 *
 * Trio's epoll backend (trio/_core/_io_epoll.py) has the classic write-up
 * of the same kernel behaviour; libuv's uv__io_poll deletes unknown fds for
 * the same reason.  The poll and select cores have no kernel-side state, so
 * none of this applies to them: a closed fd simply reports POLLNVAL there
 * until it is unregistered.
 */
#include "fastselectors.h"

#ifdef __linux__

#include <fcntl.h>
#include <stdint.h>
#include "pythread.h"
#include "waits.h"

typedef struct {
    PyObject *key;          /* the SelectorKey reported, or NULL: free */
    unsigned int events;    /* its EVENT_READ|EVENT_WRITE interest */
    uint64_t stamp;         /* core->mutations when the entry last changed */
    uint32_t gen;           /* the registration's generation (see above) */
    unsigned char armed;    /* ONESHOT: 0 once the kernel reported it */
    unsigned char parked;   /* not in the kernel set: a disarmed ONESHOT
                               left out of a rebuilt instance */
} fs_entry;

typedef struct {
    PyObject_HEAD
    int epfd;                   /* -1 once closed */
    int zombie;                 /* closed while threads waited in it: the
                                   fd, closed by the last one out (closed
                                   at once, its number could be reused
                                   under their wait); else -1 */
    PyObject *keys;             /* dict fd -> key: the selector's map (the
                                   same keys as table: fs_keys_set) */
    fs_entry *table;            /* indexed by fd */
    Py_ssize_t table_size;
    Py_ssize_t nregistered;
    uint64_t mutations;         /* bumped by every register/modify/unregister */
    struct epoll_event *buf;    /* reused by every select() that finds it free */
    int buf_size;
    int buf_busy;
    /* dispatch() has a buffer of its own: events still pending after a
     * callback raised stay there for the next dispatch(), whatever select()
     * does in between.  dpos..dn is the pending part; dstamp the value of
     * mutations when the batch was taken (an entry changed since then has
     * its pending event dropped, libuv-style). */
    struct epoll_event *dbuf;
    int dbuf_size, dpos, dn;
    uint64_t dstamp;
    unsigned long dthread;      /* thread inside dispatch(), 0 if none */
    PyObject **ready;           /* the module's ints 0..FS_READY_MAX-1; the
                                   type keeps the module alive */
    int maxevents;              /* default batch size; 0: every ready fd */
    uint32_t next_gen;          /* generation of the next registration */
    Py_ssize_t orphans;         /* failed EPOLL_CTL_DELs since the last
                                   rebuild: kernel registrations we may no
                                   longer be able to remove */
    int nwaiting;               /* threads inside epoll_wait() */
    fs_stats stats;             /* stats() */
} EpollCore;

/* The event data of a registration: fd and generation in one u64.  The
 * kick (see kick_waiters) has fd -1: no entry, never delivered. */
#define FS_PACK(fd, gen) (((uint64_t)(gen) << 32) | (uint32_t)(fd))
#define FS_FD_OF(data) ((int)(uint32_t)(data))
#define FS_GEN_OF(data) ((uint32_t)((data) >> 32))

/* Old build images (manylinux2014's glibc 2.17 headers) lack the newer
 * flags: the values are the kernel ABI's (include/uapi/linux/eventpoll.h). */
#ifndef EPOLLRDHUP
#define EPOLLRDHUP 0x00002000u
#endif
#ifndef EPOLLEXCLUSIVE
#define EPOLLEXCLUSIVE (1u << 28)      /* Linux 4.5 */
#endif

static uint32_t
to_epoll_mask(unsigned int events)
{
    uint32_t mask = 0;
    if (events & FS_EVENT_READ) {
        mask |= EPOLLIN;
    }
    if (events & FS_EVENT_WRITE) {
        mask |= EPOLLOUT;
    }
    if (events & FS_EVENT_PRIORITY) {
        mask |= EPOLLPRI;
    }
    if (events & FS_EVENT_RDHUP) {
        mask |= EPOLLRDHUP;
    }
    if (events & FS_EDGE) {
        mask |= EPOLLET;
    }
    if (events & FS_ONESHOT) {
        mask |= EPOLLONESHOT;
    }
    if (events & FS_EXCLUSIVE) {
        mask |= EPOLLEXCLUSIVE;
    }
    return mask;
}

/* The stdlib's rule: anything but IN (OUT, HUP, ERR) wakes write interest,
 * anything but OUT (IN, PRI, RDHUP, HUP, ERR) wakes read interest; PRI and
 * RDHUP are also reported as themselves.  Always < FS_READY_MAX. */
static unsigned int
from_epoll_mask(uint32_t mask)
{
    unsigned int events = 0;
    if (mask & ~(uint32_t)EPOLLIN) {
        events |= FS_EVENT_WRITE;
    }
    if (mask & ~(uint32_t)EPOLLOUT) {
        events |= FS_EVENT_READ;
    }
    if (mask & EPOLLPRI) {
        events |= FS_EVENT_PRIORITY;
    }
    if (mask & EPOLLRDHUP) {
        events |= FS_EVENT_RDHUP;
    }
    return events;
}

static PyObject *
EpollCore_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    EpollCore *self;

    if (fs_check_no_args("EpollCore", args, kwds) < 0) {
        return NULL;
    }
    self = (EpollCore *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->ready = fs_state_of(type)->ready;
    self->zombie = -1;
    self->keys = PyDict_New();
    self->epfd = self->keys == NULL ? -1 : epoll_create1(EPOLL_CLOEXEC);
    if (self->keys == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    if (self->epfd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
EpollCore_traverse(EpollCore *self, visitproc visit, void *arg)
{
    Py_ssize_t i;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->keys);
    for (i = 0; i < self->table_size; i++) {
        Py_VISIT(self->table[i].key);
    }
    return 0;
}

static int
EpollCore_clear(EpollCore *self)
{
    Py_ssize_t i;
    /* The dict first (the table still holds each key: no finalizer runs),
     * then the table: Py_CLEAR empties the slot before the DECREF, and the
     * loop re-reads table and table_size, as a finalizer may re-enter the
     * core. */
    if (self->keys != NULL) {
        PyDict_Clear(self->keys);
    }
    for (i = 0; i < self->table_size; i++) {
        Py_CLEAR(self->table[i].key);
    }
    self->nregistered = 0;
    return 0;
}

static void
EpollCore_dealloc(EpollCore *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    EpollCore_clear(self);
    Py_CLEAR(self->keys);
    if (self->epfd >= 0) {
        close(self->epfd);
        self->epfd = -1;
    }
    if (self->zombie >= 0) {
        close(self->zombie);
        self->zombie = -1;
    }
    PyMem_Free(self->table);
    PyMem_Free(self->buf);
    PyMem_Free(self->dbuf);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Make table[fd] exist.  Called after the kernel accepted fd (register
 * undoes the EPOLL_CTL_ADD if this fails): growing first would let a
 * refused fd number cost memory in proportion to it (4 GiB for fd 10**8). */
static int
table_reserve(EpollCore *self, int fd)
{
    Py_ssize_t new_size;
    fs_entry *table;

    if (fd < self->table_size) {
        return 0;
    }
    new_size = self->table_size ? self->table_size : 64;
    while (new_size <= fd) {
        new_size *= 2;
    }
    table = PyMem_Realloc(self->table, (size_t)new_size * sizeof(fs_entry));
    if (table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(table + self->table_size, 0,
           (size_t)(new_size - self->table_size) * sizeof(fs_entry));
    self->table = table;
    self->table_size = new_size;
    return 0;
}

/* epoll_ctl(op) of fd for a registration of generation gen; -1 with errno
 * set on failure (no exception). */
static int
ctl_raw(int epfd, int op, int fd, unsigned int events, uint32_t gen)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = to_epoll_mask(events);
    ev.data.u64 = FS_PACK(fd, gen);
    return epoll_ctl(epfd, op, fd, &ev);
}

static int
ctl(EpollCore *self, int op, int fd, unsigned int events, uint32_t gen)
{
    if (ctl_raw(self->epfd, op, fd, events, gen) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static int rebuild(EpollCore *self, int verify);

/* EPOLL_CTL_DEL that may fail: the fd was closed (EBADF), or its number now
 * names a file that is not in the set (ENOENT).  If a dup kept the old file
 * description alive, its registration is an orphan now: count it, so that
 * its first event rebuilds the instance (see the top of this file).  Most
 * such failures are no orphan at all (a plain close() before unregister()
 * drops the registration), and nothing tells them apart; so that the count
 * (which sizes the waits) cannot grow without bound, a count above the
 * number of registrations rebuilds at once: O(n) work every n failures. */
static void
del_fd(EpollCore *self, int fd)
{
    if (epoll_ctl(self->epfd, EPOLL_CTL_DEL, fd, NULL) < 0) {
        self->orphans++;
        if (self->orphans > Py_MAX(self->nregistered, 64)) {
            (void)rebuild(self, 1);     /* EMFILE: the next one tries */
        }
    }
}

static PyObject *
EpollCore_register_unlocked(EpollCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    unsigned int events;
    fs_entry *entry;

    if (fs_parse_fd_events("register", args, nargs, &fd, &events) < 0) {
        return NULL;
    }
    if (self->epfd < 0) {
        return fs_closed_error();
    }
    if (fd < self->table_size && self->table[fd].key != NULL) {
        PyErr_Format(PyExc_KeyError, "fd %d is already registered", fd);
        return NULL;
    }
    /* The GIL (or the critical section) is held from the add to the key
     * being stored: no wait can see the event of a key-less entry. */
    if (ctl(self, EPOLL_CTL_ADD, fd, events, self->next_gen) < 0) {
        return NULL;
    }
    if (table_reserve(self, fd) < 0
            || fs_keys_set(self->keys, fd, args[2]) < 0) {
        (void)epoll_ctl(self->epfd, EPOLL_CTL_DEL, fd, NULL);
        return NULL;
    }
    entry = &self->table[fd];
    self->nregistered++;
    entry->events = events;
    entry->stamp = ++self->mutations;
    /* 2**32 registrations later a generation comes back; an orphan would
     * have to outlive all of them on the same fd number to be mistaken. */
    entry->gen = self->next_gen++;
    entry->armed = 1;
    entry->parked = 0;
    Py_INCREF(args[2]);
    entry->key = args[2];
    Py_RETURN_NONE;
}

/* Drop fd's registration from the table and the dict (the kernel's is the
 * caller's business); returns the key, which the caller releases once the
 * core is consistent (its last reference may run a finalizer). */
static PyObject *
forget(EpollCore *self, int fd)
{
    PyObject *key = self->table[fd].key;
    self->table[fd].key = NULL;
    self->table[fd].stamp = ++self->mutations;
    self->nregistered--;
    fs_keys_del(self->keys, fd);
    return key;
}

static PyObject *
EpollCore_modify_unlocked(EpollCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    unsigned int events;
    fs_entry *entry;

    if (fs_parse_fd_events("modify", args, nargs, &fd, &events) < 0) {
        return NULL;
    }
    if (self->epfd < 0) {
        return fs_closed_error();
    }
    if (fd >= self->table_size || self->table[fd].key == NULL) {
        PyErr_Format(PyExc_KeyError, "fd %d is not registered", fd);
        return NULL;
    }
    entry = &self->table[fd];
    if (entry->parked) {
        /* A disarmed ONESHOT left out of a rebuilt instance: add it back. */
        if (ctl(self, EPOLL_CTL_ADD, fd, events, entry->gen) < 0) {
            goto refused;
        }
        entry->parked = 0;
    }
    else if (events != entry->events || (events & (FS_ONESHOT | FS_EDGE))) {
        /* A ONESHOT registration is re-armed by every modify(); an EDGE one
         * has the kernel re-check readiness, so an edge whose pending
         * dispatch() event this change drops is reported again (the
         * dispatch contract, CoreSelector.dispatch). */
        if (entry->events & FS_EXCLUSIVE) {
            /* The kernel refuses EPOLL_CTL_MOD of an exclusive registration
             * (epoll_ctl(2): EINVAL): delete and add again.  The add
             * re-checks readiness, so no edge is lost. */
            (void)epoll_ctl(self->epfd, EPOLL_CTL_DEL, fd, NULL);
            if (ctl(self, EPOLL_CTL_ADD, fd, events, entry->gen) < 0) {
                goto refused;
            }
        }
        else if (ctl(self, EPOLL_CTL_MOD, fd, events, entry->gen) < 0) {
            goto refused;
        }
    }
    /* Replacing a dict value allocates nothing: this cannot fail. */
    if (fs_keys_set(self->keys, fd, args[2]) < 0) {
        goto refused;
    }
    entry->events = events;
    entry->armed = 1;
    entry->stamp = ++self->mutations;
    Py_INCREF(args[2]);
    Py_SETREF(entry->key, args[2]);
    Py_RETURN_NONE;

refused:
    /* The kernel refused (a closed fd, a number reused): the stdlib forgets
     * the registration, and so do we. */
    {
        fs_saved_error error;
        PyObject *key;
        fs_error_save(&error);
        (void)epoll_ctl(self->epfd, EPOLL_CTL_DEL, fd, NULL);
        key = forget(self, fd);
        fs_error_restore(&error);
        Py_DECREF(key);     /* last: may run arbitrary code */
    }
    return NULL;
}

static PyObject *
EpollCore_unregister_unlocked(EpollCore *self, PyObject *arg)
{
    int fd, parked;
    PyObject *key;

    if (fs_fd_converter(arg, &fd) < 0) {
        return NULL;
    }
    if (self->epfd < 0 || fd >= self->table_size
            || self->table[fd].key == NULL) {
        Py_RETURN_NONE;
    }
    parked = self->table[fd].parked;
    key = forget(self, fd);
    if (!parked) {
        del_fd(self, fd);       /* (after: a rebuild must not re-add fd) */
    }
    return key;                 /* the caller releases it */
}

/* The live entry an event belongs to, or NULL: the fd was unregistered
 * after the kernel queued the event (a race, harmless), or the event is an
 * orphan's (see the top of this file).  Either way it is not delivered. */
static fs_entry *
entry_of(EpollCore *self, const struct epoll_event *ev)
{
    int fd = FS_FD_OF(ev->data.u64);
    fs_entry *entry;

    if (fd < 0 || fd >= self->table_size) {
        return NULL;
    }
    entry = &self->table[fd];
    if (entry->key == NULL || entry->gen != FS_GEN_OF(ev->data.u64)) {
        return NULL;
    }
    return entry;
}

/* Right after a wait returns, before any Python code can run (callbacks,
 * finalizers): note what the kernel just did.  It disarmed every ONESHOT
 * registration it reported.  Returns how many events belong to live
 * entries (stats) and sets *stale if one does not, so the caller can
 * rebuild if orphans may exist. */
static int
note_batch(EpollCore *self, const struct epoll_event *events, int n,
           uint64_t stamp, int *stale)
{
    int i, live = 0;
    for (i = 0; i < n; i++) {
        fs_entry *entry = entry_of(self, &events[i]);
        if (entry == NULL) {
            *stale = 1;
            continue;
        }
        live++;
        /* Not if another thread changed it during the wait (stamp: when
         * the wait began): its modify() may have re-armed it after the
         * kernel reported it.  Wrongly "disarmed", a rebuild would park it
         * and its events would be lost; wrongly "armed", at worst re-added
         * armed by a rebuild: one event more. */
        if ((entry->events & FS_ONESHOT) && entry->stamp <= stamp) {
            entry->armed = 0;
        }
    }
    return live;
}

/* Turn n kernel events into [(key, events), ...]. */
static PyObject *
build_result(EpollCore *self, struct epoll_event *events, int n)
{
    PyObject *result = PyList_New(n);
    Py_ssize_t count = 0;
    int i;

    if (result == NULL) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        unsigned int mask;
        fs_entry *entry = entry_of(self, &events[i]);
        PyObject *key, *ready, *pair;

        if (entry == NULL) {
            continue;
        }
        key = entry->key;
        mask = from_epoll_mask(events[i].events) & entry->events
               & FS_READINESS;
        if (mask == 0) {
            continue;   /* the interest changed after the kernel spoke */
        }
        ready = self->ready[mask];
        Py_INCREF(ready);
        Py_INCREF(key);
        pair = PyTuple_New(2);  /* may run a finalizer: entry is stale now */
        if (pair == NULL) {
            Py_DECREF(key);
            Py_DECREF(ready);
            goto error;
        }
        PyTuple_SET_ITEM(pair, 0, key);
        PyTuple_SET_ITEM(pair, 1, ready);
        PyList_SET_ITEM(result, count, pair);
        count++;
    }
    /* Slots past count are NULL and were never handed out. */
    Py_SET_SIZE(result, count);
    return result;

error:
    Py_SET_SIZE(result, count);
    Py_DECREF(result);
    return NULL;
}

/* The batch of one wait: the call's maxevents, else the core's default,
 * else room for every registered fd like the stdlib (one call returns
 * everything that is ready); never more than are registered, at least 1
 * (epoll_wait requires it).  When more are ready than the batch holds, the
 * kernel keeps the rest and rotates its ready list: nobody starves. */
static int
batch_size(EpollCore *self, int requested, int *limited)
{
    /* Orphans (top of this file) may take slots too: room for them, so a
     * live fd's event is not crowded out of this wait by theirs. */
    Py_ssize_t want = self->nregistered + self->orphans;
    int all = want <= 0 ? 1
        : (int)Py_MIN(want, INT_MAX / (Py_ssize_t)sizeof(struct epoll_event));
    if (requested <= 0) {
        requested = self->maxevents;
    }
    *limited = requested > 0 && requested < all;
    return *limited ? requested : all;
}

/* Make *buf hold at least need events; grow geometrically so that a
 * registration storm does not reallocate on every wait. */
static int
reserve_events(struct epoll_event **buf, int *size, int need)
{
    struct epoll_event *grown;
    int new_size;

    if (*size >= need) {
        return 0;
    }
    new_size = Py_MAX(need, Py_MIN(2 * *size,
                                   INT_MAX / (int)sizeof(struct epoll_event)));
    grown = PyMem_Realloc(*buf, (size_t)new_size * sizeof(**buf));
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *buf = grown;
    *size = new_size;
    return 0;
}

/* precise_timeouts() -> bool: does this process wait with epoll_pwait2
 * (waits.h)? */
static PyObject *
EpollCore_precise_timeouts_unlocked(EpollCore *self, PyObject *Py_UNUSED(ignored))
{
    if (self->epfd < 0) {
        return fs_closed_error();
    }
    return PyBool_FromLong(fs_pwait2_probe(self->epfd));
}

/* Make every thread waiting in epoll_wait() on epfd return: add a file
 * that is always readable (fs_always_readable_fd) to the instance.  For an
 * instance about to be closed or replaced: its waiters then see that. */
static void
kick_waiters(int epfd)
{
    int fd = fs_always_readable_fd();
    struct epoll_event ev;
    if (fd < 0) {
        return;     /* EMFILE: they return at their timeout, or an event */
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.u64 = UINT64_MAX;   /* fd -1: no entry */
    (void)epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* Add to epfd every registration of the table that the kernel still has.
 * verify: check each one with an EPOLL_CTL_MOD on the current instance
 * first (fails for a closed fd, or a number that now names another file:
 * re-adding it would watch that file under this key).  After fork() the
 * old instance is the parent's and must not be touched: no verify.
 * Disarmed ONESHOT registrations are parked, not added (see the top of this
 * file). */
static void
add_registrations(EpollCore *self, int epfd, int verify)
{
    Py_ssize_t fd;

    for (fd = 0; fd < self->table_size; fd++) {
        fs_entry *entry = &self->table[fd];
        if (entry->key == NULL || entry->parked) {
            continue;
        }
        if ((entry->events & FS_ONESHOT) && !entry->armed) {
            entry->parked = 1;
            continue;
        }
        /* An EXCLUSIVE registration answers every EPOLL_CTL_MOD with
         * EINVAL (epoll_ctl(2)) -- but only if it is there: ENOENT or
         * EBADF mean it is gone.  Hence EINVAL counts as present, and the
         * probe leaves EXCLUSIVE out of the mask (with it, EINVAL always). */
        if (verify && ctl_raw(self->epfd, EPOLL_CTL_MOD, (int)fd,
                              entry->events & ~FS_EXCLUSIVE, entry->gen) < 0
                && errno != EINVAL) {
            continue;   /* gone from the kernel: as a closed fd is */
        }
        /* Fails only as the MOD above would have (after fork: the fd was
         * closed meanwhile): the key stays, as a closed fd's does. */
        (void)ctl_raw(epfd, EPOLL_CTL_ADD, (int)fd, entry->events,
                      entry->gen);
    }
}

/* A new epoll instance, holding what add_registrations() adds (or nothing:
 * with_registrations 0), in place of the current one at the same fd number
 * (dup3).  -1 with errno set if none could be made: the old one is kept. */
static int
replace_instance(EpollCore *self, int with_registrations, int verify)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);

    if (epfd < 0) {
        return -1;
    }
    if (with_registrations) {
        add_registrations(self, epfd, verify);
    }
    /* Threads waiting on the old instance would sleep on in it, blind to
     * the new one: kick them off it (one extra wake-up each). */
    if (self->nwaiting > 0) {
        kick_waiters(self->epfd);
    }
    if (dup3(epfd, self->epfd, O_CLOEXEC) < 0) {
        int saved_errno = errno;
        close(epfd);
        errno = saved_errno;
        return -1;
    }
    close(epfd);
    self->orphans = 0;
    return 0;
}

/* The orphans' rebuild (the top of this file).  Selectors that watch this
 * epoll fd (nested selectors) watched the old instance, which the dup3
 * closed: the module's rebuild hook (_selectors.replaced) has them add the
 * new one. */
static int
rebuild(EpollCore *self, int verify)
{
    PyObject *hook = fs_state_of(Py_TYPE(self))->rebuild_hook, *rc;

    if (replace_instance(self, 1, verify) < 0) {
        return -1;
    }
    self->stats.rebuilds++;
    if (hook != NULL) {
        Py_INCREF(hook);
        rc = PyObject_CallFunction(hook, "i", self->epfd);
        if (rc == NULL) {
            PyErr_WriteUnraisable(hook);
        }
        Py_XDECREF(rc);
        Py_DECREF(hook);
    }
    return 0;
}

/* The wait without the GIL, retried on EINTR with the remaining time once
 * the signal handlers have run (PEP 475).  Returns the number of events,
 * or -1 with an exception set: the closed error if the selector was closed
 * meanwhile (by a signal handler, or by another thread: close() kicks the
 * waiters off the instance).  full: the batch was limited by maxevents. */
static int
wait_events(EpollCore *self, struct epoll_event *events, int maxevents,
            fs_timeout *timeout, int limited)
{
    long long start = timeout->ms != 0 ? fs_now_ns() : 0;
    for (;;) {
        int n, saved_errno, epfd = self->epfd, stale = 0;
        uint64_t stamp = self->mutations;
        self->nwaiting++;
        Py_BEGIN_ALLOW_THREADS
        n = fs_epoll_wait_ns(epfd, events, maxevents, timeout->ms,
                             timeout->ns);
        saved_errno = errno;
        Py_END_ALLOW_THREADS
        self->nwaiting--;
        if (self->epfd < 0) {
            if (self->nwaiting == 0 && self->zombie >= 0) {
                close(self->zombie);    /* the last waiter out */
                self->zombie = -1;
            }
            fs_closed_error();
            return -1;
        }
        if (n >= 0) {
            int live = note_batch(self, events, n, stamp, &stale);
            if (start) {
                self->stats.idle_ns += fs_now_ns() - start;
            }
            fs_stats_wait(&self->stats, live, limited && n == maxevents);
            /* An orphan spoke: rebuild now (threads still waiting on the
             * old instance are kicked off it).  If the rebuild fails
             * (EMFILE), the next stale event tries again. */
            if (stale && self->orphans > 0) {
                (void)rebuild(self, 1);
            }
            return n;
        }
        if (saved_errno != EINTR) {
            errno = saved_errno;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
        if (self->epfd < 0) {
            /* A signal handler closed the selector. */
            fs_closed_error();
            return -1;
        }
        timeout->ms = fs_timeout_remaining(timeout);
        if (timeout->ms == 0) {
            if (start) {
                self->stats.idle_ns += fs_now_ns() - start;
            }
            fs_stats_wait(&self->stats, 0, 0);
            return 0;
        }
    }
}

static PyObject *
EpollCore_select_unlocked(EpollCore *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    PyObject *timeout_obj, *result = NULL;
    fs_timeout timeout;
    struct epoll_event *events;
    int maxevents, n, own_buffer, limited;

    if (fs_parse_select_args("select", args, nargs, kwnames, &timeout_obj,
                             &maxevents) < 0) {
        return NULL;
    }
    if (self->epfd < 0) {
        return fs_closed_error();
    }
    if (fs_check_not_in_callback(self->dthread, "select") < 0
            || fs_timeout_init(&timeout, timeout_obj) < 0) {
        return NULL;
    }
    maxevents = batch_size(self, maxevents, &limited);
    own_buffer = !self->buf_busy;
    if (own_buffer) {
        if (reserve_events(&self->buf, &self->buf_size, maxevents) < 0) {
            return NULL;
        }
        events = self->buf;
        self->buf_busy = 1;
    }
    else {
        /* Another thread's wait, or a finalizer run in the middle of
         * build_result(), holds the shared buffer. */
        events = PyMem_Malloc((size_t)maxevents * sizeof(*events));
        if (events == NULL) {
            return PyErr_NoMemory();
        }
    }
    n = wait_events(self, events, maxevents, &timeout, limited);
    if (n >= 0) {
        result = build_result(self, events, n);
    }
    if (own_buffer) {
        self->buf_busy = 0;
    }
    else {
        PyMem_Free(events);
    }
    return result;
}

/* key.data(key, events).  Keys are SelectorKeys (namedtuples: data is item
 * 3); anything else is asked for its .data attribute. */
static PyObject *
invoke_callback(PyObject *key, PyObject *ready)
{
    PyObject *callback, *result, *argv[3];

    if (PyTuple_Check(key) && PyTuple_GET_SIZE(key) == 4) {
        callback = PyTuple_GET_ITEM(key, 3);
        Py_INCREF(callback);
    }
    else {
        callback = PyObject_GetAttrString(key, "data");
        if (callback == NULL) {
            return NULL;
        }
    }
    argv[0] = NULL;
    argv[1] = key;
    argv[2] = ready;
    result = PyObject_Vectorcall(callback, argv + 1,
                                 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(callback);
    return result;
}

/* Deliver the pending part of the dispatch batch, counting the callbacks
 * run in *count.  Returns -1 if a callback raised (the rest stays pending),
 * else 0. */
static int
deliver_pending(EpollCore *self, Py_ssize_t *count)
{
    while (self->dpos < self->dn) {
        struct epoll_event *ev = &self->dbuf[self->dpos++];
        fs_entry *entry = entry_of(self, ev);
        unsigned int ready;
        PyObject *key, *result;

        /* Unregistered, or changed by an earlier callback of this batch:
         * the event was computed before that change, drop it. */
        if (entry == NULL || entry->stamp > self->dstamp) {
            continue;
        }
        ready = from_epoll_mask(ev->events) & entry->events & FS_READINESS;
        if (ready == 0) {
            continue;
        }
        key = entry->key;
        Py_INCREF(key);
        result = invoke_callback(key, self->ready[ready]);
        Py_DECREF(key);
        if (result == NULL) {
            return -1;
        }
        Py_DECREF(result);
        (*count)++;
        self->stats.callbacks++;
        if (self->epfd < 0) {
            break;              /* a callback closed the selector */
        }
    }
    return 0;
}

/* dispatch(timeout=None) -> int.  The contract is written in
 * _selectors.CoreSelector.dispatch. */
static PyObject *
EpollCore_dispatch_unlocked(EpollCore *self, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames)
{
    PyObject *timeout_obj;
    fs_timeout timeout;
    Py_ssize_t count = 0;
    int rc = 0, requested;

    if (fs_parse_select_args("dispatch", args, nargs, kwnames, &timeout_obj,
                             &requested) < 0) {
        return NULL;
    }
    if (self->epfd < 0) {
        return fs_closed_error();
    }
    if (fs_timeout_init(&timeout, timeout_obj) < 0
            || fs_dispatch_enter(&self->dthread) < 0) {
        return NULL;
    }
    /* Events left by a callback that raised come first, without a wait. */
    rc = deliver_pending(self, &count);
    if (rc == 0 && count == 0 && self->epfd >= 0) {
        /* Nothing (still valid) was pending: wait for a new batch. */
        int limited, maxevents = batch_size(self, requested, &limited), n;
        if (reserve_events(&self->dbuf, &self->dbuf_size, maxevents) < 0) {
            rc = -1;
        }
        else {
            n = wait_events(self, self->dbuf, maxevents, &timeout, limited);
            if (n < 0) {
                rc = -1;
            }
            else {
                self->dpos = 0;
                self->dn = n;
                /* Taken after the wait, with the GIL: changes made by
                 * other threads during the wait are in the table. */
                self->dstamp = self->mutations;
                rc = deliver_pending(self, &count);
            }
        }
    }
    self->dthread = 0;
    if (self->epfd < 0) {
        /* Closed by a callback: close() left the buffer to us. */
        self->dpos = self->dn = 0;
        PyMem_Free(self->dbuf);
        self->dbuf = NULL;
        self->dbuf_size = 0;
    }
    if (rc < 0) {
        return NULL;
    }
    return PyLong_FromSsize_t(count);
}

static PyObject *
EpollCore_close_unlocked(EpollCore *self, PyObject *Py_UNUSED(ignored))
{
    int epfd = self->epfd;

    if (epfd >= 0) {
        self->epfd = -1;        /* first: close() may run again from a
                                   finalizer during the clear below */
        if (self->nwaiting > 0) {
            kick_waiters(epfd); /* they raise the closed error, and */
            self->zombie = epfd;    /* the last one closes it */
        }
        else {
            close(epfd);
        }
        EpollCore_clear(self);
        if (!self->buf_busy) {  /* else another wait is using it */
            PyMem_Free(self->buf);
            self->buf = NULL;
            self->buf_size = 0;
        }
        if (self->dthread == 0) {   /* else dispatch() frees it */
            PyMem_Free(self->dbuf);
            self->dbuf = NULL;
            self->dbuf_size = 0;
            self->dpos = self->dn = 0;
        }
    }
    Py_RETURN_NONE;
}

/* _after_fork(): called in a child process (os.register_at_fork).  The
 * inherited epfd is the parent's epoll instance: every change the child
 * made to it would change what the parent sees, and both would steal each
 * other's events.  So the child gets a fresh instance with the same
 * registrations, at the same fd number; replacing the inherited
 * fd does not touch the parent's instance.  Only the forking thread exists
 * in the child: waits and dispatches other threads had under way are gone,
 * so their claims on the buffers are dropped. */
static PyObject *
EpollCore_after_fork_unlocked(EpollCore *self, PyObject *Py_UNUSED(ignored))
{
    self->buf_busy = 0;
    self->dthread = 0;
    self->dpos = self->dn = 0;      /* the parent delivers its own batch */
    self->nwaiting = 0;
    if (self->zombie >= 0) {        /* no waiter here: the child's copy */
        close(self->zombie);
        self->zombie = -1;
    }
    if (self->epfd >= 0 && replace_instance(self, 0, 0) < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

/* _after_fork_readd(): the second step in the child, once every selector
 * has its own new instance (_after_fork): the registrations, added by fd
 * number -- so one that names another selector's epoll fd watches that
 * selector's new instance, not the parent's. */
static PyObject *
EpollCore_after_fork_readd_unlocked(EpollCore *self,
                                    PyObject *Py_UNUSED(ignored))
{
    if (self->epfd >= 0) {
        add_registrations(self, self->epfd, 0);
    }
    Py_RETURN_NONE;
}

/* _reattach(fd): fd names a kernel object that was just replaced by a new
 * one at the same number (another selector's rebuild: rebuild()); watch
 * the new one.  A new generation: if the old registration survives (a
 * forked child holds the old file), its events are an orphan's. */
static PyObject *
EpollCore_reattach_unlocked(EpollCore *self, PyObject *arg)
{
    int fd;
    fs_entry *entry;

    if (fs_fd_converter(arg, &fd) < 0) {
        return NULL;
    }
    if (self->epfd < 0 || fd >= self->table_size
            || self->table[fd].key == NULL || self->table[fd].parked) {
        Py_RETURN_NONE;
    }
    entry = &self->table[fd];
    entry->gen = self->next_gen++;
    if (ctl_raw(self->epfd, EPOLL_CTL_ADD, fd, entry->events, entry->gen) < 0
            && errno == EEXIST) {
        (void)ctl_raw(self->epfd, EPOLL_CTL_MOD, fd, entry->events,
                      entry->gen);
    }
    self->orphans++;
    Py_RETURN_NONE;
}

static PyObject *
EpollCore_fileno_unlocked(EpollCore *self, PyObject *Py_UNUSED(ignored))
{
    if (self->epfd < 0) {
        return fs_closed_error();
    }
    return PyLong_FromLong(self->epfd);
}

static PyObject *
EpollCore_get_keys_unlocked(EpollCore *self, void *Py_UNUSED(closure))
{
    Py_INCREF(self->keys);
    return self->keys;
}

static PyObject *
EpollCore_get_closed_unlocked(EpollCore *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->epfd < 0);
}

static PyObject *
EpollCore_get_maxevents_unlocked(EpollCore *self, void *Py_UNUSED(closure))
{
    return fs_maxevents_get(self->maxevents);
}

static int
EpollCore_set_maxevents_unlocked(EpollCore *self, PyObject *value,
                        void *Py_UNUSED(closure))
{
    if (value == NULL) {
        value = Py_None;
    }
    return fs_maxevents_converter(value, &self->maxevents);
}

static PyObject *
EpollCore_len_unlocked(EpollCore *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(self->nregistered);
}

/* _asyncio_select(timeout, loop, ready) -> int (issue #13): the wait of
 * an asyncio loop's turn and its _process_events() in one call.  For each
 * event, masked by the registration's current interest like select()'s,
 * what BaseSelectorEventLoop._process_events does with its key: key.data
 * is asyncio's (reader, writer); a cancelled handle makes the loop forget
 * the fd (loop._remove_reader/_remove_writer), any other is appended to
 * the ready deque (aio_loop.c, fs_aio_process_event).  ready: the deque,
 * or its bound append method (the engine passes that: no lookup per turn).  Those calls run
 * Python code, so the table is re-read for every event, as in select().
 * Returns the number of events delivered. */
static int
asyncio_deliver(EpollCore *self, struct epoll_event *events, int n,
                PyObject *loop, PyObject *ready, Py_ssize_t *count)
{
    fs_module_state *st = fs_state_of(Py_TYPE(self));
    PyObject *append = fs_aio_ready_append(st, ready);
    int i, rc = 0;

    if (append == NULL) {
        return -1;
    }
    for (i = 0; i < n && rc == 0 && self->epfd >= 0; i++) {
        fs_entry *entry = entry_of(self, &events[i]);
        unsigned int mask;
        PyObject *key;

        if (entry == NULL) {
            continue;
        }
        mask = from_epoll_mask(events[i].events) & entry->events
               & FS_READINESS;
        if (mask == 0) {
            continue;
        }
        key = entry->key;
        Py_INCREF(key);
        rc = fs_aio_process_event(st, loop, append, key, mask);
        Py_DECREF(key);
        (*count)++;
    }
    Py_DECREF(append);
    return rc;
}

static PyObject *
EpollCore_asyncio_select_unlocked(EpollCore *self, PyObject *const *args,
                                  Py_ssize_t nargs)
{
    fs_timeout timeout;
    struct epoll_event *events;
    Py_ssize_t count = 0;
    int maxevents, n, own_buffer, limited, rc = -1;

    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "_asyncio_select() takes exactly 3 "
                     "arguments (%zd given)", nargs);
        return NULL;
    }
    if (self->epfd < 0) {
        return fs_closed_error();
    }
    if (fs_check_not_in_callback(self->dthread, "_asyncio_select") < 0
            || fs_timeout_init(&timeout, args[0]) < 0) {
        return NULL;
    }
    maxevents = batch_size(self, 0, &limited);
    own_buffer = !self->buf_busy;
    if (own_buffer) {
        if (reserve_events(&self->buf, &self->buf_size, maxevents) < 0) {
            return NULL;
        }
        events = self->buf;
        self->buf_busy = 1;
    }
    else {
        events = PyMem_Malloc((size_t)maxevents * sizeof(*events));
        if (events == NULL) {
            return PyErr_NoMemory();
        }
    }
    n = wait_events(self, events, maxevents, &timeout, limited);
    if (n >= 0) {
        rc = asyncio_deliver(self, events, n, args[1], args[2], &count);
    }
    if (own_buffer) {
        self->buf_busy = 0;
        if (self->epfd < 0) {
            /* Closed by a call made while delivering: close() left the
             * buffer to us. */
            PyMem_Free(self->buf);
            self->buf = NULL;
            self->buf_size = 0;
        }
    }
    else {
        PyMem_Free(events);
    }
    if (rc < 0) {
        return NULL;
    }
    return PyLong_FromSsize_t(count);
}

static PyObject *
EpollCore_stats_unlocked(EpollCore *self, PyObject *const *args,
                         Py_ssize_t nargs, PyObject *kwnames)
{
    return fs_stats_get(&self->stats, args, nargs, kwnames);
}

/* The methods, each inside a critical section on the core (free-
 * threaded CPython; nothing elsewhere): fastselectors.h. */
FS_LOCKED(PyObject *, EpollCore_register, (EpollCore *self, PyObject *const *args, Py_ssize_t nargs),
          self, args, nargs)
FS_LOCKED(PyObject *, EpollCore_modify, (EpollCore *self, PyObject *const *args, Py_ssize_t nargs),
          self, args, nargs)
FS_LOCKED(PyObject *, EpollCore_unregister, (EpollCore *self, PyObject *arg),
          self, arg)
FS_LOCKED(PyObject *, EpollCore_precise_timeouts, (EpollCore *self, PyObject *ignored),
          self, ignored)
FS_LOCKED(PyObject *, EpollCore_select, (EpollCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames),
          self, args, nargs, kwnames)
FS_LOCKED(PyObject *, EpollCore_dispatch, (EpollCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames),
          self, args, nargs, kwnames)
FS_LOCKED(PyObject *, EpollCore_asyncio_select, (EpollCore *self, PyObject *const *args, Py_ssize_t nargs),
          self, args, nargs)
FS_LOCKED(PyObject *, EpollCore_close, (EpollCore *self, PyObject *ignored),
          self, ignored)
FS_LOCKED(PyObject *, EpollCore_after_fork, (EpollCore *self, PyObject *ignored),
          self, ignored)
FS_LOCKED(PyObject *, EpollCore_after_fork_readd, (EpollCore *self, PyObject *ignored),
          self, ignored)
FS_LOCKED(PyObject *, EpollCore_reattach, (EpollCore *self, PyObject *arg),
          self, arg)
FS_LOCKED(PyObject *, EpollCore_fileno, (EpollCore *self, PyObject *ignored),
          self, ignored)
FS_LOCKED(PyObject *, EpollCore_get_closed, (EpollCore *self, void *closure),
          self, closure)
FS_LOCKED(PyObject *, EpollCore_get_keys, (EpollCore *self, void *closure),
          self, closure)
FS_LOCKED(PyObject *, EpollCore_get_maxevents, (EpollCore *self, void *closure),
          self, closure)
FS_LOCKED(int, EpollCore_set_maxevents, (EpollCore *self, PyObject *value, void *closure),
          self, value, closure)
FS_LOCKED(PyObject *, EpollCore_len, (EpollCore *self, PyObject *ignored),
          self, ignored)
FS_LOCKED(PyObject *, EpollCore_stats, (EpollCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames),
          self, args, nargs, kwnames)

static PyMethodDef EpollCore_methods[] = {
    {"register", (PyCFunction)(void (*)(void))EpollCore_register,
     METH_FASTCALL, "register(fd, events, key): add fd to the epoll set."},
    {"modify", (PyCFunction)(void (*)(void))EpollCore_modify,
     METH_FASTCALL, "modify(fd, events, key): change interest and key."},
    {"unregister", (PyCFunction)EpollCore_unregister, METH_O,
     "unregister(fd) -> the key removed, or None; a closed fd is not an "
     "error."},
    {"select", (PyCFunction)(void (*)(void))EpollCore_select,
     METH_FASTCALL | METH_KEYWORDS,
     "select(timeout=None, maxevents=None) -> list of (key, events)."},
    {"dispatch", (PyCFunction)(void (*)(void))EpollCore_dispatch,
     METH_FASTCALL | METH_KEYWORDS,
     "dispatch(timeout=None, maxevents=None) -> int: wait once, call "
     "key.data(key, events) "
     "for each ready registration."},
    {"_asyncio_select", (PyCFunction)(void (*)(void))EpollCore_asyncio_select,
     METH_FASTCALL, "_asyncio_select(timeout, loop, ready) -> int: wait, "
     "then BaseSelectorEventLoop._process_events for each event (issue #13)."},
    {"_after_fork", (PyCFunction)EpollCore_after_fork, METH_NOARGS,
     "_after_fork(): in a child process, a fresh empty epoll instance at "
     "the same fd."},
    {"_after_fork_readd", (PyCFunction)EpollCore_after_fork_readd,
     METH_NOARGS, "_after_fork_readd(): then the registrations."},
    {"_reattach", (PyCFunction)EpollCore_reattach, METH_O,
     "_reattach(fd): fd's kernel object was replaced: watch the new one."},
    {"precise_timeouts", (PyCFunction)EpollCore_precise_timeouts,
     METH_NOARGS, "precise_timeouts() -> True if waits use epoll_pwait2 "
     "(sub-millisecond timeouts) in this process."},
    {"close", (PyCFunction)EpollCore_close, METH_NOARGS,
     "close(): close the epoll fd and drop every key; idempotent."},
    {"fileno", (PyCFunction)EpollCore_fileno, METH_NOARGS,
     "fileno() -> the epoll file descriptor."},
    {"registered", (PyCFunction)EpollCore_len, METH_NOARGS,
     "registered() -> how many fds are in the table."},
    {"stats", (PyCFunction)(void (*)(void))EpollCore_stats,
     METH_FASTCALL | METH_KEYWORDS,
     "stats(reset=False) -> dict of the counters (docs/api.md)."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef EpollCore_getset[] = {
    {"closed", (getter)EpollCore_get_closed, NULL, "True once closed.", NULL},
    {"keys", (getter)EpollCore_get_keys, NULL,
     "The table, fd -> key: the selector's map.", NULL},
    {"maxevents", (getter)EpollCore_get_maxevents,
     (setter)EpollCore_set_maxevents,
     "Default batch size of a wait; None: every ready fd.", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyType_Slot EpollCore_slots[] = {
    {Py_tp_new, EpollCore_new},
    {Py_tp_dealloc, EpollCore_dealloc},
    {Py_tp_traverse, EpollCore_traverse},
    {Py_tp_clear, EpollCore_clear},
    {Py_tp_methods, EpollCore_methods},
    {Py_tp_getset, EpollCore_getset},
    {Py_tp_doc, "The epoll core of the native tier."},
    {0, NULL}
};

static PyType_Spec EpollCore_spec = {
    .name = "fastselectors._native.EpollCore",
    .basicsize = sizeof(EpollCore),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = EpollCore_slots,
};

int
fs_epoll_core_init(PyObject *module, fs_module_state *state)
{
    state->epoll_core_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &EpollCore_spec, NULL);
    if (state->epoll_core_type == NULL
            || fs_set_class_flags(state->epoll_core_type, FS_VALID_EVENTS,
                                  0, 1) < 0) {
        return -1;
    }
    return PyModule_AddType(module, state->epoll_core_type);
}

#else  /* !__linux__ */

int
fs_epoll_core_init(PyObject *module, fs_module_state *state)
{
    state->epoll_core_type = NULL;   /* no epoll: _backend sees no EpollCore */
    return 0;
}

#endif
