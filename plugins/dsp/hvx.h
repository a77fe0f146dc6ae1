/*
 * hvx.h — the small HVX intrinsic layer the kiln.dsp kernels are written against.
 *
 * Every kernel in kernels.c calls only the functions below. There are two implementations, chosen at
 * compile time:
 *
 *   - On Hexagon with HVX in 128-byte mode (clang --target=hexagon -mhvx -mhvx-length=128b, which defines
 *     __hexagon__, __HVX__ and __HVX_LENGTH__ == 128) each function is the compiler builtin
 *     __builtin_HEXAGON_V6_<insn>_128B of the one instruction it names.
 *   - Everywhere else each function is a portable C functional model of that instruction on a 128-byte
 *     vector: HVX_Vector is a struct of 128 bytes, HVX_VectorPair a struct of two of them.
 *
 * The model is written from the instruction semantics in the Hexagon V66 HVX Programmer's Reference (the
 * behaviour of each lane is stated next to each function). plugins/dsp/tests/run-hvx-exact proves the two
 * implementations agree bit for bit by running the same test program on the host and, under
 * qemu-hexagon, on the real instruction set. Documentation/targets/DSP.md lists the subset.
 *
 * Lanes: b/ub = 128 bytes, h/uh = 64 halfwords, w = 32 words, little-endian (lane 0 at byte 0).
 * C11; no libc calls (the harness also builds freestanding).
 */
#ifndef KILN_DSP_HVX_H
#define KILN_DSP_HVX_H

#include <stdint.h>
#include <stddef.h>

/* The vector length in bytes: HVX's 128-byte mode. */
#define HVX_BYTES 128

#if defined(__hexagon__) && defined(__HVX__) && defined(__HVX_LENGTH__) && __HVX_LENGTH__ == 128
#define HVX_NATIVE 1

/* One HVX vector register (the compiler's native vector type). */
typedef long HVX_Vector __attribute__((__vector_size__(128), __aligned__(128)));
/* A register pair (Vdd: low half = V(2n), high half = V(2n+1)). */
typedef long HVX_VectorPair __attribute__((__vector_size__(256), __aligned__(256)));
/* An unaligned view of a vector in memory (vmemu). */
typedef long HVX_UVector __attribute__((__vector_size__(128), __aligned__(1)));

/* Loads 128 bytes from any address. */
static inline HVX_Vector hvx_load(const void *p) { return *(const HVX_UVector *)p; }
/* Stores 128 bytes to any address. */
static inline void hvx_store(void *p, HVX_Vector v) { *(HVX_UVector *)p = v; }
/* The low vector of a pair. */
static inline HVX_Vector hvx_lo(HVX_VectorPair p) { return __builtin_HEXAGON_V6_lo_128B(p); }
/* The high vector of a pair. */
static inline HVX_Vector hvx_hi(HVX_VectorPair p) { return __builtin_HEXAGON_V6_hi_128B(p); }
/* vsplat(Rt).b: every byte lane = Rt's low byte. */
static inline HVX_Vector hvx_vsplatb(int32_t r) { return __builtin_HEXAGON_V6_lvsplatb_128B(r); }
/* vsplat(Rt).h: every halfword lane = Rt's low halfword. */
static inline HVX_Vector hvx_vsplath(int32_t r) { return __builtin_HEXAGON_V6_lvsplath_128B(r); }
/* vsplat(Rt): every word lane = Rt. */
static inline HVX_Vector hvx_vsplatw(int32_t r) { return __builtin_HEXAGON_V6_lvsplatw_128B(r); }
/* Vx.w += vrmpy(Vu.b, Vv.b): each word lane adds the 4 signed×signed byte products of its lane. */
static inline HVX_Vector hvx_vrmpybv_acc(HVX_Vector x, HVX_Vector u, HVX_Vector v) { return __builtin_HEXAGON_V6_vrmpybv_acc_128B(x, u, v); }
/* Vx.w += vrmpy(Vu.ub, Vv.b): unsigned bytes of u × signed bytes of v, 4 per word lane. */
static inline HVX_Vector hvx_vrmpybusv_acc(HVX_Vector x, HVX_Vector u, HVX_Vector v) { return __builtin_HEXAGON_V6_vrmpybusv_acc_128B(x, u, v); }
/* Vx.uw += vrmpy(Vu.ub, Vv.ub): unsigned×unsigned, 4 per word lane (modulo 2^32). */
static inline HVX_Vector hvx_vrmpyubv_acc(HVX_Vector x, HVX_Vector u, HVX_Vector v) { return __builtin_HEXAGON_V6_vrmpyubv_acc_128B(x, u, v); }
/* Vd.h = vmpy(Vu.h, Vv.h):<<1:rnd:sat — the Q15 product of each halfword lane, rounded, saturated. */
static inline HVX_Vector hvx_vmpyhvsrs(HVX_Vector u, HVX_Vector v) { return __builtin_HEXAGON_V6_vmpyhvsrs_128B(u, v); }
/* Vd.w = vmpye(Vu.w, Vv.uh): each word of u times the low (even) unsigned halfword of v's word, >> 16. */
static inline HVX_Vector hvx_vmpyewuh(HVX_Vector u, HVX_Vector v) { return __builtin_HEXAGON_V6_vmpyewuh_128B(u, v); }
/* Vx.w += vmpyo(Vu.w, Vv.h):<<1:rnd:sat:shift — completes the rounded Q31 product begun by vmpyewuh. */
static inline HVX_Vector hvx_vmpyowh_rnd_sacc(HVX_Vector x, HVX_Vector u, HVX_Vector v) { return __builtin_HEXAGON_V6_vmpyowh_rnd_sacc_128B(x, u, v); }
/* Vd.h = vadd(Vu.h, Vv.h):sat. */
static inline HVX_Vector hvx_vaddhsat(HVX_Vector u, HVX_Vector v) { return __builtin_HEXAGON_V6_vaddhsat_128B(u, v); }
/* Vd.h = vsub(Vu.h, Vv.h):sat. */
static inline HVX_Vector hvx_vsubhsat(HVX_Vector u, HVX_Vector v) { return __builtin_HEXAGON_V6_vsubhsat_128B(u, v); }
/* Vd.w = vadd(Vu.w, Vv.w):sat. */
static inline HVX_Vector hvx_vaddwsat(HVX_Vector u, HVX_Vector v) { return __builtin_HEXAGON_V6_vaddwsat_128B(u, v); }
/* Vd.w = vsub(Vu.w, Vv.w):sat. */
static inline HVX_Vector hvx_vsubwsat(HVX_Vector u, HVX_Vector v) { return __builtin_HEXAGON_V6_vsubwsat_128B(u, v); }
/* Vd.w = vasr(Vu.w, Rt): arithmetic right shift of each word by Rt & 31. */
static inline HVX_Vector hvx_vasrw(HVX_Vector u, int32_t r) { return __builtin_HEXAGON_V6_vasrw_128B(u, r); }
/* Vd.w = vasl(Vu.w, Rt): left shift of each word by Rt & 31 (bits shifted out are lost). */
static inline HVX_Vector hvx_vaslw(HVX_Vector u, int32_t r) { return __builtin_HEXAGON_V6_vaslw_128B(u, r); }
/* Vd.h = vasr(Vu.w, Vv.w, Rt):rnd:sat — narrowing: h[2i] from v.w[i], h[2i+1] from u.w[i], each
 * (w + rounding) >> (Rt & 15), saturated to int16. */
static inline HVX_Vector hvx_vasrwhrndsat(HVX_Vector u, HVX_Vector v, int32_t r) { return __builtin_HEXAGON_V6_vasrwhrndsat_128B(u, v, r); }
/* Vd.b = vasr(Vu.h, Vv.h, Rt):sat — narrowing: b[2i] from v.h[i], b[2i+1] from u.h[i], each
 * h >> (Rt & 7), saturated to int8. */
static inline HVX_Vector hvx_vasrhbsat(HVX_Vector u, HVX_Vector v, int32_t r) { return __builtin_HEXAGON_V6_vasrhbsat_128B(u, v, r); }
/* Vd.h = vpack(Vu.w, Vv.w):sat — h[0..31] = sat16(v.w[0..31]), h[32..63] = sat16(u.w[0..31]). */
static inline HVX_Vector hvx_vpackwh_sat(HVX_Vector u, HVX_Vector v) { return __builtin_HEXAGON_V6_vpackwh_sat_128B(u, v); }
/* Vd.b = vpack(Vu.h, Vv.h):sat — b[0..63] = sat8(v.h[0..63]), b[64..127] = sat8(u.h[0..63]). */
static inline HVX_Vector hvx_vpackhb_sat(HVX_Vector u, HVX_Vector v) { return __builtin_HEXAGON_V6_vpackhb_sat_128B(u, v); }
/* Vd.ub = vpack(Vu.h, Vv.h):sat — like vpackhb_sat, saturated to 0..255. */
static inline HVX_Vector hvx_vpackhub_sat(HVX_Vector u, HVX_Vector v) { return __builtin_HEXAGON_V6_vpackhub_sat_128B(u, v); }
/* Vdd.h = vunpack(Vu.b): sign-extends bytes 0..63 into the low vector, 64..127 into the high one. */
static inline HVX_VectorPair hvx_vunpackb(HVX_Vector u) { return __builtin_HEXAGON_V6_vunpackb_128B(u); }
/* Vdd.uh = vunpack(Vu.ub): zero-extends, same lane order as vunpackb. */
static inline HVX_VectorPair hvx_vunpackub(HVX_Vector u) { return __builtin_HEXAGON_V6_vunpackub_128B(u); }
/* Vdd.w = vunpack(Vu.h): sign-extends halfwords 0..31 into the low vector, 32..63 into the high one. */
static inline HVX_VectorPair hvx_vunpackh(HVX_Vector u) { return __builtin_HEXAGON_V6_vunpackh_128B(u); }
/* Vd.b = vmax(Vu.b, Vv.b). */
static inline HVX_Vector hvx_vmaxb(HVX_Vector u, HVX_Vector v) { return __builtin_HEXAGON_V6_vmaxb_128B(u, v); }
/* Vd.b = vmin(Vu.b, Vv.b). */
static inline HVX_Vector hvx_vminb(HVX_Vector u, HVX_Vector v) { return __builtin_HEXAGON_V6_vminb_128B(u, v); }
/* Vd.ub = vmax(Vu.ub, Vv.ub). */
static inline HVX_Vector hvx_vmaxub(HVX_Vector u, HVX_Vector v) { return __builtin_HEXAGON_V6_vmaxub_128B(u, v); }
/* Vd.ub = vmin(Vu.ub, Vv.ub). */
static inline HVX_Vector hvx_vminub(HVX_Vector u, HVX_Vector v) { return __builtin_HEXAGON_V6_vminub_128B(u, v); }
/* Vd.b = vlut32(Vu.b, Vv.b, Rt): byte i = Vv.h[idx & 63].b[(Rt >> 1) & 1] when idx = Vu.ub[i] lies in segment
 * Rt & 7 (idx >> 5 == Rt & 7), else 0 (see dsp_lut_layout for the table layout this implies). */
static inline HVX_Vector hvx_vlut32(HVX_Vector u, HVX_Vector v, int32_t r) { return __builtin_HEXAGON_V6_vlutvvb_128B(u, v, r); }
/* Vd.b = vsub(Vu.b, Vv.b): byte-wise difference, modulo 256. */
static inline HVX_Vector hvx_vsubb(HVX_Vector u, HVX_Vector v) { return __builtin_HEXAGON_V6_vsubb_128B(u, v); }
/* Vx.b |= vlut32(Vu.b, Vv.b, Rt): the same lookup ORed into x (non-matching lanes leave x unchanged). */
static inline HVX_Vector hvx_vlut32_or(HVX_Vector x, HVX_Vector u, HVX_Vector v, int32_t r) { return __builtin_HEXAGON_V6_vlutvvb_oracc_128B(x, u, v, r); }

#else /* the portable functional model */
#define HVX_NATIVE 0

/* One HVX vector register: 128 bytes seen as bytes, halfwords or words. */
typedef struct HVX_Vector {
    union {
        int8_t b[128];
        uint8_t ub[128];
        int16_t h[64];
        uint16_t uh[64];
        int32_t w[32];
        uint32_t uw[32];
    };
} HVX_Vector;

/* A register pair: v[0] is the low vector, v[1] the high one. */
typedef struct HVX_VectorPair {
    HVX_Vector v[2];
} HVX_VectorPair;

static inline int32_t hvx_m_sat16(int64_t x) { return x > 32767 ? 32767 : x < -32768 ? -32768 : (int32_t)x; }
static inline int32_t hvx_m_sat8(int64_t x) { return x > 127 ? 127 : x < -128 ? -128 : (int32_t)x; }
static inline int32_t hvx_m_satu8(int64_t x) { return x > 255 ? 255 : x < 0 ? 0 : (int32_t)x; }
static inline int32_t hvx_m_sat32(int64_t x) { return x > INT32_MAX ? INT32_MAX : x < INT32_MIN ? INT32_MIN : (int32_t)x; }
/* Arithmetic right shift of a signed 64-bit value (floor division by 2^s), defined for negatives. */
static inline int64_t hvx_m_asr64(int64_t x, unsigned s) { return x >= 0 ? x >> s : -(int64_t)((uint64_t)(-(x + 1)) >> s) - 1; }

/* Loads 128 bytes from any address. */
static inline HVX_Vector hvx_load(const void *p) {
    HVX_Vector v;
    const uint8_t *s = p;
    for (int i = 0; i < 128; i++) v.ub[i] = s[i];
    return v;
}
/* Stores 128 bytes to any address. */
static inline void hvx_store(void *p, HVX_Vector v) {
    uint8_t *d = p;
    for (int i = 0; i < 128; i++) d[i] = v.ub[i];
}
/* The low vector of a pair. */
static inline HVX_Vector hvx_lo(HVX_VectorPair p) { return p.v[0]; }
/* The high vector of a pair. */
static inline HVX_Vector hvx_hi(HVX_VectorPair p) { return p.v[1]; }
/* vsplat(Rt).b: every byte lane = Rt's low byte. */
static inline HVX_Vector hvx_vsplatb(int32_t r) { HVX_Vector d; for (int i = 0; i < 128; i++) d.ub[i] = (uint8_t)r; return d; }
/* vsplat(Rt).h: every halfword lane = Rt's low halfword. */
static inline HVX_Vector hvx_vsplath(int32_t r) { HVX_Vector d; for (int i = 0; i < 64; i++) d.uh[i] = (uint16_t)r; return d; }
/* vsplat(Rt): every word lane = Rt. */
static inline HVX_Vector hvx_vsplatw(int32_t r) { HVX_Vector d; for (int i = 0; i < 32; i++) d.w[i] = r; return d; }

/* Vx.w += vrmpy(Vu.b, Vv.b): each word lane adds the 4 signed×signed byte products of its lane (mod 2^32). */
static inline HVX_Vector hvx_vrmpybv_acc(HVX_Vector x, HVX_Vector u, HVX_Vector v) {
    for (int i = 0; i < 32; i++) {
        uint32_t s = x.uw[i];
        for (int j = 0; j < 4; j++) s += (uint32_t)((int32_t)u.b[4 * i + j] * (int32_t)v.b[4 * i + j]);
        x.uw[i] = s;
    }
    return x;
}
/* Vx.w += vrmpy(Vu.ub, Vv.b): unsigned bytes of u × signed bytes of v, 4 per word lane (mod 2^32). */
static inline HVX_Vector hvx_vrmpybusv_acc(HVX_Vector x, HVX_Vector u, HVX_Vector v) {
    for (int i = 0; i < 32; i++) {
        uint32_t s = x.uw[i];
        for (int j = 0; j < 4; j++) s += (uint32_t)((int32_t)u.ub[4 * i + j] * (int32_t)v.b[4 * i + j]);
        x.uw[i] = s;
    }
    return x;
}
/* Vx.uw += vrmpy(Vu.ub, Vv.ub): unsigned×unsigned, 4 per word lane (mod 2^32). */
static inline HVX_Vector hvx_vrmpyubv_acc(HVX_Vector x, HVX_Vector u, HVX_Vector v) {
    for (int i = 0; i < 32; i++) {
        uint32_t s = x.uw[i];
        for (int j = 0; j < 4; j++) s += (uint32_t)u.ub[4 * i + j] * (uint32_t)v.ub[4 * i + j];
        x.uw[i] = s;
    }
    return x;
}
/* Vd.h = vmpy(Vu.h, Vv.h):<<1:rnd:sat — sat16((2·u·v + 0x8000) >> 16) per halfword lane. */
static inline HVX_Vector hvx_vmpyhvsrs(HVX_Vector u, HVX_Vector v) {
    HVX_Vector d;
    for (int i = 0; i < 64; i++) d.h[i] = (int16_t)hvx_m_sat16(hvx_m_asr64(2 * (int64_t)u.h[i] * v.h[i] + 0x8000, 16));
    return d;
}
/* Vd.w = vmpye(Vu.w, Vv.uh): (u.w[i] × low unsigned halfword of v.w[i]) >> 16 (arithmetic). */
static inline HVX_Vector hvx_vmpyewuh(HVX_Vector u, HVX_Vector v) {
    HVX_Vector d;
    for (int i = 0; i < 32; i++) d.w[i] = (int32_t)hvx_m_asr64((int64_t)u.w[i] * (int64_t)(v.uw[i] & 0xffffu), 16);
    return d;
}
/* Vx.w += vmpyo(Vu.w, Vv.h):<<1:rnd:sat:shift — x = sat32((2·(u.w[i] × high signed halfword of v.w[i])
 * + 2·x + 0x8000) >> 16). After x = vmpyewuh(u, v) this is the Q31 product round(u·v / 2^31). */
static inline HVX_Vector hvx_vmpyowh_rnd_sacc(HVX_Vector x, HVX_Vector u, HVX_Vector v) {
    for (int i = 0; i < 32; i++) {
        int64_t p = (int64_t)u.w[i] * (int64_t)(int16_t)(v.uw[i] >> 16);
        x.w[i] = hvx_m_sat32(hvx_m_asr64(2 * p + 2 * (int64_t)x.w[i] + 0x8000, 16));
    }
    return x;
}
/* Vd.h = vadd(Vu.h, Vv.h):sat. */
static inline HVX_Vector hvx_vaddhsat(HVX_Vector u, HVX_Vector v) { HVX_Vector d; for (int i = 0; i < 64; i++) d.h[i] = (int16_t)hvx_m_sat16((int32_t)u.h[i] + v.h[i]); return d; }
/* Vd.h = vsub(Vu.h, Vv.h):sat. */
static inline HVX_Vector hvx_vsubhsat(HVX_Vector u, HVX_Vector v) { HVX_Vector d; for (int i = 0; i < 64; i++) d.h[i] = (int16_t)hvx_m_sat16((int32_t)u.h[i] - v.h[i]); return d; }
/* Vd.w = vadd(Vu.w, Vv.w):sat. */
static inline HVX_Vector hvx_vaddwsat(HVX_Vector u, HVX_Vector v) { HVX_Vector d; for (int i = 0; i < 32; i++) d.w[i] = hvx_m_sat32((int64_t)u.w[i] + v.w[i]); return d; }
/* Vd.w = vsub(Vu.w, Vv.w):sat. */
static inline HVX_Vector hvx_vsubwsat(HVX_Vector u, HVX_Vector v) { HVX_Vector d; for (int i = 0; i < 32; i++) d.w[i] = hvx_m_sat32((int64_t)u.w[i] - v.w[i]); return d; }
/* Vd.w = vasr(Vu.w, Rt): arithmetic right shift of each word by Rt & 31. */
static inline HVX_Vector hvx_vasrw(HVX_Vector u, int32_t r) { HVX_Vector d; for (int i = 0; i < 32; i++) d.w[i] = (int32_t)hvx_m_asr64(u.w[i], (unsigned)r & 31); return d; }
/* Vd.w = vasl(Vu.w, Rt): left shift of each word by Rt & 31 (bits shifted out are lost). */
static inline HVX_Vector hvx_vaslw(HVX_Vector u, int32_t r) { HVX_Vector d; for (int i = 0; i < 32; i++) d.uw[i] = u.uw[i] << ((unsigned)r & 31); return d; }
/* Vd.h = vasr(Vu.w, Vv.w, Rt):rnd:sat — h[2i] from v.w[i], h[2i+1] from u.w[i], each
 * sat16((w + 2^(s-1)) >> s) with s = Rt & 15 (no rounding term when s is 0). */
static inline HVX_Vector hvx_vasrwhrndsat(HVX_Vector u, HVX_Vector v, int32_t r) {
    HVX_Vector d;
    unsigned s = (unsigned)r & 15;
    int64_t round = s ? (int64_t)1 << (s - 1) : 0;
    for (int i = 0; i < 32; i++) {
        d.h[2 * i] = (int16_t)hvx_m_sat16(hvx_m_asr64((int64_t)v.w[i] + round, s));
        d.h[2 * i + 1] = (int16_t)hvx_m_sat16(hvx_m_asr64((int64_t)u.w[i] + round, s));
    }
    return d;
}
/* Vd.b = vasr(Vu.h, Vv.h, Rt):sat — b[2i] from v.h[i], b[2i+1] from u.h[i], each sat8(h >> (Rt & 7)). */
static inline HVX_Vector hvx_vasrhbsat(HVX_Vector u, HVX_Vector v, int32_t r) {
    HVX_Vector d;
    unsigned s = (unsigned)r & 7;
    for (int i = 0; i < 64; i++) {
        d.b[2 * i] = (int8_t)hvx_m_sat8(hvx_m_asr64(v.h[i], s));
        d.b[2 * i + 1] = (int8_t)hvx_m_sat8(hvx_m_asr64(u.h[i], s));
    }
    return d;
}
/* Vd.h = vpack(Vu.w, Vv.w):sat — h[0..31] = sat16(v.w[0..31]), h[32..63] = sat16(u.w[0..31]). */
static inline HVX_Vector hvx_vpackwh_sat(HVX_Vector u, HVX_Vector v) {
    HVX_Vector d;
    for (int i = 0; i < 32; i++) { d.h[i] = (int16_t)hvx_m_sat16(v.w[i]); d.h[32 + i] = (int16_t)hvx_m_sat16(u.w[i]); }
    return d;
}
/* Vd.b = vpack(Vu.h, Vv.h):sat — b[0..63] = sat8(v.h[0..63]), b[64..127] = sat8(u.h[0..63]). */
static inline HVX_Vector hvx_vpackhb_sat(HVX_Vector u, HVX_Vector v) {
    HVX_Vector d;
    for (int i = 0; i < 64; i++) { d.b[i] = (int8_t)hvx_m_sat8(v.h[i]); d.b[64 + i] = (int8_t)hvx_m_sat8(u.h[i]); }
    return d;
}
/* Vd.ub = vpack(Vu.h, Vv.h):sat — like vpackhb_sat, saturated to 0..255. */
static inline HVX_Vector hvx_vpackhub_sat(HVX_Vector u, HVX_Vector v) {
    HVX_Vector d;
    for (int i = 0; i < 64; i++) { d.ub[i] = (uint8_t)hvx_m_satu8(v.h[i]); d.ub[64 + i] = (uint8_t)hvx_m_satu8(u.h[i]); }
    return d;
}
/* Vdd.h = vunpack(Vu.b): sign-extends bytes 0..63 into the low vector, 64..127 into the high one. */
static inline HVX_VectorPair hvx_vunpackb(HVX_Vector u) {
    HVX_VectorPair d;
    for (int i = 0; i < 64; i++) { d.v[0].h[i] = u.b[i]; d.v[1].h[i] = u.b[64 + i]; }
    return d;
}
/* Vdd.uh = vunpack(Vu.ub): zero-extends, same lane order as vunpackb. */
static inline HVX_VectorPair hvx_vunpackub(HVX_Vector u) {
    HVX_VectorPair d;
    for (int i = 0; i < 64; i++) { d.v[0].uh[i] = u.ub[i]; d.v[1].uh[i] = u.ub[64 + i]; }
    return d;
}
/* Vdd.w = vunpack(Vu.h): sign-extends halfwords 0..31 into the low vector, 32..63 into the high one. */
static inline HVX_VectorPair hvx_vunpackh(HVX_Vector u) {
    HVX_VectorPair d;
    for (int i = 0; i < 32; i++) { d.v[0].w[i] = u.h[i]; d.v[1].w[i] = u.h[32 + i]; }
    return d;
}
/* Vd.b = vmax(Vu.b, Vv.b). */
static inline HVX_Vector hvx_vmaxb(HVX_Vector u, HVX_Vector v) { HVX_Vector d; for (int i = 0; i < 128; i++) d.b[i] = u.b[i] > v.b[i] ? u.b[i] : v.b[i]; return d; }
/* Vd.b = vmin(Vu.b, Vv.b). */
static inline HVX_Vector hvx_vminb(HVX_Vector u, HVX_Vector v) { HVX_Vector d; for (int i = 0; i < 128; i++) d.b[i] = u.b[i] < v.b[i] ? u.b[i] : v.b[i]; return d; }
/* Vd.ub = vmax(Vu.ub, Vv.ub). */
static inline HVX_Vector hvx_vmaxub(HVX_Vector u, HVX_Vector v) { HVX_Vector d; for (int i = 0; i < 128; i++) d.ub[i] = u.ub[i] > v.ub[i] ? u.ub[i] : v.ub[i]; return d; }
/* Vd.ub = vmin(Vu.ub, Vv.ub). */
static inline HVX_Vector hvx_vminub(HVX_Vector u, HVX_Vector v) { HVX_Vector d; for (int i = 0; i < 128; i++) d.ub[i] = u.ub[i] < v.ub[i] ? u.ub[i] : v.ub[i]; return d; }
/* Vd.b = vlut32(Vu.b, Vv.b, Rt): for each byte lane, idx = u.ub[i]; when idx >> 5 == (Rt & 7) the result is
 * byte (Rt >> 1) & 1 of halfword idx mod 64 of v (128-byte mode: log2(128) - 6 = 1), otherwise 0. */
static inline HVX_Vector hvx_vlut32(HVX_Vector u, HVX_Vector v, int32_t r) {
    HVX_Vector d;
    unsigned match = (unsigned)r & 7, odd = ((unsigned)r >> 1) & 1;
    for (int i = 0; i < 128; i++) {
        unsigned idx = u.ub[i];
        d.ub[i] = (idx & 0xe0u) == (match << 5) ? v.ub[2 * (idx & 63u) + odd] : 0;
    }
    return d;
}
/* Vd.b = vsub(Vu.b, Vv.b): byte-wise difference, modulo 256. */
static inline HVX_Vector hvx_vsubb(HVX_Vector u, HVX_Vector v) { HVX_Vector d; for (int i = 0; i < 128; i++) d.ub[i] = (uint8_t)(u.ub[i] - v.ub[i]); return d; }
/* Vx.b |= vlut32(Vu.b, Vv.b, Rt): the same lookup ORed into x (non-matching lanes leave x unchanged). */
static inline HVX_Vector hvx_vlut32_or(HVX_Vector x, HVX_Vector u, HVX_Vector v, int32_t r) {
    HVX_Vector d = hvx_vlut32(u, v, r);
    for (int i = 0; i < 128; i++) x.ub[i] |= d.ub[i];
    return x;
}

#endif /* HVX_NATIVE */

#endif /* KILN_DSP_HVX_H */
