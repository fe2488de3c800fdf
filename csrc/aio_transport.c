/* The socket transport's hot paths in C (issue #13).
 *
 * Read: a reader handle whose callback is the stock
 * _SelectorSocketTransport._read_ready (any such transport: the plain ones
 * of create_connection/create_server and the raw transports under TLS) is
 * run here: _read_ready_cb is checked to be the stock
 * _read_ready__data_received or _read_ready__get_buffer bound to the
 * transport, and that function is done in C -- recv() into a scratch
 * buffer (or recv_into the protocol's buffer), then data_received() /
 * buffer_updated(), eof_received() through _read_ready__on_eof(), errors
 * through _fatal_error() with the stock messages.  Anything unusual (a
 * socket object that is not a socket.socket, a closed one, a max_size that
 * is not a positive int) runs the stock function.
 *
 * Write: fastselectors.asyncio's transport class (_aio.FastSocketTransport)
 * has this file's write().  Outside the loop's ready-queue drain it is the
 * stock write() with the send() done in C.  Inside it (a protocol answering
 * from data_received, a task writing to a stream), a small write is
 * *deferred*: appended to the transport's write queue, and every queue is
 * sent with one sendmsg() when the drain ends -- so several write() calls of
 * one loop turn (an HTTP head and body, pipelined answers) cost one
 * syscall.  What the stock code would have observably done is kept:
 *
 *  - only while the stock write() would send at once (no eof, no sendfile,
 *    connection not lost, an empty _buffer), and only while the queue stays
 *    within the high-water mark (and 64 KiB): whatever the kernel then
 *    takes, the stock code would not have paused the protocol either, so
 *    pause_writing()/resume_writing() come exactly as before;
 *  - bytearrays are copied when deferred (the stock code sent them before
 *    the caller could change them);
 *  - everything that looks at or changes the write side -- close(),
 *    abort(), write_eof(), writelines(), get_write_buffer_size(),
 *    set_write_buffer_limits(), sendfile's _make_empty_waiter(),
 *    _force_close() -- first sends the queue (FastSocketTransport does);
 *  - what the kernel does not take at the flush goes through the stock
 *    write(), which buffers it and watches for EVENT_WRITE as it always
 *    does; an error is reported there, by the stock code, with its message.
 *
 * send()/recv() are non-blocking syscalls (MSG_DONTWAIT) made with the
 * GIL held: they never wait, and the stock code's GIL release around them
 * buys nothing on a non-blocking socket.
 */
#include "aio.h"
#include "pythread.h"

#include <errno.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define FS_SCRATCH_MAX 65536    /* recv() into a reused buffer up to this */
#define FS_IOV 64               /* chunks per sendmsg() */

/* -- write queues --------------------------------------------------------- */

static int
AioWriteQueue_traverse(AioWriteQueue *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->chunks);
    return 0;
}

static int
AioWriteQueue_clear(AioWriteQueue *self)
{
    Py_CLEAR(self->chunks);
    self->size = 0;
    return 0;
}

static void
AioWriteQueue_dealloc(AioWriteQueue *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    AioWriteQueue_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
AioWriteQueue_get_size(AioWriteQueue *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->size);
}

static PyGetSetDef AioWriteQueue_getset[] = {
    {"size", (getter)AioWriteQueue_get_size, NULL,
     "Bytes deferred, not sent yet.", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyType_Slot AioWriteQueue_slots[] = {
    {Py_tp_dealloc, AioWriteQueue_dealloc},
    {Py_tp_traverse, AioWriteQueue_traverse},
    {Py_tp_clear, AioWriteQueue_clear},
    {Py_tp_getset, AioWriteQueue_getset},
    {Py_tp_doc, "A transport's writes deferred to the end of the turn."},
    {0, NULL}
};

static PyType_Spec AioWriteQueue_spec = {
    .name = "fastselectors._native._AioWriteQueue",
    .basicsize = sizeof(AioWriteQueue),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = AioWriteQueue_slots,
};

/* transport._fs_wq if it is a write queue (borrowed), else NULL; -1 on
 * error. */
static int
get_queue(fs_module_state *st, PyObject *t, AioWriteQueue **wq)
{
    PyObject *q = PyObject_GetAttr(t, fs_aio_names._fs_wq);
    if (q == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return -1;
        }
        PyErr_Clear();
        *wq = NULL;
        return 0;
    }
    Py_DECREF(q);   /* the transport's attribute keeps it */
    *wq = Py_IS_TYPE(q, st->aio_wq_type) ? (AioWriteQueue *)q : NULL;
    return 0;
}

/* -- helpers -------------------------------------------------------------- */

static PyObject *
call_method1(PyObject *obj, PyObject *name, PyObject *arg)
{
    PyObject *argv[2] = {obj, arg};
    return PyObject_VectorcallMethod(name, argv,
                                     2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                     NULL);
}

static int
attr_true(PyObject *obj, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    int rc;
    if (value == NULL) {
        return -1;
    }
    rc = PyObject_IsTrue(value);
    Py_DECREF(value);
    return rc;
}

/* The fd of transport._sock when it is a socket.socket with an open fd:
 * 1 and *fd set; 0 if the stock code must do it (it raises the right
 * error); -1 on error. */
static int
transport_fd(AioConfig *cfg, PyObject *t, int *fd)
{
    PyObject *sock = PyObject_GetAttr(t, fs_aio_names._sock), *num;
    long value;

    if (sock == NULL) {
        return -1;
    }
    if (!Py_IS_TYPE(sock, cfg->socket_type)) {
        Py_DECREF(sock);
        return 0;
    }
    num = PyObject_CallMethodNoArgs(sock, fs_aio_names.fileno);
    Py_DECREF(sock);
    if (num == NULL) {
        return -1;
    }
    value = PyLong_AsLong(num);
    Py_DECREF(num);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < 0 || value > INT_MAX) {
        return 0;           /* closed: the stock code raises EBADF */
    }
    *fd = (int)value;
    return 1;
}

/* transport._fatal_error(exc, message) inside the except clause of exc,
 * as the stock code calls it.  Consumes exc.  Returns a new reference to
 * None or NULL. */
static PyObject *
fatal_error(PyObject *t, PyObject *exc, const char *message)
{
    PyObject *msg = PyUnicode_FromString(message), *meth;
    int rc = -1;

    if (msg == NULL) {
        Py_DECREF(exc);
        return NULL;
    }
    meth = PyObject_GetAttr(t, fs_aio_names._fatal_error);
    if (meth != NULL) {
        PyObject *argv[2] = {exc, msg};
        rc = fs_aio_call_in_except(meth, argv, 2, exc);
        Py_DECREF(meth);
    }
    Py_DECREF(msg);
    Py_DECREF(exc);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* After a failed Python call in the stock code's try block: SystemExit
 * and KeyboardInterrupt propagate, anything else goes to _fatal_error. */
static PyObject *
fail_to_fatal(PyObject *t, const char *message)
{
    PyObject *exc;
    if (PyErr_ExceptionMatches(PyExc_SystemExit)
            || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    exc = PyErr_GetRaisedException();
#else
    {
        PyObject *type, *tb;
        PyErr_Fetch(&type, &exc, &tb);
        PyErr_NormalizeException(&type, &exc, &tb);
        if (tb != NULL) {
            PyException_SetTraceback(exc, tb);
        }
        Py_XDECREF(type);
        Py_XDECREF(tb);
    }
#endif
    if (exc == NULL) {
        Py_RETURN_NONE;
    }
    return fatal_error(t, exc, message);
}

/* A failed recv(): EAGAIN/EINTR is "try next time" (None), anything else
 * the stock read error. */
static PyObject *
read_failed(PyObject *t, int err)
{
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
        Py_RETURN_NONE;
    }
    errno = err;
    PyErr_SetFromErrno(PyExc_OSError);
    return fail_to_fatal(t, "Fatal read error on socket transport");
}

static char *
scratch(AioEngine *engine, Py_ssize_t size)
{
    if (engine->scratch_size < size) {
        char *buf = PyMem_Realloc(engine->scratch, (size_t)size);
        if (buf == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        engine->scratch = buf;
        engine->scratch_size = size;
    }
    return engine->scratch;
}

/* -- read ----------------------------------------------------------------- */

/* _read_ready__data_received() in C. */
static PyObject *
read_data(AioEngine *engine, AioConfig *cfg, PyObject *t, PyObject *cb)
{
    PyObject *ms_obj, *data, *proto, *result;
    Py_ssize_t max_size, first, n;
    int fd, rc;
    char *buf;

    rc = attr_true(t, fs_aio_names._conn_lost);
    if (rc != 0) {
        if (rc < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    rc = transport_fd(cfg, t, &fd);
    if (rc <= 0) {
        return rc < 0 ? NULL : PyObject_CallNoArgs(cb);
    }
    ms_obj = PyObject_GetAttr(t, fs_aio_names.max_size);
    if (ms_obj == NULL) {
        return NULL;
    }
    max_size = PyLong_CheckExact(ms_obj) ? PyLong_AsSsize_t(ms_obj) : -1;
    Py_DECREF(ms_obj);
    if (max_size <= 0) {
        PyErr_Clear();
        return PyObject_CallNoArgs(cb);
    }
    /* Small reads (the common case) into the scratch buffer, then copied;
     * a full scratch buffer means more may be waiting: the rest goes
     * straight into the bytes object, up to max_size, as the stock
     * sock.recv(max_size) would have returned it in one piece. */
    first = max_size < FS_SCRATCH_MAX ? max_size : FS_SCRATCH_MAX;
    buf = scratch(engine, first);
    if (buf == NULL) {
        return fail_to_fatal(t, "Fatal read error on socket transport");
    }
    n = recv(fd, buf, (size_t)first, MSG_DONTWAIT);
    if (n < 0) {
        return read_failed(t, errno);
    }
    if (n == 0) {
        return PyObject_CallMethodNoArgs(t, fs_aio_names._read_ready__on_eof);
    }
    if (n < first || first == max_size) {
        data = PyBytes_FromStringAndSize(buf, n);
    }
    else {
        data = PyBytes_FromStringAndSize(NULL, max_size);
        if (data != NULL) {
            Py_ssize_t more;
            memcpy(PyBytes_AS_STRING(data), buf, (size_t)n);
            more = recv(fd, PyBytes_AS_STRING(data) + n,
                        (size_t)(max_size - n), MSG_DONTWAIT);
            if (more > 0) {
                n += more;
            }
            /* An error now is the next read's: this data is delivered. */
            if (n < max_size && _PyBytes_Resize(&data, n) < 0) {
                data = NULL;
            }
        }
    }
    if (data == NULL) {
        return fail_to_fatal(t, "Fatal read error on socket transport");
    }
    proto = PyObject_GetAttr(t, fs_aio_names._protocol);
    if (proto == NULL) {
        Py_DECREF(data);
        return fail_to_fatal(t, "Fatal error: protocol.data_received() "
                                "call failed.");
    }
    result = call_method1(proto, fs_aio_names.data_received, data);
    Py_DECREF(proto);
    Py_DECREF(data);
    if (result == NULL) {
        return fail_to_fatal(t, "Fatal error: protocol.data_received() "
                                "call failed.");
    }
    return result;
}

/* _read_ready__get_buffer() in C (BufferedProtocol). */
static PyObject *
read_buffer(AioEngine *engine, AioConfig *cfg, PyObject *t)
{
    PyObject *proto, *buf, *minus_one, *nobj, *result;
    Py_ssize_t len, n;
    Py_buffer view;
    int fd, rc;

    rc = attr_true(t, fs_aio_names._conn_lost);
    if (rc != 0) {
        if (rc < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    proto = PyObject_GetAttr(t, fs_aio_names._protocol);
    if (proto == NULL) {
        return fail_to_fatal(t, "Fatal error: protocol.get_buffer() call "
                                "failed.");
    }
    minus_one = PyLong_FromLong(-1);
    if (minus_one == NULL) {
        Py_DECREF(proto);
        return NULL;
    }
    buf = call_method1(proto, fs_aio_names.get_buffer, minus_one);
    Py_DECREF(minus_one);
    Py_DECREF(proto);
    if (buf != NULL) {
        len = PyObject_Size(buf);
        if (len == 0) {
            PyErr_SetString(PyExc_RuntimeError,
                            "get_buffer() returned an empty buffer");
        }
        if (len <= 0) {
            Py_CLEAR(buf);
        }
    }
    if (buf == NULL) {
        return fail_to_fatal(t, "Fatal error: protocol.get_buffer() call "
                                "failed.");
    }
    /* self._sock.recv_into(buf) */
    rc = transport_fd(cfg, t, &fd);
    if (rc < 0) {
        Py_DECREF(buf);
        return fail_to_fatal(t, "Fatal read error on socket transport");
    }
    if (rc == 0) {
        PyObject *sock = PyObject_GetAttr(t, fs_aio_names._sock);
        nobj = sock == NULL ? NULL
            : call_method1(sock, fs_aio_names.recv_into, buf);
        Py_XDECREF(sock);
        Py_DECREF(buf);
        if (nobj == NULL) {
            if (PyErr_ExceptionMatches(PyExc_BlockingIOError)
                    || PyErr_ExceptionMatches(PyExc_InterruptedError)) {
                PyErr_Clear();
                Py_RETURN_NONE;
            }
            return fail_to_fatal(t, "Fatal read error on socket transport");
        }
        n = PyLong_AsSsize_t(nobj);
        if (n == -1 && PyErr_Occurred()) {
            Py_DECREF(nobj);
            return NULL;
        }
    }
    else {
        if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0) {
            Py_DECREF(buf);
            return fail_to_fatal(t, "Fatal read error on socket transport");
        }
        n = recv(fd, view.buf, (size_t)view.len, MSG_DONTWAIT);
        rc = errno;
        PyBuffer_Release(&view);
        Py_DECREF(buf);
        if (n < 0) {
            return read_failed(t, rc);
        }
        nobj = PyLong_FromSsize_t(n);
        if (nobj == NULL) {
            return NULL;
        }
    }
    if (n == 0) {
        Py_DECREF(nobj);
        return PyObject_CallMethodNoArgs(t, fs_aio_names._read_ready__on_eof);
    }
    proto = PyObject_GetAttr(t, fs_aio_names._protocol);
    result = proto == NULL ? NULL
        : call_method1(proto, fs_aio_names.buffer_updated, nobj);
    Py_XDECREF(proto);
    Py_DECREF(nobj);
    if (result == NULL) {
        return fail_to_fatal(t, "Fatal error: protocol.buffer_updated() "
                                "call failed.");
    }
    return result;
}

/* transport._read_ready(): self._read_ready_cb(), the stock ones in C. */
PyObject *
fs_aio_read_ready(AioEngine *engine, AioConfig *cfg, PyObject *t)
{
    PyObject *cb = PyObject_GetAttr(t, fs_aio_names._read_ready_cb), *result;

    if (cb == NULL) {
        return NULL;
    }
    Py_INCREF(t);
    if (PyMethod_Check(cb) && PyMethod_GET_SELF(cb) == t
            && PyMethod_GET_FUNCTION(cb) == cfg->rr_data) {
        result = read_data(engine, cfg, t, cb);
    }
    else if (PyMethod_Check(cb) && PyMethod_GET_SELF(cb) == t
             && PyMethod_GET_FUNCTION(cb) == cfg->rr_buffer) {
        result = read_buffer(engine, cfg, t);
    }
    else {
        result = PyObject_CallNoArgs(cb);
    }
    Py_DECREF(t);
    Py_DECREF(cb);
    return result;
}

/* -- write ---------------------------------------------------------------- */

static PyObject *
stock_write(AioConfig *cfg, PyObject *t, PyObject *data)
{
    PyObject *argv[2] = {t, data};
    return PyObject_Vectorcall(cfg->stock_write, argv, 2, NULL);
}

/* Send the deferred writes of t (wq is t's queue): one sendmsg(); what
 * the kernel does not take goes to the stock write().  0 or -1. */
static int
flush_queue(AioConfig *cfg, PyObject *t, AioWriteQueue *wq)
{
    PyObject *chunks = wq->chunks, *rest = NULL, *r;
    Py_ssize_t size = wq->size, nchunks, i, sent = -1, off;
    int fd = -1, rc;

    if (chunks == NULL || size == 0) {
        return 0;
    }
    /* Take the queue first: the stock write() below may run user code
     * (an exception handler) that writes to this transport again. */
    wq->chunks = NULL;
    wq->size = 0;
    nchunks = PyList_GET_SIZE(chunks);
    rc = transport_fd(cfg, t, &fd);
    if (rc < 0) {
        Py_DECREF(chunks);
        return -1;
    }
    if (rc > 0) {
        struct iovec iov[FS_IOV];
        struct msghdr msg;
        Py_ssize_t k = nchunks < FS_IOV ? nchunks : FS_IOV;
        for (i = 0; i < k; i++) {
            PyObject *c = PyList_GET_ITEM(chunks, i);
            iov[i].iov_base = PyBytes_AS_STRING(c);
            iov[i].iov_len = (size_t)PyBytes_GET_SIZE(c);
        }
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = iov;
        msg.msg_iovlen = (size_t)k;
        sent = sendmsg(fd, &msg, MSG_DONTWAIT);
    }
    if (sent == size) {
        Py_DECREF(chunks);
        return 0;
    }
    /* The rest, in one piece, through the stock write(): it tries again,
     * buffers what is left and registers the writer, or reports the
     * error (and a lost connection) as it would have. */
    if (sent < 0) {
        sent = 0;
    }
    rest = PyBytes_FromStringAndSize(NULL, size - sent);
    if (rest == NULL) {
        Py_DECREF(chunks);
        return -1;
    }
    off = 0;
    for (i = 0; i < nchunks; i++) {
        PyObject *c = PyList_GET_ITEM(chunks, i);
        Py_ssize_t len = PyBytes_GET_SIZE(c), skip = 0;
        if (sent >= len) {
            sent -= len;
            continue;
        }
        skip = sent;
        sent = 0;
        memcpy(PyBytes_AS_STRING(rest) + off, PyBytes_AS_STRING(c) + skip,
               (size_t)(len - skip));
        off += len - skip;
    }
    Py_DECREF(chunks);
    r = stock_write(cfg, t, rest);
    Py_DECREF(rest);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* Every queue of the engine's flush list.  The first error is raised
 * after all were tried. */
int
fs_aio_flush_all(AioEngine *engine, AioConfig *cfg)
{
    fs_module_state *st = fs_state_of(Py_TYPE(engine));
    PyObject *list, *exc = NULL;
    Py_ssize_t i;

    while (engine->flush != NULL && PyList_GET_SIZE(engine->flush) > 0) {
        PyObject *fresh = PyList_New(0);
        if (fresh == NULL) {
            return -1;
        }
        list = engine->flush;
        engine->flush = fresh;
        for (i = 0; i < PyList_GET_SIZE(list); i++) {
            PyObject *t = PyList_GET_ITEM(list, i);
            AioWriteQueue *wq;
            Py_INCREF(t);
            if (get_queue(st, t, &wq) < 0 || (wq != NULL && (wq->queued = 0,
                    flush_queue(cfg, t, wq) < 0))) {
                if (exc == NULL) {
#if PY_VERSION_HEX >= 0x030C0000
                    exc = PyErr_GetRaisedException();
#else
                    PyObject *type, *tb;
                    PyErr_Fetch(&type, &exc, &tb);
                    PyErr_NormalizeException(&type, &exc, &tb);
                    if (tb != NULL) {
                        PyException_SetTraceback(exc, tb);
                    }
                    Py_XDECREF(type);
                    Py_XDECREF(tb);
#endif
                }
                else {
                    PyErr_WriteUnraisable(t);
                }
            }
            Py_DECREF(t);
        }
        Py_DECREF(list);
    }
    if (exc != NULL) {
#if PY_VERSION_HEX >= 0x030C0000
        PyErr_SetRaisedException(exc);
#else
        PyObject *tb = PyException_GetTraceback(exc);
        Py_INCREF(Py_TYPE(exc));
        PyErr_Restore((PyObject *)Py_TYPE(exc), exc, tb);
#endif
        return -1;
    }
    return 0;
}

/* _aio_flush(transport): send what it deferred now (FastSocketTransport
 * calls it before anything that looks at or changes its write side). */
PyObject *
fs_aio_flush_transport(PyObject *module, PyObject *t)
{
    fs_module_state *st = PyModule_GetState(module);
    AioConfig *cfg = fs_aio_config(st);
    AioWriteQueue *wq;

    if (cfg == NULL || get_queue(st, t, &wq) < 0) {
        return cfg == NULL ? PyErr_Format(PyExc_RuntimeError,
                                          "engine not configured") : NULL;
    }
    if (wq != NULL && wq->size > 0) {
        int rc;
        Py_INCREF(wq);
        rc = flush_queue(cfg, t, wq);
        Py_DECREF(wq);
        if (rc < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

/* May this write be deferred?  1 (and *engine_out), 0, or -1.  The stock
 * write() would send at once (the caller checked eof, sendfile, conn_lost
 * and the buffer); the loop's engine must be draining in this thread. */
static int
may_defer(fs_module_state *st, AioConfig *cfg, PyObject *t,
          AioEngine **engine_out)
{
    PyObject *loop, *engine;

    if (!cfg->coalesce) {
        return 0;
    }
    loop = PyObject_GetAttr(t, fs_aio_names._loop);
    if (loop == NULL) {
        return -1;
    }
    engine = fs_aio_engine_of(st, loop);
    Py_DECREF(loop);
    if (engine == NULL || ((AioEngine *)engine)->drain_thread == 0
            || ((AioEngine *)engine)->drain_thread
               != PyThread_get_thread_ident()) {
        return 0;
    }
    *engine_out = (AioEngine *)engine;
    return 1;
}

/* The limit of one transport's queue: min(high water, coalesce_max). */
static int
queue_limit(AioConfig *cfg, PyObject *t, Py_ssize_t *limit)
{
    PyObject *hw = PyObject_GetAttr(t, fs_aio_names._high_water);
    Py_ssize_t value;
    if (hw == NULL) {
        return -1;
    }
    value = PyLong_Check(hw) ? PyLong_AsSsize_t(hw) : 0;
    Py_DECREF(hw);
    if (value == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        value = 0;
    }
    *limit = value < cfg->coalesce_max ? value : cfg->coalesce_max;
    return 0;
}

/* Append data (bytes or bytearray, non-empty) to t's queue, creating the
 * queue and putting t in the engine's flush list as needed.  Returns the
 * queue (borrowed: the transport holds it) or NULL. */
static AioWriteQueue *
defer(fs_module_state *st, AioEngine *engine, PyObject *t,
      AioWriteQueue *wq, PyObject *data)
{
    PyObject *chunk;

    if (wq == NULL) {
        wq = (AioWriteQueue *)st->aio_wq_type->tp_alloc(st->aio_wq_type, 0);
        if (wq == NULL) {
            return NULL;
        }
        if (PyObject_SetAttr(t, fs_aio_names._fs_wq, (PyObject *)wq) < 0) {
            Py_DECREF(wq);
            return NULL;
        }
        Py_DECREF(wq);      /* the transport holds it */
    }
    if (wq->chunks == NULL) {
        wq->chunks = PyList_New(0);
        if (wq->chunks == NULL) {
            return NULL;
        }
    }
    if (PyBytes_CheckExact(data)) {
        Py_INCREF(data);
        chunk = data;
    }
    else {
        chunk = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(data),
                                          PyByteArray_GET_SIZE(data));
        if (chunk == NULL) {
            return NULL;
        }
    }
    if (PyList_Append(wq->chunks, chunk) < 0) {
        Py_DECREF(chunk);
        return NULL;
    }
    wq->size += PyBytes_GET_SIZE(chunk);
    Py_DECREF(chunk);
    if (!wq->queued) {
        if (PyList_Append(engine->flush, t) < 0) {
            return NULL;
        }
        wq->queued = 1;
    }
    return wq;
}

/* _aio_write(transport, data): FastSocketTransport.write. */
PyObject *
fs_aio_write(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    fs_module_state *st = PyModule_GetState(module);
    AioConfig *cfg = fs_aio_config(st);
    PyObject *t, *data, *v;
    AioWriteQueue *wq;
    AioEngine *engine = NULL;
    Py_ssize_t len, sent;
    const char *p;
    int rc, fd, fast;

    if (cfg == NULL || nargs != 2) {
        if (cfg == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "engine not configured");
            return NULL;
        }
        PyErr_Format(PyExc_TypeError, "write() takes exactly one argument "
                     "(%zd given)", nargs - 1);
        return NULL;
    }
    t = args[0];
    data = args[1];
    if (get_queue(st, t, &wq) < 0) {
        return NULL;
    }
    /* The fast path: bytes or bytearray, and the stock write() would send
     * it at once. */
    fast = PyBytes_CheckExact(data) || PyByteArray_CheckExact(data);
    len = fast ? Py_SIZE(data) : 0;
    if (fast && len > 0) {
        rc = attr_true(t, fs_aio_names._eof);
        if (rc == 0) {
            v = PyObject_GetAttr(t, fs_aio_names._empty_waiter);
            if (v == NULL) {
                return NULL;
            }
            rc = v != Py_None;
            Py_DECREF(v);
        }
        if (rc == 0) {
            rc = attr_true(t, fs_aio_names._conn_lost);
        }
        if (rc == 0) {
            rc = attr_true(t, fs_aio_names._buffer);
        }
        if (rc < 0) {
            return NULL;
        }
        fast = rc == 0;
    }
    else {
        fast = 0;
    }
    if (fast) {
        rc = may_defer(st, cfg, t, &engine);
        if (rc < 0) {
            return NULL;
        }
        if (rc) {
            Py_ssize_t limit, queued = wq != NULL ? wq->size : 0;
            if (queue_limit(cfg, t, &limit) < 0) {
                return NULL;
            }
            if (queued + len <= limit || queued > 0) {
                wq = defer(st, engine, t, wq, data);
                if (wq == NULL) {
                    return NULL;
                }
                if (queued + len <= limit
                        && PyList_GET_SIZE(wq->chunks) < FS_IOV) {
                    Py_RETURN_NONE;             /* leaves at the flush */
                }
                /* Over the limit: all of it leaves now, in order. */
                Py_INCREF(wq);
                rc = flush_queue(cfg, t, wq);
                Py_DECREF(wq);
                if (rc < 0) {
                    return NULL;
                }
                Py_RETURN_NONE;
            }
            /* Alone over the limit: sent at once, below. */
        }
    }
    /* Not deferred: what was deferred before goes first. */
    if (wq != NULL && wq->size > 0) {
        Py_INCREF(wq);
        rc = flush_queue(cfg, t, wq);
        Py_DECREF(wq);
        if (rc < 0) {
            return NULL;
        }
        /* The flush may have changed the transport (an error, a buffer):
         * the stock write() decides from here. */
        return stock_write(cfg, t, data);
    }
    if (!fast) {
        return stock_write(cfg, t, data);
    }
    /* self._sock.send(data) in C; anything but a complete send is handed
     * to the stock write() (which tries once more, then buffers, or
     * reports the error). */
    rc = transport_fd(cfg, t, &fd);
    if (rc <= 0) {
        return rc < 0 ? NULL : stock_write(cfg, t, data);
    }
    p = PyBytes_CheckExact(data) ? PyBytes_AS_STRING(data)
                                 : PyByteArray_AS_STRING(data);
    sent = send(fd, p, (size_t)len, MSG_DONTWAIT);
    if (sent == len) {
        Py_RETURN_NONE;
    }
    if (sent > 0) {
        PyObject *rest = PyBytes_FromStringAndSize(p + sent, len - sent), *r;
        if (rest == NULL) {
            return NULL;
        }
        r = stock_write(cfg, t, rest);
        Py_DECREF(rest);
        return r;
    }
    return stock_write(cfg, t, data);
}

int
fs_aio_transport_init(PyObject *module, fs_module_state *state)
{
    state->aio_wq_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &AioWriteQueue_spec, NULL);
    return state->aio_wq_type == NULL ? -1 : 0;
}
