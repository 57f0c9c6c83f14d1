"""deterministic=True: the same model bit for bit, run after run and for every n_jobs."""
import numpy as np
import pytest
import scipy.sparse as sp

import reference
from sparsebed import EmbeddingClassifier, _kernels


def problem(n_out, seed=0, n=90, n_features=40):
    rng = np.random.default_rng(seed)
    X = sp.random(n, n_features, density=0.15, format="csr", random_state=seed)
    y = rng.integers(0, max(n_out, 2), n).astype(np.int32)
    return X, y, rng.uniform(0.5, 2.0, n), rng.permutation(n).astype(np.int64), rng


@pytest.mark.parametrize("n_out", [1, 3])
@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
@pytest.mark.parametrize("alpha", [0.0, 0.05])
@pytest.mark.parametrize("batch_size", [1, 7, 32, 200])
def test_batched_pass_matches_reference_for_any_thread_count(n_out, combiner, alpha, batch_size):
    X, y, sw, order, rng = problem(n_out)
    W = rng.standard_normal((X.shape[1], 6))
    coef, b = rng.standard_normal((n_out, 6)) * 0.1, rng.standard_normal(n_out) * 0.1
    W_ref, coef_ref, b_ref = W.copy(), coef.copy(), b.copy()
    loss_ref = reference.sgd_epoch_batched(
        X, y, sw, order, W_ref, coef_ref, b_ref, combiner, 0.3, 0.05, alpha, batch_size
    )
    results = []
    for n_threads in (1, 2, 3):
        W2, coef2, b2, stamp = W.copy(), coef.copy(), b.copy(), np.zeros(X.shape[1])
        loss, clock, bad = _kernels.sgd_epoch_batched(
            X.data, X.indices, X.indptr, y, sw, order, W2, coef2, b2, stamp,
            _kernels.COMBINERS[combiner], 0.3, 0.05, alpha, True, batch_size, n_threads,
        )  # fmt: skip
        _kernels.apply_decay(W2, stamp, clock, 1)
        assert bad == -1
        np.testing.assert_allclose(loss, loss_ref, rtol=1e-12)
        for got, want in ((W2, W_ref), (coef2, coef_ref), (b2, b_ref)):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        results.append((loss, W2, coef2, b2))
    for other in results[1:]:
        assert other[0] == results[0][0]
        for got, want in zip(other[1:], results[0][1:]):
            assert np.array_equal(got, want)


def test_batched_pass_is_identical_when_the_team_shrinks_and_regrows():
    # Long enough (6,000 batches) for the first thread to send the others to
    # sit out and call them back several times when they come late (every
    # wait counts as late in the debug build CI runs): the result must not move.
    X, y, sw, order, rng = problem(3, n=6000, n_features=300)
    W = rng.standard_normal((X.shape[1], 8))
    results = []
    for n_threads in (1, 2, 2, 3):
        params = [W.copy(), np.zeros((3, 8)), np.zeros(3), np.zeros(X.shape[1])]
        _kernels.sgd_epoch_batched(
            X.data, X.indices, X.indptr, y, sw, order, *params, 0, 0.3, 0.1, 1e-3, True, 1, n_threads
        )
        results.append(params)
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            assert np.array_equal(got, want)


def test_batch_of_one_is_sequential_sgd():
    X, y, sw, order, rng = problem(3)
    W = rng.standard_normal((X.shape[1], 5))
    coef, b = rng.standard_normal((3, 5)) * 0.1, np.zeros(3)
    args = (X.data, X.indices, X.indptr, y, sw, order)
    one = [W.copy(), coef.copy(), b.copy(), np.zeros(X.shape[1])]
    seq = [W.copy(), coef.copy(), b.copy(), np.zeros(X.shape[1])]
    _kernels.sgd_epoch_batched(*args, *one, 0, 0.3, 0.1, 0.0, True, 1, 2)
    _kernels.sgd_epoch(*args, *seq, 0, 0.3, 0.1, 0.0, True, 1)
    for got, want in zip(one[:3], seq[:3]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_batched_pass_skips_malformed_rows_and_reports_the_first(n_threads):
    X, y, sw, order, rng = problem(3)
    X.indices[X.indptr[5]] = 10**6
    X.indices[X.indptr[40]] = -1
    first = 5 if list(order).index(5) < list(order).index(40) else 40
    W = rng.standard_normal((X.shape[1], 4))
    params = [W.copy(), np.zeros((3, 4)), np.zeros(3), np.zeros(X.shape[1])]
    _, _, bad = _kernels.sgd_epoch_batched(
        X.data, X.indices, X.indptr, y, sw, order, *params, 0, 0.3, 0.1, 0.0, True, 8, n_threads
    )
    assert bad == first
    assert np.isfinite(params[0]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_deterministic_fit_is_identical_for_every_n_jobs(dtype):
    rng = np.random.default_rng(0)
    X = sp.random(600, 200, density=0.05, format="csr", random_state=0)
    y = np.where(X[:, :100].sum(axis=1).A1 > X[:, 100:].sum(axis=1).A1, "a", "b")
    y[rng.random(600) < 0.3] = "c"
    fits = [
        EmbeddingClassifier(
            deterministic=True, n_jobs=n_jobs, random_state=0, dtype=dtype, max_iter=5
        ).fit(X, y)
        for n_jobs in (1, 2, 2, -1)
    ]
    for other in fits[1:]:
        for name in ("embeddings_", "coef_", "intercept_"):
            assert np.array_equal(getattr(other, name), getattr(fits[0], name)), name
        assert other.loss_curve_ == fits[0].loss_curve_


def test_deterministic_fit_learns_as_well_as_hogwild():
    X = sp.random(3000, 300, density=0.03, format="csr", random_state=1)
    y = np.asarray(X[:, :150].sum(axis=1) > X[:, 150:].sum(axis=1)).ravel().astype(int)
    y = y + 2 * (np.asarray(X[:, :30].sum(axis=1)).ravel() > 0.4)
    X_test, y_test = X[2000:], y[2000:]
    scores = {
        mode: EmbeddingClassifier(deterministic=mode, n_jobs=2, random_state=0)
        .fit(X[:2000], y[:2000])
        .score(X_test, y_test)
        for mode in (False, True)
    }
    assert scores[True] > 0.6
    assert abs(scores[True] - scores[False]) < 0.03
