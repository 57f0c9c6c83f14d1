"""Save and load fitted estimators without pickle.

:func:`save` writes a fitted :class:`~sparsebed.SparseEmbedding` or
:class:`~sparsebed.EmbeddingClassifier` to one ``.npz`` file (NumPy's
``savez``): its fitted arrays, and a JSON entry with the format, the
parameters and the scalar fitted attributes. :func:`load` reads it back with
``np.load(..., allow_pickle=False)``. Unlike ``pickle`` or ``joblib``, loading
a file never executes code from it: only numbers, booleans and strings are
read, the estimator class is looked up by name among the two that sparsebed
defines, and everything is checked before a model is returned. A file that is
truncated or corrupted, that comes from a newer version of the format, or
whose arrays do not fit together raises a ``ValueError``.

The file holds:

``metadata``
    UTF-8 JSON, as a ``uint8`` array: ``format`` (``"sparsebed-model"``),
    ``format_version``, ``sparsebed_version`` (the version that wrote it),
    ``estimator`` (the class name), ``params`` (``get_params()``),
    ``param_forms`` (how ``dtype`` and a ``class_weight`` dict were written),
    ``init_array_dropped``, ``attributes`` (``n_features_in_``, and for the
    classifier ``n_iter_``, ``loss_curve_``, ``validation_scores_``),
    ``classes_form`` and ``rng`` (the classifier's random state, so that
    ``partial_fit`` after ``load`` continues as it would have).
``embeddings_``, and for the classifier ``coef_``, ``intercept_``, ``classes_``
    The fitted arrays, bit for bit.
``feature_names_in_``
    When ``fit`` saw string column names.
``rng_state_keys``
    The key of the classifier's random state (624 ``uint32``).

Pretrained vectors given as ``init`` are not stored: the fitted table
``embeddings_`` is, and the loaded estimator has ``init="normal"``
(``metadata["init_array_dropped"]`` records that), so refitting it from
scratch draws a random table.

Examples
--------
>>> import io
>>> import numpy as np
>>> import scipy.sparse as sp
>>> from sparsebed import EmbeddingClassifier
>>> from sparsebed.persistence import load, save
>>> X = sp.random(40, 12, density=0.3, format="csr", random_state=0)
>>> y = np.array(["ham", "spam"] * 20)
>>> clf = EmbeddingClassifier(n_components=4, max_iter=3, random_state=0).fit(X, y)
>>> buffer = io.BytesIO()
>>> save(clf, buffer)
>>> restored = load(io.BytesIO(buffer.getvalue()))
>>> bool((restored.predict_proba(X) == clf.predict_proba(X)).all())
True
"""
import io
import json
import numbers
import os
import struct
import zipfile
import zlib

import numpy as np
from numpy.lib import format as npy_format
from sklearn.utils.validation import check_is_fitted

from . import __version__
from ._ops import aligned_array
from .classifier import EmbeddingClassifier
from .embedding import SparseEmbedding

__all__ = ["save", "load", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "sparsebed-model"
FORMAT_VERSION = 1

# The only classes load ever instantiates, by the name stored in the file.
_ESTIMATORS = {
    "SparseEmbedding": SparseEmbedding,
    "EmbeddingClassifier": EmbeddingClassifier,
}
# Fitted arrays each class must have; feature_names_in_ is optional.
_ARRAYS = {
    "SparseEmbedding": ("embeddings_",),
    "EmbeddingClassifier": ("embeddings_", "coef_", "intercept_", "classes_"),
}
_OPTIONAL_ARRAYS = ("feature_names_in_", "rng_state_keys")
# Scalar (JSON) fitted attributes of each class.
_ATTRIBUTES = {
    "SparseEmbedding": ("n_features_in_",),
    "EmbeddingClassifier": ("n_features_in_", "n_iter_", "loss_curve_", "validation_scores_"),
}
_FLOAT_DTYPES = {"float32": np.float32, "float64": np.float64}
# Kinds of classes_ arrays that npz stores without pickle: bool, integers,
# floats and unicode strings.
_LABEL_KINDS = "biufU"
_MT_KEY_LENGTH = 624
# What zipfile and numpy raise on damaged archives: a changed byte can make a
# header name an unknown compression method, an impossible size, bad text...
_ARCHIVE_ERRORS = (
    ValueError, EOFError, OSError, KeyError, NotImplementedError, OverflowError,
    RuntimeError, struct.error, zipfile.BadZipFile, zlib.error,
)


# ------------------------------------------------------------------ saving


def save(estimator, file):
    """Write a fitted estimator to an ``.npz`` file that loads without pickle.

    Parameters
    ----------
    estimator : SparseEmbedding or EmbeddingClassifier
        A fitted estimator of exactly one of these classes.
    file : str, os.PathLike or binary file object
        Where to write. A path is written as given (no ``.npz`` is
        appended); a file object must be open for binary writing.

    Raises
    ------
    TypeError
        When ``estimator`` is not one of the two classes, or a parameter
        holds a value that JSON cannot store (for example a
        ``RandomState`` instance as ``random_state``: set it to an int or
        None before saving).
    ValueError
        When ``classes_`` holds labels other than numbers, booleans or
        strings.
    sklearn.exceptions.NotFittedError
        When ``estimator`` is not fitted.

    See Also
    --------
    load : read the file back.

    Notes
    -----
    Pretrained vectors passed as ``init`` are not stored as a parameter (the
    fitted ``embeddings_`` are); the loaded estimator has ``init="normal"``.
    Everything is checked before the file is opened, so a refused estimator
    leaves an existing file untouched.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import numpy as np
    >>> from sparsebed import SparseEmbedding
    >>> from sparsebed.persistence import load, save
    >>> X = np.eye(5)
    >>> emb = SparseEmbedding(n_components=3, random_state=0).fit(X)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "embedding.npz")
    ...     save(emb, path)
    ...     restored = load(path)
    >>> bool((restored.transform(X) == emb.transform(X)).all())
    True
    """
    name = type(estimator).__name__
    if _ESTIMATORS.get(name) is not type(estimator):
        raise TypeError(
            f"save writes SparseEmbedding and EmbeddingClassifier estimators, "
            f"got {type(estimator).__module__}.{type(estimator).__qualname__}."
        )
    check_is_fitted(estimator)
    arrays, metadata = _collect(estimator, name)
    blob = json.dumps(metadata, allow_nan=True, sort_keys=True).encode("utf-8")
    arrays["metadata"] = np.frombuffer(blob, dtype=np.uint8)
    for key, value in arrays.items():  # np.savez would pickle these
        assert not value.dtype.hasobject, key
    # Serialised into memory first: a failure never leaves half a file.
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    if isinstance(file, (str, os.PathLike)):
        with open(file, "wb") as f:
            f.write(buffer.getbuffer())
    else:
        file.write(buffer.getbuffer())


def _collect(estimator, name):
    """The arrays to store, and the JSON metadata, of a fitted estimator."""
    params, forms, init_dropped = _encode_params(estimator.get_params(deep=False))
    arrays = {"embeddings_": np.ascontiguousarray(estimator.embeddings_)}
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "sparsebed_version": __version__,
        "estimator": name,
        "params": params,
        "param_forms": forms,
        "init_array_dropped": init_dropped,
        "attributes": {},
        "classes_form": None,
        "rng": None,
    }
    for attr in _ATTRIBUTES[name]:
        metadata["attributes"][attr] = _json_value(attr, getattr(estimator, attr))
    if name == "EmbeddingClassifier":
        arrays["coef_"] = np.ascontiguousarray(estimator.coef_)
        arrays["intercept_"] = np.ascontiguousarray(estimator.intercept_)
        arrays["classes_"], metadata["classes_form"] = _encode_labels(estimator.classes_)
        rng = getattr(estimator, "_rng", None)
        if isinstance(rng, np.random.RandomState):
            kind, keys, pos, has_gauss, cached = rng.get_state()
            if kind == "MT19937":
                arrays["rng_state_keys"] = np.asarray(keys, dtype=np.uint32)
                metadata["rng"] = {
                    "pos": int(pos),
                    "has_gauss": int(has_gauss),
                    "cached_gaussian": float(cached),
                }
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        names = np.asarray(names)
        if not all(isinstance(n, str) for n in names.tolist()):
            raise ValueError("feature_names_in_ must hold strings to be saved.")
        arrays["feature_names_in_"] = np.array(names.tolist(), dtype=str)
    return arrays, metadata


def _encode_params(params):
    """``get_params()`` as JSON values; the forms of dtype and class_weight; init dropped?"""
    out, forms, init_dropped = {}, {}, False
    for key, value in params.items():
        if key == "init":
            if isinstance(value, str):
                out[key] = value
            else:  # pretrained vectors: embeddings_ holds the fitted table
                out[key], init_dropped = "normal", True
        elif key == "dtype":
            dtype = np.dtype(value)
            if dtype.name not in _FLOAT_DTYPES:
                raise ValueError(f"dtype must be float32 or float64 to be saved, got {value!r}.")
            out[key] = dtype.name
            forms[key] = "str" if isinstance(value, str) else (
                "dtype" if isinstance(value, np.dtype) else "type"
            )
        elif key == "class_weight" and isinstance(value, dict):
            # JSON keys are strings; [label, weight] pairs keep int and bool labels.
            out[key] = [[_json_value(key, k), _json_value(key, v)] for k, v in value.items()]
            forms[key] = "pairs"
        else:
            out[key] = _json_value(key, value)
    return out, forms, init_dropped


def _json_value(name, value):
    """``value`` as plain JSON (None, bool, int, float, str, lists); else TypeError."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(name, v) for v in value]
    raise TypeError(
        f"Cannot save {name}={value!r}: a sparsebed model file stores only JSON "
        "values (None, bool, int, float, str and lists of them). Set it to such a "
        "value with set_params before saving (e.g. random_state=None or an int)."
    )


def _encode_labels(classes):
    """``classes_`` as an array npz stores without pickle, and its form."""
    classes = np.asarray(classes)
    if classes.dtype.kind in _LABEL_KINDS:
        return np.ascontiguousarray(classes), "array"
    if classes.dtype == object and all(isinstance(c, str) for c in classes.tolist()):
        # Strings from pandas or lists of str: restored as an object array.
        return np.array(classes.tolist(), dtype=str), "object_str"
    raise ValueError(
        f"Cannot save classes_ of dtype {classes.dtype}: a sparsebed model file "
        "stores class labels that are numbers, booleans or strings, never "
        f"arbitrary Python objects; got {classes.tolist()!r:.200}."
    )


# ----------------------------------------------------------------- loading


class _Invalid(ValueError):
    """A file that is not a loadable sparsebed model."""


def load(file):
    """Read an estimator written by :func:`save`, never executing code from the file.

    Parameters
    ----------
    file : str, os.PathLike or binary file object
        A path, or a file object open for binary reading (it need not be
        seekable).

    Returns
    -------
    estimator : SparseEmbedding or EmbeddingClassifier
        The fitted estimator: ``transform``, ``predict``, ``predict_proba``
        and ``decision_function`` give bit for bit what the saved one gave,
        and ``partial_fit`` continues as it would have.

    Raises
    ------
    ValueError
        When the file is not a sparsebed model file, is truncated or
        corrupted, holds pickled data, comes from a newer version of the
        format, names an unknown estimator class or parameter, or holds
        arrays that are missing, of the wrong dtype or of inconsistent shapes.

    See Also
    --------
    save : write the file.

    Notes
    -----
    The file is read with ``np.load(file, allow_pickle=False)``: object
    arrays are refused before they are read, no class is imported by a name
    from the file (the class is looked up among :class:`SparseEmbedding` and
    :class:`EmbeddingClassifier`), and the parameters are checked by the
    estimator's own parameter validation.

    Examples
    --------
    >>> import io
    >>> import numpy as np
    >>> from sparsebed import SparseEmbedding
    >>> from sparsebed.persistence import load, save
    >>> emb = SparseEmbedding(n_components=2, dtype=np.float64, random_state=0).fit(np.eye(3))
    >>> buffer = io.BytesIO()
    >>> save(emb, buffer)
    >>> _ = buffer.seek(0)
    >>> restored = load(buffer)
    >>> restored.get_params() == emb.get_params()
    True
    >>> bool(np.array_equal(restored.embeddings_, emb.embeddings_))
    True
    >>> load(io.BytesIO(b"not a model"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Cannot load a sparsebed model: the file is not a NumPy .npz archive (...).
    """
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as f:
            return _load_from(f)
    if not (hasattr(file, "seekable") and file.seekable()):
        file = io.BytesIO(file.read())
    return _load_from(file)


def _load_from(f):
    try:
        start = f.tell()
        head = f.read(6)
        f.seek(start)
        if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            if head.startswith(b"\x80"):
                what = "it holds pickled data, which sparsebed never unpickles"
            elif head.startswith(b"\x93NUMPY"):
                what = "it is a single .npy array"
            elif not head:
                what = "it is empty"
            else:
                what = "its first bytes are not those of a zip archive; it may be corrupted"
            raise _Invalid(f"the file is not a NumPy .npz archive ({what})")
        try:
            npz = np.load(f, allow_pickle=False)
        except _ARCHIVE_ERRORS as exc:
            raise _Invalid(
                f"the file is not a readable .npz archive: it is truncated or corrupted ({exc})"
            ) from exc
        with npz:
            return _build(npz)
    except _Invalid as exc:
        raise ValueError(f"Cannot load a sparsebed model: {exc}.") from exc.__cause__


def _read(npz, key):
    """Entry ``key`` of the archive, refusing object arrays and impossible shapes."""
    if key not in npz.files:
        raise _Invalid(f"the entry {key!r} is missing")
    try:
        info = npz.zip.getinfo(key + ".npy")
        with npz.zip.open(info) as member:
            version = npy_format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = npy_format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = npy_format.read_array_header_2_0(member)
            else:
                raise _Invalid(f"the entry {key!r} uses .npy format version {version}")
            header_size = member.tell()
        if dtype.hasobject:
            raise _Invalid(
                f"the entry {key!r} holds Python objects (a pickled object array); "
                "sparsebed model files never do, and load never unpickles"
            )
        n_bytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if header_size + n_bytes != info.file_size:
            raise _Invalid(
                f"the entry {key!r} declares shape {shape} of {dtype} but holds "
                f"{info.file_size - header_size} bytes of data"
            )
        return npz[key]
    except _Invalid:
        raise
    except ValueError as exc:  # np.load's own refusals: pickled data, bad headers
        if "allow_pickle" in str(exc):
            raise _Invalid(f"the entry {key!r} holds pickled data; load never unpickles") from exc
        raise _Invalid(f"the entry {key!r} is corrupted ({exc})") from exc
    except _ARCHIVE_ERRORS as exc:
        raise _Invalid(f"the entry {key!r} is truncated or corrupted ({exc})") from exc


def _read_metadata(npz):
    raw = _read(npz, "metadata")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _Invalid("the metadata entry is not UTF-8 JSON bytes")
    try:
        metadata = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _Invalid(f"the metadata entry is not valid JSON ({exc})") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise _Invalid(f"the file is an .npz archive but not a {FORMAT_NAME!r} file")
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _Invalid(f"its format version {version!r} is not a version number")
    if version > FORMAT_VERSION:
        raise _Invalid(
            f"it has format version {version}, written by sparsebed "
            f"{metadata.get('sparsebed_version')!r}, but this sparsebed ({__version__}) "
            f"reads format versions up to {FORMAT_VERSION}: upgrade sparsebed to load it"
        )
    for key, kind in (("params", dict), ("param_forms", dict), ("attributes", dict)):
        if not isinstance(metadata.get(key), kind):
            raise _Invalid(f"the metadata has no valid {key!r}")
    return metadata


def _build(npz):
    metadata = _read_metadata(npz)
    name = metadata.get("estimator")
    if not isinstance(name, str) or name not in _ESTIMATORS:
        raise _Invalid(
            f"the file names the estimator class {name!r:.100}; only "
            f"{' and '.join(_ESTIMATORS)} can be loaded"
        )
    cls = _ESTIMATORS[name]
    known = set(_ARRAYS[name]) | set(_OPTIONAL_ARRAYS) | {"metadata"}
    unexpected = sorted(set(npz.files) - known)
    if unexpected:
        raise _Invalid(f"the file holds unexpected entries {unexpected}")

    estimator = cls()
    params = _decode_params(metadata, estimator.get_params(deep=False))
    estimator.set_params(**params)
    try:
        estimator._validate_params()
    except ValueError as exc:  # InvalidParameterError
        raise _Invalid(f"its parameters are invalid: {exc}") from exc

    attributes = metadata["attributes"]
    for attr in _ATTRIBUTES[name]:
        if attr not in attributes:
            raise _Invalid(f"the attribute {attr!r} is missing from the metadata")
    n_features = attributes["n_features_in_"]
    if not _is_int(n_features) or n_features < 1:
        raise _Invalid(f"n_features_in_ = {n_features!r} is not a positive int")

    dtype = np.dtype(estimator.dtype)
    W = _float_array(npz, "embeddings_", dtype, 2)
    d = W.shape[1]
    if W.shape[0] != n_features or d < 1:
        raise _Invalid(
            f"embeddings_ has shape {W.shape} but n_features_in_ = {n_features}"
        )
    if estimator.n_components is not None and estimator.n_components != d:
        raise _Invalid(
            f"embeddings_ has {d} columns but n_components = {estimator.n_components}"
        )
    estimator.embeddings_ = W
    estimator.n_features_in_ = n_features

    if "feature_names_in_" in npz.files:
        names = _read(npz, "feature_names_in_")
        if names.dtype.kind != "U" or names.shape != (n_features,):
            raise _Invalid(
                f"feature_names_in_ must be {n_features} strings, got an array of "
                f"dtype {names.dtype} and shape {names.shape}"
            )
        estimator.feature_names_in_ = np.array(names.tolist(), dtype=object)

    if name == "EmbeddingClassifier":
        _build_classifier(npz, metadata, estimator, dtype, d)
    return estimator


def _build_classifier(npz, metadata, clf, dtype, d):
    classes = _read(npz, "classes_")
    if classes.ndim != 1 or classes.dtype.kind not in _LABEL_KINDS or classes.dtype.byteorder == ">":
        raise _Invalid(
            f"classes_ must be a 1-d array of numbers, booleans or strings, got "
            f"dtype {classes.dtype} and shape {classes.shape}"
        )
    if classes.size < 2 or not np.array_equal(np.unique(classes), classes):
        raise _Invalid("classes_ must hold at least 2 distinct labels, sorted")
    form = metadata.get("classes_form")
    if form == "object_str" and classes.dtype.kind == "U":
        classes = np.array(classes.tolist(), dtype=object)
    elif form != "array":
        raise _Invalid(f"classes_form {form!r:.50} is unknown")
    n_out = 1 if classes.size == 2 else classes.size
    coef = _float_array(npz, "coef_", dtype, 2)
    intercept = _float_array(npz, "intercept_", dtype, 1)
    if coef.shape != (n_out, d):
        raise _Invalid(
            f"coef_ has shape {coef.shape} but {classes.size} classes and embeddings "
            f"of width {d} need {(n_out, d)}"
        )
    if intercept.shape != (n_out,):
        raise _Invalid(
            f"intercept_ has shape {intercept.shape} but {classes.size} classes need {(n_out,)}"
        )
    attributes = metadata["attributes"]
    n_iter = attributes["n_iter_"]
    if not _is_int(n_iter) or n_iter < 0:
        raise _Invalid(f"n_iter_ = {n_iter!r} is not a non-negative int")
    curves = {}
    for attr in ("loss_curve_", "validation_scores_"):
        values = attributes[attr]
        if not isinstance(values, list) or not all(_is_number(v) for v in values):
            raise _Invalid(f"{attr} must be a list of numbers")
        curves[attr] = [float(v) for v in values]

    clf.classes_ = classes
    clf.coef_ = coef
    clf.intercept_ = intercept
    clf.n_iter_ = n_iter
    clf.loss_curve_ = curves["loss_curve_"]
    clf.validation_scores_ = curves["validation_scores_"]
    clf._rng = _decode_rng(npz, metadata.get("rng"), clf.random_state)


def _decode_rng(npz, state, random_state):
    """The classifier's RandomState as saved, or a fresh one from random_state."""
    if state is None:
        if "rng_state_keys" in npz.files:
            raise _Invalid("rng_state_keys is stored without its rng metadata")
        return np.random.RandomState(random_state)
    keys = _read(npz, "rng_state_keys")
    if keys.dtype != np.uint32 or keys.shape != (_MT_KEY_LENGTH,):
        raise _Invalid(f"rng_state_keys must be {_MT_KEY_LENGTH} uint32 values")
    if not isinstance(state, dict) or not (
        _is_int(state.get("pos")) and _is_int(state.get("has_gauss"))
        and _is_number(state.get("cached_gaussian"))
    ):
        raise _Invalid("the rng metadata is malformed")
    rng = np.random.RandomState()
    try:
        rng.set_state(
            ("MT19937", keys, state["pos"], state["has_gauss"], state["cached_gaussian"])
        )
    except (ValueError, TypeError, OverflowError) as exc:
        raise _Invalid(f"the rng state is invalid ({exc})") from exc
    return rng


def _decode_params(metadata, defaults):
    """The stored parameters, back in their Python forms; unknown names raise."""
    params, forms = metadata["params"], metadata["param_forms"]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise _Invalid(
            f"it has parameters {unknown} that {metadata['estimator']} does not have "
            f"(written by sparsebed {metadata.get('sparsebed_version')!r})"
        )
    out = dict(params)
    if not isinstance(params.get("init", "normal"), str):
        raise _Invalid("init must be stored as a string")
    dtype = params.get("dtype", "float32")
    if dtype not in _FLOAT_DTYPES:
        raise _Invalid(f"dtype {dtype!r:.50} is not float32 or float64")
    form = forms.get("dtype", "type")
    if form == "type":
        out["dtype"] = _FLOAT_DTYPES[dtype]
    elif form == "dtype":
        out["dtype"] = np.dtype(dtype)
    elif form == "str":
        out["dtype"] = dtype
    else:
        raise _Invalid(f"the dtype form {form!r:.50} is unknown")
    if forms.get("class_weight") == "pairs":
        pairs = params.get("class_weight")
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and _is_number(p[1]) for p in pairs
        ):
            raise _Invalid("class_weight is not a list of [label, weight] pairs")
        out["class_weight"] = {_hashable(k): v for k, v in pairs}
    return out


def _hashable(label):
    if isinstance(label, (list, dict)):
        raise _Invalid("a class_weight label is not a number or a string")
    return label


def _float_array(npz, key, dtype, ndim):
    array = _read(npz, key)
    if array.dtype != dtype or array.ndim != ndim:
        raise _Invalid(
            f"{key} must be a {ndim}-d array of {dtype}, got dtype {array.dtype} "
            f"and shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise _Invalid(f"{key} holds NaN or infinite values")
    return aligned_array(array, dtype)  # a writable copy on a cache line, as fit makes them


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
