/*
 * cycle_model_test.c — the accelkit cycle model, tiling and pools on cases computed by hand.
 * Exits 1 on any failed expectation; prints one line per check group.
 */
#include "../accelkit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define EXPECT(cond, ...) do { if (!(cond)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); failures++; } } while (0)

/* |got - want| <= 1 ps (rounding of each instruction's duration to whole picoseconds). */
static int close_ps(uint64_t got, double want_seconds, double slack_ps) {
    return fabs((double)got - want_seconds * 1e12) <= slack_ps;
}

/* An op with no waits and no signal. */
static ak_op plain(uint32_t engine, uint64_t cycles, uint64_t bytes) {
    ak_op op = {engine, {AK_NO_SEM, AK_NO_SEM}, {0, 0}, {AK_NO_SEM, AK_NO_SEM}, cycles, bytes, NULL};
    return op;
}

/* One 128x128x512 bf16 matmul on a 2.8 GHz TensorE: LoadStationary 128/4 = 32 cycles, MultiplyMoving
 * max(512, 64) = 512 cycles: 544 cycles = 194.2857 ns. In fp32: 32 + 4 * 512 = 2080 cycles. */
static void test_matmul(void) {
    ak_engine pe[1] = {{"TensorE", 2.8e9, 0, 0}};
    for (int fp32 = 0; fp32 < 2; fp32++) {
        ak_op ops[2] = {plain(0, ak_load_stationary_cycles(128), 0), plain(0, ak_multiply_moving_cycles(512, fp32), 0)};
        ak_report r;
        char why[200];
        EXPECT(ak_simulate(pe, 1, ops, 2, 0, &r, why, sizeof why) == 0, "simulate failed");
        uint64_t want = fp32 ? 32 + 2048 : 544;
        EXPECT(r.cycles[0] == want, "matmul %s: %llu cycles, want %llu", fp32 ? "fp32" : "bf16", (unsigned long long)r.cycles[0], (unsigned long long)want);
        EXPECT(close_ps(r.total_ps, (double)want / 2.8e9, 1.0), "matmul: total %llu ps, want %.1f", (unsigned long long)r.total_ps, want / 2.8e9 * 1e12);
        EXPECT(fabs(ak_utilization(&r, 0) - 1.0) < 1e-12, "one engine doing all the work is 100%% busy");
        ak_report_free(&r);
    }
    EXPECT(ak_multiply_moving_cycles(10, 0) == 64, "a short moving tensor still costs the minimum interval of 64");
    EXPECT(ak_load_stationary_cycles(2) == 1 && ak_load_stationary_cycles(130) == 33, "LoadStationary rounding");
    printf("cycle model: matmul on TensorE (bf16 544 cycles, fp32 2080 cycles) %s\n", failures ? "FAIL" : "ok");
}

/* Engine A (1 GHz) runs 100 then 300 cycles, each signalling s; engine B (2 GHz) waits for s >= 1 (100 ns), runs
 * 50 cycles (25 ns), then waits for s >= 2 (A's second op ends at 400 ns) and runs 20 cycles (10 ns): the run
 * ends at 410 ns, B busy 35 ns. B's ops are listed first so that list order cannot be what orders them. */
static void test_semaphores(void) {
    int before = failures;
    ak_engine eng[2] = {{"A", 1e9, 0, 0}, {"B", 2e9, 0, 0}};
    ak_op ops[4] = {plain(1, 50, 0), plain(1, 20, 0), plain(0, 100, 0), plain(0, 300, 0)};
    ops[0].wait_sem[0] = 0; ops[0].wait_value[0] = 1;
    ops[1].wait_sem[1] = 0; ops[1].wait_value[1] = 2;
    ops[2].signal_sem[0] = 0; ops[3].signal_sem[1] = 0;
    ak_report r;
    char why[200];
    EXPECT(ak_simulate(eng, 2, ops, 4, 1, &r, why, sizeof why) == 0, "simulate: %s", why);
    EXPECT(r.start_ps[0] == 100000 && r.end_ps[0] == 125000, "B's first op runs 100..125 ns (got %llu..%llu ps)", (unsigned long long)r.start_ps[0], (unsigned long long)r.end_ps[0]);
    EXPECT(r.start_ps[1] == 400000 && r.end_ps[1] == 410000, "B's second op runs 400..410 ns (got %llu..%llu)", (unsigned long long)r.start_ps[1], (unsigned long long)r.end_ps[1]);
    EXPECT(r.total_ps == 410000, "the run ends at 410 ns");
    EXPECT(r.cycles[0] == 400 && r.cycles[1] == 70, "cycles per engine A 400, B 70");
    EXPECT(fabs(ak_utilization(&r, 1) - 35.0 / 410.0) < 1e-12, "B utilization 35/410");
    EXPECT(r.order[0] == 2 && r.order[3] == 1, "execution order follows time, not list order");
    /* the trace has one named row per engine and one event per instruction */
    FILE *f = tmpfile();
    EXPECT(f && ak_write_chrome_trace(f, eng, 2, ops, &r) == 0, "trace written");
    if (f) {
        long size = ftell(f);
        rewind(f);
        char *text = calloc((size_t)size + 1, 1);
        if (text && fread(text, 1, (size_t)size, f) == (size_t)size) {
            EXPECT(strstr(text, "\"args\":{\"name\":\"A\"}") && strstr(text, "\"args\":{\"name\":\"B\"}"), "trace names both engines");
            int events = 0;
            for (char *p = text; (p = strstr(p, "\"ph\":\"X\"")); p++) events++;
            EXPECT(events == 4, "trace has 4 complete events (got %d)", events);
            EXPECT(strstr(text, "\"ts\":0.400000,\"dur\":0.010000"), "B's second op is in the trace at 0.4 us for 0.01 us");
        }
        free(text);
        fclose(f);
    }
    ak_report_free(&r);
    /* a wait no instruction can satisfy is a deadlock, reported, not a hang */
    ops[1].wait_value[1] = 3;
    EXPECT(ak_simulate(eng, 2, ops, 4, 1, &r, why, sizeof why) == -1 && strstr(why, "deadlock"), "deadlock detected (%s)", why);
    ops[1].wait_value[1] = 2;
    ops[1].signal_sem[0] = 7;
    EXPECT(ak_simulate(eng, 2, ops, 4, 1, &r, why, sizeof why) == -1 && strstr(why, "semaphore 7"), "out-of-range semaphore refused");
    printf("cycle model: two engines and a semaphore (B waits for A: ends at 410 ns) %s\n", failures > before ? "FAIL" : "ok");
}

/* DMA: 1 MiB at 27 GiB/s on one queue takes 2^20 / (27 * 2^30) s = 36.169 us; two such transfers on one queue
 * take twice that, on two queues the same time as one. A 2 us descriptor overhead adds 2 us each. */
static void test_dma(void) {
    int before = failures;
    double bw = 27.0 * 1073741824.0;
    ak_engine q[2] = {{"DMA0", 0, bw, 0}, {"DMA1", 0, bw, 0}};
    ak_op ops[2] = {plain(0, 0, 1u << 20), plain(0, 0, 1u << 20)};
    ak_report r;
    char why[200];
    double one = 1048576.0 / bw;
    EXPECT(ak_simulate(q, 2, ops, 2, 0, &r, why, sizeof why) == 0, "simulate");
    EXPECT(close_ps(r.total_ps, 2 * one, 2), "two MiB on one queue: %llu ps, want %.0f", (unsigned long long)r.total_ps, 2 * one * 1e12);
    EXPECT(r.dma_bytes == 2u << 20, "DMA bytes counted");
    ak_report_free(&r);
    ops[1].engine = 1;
    EXPECT(ak_simulate(q, 2, ops, 2, 0, &r, why, sizeof why) == 0 && close_ps(r.total_ps, one, 1), "two queues in parallel: %llu ps", (unsigned long long)r.total_ps);
    ak_report_free(&r);
    q[0].dma_overhead_s = 2e-6;
    ops[1].engine = 0;
    EXPECT(ak_simulate(q, 2, ops, 2, 0, &r, why, sizeof why) == 0 && close_ps(r.total_ps, 2 * (one + 2e-6), 2), "overhead per descriptor");
    ak_report_free(&r);
    printf("cycle model: DMA at 27 GiB/s per queue (1 MiB = %.3f us) %s\n", one * 1e6, failures > before ? "FAIL" : "ok");
}

/* A shared link (a device's memory behind two cores' queues): four queues of 1 GB/s, a link of 2 GB/s, four
 * 1000-byte DMAs starting at 0. Alone each takes 1 us. On the link they take 0.5 us each, one after another: the
 * first two end at 1 us (their own time is longer than their turn on the link: 0.5 and 1.0 us), the third's
 * turn ends at 1.5 us and the fourth's at 2 us, so the run takes 2 us: 4000 bytes at the link's 2 GB/s. With two
 * queues only, the link is never the bound (2 GB/s = the queues' sum) and the run takes 2 us as two per queue. */
static void test_shared_link(void) {
    int before = failures;
    ak_engine q[4] = {{"DMA0", 0, 1e9, 0}, {"DMA1", 0, 1e9, 0}, {"DMA2", 0, 1e9, 0}, {"DMA3", 0, 1e9, 0}};
    ak_op ops[4] = {plain(0, 0, 1000), plain(1, 0, 1000), plain(2, 0, 1000), plain(3, 0, 1000)};
    ak_report r;
    char why[200];
    EXPECT(ak_simulate(q, 4, ops, 4, 0, &r, why, sizeof why) == 0 && close_ps(r.total_ps, 1e-6, 1), "four queues, no link: %llu ps", (unsigned long long)r.total_ps);
    ak_report_free(&r);
    EXPECT(ak_simulate_shared(q, 4, ops, 4, 0, 2e9, &r, why, sizeof why) == 0, "simulate with a shared link");
    EXPECT(close_ps(r.end_ps[0], 1e-6, 1) && close_ps(r.end_ps[1], 1e-6, 1) && close_ps(r.end_ps[2], 1.5e-6, 1) && close_ps(r.end_ps[3], 2e-6, 1),
           "link turns: ends %llu %llu %llu %llu ps, want 1, 1, 1.5, 2 us", (unsigned long long)r.end_ps[0], (unsigned long long)r.end_ps[1],
           (unsigned long long)r.end_ps[2], (unsigned long long)r.end_ps[3]);
    EXPECT(close_ps(r.busy_ps[3], 2e-6, 1), "a queue waiting for the link is busy: %llu ps", (unsigned long long)r.busy_ps[3]);
    ak_report_free(&r);
    ops[2].engine = 0; ops[3].engine = 1;
    EXPECT(ak_simulate_shared(q, 4, ops, 4, 0, 2e9, &r, why, sizeof why) == 0 && close_ps(r.total_ps, 2e-6, 1), "two queues at the link's rate: %llu ps", (unsigned long long)r.total_ps);
    ak_report_free(&r);
    printf("cycle model: a shared link bounds the queues' summed bandwidth (4 x 1 GB/s over 2 GB/s: 2 us) %s\n", failures > before ? "FAIL" : "ok");
}

/* Tiling and pools. */
static void test_tiling_and_pools(void) {
    int before = failures;
    ak_gemm_tiling t;
    EXPECT(ak_gemm_tile(1000, 300, 129, 128, 128, 512, &t) == 0 && t.k_tiles == 3 && t.n_tiles == 2 && t.m_tiles == 2, "tiling counts");
    EXPECT(ak_tile_extent(300, 128, 2) == 44 && ak_tile_extent(129, 128, 1) == 1 && ak_tile_extent(1000, 512, 1) == 488 && ak_tile_extent(10, 128, 1) == 0, "tile extents");
    EXPECT(ak_gemm_tile(0, 1, 1, 128, 128, 512, &t) == -1, "an empty GEMM is refused");
    ak_buffer_pool sbuf;
    ak_pool_init(&sbuf, "SBUF", 128, 192 * 1024);
    EXPECT(ak_pool_alloc(&sbuf, 100, 64) == 0 && ak_pool_alloc(&sbuf, 10, 64) == 128, "alignment");
    EXPECT(ak_pool_alloc(&sbuf, 192 * 1024, 64) == -1, "over capacity refused");
    EXPECT(ak_pool_alloc(&sbuf, 192 * 1024 - 192, 64) == 192, "exactly the rest fits");
    ak_pool_reset(&sbuf);
    EXPECT(sbuf.used == 0 && sbuf.high_water == 192 * 1024, "reset keeps the high-water mark");
    EXPECT(ak_pool_alloc(&sbuf, 1, 3) == -1, "non-power-of-two alignment refused");
    printf("tiling and SBUF/PSUM pools %s\n", failures > before ? "FAIL" : "ok");
}

/* Bus-width DMA cost (used by samplevta.fpga): setup + ceil(bytes / width). */
static void test_bus_cycles(void) {
    int before = failures;
    EXPECT(ak_bus_cycles(0, 8, 32) == 32, "0 bytes cost the setup");
    EXPECT(ak_bus_cycles(1, 8, 32) == 33 && ak_bus_cycles(8, 8, 32) == 33 && ak_bus_cycles(9, 8, 32) == 34, "partial beats round up");
    EXPECT(ak_bus_cycles(4096, 16, 0) == 256 && ak_bus_cycles(5, 0, 0) == 5, "width 16, and width 0 read as 1");
    printf("cycle model: bus-width DMA (setup + ceil(bytes / width)) %s\n", failures > before ? "FAIL" : "ok");
}

/* Runs every group. */
int main(void) {
    test_matmul();
    test_semaphores();
    test_dma();
    test_shared_link();
    test_tiling_and_pools();
    test_bus_cycles();
    printf("cycle_model_test: %s (%d failures)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
