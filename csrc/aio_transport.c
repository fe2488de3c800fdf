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
 * FastSocketTransport declares the attributes read here as __slots__, so
 * they are read in place (aio.h, tview); a stock transport's are read from
 * its __dict__.
 *
 * send()/recv() are non-blocking syscalls (MSG_DONTWAIT) made with the
 * GIL held: they never wait, and the stock code's GIL release around them
 * buys nothing on a non-blocking socket.
 */
#include "aio.h"

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
    Py_VISIT(self->first);
    Py_VISIT(self->more);
    Py_VISIT(self->transport);
    return 0;
}

static int
AioWriteQueue_clear(AioWriteQueue *self)
{
    Py_CLEAR(self->first);
    Py_CLEAR(self->more);
    Py_CLEAR(self->transport);
    self->size = self->count = 0;
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

/* -- a transport's attributes --------------------------------------------- */

static PyObject *const *
field_name(int field)
{
    switch (field) {
    case FS_F_CONN_LOST: return &fs_aio_names._conn_lost;
    case FS_F_BUFFER: return &fs_aio_names._buffer;
    case FS_F_EOF: return &fs_aio_names._eof;
    case FS_F_EMPTY_WAITER: return &fs_aio_names._empty_waiter;
    case FS_F_SOCK: return &fs_aio_names._sock;
    case FS_F_READ_READY_CB: return &fs_aio_names._read_ready_cb;
    case FS_F_PROTOCOL: return &fs_aio_names._protocol;
    case FS_F_CLOSING: return &fs_aio_names._closing;
    default: return &fs_aio_names._fs_wq;
    }
}

/* Open a view of transport t: its slots if it is a FastSocketTransport,
 * else its __dict__. */
static int
topen(AioConfig *cfg, tview *v, PyObject *t)
{
    return tview_open(v, t, (cfg->fast_slots
                             && Py_IS_TYPE(t, cfg->fast_transport_type))
                      ? cfg->fast_off : NULL);
}

/* t.<field> as a new reference. */
static inline PyObject *
tfield(tview *v, int field)
{
    if (v->off != NULL && v->nnames == 0) {
        PyObject *value = FS_SLOT(v->t, v->off[field]);
        if (value != NULL) {
            Py_INCREF(value);
            return value;
        }
        /* unset: getattr raises the AttributeError the stock code would */
        return PyObject_GetAttr(v->t, *field_name(field));
    }
    return tget(v, *field_name(field));
}

static inline int
tfield_true(tview *v, int field)
{
    PyObject *value = tfield(v, field);
    int rc;
    if (value == NULL) {
        return -1;
    }
    rc = truth(value);
    Py_DECREF(value);
    return rc;
}

/* A _FlowControlMixin slot (_loop, _high_water) read in place: borrowed,
 * NULL (no exception) if unset or unknown. */
static PyObject *
tslot(PyObject *t, Py_ssize_t off)
{
    return off >= 0 ? FS_SLOT(t, off) : NULL;
}

/* transport._fs_wq if it is a write queue (borrowed: the transport holds
 * it), else NULL; -1 on error. */
static int
get_queue(fs_module_state *st, tview *v, AioWriteQueue **wq)
{
    PyObject *q = tfield(v, FS_F_FS_WQ);
    if (q == NULL) {
        return -1;
    }
    Py_DECREF(q);
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

/* The fd of a socket object: 1 and *fd set; 0 if it is not a socket or is
 * closed (the stock code then raises the right error); -1 on error.  The
 * fd is read from the socket object itself (sock_fd, the first field of
 * CPython's socket object, checked at setup) -- never from the transport's
 * _sock_fd, which outlives a close() of the socket. */
static int
socket_fd(AioConfig *cfg, PyObject *sock, int *fd)
{
    long value;

    if (!Py_IS_TYPE(sock, cfg->socket_py_type)
            && !PyObject_TypeCheck(sock, cfg->socket_type)) {
        return 0;
    }
    if (cfg->sock_fd_offset > 0) {
        value = *(int *)((char *)sock + cfg->sock_fd_offset);
    }
    else {
        PyObject *num = PyObject_CallMethodNoArgs(sock, fs_aio_names.fileno);
        if (num == NULL) {
            return -1;
        }
        value = PyLong_AsLong(num);
        Py_DECREF(num);
        if (value == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    if (value < 0 || value > INT_MAX) {
        return 0;
    }
    *fd = (int)value;
    return 1;
}

/* The fd of transport._sock (see socket_fd). */
static int
transport_fd(AioConfig *cfg, tview *v, int *fd)
{
    PyObject *sock = tfield(v, FS_F_SOCK);
    int rc;
    if (sock == NULL) {
        return -1;
    }
    rc = socket_fd(cfg, sock, fd);
    Py_DECREF(sock);
    return rc;
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

/* After a failed call in the stock code's try block: SystemExit and
 * KeyboardInterrupt propagate, anything else goes to _fatal_error. */
static PyObject *
fail_to_fatal(PyObject *t, const char *message)
{
    PyObject *exc;
    if (PyErr_ExceptionMatches(PyExc_SystemExit)
            || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        return NULL;
    }
    exc = fs_aio_fetch_exception();
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

/* t.max_size: an instance attribute if set, else the class's (a plain
 * int); -1 if it is anything else (the stock function then runs), -2 on
 * error. */
static Py_ssize_t
max_size_of(tview *v)
{
    PyObject *ms = NULL, *dict = v->dict;
    Py_ssize_t value = -1;

    if (dict == NULL && v->off != NULL) {
        /* slots: an instance may still set max_size in its __dict__ */
        dict = v->dict = PyObject_GenericGetDict(v->t, NULL);
        if (dict == NULL) {
            PyErr_Clear();
        }
    }
    if (dict != NULL) {
        ms = PyDict_GetItemWithError(dict, fs_aio_names.max_size);
        if (ms == NULL && PyErr_Occurred()) {
            return -2;
        }
    }
    else if (v->off == NULL) {
        return -1;      /* no __dict__: whatever it is, the stock code */
    }
    if (ms == NULL) {
        ms = _PyType_Lookup(Py_TYPE(v->t), fs_aio_names.max_size);
    }
    if (ms != NULL && PyLong_CheckExact(ms)) {
        value = PyLong_AsSsize_t(ms);
        if (value == -1 && PyErr_Occurred()) {
            PyErr_Clear();
        }
    }
    return value > 0 ? value : -1;
}

/* -- read ----------------------------------------------------------------- */

/* _read_ready__data_received() in C. */
static PyObject *
read_data(AioEngine *engine, AioConfig *cfg, tview *v, PyObject *cb)
{
    PyObject *t = v->t, *data, *proto, *result;
    Py_ssize_t max_size, first, n;
    int fd, rc;
    char *buf;

    rc = tfield_true(v, FS_F_CONN_LOST);
    if (rc != 0) {
        if (rc < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    rc = transport_fd(cfg, v, &fd);
    if (rc <= 0) {
        return rc < 0 ? NULL : PyObject_CallNoArgs(cb);
    }
    max_size = max_size_of(v);
    if (max_size < 0) {
        return max_size == -2 ? NULL : PyObject_CallNoArgs(cb);
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
    fs_aio_stats.reads++;
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
    proto = tfield(v, FS_F_PROTOCOL);
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
read_buffer(AioConfig *cfg, tview *v)
{
    PyObject *t = v->t, *proto, *buf, *minus_one, *nobj, *result;
    Py_ssize_t len, n;
    Py_buffer view;
    int fd, rc;

    rc = tfield_true(v, FS_F_CONN_LOST);
    if (rc != 0) {
        if (rc < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    proto = tfield(v, FS_F_PROTOCOL);
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
    rc = transport_fd(cfg, v, &fd);
    if (rc < 0) {
        Py_DECREF(buf);
        return fail_to_fatal(t, "Fatal read error on socket transport");
    }
    if (rc > 0 && PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0) {
        /* Not a writable contiguous buffer: sock.recv_into() raises its
         * own error (a TypeError, where PyObject_GetBuffer says
         * BufferError). */
        PyErr_Clear();
        rc = 0;
    }
    if (rc == 0) {
        PyObject *sock = tfield(v, FS_F_SOCK);
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
        n = PyObject_IsTrue(nobj);
        if (n < 0) {
            Py_DECREF(nobj);
            return NULL;
        }
    }
    else {
        fs_aio_stats.buffered_reads++;
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
    proto = tfield(v, FS_F_PROTOCOL);
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
    PyObject *cb, *result;
    tview v;

    if (!Py_IS_TYPE(t, cfg->socket_transport_type)
            && !Py_IS_TYPE(t, cfg->fast_transport_type)) {
        /* A subclass (its attributes may be properties): the stock
         * _read_ready. */
        PyObject *argv[1] = {t};
        return PyObject_Vectorcall(cfg->read_ready, argv, 1, NULL);
    }
    Py_INCREF(t);
    if (topen(cfg, &v, t) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    cb = tfield(&v, FS_F_READ_READY_CB);
    if (cb == NULL) {
        result = NULL;
    }
    else if (PyMethod_Check(cb) && PyMethod_GET_SELF(cb) == t
             && PyMethod_GET_FUNCTION(cb) == cfg->rr_data) {
        result = read_data(engine, cfg, &v, cb);
    }
    else if (PyMethod_Check(cb) && PyMethod_GET_SELF(cb) == t
             && PyMethod_GET_FUNCTION(cb) == cfg->rr_buffer) {
        result = read_buffer(cfg, &v);
    }
    else {
        result = PyObject_CallNoArgs(cb);
    }
    Py_XDECREF(cb);
    tview_close(&v);
    Py_DECREF(t);
    return result;
}

/* -- write ---------------------------------------------------------------- */

static PyObject *
stock_write(AioConfig *cfg, PyObject *t, PyObject *data)
{
    PyObject *argv[2] = {t, data};
    return PyObject_Vectorcall(cfg->stock_write, argv, 2, NULL);
}

static PyObject *
chunk_at(PyObject *first, PyObject *more, Py_ssize_t i)
{
    return i == 0 ? first : PyList_GET_ITEM(more, i - 1);
}

/* Send the deferred writes of wq's transport: one send()/sendmsg(); what
 * the kernel does not take goes to the stock write().  0 or -1. */
static int
flush_queue(AioConfig *cfg, AioWriteQueue *wq)
{
    PyObject *first = wq->first, *more = NULL, *t = wq->transport;
    PyObject *rest, *r;
    Py_ssize_t size = wq->size, count = wq->count, i, sent = -1, off;

    /* Take the queue first: the stock write() below may run user code
     * (an exception handler) that writes to this transport again. */
    wq->first = NULL;
    wq->size = wq->count = 0;
    wq->transport = NULL;
    if (count > 1) {
        more = wq->more;            /* the next turn makes a new list */
        wq->more = NULL;
    }
    if (first == NULL || size == 0 || t == NULL) {
        Py_XDECREF(first);
        Py_XDECREF(more);
        Py_XDECREF(t);
        return 0;
    }
    fs_aio_stats.flushes++;
    if (wq->fd >= 0 && count == 1) {
        sent = send(wq->fd, PyBytes_AS_STRING(first), (size_t)size,
                    MSG_DONTWAIT);
    }
    else if (wq->fd >= 0) {
        struct iovec iov[FS_IOV];
        struct msghdr msg;
        Py_ssize_t k = count < FS_IOV ? count : FS_IOV;
        for (i = 0; i < k; i++) {
            PyObject *c = chunk_at(first, more, i);
            iov[i].iov_base = PyBytes_AS_STRING(c);
            iov[i].iov_len = (size_t)PyBytes_GET_SIZE(c);
        }
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = iov;
        msg.msg_iovlen = (size_t)k;
        sent = sendmsg(wq->fd, &msg, MSG_DONTWAIT);
    }
    rest = NULL;
    if (sent != size) {
        /* The rest, in one piece, through the stock write(): it tries
         * again, buffers what is left and registers the writer, or
         * reports the error (and a lost connection) as it would have. */
        if (sent < 0) {
            sent = 0;
        }
        rest = PyBytes_FromStringAndSize(NULL, size - sent);
        if (rest != NULL) {
            off = 0;
            for (i = 0; i < count; i++) {
                PyObject *c = chunk_at(first, more, i);
                Py_ssize_t len = PyBytes_GET_SIZE(c), skip;
                if (sent >= len) {
                    sent -= len;
                    continue;
                }
                skip = sent;
                sent = 0;
                memcpy(PyBytes_AS_STRING(rest) + off,
                       PyBytes_AS_STRING(c) + skip, (size_t)(len - skip));
                off += len - skip;
            }
        }
    }
    Py_DECREF(first);
    if (more != NULL) {
        if (wq->more == NULL && PyList_SetSlice(more, 0, PY_SSIZE_T_MAX,
                                                NULL) == 0) {
            wq->more = more;        /* emptied: reused next turn */
        }
        else {
            PyErr_Clear();
            Py_DECREF(more);
        }
    }
    if (sent == size) {
        Py_DECREF(t);
        return 0;
    }
    if (rest == NULL) {
        Py_DECREF(t);
        return -1;
    }
    r = stock_write(cfg, t, rest);
    Py_DECREF(rest);
    Py_DECREF(t);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* Every queue of the engine's flush chain, in the order they were
 * queued.  The first error is raised after all were tried (later ones are
 * reported as unraisable). */
int
fs_aio_flush_all(AioEngine *engine, AioConfig *cfg)
{
    PyObject *exc = NULL;

    while (engine->flush != NULL) {
        /* Take the chain: writes made by the code the flushes run queue
         * into a new one, sent by the next round of this loop. */
        AioWriteQueue *wq = engine->flush, *prev = NULL, *next;
        engine->flush = NULL;
        /* The chain was built by pushing at the head: reverse it. */
        while (wq != NULL) {
            next = wq->next;
            wq->next = prev;
            prev = wq;
            wq = next;
        }
        for (wq = prev; wq != NULL; wq = next) {
            next = wq->next;
            wq->next = NULL;
            wq->chained = 0;
            if (wq->size > 0 && flush_queue(cfg, wq) < 0) {
                if (exc == NULL) {
                    exc = fs_aio_fetch_exception();
                }
                else {
                    PyErr_WriteUnraisable((PyObject *)wq);
                }
            }
            else {
                Py_CLEAR(wq->transport);
            }
            Py_DECREF(wq);          /* the chain's reference */
        }
    }
    if (exc != NULL) {
        fs_aio_restore_exception(exc);
        return -1;
    }
    return PyErr_Occurred() ? -1 : 0;
}

/* aio_flush(transport): send what it deferred now (FastSocketTransport
 * calls it before anything that looks at or changes its write side). */
PyObject *
fs_aio_flush_transport(PyObject *module, PyObject *t)
{
    fs_module_state *st = PyModule_GetState(module);
    AioConfig *cfg = fs_aio_config(st);
    AioWriteQueue *wq;
    tview v;
    int rc = 0;

    if (cfg == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "engine not configured");
        return NULL;
    }
    Py_INCREF(t);
    if (topen(cfg, &v, t) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    if (get_queue(st, &v, &wq) < 0) {
        rc = -1;
    }
    else if (wq != NULL && wq->size > 0) {
        Py_INCREF(wq);
        rc = flush_queue(cfg, wq);
        Py_DECREF(wq);
    }
    tview_close(&v);
    Py_DECREF(t);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Append data (bytes or bytearray, non-empty) to t's queue, creating the
 * queue and putting it in the engine's flush list as needed.  Returns the
 * queue (borrowed: the transport holds it) or NULL. */
static AioWriteQueue *
defer(fs_module_state *st, AioConfig *cfg, AioEngine *engine, tview *v,
      AioWriteQueue *wq, PyObject *data)
{
    PyObject *chunk, *t = v->t;
    Py_ssize_t n;

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
    n = PyBytes_GET_SIZE(chunk);
    if (wq->count == 0) {
        wq->first = chunk;          /* the reference moves to the queue */
    }
    else {
        if (wq->more == NULL) {
            wq->more = PyList_New(0);
            if (wq->more == NULL) {
                Py_DECREF(chunk);
                return NULL;
            }
        }
        if (PyList_Append(wq->more, chunk) < 0) {
            Py_DECREF(chunk);
            return NULL;
        }
        Py_DECREF(chunk);
    }
    wq->count++;
    wq->size += n;
    fs_aio_stats.deferred++;
    if (wq->transport == NULL) {
        /* First deferred chunk of this turn: chain it for the flush. */
        int fd = -1;
        if (transport_fd(cfg, v, &fd) < 0) {
            return NULL;
        }
        wq->fd = fd;
        Py_INCREF(t);
        wq->transport = t;
        if (!wq->chained) {
            Py_INCREF(wq);
            wq->chained = 1;
            wq->next = engine->flush;
            engine->flush = wq;
        }
    }
    return wq;
}

/* The stock write() would send *data* at once: not closing for writes,
 * no sendfile, connection not lost, nothing buffered.  1, 0, or -1. */
static int
would_send_now(tview *v)
{
    PyObject *w;
    int rc = tfield_true(v, FS_F_EOF);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    w = tfield(v, FS_F_EMPTY_WAITER);
    if (w == NULL) {
        return -1;
    }
    rc = w != Py_None;
    Py_DECREF(w);
    if (rc) {
        return 0;
    }
    rc = tfield_true(v, FS_F_CONN_LOST);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    rc = tfield_true(v, FS_F_BUFFER);
    return rc < 0 ? -1 : !rc;
}

static PyObject *
write_impl(fs_module_state *st, AioConfig *cfg, tview *v, PyObject *data)
{
    PyObject *t = v->t;
    AioWriteQueue *wq;
    AioEngine *engine;
    Py_ssize_t len, sent;
    const char *p;
    int rc, fd, fast;

    if (get_queue(st, v, &wq) < 0) {
        return NULL;
    }
    /* The fast path: bytes or bytearray that the stock write() would send
     * at once. */
    fast = PyBytes_CheckExact(data) || PyByteArray_CheckExact(data);
    len = fast ? Py_SIZE(data) : 0;
    if (fast && len > 0) {
        rc = would_send_now(v);
        if (rc < 0) {
            return NULL;
        }
        fast = rc;
    }
    else {
        fast = 0;
    }
    engine = fast && cfg->coalesce
        ? fs_aio_draining_engine(tslot(t, cfg->off_tr_loop)) : NULL;
    if (engine != NULL) {
        Py_ssize_t queued = wq != NULL ? wq->size : 0, limit;
        PyObject *hw = tslot(t, cfg->off_tr_high_water);
        limit = (hw != NULL && PyLong_CheckExact(hw))
            ? PyLong_AsSsize_t(hw) : 0;
        if (limit == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            limit = 0;
        }
        if (limit > cfg->coalesce_max) {
            limit = cfg->coalesce_max;
        }
        if (queued + len <= limit || queued > 0) {
            wq = defer(st, cfg, engine, v, wq, data);
            if (wq == NULL) {
                return NULL;
            }
            if (queued + len <= limit && wq->count < FS_IOV) {
                Py_RETURN_NONE;             /* leaves at the flush */
            }
            /* Over the limit: all of it leaves now, in order. */
            Py_INCREF(wq);
            rc = flush_queue(cfg, wq);
            Py_DECREF(wq);
            if (rc < 0) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
        /* Alone over the limit: sent at once, below. */
    }
    /* Not deferred: what was deferred before goes first. */
    if (wq != NULL && wq->size > 0) {
        Py_INCREF(wq);
        rc = flush_queue(cfg, wq);
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
    rc = transport_fd(cfg, v, &fd);
    if (rc <= 0) {
        return rc < 0 ? NULL : stock_write(cfg, t, data);
    }
    p = PyBytes_CheckExact(data) ? PyBytes_AS_STRING(data)
                                 : PyByteArray_AS_STRING(data);
    fs_aio_stats.sends++;
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

/* aio_write(transport, data): FastSocketTransport.write. */
PyObject *
fs_aio_write(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    fs_module_state *st = PyModule_GetState(module);
    AioConfig *cfg = fs_aio_config(st);
    PyObject *result;
    tview v;

    if (cfg == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "engine not configured");
        return NULL;
    }
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "write() takes exactly one argument "
                     "(%zd given)", nargs - 1);
        return NULL;
    }
    if (!Py_IS_TYPE(args[0], cfg->fast_transport_type)) {
        /* A subclass of FastSocketTransport: the stock write(). */
        return stock_write(cfg, args[0], args[1]);
    }
    Py_INCREF(args[0]);
    if (topen(cfg, &v, args[0]) < 0) {
        Py_DECREF(args[0]);
        return NULL;
    }
    result = write_impl(st, cfg, &v, args[1]);
    tview_close(&v);
    Py_DECREF(args[0]);
    return result;
}

/* aio_is_closing(transport): FastSocketTransport.is_closing, which is
 * the stock "return self._closing", in place. */
PyObject *
fs_aio_is_closing(PyObject *module, PyObject *t)
{
    fs_module_state *st = PyModule_GetState(module);
    AioConfig *cfg = fs_aio_config(st);
    tview v;
    PyObject *value;

    if (cfg == NULL || !Py_IS_TYPE(t, cfg->fast_transport_type)) {
        return PyObject_GetAttr(t, fs_aio_names._closing);
    }
    if (topen(cfg, &v, t) < 0) {
        return NULL;
    }
    value = tfield(&v, FS_F_CLOSING);
    tview_close(&v);
    return value;
}

/* The offsets of FastSocketTransport's slots (aio_loop.c's setup). */
int
fs_aio_fast_slots(AioConfig *cfg, Py_ssize_t (*slot_offset)(PyTypeObject *,
                                                             PyObject *))
{
    int i;
    cfg->fast_slots = 1;
    for (i = 0; i < FS_NFIELDS; i++) {
        cfg->fast_off[i] = slot_offset(cfg->fast_transport_type,
                                       *field_name(i));
        if (cfg->fast_off[i] < 0) {
            cfg->fast_slots = 0;
        }
    }
    return 0;
}

int
fs_aio_transport_init(PyObject *module, fs_module_state *state)
{
    state->aio_wq_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &AioWriteQueue_spec, NULL);
    return state->aio_wq_type == NULL ? -1 : 0;
}
