"""Safe persistence: ``sparsebed.persistence.save`` / ``load``, and pickle.

A saved model loads back bit for bit, for both estimators, both dtypes,
binary and multiclass, every kind of label and with feature names. Loading
never runs code from the file: pickled data is refused (and shown to be a
live payload that ``allow_pickle=True`` would run), the class is never looked
up by an imported name, and every damaged, truncated, tampered or
inconsistent file raises a ValueError that says what is wrong.
"""
import builtins
import doctest
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline

from sparsebed import EmbeddingClassifier, SparseEmbedding
from sparsebed import persistence
from sparsebed.persistence import load, save


# ---------------------------------------------------------------- helpers


def make_data(n_samples=80, n_features=30, n_classes=2, seed=0):
    """Count bags whose label depends on which columns are present."""
    rng = np.random.RandomState(seed)
    X = sp.random(n_samples, n_features, density=0.2, format="csr", random_state=rng,
                  data_rvs=lambda n: rng.randint(1, 4, size=n).astype(float))
    score = X @ rng.standard_normal(n_features)
    y = np.searchsorted(np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1]), score)
    return X, y


def roundtrip(model):
    buffer = io.BytesIO()
    save(model, buffer)
    return load(io.BytesIO(buffer.getvalue()))


def to_bytes(model):
    buffer = io.BytesIO()
    save(model, buffer)
    return buffer.getvalue()


def assert_identical(a, b):
    """Same dtype, shape and bits (NaN-free outputs)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a, b)


def assert_same_classifier_outputs(original, restored, X):
    for method in ("transform", "predict", "predict_proba", "predict_log_proba",
                   "decision_function"):
        assert_identical(getattr(restored, method)(X), getattr(original, method)(X))


def read_entries(blob):
    """The arrays of a model file and its decoded metadata (never unpickles)."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    metadata = json.loads(arrays.pop("metadata").tobytes().decode("utf-8"))
    return arrays, metadata


def write_entries(arrays, metadata):
    blob = json.dumps(metadata).encode("utf-8")
    buffer = io.BytesIO()
    np.savez(buffer, **{"metadata": np.frombuffer(blob, dtype=np.uint8), **arrays})
    return buffer.getvalue()


def tampered(blob, edit):
    """The model file ``blob`` after ``edit(arrays, metadata)`` changed its content."""
    arrays, metadata = read_entries(blob)
    edit(arrays, metadata)
    return write_entries(arrays, metadata)


@pytest.fixture(scope="module")
def fitted_classifier():
    X, y = make_data(n_classes=3)
    labels = np.array(["b", "a", "c"])[y]
    clf = EmbeddingClassifier(n_components=5, max_iter=4, early_stopping=True,
                              random_state=0, n_jobs=1).fit(X, labels)
    return clf, X, to_bytes(clf)


# ------------------------------------------------------------ round trips


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_embedding_round_trip_is_bit_identical(dtype, combiner):
    X, _ = make_data()
    emb = SparseEmbedding(n_components=7, combiner=combiner, dtype=dtype, random_state=0).fit(X)
    restored = roundtrip(emb)
    assert type(restored) is SparseEmbedding
    assert restored.get_params() == emb.get_params()
    assert_identical(restored.embeddings_, emb.embeddings_)
    assert restored.n_features_in_ == emb.n_features_in_
    assert not hasattr(restored, "feature_names_in_")
    assert_identical(restored.transform(X), emb.transform(X))
    assert_identical(restored.fit_transform(X), emb.fit_transform(X))  # refits alike


LABELS = {
    "str": np.array(["spam", "ham", "eggs", "toast"]),
    "int": np.array([7, -3, 12, 0]),
    "bool": np.array([True, False]),
    "float": np.array([0.0, -1.0, 2.0, 3.0]),
    "object-str": np.array(["x", "yy", "zzz", "w"], dtype=object),
}


@pytest.mark.parametrize("kind, n_classes", [
    (kind, n) for kind in LABELS for n in (2, 4) if n <= len(LABELS[kind])
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_classifier_round_trip_is_bit_identical(dtype, kind, n_classes):
    labels = LABELS[kind][:n_classes]
    X, y = make_data(n_classes=n_classes)
    clf = EmbeddingClassifier(n_components=6, max_iter=5, early_stopping=True, dtype=dtype,
                              random_state=0).fit(X, labels[y])
    restored = roundtrip(clf)
    assert type(restored) is EmbeddingClassifier
    assert restored.get_params() == clf.get_params()
    for name in ("embeddings_", "coef_", "intercept_", "classes_"):
        assert_identical(getattr(restored, name), getattr(clf, name))
    assert restored.classes_.dtype == clf.classes_.dtype  # object stays object
    assert restored.n_iter_ == clf.n_iter_
    assert restored.loss_curve_ == clf.loss_curve_
    assert restored.validation_scores_ == clf.validation_scores_
    assert len(clf.validation_scores_) == clf.n_iter_ > 0
    X_test, _ = make_data(seed=1)
    assert_same_classifier_outputs(clf, restored, X_test)
    assert len(set(clf.predict(X_test).tolist())) > 1  # not a constant model
    assert clf.score(X, labels[y]) == restored.score(X, labels[y])


def test_labels_from_pandas_and_feature_names_round_trip():
    pd = pytest.importorskip("pandas")
    X, y = make_data(n_classes=3)
    columns = [f"word_{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X.toarray(), columns=columns)
    labels = pd.Series(np.array(["low", "mid", "high"])[y])
    clf = EmbeddingClassifier(n_components=4, max_iter=3, random_state=0).fit(frame, labels)
    emb = SparseEmbedding(n_components=4, random_state=0).fit(frame)
    assert clf.classes_.dtype == object and clf.feature_names_in_.dtype == object
    for model in (clf, emb):
        restored = roundtrip(model)
        assert_identical(restored.feature_names_in_, model.feature_names_in_)
        assert restored.feature_names_in_.dtype == object
        assert_identical(restored.transform(frame), model.transform(frame))
        assert list(restored.get_feature_names_out()) == list(model.get_feature_names_out())
        # The names are checked as before: other columns are refused.
        renamed = frame.rename(columns={"word_0": "other"})
        with pytest.raises(ValueError, match="feature names"):
            restored.transform(renamed)
    restored = roundtrip(clf)
    assert_same_classifier_outputs(clf, restored, frame)
    assert restored.classes_.dtype == object
    assert [type(c) for c in restored.classes_] == [str, str, str]


def test_path_file_object_and_unseekable_stream(tmp_path, fitted_classifier):
    clf, X, _ = fitted_classifier
    # A path is written as given, with no ".npz" appended.
    path = tmp_path / "model.bin"
    save(clf, path)
    assert sorted(os.listdir(tmp_path)) == ["model.bin"]
    assert_same_classifier_outputs(clf, load(path), X)
    assert_same_classifier_outputs(clf, load(str(path)), X)
    with open(path, "rb") as f:
        assert_same_classifier_outputs(clf, load(f), X)
    with open(tmp_path / "via-handle.npz", "wb") as f:
        save(clf, f)
    assert_same_classifier_outputs(clf, load(tmp_path / "via-handle.npz"), X)

    class Stream(io.RawIOBase):  # a pipe or socket: no seek
        def __init__(self, data):
            self._inner = io.BytesIO(data)

        def readable(self):
            return True

        def seekable(self):
            return False

        def readinto(self, b):
            return self._inner.readinto(b)

    assert_same_classifier_outputs(clf, load(io.BufferedReader(Stream(path.read_bytes()))), X)


def test_model_after_other_data_in_one_file(tmp_path, fitted_classifier):
    clf, X, blob = fitted_classifier
    with open(tmp_path / "bundle", "wb") as f:
        f.write(b"header of another format\n")
        save(clf, f)
    with open(tmp_path / "bundle", "rb") as f:
        f.readline()
        assert_same_classifier_outputs(clf, load(f), X)


def test_training_continues_identically_after_load():
    # The random state is saved: partial_fit and a warm-start fit after load
    # shuffle as the original model would, so the results are bit-identical.
    X, y = make_data(n_classes=3)
    clf = EmbeddingClassifier(n_components=5, max_iter=3, n_jobs=1, random_state=0).fit(X, y)
    restored = roundtrip(clf)
    for model in (clf, restored):
        model.partial_fit(X, y)
        model.partial_fit(X[:40], y[:40])
    for name in ("embeddings_", "coef_", "intercept_"):
        assert_identical(getattr(restored, name), getattr(clf, name))
    assert restored.n_iter_ == clf.n_iter_ == 5
    assert restored.loss_curve_ == clf.loss_curve_

    clf.set_params(warm_start=True)
    restored = roundtrip(clf)
    assert restored.warm_start is True
    for model in (clf, restored):
        model.fit(X, y)
    for name in ("embeddings_", "coef_", "intercept_"):
        assert_identical(getattr(restored, name), getattr(clf, name))


def test_loaded_arrays_are_private_writeable_copies_on_a_cache_line(fitted_classifier):
    # As fit makes them: rows that start on a cache line are read whole and
    # shared by no two training threads.
    clf, X, blob = fitted_classifier
    restored = load(io.BytesIO(blob))
    for name in ("embeddings_", "coef_", "intercept_"):
        array = getattr(restored, name)
        assert array.flags.writeable and array.flags.c_contiguous
        assert array.ctypes.data % 64 == 0, name
        assert not np.shares_memory(array, getattr(clf, name))


def test_pretrained_init_is_not_stored_but_the_table_is():
    X, y = make_data()
    init = np.random.RandomState(0).standard_normal((X.shape[1], 3))
    for model in (SparseEmbedding(init=init).fit(X),
                  EmbeddingClassifier(init=init, freeze_embeddings=True, max_iter=2).fit(X, y)):
        blob = to_bytes(model)
        arrays, metadata = read_entries(blob)
        assert metadata["init_array_dropped"] is True
        assert metadata["params"]["init"] == "normal"
        assert set(arrays) <= {"embeddings_", "coef_", "intercept_", "classes_", "rng_state_keys"}
        restored = load(io.BytesIO(blob))
        assert restored.init == "normal"
        assert_identical(restored.embeddings_, init.astype(np.float32))
        assert_identical(restored.transform(X), model.transform(X))


@pytest.mark.parametrize("dtype", [np.float64, "float64", np.dtype("float32")])
def test_parameters_keep_their_python_form(dtype):
    X, y = make_data(n_classes=3)
    clf = EmbeddingClassifier(
        n_components=4, max_iter=2, dtype=dtype, class_weight={0: 1.0, 1: 3.0, 2: 0.5},
        tol=None, random_state=3, eta0=0.25, n_jobs=-1,
    ).fit(X, y)
    restored = roundtrip(clf)
    assert restored.get_params() == clf.get_params()
    assert type(restored.dtype) is type(dtype)
    assert list(restored.class_weight) == [0, 1, 2]  # int keys, not "0", "1", "2"
    balanced = roundtrip(clf.set_params(class_weight="balanced", dtype=np.float32).fit(X, y))
    assert balanced.class_weight == "balanced"


# --------------------------------------------------------- refused at save


def test_save_refuses_unfitted_and_foreign_estimators(tmp_path):
    with pytest.raises(NotFittedError):
        save(EmbeddingClassifier(), io.BytesIO())
    X, y = make_data()
    with pytest.raises(TypeError, match="SparseEmbedding and EmbeddingClassifier"):
        save(make_pipeline(SparseEmbedding()).fit(X), io.BytesIO())

    class Subclass(SparseEmbedding):
        pass

    with pytest.raises(TypeError, match="SparseEmbedding and EmbeddingClassifier"):
        save(Subclass().fit(X), io.BytesIO())


def test_save_refuses_parameters_json_cannot_hold(tmp_path):
    X, y = make_data()
    clf = EmbeddingClassifier(max_iter=2, random_state=np.random.RandomState(0)).fit(X, y)
    path = tmp_path / "model.npz"
    path.write_bytes(b"previous content")
    with pytest.raises(TypeError, match=r"random_state=RandomState.*set_params"):
        save(clf, path)
    assert path.read_bytes() == b"previous content"  # refused before writing
    clf.set_params(random_state=np.int64(5))  # numpy ints are fine
    assert roundtrip(clf).random_state == 5


def test_save_refuses_object_labels_that_are_not_strings():
    X, y = make_data()
    clf = EmbeddingClassifier(max_iter=2).fit(X, y)
    clf.classes_ = np.array([1, "one"], dtype=object)
    with pytest.raises(ValueError, match="classes_ of dtype object.*numbers, booleans or strings"):
        save(clf, io.BytesIO())


# ------------------------------------------------- refused or checked at load


def test_file_from_a_future_format_version_is_refused(fitted_classifier):
    _, _, blob = fitted_classifier

    def future(arrays, metadata):
        metadata["format_version"] = persistence.FORMAT_VERSION + 1
        metadata["sparsebed_version"] = "9.0.0"

    with pytest.raises(ValueError, match=r"format version 2, written by sparsebed '9.0.0'.*upgrade"):
        load(io.BytesIO(tampered(blob, future)))
    # The same file with the current version loads: the edit is what is refused.
    load(io.BytesIO(tampered(blob, lambda a, m: None)))


@pytest.mark.parametrize("edit, message", [
    (lambda a, m: m.update(format="other-format"), "not a 'sparsebed-model' file"),
    (lambda a, m: m.update(format_version="1"), "not a version number"),
    (lambda a, m: m.update(format_version=0), "not a version number"),
    (lambda a, m: m.pop("params"), "no valid 'params'"),
])
def test_file_of_another_format_is_refused(fitted_classifier, edit, message):
    _, _, blob = fitted_classifier
    with pytest.raises(ValueError, match=message):
        load(io.BytesIO(tampered(blob, edit)))


def test_truncated_file_raises_value_error(fitted_classifier):
    _, _, blob = fitted_classifier
    for size in [0, 1, 4, 30, 100, len(blob) // 2, len(blob) - 22, len(blob) - 1]:
        with pytest.raises(ValueError, match="Cannot load a sparsebed model"):
            load(io.BytesIO(blob[:size]))


def test_damaged_bytes_never_give_a_silently_wrong_model(fitted_classifier):
    # A byte changed anywhere either makes load raise ValueError or leaves
    # the model exactly as saved (a damaged timestamp, say): never a crash,
    # never another exception, never a different model.
    clf, X, blob = fitted_classifier
    rng = np.random.RandomState(0)
    positions = np.unique(np.concatenate([rng.randint(0, len(blob), 300), np.arange(0, len(blob), 97)]))
    refused = 0
    for pos in positions:
        damaged = bytearray(blob)
        damaged[pos] ^= 1 << rng.randint(8)
        try:
            model = load(io.BytesIO(bytes(damaged)))
        except ValueError as exc:
            assert str(exc).startswith("Cannot load a sparsebed model"), exc
            refused += 1
            continue
        for name in ("embeddings_", "coef_", "intercept_", "classes_"):
            assert_identical(getattr(model, name), getattr(clf, name))
        assert model.get_params() == clf.get_params()
    assert refused > len(positions) // 2


class Payload:
    """Unpickling this creates a folder: the proof that code ran."""

    def __init__(self, folder):
        self.folder = str(folder)

    def __reduce__(self):
        return (os.mkdir, (self.folder,))


def test_pickled_object_array_is_refused_and_never_unpickled(tmp_path, fitted_classifier):
    clf, X, blob = fitted_classifier
    marker = tmp_path / "code-ran"
    arrays, metadata = read_entries(blob)
    arrays["classes_"] = np.array([Payload(marker), "b", "c"], dtype=object)
    path = tmp_path / "evil.npz"
    path.write_bytes(write_entries(arrays, metadata))  # np.savez pickles object arrays

    # The payload is live: allowing pickle runs it.
    with np.load(path, allow_pickle=True) as npz:
        npz["classes_"]
    assert marker.exists()
    marker.rmdir()
    # np.load with allow_pickle=False refuses to read the entry...
    with np.load(path, allow_pickle=False) as npz:
        with pytest.raises(ValueError, match="allow_pickle"):
            npz["classes_"]
    # ... and load says why, without running anything.
    with pytest.raises(ValueError, match=r"'classes_' holds Python objects .*never unpickles"):
        load(path)
    assert not marker.exists()


def test_a_pickle_file_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ValueError, match="pickled data, which sparsebed never unpickles"):
        load(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the payload is live
    assert marker.exists()


def test_other_files_are_refused(tmp_path):
    buffer = io.BytesIO()
    np.save(buffer, np.arange(3))
    with pytest.raises(ValueError, match="single .npy array"):
        load(io.BytesIO(buffer.getvalue()))
    with pytest.raises(ValueError, match="is empty"):
        load(io.BytesIO(b""))
    with pytest.raises(ValueError, match="not a NumPy .npz archive"):
        load(io.BytesIO(b"# a text file\n"))
    buffer = io.BytesIO()
    np.savez(buffer, weights=np.ones(3))
    with pytest.raises(ValueError, match="'metadata' is missing"):
        load(io.BytesIO(buffer.getvalue()))
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.npz")


def test_load_never_imports_or_calls_a_name_from_the_file(monkeypatch, fitted_classifier):
    _, _, blob = fitted_classifier
    imported = []
    real_import = builtins.__import__

    def recording_import(name, *args, **kwargs):
        imported.append(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", recording_import)
    for name in ("os.system", "sklearn.pipeline.Pipeline", "SGDClassifier",
                 "sparsebed.classifier.EmbeddingClassifier", "__builtins__.eval"):
        evil = tampered(blob, lambda a, m: m.update(estimator=name))
        with pytest.raises(ValueError, match="only SparseEmbedding and EmbeddingClassifier"):
            load(io.BytesIO(evil))
    assert not {"os", "sklearn.pipeline", "sklearn.linear_model", "__builtins__"} & set(imported)
    # The recording works: a real import inside the block would be seen.
    __import__("json")
    assert "json" in imported


@pytest.mark.parametrize("edit, message", [
    # Parameters go through the estimator's own validation.
    (lambda a, m: m["params"].update(combiner="os.system"), "parameters are invalid.*combiner"),
    (lambda a, m: m["params"].update(eta0=-1.0), "parameters are invalid.*eta0"),
    (lambda a, m: m["params"].update(init=[[1.0]]), "init must be stored as a string"),
    (lambda a, m: m["params"].update(init="__import__('os')"), "parameters are invalid.*init"),
    (lambda a, m: m["params"].update(__class__="x"), r"parameters \['__class__'\]"),
    (lambda a, m: m["params"].update(dtype="object"), "dtype 'object' is not float32 or float64"),
    (lambda a, m: m["param_forms"].update(dtype="eval"), "dtype form 'eval'"),
    (lambda a, m: m.update(classes_form="pickle"), "classes_form 'pickle'"),
])
def test_tampered_parameters_are_refused(fitted_classifier, edit, message):
    _, _, blob = fitted_classifier
    with pytest.raises(ValueError, match=message):
        load(io.BytesIO(tampered(blob, edit)))


def _set(key, make):
    return lambda arrays, metadata: arrays.__setitem__(key, make(arrays[key]))


@pytest.mark.parametrize("edit, message", [
    (lambda a, m: a.pop("coef_"), "'coef_' is missing"),
    (lambda a, m: a.pop("embeddings_"), "'embeddings_' is missing"),
    (lambda a, m: a.pop("classes_"), "'classes_' is missing"),
    (lambda a, m: m["attributes"].pop("n_features_in_"), "'n_features_in_' is missing"),
    (_set("coef_", lambda c: c[:, :-1]), r"coef_ has shape \(3, 4\) .* need \(3, 5\)"),
    (_set("coef_", lambda c: c[:2]), r"coef_ has shape \(2, 5\) but 3 classes"),
    (_set("intercept_", lambda b: b[:2]), r"intercept_ has shape \(2,\) but 3 classes"),
    (_set("embeddings_", lambda W: W[:-1]), r"embeddings_ has shape \(29, 5\) but n_features_in_ = 30"),
    (_set("embeddings_", lambda W: W[:, :-1]), "embeddings_ has 4 columns but n_components = 5"),
    (lambda a, m: (_set("embeddings_", lambda W: W[:, :-1])(a, m), m["params"].update(n_components=None)),
     r"coef_ has shape \(3, 5\) but 3 classes and embeddings of width 4 need \(3, 4\)"),
    (_set("embeddings_", lambda W: W.astype(np.float64)), "embeddings_ must be a 2-d array of float32"),
    (_set("embeddings_", lambda W: W.ravel()), "embeddings_ must be a 2-d array"),
    (_set("embeddings_", lambda W: np.where(W > 0, np.nan, W)), "embeddings_ holds NaN"),
    (_set("coef_", lambda c: c.astype(">f4")), "coef_ must be a 2-d array of float32"),
    (_set("classes_", lambda c: c[::-1]), "classes_ must hold at least 2 distinct labels, sorted"),
    (_set("classes_", lambda c: c[:1]), "at least 2 distinct labels"),
    (_set("classes_", lambda c: np.array([1 + 2j, 3j, 4j])), "classes_ must be a 1-d array of numbers"),
    (lambda a, m: a.update(extra=np.zeros(3)), r"unexpected entries \['extra'\]"),
    (lambda a, m: m["params"].update(n_components=6), "embeddings_ has 5 columns but n_components = 6"),
    (lambda a, m: m["attributes"].update(n_features_in_=31), "but n_features_in_ = 31"),
    (lambda a, m: m["attributes"].update(n_features_in_="30"), "n_features_in_ = '30' is not a positive int"),
    (lambda a, m: m["attributes"].update(n_iter_=-1), "n_iter_ = -1"),
    (lambda a, m: m["attributes"].update(loss_curve_=["0.5"]), "loss_curve_ must be a list of numbers"),
    (lambda a, m: a.pop("rng_state_keys"), "rng_state_keys"),
    (_set("rng_state_keys", lambda k: k[:10]), "rng_state_keys must be 624 uint32"),
    (lambda a, m: m["rng"].update(pos="x"), "rng metadata is malformed"),
    (lambda a, m: a.update(feature_names_in_=np.array(["a", "b"])), r"feature_names_in_ must be 30 strings"),
    (lambda a, m: a.update(metadata=np.zeros(3)), "metadata entry is not UTF-8 JSON bytes"),
])
def test_missing_or_inconsistent_arrays_are_refused(fitted_classifier, edit, message):
    _, _, blob = fitted_classifier
    with pytest.raises(ValueError, match=message):
        load(io.BytesIO(tampered(blob, edit)))


def test_metadata_that_is_not_json_is_refused(fitted_classifier):
    _, _, blob = fitted_classifier
    arrays, _ = read_entries(blob)
    for raw in (b"\xff\xfe not utf-8", b"{not json", b"[" * 100_000 + b"]" * 100_000, b"[1, 2]"):
        buffer = io.BytesIO()
        np.savez(buffer, metadata=np.frombuffer(raw, dtype=np.uint8), **arrays)
        with pytest.raises(ValueError, match="Cannot load a sparsebed model"):
            load(io.BytesIO(buffer.getvalue()))


def test_header_claiming_a_huge_array_is_refused_before_allocating(fitted_classifier):
    # A tampered .npy header asking for 8 TB must not make load allocate it.
    _, _, blob = fitted_classifier
    arrays, metadata = read_entries(blob)
    small = np.zeros(4)
    header = io.BytesIO()
    fields = np.lib.format.header_data_from_array_1_0(small)
    fields["shape"] = (10**12,)
    np.lib.format.write_array_header_1_0(header, fields)
    buffer = io.BytesIO()
    np.savez(buffer, metadata=np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8),
             **{k: v for k, v in arrays.items() if k != "embeddings_"})
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("embeddings_.npy", header.getvalue() + small.tobytes())
    with pytest.raises(ValueError, match=r"'embeddings_' declares shape \(1000000000000,\)"):
        load(io.BytesIO(buffer.getvalue()))


def test_fortran_ordered_arrays_in_a_file_load_as_c_contiguous(fitted_classifier):
    clf, X, blob = fitted_classifier
    edited = tampered(blob, _set("embeddings_", np.asfortranarray))
    restored = load(io.BytesIO(edited))
    assert restored.embeddings_.flags.c_contiguous
    assert_same_classifier_outputs(clf, restored, X)


# ----------------------------------------------------------------- pickle


@pytest.mark.parametrize("Estimator", [SparseEmbedding, EmbeddingClassifier])
def test_joblib_read_only_memmap_round_trip(tmp_path, Estimator):
    # joblib.load(mmap_mode="r") gives read-only memory maps for the arrays:
    # prediction must work on them, bit for bit, and never write to them.
    joblib = pytest.importorskip("joblib")
    X, y = make_data(n_classes=3)
    model = Estimator(n_components=6, dtype=np.float64, random_state=0).fit(X, y)
    joblib.dump(model, tmp_path / "model.joblib")
    restored = joblib.load(tmp_path / "model.joblib", mmap_mode="r")
    assert isinstance(restored.embeddings_, np.memmap)
    assert not restored.embeddings_.flags.writeable
    for n_jobs in (1, 2):
        restored.set_params(n_jobs=n_jobs)
        assert_identical(restored.transform(X), model.transform(X))
        if Estimator is EmbeddingClassifier:
            assert_same_classifier_outputs(model, restored, X)
    # and a read-only model saves to the safe format too
    assert_identical(roundtrip(restored).transform(X), model.transform(X))


# --------------------------------------------------------------- docstrings


def test_persistence_docstring_examples_run():
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(persistence) if t.examples]
    assert {t.name.rsplit(".", 1)[-1] for t in tests} >= {"persistence", "save", "load"}
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
