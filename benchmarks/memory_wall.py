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
from transform import describe, rates, table, torch, zipf_csr  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DIM = 64


def main():
    X = zipf_csr().astype(np.float32)
    W = table(X, DIM)
    print(f"machine: {machine()}; float32, dim {DIM}, one thread\n")
    sizes = (256, 4096, 16384, 65536, 131072, X.shape[1])
    folded = []
    for n_rows in sizes:
        Xn = X.copy()
        Xn.indices = Xn.indices % n_rows
        folded.append((Xn, W))
    # Every table size takes its turn in every round.
    rows = []
    for n_rows, result in zip(sizes, rates(folded, 7, threads=(1,), scipy=False)):
        row = {"table_rows": n_rows, "table_mb": n_rows * DIM * 4 / 2**20, **result[1]}
        rows.append(row)
        print(f"table {row['table_mb']:7.2f} MB: {describe(row)}", flush=True)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    save_results(
        os.path.join(HERE, "results", "memory_wall.json"),
        {"machine": machine(), "torch": torch.__version__ if torch else None, "rows": rows},
    )


if __name__ == "__main__":
    main()
