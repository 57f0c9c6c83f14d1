/* Inner loops of the sparsebed kernels, compiled once per instruction set and
 * chosen at run time for the CPU at hand.
 *
 * The build is portable (no -march=native): each loop below is stamped out by
 * a macro for the baseline instruction set of the compiler's target and, on
 * x86-64 with GCC or Clang, again for AVX2+FMA and for AVX-512 through
 * function attributes. sb_init() picks the widest set the CPU and the
 * operating system support; sb_set_isa() forces one (for tests).
 *
 * The loops are written with GCC vector extensions, so one source serves every
 * width: a "vec" holds 16, 32 or 64 bytes. Without them (other compilers) a
 * vec is a single number and the same code is plain C.
 *
 * Loops:
 *   bag_rows    out[i] = scale_i * sum_k data[k] * W[indices[k]] for rows
 *               [row0, row1) of a CSR matrix, scale_i by the combiner; checks
 *               the rows' extents first, and each index just before its row
 *               of W is read (row by row, first, if a check fails). Columns are
 *               done in strips of up to 8 vectors whose sums stay in
 *               registers (a row of 1, 2, 4 or 8 vectors by a loop compiled
 *               for that length); the rows of W named a few entries ahead
 *               are prefetched.
 *   bag_values  h = sum_k x[k] * W[idx[k]] for one bag with given values
 *               (the same loops).
 *   scatter     W[idx[k]] = W[idx[k]] * decay[k] - step[k] * dh[k], where dh[k]
 *               is one vector, or row dh_row[k] of a matrix of them.
 *   gemv        z[c] = b[c] + coef[c] . h.
 *   gemv_t      dh = coef.T @ g.
 *   combine     row = row * decay - sum_s a[s] X[s].
 *   head        dh = coef.T @ g;  coef[c] = coef[c] * decay - lr g[c] h.
 *   all_finite  whether no x[j] is NaN or infinite.
 *   exp_neg     x[j] = exp(x[j]) for x[j] <= 0 (double), in place.
 */
#ifndef SPARSEBED_SIMD_H
#define SPARSEBED_SIMD_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <float.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define SB_SUM 0
#define SB_MEAN 1
#define SB_SQRTN 2

/* Bytes of W prefetched ahead of the entry being summed: enough rows in
 * flight to hide the memory's latency, few enough not to overflow the
 * core's miss buffers. Narrow strips prefetch more entries ahead, up to
 * SB_PREFETCH_MAX (measured best on a 64 MB table: 32 entries ahead at
 * 64 bytes a strip, 16 at 256, 8 at 512).
 *
 * A row of W that is one strip prefetches twice as far: every line it
 * prefetches is summed within the next entries, also across rows of X.
 * That is 1.03x-1.13x faster on tables in the L3 cache (float32 dims 64 and
 * 128, float64 dims 32 and 64, one and two threads) and 0.98x-1.06x out of
 * it. A row of several strips keeps the shorter distance: what its last
 * entries prefetch (the same strip of the next row of X's entries) is
 * summed only after the row's other strips, and the more of it there is
 * the more the L1 cache drops in between (0.92x-0.98x at twice the
 * distance). Having those last entries prefetch the next strip's first
 * entries of the same row instead, so that the prefetches follow the order
 * of the sums, measured 0.96x-1.02x (float32 dim 256, float64 dims 128 and
 * 256, in and out of cache): no gain for another branch of the loop. */
#ifndef SB_PREFETCH_BYTES
#define SB_PREFETCH_BYTES 4096
#endif
#define SB_PREFETCH_MAX 32
#define SB_AHEAD_WITHIN(budget, bytes)                                             \
    ((bytes) >= (budget) / 2 ? 2                                                   \
     : (budget) / (bytes) > SB_PREFETCH_MAX ? SB_PREFETCH_MAX : (budget) / (bytes))
/* Entries ahead for strips of strip_bytes of rows of row_bytes. */
#define SB_AHEAD(strip_bytes, row_bytes)                                           \
    SB_AHEAD_WITHIN((strip_bytes) < (row_bytes) ? SB_PREFETCH_BYTES : 2 * SB_PREFETCH_BYTES, \
                    strip_bytes)

/* A table of at most this many bytes stays in the L2 cache (a quarter of
 * Zen 4's, all of some older cores'), where prefetching its rows only costs
 * instructions: the embedding sum skips it (1.06x-1.22x on tables of
 * 16-256 KB, as one-hot features of tabular data make). */
#define SB_PREFETCH_MIN_TABLE (256 * 1024)

#if defined(__GNUC__) || defined(__clang__)
#define SB_VECTOR_EXT 1
#define SB_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#define SB_UNLIKELY(c) __builtin_expect(!!(c), 0)
#else
#define SB_VECTOR_EXT 0
#define SB_PREFETCH(p) ((void)0)
#define SB_UNLIKELY(c) (c)
#endif

#if SB_VECTOR_EXT && (defined(__x86_64__) || defined(_M_X64)) && !defined(SPARSEBED_NO_DISPATCH)
#define SB_X86_DISPATCH 1
#else
#define SB_X86_DISPATCH 0
#endif

enum { SB_ISA_BASE = 0, SB_ISA_AVX2 = 1, SB_ISA_AVX512 = 2 };
static int sb_isa = SB_ISA_BASE;
static int sb_has_prefetchw = 0; /* set by sb_init() */
#if SB_X86_DISPATCH
#include <cpuid.h>
#endif

/* ---------------------------------------------------------------- helpers */

/* The combiner's factor for a row; 0 when its divisor is 0 (never NaN). */
#define SB_DEFINE_SCALE(DN, DATA)                                                  \
static inline double sb_scale_##DN(int combiner, const DATA *data,                \
                                   ptrdiff_t start, ptrdiff_t end) {              \
    double total = 0.0, biggest = 0.0, x;                                          \
    ptrdiff_t k;                                                                   \
    if (combiner == SB_MEAN) {                                                     \
        for (k = start; k < end; k++) total += data[k];                            \
        return total != 0.0 ? 1.0 / total : 0.0;                                   \
    }                                                                              \
    if (combiner == SB_SQRTN) {                                                    \
        /* biggest * sqrt(sum (x / biggest)^2): the squares cannot overflow */     \
        for (k = start; k < end; k++) {                                            \
            x = fabs((double)data[k]);                                             \
            if (x > biggest) biggest = x;                                          \
        }                                                                          \
        if (!(biggest > 0.0 && biggest <= DBL_MAX)) return 0.0;                    \
        for (k = start; k < end; k++) {                                            \
            x = data[k] / biggest;                                                 \
            total += x * x;                                                        \
        }                                                                          \
        return 1.0 / (biggest * sqrt(total));                                      \
    }                                                                              \
    return 1.0;                                                                    \
}
SB_DEFINE_SCALE(f32, float)
SB_DEFINE_SCALE(f64, double)

/* Whether row [start, end) lies inside indices and names only rows of W: the
 * largest index (as unsigned, so negatives are large) does. The loop has no
 * exit, so the compiler vectorises it. */
#define SB_DEFINE_ROW_OK(IN, INDEX, UINDEX)                                        \
static inline int sb_row_ok_##IN(const INDEX *indices, ptrdiff_t start,           \
                                 ptrdiff_t end, ptrdiff_t nnz,                     \
                                 ptrdiff_t n_features) {                           \
    UINDEX largest = 0;                                                            \
    ptrdiff_t k;                                                                   \
    if (start < 0 || end < start || end > nnz) return 0;                           \
    for (k = start; k < end; k++) {                                                \
        const UINDEX u = (UINDEX)indices[k];                                       \
        largest = u > largest ? u : largest;                                       \
    }                                                                              \
    return start == end || (size_t)largest < (size_t)n_features;                  \
}                                                                                  \
/* Whether the extents of rows [row0, row1) ascend, inside indices. */             \
static inline int sb_extents_ok_##IN(const INDEX *indptr, ptrdiff_t row0,          \
                                     ptrdiff_t row1, ptrdiff_t nnz) {              \
    ptrdiff_t i;                                                                   \
    for (i = row0; i < row1; i++)                                                  \
        if (indptr[i + 1] < indptr[i]) return 0;                                   \
    return indptr[row0] >= 0 && indptr[row1] <= nnz;                               \
}
SB_DEFINE_ROW_OK(i32, int32_t, uint32_t)
SB_DEFINE_ROW_OK(i64, int64_t, uint64_t)

/* GCC takes __builtin_prefetch for a const builtin: a function whose only
 * effect is to prefetch counts as const, and a call to it is deleted,
 * prefetches and all. An empty volatile asm gives such a function an effect. */
#if SB_VECTOR_EXT
#define SB_KEEP() __asm__ __volatile__("")
#else
#define SB_KEEP() ((void)0)
#endif

/* b if it is less than a, else a (also when b is NaN): one MINSD on x86-64,
 * where GCC compiles the comparison to a branch that the SGD passes, whose
 * rows' decay is often exactly 0, mispredict. */
static inline double sb_lesser(double a, double b) {
#ifdef __SSE2__
    return _mm_cvtsd_f64(_mm_min_sd(_mm_set_sd(b), _mm_set_sd(a)));
#else
    return b < a ? b : a;
#endif
}

/* Prefetch the cache line of p (for the kernels' loops over samples). */
static inline void sb_prefetch(const void *p) {
    SB_PREFETCH(p);
    SB_KEEP();
}

/* PREFETCH(address) for each cache line of the bytes [p, p + n). */
#define SB_EACH_LINE(p, n, PREFETCH)                                               \
    do {                                                                           \
        const char *c_ = (const char *)(p);                                        \
        ptrdiff_t b_;                                                              \
        for (b_ = 0; b_ < (n); b_ += 64) PREFETCH(c_ + b_);                        \
        if ((n) > 0) PREFETCH(c_ + (n) - 1);                                       \
    } while (0)
#define SB_PREFETCHW(a) __asm__ __volatile__("prefetchw %0" : : "m"(*(a)))

/* Prefetch the bytes [p, p + n): the arrays of a sample a few steps ahead. */
static inline void sb_prefetch_bytes(const void *p, ptrdiff_t n) {
    SB_EACH_LINE(p, n, SB_PREFETCH);
    SB_KEEP();
}

/* Prefetch the bytes [p, p + n) for writing: the lines come in owned by this
 * core (PREFETCHW), so that storing to them later waits for no other core
 * to give up its copy. Where the CPU lacks the instruction, a plain prefetch. */
static inline void sb_prefetch_bytes_w(const void *p, ptrdiff_t n) {
#if SB_X86_DISPATCH
    if (sb_has_prefetchw) {
        SB_EACH_LINE(p, n, SB_PREFETCHW);
        return;
    }
#endif
    sb_prefetch_bytes(p, n);
}

/* ---------------------------------------------------------- column strips */

/* Sum over entries k in [K0, K1) of XK * W[IDX[k], j : j + NV*L] into
 * OUT[j : j + NV*L], for every strip of NV vectors that fits in the
 * remaining columns. The NV sums live in registers; XK is an expression of k.
 * CHECK is a statement run for each entry in the first strip (j == 0) before
 * its row of W is read (see SB_DEFINE_BAG_ROWS): the later strips read the
 * rows it checked. The strip of W named by the entry pf ahead is prefetched
 * while k + pf is below KEND: the entries [K0, KEND) must lie inside IDX. A
 * prefetch never faults, so its index needs no check, and its address is
 * computed as an integer, valid for any index. */
#define SB_STRIPS(NV, W, D, IDX, K0, K1, KEND, XK, CHECK, OUT)                     \
    for (; j + (NV) * L <= (D); j += (NV) * L) {                                   \
        vec acc[NV];                                                               \
        ptrdiff_t k, b;                                                            \
        const ptrdiff_t pf = SB_AHEAD((NV) * (ptrdiff_t)sizeof(vec), (D) * (ptrdiff_t)sizeof(real)); \
        const ptrdiff_t mid = (K1) < (KEND) - pf ? (K1) : (KEND) - pf;             \
        for (b = 0; b < (NV); b++) acc[b] = zero;                                  \
        for (k = (K0); k < mid; k++) {                                             \
            const char *p = (const char *)((uintptr_t)((W) + j)                    \
                + (uintptr_t)(IDX)[k + pf] * (uintptr_t)((D) * sizeof(real)));     \
            for (b = 0; b < (ptrdiff_t)((NV) * sizeof(vec)); b += 64)              \
                SB_PREFETCH(p + b);                                                \
            SB_STRIP_ADD(NV, W, D, IDX, XK, CHECK);                                \
        }                                                                          \
        for (; k < (K1); k++) SB_STRIP_ADD(NV, W, D, IDX, XK, CHECK);              \
        for (b = 0; b < (NV); b++) ((vec *)((OUT) + j))[b] = acc[b];               \
    }
#define SB_STRIP_ADD(NV, W, D, IDX, XK, CHECK)                                     \
    do {                                                                           \
        if (j == 0) { CHECK; }                                                     \
        const vec *w = (const vec *)((W) + (ptrdiff_t)(IDX)[k] * (D) + j);         \
        const real x = (real)(XK);                                                 \
        for (b = 0; b < (NV); b++) acc[b] += x * w[b];                             \
    } while (0)

/* All columns of one bag: strips of 8, 4, 2, 1 vectors, then single numbers.
 * (AVX-512's 32 registers would hold strips of 16: on rows of 1 KB, one strip
 * then, that measured 0.81x-0.86x out of cache and 0.98x-1.00x in it.) */
#define SB_BAG_COLUMNS(W, D, IDX, K0, K1, KEND, XK, CHECK, OUT)                    \
    do {                                                                           \
        ptrdiff_t j = 0;                                                           \
        SB_STRIPS(8, W, D, IDX, K0, K1, KEND, XK, CHECK, OUT)                      \
        SB_STRIPS(4, W, D, IDX, K0, K1, KEND, XK, CHECK, OUT)                      \
        SB_STRIPS(2, W, D, IDX, K0, K1, KEND, XK, CHECK, OUT)                      \
        SB_STRIPS(1, W, D, IDX, K0, K1, KEND, XK, CHECK, OUT)                      \
        for (; j < (D); j++) {                                                     \
            real acc1 = 0;                                                         \
            ptrdiff_t k;                                                           \
            for (k = (K0); k < (K1); k++) {                                        \
                if (j == 0) { CHECK; }                                             \
                acc1 += (real)(XK) * (W)[(ptrdiff_t)(IDX)[k] * (D) + j];           \
            }                                                                      \
            (OUT)[j] = acc1;                                                       \
        }                                                                          \
    } while (0)

/* SB_BAG_COLUMNS, with the row length a constant where a row of W is one
 * strip of 1, 2, 4 or 8 whole vectors: a row's address is then a shift, not a
 * multiplication, and the loops of the other strip widths are gone (at dim
 * 16, float32, AVX-512: nine instructions an entry instead of eleven).
 * Against the general loop, paired with a control copy of it: 1.00x-1.08x on
 * the debian rows (float32 dims 16-128, one and two threads; float64 dims
 * 16-64) and 1.02x-1.05x out of cache (zipf, float32); the same sums, in the
 * same order. */
#define SB_BAG(W, D, IDX, K0, K1, KEND, XK, CHECK, OUT)                            \
    do {                                                                           \
        switch ((D) % L == 0 ? (D) / L : 0) {                                      \
        case 1: SB_BAG_COLUMNS(W, L, IDX, K0, K1, KEND, XK, CHECK, OUT); break;    \
        case 2: SB_BAG_COLUMNS(W, 2 * L, IDX, K0, K1, KEND, XK, CHECK, OUT); break;\
        case 4: SB_BAG_COLUMNS(W, 4 * L, IDX, K0, K1, KEND, XK, CHECK, OUT); break;\
        case 8: SB_BAG_COLUMNS(W, 8 * L, IDX, K0, K1, KEND, XK, CHECK, OUT); break;\
        default: SB_BAG_COLUMNS(W, D, IDX, K0, K1, KEND, XK, CHECK, OUT);          \
        }                                                                          \
    } while (0)

/* STRIPS(NV) for strips of 8, 4, 2 and 1 vectors, widest first. */
#define SB_EACH_STRIP(STRIPS) STRIPS(8) STRIPS(4) STRIPS(2) STRIPS(1)

/* dh = coef.T @ g on a strip of NV vectors of columns at j, in registers. */
#define SB_GEMV_T_STRIPS(NV)                                                       \
    for (; j + (NV) * L <= d; j += (NV) * L) {                                     \
        vec acc[NV];                                                               \
        ptrdiff_t b;                                                               \
        for (b = 0; b < (NV); b++) acc[b] = zero;                                  \
        for (c = 0; c < n_out; c++) {                                              \
            const vec *row = (const vec *)(coef + c * d + j);                      \
            const real gc = (real)g[c];                                            \
            for (b = 0; b < (NV); b++) acc[b] += gc * row[b];                      \
        }                                                                          \
        for (b = 0; b < (NV); b++) ((vec *)(dh + j))[b] = acc[b];                  \
    }

/* The head step on a strip of NV vectors of columns at j, for every class:
 * the strip of dh = coef.T @ g is summed in registers. */
#define SB_HEAD_STRIPS(NV)                                                         \
    for (; j + (NV) * L <= d; j += (NV) * L) {                                     \
        vec acc[NV], hv[NV];                                                       \
        ptrdiff_t b;                                                               \
        for (b = 0; b < (NV); b++) {                                               \
            acc[b] = zero;                                                         \
            hv[b] = ((const vec *)(h + j))[b];                                     \
        }                                                                          \
        for (c = 0; c < n_out; c++) {                                              \
            vec *row = (vec *)(coef + c * d + j);                                  \
            const real gc = (real)g[c], st = (real)(lr * g[c]);                    \
            for (b = 0; b < (NV); b++) {                                           \
                const vec r = row[b];                                              \
                acc[b] += gc * r;                                                  \
                row[b] = r * f - st * hv[b];                                       \
            }                                                                      \
        }                                                                          \
        for (b = 0; b < (NV); b++) ((vec *)(dh + j))[b] = acc[b];                  \
    }

/* row = row * f - sum_s a[s] X[s] on a strip of NV vectors of columns at j,
 * the strip of row held in registers across the samples. */
#define SB_COMBINE_STRIPS(NV)                                                      \
    for (; j + (NV) * L <= d; j += (NV) * L) {                                     \
        vec acc[NV];                                                               \
        ptrdiff_t b;                                                               \
        for (b = 0; b < (NV); b++) acc[b] = ((const vec *)(row + j))[b] * f;       \
        for (s = 0; s < n; s++) {                                                  \
            const vec *x = (const vec *)(X + s * d + j);                           \
            const real as = (real)a[s * a_stride];                                 \
            for (b = 0; b < (NV); b++) acc[b] -= as * x[b];                        \
        }                                                                          \
        for (b = 0; b < (NV); b++) ((vec *)(row + j))[b] = acc[b];                 \
    }

#if SB_VECTOR_EXT
#define SB_VEC_TYPES(REAL, VB)                                                     \
    typedef REAL real;                                                             \
    typedef REAL vec __attribute__((vector_size(VB), aligned(sizeof(REAL))));     \
    enum { L = (VB) / sizeof(REAL) };                                              \
    const vec zero = {0};
#else
#define SB_VEC_TYPES(REAL, VB)                                                     \
    typedef REAL real;                                                             \
    typedef REAL vec;                                                              \
    enum { L = 1 };                                                                \
    const vec zero = 0;
#endif

/* SB_HSUM_<VB>(RN, v): the sum of the lanes of a vec of VB bytes, as a tree
 * (halves added down to 16 bytes, then lanes pairwise): a few shuffles and
 * adds, where a lane-by-lane sum is a chain of L dependent adds. */
#define SB_HSUM_1(RN, v) (v)
#define SB_HSUM16_f32(q) ({ const __typeof__(q) q_ = (q); (q_[0] + q_[2]) + (q_[1] + q_[3]); })
#define SB_HSUM16_f64(q) ({ const __typeof__(q) q_ = (q); q_[0] + q_[1]; })
#define SB_HSUM_16(RN, v) SB_HSUM16_##RN(v)
#define SB_HSUM_32(RN, v)                                                          \
    ({                                                                             \
        typedef real h16_ __attribute__((vector_size(16), aligned(sizeof(real)))); \
        union { vec v; h16_ h[2]; } u_ = {(v)};                                    \
        SB_HSUM16_##RN(u_.h[0] + u_.h[1]);                                         \
    })
#define SB_HSUM_64(RN, v)                                                          \
    ({                                                                             \
        typedef real h32_ __attribute__((vector_size(32), aligned(sizeof(real)))); \
        typedef real h16_ __attribute__((vector_size(16), aligned(sizeof(real)))); \
        union { vec v; h32_ h[2]; } u_ = {(v)};                                    \
        union { h32_ v; h16_ h[2]; } w_ = {u_.h[0] + u_.h[1]};                     \
        SB_HSUM16_##RN(w_.h[0] + w_.h[1]);                                         \
    })

/* ------------------------------------------------------------------ loops */

/* Each entry's index is checked just before its row of W is read: a compare
 * and a branch, never taken on good input, in the loop that sums. A pass over
 * the block's indices before the sums, which this replaced, reads them twice;
 * against it (a copy of the previous build in the same 21 rounds, one and two
 * threads, medians of the per-round ratios): 1.02x-1.11x on the debian rows
 * at float32 dims 16-128, 1.04x-1.09x at float64 dims 16 and 32, 1.09x-1.12x
 * on zipf at dim 16, and 0.95x-1.04x on wider rows and out of cache at dim
 * 64 and up, as close as these rounds tell. That needs the rows' extents to
 * lie inside indices, checked first for the whole block. Should a check
 * fail, the block starts again with each row checked alone before its sums,
 * to find the bad ones (whose output is zeros). A table needs a column
 * (d >= 1): with none, the sums would read no index, and check none. The
 * rows of W named by entries up to prefetch_end are prefetched: the block's
 * end, the row's own end once rows are checked one by one, or the row's
 * start (none) for a table small enough to stay in cache. */
#define SB_DEFINE_BAG_ROWS(ISA, ATTR, VB, RN, REAL, IN, INDEX, DN, DATA)           \
ATTR static ptrdiff_t sb_bag_rows_##ISA##_##RN##_##IN##_##DN(                      \
        const REAL *W, ptrdiff_t n_features, ptrdiff_t d, const DATA *data,        \
        const INDEX *indices, const INDEX *indptr, ptrdiff_t nnz,                  \
        ptrdiff_t row0, ptrdiff_t row1, int combiner, REAL *out) {                 \
    SB_VEC_TYPES(REAL, VB)                                                         \
    ptrdiff_t i, bad = -1;                                                         \
    int each_row = !sb_extents_ok_##IN(indptr, row0, row1, nnz);                   \
    const int prefetch = n_features * d * (ptrdiff_t)sizeof(REAL) > SB_PREFETCH_MIN_TABLE; \
again:                                                                             \
    for (i = row0; i < row1; i++) {                                                \
        REAL *o = out + i * d;                                                     \
        ptrdiff_t start = (ptrdiff_t)indptr[i], end = (ptrdiff_t)indptr[i + 1];    \
        ptrdiff_t prefetch_end;                                                    \
        double s;                                                                  \
        if (each_row && !sb_row_ok_##IN(indices, start, end, nnz, n_features)) {   \
            memset(o, 0, (size_t)d * sizeof(REAL));                                \
            bad = i;                                                               \
            continue;                                                              \
        }                                                                          \
        prefetch_end = !prefetch ? start : each_row ? end : (ptrdiff_t)indptr[row1]; \
        s = sb_scale_##DN(combiner, data, start, end);                             \
        if (s == 1.0)                                                              \
            SB_BAG(W, d, indices, start, end, prefetch_end, data[k],               \
                   SB_CHECK_INDEX(indices[k], n_features, each_row, again), o);    \
        else                                                                       \
            SB_BAG(W, d, indices, start, end, prefetch_end, (double)data[k] * s,   \
                   SB_CHECK_INDEX(indices[k], n_features, each_row, again), o);    \
    }                                                                              \
    return bad;                                                                    \
}
/* The check of an index before its row of W is read: where it is outside the
 * table (a negative index converts to a size above any table's), the block
 * starts again at AGAIN with its rows checked one by one. */
#define SB_CHECK_INDEX(index, n_features, each_row, AGAIN)                         \
    if (SB_UNLIKELY((size_t)(index) >= (size_t)(n_features))) {                    \
        (each_row) = 1;                                                            \
        goto AGAIN;                                                                \
    }

#define SB_DEFINE_REAL_LOOPS(ISA, ATTR, VB, RN, REAL, IN, INDEX)                   \
ATTR static void sb_bag_values_##ISA##_##RN##_##IN(                                \
        const REAL *W, ptrdiff_t d, const INDEX *idx, const REAL *vals,            \
        ptrdiff_t n, REAL *h) {                                                    \
    SB_VEC_TYPES(REAL, VB)                                                         \
    SB_BAG(W, d, idx, 0, n, n, vals[k], (void)0, h);                               \
}                                                                                  \
ATTR static void sb_scatter_##ISA##_##RN##_##IN(                                   \
        REAL *W, ptrdiff_t d, const INDEX *idx, const REAL *decay,                 \
        const REAL *step, ptrdiff_t n, const REAL *dh, const ptrdiff_t *dh_row) {  \
    SB_VEC_TYPES(REAL, VB)                                                         \
    ptrdiff_t k, j;                                                                \
    (void)zero;                                                                    \
    for (k = 0; k < n; k++) {                                                      \
        REAL *w = W + (ptrdiff_t)idx[k] * d;                                       \
        const REAL *g = dh_row ? dh + dh_row[k] * d : dh;                          \
        const real f = decay ? decay[k] : (REAL)1, st = step[k];                   \
        for (j = 0; j + L <= d; j += L)                                            \
            *(vec *)(w + j) = *(vec *)(w + j) * f - st * *(const vec *)(g + j);    \
        for (; j < d; j++) w[j] = w[j] * f - st * g[j];                            \
    }                                                                              \
}

#define SB_DEFINE_HEAD_LOOPS(ISA, ATTR, VB, RN, REAL)                              \
ATTR static void sb_gemv_##ISA##_##RN(const REAL *coef, const REAL *b,            \
        ptrdiff_t n_out, ptrdiff_t d, const REAL *h, double *z) {                  \
    SB_VEC_TYPES(REAL, VB)                                                         \
    ptrdiff_t c, j;                                                                \
    for (c = 0; c < n_out; c++) {                                                  \
        const REAL *row = coef + c * d;                                            \
        vec acc = zero;                                                            \
        real sum;                                                                  \
        for (j = 0; j + L <= d; j += L)                                            \
            acc += *(const vec *)(row + j) * *(const vec *)(h + j);                \
        sum = SB_HSUM_##VB(RN, acc);                                               \
        for (; j < d; j++) sum += row[j] * h[j];                                   \
        z[c] = (double)b[c] + (double)sum;                                         \
    }                                                                              \
}                                                                                  \
ATTR static void sb_gemv_t_##ISA##_##RN(const REAL *coef, ptrdiff_t n_out,        \
        ptrdiff_t d, const double *g, REAL *dh) {                                  \
    SB_VEC_TYPES(REAL, VB)                                                         \
    ptrdiff_t c, j = 0;                                                            \
    SB_EACH_STRIP(SB_GEMV_T_STRIPS)                                                \
    for (; j < d; j++) {                                                           \
        real acc = 0;                                                              \
        for (c = 0; c < n_out; c++) acc += (real)g[c] * coef[c * d + j];           \
        dh[j] = acc;                                                               \
    }                                                                              \
}                                                                                  \
ATTR static void sb_combine_##ISA##_##RN(REAL *row, ptrdiff_t d, double decay,    \
        const double *a, ptrdiff_t a_stride, ptrdiff_t n, const REAL *X) {         \
    SB_VEC_TYPES(REAL, VB)                                                         \
    ptrdiff_t s, j = 0;                                                            \
    const real f = (real)decay;                                                    \
    (void)zero;                                                                    \
    SB_EACH_STRIP(SB_COMBINE_STRIPS)                                               \
    for (; j < d; j++) {                                                           \
        real r = row[j] * f;                                                       \
        for (s = 0; s < n; s++) r -= (real)a[s * a_stride] * X[s * d + j];         \
        row[j] = r;                                                                \
    }                                                                              \
}                                                                                  \
ATTR static void sb_head_##ISA##_##RN(REAL *coef, ptrdiff_t n_out, ptrdiff_t d,   \
        const double *g, double lr, double decay, const REAL *h, REAL *dh) {       \
    SB_VEC_TYPES(REAL, VB)                                                         \
    ptrdiff_t c, j = 0;                                                            \
    const real f = (real)decay;                                                    \
    SB_EACH_STRIP(SB_HEAD_STRIPS)                                                  \
    for (; j < d; j++) {                                                           \
        real acc = 0;                                                              \
        for (c = 0; c < n_out; c++) {                                              \
            const real r = coef[c * d + j];                                        \
            acc += (real)g[c] * r;                                                 \
            coef[c * d + j] = r * f - (real)(lr * g[c]) * h[j];                    \
        }                                                                          \
        dh[j] = acc;                                                               \
    }                                                                              \
}

/* x * 0 is 0 for a finite x and NaN otherwise (no -ffast-math here). */
#define SB_DEFINE_FINITE(ISA, ATTR, VB, RN, REAL)                                  \
ATTR static int sb_all_finite_##ISA##_##RN(const REAL *x, ptrdiff_t n) {          \
    SB_VEC_TYPES(REAL, VB)                                                         \
    vec acc = zero;                                                                \
    real total = 0;                                                                \
    ptrdiff_t j, t;                                                                \
    for (j = 0; j + L <= n; j += L) acc += *(const vec *)(x + j) * (real)0;        \
    for (; j < n; j++) total += x[j] * (real)0;                                    \
    for (t = 0; t < L; t++) total += ((const real *)&acc)[t];                      \
    return total == 0;                                                             \
}

/* exp(x) for x <= 0 (or NaN), to within 2 ulp of libm: x = n ln2 + r with
 * |r| <= ln2 / 2 (ln2 in two parts, so that r is exact), exp(r) by its
 * Taylor series to r^13 (truncation error below 1e-17), times 2^n built in
 * the exponent bits. Results below the smallest normal double (x < -708.39)
 * are 0. The last partial vector goes through the same code, padded. */
#define SB_EXP_NEG_VEC(vd, vi, x)                                                  \
    do {                                                                           \
        const vd shifter = (vd){0} + 6755399441055744.0; /* 1.5 * 2^52 */          \
        const vi tiny = (x) < -708.39;                                             \
        vd t = (x) * 1.4426950408889634 + shifter, n = t - shifter, r, p;          \
        r = (x) - n * 6.93147180369123816490e-01 - n * 1.90821492927058770002e-10; \
        p = (vd){0} + 1.0 / 6227020800.0;                                          \
        p = p * r + 1.0 / 479001600.0;                                             \
        p = p * r + 1.0 / 39916800.0;                                              \
        p = p * r + 1.0 / 3628800.0;                                               \
        p = p * r + 1.0 / 362880.0;                                                \
        p = p * r + 1.0 / 40320.0;                                                 \
        p = p * r + 1.0 / 5040.0;                                                  \
        p = p * r + 1.0 / 720.0;                                                   \
        p = p * r + 1.0 / 120.0;                                                   \
        p = p * r + 1.0 / 24.0;                                                    \
        p = p * r + 1.0 / 6.0;                                                     \
        p = p * r + 0.5;                                                           \
        p = p * r + 1.0;                                                           \
        p = p * r + 1.0;                                                           \
        /* n sits in the low bits of t; 2^n for n >= -1022 is (n + 1023) << 52 */  \
        vi scale = (((vi)t - (vi)shifter) + 1023) << 52;                           \
        (x) = (vd)((vi)(p * (vd)scale) & ~tiny);                                   \
    } while (0)

#if SB_VECTOR_EXT
#define SB_DEFINE_EXP(ISA, ATTR, VB)                                               \
ATTR static void sb_exp_neg_##ISA(double *x, ptrdiff_t n) {                       \
    typedef double vd __attribute__((vector_size(VB), aligned(8)));               \
    typedef int64_t vi __attribute__((vector_size(VB), aligned(8)));              \
    enum { L = (VB) / 8 };                                                         \
    ptrdiff_t j;                                                                   \
    vd v;                                                                          \
    for (j = 0; j + L <= n; j += L) {                                              \
        v = *(vd *)(x + j);                                                        \
        SB_EXP_NEG_VEC(vd, vi, v);                                                 \
        *(vd *)(x + j) = v;                                                        \
    }                                                                              \
    if (j < n) {                                                                   \
        v = (vd){0};                                                               \
        memcpy(&v, x + j, (size_t)(n - j) * sizeof(double));                      \
        SB_EXP_NEG_VEC(vd, vi, v);                                                 \
        memcpy(x + j, &v, (size_t)(n - j) * sizeof(double));                       \
    }                                                                              \
}
#else
#define SB_DEFINE_EXP(ISA, ATTR, VB)                                               \
static void sb_exp_neg_##ISA(double *x, ptrdiff_t n) {                            \
    ptrdiff_t j;                                                                   \
    for (j = 0; j < n; j++) x[j] = exp(x[j]);                                      \
}
#endif

#define SB_DEFINE_ISA(ISA, ATTR, VB)                                               \
    SB_DEFINE_BAG_ROWS(ISA, ATTR, VB, f32, float, i32, int32_t, f32, float)        \
    SB_DEFINE_BAG_ROWS(ISA, ATTR, VB, f32, float, i32, int32_t, f64, double)       \
    SB_DEFINE_BAG_ROWS(ISA, ATTR, VB, f32, float, i64, int64_t, f32, float)        \
    SB_DEFINE_BAG_ROWS(ISA, ATTR, VB, f32, float, i64, int64_t, f64, double)       \
    SB_DEFINE_BAG_ROWS(ISA, ATTR, VB, f64, double, i32, int32_t, f32, float)       \
    SB_DEFINE_BAG_ROWS(ISA, ATTR, VB, f64, double, i32, int32_t, f64, double)      \
    SB_DEFINE_BAG_ROWS(ISA, ATTR, VB, f64, double, i64, int64_t, f32, float)       \
    SB_DEFINE_BAG_ROWS(ISA, ATTR, VB, f64, double, i64, int64_t, f64, double)      \
    SB_DEFINE_REAL_LOOPS(ISA, ATTR, VB, f32, float, i32, int32_t)                  \
    SB_DEFINE_REAL_LOOPS(ISA, ATTR, VB, f32, float, i64, int64_t)                  \
    SB_DEFINE_REAL_LOOPS(ISA, ATTR, VB, f64, double, i32, int32_t)                 \
    SB_DEFINE_REAL_LOOPS(ISA, ATTR, VB, f64, double, i64, int64_t)                 \
    SB_DEFINE_HEAD_LOOPS(ISA, ATTR, VB, f32, float)                                \
    SB_DEFINE_HEAD_LOOPS(ISA, ATTR, VB, f64, double)                              \
    SB_DEFINE_FINITE(ISA, ATTR, VB, f32, float)                                    \
    SB_DEFINE_FINITE(ISA, ATTR, VB, f64, double)                                   \
    SB_DEFINE_EXP(ISA, ATTR, VB)

#if SB_VECTOR_EXT
SB_DEFINE_ISA(base, , 16)
#else
SB_DEFINE_ISA(base, , 1)
#endif
#if SB_X86_DISPATCH
SB_DEFINE_ISA(avx2, __attribute__((target("avx2,fma"))), 32)
SB_DEFINE_ISA(avx512, __attribute__((target("avx512f,avx2,fma"))), 64)
#endif

/* --------------------------------------------------------------- dispatch */

/* Names of the instruction sets compiled in, indexed by SB_ISA_*. */
static const char *const sb_isa_names[] = {"baseline", "avx2", "avx512"};

static inline int sb_isa_supported(int isa) {
    if (isa == SB_ISA_BASE) return 1;
#if SB_X86_DISPATCH
    __builtin_cpu_init();
    if (isa == SB_ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == SB_ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2")
               && __builtin_cpu_supports("fma");
#endif
    return 0;
}

/* Pick the widest supported instruction set; note whether PREFETCHW is there. */
static inline void sb_init(void) {
#if SB_X86_DISPATCH
    unsigned int eax, ebx, ecx, edx;
    sb_has_prefetchw = __get_cpuid(0x80000001, &eax, &ebx, &ecx, &edx) && (ecx >> 8 & 1);
#endif
    sb_isa = sb_isa_supported(SB_ISA_AVX512) ? SB_ISA_AVX512
           : sb_isa_supported(SB_ISA_AVX2)   ? SB_ISA_AVX2
                                             : SB_ISA_BASE;
}

/* Force an instruction set; returns 0 (and changes nothing) if unsupported. */
static inline int sb_set_isa(int isa) {
    if (isa < SB_ISA_BASE || isa > SB_ISA_AVX512 || !sb_isa_supported(isa)) return 0;
    sb_isa = isa;
    return 1;
}

/* The dispatching entry points: sb_<loop>_<real>[_<index>[_<data>]]. The ISA
 * name sits before the types in the compiled variants. */
#define SB_ENTRY_BAG_ROWS(RN, REAL, IN, INDEX, DN, DATA)                           \
static inline ptrdiff_t sb_bag_rows_##RN##_##IN##_##DN(                            \
        const REAL *W, ptrdiff_t n_features, ptrdiff_t d, const DATA *data,        \
        const INDEX *indices, const INDEX *indptr, ptrdiff_t nnz,                  \
        ptrdiff_t row0, ptrdiff_t row1, int combiner, REAL *out) {                 \
    switch (sb_isa) {                                                              \
    SB_CASES(sb_bag_rows, _##RN##_##IN##_##DN, (W, n_features, d, data, indices,   \
             indptr, nnz, row0, row1, combiner, out))                              \
    }                                                                              \
}

#if SB_X86_DISPATCH
#define SB_CASES(NAME, TYPES, ARGS)                                                \
    case SB_ISA_AVX512: return NAME##_avx512##TYPES ARGS;                          \
    case SB_ISA_AVX2: return NAME##_avx2##TYPES ARGS;                              \
    default: return NAME##_base##TYPES ARGS;
#else
#define SB_CASES(NAME, TYPES, ARGS) default: return NAME##_base##TYPES ARGS;
#endif

SB_ENTRY_BAG_ROWS(f32, float, i32, int32_t, f32, float)
SB_ENTRY_BAG_ROWS(f32, float, i32, int32_t, f64, double)
SB_ENTRY_BAG_ROWS(f32, float, i64, int64_t, f32, float)
SB_ENTRY_BAG_ROWS(f32, float, i64, int64_t, f64, double)
SB_ENTRY_BAG_ROWS(f64, double, i32, int32_t, f32, float)
SB_ENTRY_BAG_ROWS(f64, double, i32, int32_t, f64, double)
SB_ENTRY_BAG_ROWS(f64, double, i64, int64_t, f32, float)
SB_ENTRY_BAG_ROWS(f64, double, i64, int64_t, f64, double)

#define SB_ENTRY_REAL(RN, REAL, IN, INDEX)                                         \
static inline void sb_bag_values_##RN##_##IN(const REAL *W, ptrdiff_t d,          \
        const INDEX *idx, const REAL *x, ptrdiff_t n, REAL *h) {                   \
    switch (sb_isa) { SB_CASES(sb_bag_values, _##RN##_##IN, (W, d, idx, x, n, h)) }\
}                                                                                  \
static inline void sb_scatter_##RN##_##IN(REAL *W, ptrdiff_t d, const INDEX *idx, \
        const REAL *decay, const REAL *step, ptrdiff_t n, const REAL *dh,          \
        const ptrdiff_t *dh_row) {                                                 \
    switch (sb_isa) {                                                              \
    SB_CASES(sb_scatter, _##RN##_##IN, (W, d, idx, decay, step, n, dh, dh_row))    \
    }                                                                              \
}
SB_ENTRY_REAL(f32, float, i32, int32_t)
SB_ENTRY_REAL(f32, float, i64, int64_t)
SB_ENTRY_REAL(f64, double, i32, int32_t)
SB_ENTRY_REAL(f64, double, i64, int64_t)

#define SB_ENTRY_HEAD(RN, REAL)                                                    \
static inline void sb_gemv_##RN(const REAL *coef, const REAL *b, ptrdiff_t n_out,  \
        ptrdiff_t d, const REAL *h, double *z) {                                   \
    switch (sb_isa) { SB_CASES(sb_gemv, _##RN, (coef, b, n_out, d, h, z)) }        \
}                                                                                  \
static inline void sb_gemv_t_##RN(const REAL *coef, ptrdiff_t n_out, ptrdiff_t d,  \
        const double *g, REAL *dh) {                                               \
    switch (sb_isa) { SB_CASES(sb_gemv_t, _##RN, (coef, n_out, d, g, dh)) }        \
}                                                                                  \
static inline void sb_combine_##RN(REAL *row, ptrdiff_t d, double decay,           \
        const double *a, ptrdiff_t a_stride, ptrdiff_t n, const REAL *X) {         \
    switch (sb_isa) {                                                              \
    SB_CASES(sb_combine, _##RN, (row, d, decay, a, a_stride, n, X))                \
    }                                                                              \
}                                                                                  \
static inline void sb_head_##RN(REAL *coef, ptrdiff_t n_out, ptrdiff_t d,          \
        const double *g, double lr, double decay, const REAL *h, REAL *dh) {       \
    switch (sb_isa) {                                                              \
    SB_CASES(sb_head, _##RN, (coef, n_out, d, g, lr, decay, h, dh))                \
    }                                                                              \
}
SB_ENTRY_HEAD(f32, float)
SB_ENTRY_HEAD(f64, double)

#define SB_ENTRY_FINITE(RN, REAL)                                                  \
static inline int sb_all_finite_##RN(const REAL *x, ptrdiff_t n) {                 \
    switch (sb_isa) { SB_CASES(sb_all_finite, _##RN, (x, n)) }                     \
}
SB_ENTRY_FINITE(f32, float)
SB_ENTRY_FINITE(f64, double)

static inline void sb_exp_neg(double *x, ptrdiff_t n) {
    switch (sb_isa) { SB_CASES(sb_exp_neg, , (x, n)) }
}

#endif
