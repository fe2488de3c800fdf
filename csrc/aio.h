/* The asyncio engine of the native tier (issue #13): declarations shared by
 * aio_loop.c (the loop's turn, call_soon, the configuration) and
 * aio_transport.c (the socket transport's read and write paths).
 *
 * Nothing here knows asyncio at compile time.  fastselectors._aio hands the
 * stdlib objects it needs to _aio_setup() once (the Handle classes, the
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

typedef struct {
    PyObject_HEAD
    int configured;             /* _aio_setup() ran */
    /* asyncio.events.Handle and TimerHandle, and the offsets of Handle's
     * slots (every Handle subclass keeps them). */
    PyTypeObject *handle_type;
    PyTypeObject *timer_handle_type;
    Py_ssize_t off_callback, off_args, off_cancelled, off_loop;
    Py_ssize_t off_source_traceback, off_repr, off_context;
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
    PyTypeObject *socket_type;  /* socket.socket */
    PyTypeObject *deque_type;   /* collections.deque */
    double max_select_timeout;  /* base_events.MAXIMUM_SELECT_TIMEOUT */
    Py_ssize_t min_sched;       /* _MIN_SCHEDULED_TIMER_HANDLES */
    double min_cancelled_frac;  /* _MIN_CANCELLED_TIMER_HANDLES_FRACTION */
    Py_ssize_t coalesce_max;    /* most bytes a transport defers per turn */
    int coalesce;               /* write coalescing on */
} AioConfig;

/* One per loop: loop._fs. */
typedef struct {
    PyObject_HEAD
    PyObject *config;           /* the AioConfig */
    PyObject *ready;            /* loop._ready seen last turn */
    PyObject *ready_append;     /* its bound append / popleft */
    PyObject *ready_popleft;
    PyObject *selector;         /* loop._selector seen last turn */
    PyObject *core;             /* its native core, or None */
    PyObject *flush;            /* transports with deferred writes */
    unsigned long drain_thread; /* thread draining the ready queue, or 0 */
    char *scratch;              /* recv() buffer of the read fast path */
    Py_ssize_t scratch_size;
} AioEngine;

/* Deferred writes of one transport (transport._fs_wq). */
typedef struct {
    PyObject_HEAD
    PyObject *chunks;           /* list of bytes, in write() order */
    Py_ssize_t size;            /* their total length */
    int queued;                 /* in its engine's flush list */
} AioWriteQueue;

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
        *context, *recv_into;
} AioNames;

extern AioNames fs_aio_names;

/* aio_loop.c */
AioConfig *fs_aio_config(fs_module_state *state);   /* NULL: not set up */
int fs_aio_call_in_except(PyObject *callable, PyObject *const *args,
                          size_t nargs, PyObject *exc);

/* aio_transport.c */
PyObject *fs_aio_read_ready(AioEngine *engine, AioConfig *cfg,
                            PyObject *transport);
int fs_aio_flush_all(AioEngine *engine, AioConfig *cfg);
PyObject *fs_aio_flush_transport(PyObject *module, PyObject *transport);
PyObject *fs_aio_write(PyObject *module, PyObject *const *args,
                       Py_ssize_t nargs);
int fs_aio_transport_init(PyObject *module, fs_module_state *state);

#endif
