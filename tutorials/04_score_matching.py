# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Chapter 04 — Score matching: exact, sliced and variance-reduced
#
# *ebm_ood tutorials.* Run as a script: `python tutorials/04_score_matching.py` (add `EBM_OOD_FAST=1`
# for a quick version). To open it as a notebook, convert it with jupytext (`pip install jupytext`, then
# `jupytext --to ipynb tutorials/04_score_matching.py`). Figures go to `$EBM_OOD_FIGURES` (default
# `tutorials/figures/`).
#
# **Why another way to train an EBM?** Contrastive divergence (chapter 03) needs samples from the model,
# i.e. Langevin chains, a replay buffer and their hyperparameters. Score matching needs none of that. It
# fits the *score* `s(x) = ∇ₓ log p(x) = -∇ₓE(x)`, which does not involve the normaliser `Z` at all.
#
# **What you will learn.**
# 1. Hyvärinen's objective `J = E_x[tr ∇ₓs(x) + ½‖s(x)‖²]` and why it costs D backward passes.
# 2. The sliced objectives of Song et al. (2019) that Elflein et al. use (§3):
#    SSM `E_v E_x[vᵀ∇ₓs v + ½(vᵀs)²]` and SSM-VR `E_v E_x[vᵀ∇ₓs v + ½‖s‖²]` — one Hessian-vector
#    product each, and equal to `J` in expectation for any `v` with `E[vvᵀ] = I`.
# 3. How much variance the "VR" trick removes, and a pitfall: with piecewise-linear (LeakyReLU) networks
#    the Hessian term can never be negative, so score matching cannot carve out modes.
# 4. Training `ebm_ood.methods.score_matching.SSMDetector` on 2-D data and reading its energy contours; its
#    training step written out, giving the same weights as `fit`.

# %%
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from ebm_ood.methods.score_matching import (
    SmoothLeakyReLU, SSMDetector, exact_score_matching_loss, sliced_score_matching_loss, ssm_config,
)
from ebm_ood.plumbing.tutorial import FAST, save_figure, setup

plt = setup(seed=0)   # tiny tensors: thread hand-offs would cost more than the work


# %% [markdown]
# ## 1. From the Fisher divergence to Hyvärinen's objective
#
# Matching the model's score to the data's, `½ E_x‖s_θ(x) - ∇ₓ log p_data(x)‖²`, looks hopeless: we do not
# know the data's score. Integrating by parts (Hyvärinen 2005) removes it, up to a constant:
#
# `J(θ) = E_x[ tr ∇ₓs_θ(x) + ½‖s_θ(x)‖² ]`.
#
# The trace of the Jacobian `∇ₓs = -∇ₓ²E` needs one backward pass per input dimension —
# `exact_score_matching_loss` does exactly that. For a quadratic energy `E = ½(x-μ)ᵀP(x-μ)` everything is
# closed form: `s = -P(x-μ)`, `tr ∇ₓs = -tr P`. Check:

# %%
P = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
mu = torch.tensor([1.0, -1.0], dtype=torch.float64)
quadratic = lambda x: 0.5 * ((x - mu) @ P * (x - mu)).sum(1)  # (N, 2) -> (N,)
x = torch.randn(5, 2, dtype=torch.float64)
ours = exact_score_matching_loss(quadratic, x, reduce=False)
closed = -torch.trace(P) + 0.5 * ((x - mu) @ P).pow(2).sum(1)
print("exact J per sample:", ours.detach().numpy().round(4))
print("closed form       :", closed.numpy().round(4))
assert torch.allclose(ours, closed)

# %% [markdown]
# ## 2. Slicing: one Hessian-vector product instead of D
#
# For any random `v` with `E[vvᵀ] = I`, `E_v[vᵀ A v] = tr A`. So `vᵀ∇ₓs v` is an unbiased estimate of the
# trace, and it costs one extra backward pass: `∇ₓ(vᵀs(x)) = (∇ₓs)ᵀv` ("double backprop",
# `create_graph=True`). SSM also slices the second term, `½(vᵀs)²`; SSM-VR keeps `½‖s‖²` exact, which is
# free because `s` is already computed. We check on a smooth random network (D = 2) that the average over
# many projections reproduces `J`, for both kinds of `v`.

# %%
torch.manual_seed(1)
net = nn.Sequential(nn.Linear(2, 32), SmoothLeakyReLU(), nn.Linear(32, 32), SmoothLeakyReLU(), nn.Linear(32, 3)).double()
energy = lambda z: -10.0 * torch.logsumexp(net(z), dim=1)  # scaled so the curvature is O(1)
x = torch.randn(64, 2, dtype=torch.float64)
exact = exact_score_matching_loss(energy, x).item()
K = 2000 if FAST else 20000
rows = {}
for projection in ("rademacher", "gaussian"):
    for vr in (False, True):
        # 100 one-projection estimates at each of the 64 points: (100·64,) -> per-point variance
        one = sliced_score_matching_loss(energy, x.repeat(100, 1), 1, projection, vr, create_graph=False, reduce=False)
        spread = one.view(100, 64).var(0).mean().sqrt().item()
        mean = sliced_score_matching_loss(energy, x, K, projection, vr, create_graph=False).item()
        rows[(projection, vr)] = (mean, spread)
        print(f"{projection:10s} {'SSM-VR' if vr else 'SSM   '}  mean over {K} projections = {mean:8.4f}"
              f"   (exact {exact:8.4f});  rms std of a one-projection estimate = {spread:.3f}")

# %% [markdown]
# All four estimators agree with the exact objective. Their *variance* differs. Rademacher vectors
# already remove the diagonal's fluctuation (`v_i² = 1`, so `vᵀHv = tr H + Σ_{i≠j} v_i v_j H_ij`), and VR
# removes the fluctuation of the second term (`½‖s‖²` is exact). But VR is *not* guaranteed to win: the two
# terms are correlated (for Gaussian `v`, `Var SSM - Var SSM-VR = ½‖s‖⁴ + 2 sᵀ∇ₓs s`, negative wherever
# `∇ₓs` is negative enough along `s`), so compare the printed spreads rather than trusting the name. Song
# et al. found VR better on average during training; the paper uses SSM-VR with one Rademacher projection.

# %%
if plt is not None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = [f"{p}\n{'SSM-VR' if vr else 'SSM'}" for (p, vr) in rows]
    ax.bar(names, [s for _, s in rows.values()], color=["C0", "C1", "C0", "C1"])
    ax.set_ylabel("RMS over 64 points of the\nstd of a one-projection estimate")
    ax.set_title("spread of the sliced objectives (64 random points)")
    save_figure(fig, "04_ssm_variance.png")

for (projection, vr), (mean, _) in rows.items():
    assert abs(mean - exact) < 0.05 * (abs(exact) + 1), (projection, vr, mean, exact)

# %% [markdown]
# ## 3. A pitfall: piecewise-linear networks
#
# With LeakyReLU every layer is linear almost everywhere, so autograd's second derivatives only come from
# the final `logsumexp`: `∇ₓs = Jᵀ(diag p - ppᵀ)J`, a positive semi-definite matrix. Its trace is never
# negative, so `J ≥ ½‖s‖² ≥ 0` and the minimiser is a *flat* energy — score matching cannot make the data a
# minimum of `E`. (The kinks do carry curvature, but it is a measure-zero set that autograd never sees.)
# `ebm_ood` therefore trains SSM with a smooth LeakyReLU, `a·x + (1-a)·softplus(x)`; the authors' code used
# the plain LeakyReLU (`activation="leaky_relu"` reproduces it).

# %%
torch.manual_seed(2)
lrelu = nn.Sequential(nn.Linear(2, 32), nn.LeakyReLU(0.2), nn.Linear(32, 32), nn.LeakyReLU(0.2), nn.Linear(32, 3)).double()
lrelu_energy = lambda z: -torch.logsumexp(lrelu(z), dim=1)


def jacobian_trace(energy_fn, points):
    """tr ∇ₓs(x) = J(x) - ½‖s(x)‖² per point, from the exact objective."""
    q = points.clone().requires_grad_(True)
    s = -torch.autograd.grad(energy_fn(q).sum(), q)[0]
    return (exact_score_matching_loss(energy_fn, points, reduce=False) - 0.5 * s.pow(2).sum(1)).detach()


z = 3 * torch.randn(256, 2, dtype=torch.float64)
trace_lrelu = jacobian_trace(lrelu_energy, z)
print(f"tr ∇ₓs of a LeakyReLU network at 256 random points: min {trace_lrelu.min().item():.2e} (never < 0)")
assert trace_lrelu.min() > -1e-8

# %% [markdown]
# ## 4. Training SSM-VR on a 2-D mixture
#
# `SSMDetector` wraps it all: the paper's 5-layer MLP (width 100) read as `E(x) = -logsumexp f(x)`
# (Elflein Eq. 3), SSM-VR with one Rademacher projection per sample, the shared trainer
# (`ebm_ood.training.train`), and model selection by the SSM-VR objective on held-out *ID* data.

# %%
rng = np.random.default_rng(0)
modes = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0]], np.float32)
data = (modes[rng.integers(0, 3, 1500)] + 0.3 * rng.standard_normal((1500, 2))).astype(np.float32)
cfg = ssm_config("quick", "tabular")
cfg = replace(cfg, train=replace(cfg.train, steps=200 if FAST else 1500, lr=1e-3, eval_every=50, progress=False))
ssm = SSMDetector(cfg, seed=0).fit(data)
far = np.array([[6.0, 6.0], [-6.0, 5.0], [0.0, -6.0], [7.0, -7.0]], np.float32)
e_modes, e_far = ssm.score(modes), ssm.score(far)
print("energy at the modes:", e_modes.round(2), " far away:", e_far.round(2))
# the smooth network has learnt *negative* curvature of the score at the modes: they are minima of E
trace_modes = jacobian_trace(lambda q: ssm.net_(q.float()).logsumexp(1).neg().double(), torch.tensor(modes, dtype=torch.float64))
print("tr ∇ₓs at the modes:", trace_modes.numpy().round(2))

# %%
if plt is not None:
    g = np.linspace(-5, 5, 120, dtype=np.float32)
    gx, gy = np.meshgrid(g, g)
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    e = ssm.score(grid).reshape(gx.shape)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    cs = axes[0].contourf(gx, gy, e, levels=30, cmap="viridis")
    fig.colorbar(cs, ax=axes[0], label="E(x)")
    axes[0].scatter(data[:300, 0], data[:300, 1], s=3, c="w")
    axes[0].set_title("SSM-VR energy and data")
    p = np.exp(-(e - e.min()))
    axes[1].contourf(gx, gy, p / p.sum(), levels=30, cmap="magma")
    axes[1].set_title("exp(-E), normalised on the grid")
    save_figure(fig, "04_ssm_contours.png")

# %% [markdown]
# ### The loop behind `fit`
#
# `SSMDetector.fit` is the shared trainer (`ebm_ood.training.train`) around one short step. Each step:
# 1. draws a mini-batch `x` of data (uniformly, with replacement);
# 2. draws one Rademacher vector `v` per sample (`±1` in every coordinate, `E[vvᵀ] = I`);
# 3. computes the score `s = -∇ₓE(x)` *keeping its graph* (`create_graph=True`), then the Hessian-vector
#    product `(∇ₓs)ᵀv = ∇ₓ(vᵀs)` by a second backward pass through it;
# 4. takes one Adam step on the SSM-VR loss `mean_x[vᵀ∇ₓs v + ½‖s‖²]` (plain SSM: `½(vᵀs)²` instead).
#
# Here it is, written out for the mixture above, with the same seed as an `SSMDetector` trained beside it.
# One seed fixes every draw (the weights by `torch.manual_seed`, the 10 % held out for validation, the
# batches by their own generator, the projections by torch's global generator), the draws happen in the same
# order and the arithmetic is the same float32 operations, so the two networks end **bit for bit** equal —
# the check compares every weight with `torch.equal`. (The detector validates once, at the last step, so the
# weights it keeps are the last ones; this preset has no learning-rate warm-up.)

# %%
from ebm_ood.energy import energy_from_logits
from ebm_ood.methods.score_matching import score_matching_network

c = replace(cfg, train=replace(cfg.train, steps=15 if FAST else 60))
c = replace(c, train=replace(c.train, eval_every=c.train.steps))
B, seed = c.train.batch_size, 0

torch.manual_seed(seed)
perm = np.random.default_rng(seed).permutation(len(data))                     # fit holds out 10 % for validation
x_train = torch.as_tensor(data[perm[round(0.1 * len(data)):]])                  # (1350, 2)
f = score_matching_network((2,), 1)                                  # 5-layer MLP, smooth LeakyReLU, one logit
energy = lambda x: energy_from_logits(f(x))                                     # noqa: E731  E(x) = -logsumexp f(x)
opt = torch.optim.Adam(f.parameters(), lr=c.train.lr, betas=c.train.betas)
batches = torch.Generator().manual_seed(seed)                                   # the mini-batch draws

for step in range(c.train.steps):
    x = x_train[torch.randint(0, len(x_train), (B,), generator=batches)]       # 1. data, (B, 2)
    x = x.requires_grad_(True)
    v = torch.randint(0, 2, x.shape).float() * 2 - 1                           # 2. Rademacher v, (B, 2)
    s = -torch.autograd.grad(energy(x).sum(), x, create_graph=True)[0]        # 3. s = -∇ₓE, (B, 2)
    hv = torch.autograd.grad((s * v).sum(1).sum(), x, create_graph=True)[0]    #    (∇ₓs)ᵀv = ∇ₓ(vᵀs)
    loss = ((hv * v).sum(1) + 0.5 * s.pow(2).sum(1)).mean()                    # 4. vᵀ∇ₓs v + ½‖s‖², Adam
    opt.zero_grad()
    loss.backward()
    opt.step()

library = SSMDetector(c, seed=seed).fit(data)
same = all(torch.equal(a, b) for a, b in zip(f.state_dict().values(), library.net_.state_dict().values()))
print(f"{c.train.steps} SSM-VR steps written out vs SSMDetector.fit: weights bit-identical: {same}")
assert same

# %% [markdown]
# ## Exercises
# Each exercise has a check, `ch04.check_exercise_k(answer)` (imported in the last cell), that recomputes the
# answer independently and says what is wrong. Reference solutions: `tutorials/exercises/solutions/ch04.py`.
# 1. **Score matching fits a Gaussian.** Minimise `exact_score_matching_loss` of `E_A(x) = ½ xᵀAx` over a
#    symmetric `A` on `ch04.gaussian_data()` (a Gaussian with a non-zero mean). Which matrix do you get, and
#    why is it not the inverse covariance? Check: `ch04.check_exercise_1(A)`.
# 2. **Why Rademacher projections.** For the symmetric matrix `ch04.H`, compute the variance of the one-sample
#    trace estimate `vᵀHv` with Rademacher and with Gaussian `v`. Check:
#    `ch04.check_exercise_2({"rademacher": ..., "gaussian": ...})`.
# 3. **Implement it: the sliced loss.** Write `ssm_loss(energy, x, v, variance_reduction)` returning the
#    per-sample SSM (`vᵀ∇ₓs v + ½(vᵀs)²`) or SSM-VR (`vᵀ∇ₓs v + ½‖s‖²`) loss for one projection `v` per sample,
#    `s = -∇ₓE`, the Hessian-vector product by a second `torch.autograd.grad`. Check:
#    `ch04.check_exercise_3(ssm_loss)` compares it with `sliced_score_matching_loss(..., reduce=False)` on the
#    same projections. Why does it cost two backward passes whatever `D`, where the exact trace costs `D + 1`?
#
# ## Check
# The trained energy must rank every mode of the mixture below every far-away point, and its score must
# have negative divergence (`tr ∇ₓs < 0`) at the modes — something a LeakyReLU network cannot express.

# %%
assert e_modes.max() < e_far.min(), (e_modes, e_far)
assert trace_modes.max() < 0, trace_modes
print("chapter 04 checks passed")


# %%
# The exercise checks: a script finds tutorials/exercises/ beside it; a notebook finds it when run in tutorials/.
from exercises import ch04  # noqa: E402

print("exercise checks:", ", ".join(f"ch04.{name}(answer)" for name in dir(ch04) if name.startswith("check_")))
