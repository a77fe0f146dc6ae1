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
#include <stdio.h>

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

/* ---- layer tables: which graph node(s) each instruction of a payload came from ------------------- */

#define AK_MAX_LAYER_NAME 255u

/* A payload's layer table: `count` names (each 1..AK_MAX_LAYER_NAME bytes, no NUL inside; e.g. "conv1" or
 * "conv1+relu1") and, per instruction, the index of its layer (< count). Zero-initialize; ak_layers_free. */
typedef struct ak_layers {
    uint32_t count, capacity;
    char **names;
    uint32_t *of;          /* one layer index per instruction */
    uint32_t of_count;
} ak_layers;

/* Frees a layer table's names and indices (and zeroes it). */
static inline void ak_layers_free(ak_layers *t) {
    for (uint32_t i = 0; t->names && i < t->count; i++) free(t->names[i]);
    free(t->names);
    free(t->of);
    memset(t, 0, sizeof *t);
}

/* Appends a layer named `name` (truncated to AK_MAX_LAYER_NAME bytes; "?" when empty). Returns its index,
 * or UINT32_MAX when out of memory. */
static inline uint32_t ak_layers_add(ak_layers *t, const char *name) {
    if (t->count == t->capacity) {
        uint32_t capacity = t->capacity ? 2 * t->capacity : 16;
        char **grown = realloc(t->names, capacity * sizeof *grown);
        if (!grown) return UINT32_MAX;
        t->names = grown;
        t->capacity = capacity;
    }
    size_t n = name && *name ? strlen(name) : 1;
    if (n > AK_MAX_LAYER_NAME) n = AK_MAX_LAYER_NAME;
    char *copy = malloc(n + 1);
    if (!copy) return UINT32_MAX;
    memcpy(copy, name && *name ? name : "?", n);
    copy[n] = 0;
    t->names[t->count] = copy;
    return t->count++;
}

/* Sets the layer of instructions [begin, end) to `layer`, growing the index array to `end`. 0, or -1 when
 * out of memory. Instructions below `begin` never given a layer keep layer 0. */
static inline int ak_layers_assign(ak_layers *t, uint32_t begin, uint32_t end, uint32_t layer) {
    if (end > t->of_count) {
        uint32_t *grown = realloc(t->of, (size_t)end * sizeof *grown + 4);
        if (!grown) return -1;
        memset(grown + t->of_count, 0, (size_t)(end - t->of_count) * sizeof *grown);
        t->of = grown;
        t->of_count = end;
    }
    for (uint32_t i = begin; i < end; i++) t->of[i] = layer;
    return 0;
}

/* Appends the table for `instructions` instructions: u32 count, count × (u32 length, bytes), then
 * instructions × u32 layer index (0 for instructions the table does not cover). */
static inline void ak_put_layers(ak_bytes *b, const ak_layers *t, uint32_t instructions) {
    ak_put_u32(b, t->count);
    for (uint32_t i = 0; i < t->count; i++) {
        uint32_t n = (uint32_t)strlen(t->names[i]);
        ak_put_u32(b, n);
        ak_put(b, t->names[i], n);
    }
    for (uint32_t i = 0; i < instructions; i++) ak_put_u32(b, i < t->of_count ? t->of[i] : 0);
}

/* Reads a table written by ak_put_layers for `instructions` instructions into *t (zeroed first), validating
 * it: at least one layer when there are instructions, names of 1..AK_MAX_LAYER_NAME bytes without NUL, every
 * index < count. 0, or -1 with a reason in `why` (t freed). */
static inline int ak_get_layers(ak_reader *r, uint32_t instructions, ak_layers *t, char *why, size_t why_size) {
    memset(t, 0, sizeof *t);
#define AK_LAYERS_FAIL(text) do { snprintf(why, why_size, "%s", text); ak_layers_free(t); return -1; } while (0)
    uint32_t count = ak_get_u32(r);
    if (r->bad) AK_LAYERS_FAIL("payload truncated in its layer table");
    if (count > (r->size - r->at) / 5 || (instructions && !count)) AK_LAYERS_FAIL("layer table count does not fit the payload (or is 0)");
    t->names = calloc((size_t)count + 1, sizeof *t->names);
    t->of = calloc((size_t)instructions + 1, sizeof *t->of);
    if (!t->names || !t->of) AK_LAYERS_FAIL("out of memory");
    t->capacity = count;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t n = ak_get_u32(r);
        if (r->bad || n < 1 || n > AK_MAX_LAYER_NAME || n > r->size - r->at) AK_LAYERS_FAIL("layer name truncated, empty or too long");
        if (memchr(r->data + r->at, 0, n)) AK_LAYERS_FAIL("layer name contains a NUL byte");
        t->names[i] = malloc(n + 1);
        if (!t->names[i]) AK_LAYERS_FAIL("out of memory");
        memcpy(t->names[i], r->data + r->at, n);
        t->names[i][n] = 0;
        r->at += n;
        t->count = i + 1;
    }
    for (uint32_t i = 0; i < instructions; i++) {
        t->of[i] = ak_get_u32(r);
        if (r->bad) AK_LAYERS_FAIL("payload truncated in the instructions' layer indices");
        if (t->of[i] >= count) AK_LAYERS_FAIL("an instruction's layer index is out of range");
    }
    t->of_count = instructions;
    return 0;
#undef AK_LAYERS_FAIL
}

#endif
