"""Every instruction set compiled in gives the reference result, and X is never copied."""
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

import reference
import sparsebed
from sparsebed import _kernels
from sparsebed._ops import csr_arrays


@pytest.fixture(params=_kernels.simd_supported())
def isa(request):
    previous = _kernels.set_simd_isa(request.param)
    yield request.param
    _kernels.set_simd_isa(None)
    assert _kernels.simd_isa() == previous


def test_default_is_the_widest_supported():
    assert _kernels.simd_isa() == _kernels.simd_supported()[-1]
    assert sparsebed.show_config(file=open("/dev/null", "w"))["simd"] == _kernels.simd_isa()
    with pytest.raises(ValueError, match="not available"):
        _kernels.set_simd_isa("sse9")


@pytest.mark.parametrize("n_features", [500, 6000])
@pytest.mark.parametrize("dim", [1, 2, 3, 4, 8, 16, 24, 32, 64, 100, 128, 257])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
def test_every_isa_matches_the_reference(isa, dim, dtype, combiner, n_features):
    # Widths that exercise each strip size (8, 4, 2, 1 vectors) and the tail,
    # and rows of 1, 2, 4 and 8 whole vectors of every instruction set, each
    # summed by a loop for that length (dims 2-16 for float64 16-byte vectors,
    # up to 16-128 for float32 64-byte ones), on tables small enough to be
    # summed without prefetching and large enough to be prefetched (above
    # 256 KB).
    rng = np.random.default_rng(dim)
    X = sp.random(300, n_features, density=15 / n_features, format="csr", random_state=dim,
                  dtype=np.float64)
    X.data -= 0.3
    W = rng.standard_normal((n_features, dim)).astype(dtype)
    out = sparsebed.embedding_sum(X, W, combiner=combiner)
    expected = reference.embedding_sum(X, W, combiner)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    scale = reference.embedding_sum(abs(X), np.abs(W), combiner) if combiner == "sum" else 1
    np.testing.assert_allclose(out, expected, rtol=rtol, atol=rtol * np.max(np.abs(scale)) * 10)


@pytest.mark.parametrize("n_features", [500, 6000])
@pytest.mark.parametrize("dim", [3, 16, 64, 256, 257])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_every_isa_skips_bad_indices_without_reading_outside_the_table(
    isa, dim, dtype, index_dtype, n_features
):
    # Each index is checked as its row of W is summed, in the first strip of
    # columns. A bad one, alone, at a block's first or last entry, a few
    # entries into a row (within the prefetch distance of its start) or at the
    # very end, is found before W is read there by every loop (rows of one
    # strip or several, the scalar tail; prefetched or not), and only its row
    # comes out zero. The table sits between rows of NaN: a read outside it
    # would show.
    X = sp.random(300, n_features, density=15 / n_features, format="csr", random_state=dim,
                  dtype=np.float64)
    W = np.full((2 + n_features + 2, dim), np.nan, dtype)[2:-2]
    W[...] = np.random.default_rng(dim).standard_normal((n_features, dim))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    cases = [(0, 0, n_features), (63, -1, -1), (130, 5, np.iinfo(index_dtype).max),
             (299, -1, n_features)]  # fmt: skip
    for row, position, index in cases:
        assert X.indptr[row + 1] - X.indptr[row] > 5
        indices, indptr = X.indices.astype(index_dtype), X.indptr.astype(index_dtype)
        indices[indptr[row + (position < 0)] + position] = index
        good = X.copy()
        good.data[good.indptr[row] : good.indptr[row + 1]] = 0.0
        expected = reference.embedding_sum(good, W, "sum")
        for n_threads in (1, 2):
            out = np.full((300, dim), np.nan, dtype)
            result = _kernels.embedding_sum(X.data, indices, indptr, W, out, 0, n_threads)
            assert result == (row, True), (row, position, index)
            np.testing.assert_allclose(out, expected, rtol=rtol, atol=rtol)
            assert not out[row].any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_isa_finds_each_non_finite_output(isa, dtype):
    # The forward kernel checks its output block by block; a NaN or an
    # infinity in any column (vector body or scalar tail) of any row is found.
    X = sp.random(130, 40, density=0.1, format="csr", random_state=1) + sp.eye(130, 40, format="csr")
    X.sort_indices()
    for dim in (1, 16, 37):
        W = np.ones((40, dim), dtype=dtype)
        result = _kernels.embedding_sum(
            X.data, X.indices, X.indptr, W, np.empty((130, dim), dtype), 0, 1
        )
        assert result == (-1, True)
        for row, col, value in [(0, 0, np.nan), (129, dim - 1, np.inf), (70, dim // 2, -np.inf)]:
            W_bad = W.copy()
            W_bad[X.indices[X.indptr[row]], col] = value
            result = _kernels.embedding_sum(
                X.data, X.indices, X.indptr, W_bad, np.empty((130, dim), dtype), 0, 2
            )
            assert result == (-1, False), (dim, row, col)


@pytest.mark.parametrize("n_out", [1, 4])
def test_every_isa_trains_like_the_reference(isa, n_out):
    rng = np.random.default_rng(0)
    X = sp.random(80, 60, density=0.1, format="csr", random_state=0)
    y = rng.integers(0, max(n_out, 2), 80).astype(np.int32)
    sw = rng.uniform(0.5, 2.0, 80)
    order = rng.permutation(80).astype(np.int64)
    for d in (5, 64):
        W = rng.standard_normal((60, d))
        coef = rng.standard_normal((n_out, d)) * 0.1
        b = np.zeros(n_out)
        W1, c1, b1 = W.copy(), coef.copy(), b.copy()
        ref_loss = reference.sgd_epoch(X, y, sw, order, W1, c1, b1, "sqrtn", 0.3, 0.1, 0.01)
        W2, c2, b2, stamp = W.copy(), coef.copy(), b.copy(), np.zeros(60)
        loss, clock, bad = _kernels.sgd_epoch(
            X.data, X.indices, X.indptr, y, sw, order, W2, c2, b2, stamp,
            _kernels.COMBINERS["sqrtn"], 0.3, 0.1, 0.01, True, 1,
        )  # fmt: skip
        _kernels.apply_decay(W2, stamp, clock, 1)
        assert bad == -1
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-10)
        for got, want in ((W2, W1), (c2, c1), (b2, b1)):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_csr_input_is_used_without_a_copy():
    X = sp.random(20_000, 5_000, density=0.01, format="csr", random_state=0, dtype=np.float32)
    data, indices, indptr = csr_arrays(X, X.shape[1], "sum")
    assert data is X.data and indices is X.indices and indptr is X.indptr
    X64 = X.astype(np.float64)
    assert csr_arrays(X64, X.shape[1], "mean")[0] is X64.data
    # Transform allocates its output and nothing in proportion to nnz.
    W = np.ones((5_000, 8), dtype=np.float32)
    emb = sparsebed.SparseEmbedding(init=W).fit(X[:1])
    tracemalloc.start()
    out = emb.transform(X)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < out.nbytes + 0.1 * X.data.nbytes
    # ... which starts on a cache line, so that its rows' vector stores do
    # not straddle two lines.
    assert out.ctypes.data % 64 == 0 and out.flags.c_contiguous and out.flags.writeable
