# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Chapter 03 — Training an EBM with contrastive divergence
#
# *ebm_ood tutorials.* Run as a script: `python tutorials/03_contrastive_divergence.py`
# (add `EBM_OOD_FAST=1` for a quick version). To open it as a notebook, convert it with jupytext
# (`jupytext --to ipynb tutorials/03_contrastive_divergence.py`). Figures go to `$EBM_OOD_FIGURES`
# (default `tutorials/figures/`).
#
# **Why.** Chapter 02 gave us a sampler for `p_θ(x) = exp(-E_θ(x)) / Z(θ)`. Now we *train* `E_θ` as a
# density of the in-distribution data, so that its energy becomes an OOD score: low on data, high elsewhere.
# The obstacle is `Z(θ)`: we cannot compute it, but we can compute its gradient *with samples*.
#
# **What you will learn.**
# 1. The maximum-likelihood gradient as "data minus model" and the contrastive-divergence loss (Elflein §3).
# 2. Why a persistent replay buffer and a couple of tricks (L2 energy penalty, input noise) make it work.
# 3. Training `ebm_ood.methods.contrastive_divergence.CDDetector` on 2-D data, then on 8×8 digits, and
#    reading its energies as an OOD detector; the training step written out, giving the same weights as `fit`.
# 4. Why the CD loss is no progress bar, what SGLD chains from noise become under the trained energy, and
#    how the energy reacts to noisy, flipped and shrunk digits.

# %%
from dataclasses import replace

import numpy as np
import torch

from ebm_ood.data import get_dataset
from ebm_ood.methods.contrastive_divergence import (
    CDDetector, JEMEnergy, cd_config, contrastive_divergence_loss,
)
from ebm_ood.metrics import aupr_in, auroc
from ebm_ood.nn import MLP
from ebm_ood.plumbing.tutorial import FAST, save_figure, setup

plt = setup(seed=0)  # seed 0; one thread (fastest on small tensors); pyplot or None


# %% [markdown]
# ## 1. The gradient of the log-likelihood is "data minus model"
#
# With `log p_θ(x) = -E_θ(x) - log Z(θ)` and `Z(θ) = ∫ exp(-E_θ(x')) dx'`,
#
# $$\nabla_\theta\, \mathbb E_{\text{data}}[-\log p_\theta(x)]
#   = \mathbb E_{\text{data}}[\nabla_\theta E_\theta(x^+)] - \mathbb E_{p_\theta}[\nabla_\theta E_\theta(x^-)],$$
#
# because `∇θ log Z = E_{p_θ}[-∇θ E]`. Hinton (2002) turns this into a loss whose gradient it is
# (Elflein §3): with negatives `x⁻` drawn from the model and treated as constants,
#
# $$L_{CD} = \operatorname{mean}_i E_\theta(x^+_i) - \operatorname{mean}_j E_\theta(x^-_j).$$
#
# Minimising it pushes energy *down* on data and *up* on the model's own samples. When the model's samples
# look like the data, the two terms balance and the gradient vanishes: that is maximum likelihood.
#
# A check you can run: the autograd gradient of `L_CD` equals the average of per-sample gradients.

# %%
energy_net = JEMEnergy(MLP(2, 1, width=16, depth=3)).double()
x_pos, x_neg = torch.randn(6, 2, dtype=torch.float64), 3 * torch.randn(9, 2, dtype=torch.float64)
params = list(energy_net.parameters())


def flat(grads):
    return torch.cat([g.reshape(-1) for g in grads])


per_sample = lambda xs: torch.stack([flat(torch.autograd.grad(energy_net(x[None]).sum(), params)) for x in xs])
direct = per_sample(x_pos).mean(0) - per_sample(x_neg).mean(0)       # E_data[∇θE] - E_model[∇θE]
via_loss = flat(torch.autograd.grad(contrastive_divergence_loss(energy_net(x_pos), energy_net(x_neg)), params))
print("max |difference|:", (direct - via_loss).abs().max().item())
assert torch.allclose(direct, via_loss, atol=1e-12)

# %% [markdown]
# ## 2. Where the negatives come from: persistent SGLD chains
#
# `x⁻ ~ p_θ` is drawn with the sampler of chapter 02 in its *decoupled* form (the authors' code,
# Elflein App. B): `x ← x - α ∇ₓE(x) + σ ε` with `α = 1`, `σ = 0.01`. Running long chains from scratch at
# every step would be far too slow, so the chains are **persistent** (Tieleman 2008): a replay buffer keeps
# 10,000 chain states; each step takes a batch of them (5 % restarted from `U(-1, 1)`), runs a few SGLD
# steps, and writes them back. Across training each chain gets many steps.
#
# Two stabilisers, both config fields of `CDConfig`:
# * `l2_weight` `λ₂`: the penalty `λ₂ (mean E(x⁺)² + mean E(x⁻)²)` (Du & Mordatch; `λ₂ = 1` in the authors'
#   code) keeps both energies near 0, so they cannot drift off together;
# * `data_noise_std`: Gaussian noise of variance 0.1 on image inputs (Elflein App. B) smooths the data
#   distribution the model has to match.
#
# The energy is JEM-style, `E(x) = -logsumexp_k f(x)[k]` (Elflein Eq. 3); unsupervised CD has one logit,
# so `E(x) = -f(x)[0]`.
#
# ## 3. A 2-D mixture of Gaussians
#
# Eight modes on a circle of radius 0.7, inside the `U(-1, 1)` box where the chains start.

# %%
rng = np.random.default_rng(0)
angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
modes = 0.7 * np.stack([np.cos(angles), np.sin(angles)], 1)
x2d = (modes[rng.integers(0, 8, 2000)] + rng.normal(0, 0.05, (2000, 2))).astype(np.float32)

base = cd_config("default", "tabular")
cfg2d = replace(base, train=replace(base.train, steps=250 if FAST else 1500, batch_size=64, warmup=50, lr=2e-3,
                                    eval_every=100, progress=False, warmup_share=None),
                sgld_steps=20, buffer_size=1000, mlp_width=64, mlp_depth=4, select="last")
toy = CDDetector(cfg2d, seed=0).fit(x2d)
print("training steps:", toy.history_.steps_done)

# %%
far = 2.5 * np.stack([np.cos(angles + 0.3), np.sin(angles + 0.3)], 1).astype(np.float32)
e_modes, e_far = toy.score(modes.astype(np.float32)), toy.score(far)
print(f"energy at the modes: {e_modes.mean():+.3f} (max {e_modes.max():+.3f}); "
      f"far away: {e_far.mean():+.3f} (min {e_far.min():+.3f})")

# %%
g = np.linspace(-1.5, 1.5, 121, dtype=np.float32)
gx, gy = np.meshgrid(g, g)
e = toy.score(np.stack([gx.ravel(), gy.ravel()], 1)).reshape(gx.shape)         # (121, 121)
samples = toy.buffer_samples(1000)                                                # (1000, 2)
T = cfg2d.noise_std**2 / (2 * cfg2d.step_size)                                    # the sampler's temperature
on_ring = np.linalg.norm(samples[:, None] - modes[None], axis=2).min(1) < 0.15   # within 3 std of a mode
print(f"energy range on the grid: {e.max() - e.min():.3f} = {(e.max() - e.min()) / T:.0f} T  (T = {T:g}); "
      f"buffer samples within 0.15 of a mode: {100 * on_ring.mean():.0f} %")

if plt is not None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    fig.subplots_adjust(wspace=0.4)
    axes[0].scatter(*x2d[:1000].T, s=2)
    axes[0].set_title("data")
    top = np.percentile(e, 60)                     # the far corners would take up most of the colour scale
    im = axes[1].contourf(gx, gy, np.minimum(e, top), 30, cmap="viridis_r")
    fig.colorbar(im, ax=axes[1], label="E(x), clipped at its 60th percentile")
    axes[1].scatter(*modes.T, marker="x", c="r", s=25, label="data modes")
    axes[1].legend(loc="lower left", fontsize=8)
    axes[1].set_title("energy (bright = low)")
    axes[2].scatter(*samples.T, s=2, c="tab:orange")
    axes[2].set_title("replay buffer (model samples)")
    for ax in axes:
        ax.set_xlim(-1.5, 1.5)
        ax.set_ylim(-1.5, 1.5)
        ax.set_aspect("equal")
    save_figure(fig, "03_cd_mixture.png")

# %% [markdown]
# ### The loop behind `fit`
#
# `CDDetector.fit` is one short loop. Each training step:
# 1. draws a mini-batch `x⁺` of data (uniformly, with replacement);
# 2. draws `B` chain states from the replay buffer, each restarted from `U(-1, 1)` with probability
#    `ρ = reinit_prob` (5 %);
# 3. runs the SGLD chain on them, `x ← x - α ∇ₓE(x) + σ w` for `sgld_steps` steps, the network in eval mode
#    (`w` is the fused op's Philox noise: `philox.normal(numel, key, t)` at step `t`, one key per chain);
# 4. writes the chain ends back into the same buffer slots;
# 5. takes one Adam step on `L_CD + λ₂ (mean E(x⁺)² + mean E(x⁻)²)`, with the learning rate warmed up
#    linearly over the first `warmup` steps.
#
# Here it is, written out for the ring data, with the same seed as a `CDDetector` trained beside it. One
# seed fixes every draw (`seed_everything`: the weights, the buffer, the restarts, the SGLD keys), the draws
# happen in the same order and the arithmetic is the same float32 operations, so the two networks end
# **bit for bit** equal — the check below compares every weight with `torch.equal`.

# %%
from ebm_ood.energy import energy_from_logits
from ebm_ood.nn import build_network
from ebm_ood.sampling import ops, philox
from ebm_ood.training import seed_everything

c = replace(cfg2d, train=replace(cfg2d.train, steps=15 if FAST else 60, warmup=10), buffer_size=200, sgld_steps=5)
B, seed = c.train.batch_size, 0

seed_everything(seed)
perm = np.random.default_rng(seed).permutation(len(x2d))                   # fit holds out 10 % for validation
x_train = torch.as_tensor(x2d[perm[round(0.1 * len(x2d)):]])                 # (1800, 2)
net = build_network((2,), 1, mlp_width=c.mlp_width, depth=c.mlp_depth)      # one logit: E(x) = -f(x)[0]
energy = lambda x: energy_from_logits(net(x))                               # noqa: E731  (N,)
buffer = torch.rand(c.buffer_size, 2) * 2.0 - 1.0                           # chain states, U(-1, 1)
opt = torch.optim.Adam(net.parameters(), lr=c.train.lr, betas=c.train.betas, weight_decay=c.train.weight_decay)
warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / c.train.warmup))
batches = torch.Generator().manual_seed(seed)                               # the mini-batch draws

for step in range(c.train.steps):
    x_pos = x_train[torch.randint(0, len(x_train), (B,), generator=batches)]          # 1. data
    idx = torch.randint(0, c.buffer_size, (B,))                                        # 2. buffer slots
    restart = torch.rand(B) < c.reinit_prob
    x = buffer[idx]
    if restart.any():
        x[restart] = torch.rand(int(restart.sum()), 2) * 2.0 - 1.0
    key = ops.draw_seed()                                                              # 3. SGLD chain
    net.eval()
    for t in range(c.sgld_steps):
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(x).sum(), x)
        x = x.detach() - grad * c.step_size + philox.normal(x.numel(), key, t).view(x.shape) * c.noise_std
    net.train()
    buffer[idx] = x                                                                    # 4. write back
    e = energy(torch.cat([x_pos, x]))                                                  # 5. CD + L2, Adam
    e_pos, e_neg = e[:B], e[B:]
    loss = (e_pos.mean() - e_neg.mean()) + c.l2_weight * ((e_pos**2).mean() + (e_neg**2).mean())
    opt.zero_grad()
    loss.backward()
    opt.step()
    warmup.step()

library = CDDetector(c, seed=seed).fit(x2d)
same = all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), library.net_.state_dict().values()))
print(f"{c.train.steps} steps written out vs CDDetector.fit: weights bit-identical: {same}; "
      f"buffers equal: {torch.equal(buffer, library.buffer_.buffer)}")
assert same and torch.equal(buffer, library.buffer_.buffer)

# %% [markdown]
# Most of the buffer's chains sit on the ring of modes (the share printed above). The decoupled sampler with
# `σ = 0.01` is close to gradient descent (temperature `σ²/(2α) = 5·10⁻⁵`), so the samples are where short
# descents on `E` end rather than a fair draw from `exp(-E)`. The energy itself is almost flat: its whole
# range on the grid is a few hundredths (printed above, also in units of `T`), and the far corners take most
# of it, so the middle panel clips the colour scale to show the region around the data. How well it
# separates the eight wells depends on the training length: after the default 1500 steps the low-energy
# region follows the ring, with local minima near the modes; after the 250 steps of `EBM_OOD_FAST=1` it is
# one broad, lopsided basin. What the checks below need is only that the modes get lower energy than
# far-away points. CD with
# such short-run samplers learns an energy that is low at the data — good enough for OOD detection, even
# though `exp(-E)` is not an accurate density (Nijkamp et al. 2019).
#
# Notice also how *small* the energies are (hundredths). Near equilibrium `E(x⁺) ≈ E(x⁻)`, and the L2
# penalty pulls both towards 0; only the ranking of energies matters for an OOD score. The opposite
# failure is worth knowing: if the model outruns its chains (they sit on a flat, high-energy plateau where
# `∇ₓE ≈ 0`), the loss settles at its minimum `-1/(2λ₂)` with `E⁺ = -1/(2λ₂)`, `E⁻ = +1/(2λ₂)` (±½ at
# `λ₂ = 1`), and CD degenerates into a classifier of "data vs. stuck chains". Watch `e_pos`/`e_neg` in `history_.logs` for it.
#
# ## 4. Digits (8×8, in [-1, 1]) and the OOD sets
#
# The same detector with the small WideResNet. The OOD sets are the held-out digits 8 and 9, image
# patches, and the non-natural sets of Elflein App. D (noise, constant images, unnormalised "OODomain"
# images — the test digits in their raw pixel range [0, 16] instead of [-1, 1] — and smoothed noise).

# %%
digits = get_dataset("digits")
cfg = cd_config("quick" if FAST else "default", digits.kind)
cfg = replace(cfg, train=replace(cfg.train, progress=False, eval_every=10 if FAST else 50))  # validate every 10 / 50 steps
if not FAST:  # this chapter's budget: 500 steps of 64 (the `default` preset trains 50 epochs of 32, ~1.6 × as many samples)
    cfg = replace(cfg, train=replace(cfg.train, steps=500, epochs=None, batch_size=64, warmup=50))
cfg = replace(cfg, select="val_loss")  # the option this section looks at; the default keeps the last weights
cd = CDDetector(cfg, seed=0).fit(digits.x_train, validation=digits.x_val)
print(f"best ID-validation step {cd.history_.best_step} of {cd.history_.steps_done}")
s_id = cd.score(digits.x_test)
scores = {name: cd.score(o.x) for name, o in digits.ood.items()}
print(f"{'OOD set':12s} {'group':12s} {'AUPR-In':>8s} {'AUROC':>7s}")
for name, s in scores.items():
    print(f"{name:12s} {digits.ood[name].group:12s} {100 * aupr_in(s_id, s):8.1f} {100 * auroc(s_id, s):7.1f}")
below = float(np.mean(scores["oodomain"] < np.median(s_id)))
print(f"oodomain: {100 * below:.0f} % of the images get a lower energy than the median ID test digit")

# %%
if plt is not None:
    samples = cd.buffer_samples(64)[:, 0]                      # (64, 8, 8)
    tiles = np.full((8, 8, 10, 10), np.nan)                    # an 8 x 8 grid of 8 x 8 images, 1-pixel gaps
    tiles[:, :, 1:9, 1:9] = samples.reshape(8, 8, 8, 8)
    tiles = np.pad(tiles.transpose(0, 2, 1, 3).reshape(80, 80), ((0, 1), (0, 1)), constant_values=np.nan)
    gray = plt.get_cmap("gray").copy()
    gray.set_bad("tab:blue")                                   # the gaps (NaN)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    axes[0].imshow(tiles, cmap=gray, vmin=-1, vmax=1)
    axes[0].set_title("replay-buffer samples")
    axes[0].axis("off")
    bins = np.linspace(min(s_id.min(), *(s.min() for s in scores.values())),
                       np.percentile(np.concatenate([s_id, *scores.values()]), 99), 50)
    axes[1].hist(s_id, bins, density=True, alpha=0.6, label="ID test")
    for name in ("digits-89", "noise", "constant", "oodomain"):
        axes[1].hist(scores[name], bins, density=True, histtype="step", lw=1.5, label=name)
    axes[1].set_xlabel("energy E(x) (higher = more OOD)")
    axes[1].legend()
    save_figure(fig, "03_cd_digits.png")

# %% [markdown]
# (The buffer holds the chains at the *end* of training; the weights are those of the checkpoint chosen on
# the ID validation set.) Things to notice (they mirror Elflein et al.'s findings): the non-natural sets built from noise get
# high energy easily, while the *natural* held-out digits, which share the low-level statistics of the
# training digits, are much harder. Look at "oodomain": pixel values up to 16 are far outside the data
# range [-1, 1], and nothing in CD ties the energy down there. An EBM is only trained where its samples go,
# and the replay buffer's chains start in U(-1, 1), so no negative sample ever visits the range of these
# images: whatever energy they get is extrapolation. The table says which way it went: at the default size
# this run ranks them mostly *below* the test digits (AUROC under 50 %; the line under the table gives the
# share below the median test digit), while the short `EBM_OOD_FAST=1` run happens to rank them above.
#
# ### Is training making progress? Not by its loss
#
# The loss a CD run reports is a poor progress bar. `L_CD = mean E(x⁺) - mean E(x⁻)` is a difference of two
# energies that move together: while the chains keep up with the model, `E(x⁻) ≈ E(x⁺)` and the loss sits
# near 0 whether the model is good or bad; it falls towards `-1` (where the penalised objective is lowest:
# `E⁺ = -½`, `E⁻ = +½` at `λ₂ = 1`) when the model outruns its chains and separates the data from samples
# stuck behind it — the failure described in section 3. What `fit` logs at every validation: the CD loss of
# that step's batch, and the ID-validation value, minus the same CD + L2 objective on the held-out clean
# digits against the latest chain samples (higher is better).

# %%
logged = [(step, v["e_pos"] - v["e_neg"], v["val"]) for step, v in cd.history_.logs]
print(f"{'step':>5s} {'CD loss (batch)':>16s} {'ID-validation value':>20s}")
for step, cd_loss, val in logged:
    print(f"{step:5d} {cd_loss:16.3f} {val:20.3f}" + ("   <- kept" if step == cd.history_.best_step else ""))
steps_logged, cd_losses, vals = (np.array(column) for column in zip(*logged))

if plt is not None:
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ax.plot(steps_logged, cd_losses, "o-", label="CD loss of the step's batch")
    ax.plot(steps_logged, vals, "s-", label="ID-validation value (higher = kept)")
    ax.axvline(cd.history_.best_step, color="k", lw=0.8, ls=":", label="kept checkpoint")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("training step")
    ax.legend(fontsize=8)
    ax.set_title("what a CD run logs")
    save_figure(fig, "03_cd_training_log.png")

# %% [markdown]
# Read the table with that in mind. The CD loss does not fall steadily: its lowest value is not its last.
# With `select="val_loss"` (set above; an option) `fit` keeps the checkpoint with the best ID-validation
# value, the one number the method can compute from ID data alone. It is *not* a measure of progress
# either — it is the same objective, so it is highest where data and chains are furthest apart in energy:
# here that is the step with the lowest logged CD loss, before the end of training (the checks below keep
# this sentence true). So "best ID-validation step" means "the checkpoint whose energy gap to its own chains was
# largest on held-out digits", not "the best model". That is why `select="last"`, the final weights, is
# the default: CD has no ID-only criterion that measures fit, so no checkpoint but the last is better
# founded than another.

# %%
assert cd_losses[-1] > cd_losses.min(), cd_losses                        # the CD loss is not monotone
assert steps_logged[np.argmin(cd_losses)] == cd.history_.best_step, logged    # kept: largest gap
assert cd.history_.best_step < cd.history_.steps_done                      # before the end

# %% [markdown]
# ### A chain turning noise into digit-like images
#
# What does the sampler do with the trained energy? Start six chains from uniform noise in `[-1, 1]` and run
# the chapter's decoupled SGLD (`α = 1`, `σ = 0.01`), clamped to the data range `[-1, 1]`, for 200 steps —
# far longer than the 5 (fast) or 15 steps per training iteration the chains got during training — and keep
# a few frames.

# %%
from ebm_ood.sampling.sgld import sgld

torch.manual_seed(1)
x_chain = torch.rand(6, 1, 8, 8) * 2 - 1                                    # (6, 1, 8, 8), U(-1, 1)
frame_steps, frames = [0, 10, 25, 50, 100, 200], [x_chain]
for t0, t1 in zip(frame_steps[:-1], frame_steps[1:]):
    x_chain = sgld(cd.model_, x_chain, n_steps=t1 - t0, step_size=cfg.step_size, noise_std=cfg.noise_std,
                   form=cfg.sgld_form, clamp=(-1.0, 1.0))
    frames.append(x_chain)
with torch.no_grad():
    e_frames = np.stack([cd.model_(f).numpy() for f in frames])             # (frames, 6)
dark = [float((f <= -0.9).float().mean()) for f in frames]                  # share of pixels at the dark end
median_id = float(np.median(s_id))
for t, e, d in zip(frame_steps, e_frames, dark):
    print(f"step {t:3d}: energies {np.array2string(e, precision=2)}, pixels ≤ -0.9: {100 * d:3.0f} %")
print(f"median energy of the ID test digits: {median_id:+.3f}")

if plt is not None:
    fig, axes = plt.subplots(6, len(frames), figsize=(1.3 * len(frames), 1.3 * 6 + 0.4))
    for i in range(6):
        for j, f in enumerate(frames):
            axes[i, j].imshow(f[i, 0].numpy(), cmap="gray", vmin=-1, vmax=1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(f"step {frame_steps[j]}", fontsize=9)
    fig.suptitle("SGLD chains from noise under the trained energy", fontsize=10)
    save_figure(fig, "03_sgld_chain.png")

# %% [markdown]
# Every chain ends far below the energy it started at, and by step 200 each sits below the median energy of
# the test digits: to this model, the chains' end points are *more* typical than real digits. The frames show how
# they get there: the share of dark pixels climbs as the chain paints the background black and keeps bright
# strokes in the middle — the coarse layout of a digit, far from the variety of the training digits. This
# is the usual picture for a CD model trained with short-run chains (Nijkamp et al. 2019): its energy ranks
# data against noise well, and it is a poor generator. Its lowest-energy images are not the images it was
# trained on — keep that in mind for the probes below.

# %%
assert all(e_frames[-1] < e_frames[0]), e_frames                            # each chain's energy fell
assert e_frames[-1].max() < median_id, (e_frames[-1], median_id)            # ...below the typical test digit
assert dark[-1] > dark[0] + 0.2, dark                                       # ...by darkening the background

# %% [markdown]
# ### Probing the energy: noise, flips, a smaller digit
#
# Take the ID test digits, change them in ways a person would call "the same digit" or "a corrupted
# digit", and see where their energies go. For each probe: the median energy, the share of images whose
# energy went *up*, and the AUROC of telling the probed images from the originals (50 % = no difference).

# %%
def shrink(x):
    """Each 2 × 2 block averaged into one pixel, the 4 × 4 result centred on a dark (-1) canvas. (N, 1, 8, 8)."""
    out = np.full_like(x, -1.0)
    out[:, :, 2:6, 2:6] = x.reshape(-1, 1, 4, 2, 4, 2).mean((3, 5))
    return out


noise_rng = np.random.default_rng(0)
x_id = digits.x_test                                                          # (N, 1, 8, 8) in [-1, 1]
probes = {
    "Gaussian noise σ = 0.3": np.clip(x_id + 0.3 * noise_rng.standard_normal(x_id.shape), -1, 1).astype(np.float32),
    "Gaussian noise σ = 1": np.clip(x_id + 1.0 * noise_rng.standard_normal(x_id.shape), -1, 1).astype(np.float32),
    "flipped left-right": x_id[..., ::-1].copy(),
    "flipped upside-down": x_id[..., ::-1, :].copy(),
    "shrunk to 4 × 4": shrink(x_id),
}
probe_scores = {name: cd.score(xp) for name, xp in probes.items()}
print(f"{'probe':24s} {'median E':>9s} {'E went up':>10s} {'AUROC':>7s}    (originals: median E {median_id:+.3f})")
for name, sp in probe_scores.items():
    print(f"{name:24s} {np.median(sp):+9.3f} {100 * np.mean(sp > s_id):9.0f} % {100 * auroc(s_id, sp):6.1f}")

# %% [markdown]
# Noise raises the energy of nearly every image, and more noise raises it more (σ = 1: a higher median and
# AUROC than σ = 0.3). Flipping raises it only a little: roughly three images in four go up, and the AUROC
# stays well below that of noise — a flipped digit is still bright strokes on a dark background, and that
# is most of what this energy measures. Shrinking goes the other way: the small digit on a mostly dark
# canvas gets a *lower* energy than the original (AUROC under 50 %), as the chains above predicted — dark
# background is what this energy likes best. A CD energy ranks images by how data-like their pixel
# statistics are, not by whether they show a digit.

# %%
up = {name: float(np.mean(sp > s_id)) for name, sp in probe_scores.items()}
auc = {name: auroc(s_id, sp) for name, sp in probe_scores.items()}
assert up["Gaussian noise σ = 0.3"] > 0.9, up
assert auc["Gaussian noise σ = 1"] > auc["Gaussian noise σ = 0.3"], auc
assert np.median(probe_scores["Gaussian noise σ = 1"]) > np.median(probe_scores["Gaussian noise σ = 0.3"])
for flip in ("flipped left-right", "flipped upside-down"):
    assert 0.5 < up[flip] < 0.9 and 0.5 < auc[flip] < auc["Gaussian noise σ = 0.3"], (flip, up, auc)
assert auc["shrunk to 4 × 4"] < 0.5 and np.median(probe_scores["shrunk to 4 × 4"]) < median_id, auc

# %% [markdown]
# ## Exercises
# Each exercise has a check, `ch03.check_exercise_k(answer)` (imported in the last cell), that recomputes the
# answer independently and says what is wrong. Reference solutions: `tutorials/exercises/solutions/ch03.py`.
# 1. **CD is moment matching.** Take the one-parameter family `E_θ(x) = θ‖x‖²/2` and train θ on
#    `ch03.ring_data()` with `contrastive_divergence_loss`, drawing the negatives exactly from `N(0, I/θ)`.
#    Where does θ settle, and why? Check: `ch03.check_exercise_1(theta)`.
# 2. **The sampler's temperature.** What temperature does the chapter's sampler (`cd_config("default",
#    "tabular")`: decoupled form) target? Write `temperature(form, step_size, noise_std)` and
#    `gradient_step(form, step_size)` (the factor on `∇E`) for both of `sgld`'s forms. Check:
#    `ch03.check_exercise_2({"T_decoupled": ..., "temperature": temperature, "gradient_step": gradient_step})`
#    (at settings it draws). Retrain `toy` with `sgld_form="langevin"` and compare the buffer.
# 3. **What the L2 penalty pins.** Add a constant `c` to every energy in `ch03.E_POS` and `ch03.E_NEG`. Which
#    `c` minimises `contrastive_divergence_loss + energy_l2_penalty`? Check: `ch03.check_exercise_3(c)`. Which
#    `c` minimises the CD loss alone?
# 4. **Implement it: the replay buffer's draw.** Write `buffer_sample(buffer, batch_size, reinit_prob,
#    generator)`: uniform slots with replacement (`torch.randint`), then the restart mask
#    (`torch.rand(B) < reinit_prob`), then `buffer[idx]` with the restarted rows replaced by fresh `U(-1, 1)`
#    states, every draw from `generator`. Check: `ch03.check_exercise_4(buffer_sample)` compares it bit for bit
#    with `ReplayBuffer.sample` on the same generator.
#
# ## Check
# The 2-D model must rank the modes below the far-away points — every mode below the far points' mean
# energy, and at most one of the eight far points as low as a mode (the energies differ by hundredths, so
# on a short run one far point can end level with the modes, depending on the CPU's vector width) — and
# the digits model must tell uniform noise from digits.

# %%
assert e_modes.max() < e_far.mean() and (e_far <= e_modes.max()).sum() <= 1, (e_modes, e_far)
assert auroc(s_id, scores["noise"]) > 0.9
print("chapter 03 checks passed")


# %%
# The exercise checks: a script finds tutorials/exercises/ beside it; a notebook finds it when run in tutorials/.
from exercises import ch03  # noqa: E402

print("exercise checks:", ", ".join(f"ch03.{name}(answer)" for name in dir(ch03) if name.startswith("check_")))
