/*
 * accelkit.h — a small kit for accelerator plugins: bf16 conversion, GEMM tiling onto on-chip buffers, a
 * bump allocator for partitioned on-chip memories (SBUF, PSUM), an instruction-stream builder (one stream
 * per engine, counting semaphores for synchronization) and an event-driven cycle model of the engines.
 *
 * The cycle model: every engine executes its own stream in order. An instruction may wait on up to two
 * semaphores (each "until the semaphore's count reaches a value"), then occupies its engine for its
 * duration (compute engines: cycles at the engine's clock; DMA queues: fixed overhead + bytes / bandwidth),
 * and on completion adds 1 to each of its (up to two) signal semaphores. Time is kept in picoseconds. The scheduler always
 * starts the ready instruction with the earliest possible start time, which is exact for this model: an
 * instruction not yet scheduled cannot start (and so cannot signal) before the one chosen.
 *
 * C11, no dependencies beyond libc and libm. Plugins compile accelkit.c into their own shared library.
 */
#ifndef ACCELKIT_H
#define ACCELKIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define AK_NO_SEM 0xffffffffu
#define AK_MAX_ENGINES 64

/* ---- bf16 ---------------------------------------------------------------------------------------- */

/* fp32 -> bf16 with round-to-nearest-even on the 16 dropped bits; NaN stays NaN (sign kept, quiet bit set). */
uint16_t ak_bf16_from_f32(float f);
/* bf16 -> fp32 (exact: the bf16 bits become the top half of the fp32). */
float ak_f32_from_bf16(uint16_t b);
/* Rounds an fp32 to the nearest bf16 value and returns it as fp32. */
float ak_round_bf16(float f);

/* ---- tiling -------------------------------------------------------------------------------------- */

/* How a GEMM Y[M,N] = X[M,K]·W[K,N] is cut into tiles: the contraction K into tiles of at most k_tile
 * (the partitions), N into tiles of at most n_tile (stationary columns = output partitions) and M into
 * tiles of at most m_tile (the moving free size = one accumulator bank). */
typedef struct ak_gemm_tiling {
    uint64_t M, K, N;
    uint32_t k_tile, n_tile, m_tile;
    uint64_t k_tiles, n_tiles, m_tiles;
} ak_gemm_tiling;

/* Fills *t for the given sizes and tile limits. Returns 0, or -1 when a size is 0 or a tile limit is 0. */
int ak_gemm_tile(uint64_t M, uint64_t K, uint64_t N, uint32_t k_tile, uint32_t n_tile, uint32_t m_tile, ak_gemm_tiling *t);
/* The extent of tile `index` of a dimension of `size` cut into tiles of `tile` (the last one may be short). */
uint32_t ak_tile_extent(uint64_t size, uint32_t tile, uint64_t index);

/* ---- on-chip buffer allocator ------------------------------------------------------------------- */

/* A partitioned on-chip memory (partitions × bytes_per_partition), allocated as byte ranges that span
 * every partition (a bump allocator: buffers of one compiled op are released together by a reset). */
typedef struct ak_buffer_pool {
    const char *name;
    uint32_t partitions;
    uint64_t bytes_per_partition, used, high_water;
} ak_buffer_pool;

/* A pool named `name` of `partitions` × `bytes_per_partition`. */
void ak_pool_init(ak_buffer_pool *pool, const char *name, uint32_t partitions, uint64_t bytes_per_partition);
/* Allocates `bytes` per partition aligned to `alignment` (a power of two): the offset within each partition,
 * or -1 when the pool is full. */
int64_t ak_pool_alloc(ak_buffer_pool *pool, uint64_t bytes, uint64_t alignment);
/* Releases everything (keeps the high-water mark). */
void ak_pool_reset(ak_buffer_pool *pool);

/* ---- engine cost helpers (cycles) --------------------------------------------------------------- */

/* A systolic array's LoadStationary of `columns` stationary columns: columns / 4 cycles (rounded up, at least
 * 1): four columns enter per cycle. */
uint64_t ak_load_stationary_cycles(uint32_t columns);
/* MultiplyMoving of `moving_columns` columns through the array: an initiation interval of
 * max(moving_columns, 64) cycles for 2-byte inputs, four times that for fp32 inputs. */
uint64_t ak_multiply_moving_cycles(uint32_t moving_columns, int fp32_inputs);
/* A lane-parallel engine's pass over `elements` per lane: elements (2-byte data) or 2 × elements (fp32)
 * cycles, plus a fixed `overhead`. */
uint64_t ak_lane_cycles(uint32_t elements, int fp32_data, uint32_t overhead);
/* A DMA of `bytes` over a bus that moves `bus_bytes` per cycle after a fixed `setup` (cycles):
 * setup + ceil(bytes / bus_bytes); 0 bytes cost the setup only. bus_bytes 0 reads as 1. */
uint64_t ak_bus_cycles(uint64_t bytes, uint32_t bus_bytes, uint32_t setup);

/* ---- engines and instruction streams ------------------------------------------------------------ */

/* One engine: a compute engine with a clock, or a DMA queue with a bandwidth. */
typedef struct ak_engine {
    const char *name;
    double clock_hz;            /* compute engines: cycles are converted to time at this clock */
    double bytes_per_second;    /* > 0: a DMA queue; its cost is bytes / bytes_per_second + overhead */
    double dma_overhead_s;      /* fixed cost of one DMA descriptor (seconds) */
} ak_engine;

/* One instruction as the cycle model sees it. */
typedef struct ak_op {
    uint32_t engine;            /* index into the machine's engines */
    uint32_t wait_sem[2];       /* AK_NO_SEM = no wait */
    uint32_t wait_value[2];     /* start only once semaphore wait_sem[i] has count >= wait_value[i] */
    uint32_t signal_sem[2];     /* AK_NO_SEM = none; else each gets +1 on completion */
    uint64_t cycles;            /* compute engines: cycles at the engine's clock */
    uint64_t bytes;             /* DMA queues: bytes moved */
    const char *label;          /* for the trace (borrowed; may be NULL) */
} ak_op;

/* A growable list of instructions; each engine's stream is its instructions in list order. */
typedef struct ak_program {
    ak_op *ops;
    size_t count, capacity;
    uint32_t semaphores;        /* semaphores 0 .. semaphores-1 exist */
    int failed;                 /* an allocation failed */
} ak_program;

/* Appends an instruction (program->failed on out of memory); returns its index. */
size_t ak_emit(ak_program *p, ak_op op);
/* A new semaphore id. */
uint32_t ak_new_semaphore(ak_program *p);
/* Frees the program's list. */
void ak_program_free(ak_program *p);

/* What a simulation reports. */
typedef struct ak_report {
    uint32_t engine_count;
    uint64_t total_ps;                        /* end of the last instruction */
    uint64_t busy_ps[AK_MAX_ENGINES];         /* time each engine was occupied */
    uint64_t cycles[AK_MAX_ENGINES];          /* compute engines: cycles executed (exact sum) */
    uint64_t instructions[AK_MAX_ENGINES];
    uint64_t dma_bytes;                       /* bytes over all DMA queues */
    uint64_t *start_ps, *end_ps;              /* per instruction (allocated; ak_report_free) */
    size_t *order;                            /* instruction indices in the order they started */
    size_t op_count;
} ak_report;

/* The duration in picoseconds of instruction `op` on engine `e`. */
uint64_t ak_duration_ps(const ak_engine *e, const ak_op *op);

/* Runs the cycle model over `ops` (count of them) on `engines`, with `semaphores` semaphores. Returns 0,
 * or -1 with a reason in `why` (an engine or semaphore index out of range, or a deadlock: instructions
 * that wait for a count no remaining instruction will reach). */
int ak_simulate(const ak_engine *engines, uint32_t engine_count, const ak_op *ops, size_t count, uint32_t semaphores,
                ak_report *report, char *why, size_t why_size);
/* ak_simulate with every DMA queue's bytes also crossing one shared link of `shared_bytes_per_second` (a device's
 * memory, shared by several cores' queues; <= 0: no shared link, as ak_simulate). The link carries one transfer
 * at a time, in the order the transfers start: a DMA's bytes occupy it for bytes / shared_bytes_per_second from
 * the later of the DMA's start and the end of the link's previous transfer, and the DMA ends at the later of its
 * own end and that. While the queues' summed bandwidth stays below the link's, transfers of equal size are not
 * delayed; above it, the link bounds their summed throughput. */
int ak_simulate_shared(const ak_engine *engines, uint32_t engine_count, const ak_op *ops, size_t count, uint32_t semaphores,
                       double shared_bytes_per_second, ak_report *report, char *why, size_t why_size);
/* Frees the arrays of a report. */
void ak_report_free(ak_report *r);
/* Engine e's utilization: busy time over the whole run (0 when the run took no time). */
double ak_utilization(const ak_report *r, uint32_t e);
/* Writes a Chrome trace (chrome://tracing, Perfetto) of a simulated run: one row (thread) per engine.
 * Returns 0, or -1 on a write error. */
int ak_write_chrome_trace(FILE *out, const ak_engine *engines, uint32_t engine_count, const ak_op *ops, const ak_report *r);
/* Writes a one-line-per-engine text summary: cycles, busy time, utilization, DMA bytes. */
void ak_write_summary(FILE *out, const ak_engine *engines, uint32_t engine_count, const ak_report *r);

#endif
