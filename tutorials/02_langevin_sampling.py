# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Chapter 02 — Langevin sampling and the replay buffer
#
# *ebm_ood tutorials.* Run as a script: `python tutorials/02_langevin_sampling.py`
# (add `EBM_OOD_FAST=1` for a quick version). To open it as a notebook, convert it with jupytext
# (`pip install jupytext`, then `jupytext --to ipynb tutorials/02_langevin_sampling.py`); jupytext is not a
# dependency of `ebm_ood`. Figures go to `$EBM_OOD_FIGURES` (default `tutorials/figures/`).
#
# **Why sample?** Chapter 01 ended with a classifier whose energy `E(x)` was low far away from the data.
# Training `E` as a density means *lowering* it on data and *raising* it wherever the model puts mass but
# the data does not. To find those places we need samples `x ~ exp(-E(x)) / Z` — without ever knowing `Z`.
# Langevin dynamics does exactly that: it only needs `∇ₓE(x)`, and `Z` has no gradient in `x`.
#
# **What you will learn.**
# 1. The Langevin update (HEAT Eq. 4) and the "decoupled" form used in practice (Elflein App. B code), and
#    why the latter samples a *tempered* density `exp(-E/T)` with `T = σ²/(2α)`.
# 2. How to run chains with `ebm_ood.sampling.sgld` on known 2-D energies and check them against closed forms.
# 3. The persistent replay buffer (`ebm_ood.sampling.ReplayBuffer`) that makes short chains good enough.
# 4. The fused C++ update op and its pure-PyTorch twin give the same numbers (`ebm_ood.sampling.ops`).

# %%
import math

import numpy as np
import torch

from ebm_ood.sampling import ReplayBuffer, ops, sgld
from ebm_ood.plumbing.tutorial import FAST, save_figure, setup

plt = setup(seed=0)   # tensors here are tiny (N x 2): thread hand-offs would cost more than the work


# %% [markdown]
# ## 1. The Langevin update (HEAT Eq. 4)
#
# Stochastic gradient Langevin dynamics (Welling & Teh 2011) moves a point downhill on the energy and adds
# Gaussian noise:
#
# $$z_{t+1} = z_t - \frac{\eta}{2}\,\nabla_z E(z_t) + \sqrt{\eta}\, w_t, \qquad w_t \sim \mathcal N(0, I).
#   \tag{HEAT Eq. 4, Eq. 12}$$
#
# The pairing of the step `η/2` with the noise variance `η` is not arbitrary: it is the Euler discretisation
# of the Langevin diffusion `dz = -½∇E dt + dW`, whose stationary law is `exp(-E(z))/Z`. For small `η` the
# chain therefore samples the EBM itself, whatever `Z` is.
#
# ### A known target: a correlated Gaussian
# `E(x) = ½ xᵀ Σ⁻¹ x` with `Σ = [[1, 0.8], [0.8, 1]]`, so `exp(-E)` is `N(0, Σ)`. The sampler takes any
# callable `(N, 2) → (N,)`.

# %%
Sigma = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
Precision = torch.linalg.inv(Sigma)                                    # A = Σ⁻¹


def gaussian_energy(x: torch.Tensor) -> torch.Tensor:
    """E(x) = ½ xᵀ Σ⁻¹ x.  (N, 2) -> (N,)."""
    return 0.5 * ((x @ Precision) * x).sum(dim=1)


n_chains = 2000 if FAST else 8000
n_steps = 400 if FAST else 1000
eta = 0.05
x0 = torch.rand(n_chains, 2) * 6 - 3                                   # start U(-3, 3)², far from stationary
x_langevin = sgld(gaussian_energy, x0, n_steps=n_steps, step_size=eta, form="langevin")
cov_langevin = torch.cov(x_langevin.T)
print("sample covariance (Langevin):\n", cov_langevin.numpy().round(3))

# %% [markdown]
# ### Check: the exact stationary covariance of the discretised chain
# With a finite `η` the chain is slightly biased, and for a Gaussian target we can compute the bias exactly.
# In the eigenbasis of `A = Σ⁻¹` (eigenvalues `λ`), each coordinate follows `u ← (1 - ηλ/2) u + √η w`, whose
# stationary variance is `η / (1 - (1 - ηλ/2)²) = 1 / (λ (1 - ηλ/4))` — `1/λ` (the target) as `η → 0`.
# We compare the sample covariance with that formula, computed independently of the sampler.

# %%
def stationary_covariance(step: float, noise_std: float) -> torch.Tensor:
    """Stationary covariance of u <- u - step * A u + noise_std * w (A = Σ⁻¹), eigenvalue by eigenvalue."""
    lam, V = torch.linalg.eigh(Precision)
    var = noise_std**2 / (1 - (1 - step * lam) ** 2)
    return V @ torch.diag(var) @ V.T


expected = stationary_covariance(eta / 2, math.sqrt(eta))
print("closed-form covariance of the chain:\n", expected.numpy().round(3))
# a covariance estimate from n samples has standard error <= λ_max(Σ) sqrt(2/n); 4 standard errors of slack
tol = 4 * float(torch.linalg.eigvalsh(Sigma).max()) * math.sqrt(2 / n_chains)
assert torch.allclose(cov_langevin, expected, atol=tol)
assert torch.allclose(expected, Sigma, atol=0.03)                       # and the bias is small at η = 0.05

# %% [markdown]
# ## 2. Decoupled step and noise: sampling at a temperature
#
# EBM training code almost never uses Eq. 4 as written. The Elflein/JEM code uses
#
# $$x \leftarrow x - \alpha\,\nabla_x E(x) + \sigma\,\varepsilon \qquad (\alpha = 1,\ \sigma = 0.01),$$
#
# with step `α` and noise `σ` chosen *separately* (the HEAT code does the same). Compare with Eq. 4 applied
# to the energy `E/T` with step `η' = σ²`: `x ← x - (σ²/2T) ∇E + σ w`. The two coincide when
# `α = σ²/(2T)`, so the decoupled chain is an exact Langevin chain for `E/T` and samples
#
# $$p_T(x) \propto \exp(-E(x)/T), \qquad T = \frac{\sigma^2}{2\alpha}.$$
#
# Elflein's setting gives `T = 5·10⁻⁵`: almost noiseless gradient descent that slides each start point into
# the nearest low-energy region. Why would anyone want that? Because in contrastive divergence (chapter 03)
# the chains are short (20–100 steps) and the energy landscape changes every step; what matters is that
# the negatives land where the model puts *too much* mass, quickly, not that they are exact samples.
# Large steps with little noise get there; a correct Langevin step would need a tiny `η` and many steps.
#
# Below: the same Gaussian with `α = 0.025`, `σ = 0.08`, so `T = 0.128` and the cloud should shrink by
# `√T ≈ 0.36` in every direction.

# %%
alpha, sigma = 0.025, 0.08
T = sigma**2 / (2 * alpha)
x_decoupled = sgld(gaussian_energy, x0, n_steps=n_steps, step_size=alpha, noise_std=sigma, form="decoupled")
cov_decoupled = torch.cov(x_decoupled.T)
print(f"temperature T = sigma^2 / (2 alpha) = {T}")
print("sample covariance (decoupled):\n", cov_decoupled.numpy().round(4))

# check: the same closed form, now with step α and noise σ; and it is T Σ up to the small bias
expected_T = stationary_covariance(alpha, sigma)
assert torch.allclose(cov_decoupled, expected_T, atol=T * tol)
assert torch.allclose(expected_T, T * Sigma, atol=0.05 * T)

# %% [markdown]
# ## 3. A multimodal target: a mixture of four Gaussians
# `E(x) = -log Σ_k exp(-‖x - μ_k‖² / (2 s²))` with four modes on the corners of a square. Multimodal
# energies are where sampling gets hard: a chain must climb an energy barrier to change mode. We run
# Langevin chains from a uniform start and keep the whole chain of a few of them for the plot
# (`return_chain=True`).

# %%
modes = torch.tensor([[-2.0, -2.0], [-2.0, 2.0], [2.0, -2.0], [2.0, 2.0]])   # (K, 2)
s_mode = 0.5


def mixture_energy(x: torch.Tensor) -> torch.Tensor:
    """E(x) = -logsumexp_k -‖x - μ_k‖² / (2 s²).  (N, 2) -> (N,)."""
    d2 = ((x[:, None, :] - modes[None]) ** 2).sum(dim=2)                  # (N, K)
    return -torch.logsumexp(-d2 / (2 * s_mode**2), dim=1)


x0_mix = torch.rand(n_chains, 2) * 8 - 4                                # U(-4, 4)²
x_mix, chain = sgld(mixture_energy, x0_mix, n_steps=n_steps // 2, step_size=0.02, form="langevin",
                    return_chain=True)
nearest = torch.cdist(x_mix, modes).argmin(dim=1)
share = torch.bincount(nearest, minlength=4).float() / n_chains
print("share of chains per mode:", share.numpy().round(3))
# check: by symmetry each mode holds a quarter of the mass (the start is symmetric too)
assert torch.allclose(share, torch.full((4,), 0.25), atol=0.05)
# check: within a mode, ‖x - μ‖²/s² is chi-square with 2 degrees of freedom, so E ≈ 1 on average
e_mix = mixture_energy(x_mix)
print(f"mean energy of the samples: {e_mix.mean():.3f}  (target ≈ {1 - math.log(1 + 3 * math.exp(-8 / s_mode**2)):.3f})")
assert abs(float(e_mix.mean()) - 1.0) < 0.1

# %% [markdown]
# ## 4. The replay buffer: persistent short chains
#
# Inside a training loop we cannot afford hundreds of steps per batch. Persistent contrastive divergence
# (Tieleman 2008; Du & Mordatch 2019) keeps the chain states between training steps in a *replay buffer*:
# each step draws a batch of stored states, restarts a fraction `ρ` of them from noise (Elflein: `ρ = 0.05`,
# capacity 10,000, `U(-1, 1)` starts), runs a few SGLD steps, and writes them back. A chain that is drawn
# `k` times has effectively run `k × n_steps` steps.
#
# Here: 5 Langevin steps (`η = 0.05`) per draw on the mixture. We compare (a) fresh 5-step chains from
# noise with (b) the buffer after a number of rounds, by the mean energy (target ≈ 1 from above). The
# buffer stays a little above the target: the slots restarted recently have not converged yet.

# %%
rounds = 150 if FAST else 400
short = 5
uniform_start = lambda n: torch.rand(n, 2) * 8 - 4                       # noqa: E731  (the buffer's init)
buffer = ReplayBuffer(shape=(2,), capacity=1000, reinit_prob=0.05, init=uniform_start,
                      generator=torch.Generator().manual_seed(0))
energy_trace = []
for r in range(rounds):
    x, idx = buffer.sample(100)                     # (100, 2) stored states; 5 % restarted from U(-4, 4)²
    x = sgld(mixture_energy, x, n_steps=short, step_size=0.05, form="langevin")
    buffer.update(idx, x)                           # the chains persist
    energy_trace.append(float(mixture_energy(buffer.buffer).mean()))

fresh = sgld(mixture_energy, uniform_start(1000), n_steps=short, step_size=0.05, form="langevin")
e_fresh, e_buffer = float(mixture_energy(fresh).mean()), energy_trace[-1]
print(f"mean energy: fresh {short}-step chains {e_fresh:.2f}, replay buffer after {rounds} rounds {e_buffer:.2f}")
# check: persistence gets much closer to the target energy than short runs from noise
assert e_buffer < e_fresh and abs(e_buffer - 1.0) < abs(e_fresh - 1.0)

# %%
if plt is not None:
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.3))
    theta = np.linspace(0, 2 * np.pi, 200)
    L = torch.linalg.cholesky(Sigma).numpy()
    ellipse = 2 * (L @ np.stack([np.cos(theta), np.sin(theta)]))          # 2-sigma contour of N(0, Σ)
    for ax, xs, title, scale in [(axes[0], x_langevin, f"Langevin (Eq. 4), η = {eta}", 1.0),
                                 (axes[1], x_decoupled, f"decoupled α = {alpha}, σ = {sigma}: T = {T}", math.sqrt(T))]:
        ax.scatter(*xs[:2000].T.numpy(), s=2, alpha=0.4)
        ax.plot(*ellipse, "k-", lw=1, label="2σ of N(0, Σ)")
        if scale != 1.0:
            ax.plot(*(scale * ellipse), "r--", lw=1, label="2σ of N(0, TΣ)")
        ax.set_xlim(-3.5, 3.5), ax.set_ylim(-3.5, 3.5), ax.set_aspect("equal"), ax.set_title(title)
        ax.legend(loc="lower right", fontsize=8)
    g = torch.linspace(-4, 4, 120)
    G1, G2 = torch.meshgrid(g, g, indexing="xy")
    E_grid = mixture_energy(torch.stack([G1.ravel(), G2.ravel()], 1)).view(120, 120)
    axes[2].contour(G1, G2, E_grid, levels=12, cmap="Greys", linewidths=0.7)
    axes[2].scatter(*x_mix[:2000].T.numpy(), s=2, alpha=0.3)
    path = torch.stack(chain)[:, :6]                                    # (steps + 1, 6 chains, 2)
    for j in range(6):
        axes[2].plot(path[:, j, 0], path[:, j, 1], lw=1)
    axes[2].set_aspect("equal"), axes[2].set_title("mixture: samples and 6 chains")
    axes[3].plot(energy_trace, label="replay buffer (mean E)")
    axes[3].axhline(e_fresh, color="r", ls="--", label=f"fresh {short}-step chains")
    axes[3].axhline(1.0, color="k", ls=":", label="target ≈ 1")
    axes[3].set_xlabel("round"), axes[3].set_ylabel("mean energy"), axes[3].legend()
    axes[3].set_title("persistent chains converge")
    save_figure(fig, "02_langevin_sampling.png")

# %% [markdown]
# ## 5. The update as one fused operation
#
# Every SGLD step ends with the same element-wise update: `x ← clamp(x - α g + σ n)`, `n ~ N(0, I)`. In
# plain PyTorch that is four passes over memory plus a call to `randn`, which dominates on a CPU.
# `ebm_ood.sampling.ops.sgld_step_` does it in one pass, with a C++/CUDA kernel in `csrc/` (chapter 10
# walks through it). Its noise comes from a *counter-based* generator (Philox): the normal for element
# `i` is a pure function of `(seed, offset, i)`, so the kernel and a pure-PyTorch twin
# (`ops.sgld_step_twin_`) can produce the same numbers. `sgld` keeps one seed per chain and passes
# `offset = t` at step `t`.

# %%
print("fused op backend in use:", ops.backend())
x_start = torch.randn(64, 2)
grad = torch.randn(64, 2)
a = x_start.clone()
b = x_start.clone()
ops.sgld_step_(a, grad, 0.1, 0.05, seed=1234, offset=7)                        # the op (or the twin)
ops.sgld_step_twin_(b, grad, 0.1, 0.05, -math.inf, math.inf, 1234, 7)          # the pure-PyTorch twin
if ops.backend() == "extension":
    print("comparing the compiled op with the twin")
else:
    print("the compiled extension could not be loaded here: comparing the twin with itself")
# check: bit-for-bit identical, for the same seed and offset
assert torch.equal(a, b)
# check: the update is the formula, with the noise recovered from a zero-step, unit-noise update
n = torch.zeros(64, 2)
ops.sgld_step_twin_(n, torch.zeros(64, 2), 0.0, 1.0, -math.inf, math.inf, 1234, 7)
assert torch.allclose(a, x_start - 0.1 * grad + 0.05 * n, atol=1e-6)
# and a different offset gives different noise (no noise is reused along a chain)
c = x_start.clone()
ops.sgld_step_(c, grad, 0.1, 0.05, seed=1234, offset=8)
assert not torch.equal(a, c)
print("fused op and twin agree")

# %% [markdown]
# ### Summary
# * HEAT Eq. 4: `z ← z - (η/2)∇E + √η w` samples `exp(-E)` (up to an `O(η)` bias we computed exactly).
# * Decoupled `x ← x - α∇E + σε` samples `exp(-E/T)`, `T = σ²/(2α)`: what EBM training code really runs.
# * Multimodal targets need long chains; the replay buffer makes many short chains act like long ones.
# * `ops.sgld_step_` fuses the update; its Philox noise makes the compiled op and the twin agree exactly.
#
# ## Exercises
# Each exercise has a check, `ch02.check_exercise_k(answer)` (imported in the last cell), that recomputes the
# answer independently and says what is wrong. Reference solutions: `tutorials/exercises/solutions/ch02.py`.
# 1. **The bias of a large step.** Rerun section 1 with `η = 0.2` and `η = 0.5` and measure the sample
#    covariance (or compute it with `stationary_covariance`). Above which `η` does the chain diverge, and why
#    (hint: the largest eigenvalue of `Σ⁻¹`)? Check:
#    `ch02.check_exercise_1({"cov_0.2": C1, "cov_0.5": C2, "eta_max": eta})`.
# 2. **Equipartition.** Predict the mean energy `E[½ xᵀΣ⁻¹x]` of the decoupled sampler with `α = 0.01`,
#    `σ = 0.1` (`T = 0.5`) at stationarity. Then write `measure(step_size, noise_std)` that measures it with
#    `sgld` (≥ 2000 chains from 0, ≥ 1500 steps). Check: `ch02.check_exercise_2({"predicted": p, "measure":
#    measure})`; it also calls `measure` at a large step of its own choosing, where the prediction fails.
# 3. **Unequal modes.** Give the mixture weights `(0.7, 0.1, 0.1, 0.1)` (add `log w_k` inside the
#    `logsumexp`) and write `shares(center)`: run 2000 Langevin chains (`η = 0.02`, 200 steps) from the 8 × 8
#    box centred at `center` (`(0, 0)` is `U(-4, 4)²`) and return the share of chains ending at each mode.
#    Check: `ch02.check_exercise_3(shares)` (at `(0, 0)` and at a centre it draws). What would it take to
#    recover the weights?
# 4. **Implement it: the Langevin chain.** Write `langevin_chain(energy, x0, n_steps, eta, noise)`, HEAT Eq. 4
#    `z ← z - (η/2)∇E(z) + √η w_t` with `w_t = noise(t)` and the gradient from `torch.autograd.grad`. Check:
#    `ch02.check_exercise_4(langevin_chain)` runs it against the library's `sgld(..., form="langevin")` on the
#    same noise stream.

# %%
# The exercise checks: a script finds tutorials/exercises/ beside it; a notebook finds it when run in tutorials/.
from exercises import ch02  # noqa: E402

print("exercise checks:", ", ".join(f"ch02.{name}(answer)" for name in dir(ch02) if name.startswith("check_")))
