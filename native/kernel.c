/* dataio._native.ImageKernel: whole batches of JPEGs decoded, cropped, resized, flipped and normalised on a pool of
 * native threads, with the GIL released once per call; and jpeg_headers(): a batch of headers the same way.
 *
 * Python prepares each batch (record buffers, each sample's crop box and flip from ImagePipeline.window, the output
 * rows) and calls run() once; the call validates every argument with the GIL held, releases it, and returns a
 * list with None for each image written and (status, message) for each left to the Python path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jpeg_end.h"
#include "jpeg_window.h"
#include "kernel.h"
#include "pool.h"
#include "windows.h"

typedef struct {
    PyObject_HEAD
    Pool pool;
    int threads;
    int closed;
} Kernel;

/* One run(): the images and where their pixels go. */
typedef struct {
    Py_buffer *views;
    const double *boxes;
    const uint8_t *flips;
    const int64_t *rows;
    int *status;
    char *msgs;
    DwTask base; /* out_w/out_h, crop_first, normalisation; per-image fields filled per item */
    uint8_t *out;
    size_t row_bytes;
    int is_float;
} Batch;

static void run_item(Job *job, int i, DecodeCtx *ctx) {
    Batch *b = job->arg;
    DwTask task = b->base;
    memcpy(task.box, &b->boxes[4 * (size_t)i], sizeof(task.box));
    task.flip = b->flips[i] != 0;
    uint8_t *row = b->out + (size_t)b->rows[i] * b->row_bytes;
    if (b->is_float)
        task.out_f32 = (float *)row;
    else
        task.out_u8 = row;
    b->status[i] = dw_process(ctx, b->views[i].buf, (size_t)b->views[i].len, &task, &b->msgs[(size_t)i * DW_MSG_LEN]);
}

/* --- argument checking ------------------------------------------------------------------------------------------ */

static int get_array(PyObject *obj, Py_buffer *view, const char *name, const char *formats, int ndim, int flags) {
    if (PyObject_GetBuffer(obj, view, flags | PyBUF_FORMAT | PyBUF_ND | PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous array (numpy)", name);
        return -1;
    }
    const char *f = view->format ? view->format : "B";
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    if (view->ndim != ndim || f[0] == '\0' || f[1] != '\0' || strchr(formats, f[0]) == NULL) {
        PyErr_Format(PyExc_TypeError, "%s must be a %d-d array of format %s, got %d-d '%s'", name, ndim, formats,
                     view->ndim, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int get_triple(PyObject *obj, float out[3], const char *name) {
    PyObject *seq = PySequence_Fast(obj, "");
    if (seq == NULL || PySequence_Fast_GET_SIZE(seq) != 3) {
        Py_XDECREF(seq);
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

/* --- ImageKernel ------------------------------------------------------------------------------------------------ */

static int Kernel_init(Kernel *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"threads", NULL};
    int threads = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|i", kwlist, &threads)) return -1;
    if (threads < 1 || threads > POOL_MAX_THREADS) {
        PyErr_Format(PyExc_ValueError, "threads must be in 1..%d, got %d", POOL_MAX_THREADS, threads);
        return -1;
    }
    if (self->threads != 0) {
        PyErr_SetString(PyExc_RuntimeError, "ImageKernel is already initialised");
        return -1;
    }
    if (pool_init(&self->pool) != 0) {
        PyErr_SetString(PyExc_OSError, "cannot initialise the thread pool's locks");
        return -1;
    }
    self->threads = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pool_set_threads(&self->pool, threads);
    Py_END_ALLOW_THREADS
    if (rc != 0 && self->pool.started == 0) {
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->threads = threads;
    return 0;
}

static void kernel_close(Kernel *self) {
    if (self->closed || self->threads == 0) return;
    self->closed = 1;
    Py_BEGIN_ALLOW_THREADS
    pool_stop(&self->pool);
    Py_END_ALLOW_THREADS
}

static void Kernel_dealloc(Kernel *self) {
    kernel_close(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Kernel_close(Kernel *self, PyObject *noargs) {
    kernel_close(self);
    Py_RETURN_NONE;
}

static int check_open(Kernel *self) {
    if (self->threads == 0 || self->closed) {
        PyErr_SetString(PyExc_ValueError, "ImageKernel is closed");
        return -1;
    }
    return 0;
}

static PyObject *Kernel_set_threads(Kernel *self, PyObject *arg) {
    if (check_open(self) < 0) return NULL;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 1 || n > POOL_MAX_THREADS) return PyErr_Format(PyExc_ValueError, "threads must be in 1..%d", POOL_MAX_THREADS);
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pool_set_threads(&self->pool, (int)n);
    Py_END_ALLOW_THREADS
    if (rc != 0 && self->pool.started == 0) {
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    self->threads = self->pool.active;
    Py_RETURN_NONE;
}

static PyObject *batch_result(Batch *b, Py_ssize_t n) {
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item;
        if (b->status[i] == DW_OK) {
            item = Py_NewRef(Py_None);
        } else {
            item = Py_BuildValue("(is)", b->status[i], &b->msgs[(size_t)i * DW_MSG_LEN]);
            if (item == NULL) {
                Py_DECREF(out);
                return NULL;
            }
        }
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

/* Validates the arrays of run() against each other and the output (GIL held); fills b. */
static int check_batch(Batch *b, Py_ssize_t n, Py_buffer *box_v, Py_buffer *flip_v, Py_buffer *row_v, Py_buffer *out_v) {
    if (box_v->shape[0] != n || box_v->shape[1] != 4 || flip_v->shape[0] != n || row_v->shape[0] != n) {
        PyErr_Format(PyExc_ValueError, "boxes (n, 4), flips (n,) and rows (n,) must match the %zd images", n);
        return -1;
    }
    if (out_v->readonly || out_v->shape[1] != 3 || out_v->shape[2] < 1 || out_v->shape[3] < 1 ||
        out_v->shape[2] > 65535 || out_v->shape[3] > 65535) {
        PyErr_SetString(PyExc_ValueError, "out must be a writable (N, 3, H, W) array with 1 <= H, W <= 65535");
        return -1;
    }
    Py_ssize_t capacity = out_v->shape[0];
    const int64_t *rows = row_v->buf;
    char *seen = PyMem_Calloc(capacity > 0 ? (size_t)capacity : 1, 1);
    if (seen == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (rows[i] < 0 || rows[i] >= capacity || seen[rows[i]]) {
            PyMem_Free(seen);
            PyErr_Format(PyExc_ValueError, "rows[%zd] = %lld is outside out's %zd rows or repeated", i,
                         (long long)rows[i], capacity);
            return -1;
        }
        seen[rows[i]] = 1;
    }
    PyMem_Free(seen);
    b->boxes = box_v->buf;
    b->flips = flip_v->buf;
    b->rows = rows;
    b->out = out_v->buf;
    b->base.out_h = (int)out_v->shape[2];
    b->base.out_w = (int)out_v->shape[3];
    b->row_bytes = (size_t)out_v->itemsize * 3 * (size_t)out_v->shape[2] * (size_t)out_v->shape[3];
    const char *f = out_v->format;
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    b->is_float = f[0] == 'f';
    return 0;
}

static PyObject *Kernel_run(Kernel *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"data", "boxes", "flips", "out", "rows", "crop_first", "scale", "shift", NULL};
    PyObject *data, *boxes, *flips, *out, *rows, *scale = NULL, *shift = NULL;
    int crop_first;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOp|OO", kwlist, &data, &boxes, &flips, &out, &rows,
                                     &crop_first, &scale, &shift))
        return NULL;
    if (check_open(self) < 0) return NULL;
    PyObject *seq = PySequence_Fast(data, "data must be a sequence of bytes-like objects");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > (1 << 24)) {
        Py_DECREF(seq);
        return PyErr_Format(PyExc_ValueError, "a batch of %zd images is over the limit of %d", n, 1 << 24);
    }
    Batch b;
    memset(&b, 0, sizeof(b));
    Py_buffer box_v, flip_v, row_v, out_v;
    int have_box = 0, have_flip = 0, have_row = 0, have_out = 0;
    Py_ssize_t got = 0;
    PyObject *result = NULL;
    if (get_array(boxes, &box_v, "boxes", "d", 2, PyBUF_SIMPLE) < 0) goto finally;
    have_box = 1;
    if (get_array(flips, &flip_v, "flips", "B?", 1, PyBUF_SIMPLE) < 0) goto finally;
    have_flip = 1;
    if (get_array(rows, &row_v, "rows", "ql", 1, PyBUF_SIMPLE) < 0) goto finally;
    have_row = 1;
    if (row_v.itemsize != 8) {
        PyErr_SetString(PyExc_TypeError, "rows must be int64");
        goto finally;
    }
    if (get_array(out, &out_v, "out", "Bf", 4, PyBUF_WRITABLE) < 0) goto finally;
    have_out = 1;
    if (check_batch(&b, n, &box_v, &flip_v, &row_v, &out_v) < 0) goto finally;
    b.base.crop_first = crop_first;
    b.base.scale[0] = b.base.scale[1] = b.base.scale[2] = 1.0f;
    if (b.is_float) {
        if (scale == NULL || shift == NULL) {
            PyErr_SetString(PyExc_ValueError, "a float32 out needs scale and shift (three numbers each)");
            goto finally;
        }
        if (get_triple(scale, b.base.scale, "scale") < 0 || get_triple(shift, b.base.shift, "shift") < 0) goto finally;
    }
    b.views = PyMem_Calloc(n > 0 ? (size_t)n : 1, sizeof(Py_buffer));
    b.status = PyMem_Calloc(n > 0 ? (size_t)n : 1, sizeof(int));
    b.msgs = PyMem_Calloc(n > 0 ? (size_t)n : 1, DW_MSG_LEN);
    if (b.views == NULL || b.status == NULL || b.msgs == NULL) {
        PyErr_NoMemory();
        goto finally;
    }
    for (; got < n; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, got), &b.views[got], PyBUF_SIMPLE) < 0) {
            PyErr_Format(PyExc_TypeError, "data[%zd] is not a contiguous bytes-like object", got);
            goto finally;
        }
    }
    Job job;
    memset(&job, 0, sizeof(job));
    job.fn = run_item;
    job.arg = &b;
    job.n = (int)n;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pool_run(&self->pool, &job);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        PyErr_SetString(PyExc_RuntimeError, "ImageKernel has no running threads (closed)");
        goto finally;
    }
    result = batch_result(&b, n);
finally:
    for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&b.views[i]);
    PyMem_Free(b.views);
    PyMem_Free(b.status);
    PyMem_Free(b.msgs);
    if (have_box) PyBuffer_Release(&box_v);
    if (have_flip) PyBuffer_Release(&flip_v);
    if (have_row) PyBuffer_Release(&row_v);
    if (have_out) PyBuffer_Release(&out_v);
    Py_DECREF(seq);
    return result;
}

static PyObject *Kernel_get_threads(Kernel *self, void *closure) { return PyLong_FromLong(self->threads); }

static PyObject *Kernel_get_busy(Kernel *self, void *closure) {
    return PyFloat_FromDouble((double)atomic_load(&self->pool.busy_ns) / 1e9);
}

static PyObject *Kernel_get_images(Kernel *self, void *closure) {
    return PyLong_FromLongLong(atomic_load(&self->pool.items));
}

static PyObject *Kernel_get_closed(Kernel *self, void *closure) { return PyBool_FromLong(self->closed); }

static PyMethodDef Kernel_methods[] = {
    {"run", (PyCFunction)(void (*)(void))Kernel_run, METH_VARARGS | METH_KEYWORDS,
     "run(data, boxes, flips, out, rows, crop_first, scale=None, shift=None) -> list\n\n"
     "Decodes data[i] (JPEG bytes), resizes its box boxes[i] = (left, top, right, bottom) (original pixels) to\n"
     "out's H x W, mirrors it when flips[i], and writes it as CHW into out[rows[i]] (uint8, or float32 as\n"
     "pixel * scale[c] + shift[c]). crop_first: RandomResizedCrop semantics, else Resize + CenterCrop. The GIL is\n"
     "released for the whole batch. Returns None per image written, (status, message) per image left unwritten."},
    {"set_threads", (PyCFunction)Kernel_set_threads, METH_O, "set_threads(n): run on n native threads from now on."},
    {"close", (PyCFunction)Kernel_close, METH_NOARGS, "Waits for running batches, stops the threads. Idempotent."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Kernel_getset[] = {
    {"threads", (getter)Kernel_get_threads, NULL, "native threads taking work", NULL},
    {"busy_seconds", (getter)Kernel_get_busy, NULL, "seconds the threads spent on images, summed over threads", NULL},
    {"images", (getter)Kernel_get_images, NULL, "images processed (written or failed)", NULL},
    {"closed", (getter)Kernel_get_closed, NULL, "close() was called", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject KernelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dataio._native.ImageKernel",
    .tp_basicsize = sizeof(Kernel),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "ImageKernel(threads=1): batch JPEG decode -> crop -> resize -> flip -> normalise on native threads.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Kernel_init,
    .tp_dealloc = (destructor)Kernel_dealloc,
    .tp_methods = Kernel_methods,
    .tp_getset = Kernel_getset,
};

/* --- decode_into: one image on the calling thread ---------------------------------------------------------------- */

/* Decoder contexts kept for single-image calls from any thread (a context is not shareable between threads). */
#define CTX_CACHE 64
static DecodeCtx *ctx_cache[CTX_CACHE];
static int ctx_cached;
static pthread_mutex_t ctx_mu = PTHREAD_MUTEX_INITIALIZER;

static DecodeCtx *ctx_take(void) {
    DecodeCtx *ctx = NULL;
    pthread_mutex_lock(&ctx_mu);
    if (ctx_cached > 0) ctx = ctx_cache[--ctx_cached];
    pthread_mutex_unlock(&ctx_mu);
    return ctx != NULL ? ctx : dw_ctx_new();
}

static void ctx_give(DecodeCtx *ctx) {
    pthread_mutex_lock(&ctx_mu);
    if (ctx_cached < CTX_CACHE) {
        ctx_cache[ctx_cached++] = ctx;
        ctx = NULL;
    }
    pthread_mutex_unlock(&ctx_mu);
    dw_ctx_free(ctx);
}

static PyObject *decode_into(PyObject *module, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"data", "box", "flip", "out", "crop_first", "scale", "shift", NULL};
    Py_buffer data_v, out_v;
    double box[4];
    int flip, crop_first;
    PyObject *out, *scale = NULL, *shift = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*(dddd)pOp|OO", kwlist, &data_v, &box[0], &box[1], &box[2],
                                     &box[3], &flip, &out, &crop_first, &scale, &shift))
        return NULL;
    PyObject *result = NULL;
    if (get_array(out, &out_v, "out", "Bf", 3, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&data_v);
        return NULL;
    }
    DwTask task;
    memset(&task, 0, sizeof(task));
    const char *f = out_v.format;
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    if (out_v.readonly || out_v.shape[0] != 3 || out_v.shape[1] < 1 || out_v.shape[2] < 1 || out_v.shape[1] > 65535 ||
        out_v.shape[2] > 65535) {
        PyErr_SetString(PyExc_ValueError, "out must be a writable (3, H, W) array with 1 <= H, W <= 65535");
        goto finally;
    }
    task.out_h = (int)out_v.shape[1];
    task.out_w = (int)out_v.shape[2];
    task.flip = flip;
    task.crop_first = crop_first;
    memcpy(task.box, box, sizeof(box));
    if (f[0] == 'f') {
        if (scale == NULL || shift == NULL) {
            PyErr_SetString(PyExc_ValueError, "a float32 out needs scale and shift (three numbers each)");
            goto finally;
        }
        if (get_triple(scale, task.scale, "scale") < 0 || get_triple(shift, task.shift, "shift") < 0) goto finally;
        task.out_f32 = out_v.buf;
    } else {
        task.out_u8 = out_v.buf;
    }
    char msg[DW_MSG_LEN];
    int status;
    Py_BEGIN_ALLOW_THREADS
    DecodeCtx *ctx = ctx_take();
    if (ctx == NULL) {
        status = DW_ERR_NOMEM;
        snprintf(msg, sizeof(msg), "out of memory for a decoder");
    } else {
        status = dw_process(ctx, data_v.buf, (size_t)data_v.len, &task, msg);
        ctx_give(ctx);
    }
    Py_END_ALLOW_THREADS
    result = status == DW_OK ? Py_NewRef(Py_None) : Py_BuildValue("(is)", status, msg);
finally:
    PyBuffer_Release(&out_v);
    PyBuffer_Release(&data_v);
    return result;
}

/* --- jpeg_headers ----------------------------------------------------------------------------------------------- */

static PyObject *jpeg_headers(PyObject *module, PyObject *args) {
    PyObject *data, *out;
    if (!PyArg_ParseTuple(args, "OO", &data, &out)) return NULL;
    PyObject *seq = PySequence_Fast(data, "data must be a sequence of bytes-like objects");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), got = 0;
    Py_buffer out_v, *views = NULL;
    PyObject *result = NULL;
    DecodeCtx *ctx = NULL;
    if (get_array(out, &out_v, "out", "il", 2, PyBUF_WRITABLE) < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    if (out_v.itemsize != 4 || out_v.shape[0] != n || out_v.shape[1] != 4 || out_v.readonly) {
        PyErr_Format(PyExc_ValueError, "out must be a writable int32 array of shape (%zd, 4)", n);
        goto finally;
    }
    views = PyMem_Calloc(n > 0 ? (size_t)n : 1, sizeof(Py_buffer));
    if (views == NULL || (ctx = dw_ctx_new()) == NULL) {
        PyErr_NoMemory();
        goto finally;
    }
    for (; got < n; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, got), &views[got], PyBUF_SIMPLE) < 0) {
            PyErr_Format(PyExc_TypeError, "data[%zd] is not a contiguous bytes-like object", got);
            goto finally;
        }
    }
    int32_t *o = out_v.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        char msg[DW_MSG_LEN];
        int w = 0, h = 0, cs = 0;
        int status = dw_header(ctx, views[i].buf, (size_t)views[i].len, &w, &h, &cs, msg);
        o[4 * i] = w, o[4 * i + 1] = h, o[4 * i + 2] = cs, o[4 * i + 3] = status;
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
finally:
    for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    dw_ctx_free(ctx);
    PyBuffer_Release(&out_v);
    Py_DECREF(seq);
    return result;
}

static PyObject *jpeg_end(PyObject *module, PyObject *arg) { /* dw_jpeg_end, for the Python twin's tests */
    Py_buffer v;
    if (PyObject_GetBuffer(arg, &v, PyBUF_SIMPLE) < 0) return NULL;
    long long end = dw_jpeg_end(v.buf, (size_t)v.len);
    PyBuffer_Release(&v);
    return PyLong_FromLongLong(end);
}

static PyObject *simd(PyObject *module, PyObject *args) {
    PyObject *enabled = Py_None;
    if (!PyArg_ParseTuple(args, "|O", &enabled)) return NULL;
    int mode = enabled == Py_None ? 1 : PyObject_IsTrue(enabled) ? -1 : 0;
    return PyBool_FromLong(dw_simd(mode));
}

static PyMethodDef module_functions[] = {
    {"simd", simd, METH_VARARGS,
     "simd(enabled=None) -> bool: whether the AVX2 resize runs; simd(False) forces the portable C code (for tests),\n"
     "simd(True) returns to automatic. Both give identical pixels."},
    {"decode_into", (PyCFunction)(void (*)(void))decode_into, METH_VARARGS | METH_KEYWORDS,
     "decode_into(data, box, flip, out, crop_first, scale=None, shift=None) -> None | (status, message)\n\n"
     "One image as ImageKernel.run does it, on the calling thread with the GIL released; out is (3, H, W)."},
    {"crop_windows", (PyCFunction)(void (*)(void))dataio_crop_windows, METH_VARARGS | METH_KEYWORDS,
     "crop_windows(sizes, indices, seed, epoch, train, size, scale, ratio, crop_ratio, boxes, flips)\n\n"
     "For sample i of size sizes[i] = (width, height) and dataset index indices[i]: boxes[i] and flips[i] exactly\n"
     "as ImagePipeline.window(header, sample_rng(seed, epoch, indices[i])) gives them. One call, GIL released."},
    {"jpeg_end", jpeg_end, METH_O,
     "jpeg_end(data) -> int: offset just past the EOI ending the JPEG's structure, or < 0 (-1 no SOI, -2 truncated,\n"
     "-3 EOI before any scan, -4 a bad segment length). No decoding; the kernel refuses an image when it is < 0."},
    {"jpeg_headers", jpeg_headers, METH_VARARGS,
     "jpeg_headers(data, out): for each JPEG in data, out[i] = (width, height, libjpeg colour space, status);\n"
     "status 0 when the header parsed. One call, GIL released."},
    {NULL, NULL, 0, NULL},
};

int dataio_kernel_register(PyObject *module) {
    if (PyType_Ready(&KernelType) < 0) return -1;
    if (PyModule_AddObjectRef(module, "ImageKernel", (PyObject *)&KernelType) < 0) return -1;
    if (PyModule_AddFunctions(module, module_functions) < 0) return -1;
    static const struct {
        const char *name;
        int value;
    } constants[] = {{"STATUS_OK", DW_OK},
                     {"STATUS_JPEG", DW_ERR_JPEG},
                     {"STATUS_UNSUPPORTED", DW_ERR_UNSUPPORTED},
                     {"STATUS_BOX", DW_ERR_BOX},
                     {"STATUS_TOO_LARGE", DW_ERR_TOO_LARGE},
                     {"STATUS_NOMEM", DW_ERR_NOMEM}};
    for (size_t i = 0; i < sizeof(constants) / sizeof(constants[0]); i++)
        if (PyModule_AddIntConstant(module, constants[i].name, constants[i].value) < 0) return -1;
    return PyModule_AddIntConstant(module, "MAX_PIXELS", (long)DW_MAX_PIXELS);
}
