/* Shared declarations of the native tier (fastselectors._native).
 *
 * The native tier is a set of "cores" (see src/fastselectors/_selectors.py):
 * each owns a kernel object and a table of SelectorKeys, and builds the
 * (key, events) list of select() in C.  Python keeps the bookkeeping rules.
 */
#ifndef FASTSELECTORS_H
#define FASTSELECTORS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <time.h>

/* selectors.EVENT_READ / EVENT_WRITE: fixed by the stdlib's public API.
 * The extended flags share the mask; same values as _flags.py. */
#define FS_EVENT_READ 1u
#define FS_EVENT_WRITE 2u
#define FS_EVENT_PRIORITY 4u
#define FS_EVENT_RDHUP 8u
#define FS_EDGE 256u
#define FS_ONESHOT 512u
#define FS_EXCLUSIVE 1024u
#define FS_READINESS (FS_EVENT_READ | FS_EVENT_WRITE | FS_EVENT_PRIORITY \
                      | FS_EVENT_RDHUP)
#define FS_VALID_EVENTS (FS_READINESS | FS_EDGE | FS_ONESHOT | FS_EXCLUSIVE)

/* Every readiness mask select() can report is below this: the ints are made
 * once per module, so building a result costs an INCREF, not a
 * PyLong_FromLong (20 instructions per event, measured with cachegrind). */
#define FS_READY_MAX 16

typedef struct {
    PyTypeObject *epoll_core_type;  /* NULL where the OS has no epoll */
    PyTypeObject *poll_core_type;
    PyObject *ready[FS_READY_MAX];  /* ready[i] is the int i */
    PyObject *rebuild_hook;         /* _selectors.replaced, or NULL */
    /* The asyncio engine (aio_*.c, issue #13) */
    PyTypeObject *aio_engine_type;
    PyTypeObject *aio_config_type;
    PyTypeObject *aio_wq_type;
    PyObject *aio_config;
} fs_module_state;

/* The module state of a core's type (heap types made from the module). */
fs_module_state *fs_state_of(PyTypeObject *type);

/* A wait's timeout: milliseconds for epoll_wait/poll (-1 = forever, rounded
 * up like the stdlib), nanoseconds for epoll_pwait2/ppoll (sub-millisecond
 * waits; valid when ms > 0), and the monotonic deadline used to
 * retry with the remaining time after EINTR (PEP 475). */
typedef struct {
    int ms;
    long long ns;
    long long deadline_ns;
} fs_timeout;

/* stats(): the counters of a core (docs/api.md, "Statistics"; the Python
 * tiers count the same in _pycore.py).  Updated with the GIL (or the core's
 * critical section) held, once per wait: no measurable cost. */
typedef struct {
    unsigned long long waits;       /* select() and dispatch() waits */
    unsigned long long empty_waits; /* ... that reported nothing */
    unsigned long long events;      /* events reported for registered fds */
    unsigned long long callbacks;   /* dispatch() callbacks run */
    unsigned long long max_batch;   /* most events in one wait */
    unsigned long long full_batches;/* waits cut short by maxevents */
    unsigned long long rebuilds;    /* instances rebuilt (orphans) */
    long long idle_ns;              /* time blocked in the kernel */
} fs_stats;

/* Note one wait that reported n events (full: n reached the batch limit
 * set by maxevents). */
static inline void
fs_stats_wait(fs_stats *s, Py_ssize_t n, int full)
{
    s->waits++;
    if (n == 0) {
        s->empty_waits++;
    }
    s->events += (unsigned long long)n;
    if ((unsigned long long)n > s->max_batch) {
        s->max_batch = (unsigned long long)n;
    }
    if (full) {
        s->full_batches++;
    }
}

/* Keep the exception being raised across clean-up calls that may clear
 * or set one (PyErr_Fetch is deprecated from 3.12 on). */
#if PY_VERSION_HEX >= 0x030C0000
typedef PyObject *fs_saved_error;
#define fs_error_save(e) (*(e) = PyErr_GetRaisedException())
#define fs_error_restore(e) PyErr_SetRaisedException(*(e))
#else
typedef struct { PyObject *type, *value, *tb; } fs_saved_error;
#define fs_error_save(e) PyErr_Fetch(&(e)->type, &(e)->value, &(e)->tb)
#define fs_error_restore(e) PyErr_Restore((e)->type, (e)->value, (e)->tb)
#endif

/* Free-threaded CPython (PEP 703, the 3.13+ "t" builds): no GIL serialises
 * the methods of a core, so each one runs inside a critical section on the
 * core object, the way Argument Clinic's @critical_section does it for
 * CPython's own select.epoll.  The section is suspended whenever the thread
 * detaches (around the wait, Py_BEGIN_ALLOW_THREADS) and may be suspended
 * when Python code runs (callbacks, finalizers); the cores already re-read
 * their table after every such point, because a GIL build lets other
 * threads and finalizers in at the same places.  With the GIL the wrapper
 * is a plain call, inlined away.  (Not testable on this machine: no
 * free-threaded interpreter; the code follows the documented API.)
 *
 *   FS_LOCKED(rtype, name, (params), args) defines name() as a call of
 *   name_unlocked(args) inside the core's critical section. */
#ifdef Py_GIL_DISABLED
#define FS_LOCKED(rtype, name, params, ...)                             \
    static rtype name params                                            \
    {                                                                   \
        rtype result_;                                                  \
        Py_BEGIN_CRITICAL_SECTION(self);                                \
        result_ = name##_unlocked(__VA_ARGS__);                         \
        Py_END_CRITICAL_SECTION();                                      \
        return result_;                                                 \
    }
#else
#define FS_LOCKED(rtype, name, params, ...)                             \
    static rtype name params                                            \
    {                                                                   \
        return name##_unlocked(__VA_ARGS__);                            \
    }
#endif

/* common.c */
PyObject *fs_closed_error(void);
long long fs_now_ns(void);
int fs_always_readable_fd(void);
int fs_pipe_cloexec(int fds[2], int nonblock);
int fs_keys_set(PyObject *keys, int fd, PyObject *key);
void fs_keys_del(PyObject *keys, int fd);
PyObject *fs_stats_get(fs_stats *stats, PyObject *const *args,
                       Py_ssize_t nargs, PyObject *kwnames);
int fs_set_class_flags(PyTypeObject *type, unsigned int supported,
                       int reregister_on_modify, int fd_range_before_closed);
int fs_parse_select_args(const char *fname, PyObject *const *args,
                         Py_ssize_t nargs, PyObject *kwnames,
                         PyObject **timeout, int *maxevents);
int fs_maxevents_converter(PyObject *obj, int *maxevents);
PyObject *fs_maxevents_get(int maxevents);
int fs_timeout_init(fs_timeout *t, PyObject *timeout);
int fs_timeout_remaining(fs_timeout *t);
int fs_fd_converter(PyObject *obj, int *fd);
int fs_events_converter(PyObject *obj, unsigned int *events);
int fs_check_no_args(const char *name, PyObject *args, PyObject *kwds);
int fs_parse_fd_events(const char *name, PyObject *const *args,
                       Py_ssize_t nargs, int *fd, unsigned int *events);
int fs_dispatch_enter(unsigned long *dthread);
int fs_check_not_in_callback(unsigned long dthread, const char *name);

/* epoll_core.c, poll_core.c: add the type to the module, store it in the
 * state.  Return 0 on success, -1 with an exception set. */
int fs_epoll_core_init(PyObject *module, fs_module_state *state);
int fs_poll_core_init(PyObject *module, fs_module_state *state);

/* aio_loop.c: the asyncio engine (issue #13); the module's functions, and
 * what EpollCore._asyncio_select does per event (BaseSelectorEventLoop.
 * _process_events for one key). */
int fs_aio_init(PyObject *module, fs_module_state *state);
PyObject *fs_aio_ready_append(fs_module_state *state, PyObject *ready);
int fs_aio_process_event(fs_module_state *state, PyObject *loop,
                         PyObject *append, PyObject *key, unsigned int mask);
PyObject *fs_aio_engine_of(fs_module_state *state, PyObject *loop);
int fs_aio_handle_cancelled(fs_module_state *state, PyObject *handle);

#endif
