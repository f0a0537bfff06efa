/* Lock-free bounded rings (ring.c): registers dataio._native.Ring and dataio._native.RingClosed on the module. */
#ifndef DATAIO_RING_H
#define DATAIO_RING_H
#include <Python.h>

int dataio_ring_register(PyObject *module);

#endif
