"""Embedding-sum throughput: sparsebed against torch's embedding_bag and scipy.

Usage::

    python benchmarks/transform.py [--debian PATH/TO/debian_packages.jsonl.gz] [--quick]

Workloads: a Zipf-distributed bag-of-words CSR matrix (200,000 rows, 2**18
features, about 40 non-zeros per row), and, with ``--debian``, the TF-IDF
matrix of the Debian text task. For each dtype and embedding dimension,
every method computes the same ``X @ W`` in the same process, on one and on
two threads; each figure is the median of several runs (the methods and
thread counts taking turns, so that a slow spell of the host falls on all
of them, each timed on the second of two calls in its turn), in G
(non-zeros x dimension) per second, and the ratios are against the peers
and the thread count measured in that run; then the time of one call on
small batches (1, 16 and 256 rows). Peers:
scipy ``X @ W`` (one thread) and ``torch.nn.functional.embedding_bag(...,
mode="sum", per_sample_weights=..., include_last_offset=True)``, all reading
the same table ``W``, which starts on a cache line as the tables of
sparsebed's estimators do (numpy's own 16-byte alignment makes every
library slower on wide rows, whose vector loads then straddle cache lines).

Writes ``benchmarks/results/transform.json`` and ``benchmarks/transform.png``.
"""
import argparse
import functools
import os
import sys
import tracemalloc

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(__file__))
from _common import load_debian_text, machine, median_times, peak_rss_mb, save_results  # noqa: E402
from ceiling import rows_ceiling  # noqa: E402

import sparsebed  # noqa: E402
from sparsebed import _kernels  # noqa: E402
from sparsebed._ops import aligned_array  # noqa: E402

try:
    import torch
except ImportError:  # the peers are optional: pip install "sparsebed[bench]"
    torch = None

HERE = os.path.dirname(os.path.abspath(__file__))
THREADS = (1, 2)


def zipf_csr(n_rows=200_000, n_features=2**18, nnz_per_row=40, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.poisson(nnz_per_row, n_rows)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    ranks = (rng.zipf(1.1, indptr[-1]) - 1) % n_features
    indices = rng.permutation(n_features)[ranks].astype(np.int32)
    data = rng.random(indptr[-1], dtype=np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_features))


def debian_tfidf(path):
    from sklearn.feature_extraction.text import TfidfVectorizer

    (texts, _), _ = load_debian_text(path)
    return TfidfVectorizer(sublinear_tf=True, min_df=2, dtype=np.float32).fit_transform(texts)


def torch_csr(X):
    """torch's tensors of ``X``'s indices, offsets and values (made once per matrix)."""
    return (torch.from_numpy(X.indices.astype(np.int64)), torch.from_numpy(X.indptr.astype(np.int64)),
            torch.from_numpy(X.data))  # fmt: skip


def torch_embedding_bag(csr, W):
    """A callable computing ``X @ W`` with torch's embedding_bag (sum, weighted),
    from ``csr = torch_csr(X)``."""
    indices, offsets, values = csr
    weight = torch.from_numpy(W)

    def run_torch():
        with torch.no_grad():
            torch.nn.functional.embedding_bag(
                indices, weight, offsets, mode="sum",
                per_sample_weights=values, include_last_offset=True,
            )  # fmt: skip

    return run_torch


def rates(cells, repeat, threads=THREADS, scipy=True, ceiling=True):
    """G (nnz x dim)/s of each method at each thread count in each cell, all taking turns.

    ``cells`` is a list of ``(X, W)``. Returns a list, one
    ``{threads: {method: rate}}`` per cell: sparsebed, torch (if installed),
    scipy (one thread, if asked) and, if asked, the ceiling of any kernel
    (see ``ceiling.py``): the rate of the fastest of its loops that only load
    the rows. Every method of every cell at every thread count takes its
    turn in every round, so a slow spell of the host, or a slow state lasting
    minutes, falls on all of them: on the peers and on one thread and two
    alike, and on every cell, not on whichever cell was being measured then.
    """
    funcs, loads, matrices = {}, set(), {}
    for c, (X, W) in enumerate(cells):
        if torch is not None and id(X) not in matrices:
            matrices[id(X)] = torch_csr(X)
        run_torch = torch_embedding_bag(matrices[id(X)], W) if torch is not None else None
        for t in threads:
            funcs[c, "sparsebed", t] = functools.partial(sparsebed.embedding_sum, X, W, n_jobs=t)
            if run_torch is not None:
                funcs[c, "torch", t] = run_torch
            if ceiling:
                for name, func in rows_ceiling(X, W, t).items():
                    funcs[c, name, t] = func
                    loads.add(name)
        if scipy:
            funcs[c, "scipy", 1] = functools.partial(X.__matmul__, W)  # scipy runs on one thread
    times = median_times({key: functools.partial(_at_threads, key[2], f) for key, f in funcs.items()},
                         repeat, progress=len(cells) > 1)  # fmt: skip
    results = [{t: {} for t in threads} for _ in cells]
    for (c, name, t), seconds in times.items():
        results[c][t][name] = _work(*cells[c]) / seconds
    if loads:
        for result in results:
            for r in result.values():
                r["ceiling"] = max(r.pop(name) for name in loads)
    return results


def _work(X, W):
    """The work of ``X @ W``: G (non-zeros x dimension)."""
    return X.nnz * W.shape[1] / 1e9


def _at_threads(threads, func):
    """``func()`` with torch's thread count, which also sets the OpenMP thread
    limit that sparsebed's ``n_jobs`` respects, set to ``threads`` first."""
    if torch is not None:
        torch.set_num_threads(threads)
    return func()


def _with_isa(isa, X, W):
    """sparsebed's ``X @ W`` on one thread with instruction set ``isa`` (which stays set)."""
    _kernels.set_simd_isa(isa)
    return sparsebed.embedding_sum(X, W, n_jobs=1)


def describe(rates):
    """The figures of ``rates``: sparsebed's, and each other's with sparsebed's ratio to it."""
    line = f"sparsebed {rates['sparsebed']:6.2f} G/s"
    for name in ("torch", "scipy"):
        if name in rates:
            line += f", {name} {rates[name]:6.2f} ({rates['sparsebed'] / rates[name]:.2f}x)"
    if "ceiling" in rates:
        line += f", ceiling {rates['ceiling']:6.2f} ({rates['sparsebed'] / rates['ceiling']:.2f})"
    return line


def table(X, dim):
    """A random table of ``dim`` columns for ``X``, of ``X``'s dtype, on a cache line."""
    return aligned_array(np.random.default_rng(1).standard_normal((X.shape[1], dim)), X.dtype)


def measure(cells, repeat):
    """``rates`` of the ``(X, W)`` in ``cells``, with sparsebed's extra memory
    beyond its output in each cell at each thread count."""
    results = rates(cells, repeat)
    for (X, W), result in zip(cells, results):
        for t, r in result.items():
            tracemalloc.start()
            out = sparsebed.embedding_sum(X, W, n_jobs=t)
            r["sparsebed_extra_mb"] = (tracemalloc.get_traced_memory()[1] - out.nbytes) / 2**20
            tracemalloc.stop()
    return results


def batch_latency(X, sizes=(1, 16, 256), dim=64, repeat=101):
    """Microseconds per call on the first ``n`` rows of ``X`` for each ``n`` in ``sizes``.

    One thread, float32: a model answering requests one small batch at a
    time, where the cost of a call besides the sum decides. sparsebed is
    called both as ``embedding_sum`` and as a fitted ``SparseEmbedding``'s
    ``transform``; torch gets its tensors made beforehand, as a torch model
    would hold them.
    """
    W = table(X.astype(np.float32), dim)
    model = sparsebed.SparseEmbedding(init=W).fit(X[:1])
    if torch is not None:
        torch.set_num_threads(1)
    result = []
    for n in sizes:
        x = X[:n].astype(np.float32)
        funcs = {
            "embedding_sum": lambda x=x: sparsebed.embedding_sum(x, W),
            "transform": lambda x=x: model.transform(x),
            "scipy": lambda x=x: x @ W,
        }
        if torch is not None:
            funcs["torch"] = torch_embedding_bag(torch_csr(x), W)
        times = median_times(funcs, repeat)
        result.append({"rows": n, **{name: t * 1e6 for name, t in times.items()}})
        print(f"{n:4} rows: " + ", ".join(f"{k} {v:7.1f} us" for k, v in result[-1].items()
                                         if k != "rows"), flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--debian", help="path of the full Debian corpus (optional)")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    args = parser.parse_args()
    repeat = 3 if args.quick else 11
    dims = [16, 64, 256] if args.quick else [16, 32, 64, 128, 256]
    workloads = {"zipf": zipf_csr(n_rows=50_000 if args.quick else 200_000)}
    if args.debian:
        workloads["debian"] = debian_tfidf(args.debian)

    config = sparsebed.show_config()
    print(f"machine: {machine()}; torch {torch.__version__ if torch else 'not installed'}\n")
    # Every case (workload, dtype, dimension) takes its turn in every round.
    cases, cells = [], []
    for name, X in workloads.items():
        for dtype in (np.float32, np.float64):
            X = X.astype(dtype)
            for dim in dims:
                cases.append((name, np.dtype(dtype).name, dim))
                cells.append((X, table(X, dim)))
    print(f"{len(cells)} cases, each method of each at 1 and 2 threads in turn, {repeat} rounds:")
    rows = []
    for (name, dtype, dim), result in zip(cases, measure(cells, repeat)):
        for threads, r in result.items():
            r.update(workload=name, dtype=dtype, dim=dim, threads=threads)
            rows.append(r)
            line = f"{name:6} {dtype:7} dim {dim:3} threads {threads}: {describe(r)}"
            print(line + f", extra memory {r['sparsebed_extra_mb']:.2f} MiB", flush=True)

    # Each instruction set compiled in, one thread, float32, on the Zipf workload:
    # every set at every dimension takes its turn in every round.
    zipf32 = {case[2]: cell for case, cell in zip(cases, cells) if case[:2] == ("zipf", "float32")}
    funcs = {
        (isa, dim): functools.partial(_with_isa, isa, *cell)
        for isa in _kernels.simd_supported() for dim, cell in zipf32.items()
    }  # fmt: skip
    times = median_times(funcs, repeat, progress=True)
    _kernels.set_simd_isa(None)
    isa_rows = []
    for (isa, dim), seconds in times.items():
        isa_rows.append({"isa": isa, "dim": dim, "sparsebed": _work(*zipf32[dim]) / seconds})
        print(f"isa {isa:8} dim {dim:3}: {isa_rows[-1]['sparsebed']:6.2f} G/s", flush=True)

    # Small batches, one call each, of the Debian rows if given.
    latency_workload = "debian" if "debian" in workloads else "zipf"
    print(f"\nsmall batches of {latency_workload} rows, float32, dim 64, one thread:")
    latency = batch_latency(workloads[latency_workload], repeat=21 if args.quick else 101)

    results = {
        "machine": machine(),
        "config": {k: str(v) for k, v in config.items()},
        "simd_isa": _kernels.simd_isa(),
        "torch": torch.__version__ if torch else None,
        "peak_rss_mb": peak_rss_mb(),
        "rows": rows,
        "isa_rows": isa_rows,
        "latency": {"workload": latency_workload, "rows": latency},
    }
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    save_results(os.path.join(HERE, "results", "transform.json"), results)
    print(f"\npeak RSS {results['peak_rss_mb']:.0f} MiB")
    plot(results, os.path.join(HERE, "transform.png"))


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["rows"] if r["workload"] == "zipf"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, dtype in zip(axes, ("float32", "float64")):
        for method, style in (("sparsebed", "-o"), ("torch", "--s"), ("scipy", ":^"),
                              ("ceiling", "-.")):
            for threads in (1, 2):
                pts = [
                    (r["dim"], r[method]) for r in rows
                    if r["dtype"] == dtype and r["threads"] == threads and method in r
                ]  # fmt: skip
                if pts:
                    x, y = zip(*pts)
                    ax.plot(x, y, style, label=f"{method}, {threads} thread{'s' * (threads > 1)}",
                            alpha=1.0 if threads == 2 else 0.6)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("embedding dimension")
        ax.set_title(f"Zipf bag-of-words, {dtype}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("G (non-zeros x dim) / s")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
