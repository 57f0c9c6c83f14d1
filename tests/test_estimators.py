"""Behaviour of SparseEmbedding and EmbeddingClassifier, as their docstrings define it.

The data are small synthetic bags of features: each class owns a block of
"signal" columns, each sample holds a few signal columns of its class plus a
few shared noise columns, with small integer counts. The label is therefore a
function of which columns are present, an easy problem for a bag-of-embeddings
model (optionally made harder by flipping a share of the labels).

Scikit-learn API conformance (estimator checks, Pipeline, clone, pickle,
set_output, input formats) is covered in test_sklearn_compat.py.
"""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit, softmax
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import recall_score
from sklearn.utils._param_validation import InvalidParameterError

from sparsebed import EmbeddingClassifier, SparseEmbedding, embedding_sum

COMBINERS = ["sum", "mean", "sqrtn"]


def make_bags(
    n_samples=400,
    n_features=120,
    n_classes=2,
    *,
    n_signal=3,
    n_noise=5,
    flip=0.0,
    class_prior=None,
    seed=0,
):
    """Sparse count bags whose label is given by which signal columns are present.

    Columns ``[c * block, (c + 1) * block)`` are the signal of class ``c``;
    the remaining columns are noise shared by all classes. A share ``flip``
    of the labels is redrawn at random (label noise).
    """
    rng = np.random.RandomState(seed)
    y = rng.choice(n_classes, size=n_samples, p=class_prior)
    block = n_features // (2 * n_classes)
    noise_cols = np.arange(block * n_classes, n_features)
    rows, cols, vals = [], [], []
    for i, c in enumerate(y):
        signal = rng.choice(block, size=n_signal, replace=False) + c * block
        noise = rng.choice(noise_cols, size=n_noise, replace=False)
        feats = np.concatenate([signal, noise])
        rows.extend([i] * len(feats))
        cols.extend(feats)
        vals.extend(rng.randint(1, 4, size=len(feats)))
    X = sp.csr_matrix(
        (np.asarray(vals, dtype=np.float64), (rows, cols)), shape=(n_samples, n_features)
    )
    if flip:
        redraw = rng.rand(n_samples) < flip
        y = y.copy()
        y[redraw] = rng.choice(n_classes, size=redraw.sum())
    return X, y


def reference_embedding(X, W, combiner):
    """Dense float64 reference of the documented transform: scale_i * (X @ W)[i]."""
    Xd = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    out = Xd @ W.astype(np.float64)
    if combiner == "mean":
        div = Xd.sum(axis=1)
    elif combiner == "sqrtn":
        div = np.sqrt((Xd**2).sum(axis=1))
    else:
        return out
    scale = np.divide(1.0, div, out=np.zeros_like(div), where=div != 0)
    return out * scale[:, None]


def same_params(a, b):
    return all(
        np.array_equal(getattr(a, name), getattr(b, name))
        for name in ("embeddings_", "coef_", "intercept_")
    )


@pytest.fixture(scope="module")
def bags_with_special_rows():
    """Count bags plus an empty row and a row of non-integer weights."""
    X, _ = make_bags(n_samples=30, n_features=40, seed=3)
    X = X.tolil()
    X[5, :] = 0
    X[7, :] = 0
    X[7, [1, 9, 30]] = [0.25, 1.5, 0.125]
    return X.tocsr()


# ---------------------------------------------------------------- SparseEmbedding


@pytest.mark.parametrize("combiner", COMBINERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_embedding_transform_is_scaled_product(bags_with_special_rows, combiner, dtype):
    X = bags_with_special_rows
    se = SparseEmbedding(n_components=6, combiner=combiner, dtype=dtype, random_state=0).fit(X)
    out = se.transform(X)
    assert out.shape == (X.shape[0], 6)
    assert out.dtype == dtype
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, reference_embedding(X, se.embeddings_, combiner),
                               rtol=rtol, atol=rtol)
    # The empty row has a zero divisor: zeros, never NaN.
    assert np.all(out[5] == 0)
    if combiner == "sum":
        np.testing.assert_allclose(out, X @ se.embeddings_, rtol=rtol, atol=rtol)


def test_sparse_embedding_mean_of_zero_sum_row_is_zero():
    W = np.arange(12, dtype=np.float64).reshape(4, 3)
    X = sp.csr_matrix(np.array([[1.0, -1.0, 0.0, 0.0], [2.0, 0.0, 0.0, 2.0]]))
    out = SparseEmbedding(combiner="mean", init=W).fit(X).transform(X)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[0], 0.0)
    np.testing.assert_allclose(out[1], (W[0] + W[3]) / 2)


@pytest.mark.parametrize("combiner", COMBINERS)
def test_sparse_embedding_duplicate_csr_entries_mean_their_sum(combiner):
    # scipy defines a CSR entry stored twice as the sum of the two values, so
    # the matrix below is [[0, 2, 1, 0, 0]] however it is stored; transform must
    # not depend on the storage (a bag of token ids is often built this way).
    W = np.random.RandomState(0).standard_normal((5, 3))
    X_dup = sp.csr_matrix(
        (np.ones(3), np.array([1, 1, 2]), np.array([0, 3])), shape=(1, 5)
    )
    assert not X_dup.has_canonical_format
    se = SparseEmbedding(init=W, combiner=combiner, dtype=np.float64).fit(X_dup)
    expected = reference_embedding(X_dup.toarray(), W, combiner)
    np.testing.assert_allclose(se.transform(X_dup.toarray()), expected, rtol=1e-12)
    np.testing.assert_allclose(se.transform(X_dup), expected, rtol=1e-12)
    np.testing.assert_allclose(embedding_sum(X_dup, W, combiner=combiner), expected, rtol=1e-12)
    # The user's matrix is left as it was.
    np.testing.assert_array_equal(X_dup.indices, [1, 1, 2])
    np.testing.assert_array_equal(X_dup.data, [1.0, 1.0, 1.0])


@pytest.mark.parametrize("dtype, expected", [
    (None, np.float32),  # the default
    (np.float32, np.float32),
    (np.float64, np.float64),
    ("float64", np.float64),
    (np.dtype("float32"), np.float32),
])
def test_sparse_embedding_dtype(dtype, expected):
    X, _ = make_bags(n_samples=20, n_features=30)
    kwargs = {} if dtype is None else {"dtype": dtype}
    for X_in in (X, X.astype(np.float32)):
        se = SparseEmbedding(n_components=4, random_state=0, **kwargs).fit(X_in)
        assert se.embeddings_.dtype == expected
        assert se.transform(X_in).dtype == expected


def test_sparse_embedding_default_n_components_is_64():
    X, _ = make_bags(n_samples=10, n_features=30)
    se = SparseEmbedding(random_state=0).fit(X)
    assert se.embeddings_.shape == (30, 64)
    assert se.transform(X).shape == (10, 64)


def test_sparse_embedding_random_state():
    X, _ = make_bags(n_samples=10, n_features=50)
    a = SparseEmbedding(n_components=8, random_state=0).fit(X).embeddings_
    b = SparseEmbedding(n_components=8, random_state=0).fit(X).embeddings_
    c = SparseEmbedding(n_components=8, random_state=1).fit(X).embeddings_
    d = SparseEmbedding(n_components=8, random_state=np.random.RandomState(0)).fit(X).embeddings_
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, d)
    assert not np.allclose(a, c)
    # Refitting the same estimator with an int seed gives the same table again.
    se = SparseEmbedding(n_components=8, random_state=0)
    np.testing.assert_array_equal(se.fit(X).embeddings_, se.fit(X).embeddings_)


def test_sparse_embedding_random_table_preserves_squared_norms():
    n_features, d = 1000, 64
    rng = np.random.RandomState(0)
    X = sp.random(2000, n_features, density=0.01, random_state=rng, format="csr",
                  data_rvs=lambda n: rng.randint(1, 5, size=n).astype(float))
    se = SparseEmbedding(random_state=0, dtype=np.float64).fit(X)
    assert se.embeddings_.shape == (n_features, d)
    # N(0, 1/d): mean 0, standard deviation 1/sqrt(d).
    assert abs(se.embeddings_.mean()) < 0.01
    assert se.embeddings_.std() == pytest.approx(1 / np.sqrt(d), rel=0.05)
    in_norms = np.asarray(X.multiply(X).sum(axis=1)).ravel()
    out_norms = (se.transform(X) ** 2).sum(axis=1)
    keep = in_norms > 0
    ratio = out_norms[keep] / in_norms[keep]
    assert ratio.mean() == pytest.approx(1.0, abs=0.1)
    assert out_norms.sum() / in_norms.sum() == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_embedding_pretrained_init(dtype):
    X, _ = make_bags(n_samples=20, n_features=30)
    init = np.random.RandomState(0).standard_normal((30, 5))
    init_before = init.copy()
    se = SparseEmbedding(init=init, dtype=dtype).fit(X)
    assert se.embeddings_.shape == (30, 5)  # n_components=None takes init's width
    assert se.embeddings_.dtype == dtype
    np.testing.assert_array_equal(se.embeddings_, init.astype(dtype))
    out_before = se.transform(X)
    # A copy: changing the user's array afterwards changes nothing in the model.
    init[:] = 123.0
    np.testing.assert_array_equal(se.embeddings_, init_before.astype(dtype))
    np.testing.assert_array_equal(se.transform(X), out_before)
    # And the model's table is not the user's array even when no cast is needed.
    init64 = init_before.copy()
    se64 = SparseEmbedding(init=init64, dtype=np.float64).fit(X)
    assert not np.shares_memory(se64.embeddings_, init64)
    # A matching n_components and a list of lists are accepted too.
    se_list = SparseEmbedding(n_components=5, init=init_before.tolist(), dtype=dtype).fit(X)
    np.testing.assert_array_equal(se_list.embeddings_, init_before.astype(dtype))


@pytest.mark.parametrize("init", ["normal", "pretrained"])
def test_trained_arrays_start_on_a_cache_line(init):
    # The SGD threads write different rows of the table and the head at once;
    # rows that start on a cache line share none between threads.
    X, y = make_bags(n_samples=40, n_features=30)
    init = np.ones((30, 16)) if init == "pretrained" else init
    for dtype in (np.float32, np.float64):
        clf = EmbeddingClassifier(init=init, n_components=16, dtype=dtype, max_iter=1).fit(X, y)
        for name in ("embeddings_", "coef_"):
            array = getattr(clf, name)
            assert array.ctypes.data % 64 == 0, name
            assert array.flags.c_contiguous and array.flags.writeable and array.dtype == dtype


def test_sparse_embedding_pretrained_init_wrong_shape():
    X, _ = make_bags(n_samples=20, n_features=30)
    with pytest.raises(ValueError, match="init"):
        SparseEmbedding(init=np.zeros((29, 5))).fit(X)
    with pytest.raises(ValueError, match="init"):
        SparseEmbedding(init=np.zeros((31, 5))).fit(X)
    with pytest.raises(ValueError, match="init"):
        SparseEmbedding(n_components=4, init=np.zeros((30, 5))).fit(X)


def test_sparse_embedding_feature_names_out():
    X, _ = make_bags(n_samples=10, n_features=30)
    se = SparseEmbedding(n_components=3, random_state=0).fit(X)
    names = se.get_feature_names_out()
    assert list(names) == ["sparseembedding0", "sparseembedding1", "sparseembedding2"]
    se = SparseEmbedding(init=np.ones((30, 12))).fit(X)
    assert list(se.get_feature_names_out()) == [f"sparseembedding{i}" for i in range(12)]


@pytest.mark.parametrize("Estimator", [SparseEmbedding, EmbeddingClassifier])
def test_csr_input_after_fitting_on_named_columns_still_warns(Estimator):
    # A float CSR matrix skips scikit-learn's validation (it would be handed
    # back unchanged), but not its warning when the model knows column names.
    pd = pytest.importorskip("pandas")
    X, y = make_bags(n_samples=40, n_features=12)
    frame = pd.DataFrame(X.toarray(), columns=[f"w{i}" for i in range(12)])
    model = Estimator(n_components=3, random_state=0).fit(frame, y)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        out = model.transform(X)
    np.testing.assert_allclose(out, model.transform(frame), rtol=1e-6)


def test_sparse_embedding_transform_checks_n_features_and_accepts_empty():
    X, _ = make_bags(n_samples=10, n_features=30)
    se = SparseEmbedding(n_components=7, random_state=0).fit(X)
    with pytest.raises(ValueError):
        se.transform(sp.csr_matrix((3, 29)))
    with pytest.raises(ValueError):
        se.transform(np.zeros((3, 31)))
    for empty in (X[:0], sp.csr_matrix((0, 30)), np.zeros((0, 30))):
        out = se.transform(empty)
        assert out.shape == (0, 7)
        assert out.dtype == np.float32


@pytest.mark.parametrize("params", [
    {"n_components": 0},
    {"n_components": -3},
    {"combiner": "max"},
])
def test_sparse_embedding_invalid_params_are_parameter_errors(params):
    X, _ = make_bags(n_samples=10, n_features=30)
    with pytest.raises(InvalidParameterError):
        SparseEmbedding(**params).fit(X)


@pytest.mark.parametrize("params", [{"dtype": np.int32}, {"dtype": np.float16}, {"n_jobs": 0}])
def test_sparse_embedding_bad_dtype_or_n_jobs_raise(params):
    X, _ = make_bags(n_samples=10, n_features=30)
    with pytest.raises(ValueError, match="dtype|n_jobs"):
        SparseEmbedding(**params).fit_transform(X)


# ------------------------------------------------------- EmbeddingClassifier: fitting


LABELS = {
    # class index -> label; chosen so that the label order differs from the index order
    "str2": np.array(["zebra", "apple"]),
    "int2": np.array([7, -3]),
    "bool2": np.array([True, False]),
    "str3": np.array(["dog", "cat", "bird"]),
    "int3": np.array([10, -5, 3]),
    "str4": np.array(["d", "c", "b", "a"]),
}


@pytest.mark.parametrize("kind", list(LABELS))
def test_classifier_learns_and_predicts_labels(kind):
    labels = LABELS[kind]
    k = len(labels)
    X, y_idx = make_bags(n_classes=k, seed=0)
    X_test, y_test_idx = make_bags(n_classes=k, seed=1)
    y, y_test = labels[y_idx], labels[y_test_idx]
    clf = EmbeddingClassifier(n_components=16, random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, np.sort(labels))
    assert clf.classes_.dtype == labels.dtype
    pred = clf.predict(X_test)
    assert pred.shape == (X_test.shape[0],)
    assert pred.dtype == clf.classes_.dtype
    assert set(pred.tolist()) <= set(labels.tolist())
    assert np.mean(clf.predict(X) == y) >= 0.95
    assert np.mean(pred == y_test) >= 0.9
    assert clf.score(X_test, y_test) == np.mean(pred == y_test)


def test_classifier_accepts_python_list_of_strings():
    X, y_idx = make_bags(n_classes=3)
    y = [["low", "mid", "high"][i] for i in y_idx]
    clf = EmbeddingClassifier(n_components=16, random_state=0).fit(X, y)
    assert clf.classes_.tolist() == ["high", "low", "mid"]
    assert np.mean(clf.predict(X) == np.asarray(y)) >= 0.95


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_classifier_attribute_shapes_and_loss_curve(n_classes, dtype):
    X, y = make_bags(n_classes=n_classes, flip=0.1)
    clf = EmbeddingClassifier(n_components=9, max_iter=8, tol=None, dtype=dtype,
                              random_state=0).fit(X, y)
    n_out = 1 if n_classes == 2 else n_classes
    assert clf.embeddings_.shape == (X.shape[1], 9)
    assert clf.coef_.shape == (n_out, 9)
    assert clf.intercept_.shape == (n_out,)
    for name in ("embeddings_", "coef_", "intercept_"):
        assert getattr(clf, name).dtype == dtype
    assert clf.n_iter_ == 8
    assert len(clf.loss_curve_) == clf.n_iter_
    assert all(np.isfinite(clf.loss_curve_))
    assert clf.loss_curve_[-1] < 0.5 * clf.loss_curve_[0]
    assert clf.validation_scores_ == []
    assert clf.n_features_in_ == X.shape[1]


def test_classifier_binary_probabilities():
    X, y = make_bags(n_classes=2, flip=0.2)
    X_test, _ = make_bags(n_classes=2, seed=1)
    clf = EmbeddingClassifier(n_components=8, random_state=0).fit(X, y)
    scores = clf.decision_function(X_test)
    assert scores.shape == (X_test.shape[0],)
    proba = clf.predict_proba(X_test)
    assert proba.shape == (X_test.shape[0], 2)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(proba[:, 1], expit(scores.astype(np.float64)), rtol=1e-12)
    pred = clf.predict(X_test)
    np.testing.assert_array_equal(pred, clf.classes_[proba.argmax(axis=1)])
    np.testing.assert_array_equal(pred, clf.classes_[(scores > 0).astype(int)])
    # Not a degenerate model: both classes are predicted, with some confidence.
    assert set(pred.tolist()) == {0, 1}
    assert proba.max() > 0.9


def test_classifier_multiclass_probabilities():
    X, y = make_bags(n_classes=4, flip=0.2)
    X_test, _ = make_bags(n_classes=4, seed=1)
    clf = EmbeddingClassifier(n_components=8, random_state=0).fit(X, y)
    scores = clf.decision_function(X_test)
    assert scores.shape == (X_test.shape[0], 4)
    proba = clf.predict_proba(X_test)
    assert proba.shape == (X_test.shape[0], 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(proba, softmax(scores.astype(np.float64), axis=1), rtol=1e-10)
    pred = clf.predict(X_test)
    np.testing.assert_array_equal(pred, clf.classes_[proba.argmax(axis=1)])
    np.testing.assert_array_equal(pred, clf.classes_[scores.argmax(axis=1)])
    assert set(pred.tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("n_classes", [2, 3])
def test_classifier_predict_log_proba(n_classes):
    X, y = make_bags(n_classes=n_classes, flip=0.2)
    clf = EmbeddingClassifier(n_components=8, random_state=0).fit(X, y)
    proba = clf.predict_proba(X)
    log_proba = clf.predict_log_proba(X)
    assert log_proba.shape == proba.shape
    ok = proba > 1e-300
    np.testing.assert_allclose(log_proba[ok], np.log(proba[ok]), rtol=1e-10, atol=1e-12)

    # Extreme scores: probabilities underflow to 0, their logs stay finite.
    clf.coef_ = clf.coef_ * 1e4
    clf.intercept_ = clf.intercept_ * 1e4
    scores = clf.decision_function(X).astype(np.float64)
    assert np.abs(scores).max() > 1e3
    proba = clf.predict_proba(X)
    log_proba = clf.predict_log_proba(X)
    assert (proba == 0).any()  # the case that needs care
    assert np.all(np.isfinite(log_proba))
    assert np.all(log_proba <= 0)
    np.testing.assert_allclose(np.exp(log_proba), proba, atol=1e-12)
    if n_classes == 2:
        # log P(class 1) = -log(1 + exp(-s)) ~ -max(-s, 0) for large |s|.
        np.testing.assert_allclose(log_proba[:, 1], -np.logaddexp(0, -scores), rtol=1e-12)
        np.testing.assert_allclose(log_proba[:, 0], -np.logaddexp(0, scores), rtol=1e-12)
    else:
        lse = np.logaddexp.reduce(scores, axis=1)
        np.testing.assert_allclose(log_proba, scores - lse[:, None], rtol=1e-12, atol=1e-9)


def test_classifier_empty_input():
    X, y = make_bags(n_classes=3)
    clf = EmbeddingClassifier(n_components=8, random_state=0).fit(X, y)
    assert clf.predict(X[:0]).shape == (0,)
    assert clf.predict_proba(X[:0]).shape == (0, 3)
    assert clf.transform(X[:0]).shape == (0, 8)
    with pytest.raises(ValueError):
        clf.predict(X[:, :-1])


# ------------------------------------------------ reproducibility, dtypes, threads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_classifier_single_thread_fit_is_bit_reproducible(dtype):
    X, y = make_bags(n_classes=3, flip=0.2)
    params = dict(n_components=8, dtype=dtype, n_jobs=1, random_state=0)
    a = EmbeddingClassifier(**params).fit(X, y)
    b = EmbeddingClassifier(**params).fit(X, y)
    assert same_params(a, b)
    assert a.loss_curve_ == b.loss_curve_
    # Refitting the same estimator starts over from the same seed.
    assert same_params(a, a.fit(X, y)) and same_params(a, b)
    c = EmbeddingClassifier(**{**params, "random_state": 1}).fit(X, y)
    assert not np.allclose(a.embeddings_, c.embeddings_)


def test_classifier_float32_and_float64_agree():
    X, y = make_bags(n_classes=3, flip=0.1)
    X_test, _ = make_bags(n_classes=3, seed=1)
    m32 = EmbeddingClassifier(n_components=16, random_state=0, n_jobs=1).fit(X, y)
    m64 = EmbeddingClassifier(n_components=16, random_state=0, n_jobs=1,
                              dtype=np.float64).fit(X, y)
    assert np.mean(m32.predict(X_test) == m64.predict(X_test)) >= 0.98
    np.testing.assert_allclose(m32.predict_proba(X_test), m64.predict_proba(X_test), atol=1e-3)
    np.testing.assert_allclose(m32.loss_curve_, m64.loss_curve_, rtol=1e-3, atol=1e-5)


def test_classifier_two_threads_accuracy_matches_one_thread():
    X, y = make_bags(n_samples=1000, n_classes=3, flip=0.1)
    X_test, y_test = make_bags(n_samples=1000, n_classes=3, seed=1)
    acc = {}
    for n_jobs in (1, 2):
        clf = EmbeddingClassifier(n_components=16, n_jobs=n_jobs, random_state=0).fit(X, y)
        assert np.all(np.isfinite(clf.embeddings_)) and np.all(np.isfinite(clf.coef_))
        acc[n_jobs] = clf.score(X_test, y_test)
    assert acc[1] >= 0.9
    assert acc[2] >= acc[1] - 0.05


def test_classifier_prediction_does_not_depend_on_n_jobs():
    X, y = make_bags(n_classes=3, flip=0.1)
    clf = EmbeddingClassifier(n_components=8, random_state=0, n_jobs=1).fit(X, y)
    H1, P1 = clf.transform(X), clf.predict_proba(X)
    clf.set_params(n_jobs=2)
    np.testing.assert_array_equal(clf.transform(X), H1)
    np.testing.assert_array_equal(clf.predict_proba(X), P1)
    clf.set_params(n_jobs=-1)
    np.testing.assert_array_equal(clf.transform(X), H1)


# ----------------------------------------------------- transform / encoder use


@pytest.mark.parametrize("combiner", COMBINERS)
def test_classifier_transform_is_embedding_sum_of_learned_table(combiner):
    X, y = make_bags(n_classes=3)
    # "sum" does not rescale the rows of raw counts: it needs a smaller step.
    eta0 = 0.02 if combiner == "sum" else 0.5
    clf = EmbeddingClassifier(n_components=8, combiner=combiner, eta0=eta0,
                              random_state=0).fit(X, y)
    assert clf.score(X, y) >= 0.9
    H = clf.transform(X)
    assert H.shape == (X.shape[0], 8)
    assert H.dtype == np.float32
    np.testing.assert_array_equal(H, embedding_sum(X, clf.embeddings_, combiner=clf.combiner))
    np.testing.assert_allclose(H, reference_embedding(X, clf.embeddings_, combiner),
                               rtol=1e-5, atol=1e-6)
    # The head reads exactly this representation.
    np.testing.assert_allclose(clf.decision_function(X), H @ clf.coef_.T + clf.intercept_,
                               rtol=1e-5, atol=1e-5)


def test_classifier_embeddings_feed_a_downstream_model():
    X, y = make_bags(n_samples=600, n_classes=3)
    X_test, y_test = make_bags(n_samples=600, n_classes=3, seed=1)
    clf = EmbeddingClassifier(n_components=8, random_state=0).fit(X, y)
    hgb = HistGradientBoostingClassifier(max_iter=30, random_state=0)
    hgb.fit(clf.transform(X), y)
    assert hgb.score(clf.transform(X_test), y_test) >= 0.9


def test_classifier_fit_transform_equals_fit_then_transform():
    X, y = make_bags(n_classes=3, flip=0.1)
    params = dict(n_components=8, random_state=0, n_jobs=1)
    H = EmbeddingClassifier(**params).fit_transform(X, y)
    np.testing.assert_array_equal(H, EmbeddingClassifier(**params).fit(X, y).transform(X))
    sw = np.random.RandomState(0).rand(X.shape[0])
    Hw = EmbeddingClassifier(**params).fit_transform(X, y, sample_weight=sw)
    np.testing.assert_array_equal(
        Hw, EmbeddingClassifier(**params).fit(X, y, sample_weight=sw).transform(X)
    )


# ------------------------------------------------------------------ partial_fit


def test_partial_fit_first_call_needs_classes():
    X, y = make_bags()
    clf = EmbeddingClassifier(n_components=8)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y)
    with pytest.raises(ValueError, match="class"):
        EmbeddingClassifier(n_components=8).partial_fit(X, y, classes=[0])


def test_partial_fit_rejects_unseen_labels():
    X, y = make_bags(n_classes=3)
    clf = EmbeddingClassifier(n_components=8, random_state=0)
    clf.partial_fit(X[y != 2], y[y != 2], classes=[0, 1, 2])
    clf.partial_fit(X[y == 2], y[y == 2])  # a batch of a declared class is fine
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X[:10], np.full(10, 5))
    with pytest.raises(ValueError):
        EmbeddingClassifier(n_components=8).partial_fit(X, y, classes=[0, 1])


def test_partial_fit_improves_and_counts_calls():
    X, y = make_bags(n_samples=600, n_classes=3, flip=0.1)
    X_test, y_test = make_bags(n_samples=600, n_classes=3, seed=1)
    clf = EmbeddingClassifier(n_components=16, eta0=0.1, random_state=0)
    rng = np.random.RandomState(0)
    batches = np.array_split(rng.permutation(X.shape[0]), 6)
    clf.partial_fit(X[batches[0]], y[batches[0]], classes=np.array([2, 0, 1]))
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    first_acc = clf.score(X_test, y_test)
    calls = 1
    for _ in range(8):
        for b in batches:
            clf.partial_fit(X[b], y[b])
            calls += 1
    assert clf.n_iter_ == calls
    assert len(clf.loss_curve_) == calls
    final_acc = clf.score(X_test, y_test)
    assert final_acc >= 0.85
    assert final_acc > first_acc + 0.2


def test_failed_first_partial_fit_leaves_estimator_unfitted():
    X, y = make_bags(n_classes=3)
    clf = EmbeddingClassifier(n_components=8, random_state=0)
    with pytest.raises(ValueError):
        clf.partial_fit(X, y, classes=[0, 1])  # y also holds 2
    with pytest.raises(ValueError, match="balanced"):
        clf.set_params(class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])
    clf.set_params(class_weight=None)
    # The corrected call is a first call again: its classes are used.
    clf.partial_fit(X, y, classes=[0, 1, 2])
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.n_iter_ == 1


def test_partial_fit_rejects_balanced_class_weight():
    X, y = make_bags()
    with pytest.raises(ValueError, match="balanced"):
        EmbeddingClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1])


def test_partial_fit_dict_class_weight_with_batch_missing_a_class():
    # Upweighting a rare class with partial_fit: some batches do not hold it.
    X, y = make_bags(n_classes=3)
    clf = EmbeddingClassifier(n_components=8, class_weight={2: 5.0}, random_state=0)
    clf.partial_fit(X, y, classes=[0, 1, 2])
    no_2 = y != 2
    clf.partial_fit(X[no_2], y[no_2])  # must not raise: class 2 was declared
    assert clf.n_iter_ == 2


def test_partial_fit_after_fit_continues_training():
    X, y = make_bags(n_classes=3, flip=0.1)
    clf = EmbeddingClassifier(n_components=8, max_iter=5, tol=None, random_state=0).fit(X, y)
    coef = clf.coef_.copy()
    clf.partial_fit(X, y)
    assert clf.n_iter_ == 6
    assert not np.array_equal(coef, clf.coef_)
    assert clf.score(X, y) >= 0.85


# ------------------------------------------------------------------- warm_start


def test_warm_start_continues_from_previous_parameters():
    X, y = make_bags(n_classes=3, flip=0.1)
    clf = EmbeddingClassifier(n_components=8, max_iter=5, warm_start=True, random_state=0)
    clf.fit(X, y)
    first_loss = list(clf.loss_curve_)
    clf.fit(X, y)
    assert clf.n_iter_ == len(clf.loss_curve_) == 5  # the history is of the last fit
    assert clf.loss_curve_[0] < 0.5 * first_loss[0]
    assert clf.loss_curve_[0] < first_loss[1]

    cold = EmbeddingClassifier(n_components=8, max_iter=5, random_state=0).fit(X, y)
    assert cold.loss_curve_ == first_loss  # without warm_start a refit starts over
    cold.fit(X, y)
    assert cold.loss_curve_ == first_loss


def test_warm_start_with_other_classes_raises():
    X, y = make_bags(n_classes=3)
    clf = EmbeddingClassifier(n_components=8, max_iter=2, warm_start=True, random_state=0)
    clf.fit(X, y)
    with pytest.raises(ValueError, match="classes"):
        clf.fit(X[y != 2], y[y != 2])
    with pytest.raises(ValueError, match="classes"):
        clf.fit(X, y + 1)


# ------------------------------------------------------------ freeze_embeddings


def test_freeze_embeddings_keeps_pretrained_table():
    X, y = make_bags(n_classes=3, flip=0.05)
    X_test, y_test = make_bags(n_classes=3, seed=1)
    # "Pretrained" vectors: a signal column points towards its class, plus noise.
    rng = np.random.RandomState(0)
    block = X.shape[1] // 6
    init = 0.3 * rng.standard_normal((X.shape[1], 8))
    for c in range(3):
        init[c * block:(c + 1) * block, c] += 1.0
    clf = EmbeddingClassifier(init=init, freeze_embeddings=True, max_iter=20,
                              random_state=0).fit(X, y)
    assert clf.embeddings_.shape == (X.shape[1], 8)
    np.testing.assert_array_equal(clf.embeddings_, init.astype(np.float32))
    assert np.any(clf.coef_ != 0)
    assert clf.score(X_test, y_test) >= 0.8  # chance is about 1/3

    # Without freezing, the same start moves.
    free = EmbeddingClassifier(init=init, max_iter=2, random_state=0).fit(X, y)
    assert not np.array_equal(free.embeddings_, init.astype(np.float32))


def test_freeze_embeddings_with_random_table():
    X, y = make_bags(n_classes=2)
    d = 32
    short = EmbeddingClassifier(n_components=d, freeze_embeddings=True, max_iter=1,
                                random_state=0).fit(X, y)
    long = EmbeddingClassifier(n_components=d, freeze_embeddings=True, max_iter=15,
                               eta0=0.2, random_state=0).fit(X, y)
    # The table is the random start, whatever the training: N(0, 0.09 / d).
    np.testing.assert_array_equal(short.embeddings_, long.embeddings_)
    assert long.embeddings_.std() == pytest.approx(0.3 / np.sqrt(d), rel=0.1)
    assert not np.array_equal(short.coef_, long.coef_)
    assert long.score(X, y) >= 0.7  # chance is about 0.5


# ------------------------------------------------------------- stopping rules


def test_early_stopping_records_validation_and_stops():
    X, y = make_bags(n_samples=600, n_classes=3)
    clf = EmbeddingClassifier(n_components=8, early_stopping=True, max_iter=100,
                              n_iter_no_change=2, random_state=0).fit(X, y)
    assert clf.n_iter_ < 100
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    assert all(0.0 <= s <= 1.0 for s in clf.validation_scores_)
    assert max(clf.validation_scores_) >= 0.9


def last_improvement(progress, tol):
    """1-based epoch of the last value that beat the best so far by more than tol."""
    best, last = None, 0
    for epoch, value in enumerate(progress, start=1):
        if best is None or value > best + tol:
            best, last = value, epoch
    return last


@pytest.mark.parametrize("early_stopping", [True, False])
@pytest.mark.parametrize("n_iter_no_change", [1, 3])
def test_stops_n_iter_no_change_epochs_after_last_improvement(early_stopping, n_iter_no_change):
    X, y = make_bags(n_samples=600, n_classes=3, flip=0.1)
    clf = EmbeddingClassifier(n_components=8, early_stopping=early_stopping, max_iter=200,
                              n_iter_no_change=n_iter_no_change, tol=1e-3,
                              random_state=0).fit(X, y)
    assert clf.n_iter_ < 200
    if early_stopping:
        progress = clf.validation_scores_
    else:
        progress = [-loss for loss in clf.loss_curve_]
    assert len(progress) == clf.n_iter_
    assert clf.n_iter_ == last_improvement(progress, 1e-3) + n_iter_no_change


def test_training_loss_stopping_and_tol_none():
    X, y = make_bags(n_classes=3)
    stopped = EmbeddingClassifier(n_components=8, max_iter=200, n_iter_no_change=2,
                                  random_state=0).fit(X, y)
    assert stopped.n_iter_ < 200
    full = EmbeddingClassifier(n_components=8, max_iter=25, n_iter_no_change=1, tol=None,
                               random_state=0).fit(X, y)
    assert full.n_iter_ == 25
    assert len(full.loss_curve_) == 25
    full_es = EmbeddingClassifier(n_components=8, max_iter=12, n_iter_no_change=1, tol=None,
                                  early_stopping=True, random_state=0).fit(X, y)
    assert full_es.n_iter_ == 12
    assert len(full_es.validation_scores_) == 12


# ----------------------------------------------------- learning rate and penalty


@pytest.mark.parametrize("learning_rate", ["constant", "linear"])
def test_learning_rate_schedules_learn(learning_rate):
    X, y = make_bags(n_classes=3, flip=0.05)
    X_test, y_test = make_bags(n_classes=3, seed=1)
    clf = EmbeddingClassifier(n_components=8, learning_rate=learning_rate, eta0=0.2,
                              max_iter=10, tol=None, random_state=0).fit(X, y)
    assert clf.score(X_test, y_test) >= 0.9
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]


def test_learning_rate_schedule_matters():
    X, y = make_bags(n_classes=3, flip=0.05)
    params = dict(n_components=8, max_iter=5, tol=None, random_state=0, n_jobs=1)
    a = EmbeddingClassifier(learning_rate="constant", **params).fit(X, y)
    b = EmbeddingClassifier(learning_rate="linear", **params).fit(X, y)
    # The first epoch of both starts at eta0; the rest differ.
    assert not np.array_equal(a.coef_, b.coef_)


def test_alpha_shrinks_parameters():
    X, y = make_bags(n_classes=3, flip=0.1)
    params = dict(n_components=16, max_iter=10, tol=None, random_state=0, n_jobs=1)
    free = EmbeddingClassifier(alpha=0.0, **params).fit(X, y)
    penalised = EmbeddingClassifier(alpha=1e-2, **params).fit(X, y)
    assert np.linalg.norm(penalised.coef_) < np.linalg.norm(free.coef_)
    assert np.linalg.norm(penalised.embeddings_) < 0.7 * np.linalg.norm(free.embeddings_)
    assert np.all(np.isfinite(penalised.embeddings_))
    # A row no sample names decays too (the lazy decay is settled at the end).
    X_pad = sp.hstack([X, sp.csr_matrix((X.shape[0], 1))]).tocsr()
    p2 = EmbeddingClassifier(alpha=1e-2, **params).fit(X_pad, y)
    f2 = EmbeddingClassifier(alpha=0.0, **params).fit(X_pad, y)
    unused_p, unused_f = p2.embeddings_[-1], f2.embeddings_[-1]
    assert np.linalg.norm(unused_p) < np.linalg.norm(unused_f)


# ------------------------------------------------------------------- weights


def test_class_weight_dict_raises_recall_of_weighted_class():
    X, y = make_bags(n_samples=600, n_classes=2, flip=0.4, seed=2)
    base = EmbeddingClassifier(n_components=16, random_state=0).fit(X, y)
    weighted = EmbeddingClassifier(n_components=16, class_weight={1: 10.0},
                                   random_state=0).fit(X, y)
    r_base = recall_score(y, base.predict(X), pos_label=1)
    r_weighted = recall_score(y, weighted.predict(X), pos_label=1)
    assert r_weighted > r_base + 0.1
    # String labels: the dict is keyed by label.
    labels = np.array(["neg", "pos"])
    w_str = EmbeddingClassifier(n_components=16, class_weight={"pos": 10.0},
                                random_state=0).fit(X, labels[y])
    assert recall_score(labels[y], w_str.predict(X), pos_label="pos") > r_base + 0.1


def test_class_weight_balanced_raises_minority_recall():
    X, y = make_bags(n_samples=600, n_classes=2, flip=0.2, class_prior=[0.92, 0.08], seed=4)
    assert np.bincount(y)[1] < 0.3 * len(y)
    base = EmbeddingClassifier(n_components=16, random_state=0).fit(X, y)
    balanced = EmbeddingClassifier(n_components=16, class_weight="balanced",
                                   random_state=0).fit(X, y)
    r_base = recall_score(y, base.predict(X))
    r_balanced = recall_score(y, balanced.predict(X))
    assert r_balanced > r_base + 0.1


def test_class_weight_equals_matching_sample_weight():
    X, y = make_bags(n_classes=3, flip=0.2)
    params = dict(n_components=8, random_state=0, n_jobs=1)
    cw = {0: 1.0, 1: 4.0, 2: 2.0}
    a = EmbeddingClassifier(class_weight=cw, **params).fit(X, y)
    b = EmbeddingClassifier(**params).fit(X, y, sample_weight=np.array([1.0, 4.0, 2.0])[y])
    assert same_params(a, b)


def test_sample_weight_all_zero_or_negative_raises():
    X, y = make_bags()
    with pytest.raises(ValueError):
        EmbeddingClassifier().fit(X, y, sample_weight=np.zeros(X.shape[0]))
    with pytest.raises(ValueError):
        EmbeddingClassifier().partial_fit(X, y, classes=[0, 1], sample_weight=np.zeros(X.shape[0]))
    sw = np.ones(X.shape[0])
    sw[0] = -1.0
    with pytest.raises(ValueError):
        EmbeddingClassifier().fit(X, y, sample_weight=sw)
    sw[0] = np.nan
    with pytest.raises(ValueError):
        EmbeddingClassifier().fit(X, y, sample_weight=sw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("factor", [2.0, 0.25, 1024.0])
def test_sample_weight_is_relative(dtype, factor):
    X, y = make_bags(n_classes=3, flip=0.2)
    sw = np.random.RandomState(1).uniform(0.1, 3.0, size=X.shape[0])
    params = dict(n_components=8, dtype=dtype, random_state=0, n_jobs=1)
    a = EmbeddingClassifier(**params).fit(X, y, sample_weight=sw)
    b = EmbeddingClassifier(**params).fit(X, y, sample_weight=factor * sw)
    assert same_params(a, b)
    # Uniform weights of any value are the same as no weights.
    c = EmbeddingClassifier(**params).fit(X, y)
    d = EmbeddingClassifier(**params).fit(X, y, sample_weight=np.full(X.shape[0], factor))
    assert same_params(c, d)
    # And weights do change the model.
    assert not same_params(a, c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sample_weight_integer_weights_times_integer_is_bit_identical(dtype):
    # Counts as weights (each sample stands for k copies) and the same counts
    # tripled are exact in floating point: the documented "multiplying all
    # weights by a constant changes nothing" holds bit for bit here.
    X, y = make_bags(n_classes=3, flip=0.2)
    sw = np.random.RandomState(1).randint(1, 4, size=X.shape[0]).astype(np.float64)
    params = dict(n_components=8, dtype=dtype, random_state=0, n_jobs=1)
    a = EmbeddingClassifier(**params).fit(X, y, sample_weight=sw)
    b = EmbeddingClassifier(**params).fit(X, y, sample_weight=3 * sw)
    assert same_params(a, b)


@pytest.mark.parametrize("factor", [3.0, 0.1, 7.3])
def test_sample_weight_arbitrary_factor_gives_same_model_up_to_rounding(factor):
    X, y = make_bags(n_classes=3, flip=0.2)
    sw = np.random.RandomState(1).uniform(0.1, 3.0, size=X.shape[0])
    params = dict(n_components=8, dtype=np.float64, random_state=0, n_jobs=1)
    a = EmbeddingClassifier(**params).fit(X, y, sample_weight=sw)
    b = EmbeddingClassifier(**params).fit(X, y, sample_weight=factor * sw)
    for name in ("embeddings_", "coef_", "intercept_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


# ------------------------------------------------------------------- verbose


def test_verbose_prints_one_line_per_epoch(capsys):
    X, y = make_bags(n_classes=3)
    EmbeddingClassifier(n_components=8, max_iter=4, tol=None, verbose=1,
                        random_state=0).fit(X, y)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    for i, line in enumerate(lines, start=1):
        assert "epoch" in line and "loss" in line
        assert str(i) in line

    EmbeddingClassifier(n_components=8, max_iter=3, tol=None, verbose=1, early_stopping=True,
                        random_state=0).fit(X, y)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert all("validation" in line for line in lines)

    EmbeddingClassifier(n_components=8, max_iter=3, random_state=0).fit(X, y)
    assert capsys.readouterr().out == ""


# ----------------------------------------------------------- errors and params


@pytest.mark.parametrize("alpha", [0.0, 2e-4])
@pytest.mark.parametrize("eta0", [1e3, 1e5, 1e8])
def test_divergence_raises_instead_of_returning_garbage(alpha, eta0):
    # combiner="sum" on raw counts with a huge step size cannot train.
    X, y = make_bags(n_classes=2)
    clf = EmbeddingClassifier(n_components=8, combiner="sum", eta0=eta0, alpha=alpha,
                              random_state=0)
    with pytest.raises(ValueError, match="eta0"):
        clf.fit(X, y)


def test_divergence_never_leaves_nan_in_a_returned_model():
    X, y = make_bags(n_classes=3)
    for eta0 in (1e2, 1e4, 1e6, 1e8):
        clf = EmbeddingClassifier(n_components=8, combiner="sum", eta0=eta0, random_state=0)
        try:
            clf.fit(X, y)
        except ValueError as exc:
            assert "eta0" in str(exc)
            continue
        # A fit that returns gives a usable model.
        assert np.all(np.isfinite(clf.embeddings_)) and np.all(np.isfinite(clf.coef_))
        assert np.all(np.isfinite(clf.predict_proba(X)))
        assert clf.score(X, y) > 0.5, f"eta0={eta0} returned a useless model"


def test_single_class_raises():
    X, _ = make_bags()
    with pytest.raises(ValueError, match="class"):
        EmbeddingClassifier().fit(X, np.zeros(X.shape[0], dtype=int))
    with pytest.raises(ValueError, match="class"):
        EmbeddingClassifier().fit(X, np.array(["only"] * X.shape[0]))


@pytest.mark.parametrize("params", [
    {"n_components": 0},
    {"eta0": -1},
    {"eta0": 0},
    {"combiner": "max"},
    {"max_iter": 0},
    {"alpha": -1e-3},
    {"learning_rate": "optimal"},
    {"validation_fraction": 1.0},
    {"n_iter_no_change": 0},
    {"class_weight": "auto"},
])
def test_classifier_invalid_params_are_parameter_errors(params):
    X, y = make_bags()
    with pytest.raises(InvalidParameterError):
        EmbeddingClassifier(**params).fit(X, y)


@pytest.mark.parametrize("params, match", [
    ({"n_jobs": 0}, "n_jobs"),
    ({"dtype": np.int32}, "dtype"),
    ({"dtype": np.float16}, "dtype"),
])
def test_classifier_bad_n_jobs_or_dtype_raise_value_error(params, match):
    X, y = make_bags()
    with pytest.raises(ValueError, match=match):
        EmbeddingClassifier(**params).fit(X, y)
    with pytest.raises(ValueError, match=match):
        EmbeddingClassifier(**params).partial_fit(X, y, classes=[0, 1])


def test_nearest_features_by_name_index_and_vector():
    W = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.0]])
    names = ["a", "b", "c", "d", "zero"]
    emb = SparseEmbedding(init=W, dtype=np.float64).fit(np.eye(5))
    neighbors = emb.nearest_features("a", feature_names=names, n_neighbors=4)
    assert [n for n, _ in neighbors] == ["b", "c", "zero", "d"]
    np.testing.assert_allclose([s for _, s in neighbors], [0.9 / np.hypot(0.9, 0.1), 0, 0, -1])
    assert emb.nearest_features(0, n_neighbors=1) == emb.nearest_features(
        np.array([2.0, 0.0]), n_neighbors=2
    )[1:]
    with pytest.raises(ValueError, match="not a feature"):
        emb.nearest_features("missing", feature_names=names)
    with pytest.raises(ValueError, match="feature_names has 2 names"):
        emb.nearest_features("a", feature_names=["a", "b"])


def test_nearest_features_of_a_trained_text_model_group_related_words():
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = ["python numpy library", "python scipy library", "numpy scipy arrays"] * 20
    docs += ["chess board game", "card game deck", "board card chess"] * 20
    y = ["lib"] * 60 + ["game"] * 60
    vec = TfidfVectorizer()
    clf = EmbeddingClassifier(n_components=8, max_iter=30, random_state=0)
    clf.fit(vec.fit_transform(docs), y)
    top = [name for name, _ in clf.nearest_features(
        "numpy", feature_names=vec.get_feature_names_out(), n_neighbors=3
    )]
    assert set(top) <= {"python", "scipy", "library", "arrays"}


def test_large_dense_input_warns(monkeypatch):
    import sparsebed._base

    monkeypatch.setattr(sparsebed._base, "LARGE_DENSE", 50)
    X = np.eye(10)
    with pytest.warns(UserWarning, match="dense array of 100 entries"):
        SparseEmbedding().fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SparseEmbedding().fit(sp.csr_matrix(X))


def test_verbose_two_shows_a_progress_bar_when_tqdm_is_installed(capsys):
    pytest.importorskip("tqdm")
    X, y = sp.random(60, 20, density=0.3, format="csr", random_state=0), np.arange(60) % 2
    EmbeddingClassifier(max_iter=3, verbose=2, random_state=0).fit(X, y)
    err = capsys.readouterr().err
    assert "epoch" in err and "3/3" in err
