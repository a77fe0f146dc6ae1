/*
 * ak_bytes.h — the little-endian byte writer and bounds-checked reader that the accelerator plugins' payload
 * codecs share (npu isa.c, dsp program.c, vta kiln_vta.c).
 *
 * Header-only (static inline) so that a plugin's codec compiles on its own, also where accelkit.c is not
 * linked (the Swift build compiles plugins/dsp/program.c as the KilnDSP target). C11, libc only.
 */
#ifndef AK_BYTES_H
#define AK_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A growable byte buffer. `failed` is nonzero once an append could not be made (1: out of memory; a codec
 * may set other values of its own, e.g. 2 for "a field does not fit its encoding"); later appends are
 * ignored. Zero-initialize before the first append; free `data` when done. */
typedef struct ak_bytes {
    uint8_t *data;
    size_t size, capacity;
    int failed;
} ak_bytes;

/* Appends `size` bytes from `data` (NULL allowed when size is 0), doubling the capacity as needed. */
static inline void ak_put(ak_bytes *b, const void *data, size_t size) {
    if (b->failed) return;
    if (size > SIZE_MAX / 4 - b->size) { b->failed = 1; return; }
    if (b->size + size > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 256;
        while (capacity < b->size + size) capacity *= 2;
        uint8_t *grown = realloc(b->data, capacity);
        if (!grown) { b->failed = 1; return; }
        b->data = grown;
        b->capacity = capacity;
    }
    if (size) memcpy(b->data + b->size, data, size);
    b->size += size;
}

/* Appends a little-endian u32. */
static inline void ak_put_u32(ak_bytes *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    ak_put(b, x, 4);
}

/* Appends a little-endian u64. */
static inline void ak_put_u64(ak_bytes *b, uint64_t v) { ak_put_u32(b, (uint32_t)v); ak_put_u32(b, (uint32_t)(v >> 32)); }

/* A reader over `size` bytes at `data`, positioned at `at`. `bad` is set (and stays set) once a read would
 * pass the end; reads then return 0, so a decoder may read a whole record and check `bad` once. */
typedef struct ak_reader {
    const uint8_t *data;
    size_t size, at;
    int bad;
} ak_reader;

/* Reads a little-endian u32, or marks the reader bad at the end of the data. */
static inline uint32_t ak_get_u32(ak_reader *r) {
    if (r->bad || r->at > r->size || r->size - r->at < 4) { r->bad = 1; return 0; }
    const uint8_t *x = r->data + r->at;
    r->at += 4;
    return (uint32_t)x[0] | (uint32_t)x[1] << 8 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 24;
}

/* Reads a little-endian u64. */
static inline uint64_t ak_get_u64(ak_reader *r) { uint64_t lo = ak_get_u32(r); return lo | (uint64_t)ak_get_u32(r) << 32; }

#endif
