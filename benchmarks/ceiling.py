"""The ceiling of any embedding-sum kernel: the rows of ``W`` and their values
loaded and an output written, nothing computed.

``rows_ceiling(X, W, threads)`` returns callables that load every cache line
of every row of ``W`` that ``X`` names, in ``X``'s order, and the value of
each entry of ``X`` that weights it, compute nothing, and store zeros into a
new ``(n_rows, dim)`` array, as every method measured beside them returns a
new array of sums (``ceiling.c``). The rows are read
in sparsebed's order (strips of up to 512 bytes of the rows of one row of
``X`` at a time) or whole, each with and without prefetching rows a few
entries ahead. A kernel that reads the rows in either order, also multiplies
them by their values, adds them and returns its sums cannot beat the fastest
of the four, so where a target asks for more than that rate, such a kernel
cannot meet it.
The C file is compiled once per process with the host's compiler (``cc``, or
``$CC``) for the host's widest vectors; where it does not compile the
benchmarks leave the ceiling out.
"""
import ctypes
import functools
import os
import shutil
import subprocess
import tempfile

import numpy as np

from sparsebed._ops import aligned_empty

HERE = os.path.dirname(os.path.abspath(__file__))
_library = None


def _compiled():
    """The compiled ``ceiling.c`` as a ctypes library, or None where it cannot be built."""
    global _library
    if _library is None:
        _library = False  # tried: not again
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            print("no C compiler: the ceiling is left out")
            return None
        with tempfile.TemporaryDirectory(prefix="sparsebed-ceiling-") as tmp:
            path = os.path.join(tmp, "ceiling.so")
            build = subprocess.run(
                [cc, "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC",
                 "-I", os.path.join(HERE, os.pardir, "sparsebed"),
                 os.path.join(HERE, "ceiling.c"), "-o", path],
                capture_output=True, text=True,
            )  # fmt: skip
            if build.returncode != 0:
                print(f"ceiling.c did not compile, the ceiling is left out:\n{build.stderr}")
                return None
            # Once loaded, the library stays mapped when its file is removed.
            _library = ctypes.CDLL(path)
        _library.rows_ceiling.restype = None
        _library.rows_ceiling.argtypes = [
            ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
            ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
            ctypes.c_void_p,
        ]  # fmt: skip
    return _library or None


def rows_ceiling(X, W, threads):
    """Callables loading the rows ``X`` names and returning a new array, by name: two
    orders, with and without prefetch.

    ``X`` is a CSR matrix with int32 ``indices`` and ``indptr`` (as scipy
    makes them for these workloads) and values of 4 or 8 bytes, and ``W`` a
    C-contiguous table whose rows take at least 64 bytes. Returns an empty
    dict where ceiling.c does not compile.
    """
    lib = _compiled()
    if lib is None:
        return {}
    row_bytes = W.shape[1] * W.itemsize
    if X.indices.dtype != np.int32 or X.indptr.dtype != np.int32:
        raise ValueError("rows_ceiling takes int32 indices and indptr.")
    if X.data.itemsize not in (4, 8) or len(X.data) != len(X.indices):
        raise ValueError("rows_ceiling takes values of 4 or 8 bytes, one per index.")
    if row_bytes < 64 or not W.flags.c_contiguous or X.shape[1] != W.shape[0]:
        raise ValueError("rows_ceiling takes a C-contiguous table of rows of 64 bytes or more.")
    # The C loops trust the structure: check it once here, outside the timing.
    indptr, indices = X.indptr, X.indices
    used = indices[: max(int(indptr[-1]), 0)]
    well_formed = (
        len(indptr) == X.shape[0] + 1 and indptr[0] == 0 and np.all(np.diff(indptr) >= 0)
        and indptr[-1] <= len(indices)
        and (used.size == 0 or 0 <= used.min() <= used.max() < W.shape[0])
    )  # fmt: skip
    if not well_formed:
        raise ValueError("rows_ceiling takes a well-formed CSR matrix naming rows of W.")
    args = (W.ctypes.data, row_bytes, X.indices.ctypes.data, X.data.ctypes.data,
            X.data.itemsize, X.indptr.ctypes.data, X.shape[0])  # fmt: skip

    def run(order, prefetch):
        # A new array each call, on a cache line as sparsebed's sums are.
        out = aligned_empty((X.shape[0], W.shape[1]), W.dtype)
        lib.rows_ceiling(*args, order, prefetch, threads, out.ctypes.data)
        return out

    return {
        f"{order}, {'' if prefetch else 'no '}prefetch": functools.partial(run, o, prefetch)
        for o, order in enumerate(("strips", "whole rows"))
        for prefetch in (1, 0)
    }
