/* The module's one-call functions: decode_into (one image on the calling thread), jpeg_headers, crop_windows
 * (windows.c) and simd, and the status constants ImageKernel.run and decode_into return.
 *
 * Each call validates its arguments with the GIL held, copies what it reads later, and releases the GIL once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "calls.h"
#include "jpeg_end.h"
#include "jpeg_window.h"
#include "windows.h"

/* --- decode_into: one image on the calling thread ---------------------------------------------------------------- */

/* Decoder contexts kept for single-image calls from any thread (a context is not shareable between threads).
 * Fork-safe: ctx_mu is taken around fork(), so the child's copy of the cache is consistent, and made new in the
 * child. Contexts that other threads held at the fork stay with those (absent) threads: never reused. */
#define CTX_CACHE 64
static DecodeCtx *ctx_cache[CTX_CACHE];
static int ctx_cached;
static pthread_mutex_t ctx_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t ctx_atfork_once = PTHREAD_ONCE_INIT;
static int ctx_atfork_rc;

static void ctx_before_fork(void) { pthread_mutex_lock(&ctx_mu); }
static void ctx_after_fork_in_parent(void) { pthread_mutex_unlock(&ctx_mu); }
static void ctx_after_fork_in_child(void) { pthread_mutex_init(&ctx_mu, NULL); }

static void ctx_register_atfork(void) {
    ctx_atfork_rc = pthread_atfork(ctx_before_fork, ctx_after_fork_in_parent, ctx_after_fork_in_child);
}

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
    if (args_array(out, &out_v, "out", "Bf", 3, 1) < 0) {
        PyBuffer_Release(&data_v);
        return NULL;
    }
    DwTask task;
    memset(&task, 0, sizeof(task));
    if (out_v.shape[0] != 3 || out_v.shape[1] < 1 || out_v.shape[2] < 1 || out_v.shape[1] > 65535 ||
        out_v.shape[2] > 65535) {
        PyErr_SetString(PyExc_ValueError, "out must be a writable (3, H, W) array with 1 <= H, W <= 65535");
        goto finally;
    }
    task.out_h = (int)out_v.shape[1];
    task.out_w = (int)out_v.shape[2];
    task.flip = flip;
    task.crop_first = crop_first;
    memcpy(task.box, box, sizeof(box));
    if (args_format(&out_v) == 'f') {
        if (scale == NULL || shift == NULL) {
            PyErr_SetString(PyExc_ValueError, "a float32 out needs scale and shift (three numbers each)");
            goto finally;
        }
        if (args_triple(scale, task.scale, "scale") < 0 || args_triple(shift, task.shift, "shift") < 0) goto finally;
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
    if (args_array(out, &out_v, "out", "il", 2, 1) < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    if (out_v.itemsize != 4 || out_v.shape[0] != n || out_v.shape[1] != 4) {
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

static PyObject *simd(PyObject *module, PyObject *args) {
    PyObject *enabled = Py_None;
    if (!PyArg_ParseTuple(args, "|O", &enabled)) return NULL;
    int mode = enabled == Py_None ? 1 : PyObject_IsTrue(enabled) ? -1 : 0;
    return PyBool_FromLong(dw_simd(mode));
}

/* --- crop_windows: the binding of windows.c's pure core -------------------------------------------------------- */

static int buffer_of(PyObject *obj, Py_buffer *v, const char *name, char fmt, Py_ssize_t itemsize, Py_ssize_t n,
                     Py_ssize_t cols, int writable) {
    if (args_buffer(obj, v, name, writable) < 0) return -1;
    char f = args_format(v);
    int ok = v->itemsize == itemsize && (f == fmt || (fmt == 'q' && f == 'l') || (fmt == 'B' && f == '?')) &&
             v->ndim == (cols ? 2 : 1) && v->shape[0] == n && (!cols || v->shape[1] == cols);
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "%s must have shape (%zd%s) and format '%c'", name, n, cols ? ", k" : ",", fmt);
        PyBuffer_Release(v);
        return -1;
    }
    return 0;
}

/* The spec's ranges, as ImagePipeline checks them, plus the resized shorter side's bound (WINDOW_MAX_RESIZE). */
static int check_spec(const WindowSpec *s) {
    if (s->size < 1 || s->size > WINDOW_MAX_RESIZE) {
        PyErr_Format(PyExc_ValueError, "size must be in 1..%d, got %d", WINDOW_MAX_RESIZE, s->size);
        return -1;
    }
    if (!(0 < s->scale[0] && s->scale[0] <= s->scale[1] && s->scale[1] <= 1)) {
        PyErr_SetString(PyExc_ValueError, "scale must satisfy 0 < lo <= hi <= 1");
        return -1;
    }
    if (!(0 < s->ratio[0] && s->ratio[0] <= s->ratio[1] && isfinite(s->ratio[1]))) {
        PyErr_SetString(PyExc_ValueError, "ratio must satisfy 0 < lo <= hi < inf");
        return -1;
    }
    double lowest = (double)s->size / WINDOW_MAX_RESIZE;
    if (!(lowest <= s->crop_ratio && s->crop_ratio <= 1)) {
        char text[256];
        snprintf(text, sizeof(text), "crop_ratio must be in [%.17g, 1] for size %d (size / crop_ratio, the resized "
                 "shorter side, is at most " WINDOW_MAX_RESIZE_TEXT " pixels), got %.17g", lowest, s->size, s->crop_ratio);
        PyErr_SetString(PyExc_ValueError, text);
        return -1;
    }
    return 0;
}

static PyObject *dataio_crop_windows(PyObject *module, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"sizes", "indices", "seed", "epoch", "train", "size", "scale", "ratio", "crop_ratio",
                             "boxes", "flips", NULL};
    PyObject *sizes, *indices, *boxes, *flips;
    unsigned long long seed, epoch;
    WindowSpec s;
    memset(&s, 0, sizeof(s));
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOKKpi(dd)(dd)dOO", kwlist, &sizes, &indices, &seed, &epoch,
                                     &s.train, &s.size, &s.scale[0], &s.scale[1], &s.ratio[0], &s.ratio[1],
                                     &s.crop_ratio, &boxes, &flips))
        return NULL;
    if (check_spec(&s) < 0) return NULL;
    Py_buffer iv, sv, bv, fv;
    if (PyObject_GetBuffer(indices, &iv, PyBUF_ND | PyBUF_C_CONTIGUOUS) < 0) return NULL;
    Py_ssize_t n = iv.ndim == 1 ? iv.shape[0] : -1;
    PyBuffer_Release(&iv);
    if (n < 0) return PyErr_Format(PyExc_ValueError, "indices must be 1-d");
    /* indices and sizes are read without the GIL: copied here (the caller's arrays may change meanwhile), and
     * only the copies are checked and read */
    int64_t *idx = PyMem_Malloc((n > 0 ? (size_t)n : 1) * 3 * sizeof(int64_t)), *wh = idx + (n > 0 ? n : 1);
    if (idx == NULL) return PyErr_NoMemory();
    if (buffer_of(indices, &iv, "indices", 'q', 8, n, 0, 0) < 0) goto fail;
    memcpy(idx, iv.buf, (size_t)n * sizeof(int64_t));
    PyBuffer_Release(&iv);
    if (buffer_of(sizes, &sv, "sizes", 'q', 8, n, 2, 0) < 0) goto fail;
    memcpy(wh, sv.buf, (size_t)n * 2 * sizeof(int64_t));
    PyBuffer_Release(&sv);
    if (buffer_of(boxes, &bv, "boxes", 'd', 8, n, 4, 1) < 0) goto fail;
    if (buffer_of(flips, &fv, "flips", 'B', 1, n, 0, 1) < 0) goto fail_b;
    double *out = bv.buf;
    uint8_t *fl = fv.buf;
    Py_ssize_t bad = -1;
    for (Py_ssize_t i = 0; i < n && bad < 0; i++)
        if (idx[i] < 0 || wh[2 * i] < 1 || wh[2 * i + 1] < 1 || wh[2 * i] > (1LL << 31) || wh[2 * i + 1] > (1LL << 31))
            bad = i;
    if (bad >= 0) {
        PyErr_Format(PyExc_ValueError, "sample %zd: index %lld or image size %lldx%lld out of range", bad,
                     (long long)idx[bad], (long long)wh[2 * bad], (long long)wh[2 * bad + 1]);
    } else {
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++)
            window_one(&s, seed, epoch, (uint64_t)idx[i], wh[2 * i], wh[2 * i + 1], &out[4 * i], &fl[i]);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&fv);
fail_b:
    PyBuffer_Release(&bv);
fail:
    PyMem_Free(idx);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

/* --- jpeg_end: the structural check alone (the Python twin's tests compare against it) ---------------------------- */

static PyObject *jpeg_end(PyObject *module, PyObject *arg) {
    Py_buffer v;
    if (PyObject_GetBuffer(arg, &v, PyBUF_SIMPLE) < 0) return NULL;
    long long end = dw_jpeg_end(v.buf, (size_t)v.len);
    PyBuffer_Release(&v);
    return PyLong_FromLongLong(end);
}

static PyMethodDef module_functions[] = {
    {"jpeg_end", jpeg_end, METH_O,
     "jpeg_end(data) -> int: offset just past the EOI ending the JPEG's structure, or < 0 (-1 no SOI, -2 truncated,\n"
     "-3 EOI before any scan, -4 a bad segment length). No decoding; the kernel refuses an image when it is < 0."},
    {"simd", simd, METH_VARARGS,
     "simd(enabled=None) -> bool: whether the AVX2 resize runs; simd(False) forces the portable C code (for tests),\n"
     "simd(True) returns to automatic. Both give identical pixels."},
    {"decode_into", (PyCFunction)(void (*)(void))decode_into, METH_VARARGS | METH_KEYWORDS,
     "decode_into(data, box, flip, out, crop_first, scale=None, shift=None) -> None | (status, message)\n\n"
     "One image as ImageKernel.run does it, on the calling thread with the GIL released; out is (3, H, W)."},
    {"crop_windows", (PyCFunction)(void (*)(void))dataio_crop_windows, METH_VARARGS | METH_KEYWORDS,
     "crop_windows(sizes, indices, seed, epoch, train, size, scale, ratio, crop_ratio, boxes, flips)\n\n"
     "For sample i of size sizes[i] = (width, height) and dataset index indices[i]: boxes[i] and flips[i] exactly\n"
     "as ImagePipeline.window(header, sample_rng(seed, epoch, indices[i])) gives them. One call, GIL released.\n"
     "crop_ratio: size / crop_ratio (the resized shorter side) must be at most " WINDOW_MAX_RESIZE_TEXT "."},
    {"jpeg_headers", jpeg_headers, METH_VARARGS,
     "jpeg_headers(data, out): for each JPEG in data, out[i] = (width, height, libjpeg colour space, status);\n"
     "status 0 when the header parsed. One call, GIL released."},
    {NULL, NULL, 0, NULL},
};

int dataio_calls_register(PyObject *module) {
    pthread_once(&ctx_atfork_once, ctx_register_atfork);
    if (ctx_atfork_rc != 0) {
        errno = ctx_atfork_rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
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
