"""Embedding-sum kernels over CSR matrices.

A CSR matrix ``X`` with ``n_rows`` rows and ``n_features`` columns is the
triple ``(data, indices, indptr)``: row ``i`` holds the entries ``k`` in
``indptr[i]:indptr[i + 1]``, entry ``k`` has the value ``data[k]`` in column
``indices[k]``. ``W`` is the embedding table, shape ``(n_features, d)``,
C-contiguous. ``data`` may be float32 or float64 independently of ``W``;
``indices`` and ``indptr`` share one integer type, int32 or int64. No array is
copied or up-cast.

embedding_sum (forward)
    Inputs ``data, indices, indptr, W, combiner``; output ``out``,
    shape ``(n_rows, d)``, the dtype of ``W``::

        out[i] = scale_i * sum_k data[k] * W[indices[k]]

    ``scale_i`` is 1 for ``sum``, ``1 / sum_k data[k]`` for ``mean`` and
    ``1 / sqrt(sum_k data[k] ** 2)`` for ``sqrtn``; a denominator of 0 gives
    ``scale_i = 0``, so such a row comes out as zeros, never NaN.
    Threads: ``prange`` over rows; each row writes only its own output row.

sgd_epoch (training)
    One pass of SGD over the samples listed in ``order``, for the model
    ``z = coef @ embedding_sum(x) + intercept`` with a logistic loss
    (``coef`` has one row, targets 0/1) or a softmax loss (``coef`` has one
    row per class, targets are class indices). Inputs ``data, indices,
    indptr, y, sample_weight, order`` and the step sizes; updated in place:
    ``W, coef, intercept, stamp``. For the sample at position ``p`` of
    ``order``, with step ``lr_p`` (linear from ``lr_begin`` to ``lr_end``):

    1. ``h = embedding_sum`` of its row (thread-private scratch);
    2. ``z = coef @ h + intercept``; ``g = sample_weight * dloss/dz``;
    3. ``dh = coef.T @ g`` (with ``coef`` as it was before this step);
    4. ``coef <- coef * exp(-alpha lr_p) - lr_p g h.T``,
       ``intercept <- intercept - lr_p g``;
    5. for each entry ``k`` of the row (only those rows of ``W``):
       ``W[indices[k]] <- W[indices[k]] * decay - lr_p scale data[k] dh``.

    L2 regularisation of ``W`` is lazy: ``stamp[j]`` is the log of the
    weight decay accumulated up to the last step that touched row ``j``;
    the decay owed since then is applied when the row is next read or
    written, and :func:`apply_decay` settles every row at the end of the
    pass, so a step never touches a row the sample does not name.
    Threads: ``prange`` over positions of ``order``, in interleaved chunks of
    ``CHUNK`` positions so that all threads are near the same step; each
    thread owns its scratch ``h, dh, z``. A row whose stamp another thread
    has moved past this thread's clock is taken as settled (the decay factor
    is capped at 1), so races can delay decay but never inflate a row.
    ``W``, ``coef`` and ``intercept`` are shared and updated without locks
    (Hogwild!, as fastText and LightFM do). With several threads each one
    queues the head steps (4) of its last ``HEAD_QUEUE`` samples and applies
    them together, so that the head, which every step reads and writes, moves
    between the cores once per queue instead of once per sample. With one
    thread the pass is sequential and bit-for-bit reproducible.

Safety
    Before a row's entries are read, the kernels check that its extent lies
    inside ``indices`` and that each of its column indices lies in
    ``[0, n_features)``. A bad row is skipped, never read, and the kernel
    returns its position so that the caller can raise; no input can make a
    kernel read or write outside its arrays.

Speed
    The loops over the columns of ``W`` live in ``_simd.h``: compiled for the
    baseline instruction set and, on x86-64, for AVX2+FMA and AVX-512, the
    widest one the CPU supports is chosen at import (``simd_isa``). This file
    owns the loops over rows and samples, the threads and the loss.
"""
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport exp, log, log1p
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer

cdef extern from "_openmp.h":
    int SPARSEBED_OPENMP
    int omp_get_max_threads() noexcept nogil
    int omp_get_num_threads() noexcept nogil
    ctypedef struct sb_team:
        int arrived
        int sense
        int sleepers
        int next_active
        int recalled
        int recall_sense
        long long recall_batch
    int sb_barrier_wait(sb_team *b, int n, int *sense) noexcept nogil
    void sb_sit_out(sb_team *b, int *seen) noexcept nogil
    void sb_recall(sb_team *b, long long batch) noexcept nogil

cdef extern from *:
    int SPARSEBED_BOUNDSCHECK  # set by setup.py: 1 in a SPARSEBED_DEBUG=1 build

cdef extern from "_simd.h" nogil:
    int SB_SUM, SB_MEAN, SB_SQRTN  # combiner codes
    int SB_ISA_BASE, SB_ISA_AVX2, SB_ISA_AVX512
    int sb_isa
    const char *sb_isa_names[3]
    void sb_init()
    int sb_set_isa(int isa)
    int sb_isa_supported(int isa)
    void sb_prefetch(const void *p)
    double sb_lesser(double a, double b)
    void sb_prefetch_bytes(const void *p, Py_ssize_t n)
    void sb_prefetch_bytes_w(const void *p, Py_ssize_t n)
    void sb_exp_neg(double *x, Py_ssize_t n)
    double sb_scale_f32(int combiner, const float *data, Py_ssize_t start, Py_ssize_t end)
    double sb_scale_f64(int combiner, const double *data, Py_ssize_t start, Py_ssize_t end)
    int sb_row_ok_i32(const int32_t *indices, Py_ssize_t start, Py_ssize_t end,
                      Py_ssize_t nnz, Py_ssize_t n_features)
    int sb_row_ok_i64(const int64_t *indices, Py_ssize_t start, Py_ssize_t end,
                      Py_ssize_t nnz, Py_ssize_t n_features)
    Py_ssize_t sb_bag_rows_f32_i32_f32(const float *W, Py_ssize_t n_features, Py_ssize_t d,
        const float *data, const int32_t *indices, const int32_t *indptr, Py_ssize_t nnz,
        Py_ssize_t row0, Py_ssize_t row1, int combiner, float *out)
    Py_ssize_t sb_bag_rows_f32_i32_f64(const float *W, Py_ssize_t n_features, Py_ssize_t d,
        const double *data, const int32_t *indices, const int32_t *indptr, Py_ssize_t nnz,
        Py_ssize_t row0, Py_ssize_t row1, int combiner, float *out)
    Py_ssize_t sb_bag_rows_f32_i64_f32(const float *W, Py_ssize_t n_features, Py_ssize_t d,
        const float *data, const int64_t *indices, const int64_t *indptr, Py_ssize_t nnz,
        Py_ssize_t row0, Py_ssize_t row1, int combiner, float *out)
    Py_ssize_t sb_bag_rows_f32_i64_f64(const float *W, Py_ssize_t n_features, Py_ssize_t d,
        const double *data, const int64_t *indices, const int64_t *indptr, Py_ssize_t nnz,
        Py_ssize_t row0, Py_ssize_t row1, int combiner, float *out)
    Py_ssize_t sb_bag_rows_f64_i32_f32(const double *W, Py_ssize_t n_features, Py_ssize_t d,
        const float *data, const int32_t *indices, const int32_t *indptr, Py_ssize_t nnz,
        Py_ssize_t row0, Py_ssize_t row1, int combiner, double *out)
    Py_ssize_t sb_bag_rows_f64_i32_f64(const double *W, Py_ssize_t n_features, Py_ssize_t d,
        const double *data, const int32_t *indices, const int32_t *indptr, Py_ssize_t nnz,
        Py_ssize_t row0, Py_ssize_t row1, int combiner, double *out)
    Py_ssize_t sb_bag_rows_f64_i64_f32(const double *W, Py_ssize_t n_features, Py_ssize_t d,
        const float *data, const int64_t *indices, const int64_t *indptr, Py_ssize_t nnz,
        Py_ssize_t row0, Py_ssize_t row1, int combiner, double *out)
    Py_ssize_t sb_bag_rows_f64_i64_f64(const double *W, Py_ssize_t n_features, Py_ssize_t d,
        const double *data, const int64_t *indices, const int64_t *indptr, Py_ssize_t nnz,
        Py_ssize_t row0, Py_ssize_t row1, int combiner, double *out)
    void sb_bag_values_f32_i32(const float *W, Py_ssize_t d, const int32_t *idx,
                               const float *vals, Py_ssize_t n, float *h)
    void sb_bag_values_f32_i64(const float *W, Py_ssize_t d, const int64_t *idx,
                               const float *vals, Py_ssize_t n, float *h)
    void sb_bag_values_f64_i32(const double *W, Py_ssize_t d, const int32_t *idx,
                               const double *vals, Py_ssize_t n, double *h)
    void sb_bag_values_f64_i64(const double *W, Py_ssize_t d, const int64_t *idx,
                               const double *vals, Py_ssize_t n, double *h)
    void sb_scatter_f32_i32(float *W, Py_ssize_t d, const int32_t *idx, const float *decay,
                            const float *step, Py_ssize_t n, const float *dh,
                            const Py_ssize_t *dh_row)
    void sb_scatter_f32_i64(float *W, Py_ssize_t d, const int64_t *idx, const float *decay,
                            const float *step, Py_ssize_t n, const float *dh,
                            const Py_ssize_t *dh_row)
    void sb_scatter_f64_i32(double *W, Py_ssize_t d, const int32_t *idx, const double *decay,
                            const double *step, Py_ssize_t n, const double *dh,
                            const Py_ssize_t *dh_row)
    void sb_scatter_f64_i64(double *W, Py_ssize_t d, const int64_t *idx, const double *decay,
                            const double *step, Py_ssize_t n, const double *dh,
                            const Py_ssize_t *dh_row)
    void sb_gemv_f32(const float *coef, const float *b, Py_ssize_t n_out, Py_ssize_t d,
                     const float *h, double *z)
    void sb_gemv_f64(const double *coef, const double *b, Py_ssize_t n_out, Py_ssize_t d,
                     const double *h, double *z)
    void sb_gemv_t_f32(const float *coef, Py_ssize_t n_out, Py_ssize_t d, const double *g, float *dh)
    void sb_gemv_t_f64(const double *coef, Py_ssize_t n_out, Py_ssize_t d, const double *g, double *dh)
    void sb_combine_f32(float *row, Py_ssize_t d, double decay, const double *a,
                        Py_ssize_t a_stride, Py_ssize_t n, const float *X)
    void sb_combine_f64(double *row, Py_ssize_t d, double decay, const double *a,
                        Py_ssize_t a_stride, Py_ssize_t n, const double *X)
    void sb_head_f32(float *coef, Py_ssize_t n_out, Py_ssize_t d, const double *g,
                     double lr, double decay, const float *h, float *dh)
    void sb_head_f64(double *coef, Py_ssize_t n_out, Py_ssize_t d, const double *g,
                     double lr, double decay, const double *h, double *dh)
    int sb_all_finite_f32(const float *x, Py_ssize_t n)
    int sb_all_finite_f64(const double *x, Py_ssize_t n)

ctypedef fused data_t:
    float
    double

ctypedef fused real_t:
    float
    double

ctypedef fused index_t:
    int32_t
    int64_t

cdef enum:
    # Threads take turns over chunks of CHUNK consecutive positions of
    # `order`, so that at any moment they are at nearly the same step: the
    # step size and the decay clock then mean the same to all of them.
    CHUNK = 64
    # With several threads, each one queues the head steps of its last
    # HEAD_QUEUE samples and applies them together: the head, read and written
    # by every step, then moves between the cores once per queue, not per sample.
    HEAD_QUEUE = 8
    # Rows of the forward kernel handed to one call of the C loop.
    ROW_BLOCK = 64
    # The deterministic pass's team: when LATE_LIMIT of the barriers in a
    # window of LATE_WINDOW batches had a thread come late (another process
    # holding its core), the first thread works alone for SOLO_MIN batches,
    # twice as many each time the team is late again at once, up to SOLO_MAX.
    LATE_WINDOW = 64
    LATE_LIMIT = 4
    SOLO_MIN = 1024
    SOLO_MAX = 65536

COMBINERS = {"sum": SB_SUM, "mean": SB_MEAN, "sqrtn": SB_SQRTN}
OPENMP_ENABLED = bool(SPARSEBED_OPENMP)
BOUNDSCHECK = bool(SPARSEBED_BOUNDSCHECK)
SIMD_ISAS = tuple(sb_isa_names[i].decode() for i in range(3))

sb_init()


def openmp_max_threads():
    """Threads an OpenMP parallel region would use now (1 without OpenMP).

    Follows ``OMP_NUM_THREADS`` and ``threadpoolctl`` limits.
    """
    return omp_get_max_threads()


def address(buffer):
    """The address of the first byte of a contiguous ``buffer``: an array's
    ``ctypes.data``, without the ctypes object that takes 1 us to build."""
    cdef Py_buffer view
    PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE)
    cdef size_t start = <size_t>view.buf
    PyBuffer_Release(&view)
    return start


def simd_isa():
    """Name of the instruction set the kernels use: baseline, avx2 or avx512."""
    return SIMD_ISAS[sb_isa]


def simd_supported():
    """Names of the instruction sets compiled in that this CPU can run."""
    return tuple(name for i, name in enumerate(SIMD_ISAS) if sb_isa_supported(i))


def set_simd_isa(name):
    """Make the kernels use instruction set ``name`` (for tests and benchmarks).

    ``None`` restores the default, the widest supported. Returns the previous name.
    """
    previous = simd_isa()
    if name is None:
        sb_init()
    elif name not in SIMD_ISAS or not sb_set_isa(SIMD_ISAS.index(name)):
        raise ValueError(f"instruction set {name!r} is not available; use one of {simd_supported()}")
    return previous


cdef inline bint _row_ok(
    const index_t *indices, Py_ssize_t start, Py_ssize_t end, Py_ssize_t nnz, Py_ssize_t n_features
) noexcept nogil:
    if index_t is int32_t:
        return sb_row_ok_i32(indices, start, end, nnz, n_features)
    else:
        return sb_row_ok_i64(indices, start, end, nnz, n_features)


cdef inline double _row_scale(int combiner, const data_t *data, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    if data_t is float:
        return sb_scale_f32(combiner, data, start, end)
    else:
        return sb_scale_f64(combiner, data, start, end)


cdef inline Py_ssize_t _bag_rows(
    const real_t *W, Py_ssize_t n_features, Py_ssize_t d, const data_t *data,
    const index_t *indices, const index_t *indptr, Py_ssize_t nnz,
    Py_ssize_t row0, Py_ssize_t row1, int combiner, real_t *out,
) noexcept nogil:
    if real_t is float:
        if index_t is int32_t:
            if data_t is float:
                return sb_bag_rows_f32_i32_f32(W, n_features, d, data, indices, indptr, nnz, row0, row1, combiner, out)
            else:
                return sb_bag_rows_f32_i32_f64(W, n_features, d, data, indices, indptr, nnz, row0, row1, combiner, out)
        else:
            if data_t is float:
                return sb_bag_rows_f32_i64_f32(W, n_features, d, data, indices, indptr, nnz, row0, row1, combiner, out)
            else:
                return sb_bag_rows_f32_i64_f64(W, n_features, d, data, indices, indptr, nnz, row0, row1, combiner, out)
    else:
        if index_t is int32_t:
            if data_t is float:
                return sb_bag_rows_f64_i32_f32(W, n_features, d, data, indices, indptr, nnz, row0, row1, combiner, out)
            else:
                return sb_bag_rows_f64_i32_f64(W, n_features, d, data, indices, indptr, nnz, row0, row1, combiner, out)
        else:
            if data_t is float:
                return sb_bag_rows_f64_i64_f32(W, n_features, d, data, indices, indptr, nnz, row0, row1, combiner, out)
            else:
                return sb_bag_rows_f64_i64_f64(W, n_features, d, data, indices, indptr, nnz, row0, row1, combiner, out)


cdef inline void _bag_values(
    const real_t *W, Py_ssize_t d, const index_t *idx, const real_t *vals, Py_ssize_t n, real_t *h
) noexcept nogil:
    if real_t is float:
        if index_t is int32_t:
            sb_bag_values_f32_i32(W, d, idx, vals, n, h)
        else:
            sb_bag_values_f32_i64(W, d, idx, vals, n, h)
    else:
        if index_t is int32_t:
            sb_bag_values_f64_i32(W, d, idx, vals, n, h)
        else:
            sb_bag_values_f64_i64(W, d, idx, vals, n, h)


cdef inline void _scatter(
    real_t *W, Py_ssize_t d, const index_t *idx, const real_t *decay, const real_t *step,
    Py_ssize_t n, const real_t *dh, const Py_ssize_t *dh_row
) noexcept nogil:
    if real_t is float:
        if index_t is int32_t:
            sb_scatter_f32_i32(W, d, idx, decay, step, n, dh, dh_row)
        else:
            sb_scatter_f32_i64(W, d, idx, decay, step, n, dh, dh_row)
    else:
        if index_t is int32_t:
            sb_scatter_f64_i32(W, d, idx, decay, step, n, dh, dh_row)
        else:
            sb_scatter_f64_i64(W, d, idx, decay, step, n, dh, dh_row)


cdef inline void _gemv_t(const real_t *coef, Py_ssize_t n_out, Py_ssize_t d, const double *g, real_t *dh) noexcept nogil:
    if real_t is float:
        sb_gemv_t_f32(coef, n_out, d, g, dh)
    else:
        sb_gemv_t_f64(coef, n_out, d, g, dh)


cdef inline void _combine(
    real_t *row, Py_ssize_t d, double decay, const double *a, Py_ssize_t a_stride, Py_ssize_t n,
    const real_t *X
) noexcept nogil:
    if real_t is float:
        sb_combine_f32(row, d, decay, a, a_stride, n, X)
    else:
        sb_combine_f64(row, d, decay, a, a_stride, n, X)


cdef inline void _gemv(
    const real_t *coef, const real_t *b, Py_ssize_t n_out, Py_ssize_t d, const real_t *h, double *z
) noexcept nogil:
    if real_t is float:
        sb_gemv_f32(coef, b, n_out, d, h, z)
    else:
        sb_gemv_f64(coef, b, n_out, d, h, z)


cdef inline void _head(
    real_t *coef, Py_ssize_t n_out, Py_ssize_t d, const double *g, double lr, double decay,
    const real_t *h, real_t *dh
) noexcept nogil:
    if real_t is float:
        sb_head_f32(coef, n_out, d, g, lr, decay, h, dh)
    else:
        sb_head_f64(coef, n_out, d, g, lr, decay, h, dh)


cdef inline void _apply_head_steps(
    real_t *coef, real_t *intercept, Py_ssize_t n_out, Py_ssize_t d, const double *steps,
    const real_t *H, Py_ssize_t n, double decay, Py_ssize_t first, Py_ssize_t stride
) noexcept nogil:
    """Apply ``n`` head steps together, to the classes ``first, first + stride, ...``.

    ``coef <- coef * decay - steps.T @ H`` and ``intercept <- intercept -
    steps.sum(0)``, where ``steps`` (n, n_out) holds ``lr * g`` of each
    sample and ``H`` (n, d) its embedding.
    """
    cdef Py_ssize_t c, s
    cdef double total
    c = first
    while c < n_out:  # the rows were read by every thread: claim them for writing
        sb_prefetch_bytes_w(coef + c * d, d * sizeof(real_t))
        c = c + stride
    c = first
    while c < n_out:
        _combine(coef + c * d, d, decay, steps + c, n_out, n, H)
        total = 0.0
        for s in range(n):
            total = total + steps[s * n_out + c]
        intercept[c] = <real_t> (intercept[c] - total)
        c = c + stride


cdef inline bint _all_finite(const real_t *x, Py_ssize_t n) noexcept nogil:
    if real_t is float:
        return sb_all_finite_f32(x, n)
    else:
        return sb_all_finite_f64(x, n)


cdef inline void _prefetch_sample(
    const int64_t[::1] order, Py_ssize_t p1, Py_ssize_t p2, Py_ssize_t p3, const index_t *indptr,
    const data_t *data, const index_t *indices, const int32_t *y, const double *sample_weight,
    Py_ssize_t nnz, const real_t *W, Py_ssize_t n_features, Py_ssize_t d, const double *stamp,
) noexcept nogil:
    """Prefetch what SGD reads of the samples at positions ``p1, p2, p3``:
    the next three this thread takes (-1 for none).

    ``order`` is shuffled, so each sample's arrays are cache misses. They are
    fetched in stages, each needing what the previous one brought: the
    sample's header three steps ahead, its row of ``indices`` and ``data``
    two steps ahead, and the rows of ``W`` (and their stamps) it names one
    step ahead, so that they arrive while this step computes. ``order`` was
    checked; a row's extent and indices are checked before they form an
    address (``stamp`` may be NULL).
    """
    cdef Py_ssize_t n_steps = order.shape[0], i, k, start, end
    cdef size_t col
    if 0 <= p3 < n_steps:
        i = order[p3]
        sb_prefetch(&indptr[i])
        sb_prefetch(&sample_weight[i])
        sb_prefetch(&y[i])
    if 0 <= p2 < n_steps:
        i = order[p2]
        start = indptr[i]
        end = indptr[i + 1]
        if 0 <= start <= end <= nnz:
            sb_prefetch_bytes(indices + start, (end - start) * sizeof(index_t))
            sb_prefetch_bytes(data + start, (end - start) * sizeof(data_t))
    if 0 <= p1 < n_steps:
        i = order[p1]
        start = indptr[i]
        end = indptr[i + 1]
        if 0 <= start <= end <= nnz:
            for k in range(start, end):
                col = <size_t> indices[k]
                if col < <size_t> n_features:
                    sb_prefetch_bytes(W + col * d, d * sizeof(real_t))
                    if stamp != NULL:
                        sb_prefetch(&stamp[col])


cdef inline Py_ssize_t _next_in_batches(
    Py_ssize_t p, Py_ssize_t B, Py_ssize_t n_steps, Py_ssize_t me, Py_ssize_t active
) noexcept nogil:
    """The position after ``p`` that thread ``me`` of ``active`` takes in the
    deterministic pass (batches of ``B``), or -1."""
    cdef Py_ssize_t b0, nb
    if p < 0:
        return -1
    b0 = p - p % B
    nb = min(B, n_steps - b0)
    if p + 1 < b0 + (me + 1) * nb // active:
        return p + 1
    b0 = b0 + B
    nb = min(B, n_steps - b0)
    if nb <= 0 or me * nb // active == (me + 1) * nb // active:
        return -1
    return b0 + me * nb // active


cdef inline double _clock(double alpha, double lr_begin, double lr_slope, Py_ssize_t p) noexcept nogil:
    """Log of the weight decay accumulated over steps 0 .. p-1 of a pass: -alpha * sum(lr)."""
    return -alpha * (p * lr_begin + lr_slope * 0.5 * p * (p - 1))


def first_bad_row(const index_t[::1] indices, const index_t[::1] indptr, Py_ssize_t n_features):
    """Return -1 when every row of the CSR structure is well formed, else the first bad row."""
    cdef Py_ssize_t i, bad = -1, nnz = indices.shape[0]
    cdef const index_t *idx = &indices[0] if nnz > 0 else NULL
    with nogil:
        for i in range(indptr.shape[0] - 1):
            if not _row_ok(idx, indptr[i], indptr[i + 1], nnz, n_features):
                bad = i
                break
    return bad


def has_duplicates(const index_t[::1] indices, const index_t[::1] indptr, Py_ssize_t n_features):
    """Whether some row of a well-formed CSR structure names a column twice."""
    cdef Py_ssize_t i, k
    cdef bint found = False
    cdef unsigned char *seen = <unsigned char *> malloc(max(n_features, 1))
    if seen == NULL:
        raise MemoryError()
    with nogil:
        memset(seen, 0, n_features)
        for i in range(indptr.shape[0] - 1):
            for k in range(indptr[i], indptr[i + 1]):
                if seen[indices[k]]:
                    found = True
                seen[indices[k]] = 1
            for k in range(indptr[i], indptr[i + 1]):
                seen[indices[k]] = 0
            if found:
                break
    free(seen)
    return found


cdef inline void _sum_block(
    const real_t *W, Py_ssize_t n_features, Py_ssize_t d, const data_t *data,
    const index_t *indices, const index_t *indptr, Py_ssize_t nnz, Py_ssize_t block,
    Py_ssize_t n_rows, int combiner, real_t *out, Py_ssize_t *bad_row, bint *finite,
) noexcept nogil:
    """Rows of one ROW_BLOCK of the forward kernel, and their check: a bad row
    goes to ``bad_row[0]``, a value that is not finite clears ``finite[0]``."""
    cdef Py_ssize_t row0 = block * ROW_BLOCK
    cdef Py_ssize_t row1 = min(row0 + ROW_BLOCK, n_rows)
    cdef Py_ssize_t bad = _bag_rows(
        W, n_features, d, data, indices, indptr, nnz, row0, row1, combiner, out
    )
    if bad >= 0:
        bad_row[0] = bad
    if not _all_finite(out + row0 * d, (row1 - row0) * d):
        finite[0] = False


def embedding_sum(
    const data_t[::1] data,
    const index_t[::1] indices,
    const index_t[::1] indptr,
    const real_t[:, ::1] W,
    real_t[:, ::1] out,
    int combiner,
    int n_threads,
):
    """Write the combined embedding sum of each CSR row into ``out``.

    Every row's extent and indices are checked before ``W`` is read, so the
    arrays need no check beforehand; ``W`` needs a column. Returns
    ``(bad_row, finite)``: ``bad_row`` is -1, or some malformed row (whose
    output is zeros; not necessarily the first); ``finite`` says whether
    every output value is finite, checked block by block while the block is
    still in cache.
    """
    cdef Py_ssize_t n_rows = out.shape[0]
    cdef Py_ssize_t d = W.shape[1]
    cdef Py_ssize_t n_features = W.shape[0]
    cdef Py_ssize_t nnz = indices.shape[0]
    cdef Py_ssize_t n_blocks = (n_rows + ROW_BLOCK - 1) // ROW_BLOCK
    cdef Py_ssize_t block
    cdef Py_ssize_t bad_row[1]
    cdef bint finite[1]
    cdef const data_t *data_ptr = &data[0] if nnz > 0 else NULL
    cdef const index_t *indices_ptr = &indices[0] if nnz > 0 else NULL
    cdef const real_t *W_ptr = &W[0, 0] if n_features > 0 and d > 0 else NULL

    if indptr.shape[0] != n_rows + 1 or data.shape[0] != nnz:
        raise ValueError("inconsistent CSR arrays")
    if out.shape[1] != d:
        raise ValueError("out has the wrong number of columns")
    if d == 0:
        raise ValueError("W has no columns")  # the sums would check no index
    bad_row[0] = -1
    finite[0] = True
    if n_rows == 0:
        return -1, True

    if n_threads == 1 or n_blocks == 1:
        # Without a team: starting one takes about as long as summing a row.
        with nogil:
            for block in range(n_blocks):
                _sum_block(W_ptr, n_features, d, data_ptr, indices_ptr, &indptr[0], nnz,
                           block, n_rows, combiner, &out[0, 0], bad_row, finite)
        return bad_row[0], finite[0]
    # Threads take blocks as they finish the last ones: where one core runs
    # slower (a busy neighbour), the other takes more. Each row is summed by
    # one thread in the same order, so the result is the same either way.
    for block in prange(n_blocks, nogil=True, schedule="dynamic", chunksize=4,
                        num_threads=n_threads):
        _sum_block(W_ptr, n_features, d, data_ptr, indices_ptr, &indptr[0], nnz,
                   block, n_rows, combiner, &out[0, 0], bad_row, finite)
    return bad_row[0], finite[0]


def apply_decay(real_t[:, ::1] W, double[::1] stamp, double clock, int n_threads):
    """Settle the lazy weight decay: ``W[j] *= exp(clock - stamp[j])``, ``stamp[j] = 0``."""
    cdef Py_ssize_t n_features = W.shape[0], d = W.shape[1]
    cdef Py_ssize_t i, j
    cdef real_t factor
    for i in prange(n_features, nogil=True, schedule="static", num_threads=n_threads):
        if stamp[i] != clock:
            factor = <real_t> exp(clock - stamp[i])
            for j in range(d):
                W[i, j] = W[i, j] * factor
        stamp[i] = 0.0


cdef Py_ssize_t _check_sgd_args(
    const data_t[::1] data,
    const index_t[::1] indices,
    const index_t[::1] indptr,
    const int32_t[::1] y,
    const double[::1] sample_weight,
    const int64_t[::1] order,
    real_t[:, ::1] W,
    real_t[:, ::1] coef,
    real_t[::1] intercept,
    double[::1] stamp,
) except -1:
    """Check the arguments of an SGD pass; return the length of the longest row."""
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1, nnz = indices.shape[0]
    cdef Py_ssize_t p, i, longest = 0
    cdef Py_ssize_t n_classes = max(coef.shape[0], 2)
    if n_rows < 0 or data.shape[0] != nnz:
        raise ValueError("inconsistent CSR arrays")
    if y.shape[0] != n_rows or sample_weight.shape[0] != n_rows:
        raise ValueError("y and sample_weight must have one entry per row")
    if coef.shape[1] != W.shape[1] or intercept.shape[0] != coef.shape[0] or stamp.shape[0] != W.shape[0]:
        raise ValueError("inconsistent parameter shapes")
    for p in range(order.shape[0]):
        if order[p] < 0 or order[p] >= n_rows:
            raise ValueError("order holds a sample index out of range")
    for i in range(n_rows):
        if y[i] < 0 or y[i] >= n_classes:
            raise ValueError("y holds a class index out of range")
        if 0 <= indptr[i] <= indptr[i + 1] <= nnz:
            longest = max(longest, indptr[i + 1] - indptr[i])
    return longest


cdef inline double _loss_grad(double *z, Py_ssize_t n_out, int32_t target_class, double w) noexcept nogil:
    """Turn the logits z into w * dloss/dz in place; return the loss (unweighted)."""
    cdef Py_ssize_t c
    cdef double loss, prob, target, zmax, total
    if n_out == 1:
        target = 1.0 if target_class == 1 else 0.0
        # loss = log(1 + exp(m)) with margin m = -z for target 1, z for 0
        loss = z[0] if target == 0.0 else -z[0]
        if loss > 0:
            loss = loss + log1p(exp(-loss))
        else:
            loss = log1p(exp(loss))
        if z[0] >= 0:
            prob = 1.0 / (1.0 + exp(-z[0]))
        else:
            prob = exp(z[0]) / (1.0 + exp(z[0]))
        z[0] = w * (prob - target)
        return loss
    zmax = z[0]
    for c in range(1, n_out):
        if z[c] > zmax:
            zmax = z[c]
    loss = zmax - z[target_class]
    for c in range(n_out):
        z[c] = z[c] - zmax
    sb_exp_neg(z, n_out)
    total = 0.0
    for c in range(n_out):
        total = total + z[c]
    loss = loss + log(total)  # log-sum-exp minus the target's logit
    for c in range(n_out):
        z[c] = w * (z[c] / total - (1.0 if c == target_class else 0.0))
    return loss


def sgd_epoch(
    const data_t[::1] data,
    const index_t[::1] indices,
    const index_t[::1] indptr,
    const int32_t[::1] y,
    const double[::1] sample_weight,
    const int64_t[::1] order,
    real_t[:, ::1] W,
    real_t[:, ::1] coef,
    real_t[::1] intercept,
    double[::1] stamp,
    int combiner,
    double lr_begin,
    double lr_end,
    double alpha,
    bint update_embeddings,
    int n_threads,
):
    """One SGD pass over ``order``; see the module docstring.

    Returns ``(loss, clock, bad_row)``: the sum of the weighted losses of the
    samples (each taken before its own step), the log weight decay of the
    pass (for :func:`apply_decay`), and -1 or the position of a malformed row.
    """
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1
    cdef Py_ssize_t n_steps = order.shape[0]
    cdef Py_ssize_t n_features = W.shape[0]
    cdef Py_ssize_t d = W.shape[1]
    cdef Py_ssize_t n_out = coef.shape[0]
    cdef Py_ssize_t nnz = indices.shape[0]
    cdef Py_ssize_t p, i, c, k, n, start, end, longest
    cdef index_t col
    cdef real_t *h
    cdef real_t *dh
    cdef real_t *H
    cdef double *steps
    cdef Py_ssize_t *queued
    cdef double *queued_log_decay
    cdef Py_ssize_t queue
    cdef real_t *vals
    cdef real_t *decay
    cdef double *seen
    cdef double *owed_exp
    cdef double *z
    cdef double scale, lr, w, loss
    cdef double now, after, head_decay, owed
    cdef double lr_slope = (lr_end - lr_begin) / n_steps if n_steps > 0 else 0.0
    cdef double loss_sum = 0.0
    cdef bint lazy = alpha > 0.0 and update_embeddings
    cdef Py_ssize_t bad_row[1]
    cdef bint out_of_memory[1]
    cdef const data_t *data_ptr = &data[0] if nnz > 0 else NULL
    cdef const index_t *indices_ptr = &indices[0] if nnz > 0 else NULL
    cdef real_t *W_ptr = &W[0, 0] if n_features > 0 else NULL

    longest = _check_sgd_args(data, indices, indptr, y, sample_weight, order, W, coef, intercept, stamp)
    bad_row[0] = -1
    out_of_memory[0] = False

    with nogil, parallel(num_threads=n_threads):
        # The head steps of up to `queue` samples wait in H and steps (one
        # thread applies each step at once: SGD taking the samples one by one).
        # Their count lives behind a pointer: prange would reset a variable.
        queue = HEAD_QUEUE if omp_get_num_threads() > 1 else 1
        H = <real_t *> malloc(queue * d * sizeof(real_t))
        steps = <double *> malloc(queue * n_out * sizeof(double))
        queued = <Py_ssize_t *> malloc(sizeof(Py_ssize_t))
        queued_log_decay = <double *> malloc(sizeof(double))
        dh = <real_t *> malloc(d * sizeof(real_t))
        z = <double *> malloc(n_out * sizeof(double))
        # Per entry of one sample: values (then steps), decay factors, stamps.
        vals = <real_t *> malloc((longest + 1) * sizeof(real_t))
        decay = <real_t *> malloc((longest + 1) * sizeof(real_t))
        seen = <double *> malloc((longest + 1) * sizeof(double))
        owed_exp = <double *> malloc((longest + 1) * sizeof(double))
        if (H == NULL or steps == NULL or queued == NULL or queued_log_decay == NULL or dh == NULL
                or z == NULL or vals == NULL or decay == NULL or seen == NULL or owed_exp == NULL):
            out_of_memory[0] = True
        else:
            queued[0] = 0
            queued_log_decay[0] = 0.0
        for p in prange(n_steps, schedule="static", chunksize=CHUNK):
            if out_of_memory[0]:
                continue
            _prefetch_sample(
                order, p + 1, p + 2, p + 3, &indptr[0], data_ptr, indices_ptr, &y[0],
                &sample_weight[0], nnz, W_ptr, n_features, d, &stamp[0] if lazy else NULL,
            )
            i = order[p]
            start = indptr[i]
            end = indptr[i + 1]
            if not _row_ok(indices_ptr, start, end, nnz, n_features):
                bad_row[0] = i
                continue
            n = end - start
            lr = lr_begin + lr_slope * p
            now = _clock(alpha, lr_begin, lr_slope, p)
            after = now - alpha * lr
            head_decay = exp(-alpha * lr)
            w = sample_weight[i]

            # 1. forward: h = scale * sum_k data[k] * W[indices[k]] (decay owed included)
            h = H + queued[0] * d
            scale = _row_scale(combiner, data_ptr, start, end)
            if lazy:
                # decay owed by each row since its stamp; kept for step 5
                for k in range(n):
                    seen[k] = stamp[indices_ptr[start + k]]
                    owed_exp[k] = sb_lesser(0.0, now - seen[k])
                sb_exp_neg(owed_exp, n)
                for k in range(n):
                    decay[k] = <real_t> owed_exp[k]
                    vals[k] = <real_t> (data_ptr[start + k] * scale * decay[k])
            else:
                for k in range(n):
                    vals[k] = <real_t> (data_ptr[start + k] * scale)
            _bag_values(W_ptr, d, indices_ptr + start, vals, n, h)

            # 2. logits, loss and its gradient g (kept in z)
            _gemv(&coef[0, 0], &intercept[0], n_out, d, h, z)
            loss = _loss_grad(z, n_out, y[i], w)
            loss_sum += w * loss

            # 3-4. dh = coef.T @ g with coef as it was; then the head step, with its decay
            if queue == 1:
                _head(&coef[0, 0], n_out, d, z, lr, head_decay, h, dh)
                for c in range(n_out):
                    intercept[c] = <real_t> (intercept[c] - lr * z[c])
            else:
                _gemv_t(&coef[0, 0], n_out, d, z, dh)
                for c in range(n_out):
                    steps[queued[0] * n_out + c] = lr * z[c]
                queued_log_decay[0] = queued_log_decay[0] - alpha * lr
                queued[0] = queued[0] + 1
                if queued[0] == queue:
                    _apply_head_steps(&coef[0, 0], &intercept[0], n_out, d, steps, H, queued[0],
                                      exp(queued_log_decay[0]), 0, 1)
                    queued[0] = 0
                    queued_log_decay[0] = 0.0

            # 5. sparse row step: only the rows this sample names
            if update_embeddings:
                for k in range(n):
                    vals[k] = <real_t> (lr * scale * data_ptr[start + k])
                    if lazy:
                        col = indices_ptr[start + k]
                        owed = stamp[col]
                        if owed == seen[k] and owed >= now:
                            # exp(after - owed) = exp(now - owed) * exp(-alpha * lr)
                            decay[k] = <real_t> (decay[k] * head_decay)
                        else:  # settled since step 1: by a duplicate entry or a thread
                            decay[k] = <real_t> exp(sb_lesser(0.0, after - owed))
                        stamp[col] = sb_lesser(owed, after)
                _scatter(W_ptr, d, indices_ptr + start, decay if lazy else NULL, vals, n, dh, NULL)
        if not out_of_memory[0] and queued[0] > 0:
            _apply_head_steps(&coef[0, 0], &intercept[0], n_out, d, steps, H, queued[0],
                              exp(queued_log_decay[0]), 0, 1)
        free(H)
        free(steps)
        free(queued)
        free(queued_log_decay)
        free(dh)
        free(z)
        free(vals)
        free(decay)
        free(seen)
        free(owed_exp)

    if out_of_memory[0]:
        raise MemoryError("could not allocate the per-thread scratch vectors")
    return loss_sum, _clock(alpha, lr_begin, lr_slope, n_steps), bad_row[0]


def sgd_epoch_batched(
    const data_t[::1] data,
    const index_t[::1] indices,
    const index_t[::1] indptr,
    const int32_t[::1] y,
    const double[::1] sample_weight,
    const int64_t[::1] order,
    real_t[:, ::1] W,
    real_t[:, ::1] coef,
    real_t[::1] intercept,
    double[::1] stamp,
    int combiner,
    double lr_begin,
    double lr_end,
    double alpha,
    bint update_embeddings,
    Py_ssize_t batch_size,
    int n_threads,
):
    """One deterministic pass of mini-batch SGD over ``order``.

    The samples are taken in batches of ``batch_size`` consecutive positions.
    Within a batch every gradient is taken at the parameters of the batch's
    start (threads share the samples), and the steps are then applied in the
    order of the samples (threads share the rows of ``W`` and of ``coef``,
    each row owned by one thread). No two threads ever write one number, and
    every sum is taken in a fixed order, so the result is the same bit for bit
    run after run and for any ``n_threads``. The threads stay in one parallel
    region for the whole pass and meet at two barriers per batch; when they
    keep arriving late there (another process holding their cores), the
    first thread takes the batches alone for a while (``LATE_LIMIT``,
    ``SOLO_MIN``), which changes no result. Returns ``(loss, clock,
    bad_row)`` as :func:`sgd_epoch` does.
    """
    cdef Py_ssize_t n_steps = order.shape[0]
    cdef Py_ssize_t n_features = W.shape[0]
    cdef Py_ssize_t d = W.shape[1]
    cdef Py_ssize_t n_out = coef.shape[0]
    cdef Py_ssize_t nnz = indices.shape[0]
    cdef Py_ssize_t B = max(batch_size, 1)
    cdef Py_ssize_t n_batches = (n_steps + B - 1) // B
    cdef Py_ssize_t T = max(n_threads, 1)
    # Rows of W are owned by the first R threads, R the largest power of two
    # <= T, so that the owner of a row is a mask of its index, not a division.
    cdef Py_ssize_t R = 1
    cdef Py_ssize_t batch, b0, nb, s, t, c, k, own, i, n, start, count, p1, p2
    cdef Py_ssize_t *off
    cdef index_t col
    cdef double scale, lr, now, after, head_decay
    cdef double lr_slope = (lr_end - lr_begin) / n_steps if n_steps > 0 else 0.0
    cdef bint lazy = alpha > 0.0 and update_embeddings
    cdef Py_ssize_t bad_pos = n_steps
    cdef const data_t *data_ptr = &data[0] if nnz > 0 else NULL
    cdef const index_t *indices_ptr = &indices[0] if nnz > 0 else NULL
    cdef real_t *W_ptr = &W[0, 0] if n_features > 0 else NULL
    # The most entries one batch can hold.
    cdef Py_ssize_t most = min(
        B * _check_sgd_args(data, indices, indptr, y, sample_weight, order, W, coef, intercept, stamp),
        nnz,
    )
    while R * 2 <= T:
        R = R * 2

    # Per sample of a batch: embedding, gradient of the embedding, lr * gradient
    # of the logits, loss, entries (0 for a malformed row); per entry: value,
    # then step; the decay owed, then its exp.
    cdef real_t *H = <real_t *> malloc(B * d * sizeof(real_t))
    cdef real_t *DH = <real_t *> malloc(B * d * sizeof(real_t))
    cdef double *G = <double *> malloc(B * n_out * sizeof(double))
    cdef double *LOSS = <double *> malloc(B * sizeof(double))
    cdef Py_ssize_t *N = <Py_ssize_t *> malloc(B * sizeof(Py_ssize_t))
    cdef real_t *VALS = <real_t *> malloc((most + 1) * sizeof(real_t))
    cdef double *OWED = <double *> malloc((most + 1) * sizeof(double))
    # Per thread: where each sample's entries start (every thread works out its
    # own copy, so no barrier waits for it), the first malformed position it
    # met, and the batch's entries whose row of W it owns, in batch order.
    cdef Py_ssize_t *OFF = <Py_ssize_t *> malloc(T * (B + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t *BAD = <Py_ssize_t *> malloc(T * sizeof(Py_ssize_t))
    cdef index_t *OWN_IDX = <index_t *> malloc(T * (most + 1) * sizeof(index_t))
    cdef real_t *OWN_DECAY = <real_t *> malloc(T * (most + 1) * sizeof(real_t))
    cdef real_t *OWN_STEP = <real_t *> malloc(T * (most + 1) * sizeof(real_t))
    cdef Py_ssize_t *OWN_ROW = <Py_ssize_t *> malloc(T * (most + 1) * sizeof(Py_ssize_t))
    cdef double *OWN_OWED = <double *> malloc(T * (most + 1) * sizeof(double))
    cdef double loss_sum[1]  # summed by thread 0, in sample order
    cdef sb_team tm
    cdef int me, team, sense, seen, active, late, window_left
    cdef Py_ssize_t solo_left, solo_len
    tm.arrived = tm.sense = tm.sleepers = tm.recalled = tm.recall_sense = 0
    tm.next_active = T
    tm.recall_batch = 0
    loss_sum[0] = 0.0
    try:
        if (H == NULL or DH == NULL or G == NULL or LOSS == NULL or N == NULL or VALS == NULL
                or OWED == NULL or OFF == NULL or BAD == NULL or OWN_IDX == NULL
                or OWN_DECAY == NULL or OWN_STEP == NULL or OWN_ROW == NULL or OWN_OWED == NULL):
            raise MemoryError("could not allocate the mini-batch buffers")
        for t in range(T):
            BAD[t] = n_steps
        with nogil, parallel(num_threads=n_threads):
            me = threadid()
            team = omp_get_num_threads()
            active = team  # threads taking part in this batch: all, or the first alone
            sense = seen = late = 0
            window_left = LATE_WINDOW
            solo_left = 0
            solo_len = SOLO_MIN
            off = OFF + me * (B + 1)
            batch = 0
            while batch < n_batches:
                if me >= active:  # sit out until the first thread calls
                    sb_sit_out(&tm, &seen)
                    batch = tm.recall_batch
                    active = team
                    sense = tm.recall_sense
                    continue
                if active < team:
                    if solo_left == 0:
                        sb_recall(&tm, batch)
                        active = team
                        late = 0
                        window_left = LATE_WINDOW
                    else:
                        solo_left = solo_left - 1
                b0 = batch * B
                nb = min(B, n_steps - b0)
                now = _clock(alpha, lr_begin, lr_slope, b0)
                after = _clock(alpha, lr_begin, lr_slope, b0 + nb)
                # 0. where each sample's entries go (a row with a bad extent has none)
                off[0] = 0
                for s in range(nb):
                    i = order[b0 + s]
                    off[s + 1] = off[s]
                    if 0 <= indptr[i] <= indptr[i + 1] <= nnz:
                        off[s + 1] = off[s] + indptr[i + 1] - indptr[i]

                # 1. gradients of every sample at the parameters of the batch's start
                # (each written to its own slot, so any thread may take any sample)
                for s in range(me * nb // active, (me + 1) * nb // active):
                    p1 = _next_in_batches(b0 + s, B, n_steps, me, active)
                    p2 = _next_in_batches(p1, B, n_steps, me, active)
                    _prefetch_sample(
                        order, p1, p2, _next_in_batches(p2, B, n_steps, me, active), &indptr[0],
                        data_ptr, indices_ptr, &y[0], &sample_weight[0], nnz, W_ptr, n_features, d,
                        &stamp[0] if lazy else NULL,
                    )
                    i = order[b0 + s]
                    start = indptr[i]
                    n = off[s + 1] - off[s]
                    if not _row_ok(indices_ptr, start, start + n, nnz, n_features):
                        BAD[me] = min(BAD[me], b0 + s)
                        n = 0
                    N[s] = n
                    lr = lr_begin + lr_slope * (b0 + s)
                    scale = _row_scale(combiner, data_ptr, start, start + n)
                    if lazy:
                        for k in range(n):
                            OWED[off[s] + k] = sb_lesser(0.0, now - stamp[indices_ptr[start + k]])
                        sb_exp_neg(OWED + off[s], n)
                        for k in range(n):
                            VALS[off[s] + k] = <real_t> (data_ptr[start + k] * scale * OWED[off[s] + k])
                    else:
                        for k in range(n):
                            VALS[off[s] + k] = <real_t> (data_ptr[start + k] * scale)
                    _bag_values(W_ptr, d, indices_ptr + start, VALS + off[s], n, H + s * d)
                    _gemv(&coef[0, 0], &intercept[0], n_out, d, H + s * d, G + s * n_out)
                    LOSS[s] = sample_weight[i] * _loss_grad(
                        G + s * n_out, n_out, y[i], sample_weight[i]
                    )
                    _gemv_t(&coef[0, 0], n_out, d, G + s * n_out, DH + s * d)
                    for c in range(n_out):
                        G[s * n_out + c] = lr * G[s * n_out + c]
                    for k in range(n):
                        VALS[off[s] + k] = <real_t> (lr * scale * data_ptr[start + k])
                if active > 1:
                    late = late + sb_barrier_wait(&tm, active, &sense)

                # 2. the steps, in sample order; task t owns the rows c of coef
                # that are t modulo T, and the rows of W that are t modulo R
                head_decay = exp(after - now)
                if me == 0:
                    for s in range(nb):
                        loss_sum[0] = loss_sum[0] + LOSS[s]
                t = me
                while t < T:
                    _apply_head_steps(&coef[0, 0], &intercept[0], n_out, d, G, H, nb, head_decay, t, T)
                    if update_embeddings and t < R:
                        count = 0
                        own = t * (most + 1)
                        for s in range(nb):
                            start = indptr[order[b0 + s]]
                            for k in range(N[s]):
                                col = indices_ptr[start + k]
                                if (col & (R - 1)) != t:
                                    continue
                                # (read by the sample's thread: claim it for the scatter)
                                sb_prefetch_bytes_w(W_ptr + <size_t> col * d, d * sizeof(real_t))
                                OWN_IDX[own + count] = col
                                OWN_STEP[own + count] = VALS[off[s] + k]
                                OWN_ROW[own + count] = s
                                if lazy:  # the row's decay owed up to the batch's end, once
                                    OWN_OWED[own + count] = sb_lesser(0.0, after - stamp[col])
                                    stamp[col] = sb_lesser(stamp[col], after)
                                count = count + 1
                        if lazy:
                            sb_exp_neg(OWN_OWED + own, count)
                            for k in range(count):
                                OWN_DECAY[own + k] = <real_t> OWN_OWED[own + k]
                        _scatter(W_ptr, d, OWN_IDX + own, OWN_DECAY + own if lazy else NULL,
                                 OWN_STEP + own, count, DH, OWN_ROW + own)
                    t = t + active
                if me == 0 and active == team:
                    # the team of the next batch, read by all after the barrier
                    tm.next_active = team
                    window_left = window_left - 1
                    if late >= LATE_LIMIT and team > 1:
                        tm.next_active = 1
                        solo_left = solo_len
                        solo_len = min(2 * solo_len, SOLO_MAX)
                        late = 0
                        window_left = LATE_WINDOW
                    elif window_left == 0:
                        solo_len = SOLO_MIN
                        late = 0
                        window_left = LATE_WINDOW
                if active > 1:  # (alone, the first thread must not move the barrier's
                    # sense under a thread that has yet to see it leave the last barrier)
                    late = late + sb_barrier_wait(&tm, active, &sense)
                if active == team:
                    active = tm.next_active
                batch = batch + 1
            if me == 0 and active < team:  # the others exit with the pass done
                sb_recall(&tm, n_batches)
        for t in range(T):
            bad_pos = min(bad_pos, BAD[t])
    finally:
        free(H)
        free(DH)
        free(G)
        free(LOSS)
        free(N)
        free(VALS)
        free(OWED)
        free(OFF)
        free(BAD)
        free(OWN_IDX)
        free(OWN_DECAY)
        free(OWN_STEP)
        free(OWN_ROW)
        free(OWN_OWED)
    return loss_sum[0], _clock(alpha, lr_begin, lr_slope, n_steps), order[bad_pos] if bad_pos < n_steps else -1
