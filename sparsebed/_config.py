"""Build facts and the one place where ``n_jobs`` becomes a thread count."""
import numbers
import sys

from . import __version__, _kernels


def _n_threads(n_jobs):
    """Threads the kernels use for ``n_jobs``, with scikit-learn's meaning.

    ``None`` means 1; ``-1`` means all the threads OpenMP may use, ``-2`` all
    but one, and so on; a positive value asks for that many. The result never
    exceeds what OpenMP may use, so ``OMP_NUM_THREADS`` and
    ``threadpoolctl.threadpool_limits`` cap it. ``0`` is an error.
    """
    if n_jobs is None:
        return 1
    if not isinstance(n_jobs, numbers.Integral) or isinstance(n_jobs, bool):
        raise TypeError(f"n_jobs must be an int or None, got {n_jobs!r}.")
    if n_jobs == 0:
        raise ValueError(
            "n_jobs == 0 has no meaning: use None or 1 for one thread, -1 for all."
        )
    max_threads = _kernels.openmp_max_threads()
    if n_jobs < 0:
        return max(1, max_threads + 1 + int(n_jobs))
    return min(int(n_jobs), max_threads)


def show_config(file=None):
    """Print how sparsebed was built and what it will use.

    Parameters
    ----------
    file : file-like, default=None
        Where to print; ``sys.stdout`` when None.

    Returns
    -------
    config : dict
        ``version`` (str), ``openmp`` (bool, whether the kernels were built
        with OpenMP), ``boundscheck`` (bool, whether this is a debug build
        with bounds checking, ``SPARSEBED_DEBUG=1``), ``max_threads`` (int,
        threads ``n_jobs=-1`` gives now),
        ``simd`` (str, the instruction set the kernels run: ``"avx512"``,
        ``"avx2"`` or ``"baseline"``, the widest this CPU supports among those
        compiled in), ``simd_supported`` (tuple of str), ``float_dtypes`` and
        ``index_dtypes`` (tuples of str, the dtypes the kernels take without a
        copy).

    Examples
    --------
    >>> import sparsebed
    >>> config = sparsebed.show_config(file=open("/dev/null", "w"))
    >>> config["float_dtypes"]
    ('float32', 'float64')
    >>> config["max_threads"] >= 1
    True
    >>> config["simd"] in config["simd_supported"]
    True
    """
    config = {
        "version": __version__,
        "openmp": _kernels.OPENMP_ENABLED,
        "boundscheck": _kernels.BOUNDSCHECK,
        "max_threads": _n_threads(-1),
        "simd": _kernels.simd_isa(),
        "simd_supported": _kernels.simd_supported(),
        "float_dtypes": ("float32", "float64"),
        "index_dtypes": ("int32", "int64"),
    }
    out = sys.stdout if file is None else file
    for key, value in config.items():
        print(f"{key:>14}: {value}", file=out)
    return config
