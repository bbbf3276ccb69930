"""Feature space of a trained classifier (HEAT §3): penultimate features, average-pooled ``z`` and
std-pooled second-order features, the logits ``fc(z)``, memoised per dataset and optionally cached on disk.

:class:`Backbone` wraps any network with ``feature_map`` (conv) or ``features`` (MLP) and a linear
``head``. :class:`FeatureSpaceDetector` lets a detector that works on features (HEAT priors, KNN, ViM, …)
be used on raw inputs with the shared ``fit(x, y)`` / ``score(x)`` API.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ebm_ood.atomic import write_atomic
from ebm_ood.detector import Detector
from ebm_ood.nn.pooling import pooled_features


@dataclass
class Features:
    z: np.ndarray  # (N, D) average-pooled penultimate features
    z_std: np.ndarray  # (N, D) std-pooled features (zeros for an MLP)
    logits: np.ndarray  # (N, C) = head(z)


class Backbone:
    """A frozen classifier seen as a feature extractor. ``head`` is its last ``nn.Linear`` (W: (C, D), b: (C,)).

    ``extract(x)`` is memoised per input array (keyed by a hash of its content and shape), so every
    detector sharing one Backbone runs the network once per dataset. With ``cache_dir`` the features are
    also stored as ``features-<backbone hash>-<input hash>.npz`` (written atomically, read without
    pickle), so a later run with the same weights and inputs skips the network; the backbone hash covers
    every weight, so retrained weights never read stale features.
    """

    def __init__(self, net: nn.Module, device="cpu", batch_size: int = 512, cache_dir: str | None = None):
        if not isinstance(getattr(net, "head", None), nn.Linear):
            raise TypeError(f"net: expected a classifier with a linear .head, got {type(net).__name__}")
        self.net = net.eval()
        self.device, self.batch_size, self.cache_dir = torch.device(device), int(batch_size), cache_dir
        self._memo: dict[str, Features] = {}

    @property
    def hash(self) -> str:
        """sha256 (16 hex digits) of the network's state_dict: names and values of every weight."""
        h = hashlib.sha256()
        for k, v in self.net.state_dict().items():
            h.update(k.encode())
            h.update(np.ascontiguousarray(v.detach().cpu().numpy()).data)
        return h.hexdigest()[:16]

    @property
    def head(self) -> nn.Linear:
        return self.net.head

    def weight_bias(self) -> tuple[np.ndarray, np.ndarray]:
        """The head's ``W`` (C, D) and ``b`` (C,) as float64 numpy."""
        return (self.head.weight.detach().cpu().double().numpy(), self.head.bias.detach().cpu().double().numpy())

    @torch.no_grad()
    def extract(self, x) -> Features:
        """Features of inputs ``x`` (N, ...) (numpy or torch; run as float32 in batches of ``batch_size``)."""
        x = np.ascontiguousarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
        if x.ndim < 2:
            raise ValueError(f"x: expected a batch of inputs (N, ...), got shape {x.shape}")
        h = hashlib.sha256(str(x.shape).encode())
        h.update(x.data)                          # hashes the buffer in place (no copy of the data)
        key = h.hexdigest()
        if key in self._memo:
            return self._memo[key]
        path = os.path.join(self.cache_dir, f"features-{self.hash}-{key[:16]}.npz") if self.cache_dir else None
        if path and os.path.exists(path):
            with np.load(path, allow_pickle=False) as f:
                feats = Features(f["z"], f["z_std"], f["logits"])
        else:
            zs, ss, ls = [], [], []
            for i in range(0, len(x), self.batch_size):
                b = torch.as_tensor(x[i : i + self.batch_size], device=self.device)
                z, s = pooled_features(self.net, b)
                zs.append(z.cpu().numpy()), ss.append(s.cpu().numpy()), ls.append(self.head(z).cpu().numpy())
            feats = Features(np.concatenate(zs), np.concatenate(ss), np.concatenate(ls))
            if path:
                write_atomic(path, lambda fh: np.savez(fh, z=feats.z, z_std=feats.z_std, logits=feats.logits))
        self._memo[key] = feats
        return feats


class FeatureSpaceDetector(Detector):
    """Use a detector on features: ``fit(x, y)`` extracts ``backbone`` features of ``x`` and fits
    ``inner`` on them; ``score(x)`` likewise. ``which`` selects "z" (avg-pooled), "z_std" or "logits"."""

    def __init__(self, backbone: Backbone, inner: Detector, which: str = "z", name: str | None = None):
        super().__init__(device=backbone.device)
        if which not in ("z", "z_std", "logits"):
            raise ValueError(f"which: expected 'z', 'z_std' or 'logits', got {which!r}")
        self.backbone, self.inner, self.which = backbone, inner, which
        self.name = name or getattr(inner, "name", "detector")
        self.needs_labels = getattr(inner, "needs_labels", False)

    def _features(self, x):
        return getattr(self.backbone.extract(x), self.which).astype(np.float32)

    def _fit(self, x, y):
        val = None
        if self.validation_ is not None:
            val = (self._features(self.validation_[0]), self.validation_[1])
        self.inner.fit(self._features(x), y, validation=val)

    def _score(self, x):
        return self.inner.score(self._features(x))
