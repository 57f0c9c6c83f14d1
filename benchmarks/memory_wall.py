"""Where the embedding sum's speed limit lies: the cache level the table sits in.

Usage::

    python benchmarks/memory_wall.py

The Zipf workload of ``transform.py`` (float32, dim 64, one thread) with its
column indices folded into the first ``n`` rows of the table, for ``n`` from
a table that fits in L1 to the full 64 MB one: sparsebed and torch's
``embedding_bag`` taking turns, medians of several runs in G (non-zeros x
dimension) per second, beside the ceiling of any kernel (``ceiling.py``: the
same rows loaded, nothing computed). When all three fall together as the
table leaves the cache, the limit is the memory system, not either kernel.
Writes ``benchmarks/results/memory_wall.json``.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine, save_results  # noqa: E402
from transform import describe, rates, torch, zipf_csr  # noqa: E402

from sparsebed._ops import aligned_array  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DIM = 64


def main():
    X = zipf_csr().astype(np.float32)
    W = aligned_array(np.random.default_rng(1).standard_normal((X.shape[1], DIM)), np.float32)
    print(f"machine: {machine()}; float32, dim {DIM}, one thread\n")
    rows = []
    for n_rows in (256, 4096, 16384, 65536, 131072, X.shape[1]):
        Xn = X.copy()
        Xn.indices = Xn.indices % n_rows
        row = {"table_rows": n_rows, "table_mb": n_rows * DIM * 4 / 2**20}
        row.update(rates(Xn, W, 7, threads=(1,), scipy=False)[1])
        rows.append(row)
        line = f"table {row['table_mb']:7.2f} MB: {describe(row)}"
        print(line, flush=True)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    save_results(
        os.path.join(HERE, "results", "memory_wall.json"),
        {"machine": machine(), "torch": torch.__version__ if torch else None, "rows": rows},
    )


if __name__ == "__main__":
    main()
