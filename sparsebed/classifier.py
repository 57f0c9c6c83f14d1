"""EmbeddingClassifier: an embedding table and a logistic head, trained together by SGD."""
import time
from numbers import Integral, Real

import numpy as np
from scipy.special import expit, log_expit, log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, compute_class_weight
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight

from . import _kernels
from ._base import TABLE_CONSTRAINTS, EmbeddingTableMixin
from ._config import _n_threads
from ._ops import aligned_array

# Standard deviation, times 1/sqrt(n_components), of the random starting table.
INIT_SCALE = 0.3

# Samples per mini-batch with deterministic=True: small enough that a batch's
# summed steps on the shared head stay as stable as one-by-one SGD.
DETERMINISTIC_BATCH = 8


class _Progress:
    """Reports epochs: a line each (verbose=1) or a tqdm bar (verbose>=2, if installed)."""

    def __init__(self, verbose, epochs):
        self.verbose, self.bar = verbose, None
        if verbose >= 2:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=epochs, unit="epoch")

    def report(self, line):
        if self.bar is not None:
            self.bar.set_postfix_str(line, refresh=False)
            self.bar.update()  # epochs are slow: each one redraws the bar
        elif self.verbose:
            print(line, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class EmbeddingClassifier(EmbeddingTableMixin, ClassifierMixin, BaseEstimator):
    """Embedding table and logistic-regression head, trained jointly by SGD.

    The model of fastText's supervised mode, for any sparse features: a
    sample ``x`` (a row of a CSR matrix) is embedded as
    ``h = combine(sum_k x_k * embeddings_[k])``, and its class scores are
    ``coef_ @ h + intercept_``, with a logistic loss for two classes and a
    softmax (multinomial) loss for more. SGD updates the head and only the
    rows of the table that the sample names. After ``fit``, ``transform``
    gives the learned embedding sums, so the model is also a supervised
    encoder step in a Pipeline.

    Parameters
    ----------
    n_components : int, default=None
        Dimension of the embeddings. None means 64, or the width of ``init``
        when vectors are given.
    combiner : {"sum", "mean", "sqrtn"}, default="sqrtn"
        How a sample's weighted sum is scaled: ``"sum"`` leaves it,
        ``"mean"`` divides by the sum of the sample's values (fastText's
        average of word vectors, for counts), ``"sqrtn"`` by the square root
        of the sum of their squares. Samples with a zero divisor give zeros.
        ``"sqrtn"`` makes the embedding independent of the scale of a row, so
        one step size suits counts, one-hot codes and TF-IDF alike (for
        L2-normalised TF-IDF rows it equals ``"sum"``).
    max_iter : int, default=10
        Number of epochs (passes over the training data).
    learning_rate : {"linear", "constant"}, default="linear"
        Step-size schedule. ``"linear"``: from ``eta0`` down to 0 over
        ``max_iter`` epochs, as fastText does. ``"constant"``: ``eta0``
        throughout. ``partial_fit`` always uses ``eta0``.
    eta0 : float, default=0.5
        Initial step size.
    alpha : float, default=2e-4
        L2 penalty on the table and ``coef_`` (not ``intercept_``), as in
        :class:`~sklearn.linear_model.SGDClassifier`. Applied lazily: a step
        touches only the rows of the table that its sample names.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, multiplied into ``sample_weight``.
        ``"balanced"`` uses ``n_samples / (n_classes * np.bincount(y))``.
    shuffle : bool, default=True
        Visit the samples in a new random order each epoch.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified) and
        stop when its accuracy has not improved by ``tol`` for
        ``n_iter_no_change`` epochs. Otherwise the training loss is watched.
    validation_fraction : float, default=0.1
        Share of the training data held out with ``early_stopping``.
    n_iter_no_change : int, default=5
        Epochs without improvement before stopping.
    tol : float or None, default=1e-4
        Least improvement that counts; None never stops before ``max_iter``.
    init : "normal" or array-like of shape (n_features, n_components), default="normal"
        Starting table. ``"normal"`` draws N(0, 0.09 / n_components); an array
        gives pretrained vectors, one per column of ``X`` (it is copied).
    freeze_embeddings : bool, default=False
        Keep the table fixed and train the head only (for pretrained vectors).
    deterministic : bool, default=False
        Make training with several threads reproducible. False: with
        ``n_jobs=1`` SGD takes the samples one by one (reproducible bit for
        bit); with more threads they update the shared parameters without
        locks (Hogwild!, as fastText and LightFM do), which is fast but never
        gives the same model twice. True: SGD takes mini-batches of 8
        samples, whose gradients the threads compute at the parameters of the
        batch's start and whose steps they then apply in the order of the
        samples, each thread owning a share of the rows. A fit with a fixed
        ``random_state`` then gives the same model bit for bit, run after run
        and for every ``n_jobs``. Its threads meet twice per batch: close to
        the lock-free speed when they have the cores to themselves. When
        threads keep arriving late (another busy process holding their
        cores), the first thread works on alone for a while, which changes
        no result.
    warm_start : bool, default=False
        Start ``fit`` from the current table and head instead of a new one.
    dtype : {np.float32, np.float64}, default=np.float32
        dtype of the table, the head and the training arithmetic.
    n_jobs : int, default=None
        Threads: None means 1, -1 all the threads OpenMP may use (capped by
        ``OMP_NUM_THREADS`` and ``threadpoolctl`` limits). See
        ``deterministic`` for what a fit with several threads reproduces.
        Prediction gives the same result for every value.
    random_state : int, RandomState instance or None, default=None
        Seeds the starting table, the epoch orders and the validation split.
    verbose : int, default=0
        1: print one line per epoch (loss, validation accuracy, time,
        tokens/s). 2 or more: show those in a progress bar instead, when
        ``tqdm`` is installed.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    embeddings_ : ndarray of shape (n_features_in_, n_components)
        The learned table.
    coef_ : ndarray of shape (1, n_components) or (n_classes, n_components)
        Weights of the head: one row for two classes (for ``classes_[1]``),
        one row per class otherwise.
    intercept_ : ndarray of shape (1,) or (n_classes,)
        Intercepts of the head.
    n_iter_ : int
        Epochs run by the last ``fit``, or in total by ``partial_fit``.
    loss_curve_ : list of float
        Mean weighted training loss of each of those epochs, taken as it went.
    validation_scores_ : list of float
        Validation accuracy after each epoch of the last ``fit``, with
        ``early_stopping``.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen in ``fit``, when ``X`` had string column names.

    See Also
    --------
    SparseEmbedding : the embedding sum with a fixed table.
    sklearn.linear_model.SGDClassifier : a linear model on the sparse features.

    Examples
    --------
    >>> from sklearn.feature_extraction.text import TfidfVectorizer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sparsebed import EmbeddingClassifier
    >>> docs = ["cheap pills now", "meeting at noon", "cheap watches now", "lunch at noon"]
    >>> labels = ["spam", "ham", "spam", "ham"]
    >>> clf = make_pipeline(TfidfVectorizer(), EmbeddingClassifier(max_iter=50, random_state=0))
    >>> clf.fit(docs, labels).predict(["cheap pills", "noon meeting"]).tolist()
    ['spam', 'ham']
    """

    _parameter_constraints = {
        **TABLE_CONSTRAINTS,
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"linear", "constant"})],
        "eta0": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "shuffle": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "freeze_embeddings": ["boolean"],
        "deterministic": ["boolean"],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_components=None,
        *,
        combiner="sqrtn",
        max_iter=10,
        learning_rate="linear",
        eta0=0.5,
        alpha=2e-4,
        class_weight=None,
        shuffle=True,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        tol=1e-4,
        init="normal",
        freeze_embeddings=False,
        deterministic=False,
        warm_start=False,
        dtype=np.float32,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.combiner = combiner
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.alpha = alpha
        self.class_weight = class_weight
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.init = init
        self.freeze_embeddings = freeze_embeddings
        self.deterministic = deterministic
        self.warm_start = warm_start
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit

    def fit(self, X, y, sample_weight=None):
        """Train the table and the head on ``X, y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training bags. CSR with float32 or float64 values and int32 or
            int64 indices is used without a copy; other input is converted.
        y : array-like of shape (n_samples,)
            Class labels: strings, integers or booleans, two or more classes.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample's loss. Weights are relative:
            the loss minimised is the weighted mean over the samples (plus
            the penalty), so multiplying all weights by a constant changes
            nothing.

        Returns
        -------
        self : EmbeddingClassifier
        """
        self._validate_params()
        reuse = self.warm_start and hasattr(self, "classes_")
        X_arrays, y = self._check_X(X, y, reset=not reuse)
        check_classification_targets(y)
        classes = np.unique(y)
        if reuse and not np.array_equal(classes, self.classes_):
            raise ValueError(
                f"warm_start fit got classes {classes.tolist()} but the model was "
                f"fitted on {self.classes_.tolist()}: use warm_start=False to refit."
            )
        if classes.size < 2:
            raise ValueError(
                f"EmbeddingClassifier needs at least 2 classes, but y holds 1 class: "
                f"{classes.tolist()}."
            )
        sample_weight = self._sample_weight(sample_weight, y, classes, balanced_ok=True)
        if reuse:
            self.n_iter_, self.loss_curve_, self.validation_scores_ = 0, [], []
        else:
            self._init_model(classes)
        self._train(
            X_arrays,
            self._encode(y, self.classes_),
            sample_weight,
            epochs=self.max_iter,
            schedule=self.learning_rate,
        )
        return self

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Run one epoch of SGD on ``X, y`` at the step size ``eta0``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            A batch of training bags.
        y : array-like of shape (n_samples,)
            Their class labels.
        classes : array-like of shape (n_classes,), default=None
            All the classes that will ever be seen. Required on the first
            call, ignored afterwards.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample's loss.

        Returns
        -------
        self : EmbeddingClassifier
        """
        self._validate_params()
        first = not hasattr(self, "classes_")
        if first:
            if classes is None:
                raise ValueError(
                    "classes must be passed on the first call to partial_fit: "
                    "the list of every class the model will see."
                )
        X_arrays, y = self._check_X(X, y, reset=first)
        check_classification_targets(y)
        if len(y) == 0:
            raise ValueError("partial_fit got 0 samples; pass a batch with at least one.")
        if first:
            classes = np.unique(np.asarray(classes))
            if classes.dtype.kind == "f" and not np.isfinite(classes).all():
                raise ValueError(f"classes holds NaN or infinity: {classes.tolist()}.")
            if classes.size < 2:
                raise ValueError(f"classes must hold at least 2 labels, got {classes.tolist()}.")
        else:
            classes = self.classes_
        y_encoded = self._encode(y, classes)
        sample_weight = self._sample_weight(sample_weight, y, classes, balanced_ok=False)
        if first:
            self._init_model(classes)
        self._train(X_arrays, y_encoded, sample_weight, epochs=1, schedule="constant")
        return self

    def _init_model(self, classes):
        """New table and a zero head for ``classes``, and an empty history."""
        self.classes_ = classes
        rng = check_random_state(self.random_state)
        self._rng = rng
        self.embeddings_ = self._initial_embeddings(self.n_features_in_, rng, scale=INIT_SCALE)
        n_out = 1 if classes.size == 2 else classes.size
        dtype = self.embeddings_.dtype
        self.coef_ = aligned_array(np.zeros((n_out, self.embeddings_.shape[1])), dtype)
        self.intercept_ = np.zeros(n_out, dtype=dtype)
        self.n_iter_ = 0
        self.loss_curve_ = []
        self.validation_scores_ = []

    @staticmethod
    def _encode(y, classes):
        """Class indices of ``y`` in the sorted ``classes``, as int32."""
        unseen = ~np.isin(y, classes)
        if unseen.any():
            raise ValueError(
                f"y holds labels {np.unique(np.asarray(y)[unseen]).tolist()} that are "
                f"not among the model's classes {classes.tolist()}; pass every "
                "class in `classes` on the first call to partial_fit."
            )
        return np.searchsorted(classes, y).astype(np.int32)

    def _sample_weight(self, sample_weight, y, classes, balanced_ok):
        """Checked sample weights times class weights, scaled to mean 1."""
        sw = _check_sample_weight(
            sample_weight, np.empty((len(y), 0)), dtype=np.float64, ensure_non_negative=True
        )
        if self.class_weight is not None:
            if self.class_weight == "balanced" and not balanced_ok:
                raise ValueError(
                    "class_weight='balanced' needs all of y at once: use fit, or pass "
                    "a dict of class weights for partial_fit."
                )
            weights = compute_class_weight(self.class_weight, classes=classes, y=y)
            if not (np.isfinite(weights).all() and (weights >= 0).all()):
                raise ValueError(
                    f"class_weight must give finite, non-negative weights; got "
                    f"{dict(zip(classes.tolist(), weights.tolist()))}."
                )
            sw = sw * weights[self._encode(y, classes)]
        if not sw.max(initial=0) > 0:
            raise ValueError("Sample weights must contain at least one non-zero number.")
        # The objective is the weighted mean of the losses: weights are
        # relative, and scaling them to mean 1 keeps the step sizes of eta0
        # (divided by the largest first, so that no sum overflows).
        sw = sw / sw.max()
        return sw / sw.sum() * len(sw)

    def _train(self, X_arrays, y_enc, sample_weight, *, epochs, schedule):
        """Run SGD epochs on the model's parameters, recording the history."""
        train, val = np.arange(len(y_enc), dtype=np.int64), None
        if self.early_stopping and epochs > 1:
            train, val = self._validation_split(y_enc, self._rng)
        progress_report = _Progress(self.verbose, epochs)
        try:
            self._epochs(
                X_arrays, y_enc, sample_weight, train, val, epochs, schedule, progress_report
            )
        finally:
            progress_report.close()

    def _epochs(self, X_arrays, y_enc, sample_weight, train, val, epochs, schedule, report):
        data, indices, indptr = X_arrays
        rng, n_threads = self._rng, _n_threads(self.n_jobs)
        if val is not None:
            X_val, y_val, w_val = self._take_rows(X_arrays, val), y_enc[val], sample_weight[val]
        W, coef, intercept = self.embeddings_, self.coef_, self.intercept_
        stamp = np.zeros(W.shape[0], dtype=np.float64)
        update_W = not self.freeze_embeddings
        combiner = _kernels.COMBINERS[self.combiner]
        train_weight = sample_weight[train].sum()
        nnz_train = int(np.diff(indptr)[train].sum())
        best, stall = None, 0
        for epoch in range(epochs):
            tic = time.perf_counter()
            order = rng.permutation(train) if self.shuffle else train
            if schedule == "linear":
                lr_begin = self.eta0 * (1 - epoch / epochs)
                lr_end = self.eta0 * (1 - (epoch + 1) / epochs)
            else:
                lr_begin = lr_end = self.eta0
            if self.deterministic:
                loss, clock, bad = _kernels.sgd_epoch_batched(
                    data, indices, indptr, y_enc, sample_weight, order,
                    W, coef, intercept, stamp, combiner,
                    lr_begin, lr_end, self.alpha, update_W, DETERMINISTIC_BATCH, n_threads,
                )  # fmt: skip
            else:
                loss, clock, bad = _kernels.sgd_epoch(
                    data, indices, indptr, y_enc, sample_weight, order,
                    W, coef, intercept, stamp, combiner,
                    lr_begin, lr_end, self.alpha, update_W, n_threads,
                )  # fmt: skip
            if self.alpha > 0 and update_W:
                _kernels.apply_decay(W, stamp, clock, n_threads)
            if bad >= 0:  # pragma: no cover - the structure was checked before
                raise ValueError(f"Malformed CSR matrix at row {bad}.")
            loss /= train_weight
            self.n_iter_ += 1
            # A zero head scores log(n_classes) per sample; far above that, or
            # not finite, the steps have overshot (an underflowing decay can
            # also zero the weights while the intercept swings).
            if not (
                loss < 100 * np.log(max(coef.shape[0], 2))
                and np.isfinite(intercept).all()
                and np.isfinite(coef).all()
                and np.isfinite(W).all()
            ):
                raise ValueError(
                    f"Training diverged at epoch {self.n_iter_} (loss {loss}): the "
                    f"parameters overflowed. Use a smaller eta0 than {self.eta0}, or "
                    "scale the features (e.g. TfidfVectorizer, or normalize rows)."
                )
            self.loss_curve_.append(float(loss))
            elapsed = time.perf_counter() - tic
            if val is not None:
                pred = self._scores_to_index(self._scores(self._embed(X_val)))
                score = float(np.average(pred == y_val, weights=w_val)) if w_val.sum() > 0 else 0.0
                self.validation_scores_.append(score)
                progress, better = score, best is None or score > best + (self.tol or 0)
            else:
                progress, better = -loss, best is None or -loss > best + (self.tol or 0)
            line = f"epoch {self.n_iter_}: loss {loss:.5f}"
            if val is not None:
                line += f", validation accuracy {score:.4f}"
            line += f", {elapsed:.2f} s, {nnz_train / max(elapsed, 1e-9) / 1e6:.2f} M tokens/s"
            report.report(line)
            if better:
                best, stall = progress, 0
            else:
                stall += 1
                if self.tol is not None and stall >= self.n_iter_no_change:
                    report.report(
                        f"stopped after {self.n_iter_} epochs: no improvement by "
                        f"tol={self.tol} in {stall} epochs"
                    )
                    break

    def _validation_split(self, y_enc, rng):
        index = np.arange(len(y_enc), dtype=np.int64)
        try:
            train, val = train_test_split(
                index, test_size=self.validation_fraction, stratify=y_enc, random_state=rng
            )
        except ValueError:  # a class too small to stratify
            train, val = train_test_split(
                index, test_size=self.validation_fraction, random_state=rng
            )
        if len(train) == 0 or len(val) == 0:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} leaves an empty "
                "training or validation set; use more samples or early_stopping=False."
            )
        return np.sort(train), np.sort(val)

    @staticmethod
    def _take_rows(X_arrays, rows):
        """The CSR arrays of the given rows of ``X_arrays``."""
        data, indices, indptr = X_arrays
        starts, lengths = indptr[rows], np.diff(indptr)[rows]
        offsets = np.cumsum(lengths) - lengths
        take = np.repeat(starts - offsets, lengths) + np.arange(lengths.sum())
        new_indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(indptr.dtype)
        return data[take], indices[take], new_indptr

    # -------------------------------------------------------------- predict

    def _scores(self, H):
        scores = H @ self.coef_.T + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    @staticmethod
    def _scores_to_index(scores):
        return (scores > 0).astype(np.intp) if scores.ndim == 1 else scores.argmax(axis=1)

    def decision_function(self, X):
        """Class scores of the samples in ``X``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features_in_)

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes), dtype ``dtype``
            For two classes, the score of ``classes_[1]`` (positive means it
            is predicted); otherwise one score per class.
        """
        return self._scores(self.transform(X))

    def predict(self, X):
        """Predicted class of each sample in ``X``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features_in_)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,), dtype of ``classes_``
        """
        index = self._scores_to_index(self.decision_function(X))  # checks it is fitted
        return self.classes_[index]

    def predict_proba(self, X):
        """Class probabilities: the sigmoid (two classes) or softmax of the scores.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features_in_)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), float64
            Columns in the order of ``classes_``; rows sum to 1.
        """
        scores = self.decision_function(X).astype(np.float64)
        if scores.ndim == 1:
            p = expit(scores)
            return np.column_stack([1.0 - p, p])
        return softmax(scores, axis=1)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed without underflow.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features_in_)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes), float64
        """
        scores = self.decision_function(X).astype(np.float64)
        if scores.ndim == 1:
            return np.column_stack([log_expit(-scores), log_expit(scores)])
        return log_softmax(scores, axis=1)
