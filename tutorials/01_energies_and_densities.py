# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Chapter 01 — Energies and densities: a classifier is an energy-based model
#
# *ebm_ood tutorials.* Run as a script: `python tutorials/01_energies_and_densities.py`
# (add `EBM_OOD_FAST=1` for a 10-second version). To open it as a notebook, convert it with
# jupytext (`pip install jupytext`, then `jupytext --to ipynb tutorials/01_energies_and_densities.py`);
# jupytext is not a dependency of `ebm_ood`. Figures go to `$EBM_OOD_FIGURES` (default `tutorials/figures/`).
#
# **What you will learn.**
# 1. What an energy-based model (EBM) is: a density written as `exp(-E(x)) / Z` (Elflein Eq. 1).
# 2. How every softmax classifier already defines one: its logits give a joint energy `E(x, y)` and a
#    marginal energy `E(x) = -logsumexp_y f(x)[y]` (Elflein Eq. 2–3, the "JEM" reading of Grathwohl et al.).
# 3. How to compute those energies with `ebm_ood.energy`, and how to check them numerically.
#
# **Why this matters for OOD detection.** An out-of-distribution (OOD) detector needs a number that is
# small on the training distribution and large elsewhere. A density does that by definition, and an
# energy is a density with its normalising constant left out: *low energy = in-distribution*. Every
# detector in `ebm_ood` returns an energy-like score, higher = more OOD.

# %%
import math

import numpy as np
import torch

from ebm_ood.density import grid_log_normalizer
from ebm_ood.energy import class_log_probabilities, energy_from_logits, joint_energy
from ebm_ood.methods.ce import CEClassifier, CEConfig
from ebm_ood.nn import MLP
from ebm_ood.training import TrainConfig
from ebm_ood.plumbing.tutorial import FAST, save_figure, setup

plt = setup(seed=0)   # tensors here are tiny (N x 2): thread hand-offs would cost more than the work


# %% [markdown]
# ## 1. An energy defines a density (Elflein Eq. 1)
#
# Any function `E_θ(x)` that is bounded below and grows fast enough defines a probability density
#
# $$p_\theta(x) = \frac{\exp(-E_\theta(x))}{Z(\theta)}, \qquad Z(\theta) = \int \exp(-E_\theta(x))\,dx. \tag{Elflein Eq. 1}$$
#
# The constant `Z(θ)` is what makes EBMs hard to *train* (it is an integral over all inputs), but it is
# the same for every `x`, so comparing `E(x)` between two inputs compares their densities. That is all an
# OOD detector needs.
#
# The simplest example: `E(x) = ½ x²` in one dimension. Its normalised density should be the standard
# normal, `Z = √(2π)`. We check that with numerical quadrature (the trapezoid rule) — no `ebm_ood` call is
# needed for this one, it is the definition itself.

# %%
xs = np.linspace(-12.0, 12.0, 4001)               # exp(-72) is far below float64's resolution of 1
energy_1d = 0.5 * xs**2                           # E(x) = ½ x²
Z = np.trapezoid(np.exp(-energy_1d), xs) if hasattr(np, "trapezoid") else np.trapz(np.exp(-energy_1d), xs)
density = np.exp(-energy_1d) / Z                  # Eq. 1
print(f"Z by quadrature = {Z:.10f},  sqrt(2 pi) = {math.sqrt(2 * math.pi):.10f}")

# check: the normalised energy is N(0, 1), pointwise
gauss = np.exp(-0.5 * xs**2) / math.sqrt(2 * math.pi)
assert abs(Z - math.sqrt(2 * math.pi)) < 1e-8
assert np.max(np.abs(density - gauss)) < 1e-9

# the package's `grid_log_normalizer` (ebm_ood/density.py) sums exp(-E) on a grid the same way, in 1 to 3 D
log_z = grid_log_normalizer(lambda x: 0.5 * (x**2).sum(1), [-12.0], [12.0], n=4000)
print(f"log Z by grid_log_normalizer = {log_z:.10f},  log sqrt(2 pi) = {0.5 * math.log(2 * math.pi):.10f}")
assert abs(log_z - 0.5 * math.log(2 * math.pi)) < 1e-8

# %% [markdown]
# ## 2. A classifier is an EBM (Elflein Eq. 2–3)
#
# A classifier with logits `f_θ(x) ∈ R^C` is usually read only through its softmax
#
# $$p_\theta(y\mid x) = \frac{\exp(f_\theta(x)[y])}{\sum_{y'} \exp(f_\theta(x)[y'])}. \tag{Elflein Eq. 2}$$
#
# Grathwohl et al. (2020, "JEM") point out that the same logits also define a *joint* energy
# `E(x, y) = -f_θ(x)[y]`, i.e. `p(x, y) = exp(f(x)[y]) / Z`. Summing over `y` gives a density over inputs:
#
# $$p_\theta(x) = \sum_y p_\theta(x, y) = \frac{\sum_y \exp(f_\theta(x)[y])}{Z(\theta)}
#   \quad\Longleftrightarrow\quad E_\theta(x) = -\operatorname{logsumexp}_y f_\theta(x)[y]. \tag{Elflein Eq. 3}$$
#
# Dividing the joint by the marginal, `Z` cancels and we get back Eq. 2:
# `log p(y|x) = log p(x, y) - log p(x) = E(x) - E(x, y)`. In other words the softmax throws away exactly one
# number per input — `logsumexp f(x)` — and that number is the energy. The *baseline CE* detector of
# Elflein et al. (and the "energy score" of Liu et al. 2020) uses it as the OOD score.
#
# In `ebm_ood.energy`:
# * `energy_from_logits(logits)` — `E(x)` (Eq. 3; with `temperature=T` it is `-T logsumexp(f/T)`),
# * `joint_energy(logits, y)` — `E(x, y) = -f(x)[y]`,
# * `class_log_probabilities(logits)` — `log p(y|x)` (Eq. 2).
#
# ### Data: three Gaussian blobs in 2-D
# Two dimensions so that we can draw the energy as a landscape.

# %%
n_per_class = 150 if FAST else 400
centres = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]], dtype=np.float32)   # (C, 2)
rng = np.random.default_rng(0)
x_train = np.concatenate([c + 0.6 * rng.standard_normal((n_per_class, 2)) for c in centres]).astype(np.float32)
y_train = np.repeat(np.arange(3), n_per_class)                                  # (3 n,)
print("training set:", x_train.shape, "classes:", np.bincount(y_train))

# %% [markdown]
# ### Train a classifier with the library
# `CEClassifier` is the cross-entropy baseline of `ebm_ood.methods.ce`. We hand it a small MLP
# (`ebm_ood.nn.MLP`, the tabular network of the paper with fewer/narrower layers) and a short schedule.
# It holds out 10 % of the data for model selection by validation accuracy.

# %%
steps = 150 if FAST else 600
config = CEConfig(train=TrainConfig(steps=steps, batch_size=64, lr=3e-3, eval_every=50, progress=False))
clf = CEClassifier(config, net=MLP(in_dim=2, out_dim=3, width=32, depth=3), seed=0)
clf.fit(x_train, y_train)
print(f"validation accuracy: {clf.val_accuracy_:.3f}")

# %% [markdown]
# ### The energies of the trained classifier
# `clf.logits(x)` gives the `(N, C)` logits; the three functions above turn them into energies.

# %%
x_check = torch.as_tensor(x_train[:256])                                         # (N, 2)
logits = torch.as_tensor(clf.logits(x_check))                                    # (N, C)
e_x = energy_from_logits(logits)                                                 # (N,)   Eq. 3
log_p_y = class_log_probabilities(logits)                                        # (N, C) Eq. 2
e_xy = torch.stack([joint_energy(logits, torch.full((len(logits),), c)) for c in range(3)], dim=1)  # (N, C)

# check 1: Bayes' rule in energies, log p(y|x) = E(x) - E(x, y), for every class
assert torch.allclose(log_p_y, e_x[:, None] - e_xy, atol=1e-5)
# check 2: against an independent float64 numpy computation of Eq. 2 and Eq. 3
f = logits.double().numpy()
m = f.max(axis=1, keepdims=True)
lse = (m + np.log(np.exp(f - m).sum(axis=1, keepdims=True)))[:, 0]             # stable log-sum-exp
assert np.allclose(e_x.numpy(), -lse, atol=1e-5)
assert np.allclose(log_p_y.exp().numpy(), np.exp(f) / np.exp(f).sum(axis=1, keepdims=True), atol=1e-6)
print("checks passed: log p(y|x) = E(x) - E(x, y), and Eq. 2-3 match numpy")

# %% [markdown]
# ## 3. The energy landscape
# We evaluate `E(x)` and `max_y p(y|x)` on a grid. Left: the energy, with the training data on top. Right:
# the classifier's confidence.

# %%
n_grid = 80 if FAST else 160
lim = 7.0
g1, g2 = np.meshgrid(np.linspace(-lim, lim, n_grid), np.linspace(-lim, lim, n_grid))
grid = np.stack([g1.ravel(), g2.ravel()], axis=1).astype(np.float32)           # (G, 2)
grid_logits = torch.as_tensor(clf.logits(grid))                                  # (G, C)
grid_energy = energy_from_logits(grid_logits).numpy().reshape(n_grid, n_grid)
grid_conf = class_log_probabilities(grid_logits).exp().amax(dim=1).numpy().reshape(n_grid, n_grid)

if plt is not None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    fig.subplots_adjust(wspace=0.35)
    im = axes[0].contourf(g1, g2, grid_energy, levels=30, cmap="viridis")
    fig.colorbar(im, ax=axes[0], label="E(x) = -logsumexp f(x)")
    axes[0].set_title("energy of a classifier (Elflein Eq. 3)")
    im = axes[1].contourf(g1, g2, grid_conf, levels=np.linspace(1 / 3, 1, 15), cmap="magma")
    fig.colorbar(im, ax=axes[1], label="max_y p(y|x)")
    axes[1].set_title("confidence of the same classifier (Eq. 2)")
    for ax in axes:
        ax.scatter(x_train[:, 0], x_train[:, 1], c=y_train, s=3, cmap="tab10", vmax=9, alpha=0.6)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    save_figure(fig, "01_classifier_energy.png")

# %% [markdown]
# ### What the picture says
# Between the blobs, on the decision boundaries, the energy is high and the confidence low: there the
# logits disagree and `logsumexp` is small. So far this looks like a density. But look at the corners: with
# LeakyReLU layers the logits grow linearly with `‖x‖`, so `logsumexp f(x)` grows too and the energy
# becomes *lower* far from the data than on it — the classifier was never told what "no data here" looks
# like, and its confidence goes to 1 in every direction. Let us measure it.

# %%
far = np.concatenate([r * np.stack([np.cos(a), np.sin(a)], 1) for r in (20.0, 50.0)
                      for a in [np.linspace(0, 2 * np.pi, 64, endpoint=False)]]).astype(np.float32)
e_data = clf.score(x_train)          # the detector's score is E(x) itself (higher = more OOD)
e_far = clf.score(far)
print(f"mean E(x) on the training data: {e_data.mean():8.2f}")
print(f"mean E(x) at radius 20 and 50: {e_far.mean():8.2f}  (fraction below the data's median: "
      f"{np.mean(e_far < np.median(e_data)):.2f})")
# check: far from the data most energies are *below* the typical energy on the data (the failure above;
# it holds for this seed; exercise 2 asks what it does to Z)
assert np.mean(e_far < np.median(e_data)) > 0.5
# the same on the box [-50, 50]² of exercise 2, computed like grid_energy (float32, the network's dtype)
box = np.stack([m.ravel() for m in np.meshgrid(np.linspace(-50, 50, 101), np.linspace(-50, 50, 101))], 1)
e_box = energy_from_logits(torch.as_tensor(clf.logits(box.astype(np.float32)))).numpy()
with np.errstate(over="ignore"):
    peak = np.exp(-e_box.min())
print(f"lowest E(x) on [-50, 50]²: {e_box.min():.0f} ({e_box.dtype});  exp(-E) there: {peak}")
# check: below -88.72 = -log(float32 max), exp(-E) of a float32 energy overflows to inf (exercise 2 meets it)
assert e_box.dtype == np.float32 and e_box.min() < -np.log(np.finfo(np.float32).max) and np.isinf(peak)
# check: the detector's score is exactly Eq. 3 on the logits
assert np.allclose(e_data, energy_from_logits(torch.as_tensor(clf.logits(x_train))).numpy(), atol=1e-5)

# %% [markdown]
# That is the problem the rest of this course works on. A classifier's energy is a density *only in
# form*: cross-entropy trains `p(y|x)` and leaves `logsumexp f(x)` unconstrained. To make `E(x)` a good
# density we must train the marginal as well — contrastive divergence (chapter 03), score matching (04),
# VERA (05) — and that needs samples from `exp(-E(x))`, which is chapter 02.
#
# ### Summary
# * Elflein Eq. 1: `p(x) = exp(-E(x)) / Z`; low energy = in-distribution.
# * Elflein Eq. 2–3: logits give `E(x, y) = -f(x)[y]` and `E(x) = -logsumexp f(x)`; the softmax is
#   `E(x) - E(x, y)` in log space.
# * `ebm_ood.energy` computes all three; `CEClassifier.score` is the Eq. 3 energy.
#
# ## Exercises
# Each exercise has a check, `ch01.check_exercise_k(answer)` (imported in the last cell), that recomputes the
# answer independently and says what is wrong. Reference solutions: `tutorials/exercises/solutions/ch01.py`.
# 1. **Temperature.** Write `energy_at_temperature(logits, T)` returning `-T logsumexp(f/T)` (N,), redraw the
#    landscape for `T = 0.1, 1, 10`, and convince yourself that it tends to `-max_y f(x)[y]` (the max-logit
#    score) as `T → 0`. Check: `ch01.check_exercise_1(energy_at_temperature)` (compared with numpy and
#    with the library's `ebm_ood.energy.energy_from_logits`).
# 2. **Normalise the 2-D energy.** Write `z_on_grid(energy, g1, g2)`: `Z = ∫ exp(-E(x)) dx` by quadrature over
#    an `np.meshgrid` box (check: `ch01.check_exercise_2(z_on_grid)`, on energies with a known `Z`). Then
#    apply it to `grid_energy` on `[-7, 7]²` and to a grid on `[-50, 50]²`: what happens to `Z`, and what does
#    that say about Eq. 1 for this classifier? (The energies are float32, the network's dtype. On
#    `[-50, 50]²` the lowest one is below -88.7 = -log of float32's largest number, printed above, so
#    `exp(-E)` overflows to `inf` and so does the quadrature. Convert to float64 first, or compute
#    `log Z = logsumexp(-E) + log(dx1·dx2)`, and watch `Z` grow with the box.)
# 3. **A shift that changes nothing.** Add a constant `b` to every logit. By how much do `E(x)`, `E(x, y)` and
#    `log p(y|x)` change, as a function of `b`? Check: `ch01.check_exercise_3(changes)` with
#    `changes(b)` returning `{"E(x)": ..., "E(x,y)": ..., "log p(y|x)": ...}` (tried at values of `b` the check draws).
#    Why does that mean cross-entropy training cannot pin down the energy?


# %%
# The exercise checks: a script finds tutorials/exercises/ beside it; a notebook finds it when run in tutorials/.
from exercises import ch01  # noqa: E402

print("exercise checks:", ", ".join(f"ch01.{name}(answer)" for name in dir(ch01) if name.startswith("check_")))
