/* Crop windows of a batch, bit-identical to ImagePipeline.window with sample_rng (windows.c). */
#ifndef DATAIO_WINDOWS_H
#define DATAIO_WINDOWS_H
#include <Python.h>
#include <stdint.h>

typedef struct {
    int train;
    int size;
    double scale[2], ratio[2], crop_ratio;
} WindowSpec;

/* box = (left, top, right, bottom) in original pixels, flip; 0 on success. */
int window_one(const WindowSpec *s, uint64_t seed, uint64_t epoch, uint64_t index, int64_t width, int64_t height,
               double box[4], uint8_t *flip);

PyObject *dataio_crop_windows(PyObject *module, PyObject *args, PyObject *kwds);

#endif
