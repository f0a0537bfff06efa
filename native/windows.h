/* Crop windows of a batch, bit-identical to ImagePipeline.window with sample_rng (windows.c). */
#ifndef DATAIO_WINDOWS_H
#define DATAIO_WINDOWS_H
#include <stdint.h>

/* The val transform's resized shorter side, size / crop_ratio, is at most this many pixels: crop_windows refuses a
 * smaller crop_ratio. It keeps center_crop's integer arithmetic exact and defined (resize * side <= 2^53 for every
 * side up to 2^31, so the double division rounds once, as Python's int / int does). */
#define WINDOW_MAX_RESIZE (1 << 22)
#define WINDOW_MAX_RESIZE_TEXT "4194304"

typedef struct {
    int train;
    int size;
    double scale[2], ratio[2], crop_ratio;
} WindowSpec;

/* box = (left, top, right, bottom) in original pixels, flip; 0 on success. The caller checked s (crop_ratio at
 * least size / WINDOW_MAX_RESIZE) and the sizes (1..2^31). */
int window_one(const WindowSpec *s, uint64_t seed, uint64_t epoch, uint64_t index, int64_t width, int64_t height,
               double box[4], uint8_t *flip);

#endif
