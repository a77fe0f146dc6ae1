/* trees.c — tree-ensemble walks for kiln.cpu's TreeEnsemble predictor (portable C; the leaf-mask walk is
 * AVX-512, chosen at run time).
 *
 * Three walks:
 *
 * The lockstep walk (kiln_forest_*), for forests whose splits are all comparisons with NaN either missing or
 * read as 0 (XGBoost, LightGBM's missing_type NaN/None, ONNX-ML BRANCH_LT/LEQ/GT/GTE). The forest is laid out
 * so that one step is four instructions: a node is {feature, key}, its two children sit side by side, and
 * the child is `first + (x_key >= key)`, an unsigned integer comparison on order-preserving keys of the
 * floats. Every comparison kind and missing rule folds into that one form at build time (below), so the walk
 * has no per-node rule, no NaN test and no branch. Eight rows (or, for one row, eight trees) walk in lockstep,
 * their cursors in registers, so eight independent load chains overlap. A leaf leads to a "sink" node that
 * leads to itself, so a walk may run past its leaf; a balanced tree is walked to its depth with no test,
 * an unbalanced one (LightGBM's leaf-wise trees) stops when all eight cursors are at sinks.
 *
 * The leaf-mask walk (kiln_forest_sum_rows on a forest with the leaf-mask layout), for lockstep forests of small
 * trees (at most 64 leaves) with one value per leaf, on CPUs with AVX-512: sixteen rows at a time are tested
 * against every split of a tree, and the splits' outcomes clear leaves from a per-row mask; the lowest leaf left is
 * the row's (below).
 *
 * The work-list walk (kiln_trees_*), for the rest (LightGBM's missing_type Zero, NaN thresholds): a list of
 * independent (row, node) or (tree, node) pairs; each pass advances every pair one level and keeps,
 * branch-free, only the pairs that reached a split. */
#include "internal.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

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

/* Variant choice: 0 the best the forest and the CPU take (the leaf-mask walk, else lockstep; the default),
 * 3 lockstep only, 1 work list only (kiln_forest_build declines every forest), 2 none (kiln.cpu keeps its Swift
 * walk). For tests and measurements. */
static atomic_int trees_variant = 0;

int kiln_trees_select_variant(const char *name) {
    int v = name == NULL || strcmp(name, "host") == 0 || strcmp(name, "leafmask") == 0 ? 0
        : strcmp(name, "lockstep") == 0                                                ? 3
        : strcmp(name, "worklist") == 0                                                ? 1
        : strcmp(name, "none") == 0                                                    ? 2
                                                                                       : -1;
    if (v < 0) return -1;
    atomic_store_explicit(&trees_variant, v, memory_order_relaxed);
    return 0;
}

const char *kiln_trees_variant(void) {
    int v = atomic_load_explicit(&trees_variant, memory_order_relaxed);
    return v == 0 ? "leafmask" : v == 3 ? "lockstep" : v == 1 ? "worklist" : "none";
}

int kiln_trees_enabled(void) { return atomic_load_explicit(&trees_variant, memory_order_relaxed) != 2; }

void kiln_trees_walk_row(const kiln_tree_node *nodes, const int32_t *roots, size_t count, const float *x,
                         int32_t *leaves, int rule) {
    walk_row_generic(nodes, roots, count, x, leaves, rule);
}

void kiln_trees_walk_rows(const kiln_tree_node *nodes, int32_t root, const float *x, size_t stride, size_t rows,
                          int32_t *leaves, int rule) {
    walk_rows_generic(nodes, root, x, stride, rows, leaves, rule);
}

void kiln_trees_sum_rows(const kiln_tree_node *nodes, const int32_t *roots, size_t trees, const float *leaf_values,
                         const float *x, size_t stride, size_t rows, int32_t *leaves, double *sums, int rule) {
    for (size_t t = 0; t < trees; t++) {
        kiln_trees_walk_rows(nodes, roots[t], x, stride, rows, leaves, rule);
        for (size_t r = 0; r < rows; r++) sums[r] += (double)leaf_values[~leaves[r]];
    }
}

/* ---- The lockstep walk ---------------------------------------------------------------------------------------
 *
 * Keys. key(v) maps a float to a uint32 whose unsigned order is the float order: a non-negative float's bits with
 * the top bit set, a negative float's bits inverted; -0 is first made +0 (the two compare equal). NaN maps to 0,
 * which is below every split's key (every key is at least key(-inf) = 0x007FFFFF), so NaN always takes the first
 * child. A leaf's key is 0xFFFFFFFF, above every value's key (key(+inf) = 0xFF800000): it always takes the first
 * child, its sink.
 *
 * Folding a split into `first + (x_key >= key)`: the first child must be the one NaN takes. With `yes` the child
 * when `v < t` (or `v <= t`) holds:
 *   NaN takes yes:  first = yes, second = no:   second when v >= t (<: key(t)) or v > t (<=: key(t) + 1), on v;
 *   NaN takes no:   first = no,  second = yes:  second when -v > -t (<: key(-t) + 1) or -v >= -t (<=: key(-t)),
 *                   on the row's negated copy of the feature (index feature + F).
 * A split whose NaN reads as 0 takes the branch 0 takes. On integers, "> t" is ">= key(t) + 1" exactly: no
 * rounding, no dependence on the FPU's denormal mode. Rows are expanded once per block into F keys and F keys of
 * the negated values (kiln_forest_expand). */

/* One split in the leaf-mask layout: a row whose key `feature` is at or above `key` goes to the second child, and
 * the leaves of the first child's subtree (a run of the tree's leaves, numbered left to right) are cleared from
 * its mask: mask &= lo | (uint64_t)hi << 32. */
typedef struct kiln_forest_mask {
    uint32_t feature, key, lo, hi;
} kiln_forest_mask;

/* A node of the chained layout (one row through every tree, below): 16 bytes, all that a step reads. */
typedef struct kiln_forest_link {
    uint32_t key;
    uint16_t feature;
    uint16_t dst;   /* a leaf: its tree's index in its chunk; a split: KILN_CHAIN_TREES (a scratch entry) */
    int32_t next;   /* a split: its first child; a leaf: the root of the tree eight on, or the end */
    uint32_t value; /* a leaf: its value's bits, or its leaf number (links_hold_leaves); a split: 0 */
} kiln_forest_link;

/* Trees per chunk of the chained walk (its per-tree results are on the stack). */
#ifndef KILN_CHAIN_TREES
#define KILN_CHAIN_TREES 1024
#endif

struct kiln_forest {
    kiln_forest_node *nodes;  /* slots, then sinks */
    int32_t *next;            /* per node: its first child (a sink: itself) */
    float *values;            /* per node: a leaf's or sink's value (single-value leaves), else 0 */
    int32_t *leaf;            /* per node: a leaf's or sink's leaf number, else -1 */
    kiln_forest_tree *trees;
    size_t tree_count, features, node_count;
    int32_t sink;             /* the first sink: a cursor at or past it has finished */
    /* The leaf-mask layout (below), or mask_words = 0. */
    int mask_words;           /* 32-bit words of a tree's leaf mask: 1 (every tree has at most 32 leaves) or 2 */
    int mask_isa;             /* the walk's vector width, chosen when the layout was built: 2 AVX-512, 1 AVX2 */
    kiln_forest_mask *masks;  /* every tree's splits, tree by tree */
    uint32_t *mask_start;     /* tree t's splits: masks[mask_start[3t] .. mask_start[3t + 3]), in three runs */
    float *mask_values;       /* tree t's leaf i (left to right): mask_values[32 * mask_words * t + i] */
    /* The chained layout (below): the slots, then the end (a leaf-like node that leads to itself); or NULL. */
    kiln_forest_link *links;
    int32_t end;              /* the link after the slots': it leads to itself */
    int links_hold_leaves;    /* the walk reports leaf numbers (the forest's leaves carry several values) */
};

static void forest_build_links(kiln_forest *f, size_t slots, int leaves);

static inline uint32_t tree_key(float v) {
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    if (v != v) return 0;
    if (b == 0x80000000u) b = 0;
    return (b >> 31) ? ~b : b | 0x80000000u;
}

void kiln_forest_free(kiln_forest *f) {
    if (f == NULL) return;
    free(f->nodes);
    free(f->next);
    free(f->values);
    free(f->leaf);
    free(f->trees);
    free(f->masks);
    free(f->mask_start);
    free(f->mask_values);
    free(f->links);
    free(f);
}

/* ---- The leaf-mask walk ----------------------------------------------------------------------------------------
 *
 * For forests of small trees (at most 64 leaves each) with one value per leaf, on CPUs with AVX-512 (or AVX2,
 * eight rows a vector, after the AVX-512 walk below): instead of
 * following a path, a row is tested against every split of a tree at once. A tree's leaves are numbered left to
 * right (first child before second); a row starts with a mask of all leaves, and every split at which it goes to
 * the second child clears the leaves of the first child's subtree. The row's leaf is then the lowest leaf left in
 * the mask: every leaf left of it lies in the first subtree of a split on its path where the row went second, and
 * its own bit is cleared by no split (it is in no first subtree it did not enter). The work per tree is its number
 * of splits whatever the paths' lengths, and it is the same for every row, so sixteen rows are one vector: one
 * unsigned comparison of sixteen keys against a split's key gives the rows that go second, and two masked ANDs
 * clear the leaves from their 2 × 32-bit masks. LightGBM's leaf-wise trees (63 leaves, paths of 1 to 16 splits,
 * 3.7 on average) are where it pays: the lockstep walk waits for the deepest of its eight paths, this walk has no
 * paths. The sums are the lockstep walk's: each row adds its leaf's value in tree order, in double. */

/* Which leaf-mask walk runs here, if any: 2, sixteen rows a vector, when the kernel family in use is AVX-512 and
 * the CPU has AVX-512CD (vplzcntd); 1, eight rows a vector, when the family is AVX2 (or AVX-512 without CD); 0 on
 * the `generic` target and kiln_kernels_force_generic, which keep to portable C. */
static int forest_masks_supported(void) {
#if defined(__x86_64__)
    const char *isa = kiln_kernels_isa();
    if (strcmp(isa, "avx512") == 0) return __builtin_cpu_supports("avx512cd") ? 2 : 1;
    return strcmp(isa, "avx2") == 0 ? 1 : 0;
#else
    return 0;
#endif
}

/* Lays out the splits under `slot` (a tree of the lockstep layout) with their leaf masks; *leaves counts the leaves
 * numbered so far. -1 when the tree has more than 64 leaves (a path of more than 64 splits has more, so the
 * recursion is at most 65 deep). */
static int forest_mask_tree(const kiln_forest *f, int32_t slot, kiln_forest_mask *out, size_t *count, float *values,
                            int *leaves) {
    if (f->nodes[slot].key == 0xFFFFFFFFu) {
        if (*leaves >= 64) return -1;
        values[(*leaves)++] = f->values[slot];
        return 0;
    }
    int before = *leaves;
    if (forest_mask_tree(f, f->next[slot], out, count, values, leaves) != 0) return -1;
    int after = *leaves;
    if (forest_mask_tree(f, f->next[slot] + 1, out, count, values, leaves) != 0) return -1;
    /* The second subtree has a leaf, so after - before < 64. */
    uint64_t mask = ~((((uint64_t)1 << (after - before)) - 1) << before);
    out[(*count)++] = (kiln_forest_mask){f->nodes[slot].feature, f->nodes[slot].key, (uint32_t)mask,
                                         (uint32_t)(mask >> 32)};
    return 0;
}

/* Adds the leaf-mask layout to `f` (`splits` splits in all) when every tree has at most 64 leaves; `isa` is the
 * walk that will read it (forest_masks_supported). */
static void forest_build_masks(kiln_forest *f, size_t splits, int isa) {
    size_t trees = f->tree_count, count = 0;
    kiln_forest_mask *masks = malloc((splits > 0 ? splits : 1) * sizeof *masks), part[64];
    uint32_t *start = malloc((3 * trees + 1) * sizeof *start);
    float *values = calloc(64 * trees, sizeof *values);
    if (masks == NULL || start == NULL || values == NULL || splits > UINT32_MAX) goto fail;
    int widest = 0;
    for (size_t t = 0; t < trees; t++) {
        int leaves = 0;
        size_t first = count;
        if (forest_mask_tree(f, f->trees[t].root, masks, &count, values + 64 * t, &leaves) != 0) goto fail;
        if (leaves > widest) widest = leaves;
        /* Order: the splits that clear only low leaves (0-31), those that clear both, those that clear only high
         * ones, so that each loop of the walk ANDs only the words that change. */
        size_t n = count - first, k = 0;
        for (int kind = 0; kind < 3; kind++) {
            start[3 * t + (size_t)kind] = (uint32_t)(first + k);
            for (size_t i = 0; i < n; i++) {
                const kiln_forest_mask *m = masks + first + i;
                int which = m->hi == 0xFFFFFFFFu ? 0 : m->lo == 0xFFFFFFFFu ? 2 : 1;
                if (which == kind) part[k++] = *m;
            }
        }
        memcpy(masks + first, part, n * sizeof *part);
    }
    start[3 * trees] = (uint32_t)count;
    f->mask_words = widest <= 32 ? 1 : 2;
    f->mask_isa = isa;
    if (f->mask_words == 1) /* 32 values per tree */
        for (size_t t = 1; t < trees; t++) memmove(values + 32 * t, values + 64 * t, 32 * sizeof *values);
    f->masks = masks;
    f->mask_start = start;
    f->mask_values = values;
    return;
fail:
    free(masks);
    free(start);
    free(values);
}

#if defined(__x86_64__)
#include <immintrin.h>

#define KILN_TREES_AVX512 __attribute__((target("avx512f,avx512cd")))

/* The index of each lane's lowest set bit (-1 for 0). */
KILN_TREES_AVX512 static inline __attribute__((always_inline)) __m512i mask_lowest(__m512i m) {
    __m512i bit = _mm512_and_si512(m, _mm512_sub_epi32(_mm512_setzero_si512(), m));
    return _mm512_sub_epi32(_mm512_set1_epi32(31), _mm512_lzcnt_epi32(bit));
}

/* lo & m in the lanes of k, lo elsewhere: one masked AND. (Written as an intrinsic, the compiler turns the select
 * around and emits an AND and a masked move.) */
KILN_TREES_AVX512 static inline __attribute__((always_inline)) __m512i mask_and(__m512i lo, __mmask16 k, __m512i m) {
    __asm__("vpandd %[m], %[lo], %[lo]%{%[k]%}" : [lo] "+v"(lo) : [m] "v"(m), [k] "Yk"(k));
    return lo;
}

/* S sets of 16 rows (keys transposed: key j of row 16s + i at kt[64j + 16s + i]) through every tree; acc[16s + i]
 * += row 16s + i's leaf values in tree order. W: mask words (1 or 2). */
KILN_TREES_AVX512 static inline __attribute__((always_inline)) void mask_pass(const kiln_forest *f,
                                                                              const uint32_t *kt, double *acc, int S,
                                                                              int W) {
    __m512d a[8];
    for (int s = 0; s < S; s++) {
        a[2 * s] = _mm512_loadu_pd(acc + 16 * s);
        a[2 * s + 1] = _mm512_loadu_pd(acc + 16 * s + 8);
    }
    const kiln_forest_mask *m = f->masks;
    const uint32_t *start = f->mask_start;
    const float *values = f->mask_values;
    const __m512i ones = _mm512_set1_epi32(-1);
    for (size_t t = 0; t < f->tree_count; t++, values += 32 * W) {
        __m512i lo[4], hi[4];
        for (int s = 0; s < S; s++) lo[s] = hi[s] = ones;
        /* The splits that clear low leaves only, both words, high leaves only (with one word: all low). */
        uint32_t i = start[3 * t], both = start[3 * t + 1], high = start[3 * t + 2], end = start[3 * t + 3];
        for (; i < both; i++) {
            const uint32_t *k = kt + 64 * (size_t)m[i].feature;
            __m512i key = _mm512_set1_epi32((int)m[i].key), mlo = _mm512_set1_epi32((int)m[i].lo);
            for (int s = 0; s < S; s++) {
                __mmask16 second = _mm512_cmpge_epu32_mask(_mm512_load_si512(k + 16 * s), key);
                lo[s] = mask_and(lo[s], second, mlo);
            }
        }
        if (W == 2) {
            for (; i < high; i++) {
                const uint32_t *k = kt + 64 * (size_t)m[i].feature;
                __m512i key = _mm512_set1_epi32((int)m[i].key), mlo = _mm512_set1_epi32((int)m[i].lo);
                __m512i mhi = _mm512_set1_epi32((int)m[i].hi);
                for (int s = 0; s < S; s++) {
                    __mmask16 second = _mm512_cmpge_epu32_mask(_mm512_load_si512(k + 16 * s), key);
                    lo[s] = mask_and(lo[s], second, mlo);
                    hi[s] = mask_and(hi[s], second, mhi);
                }
            }
            for (; i < end; i++) {
                const uint32_t *k = kt + 64 * (size_t)m[i].feature;
                __m512i key = _mm512_set1_epi32((int)m[i].key), mhi = _mm512_set1_epi32((int)m[i].hi);
                for (int s = 0; s < S; s++) {
                    __mmask16 second = _mm512_cmpge_epu32_mask(_mm512_load_si512(k + 16 * s), key);
                    hi[s] = mask_and(hi[s], second, mhi);
                }
            }
        }
        /* The tree's leaf values, 32 per register pair: a two-table permute picks each row's (a gather of 16 took
         * a fifth of the walk). */
        __m512 v0 = _mm512_loadu_ps(values), v1 = _mm512_loadu_ps(values + 16), v2 = v0, v3 = v1;
        if (W == 2) v2 = _mm512_loadu_ps(values + 32), v3 = _mm512_loadu_ps(values + 48);
        for (int s = 0; s < S; s++) {
            __m512 v = _mm512_permutex2var_ps(v0, mask_lowest(lo[s]), v1);
            if (W == 2) {
                /* No low leaf left: the leaf is a high one. */
                __mmask16 none = _mm512_testn_epi32_mask(lo[s], lo[s]);
                v = _mm512_mask_blend_ps(none, v, _mm512_permutex2var_ps(v2, mask_lowest(hi[s]), v3));
            }
            __m256 high = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
            a[2 * s] = _mm512_add_pd(a[2 * s], _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
            a[2 * s + 1] = _mm512_add_pd(a[2 * s + 1], _mm512_cvtps_pd(high));
        }
    }
    for (int s = 0; s < S; s++) {
        _mm512_storeu_pd(acc + 16 * s, a[2 * s]);
        _mm512_storeu_pd(acc + 16 * s + 8, a[2 * s + 1]);
    }
}

/* Calls `pass` with constant set counts (1-4) and mask words, so that each combination is compiled on its own. */
#define MASK_PASS_DISPATCH(pass, f, kt, acc, S)                                                  \
    do {                                                                                         \
        int words_ = (f)->mask_words;                                                            \
        switch ((S) < 4 ? (S) : 4) {                                                             \
        case 1: words_ == 1 ? pass(f, kt, acc, 1, 1) : pass(f, kt, acc, 1, 2); break;            \
        case 2: words_ == 1 ? pass(f, kt, acc, 2, 1) : pass(f, kt, acc, 2, 2); break;            \
        case 3: words_ == 1 ? pass(f, kt, acc, 3, 1) : pass(f, kt, acc, 3, 2); break;            \
        default: words_ == 1 ? pass(f, kt, acc, 4, 1) : pass(f, kt, acc, 4, 2); break;           \
        }                                                                                        \
    } while (0)

KILN_TREES_AVX512 static void mask_pass_any(const kiln_forest *f, const uint32_t *kt, double *acc, int S) {
    MASK_PASS_DISPATCH(mask_pass, f, kt, acc, S);
}

/* The same walk eight rows a vector, for AVX2. AVX2 compares signed words only, so keys and split keys have their
 * top bit flipped (unsigned order becomes signed order); a split's "first child" lanes (key > row) keep their bits
 * by ORing the split's mask with them before the AND; the lowest set bit's index comes from the exponent of its
 * value converted to float (exact: a power of two); and the leaf values are gathered. */

#define KILN_TREES_AVX2 __attribute__((target("avx2")))

/* The index of each lane's lowest set bit (lanes must not be 0). */
KILN_TREES_AVX2 static inline __attribute__((always_inline)) __m256i mask_lowest8(__m256i m) {
    __m256i bit = _mm256_and_si256(m, _mm256_sub_epi32(_mm256_setzero_si256(), m));
    __m256i exponent = _mm256_srli_epi32(_mm256_castps_si256(_mm256_cvtepi32_ps(bit)), 23);
    return _mm256_sub_epi32(_mm256_and_si256(exponent, _mm256_set1_epi32(0xFF)), _mm256_set1_epi32(127));
}

/* lanes' masks &= split mask, where the row goes to the second child (its key is not below the split's). */
#define MASK_CLEAR8(word, split_key, split_mask, row_keys) \
    word = _mm256_and_si256(word, _mm256_or_si256(_mm256_cmpgt_epi32(split_key, row_keys), split_mask))

/* S sets of 8 rows (keys transposed, top bits flipped: key j of row 8s + i at kt[32j + 8s + i]) through every tree;
 * acc[8s + i] += row 8s + i's leaf values in tree order. W: mask words (1 or 2). */
KILN_TREES_AVX2 static inline __attribute__((always_inline)) void mask_pass8(const kiln_forest *f, const uint32_t *kt,
                                                                            double *acc, int S, int W) {
    const kiln_forest_mask *m = f->masks;
    const uint32_t *start = f->mask_start;
    const float *values = f->mask_values;
    const __m256i ones = _mm256_set1_epi32(-1), zero = _mm256_setzero_si256(), high_leaves = _mm256_set1_epi32(32);
    for (size_t t = 0; t < f->tree_count; t++, values += 32 * W) {
        __m256i lo[4], hi[4];
        for (int s = 0; s < S; s++) lo[s] = hi[s] = ones;
        uint32_t i = start[3 * t], both = start[3 * t + 1], high = start[3 * t + 2], end = start[3 * t + 3];
        for (; i < both; i++) {
            const __m256i *k = (const __m256i *)(kt + 32 * (size_t)m[i].feature);
            __m256i key = _mm256_set1_epi32((int)(m[i].key ^ 0x80000000u)), mlo = _mm256_set1_epi32((int)m[i].lo);
            for (int s = 0; s < S; s++) MASK_CLEAR8(lo[s], key, mlo, _mm256_load_si256(k + s));
        }
        if (W == 2) {
            for (; i < high; i++) {
                const __m256i *k = (const __m256i *)(kt + 32 * (size_t)m[i].feature);
                __m256i key = _mm256_set1_epi32((int)(m[i].key ^ 0x80000000u));
                __m256i mlo = _mm256_set1_epi32((int)m[i].lo), mhi = _mm256_set1_epi32((int)m[i].hi);
                for (int s = 0; s < S; s++) {
                    __m256i first = _mm256_cmpgt_epi32(key, _mm256_load_si256(k + s));
                    lo[s] = _mm256_and_si256(lo[s], _mm256_or_si256(first, mlo));
                    hi[s] = _mm256_and_si256(hi[s], _mm256_or_si256(first, mhi));
                }
            }
            for (; i < end; i++) {
                const __m256i *k = (const __m256i *)(kt + 32 * (size_t)m[i].feature);
                __m256i key = _mm256_set1_epi32((int)(m[i].key ^ 0x80000000u)), mhi = _mm256_set1_epi32((int)m[i].hi);
                for (int s = 0; s < S; s++) MASK_CLEAR8(hi[s], key, mhi, _mm256_load_si256(k + s));
            }
        }
        for (int s = 0; s < S; s++) {
            __m256i leaf;
            if (W == 2) {
                /* No low leaf left: the leaf is a high one. (ORing `none` in keeps mask_lowest8 away from 0.) */
                __m256i none = _mm256_cmpeq_epi32(lo[s], zero);
                __m256i low = mask_lowest8(_mm256_or_si256(lo[s], none));
                leaf = _mm256_blendv_epi8(low, _mm256_add_epi32(mask_lowest8(hi[s]), high_leaves), none);
            } else {
                leaf = mask_lowest8(lo[s]);
            }
            __m256 v = _mm256_i32gather_ps(values, leaf, 4);
            __m256d a0 = _mm256_loadu_pd(acc + 8 * s), a1 = _mm256_loadu_pd(acc + 8 * s + 4);
            _mm256_storeu_pd(acc + 8 * s, _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(v))));
            _mm256_storeu_pd(acc + 8 * s + 4, _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))));
        }
    }
}
#undef MASK_CLEAR8

KILN_TREES_AVX2 static void mask_pass8_any(const kiln_forest *f, const uint32_t *kt, double *acc, int S) {
    MASK_PASS_DISPATCH(mask_pass8, f, kt, acc, S);
}
#undef MASK_PASS_DISPATCH

/* kiln_forest_sum_rows by leaf masks: passes of up to 4 vectors of rows (16 rows a vector on AVX-512, 8 on AVX2, as
 * the forest's layout says), each through every tree. The keys of a pass are transposed (key j of pass row i at
 * kt[4·lanes·j + i]); AVX2 compares signed words, so its keys have their top bits flipped. */
static int forest_mask_sum_rows(const kiln_forest *f, const uint32_t *keys, size_t rows, double *sums) {
    const int wide = f->mask_isa == 2;
    const size_t lanes = wide ? 16 : 8, block = 4 * lanes, width = 2 * f->features;
    const uint32_t flip = wide ? 0 : 0x80000000u;
    /* At most 2 MB of transposed keys. */
    if (f->features > 4096) return -1;
    uint32_t *kt = aligned_alloc(64, width * block * sizeof *kt);
    if (kt == NULL) return -1;
    double acc[64];
    for (size_t base = 0; base < rows; base += block) {
        size_t n = rows - base < block ? rows - base : block;
        int S = (int)((n + lanes - 1) / lanes);
        /* Rows past the last repeat row `base` (their sums are dropped). */
        for (size_t i = 0; i < (size_t)S * lanes; i++) {
            const uint32_t *row = keys + (base + (i < n ? i : 0)) * width;
            for (size_t j = 0; j < width; j++) kt[block * j + i] = row[j] ^ flip;
        }
        for (size_t i = 0; i < (size_t)S * lanes; i++) acc[i] = i < n ? sums[base + i] : 0.0;
        if (wide) mask_pass_any(f, kt, acc, S);
        else mask_pass8_any(f, kt, acc, S);
        for (size_t i = 0; i < n; i++) sums[base + i] = acc[i];
    }
    free(kt);
    return 0;
}
#endif

kiln_forest *kiln_forest_build(const kiln_tree_node *nodes, size_t splits, const int32_t *roots, size_t trees,
                               const float *leaf_values, size_t leaves) {
    int variant = atomic_load_explicit(&trees_variant, memory_order_relaxed);
    if (variant != 0 && variant != 3) return NULL;
    /* Every tree has one root slot and every split two child slots; every leaf slot has a sink. */
    if (trees == 0 || splits > (size_t)INT32_MAX / 4 || trees > (size_t)INT32_MAX / 4) return NULL;
    size_t slots = trees + 2 * splits, total = slots + trees + splits;
    uint32_t features = 1;
    for (size_t i = 0; i < splits; i++) {
        const kiln_tree_node *n = nodes + i;
        uint32_t kind = (n->word >> KILN_TREE_MISSING_SHIFT) & 3u;
        if (kind == KILN_TREE_MISSING_NAN_OR_ZERO || n->threshold != n->threshold) return NULL;
        uint32_t feature = n->word & KILN_TREE_FEATURE_MASK;
        if (feature + 1 > features) features = feature + 1;
    }
    kiln_forest *f = calloc(1, sizeof *f);
    int32_t *stack = NULL;
    if (f == NULL) return NULL;
    f->nodes = malloc(total * sizeof *f->nodes);
    f->next = malloc(total * sizeof *f->next);
    f->values = calloc(total, sizeof *f->values);
    f->leaf = malloc(total * sizeof *f->leaf);
    f->trees = malloc(trees * sizeof *f->trees);
    /* (reference, slot, depth) triples of the slots still to fill. */
    stack = malloc(3 * (splits + 2) * sizeof *stack);
    if (!f->nodes || !f->next || !f->values || !f->leaf || !f->trees || !stack) goto fail;
    f->tree_count = trees;
    f->features = features;
    f->node_count = total;
    f->sink = (int32_t)slots;
    int32_t used = 0, sinks = (int32_t)slots;
    for (size_t t = 0; t < trees; t++) {
        int32_t depth = 0, shallow = INT32_MAX, leaf_slots = 0;
        size_t top = 0;
        f->trees[t].root = used;
        stack[0] = roots[t], stack[1] = used++, stack[2] = 0, top = 1;
        while (top > 0) {
            top--;
            int32_t ref = stack[3 * top], slot = stack[3 * top + 1], d = stack[3 * top + 2];
            if (ref < 0) {
                int32_t number = ~ref;
                if ((size_t)number >= leaves || sinks >= (int32_t)total) goto fail;
                float value = leaf_values ? leaf_values[number] : 0.0f;
                f->nodes[slot] = (kiln_forest_node){0, 0xFFFFFFFFu};
                f->next[slot] = sinks;
                f->values[slot] = value;
                f->leaf[slot] = number;
                f->nodes[sinks] = (kiln_forest_node){0, 0xFFFFFFFFu};
                f->next[sinks] = sinks;
                f->values[sinks] = value;
                f->leaf[sinks] = number;
                sinks++;
                leaf_slots++;
                if (d > depth) depth = d;
                if (d < shallow) shallow = d;
                continue;
            }
            if ((size_t)ref >= splits || used + 2 > (int32_t)slots || top + 2 > splits + 2) goto fail;
            const kiln_tree_node *n = nodes + ref;
            uint32_t w = n->word, kind = (w >> KILN_TREE_MISSING_SHIFT) & 3u;
            int le = (w & KILN_TREE_LE) != 0;
            float t0 = n->threshold;
            int nan_yes = kind == KILN_TREE_MISSING_NAN_AS_ZERO ? (le ? 0.0f <= t0 : 0.0f < t0)
                                                                : (w & KILN_TREE_MISSING_YES) != 0;
            uint32_t feature = w & KILN_TREE_FEATURE_MASK, key;
            int32_t first, second;
            if (nan_yes) {
                key = tree_key(t0) + (uint32_t)le;
                first = n->yes, second = n->no;
            } else {
                key = tree_key(-t0) + (uint32_t)!le;
                feature += features;
                first = n->no, second = n->yes;
            }
            f->nodes[slot] = (kiln_forest_node){feature, key};
            f->next[slot] = used;
            f->values[slot] = 0;
            f->leaf[slot] = -1;
            stack[3 * top] = second, stack[3 * top + 1] = used + 1, stack[3 * top + 2] = d + 1, top++;
            stack[3 * top] = first, stack[3 * top + 1] = used, stack[3 * top + 2] = d + 1, top++;
            used += 2;
        }
        if (depth >= 65535) goto fail;
        f->trees[t].depth = (uint16_t)depth;
        f->trees[t].shallow = (uint16_t)(shallow < depth ? shallow : depth);
        /* Stop early only in unbalanced trees: in a tree with a quarter or more of its 2^depth leaves, most walks
         * run (nearly) to the depth, and the test costs more than the steps it saves. */
        f->trees[t].check = depth >= 30 || (int64_t)leaf_slots * 4 < ((int64_t)1 << depth);
    }
    if (used != (int32_t)slots || sinks != (int32_t)total) goto fail;
    free(stack);
    int mask_isa = variant == 0 && leaf_values != NULL ? forest_masks_supported() : 0;
    if (mask_isa != 0) forest_build_masks(f, splits, mask_isa);
    if (variant == 0) forest_build_links(f, slots, leaf_values == NULL);
    return f;
fail:
    free(stack);
    kiln_forest_free(f);
    return NULL;
}

size_t kiln_forest_features(const kiln_forest *f) { return f->features; }

int kiln_forest_mask_words(const kiln_forest *f) { return f->mask_words; }

int kiln_forest_chained(const kiln_forest *f) { return f->links != NULL; }

void kiln_forest_expand(const kiln_forest *f, const float *x, size_t stride, size_t rows, uint32_t *keys) {
    size_t n = f->features;
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * stride;
        uint32_t *k = keys + r * 2 * n;
        for (size_t j = 0; j < n; j++) {
            k[j] = tree_key(row[j]);
            k[n + j] = tree_key(-row[j]);
        }
    }
}

/* Cursors are unsigned: a 32-bit index indexes with no sign extension. */
static inline __attribute__((always_inline)) uint32_t forest_step(const kiln_forest_node *nodes, const int32_t *next,
                                                                  uint32_t c, const uint32_t *keys) {
    return (uint32_t)next[c] + (uint32_t)(keys[nodes[c].feature] >= nodes[c].key);
}

/* Eight walks in lockstep, cursors in registers: walk j starts at root[j] and reads keys k[j]. `steps` steps at
 * most; from step `from` on, when `check`, stop once all eight are at sinks. end[j] = the node walk j ends at (a
 * leaf or its sink). Eight rows through one tree pass one root and eight key rows; one row through eight trees
 * passes eight roots and one key row eight times. */
static inline __attribute__((always_inline)) void forest_walk8(const kiln_forest *f, const int32_t *root,
                                                               const uint32_t *const *k, int one_row, int steps,
                                                               int from, int check, int32_t *end) {
    const kiln_forest_node *n = f->nodes;
    const int32_t *next = f->next;
    const uint32_t sink = (uint32_t)f->sink;
    /* One row through eight trees reads one key row: one pointer, not eight (the walk keeps its cursors in
     * registers only if the pointers leave room). */
    const uint32_t *k0 = k[0], *k1 = k[one_row ? 0 : 1], *k2 = k[one_row ? 0 : 2], *k3 = k[one_row ? 0 : 3];
    const uint32_t *k4 = k[one_row ? 0 : 4], *k5 = k[one_row ? 0 : 5], *k6 = k[one_row ? 0 : 6];
    const uint32_t *k7 = k[one_row ? 0 : 7];
    uint32_t c0 = (uint32_t)root[0], c1 = (uint32_t)root[1], c2 = (uint32_t)root[2], c3 = (uint32_t)root[3],
             c4 = (uint32_t)root[4], c5 = (uint32_t)root[5], c6 = (uint32_t)root[6], c7 = (uint32_t)root[7];
    for (int l = 0; l < steps; l++) {
        if (check && l >= from) {
            uint32_t a = c0 < c1 ? c0 : c1, b = c2 < c3 ? c2 : c3, c = c4 < c5 ? c4 : c5, d = c6 < c7 ? c6 : c7;
            a = a < b ? a : b;
            c = c < d ? c : d;
            if ((a < c ? a : c) >= sink) break;
        }
        c0 = forest_step(n, next, c0, k0);
        c1 = forest_step(n, next, c1, k1);
        c2 = forest_step(n, next, c2, k2);
        c3 = forest_step(n, next, c3, k3);
        c4 = forest_step(n, next, c4, k4);
        c5 = forest_step(n, next, c5, k5);
        c6 = forest_step(n, next, c6, k6);
        c7 = forest_step(n, next, c7, k7);
    }
    end[0] = (int32_t)c0, end[1] = (int32_t)c1, end[2] = (int32_t)c2, end[3] = (int32_t)c3;
    end[4] = (int32_t)c4, end[5] = (int32_t)c5, end[6] = (int32_t)c6, end[7] = (int32_t)c7;
}

/* Eight rows (keys `stride` apart) through tree `t`. */
static inline __attribute__((always_inline)) void forest_rows8(const kiln_forest *f, const kiln_forest_tree *t,
                                                               const uint32_t *keys, size_t stride, int32_t *end) {
    const int32_t root[8] = {t->root, t->root, t->root, t->root, t->root, t->root, t->root, t->root};
    const uint32_t *k[8];
    for (int j = 0; j < 8; j++) k[j] = keys + (size_t)j * stride;
    forest_walk8(f, root, k, 0, t->depth + t->check, t->shallow + 1, t->check, end);
}

/* One row through trees t[0..8). */
static inline __attribute__((always_inline)) void forest_trees8(const kiln_forest *f, const kiln_forest_tree *t,
                                                                const uint32_t *keys, int32_t *end) {
    int32_t root[8];
    const uint32_t *k[8];
    int depth = 0, from = 65536, check = 0;
    for (int j = 0; j < 8; j++) {
        root[j] = t[j].root;
        k[j] = keys;
        if (t[j].depth > depth) depth = t[j].depth;
        if (t[j].shallow + 1 < from) from = t[j].shallow + 1;
        check |= t[j].check;
    }
    forest_walk8(f, root, k, 1, depth + check, from, check, end);
}

/* One row through one tree, `depth` steps (it ends at its leaf or its leaf's sink). */
static inline uint32_t forest_one(const kiln_forest *f, const kiln_forest_tree *t, const uint32_t *k) {
    uint32_t c = (uint32_t)t->root;
    for (int l = 0; l < t->depth; l++) c = forest_step(f->nodes, f->next, c, k);
    return c;
}

void kiln_forest_sum_rows(const kiln_forest *f, const uint32_t *keys, size_t rows, double *sums) {
#if defined(__x86_64__)
    if (f->mask_words != 0 && forest_mask_sum_rows(f, keys, rows, sums) == 0) return;
#endif
    size_t stride = 2 * f->features;
    int32_t end[8];
    for (size_t t = 0; t < f->tree_count; t++) {
        const kiln_forest_tree *tree = f->trees + t;
        size_t r = 0;
        for (; r + 8 <= rows; r += 8) {
            forest_rows8(f, tree, keys + r * stride, stride, end);
            for (int j = 0; j < 8; j++) sums[r + j] += (double)f->values[end[j]];
        }
        for (; r < rows; r++) sums[r] += (double)f->values[forest_one(f, tree, keys + r * stride)];
    }
}

void kiln_forest_leaves_rows(const kiln_forest *f, size_t tree, const uint32_t *keys, size_t rows, int32_t *leaves) {
    size_t stride = 2 * f->features;
    const kiln_forest_tree *t = f->trees + tree;
    size_t r = 0;
    int32_t end[8];
    for (; r + 8 <= rows; r += 8) {
        forest_rows8(f, t, keys + r * stride, stride, end);
        for (int j = 0; j < 8; j++) leaves[r + j] = f->leaf[end[j]];
    }
    for (; r < rows; r++) leaves[r] = f->leaf[forest_one(f, t, keys + r * stride)];
}

/* ---- The chained walk: one row through every tree -------------------------------------------------------------
 *
 * Eight lanes walk the trees of a chunk (up to KILN_CHAIN_TREES trees): lane j takes trees j, j + 8, j + 16, ...
 * one after another with no pause: a leaf leads to the root of the lane's next tree (the last ones to the end, a
 * node that leads to itself). The lockstep walk of eight trees waits for the deepest of the eight (LightGBM's
 * leaf-wise trees: 8.6 steps per tree for paths of 4.7 steps); here a lane waits only at the end of the chunk.
 * Every step stores its node's value at its node's `dst`: a split's goes to a scratch entry, a leaf's to its
 * tree's entry, so the chunk ends with each tree's leaf value in tree order, and the sum adds them in that order
 * (the same additions as the block walks). */

/* Adds the chained layout to `f` (`slots` slot nodes), unless its features do not fit the link. Its leaves hold
 * their values, or (`leaves`) their leaf numbers. */
static void forest_build_links(kiln_forest *f, size_t slots, int leaves) {
    if (2 * f->features > 65536 || slots >= (size_t)INT32_MAX) return;
    /* Balanced trees (XGBoost's) waste no lockstep steps, and the lockstep step is cheaper (no store): the chain
     * is for forests of mostly unbalanced trees. */
    size_t unbalanced = 0;
    for (size_t t = 0; t < f->tree_count; t++) unbalanced += f->trees[t].check != 0;
    if (2 * unbalanced < f->tree_count) return;
    kiln_forest_link *links = malloc((slots + 1) * sizeof *links);
    if (links == NULL) return;
    int32_t end = (int32_t)slots;
    for (size_t t = 0; t < f->tree_count; t++) {
        size_t first = (size_t)f->trees[t].root, last = t + 1 < f->tree_count ? (size_t)f->trees[t + 1].root : slots;
        size_t following = t + 8;
        int32_t then = following < f->tree_count && following / KILN_CHAIN_TREES == t / KILN_CHAIN_TREES
                           ? f->trees[following].root
                           : end;
        for (size_t c = first; c < last; c++) {
            int leaf = f->nodes[c].key == 0xFFFFFFFFu;
            uint32_t value = 0;
            if (leaf && leaves) memcpy(&value, f->leaf + c, sizeof value);
            if (leaf && !leaves) memcpy(&value, f->values + c, sizeof value);
            links[c] = (kiln_forest_link){f->nodes[c].key, (uint16_t)f->nodes[c].feature,
                                          (uint16_t)(leaf ? t % KILN_CHAIN_TREES : KILN_CHAIN_TREES),
                                          leaf ? then : f->next[c], value};
        }
    }
    links[end] = (kiln_forest_link){0xFFFFFFFFu, 0, KILN_CHAIN_TREES, end, 0};
    f->links = links;
    f->end = end;
    f->links_hold_leaves = leaves;
}

/* One row (keys k) through trees [base, base + n) (n <= KILN_CHAIN_TREES, within one chunk): out[i] = the value
 * (or leaf number) of the leaf tree base + i reaches; out holds KILN_CHAIN_TREES + 1 entries. */
static void forest_chain(const kiln_forest *f, const uint32_t *k, size_t base, size_t n, uint32_t *out) {
    const kiln_forest_link *l = f->links;
    const int32_t end = f->end;
    int32_t c[8];
    for (size_t j = 0; j < 8; j++) c[j] = j < n ? f->trees[base + j].root : end;
    uint32_t c0 = (uint32_t)c[0], c1 = (uint32_t)c[1], c2 = (uint32_t)c[2], c3 = (uint32_t)c[3], c4 = (uint32_t)c[4],
             c5 = (uint32_t)c[5], c6 = (uint32_t)c[6], c7 = (uint32_t)c[7], e = (uint32_t)end;
#define KILN_LINK_STEP(c)                                                                                             \
    do {                                                                                                              \
        const kiln_forest_link *p = l + (c);                                                                          \
        out[p->dst] = p->value;                                                                                       \
        c = (uint32_t)p->next + (uint32_t)(k[p->feature] >= p->key);                                                  \
    } while (0)
    for (;;) {
        for (int r = 0; r < 4; r++) {
            KILN_LINK_STEP(c0); KILN_LINK_STEP(c1); KILN_LINK_STEP(c2); KILN_LINK_STEP(c3);
            KILN_LINK_STEP(c4); KILN_LINK_STEP(c5); KILN_LINK_STEP(c6); KILN_LINK_STEP(c7);
        }
        if (((c0 ^ e) | (c1 ^ e) | (c2 ^ e) | (c3 ^ e) | (c4 ^ e) | (c5 ^ e) | (c6 ^ e) | (c7 ^ e)) == 0) break;
    }
#undef KILN_LINK_STEP
}

void kiln_forest_sum_row(const kiln_forest *f, const uint32_t *keys, double *sum) {
    double s = *sum;
    if (f->links != NULL && !f->links_hold_leaves) {
        uint32_t out[KILN_CHAIN_TREES + 1];
        for (size_t base = 0; base < f->tree_count; base += KILN_CHAIN_TREES) {
            size_t n = f->tree_count - base < KILN_CHAIN_TREES ? f->tree_count - base : KILN_CHAIN_TREES;
            forest_chain(f, keys, base, n, out);
            for (size_t i = 0; i < n; i++) {
                float v;
                memcpy(&v, out + i, sizeof v);
                s += (double)v;
            }
        }
        *sum = s;
        return;
    }
    int32_t end[8];
    size_t t = 0;
    for (; t + 8 <= f->tree_count; t += 8) {
        forest_trees8(f, f->trees + t, keys, end);
        for (int j = 0; j < 8; j++) s += (double)f->values[end[j]];
    }
    for (; t < f->tree_count; t++) s += (double)f->values[forest_one(f, f->trees + t, keys)];
    *sum = s;
}

void kiln_forest_leaves_row(const kiln_forest *f, const uint32_t *keys, int32_t *leaves) {
    if (f->links != NULL && f->links_hold_leaves) {
        uint32_t out[KILN_CHAIN_TREES + 1];
        for (size_t base = 0; base < f->tree_count; base += KILN_CHAIN_TREES) {
            size_t n = f->tree_count - base < KILN_CHAIN_TREES ? f->tree_count - base : KILN_CHAIN_TREES;
            forest_chain(f, keys, base, n, out);
            memcpy(leaves + base, out, n * sizeof *leaves);
        }
        return;
    }
    int32_t end[8];
    size_t t = 0;
    for (; t + 8 <= f->tree_count; t += 8) {
        forest_trees8(f, f->trees + t, keys, end);
        for (int j = 0; j < 8; j++) leaves[t + j] = f->leaf[end[j]];
    }
    for (; t < f->tree_count; t++) leaves[t] = f->leaf[forest_one(f, f->trees + t, keys)];
}
