# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Chapter 06 — Normalizing flows: exact likelihoods, and why they are not enough for OOD detection
#
# *ebm_ood tutorials.* Run as a script: `python tutorials/06_normalizing_flows.py`
# (add `EBM_OOD_FAST=1` for a quick version). To open it as a notebook, convert it with jupytext
# (`jupytext --to ipynb tutorials/06_normalizing_flows.py`). Figures go to `$EBM_OOD_FIGURES`
# (default `tutorials/figures/`).
#
# **What you will learn.**
# 1. The change-of-variables formula, and how a flow computes `log p(x)` exactly.
# 2. Radial flows (the Elflein baseline on tabular data): a closed-form log-det, a constraint that
#    keeps every layer invertible, and a check that the learned density integrates to one.
# 3. Glow (the baseline on images): dequantisation, logit, squeeze, actnorm, 1×1 convolutions,
#    affine couplings, split priors — and bits per dimension.
# 4. The finding that motivates the EBM papers (Nalisnick et al. 2019; Kirichenko et al. 2020):
#    **a flow's likelihood follows smoothness rather than meaning**. Here, a flow trained on photo
#    patches gives flat (constant) images *higher* likelihood than its own held-out test patches, and ranks
#    smoothed noise as more likely the smoother it is.
#
# **Why this matters for OOD detection.** A density model gives the most natural OOD score:
# `-log p(x)`, high where the data are rare. Flows give that density *exactly*, with no
# normalising-constant trouble (unlike EBMs, chapter 01). So if any density-based detector
# worked, it would be a flow. Elflein et al. use flows as the baseline that EBMs have to beat.

# %%
import math

import numpy as np
import torch
from scipy import stats
from sklearn.datasets import load_sample_images

from ebm_ood.data import get_dataset
from ebm_ood.methods.ce import CEClassifier, ce_config
from ebm_ood.methods.flows import NormalizingFlowDetector, flow_config
from ebm_ood.metrics import aupr_in, auroc
from ebm_ood.plumbing.plotting import ecdf_axes
from ebm_ood.plumbing.tutorial import FAST, save_figure, setup

plt = setup(seed=0)   # small tensors (8x8 images, batches of 64): thread hand-offs cost more than the work


def with_steps(cfg, steps: int):
    """A flow config trained for ``steps`` steps (in place of any epochs; no progress bar). At the default
    size the Glows of this chapter train at batch 64 without warm-up, validating every 100 steps (the
    `default` preset instead counts 50 epochs at batch 32 with a warm-up of at most 1/4 of the run)."""
    cfg.train.steps, cfg.train.epochs, cfg.train.progress = steps, None, False
    if not FAST and cfg.train.warmup:
        cfg.train.batch_size, cfg.train.warmup, cfg.train.eval_every = 64, 0, 100
    return cfg


# %% [markdown]
# ## 1. Change of variables
#
# Take an invertible, differentiable map `f` from data `x ∈ R^D` to a latent `z = f(x)` with a simple
# density, here the standard normal `N(0, I)`. Probability mass is conserved, so
#
# `log p(x) = log N(f(x); 0, I) + log |det ∂f/∂x|`.
#
# A flow is a stack of layers `f = f_n ∘ … ∘ f_1`; the log-dets add up. Two things must be cheap: each layer's
# log-det, and (for sampling) its inverse. Every layer in `ebm_ood.methods.flows` returns its output
# *and* its log-det in closed form; the tests compare each one with `log|det|` of the full Jacobian
# computed by autograd.
#
# ## 2. Radial flows (Rezende & Mohamed 2015)
#
# One radial layer pulls points towards (or pushes them away from) a centre `x₀`:
#
# `y = x + β h(α, r)(x - x₀)`,  `r = ‖x - x₀‖`,  `h = 1/(α + r)`,
#
# `log|det J| = (d - 1) log(1 + βh) + log(1 + βh + β h' r)`,  `h' = -h²`.
#
# The Jacobian is `(1 + βh) I + βh' (x - x₀)(x - x₀)ᵀ / r`: a multiple of the identity plus a rank-one
# term, hence the formula. It is invertible when `β ≥ -α`; the parametrisation
# `α = softplus(α')`, `β = -α + softplus(β')` makes that true for *every* value of the free parameters.
#
# The stack maps data → base, as in the authors' code, so `log p(x)` needs only forward passes. A single
# radial layer can also be inverted in closed form (a quadratic in `r`), which gives us sampling.
#
# Let us fit 20 radial layers to a 2-D, two-bump data set and look at the density.

# %%
def two_bumps(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[-1.5, 0.5], [1.0, -0.5]])
    return (centres[rng.integers(0, 2, n)] + 0.35 * rng.standard_normal((n, 2))).astype(np.float32)


toy_cfg = with_steps(flow_config("quick", "tabular"), 100 if FAST else 400)
toy_cfg.train.batch_size = 128
toy_cfg.train.lr = 1e-2   # 10x the paper's 1e-3: radial flows learn slowly, and this is a 2-D toy
toy = NormalizingFlowDetector(toy_cfg, seed=0).fit(two_bumps(800, 0), validation=two_bumps(200, 1))

# The best any model can do is the true density's own mean log-likelihood on the same validation points.
val = two_bumps(200, 1)
true_ll = np.mean(np.log(0.5 * stats.multivariate_normal([-1.5, 0.5], 0.35**2).pdf(val)
                         + 0.5 * stats.multivariate_normal([1.0, -0.5], 0.35**2).pdf(val)))
print(f"radial flow: mean validation log-likelihood {toy.val_log_likelihood_:.3f} nats "
      f"(the true density: {true_ll:.3f})")

# Quadrature: the density of a flow is normalised by construction. Check it on a fine grid.
grid_1d = np.linspace(-9, 9, 301)
gx, gy = np.meshgrid(grid_1d, grid_1d)
with torch.no_grad():
    flow64 = toy.flow_.double()
    density = torch.exp(flow64.log_prob(torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], 1)))).numpy().reshape(gx.shape)
    samples = flow64.sample(500, generator=torch.Generator().manual_seed(0)).numpy()
    toy.flow_.float()
mass = np.trapezoid(np.trapezoid(density, grid_1d, axis=1), grid_1d)
print(f"∫ p(x) dx over [-9, 9]² = {mass:.5f}")

if plt is not None:
    fig, ax = plt.subplots(1, 2, figsize=(9, 4))
    inner = (np.abs(gx) < 3.5) & (np.abs(gy) < 3.5)
    ax[0].contourf(gx, gy, np.where(inner, density, np.nan), levels=30)
    ax[0].scatter(*two_bumps(300, 2).T, s=2, c="w")
    ax[0].set(title="radial flow density p(x), data in white", xlim=(-3.5, 3.5), ylim=(-3.5, 3.5))
    ax[1].scatter(*samples.T, s=3)
    ax[1].set(title="samples: z ~ N(0, I) through the inverse stack", xlim=(-3.5, 3.5), ylim=(-3.5, 3.5))
    save_figure(fig, "06_radial_flow_2d.png")

# %% [markdown]
# Twenty radial layers can only bend space around twenty centres, so the fit is smooth and a little
# blurred. That is the tabular baseline of Elflein et al. On the embedded 18-feature data set the same
# detector runs in `ebm-ood benchmark --methods NF --dataset tabular`.
#
# ## 3. Glow on images
#
# Pixel values are discrete (the digits have `Q = 17` grey levels, spaced `δ = 1/8` after scaling to
# `[-1, 1]`). A continuous density on discrete data can grow without bound, so we **dequantise**:
# `x̃ = x + (u - ½)δ` with `u ~ U(0, 1)` during training (at scoring time `u = ½`, the bin centre, so
# scores are deterministic). Then the **logit** maps the bounded range to `R^D`,
# `y = logit(0.05 + 0.9 v)` with `v` the position in `[0, 1]`; its log-det is
# `Σ [softplus(y) + softplus(-y)] + D log(0.9 / (Qδ))`.
#
# Glow then repeats, for each of `L` levels: **squeeze** (2×2 pixels → 4 channels), `K` steps of
# **actnorm** (per-channel affine, initialised from data) → **invertible 1×1 convolution**
# (`log|det| = H·W·log|det W|`) → **affine coupling** (half the channels predict a scale and shift
# for the other half: `y_b = x_b · exp(s) + t`, `log|det| = Σ s`), and finally **splits** off half the
# channels with a Gaussian prior whose mean and scale depend on the other half.
#
# Likelihoods of images are usually quoted in **bits per dimension**,
# `bpd = -(log p(x̃) + D log δ)/(D log 2)`: the number of bits an ideal code built on the model needs
# per pixel. A uniform model over the 17 levels needs `log2 17 ≈ 4.09`.

# %%
digits = get_dataset("digits")
glow_steps = 40 if FAST else 600
glow = NormalizingFlowDetector(with_steps(flow_config("quick" if FAST else "default", "image"), glow_steps), seed=0)
glow.fit(digits.x_train, validation=digits.x_val)
bpd = glow.bits_per_dim(digits.x_test).mean()
print(f"Glow on digits: L={glow.levels_}, K={glow.config.glow.steps}, δ={glow.delta_}; "
      f"test {bpd:.3f} bits/dim (uniform over 17 levels: {math.log2(17):.3f})")

# A check you can run: the inverse pass recovers the input (up to float32 round-off).
with torch.no_grad():
    x_t = torch.as_tensor(digits.x_test[:16])
    eps, _ = glow.flow_(x_t)
    round_trip = (glow.flow_.inverse(eps) - x_t).abs().max().item()
print(f"max |f⁻¹(f(x)) - x| = {round_trip:.2e}")

if plt is not None:
    with torch.no_grad():
        samp = glow.flow_.sample(16, temperature=0.7, generator=torch.Generator().manual_seed(0)).clamp(-1, 1).numpy()
    fig, ax = plt.subplots(2, 16, figsize=(12, 1.8))
    for i in range(16):
        ax[0, i].imshow(digits.x_test[i, 0], cmap="gray", vmin=-1, vmax=1)
        ax[1, i].imshow(samp[i, 0], cmap="gray", vmin=-1, vmax=1)
        ax[0, i].axis("off"), ax[1, i].axis("off")
    ax[0, 0].set_title("test digits (top) and Glow samples at temperature 0.7 (bottom)", loc="left", fontsize=9)
    save_figure(fig, "06_glow_samples.png")

# %% [markdown]
# ## 4. Glow as an OOD detector on digits, next to the CE baseline
#
# The score is `-log p(x)`. We compare it with the cross-entropy classifier's energy (the CE baseline
# of Elflein et al.) on the same OOD sets, with AUPR-In (ID = positive, as in the paper's text).

# %%
ce = CEClassifier(ce_config("quick" if FAST else "default", "image"), seed=0)
ce.config.train.progress = False
ce.fit(digits.x_train, digits.y_train, validation=(digits.x_val, digits.y_val))

nf_id, ce_id = glow.score(digits.x_test), ce.score(digits.x_test)
nf_scores = {}
print(f"{'OOD set':12s} {'group':12s} {'NF AUPR-In':>10s} {'CE AUPR-In':>10s} {'NF AUROC':>9s}")
for name, ood in digits.ood.items():
    s_nf, s_ce = glow.score(ood.x), ce.score(ood.x)
    nf_scores[name] = s_nf
    print(f"{name:12s} {ood.group:12s} {100 * aupr_in(nf_id, s_nf):10.1f} {100 * aupr_in(ce_id, s_ce):10.1f} "
          f"{100 * auroc(nf_id, s_nf):9.1f}")

if plt is not None:
    fig, ax = plt.subplots(figsize=(8, 4))
    ecdf_axes(ax, {"ID test digits 0-7": nf_id, **{k: nf_scores[k] for k in ["digits-89", "patches", "constant",
                                                                            "smooth-4", "noise"]}},
              xlabel="-log p(x) (nats)")
    ax.set_title("Glow trained on digits: a curve further right = less likely")
    save_figure(fig, "06_glow_digits_ecdf.png")

# %% [markdown]
# On 8×8 digits Glow does well: digits are almost binary (most pixels at exactly -1 or +1), so flat
# or noisy images sit far from the data. The near-OOD set `digits-89` is the hard one, where the
# classifier can use what it learned about *classes*. The reverse happens on `oodomain` (un-normalised
# images, values up to 16): they lie outside the flow's support, so the flow flags all of them, while the
# classifier's energy can be *lower* on them than on real digits (its logits grow with the input scale).
# The failure that made flows famous appears when
# the training data are the *complex* ones — CIFAR-10 vs SVHN in Nalisnick et al. Let us build that
# situation: train Glow on natural photo patches and show it flat and smooth images.
#
# ## 5. The failure mode: likelihood follows smoothness
#
# We cut 8×8 grey-scale patches from the two photos bundled with scikit-learn (8-bit, scaled to
# `[-1, 1]`), train Glow on them, and score held-out patches against the non-natural sets of the
# digits data set (constant images, and uniform noise average-pooled over `k×k` blocks: `smooth-k`).

# %%
def photo_patches(n: int, seed: int) -> np.ndarray:
    """``n`` 8x8 grey patches of sklearn's sample photos (downscaled 2x), 8-bit, in [-1, 1]. (n, 1, 8, 8)."""
    rng = np.random.default_rng(seed)
    out = []
    for img in load_sample_images().images:
        g = img.astype(np.float32).mean(axis=2)
        h, w = g.shape[0] // 2 * 2, g.shape[1] // 2 * 2
        g = g[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        i, j = rng.integers(0, g.shape[0] - 8, n // 2), rng.integers(0, g.shape[1] - 8, n // 2)
        out += [g[a : a + 8, b : b + 8] for a, b in zip(i, j)]
    x = np.round(np.stack(out))[:, None] / 127.5 - 1.0
    return x[rng.permutation(len(x))].astype(np.float32)


patches = photo_patches(1200 if FAST else 4000, seed=0)
p_train, p_val, p_test = patches[:-600], patches[-600:-300], patches[-300:]
pglow = NormalizingFlowDetector(with_steps(flow_config("quick" if FAST else "default", "image"), 40 if FAST else 600), seed=0)
pglow.fit(p_train, validation=p_val)
print(f"Glow on photo patches: δ={pglow.delta_:.4f} (8-bit), test {pglow.bits_per_dim(p_test).mean():.3f} bits/dim")

p_id = pglow.score(p_test)
probe = {"digits test (OOD)": digits.x_test, **{k: digits.ood[k].x for k in ["constant", "smooth-4", "smooth-2", "smooth-1"]}}
probe_scores = {k: pglow.score(v) for k, v in probe.items()}
print(f"{'probe set':18s} {'AUROC':>6s} {'median -log p':>14s}   (held-out patches: median {np.median(p_id):.1f})")
for k, s in probe_scores.items():
    print(f"{k:18s} {100 * auroc(p_id, s):6.1f} {np.median(s):14.1f}")
order = sorted(["held-out patches", *probe_scores],
               key=lambda k: np.median(p_id if k == "held-out patches" else probe_scores[k]))
print("most to least likely (median -log p):", " < ".join(order))

if plt is not None:
    fig, ax = plt.subplots(figsize=(8, 4))
    ecdf_axes(ax, {"ID: held-out photo patches": p_id, **{k: probe_scores[k] for k in
                                                          ["constant", "smooth-4", "smooth-2", "smooth-1"]}},
              xlabel="-log p(x) (nats)")
    ax.set_title("Glow trained on photo patches: smoother = further left (more likely)")
    save_figure(fig, "06_glow_patches_ecdf.png")

# %% [markdown]
# Read the last printed line: among the digits data set's non-natural images, the ordering is by smoothness.
# Constant images get the *highest* likelihood — higher than the model's own test patches, an AUROC below
# 50 % — then the smoothed noise, the smoother the more likely (`smooth-4` before `smooth-2`), and pixel
# noise (`smooth-1`) last. Smoothed noise is *not* more likely than the test patches here (its AUROC is at
# or above 50 %) — plausibly because on 8×8 images pooled noise keeps sharp block edges, which photo patches
# rarely have. (The digits themselves are OOD for this model, and it rejects them.)
# Kirichenko et al. (2020) explain it: coupling layers learn to predict a pixel from its neighbours,
# a local, dataset-agnostic skill, and a flat image is the easiest of all to predict. The likelihood
# measures *how predictable the pixels are*, not *whether the image looks like the training data*.
# Elflein et al. ask whether EBMs, which need no invertibility and can discard off-manifold directions,
# escape this; their answer (and chapters 03–05): only partly, unless supervision or architectural
# bottlenecks push them towards semantic features.
#
# ## Exercises
# Each exercise has a check, `ch06.check_exercise_k(answer)` (imported in the last cell), that recomputes the
# answer independently and says what is wrong. Reference solutions: `tutorials/exercises/solutions/ch06.py`.
# 1. **Change of variables.** With `x ~ N(0, 1)` and `y = exp(x)`, write `log_p(y)` by the change of
#    variables formula. Check: `ch06.check_exercise_1(log_p)`.
# 2. **The radial flow's determinant.** Write `radial_log_det(z, z0, alpha, beta)` for
#    `f(z) = z + β (z - z0) / (α + ‖z - z0‖)` in d dimensions, without forming the Jacobian. Check:
#    `ch06.check_exercise_2(radial_log_det)` (against autograd's Jacobian).
# 3. **Bits per dimension.** Write `bits_per_dim(log_p, D, delta)` for inputs discretised into bins of width
#    `delta`. How many bits/dim does uniform noise over 256 levels cost? Check:
#    `ch06.check_exercise_3(bits_per_dim)`. Compare with the Glow numbers printed above.

# %%
# Checks you can run.
assert abs(mass - 1.0) < 5e-3, mass                      # a trained radial flow is normalised
assert toy.val_log_likelihood_ > true_ll - (0.5 if FAST else 0.25)  # and close to the true density
assert round_trip < 1e-3, round_trip                      # Glow's inverse undoes its forward pass
assert auroc(nf_id, nf_scores["noise"]) > 0.9              # noise is easy for a density model
if not FAST:  # the failure mode needs a trained model: constant images beat held-out ID patches
    assert np.median(probe_scores["constant"]) < np.median(p_id)
    assert auroc(p_id, probe_scores["constant"]) < 0.5
print("all checks passed")


# %%
# The exercise checks: a script finds tutorials/exercises/ beside it; a notebook finds it when run in tutorials/.
from exercises import ch06  # noqa: E402

print("exercise checks:", ", ".join(f"ch06.{name}(answer)" for name in dir(ch06) if name.startswith("check_")))
