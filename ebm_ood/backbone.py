"""Feature space of a trained classifier (HEAT §3): penultimate features, average-pooled ``z`` and
std-pooled second-order features, the logits ``head(z)``, memoised per dataset and optionally cached on disk.

:class:`Backbone` wraps any feature extractor: a network with ``feature_map`` (conv: (N, C, H, W)) or
``features`` (MLP: (N, D)) and a ``head``, or your own model with ``features=`` / ``feature_map=`` /
``head=`` callables. :class:`FeatureSpaceDetector` lets a detector that works on features (HEAT priors,
KNN, ViM, …) be used on raw inputs with the shared ``fit(x, y)`` / ``score(x)`` API.

What each detector needs from the backbone (checked up front by :meth:`Backbone.require`, one error
listing everything missing):

* features only — Mahalanobis, SSD+, KNN, the GMM prior (GMM-std: a feature map (N, C, H, W));
* logits, i.e. a head ``z -> logits`` (an ``nn.Linear`` or any callable) — MSP, MaxLogit, the EL prior;
* a linear head's ``W`` (C, D) and ``b`` (C,) — ViM, DICE, ReAct (and the EL prior, which reads W, b);
* the network itself, with gradients w.r.t. its input — ODIN (``ODIN(model)``, no Backbone).
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import warnings
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from ebm_ood.plumbing.atomic import write_atomic
from ebm_ood.detector import Detector
from ebm_ood.plumbing.checks import check_array, check_int, check_labels, resolve_device, to_numpy
from ebm_ood.plumbing.fingerprint import callable_digest, referenced_modules
from ebm_ood.plumbing.inputs import check_separate_labels, is_batch_iterable, iter_batches, labels_given_once, warn_order
from ebm_ood.nn.pooling import pooled_features
from ebm_ood.plumbing.threads import library_threads

NEEDS = ("features", "feature_map", "head", "linear_head")


@dataclass
class Features:
    z: np.ndarray  # (N, D) average-pooled penultimate features
    z_std: np.ndarray  # (N, D) std-pooled features (zeros without a feature map)
    logits: np.ndarray | None  # (N, C) = head(z); None without a head
    y: np.ndarray | None = None  # (N,) labels, when extracted from (x, y) batches
    fingerprint: str | None = None  # Backbone.hash of what computed them (None: not fingerprintable)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.z, self.z_std, self.logits, self.y) if a is not None)


def _owner(fn):
    """The nn.Module holding ``fn``'s weights: the module itself, or the module of a bound method."""
    if isinstance(fn, nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def _last_linear(net) -> str | None:
    """Attribute path of the last ``nn.Linear`` in ``net`` (the likely classifier head), e.g. ``"fc"``."""
    if not isinstance(net, nn.Module):
        return None
    names = [name for name, m in net.named_modules() if isinstance(m, nn.Linear) and name]
    return names[-1] if names else None


class WeightsChangedWarning(UserWarning):
    """A :class:`FeatureSpaceDetector` scores with backbone features computed otherwise (other weights, buffers,
    code or hooks: another :attr:`Backbone.hash`) than those it was fitted on."""


@contextlib.contextmanager
def _eval_mode(modules):
    """Run with every module of ``modules`` in eval mode, then restore each submodule's own mode."""
    modes = [(m, m.training) for root in modules for m in root.modules()]
    for root in modules:
        root.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _numpy(t: torch.Tensor) -> np.ndarray:
    """A feature tensor as numpy: float32 and float64 as they are, other floats (bfloat16, float16) as float32."""
    t = torch.as_tensor(t).detach()
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    return t.cpu().numpy()


class Backbone:
    """A frozen classifier seen as a feature extractor.

    ``net``: an ``nn.Module`` with ``feature_map`` (x -> (N, C, H, W)) or ``features`` (x -> (N, D)) and a
    ``head`` (``nn.Linear``, W: (C, D), b: (C,)), as the package's networks have; or any callable
    ``x -> (N, D)`` features. For your own model pass the pieces: ``features=`` (x -> (N, D)),
    ``feature_map=`` (x -> (N, C, H, W), average-pooled to ``z``; gives the std-pooled features too) and
    ``head=`` (an ``nn.Linear`` or a callable z -> logits (N, C)); they win over the model's own methods.
    Which detectors need which piece: module docstring; :meth:`require` checks it.

    When ``net`` is your ``nn.Module`` and a head is known, the first batch checks that
    ``head(average-pool(feature_map(x)))`` (or ``head(features(x))``) equals ``net(x)`` (up to the dtype's
    rounding; a model whose output has another shape than the head's, such as an encoder, is not compared):
    a model that max-pools or flattens its feature map is an error that says to pass ``features=`` (the
    exact input of the head).

    Inputs follow the model: they are cast to the dtype of its first floating parameter or buffer (float32
    without one) and moved to its device; ``device`` (default None: the model's device, CPU for plain
    functions) must exist and hold the model.

    ``extract(x)`` is memoised per input array and per :attr:`hash` of what computes the features (the
    weights, buffers, code and settings of every piece: :mod:`ebm_ood.plumbing.fingerprint`), so changed weights
    are never served old features and every detector sharing one Backbone runs the network once per
    dataset (computing the key reads every weight once per call: a hash of their bytes, not a forward
    pass). The memo keeps the most recently used results up to ``memo_bytes`` bytes (default 256 MiB; 0
    disables it) and drops those of other weights. Pieces that cannot be fingerprinted (a function
    holding an object the fingerprint cannot read) are never memoised. An iterable of batches (a
    DataLoader) is streamed batch by batch and not memoised. With ``cache_dir`` the features are also
    stored as ``features-<hash>-<input hash>.npz`` (written atomically, read without pickle; the input hash
    covers the inputs, their dtype, the device and the batch size), so a later run with the same pieces and
    inputs skips the network; ``cache_dir`` needs every piece to be fingerprintable.

    The network is frozen: the constructor calls ``.eval()`` on ``net`` and on every module that owns a
    piece (dropout off, batch-norm running statistics used and never updated), and extraction runs under
    ``torch.no_grad()`` with every module in eval mode, restoring each module's own mode afterwards.

    Parameters
    ----------
    net : nn.Module or callable or None, the model (or a callable x -> (N, D) features).
    device : torch device or None, where the model lives (default None: the model's device, CPU for plain
        functions); it must exist and hold the model.
    batch_size : int, inputs per forward pass.
    cache_dir : str or None, folder for the on-disk feature cache (None: memory only).
    memo_bytes : int, bytes of features kept in memory, most recently used first (0: no memo; keyword only).
    features : callable or None, x -> (N, D) features (keyword only).
    feature_map : callable or None, x -> (N, C, H, W) (keyword only): average- and std-pooled into ``z``, ``z_std``.
    head : nn.Linear or callable or None, z -> logits (N, C) (keyword only).

    Example
    -------
    >>> import numpy as np, torch, ebm_ood
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> bb = ebm_ood.Backbone(model, features=model[:2], head=model[2])
    >>> feats = bb.extract(np.random.default_rng(0).normal(size=(5, 4)).astype("float32"))
    >>> feats.z.shape, feats.logits.shape
    ((5, 8), (5, 3))
    """

    def __init__(self, net=None, device=None, batch_size: int = 512, cache_dir: str | None = None, *,
                 features=None, feature_map=None, head=None, memo_bytes: int = 1 << 28):
        if net is not None and not callable(net):
            raise TypeError(f"net: expected a torch.nn.Module or a callable x -> features (N, D), "
                            f"got {type(net).__name__}")
        for arg, value in (("features", features), ("feature_map", feature_map), ("head", head)):
            if value is not None and not callable(value):
                raise TypeError(f"{arg}: expected a callable (an nn.Module or a function), got {type(value).__name__}")
        if net is None and features is None and feature_map is None:
            raise TypeError("Backbone: expected a network or a feature extractor: pass net=model, "
                            "features=f (x -> (N, D)) or feature_map=f (x -> (N, C, H, W))")
        if isinstance(memo_bytes, bool) or not isinstance(memo_bytes, (int, np.integer)) or memo_bytes < 0:
            raise ValueError(f"memo_bytes: expected a number of bytes >= 0, got {memo_bytes!r}")
        self.net = net.eval() if isinstance(net, nn.Module) else net
        self._features, self._feature_map, self._head = features, feature_map, head
        for piece in (features, feature_map, head):
            if _owner(piece) is not None:
                _owner(piece).eval()
        self._device = None if device is None else resolve_device(device)
        self.batch_size, self.cache_dir, self.memo_bytes = check_int(batch_size, "batch_size"), cache_dir, int(memo_bytes)
        if cache_dir is not None:
            opaque = [a for a, v in (("net", net), ("features", features), ("feature_map", feature_map),
                                     ("head", head)) if v is not None and not callable_digest(hashlib.sha256(), v)]
            if opaque:
                raise ValueError(f"cache_dir: the disk cache is keyed by what computes the features, but "
                                 f"{', '.join(opaque)} cannot be fingerprinted (a function holding an object "
                                 "other than modules, tensors, arrays, numbers and functions); pass an nn.Module "
                                 "or a bound method of one, or use cache_dir=None")
        self._memo: dict[str, Features] = {}

    def _init_args(self) -> dict:
        """The constructor's arguments that rebuild this Backbone (:func:`ebm_ood.load` passes them through
        ``__init__``'s checks and compares the result with the loaded one)."""
        return dict(net=self.net, device=self._device, batch_size=self.batch_size, cache_dir=self.cache_dir,
                    features=self._features, feature_map=self._feature_map, head=self._head,
                    memo_bytes=self.memo_bytes)

    def __repr__(self) -> str:
        parts = [type(self.net).__name__] if self.net is not None else []
        for arg, value in (("features", self._features), ("feature_map", self._feature_map), ("head", self._head)):
            if value is not None:
                parts.append(f"{arg}={getattr(value, '__name__', type(value).__name__)}")
        return f"Backbone({', '.join(parts)})"

    # ----------------------------------------------------------------------------- the pieces
    def _net_method(self, name: str):
        return getattr(self.net, name, None) if self.net is not None else None

    def _extractor_piece(self):
        """``(kind, callable)`` that computes the features: ("feature_map" | "features" | "net", fn) or None."""
        if self._feature_map is not None:
            return "feature_map", self._feature_map
        if self._features is not None:
            return "features", self._features
        for kind in ("feature_map", "features"):
            if self._net_method(kind) is not None:
                return kind, self._net_method(kind)
        if self.net is not None and not isinstance(self.net, nn.Module):
            return "net", self.net
        return None

    def _extractor(self):
        """What :func:`~ebm_ood.nn.pooling.pooled_features` runs: a stand-in holding the callable that
        computes the features (the given piece or the network's own method), its output shape checked."""
        piece = self._extractor_piece()
        if piece is None:
            return None
        kind, fn = piece
        own = kind != "net" and self._feature_map is None and self._features is None
        name = f"net.{kind}" if own else kind
        if kind == "feature_map":
            return SimpleNamespace(feature_map=self._checked(fn, name, 4))
        return SimpleNamespace(features=self._checked(fn, name, 2))

    @staticmethod
    def _checked(fn, arg: str, ndim: int):
        def run(x):
            out = torch.as_tensor(fn(x))
            if out.ndim != ndim or out.shape[0] != x.shape[0]:
                want = "(N, D) features" if ndim == 2 else "a feature map (N, C, H, W)"
                hint = "; for a feature map (N, C, H, W) pass feature_map=" if ndim == 2 and out.ndim == 4 else ""
                raise ValueError(f"{arg}: expected {want} for a batch of {x.shape[0]} inputs, "
                                 f"got shape {tuple(out.shape)}{hint}")
            return out
        return run

    @property
    def head(self):
        """The head ``z -> logits`` (the ``head=`` argument, else ``net.head``), or None."""
        return self._head if self._head is not None else self._net_method("head")

    @property
    def has_feature_map(self) -> bool:
        """True when std-pooled features (``z_std``) come from a spatial feature map."""
        return self._feature_map is not None or (self._features is None and self._net_method("feature_map") is not None)

    def _modules(self) -> list:
        """The distinct modules the pieces run (the network, the owners of bound methods, the modules a
        function's closure or globals hold): their weights set the dtype and device, and they run in eval mode."""
        out = []
        for piece in (self.net, self._features, self._feature_map, self._head):
            for m in referenced_modules(piece) if piece is not None else ():
                if all(m is not o for o in out):
                    out.append(m)
        return out

    def _first_tensor(self):
        for m in self._modules():
            for t in itertools.chain(m.parameters(), m.buffers()):
                if t.is_floating_point():
                    return t
        return None

    @property
    def device(self) -> torch.device:
        """Where inputs go: the ``device`` given, else the device of the model's weights (CPU without any)."""
        given = getattr(self, "_device", None)
        if given is not None:
            return given
        t = self._first_tensor()
        return t.device if t is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype inputs are cast to: that of the model's first floating parameter or buffer, else float32."""
        t = self._first_tensor()
        return t.dtype if t is not None else torch.float32

    def _check_device(self) -> torch.device:
        device, t = self.device, self._first_tensor()
        if t is not None and t.device != device and not (t.device.type == device.type and device.index is None):
            raise ValueError(f"device: the model's weights are on {t.device}, not on {device}; move the model "
                             f"there (model.to({str(device)!r})) or leave device=None to follow the model")
        return device

    def require(self, needs, who: str = "this detector") -> None:
        """Raise one ``TypeError`` listing every piece in ``needs`` (a subset of :data:`NEEDS`) that is
        missing, each with how to supply it."""
        unknown = set(needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"needs: expected names from {NEEDS}, got {sorted(unknown)}")
        fc = _last_linear(self.net)
        head_hint = f"pass head=model.{fc}" if fc else "pass head=..."
        missing = []
        if "linear_head" in needs and not isinstance(self.head, nn.Linear):
            what = f"got a {type(self.head).__name__}, " if self.head is not None else ""
            missing.append(f"a linear head (its W and b): {what}{head_hint} (an nn.Linear)")
        elif "head" in needs and self.head is None:
            missing.append(f"a head mapping features to logits: {head_hint} (an nn.Linear or a callable z -> logits)")
        if "feature_map" in needs and not self.has_feature_map:
            missing.append("a feature map (N, C, H, W) for the std-pooled features: pass feature_map=... or give "
                           "the model a .feature_map method")
        elif "features" in needs and self._extractor() is None:
            missing.append("a feature extractor: pass features=... (x -> (N, D)) or feature_map=... "
                           "(x -> (N, C, H, W)), or give the model a .features or .feature_map method")
        if missing:
            model = type(self.net).__name__ if self.net is not None else "features=..."
            raise TypeError(f"Backbone({model}): {who} needs " + "; and ".join(missing))

    @property
    def hash(self) -> str | None:
        """sha256 (16 hex digits) of what computes the features: the piece that computes them and the head,
        each with its weights, buffers, code and settings (:mod:`ebm_ood.plumbing.fingerprint`); None when a piece
        cannot be fingerprinted."""
        h = hashlib.sha256()
        for role, fn in (self._extractor_piece() or ("none", None), ("head", self.head)):
            h.update(role.encode())
            if fn is not None and not callable_digest(h, fn):
                return None
        return h.hexdigest()[:16]

    def weight_bias(self, who: str = "this detector") -> tuple[np.ndarray, np.ndarray]:
        """The linear head's ``W`` (C, D) and ``b`` (C,) as float64 numpy (``b = 0`` for a head without bias)."""
        self.require(("linear_head",), who)
        w = self.head.weight.detach().cpu().double().numpy()
        b = self.head.bias
        return w, (b.detach().cpu().double().numpy() if b is not None else np.zeros(w.shape[0]))

    # ----------------------------------------------------------------------------- extraction
    def _logits(self, head, z: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``head(z)`` (N, C); on the first batch of a Backbone with a model, checked against ``net(b)``."""
        try:
            logits = torch.as_tensor(head(z))
        except RuntimeError as err:
            raise ValueError(f"head: cannot be applied to the pooled features z of shape {tuple(z.shape)} ({err}); "
                             f"{_POOL_HINT}") from err
        package_net = type(self.net).__module__.startswith("ebm_ood.")      # head(avg-pool) by construction
        if getattr(self, "_head_checked", False) or not isinstance(self.net, nn.Module) or package_net:
            return logits
        try:
            want = self.net(b)
        except Exception:                   # a model whose forward takes other inputs: nothing to compare
            self._head_checked = True
            return logits
        if not isinstance(want, torch.Tensor):
            self._head_checked = True
            return logits
        if want.shape != logits.shape:      # the model's output is not this head's logits (e.g. an encoder)
            self._head_checked = True
            return logits
        a, w = logits.double(), want.double()
        gap = float((a - w).abs().max()) if a.numel() else 0.0
        tol = max(1e-4, 8 * torch.finfo(logits.dtype).eps) * (1.0 + float(w.abs().max()) if w.numel() else 1.0)
        if not gap <= tol:
            raise ValueError(f"head: head(average-pool(feature map)) differs from the model's own output by up to "
                             f"{gap:.3g} on the first batch; {_POOL_HINT}")
        self._head_checked = True
        return logits

    def _run(self, x: np.ndarray, extractor, head, device, dtype) -> tuple[list, list, list]:
        zs, ss, ls = [], [], []
        for i in range(0, len(x), self.batch_size):
            b = torch.as_tensor(x[i : i + self.batch_size]).to(device=device, dtype=dtype)
            z, s = pooled_features(extractor, b)
            zs.append(_numpy(z)), ss.append(_numpy(s))
            if head is not None:
                ls.append(_numpy(self._logits(head, z, b)))
        return zs, ss, ls

    def _as_inputs(self, x, name: str = "x") -> np.ndarray:
        """Inputs as a C-contiguous numpy array: float64 for a float64 model, float32 otherwise."""
        dtype = np.float64 if self.dtype == torch.float64 else np.float32
        if isinstance(x, torch.Tensor):
            x = to_numpy(x.detach().float() if x.dtype in (torch.bfloat16, torch.float16) else x, name)
        x = np.ascontiguousarray(x, dtype=dtype)
        if x.ndim < 2:
            raise ValueError(f"{name}: expected a batch of inputs (N, ...), got shape {x.shape}")
        return x

    @torch.no_grad()
    def extract(self, x) -> Features:
        """Features of inputs ``x`` (N, ...) (numpy, torch or an iterable of batches ``x_b`` / ``(x_b, y_b)``;
        run in the model's dtype on its device in batches of ``batch_size``). ``Features.fingerprint`` is
        the :attr:`hash` they were computed with."""
        self.require(("features",), "extract")
        extractor, head, device, dtype = self._extractor(), self.head, self._check_device(), self.dtype
        fp = self.hash
        with _eval_mode(self._modules()):
            if is_batch_iterable(x):
                zs, ss, ls, ys = [], [], [], []
                for i, (xb, yb) in enumerate(iter_batches(x, "x")):
                    z, s, lg = self._run(self._as_inputs(xb, f"x batch {i}"), extractor, head, device, dtype)
                    zs, ss, ls = zs + z, ss + s, ls + lg
                    if yb is not None:
                        ys.append(yb)
                return Features(np.concatenate(zs), np.concatenate(ss), np.concatenate(ls) if ls else None,
                                np.concatenate(ys) if ys else None, fp)
            return self._extract_array(self._as_inputs(x), extractor, head, device, dtype, fp)

    def _extract_array(self, x: np.ndarray, extractor, head, device, dtype, fp) -> Features:
        h = hashlib.sha256(f"{x.shape}{x.dtype}{device}{dtype}{self.batch_size}".encode())
        h.update(x.data)                          # hashes the buffer in place (no copy of the data)
        key = f"{fp}-{h.hexdigest()[:16]}"
        memo = self._memo
        if fp is not None and key in memo:
            memo[key] = memo.pop(key)             # most recently used last
            return memo[key]
        if self.cache_dir is not None and fp is None:
            raise ValueError("cache_dir: a piece of this Backbone can no longer be fingerprinted; use cache_dir=None")
        path = os.path.join(self.cache_dir, f"features-{key}.npz") if self.cache_dir else None
        feats = None
        if path and os.path.exists(path):
            with np.load(path, allow_pickle=False) as f:
                if head is None or "logits" in f.files:
                    feats = Features(f["z"], f["z_std"], f["logits"] if head is not None else None, None, fp)
        if feats is None:
            zs, ss, ls = self._run(x, extractor, head, device, dtype)
            feats = Features(np.concatenate(zs), np.concatenate(ss), np.concatenate(ls) if ls else None, None, fp)
            if path:
                arrays = {"z": feats.z, "z_std": feats.z_std}
                if feats.logits is not None:
                    arrays["logits"] = feats.logits
                write_atomic(path, lambda fh: np.savez(fh, **arrays))
        if fp is not None:
            self._remember(key, feats)
        return feats

    def _remember(self, key: str, feats: Features) -> None:
        """Keep ``feats`` in the memo: entries of other weights go, then the least recently used ones until
        the memo holds at most ``memo_bytes`` bytes."""
        memo, fp = self._memo, key.split("-")[0]
        for k in [k for k in memo if k.split("-")[0] != fp]:
            del memo[k]
        limit = getattr(self, "memo_bytes", 1 << 28)
        if feats.nbytes > limit:
            return
        memo[key] = feats
        while sum(f.nbytes for f in memo.values()) > limit:
            del memo[next(iter(memo))]


_POOL_HINT = ("the Backbone average-pools feature_map=; for a model that pools otherwise (max-pooling, "
              "flattening) pass features=<a callable x -> (N, D) returning exactly what the head receives>, "
              "or leave the model out (Backbone(features=..., head=...)) when the head is not meant to "
              "reproduce the model's output")


class FeatureSpaceDetector(Detector):
    """Use a detector on features: ``fit(x, y)`` extracts ``backbone`` features of ``x`` and fits
    ``inner`` on them; ``score(x)`` likewise (the score is ``inner``'s). ``which`` selects what ``inner``
    sees: "z" (the average-pooled penultimate features, (N, D)), "z_std" (the std-pooled feature map,
    (N, C); needs ``feature_map=``) or "logits" (``head(z)``, (N, C); needs ``head=``). What the backbone
    must provide (``inner.backbone_needs``, plus a head for "logits" and a feature map for "z_std") is
    checked here, in one error.

    Parameters
    ----------
    backbone : Backbone, your model seen as a feature extractor.
    inner : Detector, a detector of vectors (e.g. ``KNN()``, ``MSP()``).
    which : "z" (default), "z_std" or "logits".
    name : str or None, the name in tables (default ``inner.name``).

    Needs
    -----
    What ``inner`` needs (its ``backbone_needs``), plus a head for ``which="logits"`` and a feature map
    for ``which="z_std"``.

    Example
    -------
    >>> import numpy as np, torch, ebm_ood
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> bb = ebm_ood.Backbone(model, features=model[:2], head=model[2])
    >>> x = np.random.default_rng(0).normal(size=(50, 4)).astype("float32")
    >>> det = ebm_ood.FeatureSpaceDetector(bb, ebm_ood.MSP(), which="logits").fit(x)
    >>> det.score(x[:3]).shape
    (3,)
    """

    def __init__(self, backbone: Backbone, inner: Detector, which: str = "z", name: str | None = None):
        if not isinstance(backbone, Backbone):
            raise TypeError(f"backbone: expected an ebm_ood.backbone.Backbone, got {type(backbone).__name__}; "
                            "wrap your model as Backbone(model, head=..., features=...)")
        if not isinstance(inner, Detector):
            raise TypeError(f"inner: expected an ebm_ood detector (e.g. KNN()), got {type(inner).__name__}")
        super().__init__(device=backbone.device)
        if which not in ("z", "z_std", "logits"):
            raise ValueError(f"which: expected 'z', 'z_std' or 'logits', got {which!r}")
        self.backbone, self.inner, self.which = backbone, inner, which
        self.name = name or getattr(inner, "name", "detector")
        self.needs_labels = getattr(inner, "needs_labels", False)
        extra = {"logits": ("head",), "z_std": ("feature_map",), "z": ()}[which]
        backbone.require(tuple(getattr(inner, "backbone_needs", ("features",))) + extra, self.name)

    def _selected(self, feats: Features) -> np.ndarray:
        """A copy of the features ``which`` selects: float64 from a float64 model, else float32."""
        a = getattr(feats, self.which)
        return a.astype(np.float64 if a.dtype == np.float64 else np.float32)

    def _extract(self, x) -> tuple[np.ndarray, str | None]:
        """The selected features of ``x`` (:meth:`_selected`) and the backbone fingerprint they were computed with."""
        feats = self.backbone.extract(x)
        return self._selected(feats), feats.fingerprint

    def fit(self, x, y=None, validation=None):
        """Extract the features of ``x`` and fit ``inner`` on them. An iterable of batches (a DataLoader of
        ``x`` or ``(x, y)``) is streamed through the backbone: each batch is checked, run and dropped, so
        only the features are ever held, never the whole raw input. Records ``backbone_hash_``, the
        :attr:`Backbone.hash` of the weights the detector was fitted with."""
        if not is_batch_iterable(x):
            return super().fit(x, y, validation)
        check_separate_labels(x, "x", y)
        seen = []                                           # (input shape, max |x|) per batch

        def checked():
            for i, (xb, yb) in enumerate(iter_batches(x, "x")):
                xb = check_array(xb, f"x batch {i}", ndim=(2, 3, 4), shape=seen[0][0] if seen else None)
                seen.append((xb.shape[1:], float(np.abs(xb).max()) if xb.size else 0.0))
                yield xb if yb is None else (xb, yb)

        feats = self.backbone.extract(checked())
        y = self._record_fit_data((len(feats.z), *seen[0][0]), labels_given_once(feats.y, y, "x"), validation,
                                  max(r for _, r in seen))
        with library_threads():
            self._fit_features(self._selected(feats), y, feats.fingerprint)
        self.fitted_ = True
        return self

    def score(self, x) -> np.ndarray:
        """One score per sample of ``x`` (N,) float64, higher = more OOD. An iterable of batches is streamed
        through the backbone (each batch checked, run and dropped; only features are held); a shuffling
        DataLoader warns as in :meth:`Detector.score`. Scoring with
        backbone weights other than those of fit warns (:class:`WeightsChangedWarning`): ``inner`` was
        fitted on the old features."""
        if not is_batch_iterable(x):
            return super().score(x)
        self.check_fitted()
        warn_order(x, "x")

        def checked():
            for i, (xb, _) in enumerate(iter_batches(x, "x")):
                yield check_array(xb, f"x batch {i}", ndim=len(self.input_shape_) + 1, shape=self.input_shape_)

        feats = self.backbone.extract(checked())
        self._check_weights(feats.fingerprint)
        with library_threads():
            out = np.asarray(self.inner.score(self._selected(feats)), dtype=np.float64)
        if out.shape != (len(feats.z),):
            raise RuntimeError(f"{self.name}: produced {out.shape} scores for {len(feats.z)} samples")
        return out

    def _check_weights(self, fingerprint) -> None:
        fitted = getattr(self, "backbone_hash_", None)
        if fitted is not None and fingerprint is not None and fingerprint != fitted:
            warnings.warn(f"{self.name}: what computes the backbone's features (weights, buffers, code or hooks) "
                          f"changed since fit; the scores use the new features but {type(self.inner).__name__} was "
                          "fitted on the old ones: call fit again", WeightsChangedWarning, stacklevel=3)

    def _probe_fitted(self):
        """Scores (2,) of two all-zero inputs through the backbone and ``inner``, bypassing the backbone's
        memo and ``cache_dir`` (nothing is kept or written): a network whose settings no longer run, or
        whose features do not fit ``inner``, fails here."""
        bb = self.backbone
        x = bb._as_inputs(np.zeros((2, *self.input_shape_), np.float32))
        with _eval_mode(bb._modules()), torch.no_grad():
            zs, ss, ls = bb._run(x, bb._extractor(), bb.head, bb._check_device(), bb.dtype)
        feats = Features(np.concatenate(zs), np.concatenate(ss), np.concatenate(ls) if ls else None, None, None)
        return self.inner.score(self._selected(feats))

    def _check_validation(self, validation, with_labels: bool):
        """Validation data as :meth:`Detector._check_validation` has it, except that an iterable of batches
        (a DataLoader) is streamed through the backbone like ``x`` in :meth:`fit`: only its features are
        held (``validation_features_`` is then True and ``validation_[0]`` holds them)."""
        x_val, y_val = validation if isinstance(validation, (tuple, list)) else (validation, None)
        self.validation_features_ = validation is not None and is_batch_iterable(x_val)
        if not self.validation_features_:
            return super()._check_validation(validation, with_labels)
        if isinstance(validation, (tuple, list)) and len(validation) != 2:
            raise ValueError(f"validation: expected (x_val, y_val) or x_val, got a sequence of {len(validation)}")
        check_separate_labels(x_val, "validation x", y_val, "validation y")

        def checked():
            for i, (xb, yb) in enumerate(iter_batches(x_val, "validation x")):
                xb = check_array(xb, f"validation x batch {i}", ndim=len(self.input_shape_) + 1,
                                 shape=self.input_shape_)
                yield xb if yb is None else (xb, yb)

        feats = self.backbone.extract(checked())
        y_val = labels_given_once(feats.y, y_val, "validation x", "validation y")
        if y_val is not None and with_labels:
            y_val = check_labels(y_val, "validation y", len(feats.z), getattr(self, "num_classes_", None))
        return self._selected(feats), (y_val if with_labels else None)

    def _fit_features(self, z: np.ndarray, y, fingerprint) -> None:
        val = None
        if self.validation_ is not None:
            z_val = self.validation_[0] if getattr(self, "validation_features_", False) else \
                self._extract(self.validation_[0])[0]
            val = (z_val, self.validation_[1])
        self.inner.fit(z, y, validation=val)
        self.backbone_hash_ = fingerprint

    def _fit(self, x, y):
        z, fingerprint = self._extract(x)
        self._fit_features(z, y, fingerprint)

    def _score(self, x):
        z, fingerprint = self._extract(x)
        self._check_weights(fingerprint)
        return self.inner.score(z)
