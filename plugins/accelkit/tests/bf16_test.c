/*
 * bf16_test.c — fp32 -> bf16 rounding against the format's definition: named edge cases (ties to even,
 * subnormals, the overflow to infinity, infinities, quiet and signalling NaNs, signed zero), then 2^24
 * random fp32 bit patterns compared with an independent reference that picks the nearer of the two
 * neighbouring bf16 values in double precision (ties to the even one). Exits 1 on any mismatch.
 */
#include "../accelkit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int failures;

/* The float with bits u. */
static float from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Independent reference: the nearer of the bf16 values below and above |x| (by truncation), ties to even;
 * beyond the largest finite bf16's halfway point, infinity; NaN -> a quiet NaN of the same sign. */
static uint16_t reference(uint32_t u) {
    float f = from_bits(u);
    if (isnan(f)) return (uint16_t)((u >> 16) | 0x40);
    if (isinf(f)) return (uint16_t)(u >> 16);
    uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
    double x = f, a = ak_f32_from_bf16(lo);
    /* the next bf16 value up in magnitude; above the largest finite one it is 2^128 (the rounding boundary) */
    double b = (hi & 0x7fff) == 0x7f80 ? copysign(ldexp(1.0, 128), x) : (double)ak_f32_from_bf16(hi);
    double da = fabs(x - a), db = fabs(x - b);
    if (da < db) return lo;
    if (db < da) return hi;
    return (lo & 1) ? hi : lo;
}

/* Checks one named case. */
static void expect(uint32_t in, uint16_t want, const char *what) {
    uint16_t got = ak_bf16_from_f32(from_bits(in));
    if (got != want) { printf("FAIL %s: 0x%08x -> 0x%04x, want 0x%04x\n", what, in, got, want); failures++; }
}

/* The named cases, then the random sweep. */
int main(void) {
    expect(0x3f800000, 0x3f80, "1.0 exact");
    expect(0x3f808000, 0x3f80, "tie, even below: stays");
    expect(0x3f818000, 0x3f82, "tie, odd below: rounds up to even");
    expect(0x3f808001, 0x3f81, "just above a tie rounds up");
    expect(0x3f807fff, 0x3f80, "just below a tie rounds down");
    expect(0xbf818000, 0xbf82, "negative tie to even (magnitude)");
    expect(0x00000000, 0x0000, "+0");
    expect(0x80000000, 0x8000, "-0");
    expect(0x00008000, 0x0000, "subnormal tie to even zero");
    expect(0x00018000, 0x0002, "subnormal tie to even up");
    expect(0x00010001, 0x0001, "subnormal rounds down");
    expect(0x007fffff, 0x0080, "largest subnormal rounds up to the smallest normal");
    expect(0x7f7fffff, 0x7f80, "largest finite fp32 rounds to +inf");
    expect(0x7f7f7fff, 0x7f7f, "largest finite bf16 stays");
    expect(0x7f7f8000, 0x7f80, "tie above the largest finite bf16 (odd) goes to inf");
    expect(0x7f800000, 0x7f80, "+inf");
    expect(0xff800000, 0xff80, "-inf");
    expect(0x7fc00000, 0x7fc0, "quiet NaN");
    expect(0x7f800001, 0x7fc0, "signalling NaN with only low bits stays NaN");
    expect(0xff812345, 0xffc1, "negative NaN keeps its sign and top bits");
    static const uint32_t nans[4] = {0x7fffffffu, 0x7f800001u, 0xff800100u, 0x7fbfffffu};
    for (int i = 0; i < 4; i++) {
        uint16_t b = ak_bf16_from_f32(from_bits(nans[i]));
        if ((b & 0x7f80) != 0x7f80 || !(b & 0x7f)) { printf("FAIL NaN became 0x%04x\n", b); failures++; }
    }
    int named = failures;
    uint32_t state = 0x9e3779b9u;
    uint64_t mismatches = 0;
    for (uint32_t k = 0; k < (1u << 24); k++) {
        state ^= state << 13; state ^= state >> 17; state ^= state << 5;
        uint32_t u = k < 65536 ? (k << 16) | 0x8000u : state; /* every exact tie pattern, then random bits */
        if (ak_bf16_from_f32(from_bits(u)) != reference(u)) {
            if (mismatches++ < 5) printf("FAIL 0x%08x -> 0x%04x, reference 0x%04x\n", u, ak_bf16_from_f32(from_bits(u)), reference(u));
        }
        if (ak_round_bf16(from_bits(u)) != ak_f32_from_bf16(reference(u)) && !isnan(from_bits(u))) mismatches++;
    }
    failures += mismatches ? 1 : 0;
    printf("bf16: %d named edge cases %s; 2^24 patterns (every tie, then random) vs the reference: %llu mismatches\n",
           20, named ? "FAIL" : "ok", (unsigned long long)mismatches);
    printf("bf16_test: %s\n", failures ? "FAIL" : "PASS");
    return failures ? 1 : 0;
}
