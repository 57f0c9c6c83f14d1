/* The ceiling of any embedding-sum kernel on a given matrix and table: the
 * rate at which this machine delivers the rows of W that the matrix names, in
 * the matrix's order, with the values that weight them, and takes the array
 * of sums. Every cache line of every named row and every entry's value are
 * loaded into registers, nothing is computed, and every line of the output
 * is stored (zeros, needing no load), so a kernel that reads the rows in the
 * same order, multiplies them by their values, adds them and writes its sums
 * cannot be faster. Two orders (see load_rows), each with the lines of an
 * entry a few ahead prefetched or not: ceiling.py takes the fastest of the
 * four. A table row must be at least 64 bytes.
 *
 * Compiled by ceiling.py with the host's C compiler, -O3 -march=native
 * -fopenmp, beside sparsebed's _simd.h: its widest vector load is a bound for
 * every instruction set. */
#include <stddef.h>
#include <stdint.h>

#include "_simd.h" /* SB_AHEAD: the entries ahead sparsebed prefetches */

#if defined(__AVX512F__)
#define VB 64
#elif defined(__AVX__)
#define VB 32
#else
#define VB 16
#endif
typedef char vec __attribute__((vector_size(VB), aligned(1)));

/* Load the 64 bytes at p into registers and keep them: the compiler may not
 * drop the loads, and no instruction waits for them. */
static inline void load_line(const char *p) {
    int b;
    for (b = 0; b < 64; b += VB) {
        vec v = *(const vec *)(p + b);
        __asm__ __volatile__("" : : "x"(v));
    }
}

/* Load the value of entry k (of `bytes` bytes) into a register and keep it. */
static inline void load_value(const char *values, int bytes, ptrdiff_t k) {
    if (bytes == 8) {
        uint64_t v = ((const uint64_t *)values)[k];
        __asm__ __volatile__("" : : "r"(v));
    } else {
        uint32_t v = ((const uint32_t *)values)[k];
        __asm__ __volatile__("" : : "r"(v));
    }
}

/* For each strip of NL lines at line j that fits in a row, the strip of the
 * row each entry [s, e) names, prefetching the strip of the entry pf ahead
 * while that is below kend; with the first strip, each entry's value (once:
 * a kernel may keep it for the other strips). NL is a constant, so the loops
 * over a strip's lines unroll. */
#define LOAD_STRIPS(NL)                                                            \
    for (; j + (NL) <= lines; j += (NL)) {                                         \
        const ptrdiff_t pf = prefetch ? SB_AHEAD(64 * (NL), row_bytes) : 0;        \
        const int first = j == 0;                                                  \
        for (k = s; k < e; k++) {                                                  \
            const char *w = W + (ptrdiff_t)indices[k] * row_bytes + 64 * j;        \
            if (pf && k + pf < kend) {                                             \
                const char *p = W + (ptrdiff_t)indices[k + pf] * row_bytes + 64 * j; \
                for (b = 0; b < (NL); b++) __builtin_prefetch(p + 64 * b);         \
            }                                                                      \
            if (first) load_value(values, value_bytes, k);                         \
            for (b = 0; b < (NL); b++) load_line(w + 64 * b);                      \
        }                                                                          \
    }

/* The entries [s, e) in strips of up to `widest` lines (8 or 16). */
static inline void load_entries(const char *W, ptrdiff_t row_bytes, const int32_t *indices,
                                const char *values, int value_bytes, ptrdiff_t s,
                                ptrdiff_t e, ptrdiff_t kend, int widest, int prefetch) {
    const ptrdiff_t lines = row_bytes / 64;
    ptrdiff_t j = 0, k, b;
    if (widest == 16) LOAD_STRIPS(16)
    LOAD_STRIPS(8)
    LOAD_STRIPS(4)
    LOAD_STRIPS(2)
    LOAD_STRIPS(1)
    if (row_bytes % 64) /* the row's last bytes */
        for (k = s; k < e; k++)
            load_line(W + (ptrdiff_t)indices[k] * row_bytes + row_bytes - 64);
}

/* Zeros into the n bytes at p (whole vectors, then single bytes). */
static inline void store_zeros(char *p, ptrdiff_t n) {
    const vec zero = {0};
    ptrdiff_t b = 0;
    for (; b + VB <= n; b += VB) *(vec *)(p + b) = zero;
    for (; b < n; b++) p[b] = 0;
}

/* Rows [r0, r1) of the matrix, and their rows of `out`. Order 0 is
 * sparsebed's: for each row, strips of up to 8 lines (512 bytes) of the
 * table's rows, one strip at a time over the row's entries, then the row's
 * output. Order 1 takes the table's rows whole (strips of up to 16 lines),
 * entry after entry, over all the rows' entries at once, then their output. */
static void load_rows(const char *W, ptrdiff_t row_bytes, const int32_t *indices,
                      const char *values, int value_bytes, const int32_t *indptr,
                      ptrdiff_t r0, ptrdiff_t r1, int order, int prefetch, char *out) {
    ptrdiff_t i;
    if (order == 1) {
        load_entries(W, row_bytes, indices, values, value_bytes, indptr[r0], indptr[r1],
                     indptr[r1], 16, prefetch);
        store_zeros(out + r0 * row_bytes, (r1 - r0) * row_bytes);
        return;
    }
    for (i = r0; i < r1; i++) {
        load_entries(W, row_bytes, indices, values, value_bytes, indptr[i], indptr[i + 1],
                     indptr[r1], 8, prefetch);
        store_zeros(out + i * row_bytes, row_bytes);
    }
}

/* Blocks of 64 rows, taken dynamically four at a time as sparsebed's threads
 * take them. */
void rows_ceiling(const char *W, ptrdiff_t row_bytes, const int32_t *indices,
                  const char *values, int value_bytes, const int32_t *indptr,
                  ptrdiff_t n_rows, int order, int prefetch, int threads, char *out) {
    ptrdiff_t r0;
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
    for (r0 = 0; r0 < n_rows; r0 += 64) {
        const ptrdiff_t r1 = r0 + 64 < n_rows ? r0 + 64 : n_rows;
        load_rows(W, row_bytes, indices, values, value_bytes, indptr, r0, r1, order, prefetch,
                  out);
    }
}
