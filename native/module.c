/* dataio._native: the module object, initialised in phases (PEP 489). Each part registers its types and functions:
 *   kernel.c  ImageKernel: batch decode -> crop -> resize -> flip -> normalise on a native thread pool (pool.c)
 *   calls.c   decode_into, jpeg_headers, crop_windows (windows.c), jpeg_end, simd, the status constants
 *   ring.c    Ring: bounded lock-free SPSC / MPMC hand-off of Python objects (ring_core.h), waits without the GIL
 * forks.c counts forks, so that objects a forked child inherited can tell (see forks.h for the fork rules).
 *
 * Bindings (Python.h) and cores (no Python.h) are separate files: kernel.c, calls.c, ring.c and module.c bind;
 * pool.c, jpeg_window.c, jpeg_end.c, windows.c, ring_core.h, args.c and forks.c compute. docs/native.md has the map.
 *
 * What this module declares about itself, and why (docs/native.md, "Interpreters and the GIL"):
 *   - the GIL is used (Py_mod_gil = Py_MOD_GIL_USED on interpreters that know the slot): the bindings read and
 *     write their objects' fields (an ImageKernel's thread count and closed state, a Ring's owner process) and the
 *     module's one exception object under the GIL, and were not audited for a free-threaded build. The heavy work
 *     already runs without the GIL (one release per batch, blocking ring waits);
 *   - one interpreter per process (Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED where the slot exists): its types
 *     are static and its native state (thread pools, the decode-context cache, fork handlers) is per process.
 *     Loading it again in the same interpreter (a second module object) shares that state, which is safe.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>

#include "calls.h"
#include "forks.h"
#include "kernel.h"
#include "ring.h"

static int native_exec(PyObject *m) {
    int rc = forks_init();
    if (rc != 0) {
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (dataio_kernel_register(m) < 0 || dataio_calls_register(m) < 0 || dataio_ring_register(m) < 0) return -1;
    return 0;
}

static PyModuleDef_Slot native_slots[] = {
    {Py_mod_exec, native_exec},
#ifdef Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_MOD_GIL_USED
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "dataio._native",
    .m_doc = "dataio's native parts: the batch image kernel and lock-free rings. Use them through "
             "dataio.loaders.native, which falls back to Python when this module is missing.",
    .m_size = 0,
    .m_slots = native_slots,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModuleDef_Init(&native_module); }
