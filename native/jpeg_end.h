/* Where a JPEG's bytes end, from their structure alone: the crop-independent truncation check of the kernel. */
#ifndef DATAIO_JPEG_END_H
#define DATAIO_JPEG_END_H

#include <stddef.h>
#include <stdint.h>

#define DW_END_NOT_JPEG (-1)  /* the bytes do not start with SOI */
#define DW_END_TRUNCATED (-2) /* a marker segment runs past the end, or no EOI follows: the file was cut */
#define DW_END_NO_SCAN (-3)   /* EOI before any scan: no image data */
#define DW_END_BAD_LENGTH (-4) /* a marker segment's length is under 2 (its length field counts itself) */

/* The offset just past the image's EOI, or a DW_END_* code (< 0). No decoding, no allocation, O(len) with memchr.
 *
 * Markers are walked from SOI: a marker segment is skipped by its length; anything between markers (a scan's
 * entropy-coded data, or garbage libjpeg would skip with a warning) is skipped to the next marker, where 0xFF
 * followed by 0x00 (a stuffed byte) or RST0-7 does not end it and 0xFF fill bytes before a marker code are skipped.
 * The walk ends at the first EOI. Entropy-coded data cannot contain FF D9, so for a file cut anywhere before its
 * EOI the answer is exact: DW_END_TRUNCATED. Reads nothing outside [data, data + len).
 * dataio.loaders.jpeg_check.jpeg_end is its Python twin (tested to agree on every cut of real JPEGs and on fuzzed
 * bytes). */
long long dw_jpeg_end(const uint8_t *data, size_t len);

#endif
