/* trees.c — tree-ensemble walks for kiln.cpu's TreeEnsemble predictor (portable C, plus an AVX-512 variant
 * chosen at run time).
 *
 * A walk keeps a work list of independent (row, node) or (tree, node) pairs. Each pass advances every pair one
 * level and keeps, branch-free, only the pairs that reached a split; a pair that reached a leaf writes the leaf
 * number and leaves the list. So each walk stops at its own leaf (unbalanced trees cost what their paths cost)
 * and the loads of the pairs in a pass are independent, which lets the CPU overlap their cache misses. */
#include "internal.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

/* Work-list length of one walk call (stack arrays). */
#define KILN_TREE_CHUNK 256

/* One step: the child of split `n` for row `x` (a node index, or ~leaf). Arithmetic, not branches: the way a
 * row goes is data, and a mispredicted branch costs more than the step. `rule` (a compile-time constant in each
 * specialized walk) drops the parts of the general rule a forest does not use. */
static inline __attribute__((always_inline)) int32_t tree_step(const kiln_tree_node *n, const float *x, int rule) {
    uint32_t w = n->word;
    float v = x[w & KILN_TREE_FEATURE_MASK];
    float t = n->threshold;
    uint32_t take;
    if (rule == KILN_TREES_RULE_LT_NAN) {
        take = (uint32_t)(v < t) | ((uint32_t)(v != v) & (w >> 25));
    } else if (rule == KILN_TREES_RULE_LE_NAN) {
        take = (uint32_t)(v <= t) | ((uint32_t)(v != v) & (w >> 25));
    } else if (rule == KILN_TREES_RULE_LE_NAN_AS_ZERO) {
        float u = v != v ? 0.0f : v;
        take = (uint32_t)(u <= t);
    } else {
        uint32_t kind = (w >> KILN_TREE_MISSING_SHIFT) & 3u;
        uint32_t nan = v != v;
        uint32_t as_zero = nan & (kind == KILN_TREE_MISSING_NAN_AS_ZERO);
        float u = as_zero ? 0.0f : v;
        uint32_t cmp = (uint32_t)(u < t) | ((uint32_t)(u == t) & ((w >> 24) & 1u));
        uint32_t missing = (nan & !as_zero) | ((kind == KILN_TREE_MISSING_NAN_OR_ZERO) & (fabsf(v) <= 1e-35f));
        take = (cmp & ~missing) | (missing & (w >> 25));
    }
    int32_t mask = -(int32_t)(take & 1u);
    return n->no ^ ((n->yes ^ n->no) & mask);
}

static inline __attribute__((always_inline)) void walk_row_body(const kiln_tree_node *nodes, const int32_t *roots,
                                                                size_t count, const float *x, int32_t *leaves,
                                                                int rule) {
    int32_t cur[KILN_TREE_CHUNK], slot[KILN_TREE_CHUNK];
    for (size_t base = 0; base < count; base += KILN_TREE_CHUNK) {
        size_t n = count - base < KILN_TREE_CHUNK ? count - base : KILN_TREE_CHUNK;
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            int32_t r = roots[base + i];
            leaves[base + i] = r;
            cur[m] = r;
            slot[m] = (int32_t)(base + i);
            m += r >= 0;
        }
        while (m > 0) {
            size_t k = 0;
            for (size_t i = 0; i < m; i++) {
                int32_t c = tree_step(nodes + cur[i], x, rule);
                int32_t s = slot[i];
                leaves[s] = c;
                cur[k] = c;
                slot[k] = s;
                k += c >= 0;
            }
            m = k;
        }
    }
}

static inline __attribute__((always_inline)) void walk_rows_body(const kiln_tree_node *nodes, int32_t root,
                                                                 const float *x, size_t stride, size_t rows,
                                                                 int32_t *leaves, int rule) {
    if (root < 0) {
        for (size_t r = 0; r < rows; r++) leaves[r] = root;
        return;
    }
    int32_t cur[KILN_TREE_CHUNK], row[KILN_TREE_CHUNK];
    for (size_t base = 0; base < rows; base += KILN_TREE_CHUNK) {
        size_t m = rows - base < KILN_TREE_CHUNK ? rows - base : KILN_TREE_CHUNK;
        for (size_t i = 0; i < m; i++) {
            cur[i] = root;
            row[i] = (int32_t)(base + i);
        }
        while (m > 0) {
            size_t k = 0;
            for (size_t i = 0; i < m; i++) {
                int32_t r = row[i];
                int32_t c = tree_step(nodes + cur[i], x + (size_t)r * stride, rule);
                leaves[r] = c;
                cur[k] = c;
                row[k] = r;
                k += c >= 0;
            }
            m = k;
        }
    }
}

static void walk_row_generic(const kiln_tree_node *nodes, const int32_t *roots, size_t count, const float *x,
                             int32_t *leaves, int rule) {
    switch (rule) {
    case KILN_TREES_RULE_LT_NAN: walk_row_body(nodes, roots, count, x, leaves, KILN_TREES_RULE_LT_NAN); break;
    case KILN_TREES_RULE_LE_NAN: walk_row_body(nodes, roots, count, x, leaves, KILN_TREES_RULE_LE_NAN); break;
    case KILN_TREES_RULE_LE_NAN_AS_ZERO:
        walk_row_body(nodes, roots, count, x, leaves, KILN_TREES_RULE_LE_NAN_AS_ZERO);
        break;
    default: walk_row_body(nodes, roots, count, x, leaves, KILN_TREES_RULE_GENERAL); break;
    }
}

static void walk_rows_generic(const kiln_tree_node *nodes, int32_t root, const float *x, size_t stride, size_t rows,
                              int32_t *leaves, int rule) {
    switch (rule) {
    case KILN_TREES_RULE_LT_NAN: walk_rows_body(nodes, root, x, stride, rows, leaves, KILN_TREES_RULE_LT_NAN); break;
    case KILN_TREES_RULE_LE_NAN: walk_rows_body(nodes, root, x, stride, rows, leaves, KILN_TREES_RULE_LE_NAN); break;
    case KILN_TREES_RULE_LE_NAN_AS_ZERO:
        walk_rows_body(nodes, root, x, stride, rows, leaves, KILN_TREES_RULE_LE_NAN_AS_ZERO);
        break;
    default: walk_rows_body(nodes, root, x, stride, rows, leaves, KILN_TREES_RULE_GENERAL); break;
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KILN_TREES_AVX512 __attribute__((target("avx512f")))

/* 16 pairs per step: the four node fields and the feature values gathered, the comparison as masks, the pairs
 * still at splits compressed to the front of the list. Steps the tail (under 16 pairs) with the scalar rule. */
KILN_TREES_AVX512 static size_t step16_rows(const kiln_tree_node *nodes, const float *x, size_t stride, int32_t *cur,
                                            int32_t *row, size_t m, int32_t *leaves) {
    const __m512i feature_mask = _mm512_set1_epi32((int32_t)KILN_TREE_FEATURE_MASK);
    const __m512i three = _mm512_set1_epi32(3);
    const __m512i one = _mm512_set1_epi32(1);
    const __m512 tiny = _mm512_set1_ps(1e-35f);
    const __m512i vstride = _mm512_set1_epi32((int32_t)stride);
    const int32_t *base = (const int32_t *)nodes;
    size_t k = 0, i = 0;
    for (; i + 16 <= m; i += 16) {
        __m512i c = _mm512_loadu_si512(cur + i);
        __m512i r = _mm512_loadu_si512(row + i);
        __m512i idx = _mm512_slli_epi32(c, 2);
        __m512i w = _mm512_i32gather_epi32(idx, base, 4);
        __m512 t = _mm512_castsi512_ps(_mm512_i32gather_epi32(_mm512_add_epi32(idx, one), base, 4));
        __m512i yes = _mm512_i32gather_epi32(_mm512_add_epi32(idx, _mm512_set1_epi32(2)), base, 4);
        __m512i no = _mm512_i32gather_epi32(_mm512_add_epi32(idx, three), base, 4);
        __m512i at = _mm512_add_epi32(_mm512_mullo_epi32(r, vstride), _mm512_and_si512(w, feature_mask));
        __m512 v = _mm512_i32gather_ps(at, x, 4);
        __m512i kind = _mm512_and_si512(_mm512_srli_epi32(w, KILN_TREE_MISSING_SHIFT), three);
        __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        __mmask16 as_zero = nan & _mm512_cmpeq_epi32_mask(kind, _mm512_set1_epi32(KILN_TREE_MISSING_NAN_AS_ZERO));
        __m512 u = _mm512_mask_mov_ps(v, as_zero, _mm512_setzero_ps());
        __mmask16 le = _mm512_test_epi32_mask(w, _mm512_set1_epi32(1 << 24));
        __mmask16 cmp = _mm512_cmp_ps_mask(u, t, _CMP_LT_OQ) | (le & _mm512_cmp_ps_mask(u, t, _CMP_EQ_OQ));
        __m512 absv = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF)));
        __mmask16 zero_missing = _mm512_cmpeq_epi32_mask(kind, _mm512_set1_epi32(KILN_TREE_MISSING_NAN_OR_ZERO)) &
                                 _mm512_cmp_ps_mask(absv, tiny, _CMP_LE_OQ);
        __mmask16 missing = (nan & (__mmask16)~as_zero) | zero_missing;
        __mmask16 missing_yes = _mm512_test_epi32_mask(w, _mm512_set1_epi32(1 << 25));
        __mmask16 take = (cmp & (__mmask16)~missing) | (missing & missing_yes);
        __m512i next = _mm512_mask_mov_epi32(no, take, yes);
        _mm512_i32scatter_epi32(leaves, r, next, 4);
        __mmask16 keep = _mm512_cmpge_epi32_mask(next, _mm512_setzero_si512());
        _mm512_mask_compressstoreu_epi32(cur + k, keep, next);
        _mm512_mask_compressstoreu_epi32(row + k, keep, r);
        k += (size_t)__builtin_popcount((unsigned)keep);
    }
    for (; i < m; i++) {
        int32_t rr = row[i];
        int32_t c = tree_step(nodes + cur[i], x + (size_t)rr * stride, KILN_TREES_RULE_GENERAL);
        leaves[rr] = c;
        cur[k] = c;
        row[k] = rr;
        k += c >= 0;
    }
    return k;
}

KILN_TREES_AVX512 static void walk_rows_avx512(const kiln_tree_node *nodes, int32_t root, const float *x,
                                               size_t stride, size_t rows, int32_t *leaves) {
    /* Gathers address with 32-bit element offsets. */
    if (root < 0 || rows * stride >= (size_t)1 << 31) {
        walk_rows_generic(nodes, root, x, stride, rows, leaves, KILN_TREES_RULE_GENERAL);
        return;
    }
    int32_t cur[KILN_TREE_CHUNK + 16], row[KILN_TREE_CHUNK + 16];
    for (size_t base = 0; base < rows; base += KILN_TREE_CHUNK) {
        size_t m = rows - base < KILN_TREE_CHUNK ? rows - base : KILN_TREE_CHUNK;
        for (size_t i = 0; i < m; i++) {
            cur[i] = root;
            row[i] = (int32_t)(base + i);
        }
        while (m > 0) m = step16_rows(nodes, x, stride, cur, row, m, leaves);
    }
}
#endif

/* Variant choice: 0 generic, 1 AVX-512, 2 none (kiln.cpu keeps its own walk; for tests and measurements). */
static atomic_int trees_variant = -1;

static int trees_best_variant(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    /* Measured on the benchmark models (scripts/bench-trees): see Documentation/Benchmarks.md. */
    return 0;
#else
    return 0;
#endif
}

static int trees_current_variant(void) {
    int v = atomic_load_explicit(&trees_variant, memory_order_relaxed);
    if (v < 0) {
        v = trees_best_variant();
        atomic_store_explicit(&trees_variant, v, memory_order_relaxed);
    }
    return v;
}

int kiln_trees_select_variant(const char *name) {
    if (name == NULL || strcmp(name, "host") == 0) {
        atomic_store_explicit(&trees_variant, trees_best_variant(), memory_order_relaxed);
        return 0;
    }
    if (strcmp(name, "generic") == 0) {
        atomic_store_explicit(&trees_variant, 0, memory_order_relaxed);
        return 0;
    }
    if (strcmp(name, "none") == 0) {
        atomic_store_explicit(&trees_variant, 2, memory_order_relaxed);
        return 0;
    }
    if (strcmp(name, "avx512") == 0) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        if (kiln_cpu_detect().avx512f) {
            atomic_store_explicit(&trees_variant, 1, memory_order_relaxed);
            return 0;
        }
#endif
        return -1;
    }
    return -1;
}

const char *kiln_trees_variant(void) {
    int v = trees_current_variant();
    return v == 1 ? "avx512" : v == 2 ? "none" : "generic";
}

int kiln_trees_enabled(void) { return trees_current_variant() != 2; }

void kiln_trees_walk_row(const kiln_tree_node *nodes, const int32_t *roots, size_t count, const float *x,
                         int32_t *leaves, int rule) {
    walk_row_generic(nodes, roots, count, x, leaves, rule);
}

void kiln_trees_walk_rows(const kiln_tree_node *nodes, int32_t root, const float *x, size_t stride, size_t rows,
                          int32_t *leaves, int rule) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (trees_current_variant() == 1) {
        walk_rows_avx512(nodes, root, x, stride, rows, leaves);
        return;
    }
#endif
    walk_rows_generic(nodes, root, x, stride, rows, leaves, rule);
}

void kiln_trees_sum_rows(const kiln_tree_node *nodes, const int32_t *roots, size_t trees, const float *leaf_values,
                         const float *x, size_t stride, size_t rows, int32_t *leaves, double *sums, int rule) {
    for (size_t t = 0; t < trees; t++) {
        kiln_trees_walk_rows(nodes, roots[t], x, stride, rows, leaves, rule);
        for (size_t r = 0; r < rows; r++) sums[r] += (double)leaf_values[~leaves[r]];
    }
}
