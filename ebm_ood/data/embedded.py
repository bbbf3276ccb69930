"""Datasets embedded in scikit-learn, so every run works offline and deterministically.

* ``digits``: sklearn's 8x8 handwritten digits as 1x8x8 images scaled from [0, 16] to [-1, 1].
  In-distribution: classes 0-7 (relabelled 0..7), stratified 70/10/20 train/val/test split from ``seed``.
  OOD sets: ``digits-89`` (classes 8-9, near-OOD, natural), ``patches`` (8x8 grayscale patches of the photos
  bundled with scikit-learn: natural textures), and the non-natural sets of Elflein App. D built on the
  fly (``noise``, ``constant``, ``oodomain`` = the ID test images without normalisation), plus the
  Experiment 5 smoothness sets ``smooth-k`` (group ``smoothness``).
* ``tabular``: a synthetic stand-in for UCI Segment: 18 features, 7 well-separated Gaussian classes
  (``sklearn.datasets.make_classification``); the last class is held out as OOD; min-max scaled with
  ID-training statistics; 80/10/10 split. OOD: ``held-out`` (natural), ``noise`` N(0, 1), ``constant``
  (one U(-5, 5) scalar per sample).
"""
from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits, load_sample_images, make_classification
from sklearn.model_selection import train_test_split

from ebm_ood.data.nonnatural import constant_set, noise_set, smoothness_set
from ebm_ood.data.dataset import NATURAL, NON_NATURAL, OODDataset, OODSet

SMOOTHNESS = "smoothness"
SMOOTH_POOL_SIZES = (1, 2, 4)


def stratified_split(x: np.ndarray, y: np.ndarray, fractions: tuple[float, float, float], seed: int):
    """Split ``(x, y)`` into train/val/test with the given fractions, stratified by ``y``."""
    f_train, f_val, f_test = fractions
    x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, train_size=f_train, stratify=y, random_state=seed)
    x_va, x_te, y_va, y_te = train_test_split(
        x_rest, y_rest, test_size=f_test / (f_val + f_test), stratify=y_rest, random_state=seed + 1
    )
    return x_tr, y_tr, x_va, y_va, x_te, y_te


def _photo_patches(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random ``size x size`` grayscale patches of sklearn's sample photos, downscaled 4x so a patch
    holds texture rather than a flat colour; returned in [0, 255] as float32 (n, 1, size, size)."""
    patches, smalls = [], []
    for photo in load_sample_images().images:
        img = photo.astype(np.float32).mean(axis=2)  # (H, W) grayscale
        h, w = (img.shape[0] // 4) * 4, (img.shape[1] // 4) * 4
        smalls.append(img[:h, :w].reshape(h // 4, 4, w // 4, 4).mean(axis=(1, 3)))
    for k in range(n):
        small = smalls[k % len(smalls)]
        i = rng.integers(0, small.shape[0] - size)
        j = rng.integers(0, small.shape[1] - size)
        patches.append(small[i : i + size, j : j + size])
    return np.stack(patches)[:, None].astype(np.float32)


def load_digits_dataset(seed: int = 0, n_ood: int = 500) -> OODDataset:
    data = load_digits()
    x_raw = data.images.astype(np.float32)[:, None]  # (1797, 1, 8, 8) in [0, 16]
    y = data.target.astype(np.int64)
    scale = lambda v: v / 8.0 - 1.0  # [0, 16] -> [-1, 1]
    idm = y <= 7
    x_tr, y_tr, x_va, y_va, x_te_raw, y_te = stratified_split(x_raw[idm], y[idm], (0.7, 0.1, 0.2), seed)
    rng = np.random.default_rng(seed + 1000)
    shape = (1, 8, 8)
    ood = {
        "digits-89": OODSet(scale(x_raw[~idm]), NATURAL),
        "patches": OODSet(_photo_patches(n_ood, 8, rng) / 127.5 - 1.0, NATURAL),
        "noise": OODSet(noise_set(n_ood, shape, rng), NON_NATURAL),
        "constant": OODSet(constant_set(n_ood, shape, rng, low=-1.0, high=1.0), NON_NATURAL),
        "oodomain": OODSet(x_te_raw.copy(), NON_NATURAL),
    }
    for k in SMOOTH_POOL_SIZES:
        ood[f"smooth-{k}"] = OODSet(smoothness_set(n_ood, shape, k, rng), SMOOTHNESS)
    return OODDataset(
        name="digits", kind="image",
        x_train=scale(x_tr), y_train=y_tr, x_val=scale(x_va), y_val=y_va, x_test=scale(x_te_raw), y_test=y_te,
        ood=ood, num_classes=8,
        meta={"source": "sklearn.datasets.load_digits", "id_classes": list(range(8)), "pixel_range": [-1, 1]},
    )


def minmax_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (min, range) from ID training data; constant features get range 1."""
    lo, hi = x.min(axis=0), x.max(axis=0)
    rng = np.where(hi - lo > 0, hi - lo, 1.0)
    return lo, rng


def load_tabular_dataset(seed: int = 0, n_samples: int = 2310, n_ood: int = 300) -> OODDataset:
    x, y = make_classification(
        n_samples=n_samples, n_features=18, n_informative=12, n_redundant=3, n_repeated=0, n_classes=7,
        n_clusters_per_class=1, class_sep=2.5, flip_y=0.0, random_state=seed,
    )
    x = x.astype(np.float32)
    held = 6
    idm = y != held
    x_tr, y_tr, x_va, y_va, x_te, y_te = stratified_split(x[idm], y[idm].astype(np.int64), (0.8, 0.1, 0.1), seed)
    lo, rg = minmax_fit(x_tr)
    sc = lambda v: ((v - lo) / rg).astype(np.float32)
    rng = np.random.default_rng(seed + 2000)
    ood = {
        "held-out": OODSet(sc(x[~idm]), NATURAL),
        "noise": OODSet(rng.standard_normal((n_ood, 18)).astype(np.float32), NON_NATURAL),
        "constant": OODSet(constant_set(n_ood, (18,), rng, low=-5.0, high=5.0), NON_NATURAL),
    }
    return OODDataset(
        name="tabular", kind="tabular",
        x_train=sc(x_tr), y_train=y_tr, x_val=sc(x_va), y_val=y_va, x_test=sc(x_te), y_test=y_te,
        ood=ood, num_classes=6,
        meta={"source": "sklearn.datasets.make_classification (Segment stand-in)", "held_out_class": held},
    )

