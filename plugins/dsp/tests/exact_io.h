/*
 * exact_io.h — output, PRNG and the few libc pieces the exactness harness needs, identical on the host
 * and in the freestanding Hexagon build (no libc there: _start, write and exit through trap0).
 */
#ifndef KILN_DSP_EXACT_IO_H
#define KILN_DSP_EXACT_IO_H

#include <stddef.h>
#include <stdint.h>

#if defined(__hexagon__)
/* A Linux system call on Hexagon: number in r6, arguments in r0..r2, trap0(#1), result in r0. */
static inline long exact_syscall3(long number, long a, long b, long c) {
    register long r0 __asm__("r0") = a;
    register long r1 __asm__("r1") = b;
    register long r2 __asm__("r2") = c;
    register long r6 __asm__("r6") = number;
    __asm__ volatile("trap0(#1)" : "+r"(r0) : "r"(r1), "r"(r2), "r"(r6) : "memory");
    return r0;
}
/* write(1, data, size) of the generic syscall table (64), retried until everything is out. */
static inline void exact_write(const char *data, size_t size) {
    while (size > 0) {
        long n = exact_syscall3(64, 1, (long)data, (long)size);
        if (n <= 0) return;
        data += n;
        size -= (size_t)n;
    }
}
/* exit(status) (93). */
static inline void exact_exit(int status) {
    exact_syscall3(93, status, 0, 0);
    for (;;) {}
}
/* The compiler may emit calls to these even in freestanding code. */
__attribute__((used)) void *memcpy(void *d, const void *s, size_t n) { unsigned char *a = d; const unsigned char *b = s; while (n--) *a++ = *b++; return d; }
__attribute__((used)) void *memset(void *d, int c, size_t n) { unsigned char *a = d; while (n--) *a++ = (unsigned char)c; return d; }
__attribute__((used)) void *memmove(void *d, const void *s, size_t n) {
    unsigned char *a = d; const unsigned char *b = s;
    if (a < b) while (n--) *a++ = *b++; else { a += n; b += n; while (n--) *--a = *--b; }
    return d;
}
/* Integer division helpers the compiler calls on Hexagon (no compiler-rt here); only the scalar reference
 * code of the harness divides. Shift-subtract, standard calling convention. */
static uint64_t exact_udivmod64(uint64_t n, uint64_t d, uint64_t *rem) {
    uint64_t q = 0, r = 0;
    for (int bit = 63; bit >= 0; bit--) {
        r = (r << 1) | ((n >> bit) & 1);
        if (d && r >= d) { r -= d; q |= (uint64_t)1 << bit; }
    }
    if (rem) *rem = r;
    return q;
}
__attribute__((used)) uint32_t __hexagon_udivsi3(uint32_t n, uint32_t d) { return (uint32_t)exact_udivmod64(n, d, 0); }
__attribute__((used)) uint32_t __hexagon_umodsi3(uint32_t n, uint32_t d) { uint64_t r; exact_udivmod64(n, d, &r); return (uint32_t)r; }
__attribute__((used)) int32_t __hexagon_divsi3(int32_t n, int32_t d) {
    uint64_t q = exact_udivmod64(n < 0 ? (uint64_t)-(int64_t)n : (uint64_t)n, d < 0 ? (uint64_t)-(int64_t)d : (uint64_t)d, 0);
    return (n < 0) != (d < 0) ? -(int32_t)q : (int32_t)q;
}
__attribute__((used)) int32_t __hexagon_modsi3(int32_t n, int32_t d) { return n - __hexagon_divsi3(n, d) * d; }
__attribute__((used)) uint64_t __hexagon_udivdi3(uint64_t n, uint64_t d) { return exact_udivmod64(n, d, 0); }
__attribute__((used)) uint64_t __hexagon_umoddi3(uint64_t n, uint64_t d) { uint64_t r; exact_udivmod64(n, d, &r); return r; }
#else
#include <stdlib.h>
#include <unistd.h>
/* write(1, ...) until everything is out. */
static inline void exact_write(const char *data, size_t size) {
    while (size > 0) {
        ssize_t n = write(1, data, size);
        if (n <= 0) return;
        data += n;
        size -= (size_t)n;
    }
}
/* Ends the process with `status`. */
static inline void exact_exit(int status) { exit(status); }
#endif

/* A buffered line writer: text accumulates and is flushed when full and at the end. */
static char exact_buffer[8192];
static size_t exact_used;

/* Flushes the buffer to standard output. */
static inline void exact_flush(void) { exact_write(exact_buffer, exact_used); exact_used = 0; }
/* Appends a string. */
static inline void out_str(const char *s) {
    while (*s) {
        if (exact_used == sizeof exact_buffer) exact_flush();
        exact_buffer[exact_used++] = *s++;
    }
}
/* Appends an unsigned number in decimal. */
static inline void out_u64(uint64_t v) {
    char digits[24];
    int n = 0;
    do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    char text[24];
    for (int i = 0; i < n; i++) text[i] = digits[n - 1 - i];
    text[n] = 0;
    out_str(text);
}
/* Appends a signed number in decimal. */
static inline void out_i64(int64_t v) {
    if (v < 0) { out_str("-"); out_u64((uint64_t)0 - (uint64_t)v); } else out_u64((uint64_t)v);
}
/* Appends `size` bytes as hex. */
static inline void out_hex(const void *data, size_t size) {
    const uint8_t *p = data;
    char pair[3] = {0, 0, 0};
    for (size_t i = 0; i < size; i++) {
        pair[0] = "0123456789abcdef"[p[i] >> 4];
        pair[1] = "0123456789abcdef"[p[i] & 15];
        out_str(pair);
    }
}
/* FNV-1a 64 of `size` bytes. */
static inline uint64_t exact_hash(const void *data, size_t size) {
    const uint8_t *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < size; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* The harness's fixed-seed PRNG (xorshift64*). */
static uint64_t exact_state = 0x9e3779b97f4a7c15ull;
/* The next 32 random bits. */
static inline uint32_t rnd32(void) {
    exact_state ^= exact_state >> 12;
    exact_state ^= exact_state << 25;
    exact_state ^= exact_state >> 27;
    return (uint32_t)((exact_state * 2685821657736338717ull) >> 32);
}
/* A random number in [lo, hi] (hi - lo < 2^32), by multiply-shift (no division). */
static inline int64_t rnd_range(int64_t lo, int64_t hi) {
    uint64_t span = (uint64_t)(hi - lo) + 1;
    return lo + (int64_t)(((uint64_t)rnd32() * span) >> 32);
}

#endif
