"""The one detector API every method shares (scikit-learn style).

``fit(x, y=None) -> self`` learns from in-distribution data only; ``score(x) -> np.ndarray (N,)`` returns
one energy-like score per sample, **higher = more OOD**. Learned attributes end in ``_``. Inputs may be
numpy arrays, torch tensors or an iterable of batches ``x`` / ``(x, y)`` such as a torch DataLoader
(:mod:`ebm_ood.plumbing.inputs`); scoring is batched and runs on ``self.device``.

Why higher = more OOD: for the energy-based detectors a score is an energy, ``E(x) = -log p(x) + const``
(the constant, ``log Z``, is the same for every x), so a large score means a low density under the ID
model. Scores that are not energies (MSP, MaxLogit, ODIN, KNN distance, Mahalanobis distance, …) follow
the same orientation.

scikit-learn conventions: ``get_params`` / ``set_params`` (so ``sklearn.base.clone`` gives an unfitted copy
with equal settings), ``repr`` lists the non-default settings, ``inspect.signature(cls)`` and ``help(cls)``
show the constructor's parameters, the tags make ``sklearn.base.is_outlier_detector`` true, and
``score_samples(x) = -score(x)`` is scikit-learn's sign (higher = more normal). ``set_threshold(x_id,
tpr=0.95)`` then ``predict(x)`` flag OOD samples as booleans (True = OOD; scikit-learn's outlier detectors
return -1 / +1 instead).
"""
from __future__ import annotations

import inspect

import numpy as np
import torch

from ebm_ood.plumbing.errors import DivergenceError, NonFiniteError, NotFittedError
from ebm_ood.plumbing.checks import check_array, check_int, check_labels, resolve_device
from ebm_ood.plumbing.inputs import collect, is_batch_iterable, iter_batches, warn_order
from ebm_ood.plumbing.threads import library_threads


class Detector:
    """Base class. Subclasses implement ``_fit(x, y)`` and ``_score(x)`` on validated numpy arrays.

    ``input_shape`` (without the batch dimension) is recorded at fit time and checked at score time.
    ``score`` is "higher = more OOD"; for the energy-based detectors it is an energy, ``-log p(x)`` up to
    a constant, and every other score (MSP, KNN distance, ...) follows the same orientation (README,
    "Your own model", says which is which).
    The constructor's arguments are recorded as given (:meth:`get_params`); ``input_kind`` ("features" or
    "logits" for detectors of vectors (N, D), None for raw inputs) and ``backbone_needs`` (what a
    :class:`~ebm_ood.backbone.Backbone` must provide for it) describe what the detector consumes.

    Parameters
    ----------
    device : torch device or None (CPU).
    batch_size : int, samples per scoring batch.

    Needs
    -----
    Subclasses say (``backbone_needs``).

    Example
    -------
    >>> import numpy as np, ebm_ood
    >>> class Norm(ebm_ood.Detector):
    ...     def _fit(self, x, y):
    ...         self.mean_ = x.mean(0)
    ...     def _score(self, x):
    ...         return np.linalg.norm(x - self.mean_, axis=1)
    >>> Norm().fit(np.eye(3)).score(np.eye(3)).round(3)
    array([0.816, 0.816, 0.816])
    """

    name = "detector"
    _estimator_type = "outlier_detector"      # what scikit-learn < 1.6 reads for is_outlier_detector
    needs_labels = False
    input_kind: str | None = None
    backbone_needs: tuple[str, ...] = ("features",)

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        try:   # the settings as passed (before any conversion), for get_params / clone / repr / save
            bound = inspect.signature(cls.__init__).bind(obj, *args, **kwargs)
        except TypeError:   # unpickling / copying call __new__ without arguments; __dict__ follows
            return obj
        bound.apply_defaults()
        obj._params = _flatten(bound.arguments, cls)
        return obj

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__signature__ = _init_signature(cls)   # what inspect.signature(cls) and help(cls) show

    def __init__(self, device=None, batch_size: int = 512):
        self.device = resolve_device(device)
        self.batch_size = check_int(batch_size, "batch_size")

    # ----------------------------------------------------------------------------- public API
    def fit(self, x, y=None, validation=None):
        """Learn from ID data. ``validation`` = ``(x_val, y_val)`` (or ``x_val``) is ID validation data
        for model selection; methods that need it and get none hold out 10 % of ``x`` themselves.
        ``x`` may be an iterable of batches ``x_b`` or ``(x_b, y_b)`` (a DataLoader): its labels are ``y``.
        Memory: a detector of raw inputs trains on all of ``x`` and ``x_val`` at once, so an iterable is
        gathered into one array (N × the sample size × 4 bytes each); :class:`FeatureSpaceDetector` streams
        both through its backbone and holds only their features."""
        x, y = collect(x, "x", y)
        self._check_kind(x)
        x = check_array(x, "x", ndim=(2, 3, 4))
        input_range = max(abs(float(x.min())), abs(float(x.max()))) if x.size else 0.0
        y = self._record_fit_data(x.shape, y, validation, input_range)
        try:
            with library_threads():
                self._fit(x, y)
        except NonFiniteError as err:  # x itself is finite: an intermediate value overflowed
            mags = _magnitudes(x)
            i = int(np.argmax(mags))
            raise NonFiniteError(
                f"x: fitting {self.name} produced non-finite intermediate values ({err}); the largest input is "
                f"sample {i} with |x| = {mags[i]:.3g}: values this large overflow float32 arithmetic; "
                "rescale or standardize the data") from err
        except DivergenceError as err:  # name an outlier that float32 training cannot digest
            mags = _magnitudes(x)
            i, typical = int(np.argmax(mags)), float(np.median(mags))
            if mags[i] <= 1e6 * max(typical, np.finfo(np.float32).tiny):
                raise
            raise DivergenceError(err.method, err.step, f"{err.reason}; sample {i} of x reaches |x| = {mags[i]:.3g}, "
                                  f"far beyond the typical sample's {typical:.3g}: rescale the data or remove it",
                                  err.last_finite) from err
        if "threshold_" in self.__dict__:        # a subclass's learned state must not pose as predict's threshold
            raise RuntimeError(f"{type(self).__name__}._fit set threshold_, which set_threshold owns; rename it")
        self.fitted_ = True
        return self

    def _record_fit_data(self, shape: tuple, y, validation, input_range: float):
        """Check the labels of ``shape[0]`` training samples and record what :meth:`score` and the error
        messages use: ``input_shape_``, ``num_classes_``, ``validation_``, ``input_range_``; from then on the
        detector counts as unfitted, without a threshold, until the fit ends. Returns ``y`` checked (or None)."""
        if y is None and self.needs_labels:
            raise ValueError(f"{self.name}: fit needs class labels y (got y=None)")
        if y is not None:
            y = check_labels(y, "y", shape[0])
            if self.needs_labels and len(np.unique(y)) < 2:
                raise ValueError(f"{self.name}: y must contain at least 2 classes, got only class {int(y[0])}")
            self.num_classes_ = int(y.max()) + 1
        self.input_shape_ = tuple(shape[1:])
        self.validation_ = self._check_validation(validation, y is not None)
        self.input_range_ = input_range
        self.fitted_ = False                     # the data is valid: the old fit and its threshold are gone
        for stale in ("threshold_", "threshold_tpr_"):
            self.__dict__.pop(stale, None)
        return y

    def _check_validation(self, validation, with_labels: bool):
        if validation is None:
            return None
        if isinstance(validation, (tuple, list)):
            x_val, y_val = validation
            x_val, y_val = collect(x_val, "validation x", y_val, "validation y")
        else:
            x_val, y_val = collect(validation, "validation x")
        x_val = check_array(x_val, "validation x", shape=self.input_shape_)
        if y_val is not None and with_labels:
            y_val = check_labels(y_val, "validation y", x_val.shape[0], getattr(self, "num_classes_", None))
        else:
            y_val = None
        return x_val, y_val

    def split_validation(self, x: np.ndarray, y: np.ndarray | None, seed: int = 0, fraction: float = 0.1):
        """``(x_train, y_train, x_val, y_val)``: the given validation data, else a held-out ``fraction``."""
        if self.validation_ is not None:
            return x, y, self.validation_[0], self.validation_[1]
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"x: {self.name} holds out part of x for model selection when no validation data is "
                             f"given, so it needs at least 2 samples, got {n}; pass validation=(x_val, y_val)")
        n_val = max(1, int(round(fraction * n)))
        perm = np.random.default_rng(seed).permutation(n)
        va, tr = perm[:n_val], perm[n_val:]
        sel = lambda a, i: None if a is None else a[i]
        return x[tr], sel(y, tr), x[va], sel(y, va)

    def score(self, x) -> np.ndarray:
        """One score per sample of ``x`` (array, tensor or iterable of batches), (N,) float64, higher =
        more OOD (for the energy-based detectors an energy: ``-log p(x)`` up to a constant). An iterable is
        scored batch by batch, never gathered whole, in the order it yields; a DataLoader that shuffles,
        subsamples or drops samples warns (:class:`~ebm_ood.plumbing.inputs.UnorderedScoresWarning`)."""
        self.check_fitted()
        if is_batch_iterable(x):
            warn_order(x, "x")
            return np.concatenate([self._score_array(xb, f"x batch {i}")
                                   for i, (xb, _) in enumerate(iter_batches(x, "x"))])
        return self._score_array(x, "x")

    def _score_array(self, x, name: str) -> np.ndarray:
        self._check_kind(x)
        x = check_array(x, name, ndim=len(self.input_shape_) + 1, allow_empty=True)
        if tuple(x.shape[1:]) != self.input_shape_:
            raise ValueError(f"{name}: expected samples of shape {self.input_shape_} (as in fit), "
                             f"got {tuple(x.shape[1:])}")
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        try:
            with library_threads():
                out = np.asarray(self._score(x), dtype=np.float64).reshape(-1)
        except NonFiniteError as err:  # x itself is finite: an intermediate value overflowed
            raise self._nonfinite_error(x, None, name) from err
        if out.shape[0] != x.shape[0]:
            raise RuntimeError(f"{self.name}: produced {out.shape[0]} scores for {x.shape[0]} samples")
        if not np.isfinite(out).all():
            raise self._nonfinite_error(x, int(np.flatnonzero(~np.isfinite(out))[0]), name)
        return out

    def score_samples(self, x) -> np.ndarray:
        """scikit-learn's outlier score, ``-score(x)`` (N,): higher = more normal (ID)."""
        return -self.score(x)

    def _fails(self, x: np.ndarray) -> bool:
        try:
            return not np.isfinite(np.asarray(self._score(x), dtype=np.float64)).all()
        except NonFiniteError:
            return True

    def _nonfinite_error(self, x: np.ndarray, bad: int | None, name: str = "x") -> NonFiniteError:
        """The error for finite inputs whose score is not finite, naming the first such sample (found by
        bisection when the whole batch failed at once) and comparing its range with the fit data's."""
        mags = _magnitudes(x)
        if bad is None:
            lo, hi = 0, x.shape[0]
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if self._fails(x[lo:mid]) else (mid, hi)
            bad = lo if self._fails(x[lo:lo + 1]) else None
        fit_range = getattr(self, "input_range_", float("nan"))
        if bad is None:
            i = int(np.argmax(mags))
            return NonFiniteError(
                f"{name}: {self.name} computed non-finite values for this batch (no single sample alone causes it); "
                f"the largest input is sample {i} with |x| = {mags[i]:.3g} (fit data: |x| <= {fit_range:.3g}); "
                "rescale or clip inputs to the data's range")
        where = f"{name}: sample {bad} has a non-finite {self.name} score: its values reach |x| = {mags[bad]:.3g}"
        if mags[bad] > 1e3 * max(fit_range, 1.0):
            return NonFiniteError(f"{where}, far outside the fit data's range (|x| <= {fit_range:.3g}), so the "
                                  "detector's float32 arithmetic overflows; rescale or clip inputs to the data's range")
        return NonFiniteError(f"{where}, within the fit data's range (|x| <= {fit_range:.3g}): a numerical "
                              "failure of the detector on this sample")

    def _fitted_mismatch(self) -> str | None:
        """For :func:`ebm_ood.load`: how the learned attributes disagree with each other or with the settings
        (cheap checks only), or None. Subclasses whose learned state has such constraints override it."""
        return None

    def _probe_fitted(self) -> np.ndarray | None:
        """For :func:`ebm_ood.load`: the scores (2,) of a batch of two all-zero samples of ``input_shape_``;
        learned arrays whose shapes disagree fail here."""
        with library_threads():
            return np.asarray(self._score(np.zeros((2, *self.input_shape_), np.float32))).reshape(-1)

    def check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise NotFittedError(f"{self.name} is not fitted yet: call fit(x, y) before score(x)")

    def _check_kind(self, x) -> None:
        """A detector of vectors handed raw inputs (ndim > 2) says how to put a network in front of it."""
        ndim = getattr(x, "ndim", None)
        if self.input_kind is None or ndim is None or ndim <= 2:
            return
        which = ', which="logits"' if self.input_kind == "logits" else ""
        raise ValueError(
            f"x: {self.name} works on {self.input_kind} of shape (N, D), got raw inputs of shape "
            f"{tuple(x.shape)}; wrap it as ebm_ood.backbone.FeatureSpaceDetector(backbone, "
            f"{type(self).__name__}(...){which}) with backbone = ebm_ood.backbone.Backbone(your_model)")

    # ----------------------------------------------------------------------------- thresholding
    def set_threshold(self, x_id, tpr: float = 0.95) -> "Detector":
        """Fix the threshold of :meth:`predict` on ID data ``x_id`` (held out from fit: training scores are
        optimistic): ``t = np.quantile(score(x_id), tpr)`` (linear interpolation), so about a fraction ``tpr``
        of ID samples has ``score <= t`` and is kept as ID: the FPR95 convention of
        :func:`ebm_ood.metrics.fpr_at_tpr`."""
        if isinstance(tpr, bool) or not isinstance(tpr, (int, float, np.floating)) or not 0.0 < tpr <= 1.0:
            raise ValueError(f"tpr: expected a fraction in (0, 1], got {tpr!r}")
        scores = self.score(x_id)
        if scores.size == 0:
            raise ValueError("x_id: expected at least one ID sample to set the threshold, got none")
        self.threshold_ = float(np.quantile(scores, tpr))
        self.threshold_tpr_ = float(tpr)
        return self

    def predict(self, x) -> np.ndarray:
        """Boolean OOD flags (N,): ``score(x) > threshold_`` (set by :meth:`set_threshold`)."""
        self.check_fitted()
        if not hasattr(self, "threshold_"):
            raise NotFittedError(f"{self.name} has no threshold yet: call set_threshold(x_id, tpr=0.95) with "
                                 "held-out ID data before predict(x)")
        return self.score(x) > self.threshold_

    # ----------------------------------------------------------------------------- scikit-learn conventions
    def get_params(self, deep: bool = True) -> dict:
        """The constructor's arguments as given (``deep``: also ``<name>__<param>`` of nested detectors)."""
        params = dict(getattr(self, "_params", {}))
        if deep:
            for k, v in list(params.items()):
                if isinstance(v, Detector):
                    params.update({f"{k}__{kk}": vv for kk, vv in v.get_params(deep=True).items()})
        return params

    def set_params(self, **params) -> "Detector":
        """Change settings (nested: ``inner__k=10``); rebuilds the detector, which must then be refitted."""
        current = dict(getattr(self, "_params", {}))
        nested: dict[str, dict] = {}
        for key, value in params.items():
            head, _, rest = key.partition("__")
            if head not in current and not self._accepts_any_keyword():
                raise ValueError(f"{key}: not a setting of {type(self).__name__}; valid: {sorted(current)}")
            if rest:
                nested.setdefault(head, {})[rest] = value
            else:
                current[head] = value
        for head, sub in nested.items():
            if not isinstance(current.get(head), Detector):
                raise ValueError(f"{head}: {type(self).__name__}.{head} is not a detector, so it has no {sorted(sub)}")
            current[head].set_params(**sub)
        for k in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            delattr(self, k)                 # learned state no longer matches the settings
        self.__init__(**current)
        self._params = current
        return self

    def __sklearn_tags__(self):
        """scikit-learn (>= 1.6) estimator tags: an outlier detector, fitted before use; needs labels
        when :attr:`needs_labels`."""
        from sklearn.utils import InputTags, Tags, TargetTags
        return Tags(estimator_type="outlier_detector", target_tags=TargetTags(required=self.needs_labels),
                    input_tags=InputTags(two_d_array=True, three_d_array=self.input_kind is None),
                    requires_fit=True)

    @classmethod
    def _accepts_any_keyword(cls) -> bool:
        return any(p.kind == p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())

    def __repr__(self) -> str:
        params = getattr(self, "_params", {})
        sig = inspect.signature(type(self).__init__).parameters
        shown = [f"{k}={_short(v)}" for k, v in params.items()
                 if not (k in sig and _same(v, sig[k].default))]
        return f"{type(self).__name__}({', '.join(shown)})"

    # ----------------------------------------------------------------------------- helpers
    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def batches(self, x: np.ndarray):
        """Yield float32 tensors on ``self.device`` of at most ``batch_size`` samples."""
        for i in range(0, x.shape[0], self.batch_size):
            yield torch.as_tensor(np.ascontiguousarray(x[i : i + self.batch_size]), dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def map_batches(self, fn, x: np.ndarray) -> np.ndarray:
        """Apply ``fn: Tensor (B, ...) -> Tensor (B,)`` batch by batch and concatenate as numpy float64."""
        return np.concatenate([fn(b).detach().double().cpu().numpy() for b in self.batches(x)])


def _init_signature(cls) -> inspect.Signature | None:
    """``cls.__init__``'s signature without ``self``: the class's call signature (``__new__`` only records
    the arguments)."""
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):   # an __init__ without introspectable parameters: nothing better to show
        return None
    return sig.replace(parameters=list(sig.parameters.values())[1:])


def _flatten(arguments: dict, cls) -> dict:
    """Bound constructor arguments with ``**overrides`` spread out as keywords."""
    out, params = {}, inspect.signature(cls.__init__).parameters
    for k, v in arguments.items():
        if k == "self":
            continue
        kind = params[k].kind
        if kind == inspect.Parameter.VAR_KEYWORD:
            out.update(v)
        elif kind != inspect.Parameter.VAR_POSITIONAL:
            out[k] = v
    return out


def _same(value, default) -> bool:
    if value is default:
        return True
    if isinstance(value, (np.ndarray, torch.Tensor, torch.nn.Module)) or default is inspect.Parameter.empty:
        return False
    try:
        return bool(value == default) and type(value) is type(default)
    except (TypeError, ValueError, RuntimeError):
        return False


def _short(value) -> str:
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return f"<array {tuple(value.shape)}>"
    if isinstance(value, torch.nn.Module) and not isinstance(value, Detector):
        return f"<{type(value).__name__}>"
    return repr(value)


def _magnitudes(x: np.ndarray) -> np.ndarray:
    """``max |x_n|`` per sample (N,), in float64."""
    flat = x.reshape(x.shape[0], -1)
    return np.maximum(np.abs(flat.max(1).astype(np.float64)), np.abs(flat.min(1).astype(np.float64)))


Detector.__signature__ = _init_signature(Detector)
