"""Metrics against sklearn (to 1e-12), hand-computed cases with ties, and properties (hypothesis)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from ebm_ood.metrics import all_metrics, aupr, aupr_in, aupr_out, auroc, fpr_at_tpr


def _random_pairs(n=150, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        a = np.round(rng.normal(size=rng.integers(1, 40)), rng.integers(0, 3))  # rounding makes ties
        b = np.round(rng.normal(0.7, size=rng.integers(1, 40)), rng.integers(0, 3))
        yield a, b


def test_auroc_matches_sklearn():
    for a, b in _random_pairs():
        y = np.r_[np.zeros(len(a)), np.ones(len(b))]
        assert abs(auroc(a, b) - roc_auc_score(y, np.r_[a, b])) < 1e-12


def test_aupr_matches_sklearn():
    for a, b in _random_pairs(seed=1):
        y = np.r_[np.zeros(len(a)), np.ones(len(b))]
        s = np.r_[a, b]
        assert abs(aupr_out(a, b) - average_precision_score(y, s)) < 1e-12
        assert abs(aupr_in(a, b) - average_precision_score(1 - y, -s)) < 1e-12
        assert aupr(a, b, positive="ood") == aupr_out(a, b)


def test_hand_computed_cases_with_ties():
    # ID scores {0, 1}, OOD scores {1, 2}: pairs (id, ood) = (0,1)>,(0,2)>,(1,1)=,(1,2)> → (3 + 0.5)/4
    assert auroc([0.0, 1.0], [1.0, 2.0]) == pytest.approx(0.875, abs=1e-15)
    # AUPR-Out (rank by score, OOD positive): thresholds 2 → P=1,R=.5; 1 (tie: one ID, one OOD) → P=2/3,R=1
    assert aupr_out([0.0, 1.0], [1.0, 2.0]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=1e-15)
    # AUPR-In (rank by -score, ID positive): -0 → P=1,R=.5; -1 tie → P=2/3,R=1
    assert aupr_in([0.0, 1.0], [1.0, 2.0]) == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-15)
    assert auroc([0.0], [0.0]) == 0.5


def test_fpr95_conventions_by_hand():
    score_id = np.arange(20, dtype=float)  # 0..19
    score_ood = np.array([18.0, 18.5, 19.0, 25.0])
    # percentile: t = quantile(0..19, 0.95) = 18.05 → OOD <= t: {18.0} → 1/4
    assert fpr_at_tpr(score_id, score_ood) == pytest.approx(0.25)
    # first ROC point with TPR >= 0.95: threshold 18 (19/20 = 0.95) → OOD <= 18: 1/4
    assert fpr_at_tpr(score_id, score_ood, convention="first_roc") == pytest.approx(0.25)
    # nearest ROC point to TPR 0.95 is also threshold 18
    assert fpr_at_tpr(score_id, score_ood, convention="nearest_roc") == pytest.approx(0.25)
    # a case where they disagree: 10 ID scores → TPR steps of 0.1; 0.95 is between 0.9 and 1.0
    sid = np.arange(10, dtype=float)
    sood = np.array([8.5, 9.0, 9.5])
    assert fpr_at_tpr(sid, sood) == pytest.approx(1 / 3)  # t = 8.55 → {8.5}
    assert fpr_at_tpr(sid, sood, convention="first_roc") == pytest.approx(2 / 3)  # t = 9 → {8.5, 9}
    # nearest: TPR 0.9 (t = 8) is nearer to 0.95 than 1.0 in floating point → no OOD below → 0
    assert fpr_at_tpr(sid, sood, convention="nearest_roc") == pytest.approx(0.0)


def test_first_roc_matches_sklearn_roc_curve():
    for a, b in _random_pairs(60, seed=2):
        # sklearn with ID positive: score for "ID-ness" = -score
        y = np.r_[np.ones(len(a)), np.zeros(len(b))]
        fpr, tpr, _ = roc_curve(y, -np.r_[a, b], drop_intermediate=False)
        expected = fpr[np.argmax(tpr >= 0.95 - 1e-12)]
        assert fpr_at_tpr(a, b, convention="first_roc") == pytest.approx(expected, abs=1e-12)


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=30), st.lists(finite, min_size=1, max_size=30))
def test_symmetry_and_monotone_invariance(a, b):
    a, b = np.array(a), np.array(b)
    assert auroc(a, b) == pytest.approx(1 - auroc(b, a), abs=1e-12)
    # a strictly increasing transform keeps the ranking, hence every metric: map the sorted distinct
    # values onto an arbitrary increasing sequence (exact, no floating-point collisions)
    u = np.unique(np.r_[a, b])
    new = np.cumsum(np.random.default_rng(len(u)).uniform(0.1, 10.0, len(u))) - 50.0
    f = lambda s: new[np.searchsorted(u, s)]
    for name in ("auroc", "aupr_in", "aupr_out"):
        assert all_metrics(f(a), f(b))[name] == pytest.approx(all_metrics(a, b)[name], abs=1e-12), name
    # FPR95 with ROC-point thresholds depends on ranks only; the interpolated percentile threshold does
    # not (it averages two scores), which is why conventions must be stated
    for conv in ("first_roc", "nearest_roc"):
        assert fpr_at_tpr(f(a), f(b), convention=conv) == pytest.approx(fpr_at_tpr(a, b, convention=conv), abs=1e-12)


def test_bad_inputs():
    with pytest.raises(ValueError, match="score_id"):
        auroc([], [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        auroc([np.nan, 1.0], [1.0])
    with pytest.raises(ValueError, match="dimensions"):
        auroc(np.zeros((2, 2)), [1.0])
    with pytest.raises(ValueError, match="positive"):
        aupr([1.0], [2.0], positive="both")
    with pytest.raises(ValueError, match="tpr"):
        fpr_at_tpr([1.0], [2.0], tpr=1.5)


# ------------------------------------------------------------------ the Elflein evaluation protocol
def _authors_eval(s_id, s_ood, num=10_000, batch_size=128):
    """The authors' ``eval_ood`` written out: ``islice(loader, num // batch_size + 1)`` over unshuffled
    batches, truncation to the shorter set, sklearn AP with labels 1 = OOD and score ``-log p``."""
    from itertools import islice

    def read(s):
        batches = [s[i:i + batch_size] for i in range(0, len(s), batch_size)]
        return np.concatenate(list(islice(iter(batches), num // batch_size + 1)))

    id_, ood = read(s_id), read(s_ood)
    n = min(len(id_), len(ood))
    preds = np.concatenate([-ood[:n], -id_[:n]])  # their scores: log p = -energy
    labels = np.concatenate([np.ones(n), np.zeros(n)])
    return average_precision_score(labels, -preds), n


def test_balanced_metrics_follow_the_authors_eval_loop():
    from ebm_ood.metrics import balanced_length

    rng = np.random.default_rng(1)
    for n_id, n_ood in [(300, 500), (10_000, 26_032), (10_500, 12_000), (40, 7)]:
        a, b = rng.normal(size=n_id), rng.normal(0.3, size=n_ood)
        ref, n = _authors_eval(a, b)
        got = all_metrics(a, b)
        assert balanced_length(n_id, n_ood) == n
        assert got["aupr_out_bal"] == pytest.approx(ref, abs=1e-12)
        assert got["aupr_in_bal"] == pytest.approx(average_precision_score(np.r_[np.ones(n), np.zeros(n)],
                                                                           -np.r_[a[:n], b[:n]]), abs=1e-12)
        assert (got["n_id"], got["n_ood"]) == (n_id, n_ood)
    assert balanced_length(20_000, 20_000) == 10_112  # 79 batches of 128


def test_fully_inverted_ranking_on_10k_vs_10k_is_one_minus_ln2():
    a = np.arange(10_000, 20_000, dtype=float)  # every ID score above every OOD score
    b = np.arange(10_000, dtype=float)
    assert 100 * all_metrics(a, b)["aupr_out_bal"] == pytest.approx(100 * (1 - np.log(2)), abs=0.005)  # 30.69 %


@pytest.mark.parametrize("n_id,n_ood", [(10_000, 26_032), (288, 500), (2_000, 300)])
def test_random_scores_give_half_on_balanced_sets_at_any_sizes(n_id, n_ood):
    rng = np.random.default_rng(n_id + n_ood)
    reps = 40 if n_id < 5000 else 6
    vals = [all_metrics(rng.random(n_id), rng.random(n_ood))["aupr_out_bal"] for _ in range(reps)]
    assert np.mean(vals) == pytest.approx(0.5, abs=0.015)
    full = [aupr_out(rng.random(n_id), rng.random(n_ood)) for _ in range(reps)]  # unbalanced: the OOD share
    assert np.mean(full) == pytest.approx(n_ood / (n_id + n_ood), abs=0.02)


@pytest.mark.parametrize("n_pos,n_neg", [(1, 1), (1, 6), (3, 5), (4, 8), (7, 3)])
def test_chance_aupr_closed_form_matches_brute_force(n_pos, n_neg):
    """Every placement of the positives among n ranks is equally likely: average AP = mean(i / r_i)."""
    from itertools import combinations

    from ebm_ood.metrics import chance_aupr

    n = n_pos + n_neg
    aps = [np.mean([(i + 1) / (r + 1) for i, r in enumerate(ranks)]) for ranks in combinations(range(n), n_pos)]
    assert chance_aupr(n_pos, n_neg) == pytest.approx(np.mean(aps), abs=1e-12)


def test_chance_level_per_metric_and_protocol():
    from ebm_ood.metrics import chance_aupr, chance_level

    assert chance_level("aupr_out_bal", 10_000, 26_032) == pytest.approx(chance_aupr(10_000, 10_000))
    assert chance_level("aupr_in", 10_000, 26_032) == pytest.approx(chance_aupr(10_000, 26_032))
    assert 100 * chance_level("aupr_in", 10_000, 26_032) == pytest.approx(27.76, abs=0.05)
    assert (chance_level("auroc_bal", 5, 9), chance_level("fpr95", 5, 9)) == (0.5, 0.95)
    with pytest.raises(ValueError, match="metric"):
        chance_level("accuracy", 5, 9)
