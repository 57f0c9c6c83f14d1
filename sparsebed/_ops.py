"""The embedding sum as a function: validation in Python, the loop in ``_kernels``."""
import math

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_array

from . import _kernels
from ._config import _n_threads

COMBINERS = tuple(_kernels.COMBINERS)

# The dtypes of the tables and sums, and of the values the kernels read.
FLOAT_DTYPES = (np.float32, np.float64)


# Bytes of a cache line: the trained arrays and the embedding sums start on one.
CACHE_LINE = 64


def aligned_empty(shape, dtype):
    """An uninitialised C-contiguous array whose data start on a cache line.

    numpy starts large arrays 16 bytes past one, and then every 64-byte
    vector load or store of a row of 16 float32 (8 float64) numbers, or a
    multiple of that, straddles two lines. Rows that start on a cache line
    are also never shared by two threads writing them.
    """
    dtype = np.dtype(dtype)
    buffer = np.empty(math.prod(shape) * dtype.itemsize + CACHE_LINE, dtype=np.uint8)
    return np.ndarray(shape, dtype, buffer, -_kernels.address(buffer) % CACHE_LINE)


def aligned_array(a, dtype):
    """A C-contiguous copy of ``a`` as ``dtype`` whose data start on a cache line.

    The estimators keep their table and head so: with several threads the
    SGD kernels write different rows of them at once, which measured 10 %
    faster on two cores than with numpy's 16-byte alignment, and the
    embedding sum reads wide rows up to 1.4x faster.
    """
    a = np.asarray(a)
    out = aligned_empty(a.shape, dtype)
    out[...] = a
    return out


def is_float_csr(X):
    """Whether ``X`` is already what the kernels read, so that ``check_array``
    (``accept_sparse="csr"``, float dtypes) would hand it back unchanged: a
    2-d scipy CSR matrix or array with float32 or float64 values and at least
    one column. Its structure is checked by :func:`csr_arrays` and the
    kernels; skipping ``check_array`` for it saves most of the time of a call
    on a small batch (about 0.1 ms, against a few microseconds of summing).
    """
    return (
        sp.issparse(X) and X.format == "csr" and X.ndim == 2 and X.shape[1] > 0
        and X.dtype in FLOAT_DTYPES
    )  # fmt: skip


def check_structure(X):
    """Refuse a malformed sparse ``X`` before scipy converts it.

    scipy's conversions (CSC or COO to CSR, integer to float values) trust the
    index arrays, so a matrix whose arrays were edited can make them read or
    write out of bounds. CSR input with float values is not converted and is
    checked by :func:`csr_arrays` instead.
    """
    if not sp.issparse(X) or is_float_csr(X):
        return
    if X.ndim != 2:
        raise ValueError(
            f"X must be 2-d, one row per sample, but it is a sparse array of shape {X.shape}: "
            "reshape it, for example with X.reshape(1, -1) for a single sample."
        )
    if X.format in ("csr", "csc"):
        n_major, n_minor = X.shape if X.format == "csr" else X.shape[::-1]
        _checked_compressed(X.data, X.indices, X.indptr, n_major, n_minor, X.format.upper())
    elif X.format == "coo":
        row, col = X.row, X.col
        if not len(row) == len(col) == len(X.data):
            raise ValueError(
                f"Malformed COO matrix: row, col and data have {len(row)}, {len(col)} "
                f"and {len(X.data)} entries. Rebuild the matrix with scipy.sparse."
            )
        if len(row) and not (
            0 <= row.min() and row.max() < X.shape[0] and 0 <= col.min() and col.max() < X.shape[1]
        ):
            raise ValueError(
                f"Malformed COO matrix: an entry lies outside its shape {X.shape}. "
                "Rebuild the matrix with scipy.sparse."
            )
    elif hasattr(X, "check_format"):
        try:
            X.check_format(full_check=True)
        except Exception as exc:
            raise ValueError(f"Malformed {X.format.upper()} matrix: {exc}") from exc


def _checked_compressed(data, indices, indptr, n_major, n_minor, kind="CSR", scan=True):
    """``(data, indices, indptr)`` of a well-formed compressed structure.

    Contiguous, with ``indices`` and ``indptr`` of one type (int32 or int64,
    unchanged when scipy made them so, which is the usual case). Raises
    ValueError naming the first bad row (column for CSC) otherwise. With
    ``scan=False`` only the array lengths and the ends of ``indptr`` are
    checked here: the caller hands the arrays to a kernel that checks each
    row before it reads it, and reports a bad one.
    """
    if indptr.ndim != 1 or len(indptr) != n_major + 1:
        raise ValueError(
            f"Malformed {kind} matrix: indptr has {len(indptr)} entries for {n_major} "
            f"{'rows' if kind == 'CSR' else 'columns'} (it needs one more). Rebuild "
            "the matrix with scipy.sparse."
        )
    if len(data) != len(indices):
        raise ValueError(
            f"Malformed {kind} matrix: data has {len(data)} entries but indices has "
            f"{len(indices)}. Rebuild the matrix with scipy.sparse."
        )
    if indices.dtype != indptr.dtype or indices.dtype not in (np.int32, np.int64):
        indices = indices.astype(np.int64)
        indptr = indptr.astype(np.int64)
    data = np.ascontiguousarray(data)
    indices = np.ascontiguousarray(indices)
    indptr = np.ascontiguousarray(indptr)
    if n_major and (indptr[0] != 0 or indptr[-1] != len(indices)):
        raise ValueError(
            f"Malformed {kind} matrix: indptr runs from {indptr[0]} to {indptr[-1]} "
            f"but must run from 0 to len(indices) = {len(indices)}. Rebuild the "
            "matrix with scipy.sparse."
        )
    if scan:
        _raise_for_bad_row(indices, indptr, n_minor, kind)
    return data, indices, indptr


def _raise_for_bad_row(indices, indptr, n_minor, kind="CSR"):
    """Raise ValueError describing the first malformed row, if there is one."""
    bad = _kernels.first_bad_row(indices, indptr, n_minor)
    if bad >= 0:
        raise ValueError(_describe_bad_row(indices, indptr, bad, n_minor, kind))


def csr_arrays(X, n_features, combiner, scan=True):
    """Return ``(data, indices, indptr)`` of a CSR matrix, checked and uncopied.

    ``X`` must already be a scipy CSR matrix or array with a float32 or
    float64 ``data``. Its arrays are returned as they are when contiguous
    with one integer type for ``indices`` and ``indptr``, as scipy makes
    them. Raises ValueError, naming the first bad row, when the structure is
    malformed: a column index outside ``[0, n_features)``, a decreasing or
    out-of-range ``indptr``, or arrays of mismatched lengths.

    A column stored twice in a row means the sum of the two values, as in
    scipy. The kernels add such entries up correctly, but the ``"sqrtn"``
    scale needs each column's total, so for it a matrix with duplicates is
    summed first (into a float64 copy; ``X`` itself is not changed).

    ``scan=False`` leaves the check of each row's indices to the kernel that
    reads them (:func:`sum_rows`), saving a pass over ``indices``.
    """
    scan = scan or combiner == "sqrtn"  # has_duplicates needs checked indices
    data, indices, indptr = _checked_compressed(
        X.data, X.indices, X.indptr, X.shape[0], n_features, scan=scan
    )
    # (scipy's own has_canonical_format flag is cached, and goes stale when
    # the arrays of a matrix are edited, so the kernels look for themselves.)
    if combiner == "sqrtn" and _kernels.has_duplicates(indices, indptr, n_features):
        # Summed in float64 (a copy), so that float32 values lose nothing.
        X = sp.csr_matrix((data.astype(np.float64), indices, indptr), shape=X.shape, copy=True)
        X.sum_duplicates()
        data, indices, indptr = X.data, X.indices, X.indptr
    return data, indices, indptr


def _describe_bad_row(indices, indptr, row, n_features, kind="CSR"):
    line = "row" if kind == "CSR" else "column"
    start, end = int(indptr[row]), int(indptr[row + 1])
    if start > end or start < 0 or end > len(indices):
        what = f"its extent indptr[{row}:{row + 2}] = [{start}, {end}] is not a range inside indices"
    else:
        cols = indices[start:end]
        bad = cols[(cols < 0) | (cols >= n_features)]
        other = "column" if kind == "CSR" else "row"
        what = f"it holds {other} index {int(bad[0])}, outside [0, {n_features})"
    return (
        f"Malformed {kind} matrix at {line} {row}: {what}. Check that the matrix was "
        "built for the same features as the embedding table, and rebuild it with "
        "scipy.sparse rather than editing its arrays."
    )


def to_csr(X):
    """Return a checked ``X`` (from ``check_array``) as CSR, without copying a CSR input."""
    return X if sp.issparse(X) else sp.csr_matrix(X)


def check_vectors(W, name, finite=True):
    """A 2-d float32 or float64 C-contiguous table (of finite numbers), named in errors.

    Without ``finite``, a table that is already so is returned at once: the
    kernels find any NaN or infinity in the rows they read through their
    output.
    """
    if (
        not finite and type(W) is np.ndarray and W.ndim == 2 and W.shape[0] > 0
        and W.shape[1] > 0 and W.dtype in FLOAT_DTYPES and W.flags.c_contiguous
    ):  # fmt: skip
        return W
    try:
        return check_array(
            W, dtype=[np.float64, np.float32], order="C", input_name=name,
            ensure_all_finite=finite,
        )  # fmt: skip
    except ValueError as exc:
        raise ValueError(
            f"{name} must be a 2-d array of finite real numbers (one row per feature): {exc}"
        ) from exc


def sum_rows(data, indices, indptr, W, combiner, n_threads, out=None):
    """Call the forward kernel; return ``(n_rows, d)`` in ``W.dtype``, in ``out`` if given.

    The kernel checks each row before reading it, and the output for
    finiteness while it is in cache; a malformed row or a value that is not
    finite raises ValueError saying which input is to blame.
    """
    if combiner not in COMBINERS:
        raise ValueError(f"combiner must be one of {COMBINERS}, got {combiner!r}.")
    shape = (len(indptr) - 1, W.shape[1])
    if out is None:
        out = aligned_empty(shape, W.dtype)
    else:
        _check_out(out, shape, W.dtype, (data, indices, indptr, W))
    bad, finite = _kernels.embedding_sum(
        data, indices, indptr, W, out, _kernels.COMBINERS[combiner], n_threads
    )
    if bad >= 0:
        _raise_for_bad_row(indices, indptr, W.shape[0])
    if not finite:
        # Any NaN or infinity in X or in a used row of W reaches the output.
        if not np.isfinite(data).all():
            raise ValueError(
                "Input X contains NaN or infinity; remove or impute those values."
            )
        if not np.isfinite(W[np.unique(indices)]).all():
            raise ValueError(
                "Input W contains NaN or infinity in rows that X uses; pass finite vectors."
            )
        raise ValueError(
            f"The embedding sums overflow {W.dtype}: scale X or W down, or use float64."
        )
    return out


def _check_out(out, shape, dtype, inputs):
    """Raise ValueError unless ``out`` can take the sums: an ndarray of
    ``shape`` and ``dtype``, C-contiguous, writeable, sharing no memory with
    the arrays the kernel reads (which it would overwrite as it reads them)."""
    if not isinstance(out, np.ndarray):
        raise ValueError(f"out must be a numpy array, got {type(out).__name__}.")
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(
            f"out has shape {out.shape} and dtype {out.dtype}; the sums need shape {shape} "
            f"and dtype {np.dtype(dtype)} (X's rows by W's columns, W's dtype)."
        )
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError(
            "out must be C-contiguous and writeable: pass an array from np.empty, "
            "not a slice, a transpose or a read-only view."
        )
    if any(np.may_share_memory(out, a) for a in inputs):
        raise ValueError("out shares memory with X or W: pass a separate array.")


def embedding_sum(X, W, *, combiner="sum", n_jobs=None, out=None):
    """Embedding sum of each row of a sparse matrix: ``X @ W`` without the zeros.

    Row ``i`` of the result is ``scale_i * sum_k X[i, k] * W[k]`` over the
    non-zeros of row ``i``, computed by looking rows of ``W`` up, never by
    multiplying zeros.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        The bags: CSR (used without a copy when its values are float32 or
        float64), CSC, COO or dense (converted to CSR). Indices may be int32
        or int64; values of any real dtype.
    W : ndarray of shape (n_features, n_components), float32 or float64
        The embedding table. It is used without a copy when C-contiguous.
        A table whose data start on a 64-byte boundary, as the estimators'
        tables do, reads fastest: with numpy's usual 16-byte alignment the
        vector loads of wide rows straddle cache lines (measured up to 1.4x
        slower for rows of 1-2 KB).
    combiner : {"sum", "mean", "sqrtn"}, default="sum"
        ``"sum"``: ``scale_i = 1``. ``"mean"``: divide by the sum of the
        row's values. ``"sqrtn"``: divide by the square root of the sum of
        their squares. A row whose divisor is 0 (an empty row) gives zeros.
    n_jobs : int, default=None
        Threads: None means 1, -1 all that OpenMP may use. The result is the
        same for every value.
    out : ndarray of shape (n_samples, n_components), default=None
        An array of ``W``'s dtype, C-contiguous and writeable, to write the
        result into instead of a new one; it must share no memory with
        ``X`` or ``W``. On a large batch, passing the same array call after
        call saves the operating system mapping and zeroing the pages of a
        new one on their first write (1.03x-1.49x faster on outputs of
        50-400 MB, see BENCHMARKS.md); on a small batch it saves nothing.
        If the call raises, its contents are unspecified.

    Returns
    -------
    out : ndarray of shape (n_samples, n_components), dtype of ``W``
        The result: ``out`` itself when given.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from sparsebed import embedding_sum
    >>> W = np.arange(8, dtype=np.float32).reshape(4, 2)
    >>> X = sp.csr_matrix([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    >>> embedding_sum(X, W)
    array([[ 8., 11.],
           [ 0.,  0.]], dtype=float32)
    >>> embedding_sum(X, W, combiner="mean")
    array([[2.6666667, 3.6666667],
           [0.       , 0.       ]], dtype=float32)
    >>> buffer = np.empty((2, 2), dtype=np.float32)
    >>> embedding_sum(X, W, out=buffer) is buffer
    True
    >>> buffer
    array([[ 8., 11.],
           [ 0.,  0.]], dtype=float32)
    """
    W = check_vectors(W, "W", finite=False)
    # X and W are checked for NaN and infinity through the result, whose
    # size is X's, not the table's, and its indices by the kernel: passes
    # over X.data, X.indices or a large table would cost more than the sum.
    if not is_float_csr(X):
        check_structure(X)
        X = check_array(
            X,
            accept_sparse="csr",
            dtype=[np.float64, np.float32],
            ensure_min_samples=0,
            ensure_all_finite=False,
            input_name="X",
        )
        X = to_csr(X)
    if X.shape[1] != W.shape[0]:
        raise ValueError(
            f"X has {X.shape[1]} features but W has {W.shape[0]} rows: they must match."
        )
    data, indices, indptr = csr_arrays(X, W.shape[0], combiner, scan=False)
    return sum_rows(data, indices, indptr, W, combiner, _n_threads(n_jobs), out)
