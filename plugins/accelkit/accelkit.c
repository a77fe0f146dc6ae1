/* accelkit.c — bf16, tiling, buffer pools, instruction streams and the event-driven cycle model (accelkit.h). */
#include "accelkit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- bf16 ---- */

/* fp32 -> bf16: adds 0x7fff plus the lowest kept bit (so a tie rounds to the even result), then truncates;
 * a NaN keeps its sign and top mantissa bits with the quiet bit forced so that it cannot become infinity. */
uint16_t ak_bf16_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return (uint16_t)((u >> 16) | 0x0040u);
    uint32_t lsb = (u >> 16) & 1u;
    u += 0x7fffu + lsb; /* cannot overflow past the sign: the largest finite value rounds to infinity, as RNE says */
    return (uint16_t)(u >> 16);
}

/* bf16 -> fp32: the 16 bits become the high half. */
float ak_f32_from_bf16(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* fp32 rounded to bf16 precision. */
float ak_round_bf16(float f) { return ak_f32_from_bf16(ak_bf16_from_f32(f)); }

/* ---- tiling ---- */

/* Ceiling division of a by b (b > 0). */
static uint64_t ceil_div(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

/* Counts the tiles of each GEMM dimension (accelkit.h). */
int ak_gemm_tile(uint64_t M, uint64_t K, uint64_t N, uint32_t k_tile, uint32_t n_tile, uint32_t m_tile, ak_gemm_tiling *t) {
    if (!M || !K || !N || !k_tile || !n_tile || !m_tile) return -1;
    t->M = M; t->K = K; t->N = N;
    t->k_tile = k_tile; t->n_tile = n_tile; t->m_tile = m_tile;
    t->k_tiles = ceil_div(K, k_tile);
    t->n_tiles = ceil_div(N, n_tile);
    t->m_tiles = ceil_div(M, m_tile);
    return 0;
}

/* The size of one tile of a dimension: full, the short last one, or 0 past the end. */
uint32_t ak_tile_extent(uint64_t size, uint32_t tile, uint64_t index) {
    uint64_t start = index * tile;
    if (start >= size) return 0;
    uint64_t rest = size - start;
    return (uint32_t)(rest < tile ? rest : tile);
}

/* ---- cost helpers ---- */

/* LoadStationary cost: four columns enter the array per cycle. */
uint64_t ak_load_stationary_cycles(uint32_t columns) { return columns < 4 ? 1 : ceil_div(columns, 4); }

/* MultiplyMoving cost: one moving column per cycle, at least 64, four passes for fp32. */
uint64_t ak_multiply_moving_cycles(uint32_t moving_columns, int fp32_inputs) {
    uint64_t ii = moving_columns > 64 ? moving_columns : 64;
    return fp32_inputs ? 4 * ii : ii;
}

/* A lane engine pass: one element (2-byte) or half an element (fp32) per lane per cycle, plus overhead. */
uint64_t ak_lane_cycles(uint32_t elements, int fp32_data, uint32_t overhead) {
    return (fp32_data ? 2 * (uint64_t)elements : elements) + overhead;
}

uint64_t ak_bus_cycles(uint64_t bytes, uint32_t bus_bytes, uint32_t setup) {
    uint64_t width = bus_bytes ? bus_bytes : 1;
    return (uint64_t)setup + bytes / width + (bytes % width != 0);
}

/* ---- pools ---- */

/* An empty pool of the given geometry. */
void ak_pool_init(ak_buffer_pool *pool, const char *name, uint32_t partitions, uint64_t bytes_per_partition) {
    pool->name = name;
    pool->partitions = partitions;
    pool->bytes_per_partition = bytes_per_partition;
    pool->used = pool->high_water = 0;
}

/* Bump allocation with checked alignment and capacity. */
int64_t ak_pool_alloc(ak_buffer_pool *pool, uint64_t bytes, uint64_t alignment) {
    if (!alignment || (alignment & (alignment - 1))) return -1;
    uint64_t at = (pool->used + alignment - 1) & ~(alignment - 1);
    if (at < pool->used || at > pool->bytes_per_partition || bytes > pool->bytes_per_partition - at) return -1;
    pool->used = at + bytes;
    if (pool->used > pool->high_water) pool->high_water = pool->used;
    return (int64_t)at;
}

/* Frees every allocation of the pool at once. */
void ak_pool_reset(ak_buffer_pool *pool) { pool->used = 0; }

/* ---- programs ---- */

/* Appends an instruction, doubling the list when full. */
size_t ak_emit(ak_program *p, ak_op op) {
    if (p->failed) return 0;
    if (p->count == p->capacity) {
        size_t capacity = p->capacity ? p->capacity * 2 : 64;
        ak_op *grown = realloc(p->ops, capacity * sizeof *grown);
        if (!grown) { p->failed = 1; return 0; }
        p->ops = grown;
        p->capacity = capacity;
    }
    p->ops[p->count] = op;
    return p->count++;
}

/* Hands out the next semaphore id. */
uint32_t ak_new_semaphore(ak_program *p) { return p->semaphores++; }

/* Frees the instruction list and zeroes the program. */
void ak_program_free(ak_program *p) {
    free(p->ops);
    memset(p, 0, sizeof *p);
}

/* ---- the cycle model ---- */

/* An instruction's time on its engine in picoseconds (DMA: overhead + bytes / bandwidth; compute: cycles / clock). */
uint64_t ak_duration_ps(const ak_engine *e, const ak_op *op) {
    double seconds = e->bytes_per_second > 0 ? e->dma_overhead_s + (double)op->bytes / e->bytes_per_second
                                             : (e->clock_hz > 0 ? (double)op->cycles / e->clock_hz : 0);
    double ps = seconds * 1e12;
    return ps >= 1.8e19 ? UINT64_MAX / 4 : (uint64_t)llround(ps);
}

/* A semaphore's completed signals, as times (ps), kept so that the time its count reaches v is known. */
typedef struct sem_state { uint64_t *times; uint32_t count, capacity; } sem_state;

/* The time semaphore s reached count `value` among the signals scheduled so far, or UINT64_MAX when it has
 * not (yet). Signal times are kept sorted: insertion keeps the order. */
static uint64_t reached_at(const sem_state *s, uint32_t value) {
    if (value == 0) return 0;
    if (s->count < value) return UINT64_MAX;
    return s->times[value - 1];
}

/* Records a signal at time t (sorted insert). Returns -1 when out of memory. */
static int add_signal(sem_state *s, uint64_t t) {
    if (s->count == s->capacity) {
        uint32_t capacity = s->capacity ? s->capacity * 2 : 8;
        uint64_t *grown = realloc(s->times, capacity * sizeof *grown);
        if (!grown) return -1;
        s->times = grown;
        s->capacity = capacity;
    }
    uint32_t i = s->count++;
    while (i > 0 && s->times[i - 1] > t) { s->times[i] = s->times[i - 1]; i--; }
    s->times[i] = t;
    return 0;
}

/* The event-driven scheduler: repeatedly starts the ready stream head with the earliest start time (accelkit.h). */
int ak_simulate(const ak_engine *engines, uint32_t engine_count, const ak_op *ops, size_t count, uint32_t semaphores,
                ak_report *r, char *why, size_t why_size) {
    return ak_simulate_shared(engines, engine_count, ops, count, semaphores, 0, r, why, why_size);
}

/* ak_simulate with the DMA queues' bytes crossing one shared link (accelkit.h). */
int ak_simulate_shared(const ak_engine *engines, uint32_t engine_count, const ak_op *ops, size_t count, uint32_t semaphores,
                       double shared_bytes_per_second, ak_report *r, char *why, size_t why_size) {
    memset(r, 0, sizeof *r);
    uint64_t link_free = 0;
    if (engine_count > AK_MAX_ENGINES) { snprintf(why, why_size, "%u engines (at most %d)", engine_count, AK_MAX_ENGINES); return -1; }
    for (size_t i = 0; i < count; i++) {
        if (ops[i].engine >= engine_count) { snprintf(why, why_size, "instruction %zu names engine %u (there are %u)", i, ops[i].engine, engine_count); return -1; }
        for (int k = 0; k < 2; k++)
            if (ops[i].wait_sem[k] != AK_NO_SEM && ops[i].wait_sem[k] >= semaphores) { snprintf(why, why_size, "instruction %zu waits on semaphore %u (there are %u)", i, ops[i].wait_sem[k], semaphores); return -1; }
        for (int k = 0; k < 2; k++)
            if (ops[i].signal_sem[k] != AK_NO_SEM && ops[i].signal_sem[k] >= semaphores) { snprintf(why, why_size, "instruction %zu signals semaphore %u (there are %u)", i, ops[i].signal_sem[k], semaphores); return -1; }
    }
    r->engine_count = engine_count;
    r->op_count = count;
    r->start_ps = calloc(count + 1, sizeof(uint64_t));
    r->end_ps = calloc(count + 1, sizeof(uint64_t));
    r->order = calloc(count + 1, sizeof(size_t));
    size_t *streams = calloc(count + 1, sizeof(size_t));      /* instruction indices grouped by engine */
    size_t first[AK_MAX_ENGINES + 1] = {0}, next[AK_MAX_ENGINES] = {0};
    uint64_t free_at[AK_MAX_ENGINES] = {0};
    sem_state *sems = calloc((size_t)semaphores + 1, sizeof(sem_state));
    int result = -1;
    if (!r->start_ps || !r->end_ps || !r->order || !streams || !sems) { snprintf(why, why_size, "out of memory"); goto done; }
    for (size_t i = 0; i < count; i++) first[ops[i].engine + 1]++;
    for (uint32_t e = 0; e < engine_count; e++) first[e + 1] += first[e];
    for (uint32_t e = 0; e < engine_count; e++) next[e] = first[e];
    for (size_t i = 0; i < count; i++) streams[next[ops[i].engine]++] = i;
    for (uint32_t e = 0; e < engine_count; e++) next[e] = first[e];
    for (size_t done_count = 0; done_count < count; done_count++) {
        uint32_t best = UINT32_MAX;
        uint64_t best_start = UINT64_MAX;
        for (uint32_t e = 0; e < engine_count; e++) {
            if (next[e] == first[e + 1]) continue;
            const ak_op *op = &ops[streams[next[e]]];
            uint64_t start = free_at[e];
            for (int k = 0; k < 2 && start != UINT64_MAX; k++) {
                if (op->wait_sem[k] == AK_NO_SEM) continue;
                uint64_t t = reached_at(&sems[op->wait_sem[k]], op->wait_value[k]);
                start = t > start ? t : start;
            }
            if (start < best_start) { best_start = start; best = e; }
        }
        if (best == UINT32_MAX) {
            size_t i = SIZE_MAX;
            for (uint32_t e = 0; e < engine_count && i == SIZE_MAX; e++) if (next[e] < first[e + 1]) i = streams[next[e]];
            snprintf(why, why_size, "deadlock: %zu of %zu instructions never start (instruction %zu on %s waits forever)",
                     count - done_count, count, i, engines[ops[i].engine].name ? engines[ops[i].engine].name : "?");
            goto done;
        }
        size_t i = streams[next[best]++];
        const ak_op *op = &ops[i];
        uint64_t duration = ak_duration_ps(&engines[best], op);
        if (shared_bytes_per_second > 0 && engines[best].bytes_per_second > 0) {
            double ps = (double)op->bytes / shared_bytes_per_second * 1e12;
            uint64_t from = link_free > best_start ? link_free : best_start, to = from + (ps >= 1.8e19 ? UINT64_MAX / 4 : (uint64_t)llround(ps));
            link_free = to;
            if (to - best_start > duration) duration = to - best_start;
        }
        uint64_t end = best_start + duration < best_start ? UINT64_MAX / 2 : best_start + duration;
        r->start_ps[i] = best_start;
        r->end_ps[i] = end;
        r->order[done_count] = i;
        free_at[best] = end;
        r->busy_ps[best] += duration;
        r->instructions[best]++;
        if (engines[best].bytes_per_second > 0) r->dma_bytes += op->bytes; else r->cycles[best] += op->cycles;
        if (end > r->total_ps) r->total_ps = end;
        for (int k = 0; k < 2; k++)
            if (op->signal_sem[k] != AK_NO_SEM && add_signal(&sems[op->signal_sem[k]], end)) { snprintf(why, why_size, "out of memory"); goto done; }
    }
    result = 0;
done:
    for (uint32_t s = 0; sems && s < semaphores; s++) free(sems[s].times);
    free(sems);
    free(streams);
    if (result) ak_report_free(r);
    return result;
}

/* Frees the per-instruction arrays of a report. */
void ak_report_free(ak_report *r) {
    free(r->start_ps);
    free(r->end_ps);
    free(r->order);
    r->start_ps = r->end_ps = NULL;
    r->order = NULL;
}

/* Busy time of engine e over the run's total time. */
double ak_utilization(const ak_report *r, uint32_t e) {
    if (e >= r->engine_count || r->total_ps == 0) return 0;
    return (double)r->busy_ps[e] / (double)r->total_ps;
}

/* Writes `s` as a JSON string literal (quotes and control characters escaped). */
static void json_string(FILE *out, const char *s) {
    fputc('"', out);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(out, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) fprintf(out, "\\u%04x", (unsigned char)*s);
        else fputc(*s, out);
    }
    fputc('"', out);
}

/* Chrome trace JSON: thread-name metadata per engine, one complete event per instruction, times in microseconds. */
int ak_write_chrome_trace(FILE *out, const ak_engine *engines, uint32_t engine_count, const ak_op *ops, const ak_report *r) {
    fprintf(out, "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n");
    for (uint32_t e = 0; e < engine_count; e++) {
        fprintf(out, "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":0,\"tid\":%u,\"args\":{\"name\":", e);
        json_string(out, engines[e].name);
        fprintf(out, "}},\n");
    }
    for (size_t k = 0; k < r->op_count; k++) {
        size_t i = r->order[k];
        fprintf(out, "{\"name\":");
        json_string(out, ops[i].label ? ops[i].label : "op");
        fprintf(out, ",\"ph\":\"X\",\"pid\":0,\"tid\":%u,\"ts\":%.6f,\"dur\":%.6f,\"args\":{\"index\":%zu}},\n", ops[i].engine,
                (double)r->start_ps[i] / 1e6, (double)(r->end_ps[i] - r->start_ps[i]) / 1e6, i);
    }
    fprintf(out, "{\"name\":\"end\",\"ph\":\"i\",\"s\":\"g\",\"pid\":0,\"tid\":0,\"ts\":%.6f}\n]}\n", (double)r->total_ps / 1e6);
    return ferror(out) ? -1 : 0;
}

/* A text table of the engines that ran anything. */
void ak_write_summary(FILE *out, const ak_engine *engines, uint32_t engine_count, const ak_report *r) {
    fprintf(out, "total %.3f us\n", (double)r->total_ps / 1e6);
    for (uint32_t e = 0; e < engine_count; e++) {
        if (!r->instructions[e]) continue;
        fprintf(out, "  %-10s %8llu instr  %10llu %s  busy %.3f us  utilization %5.1f%%\n", engines[e].name ? engines[e].name : "?",
                (unsigned long long)r->instructions[e],
                (unsigned long long)(engines[e].bytes_per_second > 0 ? 0 : r->cycles[e]), engines[e].bytes_per_second > 0 ? "(dma)  " : "cycles",
                (double)r->busy_ps[e] / 1e6, 100.0 * ak_utilization(r, e));
    }
    fprintf(out, "  DMA bytes %llu\n", (unsigned long long)r->dma_bytes);
}
