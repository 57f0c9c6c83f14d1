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

The run is ``--repeat`` rounds. Each round fits the three sparsebed models
(seed = round) and then the peers due in it: both fastText models every
round, torch, SGDClassifier and LogisticRegression once each, in rounds 0, 1
and 2. So every program's fits are spread over the whole run, and a spell of
the machine running slow falls on sparsebed and the peers alike. Fit times
are medians over a model's fits, sparsebed accuracies the median over the
seeds.
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


def timed(fit):
    """(seconds, fitted model) of one ``fit()``."""
    tic = time.perf_counter()
    model = fit()
    return time.perf_counter() - tic, model


def fasttext_fits(train, test, epochs, threads):
    """{name: fit_once} for fastText with and without word bigrams; each
    ``fit_once()`` returns (seconds, accuracy, tokens per second per thread)."""
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

    def fit_once(ngrams):
        seconds, model = timed(
            lambda: fasttext.train_supervised(
                input=path, dim=DIM, epoch=epochs, lr=0.2, wordNgrams=ngrams,
                thread=threads, verbose=0,
            )
        )  # fmt: skip
        labels, _ = model.predict(test_text)
        accuracy = float(np.mean([lab[0][len("__label__"):] == y for lab, y in zip(labels, test[1])]))
        return seconds, accuracy, words * epochs / seconds / threads

    return {
        f"fastText dim {DIM}, wordNgrams={ngrams}, {epochs} epochs": (lambda n=ngrams: fit_once(n))
        for ngrams in (1, 2)
    }


def torch_fit(X_train, y_train, X_test, y_test, epochs, threads, batch=32, lr=0.2):
    """{name: fit_once} for torch EmbeddingBag + Linear with sparse SGD."""
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

    def fit_once():
        seconds, (emb, head) = timed(fit)
        with torch.no_grad():
            idx, off, w = bags(X_test, np.arange(X_test.shape[0]))
            pred = head(emb(idx, off, per_sample_weights=w)).argmax(1).numpy()
        accuracy = float(np.mean(classes[pred] == y_test))
        return seconds, accuracy, X_train.nnz * epochs / seconds / threads

    return {f"torch EmbeddingBag+Linear, sparse SGD, batch {batch}, {epochs} epochs": fit_once}


def sklearn_fits(X_train, y_train, X_test, y_test, logreg=True):
    """{name: fit_once} for SGDClassifier and LogisticRegression."""
    def fit_once(make, epochs):
        seconds, model = timed(lambda: make().fit(X_train, y_train))
        tokens = X_train.nnz * epochs * len(model.classes_) / seconds if epochs else float("nan")
        return seconds, float(model.score(X_test, y_test)), tokens

    fits = {
        "SGDClassifier(log_loss, alpha=1e-6), 20 epochs": lambda: fit_once(
            lambda: SGDClassifier(loss="log_loss", alpha=1e-6, max_iter=20, tol=None, random_state=0), 20
        )
    }
    if logreg:
        fits["LogisticRegression(C=10)"] = lambda: fit_once(
            lambda: LogisticRegression(C=10, max_iter=1000), 0
        )
    return fits


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
    peers = {}  # name: (fit_once, the rounds it runs in)
    try:
        for name, fit in fasttext_fits(train, test, args.epochs, args.threads).items():
            peers[name] = (fit, range(args.repeat))
    except ImportError:
        print("fastText not installed (pip install 'sparsebed[bench]'): skipped")
    singles = {}
    if not args.skip_torch:
        try:
            singles.update(torch_fit(X_train, train[1], X_test, test[1], 10, args.threads))
        except ImportError:
            print("torch not installed (pip install 'sparsebed[bench]'): skipped")
    singles.update(sklearn_fits(X_train, train[1], X_test, test[1], logreg=not args.skip_logreg))
    for r, (name, fit) in enumerate(singles.items()):
        peers[name] = (fit, [r % args.repeat])

    modes = sorted({(10, False), (10, True), (args.epochs, False)})
    names = {(epochs, det): f"sparsebed EmbeddingClassifier dim {DIM}, {epochs} epochs"
             + (", deterministic" if det else "") for epochs, det in modes}
    runs = {name: [] for name in list(names.values()) + list(peers)}  # (seconds, accuracy, tokens/s/thread)
    for seed in range(args.repeat):
        for epochs, deterministic in modes:
            seconds, model = timed(lambda: EmbeddingClassifier(
                n_components=DIM, max_iter=epochs, n_jobs=args.threads, random_state=seed,
                deterministic=deterministic,
            ).fit(X_train, train[1]))  # fmt: skip
            runs[names[epochs, deterministic]].append(
                (seconds, float(model.score(X_test, test[1])),
                 X_train.nnz * epochs / seconds / args.threads)
            )
        for name, (fit, rounds) in peers.items():
            if seed in rounds:
                runs[name].append(fit())
        print(f"round {seed + 1} of {args.repeat} done", flush=True)

    results = {}
    for name, fits in runs.items():
        seconds, accuracy, tokens = np.median(np.array(fits), axis=0)
        results[name] = dict(fit=float(seconds), accuracy=float(accuracy), fits=[f[0] for f in fits],
                             accuracies=[f[1] for f in fits], tokens_per_s_thread=float(tokens))
        print(f"{name:60} accuracy {accuracy:.4f}  fit {seconds:7.2f} s  "
              f"{results[name]['tokens_per_s_thread'] / 1e6:6.2f} M tokens/s/thread")
    paired = np.array(results[names[10, True]]["fits"]) / np.array(results[names[10, False]]["fits"])
    print(f"deterministic / lock-free, fit by fit: {np.round(paired, 2)}, median {np.median(paired):.2f}")

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
    for i, (name, r) in enumerate(results.items()):
        ours = name.startswith("sparsebed")
        ax.scatter(r["fit"], r["accuracy"], s=110 if ours else 60, marker="*" if ours else "o",
                   color=f"C{i}", label=name)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_xscale("log")
    ax.set_xlabel("fit time (s, log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Debian package sections: accuracy against fit time")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
