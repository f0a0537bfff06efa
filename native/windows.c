/* dataio._native.crop_windows: the crop box and flip of every sample of a batch, bit-identical to
 * ImagePipeline.window(header, sample_rng(seed, epoch, index)) in Python, in one call.
 *
 * Python spends ~50 us per sample building numpy's Generator(PCG64(SeedSequence((seed, epoch, index)))); this
 * restates exactly what that generator does for the draws the transforms make (numpy >= 1.17's documented
 * algorithms: SeedSequence's hash mixing, PCG64 XSL-RR seeding and output, next_double, buffered 32-bit draws and
 * Lemire's bounded integers), and torchvision's RandomResizedCrop / RandomHorizontalFlip / Resize + CenterCrop
 * geometry as dataio.loaders.transforms states it (same libm calls, same round-half-even). The Python functions
 * stay the reference: tests compare both over many seeds, indices and image sizes.
 *
 * A pure core (no Python.h): its binding, dataio._native.crop_windows, validates and copies the arguments
 * (calls.c).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "windows.h"

/* --- numpy.random.SeedSequence (pool of 4 uint32 words) ------------------------------------------------------- */

#define INIT_A 0x43b0d7e5u
#define MULT_A 0x931e8875u
#define INIT_B 0x8b51f9ddu
#define MULT_B 0x58f38dedu
#define MIX_MULT_L 0xca01f9ddu
#define MIX_MULT_R 0x4973f715u
#define XSHIFT 16
#define POOL 4

static uint32_t hashmix(uint32_t value, uint32_t *hash_const) {
    value ^= *hash_const;
    *hash_const *= MULT_A;
    value *= *hash_const;
    value ^= value >> XSHIFT;
    return value;
}

static uint32_t mix(uint32_t x, uint32_t y) {
    uint32_t r = MIX_MULT_L * x - MIX_MULT_R * y;
    return r ^ (r >> XSHIFT);
}

/* A non-negative int as numpy coerces it: little-endian 32-bit words, [0] for zero. */
static int int_words(uint64_t v, uint32_t *out) {
    if (v == 0) {
        out[0] = 0;
        return 1;
    }
    int n = 0;
    while (v > 0) {
        out[n++] = (uint32_t)(v & 0xffffffffu);
        v >>= 32;
    }
    return n;
}

/* generate_state(4, uint64) of SeedSequence((a, b, c)). */
static void seed_state(uint64_t a, uint64_t b, uint64_t c, uint64_t state[4]) {
    uint32_t entropy[6];
    int n = int_words(a, entropy);
    n += int_words(b, entropy + n);
    n += int_words(c, entropy + n);
    uint32_t pool[POOL], h = INIT_A;
    for (int i = 0; i < POOL; i++) pool[i] = hashmix(i < n ? entropy[i] : 0, &h);
    for (int src = 0; src < POOL; src++)
        for (int dst = 0; dst < POOL; dst++)
            if (src != dst) pool[dst] = mix(pool[dst], hashmix(pool[src], &h));
    for (int src = POOL; src < n; src++)
        for (int dst = 0; dst < POOL; dst++) pool[dst] = mix(pool[dst], hashmix(entropy[src], &h));
    uint32_t words[8], hb = INIT_B;
    for (int i = 0; i < 8; i++) {
        uint32_t v = pool[i % POOL];
        v ^= hb;
        hb *= MULT_B;
        v *= hb;
        v ^= v >> XSHIFT;
        words[i] = v;
    }
    for (int i = 0; i < 4; i++) state[i] = (uint64_t)words[2 * i] | ((uint64_t)words[2 * i + 1] << 32);
}

/* --- numpy.random.PCG64 ------------------------------------------------------------------------------------------ */

typedef unsigned __int128 u128;

typedef struct {
    u128 state, inc;
    int has_uint32;
    uint32_t uinteger;
} Pcg64;

static const u128 PCG_MULT = ((u128)2549297995355413924ULL << 64) | 4865540595714422341ULL;

static void pcg_step(Pcg64 *r) { r->state = r->state * PCG_MULT + r->inc; }

static void pcg_seed(Pcg64 *r, const uint64_t v[4]) {
    u128 initstate = ((u128)v[0] << 64) | v[1], initseq = ((u128)v[2] << 64) | v[3];
    r->state = 0;
    r->inc = (initseq << 1) | 1;
    pcg_step(r);
    r->state += initstate;
    pcg_step(r);
    r->has_uint32 = 0;
    r->uinteger = 0;
}

static uint64_t next_u64(Pcg64 *r) {
    pcg_step(r);
    uint64_t x = (uint64_t)(r->state >> 64) ^ (uint64_t)r->state;
    unsigned rot = (unsigned)(r->state >> 122);
    return (x >> rot) | (x << ((-rot) & 63));
}

static uint32_t next_u32(Pcg64 *r) {
    if (r->has_uint32) {
        r->has_uint32 = 0;
        return r->uinteger;
    }
    uint64_t next = next_u64(r);
    r->has_uint32 = 1;
    r->uinteger = (uint32_t)(next >> 32);
    return (uint32_t)(next & 0xffffffffu);
}

static double next_double(Pcg64 *r) { return (double)(next_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

static double uniform(Pcg64 *r, double lo, double hi) { return lo + (hi - lo) * next_double(r); }

/* Generator.integers(0, n) for 1 <= n <= 2^32 (Lemire's method over buffered 32-bit draws, as numpy does). */
static int64_t integers(Pcg64 *r, int64_t n) {
    uint64_t rng = (uint64_t)n - 1;
    if (rng == 0) return 0;
    if (rng == 0xffffffffu) return next_u32(r);
    uint32_t rng_excl = (uint32_t)rng + 1;
    uint64_t m = (uint64_t)next_u32(r) * rng_excl;
    uint32_t leftover = (uint32_t)m;
    if (leftover < rng_excl) {
        uint32_t threshold = (uint32_t)(UINT32_MAX - (uint32_t)rng) % rng_excl;
        while (leftover < threshold) {
            m = (uint64_t)next_u32(r) * rng_excl;
            leftover = (uint32_t)m;
        }
    }
    return (int64_t)(m >> 32);
}

/* --- the transforms' geometry (dataio.loaders.transforms) -------------------------------------------------------- */

static double pyround(double v) { return nearbyint(v); } /* round-half-even, like Python's round() */

static void random_resized_crop(Pcg64 *r, int64_t height, int64_t width, const WindowSpec *s, double box[4]) {
    double area = (double)(height * width), log_lo = log(s->ratio[0]), log_hi = log(s->ratio[1]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target_area = area * uniform(r, s->scale[0], s->scale[1]);
        double aspect = exp(uniform(r, log_lo, log_hi));
        double w = pyround(sqrt(target_area * aspect)), h = pyround(sqrt(target_area / aspect));
        if (0 < w && w <= width && 0 < h && h <= height) {
            int64_t top = integers(r, height - (int64_t)h + 1);
            int64_t left = integers(r, width - (int64_t)w + 1);
            box[0] = (double)left, box[1] = (double)top, box[2] = (double)left + w, box[3] = (double)top + h;
            return;
        }
    }
    double in_ratio = (double)width / (double)height, w, h;
    if (in_ratio < s->ratio[0]) {
        w = (double)width;
        h = pyround(w / s->ratio[0]);
    } else if (in_ratio > s->ratio[1]) {
        h = (double)height;
        w = pyround(h * s->ratio[1]);
    } else {
        w = (double)width, h = (double)height;
    }
    /* Python's (height - h) // 2: both differences are >= 0 here (h <= height, w <= width) */
    int64_t top = (height - (int64_t)h) / 2, left = (width - (int64_t)w) / 2;
    box[0] = (double)left, box[1] = (double)top, box[2] = (double)left + w, box[3] = (double)top + h;
}

static void center_crop(int64_t height, int64_t width, const WindowSpec *s, double box[4]) {
    int64_t resize = (int64_t)((double)s->size / s->crop_ratio);
    int64_t new_h, new_w;
    if (width <= height) { /* resize_shorter_size: long side int(size * long / short) */
        new_w = resize;
        new_h = (int64_t)((double)(resize * height) / (double)width);
    } else {
        new_h = resize;
        new_w = (int64_t)((double)(resize * width) / (double)height);
    }
    double top = pyround((double)(new_h - s->size) / 2.0), left = pyround((double)(new_w - s->size) / 2.0);
    double sx = (double)width / (double)new_w, sy = (double)height / (double)new_h;
    box[0] = left * sx, box[1] = top * sy, box[2] = (left + s->size) * sx, box[3] = (top + s->size) * sy;
}

int window_one(const WindowSpec *s, uint64_t seed, uint64_t epoch, uint64_t index, int64_t width, int64_t height,
               double box[4], uint8_t *flip) {
    if (width < 1 || height < 1) return -1;
    if (!s->train) { /* size <= resized shorter side <= WINDOW_MAX_RESIZE (crop_ratio checked): the crop fits */
        center_crop(height, width, s, box);
        *flip = 0;
        return 0;
    }
    uint64_t st[4];
    Pcg64 r;
    seed_state(seed, epoch, index, st);
    pcg_seed(&r, st);
    random_resized_crop(&r, height, width, s, box);
    *flip = next_double(&r) < 0.5;
    return 0;
}
