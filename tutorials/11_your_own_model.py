# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Chapter 11 — OOD detection for your own model
#
# *ebm_ood tutorials.* Run as a script: `python tutorials/11_your_own_model.py` (add `EBM_OOD_FAST=1` for a
# 30-second version). Figures go to `$EBM_OOD_FIGURES` (default `tutorials/figures/`).
#
# **What you will learn.**
# 1. How to hand a classifier you trained yourself to `ebm_ood`: `Backbone(model, feature_map=..., head=...)`.
# 2. Which detector needs which piece of the network (features, logits, the linear head's `W` and `b`), and
#    what the error says when a piece is missing.
# 3. How to fit detectors from a DataLoader, read the evaluation table, turn scores into OOD flags at a
#    threshold fixed on ID data, and save a fitted detector without pickle.
#
# **The idea in one sentence.** Every post-hoc detector (and HEAT) only reads the network's penultimate
# features `z` and its last linear layer `f(z) = W z + b`; once `Backbone` knows where those are, any
# detector works on raw images through `FeatureSpaceDetector`.

# %%
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

import ebm_ood
from ebm_ood.data import get_dataset
from ebm_ood.plumbing.tutorial import FAST, save_figure, setup

plt = setup(seed=0)

# %% [markdown]
# ## 1. A small CNN trained the usual way
#
# Nothing here is specific to `ebm_ood`: two 3×3 convolutions, global average pooling, a linear head,
# cross-entropy, Adam. The embedded digits dataset has the digits 0–7 as in-distribution (ID) classes;
# `d.ood` holds the OOD sets (the digits 8–9, image patches, noise, constant images, …).

# %%
d = get_dataset("digits")


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 8):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())   # (N, 32, 8, 8)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        return self.fc(self.convs(x).mean(dim=(2, 3)))


model = SmallCNN(d.num_classes)
train = torch.utils.data.TensorDataset(torch.as_tensor(d.x_train), torch.as_tensor(d.y_train))
loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True)
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
epochs = 4 if FAST else 10
for epoch in range(epochs):
    for x, y in loader:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
model.eval()
with torch.no_grad():
    accuracy = float((model(torch.as_tensor(d.x_test)).argmax(1).numpy() == d.y_test).mean())
print(f"test accuracy after {epochs} epochs: {100 * accuracy:.1f} %")

# %% [markdown]
# ## 2. The network as a feature extractor
#
# HEAT (§3) reads two kinds of features from the last feature map `F` (N, C, H, W): the average-pooled
# `z = mean_{h,w} F` (what the head sees) and the std-pooled `z_std = std_{h,w} F` (second-order
# features, for the GMM-std prior). Giving `feature_map=model.convs` provides both; `head=model.fc` gives
# the logits and, being an `nn.Linear`, its `W` (C, D) and `b` (C,). A network with no feature map would
# pass `features=` (a callable `x -> (N, D)`) instead. On the first batch the backbone checks that
# `head(average-pool(feature_map(x)))` equals `model(x)`: a model that max-pools or flattens its feature
# map is an error there, and `features=` (exactly what the head receives) is the fix.
#
# | detector | needs |
# |---|---|
# | Mahalanobis, SSD+, KNN, HEAT's GMM prior | features |
# | MSP, MaxLogit, Energy, HEAT's EL prior | logits: `head=` any callable `z -> logits` |
# | ViM, DICE, ReAct | the linear head's `W`, `b`: `head=` an `nn.Linear` |
# | ODIN | the network itself (gradients w.r.t. the input): `ebm_ood.ODIN(model)` |

# %%
bb = ebm_ood.Backbone(model, feature_map=model.convs, head=model.fc)
f = bb.extract(d.x_test)
with torch.no_grad():
    fmap = model.convs(torch.as_tensor(d.x_test)).flatten(2)                 # (N, 32, 64)
print("z:", f.z.shape, " z_std:", f.z_std.shape, " logits:", f.logits.shape)
assert np.allclose(f.z, fmap.mean(2).numpy(), atol=1e-6)
assert np.allclose(f.z_std, fmap.std(2, unbiased=False).numpy(), atol=1e-6)
with torch.no_grad():
    assert np.allclose(f.logits, model(torch.as_tensor(d.x_test)).numpy(), atol=1e-5)

# %% [markdown]
# Without `head=`, the model above has no attribute the backbone can use as a head (its linear layer is
# called `fc`), and without `feature_map=` / `features=` no feature extractor either. Asking for ViM then
# fails once, listing both missing pieces and how to pass them:

# %%
try:
    ebm_ood.ViM.from_backbone(ebm_ood.Backbone(model))
except TypeError as err:
    message = str(err)
print(message)
assert "pass head=model.fc" in message and "feature extractor" in message

# %% [markdown]
# ## 3. Six detectors on the same features
#
# `FeatureSpaceDetector(bb, detector)` extracts features of the raw images and hands them to the detector;
# `which="logits"` hands it the logits instead. `make_heat_detector(bb, "GMM")` is HEAT-GMM: the class
# Gaussian prior of the features corrected by a residual EBM trained with SGLD (chapter 9). All of them are
# fitted from the DataLoader: its `(x, y)` batches carry the labels that Mahalanobis, SSD+ and HEAT need.
# ViM's principal subspace has `D_p = D // 2 = 16` dimensions for these 32-dimensional features. HEAT may
# warn that the class covariance is degenerate: a ReLU channel that is zero on every training image has no
# variance, so HEAT raises the covariance's ridge before sampling from it (and says by how much).

# %%
heat_preset = "quick" if FAST else "default"
detectors = {
    "MSP": ebm_ood.FeatureSpaceDetector(bb, ebm_ood.MSP(), which="logits"),
    "Mahalanobis": ebm_ood.FeatureSpaceDetector(bb, ebm_ood.Mahalanobis()),
    "SSD+": ebm_ood.FeatureSpaceDetector(bb, ebm_ood.SSDPlus()),
    "KNN": ebm_ood.FeatureSpaceDetector(bb, ebm_ood.KNN(k=10)),
    "ViM": ebm_ood.FeatureSpaceDetector(bb, ebm_ood.ViM.from_backbone(bb)),
    "HEAT-GMM": ebm_ood.make_heat_detector(bb, "GMM", preset=heat_preset),
}
for name, det in detectors.items():
    det.fit(loader)
print("fitted:", ", ".join(f"{name} on {det.which}" for name, det in detectors.items()))
assert detectors["ViM"].inner.dim_ == 16

# %% [markdown]
# ## 4. The evaluation table
#
# `evaluate` scores the ID test set and every OOD set once per detector and computes AUROC, AUPR and FPR95
# (the fraction of OOD samples called ID at the threshold that keeps 95 % of the ID test samples; lower is
# better). `groups` splits the OOD sets into near ("natural": digits 8–9, patches) and far ("non-natural":
# noise, constant, out-of-domain); the smoothness sets have their own tag and stay out of the tables.

# %%
ood = {name: s.x for name, s in d.ood.items()}
groups = {name: s.group for name, s in d.ood.items()}
result = ebm_ood.evaluate(detectors, d.x_test, ood, groups=groups)
print(result.markdown(tables=("heat",)))
auroc = {name: float(np.mean([result.metrics[name][s]["auroc"] for s in ood if groups[s] != "smoothness"]))
         for name in detectors}
print("mean AUROC over near and far sets:", {k: round(100 * v, 1) for k, v in auroc.items()})
assert all(0.0 <= v <= 1.0 for v in auroc.values())
msp_oodomain = result.metrics["MSP"]["oodomain"]["auroc"]
print(f"MSP on oodomain: AUROC {100 * msp_oodomain:.1f} %;  HEAT-GMM - Mahalanobis, mean AUROC: "
      f"{100 * (auroc['HEAT-GMM'] - auroc['Mahalanobis']):+.2f} points")

# %% [markdown]
# **Reading the table.** MSP is the worst detector here, at or below chance on average: on `oodomain` (the
# test digits in their raw range [0, 16]) its AUROC is far *below* 50 %. Inputs eight times larger than
# any training image give larger activations, hence larger logits and a *more* confident softmax, so MSP
# calls them the most in-distribution of all; the feature-space detectors see the same activations as far
# from every class and flag them. HEAT-GMM matches Mahalanobis to within a point: its prior is the class
# Gaussian Mahalanobis uses (a soft minimum of the same squared distances), and the residual `E_θ`, held
# near `±1/λ` by the control loss, barely reorders the samples on these features (chapter 9, section 3).

# %%
assert auroc["MSP"] == min(auroc.values()) and auroc["MSP"] < 0.55 and msp_oodomain < 0.2
assert abs(auroc["HEAT-GMM"] - auroc["Mahalanobis"]) < 0.01

if plt is not None:
    s = result.scores["KNN"]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    bins = np.linspace(*np.percentile(np.concatenate(list(s.values())), [0.5, 99.5]), 40)
    ax.hist(s["id"], bins, density=True, alpha=0.6, label="ID test")
    for o in ("digits-89", "patches", "noise"):
        ax.hist(s[o], bins, density=True, histtype="step", label=o)
    ax.set_xlabel("KNN score (higher = more OOD)"), ax.legend(fontsize=7)
    save_figure(fig, "11_knn_scores.png")

# %% [markdown]
# ## 5. From scores to decisions, and back from disk
#
# Every score is oriented **higher = more OOD**; for HEAT (and the energy-based detectors) it is an energy,
# `-log p(x)` up to a constant, while MSP, KNN, Mahalanobis, SSD+ and ViM are probabilities or distances
# read the same way (README, "Your own model", has the table). `set_threshold(x_id,
# tpr=0.95)` fixes `t = quantile(score(x_id), 0.95)` on held-out ID data (the validation split: the
# training data would give optimistic, too low scores); `predict(x)` then flags `score(x) > t`.
# `ebm_ood.save` writes tensors and a JSON description behind a SHA-256 header, read back with
# `torch.load(weights_only=True)` and decoded from allow-lists only; since `SmallCNN` is our class, not one
# of the package's, `load` needs a factory to rebuild it.

# %%
knn = detectors["KNN"].set_threshold(d.x_val, tpr=0.95)
s_val = knn.score(d.x_val)
assert np.array_equal(knn.predict(d.x_val), s_val > np.quantile(s_val, 0.95))
for name in ("digits-89", "noise"):
    print(f"{name:10s}: {100 * knn.predict(d.ood[name].x).mean():5.1f} % flagged OOD")
print(f"ID test   : {100 * knn.predict(d.x_test).mean():5.1f} % flagged OOD")

with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "knn.pt"
    ebm_ood.save(knn, path)
    same = ebm_ood.load(path, modules={"SmallCNN": lambda: SmallCNN(d.num_classes)})
assert np.array_equal(same.score(d.x_test), knn.score(d.x_test)) and same.threshold_ == knn.threshold_
print("reloaded:", same)

# %% [markdown]
# ## Exercises
# Exercises 1–3 have a check, `ch11.check_exercise_k(answer)` (imported in the last cell), that compares your
# function with the library on data it draws and says what is wrong, never the expected numbers. Reference
# solutions: `tutorials/exercises/solutions/ch11.py`. Exercises 4–6 explore the chapter's model; their checks
# are one line each.
# 1. **Implement it: Mahalanobis.** Write `mahalanobis(z_train, y_train, z_test)`: class means, one shared
#    maximum-likelihood covariance, and the smallest squared distance `min_c (z - μ_c)ᵀ Σ⁻¹ (z - μ_c)`. Check:
#    `ch11.check_exercise_1(mahalanobis)` (against `ebm_ood.Mahalanobis`). Run it on `bb.extract(...).z`.
# 2. **Implement it: the threshold.** Write `threshold_and_flags(score_val, score_new, tpr)` returning the
#    threshold that keeps `tpr` of the held-out ID scores and the flags `score_new > t`. Check:
#    `ch11.check_exercise_2(threshold_and_flags)` (against `set_threshold` / `predict`).
# 3. **Implement it: MSP.** Write `msp(logits)`, `-max_y softmax(f)_y`, finite for logits of size 1e4. Check:
#    `ch11.check_exercise_3(msp)` (against `ebm_ood.MSP`). Why do confident logits on far-away inputs put MSP
#    near chance on the non-natural sets of the table above?
# 4. **MaxLogit and ReAct.** Add `ebm_ood.MaxLogit()` (on logits) and `ebm_ood.ReAct.from_backbone(bb)` to the
#    table. Check: ReAct with `percentile=100` clips at the largest training activation, so on the training
#    images it clips nothing and its scores are the energy of the logits:
#    `np.allclose(react.score(d.x_train), -scipy.special.logsumexp(bb.extract(d.x_train).logits, axis=1), atol=1e-4)`.
# 5. **Std-pooled features.** Fit `ebm_ood.FeatureSpaceDetector(bb, ebm_ood.Mahalanobis(), which="z_std")` and
#    compare its AUROC with Mahalanobis on `z`. Check: the features it reads, `bb.extract(x).z_std`, equal
#    `model.convs(x).flatten(2).std(2, unbiased=False)`.
# 6. **No feature map.** Rebuild the backbone with `features=lambda x: model.convs(x).mean(dim=(2, 3))` and no
#    `feature_map`. Which detectors still work, and what does `FeatureSpaceDetector(bb, ebm_ood.KNN(),
#    which="z_std")` say? Check: the KNN scores on `z` are the same as with `feature_map=`.


# %%
# The exercise checks: a script finds tutorials/exercises/ beside it; a notebook finds it when run in tutorials/.
from exercises import ch11  # noqa: E402

print("exercise checks:", ", ".join(f"ch11.{name}(answer)" for name in dir(ch11) if name.startswith("check_")))
