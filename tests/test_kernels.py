"""The compiled kernels against the slow NumPy references of ``reference.py``.

Forward: ``embedding_sum`` (public and kernel) for every dtype combination and
combiner, on CSR matrices built from raw arrays (duplicates, unsorted indices,
explicit zeros, empty rows and rows whose values sum to 0 are all kept as
given). Safety: malformed CSR structures are reported, never read out of
bounds. Training: ``sgd_epoch`` against ``reference.sgd_epoch``, its update
against finite differences of the loss, malformed rows skipped, and the
multi-threaded (Hogwild) pass.
"""
import itertools

import numpy as np
import pytest
import scipy.sparse as sp

import reference
import sparsebed
from sparsebed import _kernels

COMBINERS = ("sum", "mean", "sqrtn")
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


# ---------------------------------------------------------------- helpers


def csr_from_rows(rows, n_features, data_dtype=np.float64, index_dtype=np.int32):
    """CSR matrix holding ``rows`` (lists of (columns, values)) exactly as given.

    Duplicates, unsorted columns and explicit zeros are kept: scipy is not
    asked to canonicalise, and the index arrays get ``index_dtype`` even where
    scipy would have chosen another.
    """
    indptr = np.zeros(len(rows) + 1, dtype=index_dtype)
    indptr[1:] = np.cumsum([len(cols) for cols, _ in rows])
    indices = np.array([c for cols, _ in rows for c in cols], dtype=index_dtype)
    data = np.array([v for _, vals in rows for v in vals], dtype=data_dtype)
    X = sp.csr_matrix((data, indices, indptr), shape=(len(rows), n_features))
    X.indices, X.indptr = indices, indptr
    assert X.data.dtype == data_dtype
    assert np.array_equal(X.data, data) and np.array_equal(X.indices, indices)
    return X


def random_rows(rng, n_rows, n_features, max_len=8, negative=0.3, min_mean_scale=0.0):
    """Random bags: duplicates and unsorted columns occur, some rows are empty.

    A non-empty row whose values nearly cancel (``|sum| < min_mean_scale *
    sum |x|``) is drawn again: its "mean" would be huge.
    """
    rows = []
    while len(rows) < n_rows:
        n = int(rng.integers(0, max_len + 1))
        cols = rng.integers(0, n_features, size=n).tolist()
        vals = np.where(rng.random(n) < negative, -1.0, 1.0) * rng.uniform(0.1, 2.0, size=n)
        if n and abs(vals.sum()) < min_mean_scale * np.abs(vals).sum():
            continue
        rows.append((cols, vals.tolist()))
    return rows


def special_rows(n_features):
    """Rows for the edge cases, and which rows must come out as zeros."""
    rows = [
        ([], []),  # 0: empty
        ([3, 3, 1], [1.0, 2.0, 0.5]),  # 1: duplicate column
        ([7, 2, 5], [0.5, -1.5, 2.0]),  # 2: unsorted columns, a negative value
        ([4, 9], [1.0, -1.0]),  # 3: values sum to 0 (mean: zeros)
        ([6, 6], [1.0, -1.0]),  # 4: a duplicate that cancels out
        ([0, 8], [0.0, 1.5]),  # 5: an explicit zero
        ([5, 1], [0.0, 0.0]),  # 6: only explicit zeros
        ([2, 7, 3], [2.0, -1.0, -1.0]),  # 7: sum 0 with three values
        ([n_features - 1, 0], [-2.0, 0.5]),  # 8: last column, negative sum
        ([], []),  # 9: empty
        ([1], [-3.0]),  # 10: one negative value
    ]
    zeros_always = [0, 4, 6, 9]
    zeros_mean = [3, 7]
    return rows, zeros_always, zeros_mean


def forward_problem(data_dtype, W_dtype, index_dtype, seed=0, n_features=40, d=7):
    rng = np.random.default_rng(seed)
    rows, zeros_always, zeros_mean = special_rows(n_features)
    rows = rows + random_rows(rng, 150, n_features) + [([], [])]
    zeros_always = zeros_always + [len(rows) - 1]
    X = csr_from_rows(rows, n_features, data_dtype, index_dtype)
    W = rng.normal(size=(n_features, d)).astype(W_dtype)
    return X, W, zeros_always, zeros_mean


def stored_f64(X):
    """A float64 copy of X with its entries as stored (scipy's astype would
    sum duplicates, in X itself too)."""
    return sp.csr_matrix(
        (X.data.astype(np.float64), X.indices.copy(), X.indptr.copy()), shape=X.shape
    )


def canonical(X):
    """The same matrix with each row's duplicate columns summed, in float64."""
    X = stored_f64(X)
    X.sum_duplicates()
    return X


def error_bound(X, X_ref, W, combiner):
    """Per-entry scale of the rounding error of the embedding sum.

    ``|scale_i| * (|X_i| @ |W|)`` with the stored entries of ``X`` and the
    scale of ``X_ref`` (``X`` or its canonical form), times the condition
    number of the row's divisor for "mean" (``sum |x| / |sum x|``). It is 0
    exactly where the result must be exactly 0 (empty rows, rows whose
    divisor is 0).
    """
    X, X_ref = stored_f64(X), stored_f64(X_ref)
    # |X| entry by entry as stored (scipy's abs() would sum duplicates first,
    # hiding the rounding of a pair that cancels).
    X_abs = sp.csr_matrix((np.abs(X.data), X.indices, X.indptr), shape=X.shape)
    base = np.asarray(X_abs @ np.abs(W.astype(np.float64)))
    for i in range(X.shape[0]):
        vals = X.data[X.indptr[i] : X.indptr[i + 1]]
        scale = abs(reference.combiner_scale(X_ref.data[X_ref.indptr[i] : X_ref.indptr[i + 1]], combiner))
        if combiner == "mean":
            scale *= max(1.0, np.abs(vals).sum() * scale)
        base[i] *= scale
    return base


def assert_embedding_close(out, X, W, combiner, summed=False):
    """``out`` is the embedding sum of ``X``: of its stored entries, or with
    ``summed`` of the matrix they stand for (duplicate columns summed)."""
    X_ref = canonical(X) if summed else X
    expected = reference.embedding_sum(X_ref, W, combiner)
    assert out.dtype == W.dtype
    assert out.shape == expected.shape
    assert np.isfinite(out).all()
    err = np.abs(out.astype(np.float64) - expected)
    bound = RTOL[W.dtype.type] * error_bound(X, X_ref, W, combiner)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert (err <= bound).all(), (
        f"row {worst[0]}: got {out[worst]}, expected {expected[worst]}, "
        f"error {err[worst]:.3g} > bound {bound[worst]:.3g}"
    )


def kernel_embedding_sum(X, W, combiner, n_threads=1):
    """Call the forward kernel directly; return (out, bad_row)."""
    out = np.full((X.shape[0], W.shape[1]), np.nan, dtype=W.dtype)
    bad, finite = _kernels.embedding_sum(
        X.data, X.indices, X.indptr, W, out, _kernels.COMBINERS[combiner], n_threads
    )
    assert finite == np.isfinite(out).all()
    return out, bad


def padded(a, before, after, fill):
    """A view of ``a`` inside a larger buffer whose margins hold ``fill``.

    A kernel that reads past either end of the view reads the trap values.
    """
    full = np.empty((before + len(a) + after,) + a.shape[1:], dtype=a.dtype)
    full[:before] = fill
    full[before + len(a) :] = fill
    full[before : before + len(a)] = a
    view = full[before : before + len(a)]
    assert view.flags.c_contiguous
    return full, view


# ------------------------------------------------------------ embedding_sum


# Tables of at most 256 KB are summed without prefetching, larger ones with.
TABLE_SIZES = pytest.mark.parametrize("n_features", [40, 10_000], ids=["small", "prefetched"])


@TABLE_SIZES
@pytest.mark.parametrize("combiner", COMBINERS)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("W_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("data_dtype", [np.float32, np.float64])
def test_embedding_sum_matches_reference(data_dtype, W_dtype, index_dtype, combiner, n_features):
    X, W, zeros_always, zeros_mean = forward_problem(
        data_dtype, W_dtype, index_dtype, n_features=n_features
    )
    assert X.indices.dtype == index_dtype and X.indptr.dtype == index_dtype
    zero_rows = zeros_always + (zeros_mean if combiner == "mean" else [])
    stored = [a.copy() for a in (X.data, X.indices, X.indptr)]

    # The public function computes on the matrix X stands for: a column
    # stored twice in a row counts with the sum of its values, as in scipy
    # (this matters for "sqrtn", whose divisor is the norm of the row).
    public = sparsebed.embedding_sum(X, W, combiner=combiner)
    assert_embedding_close(public, X, W, combiner, summed=True)
    assert np.array_equal(public[zero_rows], np.zeros((len(zero_rows), W.shape[1])))

    # The kernel computes on the stored entries, as its docstring says:
    # scale_i from the values data[k] of the row's entries.
    out, bad = kernel_embedding_sum(X, W, combiner)
    assert bad == -1
    assert_embedding_close(out, X, W, combiner)
    # Exactly zero where no stored value is non-zero; a stored pair that
    # cancels (row 4) is zero only to rounding once FMA contracts the sum,
    # which the error bound above checks.
    stored_zero = [i for i in zero_rows if not X.data[X.indptr[i] : X.indptr[i + 1]].any()]
    assert np.array_equal(out[stored_zero], np.zeros((len(stored_zero), W.shape[1])))

    # Neither changed the input (no canonicalising in place).
    for a, b in zip((X.data, X.indices, X.indptr), stored):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_embedding_sum_sum_combiner_is_matrix_product():
    X, W, _, _ = forward_problem(np.float64, np.float64, np.int64, seed=1)
    np.testing.assert_allclose(
        sparsebed.embedding_sum(X, W), X @ W, rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize(
    "combiner, expected",
    [
        ("sum", [[6.0, 10.0], [3.0, 2.0], [0.0, 0.0]]),
        ("mean", [[3.0, 5.0], [3.0, 2.0], [0.0, 0.0]]),
        ("sqrtn", [[6.0 / np.sqrt(10.0), 10.0 / np.sqrt(10.0)], [3.0, 2.0], [0.0, 0.0]]),
    ],
)
def test_embedding_sum_hand_computed(combiner, expected):
    W = np.array([[2.0, 3.0], [3.0, 2.0], [0.0, -1.0]])
    # X is [[3, 0, -1], [0, 1, 0], [0, 0, 0]], row 1 stored with column 2
    # twice (values 2 and -2).
    # row 0: 3 W[0] - W[2] = (6, 10); values sum to 2, norm sqrt(10).
    # row 1: W[1] + 2 W[2] - 2 W[2] = (3, 2); values sum to 1, norm 1.
    # row 2: empty.
    X = csr_from_rows([([2, 0], [-1.0, 3.0]), ([1, 2, 2], [1.0, 2.0, -2.0]), ([], [])], 3)
    np.testing.assert_allclose(
        sparsebed.embedding_sum(X, W, combiner=combiner), expected, rtol=1e-15
    )


# Powers of 2, so that scaling is exact in float32 and float64 alike.
FACTORS = {"2^-100": 2.0**-100, "2^-66": 2.0**-66, "2^66": 2.0**66, "2^100": 2.0**100}


@pytest.mark.parametrize("factor", FACTORS.values(), ids=FACTORS.keys())
@pytest.mark.parametrize("W_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("data_dtype", [np.float32, np.float64])
def test_embedding_sum_sqrtn_is_scale_invariant(data_dtype, W_dtype, factor):
    # "sqrtn" divides a row by the norm of its values, so scaling the values
    # changes nothing, as long as the values and the sums fit the dtypes
    # (float32 holds 1e-30 .. 1e30 and their products with W; their squares
    # it does not, so the sum of squares must not be taken in float32).
    X, W, _, _ = forward_problem(np.float32, W_dtype, np.int32, seed=6)
    # No duplicates (so that only the scale matters) and values that float32
    # holds: the scaled copy has exactly the scaled values in either dtype.
    X = canonical(X)
    X.data = X.data.astype(np.float32).astype(np.float64)
    X_scaled = X.copy()
    X_scaled.data = (X.data * factor).astype(data_dtype)
    rtol = 1e-5 if W_dtype == np.float32 else 1e-12
    public = lambda X: sparsebed.embedding_sum(X, W, combiner="sqrtn")  # noqa: E731
    kernel = lambda X: kernel_embedding_sum(X, W, "sqrtn")[0]  # noqa: E731
    for embed in (public, kernel):
        out = embed(X_scaled)
        assert_embedding_close(out, X_scaled, W, "sqrtn")
        np.testing.assert_allclose(out, embed(X), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("index_dtypes", [(np.int32, np.int64), (np.int64, np.int32)])
def test_embedding_sum_mixed_index_dtypes(index_dtypes):
    X, W, _, _ = forward_problem(np.float64, np.float64, np.int32, seed=2)
    X.indices = X.indices.astype(index_dtypes[0])
    X.indptr = X.indptr.astype(index_dtypes[1])
    assert_embedding_close(sparsebed.embedding_sum(X, W, combiner="sqrtn"), X, W, "sqrtn", summed=True)


@pytest.mark.parametrize("convert", [sp.coo_matrix, sp.csc_matrix, lambda X: X.toarray()])
def test_embedding_sum_other_input_formats(convert):
    X, W, _, _ = forward_problem(np.float64, np.float64, np.int32, seed=3)
    X.sum_duplicates()  # dense and COO -> CSR round trips cannot keep duplicates apart
    for combiner in COMBINERS:
        expected = sparsebed.embedding_sum(X, W, combiner=combiner)
        np.testing.assert_allclose(
            sparsebed.embedding_sum(convert(X), W, combiner=combiner), expected, rtol=1e-12, atol=1e-14
        )


def test_embedding_sum_no_rows():
    W = np.ones((5, 3), dtype=np.float32)
    out = sparsebed.embedding_sum(sp.csr_matrix((0, 5)), W, combiner="mean")
    assert out.shape == (0, 3) and out.dtype == np.float32


@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("combiner", COMBINERS)
@pytest.mark.parametrize("W_dtype", [np.float32, np.float64])
def test_embedding_sum_writes_into_out_when_given(W_dtype, combiner, n_jobs):
    X, W, _, _ = forward_problem(np.float32, W_dtype, np.int32, seed=5)
    expected = sparsebed.embedding_sum(X, W, combiner=combiner, n_jobs=n_jobs)
    out = np.full(expected.shape, np.nan, dtype=W_dtype)  # every value must be written
    for _ in range(2):  # the same array again: the point of passing it
        got = sparsebed.embedding_sum(X, W, combiner=combiner, n_jobs=n_jobs, out=out)
        assert got is out
        np.testing.assert_array_equal(out, expected)


def _out_cases():
    X, W, _, _ = forward_problem(np.float64, np.float64, np.int32, seed=6)
    n, d = X.shape[0], W.shape[1]
    read_only = np.empty((n, d))
    read_only.flags.writeable = False
    both = np.empty((n + W.shape[0], d))  # out's last two rows are W's first two
    both[n - 2 : n - 2 + W.shape[0]] = W
    return X, W, {
        "a list": ([[0.0] * d] * n, W, "must be a numpy array"),
        "too few rows": (np.empty((n - 1, d)), W, r"shape \(%d, %d\)" % (n, d)),
        "too many columns": (np.empty((n, d + 1)), W, "shape"),
        "float32 for a float64 table": (np.empty((n, d), np.float32), W, "dtype float64"),
        "Fortran order": (np.empty((n, d), order="F"), W, "C-contiguous"),
        "a strided slice": (np.empty((n, 2 * d))[:, ::2], W, "C-contiguous"),
        "read-only": (read_only, W, "writeable"),
        "sharing W's memory": (both[:n], both[n - 2 : n - 2 + W.shape[0]], "shares memory"),
    }


@pytest.mark.parametrize("case", sorted(_out_cases()[2]))
def test_embedding_sum_refuses_an_out_it_cannot_write(case):
    X, _, cases = _out_cases()
    out, W, message = cases[case]
    with pytest.raises(ValueError, match=message):
        sparsebed.embedding_sum(X, W, out=out)


def test_embedding_sum_refuses_an_out_that_is_xs_values():
    X = sp.csr_matrix(np.arange(1.0, 7.0).reshape(2, 3))  # six stored values
    W = np.ones((3, 3))
    with pytest.raises(ValueError, match="shares memory"):
        sparsebed.embedding_sum(X, W, out=X.data.reshape(2, 3))
    np.testing.assert_array_equal(X.data, np.arange(1.0, 7.0))  # X is untouched


@pytest.mark.parametrize("combiner", COMBINERS)
@pytest.mark.parametrize("W_dtype", [np.float32, np.float64])
def test_embedding_sum_same_result_for_any_thread_count(W_dtype, combiner):
    rng = np.random.default_rng(4)
    n_features = 300
    X = csr_from_rows(random_rows(rng, 3000, n_features, max_len=20), n_features)
    W = rng.normal(size=(n_features, 9)).astype(W_dtype)
    one = sparsebed.embedding_sum(X, W, combiner=combiner, n_jobs=1)
    assert_embedding_close(one, X, W, combiner, summed=True)
    for n_jobs in (None, 2, -1, 8):
        assert np.array_equal(sparsebed.embedding_sum(X, W, combiner=combiner, n_jobs=n_jobs), one)
    one, bad = kernel_embedding_sum(X, W, combiner, n_threads=1)
    assert bad == -1
    for n_threads in (2, 3):
        out, bad = kernel_embedding_sum(X, W, combiner, n_threads=n_threads)
        assert bad == -1
        assert np.array_equal(out, one)


# ------------------------------------------------------------ malformed CSR


def valid_matrix(index_dtype=np.int32):
    """Six non-empty rows over 10 features; feature 9 is named by no row."""
    rows = [
        ([0, 1], [1.0, 2.0]),
        ([2, 3, 2], [1.0, -1.0, 0.5]),
        ([4], [2.0]),
        ([5, 6, 7], [1.0, 1.0, 1.0]),
        ([8, 0], [3.0, 1.0]),
        ([3, 1], [0.5, 0.5]),
    ]
    return csr_from_rows(rows, 10, np.float64, index_dtype)


def _set(array_name, position, value):
    def edit(X):
        getattr(X, array_name)[position] = value

    return edit


def _replace(array_name, make):
    def edit(X):
        setattr(X, array_name, make(getattr(X, array_name)))

    return edit


# (edit, the malformed rows as the kernels see them: a tuple, first one
#  first; None when the kernels have nothing to skip; "raise" when they raise,
#  pattern of the public error message)
MALFORMED = {
    "column == n_features": (_set("indices", 6, 10), (3,), r"row 3: .*column index 10, outside \[0, 10\)"),
    "column huge": (_set("indices", 6, 10**6), (3,), r"row 3: .*column index 1000000"),
    "column negative": (_set("indices", 6, -1), (3,), r"row 3: .*column index -1, outside"),
    "column negative in last row": (_set("indices", -1, -5), (5,), r"row 5: .*column index -5"),
    "indptr decreasing": (_set("indptr", 3, 2), (2,), r"row 2: its extent indptr\[2:4\] = \[5, 2\]"),
    "indptr past indices": (_set("indptr", 2, 100), (1, 2), r"row 1: its extent indptr\[1:3\] = \[2, 100\]"),
    "indptr[-1] > len(indices)": (_set("indptr", -1, 15), (5,), r"indptr runs from 0 to 15 .* len\(indices\) = 13"),
    "indptr[-1] == len(indices) + 1": (_set("indptr", -1, 14), (5,), r"indptr runs from 0 to 14 .* len\(indices\) = 13"),
    "indptr[-1] < len(indices)": (_set("indptr", -1, 12), None, r"indptr runs from 0 to 12 .* len\(indices\) = 13"),
    "indptr[0] != 0": (_set("indptr", 0, 1), None, r"indptr runs from 1 to 13"),
    "data shorter": (_replace("data", lambda a: a[:-1].copy()), "raise", r"data has 12 entries but indices has 13"),
    "data longer": (_replace("data", lambda a: np.append(a, 1.0)), "raise", r"data has 14 entries but indices has 13"),
}


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_public_embedding_sum_rejects_malformed_csr(case, index_dtype):
    edit, _, message = MALFORMED[case]
    X = valid_matrix(index_dtype)
    edit(X)
    W = np.ones((10, 3))
    with pytest.raises(ValueError, match=message):
        sparsebed.embedding_sum(X, W, combiner="mean", n_jobs=2)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize(
    "case", [c for c, (_, bad, _) in MALFORMED.items() if isinstance(bad, tuple)]
)
def test_kernels_report_malformed_row_without_reading_out_of_bounds(case, index_dtype):
    edit, bad_rows, _ = MALFORMED[case]
    X = valid_matrix(index_dtype)
    edit(X)
    n_features = 10
    rng = np.random.default_rng(5)
    # The table sits between rows of NaN, and W[9] (named by no row) is NaN:
    # any read outside the table, or outside `indices` (whose margins name
    # column 9), would turn an output NaN.
    W_good = rng.normal(size=(n_features, 4))
    W_good[9] = np.nan
    _, W = padded(W_good, 2, 2, np.nan)
    _, indices = padded(X.indices, 4, 200, 9)
    _, data = padded(X.data, 4, 200, 1.0)
    indptr = X.indptr

    assert _kernels.first_bad_row(indices, indptr, n_features) == bad_rows[0]
    good = valid_matrix(index_dtype)

    for combiner, n_threads in itertools.product(COMBINERS, (1, 2)):
        out = np.full((X.shape[0], 4), np.nan)
        got, finite = _kernels.embedding_sum(
            data, indices, indptr, W, out, _kernels.COMBINERS[combiner], n_threads
        )
        assert got in bad_rows and finite
        assert np.array_equal(out[list(bad_rows)], np.zeros((len(bad_rows), 4)))
        assert np.isfinite(out).all()
        # The rows before the first bad one are still computed right.
        first = bad_rows[0]
        expected = reference.embedding_sum(good, W_good, combiner)
        np.testing.assert_allclose(out[:first], expected[:first], rtol=1e-12)


@TABLE_SIZES
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_bad_rows_among_many_leave_every_other_row_right(index_dtype, n_features):
    # The kernel checks each index of a block of rows as it sums them, and
    # where one fails does the block again row by row: the good rows of a
    # failing block and the blocks around it must come out as if the bad rows
    # were absent.
    X = sp.random(300, n_features, density=8 / n_features, format="csr", random_state=3)
    X.indices = X.indices.astype(index_dtype)
    X.indptr = X.indptr.astype(index_dtype)
    bad_rows = [150, 151, 260]
    assert all(X.indptr[i + 1] > X.indptr[i] for i in bad_rows)
    X.indices[X.indptr[150]] = n_features
    X.indices[X.indptr[151 + 1] - 1] = -1
    X.indices[X.indptr[260]] = n_features + 7
    good = X.copy()
    for i in bad_rows:
        good.data[good.indptr[i] : good.indptr[i + 1]] = 0.0
        good.indices[good.indptr[i] : good.indptr[i + 1]] = 0
    W = np.random.default_rng(4).normal(size=(n_features, 20))
    expected = reference.embedding_sum(good, W, "sum")
    for n_threads in (1, 2):
        out, bad = kernel_embedding_sum(X, W, "sum", n_threads)
        assert bad in bad_rows
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_kernel_refuses_a_table_with_no_columns():
    # Its sums would read no index, and so check none.
    X = valid_matrix()
    out = np.empty((X.shape[0], 0))
    with pytest.raises(ValueError, match="W has no columns"):
        _kernels.embedding_sum(X.data, X.indices, X.indptr, np.empty((10, 0)), out, 0, 1)


def test_first_bad_row_reports_the_first():
    X = valid_matrix()
    assert _kernels.first_bad_row(X.indices, X.indptr, 10) == -1
    assert _kernels.first_bad_row(X.indices, X.indptr, 8) == 4  # row 4 names column 8
    X.indices[-1] = 10  # row 5
    X.indices[3] = -1  # row 1
    assert _kernels.first_bad_row(X.indices, X.indptr, 10) == 1


@pytest.mark.parametrize("case", ["data shorter", "data longer"])
def test_kernel_embedding_sum_rejects_mismatched_lengths(case):
    X = valid_matrix()
    MALFORMED[case][0](X)
    out = np.zeros((X.shape[0], 3))
    with pytest.raises(ValueError, match="inconsistent CSR arrays"):
        _kernels.embedding_sum(X.data, X.indices, X.indptr, np.ones((10, 3)), out, 0, 1)


def test_kernel_embedding_sum_rejects_wrong_output_shape():
    X = valid_matrix()
    with pytest.raises(ValueError, match="inconsistent CSR arrays"):
        _kernels.embedding_sum(X.data, X.indices, X.indptr, np.ones((10, 3)), np.zeros((5, 3)), 0, 1)
    with pytest.raises(ValueError, match="wrong number of columns"):
        _kernels.embedding_sum(X.data, X.indices, X.indptr, np.ones((10, 3)), np.zeros((6, 2)), 0, 1)


# ---------------------------------------------------------------- sgd_epoch


def sgd_problem(n_out, index_dtype=np.int32, data_dtype=np.float64, seed=0, n_features=20, d=5):
    """A small training set with the forward kernel's edge cases, and a start."""
    rng = np.random.default_rng(seed)
    rows, _, _ = special_rows(n_features)
    rows = rows + random_rows(rng, 25, n_features, max_len=6, min_mean_scale=0.3)
    X = csr_from_rows(rows, n_features, data_dtype, index_dtype)
    n = X.shape[0]
    y = rng.integers(0, 2 if n_out == 1 else n_out, size=n).astype(np.int32)
    sample_weight = rng.uniform(0.2, 2.0, size=n)
    sample_weight[[2, 12]] = 0.0
    # Starting values that float32 holds exactly, so that float32 runs start
    # from the same point as the float64 reference.
    as32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731
    W = as32(rng.normal(scale=0.5, size=(n_features, d)))
    coef = as32(rng.normal(scale=0.5, size=(n_out, d)))
    intercept = as32(rng.normal(scale=0.2, size=n_out))
    # Two passes, each over a random order with repeats.
    orders = [rng.integers(0, n, size=2 * n).astype(np.int64) for _ in range(2)]
    return X, y, sample_weight, orders, W, coef, intercept


# (lr_begin, lr_end) of each pass: a linear schedule, as the classifier's.
SCHEDULE = [(0.3, 0.1), (0.1, 0.02)]


def run_kernel(X, y, sample_weight, orders, W, coef, intercept, combiner, alpha,
               update_embeddings, n_threads=1, schedule=SCHEDULE):
    """Passes of the kernel as the classifier runs them; parameters updated in place."""
    stamp = np.zeros(W.shape[0])
    losses = []
    for order, (lr_begin, lr_end) in zip(orders, schedule):
        loss, clock, bad = _kernels.sgd_epoch(
            X.data, X.indices, X.indptr, y, sample_weight, order,
            W, coef, intercept, stamp, _kernels.COMBINERS[combiner],
            lr_begin, lr_end, alpha, update_embeddings, n_threads,
        )  # fmt: skip
        assert bad == -1
        if alpha > 0 and update_embeddings:
            _kernels.apply_decay(W, stamp, clock, n_threads)
        assert np.array_equal(stamp, np.zeros_like(stamp))
        losses.append(loss)
    return losses


def run_reference(X, y, sample_weight, orders, W, coef, intercept, combiner, alpha,
                  update_embeddings, schedule=SCHEDULE):
    return [
        reference.sgd_epoch(X, y, sample_weight, order, W, coef, intercept, combiner,
                            lr_begin, lr_end, alpha, update_embeddings)
        for order, (lr_begin, lr_end) in zip(orders, schedule)
    ]  # fmt: skip


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("update_embeddings", [True, False])
@pytest.mark.parametrize("alpha", [0.0, 0.05])
@pytest.mark.parametrize("combiner", COMBINERS)
@pytest.mark.parametrize("n_out", [1, 3])
def test_sgd_epoch_matches_reference(n_out, combiner, alpha, update_embeddings, index_dtype):
    X, y, sw, orders, W, coef, b = sgd_problem(n_out, index_dtype)
    W0, coef0 = W.copy(), coef.copy()
    Wr, coefr, br = W.copy(), coef.copy(), b.copy()
    losses = run_kernel(X, y, sw, orders, W, coef, b, combiner, alpha, update_embeddings)
    expected = run_reference(X, y, sw, orders, Wr, coefr, br, combiner, alpha, update_embeddings)

    np.testing.assert_allclose(losses, expected, rtol=1e-10)
    np.testing.assert_allclose(coef, coefr, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b, br, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(W, Wr, rtol=1e-10, atol=1e-12)
    if update_embeddings:
        assert not np.array_equal(W, W0)
    else:
        assert np.array_equal(W, W0)  # bit for bit, whatever alpha
    assert not np.array_equal(coef, coef0)  # the pass did move the head


@pytest.mark.parametrize("alpha", [0.0, 0.05])
@pytest.mark.parametrize("combiner", COMBINERS)
@pytest.mark.parametrize("n_out", [1, 4])
@pytest.mark.parametrize("data_dtype", [np.float32, np.float64])
def test_sgd_epoch_float32_matches_float64_reference(data_dtype, n_out, combiner, alpha):
    X, y, sw, orders, W, coef, b = sgd_problem(n_out, np.int64, data_dtype, seed=1)
    W32, coef32, b32 = (a.astype(np.float32) for a in (W, coef, b))
    losses = run_kernel(X, y, sw, orders, W32, coef32, b32, combiner, alpha, True)
    expected = run_reference(X, y, sw, orders, W, coef, b, combiner, alpha, True)
    assert W32.dtype == coef32.dtype == b32.dtype == np.float32

    np.testing.assert_allclose(losses, expected, rtol=1e-4)
    for got, want in ((W32, W), (coef32, coef), (b32, b)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_sgd_epoch_empty_order_changes_nothing():
    X, y, sw, _, W, coef, b = sgd_problem(1)
    before = [a.copy() for a in (W, coef, b)]
    stamp = np.zeros(W.shape[0])
    loss, clock, bad = _kernels.sgd_epoch(
        X.data, X.indices, X.indptr, y, sw, np.zeros(0, dtype=np.int64),
        W, coef, b, stamp, 0, 0.5, 0.1, 0.01, True, 2,
    )  # fmt: skip
    assert (loss, clock, bad) == (0.0, 0.0, -1)
    for got, want in zip((W, coef, b), before):
        assert np.array_equal(got, want)


def sample_loss(X, i, y_i, weight, W, coef, intercept, combiner):
    """Weighted loss of sample i, through the references."""
    h = reference.embedding_sum(X, W, combiner)[i]
    loss, _ = reference.loss_and_grad_logits(coef @ h + intercept, y_i, coef.shape[0])
    return weight * loss


def finite_difference(f, theta, entries, eps=1e-6):
    """Central differences of ``f()`` with respect to ``theta[entry]`` for each entry."""
    grad = np.zeros(len(entries))
    for n, entry in enumerate(entries):
        saved = theta[entry]
        theta[entry] = saved + eps
        up = f()
        theta[entry] = saved - eps
        down = f()
        theta[entry] = saved
        grad[n] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("combiner", COMBINERS)
@pytest.mark.parametrize("n_out, label", [(1, 0), (1, 1), (3, 2), (4, 0)])
def test_sgd_step_is_the_gradient(n_out, label, combiner):
    rng = np.random.default_rng(7)
    n_features, d = 15, 4
    rows = random_rows(rng, 6, n_features)
    i = 3
    # Duplicate column 3, unsorted, a negative value; the sum of values is 2.
    rows[i] = ([3, 11, 3, 7], [0.5, -1.2, 2.0, 0.7])
    X = csr_from_rows(rows, n_features)
    y = rng.integers(0, max(n_out, 2), size=len(rows)).astype(np.int32)
    y[i] = label
    sw = rng.uniform(0.5, 2.0, size=len(rows))
    W = rng.normal(scale=0.7, size=(n_features, d))
    coef = rng.normal(scale=0.7, size=(n_out, d))
    b = rng.normal(scale=0.3, size=n_out)
    W1, coef1, b1 = W.copy(), coef.copy(), b.copy()
    stamp = np.zeros(n_features)

    # One step with lr = 1: the update is minus the gradient at the old parameters.
    loss, _, bad = _kernels.sgd_epoch(
        X.data, X.indices, X.indptr, y, sw, np.array([i], dtype=np.int64),
        W1, coef1, b1, stamp, _kernels.COMBINERS[combiner], 1.0, 1.0, 0.0, True, 1,
    )  # fmt: skip
    assert bad == -1

    f = lambda: sample_loss(X, i, y[i], sw[i], W, coef, b, combiner)  # noqa: E731
    assert loss == pytest.approx(f(), rel=1e-12)

    named = sorted(set(rows[i][0]))
    others = np.setdiff1d(np.arange(n_features), named)
    assert np.array_equal(W1[others], W[others])
    assert np.array_equal(stamp, np.zeros(n_features))

    W_entries = [(r, j) for r in named for j in range(d)]
    checks = [
        ((W - W1)[tuple(np.array(W_entries).T)], finite_difference(f, W, W_entries)),
        ((coef - coef1).ravel(), finite_difference(f, coef, list(np.ndindex(coef.shape)))),
        (b - b1, finite_difference(f, b, list(np.ndindex(b.shape)))),
    ]
    for step, grad in checks:
        assert np.abs(grad).max() > 1e-3  # the check is not vacuous
        np.testing.assert_allclose(step, grad, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("factor", [FACTORS["2^-100"], FACTORS["2^66"]], ids=["2^-100", "2^66"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_epoch_sqrtn_is_scale_invariant(dtype, factor):
    # With "sqrtn" a sample's embedding and its step on W do not depend on
    # the scale of its values: scaled by `factor`, the same pass results.
    X, y, sw, orders, W, coef, b = sgd_problem(3, seed=8)
    X_scaled = X.copy()
    X_scaled.data = X.data * factor
    runs = []
    for data in (X, X_scaled):
        params = [a.astype(dtype) for a in (W, coef, b)]
        losses = run_kernel(data, y, sw, orders, *params, "sqrtn", 0.0, True)
        runs.append((losses, params))
    (losses, params), (losses_scaled, params_scaled) = runs
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(losses_scaled, losses, rtol=rtol)
    for got, want in zip(params_scaled, params):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_sgd_epoch_skips_malformed_rows(index_dtype, n_threads):
    X, y, sw, _, W_good, coef, b = sgd_problem(3, index_dtype, seed=3)
    n_features, d = W_good.shape
    row_big, row_neg = 1, 8  # non-empty rows; they become malformed
    order = np.array([0, 1, 5, 8, 2, 1, 20, 10, 8, 30], dtype=np.int64)
    valid = order[~np.isin(order, [row_big, row_neg])]

    # Reference: the same constant-step pass over the valid samples only.
    Wr, coefr, br = W_good.copy(), coef.copy(), b.copy()
    expected = reference.sgd_epoch(X, y, sw, valid, Wr, coefr, br, "sqrtn", 0.2, 0.2, 0.0)

    X.indices[X.indptr[row_big] + 1] = n_features
    X.indices[X.indptr[row_neg]] = -1
    # NaN rows around the table: a read of one would spread NaN into the
    # parameters, and a write would change them.
    W_full, W = padded(W_good, 1, 1, np.nan)
    stamp = np.zeros(n_features)
    loss, _, bad = _kernels.sgd_epoch(
        X.data, X.indices, X.indptr, y, sw, order, W, coef, b, stamp,
        _kernels.COMBINERS["sqrtn"], 0.2, 0.2, 0.0, True, n_threads,
    )  # fmt: skip
    assert bad in (row_big, row_neg)
    assert np.isnan(W_full[0]).all() and np.isnan(W_full[-1]).all()
    assert np.isfinite(W).all() and np.isfinite(coef).all() and np.isfinite(b).all()
    if n_threads == 1:
        assert loss == pytest.approx(expected, rel=1e-10)
        np.testing.assert_allclose(W, Wr, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(coef, coefr, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b, br, rtol=1e-10, atol=1e-12)


def test_sgd_epoch_only_malformed_rows_changes_nothing():
    X, y, sw, _, W, coef, b = sgd_problem(1, seed=4)
    X.indices[X.indptr[1]] = 10**6
    before = [a.copy() for a in (W, coef, b)]
    loss, _, bad = _kernels.sgd_epoch(
        X.data, X.indices, X.indptr, y, sw, np.array([1, 1, 1], dtype=np.int64),
        W, coef, b, np.zeros(W.shape[0]), 0, 0.5, 0.5, 0.0, True, 1,
    )  # fmt: skip
    assert (loss, bad) == (0.0, 1)
    for got, want in zip((W, coef, b), before):
        assert np.array_equal(got, want)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(order=np.array([0, 99], dtype=np.int64)), "order holds a sample index out of range"),
        (lambda a: a.update(order=np.array([-1], dtype=np.int64)), "order holds a sample index out of range"),
        (lambda a: a.update(y=a["y"][:-1]), "one entry per row"),
        (lambda a: a.update(sample_weight=a["sample_weight"][:-1]), "one entry per row"),
        (lambda a: a.update(stamp=np.zeros(3)), "inconsistent parameter shapes"),
        (lambda a: a.update(intercept=np.zeros(2)), "inconsistent parameter shapes"),
        (lambda a: a.update(coef=np.zeros((3, 2))), "inconsistent parameter shapes"),
        (lambda a: a.update(data=a["data"][:-1].copy()), "inconsistent CSR arrays"),
    ],
)
def test_sgd_epoch_rejects_inconsistent_arguments(change, message):
    X, y, sw, orders, W, coef, b = sgd_problem(3)
    args = dict(
        data=X.data, indices=X.indices, indptr=X.indptr, y=y, sample_weight=sw,
        order=orders[0], W=W, coef=coef, intercept=b, stamp=np.zeros(W.shape[0]),
    )  # fmt: skip
    change(args)
    with pytest.raises(ValueError, match=message):
        _kernels.sgd_epoch(*args.values(), 0, 0.1, 0.1, 0.0, True, 1)


@pytest.mark.parametrize("bad_label", [3, 1000, -1])
def test_sgd_epoch_rejects_labels_out_of_range(bad_label):
    # With 3 classes a label must lie in [0, 3): the kernel indexes its
    # 3-entry logit scratch with it ("no input can make a kernel read or
    # write outside its arrays").
    X, y, sw, orders, W, coef, b = sgd_problem(3)
    y[orders[0][0]] = bad_label
    with pytest.raises(ValueError, match="y"):
        _kernels.sgd_epoch(
            X.data, X.indices, X.indptr, y, sw, orders[0], W, coef, b,
            np.zeros(W.shape[0]), 0, 0.1, 0.1, 0.0, True, 1,
        )  # fmt: skip


# ---------------------------------------------------------- threaded training


def planted_problem(n_out, dtype, n_rows=4000, n_features=1000, d=16, seed=0):
    """Bags of features, each feature tied to a class; the label is the majority."""
    rng = np.random.default_rng(seed)
    n_classes = max(n_out, 2)
    feature_class = rng.integers(0, n_classes, size=n_features)
    rows, y = [], np.empty(n_rows, dtype=np.int32)
    for i in range(n_rows):
        label = int(rng.integers(0, n_classes))
        n = int(rng.integers(3, 12))
        own = rng.choice(np.flatnonzero(feature_class == label), size=(n + 1) // 2 + 1)
        other = rng.integers(0, n_features, size=n // 2)
        cols = rng.permutation(np.concatenate([own, other]))
        rows.append((cols.tolist(), rng.integers(1, 4, size=len(cols)).astype(float).tolist()))
        y[i] = label
    X = csr_from_rows(rows, n_features)
    W = (rng.normal(size=(n_features, d)) * 0.3 / np.sqrt(d)).astype(dtype)
    coef = np.zeros((n_out, d), dtype=dtype)
    b = np.zeros(n_out, dtype=dtype)
    return X, y, np.ones(n_rows), W, coef, b, rng


def full_loss(X, y, W, coef, b, combiner):
    H = reference.embedding_sum(X, W, combiner)
    Z = H @ coef.astype(np.float64).T + b
    return np.mean([reference.loss_and_grad_logits(z, t, coef.shape[0])[0] for z, t in zip(Z, y)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_out", [1, 4])
def test_sgd_epoch_two_threads_learns(n_out, dtype):
    X, y, sw, W, coef, b, rng = planted_problem(n_out, dtype)
    n = X.shape[0]
    combiner = "sqrtn"
    start = full_loss(X, y, W, coef, b, combiner)
    orders = [rng.permutation(n).astype(np.int64) for _ in range(4)]
    schedule = [(0.5 * (1 - e / 4), 0.5 * (1 - (e + 1) / 4)) for e in range(4)]
    losses = run_kernel(X, y, sw, orders, W, coef, b, combiner, 1e-4, True,
                        n_threads=2, schedule=schedule)  # fmt: skip
    losses = np.array(losses) / n
    end = full_loss(X, y, W, coef, b, combiner)
    assert np.isfinite(losses).all() and np.isfinite(end)
    assert np.isfinite(W).all() and np.isfinite(coef).all() and np.isfinite(b).all()
    assert losses[-1] < losses[0]
    assert np.all(np.diff(losses) < 0)
    assert end < 0.1 * start, (start, end, losses)
    # The model fits the planted labels.
    scores = reference.embedding_sum(X, W, combiner) @ coef.T.astype(np.float64) + b
    pred = (scores[:, 0] > 0).astype(int) if n_out == 1 else scores.argmax(axis=1)
    assert np.mean(pred == y) > 0.95


@pytest.mark.skipif(_kernels.openmp_max_threads() < 2, reason="needs two OpenMP threads")
@pytest.mark.parametrize("n_out", [1, 3])
def test_sgd_epoch_threads_queue_head_steps_and_apply_the_rest_at_the_end(n_out):
    # With several threads each one queues the head steps of its samples and
    # applies them together. Five samples all fall in thread 0's first chunk,
    # so the queue never fills: the steps, all taken at the head of the start
    # (the table is frozen), are applied once the pass ends, exactly as one
    # deterministic mini-batch of five takes them.
    X, y, sw, order, rng = _sgd_problem(n_out)
    order = order[:5]
    params = [rng.standard_normal((X.shape[1], 4)), rng.standard_normal((n_out, 4)) * 0.1,
              rng.standard_normal(n_out) * 0.1]
    queued = [p.copy() for p in params] + [np.zeros(X.shape[1])]
    batch = [p.copy() for p in params] + [np.zeros(X.shape[1])]
    args = (X.data, X.indices, X.indptr, y, sw, order)
    _kernels.sgd_epoch(*args, *queued, 0, 0.3, 0.2, 0.01, False, 2)
    _kernels.sgd_epoch_batched(*args, *batch, 0, 0.3, 0.2, 0.01, False, 5, 1)
    assert not np.allclose(queued[1], params[1])
    for got, want in zip(queued[:3], batch[:3]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def _sgd_problem(n_out, n=60, n_features=30):
    rng = np.random.default_rng(7)
    X = sp.random(n, n_features, density=0.2, format="csr", random_state=7)
    y = rng.integers(0, max(n_out, 2), n).astype(np.int32)
    return X, y, rng.uniform(0.5, 2.0, n), rng.permutation(n).astype(np.int64), rng


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_epoch_one_thread_is_reproducible(dtype):
    results = []
    for _ in range(2):
        X, y, sw, W, coef, b, rng = planted_problem(3, dtype, n_rows=1500, n_features=400)
        orders = [rng.permutation(X.shape[0]).astype(np.int64) for _ in range(2)]
        losses = run_kernel(X, y, sw, orders, W, coef, b, "mean", 1e-3, True, n_threads=1)
        results.append((losses, W, coef, b))
    (l1, *p1), (l2, *p2) = results
    assert l1 == l2
    for a1, a2 in zip(p1, p2):
        assert a1.dtype == dtype
        assert np.array_equal(a1, a2)
