/* Argument checks shared by the module's functions (args.c). All run with the GIL held. */
#ifndef DATAIO_ARGS_H
#define DATAIO_ARGS_H
#include <Python.h>

/* A C-contiguous buffer of obj with its format and shape. writable: a read-only array is refused as such
 * (ValueError), anything else that is not a C-contiguous array is a TypeError. 0, or -1 with an exception set and
 * nothing held. */
int args_buffer(PyObject *obj, Py_buffer *view, const char *name, int writable);
/* A C-contiguous buffer of obj with ndim dimensions and a one-letter format in `formats` (byte-order prefixes
 * '<', '=', '@' allowed). writable: a read-only array is refused as such. 0, or -1 with an exception set and
 * nothing held. */
int args_array(PyObject *obj, Py_buffer *view, const char *name, const char *formats, int ndim, int writable);
/* The format letter of a view that args_array accepted (byte-order prefix skipped). */
char args_format(const Py_buffer *view);
/* Three numbers (scale, shift) as float32. 0, or -1 with an exception set. */
int args_triple(PyObject *obj, float out[3], const char *name);

#endif
