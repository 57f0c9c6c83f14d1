"""Reliability: bad input fails clearly, odd but valid input works, threads and memory behave.

- Bad input raises a ValueError or TypeError whose message says what is
  wrong, at every public entry point (cases that test_estimators.py or
  test_kernels.py already cover for the same entry point are left out).
- Valid input in unusual layouts (unsorted, duplicated, explicit zeros,
  int64 indices, read-only, memory-mapped, non-contiguous) gives the
  ``X @ W`` of scipy.
- Hypothesis checks ``embedding_sum`` against a float64 reference on random
  CSR matrices; a seeded fuzz feeds malformed CSR arrays to every entry point.
- Threads: same output for every ``n_jobs``, safe concurrent use, the GIL
  released by the kernels, ``n_jobs=-1`` capped by threadpoolctl and
  ``OMP_NUM_THREADS``.
- Limits: the int64 index path, and no memory growth over repeated calls.
"""
import copy
import gc
import io
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.utils._param_validation import InvalidParameterError

import sparsebed
from sparsebed import EmbeddingClassifier, SparseEmbedding, embedding_sum
from sparsebed import _kernels
from sparsebed._config import _n_threads

COMBINERS = ("sum", "mean", "sqrtn")
N_FEATURES = 12


# ---------------------------------------------------------------- helpers


def make_data(n_samples=60, n_features=N_FEATURES, n_classes=3, seed=0):
    rng = np.random.RandomState(seed)
    X = sp.random(n_samples, n_features, density=0.3, format="csr", random_state=rng,
                  data_rvs=lambda n: rng.randint(1, 4, size=n).astype(float))
    X = (X + sp.eye(n_samples, n_features, format="csr")).tocsr()  # no empty rows
    y = np.arange(n_samples) % n_classes
    return X, y


def reference(X, W, combiner):
    """float64 ``combine(X @ W)``, a column stored twice counting as its sum (scipy's meaning)."""
    X = sp.csr_matrix(X, dtype=np.float64, copy=True)
    X.sum_duplicates()
    out = np.asarray(X @ W.astype(np.float64))
    for i in range(X.shape[0]):
        values = X.data[X.indptr[i]:X.indptr[i + 1]]
        if combiner == "mean":
            div = values.sum()
        elif combiner == "sqrtn":
            div = np.sqrt((values ** 2).sum())
        else:
            continue
        out[i] *= 1.0 / div if div != 0 else 0.0
    return out


def csr_with_arrays(data, indices, indptr, n_features):
    """A CSR matrix holding exactly these arrays (no check, no copy, no cast)."""
    X = sp.csr_matrix((len(indptr) - 1 if np.ndim(indptr) == 1 else 0, n_features))
    X.data, X.indices, X.indptr = data, indices, indptr
    return X


def special_matrix(index_dtype=np.int32, data_dtype=np.float64):
    """Unsorted columns, duplicates, explicit zeros, negative values, an empty row."""
    rows = [
        ([5, 1, 9], [1.0, 2.0, -0.5]),        # unsorted
        ([3, 3, 7, 3], [1.0, 2.0, 0.5, -1.0]),  # a column three times
        ([], []),                           # empty
        ([0, 11], [0.0, 1.5]),              # an explicit zero
        ([4, 2], [-1.0, -2.5]),             # all negative
        ([6, 6], [1.0, -1.0]),              # a duplicate that cancels
        ([8, 10, 2], [0.25, 3.0, -1.0]),
    ]
    indptr = np.cumsum([0] + [len(c) for c, _ in rows]).astype(index_dtype)
    indices = np.array([c for cols, _ in rows for c in cols], dtype=index_dtype)
    data = np.array([v for _, vals in rows for v in vals], dtype=data_dtype)
    return csr_with_arrays(data, indices, indptr, N_FEATURES)


def fitted_models():
    X, y = make_data()
    se = SparseEmbedding(n_components=4, random_state=0).fit(X)
    clf = EmbeddingClassifier(n_components=4, max_iter=3, random_state=0).fit(X, y)
    return X, y, se, clf


@pytest.fixture(scope="module")
def fitted():
    return fitted_models()


def entry_points(se, clf, y_for=None):
    """Every public way ``X`` reaches the kernels: name -> call(X)."""

    def labels(X):
        return np.arange(X.shape[0]) % 3 if y_for is None else y_for(X)

    return {
        "embedding_sum": lambda X: embedding_sum(X, np.ones((N_FEATURES, 3))),
        "embedding_sum sqrtn": lambda X: embedding_sum(X, np.ones((N_FEATURES, 3)), combiner="sqrtn"),
        "SparseEmbedding.fit": lambda X: SparseEmbedding(n_components=3).fit(X),
        "SparseEmbedding.transform": lambda X: se.transform(X),
        "EmbeddingClassifier.fit": lambda X: EmbeddingClassifier(n_components=3, max_iter=1).fit(X, labels(X)),
        "EmbeddingClassifier.partial_fit first": lambda X: EmbeddingClassifier(n_components=3).partial_fit(
            X, labels(X), classes=[0, 1, 2]),
        "EmbeddingClassifier.partial_fit later": lambda X: copy.deepcopy(clf).partial_fit(X, labels(X)),
        "EmbeddingClassifier.predict": lambda X: clf.predict(X),
        "EmbeddingClassifier.predict_proba": lambda X: clf.predict_proba(X),
        "EmbeddingClassifier.decision_function": lambda X: clf.decision_function(X),
        "EmbeddingClassifier.transform": lambda X: clf.transform(X),
    }


ENTRY_NAMES = list(entry_points(None, None))
ESTIMATOR_ENTRIES = [name for name in ENTRY_NAMES if not name.startswith("embedding_sum")]
CLASSIFIER_FITS = ["EmbeddingClassifier.fit", "EmbeddingClassifier.partial_fit first",
                   "EmbeddingClassifier.partial_fit later"]


def call(fitted, name, X):
    _, _, se, clf = fitted
    return entry_points(se, clf)[name](X)


# ======================================================= bad input, clear errors


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", ENTRY_NAMES)
def test_non_finite_values_in_X_are_refused(fitted, name, bad):
    X = fitted[0].copy()
    X.data[5] = bad
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        call(fitted, name, X)
    # The same values given as a dense array.
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        call(fitted, name, X.toarray())


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("name", CLASSIFIER_FITS)
def test_non_finite_float_labels_are_refused(fitted, name, bad):
    X, y, se, clf = fitted
    y = y.astype(float)
    y[3] = bad
    fit = entry_points(se, clf, y_for=lambda _: y)[name]
    with pytest.raises(ValueError, match="Input y contains (NaN|infinity)"):
        fit(X)


def test_nan_among_declared_classes_is_refused(fitted):
    # BUG: partial_fit refuses NaN in y but accepted it in `classes`, so the
    # model got a class NaN that it may predict.
    X, y, _, _ = fitted
    with pytest.raises(ValueError, match="NaN"):
        EmbeddingClassifier().partial_fit(X, y.astype(float), classes=[0.0, 1.0, 2.0, np.nan])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("first", [True, False])
def test_non_finite_sample_weight_is_refused_by_partial_fit(fitted, first, bad):
    X, y, _, clf = fitted
    sw = np.ones(X.shape[0])
    sw[7] = bad
    model = EmbeddingClassifier() if first else copy.deepcopy(clf)
    with pytest.raises(ValueError, match="Input sample_weight contains (NaN|infinity)"):
        model.partial_fit(X, y, classes=[0, 1, 2], sample_weight=sw)
    with pytest.raises(ValueError, match="Input sample_weight contains (NaN|infinity)"):
        EmbeddingClassifier().fit(X, y, sample_weight=sw)


@pytest.mark.parametrize("weight", [np.nan, np.inf, -1.0])
def test_bad_class_weight_values_are_refused_clearly(fitted, weight):
    # BUG: class weights are multiplied into the sample weights after those
    # were checked: NaN gave "Sample weights must contain at least one
    # non-zero number", inf and negative values "Training diverged ... Use a
    # smaller eta0", neither of which names the problem.
    X, y, _, _ = fitted
    with pytest.raises(ValueError, match="class_weight"):
        EmbeddingClassifier(n_components=4, class_weight={0: weight}).fit(X, y)


def test_relative_sample_weights_do_not_overflow(fitted):
    # BUG: weights are relative ("multiplying all weights by a constant
    # changes nothing"), but weights whose sum overflows to inf made fit fail
    # with "Training diverged ... Use a smaller eta0".
    X, y, _, _ = fitted
    params = dict(n_components=4, max_iter=3, random_state=0, n_jobs=1, dtype=np.float64)
    plain = EmbeddingClassifier(**params).fit(X, y)
    huge = EmbeddingClassifier(**params).fit(X, y, sample_weight=np.full(X.shape[0], 1e307))
    np.testing.assert_allclose(huge.coef_, plain.coef_, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("fit", ["SparseEmbedding.fit", "EmbeddingClassifier.fit", "partial_fit"])
def test_non_finite_pretrained_vectors_are_refused(fitted, fit, bad):
    X, y, _, _ = fitted
    init = np.ones((N_FEATURES, 3))
    init[2, 1] = bad
    with pytest.raises(ValueError, match="Input init contains (NaN|infinity)"):
        if fit == "SparseEmbedding.fit":
            SparseEmbedding(init=init).fit(X)
        elif fit == "EmbeddingClassifier.fit":
            EmbeddingClassifier(init=init).fit(X, y)
        else:
            EmbeddingClassifier(init=init).partial_fit(X, y, classes=[0, 1, 2])


def test_non_finite_table_is_refused_by_embedding_sum(fitted):
    X = fitted[0]
    W = np.ones((N_FEATURES, 3))
    W[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input W contains NaN"):
        embedding_sum(X, W)


def test_overflowing_sums_are_refused(fitted):
    X = fitted[0]
    W = np.full((N_FEATURES, 3), 3e38, dtype=np.float32)
    with pytest.raises(ValueError, match="embedding sums overflow float32"):
        embedding_sum(abs(X) * 10, W)
    # The same sums fit in float64.
    assert np.isfinite(embedding_sum(abs(X) * 10, W.astype(np.float64))).all()


@pytest.mark.parametrize("fit", ["SparseEmbedding.fit", "EmbeddingClassifier.fit", "partial_fit"])
@pytest.mark.parametrize("shape, message", [
    ((N_FEATURES - 1, 3), rf"init has {N_FEATURES - 1} rows but X has {N_FEATURES} features"),
    ((N_FEATURES, 5), "init has 5 columns but n_components=3"),
    ((N_FEATURES,), "Expected 2D array"),
    ((N_FEATURES, 3, 1), "dim 3"),
    ((N_FEATURES, 0), "0 feature"),
])
def test_pretrained_vectors_of_the_wrong_shape_are_refused(fitted, fit, shape, message):
    X, y, _, _ = fitted
    init = np.ones(shape)
    with pytest.raises(ValueError, match=message):
        if fit == "SparseEmbedding.fit":
            SparseEmbedding(n_components=3, init=init).fit(X)
        elif fit == "EmbeddingClassifier.fit":
            EmbeddingClassifier(n_components=3, init=init).fit(X, y)
        else:
            EmbeddingClassifier(n_components=3, init=init).partial_fit(X, y, classes=[0, 1, 2])


NON_NUMERIC = {
    "strings": np.full((N_FEATURES, 3), "abc"),
    "objects": np.full((N_FEATURES, 3), None, dtype=object),
    "complex": np.ones((N_FEATURES, 3), dtype=complex),
}


@pytest.mark.parametrize("kind", list(NON_NUMERIC))
@pytest.mark.parametrize("where", ["SparseEmbedding init", "EmbeddingClassifier init", "embedding_sum W"])
def test_non_numeric_vectors_are_refused_naming_the_argument(fitted, where, kind):
    # BUG (message): for strings and complex numbers the error came from NumPy
    # or scikit-learn without naming the argument ("could not convert string
    # to float: '0.5'", "Complex data not supported" and the whole array).
    X, y, _, _ = fitted
    bad = NON_NUMERIC[kind]
    name = "W" if where == "embedding_sum W" else "init"
    with pytest.raises((ValueError, TypeError), match=rf"\b{name}\b"):
        if where == "SparseEmbedding init":
            SparseEmbedding(init=bad).fit(X)
        elif where == "EmbeddingClassifier init":
            EmbeddingClassifier(init=bad).fit(X, y)
        else:
            embedding_sum(X, bad)


MALFORMED = {
    "index < 0": (
        lambda X: X.indices.__setitem__(4, -1),
        r"row 1: it holds column index -1, outside \[0, 12\)"),
    "index >= n_features": (
        lambda X: X.indices.__setitem__(-1, N_FEATURES),
        r"row 6: it holds column index 12, outside \[0, 12\)"),
    "indptr decreasing": (
        lambda X: X.indptr.__setitem__(2, 1),
        r"row 1: its extent indptr\[1:3\] = \[3, 1\]"),
    "indptr[-1] != len(indices)": (
        lambda X: X.indptr.__setitem__(-1, 15),
        r"indptr runs from 0 to 15 but must run from 0 to len\(indices\) = 16"),
    "indptr too short": (
        lambda X: setattr(X, "indptr", X.indptr[:-1].copy()),
        r"indptr has 7 entries for 7 rows"),
    "data shorter than indices": (
        lambda X: setattr(X, "data", X.data[:-1].copy()),
        r"data has 15 entries but indices has 16"),
}


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("case", list(MALFORMED))
@pytest.mark.parametrize("name", ESTIMATOR_ENTRIES)
def test_malformed_csr_is_refused_by_the_estimators(fitted, name, case, index_dtype):
    # embedding_sum's messages are checked in test_kernels.py; the estimators
    # must give the same ones, before any training step runs.
    X = special_matrix(index_dtype)
    edit, message = MALFORMED[case]
    edit(X)
    with pytest.raises(ValueError, match="Malformed CSR matrix.*" + message):
        call(fitted, name, X)


@pytest.mark.parametrize("name", [n for n in ESTIMATOR_ENTRIES if not n.endswith(".fit")
                                  and not n.endswith("first")])
@pytest.mark.parametrize("n_features", [N_FEATURES - 1, N_FEATURES + 1])
def test_wrong_number_of_features_is_refused(fitted, name, n_features):
    X = sp.random(5, n_features, density=0.5, format="csr", random_state=0)
    estimator = "SparseEmbedding" if name.startswith("Sparse") else "EmbeddingClassifier"
    pattern = rf"X has {n_features} features, but {estimator} is expecting {N_FEATURES} features"
    with pytest.raises(ValueError, match=pattern):
        call(fitted, name, X)
    with pytest.raises(ValueError, match=pattern):
        call(fitted, name, X.toarray())


@pytest.mark.parametrize("name", ENTRY_NAMES)
@pytest.mark.parametrize("fmt", ["csr", "coo"])
def test_one_dimensional_sparse_array_is_refused_clearly(fitted, name, fmt):
    try:
        X = sp.csr_array(np.arange(N_FEATURES, dtype=np.float64)).asformat(fmt)
    except (TypeError, ValueError):
        pytest.skip("this scipy has no 1-d sparse arrays (they came in 1.14)")
    assert X.ndim == 1
    with pytest.raises(ValueError, match=r"X must be 2-d.*reshape"):
        call(fitted, name, X)


def test_empty_input_transforms_to_empty_output(fitted):
    X, _, se, clf = fitted
    for empty in (X[:0], np.zeros((0, N_FEATURES)), sp.csr_matrix((0, N_FEATURES), dtype=np.float32)):
        for model in (se, clf):
            out = model.transform(empty)
            assert out.shape == (0, 4) and out.dtype == np.float32
        assert clf.decision_function(empty).shape == (0, 3)
        assert clf.predict_log_proba(empty).shape == (0, 3)


@pytest.mark.parametrize("name", ["SparseEmbedding.fit", "EmbeddingClassifier.fit",
                                  "EmbeddingClassifier.partial_fit first"])
def test_fit_on_empty_input_is_refused(fitted, name):
    with pytest.raises(ValueError, match=r"Found array with 0 sample\(s\)"):
        call(fitted, name, sp.csr_matrix((0, N_FEATURES)))


def test_partial_fit_on_an_empty_batch_says_so(fitted):
    # BUG (message): an empty batch after the first call reached the sample
    # weight check: "Sample weights must contain at least one non-zero
    # number", although no weights were passed.
    X, y, _, clf = fitted
    model = copy.deepcopy(clf)
    with pytest.raises(ValueError, match=r"0 sample|empty"):
        model.partial_fit(X[:0], y[:0])


def test_first_partial_fit_names_labels_missing_from_classes(fitted):
    X, y, _, _ = fitted
    with pytest.raises(ValueError, match=r"y holds labels \[2\] that are not among the model's classes \[0, 1\]"):
        EmbeddingClassifier().partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="needs at least 2 classes"):
        EmbeddingClassifier().fit(X, np.full(X.shape[0], "only"), sample_weight=np.ones(X.shape[0]))


@pytest.mark.parametrize("n_components", [0, -1])
def test_non_positive_n_components_is_refused_by_partial_fit(fitted, n_components):
    X, y, _, _ = fitted
    with pytest.raises(InvalidParameterError, match="'n_components' parameter"):
        EmbeddingClassifier(n_components=n_components).partial_fit(X, y, classes=[0, 1, 2])


@pytest.mark.parametrize("name", ["embedding_sum", "SparseEmbedding.transform", "EmbeddingClassifier.predict",
                                  "EmbeddingClassifier.partial_fit later"])
def test_n_jobs_zero_is_refused_at_every_entry_point(fitted, name):
    X, _, se, clf = fitted
    se, clf = copy.deepcopy(se).set_params(n_jobs=0), copy.deepcopy(clf).set_params(n_jobs=0)
    calls = entry_points(se, clf)
    calls["embedding_sum"] = lambda X: embedding_sum(X, np.ones((N_FEATURES, 2)), n_jobs=0)
    with pytest.raises(ValueError, match="n_jobs == 0 has no meaning"):
        calls[name](X)


def test_negative_learning_rate_is_refused_by_first_partial_fit(fitted):
    X, y, _, _ = fitted
    with pytest.raises(InvalidParameterError, match="'eta0' parameter"):
        EmbeddingClassifier(eta0=-0.1).partial_fit(X, y, classes=[0, 1, 2])


@pytest.mark.parametrize("params, name", [
    ({"eta0": -0.01}, "eta0"),
    ({"alpha": -0.01}, "alpha"),
    ({"combiner": "max"}, "combiner"),
    ({"eta0": "fast"}, "eta0"),
])
def test_partial_fit_checks_parameters_changed_after_the_first_call(fitted, params, name):
    # BUG: partial_fit validates the parameters only on its first call
    # (scikit-learn's estimators validate them on every call). After
    # set_params(eta0=-0.01) it ran gradient *ascent* and returned a worse
    # model; with combiner="max" it raised KeyError.
    X, y, _, clf = fitted
    model = copy.deepcopy(clf).set_params(**params)
    before = model.coef_.copy()
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
        model.partial_fit(X, y)
    assert np.array_equal(model.coef_, before)


@pytest.mark.parametrize("name", ["SparseEmbedding.transform", "EmbeddingClassifier.predict"])
def test_invalid_combiner_set_after_fit_gives_a_clear_error(fitted, name):
    # BUG (message): transform looked the combiner up in a dict and raised
    # KeyError: 'max'.
    X, _, se, clf = fitted
    calls = entry_points(copy.deepcopy(se).set_params(combiner="max"),
                         copy.deepcopy(clf).set_params(combiner="max"))
    with pytest.raises(ValueError, match="combiner"):
        calls[name](X)


def test_divergence_in_partial_fit_suggests_a_smaller_learning_rate():
    X, y = make_data()
    clf = EmbeddingClassifier(n_components=4, combiner="sum", eta0=1e8, random_state=0)
    with pytest.raises(ValueError, match=r"diverged.*Use a smaller eta0 than 100000000.0"):
        clf.partial_fit(X * 100, y, classes=[0, 1, 2])


def test_other_inconsistent_arguments_are_named(fitted):
    X, y, _, clf = fitted
    with pytest.raises(ValueError, match=r"inconsistent numbers of samples: \[60, 59\]"):
        copy.deepcopy(clf).partial_fit(X, y[:-1])
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(59,\), expected \(60,\)"):
        copy.deepcopy(clf).partial_fit(X, y, sample_weight=np.ones(59))
    with pytest.raises(ValueError, match=r"X has 12 features but W has 11 rows"):
        embedding_sum(X, np.ones((N_FEATURES - 1, 2)))
    with pytest.raises(TypeError, match="Sparse data was passed for W"):
        embedding_sum(X, sp.csr_matrix(np.ones((N_FEATURES, 2))))
    with pytest.raises(TypeError, match="n_jobs must be an int or None, got '2'"):
        embedding_sum(X, np.ones((N_FEATURES, 2)), n_jobs="2")


# ============================================ unusual but valid input works


def check_against_scipy(X, W, combiners=COMBINERS, **kwargs):
    for combiner in combiners:
        expected = reference(X, W, combiner)
        out = embedding_sum(X, W, combiner=combiner, **kwargs)
        assert out.dtype == W.dtype
        rtol = 1e-5 if W.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(out, expected, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("combiner", COMBINERS)
def test_estimators_on_unsorted_duplicated_zero_and_negative_entries(index_dtype, combiner):
    X = special_matrix(index_dtype)
    stored = [a.copy() for a in (X.data, X.indices, X.indptr)]
    W = np.random.RandomState(0).standard_normal((N_FEATURES, 5))
    expected = reference(X, W, combiner)
    assert np.all(expected[[2, 5]] == 0) and np.any(expected[1] != 0)
    se = SparseEmbedding(init=W, combiner=combiner, dtype=np.float64).fit(X)
    np.testing.assert_allclose(se.transform(X), expected, rtol=1e-12, atol=1e-12)
    y = np.array([0, 1, 0, 1, 0, 1, 0])
    clf = EmbeddingClassifier(init=W, combiner=combiner, freeze_embeddings=True, max_iter=2,
                              dtype=np.float64, eta0=0.05).fit(X, y)
    np.testing.assert_allclose(clf.transform(X), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(clf.decision_function(X), expected @ clf.coef_[0] + clf.intercept_[0],
                               rtol=1e-10, atol=1e-12)
    # and the user's arrays are untouched (not sorted, not summed in place)
    for a, b in zip((X.data, X.indices, X.indptr), stored):
        assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_other_input_formats_match_scipy(index_dtype):
    X = special_matrix(index_dtype)
    W = np.random.RandomState(0).standard_normal((N_FEATURES, 3))
    coo = X.tocoo()  # keeps the duplicates, which the conversion to CSR sums
    coo.row, coo.col = coo.row.astype(index_dtype), coo.col.astype(index_dtype)
    csc = X.tocsc()
    csc.indices, csc.indptr = csc.indices.astype(index_dtype), csc.indptr.astype(index_dtype)
    forms = [coo, csc, sp.csr_array(X), sp.csc_array(X), X.toarray(), X.toarray().tolist(),
             X.astype(np.float32).tocsc(), (X * 4).astype(np.int64)]
    se = SparseEmbedding(init=W, dtype=np.float64, combiner="mean").fit(X)
    for form in forms:
        check_against_scipy(form, W)
        np.testing.assert_allclose(se.transform(form), reference(form, W, "mean"), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_read_only_input_arrays(index_dtype):
    X = special_matrix(index_dtype)
    W = np.random.RandomState(0).standard_normal((N_FEATURES, 4))
    y = np.array([0, 1, 0, 1, 0, 1, 0])
    sw = np.linspace(0.5, 2.0, 7)
    expected = {c: reference(X, W, c) for c in COMBINERS}
    for array in (X.data, X.indices, X.indptr, W, y, sw):
        array.flags.writeable = False
    check_against_scipy(X, W, n_jobs=2)  # sqrtn sums the duplicates in a copy
    se = SparseEmbedding(init=W, dtype=np.float64).fit(X)
    np.testing.assert_allclose(se.transform(X), expected["sum"], rtol=1e-12, atol=1e-12)
    clf = EmbeddingClassifier(init=W, max_iter=2, random_state=0).fit(X, y, sample_weight=sw)
    clf.partial_fit(X, y, sample_weight=sw)
    assert clf.predict(X).shape == (7,)
    # the model's table is its own, writeable copy
    assert clf.embeddings_.flags.writeable and not np.shares_memory(clf.embeddings_, W)
    assert not X.data.flags.writeable and not W.flags.writeable


def test_memory_mapped_input_arrays(tmp_path):
    X = special_matrix(np.int64)
    for name in ("data", "indices", "indptr"):
        np.save(tmp_path / f"{name}.npy", getattr(X, name))
    mapped = csr_with_arrays(*(np.load(tmp_path / f"{n}.npy", mmap_mode="r")
                               for n in ("data", "indices", "indptr")), N_FEATURES)
    assert all(isinstance(a, np.memmap) and not a.flags.writeable
               for a in (mapped.data, mapped.indices, mapped.indptr))
    np.save(tmp_path / "W.npy", np.random.RandomState(1).standard_normal((N_FEATURES, 3)))
    W = np.load(tmp_path / "W.npy", mmap_mode="r")
    check_against_scipy(mapped, W)
    check_against_scipy(mapped, W.astype(np.float32))
    se = SparseEmbedding(init=W, combiner="mean", dtype=np.float64).fit(mapped)
    np.testing.assert_allclose(se.transform(mapped), reference(X, np.asarray(W), "mean"), rtol=1e-12)
    clf = EmbeddingClassifier(n_components=3, max_iter=2, random_state=0)
    clf.fit(mapped, np.arange(7) % 2)
    assert clf.predict(mapped).shape == (7,)


def test_non_contiguous_dense_input_and_table():
    rng = np.random.RandomState(0)
    big = rng.binomial(1, 0.3, size=(9, 2 * N_FEATURES)) * rng.uniform(-2, 2, size=(9, 2 * N_FEATURES))
    strided = big[:, ::2]
    dense = np.ascontiguousarray(strided)
    W_big = rng.standard_normal((N_FEATURES, 8))
    for X in (strided, np.asfortranarray(dense), dense[::-1]):
        assert not X.flags.c_contiguous
        for W in (W_big[:, ::2], np.asfortranarray(W_big[:, :4]), W_big[::-1, :4][::-1]):
            assert not W.flags.c_contiguous
            check_against_scipy(X, W)
            check_against_scipy(sp.csr_matrix(dense), W)
    se = SparseEmbedding(init=W_big[:, ::2], dtype=np.float64).fit(strided)
    np.testing.assert_array_equal(se.embeddings_, W_big[:, ::2])
    np.testing.assert_array_equal(se.transform(strided), se.transform(dense))
    y = np.arange(9) % 2
    clf = EmbeddingClassifier(n_components=3, max_iter=2, random_state=0, n_jobs=1)
    a = clf.fit(np.asfortranarray(dense), y).predict_proba(strided)
    b = clf.fit(dense, y).predict_proba(dense)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("array", ["data", "indices", "indptr"])
def test_csr_matrix_with_strided_arrays(array):
    # BUG: scipy keeps a strided array given to the CSR constructor (say a
    # column of a 2-D array), and X @ W works on it, but the kernels need
    # C-contiguous memoryviews: "ValueError: ndarray is not C-contiguous".
    X = special_matrix(np.int32)
    W = np.random.RandomState(0).standard_normal((N_FEATURES, 3))
    expected = {c: reference(X, W, c) for c in COMBINERS}
    arrays = {"data": X.data, "indices": X.indices, "indptr": X.indptr}
    wide = np.stack([arrays[array], arrays[array]], axis=1)
    arrays[array] = wide[:, 0]
    strided = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=X.shape)
    assert not getattr(strided, array).flags.c_contiguous
    np.testing.assert_allclose(strided @ W, expected["sum"], rtol=1e-12)  # scipy copes
    for combiner in COMBINERS:
        np.testing.assert_allclose(embedding_sum(strided, W, combiner=combiner), expected[combiner],
                                   rtol=1e-12, atol=1e-12)
    se = SparseEmbedding(init=W, dtype=np.float64).fit(strided)
    np.testing.assert_allclose(se.transform(strided), expected["sum"], rtol=1e-12, atol=1e-12)


CONVERSION_CRASHES = {
    # CSR with integer values (CountVectorizer's default dtype): check_array
    # casts them with scipy's astype, which sorts and sums the duplicates of
    # a copy in C++ before any check of the structure.
    "csr int data, indptr past the end": "X = csr(); X.data = X.data.astype(np.int64); X.indptr[1] = 10**8",
    "csr int data, indptr negative": "X = csr(); X.data = X.data.astype(np.int64); X.indptr[1] = -10**8",
    # CSC and COO are converted to CSR by scipy, which trusts their arrays.
    "csc index out of range": "X = csr().tocsc(); X.indices[0] = 10**8",
    "csc negative index": "X = csr().tocsc(); X.indices[0] = -5",
    "csc pointer out of range": "X = csr().tocsc(); X.indptr[3] = 10**8",
    "coo index out of range": "X = csr().tocoo(); X.row[0] = 10**8",
    "coo negative index": "X = csr().tocoo(); X.col[0] = -5",
}


CONVERSION_CHILD = """
import os, sys
import numpy as np, scipy.sparse as sp, sparsebed

def csr():
    return sp.random(6, 10, density=0.4, format="csr", random_state=0)

def run_case(edit):
    namespace = {"np": np, "csr": csr}
    exec(edit, namespace)
    X = namespace["X"]
    calls = [
        lambda: sparsebed.embedding_sum(X, np.ones((10, 3))),
        lambda: sparsebed.SparseEmbedding().fit(X),
        lambda: sparsebed.EmbeddingClassifier(max_iter=1).fit(X, np.arange(6) % 2),
    ]
    outcomes = []
    for call in calls:
        try:
            call()
        except (ValueError, TypeError) as exc:
            outcomes.append("refused")
        except Exception as exc:
            outcomes.append(f"{type(exc).__name__}: {exc}")
        else:
            outcomes.append("accepted")
    return outcomes

# One process per case (forked before any kernel ran): a crash ends only its case.
for case, edit in CASES.items():
    read, write = os.pipe()
    if hasattr(os, "fork") and (pid := os.fork()) == 0:
        os.close(read)
        os.write(write, repr(run_case(edit)).encode())
        os._exit(0)
    elif hasattr(os, "fork"):
        os.close(write)
        with os.fdopen(read) as pipe:
            result = pipe.read()
        status = os.waitpid(pid, 0)[1]
        if status != 0:
            result = f"died with status {status} after {result or 'nothing'}"
    else:
        result = repr(run_case(edit))
    print(f"{case} => {result}", flush=True)
"""


def test_malformed_input_that_needs_converting_is_refused_without_crashing(tmp_path):
    # BUG: the structure of a sparse X is checked only after scikit-learn's
    # check_array has converted it, and scipy's conversions read and write
    # out of bounds on a malformed matrix: the process died (segmentation
    # fault, heap corruption), a RuntimeError / MemoryError came out, or a
    # wrong result was returned. The cases run in a child process, each in
    # its own fork, so that a crash fails this test instead of killing pytest.
    code = f"CASES = {CONVERSION_CRASHES!r}\n" + CONVERSION_CHILD
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=child_env(OPENBLAS_NUM_THREADS="1"), cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    results = dict(line.split(" => ", 1) for line in run.stdout.splitlines() if " => " in line)
    assert set(results) == set(CONVERSION_CRASHES), run.stdout
    wrong = {case: r for case, r in results.items() if r != "['refused', 'refused', 'refused']"}
    assert not wrong, "\n".join(f"{case}: {r}" for case, r in wrong.items())


# ================================================= property-based: embedding_sum


@st.composite
def csr_problems(draw):
    """A CSR matrix (unsorted, duplicates, explicit zeros, empty rows), a table, a combiner.

    Values are small integers times a power of two chosen per row, and table
    entries 24-bit fractions times a power of two chosen per row of W: huge
    and tiny magnitudes, with every sum of values exact in float64 (so that
    the "mean" divisor is exact) and every product inside the normal range
    of the dtypes (so that the float64 reference is finite and exact to
    rounding).
    """
    data_dtype = draw(st.sampled_from([np.float32, np.float64]))
    W_dtype = draw(st.sampled_from([np.float32, np.float64]))
    index_dtype = draw(st.sampled_from([np.int32, np.int64]))
    limit = 48 if np.float32 in (data_dtype, W_dtype) else 450
    n_features = draw(st.integers(1, 8))
    d = draw(st.integers(1, 4))
    entry = st.tuples(st.integers(0, n_features - 1), st.integers(-1000, 1000))
    rows = draw(st.lists(st.tuples(st.integers(-limit, limit), st.lists(entry, max_size=10)),
                         max_size=8))
    indptr = np.cumsum([0] + [len(entries) for _, entries in rows]).astype(index_dtype)
    indices = np.array([c for _, entries in rows for c, _ in entries], dtype=index_dtype)
    data = np.array([m * 2.0 ** e for e, entries in rows for _, m in entries], dtype=data_dtype)
    mantissas = draw(st.lists(st.integers(-2**24, 2**24), min_size=n_features * d,
                              max_size=n_features * d))
    exponents = draw(st.lists(st.integers(-limit, limit), min_size=n_features, max_size=n_features))
    W = (np.array(mantissas, dtype=np.float64).reshape(n_features, d) * 2.0 ** -24
         * 2.0 ** np.array(exponents, dtype=np.float64)[:, None]).astype(W_dtype)
    combiner = draw(st.sampled_from(COMBINERS))
    n_jobs = draw(st.sampled_from([1, 2]))
    return csr_with_arrays(data, indices, indptr, n_features), W, combiner, n_jobs


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csr_problems())
def test_embedding_sum_matches_float64_reference(problem):
    X, W, combiner, n_jobs = problem
    stored = [a.copy() for a in (X.data, X.indices, X.indptr)]
    out = embedding_sum(X, W, combiner=combiner, n_jobs=n_jobs)
    expected = reference(X, W, combiner)
    assert out.dtype == W.dtype and out.shape == expected.shape
    assert np.isfinite(expected).all() and np.isfinite(out).all()
    # The rounding of each product and sum is relative to the row's scaled
    # |X| @ |W|, which is 0 exactly where the result must be exactly 0
    # (empty rows, rows whose divisor is 0).
    # (scipy's abs() would sum the duplicates of X in place: build |X| by hand.)
    X_abs = csr_with_arrays(np.abs(X.data.astype(np.float64)), X.indices.copy(), X.indptr.copy(),
                            X.shape[1])
    magnitude = np.asarray(X_abs @ np.abs(W.astype(np.float64)))
    magnitude *= _row_scales(X, combiner)[:, None]
    rtol = 1e-5 if W.dtype == np.float32 else 1e-13
    err = np.abs(out.astype(np.float64) - expected)
    worst = np.unravel_index(np.argmax(err - rtol * magnitude), err.shape) if err.size else None
    assert np.all(err <= rtol * magnitude), (worst, out[worst], expected[worst])
    for a, b in zip((X.data, X.indices, X.indptr), stored):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def _row_scales(X, combiner):
    """|scale_i| of the combiner, from the matrix X stands for (duplicates summed)."""
    if combiner == "sum":
        return np.ones(X.shape[0])
    X = sp.csr_matrix(X, dtype=np.float64, copy=True)
    X.sum_duplicates()
    scales = np.zeros(X.shape[0])
    for i in range(X.shape[0]):
        values = X.data[X.indptr[i]:X.indptr[i + 1]]
        div = values.sum() if combiner == "mean" else np.sqrt((values ** 2).sum())
        scales[i] = abs(1.0 / div) if div != 0 else 0.0
    return scales


# ========================================================= fuzz: malformed CSR


def random_csr_arrays(rng, n_features):
    """Random CSR arrays: usually broken in one to three ways, sometimes valid."""
    index_dtype = rng.choice([np.int32, np.int64])
    n_rows = int(rng.integers(0, 6))
    lengths = rng.integers(0, 4, size=n_rows)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(index_dtype)
    nnz = int(indptr[-1])
    indices = rng.integers(0, n_features, size=nnz).astype(index_dtype)
    data = rng.uniform(-3, 3, size=nnz)
    big = int(np.iinfo(index_dtype).max)
    for _ in range(int(rng.integers(0, 4))):
        kind = rng.integers(0, 7)
        if kind == 0 and len(indices):
            indices[rng.integers(len(indices))] = rng.choice(
                [-1, -n_features, n_features, big, -big - 1, int(rng.integers(n_features, 10**6))])
        elif kind == 1 and len(indptr):
            indptr[rng.integers(len(indptr))] = rng.choice(
                [-1, nnz + 1, big, -big - 1, int(rng.integers(-50, 50))])
        elif kind == 2 and n_rows > 1:
            indptr = indptr[rng.permutation(len(indptr))]  # decreasing somewhere
        elif kind == 3:
            data = np.append(data, 1.0) if rng.random() < 0.5 else data[:-1]
        elif kind == 4:
            indices = np.append(indices, indices[:1]) if rng.random() < 0.5 else indices[:-1]
        elif kind == 5:
            indptr = np.append(indptr, indptr[-1:]) if rng.random() < 0.5 else indptr[:-1]
        elif kind == 6 and len(indices):
            indices[rng.integers(len(indices))] = rng.integers(-(2**31), 2**31 - 1)
    # Other dtypes, as a last step: narrower or unsigned index types (values
    # wrap around), float indices, integer values (CountVectorizer's).
    change = rng.integers(0, 6)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if change == 0:
            indices = indices.astype(rng.choice([np.int8, np.int16, np.uint32, np.uint64, np.float64]))
        elif change == 1:
            indptr = indptr.astype(rng.choice([np.int16, np.uint64, np.int64]))
        elif change == 2:
            data = data.astype(rng.choice([np.float32, np.int64, np.float16]))
    return n_rows, data, indices, indptr


def is_valid_csr(n_rows, data, indices, indptr, n_features):
    if indptr.ndim != 1 or len(indptr) != n_rows + 1 or len(data) != len(indices):
        return False
    if n_rows == 0:
        return True  # nothing is read: the kernels return an empty output
    if indptr[0] != 0 or indptr[-1] != len(indices) or np.any(np.diff(indptr.astype(np.int64)) < 0):
        return False
    idx = indices.astype(np.float64)
    return bool(np.all((idx >= 0) & (idx < n_features) & (idx == np.round(idx))))


def run_fuzz(seed, n_cases, log=print):
    """Feed random CSR arrays to every entry point; return the problems found.

    Each call is logged before it runs, so that the last line printed names
    the call if the process dies.
    """
    _, _, se, clf = fitted_models()
    calls = entry_points(se, clf)
    rng = np.random.default_rng(seed)
    problems, outcomes = [], {"refused": 0, "accepted": 0}
    for case in range(n_cases):
        n_rows, data, indices, indptr = random_csr_arrays(rng, N_FEATURES)
        valid = is_valid_csr(n_rows, data, indices, indptr, N_FEATURES)
        described = ", ".join(f"{name}={a.tolist()} ({a.dtype})" for name, a in
                              (("data", data), ("indices", indices), ("indptr", indptr)))
        X = sp.csr_matrix((n_rows, N_FEATURES))
        for name, entry in calls.items():
            log(f"case {case} {name}: {described}")
            X.data, X.indices, X.indptr = data, indices, indptr
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out = entry(X)
            except (ValueError, TypeError):
                outcomes["refused"] += 1
                continue
            except Exception as exc:  # noqa: BLE001 - the point of the test
                problems.append(f"case {case} {name} raised {type(exc).__name__}: {exc}; {described}")
                continue
            outcomes["accepted"] += 1
            if not valid:
                problems.append(f"case {case} {name} accepted a malformed matrix: {described}")
            elif name == "embedding_sum" and n_rows == 0:
                if out.shape != (0, 3):
                    problems.append(f"case {case} {name} gave shape {out.shape}: {described}")
            elif name == "embedding_sum":
                good = sp.csr_matrix((data.astype(np.float64), indices.astype(np.int64),
                                      indptr.astype(np.int64)), shape=(n_rows, N_FEATURES))
                if not np.allclose(out, good @ np.ones((N_FEATURES, 3)), rtol=1e-5, atol=1e-5):
                    problems.append(f"case {case} {name} gave a wrong result: {described}")
    return problems, outcomes


FUZZ_SEED = 1


def test_fuzz_malformed_csr_only_raises_value_or_type_error(tmp_path):
    # 300 seeded cases through the 11 entry points, in a child process: a
    # crash there fails this test (naming the call) instead of killing pytest.
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        import test_reliability
        log = open({str(tmp_path / "calls.log")!r}, "w", buffering=1)
        problems, outcomes = test_reliability.run_fuzz({FUZZ_SEED}, 300, log=lambda line: print(line, file=log))
        print("\\n".join(problems))
        print("OUTCOMES", outcomes["refused"], outcomes["accepted"])
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=child_env(), cwd=tmp_path, timeout=300)
    if run.returncode != 0:
        calls = (tmp_path / "calls.log").read_text().splitlines() if (tmp_path / "calls.log").exists() else []
        pytest.fail(f"the process died (return code {run.returncode}) during: "
                    f"{calls[-1] if calls else '?'}\n{run.stderr[-2000:]}")
    lines = run.stdout.splitlines()
    refused, accepted = map(int, lines[-1].split()[1:])
    problems = [line for line in lines[:-1] if line]
    assert not problems, f"{len(problems)} problems, the first ones:\n" + "\n".join(problems[:5])
    # Both kinds of case occurred: the fuzz is neither all-broken nor all-valid.
    assert refused > 1000 and accepted > 100, (refused, accepted)


# ================================================================== threads


def big_problem(n_rows=20000, n_features=3000, d=128, per_row=30, seed=0):
    """``per_row`` random entries (duplicates possible) in each row, and a float32 table."""
    rng = np.random.default_rng(seed)
    indptr = np.arange(0, (n_rows + 1) * per_row, per_row, dtype=np.int32)
    indices = rng.integers(0, n_features, size=n_rows * per_row, dtype=np.int32)
    data = rng.uniform(0.5, 2.0, size=n_rows * per_row).astype(np.float32)
    X = sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_features))
    W = rng.standard_normal((n_features, d)).astype(np.float32)
    return X, W


@pytest.mark.parametrize("combiner", COMBINERS)
def test_sparse_embedding_transform_same_for_every_n_jobs(combiner):
    X, _ = big_problem(n_rows=3000, n_features=500, d=16, per_row=10)
    se = SparseEmbedding(n_components=16, combiner=combiner, random_state=0).fit(X)
    outputs = [se.set_params(n_jobs=n_jobs).transform(X) for n_jobs in (1, 2, -1, None)]
    for out in outputs[1:]:
        np.testing.assert_array_equal(out, outputs[0])
    np.testing.assert_allclose(outputs[0], reference(X, se.embeddings_, combiner), rtol=1e-4, atol=1e-5)


def test_concurrent_calls_on_one_fitted_model():
    # Several Python threads use the same fitted models at once, each call
    # also running its own OpenMP team (n_jobs=2): every result is the
    # sequential one, bit for bit.
    X, y = make_data(n_samples=2000, n_features=300)
    se = SparseEmbedding(n_components=16, random_state=0).fit(X)
    clf = EmbeddingClassifier(n_components=16, max_iter=3, random_state=0).fit(X, y)
    models = {n_jobs: (copy.deepcopy(se).set_params(n_jobs=n_jobs),
                       copy.deepcopy(clf).set_params(n_jobs=n_jobs)) for n_jobs in (1, 2)}
    chunks = [X[i::4] for i in range(4)]
    methods = {
        "transform": lambda se, clf, X: se.transform(X),
        "predict": lambda se, clf, X: clf.predict(X),
        "predict_proba": lambda se, clf, X: clf.predict_proba(X),
        "embeddings": lambda se, clf, X: clf.transform(X),
    }
    expected = {(m, i): methods[m](se, clf, chunk) for m in methods for i, chunk in enumerate(chunks)}
    work = [(m, i, n_jobs) for (m, i) in expected for n_jobs in models] * 4

    def task(item):
        method, i, n_jobs = item
        return methods[method](*models[n_jobs], chunks[i])

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(task, work))
    for (method, i, _), result in zip(work, results):
        np.testing.assert_array_equal(result, expected[method, i])


def timed(fn):
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def in_two_threads(fn):
    """Wall time of two threads each running ``fn`` once, started together."""
    barrier = threading.Barrier(3)

    def run():
        barrier.wait()
        fn()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    tic = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    return time.perf_counter() - tic


def test_kernels_release_the_gil_for_other_python_threads():
    # While one thread is inside embedding_sum, another Python thread keeps
    # running. A kernel holding the GIL would stop it for the whole call
    # (apart from the short Python checks before it): a fraction near 0.
    X, W = big_problem(per_row=100, d=256)
    embedding_sum(X, W, n_jobs=1)

    def spin(stop, counts):
        n = 0
        while not stop.is_set():
            n += 1
        counts.append(n)

    def spin_while(fn):
        stop, counts = threading.Event(), []
        thread = threading.Thread(target=spin, args=(stop, counts))
        thread.start()
        elapsed = timed(fn)
        stop.set()
        thread.join()
        return counts[0] / elapsed

    fractions = []
    for _ in range(3):
        alone = spin_while(lambda: time.sleep(0.1))  # the spinner's own speed
        fractions.append(spin_while(lambda: embedding_sum(X, W, n_jobs=1)) / alone)
        if fractions[-1] > 0.3:
            break
    assert max(fractions) > 0.3, f"another thread ran at {fractions} of its speed"


def test_two_threads_run_embedding_sum_in_parallel():
    # Two threads each calling a one-thread embedding_sum take clearly less
    # than twice one call (a kernel holding the GIL would make it ~2). A
    # busy machine cannot show that: a NumPy sort, which releases the GIL,
    # is timed the same way as a control, and the test is skipped when even
    # it does not run in parallel.
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two CPUs")
    X, W = big_problem(per_row=100, d=256)
    values = np.random.RandomState(0).standard_normal(2_000_000)

    def kernel():
        embedding_sum(X, W, n_jobs=1)

    def control():
        np.sort(values)

    kernel(), control()
    trials = []
    for _ in range(5):
        control_ratio = in_two_threads(control) / timed(control)
        kernel_ratio = in_two_threads(kernel) / timed(kernel)
        trials.append((round(control_ratio, 2), round(kernel_ratio, 2)))
        if control_ratio < 1.45 and kernel_ratio < 1.6:
            return
    if all(control_ratio >= 1.45 for control_ratio, _ in trials):
        pytest.skip(f"the machine is too busy to run two threads at once: {trials}")
    pytest.fail(f"(control, embedding_sum) two-thread / one-call time ratios: {trials}")


@pytest.mark.skipif(not _kernels.OPENMP_ENABLED, reason="built without OpenMP: always one thread")
def test_n_jobs_minus_one_respects_threadpool_limits():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    X, W = big_problem(n_rows=500, n_features=100, d=8, per_row=5)
    expected = embedding_sum(X, W, n_jobs=1)
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert _n_threads(-1) == 1
        assert _n_threads(4) == 1
        assert sparsebed.show_config(file=io.StringIO())["max_threads"] == 1
        np.testing.assert_array_equal(embedding_sum(X, W, n_jobs=-1), expected)
    with threadpoolctl.threadpool_limits(limits=3, user_api="openmp"):
        assert (_n_threads(-1), _n_threads(-2), _n_threads(8), _n_threads(None)) == (3, 2, 3, 1)
    assert _n_threads(-1) == _kernels.openmp_max_threads()


def child_env(**extra):
    """The environment for a child Python that imports this same sparsebed."""
    env = dict(os.environ, **extra)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(sparsebed.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    return env


@pytest.mark.parametrize("omp_num_threads", ["1", "3"])
def test_n_jobs_minus_one_respects_omp_num_threads(tmp_path, omp_num_threads):
    if omp_num_threads != "1" and not _kernels.OPENMP_ENABLED:
        pytest.skip("built without OpenMP: always one thread")
    code = ("import sparsebed; from sparsebed._config import _n_threads; "
            "print('n_threads', _n_threads(-1)); sparsebed.show_config()")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env=child_env(OMP_NUM_THREADS=omp_num_threads), timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"n_threads {omp_num_threads}\n" in run.stdout
    assert f"max_threads: {omp_num_threads}\n" in run.stdout


# =================================================================== limits


def test_int64_index_path():
    rng = np.random.RandomState(0)
    n_rows, n_features = 200, 50
    lengths = rng.randint(0, 8, size=n_rows)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = rng.randint(0, n_features, size=indptr[-1]).astype(np.int64)
    data = rng.uniform(-1, 2, size=indptr[-1])
    X = csr_with_arrays(data, indices, indptr, n_features)
    assert X.indices.dtype == X.indptr.dtype == np.int64
    W = rng.standard_normal((n_features, 6))
    check_against_scipy(X, W, n_jobs=2)
    check_against_scipy(X, W.astype(np.float32))
    se = SparseEmbedding(init=W, dtype=np.float64).fit(X)
    np.testing.assert_allclose(se.transform(X), reference(X, W, "sum"), rtol=1e-12, atol=1e-12)
    y = (np.asarray(X[:, :25].sum(axis=1)).ravel() > 0).astype(int)
    clf = EmbeddingClassifier(n_components=8, random_state=0, n_jobs=1).fit(X, y)
    X32 = csr_with_arrays(data, indices.astype(np.int32), indptr.astype(np.int32), n_features)
    clf32 = EmbeddingClassifier(n_components=8, random_state=0, n_jobs=1).fit(X32, y)
    # The same arithmetic whatever the index type.
    np.testing.assert_array_equal(clf.embeddings_, clf32.embeddings_)
    np.testing.assert_array_equal(clf.predict_proba(X), clf32.predict_proba(X32))
    assert X.indices.dtype == np.int64 and X.indptr.dtype == np.int64


def resident_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        pytest.skip("needs /proc/self/statm")


def test_no_memory_growth_over_repeated_calls():
    X, W = big_problem(n_rows=4000, n_features=400, d=128, per_row=8)
    se = SparseEmbedding(init=W, combiner="sqrtn").fit(X)
    X_small, y_small = make_data(n_samples=40, n_features=30)
    # Wide embeddings make any per-thread scratch the training kernel leaked
    # (two 64 KiB vectors per thread and epoch) easy to see.
    params = dict(n_components=16384, max_iter=4, tol=None, n_jobs=2, random_state=0)

    def transforms(n):
        for _ in range(n):
            se.transform(X)
            embedding_sum(X, W, combiner="mean", n_jobs=2)

    def fits(n):
        for _ in range(n):
            EmbeddingClassifier(**params).fit(X_small, y_small)

    transforms(20)
    fits(5)
    gc.collect()
    refcounts = [sys.getrefcount(a) for a in (X.data, X.indices, X.indptr, W, se.embeddings_)]
    before = resident_bytes()
    transforms(200)
    fits(30)
    gc.collect()
    growth = resident_bytes() - before
    assert [sys.getrefcount(a) for a in (X.data, X.indices, X.indptr, W, se.embeddings_)] == refcounts
    # 200 leaked outputs would be 800 MB, 30 leaked tables 60 MB, leaked
    # scratch vectors 30 MB.
    assert growth < 12 * 2**20, f"resident memory grew by {growth / 2**20:.1f} MiB"
