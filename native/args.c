/* Argument checks shared by the module's functions (see args.h). */
#define PY_SSIZE_T_CLEAN
#include "args.h"

#include <string.h>

static const char *skip_order(const char *f) { return f[0] == '<' || f[0] == '=' || f[0] == '@' ? f + 1 : f; }

char args_format(const Py_buffer *view) { return skip_order(view->format ? view->format : "B")[0]; }

int args_buffer(PyObject *obj, Py_buffer *view, const char *name, int writable) {
    int flags = PyBUF_FORMAT | PyBUF_ND | PyBUF_C_CONTIGUOUS;
    if (PyObject_GetBuffer(obj, view, flags | (writable ? PyBUF_WRITABLE : 0)) == 0) return 0;
    PyErr_Clear();
    if (writable && PyObject_GetBuffer(obj, view, flags) == 0) { /* it is one, but read-only */
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError,
                     "%s is read-only: the results are written into it (pass a writable array, e.g. a copy)", name);
        return -1;
    }
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous%s array (numpy)", name, writable ? " writable" : "");
    return -1;
}

int args_array(PyObject *obj, Py_buffer *view, const char *name, const char *formats, int ndim, int writable) {
    if (args_buffer(obj, view, name, writable) < 0) return -1;
    const char *f = skip_order(view->format ? view->format : "B");
    if (view->ndim != ndim || f[0] == '\0' || f[1] != '\0' || strchr(formats, f[0]) == NULL) {
        PyErr_Format(PyExc_TypeError, "%s must be a %d-d array of format %s, got %d-d '%s'", name, ndim, formats,
                     view->ndim, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

int args_triple(PyObject *obj, float out[3], const char *name) {
    PyObject *seq = PySequence_Fast(obj, "");
    if (seq == NULL || PySequence_Fast_GET_SIZE(seq) != 3) {
        Py_XDECREF(seq);
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s must be three numbers", name);
        return -1;
    }
    for (int c = 0; c < 3; c++) {
        double v = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, c));
        if (v == -1.0 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
        out[c] = (float)v;
    }
    Py_DECREF(seq);
    return 0;
}
