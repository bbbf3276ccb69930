# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Chapter 07 — Measuring OOD detection: AUROC, AUPR-In/Out, FPR95
#
# *ebm_ood tutorials.* Run as a script: `python tutorials/07_measuring_ood_detection.py`
# (`EBM_OOD_FAST=1` for a quick version). To open it as a notebook, convert it with jupytext
# (`pip install jupytext`, then `jupytext --to ipynb tutorials/07_measuring_ood_detection.py`); jupytext is
# not a dependency of `ebm_ood`. Figures go to `$EBM_OOD_FIGURES` (default `tutorials/figures/`).
#
# **Why a whole chapter on metrics?** Every detector in this course outputs one score per input, higher =
# more OOD. To compare detectors we summarise how well the scores separate an ID test set from an OOD set.
# The three summaries used by both papers look standard, but they are not: the literature disagrees on
# *which class is positive* and on *how the 95 % operating point is picked*, and those choices move
# numbers by more than the gaps between methods in many tables. The Elflein paper's text reports AUPR with
# ID positive while its code's tables use OOD positive; HEAT reports FPR95 with ID positive.
#
# **What you will learn.**
# 1. The definitions, in our convention, as implemented in `ebm_ood.metrics`.
# 2. Two worked examples where the conventions give different answers — and by how much.
# 3. How to check our numbers against `sklearn.metrics` and against a brute-force computation.

# %%

import numpy as np
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from ebm_ood.metrics import all_metrics, aupr, aupr_in, aupr_out, auroc, fpr_at_tpr
from ebm_ood.plumbing.tutorial import FAST, save_figure, setup

plt = setup(seed=0)  # seed 0; one thread (fastest on small tensors); pyplot or None


# %% [markdown]
# ## 1. Scores from a detector
# We do not need a trained model to study metrics: we draw energies directly. ID energies `~ N(0, 1)`,
# OOD energies `~ N(1.5, 1)`, and — as in most benchmarks — many more ID test samples than OOD ones
# (here 10 : 1).

# %%
rng = np.random.default_rng(0)
n_id, n_ood = (2000, 200) if FAST else (10000, 1000)
score_id = rng.normal(0.0, 1.0, n_id)             # (N,) energies of the ID test set
score_ood = rng.normal(1.5, 1.0, n_ood)           # (M,) energies of an OOD set
metrics = all_metrics(score_id, score_ood)
for k, v in metrics.items():  # fractions ×100; n_id, n_ood are the set sizes (for chance levels, §5)
    print(f"{k:>12}: {v:8.0f}" if k.startswith("n_") else f"{k:>12}: {100 * v:8.2f}")

# %% [markdown]
# ## 2. AUROC: the one metric that does not care which class is positive
#
# The ROC curve plots the true-positive rate against the false-positive rate as the threshold sweeps over
# all scores. Its area is the probability that a random OOD sample scores higher than a random ID sample
# (the Mann–Whitney statistic), ties counting one half:
#
# $$\mathrm{AUROC} = P(s_{\mathrm{ood}} > s_{\mathrm{id}}) + \tfrac12 P(s_{\mathrm{ood}} = s_{\mathrm{id}}).$$
#
# Swapping the positive class *and* flipping the score sign leaves this unchanged. What does change it is
# the score's orientation: a library that expects "higher = more ID" (a confidence, such as max-softmax)
# returns `1 - AUROC` when fed an energy. `ebm_ood.metrics` always takes `(score_id, score_ood)` with
# higher = more OOD, so there is no label vector to get wrong.

# %%
# check 1: brute force over all (ID, OOD) pairs, the definition itself
diff = score_ood[:, None] - score_id[None, :]                      # (M, N)
brute = np.mean(diff > 0) + 0.5 * np.mean(diff == 0)
# check 2: sklearn with OOD as label 1 and the energy as the score ...
y_ood = np.r_[np.zeros(n_id), np.ones(n_ood)]
s_all = np.r_[score_id, score_ood]
assert abs(auroc(score_id, score_ood) - brute) < 1e-12
assert abs(auroc(score_id, score_ood) - roc_auc_score(y_ood, s_all)) < 1e-12
# ... and with ID as label 1 and the negated energy: the same number
assert abs(auroc(score_id, score_ood) - roc_auc_score(1 - y_ood, -s_all)) < 1e-12
# the orientation pitfall: ID as label 1 but the raw energy gives 1 - AUROC
print(f"AUROC {auroc(score_id, score_ood):.4f}; with the score oriented the wrong way: "
      f"{roc_auc_score(1 - y_ood, s_all):.4f}")

# %% [markdown]
# ## 3. AUPR: the positive class changes the number
#
# The precision–recall curve is *not* symmetric in the two classes: precision depends on how many
# negatives there are. Average precision (AP) sums precision over the recall steps,
#
# $$\mathrm{AP} = \sum_n (R_n - R_{n-1})\, P_n,$$
#
# over the distinct thresholds from most to least "positive". With **ID positive** (AUPR-In; HEAT, and the
# Elflein paper's text) we rank by `-score`; with **OOD positive** (AUPR-Out; the Elflein code's tables) we
# rank by `score`. A random detector gets an AP equal to the positive class's share, so on a 10 : 1 test
# set AUPR-In starts near 0.91 and AUPR-Out near 0.09 *before the detector does anything*.
#
# A second disagreement: some code integrates the PR curve with the trapezoid rule
# (`sklearn.metrics.auc(recall, precision)`) instead of the step sum. Trapezoids interpolate linearly
# between PR points, but precision does not vary linearly with recall between two operating points
# (Davis & Goadrich 2006), so the area is not one any threshold achieves; it can land on either side of
# AP. The step sum is what `average_precision_score` and we compute.

# %%
ap_in, ap_out = aupr_in(score_id, score_ood), aupr_out(score_id, score_ood)
prec, rec, _ = precision_recall_curve(y_ood, s_all)
trapezoid_out = auc(rec, prec)
print(f"AUPR-In  (ID positive):  {ap_in:.4f}   share of positives {n_id / (n_id + n_ood):.4f}")
print(f"AUPR-Out (OOD positive): {ap_out:.4f}   share of positives {n_ood / (n_id + n_ood):.4f}")
print(f"AUPR-Out by the trapezoid rule instead of the step sum: {trapezoid_out:.4f}")

# check: both against sklearn's average_precision_score, labels built by hand
assert abs(ap_out - average_precision_score(y_ood, s_all)) < 1e-12
assert abs(ap_in - average_precision_score(1 - y_ood, -s_all)) < 1e-12
assert aupr(score_id, score_ood, positive="ood") == ap_out

# %% [markdown]
# ### Worked example 1: the same detector, three "AUPR" values
# Same scores, same AUROC — and depending on the convention a paper reports one of the three numbers
# printed above. When a table says "AUPR" without the positive class, the number cannot be compared.
#
# ## 4. FPR at 95 % TPR: which threshold?
#
# FPR95 (HEAT's headline metric) asks: when the threshold keeps 95 % of ID samples (ID positive, TPR =
# 0.95), what fraction of OOD samples is wrongly accepted as ID? With finitely many ID scores, "the
# threshold that keeps 95 %" usually does not exist exactly, and code in the wild picks it differently:
#
# * **percentile** (ours, the default): `t = quantile(score_id, 0.95)` with linear interpolation;
#   `FPR = mean(score_ood ≤ t)`.
# * **first_roc**: the first point of the ROC curve whose TPR ≥ 0.95 (what you get from
#   `sklearn.metrics.roc_curve` and `fpr[np.argmax(tpr >= 0.95)]`, a common idiom).
# * **nearest_roc**: the ROC point whose TPR is nearest to 0.95.
#
# ### Worked example 2: three conventions, three answers
# 15 ID scores `0, 1, …, 14` (so TPR moves in steps of 1/15) and 5 OOD scores.

# %%
sid = np.arange(15, dtype=float)
sood = np.array([12.5, 13.2, 13.6, 14.0, 20.0])
fprs = {c: fpr_at_tpr(sid, sood, 0.95, convention=c) for c in ("percentile", "first_roc", "nearest_roc")}
for c, v in fprs.items():
    print(f"FPR95 ({c:>11}): {v:.2f}")

# %% [markdown]
# Why: the 95 % quantile of 0..14 sits at position `0.95 × 14 = 13.3`, so `t = 13.3` and the OOD scores
# 12.5 and 13.2 fall below it (2/5). The ROC points near TPR 0.95 are TPR 14/15 ≈ 0.933 (threshold 13) and
# TPR 1 (threshold 14). *first_roc* must take TPR = 1, where four OOD scores are accepted (4/5);
# *nearest_roc* takes TPR = 14/15 at its smallest threshold, accepting only 12.5 (1/5). Note also that along
# the flat part of the ROC at TPR 14/15 the FPR runs from 1/5 to 3/5: "the point at TPR 14/15" is itself
# ambiguous, and so is `np.interp(0.95, tpr, fpr)` on a curve with repeated TPR values. (The percentile
# threshold 13.3 lands on that flat part too: it actually keeps 14/15 of the ID scores, not 95 %.) Whether the
# comparison is `≤ t` or `< t` matters only for ties (here 14.0 against threshold 14).
#
# Checks, each computed independently of `ebm_ood.metrics`: the quantile by hand, and the first ROC point
# with scikit-learn's `roc_curve`.

# %%
# percentile by hand: linear interpolation between the sorted ID scores at position 0.95 (n - 1)
pos = 0.95 * (len(sid) - 1)
lo = int(np.floor(pos))
t = np.sort(sid)[lo] + (pos - lo) * (np.sort(sid)[lo + 1] - np.sort(sid)[lo])
assert abs(t - 13.3) < 1e-12 and fprs["percentile"] == np.mean(sood <= t) == 2 / 5
# first_roc with sklearn: ID is label 1, and "more ID" is a lower energy, so the score is -energy
fpr_sk, tpr_sk, _ = roc_curve(np.r_[np.ones(15), np.zeros(5)], -np.r_[sid, sood])
assert fprs["first_roc"] == fpr_sk[np.argmax(tpr_sk >= 0.95)] == 4 / 5
assert fprs["nearest_roc"] == 1 / 5

# %% [markdown]
# ### How much does it matter at realistic sizes?
# With thousands of ID samples the TPR steps are `1/N` wide and the three conventions nearly agree; the
# differences above are a small-set effect. They are not negligible on Elflein et al.'s smallest sets: UCI
# Segment's held-out class (sky) has 330 rows and its ID test split 198 (10 % of 1,980), so the balanced protocol
# compares a few hundred samples per side; Sensorless's two held-out classes have 10,638 rows.

# %%
big = {c: fpr_at_tpr(score_id, score_ood, 0.95, convention=c) for c in ("percentile", "first_roc", "nearest_roc")}
print("FPR95 on the 2-Gaussian example:", {c: round(100 * v, 2) for c, v in big.items()})
# check: the spread is within a couple of OOD samples' worth on this set
assert max(big.values()) - min(big.values()) <= 3 / n_ood + 1e-12

# %%
if plt is not None:
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    fig.subplots_adjust(wspace=0.3)
    axes[0].hist(score_id, bins=60, density=True, alpha=0.6, label=f"ID (N = {n_id})")
    axes[0].hist(score_ood, bins=30, density=True, alpha=0.6, label=f"OOD (M = {n_ood})")
    axes[0].axvline(np.quantile(score_id, 0.95), color="k", ls="--", label="95 % of ID below")
    axes[0].set_xlabel("energy score (higher = more OOD)"), axes[0].legend(), axes[0].set_title("scores")
    fpr_c, tpr_c, _ = roc_curve(1 - y_ood, -s_all)                    # ID positive
    axes[1].plot(fpr_c, tpr_c, label=f"AUROC = {metrics['auroc']:.3f}")
    axes[1].axhline(0.95, color="k", ls=":"), axes[1].plot([0, 1], [0, 1], "k--", lw=0.7)
    axes[1].set_xlabel("FPR (OOD accepted as ID)"), axes[1].set_ylabel("TPR (ID accepted)")
    axes[1].set_title("ROC, ID positive"), axes[1].legend()
    p_in, r_in, _ = precision_recall_curve(1 - y_ood, -s_all)
    p_out, r_out, _ = precision_recall_curve(y_ood, s_all)
    axes[2].step(r_in, p_in, where="post", label=f"ID positive: AUPR-In = {ap_in:.3f}")
    axes[2].step(r_out, p_out, where="post", label=f"OOD positive: AUPR-Out = {ap_out:.3f}")
    axes[2].set_xlabel("recall"), axes[2].set_ylabel("precision"), axes[2].legend(fontsize=8)
    axes[2].set_title("one detector, two PR curves")
    f_s, t_s, _ = roc_curve(np.r_[np.ones(15), np.zeros(5)], -np.r_[sid, sood], drop_intermediate=False)
    axes[3].plot(f_s, t_s, ".-", color="grey")                          # ties (14 vs 14.0) give a diagonal
    axes[3].axhline(0.95, color="k", ls=":", lw=0.8)
    for (c, v), m in zip(fprs.items(), ("o", "s", "^")):
        y_pt = {"percentile": np.mean(sid <= t), "first_roc": 1.0, "nearest_roc": 14 / 15}[c]   # actual TPR
        axes[3].plot(v, y_pt, m, ms=9, label=f"{c}: FPR95 = {v:.2f}")
    axes[3].set_ylim(0.8, 1.02), axes[3].set_xlabel("FPR"), axes[3].set_ylabel("TPR")
    axes[3].set_title("worked example 2: 15 ID, 5 OOD"), axes[3].legend(fontsize=8)
    save_figure(fig, "07_metrics_conventions.png")

# %% [markdown]
# ## 5. The Elflein protocol: balanced sets, OOD positive
#
# Where do the Elflein paper's AUC-PR numbers come from? Its evaluation code (`eval_ood` in
# `selflein/EBM-OOD-Detection`) reads each test set for `10000 // 128 + 1` batches of 128, **truncates the
# ID and OOD scores to the same length**, and computes `average_precision_score` with **OOD positive**. On
# 1:1 sets random scores give ≈ 50 %, and the worst possible ranking (every OOD sample scored as most ID)
# gives `(1/n) Σ_i i/(n+i) → 1 - ln 2 ≈ 30.69 %` — the floor you can spot in the paper's tables. On the
# full 10 : 1 sets of section 1 the chance level of AUPR-Out is instead near the OOD share, ≈ 9 %.
# `all_metrics` returns both: the `*_bal` keys follow the protocol (`ebm_ood.metrics.balance`), the others
# use the full sets; `chance_level` gives what random scores would score for each. Section 1 printed the
# *share of positives* (0.0909 for AUPR-Out); `chance_level` below is the exact *expected AP of a random
# ranking* at these set sizes (`chance_aupr`), a little higher (9.39 % in fast mode, 9.16 % at default size):
# each positive counts itself in its own precision, `(1 + positives above it) / rank`, which on a finite
# set lifts the average above the share by about `(1 - share) · ln(n) / n`. The two agree as the sets grow.

# %%
from ebm_ood.metrics import balanced_length, chance_level

n_bal = balanced_length(n_id, n_ood)
print(f"balanced length: {n_bal} of each set ({n_id} ID, {n_ood} OOD)")
for k in ("aupr_out", "aupr_out_bal", "aupr_in", "aupr_in_bal"):
    print(f"{k:>12}: {100 * metrics[k]:6.2f}   chance {100 * chance_level(k, n_id, n_ood):6.2f}")
n_inv = 2000 if FAST else 10000
worst = all_metrics(np.arange(n_inv, 2 * n_inv, dtype=float), np.arange(n_inv, dtype=float))["aupr_out_bal"]
print(f"fully inverted ranking, {n_inv} vs {n_inv}: AUPR-Out {100 * worst:.2f} %  (1 - ln 2 = {100 * (1 - np.log(2)):.2f} %)")
# checks: the floor by its own sum, and the balanced chance level near 50 %
assert abs(worst - np.mean(np.arange(1, n_inv + 1) / (n_inv + np.arange(1, n_inv + 1)))) < 1e-12
assert abs(worst - (1 - np.log(2))) < 1e-3 and abs(chance_level("aupr_out_bal", n_id, n_ood) - 0.5) < 0.01
assert metrics["aupr_out"] < 0.5 < 0.8 < metrics["aupr_out_bal"]
# check: the expected AP of a random ranking lies above the share of positives and tends to it
share = n_ood / (n_id + n_ood)
assert share < chance_level("aupr_out", n_id, n_ood) < share + 0.02
assert abs(chance_level("aupr_out", 100 * n_id, 100 * n_ood) - share) < 0.1 * (chance_level("aupr_out", n_id, n_ood) - share) + 1e-4

# %% [markdown]
# The same detector scores AUPR-Out under 50 % on the full 10 : 1 sets and above 80 % on the balanced
# ones: the protocol, not the detector, moved it. Every Elflein table in this project (the benchmark's and the
# experiments') uses `aupr_out_bal` and prints the chance level under it; `--metric` switches.
#
# ### Summary — our conventions (`ebm_ood.metrics`)
# * Inputs are always `(score_id, score_ood)`, higher = more OOD; values are fractions (tables × 100).
# * `auroc`: Mann–Whitney with ties as ½ — class-symmetric.
# * `aupr_in` (ID positive, HEAT / Elflein text) and `aupr_out` (OOD positive, Elflein code): step-sum AP,
#   as `average_precision_score`; never the trapezoid rule. Always say which one a table reports.
# * The Elflein tables: `aupr_out_bal`, the authors' protocol (sets truncated to equal length, OOD positive,
#   chance ≈ 50 %, floor `1 - ln 2`).
# * `fpr_at_tpr(..., convention="percentile")` by default; `"first_roc"` and `"nearest_roc"` reproduce other
#   code bases. On small OOD sets, report the convention.
#
# ## Exercises
# Each exercise has a check, `ch07.check_exercise_k(answer)` (imported in the last cell), that recomputes the
# answer independently and says what is wrong. Reference solutions: `tutorials/exercises/solutions/ch07.py`.
# 1. **Prevalence.** With `ch07.two_gaussians(n_id, n_ood)` at the ratios `ch07.RATIOS` (10 : 1, 1 : 1,
#    1 : 10), tabulate AUROC, AUPR-In and AUPR-Out. Which numbers move? Check:
#    `ch07.check_exercise_1({"10:1": {"auroc": ..., "aupr_in": ..., "aupr_out": ...}, "1:1": {...}, "1:10": {...}})`.
# 2. **Population values.** With infinitely many samples from ID `N(0, 1)` and OOD `N(1.5, 1)`, what are the
#    AUROC and the FPR95? Compare with the sample values printed in sections 1 and 4. Check:
#    `ch07.check_exercise_2({"auroc": ..., "fpr95": ...})`.
# 3. **Ties.** Round `ch07.two_gaussians(2000, 200)` to one decimal. What fraction of (ID, OOD) pairs tie,
#    and what is the AUROC (ties count ½)? Check: `ch07.check_exercise_3({"auroc": ..., "tied_pairs": ...})`.
# 4. **Implement it: the Elflein protocol.** Write `balanced_aupr_out(score_id, score_ood)`: cut both sets, in
#    their stored order, to `min(n_id, n_ood, 10112)` (the authors' code reads `10_000 // 128 + 1` batches of
#    128), then average precision with OOD positive. Check: `ch07.check_exercise_4(balanced_aupr_out)` compares
#    it with the library's `all_metrics(...)["aupr_out_bal"]`.


# %%
# The exercise checks: a script finds tutorials/exercises/ beside it; a notebook finds it when run in tutorials/.
from exercises import ch07  # noqa: E402

print("exercise checks:", ", ".join(f"ch07.{name}(answer)" for name in dir(ch07) if name.startswith("check_")))
