"""Feature space of a trained classifier (HEAT §3): penultimate features, average-pooled ``z`` and
std-pooled second-order features, the logits ``fc(z)``, and an on-disk cache.

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

from ebm_ood.detectors.base import Detector
from ebm_ood.nn.features import pooled_features


@dataclass
class Features:
    z: np.ndarray  # (N, D) average-pooled penultimate features
    z_std: np.ndarray  # (N, D) std-pooled features (zeros for an MLP)
    logits: np.ndarray  # (N, C) = head(z)


class Backbone:
    """A frozen classifier seen as a feature extractor. ``head`` is its last ``nn.Linear`` (W: (C, D), b: (C,)).

    ``extract(x)`` is memoised per input array (by content hash) and, with ``cache_dir``, stored as
    ``features-<backbone hash>-<input hash>.npz``.
    """

    def __init__(self, net: nn.Module, device="cpu", batch_size: int = 512, cache_dir: str | None = None):
        if not isinstance(getattr(net, "head", None), nn.Linear):
            raise TypeError(f"net: expected a classifier with a linear .head, got {type(net).__name__}")
        self.net = net.eval()
        self.device, self.batch_size, self.cache_dir = torch.device(device), batch_size, cache_dir
        self._memo: dict[str, Features] = {}
        h = hashlib.sha256()
        for k, v in net.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().numpy().tobytes())
        self.hash = h.hexdigest()[:16]

    @property
    def head(self) -> nn.Linear:
        return self.net.head

    def weight_bias(self) -> tuple[np.ndarray, np.ndarray]:
        """The head's ``W`` (C, D) and ``b`` (C,) as float64 numpy."""
        return (self.head.weight.detach().cpu().double().numpy(), self.head.bias.detach().cpu().double().numpy())

    @torch.no_grad()
    def extract(self, x: np.ndarray) -> Features:
        x = np.ascontiguousarray(x, dtype=np.float32)
        key = hashlib.sha256(x.tobytes() + str(x.shape).encode()).hexdigest()[:16]
        if key in self._memo:
            return self._memo[key]
        path = os.path.join(self.cache_dir, f"features-{self.hash}-{key}.npz") if self.cache_dir else None
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
                os.makedirs(self.cache_dir, exist_ok=True)
                tmp = path + ".tmp.npz"
                np.savez(tmp, z=feats.z, z_std=feats.z_std, logits=feats.logits)
                os.replace(tmp, path)
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
