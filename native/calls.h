/* The module's one-call functions (calls.c): decode_into, jpeg_headers, crop_windows, simd, and the status
 * constants. */
#ifndef DATAIO_CALLS_H
#define DATAIO_CALLS_H
#include <Python.h>

int dataio_calls_register(PyObject *module);

#endif
