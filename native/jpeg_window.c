/* Decode only the pixels a crop needs, at the smallest DCT scale that keeps enough of them, and resample them
 * with Pillow's antialiased bilinear filter straight into a CHW (optionally normalised float) output row.
 *
 * Geometry matches dataio.loaders.decode (the Python path) step by step:
 *   - the DCT factor k in {8, 4, 2, 1}: the largest leaving >= out pixels across the box (libjpeg-turbo's
 *     SIMD-accelerated reduced IDCTs);
 *   - decoded coordinates are original ones times 1/k (or the exact ratio when the header's size is not a
 *     multiple of k, as simplejpeg's min_width/min_height decode gives);
 *   - crop_first (RandomResizedCrop): the filter sees only the pixels the box touches (a crop), whole pixels at
 *     k = 1; otherwise (Resize + CenterCrop) the filter may reach past the box, up to the image's edge;
 *   - resampling is Pillow's ImagingResample for 8-bit images: separable, horizontal pass first, fixed-point
 *     coefficients of 22 bits, each pass rounded to uint8.
 * Only the needed columns (jpeg_crop_scanline, widened by one iMCU so chroma upsampling at the cut sees its
 * neighbours) and rows (jpeg_skip_scanlines, then read up to the last needed row) are decoded to pixels.
 *
 * The verdict does not depend on the crop: bytes that end before EOI are refused before decoding
 * (dw_jpeg_end), and the rows below the crop are entropy-decoded too (jpeg_skip_scanlines: Huffman decoding
 * only, no IDCT or colour conversion) up to jpeg_finish_decompress, so corrupt data anywhere in the file ends the
 * image with its libjpeg message, as it does for PIL and simplejpeg, which decode every row.
 *
 * Every size taken from the file is bounded before memory is allocated; libjpeg's own allocations are capped
 * (max_memory_to_use); libjpeg errors and warnings end the image with a message, never the process.
 */
#include "jpeg_window.h"
#include "jpeg_end.h"

#include <math.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#define PRECISION_BITS (32 - 8 - 2)
#define CROP_MARGIN 16 /* decoded pixels kept beyond the needed columns: one iMCU at 2x2 subsampling */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char *msg;
} ErrorMgr;

typedef struct {
    int *bounds;  /* per output pixel: first input pixel, count */
    int32_t *kk;  /* per output pixel: ksize fixed-point weights */
    double *pre;  /* per output pixel: ksize float weights */
    size_t cap_bounds, cap_kk, cap_pre; /* bytes */
    int ksize;
} Coeffs;

struct DecodeCtx {
    struct jpeg_decompress_struct cinfo;
    ErrorMgr err;
    uint8_t *win; /* decoded window: rows x cols x 4 (RGBX) */
    size_t win_cap;
    uint8_t *tmp; /* horizontal pass: 3 planes of rows x out_w */
    size_t tmp_cap;
    int32_t *acc; /* vertical pass accumulator: out_w */
    size_t acc_cap;
    Coeffs cx, cy;
};

static void on_error_exit(j_common_ptr cinfo) {
    ErrorMgr *err = (ErrorMgr *)cinfo->err;
    if (err->msg != NULL) {
        char buf[JMSG_LENGTH_MAX];
        (*cinfo->err->format_message)(cinfo, buf);
        snprintf(err->msg, DW_MSG_LEN, "libjpeg: %.150s", buf);
    }
    longjmp(err->jump, 1);
}

static void on_message(j_common_ptr cinfo, int level) {
    /* level < 0: a warning (corrupt data that libjpeg would paper over). Strict, like simplejpeg's default:
     * the sample goes to the Python path, where PIL decides whether it is readable. Trace messages pass. */
    if (level < 0) on_error_exit(cinfo);
}

DecodeCtx *dw_ctx_new(void) {
    DecodeCtx *volatile ctx = calloc(1, sizeof(DecodeCtx));
    if (ctx == NULL) return NULL;
    ctx->cinfo.err = jpeg_std_error(&ctx->err.pub);
    ctx->err.pub.error_exit = on_error_exit;
    ctx->err.pub.emit_message = on_message;
    ctx->err.msg = NULL;
    if (setjmp(ctx->err.jump)) { /* jpeg_create_decompress fails only without memory */
        free(ctx);
        return NULL;
    }
    jpeg_create_decompress(&ctx->cinfo);
    ctx->cinfo.mem->max_memory_to_use = DW_MAX_LIBJPEG_MEMORY;
    return ctx;
}

static void coeffs_free(Coeffs *c) {
    free(c->bounds);
    free(c->kk);
    free(c->pre);
    memset(c, 0, sizeof(*c));
}

void dw_ctx_free(DecodeCtx *ctx) {
    if (ctx == NULL) return;
    jpeg_destroy_decompress(&ctx->cinfo);
    free(ctx->win);
    free(ctx->tmp);
    free(ctx->acc);
    coeffs_free(&ctx->cx);
    coeffs_free(&ctx->cy);
    free(ctx);
}

/* Grows *buf to at least n bytes; 0 on success. */
static int reserve(void **buf, size_t *cap, size_t n) {
    if (n <= *cap) return 0;
    size_t want = n + n / 4;
    void *p = realloc(*buf, want);
    if (p == NULL) return -1;
    *buf = p;
    *cap = want;
    return 0;
}

int dw_dct_factor(double box_w, double box_h, int out_w, int out_h) {
    static const int factors[3] = {8, 4, 2};
    for (int i = 0; i < 3; i++) {
        int k = factors[i];
        if (box_w >= (double)k * out_w && box_h >= (double)k * out_h) return k;
    }
    return 1;
}

static double bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter: output pixel i reads input
 * pixels [bounds[2i], bounds[2i] + bounds[2i+1]) of an axis of in_size pixels, box [in0, in1). */
static int coeffs_build(Coeffs *c, double in0, double in1, int in_size, int out_size) {
    double scale = (in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    double ksize_d = ceil(support) * 2 + 1;
    if (!(ksize_d < 1e7)) return -1; /* bounded by the window, itself bounded by the pixel limit */
    int ksize = (int)ksize_d;
    size_t nk = (size_t)out_size * (size_t)ksize;
    if (reserve((void **)&c->bounds, &c->cap_bounds, (size_t)out_size * 2 * sizeof(int)) ||
        reserve((void **)&c->kk, &c->cap_kk, nk * sizeof(int32_t)) ||
        reserve((void **)&c->pre, &c->cap_pre, nk * sizeof(double)))
        return -1;
    c->ksize = ksize;
    double ss = 1.0 / filterscale;
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        if (xmax < 0) xmax = 0;
        if (xmax > ksize) xmax = ksize;
        double *k = &c->pre[(size_t)xx * ksize];
        int x = 0;
        for (; x < xmax; x++) {
            double w = bilinear((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        int32_t *kk = &c->kk[(size_t)xx * ksize];
        for (x = 0; x < ksize; x++)
            kk[x] = k[x] < 0 ? (int32_t)(-0.5 + k[x] * (1 << PRECISION_BITS))
                             : (int32_t)(0.5 + k[x] * (1 << PRECISION_BITS));
        c->bounds[2 * xx] = xmin;
        c->bounds[2 * xx + 1] = xmax;
    }
    return 0;
}

/* [lo, hi) of the input pixels any output pixel reads. */
static void coeffs_span(const Coeffs *c, int out_size, int *lo, int *hi) {
    int a = c->bounds[0], b = c->bounds[0] + c->bounds[1];
    for (int i = 1; i < out_size; i++) {
        int s = c->bounds[2 * i], e = s + c->bounds[2 * i + 1];
        if (s < a) a = s;
        if (e > b) b = e;
    }
    *lo = a;
    *hi = b;
}

static inline uint8_t clip8(int32_t v) {
    v >>= PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static int check_box(const double box[4], int width, int height, char *msg) {
    double eps = 1e-6 * (width > height ? width : height);
    double l = box[0], t = box[1], r = box[2], b = box[3];
    if (!(isfinite(l) && isfinite(t) && isfinite(r) && isfinite(b)) || !(-eps <= l && l < r && r <= width + eps) ||
        !(-eps <= t && t < b && b <= height + eps)) {
        snprintf(msg, DW_MSG_LEN, "box (%g, %g, %g, %g) is empty or outside the %dx%d image", l, t, r, b, width,
                 height);
        return DW_ERR_BOX;
    }
    return DW_OK;
}

static int read_header(DecodeCtx *ctx, const uint8_t *data, size_t len, char *msg) {
    struct jpeg_decompress_struct *cinfo = &ctx->cinfo;
    jpeg_mem_src(cinfo, data, (unsigned long)len);
    jpeg_read_header(cinfo, TRUE);
    if ((long long)cinfo->image_width * (long long)cinfo->image_height > DW_MAX_PIXELS) {
        snprintf(msg, DW_MSG_LEN, "%ux%u pixels exceed the limit of %lld", cinfo->image_width, cinfo->image_height,
                 (long long)DW_MAX_PIXELS);
        return DW_ERR_TOO_LARGE;
    }
    return DW_OK;
}

int dw_header(DecodeCtx *ctx, const uint8_t *data, size_t len, int *width, int *height, int *colorspace, char *msg) {
    msg[0] = '\0';
    ctx->err.msg = msg;
    if (setjmp(ctx->err.jump)) {
        jpeg_abort_decompress(&ctx->cinfo);
        return DW_ERR_JPEG;
    }
    int status = read_header(ctx, data, len, msg);
    *width = (int)ctx->cinfo.image_width;
    *height = (int)ctx->cinfo.image_height;
    *colorspace = (int)ctx->cinfo.jpeg_color_space;
    jpeg_abort_decompress(&ctx->cinfo);
    return status;
}

/* The region of decoded pixels the filter may use, and the box inside it (both in decoded pixels). */
typedef struct {
    int x0, x1, y0, y1;
    double left, top, right, bottom; /* relative to (x0, y0) */
} Region;

static double round_half_even(double v) { return nearbyint(v); } /* Python's round(); default FP mode */

static void whole_pixel_span(double lo, double hi, int n, int *a, int *b) { /* decode._span */
    int s = (int)round_half_even(lo);
    s = s < 0 ? 0 : s > n - 1 ? n - 1 : s;
    int e = (int)round_half_even(hi);
    if (e < s + 1) e = s + 1;
    if (e > n) e = n;
    *a = s;
    *b = e;
}

static Region plan_region(const DwTask *task, int k, double fx, double fy, int ow, int oh) {
    Region r;
    double l = task->box[0] * fx, t = task->box[1] * fy, rr = task->box[2] * fx, b = task->box[3] * fy;
    if (k == 1 && task->crop_first) { /* whole-pixel crop, resized as a whole */
        whole_pixel_span(l, rr, ow, &r.x0, &r.x1);
        whole_pixel_span(t, b, oh, &r.y0, &r.y1);
        r.left = 0, r.top = 0, r.right = r.x1 - r.x0, r.bottom = r.y1 - r.y0;
        return r;
    }
    l = l < 0 ? 0 : l, t = t < 0 ? 0 : t;
    rr = rr > ow ? ow : rr, b = b > oh ? oh : b;
    if (task->crop_first) {
        r.x0 = (int)floor(l), r.x1 = (int)ceil(rr), r.y0 = (int)floor(t), r.y1 = (int)ceil(b);
    } else {
        r.x0 = 0, r.x1 = ow, r.y0 = 0, r.y1 = oh;
    }
    if (r.x1 <= r.x0) r.x1 = r.x0 + 1;
    if (r.y1 <= r.y0) r.y1 = r.y0 + 1;
    r.left = l - r.x0, r.top = t - r.y0, r.right = rr - r.x0, r.bottom = b - r.y0;
    return r;
}


/* Horizontal pass: rows [0, rows) of the RGBX window (4 bytes a pixel) -> tmp, planar (3 planes of rows x out_w),
 * mirrored here when asked. src_x0: window column of region x 0. Portable version. */
static void resample_h_portable(const uint8_t *win, size_t stride, int rows, int src_x0, const Coeffs *c, int out_w,
                                int flip, uint8_t *tmp) {
    const int ksize = c->ksize;
    const size_t plane = (size_t)rows * out_w;
    for (int y = 0; y < rows; y++) {
        const uint8_t *src = win + (size_t)y * stride;
        uint8_t *d0 = tmp + (size_t)y * out_w, *d1 = d0 + plane, *d2 = d1 + plane;
        for (int x = 0; x < out_w; x++) {
            const int xmin = c->bounds[2 * x] + src_x0, n = c->bounds[2 * x + 1];
            const int32_t *k = &c->kk[(size_t)x * ksize];
            const uint8_t *p = src + (size_t)xmin * 4;
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int i = 0; i < n; i++) {
                s0 += p[4 * i] * k[i];
                s1 += p[4 * i + 1] * k[i];
                s2 += p[4 * i + 2] * k[i];
            }
            const int dx = flip ? out_w - 1 - x : x;
            d0[dx] = clip8(s0);
            d1[dx] = clip8(s1);
            d2[dx] = clip8(s2);
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* The same arithmetic, one pixel's RGBX lanes per SSE4.1/AVX2 multiply-add (bit-identical to the portable one). */
__attribute__((target("avx2"))) static void resample_h_avx2(const uint8_t *win, size_t stride, int rows, int src_x0,
                                                            const Coeffs *c, int out_w, int flip, uint8_t *tmp) {
    const int ksize = c->ksize;
    const size_t plane = (size_t)rows * out_w;
    const __m128i half = _mm_set1_epi32(1 << (PRECISION_BITS - 1));
    const __m256i bcast = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1); /* taps i, i+1 over the lanes of 2 pixels */
    for (int y = 0; y < rows; y++) {
        const uint8_t *src = win + (size_t)y * stride;
        uint8_t *d0 = tmp + (size_t)y * out_w, *d1 = d0 + plane, *d2 = d1 + plane;
        for (int x = 0; x < out_w; x++) {
            const int xmin = c->bounds[2 * x] + src_x0, n = c->bounds[2 * x + 1];
            const int32_t *k = &c->kk[(size_t)x * ksize];
            const uint8_t *p = src + (size_t)xmin * 4;
            __m256i acc2 = _mm256_setzero_si256();
            int i = 0;
            for (; i + 1 < n; i += 2) { /* two taps: 8 bytes, one 8-lane multiply-add */
                int64_t px;
                memcpy(&px, p + 4 * i, 8);
                __m256i v = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(px));
                int64_t kw;
                memcpy(&kw, k + i, 8);
                __m256i w = _mm256_permutevar8x32_epi32(_mm256_castsi128_si256(_mm_cvtsi64_si128(kw)), bcast);
                acc2 = _mm256_add_epi32(acc2, _mm256_mullo_epi32(v, w));
            }
            __m128i acc = _mm_add_epi32(half, _mm_add_epi32(_mm256_castsi256_si128(acc2),
                                                             _mm256_extracti128_si256(acc2, 1)));
            if (i < n) {
                int32_t px;
                memcpy(&px, p + 4 * i, 4);
                __m128i v = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(px));
                acc = _mm_add_epi32(acc, _mm_mullo_epi32(v, _mm_set1_epi32(k[i])));
            }
            acc = _mm_srai_epi32(acc, PRECISION_BITS);
            acc = _mm_packus_epi16(_mm_packs_epi32(acc, acc), acc); /* clamp to 0..255, like clip8 */
            const uint32_t rgbx = (uint32_t)_mm_cvtsi128_si32(acc);
            const int dx = flip ? out_w - 1 - x : x;
            d0[dx] = (uint8_t)rgbx;
            d1[dx] = (uint8_t)(rgbx >> 8);
            d2[dx] = (uint8_t)(rgbx >> 16);
        }
    }
}
#endif

static atomic_int simd_mode = -1; /* -1: use AVX2 when the CPU has it; 0: portable code only (tests) */

int dw_simd(int mode) {
    if (mode == 0 || mode == -1) atomic_store(&simd_mode, mode);
#if defined(__x86_64__) && defined(__GNUC__)
    return atomic_load(&simd_mode) != 0 && __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

static void resample_h(const uint8_t *win, size_t stride, int rows, int src_x0, const Coeffs *c, int out_w, int flip,
                       uint8_t *tmp) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (dw_simd(1)) {
        resample_h_avx2(win, stride, rows, src_x0, c, out_w, flip, tmp);
        return;
    }
#endif
    resample_h_portable(win, stride, rows, src_x0, c, out_w, flip, tmp);
}

/* Vertical pass, one plane: tmp rows -> output row y of channel ch (uint8, or float normalised). tmp_y0: tmp row
 * of region y 0. Portable version; every loop runs over contiguous pixels. */
static void resample_v_portable(const uint8_t *tmp, int rows, int tmp_y0, const Coeffs *c, const DwTask *task,
                                int32_t *acc) {
    const int out_w = task->out_w, out_h = task->out_h, ksize = c->ksize;
    const size_t in_plane = (size_t)rows * out_w, out_plane = (size_t)out_w * out_h;
    for (int ch = 0; ch < 3; ch++) {
        const uint8_t *src_plane = tmp + ch * in_plane;
        const float sc = task->scale[ch], sh = task->shift[ch];
        for (int y = 0; y < out_h; y++) {
            const int ymin = c->bounds[2 * y] + tmp_y0, n = c->bounds[2 * y + 1];
            const int32_t *k = &c->kk[(size_t)y * ksize];
            for (int x = 0; x < out_w; x++) acc[x] = 1 << (PRECISION_BITS - 1);
            for (int j = 0; j < n; j++) {
                const uint8_t *src = src_plane + (size_t)(ymin + j) * out_w;
                const int32_t w = k[j];
                for (int x = 0; x < out_w; x++) acc[x] += src[x] * w;
            }
            const size_t base = ch * out_plane + (size_t)y * out_w;
            if (task->out_f32 != NULL) {
                float *dst = task->out_f32 + base;
                for (int x = 0; x < out_w; x++) dst[x] = (float)clip8(acc[x]) * sc + sh;
            } else {
                uint8_t *dst = task->out_u8 + base;
                for (int x = 0; x < out_w; x++) dst[x] = clip8(acc[x]);
            }
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same arithmetic 8 pixels at a time; float output as (float)v * scale + shift without FMA (bit-identical). */
__attribute__((target("avx2"))) static void resample_v_avx2(const uint8_t *tmp, int rows, int tmp_y0,
                                                            const Coeffs *c, const DwTask *task, int32_t *acc) {
    const int out_w = task->out_w, out_h = task->out_h, ksize = c->ksize;
    const size_t in_plane = (size_t)rows * out_w, out_plane = (size_t)out_w * out_h;
    const __m256i half = _mm256_set1_epi32(1 << (PRECISION_BITS - 1)), lo = _mm256_setzero_si256(),
                  hi = _mm256_set1_epi32(255);
    for (int ch = 0; ch < 3; ch++) {
        const uint8_t *src_plane = tmp + ch * in_plane;
        const __m256 sc = _mm256_set1_ps(task->scale[ch]), sh = _mm256_set1_ps(task->shift[ch]);
        for (int y = 0; y < out_h; y++) {
            const int ymin = c->bounds[2 * y] + tmp_y0, n = c->bounds[2 * y + 1];
            const int32_t *k = &c->kk[(size_t)y * ksize];
            const size_t base = ch * out_plane + (size_t)y * out_w;
            int x = 0;
            for (; x + 8 <= out_w; x += 8) {
                __m256i a = half;
                for (int j = 0; j < n; j++) {
                    int64_t px;
                    memcpy(&px, src_plane + (size_t)(ymin + j) * out_w + x, 8);
                    a = _mm256_add_epi32(a, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(px)),
                                                               _mm256_set1_epi32(k[j])));
                }
                a = _mm256_min_epi32(_mm256_max_epi32(_mm256_srai_epi32(a, PRECISION_BITS), lo), hi);
                if (task->out_f32 != NULL) {
                    _mm256_storeu_ps(task->out_f32 + base + x, _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a), sc), sh));
                } else {
                    __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
                    _mm_storel_epi64((__m128i *)(task->out_u8 + base + x), _mm_packus_epi16(w16, w16));
                }
            }
            for (; x < out_w; x++) { /* the tail */
                int32_t s = 1 << (PRECISION_BITS - 1);
                for (int j = 0; j < n; j++) s += src_plane[(size_t)(ymin + j) * out_w + x] * k[j];
                if (task->out_f32 != NULL)
                    task->out_f32[base + x] = (float)clip8(s) * task->scale[ch] + task->shift[ch];
                else
                    task->out_u8[base + x] = clip8(s);
            }
        }
    }
    (void)acc;
}
#endif

static void resample_v(const uint8_t *tmp, int rows, int tmp_y0, const Coeffs *c, const DwTask *task, int32_t *acc) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (dw_simd(1)) {
        resample_v_avx2(tmp, rows, tmp_y0, c, task, acc);
        return;
    }
#endif
    resample_v_portable(tmp, rows, tmp_y0, c, task, acc);
}

/* DW_ERR_JPEG with a message unless the bytes run from SOI to an EOI after a scan (see jpeg_end.h). */
static int check_complete(const uint8_t *data, size_t len, char *msg) {
    const long long end = dw_jpeg_end(data, len);
    if (end >= 0) return DW_OK;
    snprintf(msg, DW_MSG_LEN, "%s",
             end == DW_END_NOT_JPEG    ? "not a JPEG (no SOI marker)"
             : end == DW_END_NO_SCAN   ? "no image data (EOI before any scan)"
             : end == DW_END_BAD_LENGTH ? "corrupt marker segment (length under 2)"
                                        : "truncated: the data ends before the EOI marker");
    return DW_ERR_JPEG;
}

int dw_process(DecodeCtx *ctx, const uint8_t *data, size_t len, const DwTask *task, char *msg) {
    struct jpeg_decompress_struct *cinfo = &ctx->cinfo;
    msg[0] = '\0';
    ctx->err.msg = msg;
    int status = check_complete(data, len, msg);
    if (status != DW_OK) return status;
    if (setjmp(ctx->err.jump)) {
        jpeg_abort_decompress(cinfo);
        return DW_ERR_JPEG;
    }
    status = read_header(ctx, data, len, msg);
    if (status != DW_OK) goto done;
    const int width = (int)cinfo->image_width, height = (int)cinfo->image_height;
    J_COLOR_SPACE cs = cinfo->jpeg_color_space;
    if (cs != JCS_YCbCr && cs != JCS_GRAYSCALE && cs != JCS_RGB) {
        snprintf(msg, DW_MSG_LEN, "colour space %d (CMYK/YCCK/unknown) is left to the Python path", (int)cs);
        status = DW_ERR_UNSUPPORTED;
        goto done;
    }
    if ((status = check_box(task->box, width, height, msg)) != DW_OK) goto done;
    if (task->out_w < 1 || task->out_h < 1 || task->out_w > 65535 || task->out_h > 65535) {
        snprintf(msg, DW_MSG_LEN, "output size %dx%d out of range", task->out_w, task->out_h);
        status = DW_ERR_BOX;
        goto done;
    }
    const int k = dw_dct_factor(task->box[2] - task->box[0], task->box[3] - task->box[1], task->out_w, task->out_h);
    cinfo->out_color_space = JCS_EXT_RGBX; /* a padding byte per pixel: see resample_h */
    cinfo->dct_method = JDCT_ISLOW;
    cinfo->do_fancy_upsampling = TRUE;
    cinfo->scale_num = 1;
    cinfo->scale_denom = (unsigned)k;
    jpeg_calc_output_dimensions(cinfo);
    const int ow = (int)cinfo->output_width, oh = (int)cinfo->output_height;
    const double fx = k == 1 ? 1.0 : (ow == (width + k - 1) / k ? 1.0 / k : (double)ow / width);
    const double fy = k == 1 ? 1.0 : (oh == (height + k - 1) / k ? 1.0 / k : (double)oh / height);
    const Region r = plan_region(task, k, fx, fy, ow, oh);

    if (coeffs_build(&ctx->cx, r.left, r.right, r.x1 - r.x0, task->out_w) ||
        coeffs_build(&ctx->cy, r.top, r.bottom, r.y1 - r.y0, task->out_h)) {
        snprintf(msg, DW_MSG_LEN, "out of memory for resize coefficients");
        status = DW_ERR_NOMEM;
        goto done;
    }
    int cx0, cx1, ry0, ry1; /* needed columns / rows, in decoded pixels */
    coeffs_span(&ctx->cx, task->out_w, &cx0, &cx1);
    coeffs_span(&ctx->cy, task->out_h, &ry0, &ry1);
    cx0 += r.x0, cx1 += r.x0, ry0 += r.y0, ry1 += r.y0;

    jpeg_start_decompress(cinfo);
    JDIMENSION xoff = cx0 > CROP_MARGIN ? (JDIMENSION)(cx0 - CROP_MARGIN) : 0;
    JDIMENSION cw = (JDIMENSION)(cx1 + CROP_MARGIN < ow ? cx1 + CROP_MARGIN : ow) - xoff;
    if (cw < cinfo->output_width) jpeg_crop_scanline(cinfo, &xoff, &cw); /* widens to iMCU boundaries */
    const size_t stride = (size_t)cinfo->output_width * (size_t)cinfo->output_components;
    const int rows = ry1 - ry0;
    const size_t tmp_bytes = (size_t)rows * task->out_w * 3, acc_bytes = (size_t)task->out_w * sizeof(int32_t);
    if (cinfo->output_components != 4 || (int)xoff > cx0 || (int)(xoff + cw) < cx1 ||
        reserve((void **)&ctx->win, &ctx->win_cap, stride * ((size_t)rows + 1)) || /* + a row: see below */
        reserve((void **)&ctx->tmp, &ctx->tmp_cap, tmp_bytes) || reserve((void **)&ctx->acc, &ctx->acc_cap, acc_bytes)) {
        snprintf(msg, DW_MSG_LEN, "cannot set up the decode window (%d rows x %zu bytes)", rows, stride);
        status = DW_ERR_NOMEM;
        goto done;
    }
    if (ry0 > 0) jpeg_skip_scanlines(cinfo, (JDIMENSION)ry0);
    while ((int)cinfo->output_scanline < ry1) {
        JSAMPROW rowp[8];
        int want = ry1 - (int)cinfo->output_scanline;
        if (want > 8) want = 8;
        for (int i = 0; i < want; i++) rowp[i] = ctx->win + (size_t)((int)cinfo->output_scanline - ry0 + i) * stride;
        if (jpeg_read_scanlines(cinfo, rowp, (JDIMENSION)want) == 0) {
            snprintf(msg, DW_MSG_LEN, "libjpeg returned no scanline at row %u", cinfo->output_scanline);
            status = DW_ERR_JPEG;
            goto done;
        }
    }
    /* The rest of the entropy data, for a crop-independent verdict (libjpeg warnings and errors longjmp). Skipping
     * to the very bottom would not decode (libjpeg-turbo then just marks the input finished): skip to the last row
     * and read it into the spare row after the window, then read on to EOI. */
    const int left = oh - (int)cinfo->output_scanline;
    if (left > 1) jpeg_skip_scanlines(cinfo, (JDIMENSION)(left - 1));
    JSAMPROW spare = ctx->win + (size_t)rows * stride;
    if (left > 0 && jpeg_read_scanlines(cinfo, &spare, 1) != 1) {
        snprintf(msg, DW_MSG_LEN, "libjpeg returned no scanline at row %u", cinfo->output_scanline);
        status = DW_ERR_JPEG;
        goto done;
    }
    jpeg_finish_decompress(cinfo);
    resample_h(ctx->win, stride, rows, r.x0 - (int)xoff, &ctx->cx, task->out_w, task->flip, ctx->tmp);
    resample_v(ctx->tmp, rows, r.y0 - ry0, &ctx->cy, task, ctx->acc);
done:
    jpeg_abort_decompress(cinfo);
    return status;
}
