/* One image: JPEG bytes -> the crop window's pixels at a DCT-reduced scale -> resized, flipped, CHW output.
 *
 * Pure C over libjpeg-turbo's libjpeg API; no Python. Each worker thread owns one DecodeCtx (its decompressor
 * and scratch buffers, grown on demand and reused), so images never share mutable state.
 */
#ifndef DATAIO_JPEG_WINDOW_H
#define DATAIO_JPEG_WINDOW_H

#include <stddef.h>
#include <stdint.h>

/* Status of one image. Anything but DW_OK sends the sample to the Python path (which decodes what PIL can
 * and otherwise raises the error that names the sample). The verdict does not depend on the crop: a file whose
 * bytes end before EOI is refused before decoding (dw_jpeg_end), and every image is entropy-decoded to its end
 * (rows below the crop skipped, not converted), so a libjpeg warning or error anywhere refuses it. */
enum {
    DW_OK = 0,
    DW_ERR_JPEG = 1,        /* libjpeg error or warning anywhere in the file (corrupt, truncated, not a JPEG) */
    DW_ERR_UNSUPPORTED = 2, /* a colour space this kernel does not convert (CMYK, YCCK) */
    DW_ERR_BOX = 3,         /* crop box empty or outside the image */
    DW_ERR_TOO_LARGE = 4,   /* header dimensions over the pixel bound: refused before any allocation */
    DW_ERR_NOMEM = 5,       /* scratch allocation failed */
};

#define DW_MSG_LEN 160
#define DW_MAX_PIXELS 178956970LL  /* PIL's decompression-bomb limit (2 x MAX_IMAGE_PIXELS) */
#define DW_MAX_LIBJPEG_MEMORY (512L * 1024 * 1024)

typedef struct {
    double box[4];   /* left, top, right, bottom in original pixels */
    int flip;        /* mirror horizontally */
    int crop_first;  /* 1: RandomResizedCrop (crop, then resize); 0: Resize + CenterCrop (filter sees outside) */
    int out_w, out_h;
    /* output: CHW planes; uint8 when out_f32 is NULL, else float32 normalised with scale/shift per channel */
    uint8_t *out_u8;
    float *out_f32;
    float scale[3], shift[3];
} DwTask;

typedef struct DecodeCtx DecodeCtx;

DecodeCtx *dw_ctx_new(void);
void dw_ctx_free(DecodeCtx *ctx);

/* Decodes and writes one image; returns a DW_* status and, on failure, a message in msg (DW_MSG_LEN bytes). */
int dw_process(DecodeCtx *ctx, const uint8_t *data, size_t len, const DwTask *task, char *msg);

/* Header only: width, height and libjpeg's colour space (J_COLOR_SPACE value). Returns a DW_* status. */
int dw_header(DecodeCtx *ctx, const uint8_t *data, size_t len, int *width, int *height, int *colorspace, char *msg);

/* Vector code: mode 0 turns AVX2 off (portable C only), -1 back to automatic, anything else only asks. Returns
 * whether AVX2 code runs. */
int dw_simd(int mode);

/* The DCT downscale (8, 4, 2 or 1) leaving >= out_w x out_h pixels across a box_w x box_h box. */
int dw_dct_factor(double box_w, double box_h, int out_w, int out_h);

#endif
