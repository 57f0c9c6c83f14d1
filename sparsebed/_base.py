"""What both estimators share: input checks, the embedding table and ``transform``."""
import warnings
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._config import _n_threads
from ._ops import (
    COMBINERS,
    FLOAT_DTYPES,
    aligned_array,
    check_structure,
    check_vectors,
    csr_arrays,
    is_float_csr,
    sum_rows,
    to_csr,
)

DEFAULT_N_COMPONENTS = 64

# A dense X with more entries than this is worth a warning: it is converted
# to CSR on every call, and a sparse matrix would skip that copy.
LARGE_DENSE = 10_000_000

# Parameters of the embedding table, shared by both estimators.
TABLE_CONSTRAINTS = {
    "n_components": [Interval(Integral, 1, None, closed="left"), None],
    "combiner": [StrOptions(set(COMBINERS))],
    "init": [StrOptions({"normal"}), "array-like"],
    "dtype": [type, str, np.dtype],
    "n_jobs": [Integral, None],
}


class EmbeddingTableMixin(ClassNamePrefixFeaturesOutMixin, TransformerMixin):
    """An embedding table ``embeddings_`` over the columns of a sparse ``X``.

    Subclasses call :meth:`_check_X` on every input and
    :meth:`_initial_embeddings` in ``fit``; ``transform``,
    ``fit_transform``, ``get_feature_names_out`` and ``set_output`` are shared.
    """

    def _check_X(self, X, y=None, *, reset, scan=True):
        """Validate ``X`` (and ``y``) and return ``(data, indices, indptr), y``.

        ``reset=True`` records ``n_features_in_`` (fit); ``reset=False``
        checks ``X`` against it and accepts 0 rows (transform, predict).
        ``scan=False`` leaves the check of the indices to the forward kernel
        (see :func:`csr_arrays`).
        """
        if (
            not reset and y is None and is_float_csr(X)
            and X.shape[1] == getattr(self, "n_features_in_", None)
            and not hasattr(self, "feature_names_in_")
        ):  # fmt: skip
            # What validate_data would hand back unchanged, with nothing to
            # warn about: skipping it makes a small batch several times faster.
            return csr_arrays(X, self.n_features_in_, self.combiner, scan=scan), None
        shape = getattr(X, "shape", ())
        if not sp.issparse(X) and len(shape) == 2 and shape[0] * shape[1] > LARGE_DENSE:
            warnings.warn(
                f"X is a dense array of {shape[0] * shape[1]:,} entries; it is converted to a "
                "sparse CSR matrix on every call. Pass a scipy.sparse CSR matrix "
                "(e.g. straight from a vectorizer or OneHotEncoder) to save the "
                "time and memory.",
                UserWarning,
                stacklevel=3,
            )
        check_structure(X)
        kwargs = dict(
            accept_sparse="csr",
            dtype=[np.float64, np.float32],
            reset=reset,
            ensure_min_samples=1 if reset else 0,
        )
        if y is None:
            X = validate_data(self, X, **kwargs)
        else:
            X, y = validate_data(self, X, y, **kwargs)
        return csr_arrays(to_csr(X), self.n_features_in_, self.combiner, scan=scan), y

    def _table_dtype(self):
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}.")
        return dtype

    def _initial_embeddings(self, n_features, random_state, scale):
        """The table at the start of ``fit``: a copy of ``init``, or N(0, scale**2 / d)."""
        _n_threads(self.n_jobs)  # an invalid n_jobs fails in fit, not later
        dtype = self._table_dtype()
        if isinstance(self.init, str):
            d = DEFAULT_N_COMPONENTS if self.n_components is None else self.n_components
            W = random_state.standard_normal((n_features, d)) * (scale / np.sqrt(d))
            return aligned_array(W, dtype)
        W = check_vectors(self.init, "init")
        if W.shape[0] != n_features:
            raise ValueError(
                f"init has {W.shape[0]} rows but X has {n_features} features: pass "
                "one pretrained vector per column of X, in the order of the columns."
            )
        if self.n_components is not None and W.shape[1] != self.n_components:
            raise ValueError(
                f"init has {W.shape[1]} columns but n_components={self.n_components}: "
                "leave n_components=None to take it from init."
            )
        return aligned_array(W, dtype)

    def _embed(self, X_arrays):
        data, indices, indptr = X_arrays
        return sum_rows(
            data, indices, indptr, self.embeddings_, self.combiner, _n_threads(self.n_jobs)
        )

    def transform(self, X):
        """Embedding sum of each row of ``X`` with the fitted table.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features_in_)
            CSR is used without a copy; other formats are converted.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components), dtype ``dtype``
            ``combine(sum_k X[i, k] * embeddings_[k])`` for each row ``i``:
            for a fitted classifier, the learned embeddings that its head reads.
        """
        if not hasattr(self, "embeddings_"):  # (check_is_fitted takes 7 us)
            check_is_fitted(self)
        X_arrays, _ = self._check_X(X, reset=False, scan=False)
        return self._embed(X_arrays)

    def nearest_features(self, query, *, feature_names=None, n_neighbors=10):
        """The features whose embeddings are most similar to ``query``'s (cosine).

        Parameters
        ----------
        query : str, int or array-like of shape (n_components,)
            A feature name (looked up in ``feature_names``), a column index
            of ``X``, or a vector in the embedding space.
        feature_names : array-like of str of shape (n_features_in_,), default=None
            Names of the columns of ``X``, for example
            ``vectorizer.get_feature_names_out()``. None uses
            ``feature_names_in_`` when ``fit`` saw named columns, else the
            column indices.
        n_neighbors : int, default=10
            How many features to return; the query feature itself is left out.

        Returns
        -------
        neighbors : list of (name, similarity) tuples
            Most similar first; ``similarity`` is the cosine, a float in [-1, 1].

        Examples
        --------
        >>> import numpy as np
        >>> from sparsebed import SparseEmbedding
        >>> W = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
        >>> emb = SparseEmbedding(init=W).fit(np.eye(3))
        >>> [(name, round(cos, 3)) for name, cos in
        ...  emb.nearest_features("a", feature_names=["a", "b", "c"], n_neighbors=2)]
        [('b', 0.994), ('c', 0.0)]
        """
        check_is_fitted(self)
        if feature_names is None:
            feature_names = getattr(self, "feature_names_in_", np.arange(self.n_features_in_))
        names = np.asarray(feature_names)
        if names.shape != (self.n_features_in_,):
            raise ValueError(
                f"feature_names has {names.size} names for {self.n_features_in_} features."
            )
        W = self.embeddings_.astype(np.float64)
        skip = None
        if isinstance(query, (str, Integral)) and not isinstance(query, bool):
            where = np.flatnonzero(names == query) if isinstance(query, str) else [query]
            if len(where) == 0 or not 0 <= where[0] < self.n_features_in_:
                raise ValueError(f"{query!r} is not a feature of the fitted model.")
            skip = where[0]
            vector = W[skip]
        else:
            vector = np.asarray(query, dtype=np.float64).ravel()
            if vector.shape != (W.shape[1],):
                raise ValueError(
                    f"query has {vector.size} values; a vector query needs {W.shape[1]}."
                )
        norms = np.linalg.norm(W, axis=1) * np.linalg.norm(vector)
        similarity = np.divide(W @ vector, norms, out=np.zeros(len(W)), where=norms > 0)
        if skip is not None:
            similarity[skip] = -np.inf
        top = np.argsort(-similarity, kind="stable")[:n_neighbors]
        names = names.tolist()
        return [(names[i], float(similarity[i])) for i in top if np.isfinite(similarity[i])]

    @property
    def _n_features_out(self):
        return self.embeddings_.shape[1]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = [np.dtype(self.dtype).name]
        return tags
