/* The batch image kernel (kernel.c): registers dataio._native.ImageKernel on the module. */
#ifndef DATAIO_KERNEL_H
#define DATAIO_KERNEL_H
#include <Python.h>

int dataio_kernel_register(PyObject *module);

#endif
