# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Chapter 05 — VERA: training an EBM against a generator
#
# *ebm_ood tutorials.* Run as a script: `python tutorials/05_vera.py` (add `EBM_OOD_FAST=1` for a quick
# version). To open it as a notebook, convert it with jupytext (`pip install jupytext`, then
# `jupytext --to ipynb tutorials/05_vera.py`). Figures go to `$EBM_OOD_FIGURES` (default `tutorials/figures/`).
#
# **Why a generator?** Maximum likelihood for `p(x) = exp(-E(x))/Z` needs `∇θ log Z = -E_p[∇θE]`, an
# expectation under the model. Chapter 03 estimated it with Langevin chains. VERA (Grathwohl et al. 2021,
# used by Elflein et al. §3) replaces the chains by a *learned sampler* `q`, using a variational identity
# for `log Z`.
#
# **What you will learn.**
# 1. The identity `log Z = max_q E_q[-E(x)] + H(q)` and how it turns maximum likelihood into a two-player game.
# 2. Why the entropy `H(q)` of a latent-variable generator `x = g(h) + σε` is the hard part, and how VERA
#    estimates its *gradient* with the score `∇ₓ log q(x)` and importance sampling.
# 3. How to check that estimator against closed forms on a linear-Gaussian generator.
# 4. Training `ebm_ood.methods.vera.VERADetector` on 2-D data: generator samples vs data, energy contours;
#    its training step written out, giving the same weights as `fit`.

# %%
import math
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from ebm_ood.methods.vera import (
    Generator, PosteriorProposal, VERADetector, entropy_surrogate, importance_score, vera_config,
)
from ebm_ood.plumbing.tutorial import FAST, save_figure, setup

plt = setup(seed=0)   # tiny tensors: thread hand-offs would cost more than the work


# %% [markdown]
# ## 1. `log Z` as a maximum
#
# For any density `q`, `KL(q ‖ p) = E_q[log q - log p] = -H(q) + E_q[E(x)] + log Z ≥ 0`, so
# `log Z ≥ E_q[-E(x)] + H(q)` with equality at `q = p`. Plugging the maximum into the log-likelihood gives
# a min-max game: the EBM lowers `E` on data and raises it on samples of `q`; `q` seeks low energy while
# keeping its entropy up. Check on a 1-D Gaussian energy `E(x) = x²/(2s²)` (`log Z = ½ log 2πs²`) with
# `q = N(0, t²)`: the bound `-t²/(2s²) + ½ log(2πe t²)` peaks at `t = s`, where it equals `log Z`.

# %%
s = 0.7
t = np.linspace(0.1, 2.0, 1901)
bound = -t**2 / (2 * s**2) + 0.5 * np.log(2 * np.pi * np.e * t**2)
print(f"max of the bound {bound.max():.6f} at t = {t[bound.argmax()]:.3f};  log Z = {0.5 * math.log(2 * math.pi * s**2):.6f}")
assert abs(bound.max() - 0.5 * math.log(2 * math.pi * s**2)) < 1e-6 and abs(t[bound.argmax()] - s) < 1e-3

# %% [markdown]
# ## 2. The entropy gradient of a generator
#
# VERA's sampler is `x = g(h) + σε` with `h ~ N(0, I)`: easy to sample, but `q(x) = ∫ N(x; g(h), σ²I) p(h) dh`
# has no closed form, so neither has `H(q)`. Its *gradient* does have a usable form. With `x` reparametrised
# by the generator's parameters φ, `∇_φ H(q) = -E_q[∇ₓ log q(x)ᵀ ∂x/∂φ]` (the term `E_q[∇_φ log q]` is zero).
# So all we need is the score of `q`:
#
# `∇ₓ log q(x) = E_{q(h|x)}[-(x - g(h))/σ²]`,
#
# an expectation under the generator's posterior. VERA estimates it with `M` importance samples from a
# proposal `ξ(h'|x) = N(h, η²I)` centred on the latent `h` that produced `x`, with self-normalised weights
# `w_m ∝ q(x, h'_m)/ξ(h'_m|x)` (`ebm_ood.methods.vera.importance_score`). In code, the gradient enters
# through the surrogate `-(score.detach() · x)` (`entropy_surrogate`).
#
# For a *linear* generator `g(h) = Ah + b` everything is Gaussian: `q = N(b, AAᵀ + σ²I)`, whose score is
# `-(AAᵀ + σ²I)⁻¹(x - b)`. Let us watch the estimator converge as `M` grows.

# %%
lin = nn.Linear(2, 2).double()
with torch.no_grad():
    lin.weight.copy_(torch.tensor([[1.0, 0.5], [-0.3, 0.8]]))
    lin.bias.copy_(torch.tensor([0.5, -1.0]))
gen = Generator(lin, 2, sigma_init=0.3, sigma_min=0.01, sigma_max=1.0).double()
with torch.no_grad():
    gen.log_sigma.fill_(math.log(0.3))
A, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
cov = A @ A.T + 0.09 * np.eye(2)
torch.manual_seed(1)
with torch.no_grad():
    x, h = gen.sample(300)
true_score = -(x.numpy() - b) @ np.linalg.inv(cov)
Ms = [1, 4, 16, 64, 256, 1024, 4096]
errors = {}
for eta in (0.05, 0.3, 1.0):
    errs = []
    for m in Ms:
        with torch.no_grad():
            hp, log_xi = PosteriorProposal(eta).double().sample(h, m)
            est, _ = importance_score(x, hp, log_xi, gen.g, gen.sigma)
        errs.append(np.abs(est.numpy() - true_score).mean() / np.abs(true_score).mean())
    errors[eta] = errs
    print(f"η = {eta:4.2f}: relative error of the score estimate for M = {Ms}:", np.round(errs, 3))
few, many = [i for i, m in enumerate(Ms) if m <= 16], [i for i, m in enumerate(Ms) if m >= 64]
assert errors[0.05][-1] > 2 * max(errors[0.3][-1], errors[1.0][-1])           # narrow: stuck
assert all(errors[0.3][i] < errors[1.0][i] for i in few)                      # wide needs samples
assert all(errors[1.0][i] < min(errors[0.3][i], errors[0.05][i]) for i in many)  # then it is best

# %% [markdown]
# The error falls with `M` for every η, but how fast depends on the proposal. Too narrow (η = 0.05) and all
# samples sit next to `h`, so the estimate is stuck near `-(x - g(h))/σ² = -ε/σ` — pure noise that more
# samples barely reduce. A wide proposal pays only once there are enough samples: with few samples (M ≤ 16)
# most of η = 1's draws get negligible weight and η = 0.3 is more accurate, but from M = 64 on η = 1 — as
# wide as the prior `N(0, I)` here, where the posterior of this 2-D latent is itself broad — has the lowest
# error of the three (the last column of the printout). The best η thus depends on `M` and on the posterior,
# which changes as the generator trains; VERA therefore *learns* η by maximising the proposal's ELBO
# `E_ξ[log q(x, h') - log ξ(h'|x)]` (the `"post"` optimizer in `VERADetector`).
#
# Now the entropy gradient itself: `∂H/∂A = (AAᵀ + σ²I)⁻¹A` for `H = ½ log det(AAᵀ + σ²I) + const`.

# %%
torch.manual_seed(2)
n_samples, m = (4000, 1000) if FAST else (20000, 500)
xs, hs = gen.sample(n_samples)
hp, log_xi = PosteriorProposal(0.5).double().sample(hs.detach(), m)
est, _ = importance_score(xs.detach(), hp, log_xi, gen.g, gen.sigma.detach())
grad_a = torch.autograd.grad(entropy_surrogate(xs, est), gen.g.weight)[0].numpy()
want = np.linalg.inv(cov) @ A
print("estimated ∂H/∂A:\n", grad_a.round(3), "\nanalytic (AAᵀ+σ²I)⁻¹A:\n", want.round(3))
assert np.abs(grad_a - want).max() < 0.1 * np.abs(want).max()

# %%
if plt is not None:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for eta, errs in errors.items():
        ax.loglog(Ms, errs, "o-", label=f"η = {eta}")
    ax.loglog(Ms, [errors[0.3][0] / math.sqrt(m) for m in Ms], "k--", lw=0.8, label="∝ 1/√M")
    ax.set_xlabel("importance samples M")
    ax.set_ylabel("relative error of ∇ₓ log q(x)")
    ax.legend()
    save_figure(fig, "05_vera_score_estimator.png")

# %% [markdown]
# ## 3. Training VERA on a 2-D mixture
#
# `VERADetector` alternates three Adam steps per batch: the EBM on
# `mean E(x_data) - mean E(x_gen) + 0.1 · mean ½‖∇ₓE(x_data)‖²`, the generator on `mean E(x_gen) - λH`, and
# η on its ELBO. The paper uses λ = 1e-4 (chosen for stability on images); on 2-D data we can afford the
# maximum-likelihood value λ = 1 and a larger starting σ, which make the generator spread over all modes.
# The paper's Adam β = (0, 0.9) is stated for the generator; its form (`form="paper"`, the default) gives
# the EBM and η Adam's defaults (0.9, 0.999) and clamps η to [0.01, 0.3]. With those, on this mixture and
# these learning rates, the chapter's checks below fail: after 400 steps the generator sits on one mode (the
# horizontal spread of its samples is 0.3), after 1,500 a point of the far ring gets a lower energy than a
# mode. So this demo trains with `form="code"`, the authors' code's: β = (0, 0.9) for all three, η unclamped.

# %%
rng = np.random.default_rng(0)
modes = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0]], np.float32)
data = (modes[rng.integers(0, 3, 1500)] + 0.3 * rng.standard_normal((1500, 2))).astype(np.float32)
cfg = vera_config("quick", "tabular")
cfg = replace(cfg, entropy_weight=1.0, sigma_init=0.1, form="code",
              train=replace(cfg.train, steps=400 if FAST else 1500, lr=1e-3, lrs={"gen": 2e-3, "post": 1e-2},
                            progress=False))
vera = VERADetector(cfg, seed=0).fit(data)
ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
ring = (6 * np.stack([np.cos(ang), np.sin(ang)], 1)).astype(np.float32)
e_modes, e_ring = vera.score(modes), vera.score(ring)
samples = vera.sample(1000)
print("energy at the modes:", e_modes.round(1), " on a ring of radius 6: min", e_ring.min().round(1))
print("generator σ =", round(vera.generator_.sigma.item(), 3), " proposal η =", round(vera.proposal_.log_eta.exp().item(), 3))

# %%
if plt is not None:
    g = np.linspace(-5, 5, 120, dtype=np.float32)
    gx, gy = np.meshgrid(g, g)
    e = vera.score(np.stack([gx.ravel(), gy.ravel()], 1)).reshape(gx.shape)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    axes[0].scatter(data[:1000, 0], data[:1000, 1], s=3, alpha=0.5, label="data")
    axes[0].scatter(samples[:, 0], samples[:, 1], s=3, alpha=0.5, label="generator")
    axes[0].set_xlim(-5, 5)
    axes[0].set_ylim(-5, 5)
    axes[0].legend()
    axes[0].set_title("VERA generator samples vs data")
    cs = axes[1].contourf(gx, gy, e, levels=30, cmap="viridis")
    fig.colorbar(cs, ax=axes[1], label="E(x)")
    axes[1].set_title("VERA energy")
    save_figure(fig, "05_vera_2d.png")

# %% [markdown]
# ### The loop behind `fit`
#
# `VERADetector.fit` is the shared trainer around one step with three players, each with its own Adam:
# 1. draw a mini-batch `x⁺` of data, and a generator sample `x = g(h) + σε`, `h, ε ~ N(0, I)` (σ first
#    clamped back into `[σ_min, σ_max]`; with `form="paper"` also the proposal's η into `[0.01, 0.3]`);
# 2. the **EBM** loss `mean E(x⁺) - mean E(x) + 0.1 · mean ½‖∇ₓE(x⁺)‖²`;
# 3. `M` proposal draws `h'_m = h + η ε'_m` per sample, their log-weights
#    `log w_m = log N(h'_m; 0, I) + log N(x; g(h'_m), σ²I) - log ξ(h'_m|x)`, and the self-normalised score
#    estimate `∇ₓ log q(x) ≈ -Σ_m softmax(log w)_m (x - g(h'_m)) / σ²`, held fixed (section 2);
# 4. the **generator** loss `mean E(x) - λ H`, `H` entering through the surrogate `-mean score · x`, and
#    the **proposal** loss `-mean log w` (η climbs its ELBO);
# 5. each loss is back-propagated into its own player's parameters only (`backward(inputs=...)`: the EBM
#    loss also depends on the generator through `x`, but must not move it), then all three Adam steps —
#    the generator's with `train.betas` = (0, 0.9), the EBM's and the proposal's with the form's pair (the
#    code's form of this demo: the same (0, 0.9); the paper's: Adam's defaults).
#
# Here it is, written out for the mixture above, with the same seed as a `VERADetector` trained beside it.
# One seed fixes every draw (the EBM's and the generator's initial weights, `h`, `ε`, `ε'` from torch's
# global generator; the batches from their own; η starts at `eta_init`), in the same order and with the
# same float32 operations, so all three players end **bit for bit** equal — the check compares every
# parameter with `torch.equal`. (VERA has no model selection, so the detector keeps the last weights; this
# preset has no learning-rate warm-up.)

# %%
from ebm_ood.energy import energy_from_logits
from ebm_ood.methods.vera import VERA_FORMS, gaussian_log_density, make_generator
from ebm_ood.nn import build_network

c = replace(cfg, train=replace(cfg.train, steps=10 if FAST else 40))
B, M, seed, lam = c.train.batch_size, c.n_importance, 0, c.entropy_weight

torch.manual_seed(seed)
f = build_network((2,), 1)                                  # the EBM: E(x) = -logsumexp f(x), one logit
gen = make_generator((2,), c)                               # g: 16-d latent -> R², and log σ
form = VERA_FORMS[c.form]                                   # η clamp and β pairs of c.form ("code" here)
post = PosteriorProposal(c.eta_init, form["eta_clamp"])     # log η
players = {"ebm": f, "gen": gen, "post": post}
ebm_betas = form["ebm_betas"] or c.train.betas              # "code": the one pair for every optimizer
betas = {"ebm": ebm_betas, "gen": c.train.betas, "post": ebm_betas}
opts = {k: torch.optim.Adam(m.parameters(), lr=c.train.lrs.get(k, c.train.lr), betas=betas[k])
        for k, m in players.items()}
x_data = torch.as_tensor(data)                              # VERA holds nothing out
batches = torch.Generator().manual_seed(seed)

for step in range(c.train.steps):
    xb = x_data[torch.randint(0, len(x_data), (B,), generator=batches)].requires_grad_(True)   # 1. x⁺, (B, 2)
    gen.clamp_(), post.clamp_()
    h = torch.randn(B, c.latent_dim)                                                            #    h, (B, 16)
    mu = gen.g(h)
    x = mu + gen.sigma * torch.randn_like(mu)                                                   #    x, (B, 2)
    e_pos, e_neg = energy_from_logits(f(xb)), energy_from_logits(f(x))                          # 2. EBM
    grad_pos = torch.autograd.grad(e_pos.sum(), xb, create_graph=True)[0]
    loss_ebm = e_pos.mean() - e_neg.mean() + c.grad_penalty * (0.5 * grad_pos.pow(2).sum(1).mean())
    sigma, h0, x0 = gen.sigma.detach(), h.detach(), x.detach()                                  # 3. score
    hp = h0.unsqueeze(0) + post.eta * torch.randn(M, B, c.latent_dim)                           #    h', (M, B, 16)
    log_xi = gaussian_log_density(hp, h0.unsqueeze(0), post.eta)                                #    (M, B)
    mu_p = gen.g(hp.reshape(M * B, -1)).view(M, B, 2)                                           #    g(h'), (M, B, 2)
    log_w = (gaussian_log_density(hp, torch.zeros_like(hp), 1.0)
             + gaussian_log_density(x0.unsqueeze(0), mu_p, sigma) - log_xi)
    w = torch.softmax(log_w.detach(), dim=0).view(M, B, 1)
    score = -(w * (x0.unsqueeze(0) - mu_p.detach())).sum(0) / sigma**2                          #    ∇ₓ log q(x)
    loss_gen = e_neg.mean() - lam * -(score * x).sum(1).mean()                                  # 4. generator
    loss_post = -log_w.mean()                                                                   #    proposal
    for o in opts.values():                                                                     # 5. Adam steps
        o.zero_grad()
    for loss, k in ((loss_ebm, "ebm"), (loss_gen, "gen"), (loss_post, "post")):
        loss.backward(inputs=list(players[k].parameters()), retain_graph=True)
    for o in opts.values():
        o.step()

library = VERADetector(c, seed=seed).fit(data)
mine = [p for m in players.values() for p in m.state_dict().values()]
theirs = [p for m in (library.net_, library.generator_, library.proposal_) for p in m.state_dict().values()]
same = len(mine) == len(theirs) and all(torch.equal(a, b) for a, b in zip(mine, theirs))
print(f"{c.train.steps} VERA steps written out vs VERADetector.fit: "
      f"EBM, generator and proposal bit-identical: {same}")
assert same

# %% [markdown]
# ## Exercises
# Each exercise has a check, `ch05.check_exercise_k(answer)` (imported in the last cell), that recomputes the
# answer independently and says what is wrong. Reference solutions: `tutorials/exercises/solutions/ch05.py`.
# 1. **`log Z` as a maximum.** For `E(x) = x²/(2s²)` and `q = N(0, σ²)`, write VERA's bound
#    `E_q[-E(x)] + H(q)` as a function of σ, maximise it, and compare the maximum with `log Z`. Check:
#    `ch05.check_exercise_1(best_bound)` with `best_bound(s)` returning `{"sigma_best": ..., "log_z": ...}`
#    (at `s = 0.5` and at a width it draws).
# 2. **A linear generator's density.** For `x = W z + σ ε` (`ch05.W`, `ch05.SIGMA`), write `log_q(x)`
#    exactly. Check: `ch05.check_exercise_2(log_q)`.
# 3. **Importance weights with the exact posterior.** Write `posterior_weights(x)`: draw K ≥ 2000 `z` from the
#    exact posterior `p(z|x)` of that generator and return `(z, log_w)` with the log-weights
#    `log p(x|z) + log p(z) - log p(z|x)` (use `gaussian_log_density`). What do you observe, and what does
#    `PosteriorProposal` approximate? Check: `ch05.check_exercise_3(posterior_weights)` (at `x = ch05.X0` and
#    at an `x` it draws; it tests the draws' mean and covariance too).
# 4. **Implement it: the entropy's score.** Write `score_estimate(x, h, log_xi, g, sigma)`, VERA's
#    self-normalised importance-sampling estimate of `∇ₓ log q(x)` from proposal draws `h` (M, N, k) with
#    log-densities `log_xi`. Check: `ch05.check_exercise_4(score_estimate)` (against `importance_score`).
#
# ## Check
# The trained energy must rank every mode below every point of the far ring, and the generator must cover
# more than one mode (its samples must spread horizontally between the modes at x = ±2).

# %%
assert e_modes.max() < e_ring.min(), (e_modes, e_ring)
assert samples[:, 0].std() > 0.8, samples[:, 0].std()
print("chapter 05 checks passed")


# %%
# The exercise checks: a script finds tutorials/exercises/ beside it; a notebook finds it when run in tutorials/.
from exercises import ch05  # noqa: E402

print("exercise checks:", ", ".join(f"ch05.{name}(answer)" for name in dir(ch05) if name.startswith("check_")))
