/* The asyncio engine (issue #13): one turn of the event loop in C.
 *
 * fastselectors.asyncio.EventLoop is asyncio.SelectorEventLoop with three of
 * its hot paths replaced, on the native tier, by this file:
 *
 *  - _run_once(): AioEngine.run_once() does what BaseEventLoop._run_once()
 *    does, step for step -- the cancelled-timer clean-up, the timeout, the
 *    wait, the ready timers, and the drain of the ready queue -- with the
 *    wait and _process_events() in one C call (EpollCore._asyncio_select)
 *    when the loop's selector is a native epoll one;
 *  - the drain runs each Handle the way Handle._run() does: the callback in
 *    the handle's context, SystemExit and KeyboardInterrupt propagated (the
 *    handles not run yet stay in loop._ready), anything else reported
 *    through the except clause of this version's Handle._run (_aio._report,
 *    called with the exception as the one being handled);
 *  - call_soon(): a Handle made without running Handle.__init__ in Python.
 *
 * Where the stock code would run something a subclass, a test or a user can
 * replace -- loop.time, loop._process_events, Handle._run, an object in
 * loop._ready that is not a Handle, a Context that is not a Context -- the
 * engine checks that it is the stock object and otherwise calls it as the
 * stock code would.  Debug mode is the stock Python path
 * (EventLoop._run_once checks loop._debug first; a handle that turns debug
 * on mid-drain makes the rest of the turn use _aio._run_debug).
 *
 * Reference counts: every object read from a slot or an attribute is owned
 * (INCREF) before any Python code can run, because callbacks can cancel a
 * handle (which clears its _callback and _args), replace loop._ready, or
 * drop the last reference to anything.
 */
#include "aio.h"
#include "pythread.h"

#include <time.h>

AioNames fs_aio_names;
AioStats fs_aio_stats;
PyObject *fs_aio_loop_names[FS_LOOP_NFIELDS];

/* A view of a loop: NativeEventLoop's slots in place, its __dict__ for
 * the rest (instance attributes that override methods: time, ...). */
static int
lview_open(AioConfig *cfg, tview *lv, PyObject *loop)
{
    int slotted = cfg->loop_slots
        && PyObject_TypeCheck(loop, cfg->loop_type);
    return tview_open2(lv, loop, slotted ? cfg->loop_off : NULL,
                       fs_aio_loop_names, FS_LOOP_NFIELDS, 1);
}

/* A version of a dict that changes whenever the dict does: its
 * ma_version_tag before 3.12; from 3.12 on (where that field is
 * deprecated) a counter that a dict watcher bumps on any change of a
 * watched dict -- the loops' __dicts__ -- which is enough to know "may
 * have changed".  0: unknown (always ask again). */
#if PY_VERSION_HEX >= 0x030C0000
static int fs_dict_watcher = -1;
static uint64_t fs_dict_epoch = 1;

static int
dict_changed(PyDict_WatchEvent event, PyObject *dict, PyObject *key,
             PyObject *new_value)
{
    fs_dict_epoch++;
    return 0;
}

static uint64_t
fs_dict_version(PyObject *dict, int watch)
{
    if (fs_dict_watcher < 0) {
        fs_dict_watcher = PyDict_AddWatcher(dict_changed);
        if (fs_dict_watcher < 0) {
            PyErr_Clear();
            return 0;
        }
    }
    if (watch && PyDict_Watch(fs_dict_watcher, dict) < 0) {
        PyErr_Clear();
        return 0;
    }
    return fs_dict_epoch;
}
#else
static uint64_t
fs_dict_version(PyObject *dict, int watch)
{
    return ((PyDictObject *)dict)->ma_version_tag;
}
#endif

/* The engine draining a ready queue in this thread, if any: a write() of
 * a transport of that loop may be deferred to the end of the drain. */
static __thread AioEngine *fs_tls_draining;

AioEngine *
fs_aio_draining_engine(PyObject *loop)
{
    AioEngine *e = fs_tls_draining;
    return (e != NULL && loop != NULL && e->drain_loop == loop) ? e : NULL;
}

/* aio_stats(reset=False) -> dict of the counters. */
static PyObject *
aio_stats(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *d = Py_BuildValue(
        "{sKsKsKsKsKsKsKsK}", "turns", fs_aio_stats.turns,
        "handles", fs_aio_stats.handles,
        "handle_calls", fs_aio_stats.handle_calls,
        "reads", fs_aio_stats.reads,
        "buffered_reads", fs_aio_stats.buffered_reads,
        "sends", fs_aio_stats.sends, "deferred", fs_aio_stats.deferred,
        "flushes", fs_aio_stats.flushes);
    if (d != NULL && nargs > 0 && PyObject_IsTrue(args[0])) {
        memset(&fs_aio_stats, 0, sizeof(fs_aio_stats));
    }
    return d;
}

/* -- configuration -------------------------------------------------------- */

static int
AioConfig_traverse(AioConfig *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->handle_type);
    Py_VISIT(self->timer_handle_type);
    Py_VISIT(self->handle_run);
    Py_VISIT(self->heappop);
    Py_VISIT(self->heapify);
    Py_VISIT(self->report);
    Py_VISIT(self->run_debug);
    Py_VISIT(self->core_for);
    Py_VISIT(self->stock_run_once);
    Py_VISIT(self->stock_call_soon);
    Py_VISIT(self->base_time);
    Py_VISIT(self->stock_process_events);
    Py_VISIT(self->read_ready);
    Py_VISIT(self->rr_data);
    Py_VISIT(self->rr_buffer);
    Py_VISIT(self->stock_write);
    Py_VISIT(self->socket_type);
    Py_VISIT(self->socket_py_type);
    Py_VISIT(self->socket_transport_type);
    Py_VISIT(self->fast_transport_type);
    Py_VISIT(self->deque_type);
    Py_VISIT(self->loop_type);
    return 0;
}

static int
AioConfig_clear(AioConfig *self)
{
    self->configured = 0;
    Py_CLEAR(self->handle_type);
    Py_CLEAR(self->timer_handle_type);
    Py_CLEAR(self->handle_run);
    Py_CLEAR(self->heappop);
    Py_CLEAR(self->heapify);
    Py_CLEAR(self->report);
    Py_CLEAR(self->run_debug);
    Py_CLEAR(self->core_for);
    Py_CLEAR(self->stock_run_once);
    Py_CLEAR(self->stock_call_soon);
    Py_CLEAR(self->base_time);
    Py_CLEAR(self->stock_process_events);
    Py_CLEAR(self->read_ready);
    Py_CLEAR(self->rr_data);
    Py_CLEAR(self->rr_buffer);
    Py_CLEAR(self->stock_write);
    Py_CLEAR(self->socket_type);
    Py_CLEAR(self->socket_py_type);
    Py_CLEAR(self->socket_transport_type);
    Py_CLEAR(self->fast_transport_type);
    Py_CLEAR(self->deque_type);
    Py_CLEAR(self->loop_type);
    return 0;
}

static void
AioConfig_dealloc(AioConfig *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    AioConfig_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyType_Slot AioConfig_slots[] = {
    {Py_tp_dealloc, AioConfig_dealloc},
    {Py_tp_traverse, AioConfig_traverse},
    {Py_tp_clear, AioConfig_clear},
    {Py_tp_doc, "The stdlib objects the asyncio engine reproduces."},
    {0, NULL}
};

static PyType_Spec AioConfig_spec = {
    .name = "fastselectors._native._AioConfig",
    .basicsize = sizeof(AioConfig),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = AioConfig_slots,
};

AioConfig *
fs_aio_config(fs_module_state *state)
{
    AioConfig *cfg = (AioConfig *)state->aio_config;
    return (cfg != NULL && cfg->configured) ? cfg : NULL;
}

/* The offset of a T_OBJECT_EX __slots__ member of *type* (or of one of
 * its bases), or -1. */
static Py_ssize_t
slot_offset_o(PyTypeObject *type, PyObject *key)
{
    PyObject *descr = _PyType_Lookup(type, key);      /* borrowed */
    PyMemberDef *def;

    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        return -1;
    }
    def = ((PyMemberDescrObject *)descr)->d_member;
    if (def->type != FS_T_OBJECT_EX || (def->flags & FS_READONLY)) {
        return -1;
    }
    return def->offset;
}

static Py_ssize_t
slot_offset(PyTypeObject *type, const char *name)
{
    PyObject *key = PyUnicode_InternFromString(name);
    Py_ssize_t off;
    if (key == NULL) {
        PyErr_Clear();
        return -1;
    }
    off = slot_offset_o(type, key);
    Py_DECREF(key);
    return off;
}

static int
take(PyObject *kwargs, const char *name, PyObject **slot, PyTypeObject *check)
{
    PyObject *value = PyDict_GetItemString(kwargs, name);
    if (value == NULL) {
        PyErr_Format(PyExc_TypeError, "aio_setup() needs %s", name);
        return -1;
    }
    if (check != NULL && !PyObject_TypeCheck(value, check)) {
        PyErr_Format(PyExc_TypeError, "aio_setup(): %s must be %s",
                     name, check->tp_name);
        return -1;
    }
    Py_INCREF(value);
    Py_XSETREF(*slot, value);
    return 0;
}

/* aio_setup(**objects): called once by fastselectors._aio. */
static PyObject *
aio_setup(PyObject *module, PyObject *args, PyObject *kwargs)
{
    fs_module_state *st = PyModule_GetState(module);
    AioConfig *cfg = (AioConfig *)st->aio_config;
    PyObject *value;
    static const char *const slots[] = {
        "_callback", "_args", "_cancelled", "_loop", "_source_traceback",
        "_repr", "_context"};
    Py_ssize_t offs[7];
    int i;

    if (PyTuple_GET_SIZE(args) != 0 || kwargs == NULL) {
        PyErr_SetString(PyExc_TypeError, "aio_setup() takes keywords");
        return NULL;
    }
    cfg->configured = 0;
    if (take(kwargs, "Handle", (PyObject **)&cfg->handle_type,
             &PyType_Type) < 0
            || take(kwargs, "TimerHandle", (PyObject **)&cfg->timer_handle_type,
                    &PyType_Type) < 0
            || take(kwargs, "handle_run", &cfg->handle_run, NULL) < 0
            || take(kwargs, "heappop", &cfg->heappop, NULL) < 0
            || take(kwargs, "heapify", &cfg->heapify, NULL) < 0
            || take(kwargs, "report", &cfg->report, NULL) < 0
            || take(kwargs, "run_debug", &cfg->run_debug, NULL) < 0
            || take(kwargs, "core_for", &cfg->core_for, NULL) < 0
            || take(kwargs, "run_once", &cfg->stock_run_once, NULL) < 0
            || take(kwargs, "call_soon", &cfg->stock_call_soon, NULL) < 0
            || take(kwargs, "time", &cfg->base_time, NULL) < 0
            || take(kwargs, "process_events", &cfg->stock_process_events,
                    NULL) < 0
            || take(kwargs, "read_ready", &cfg->read_ready, NULL) < 0
            || take(kwargs, "read_ready__data_received", &cfg->rr_data,
                    NULL) < 0
            || take(kwargs, "read_ready__get_buffer", &cfg->rr_buffer,
                    NULL) < 0
            || take(kwargs, "write", &cfg->stock_write, NULL) < 0
            || take(kwargs, "socket", (PyObject **)&cfg->socket_type,
                    &PyType_Type) < 0
            || take(kwargs, "socket_socket", (PyObject **)&cfg->socket_py_type,
                    &PyType_Type) < 0
            || take(kwargs, "SocketTransport",
                    (PyObject **)&cfg->socket_transport_type,
                    &PyType_Type) < 0
            || take(kwargs, "FastSocketTransport",
                    (PyObject **)&cfg->fast_transport_type,
                    &PyType_Type) < 0
            || take(kwargs, "deque", (PyObject **)&cfg->deque_type,
                    &PyType_Type) < 0
            || take(kwargs, "NativeEventLoop", (PyObject **)&cfg->loop_type,
                    &PyType_Type) < 0) {
        return NULL;
    }
    value = PyDict_GetItemString(kwargs, "max_select_timeout");
    cfg->max_select_timeout = value ? PyFloat_AsDouble(value) : 86400.0;
    value = PyDict_GetItemString(kwargs, "min_scheduled");
    cfg->min_sched = value ? PyLong_AsSsize_t(value) : 100;
    value = PyDict_GetItemString(kwargs, "min_cancelled_fraction");
    cfg->min_cancelled_frac = value ? PyFloat_AsDouble(value) : 0.5;
    value = PyDict_GetItemString(kwargs, "coalesce_max");
    cfg->coalesce_max = value ? PyLong_AsSsize_t(value) : 65536;
    value = PyDict_GetItemString(kwargs, "coalesce");
    cfg->coalesce = value ? PyObject_IsTrue(value) : 1;
#ifdef Py_GIL_DISABLED
    /* Free-threaded CPython: a transport's write queue would be C state
     * shared by every thread that writes to it; without coalescing the
     * write path keeps no C state (the engine's own is in critical
     * sections, FS_LOCKED).  Not testable here: no such interpreter. */
    cfg->coalesce = 0;
#endif
    value = PyDict_GetItemString(kwargs, "asyncio_select");
    cfg->use_asyncio_select = value ? PyObject_IsTrue(value) : 1;
    value = PyDict_GetItemString(kwargs, "read");
    cfg->use_read = value ? PyObject_IsTrue(value) : 1;
    if (PyErr_Occurred()) {
        return NULL;
    }
    /* Handle's slots: the drain reads them in place; call_soon also makes
     * handles, which needs exactly the known set of slots. */
    for (i = 0; i < 7; i++) {
        offs[i] = slot_offset(cfg->handle_type, slots[i]);
    }
    cfg->off_callback = offs[0];
    cfg->off_args = offs[1];
    cfg->off_cancelled = offs[2];
    cfg->off_loop = offs[3];
    cfg->off_source_traceback = offs[4];
    cfg->off_repr = offs[5];
    cfg->off_context = offs[6];
    cfg->fast_handles = offs[0] >= 0 && offs[1] >= 0 && offs[2] >= 0
        && offs[6] >= 0;
    value = PyDict_GetItemString(kwargs, "handle_slots_known");
    cfg->can_make_handles = cfg->fast_handles && offs[3] >= 0
        && offs[4] >= 0 && offs[5] >= 0 && value != NULL
        && PyObject_IsTrue(value) == 1;
    fs_aio_fast_slots(cfg, slot_offset_o);
    cfg->loop_slots = 1;
    for (i = 0; i < FS_LOOP_NFIELDS; i++) {
        cfg->loop_off[i] = slot_offset_o(cfg->loop_type,
                                         fs_aio_loop_names[i]);
        if (cfg->loop_off[i] < 0) {
            cfg->loop_slots = 0;
        }
    }
    cfg->off_when = slot_offset(cfg->timer_handle_type, "_when");
    /* The transport's _FlowControlMixin slots. */
    cfg->off_tr_loop = slot_offset(cfg->socket_transport_type, "_loop");
    cfg->off_tr_high_water = slot_offset(cfg->socket_transport_type,
                                         "_high_water");
    /* sock_fd is the first field of CPython's socket object: checked on a
     * live socket (probe) and its fileno; else fileno() is called. */
    cfg->sock_fd_offset = 0;
    value = PyDict_GetItemString(kwargs, "probe_socket");
    if (value != NULL && PyObject_TypeCheck(value, cfg->socket_type)) {
        PyObject *num = PyObject_CallMethodNoArgs(value, fs_aio_names.fileno);
        long fd = num == NULL ? -1 : PyLong_AsLong(num);
        Py_XDECREF(num);
        if (PyErr_Occurred()) {
            return NULL;
        }
        if (fd >= 0 && *(int *)((char *)value + sizeof(PyObject)) == fd) {
            cfg->sock_fd_offset = (Py_ssize_t)sizeof(PyObject);
        }
    }
    cfg->configured = 1;
    Py_RETURN_NONE;
}

/* aio_method(func): func as a method (instancemethod), so a builtin
 * function can be a class attribute that binds like a Python function. */
static PyObject *
aio_method(PyObject *module, PyObject *func)
{
    return PyInstanceMethod_New(func);
}

/* -- small helpers -------------------------------------------------------- */

/* The current exception as one object with its traceback (3.12's
 * PyErr_GetRaisedException on every version); NULL if none. */
PyObject *
fs_aio_fetch_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

/* Raise exc (a reference is stolen), with its traceback. */
void
fs_aio_restore_exception(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyObject *tb = PyException_GetTraceback(exc);
    Py_INCREF(Py_TYPE(exc));
    PyErr_Restore((PyObject *)Py_TYPE(exc), exc, tb);
#endif
}

/* callable(*args) while *exc* is the exception being handled, as in the
 * except clause of the stock code (sys.exc_info() inside an exception
 * handler sees it).  Returns the call's result (new reference) or NULL. */
int
fs_aio_call_in_except(PyObject *callable, PyObject *const *args,
                      size_t nargs, PyObject *exc)
{
    PyObject *otype, *ovalue, *otb, *result;
    PyObject *tb = PyException_GetTraceback(exc);

    PyErr_GetExcInfo(&otype, &ovalue, &otb);
    Py_INCREF(Py_TYPE(exc));
    Py_INCREF(exc);
    PyErr_SetExcInfo((PyObject *)Py_TYPE(exc), exc, tb);   /* steals */
    result = PyObject_Vectorcall(callable, args, nargs, NULL);
    PyErr_SetExcInfo(otype, ovalue, otb);                   /* steals */
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* Is the pending exception SystemExit or KeyboardInterrupt (which every
 * stock except clause re-raises)? */
static int
exit_exception_pending(void)
{
    return PyErr_ExceptionMatches(PyExc_SystemExit)
        || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
}

/* handle._cancelled as 1/0, -1 on error.  Handles (and subclasses, which
 * keep the slot offset) are read in place; anything else by attribute. */
static inline int
handle_cancelled(AioConfig *cfg, PyObject *h)
{
    PyObject *value;
    int rc;

    if (cfg->fast_handles && PyObject_TypeCheck(h, cfg->handle_type)) {
        value = FS_SLOT(h, cfg->off_cancelled);
        if (value == Py_False) {
            return 0;
        }
        if (value == Py_True) {
            return 1;
        }
        if (value != NULL) {
            Py_INCREF(value);
            rc = PyObject_IsTrue(value);
            Py_DECREF(value);
            return rc;
        }
    }
    value = PyObject_GetAttr(h, fs_aio_names._cancelled);
    if (value == NULL) {
        return -1;
    }
    rc = PyObject_IsTrue(value);
    Py_DECREF(value);
    return rc;
}

int
fs_aio_handle_cancelled(fs_module_state *state, PyObject *handle)
{
    AioConfig *cfg = fs_aio_config(state);
    if (cfg == NULL) {
        PyObject *value = PyObject_GetAttr(handle, fs_aio_names._cancelled);
        int rc;
        if (value == NULL) {
            return -1;
        }
        rc = PyObject_IsTrue(value);
        Py_DECREF(value);
        return rc;
    }
    return handle_cancelled(cfg, handle);
}

/* time.monotonic(), exactly as CPython computes it on Linux. */
static double
monotonic(void)
{
    struct timespec ts;
    long long ns;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    if (ns % 1000000000LL == 0) {
        return (double)(ns / 1000000000LL);
    }
    return (double)ns / 1e9;
}

/* Is loop.name the stock function *stock*: not in the instance dict, and
 * the class's own (no subclass override)?  1, 0, or -1. */
static int
stock_method(tview *lv, PyObject *name, PyObject *stock)
{
    if (lv->dict != NULL) {
        PyObject *value = PyDict_GetItemWithError(lv->dict, name);
        if (value != NULL) {
            return 0;
        }
        if (PyErr_Occurred()) {
            return -1;
        }
    }
    return _PyType_Lookup(Py_TYPE(lv->t), name) == stock;
}

/* loop.time(): the stock one (BaseEventLoop.time, time.monotonic()) in C,
 * anything else called.  0 on success, -1 with an exception. */
static int
loop_time(AioConfig *cfg, tview *lv, double *now)
{
    PyObject *value;
    int rc = lv->stock_time;

    if (rc < 0) {       /* not asked yet this turn */
        rc = lv->stock_time = stock_method(lv, fs_aio_names.time,
                                           cfg->base_time);
    }

    if (rc < 0) {
        return -1;
    }
    if (rc) {
        *now = monotonic();
        return 0;
    }
    value = PyObject_CallMethodNoArgs(lv->t, fs_aio_names.time);
    if (value == NULL) {
        return -1;
    }
    *now = PyFloat_AsDouble(value);
    Py_DECREF(value);
    return (*now == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *
call1(PyObject *callable, PyObject *arg)
{
    PyObject *argv[2] = {NULL, arg};
    return PyObject_Vectorcall(callable, argv + 1,
                               1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* -- the engine ----------------------------------------------------------- */

static PyObject *
AioEngine_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    fs_module_state *st = fs_state_of(type);
    AioEngine *self;

    if (fs_check_no_args("AioEngine", args, kwds) < 0) {
        return NULL;
    }
    if (fs_aio_config(st) == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "fastselectors._aio has not configured the engine");
        return NULL;
    }
    self = (AioEngine *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    Py_INCREF(st->aio_config);
    self->config = st->aio_config;
    return (PyObject *)self;
}

static int
AioEngine_traverse(AioEngine *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->config);
    Py_VISIT(self->ready);
    Py_VISIT(self->ready_append);
    Py_VISIT(self->ready_popleft);
    {
        AioWriteQueue *wq;
        for (wq = self->flush; wq != NULL; wq = wq->next) {
            Py_VISIT((PyObject *)wq);
        }
    }
    Py_VISIT(self->selector);
    Py_VISIT(self->core);
    Py_VISIT(self->core_select);
    Py_VISIT(self->seen_dict);
    return 0;
}

static int
AioEngine_clear(AioEngine *self)
{
    Py_CLEAR(self->ready);
    Py_CLEAR(self->ready_append);
    Py_CLEAR(self->ready_popleft);
    self->cleared = 1;
    while (self->flush != NULL) {
        AioWriteQueue *wq = self->flush;
        self->flush = wq->next;
        wq->next = NULL;
        wq->chained = 0;
        Py_DECREF(wq);
    }
    Py_CLEAR(self->selector);
    Py_CLEAR(self->core);
    Py_CLEAR(self->core_select);
    Py_CLEAR(self->seen_dict);
    /* config stays until dealloc: run_once may still be on the stack */
    return 0;
}

static void
AioEngine_dealloc(AioEngine *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    AioEngine_clear(self);
    Py_CLEAR(self->config);
    PyMem_Free(self->scratch);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Make self->ready_append/popleft the bound methods of *ready*. */
static int
engine_bind_ready(AioEngine *self, PyObject *ready)
{
    PyObject *append, *popleft;

    if (ready == self->ready) {
        return 0;
    }
    append = PyObject_GetAttr(ready, fs_aio_names.append);
    if (append == NULL) {
        return -1;
    }
    popleft = PyObject_GetAttr(ready, fs_aio_names.popleft);
    if (popleft == NULL) {
        Py_DECREF(append);
        return -1;
    }
    Py_INCREF(ready);
    Py_XSETREF(self->ready, ready);
    Py_XSETREF(self->ready_append, append);
    Py_XSETREF(self->ready_popleft, popleft);
    return 0;
}

/* The native core to wait on for loop._selector, or Py_None (then
 * selector.select() + loop._process_events()).  _aio.core_for decides;
 * asked again whenever loop._selector is another object. */
static PyObject *
engine_core(AioEngine *self, AioConfig *cfg, PyObject *selector)
{
    PyObject *core;

    if (selector == self->selector && self->core != NULL) {
        return self->core;
    }
    core = call1(cfg->core_for, selector);
    if (core == NULL) {
        return NULL;
    }
    if (core != Py_None) {
        PyObject *meth = PyObject_GetAttr(core, fs_aio_names._asyncio_select);
        if (meth == NULL) {
            Py_DECREF(core);
            return NULL;
        }
        Py_XSETREF(self->core_select, meth);
    }
    else {
        Py_CLEAR(self->core_select);
    }
    Py_INCREF(selector);
    Py_XSETREF(self->selector, selector);
    Py_XSETREF(self->core, core);
    return core;
}

/* Run one handle (owned by the caller) as Handle._run() would.  Returns 0,
 * or -1 with SystemExit/KeyboardInterrupt (or an error of the exception
 * handler) set: the caller stops the drain there. */
static int
run_handle(AioEngine *self, AioConfig *cfg, PyObject *h)
{
    PyObject *cb, *args, *ctx, *result, *exc;
    PyTypeObject *tp = Py_TYPE(h);
    Py_ssize_t nargs;

    if (!cfg->fast_handles
            || (tp != cfg->handle_type && tp != cfg->timer_handle_type)) {
        /* Not a stock Handle (a subclass may override _run): its own. */
        fs_aio_stats.handle_calls++;
        result = PyObject_CallMethodNoArgs(h, fs_aio_names._run);
        if (result == NULL) {
            return -1;
        }
        Py_DECREF(result);
        return 0;
    }
    cb = FS_SLOT(h, cfg->off_callback);
    args = FS_SLOT(h, cfg->off_args);
    ctx = FS_SLOT(h, cfg->off_context);
    if (cb == NULL || args == NULL || ctx == NULL
            || !PyTuple_CheckExact(args) || !PyContext_CheckExact(ctx)) {
        /* Half-made, or args/context of unusual types: the stock _run. */
        result = call1(cfg->handle_run, h);
        if (result == NULL) {
            return -1;
        }
        Py_DECREF(result);
        return 0;
    }
    fs_aio_stats.handles++;
    /* The callback may cancel its own handle, which clears these slots. */
    Py_INCREF(cb);
    Py_INCREF(args);
    Py_INCREF(ctx);
    nargs = PyTuple_GET_SIZE(args);
    if (PyContext_Enter(ctx) < 0) {
        result = NULL;
    }
    else {
        if (nargs == 0 && cfg->use_read && PyMethod_Check(cb)
                && PyMethod_GET_FUNCTION(cb) == cfg->read_ready) {
            /* transport._read_ready: the read path in C. */
            result = fs_aio_read_ready(self, cfg, PyMethod_GET_SELF(cb));
        }
        else {
            result = PyObject_Vectorcall(cb, &PyTuple_GET_ITEM(args, 0),
                                         (size_t)nargs, NULL);
        }
        if (PyContext_Exit(ctx) < 0) {
            Py_CLEAR(result);
        }
    }
    Py_DECREF(cb);
    Py_DECREF(args);
    Py_DECREF(ctx);
    if (result != NULL) {
        Py_DECREF(result);
        return 0;
    }
    if (exit_exception_pending()) {
        return -1;
    }
    exc = fs_aio_fetch_exception();
    if (exc == NULL) {
        return 0;
    }
    {
        PyObject *argv[2] = {h, exc};
        int rc = fs_aio_call_in_except(cfg->report, argv, 2, exc);
        Py_DECREF(exc);
        return rc;
    }
}

/* The wait and _process_events: one C call on a native epoll core, else
 * the selector's select() and the loop's _process_events(). */
static int
engine_select(AioEngine *self, AioConfig *cfg, tview *lv, PyObject *ready,
              PyObject *timeout)
{
    PyObject *loop = lv->t, *selector, *core, *result;
    int stock;

    selector = tget(lv, fs_aio_names._selector);
    if (selector == NULL) {
        return -1;
    }
    core = engine_core(self, cfg, selector);
    if (core == NULL) {
        Py_DECREF(selector);
        return -1;
    }
    /* Only while loop._process_events is the stock one (tests mock it on
     * the instance). */
    stock = core == Py_None || !cfg->use_asyncio_select ? 0
        : lv->stock_pe >= 0 ? lv->stock_pe
        : stock_method(lv, fs_aio_names._process_events,
                       cfg->stock_process_events);
    if (stock < 0) {
        Py_DECREF(selector);
        return -1;
    }
    if (stock) {
        /* core._asyncio_select(timeout, loop, ready.append) */
        PyObject *meth = self->core_select;
        PyObject *argv[4] = {NULL, timeout, loop, self->ready_append};
        Py_INCREF(meth);
        result = PyObject_Vectorcall(meth, argv + 1,
                                     3 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                     NULL);
        Py_DECREF(meth);
        Py_DECREF(selector);
        if (result == NULL) {
            return -1;
        }
        Py_DECREF(result);
        return 0;
    }
    {
        PyObject *argv[2] = {selector, timeout};
        PyObject *events = PyObject_VectorcallMethod(
            fs_aio_names.select, argv, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
            NULL);
        Py_DECREF(selector);
        if (events == NULL) {
            return -1;
        }
        result = PyObject_CallMethodOneArg(loop, fs_aio_names._process_events,
                                           events);
        Py_DECREF(events);
        if (result == NULL) {
            return -1;
        }
        Py_DECREF(result);
    }
    return 0;
}

/* The cancelled-timer clean-up at the start of _run_once.  *sched is the
 * loop's _scheduled list (owned); it may be replaced by a new one. */
static int
clean_timers(AioConfig *cfg, tview *lv, PyObject **sched)
{
    PyObject *loop = lv->t;
    Py_ssize_t count = PyList_GET_SIZE(*sched), i;
    PyObject *tcc_obj;
    double tcc;

    if (count == 0) {
        return 0;               /* nothing to clean, nothing to read */
    }
    tcc = 0;
    if (count > cfg->min_sched) {   /* "and": the count is read only then */
        tcc_obj = tget(lv, fs_aio_names._timer_cancelled_count);
        if (tcc_obj == NULL) {
            return -1;
        }
        tcc = PyFloat_AsDouble(tcc_obj);
        Py_DECREF(tcc_obj);
        if (tcc == -1.0 && PyErr_Occurred()) {
            return -1;
        }
    }
    if (count > cfg->min_sched && tcc / (double)count > cfg->min_cancelled_frac) {
        /* Too many cancelled: rebuild the heap without them. */
        PyObject *fresh = PyList_New(0), *r;
        if (fresh == NULL) {
            return -1;
        }
        for (i = 0; i < PyList_GET_SIZE(*sched); i++) {
            PyObject *h = PyList_GET_ITEM(*sched, i);
            int c;
            Py_INCREF(h);
            c = handle_cancelled(cfg, h);
            if (c > 0) {
                c = PyObject_SetAttr(h, fs_aio_names._scheduled_attr,
                                     Py_False);
            }
            else if (c == 0) {
                c = PyList_Append(fresh, h);
            }
            Py_DECREF(h);
            if (c < 0) {
                Py_DECREF(fresh);
                return -1;
            }
        }
        r = call1(cfg->heapify, fresh);
        if (r == NULL) {
            Py_DECREF(fresh);
            return -1;
        }
        Py_DECREF(r);
        if (PyObject_SetAttr(loop, fs_aio_names._scheduled, fresh) < 0) {
            Py_DECREF(fresh);
            return -1;
        }
        Py_SETREF(*sched, fresh);
        {
            PyObject *zero = PyLong_FromLong(0);
            int rc;
            if (zero == NULL) {
                return -1;
            }
            rc = PyObject_SetAttr(loop, fs_aio_names._timer_cancelled_count,
                                  zero);
            Py_DECREF(zero);
            return rc;
        }
    }
    /* Else drop the cancelled ones from the head of the heap. */
    while (PyList_GET_SIZE(*sched) > 0) {
        PyObject *h = PyList_GET_ITEM(*sched, 0), *v, *one;
        int c;
        Py_INCREF(h);
        c = handle_cancelled(cfg, h);
        Py_DECREF(h);
        if (c <= 0) {
            return c;
        }
        v = PyObject_GetAttr(loop, fs_aio_names._timer_cancelled_count);
        if (v == NULL) {
            return -1;
        }
        one = PyLong_FromLong(1);
        if (one == NULL) {
            Py_DECREF(v);
            return -1;
        }
        Py_SETREF(v, PyNumber_Subtract(v, one));
        Py_DECREF(one);
        if (v == NULL) {
            return -1;
        }
        c = PyObject_SetAttr(loop, fs_aio_names._timer_cancelled_count, v);
        Py_DECREF(v);
        if (c < 0) {
            return -1;
        }
        h = call1(cfg->heappop, *sched);
        if (h == NULL) {
            return -1;
        }
        c = PyObject_SetAttr(h, fs_aio_names._scheduled_attr, Py_False);
        Py_DECREF(h);
        if (c < 0) {
            return -1;
        }
    }
    return 0;
}

static int
handle_when(AioConfig *cfg, PyObject *h, double *when)
{
    PyObject *w;
    if (cfg->off_when >= 0 && Py_IS_TYPE(h, cfg->timer_handle_type)
            && (w = FS_SLOT(h, cfg->off_when)) != NULL
            && PyFloat_CheckExact(w)) {
        *when = PyFloat_AS_DOUBLE(w);
        return 0;
    }
    w = PyObject_GetAttr(h, fs_aio_names._when);
    if (w == NULL) {
        return -1;
    }
    *when = PyFloat_AsDouble(w);
    Py_DECREF(w);
    return (*when == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* The select timeout, as _run_once computes it (new reference). */
static PyObject *
compute_timeout(AioConfig *cfg, tview *lv, PyObject *ready, PyObject *sched)
{
    Py_ssize_t nready = PyObject_Size(ready);
    int stopping;
    double when, now, t;

    if (nready < 0) {
        return NULL;
    }
    stopping = nready > 0 ? 1 : ttrue(lv, fs_aio_names._stopping);
    if (stopping < 0) {
        return NULL;
    }
    if (stopping) {
        return PyLong_FromLong(0);
    }
    if (PyList_GET_SIZE(sched) == 0) {
        Py_RETURN_NONE;
    }
    {
        PyObject *h = PyList_GET_ITEM(sched, 0);
        int rc;
        Py_INCREF(h);
        rc = handle_when(cfg, h, &when);
        Py_DECREF(h);
        if (rc < 0 || loop_time(cfg, lv, &now) < 0) {
            return NULL;
        }
    }
    t = when - now;
    if (t > cfg->max_select_timeout) {
        return PyFloat_FromDouble(cfg->max_select_timeout);
    }
    if (t < 0) {
        return PyLong_FromLong(0);
    }
    return PyFloat_FromDouble(t);
}

/* Move the timers that are due to the ready queue. */
static int
due_timers(AioEngine *self, AioConfig *cfg, tview *lv)
{
    PyObject *sched, *res;
    double now, end_time;
    int rc = -1;

    if (loop_time(cfg, lv, &now) < 0) {
        return -1;
    }
    res = tget(lv, fs_aio_names._clock_resolution);
    if (res == NULL) {
        return -1;
    }
    end_time = now + (PyFloat_CheckExact(res) ? PyFloat_AS_DOUBLE(res)
                                              : PyFloat_AsDouble(res));
    Py_DECREF(res);
    if (PyErr_Occurred()) {
        return -1;
    }
    sched = tget(lv, fs_aio_names._scheduled);
    if (sched == NULL) {
        return -1;
    }
    if (!PyList_Check(sched)) {
        PyErr_SetString(PyExc_TypeError, "loop._scheduled is not a list");
        goto done;
    }
    while (PyList_GET_SIZE(sched) > 0) {
        PyObject *h = PyList_GET_ITEM(sched, 0);
        double when;
        int c;
        Py_INCREF(h);
        c = handle_when(cfg, h, &when);
        Py_DECREF(h);
        if (c < 0) {
            goto done;
        }
        if (when >= end_time) {
            break;
        }
        h = call1(cfg->heappop, sched);
        if (h == NULL) {
            goto done;
        }
        if (PyObject_SetAttr(h, fs_aio_names._scheduled_attr, Py_False) < 0) {
            Py_DECREF(h);
            goto done;
        }
        res = call1(self->ready_append, h);
        Py_DECREF(h);
        if (res == NULL) {
            goto done;
        }
        Py_DECREF(res);
    }
    rc = 0;
done:
    Py_DECREF(sched);
    return rc;
}

/* The ready-queue drain: the ntodo handles ready when it starts. */
static int
drain(AioEngine *self, AioConfig *cfg, tview *lv)
{
    Py_ssize_t ntodo = PyObject_Size(self->ready), i;
    int debug_seen = 0;

    if (ntodo < 0) {
        return -1;
    }
    for (i = 0; i < ntodo; i++) {
        PyObject *h = PyObject_CallNoArgs(self->ready_popleft);
        int c;
        if (h == NULL) {
            return -1;
        }
        c = handle_cancelled(cfg, h);
        if (c != 0) {
            Py_DECREF(h);
            if (c < 0) {
                return -1;
            }
            continue;
        }
        /* Stock _run_once checks loop._debug for every handle: a callback
         * may turn debug mode on; the rest of the turn is then timed. */
        if (!debug_seen) {
            c = ttrue(lv, fs_aio_names._debug);
            if (c < 0) {
                Py_DECREF(h);
                return -1;
            }
            debug_seen = c;
        }
        if (debug_seen) {
            PyObject *argv[2] = {lv->t, h};
            PyObject *r = PyObject_Vectorcall(cfg->run_debug, argv, 2, NULL);
            Py_DECREF(h);
            if (r == NULL) {
                return -1;
            }
            Py_DECREF(r);
            continue;
        }
        c = run_handle(self, cfg, h);
        Py_DECREF(h);
        if (c < 0) {
            return -1;
        }
    }
    return 0;
}

/* Fill lv->stock_time and lv->stock_pe (loop.time, loop._process_events
 * are the stock ones), from the engine's answer of an earlier turn if the
 * loop's __dict__ and class did not change since. */
static int
engine_check_methods(AioEngine *self, AioConfig *cfg, tview *lv)
{
    unsigned int tv = Py_TYPE(lv->t)->tp_version_tag;
    uint64_t version;
    int a, b;

    if (lv->dict == NULL) {
        lv->stock_pe = -1;
        return 0;               /* ask each time */
    }
    if (lv->dict == self->seen_dict && tv != 0
            && tv == self->seen_type_version
            && (version = fs_dict_version(lv->dict, 0)) != 0
            && version == self->seen_version) {
        lv->stock_time = self->seen_stock_time;
        lv->stock_pe = self->seen_stock_process_events;
        return 0;
    }
    a = stock_method(lv, fs_aio_names.time, cfg->base_time);
    b = a < 0 ? -1 : stock_method(lv, fs_aio_names._process_events,
                                  cfg->stock_process_events);
    if (b < 0) {
        return -1;
    }
    lv->stock_time = self->seen_stock_time = a;
    lv->stock_pe = self->seen_stock_process_events = b;
    Py_INCREF(lv->dict);
    Py_XSETREF(self->seen_dict, lv->dict);
    self->seen_type_version = Py_TYPE(lv->t)->tp_version_tag;
    self->seen_version = fs_dict_version(lv->dict, 1);
    return 0;
}

/* run_once(loop): one turn of *loop*, whose engine this is (loop._fs;
 * the loop is an argument, not an attribute, so there is no reference
 * cycle between them). */
static PyObject *
AioEngine_run_once_unlocked(AioEngine *self, PyObject *loop)
{
    AioConfig *cfg = (AioConfig *)self->config;
    PyObject *ready = NULL, *sched = NULL;
    PyObject *timeout = NULL;
    tview lv;
    int rc = -1;

    if (self->cleared) {
        PyErr_SetString(PyExc_RuntimeError, "the engine was cleared");
        return NULL;
    }
    Py_INCREF(loop);
    if (lview_open(cfg, &lv, loop) < 0) {
        Py_DECREF(loop);
        return NULL;
    }
    ready = tget(&lv, fs_aio_names._ready);
    if (ready == NULL) {
        goto done;
    }
    sched = tget(&lv, fs_aio_names._scheduled);
    if (sched == NULL) {
        goto done;
    }
    if (!Py_IS_TYPE(ready, cfg->deque_type) || !PyList_CheckExact(sched)) {
        /* Something replaced them: the stock code knows what to do. */
        PyObject *r = call1(cfg->stock_run_once, loop);
        rc = r == NULL ? -1 : 0;
        Py_XDECREF(r);
        goto done;
    }
    if (engine_bind_ready(self, ready) < 0
            || engine_check_methods(self, cfg, &lv) < 0
            || clean_timers(cfg, &lv, &sched) < 0) {
        goto done;
    }
    timeout = compute_timeout(cfg, &lv, ready, sched);
    if (timeout == NULL || engine_select(self, cfg, &lv, ready, timeout) < 0
            || due_timers(self, cfg, &lv) < 0) {
        goto done;
    }
    fs_aio_stats.turns++;
    {
        AioEngine *outer = fs_tls_draining;     /* NULL but for odd nests */
        self->drain_thread = PyThread_get_thread_ident();
        self->drain_loop = loop;
        fs_tls_draining = self;
        rc = drain(self, cfg, &lv);
        fs_tls_draining = outer;
        self->drain_loop = NULL;
        self->drain_thread = 0;
    }
    /* Writes deferred by the handles leave now, whatever happened. */
    if (self->flush != NULL) {
        PyObject *exc = rc < 0 ? fs_aio_fetch_exception() : NULL;
        if (fs_aio_flush_all(self, cfg) < 0) {
            if (exc != NULL) {
                /* Keep the drain's exception; the flush's is reported. */
                PyErr_WriteUnraisable(loop);
            }
            rc = -1;
        }
        if (exc != NULL) {
            fs_aio_restore_exception(exc);
        }
    }
done:
    Py_XDECREF(timeout);
    Py_XDECREF(sched);
    Py_XDECREF(ready);
    tview_close(&lv);
    Py_DECREF(loop);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* flush(): send every transport's deferred writes now. */
static PyObject *
AioEngine_flush_unlocked(AioEngine *self, PyObject *Py_UNUSED(ignored))
{
    if (fs_aio_flush_all(self, (AioConfig *)self->config) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
AioEngine_draining_unlocked(AioEngine *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->drain_thread != 0);
}

FS_LOCKED(PyObject *, AioEngine_run_once, (AioEngine *self, PyObject *loop),
          self, loop)
FS_LOCKED(PyObject *, AioEngine_flush, (AioEngine *self, PyObject *ignored),
          self, ignored)
FS_LOCKED(PyObject *, AioEngine_draining, (AioEngine *self, void *closure),
          self, closure)

static PyMethodDef AioEngine_methods[] = {
    {"run_once", (PyCFunction)AioEngine_run_once, METH_O,
     "run_once(loop): one turn of the loop (BaseEventLoop._run_once)."},
    {"flush", (PyCFunction)AioEngine_flush, METH_NOARGS,
     "flush(): send the writes deferred during this turn now."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef AioEngine_getset[] = {
    {"draining", (getter)AioEngine_draining, NULL,
     "True while the ready queue is being run.", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyType_Slot AioEngine_slots[] = {
    {Py_tp_new, AioEngine_new},
    {Py_tp_dealloc, AioEngine_dealloc},
    {Py_tp_traverse, AioEngine_traverse},
    {Py_tp_clear, AioEngine_clear},
    {Py_tp_methods, AioEngine_methods},
    {Py_tp_getset, AioEngine_getset},
    {Py_tp_doc, "AioEngine(): the native turn of an asyncio loop."},
    {0, NULL}
};

static PyType_Spec AioEngine_spec = {
    .name = "fastselectors._native.AioEngine",
    .basicsize = sizeof(AioEngine),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = AioEngine_slots,
};

/* The engine of the loop of view lv (its _fs), borrowed, or NULL (no
 * exception). */
static PyObject *
fs_aio_engine_in(fs_module_state *state, tview *lv)
{
    PyObject *fs;
    fs = tget(lv, fs_aio_names._fs);
    if (fs == NULL) {
        PyErr_Clear();
        return NULL;
    }
    Py_DECREF(fs);      /* the loop holds it */
    return Py_IS_TYPE(fs, state->aio_engine_type) ? fs : NULL;
}

/* The engine of loop (loop._fs), borrowed, or NULL (no exception). */
PyObject *
fs_aio_engine_of(fs_module_state *state, PyObject *loop)
{
    PyObject *fs = PyObject_GetAttr(loop, fs_aio_names._fs);
    if (fs == NULL) {
        PyErr_Clear();
        return NULL;
    }
    Py_DECREF(fs);          /* loop._fs keeps it alive */
    if (!Py_IS_TYPE(fs, state->aio_engine_type)) {
        return NULL;
    }
    return fs;
}

/* -- call_soon ------------------------------------------------------------ */

/* A Handle(callback, args, loop, context) made in C: the slots that
 * Handle.__init__ sets outside debug mode. */
static PyObject *
make_handle(AioConfig *cfg, PyObject *callback, PyObject *args,
            PyObject *loop, PyObject *context)
{
    PyObject *h = PyType_GenericAlloc(cfg->handle_type, 0);

    if (h == NULL) {
        return NULL;
    }
    if (context == NULL || context == Py_None) {
        context = PyContext_CopyCurrent();
        if (context == NULL) {
            Py_DECREF(h);
            return NULL;
        }
    }
    else {
        Py_INCREF(context);
    }
    FS_SLOT(h, cfg->off_context) = context;
    Py_INCREF(loop);
    FS_SLOT(h, cfg->off_loop) = loop;
    Py_INCREF(callback);
    FS_SLOT(h, cfg->off_callback) = callback;
    Py_INCREF(args);
    FS_SLOT(h, cfg->off_args) = args;
    Py_INCREF(Py_False);
    FS_SLOT(h, cfg->off_cancelled) = Py_False;
    Py_INCREF(Py_None);
    FS_SLOT(h, cfg->off_repr) = Py_None;
    Py_INCREF(Py_None);
    FS_SLOT(h, cfg->off_source_traceback) = Py_None;
    return h;
}

/* call_soon(loop, callback, *args, context=None): EventLoop.call_soon. */
static PyObject *
aio_call_soon(PyObject *module, PyObject *const *args, size_t nargsf,
              PyObject *kwnames)
{
    fs_module_state *st = PyModule_GetState(module);
    AioConfig *cfg = fs_aio_config(st);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), nkw, i;
    PyObject *loop, *context = NULL, *cbargs, *h, *ready, *r;
    AioEngine *engine;
    tview lv;
    int c;

    nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (cfg == NULL || !cfg->can_make_handles) {
        goto stock;
    }
    if (nargs < 2) {
        goto stock;         /* the stock TypeError */
    }
    for (i = 0; i < nkw; i++) {
        PyObject *kw = PyTuple_GET_ITEM(kwnames, i);
        if (kw != fs_aio_names.context
                && !(PyUnicode_IS_COMPACT_ASCII(kw)
                     && PyUnicode_GET_LENGTH(kw) == 7
                     && memcmp(PyUnicode_DATA(kw), "context", 7) == 0)) {
            goto stock;     /* the stock TypeError */
        }
        context = args[nargs + i];
    }
    loop = args[0];
    /* The loop's attributes in place (see tview in aio.h). */
    if (lview_open(cfg, &lv, loop) < 0) {
        return NULL;
    }
    c = ttrue(&lv, fs_aio_names._debug);
    if (c != 0) {
        tview_close(&lv);
        if (c < 0) {
            return NULL;
        }
        goto stock;         /* debug checks and source tracebacks */
    }
    c = ttrue(&lv, fs_aio_names._closed);
    if (c != 0) {
        tview_close(&lv);
        if (c > 0) {
            PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        }
        return NULL;
    }
    cbargs = PyTuple_New(nargs - 2);
    if (cbargs == NULL) {
        tview_close(&lv);
        return NULL;
    }
    for (i = 2; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(cbargs, i - 2, args[i]);
    }
    h = make_handle(cfg, args[1], cbargs, loop, context);
    Py_DECREF(cbargs);
    ready = h == NULL ? NULL : tget(&lv, fs_aio_names._ready);
    if (ready == NULL) {
        Py_XDECREF(h);
        tview_close(&lv);
        return NULL;
    }
    /* self._ready.append(handle): the engine's bound append when it is
     * this deque's (the turn binds it), else looked up. */
    engine = (AioEngine *)fs_aio_engine_in(st, &lv);
    if (engine != NULL && engine->ready == ready
            && engine->ready_append != NULL) {
        PyObject *append = engine->ready_append;
        Py_INCREF(append);
        r = call1(append, h);
        Py_DECREF(append);
    }
    else {
        r = PyObject_CallMethodOneArg(ready, fs_aio_names.append, h);
    }
    Py_DECREF(ready);
    tview_close(&lv);
    if (r == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    Py_DECREF(r);
    return h;

stock:
    if (cfg == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "fastselectors._aio has not configured the engine");
        return NULL;
    }
    return PyObject_Vectorcall(cfg->stock_call_soon, args, nargsf, kwnames);
}

/* -- _asyncio_select's per-event work (called from epoll_core.c) ---------- */

/* What BaseSelectorEventLoop._process_events does for one (key, mask):
 * key.data is asyncio's (reader, writer); a cancelled handle makes the loop
 * forget the fd (_remove_reader/_remove_writer), any other goes to the
 * ready queue (_add_callback).  key and append are borrowed; 0 or -1. */
int
fs_aio_process_event(fs_module_state *state, PyObject *loop,
                     PyObject *append, PyObject *key, unsigned int mask)
{
    AioConfig *cfg = fs_aio_config(state);
    PyObject *fileobj, *data, *pair[2];
    int i, rc = 0;

    if (PyTuple_Check(key) && PyTuple_GET_SIZE(key) == 4) {
        fileobj = PyTuple_GET_ITEM(key, 0);
        data = PyTuple_GET_ITEM(key, 3);
        Py_INCREF(fileobj);
        Py_INCREF(data);
    }
    else {
        fileobj = PyObject_GetAttrString(key, "fileobj");
        if (fileobj == NULL) {
            return -1;
        }
        data = PyObject_GetAttrString(key, "data");
        if (data == NULL) {
            Py_DECREF(fileobj);
            return -1;
        }
    }
    if (!PyTuple_Check(data) || PyTuple_GET_SIZE(data) != 2) {
        PyErr_Format(PyExc_TypeError,
                     "asyncio registration data must be a (reader, writer) "
                     "tuple, not %.100s", Py_TYPE(data)->tp_name);
        Py_DECREF(fileobj);
        Py_DECREF(data);
        return -1;
    }
    pair[0] = PyTuple_GET_ITEM(data, 0);
    pair[1] = PyTuple_GET_ITEM(data, 1);
    Py_INCREF(pair[0]);
    Py_INCREF(pair[1]);
    Py_DECREF(data);
    for (i = 0; i < 2 && rc == 0; i++) {
        PyObject *h = pair[i], *r;
        int c;
        if (!(mask & (i == 0 ? FS_EVENT_READ : FS_EVENT_WRITE))
                || h == Py_None) {
            continue;
        }
        c = cfg != NULL ? handle_cancelled(cfg, h)
                        : fs_aio_handle_cancelled(state, h);
        if (c < 0) {
            rc = -1;
        }
        else if (c) {
            r = PyObject_CallMethodOneArg(
                loop, i == 0 ? fs_aio_names._remove_reader
                             : fs_aio_names._remove_writer, fileobj);
            if (r == NULL) {
                rc = -1;
            }
            Py_XDECREF(r);
        }
        else {
            /* _add_callback(): appended unless cancelled (it is not). */
            r = call1(append, h);
            if (r == NULL) {
                rc = -1;
            }
            Py_XDECREF(r);
        }
    }
    Py_DECREF(pair[0]);
    Py_DECREF(pair[1]);
    Py_DECREF(fileobj);
    return rc;
}

/* The append callable of _asyncio_select's ready argument: the deque's
 * bound append, or the argument itself if it is not a deque (the engine
 * passes its cached bound append).  New reference. */
PyObject *
fs_aio_ready_append(fs_module_state *state, PyObject *ready)
{
    AioConfig *cfg = fs_aio_config(state);
    if (cfg != NULL && !PyObject_TypeCheck(ready, cfg->deque_type)
            && PyCallable_Check(ready)) {
        Py_INCREF(ready);
        return ready;
    }
    return PyObject_GetAttr(ready, fs_aio_names.append);
}

/* -- module registration -------------------------------------------------- */

static PyMethodDef fs_aio_methods[] = {
    {"aio_setup", (PyCFunction)(void (*)(void))aio_setup,
     METH_VARARGS | METH_KEYWORDS,
     "aio_setup(**objects): configure the asyncio engine (fastselectors._aio)."},
    {"aio_stats", (PyCFunction)(void (*)(void))aio_stats, METH_FASTCALL,
     "aio_stats(reset=False) -> what the engine's fast paths did."},
    {"aio_method", (PyCFunction)aio_method, METH_O,
     "aio_method(func): func wrapped to bind as a method."},
    {"aio_call_soon", (PyCFunction)(void (*)(void))aio_call_soon,
     METH_FASTCALL | METH_KEYWORDS,
     "aio_call_soon(loop, callback, *args, context=None): "
     "BaseEventLoop.call_soon outside debug mode."},
    {"aio_write", (PyCFunction)(void (*)(void))fs_aio_write,
     METH_FASTCALL, "aio_write(transport, data): the socket transport's "
     "write(), with coalescing."},
    {"aio_is_closing", (PyCFunction)fs_aio_is_closing, METH_O,
     "aio_is_closing(transport): transport._closing."},
    {"aio_flush", (PyCFunction)fs_aio_flush_transport, METH_O,
     "aio_flush(transport): send its deferred writes now."},
    {NULL, NULL, 0, NULL}
};

#define NAME(field) \
    if ((fs_aio_names.field = PyUnicode_InternFromString(#field)) == NULL) \
        return -1;

static int
init_names(void)
{
    if (fs_aio_names._ready != NULL) {
        return 0;           /* interned once per process */
    }
    NAME(_ready) NAME(_scheduled) NAME(_timer_cancelled_count)
    NAME(_stopping) NAME(_clock_resolution) NAME(_selector) NAME(_when)
    NAME(_cancelled) NAME(_run) NAME(time) NAME(append) NAME(popleft)
    NAME(_process_events) NAME(select) NAME(_remove_reader)
    NAME(_remove_writer) NAME(_closed) NAME(_debug) NAME(_read_ready_cb)
    NAME(_conn_lost) NAME(_sock) NAME(fileno) NAME(max_size) NAME(_protocol)
    NAME(data_received) NAME(get_buffer) NAME(buffer_updated)
    NAME(_fatal_error) NAME(_read_ready__on_eof) NAME(_eof)
    NAME(_empty_waiter) NAME(_buffer) NAME(_loop) NAME(_fs) NAME(_fs_wq)
    NAME(_high_water) NAME(_asyncio_select) NAME(context) NAME(recv_into)
    NAME(_closing)
    fs_aio_names._scheduled_attr = fs_aio_names._scheduled;
    fs_aio_loop_names[0] = fs_aio_names._ready;
    fs_aio_loop_names[1] = fs_aio_names._scheduled;
    fs_aio_loop_names[2] = fs_aio_names._stopping;
    fs_aio_loop_names[3] = fs_aio_names._debug;
    fs_aio_loop_names[4] = fs_aio_names._closed;
    fs_aio_loop_names[5] = fs_aio_names._selector;
    fs_aio_loop_names[6] = fs_aio_names._fs;
    fs_aio_loop_names[7] = fs_aio_names._clock_resolution;
    fs_aio_loop_names[8] = fs_aio_names._timer_cancelled_count;
    return 0;
}

int
fs_aio_init(PyObject *module, fs_module_state *state)
{
    if (init_names() < 0
            || PyModule_AddFunctions(module, fs_aio_methods) < 0) {
        return -1;
    }
    state->aio_config_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &AioConfig_spec, NULL);
    if (state->aio_config_type == NULL) {
        return -1;
    }
    state->aio_config = state->aio_config_type->tp_alloc(
        state->aio_config_type, 0);
    if (state->aio_config == NULL) {
        return -1;
    }
    state->aio_engine_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &AioEngine_spec, NULL);
    if (state->aio_engine_type == NULL
            || PyModule_AddType(module, state->aio_engine_type) < 0) {
        return -1;
    }
    return fs_aio_transport_init(module, state);
}
