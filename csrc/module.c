/* fastselectors._native: module init (multi-phase, heap types, state). */
#include "fastselectors.h"

static int
native_exec(PyObject *module)
{
    fs_module_state *state = PyModule_GetState(module);
    int i;

    for (i = 0; i < FS_READY_MAX; i++) {
        state->ready[i] = PyLong_FromLong(i);
        if (state->ready[i] == NULL) {
            return -1;
        }
    }
    if (fs_epoll_core_init(module, state) < 0
            || fs_poll_core_init(module, state) < 0
            || fs_aio_init(module, state) < 0) {
        return -1;
    }
    return 0;
}

static int
native_traverse(PyObject *module, visitproc visit, void *arg)
{
    fs_module_state *state = PyModule_GetState(module);
    int i;
    Py_VISIT(state->epoll_core_type);
    Py_VISIT(state->poll_core_type);
    Py_VISIT(state->rebuild_hook);
    Py_VISIT(state->aio_engine_type);
    Py_VISIT(state->aio_config_type);
    Py_VISIT(state->aio_wq_type);
    Py_VISIT(state->aio_config);
    for (i = 0; i < FS_READY_MAX; i++) {
        Py_VISIT(state->ready[i]);
    }
    return 0;
}

static int
native_clear(PyObject *module)
{
    fs_module_state *state = PyModule_GetState(module);
    int i;
    Py_CLEAR(state->epoll_core_type);
    Py_CLEAR(state->poll_core_type);
    Py_CLEAR(state->rebuild_hook);
    Py_CLEAR(state->aio_engine_type);
    Py_CLEAR(state->aio_config_type);
    Py_CLEAR(state->aio_wq_type);
    Py_CLEAR(state->aio_config);
    for (i = 0; i < FS_READY_MAX; i++) {
        Py_CLEAR(state->ready[i]);
    }
    return 0;
}

fs_module_state *
fs_state_of(PyTypeObject *type)
{
    return (fs_module_state *)PyType_GetModuleState(type);
}

static void
native_free(void *module)
{
    native_clear((PyObject *)module);
}

/* set_rebuild_hook(fn): fn(epfd) is called after an epoll core rebuilt
 * its instance at epfd (epoll_core.c, rebuild()). */
static PyObject *
set_rebuild_hook(PyObject *module, PyObject *hook)
{
    fs_module_state *state = PyModule_GetState(module);
    if (!PyCallable_Check(hook)) {
        PyErr_SetString(PyExc_TypeError, "the hook must be callable");
        return NULL;
    }
    Py_INCREF(hook);
    Py_XSETREF(state->rebuild_hook, hook);
    Py_RETURN_NONE;
}

static PyMethodDef native_methods[] = {
    {"set_rebuild_hook", set_rebuild_hook, METH_O,
     "set_rebuild_hook(fn): fn(epfd) after an epoll core's rebuild."},
    {NULL, NULL, 0, NULL}
};

static PyModuleDef_Slot native_slots[] = {
    {Py_mod_exec, native_exec},
#ifdef Py_GIL_DISABLED
    /* Every core method runs in a critical section (fastselectors.h); the
     * module state is immutable after exec. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL}
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fastselectors._native",
    .m_doc = "The native tier of fastselectors: epoll and poll cores in C.",
    .m_size = sizeof(fs_module_state),
    .m_methods = native_methods,
    .m_slots = native_slots,
    .m_traverse = native_traverse,
    .m_clear = native_clear,
    .m_free = native_free,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModuleDef_Init(&native_module);
}
