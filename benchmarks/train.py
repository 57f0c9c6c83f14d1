"""Training speed and accuracy on the Debian text task, side by side with the peers.

Usage::

    python benchmarks/train.py PATH/TO/debian_packages.jsonl.gz [--threads 2] [--skip-logreg]

The task: ``summary + " . " + description`` -> ``section``, sections with at
least 20 packages, the record's own split. Every model is fitted in this one
run, on the same documents, with the same embedding dimension (64) and threads:

- sparsebed EmbeddingClassifier on TfidfVectorizer(sublinear_tf=True,
  min_df=2) features; vectorising is timed apart and reported beside the fit;
- fastText ``train_supervised`` (dim 64, lr 0.2, the same epochs), whose time
  includes reading and tokenising its training file, with and without
  ``wordNgrams=2``, on text lower-cased with punctuation split off (the
  preprocessing of fastText's tutorial);
- torch ``EmbeddingBag(mode="sum", sparse=True)`` + ``Linear`` with sparse SGD
  (batch 32, summed loss, lr 0.2 decaying linearly, 10 epochs) on the same
  TF-IDF features;
- scikit-learn ``SGDClassifier(loss="log_loss")`` and ``LogisticRegression(C=10)``.

Fit times are medians over ``--repeat`` fits, the sparsebed fits taking turns
with seeds 0, 1, ... and their accuracy the median over those seeds
(LogisticRegression: one fit).
Tokens/s/thread counts the non-zeros of the training matrix (fastText: the
words of its input) times epochs, per second of fit and thread. Writes
``benchmarks/results/train.json`` and ``benchmarks/train.png``.
"""
import argparse
import os
import re
import sys
import tempfile
import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier

sys.path.insert(0, os.path.dirname(__file__))
from _common import load_debian_text, machine, peak_rss_mb, save_results  # noqa: E402

from sparsebed import EmbeddingClassifier  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DIM = 64


def timed(fit, repeat):
    """(median fit time, last fitted model) of ``fit()`` over ``repeat`` runs."""
    times, model = [], None
    for _ in range(repeat):
        tic = time.perf_counter()
        model = fit()
        times.append(time.perf_counter() - tic)
    return float(np.median(times)), model


def fasttext_runs(train, test, epochs, threads, repeat):
    import fasttext

    def clean(text):
        # The preprocessing of fastText's own text-classification tutorial:
        # lower case, punctuation split off as tokens.
        return re.sub(r"\s+", " ", re.sub(r"([.!?,'/()])", r" \1 ", text.lower())).strip()

    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "train.txt")
    with open(path, "w", encoding="utf-8") as f:
        for text, label in zip(*train):
            f.write(f"__label__{label} {clean(text)}\n")
    words = sum(len(clean(t).split()) for t in train[0])
    test_text = [clean(t) for t in test[0]]
    out = {}
    for ngrams in (1, 2):
        seconds, model = timed(
            lambda: fasttext.train_supervised(
                input=path, dim=DIM, epoch=epochs, lr=0.2, wordNgrams=ngrams,
                thread=threads, verbose=0,
            ),
            repeat,
        )  # fmt: skip
        labels, _ = model.predict(test_text)
        accuracy = float(np.mean([lab[0][len("__label__"):] == y for lab, y in zip(labels, test[1])]))
        out[f"fastText dim {DIM}, wordNgrams={ngrams}"] = dict(
            fit=seconds, accuracy=accuracy, tokens_per_s_thread=words * epochs / seconds / threads
        )
    return out


def torch_run(X_train, y_train, X_test, y_test, epochs, threads, repeat, batch=32, lr=0.2):
    import torch

    torch.set_num_threads(threads)
    classes, y_enc = np.unique(y_train, return_inverse=True)
    X_train, X_test = X_train.tocsr(), X_test.tocsr()

    def bags(X, rows):
        sub = X[rows]
        return (
            torch.from_numpy(sub.indices.astype(np.int64)),
            torch.from_numpy(sub.indptr[:-1].astype(np.int64)),
            torch.from_numpy(sub.data.astype(np.float32)),
        )

    def fit():
        torch.manual_seed(0)
        emb = torch.nn.EmbeddingBag(X_train.shape[1], DIM, mode="sum", sparse=True)
        head = torch.nn.Linear(DIM, len(classes))
        params = [{"params": emb.parameters()}, {"params": head.parameters()}]
        opt = torch.optim.SGD(params, lr=lr)
        n, step, total = X_train.shape[0], 0, epochs * ((X_train.shape[0] + batch - 1) // batch)
        rng = np.random.default_rng(0)
        target_all = torch.from_numpy(y_enc)
        for _ in range(epochs):
            order = rng.permutation(n)
            for start in range(0, n, batch):
                rows = order[start:start + batch]
                idx, off, w = bags(X_train, rows)
                for group in opt.param_groups:  # linear decay, as fastText and sparsebed
                    group["lr"] = lr * (1 - step / total)
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(  # summed: lr is per sample
                    head(emb(idx, off, per_sample_weights=w)), target_all[rows], reduction="sum"
                )
                loss.backward()
                opt.step()
                step += 1
        return emb, head

    seconds, (emb, head) = timed(fit, repeat)
    with torch.no_grad():
        idx, off, w = bags(X_test, np.arange(X_test.shape[0]))
        pred = head(emb(idx, off, per_sample_weights=w)).argmax(1).numpy()
    accuracy = float(np.mean(classes[pred] == y_test))
    return {
        f"torch EmbeddingBag+Linear, sparse SGD, batch {batch}": dict(
            fit=seconds, accuracy=accuracy,
            tokens_per_s_thread=X_train.nnz * epochs / seconds / threads,
        )
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="the full Debian corpus, debian_packages.jsonl.gz")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-logreg", action="store_true")
    parser.add_argument("--skip-torch", action="store_true")
    args = parser.parse_args()

    train, test = load_debian_text(args.path)
    tic = time.perf_counter()
    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2, dtype=np.float32)
    X_train = vectorizer.fit_transform(train[0])
    X_test = vectorizer.transform(test[0])
    vectorise = time.perf_counter() - tic
    print(f"machine: {machine()}")
    print(
        f"{X_train.shape[0]} train / {X_test.shape[0]} test documents, {X_train.shape[1]} "
        f"features, {X_train.nnz / 1e6:.2f} M non-zeros; TfidfVectorizer fit+transform "
        f"{vectorise:.2f} s (not in the sparsebed fit times below)\n"
    )
    results = {}

    def report(name, r):
        results[name] = r
        print(
            f"{name:55} accuracy {r['accuracy']:.4f}  fit {r['fit']:7.2f} s  "
            f"{r['tokens_per_s_thread'] / 1e6:6.2f} M tokens/s/thread",
            flush=True,
        )

    # The sparsebed fits take turns, so that each mode sees the same load;
    # fit r uses random_state=r, and the accuracy is the median over the seeds.
    modes = sorted({(10, False), (10, True), (args.epochs, False)})
    times, accuracies = {mode: [] for mode in modes}, {mode: [] for mode in modes}
    for seed in range(args.repeat):
        for epochs, deterministic in modes:
            tic = time.perf_counter()
            model = EmbeddingClassifier(
                n_components=DIM, max_iter=epochs, n_jobs=args.threads, random_state=seed,
                deterministic=deterministic,
            ).fit(X_train, train[1])
            times[epochs, deterministic].append(time.perf_counter() - tic)
            accuracies[epochs, deterministic].append(float(model.score(X_test, test[1])))
    for epochs, deterministic in modes:
        seconds = float(np.median(times[epochs, deterministic]))
        mode = ", deterministic" if deterministic else ""
        report(
            f"sparsebed EmbeddingClassifier dim {DIM}, {epochs} epochs{mode}",
            dict(fit=seconds, accuracy=float(np.median(accuracies[epochs, deterministic])),
                 accuracies=accuracies[epochs, deterministic], fits=times[epochs, deterministic],
                 tokens_per_s_thread=X_train.nnz * epochs / seconds / args.threads),
        )
    paired = np.array(times[10, True]) / np.array(times[10, False])
    print(f"deterministic / lock-free, fit by fit: {np.round(paired, 2)}, median {np.median(paired):.2f}")
    try:
        for name, r in fasttext_runs(train, test, args.epochs, args.threads, args.repeat).items():
            report(f"{name}, {args.epochs} epochs", r)
    except ImportError:
        print("fastText not installed (pip install 'sparsebed[bench]'): skipped")
    if not args.skip_torch:
        try:
            for name, r in torch_run(
                X_train, train[1], X_test, test[1], 10, args.threads, 1
            ).items():
                report(f"{name}, 10 epochs", r)
        except ImportError:
            print("torch not installed (pip install 'sparsebed[bench]'): skipped")
    seconds, model = timed(
        lambda: SGDClassifier(loss="log_loss", alpha=1e-6, max_iter=20, tol=None,
                              random_state=0).fit(X_train, train[1]),
        1,
    )
    report("SGDClassifier(log_loss, alpha=1e-6), 20 epochs",
           dict(fit=seconds, accuracy=float(model.score(X_test, test[1])),
                tokens_per_s_thread=X_train.nnz * 20 * len(model.classes_) / seconds))
    if not args.skip_logreg:
        seconds, model = timed(lambda: LogisticRegression(C=10, max_iter=1000).fit(X_train, train[1]), 1)
        report("LogisticRegression(C=10)", dict(
            fit=seconds, accuracy=float(model.score(X_test, test[1])), tokens_per_s_thread=float("nan")))

    out = {"machine": machine(), "threads": args.threads, "vectorise_s": vectorise,
           "peak_rss_mb": peak_rss_mb(), "results": results,
           "deterministic_over_lock_free": paired.tolist()}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    save_results(os.path.join(HERE, "results", "train.json"), out)
    print(f"\npeak RSS {out['peak_rss_mb']:.0f} MiB")
    plot(results, os.path.join(HERE, "train.png"))


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, r in results.items():
        colour = "C0" if name.startswith("sparsebed") else None
        ax.scatter(r["fit"], r["accuracy"], s=60, color=colour)
        ax.annotate(name, (r["fit"], r["accuracy"]), fontsize=7, xytext=(5, 3),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("fit time (s, log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Debian package sections: accuracy against fit time")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
