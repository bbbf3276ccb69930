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

import hashlib
import os
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from ebm_ood.atomic import write_atomic
from ebm_ood.detector import Detector
from ebm_ood.checks import check_array
from ebm_ood.inputs import check_separate_labels, is_batch_iterable, iter_batches, labels_given_once
from ebm_ood.nn.pooling import pooled_features
from ebm_ood.threads import library_threads

NEEDS = ("features", "feature_map", "head", "linear_head")


@dataclass
class Features:
    z: np.ndarray  # (N, D) average-pooled penultimate features
    z_std: np.ndarray  # (N, D) std-pooled features (zeros without a feature map)
    logits: np.ndarray | None  # (N, C) = head(z); None without a head
    y: np.ndarray | None = None  # (N,) labels, when extracted from (x, y) batches


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


class Backbone:
    """A frozen classifier seen as a feature extractor.

    ``net``: an ``nn.Module`` with ``feature_map`` (x -> (N, C, H, W)) or ``features`` (x -> (N, D)) and a
    ``head`` (``nn.Linear``, W: (C, D), b: (C,)), as the package's networks have; or any callable
    ``x -> (N, D)`` features. For your own model pass the pieces: ``features=`` (x -> (N, D)),
    ``feature_map=`` (x -> (N, C, H, W); gives the std-pooled features too) and ``head=`` (an ``nn.Linear``
    or a callable z -> logits (N, C)); they win over the model's own methods. Which detectors need which
    piece: module docstring; :meth:`require` checks it.

    ``extract(x)`` is memoised per input array (keyed by a hash of its content and shape), so every
    detector sharing one Backbone runs the network once per dataset; an iterable of batches (a DataLoader)
    is streamed batch by batch and not memoised. With ``cache_dir`` the features are also stored as
    ``features-<backbone hash>-<input hash>.npz`` (written atomically, read without pickle), so a later run
    with the same weights and inputs skips the network; the backbone hash covers every weight, so
    retrained weights never read stale features (hence ``cache_dir`` needs every piece to be an
    ``nn.Module`` or a method of one).

    The network is frozen: the constructor calls ``.eval()`` on ``net`` and on every module that owns a
    piece (dropout off, batch-norm running statistics used and never updated), and extraction runs under
    ``torch.no_grad()``; the weights never change. Call ``.eval()`` yourself again if you train the model
    further and reuse this Backbone (and make a new one: the memo is keyed by inputs, not weights).

    Parameters
    ----------
    net : nn.Module or callable or None, the model (or a callable x -> (N, D) features).
    device : torch device of the network (default "cpu").
    batch_size : int, inputs per forward pass.
    cache_dir : str or None, folder for the on-disk feature cache (None: memory only).
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

    def __init__(self, net=None, device="cpu", batch_size: int = 512, cache_dir: str | None = None, *,
                 features=None, feature_map=None, head=None):
        if net is not None and not callable(net):
            raise TypeError(f"net: expected a torch.nn.Module or a callable x -> features (N, D), "
                            f"got {type(net).__name__}")
        for arg, value in (("features", features), ("feature_map", feature_map), ("head", head)):
            if value is not None and not callable(value):
                raise TypeError(f"{arg}: expected a callable (an nn.Module or a function), got {type(value).__name__}")
        if net is None and features is None and feature_map is None:
            raise TypeError("Backbone: expected a network or a feature extractor: pass net=model, "
                            "features=f (x -> (N, D)) or feature_map=f (x -> (N, C, H, W))")
        self.net = net.eval() if isinstance(net, nn.Module) else net
        self._features, self._feature_map, self._head = features, feature_map, head
        for piece in (features, feature_map, head):
            if _owner(piece) is not None:
                _owner(piece).eval()
        self.device, self.batch_size, self.cache_dir = torch.device(device), int(batch_size), cache_dir
        if cache_dir is not None:
            opaque = [a for a, v in (("net", net), ("features", features), ("feature_map", feature_map),
                                     ("head", head)) if v is not None and _owner(v) is None]
            if opaque:
                raise ValueError(f"cache_dir: the disk cache is keyed by the weights, but {', '.join(opaque)} "
                                 "is a plain function (no nn.Module weights); use cache_dir=None")
        self._memo: dict[str, Features] = {}

    def __repr__(self) -> str:
        parts = [type(self.net).__name__] if self.net is not None else []
        for arg, value in (("features", self._features), ("feature_map", self._feature_map), ("head", self._head)):
            if value is not None:
                parts.append(f"{arg}={getattr(value, '__name__', type(value).__name__)}")
        return f"Backbone({', '.join(parts)})"

    # ----------------------------------------------------------------------------- the pieces
    def _net_method(self, name: str):
        return getattr(self.net, name, None) if self.net is not None else None

    def _extractor(self):
        """What :func:`~ebm_ood.nn.pooling.pooled_features` runs: the network itself when its own
        ``feature_map`` / ``features`` are used, else a stand-in holding the given callable."""
        if self._feature_map is not None:
            return SimpleNamespace(feature_map=self._checked(self._feature_map, "feature_map", 4))
        if self._features is not None:
            return SimpleNamespace(features=self._checked(self._features, "features", 2))
        if self._net_method("feature_map") is not None or self._net_method("features") is not None:
            return self.net
        if self.net is not None and not isinstance(self.net, nn.Module):
            return SimpleNamespace(features=self._checked(self.net, "net", 2))
        return None

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
    def hash(self) -> str:
        """sha256 (16 hex digits) of the weights: names and values in the state_dict of the network and of
        every given piece that is not part of it."""
        modules, seen = [], set()
        for prefix, piece in (("", self.net), ("features.", self._features), ("feature_map.", self._feature_map),
                              ("head.", self._head)):
            m = _owner(piece)
            if m is not None and id(m) not in seen:
                modules.append((prefix, m))
                seen.update(id(sub) for sub in m.modules())
        h = hashlib.sha256()
        for prefix, m in modules:
            for k, v in m.state_dict().items():
                h.update((prefix + k if prefix and m is not self.net else k).encode())
                h.update(np.ascontiguousarray(v.detach().cpu().numpy()).data)
        return h.hexdigest()[:16]

    def weight_bias(self, who: str = "this detector") -> tuple[np.ndarray, np.ndarray]:
        """The linear head's ``W`` (C, D) and ``b`` (C,) as float64 numpy (``b = 0`` for a head without bias)."""
        self.require(("linear_head",), who)
        w = self.head.weight.detach().cpu().double().numpy()
        b = self.head.bias
        return w, (b.detach().cpu().double().numpy() if b is not None else np.zeros(w.shape[0]))

    # ----------------------------------------------------------------------------- extraction
    def _run(self, x: np.ndarray, extractor, head) -> tuple[list, list, list]:
        zs, ss, ls = [], [], []
        for i in range(0, len(x), self.batch_size):
            b = torch.as_tensor(x[i : i + self.batch_size], device=self.device)
            z, s = pooled_features(extractor, b)
            zs.append(z.cpu().numpy()), ss.append(s.cpu().numpy())
            if head is not None:
                ls.append(torch.as_tensor(head(z)).cpu().numpy())
        return zs, ss, ls

    @staticmethod
    def _as_inputs(x, name: str = "x") -> np.ndarray:
        x = np.ascontiguousarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
        if x.ndim < 2:
            raise ValueError(f"{name}: expected a batch of inputs (N, ...), got shape {x.shape}")
        return x

    @torch.no_grad()
    def extract(self, x) -> Features:
        """Features of inputs ``x`` (N, ...) (numpy, torch or an iterable of batches ``x_b`` / ``(x_b, y_b)``;
        run as float32 in batches of ``batch_size``)."""
        self.require(("features",), "extract")
        extractor, head = self._extractor(), self.head
        if is_batch_iterable(x):
            zs, ss, ls, ys = [], [], [], []
            for i, (xb, yb) in enumerate(iter_batches(x, "x")):
                z, s, lg = self._run(self._as_inputs(xb, f"x batch {i}"), extractor, head)
                zs += z
                ss += s
                ls += lg
                if yb is not None:
                    ys.append(yb)
            return Features(np.concatenate(zs), np.concatenate(ss), np.concatenate(ls) if ls else None,
                            np.concatenate(ys) if ys else None)
        x = self._as_inputs(x)
        h = hashlib.sha256(str(x.shape).encode())
        h.update(x.data)                          # hashes the buffer in place (no copy of the data)
        key = h.hexdigest()
        if key in self._memo:
            return self._memo[key]
        path = os.path.join(self.cache_dir, f"features-{self.hash}-{key[:16]}.npz") if self.cache_dir else None
        if path and os.path.exists(path):
            with np.load(path, allow_pickle=False) as f:
                feats = Features(f["z"], f["z_std"], f["logits"] if "logits" in f.files else None)
        else:
            zs, ss, ls = self._run(x, extractor, head)
            feats = Features(np.concatenate(zs), np.concatenate(ss), np.concatenate(ls) if ls else None)
            if path:
                arrays = {"z": feats.z, "z_std": feats.z_std}
                if feats.logits is not None:
                    arrays["logits"] = feats.logits
                write_atomic(path, lambda fh: np.savez(fh, **arrays))
        self._memo[key] = feats
        return feats


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

    def _features(self, x):
        return getattr(self.backbone.extract(x), self.which).astype(np.float32)

    def fit(self, x, y=None, validation=None):
        """Extract the features of ``x`` and fit ``inner`` on them. An iterable of batches (a DataLoader of
        ``x`` or ``(x, y)``) is streamed through the backbone: each batch is checked, run and dropped, so
        only the features are ever held, never the whole raw input."""
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
            self._fit_features(getattr(feats, self.which).astype(np.float32), y)
        self.fitted_ = True
        return self

    def _fit_features(self, z: np.ndarray, y) -> None:
        val = None
        if self.validation_ is not None:
            val = (self._features(self.validation_[0]), self.validation_[1])
        self.inner.fit(z, y, validation=val)

    def _fit(self, x, y):
        self._fit_features(self._features(x), y)

    def _score(self, x):
        return self.inner.score(self._features(x))
