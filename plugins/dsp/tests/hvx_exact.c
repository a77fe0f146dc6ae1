/*
 * hvx_exact.c — the exactness harness of kiln.dsp.
 *
 * Built twice by run-hvx-exact: on the host against the C functional model of hvx.h, and with
 * clang --target=hexagon ... -mhvx -mhvx-length=128b (freestanding) against the real instructions, run
 * under qemu-hexagon. Both builds run every modelled instruction and every kernel on the same
 * fixed-seed random inputs (with saturation edges mixed in) and print one line per case: the case name
 * and a hex dump (instructions) or a hash and a head of the output (kernels). The script compares the two
 * outputs byte for byte. Kernels are also checked in both builds against plain scalar code of the
 * documented arithmetic (kernels_ref.h); a disagreement prints "MISMATCH" and fails the run.
 */
#include "exact_io.h"
#include "../hvx.h"
#include "../kernels.h"
#include "kernels_ref.h"

/* Iterations per instruction. */
#define INSN_CASES 48

/* A vector's bytes. */
static void vec_bytes(HVX_Vector v, uint8_t out[128]) { hvx_store(out, v); }

/* Random bytes with edge values of lanes of `width` bytes (1, 2 or 4) mixed in. */
static HVX_Vector random_vector(int width) {
    uint8_t bytes[128];
    for (int i = 0; i < 128; i++) bytes[i] = (uint8_t)rnd32();
    int lanes = width == 1 ? 128 : width == 2 ? 64 : 32;
    for (int lane = 0; lane < lanes; lane++) {
        uint32_t pick = rnd32() & 15;
        if (pick >= 6) continue;
        uint32_t value;
        uint32_t top = width == 1 ? 0x80u : width == 2 ? 0x8000u : 0x80000000u;
        switch (pick) {
        case 0: value = top; break;             /* MIN */
        case 1: value = top - 1; break;         /* MAX */
        case 2: value = 0; break;
        case 3: value = 0xffffffffu; break;     /* -1 */
        case 4: value = 1; break;
        default: value = top + 1; break;        /* MIN + 1 */
        }
        for (int k = 0; k < width; k++) bytes[lane * width + k] = (uint8_t)(value >> (8 * k));
    }
    return hvx_load(bytes);
}

/* Prints "name index: hex". */
static void print_vector(const char *name, int index, HVX_Vector v) {
    uint8_t bytes[128];
    vec_bytes(v, bytes);
    out_str(name);
    out_str(" ");
    out_i64(index);
    out_str(": ");
    out_hex(bytes, 128);
    out_str("\n");
}

/* Runs every modelled instruction INSN_CASES times. */
static void test_instructions(void) {
    for (int i = 0; i < INSN_CASES; i++) {
        HVX_Vector x = random_vector(4), bu = random_vector(1), bv = random_vector(1);
        print_vector("vrmpybv_acc", i, hvx_vrmpybv_acc(x, bu, bv));
        print_vector("vrmpybusv_acc", i, hvx_vrmpybusv_acc(x, bu, bv));
        print_vector("vrmpyubv_acc", i, hvx_vrmpyubv_acc(x, bu, bv));
        /* large accumulations: 64 rounds of extreme bytes */
        HVX_Vector acc = x, mn = hvx_vsplatb(-128), mx = hvx_vsplatb(127);
        for (int k = 0; k < 64; k++) acc = hvx_vrmpybv_acc(acc, (k & 1) ? mn : bu, (k & 2) ? mn : mx);
        print_vector("vrmpybv_acc.long", i, acc);

        HVX_Vector hu = random_vector(2), hv = random_vector(2);
        print_vector("vmpyhvsrs", i, hvx_vmpyhvsrs(hu, hv));
        print_vector("vmpyhvsrs.min", i, hvx_vmpyhvsrs(hvx_vsplath(-32768), hv));
        print_vector("vaddhsat", i, hvx_vaddhsat(hu, hv));
        print_vector("vsubhsat", i, hvx_vsubhsat(hu, hv));

        HVX_Vector wu = random_vector(4), wv = random_vector(4);
        print_vector("vaddwsat", i, hvx_vaddwsat(wu, wv));
        print_vector("vsubwsat", i, hvx_vsubwsat(wu, wv));
        print_vector("vmpyewuh", i, hvx_vmpyewuh(wu, wv));
        print_vector("vmpyowh_rnd_sacc", i, hvx_vmpyowh_rnd_sacc(x, wu, wv));
        print_vector("q31mul", i, hvx_vmpyowh_rnd_sacc(hvx_vmpyewuh(wu, wv), wu, wv));
        int32_t shift = (int32_t)(rnd32() & 63);
        print_vector("vasrw", i, hvx_vasrw(wu, shift));
        print_vector("vaslw", i, hvx_vaslw(wu, shift));
        print_vector("vasrwhrndsat", i, hvx_vasrwhrndsat(wu, wv, shift));
        print_vector("vasrhbsat", i, hvx_vasrhbsat(hu, hv, shift));
        print_vector("vpackwh_sat", i, hvx_vpackwh_sat(wu, wv));
        print_vector("vpackhb_sat", i, hvx_vpackhb_sat(hu, hv));
        print_vector("vpackhub_sat", i, hvx_vpackhub_sat(hu, hv));
        HVX_VectorPair p = hvx_vunpackb(bu);
        print_vector("vunpackb.lo", i, hvx_lo(p));
        print_vector("vunpackb.hi", i, hvx_hi(p));
        p = hvx_vunpackub(bu);
        print_vector("vunpackub.lo", i, hvx_lo(p));
        print_vector("vunpackub.hi", i, hvx_hi(p));
        p = hvx_vunpackh(hu);
        print_vector("vunpackh.lo", i, hvx_lo(p));
        print_vector("vunpackh.hi", i, hvx_hi(p));
        print_vector("vmaxb", i, hvx_vmaxb(bu, bv));
        print_vector("vminb", i, hvx_vminb(bu, bv));
        print_vector("vmaxub", i, hvx_vmaxub(bu, bv));
        print_vector("vminub", i, hvx_vminub(bu, bv));
        int32_t r = (int32_t)rnd32();
        print_vector("vsplatb", i, hvx_vsplatb(r));
        print_vector("vsplath", i, hvx_vsplath(r));
        print_vector("vsplatw", i, hvx_vsplatw(r));
    }
}

#ifdef EXACT_WITH_KERNELS
void exact_kernels(int *failures);
#endif

/* Runs everything; returns the process status (1 when a kernel disagreed with its scalar reference). */
static int exact_main(void) {
    out_str(HVX_NATIVE ? "# hvx_exact: Hexagon HVX instructions\n" : "# hvx_exact: C functional model\n");
    test_instructions();
    int failures = 0;
#ifdef EXACT_WITH_KERNELS
    exact_kernels(&failures);
#endif
    out_str("# failures ");
    out_i64(failures);
    out_str("\n");
    exact_flush();
    return failures ? 1 : 0;
}

#if defined(__hexagon__)
/* The freestanding entry: no libc, so no main. */
void _start(void) { exact_exit(exact_main()); }
#else
/* The host entry. */
int main(void) { return exact_main(); }
#endif
