/* dataio._native: the module object. Each part registers its types and functions here:
 *   kernel.c  ImageKernel: batch decode -> crop -> resize -> flip -> normalise on a native thread pool (pool.c)
 *   calls.c   decode_into, jpeg_headers, crop_windows (windows.c), simd, the status constants
 *   ring.c    Ring: bounded lock-free SPSC / MPMC hand-off of Python objects, blocking waits without the GIL
 * forks.c counts forks, so that objects a forked child inherited can tell (see forks.h for the fork rules).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>

#include "calls.h"
#include "forks.h"
#include "kernel.h"
#include "ring.h"

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "dataio._native",
    .m_doc = "dataio's native parts: the batch image kernel and lock-free rings. Use them through "
             "dataio.loaders.native, which falls back to Python when this module is missing.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__native(void) {
    int rc = forks_init();
    if (rc != 0) {
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL) return NULL;
    if (dataio_kernel_register(m) < 0 || dataio_calls_register(m) < 0 || dataio_ring_register(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
