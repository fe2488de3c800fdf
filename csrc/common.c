/* Argument and timeout helpers shared by the cores. */
#include "fastselectors.h"
#include "pythread.h"

#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <unistd.h>

PyObject *
fs_closed_error(void)
{
    /* The error the stdlib EpollSelector gives (from its closed epoll). */
    PyErr_SetString(PyExc_ValueError, "I/O operation on closed selector");
    return NULL;
}

/* pipe() with both ends close-on-exec (and non-blocking if asked): a
 * waker must not leak into exec'd children.  On Linux pipe2() (glibc 2.9):
 * fcntl() there compiles to fcntl64, new in glibc 2.28, which a
 * manylinux2014 wheel (glibc 2.17) must not need (.ci/check-wheel). */
int
fs_pipe_cloexec(int fds[2], int nonblock)
{
#ifdef __linux__
    return pipe2(fds, O_CLOEXEC | (nonblock ? O_NONBLOCK : 0));
#else
    if (pipe(fds) < 0) {
        return -1;
    }
    (void)fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    (void)fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    if (nonblock) {
        (void)fcntl(fds[0], F_SETFL, O_NONBLOCK);
        (void)fcntl(fds[1], F_SETFL, O_NONBLOCK);
    }
    return 0;
#endif
}

/* The read end of a process-wide pipe holding one byte that nobody reads:
 * added to an epoll instance, it wakes every thread waiting on it (the
 * kick: epoll_core.c).  Made once (with the GIL held, or a lost race leaks
 * one pipe); inherited by forked children, where it is just as readable.
 * -1 if no pipe could be made (EMFILE). */
int
fs_always_readable_fd(void)
{
    static int readable = -1;
    int fds[2];

    if (readable >= 0) {
        return readable;
    }
    if (fs_pipe_cloexec(fds, 0) < 0) {
        return -1;
    }
    if (write(fds[1], "", 1) != 1) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    close(fds[1]);
    readable = fds[0];
    return readable;
}

/* The table every core shares with its selector (core.keys: fd -> key, the
 * selector's map): one truth, so select() can never report a key the map
 * does not hold.  Its keys are exact ints made here, never the caller's
 * object: no user __hash__/__eq__ runs.  fs_keys_set: -1 with an exception
 * (MemoryError).  fs_keys_del cannot fail for an fd that is there; the
 * caller holds another reference to the key, so no finalizer runs. */
int
fs_keys_set(PyObject *keys, int fd, PyObject *key)
{
    PyObject *fd_obj = PyLong_FromLong(fd);
    int rc;
    if (fd_obj == NULL) {
        return -1;
    }
    rc = PyDict_SetItem(keys, fd_obj, key);
    Py_DECREF(fd_obj);
    return rc;
}

void
fs_keys_del(PyObject *keys, int fd)
{
    PyObject *fd_obj = PyLong_FromLong(fd);
    if (fd_obj == NULL || PyDict_DelItem(keys, fd_obj) < 0) {
        PyErr_Clear();      /* MemoryError for fd_obj: cannot be there */
    }
    Py_XDECREF(fd_obj);
}

/* obj < 0 for an int too large for a C long (only on error paths). */
static int
fs_is_negative(PyObject *obj)
{
    PyObject *zero = PyLong_FromLong(0);
    int negative;
    if (zero == NULL) {
        PyErr_Clear();
        return 1;
    }
    negative = PyObject_RichCompareBool(obj, zero, Py_LT);
    Py_DECREF(zero);
    if (negative < 0) {
        PyErr_Clear();
        return 1;
    }
    return negative;
}

/* maxevents as select()/dispatch() and the cores' default take it: None
 * (-> 0, "every ready fd") or an int >= 1 (clamped to INT_MAX). */
int
fs_maxevents_converter(PyObject *obj, int *maxevents)
{
    long value;

    if (obj == Py_None) {
        *maxevents = 0;
        return 0;
    }
    if (!PyLong_Check(obj) || PyBool_Check(obj)) {
        PyErr_Format(PyExc_TypeError,
                     "maxevents must be an int or None, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    value = PyLong_AsLong(obj);
    if (value == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return -1;
        }
        PyErr_Clear();
        /* Huge: as many as there are; hugely negative: invalid. */
        value = fs_is_negative(obj) ? -1 : INT_MAX;
    }
    if (value < 1) {
        PyErr_Format(PyExc_ValueError,
                     "maxevents must be at least 1, got %ld", value);
        return -1;
    }
    *maxevents = value > INT_MAX ? INT_MAX : (int)value;
    return 0;
}

/* Parse (timeout=None, maxevents=None) from a vectorcall without building a
 * tuple or a dict: this runs on every select() and dispatch(). */
int
fs_parse_select_args(const char *fname, PyObject *const *args,
                     Py_ssize_t nargs, PyObject *kwnames, PyObject **timeout,
                     int *maxevents)
{
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames), i;
    PyObject *maxevents_obj = Py_None;

    *timeout = Py_None;
    *maxevents = 0;
    if (nargs == 1 && nkw == 0) {   /* the common call: select(timeout) */
        *timeout = args[0];
        return 0;
    }
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes at most 2 arguments (%zd given)",
                     fname, nargs);
        return -1;
    }
    if (nargs >= 1) {
        *timeout = args[0];
    }
    if (nargs == 2) {
        maxevents_obj = args[1];
    }
    for (i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(name, "timeout") == 0
                && nargs < 1) {
            *timeout = args[nargs + i];
        }
        else if (PyUnicode_CompareWithASCIIString(name, "maxevents") == 0
                 && nargs < 2) {
            maxevents_obj = args[nargs + i];
        }
        else {
            PyErr_Format(PyExc_TypeError,
                         "%s() got an unexpected or repeated keyword "
                         "argument '%U'", fname, name);
            return -1;
        }
    }
    return fs_maxevents_converter(maxevents_obj, maxevents);
}

long long
fs_now_ns(void)
{
    struct timespec ts;
    /* CLOCK_MONOTONIC cannot fail with a valid clock id and pointer. */
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Seconds (None, int or float) -> milliseconds, with the stdlib's rules:
 * None waits forever, <= 0 polls, anything else rounds *up* so the wait is
 * never shorter than asked; NaN is a ValueError, more than INT_MAX ms an
 * OverflowError, a non-number a TypeError. */
int
fs_timeout_init(fs_timeout *t, PyObject *timeout)
{
    double seconds, ms;

    if (timeout == Py_None) {
        t->ms = -1;
        return 0;
    }
    if (!PyFloat_Check(timeout) && !PyLong_Check(timeout)) {
        /* Anything else goes through the stdlib's own arithmetic
         * (``timeout <= 0``, then ``math.ceil(timeout * 1e3)``), so that
         * the same objects pass and fail: a Fraction passes, a Decimal
         * (Decimal * float) or an object with only __float__ is a
         * TypeError. */
        PyObject *zero = PyLong_FromLong(0), *thousand, *product;
        int poll;
        if (zero == NULL) {
            return -1;
        }
        poll = PyObject_RichCompareBool(timeout, zero, Py_LE);
        Py_DECREF(zero);
        if (poll != 0) {
            t->ms = 0;
            return poll < 0 ? -1 : 0;
        }
        thousand = PyFloat_FromDouble(1e3);
        if (thousand == NULL) {
            return -1;
        }
        product = PyNumber_Multiply(timeout, thousand);
        Py_DECREF(thousand);
        if (product == NULL) {
            return -1;
        }
        seconds = PyFloat_AsDouble(product);
        Py_DECREF(product);
        if (seconds == -1.0 && PyErr_Occurred()) {
            return -1;
        }
        seconds *= 1e-3;
    }
    else {
        seconds = PyFloat_AsDouble(timeout);
    }
    if (seconds == -1.0 && PyErr_Occurred()) {
        /* An int too large for a double: the stdlib still treats a
         * negative one as "poll" since it compares before converting. */
        if (PyLong_Check(timeout)
                && PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyObject *zero = PyLong_FromLong(0);
            int negative;
            if (zero == NULL) {
                return -1;
            }
            negative = PyObject_RichCompareBool(timeout, zero, Py_LT);
            Py_DECREF(zero);
            if (negative == 1) {
                PyErr_Clear();
                t->ms = 0;
                return 0;
            }
        }
        return -1;
    }
    if (isnan(seconds)) {
        PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
        return -1;
    }
    if (seconds <= 0) {
        t->ms = 0;
        return 0;
    }
    ms = ceil(seconds * 1e3);
    if (!(ms <= (double)INT_MAX)) {
        PyErr_SetString(PyExc_OverflowError, "timeout is too large");
        return -1;
    }
    t->ms = (int)ms;
    /* Where the kernel takes nanoseconds (epoll_pwait2, ppoll): the exact
     * request, rounded up to the nanosecond; never more than t->ms. */
    t->ns = (long long)ceil(seconds * 1e9);
    if (t->ns > (long long)t->ms * 1000000LL) {
        t->ns = (long long)t->ms * 1000000LL;
    }
    t->deadline_ns = fs_now_ns() + t->ns;
    return 0;
}

/* After EINTR: update the time left until the deadline (ns, and ms rounded
 * up) and return the ms; 0 once it has passed; -1 stays "forever". */
int
fs_timeout_remaining(fs_timeout *t)
{
    long long left_ns;

    if (t->ms <= 0) {
        return t->ms;
    }
    left_ns = t->deadline_ns - fs_now_ns();
    if (left_ns <= 0) {
        t->ns = 0;
        t->ms = 0;
        return 0;
    }
    t->ns = left_ns;
    t->ms = (int)((left_ns + 999999LL) / 1000000LL);
    return t->ms;
}

/* A file descriptor as the stdlib's select.epoll/select.poll take it: an int
 * (bool included), >= 0, fitting a C int (OverflowError otherwise). */
int
fs_fd_converter(PyObject *obj, int *fd)
{
    long value;

    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "fd must be an int, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
#if PY_VERSION_HEX >= 0x030D0000
    /* Python 3.13's select.epoll/select.poll warn here: so do we. */
    if (PyBool_Check(obj)
            && PyErr_WarnEx(PyExc_RuntimeWarning,
                            "bool is used as a file descriptor", 1) < 0) {
        return -1;
    }
#endif
    value = PyLong_AsLong(obj);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < 0) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %ld", value);
        return -1;
    }
    if (value > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError,
                        "file descriptor is greater than maximum");
        return -1;
    }
    *fd = (int)value;
    return 0;
}

/* An events mask; the Python layer validated it, we keep only known bits. */
int
fs_events_converter(PyObject *obj, unsigned int *events)
{
    long value;

    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "events must be an int, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    value = PyLong_AsLong(obj);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value <= 0 || (value & ~(long)FS_VALID_EVENTS)
            || !(value & FS_READINESS)) {
        PyErr_Format(PyExc_ValueError, "Invalid events: %ld", value);
        return -1;
    }
    *events = (unsigned int)value;
    return 0;
}

int
fs_check_no_args(const char *name, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwds != NULL && PyDict_GET_SIZE(kwds))) {
        PyErr_Format(PyExc_TypeError, "%s() takes no arguments", name);
        return -1;
    }
    return 0;
}

/* The behaviour a core class declares (_types.Core), read by
 * _selectors.make_selector: SUPPORTED, REREGISTER_ON_MODIFY,
 * FD_RANGE_BEFORE_CLOSED. */
int
fs_set_class_flags(PyTypeObject *type, unsigned int supported,
                   int reregister_on_modify, int fd_range_before_closed)
{
    PyObject *value = PyLong_FromUnsignedLong(supported);
    int rc;
    if (value == NULL) {
        return -1;
    }
    rc = PyObject_SetAttrString((PyObject *)type, "SUPPORTED", value);
    Py_DECREF(value);
    if (rc < 0
            || PyObject_SetAttrString((PyObject *)type, "REREGISTER_ON_MODIFY",
                                      reregister_on_modify ? Py_True
                                                           : Py_False) < 0
            || PyObject_SetAttrString((PyObject *)type,
                                      "FD_RANGE_BEFORE_CLOSED",
                                      fd_range_before_closed ? Py_True
                                                             : Py_False) < 0) {
        return -1;
    }
    return 0;
}

/* stats(reset=False) -> dict, the names of _pycore.STAT_NAMES. */
PyObject *
fs_stats_get(fs_stats *stats, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    PyObject *reset_obj = Py_False, *result;
    int reset;

    if (nargs > 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 1)
            || (nargs == 1 && kwnames != NULL
                && PyTuple_GET_SIZE(kwnames) > 0)) {
        PyErr_SetString(PyExc_TypeError,
                        "stats() takes at most 1 argument (reset)");
        return NULL;
    }
    if (nargs == 1) {
        reset_obj = args[0];
    }
    else if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) == 1) {
        if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0),
                                             "reset") != 0) {
            PyErr_Format(PyExc_TypeError,
                         "stats() got an unexpected keyword argument '%U'",
                         PyTuple_GET_ITEM(kwnames, 0));
            return NULL;
        }
        reset_obj = args[0];
    }
    reset = PyObject_IsTrue(reset_obj);
    if (reset < 0) {
        return NULL;
    }
    result = Py_BuildValue(
        "{sKsKsKsKsKsKsKsd}",
        "waits", stats->waits, "empty_waits", stats->empty_waits,
        "events", stats->events, "callbacks", stats->callbacks,
        "max_batch", stats->max_batch, "full_batches", stats->full_batches,
        "rebuilds", stats->rebuilds,
        "idle_time", (double)stats->idle_ns * 1e-9);
    if (result != NULL && reset) {
        memset(stats, 0, sizeof(*stats));
    }
    return result;
}

PyObject *
fs_maxevents_get(int maxevents)
{
    if (maxevents <= 0) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLong(maxevents);
}

/* (fd, events, key) of a core's register()/modify(). */
int
fs_parse_fd_events(const char *name, PyObject *const *args, Py_ssize_t nargs,
                   int *fd, unsigned int *events)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes exactly 3 arguments (%zd given)",
                     name, nargs);
        return -1;
    }
    if (fs_fd_converter(args[0], fd) < 0
            || fs_events_converter(args[1], events) < 0) {
        return -1;
    }
    return 0;
}

/* dispatch() runs in one thread at a time per core, and never re-enters
 * from its own callbacks: claim *dthread for this thread, or raise. */
int
fs_dispatch_enter(unsigned long *dthread)
{
    unsigned long me = PyThread_get_thread_ident();
    if (*dthread != 0) {
        PyErr_SetString(PyExc_RuntimeError, *dthread == me
            ? "dispatch() called from a dispatch() callback of the same "
              "selector"
            : "dispatch() is already running in another thread on this "
              "selector");
        return -1;
    }
    *dthread = me;
    return 0;
}

/* select() from a dispatch() callback of the same core is refused. */
int
fs_check_not_in_callback(unsigned long dthread, const char *name)
{
    if (dthread != 0 && dthread == PyThread_get_thread_ident()) {
        PyErr_Format(PyExc_RuntimeError,
                     "%s() called from a dispatch() callback of the same "
                     "selector", name);
        return -1;
    }
    return 0;
}
