/* dw_jpeg_end: see jpeg_end.h. */
#include "jpeg_end.h"

#include <string.h>

#define M_SOI 0xD8
#define M_EOI 0xD9
#define M_SOS 0xDA
#define M_TEM 0x01
#define M_RST0 0xD0
#define M_RST7 0xD7

long long dw_jpeg_end(const uint8_t *data, size_t len) {
    if (len < 2 || data[0] != 0xFF || data[1] != M_SOI) return DW_END_NOT_JPEG;
    size_t i = 2; /* invariant: i <= len */
    int scans = 0;
    for (;;) {
        const uint8_t *ff = memchr(data + i, 0xFF, len - i);
        if (ff == NULL) return DW_END_TRUNCATED;
        i = (size_t)(ff - data) + 1;
        while (i < len && data[i] == 0xFF) i++; /* fill bytes */
        if (i == len) return DW_END_TRUNCATED;
        const uint8_t code = data[i++];
        if (code == 0x00 || (code >= M_RST0 && code <= M_RST7) || code == M_SOI || code == M_TEM) continue;
        if (code == M_EOI) return scans > 0 ? (long long)i : DW_END_NO_SCAN;
        if (len - i < 2) return DW_END_TRUNCATED;
        const size_t seg = ((size_t)data[i] << 8) | data[i + 1]; /* counts its own two bytes */
        if (seg < 2) return DW_END_BAD_LENGTH;
        if (seg > len - i) return DW_END_TRUNCATED;
        i += seg;
        if (code == M_SOS) scans++;
    }
}
