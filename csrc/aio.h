/* The asyncio engine of the native tier (issue #13): declarations shared by
 * aio_loop.c (the loop's turn, call_soon, the configuration) and
 * aio_transport.c (the socket transport's read and write paths).
 *
 * Nothing here knows asyncio at compile time.  fastselectors._aio hands the
 * stdlib objects it needs to aio_setup() once (the Handle classes, the
 * stock functions whose behaviour the fast paths reproduce, heapq's C
 * functions), and every fast path checks that it is looking at exactly
 * those objects; anything else -- a subclass overriding a method, a mock,
 * an instance attribute set by a test -- takes the stock Python path.
 */
#ifndef FASTSELECTORS_AIO_H
#define FASTSELECTORS_AIO_H

#include "fastselectors.h"
#include "structmember.h"       /* PyMemberDef (3.9-3.11) */

/* A __slots__ member of a Python class (PyMemberDescr, T_OBJECT_EX): the
 * slot is read and written in place, as the member descriptor would. */
#define FS_T_OBJECT_EX 16
#define FS_READONLY 1
#define FS_SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

/* The loop attributes the engine reads: NativeEventLoop's __slots__. */
#define FS_LOOP_NFIELDS 9
extern PyObject *fs_aio_loop_names[FS_LOOP_NFIELDS];

/* The transport attributes the hot paths read (see tview below). */
enum {
    FS_F_CONN_LOST, FS_F_BUFFER, FS_F_EOF, FS_F_EMPTY_WAITER, FS_F_SOCK,
    FS_F_READ_READY_CB, FS_F_PROTOCOL, FS_F_FS_WQ, FS_F_CLOSING, FS_NFIELDS
};

typedef struct {
    PyObject_HEAD
    int configured;             /* aio_setup() ran */
    /* asyncio.events.Handle and TimerHandle, and the offsets of Handle's
     * slots (every Handle subclass keeps them). */
    PyTypeObject *handle_type;
    PyTypeObject *timer_handle_type;
    Py_ssize_t off_callback, off_args, off_cancelled, off_loop;
    Py_ssize_t off_source_traceback, off_repr, off_context;
    Py_ssize_t off_when;        /* TimerHandle._when */
    int fast_handles;           /* _callback, _args, _cancelled, _context
                                   found: handles are run in place */
    int can_make_handles;       /* Handle's slots are exactly the known set:
                                   call_soon makes them in C */
    PyObject *handle_run;       /* Handle._run */
    PyObject *heappop, *heapify;        /* heapq's (C) functions */
    PyObject *report;           /* _aio._report(handle, exc): the except
                                   clause of this version's Handle._run */
    PyObject *run_debug;        /* _aio._run_debug(loop, handle) */
    PyObject *core_for;         /* _aio._core_for(selector) */
    PyObject *stock_run_once;   /* BaseEventLoop._run_once */
    PyObject *stock_call_soon;  /* BaseEventLoop.call_soon */
    PyObject *base_time;        /* BaseEventLoop.time */
    PyObject *stock_process_events;  /* BaseSelectorEventLoop's */
    /* _SelectorSocketTransport's functions reproduced in C */
    PyObject *read_ready, *rr_data, *rr_buffer, *stock_write;
    PyTypeObject *socket_type;  /* _socket.socket */
    PyTypeObject *socket_py_type;   /* socket.socket (the usual one) */
    Py_ssize_t sock_fd_offset;  /* of its sock_fd (checked), or 0 */
    PyTypeObject *socket_transport_type;    /* _SelectorSocketTransport */
    PyTypeObject *fast_transport_type;      /* _aio.FastSocketTransport */
    Py_ssize_t off_tr_loop, off_tr_high_water;  /* _FlowControlMixin slots */
    Py_ssize_t fast_off[FS_NFIELDS];    /* FastSocketTransport's slots */
    int fast_slots;             /* all of them found */
    PyTypeObject *loop_type;    /* _aio.NativeEventLoop */
    Py_ssize_t loop_off[FS_LOOP_NFIELDS];   /* its slots */
    int loop_slots;             /* all of them found */
    PyTypeObject *deque_type;   /* collections.deque */
    double max_select_timeout;  /* base_events.MAXIMUM_SELECT_TIMEOUT */
    Py_ssize_t min_sched;       /* _MIN_SCHEDULED_TIMER_HANDLES */
    double min_cancelled_frac;  /* _MIN_CANCELLED_TIMER_HANDLES_FRACTION */
    Py_ssize_t coalesce_max;    /* most bytes a transport defers per turn */
    int coalesce;               /* write coalescing on */
    int use_asyncio_select;     /* wait + _process_events in one C call */
    int use_read;               /* the transport read path in C */
} AioConfig;

/* Deferred writes of one transport (transport._fs_wq). */
typedef struct AioWriteQueue {
    PyObject_HEAD
    struct AioWriteQueue *next; /* in its engine's flush chain */
    int chained;                /* in that chain (which holds a reference) */
    PyObject *first;            /* the first bytes deferred, or NULL */
    PyObject *more;             /* a list of the ones after it, or NULL
                                   (kept, emptied, across turns) */
    Py_ssize_t count;           /* chunks: first + len(more) */
    Py_ssize_t size;            /* their total length */
    PyObject *transport;        /* strong while queued, else NULL */
    int fd;                     /* the socket's fd when the first chunk was
                                   deferred (close() flushes first) */
} AioWriteQueue;

/* One per loop: loop._fs. */
typedef struct {
    PyObject_HEAD
    PyObject *config;           /* the AioConfig */
    PyObject *ready;            /* loop._ready seen last turn */
    PyObject *ready_append;     /* its bound append / popleft */
    PyObject *ready_popleft;
    PyObject *selector;         /* loop._selector seen last turn */
    PyObject *core;             /* its native core, or None */
    PyObject *core_select;      /* core._asyncio_select, bound */
    /* Are loop.time and loop._process_events the stock ones?  Asked once,
     * then again only when the loop's __dict__ or class changed. */
    PyObject *seen_dict;        /* the loop's __dict__ when asked */
    uint64_t seen_version;      /* its version (fs_dict_version) then */
    unsigned int seen_type_version;     /* its class's tp_version_tag */
    int seen_stock_time, seen_stock_process_events;
    struct AioWriteQueue *flush;    /* queues with deferred writes: a
                                       chain through ->next, each held
                                       (INCREF) by the chain; or NULL */
    int cleared;                /* tp_clear ran */
    unsigned long drain_thread; /* thread draining the ready queue, or 0 */
    PyObject *drain_loop;       /* the loop being drained (borrowed) */
    char *scratch;              /* recv() buffer of the read fast path */
    Py_ssize_t scratch_size;
} AioEngine;

/* Interned attribute names (once per process). */
typedef struct {
    PyObject *_ready, *_scheduled, *_timer_cancelled_count, *_stopping,
        *_clock_resolution, *_selector, *_when, *_scheduled_attr,
        *_cancelled, *_run, *time, *append, *popleft, *_process_events,
        *select, *_remove_reader, *_remove_writer, *_closed, *_debug,
        *_read_ready_cb, *_conn_lost, *_sock, *fileno, *max_size,
        *_protocol, *data_received, *get_buffer, *buffer_updated,
        *_fatal_error, *_read_ready__on_eof, *_eof, *_empty_waiter,
        *_buffer, *_loop, *_fs, *_fs_wq, *_high_water, *_asyncio_select,
        *context, *recv_into, *_closing;
} AioNames;

extern AioNames fs_aio_names;

/* What the fast paths did, for tests and benchmarks (aio_stats()): plain
 * counters, not exact under free-threading. */
typedef struct {
    unsigned long long turns, handles, reads, buffered_reads, sends,
        deferred, flushes, handle_calls;
} AioStats;
extern AioStats fs_aio_stats;

/* An object's attributes, read without walking its MRO.
 *
 * PyObject_GetAttr on a transport walks its five-class MRO for every name
 * (about 200 instructions each, counted with callgrind).  The names the hot
 * paths read are plain instance attributes that the stock __init__ sets:
 * FastSocketTransport declares them as __slots__, so for it they are read
 * in place (offsets from its member descriptors at setup); for other
 * objects (the loop, stock transports) they are read from the instance
 * __dict__, falling back to getattr when a name is not there.  Only exact
 * stock types take these paths, and none has a data descriptor that would
 * shadow those __dict__ entries (checked for the loop at setup). */

typedef struct {
    PyObject *t;
    PyObject *dict;             /* t.__dict__, or NULL */
    const Py_ssize_t *off;      /* slot offsets of the names below, or NULL:
                                   read everything from dict */
    PyObject *const *names;     /* the slotted names (interned) */
    int nnames;
    int stock_time;             /* loops: loop.time is the stock one (1, 0;
                                   -1: not known yet) */
    int stock_pe;               /* loops: so is loop._process_events */
} tview;

/* Open a view of t.  off/names/nnames: its __slots__ (may be NULL/0);
 * want_dict: fetch its __dict__ too (needed when off is NULL, or to see
 * instance attributes that are not slots). */
static inline int
tview_open2(tview *v, PyObject *t, const Py_ssize_t *off,
            PyObject *const *names, int nnames, int want_dict)
{
    v->t = t;
    v->off = off;
    v->names = names;
    v->nnames = off != NULL ? nnames : 0;
    v->stock_time = v->stock_pe = -1;
    v->dict = NULL;
    if (off != NULL && !want_dict) {
        return 0;
    }
    v->dict = PyObject_GenericGetDict(t, NULL);
    if (v->dict == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return -1;
        }
        PyErr_Clear();
    }
    return 0;
}

static inline int
tview_open(tview *v, PyObject *t, const Py_ssize_t *off)
{
    return tview_open2(v, t, off, NULL, 0, off == NULL);
}

static inline void
tview_close(tview *v)
{
    Py_CLEAR(v->dict);
}

/* t.name as a new reference: a slot if name is one of the view's slotted
 * names (compared by identity: interned), else from __dict__, else
 * getattr. */
static inline PyObject *
tget(tview *v, PyObject *name)
{
    int i;
    for (i = 0; i < v->nnames; i++) {
        if (v->names[i] == name) {
            PyObject *value = FS_SLOT(v->t, v->off[i]);
            if (value != NULL) {
                Py_INCREF(value);
                return value;
            }
            return PyObject_GetAttr(v->t, name);    /* AttributeError */
        }
    }
    if (v->dict != NULL) {
        PyObject *value = PyDict_GetItemWithError(v->dict, name);
        if (value != NULL) {
            Py_INCREF(value);
            return value;
        }
        if (PyErr_Occurred()) {
            return NULL;
        }
    }
    return PyObject_GetAttr(v->t, name);
}

static inline int
truth(PyObject *value)
{
    return value == Py_False || value == Py_None ? 0
        : value == Py_True ? 1 : PyObject_IsTrue(value);
}

/* bool(t.name): 1, 0, or -1. */
static inline int
ttrue(tview *v, PyObject *name)
{
    PyObject *value = tget(v, name);
    int rc;
    if (value == NULL) {
        return -1;
    }
    rc = truth(value);
    Py_DECREF(value);
    return rc;
}

/* aio_loop.c */
AioConfig *fs_aio_config(fs_module_state *state);   /* NULL: not set up */
int fs_aio_call_in_except(PyObject *callable, PyObject *const *args,
                          size_t nargs, PyObject *exc);
PyObject *fs_aio_fetch_exception(void);
void fs_aio_restore_exception(PyObject *exc);       /* steals */
AioEngine *fs_aio_draining_engine(PyObject *loop);  /* borrowed or NULL */

/* aio_transport.c */
PyObject *fs_aio_read_ready(AioEngine *engine, AioConfig *cfg,
                            PyObject *transport);
int fs_aio_flush_all(AioEngine *engine, AioConfig *cfg);
PyObject *fs_aio_flush_transport(PyObject *module, PyObject *transport);
PyObject *fs_aio_write(PyObject *module, PyObject *const *args,
                       Py_ssize_t nargs);
PyObject *fs_aio_is_closing(PyObject *module, PyObject *transport);
int fs_aio_transport_init(PyObject *module, fs_module_state *state);
int fs_aio_fast_slots(AioConfig *cfg,
                      Py_ssize_t (*slot_offset)(PyTypeObject *, PyObject *));

#endif
