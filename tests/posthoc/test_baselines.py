"""Reference tests for the post-hoc baselines (HEAT Table 4): each score vs an independent numpy / scipy /
sklearn transcription on small inputs, plus the detector API contract and the direction of the score."""
import numpy as np
import pytest
import torch
from sklearn.covariance import EmpiricalCovariance
from torch import nn

from ebm_ood.posthoc import DICE, KNN, MSP, ODIN, MaxLogit, Mahalanobis, ODINConfig, ReAct, SSDPlus, ViM
from ebm_ood.posthoc.odin import odin_perturb
from ebm_ood.posthoc.vim import default_principal_dim
from ebm_ood.plumbing.errors import NotFittedError
from ebm_ood.metrics import auroc


# ---------------------------------------------------------------------------------------- numpy references
def np_logsumexp(a):
    m = a.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=1, keepdims=True)))[:, 0]


def np_softmax(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def normalise_rows(a):
    return a / np.sqrt((a * a).sum(axis=1, keepdims=True))


def clusters(rng, n, c=4, d=16, scale=0.5, means=None):
    """Non-negative (post-ReLU-like) class clusters: z (n, d), y (n,), means (c, d)."""
    means = np.abs(rng.normal(size=(c, d))) * 2 if means is None else means
    y = rng.integers(0, c, n)
    y[:c] = np.arange(c)  # every class present
    return np.abs(means[y] + scale * rng.normal(size=(n, d))), y, means


def nearest_mean_head(means):
    """A linear head that classifies by the nearest (rescaled) class mean: W (c, d), b (c,)."""
    w = 3 * normalise_rows(means)
    return w, -0.5 * (w * w).sum(axis=1)


# ---------------------------------------------------------------------------------------- MSP / MaxLogit
def test_msp_and_maxlogit_match_numpy_softmax():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(20, 5)) * 3, rng.normal(size=(30, 5)) * 3
    np.testing.assert_allclose(MSP().fit(train).score(test), -np_softmax(test).max(axis=1), rtol=1e-12)
    np.testing.assert_allclose(MaxLogit().fit(train).score(test), -test.max(axis=1), rtol=1e-12)


# ---------------------------------------------------------------------------------------- ODIN
def test_odin_matches_closed_form_on_linear_network():
    """f(x) = A x + c: ∇ₓ log S_ŷ(x; T) = (A[ŷ] - Σ_j S_j A[j]) / T, so x̃ = x + ε sign(that)."""
    torch.manual_seed(1)
    d, c, t, eps = 6, 3, 5.0, 0.05
    net = nn.Linear(d, c).double()
    a, b = net.weight.detach().numpy(), net.bias.detach().numpy()
    x = np.random.default_rng(1).normal(size=(25, d))
    s = np_softmax((x @ a.T + b) / t)
    y_hat = s.argmax(axis=1)
    grad = (a[y_hat] - s @ a) / t
    x_tilde = x + eps * np.sign(grad)
    expected = -np_softmax((x_tilde @ a.T + b) / t).max(axis=1)
    det = ODIN(net, ODINConfig(temperature=t, epsilon=eps), device="cpu", batch_size=7).fit(x)
    np.testing.assert_allclose(det.score(x), expected, rtol=1e-10)
    np.testing.assert_allclose(odin_perturb(net, torch.from_numpy(x), t, eps).numpy(), x_tilde, rtol=1e-12)


def test_odin_perturbation_follows_finite_difference_gradient():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    t, eps, h = 2.0, 0.1, 1e-6
    x_tilde = odin_perturb(net, x, t, eps)
    with torch.no_grad():
        y_hat = net(x).argmax(dim=1)

        def log_s(z):  # log S_ŷ(z; T) with ŷ fixed from the clean input
            return torch.log_softmax(net(z) / t, dim=1).gather(1, y_hat[:, None])[:, 0]

        for j in range(4):
            e = torch.zeros_like(x)
            e[:, j] = h
            fd = (log_s(x + e) - log_s(x - e)) / (2 * h)  # (5,)
            ok = fd.abs() > 1e-6
            torch.testing.assert_close(x_tilde[ok, j], (x + eps * torch.sign(fd)[:, None])[ok, j])


# ---------------------------------------------------------------------------------------- Mahalanobis, SSD+
def sklearn_min_mahalanobis(z_train, y, z_test):
    """min_c (z - μ_c)ᵀ Σ⁻¹ (z - μ_c) with Σ = sklearn's ML covariance of the class-centred training data."""
    classes = np.unique(y)
    means = np.stack([z_train[y == k].mean(axis=0) for k in classes])
    ec = EmpiricalCovariance(assume_centered=True).fit(z_train - means[np.searchsorted(classes, y)])
    return np.stack([ec.mahalanobis(z_test - m) for m in means], axis=1).min(axis=1)


def test_mahalanobis_matches_sklearn_empirical_covariance():
    rng = np.random.default_rng(3)
    z, y, means = clusters(rng, 300, c=3, d=5)
    test = rng.normal(size=(40, 5)) * 2
    det = Mahalanobis(reg=0.0, batch_size=64).fit(z, y)  # several streamed batches
    np.testing.assert_allclose(det.score(test), sklearn_min_mahalanobis(z, y, test), rtol=1e-8)


def test_ssd_plus_is_mahalanobis_on_l2_normalised_features():
    rng = np.random.default_rng(4)
    z, y, _ = clusters(rng, 300, c=3, d=5)
    test = np.abs(rng.normal(size=(40, 5)))
    det = SSDPlus(reg=0.0).fit(z, y)
    expected = sklearn_min_mahalanobis(normalise_rows(z), y, normalise_rows(test))
    np.testing.assert_allclose(det.score(test), expected, rtol=1e-8)


def test_mahalanobis_survives_a_dead_feature():
    """A constant-zero feature (a dead ReLU) makes Σ singular; the relative ridge keeps it invertible and a
    sample that activates the dead feature is scored as far away."""
    rng = np.random.default_rng(5)
    z, y, _ = clusters(rng, 200, c=3, d=6)
    z[:, 2] = 0.0
    det = Mahalanobis().fit(z, y)
    probe = z[:5].copy()
    probe[:, 2] = 1.0
    assert np.all(np.isfinite(det.score(z[:5])))
    assert det.score(probe).min() > 100 * det.score(z[:5]).max()


# ---------------------------------------------------------------------------------------- KNN
def test_knn_matches_brute_force_distances():
    rng = np.random.default_rng(6)
    train, test = rng.normal(size=(60, 7)), rng.normal(size=(15, 7))
    a, b = normalise_rows(train), normalise_rows(test)
    dist = np.sqrt(((b[:, None, :] - a[None, :, :]) ** 2).sum(axis=2))  # (15, 60)
    np.testing.assert_allclose(KNN(k=5).fit(train).score(test), np.sort(dist, axis=1)[:, 4], rtol=1e-10)
    raw = np.sqrt(((test[:, None, :] - train[None, :, :]) ** 2).sum(axis=2))
    np.testing.assert_allclose(KNN(k=3, normalize=False).fit(train).score(test), np.sort(raw, axis=1)[:, 2], rtol=1e-10)


def test_knn_exact_despite_float32_ranking_on_near_ties():
    """Neighbours are ranked in float32, the k-th distance computed in float64: with 40 near-duplicates 1e-9 apart (below
    float32's resolution) in the training set, the k-th distance is off by at most that resolution (exact on
    generic data: the test above); far queries, several query blocks and unnormalised features included."""
    import ebm_ood.posthoc.knn as knn_module

    rng = np.random.default_rng(8)
    base = rng.normal(size=(1, 6))
    train = np.concatenate([base + 1e-9 * rng.normal(size=(40, 6)), rng.normal(size=(200, 6))])
    test = np.concatenate([base + 1e-9 * rng.normal(size=(5, 6)), rng.normal(size=(30, 6)), 1e3 * rng.normal(size=(2, 6))])
    saved = knn_module.BLOCK_ELEMENTS
    knn_module.BLOCK_ELEMENTS = 7 * 240          # forces blocks of 7 queries
    try:
        for normalize, k in ((True, 10), (True, 45), (False, 30)):
            a, b = (normalise_rows(train), normalise_rows(test)) if normalize else (train, test)
            want = np.sort(np.sqrt(((b[:, None, :] - a[None, :, :]) ** 2).sum(axis=2)), axis=1)[:, k - 1]
            got = KNN(k=k, normalize=normalize).fit(train).score(test)
            scale = np.linalg.norm(b, axis=1) * np.linalg.norm(a, axis=1).max()
            assert np.all(np.abs(got - want) <= 1e-6 * scale)
    finally:
        knn_module.BLOCK_ELEMENTS = saved


def test_knn_caps_k_below_the_training_size():
    rng = np.random.default_rng(7)
    train, test = rng.normal(size=(6, 3)), rng.normal(size=(4, 3))
    det = KNN(k=50).fit(train)
    assert det.k_ == 5
    a, b = normalise_rows(train), normalise_rows(test)
    far = np.sort(np.sqrt(((b[:, None] - a[None]) ** 2).sum(axis=2)), axis=1)[:, 4]
    np.testing.assert_allclose(det.score(test), far, rtol=1e-10)


# ---------------------------------------------------------------------------------------- ViM
def test_vim_matches_numpy_transcription():
    rng = np.random.default_rng(8)
    c, d, dim = 3, 8, 4
    w, b = rng.normal(size=(c, d)), rng.normal(size=c)
    z, test = rng.normal(size=(100, d)) + 1.0, rng.normal(size=(20, d)) * 2
    # u = -W⁺b as the minimum-norm least-squares solution of W u = -b
    u = np.linalg.lstsq(w, -b, rcond=None)[0]
    # principal subspace: top right-singular vectors of (z - u); residual = what is left after projecting
    _, _, vt = np.linalg.svd(z - u, full_matrices=False)
    p = vt[:dim].T  # (d, dim)

    def resid(a):
        ac = a - u
        return np.sqrt(np.maximum((ac * ac).sum(axis=1) - ((ac @ p) ** 2).sum(axis=1), 0))

    alpha = (z @ w.T + b).max(axis=1).mean() / resid(z).mean()
    expected = alpha * resid(test) - np_logsumexp(test @ w.T + b)
    det = ViM(w, b, dim=dim).fit(z)
    assert det.alpha_ == pytest.approx(alpha, rel=1e-10)
    np.testing.assert_allclose(det.score(test), expected, rtol=1e-8, atol=1e-10)


def test_vim_default_principal_dimension():
    assert [default_principal_dim(d) for d in (2048, 1536, 1024, 768, 512, 128, 1)] == [1000, 1000, 512, 512, 256, 64, 1]


# ---------------------------------------------------------------------------------------- DICE, ReAct
def test_dice_matches_numpy_transcription():
    rng = np.random.default_rng(9)
    w, b = rng.normal(size=(3, 7)), rng.normal(size=3)
    z, test = np.abs(rng.normal(size=(50, 7))), np.abs(rng.normal(size=(12, 7)))
    contrib = (w * z.mean(axis=0)).ravel()
    # 21 contributions, p = 90: numpy's linear percentile sits exactly on the 19th smallest value
    # (index 0.9 · 20 = 18), so the mask keeps exactly the two largest contributions.
    keep = np.zeros(21, dtype=bool)
    keep[np.argsort(contrib)[-2:]] = True
    w_sparse = w * keep.reshape(3, 7)
    det = DICE(w, b, percentile=90).fit(z)
    assert det.mask_.sum() == 2
    np.testing.assert_array_equal(det.mask_, keep.reshape(3, 7))
    np.testing.assert_allclose(det.score(test), -np_logsumexp(test @ w_sparse.T + b), rtol=1e-12)


def test_react_matches_numpy_transcription():
    rng = np.random.default_rng(10)
    w, b = rng.normal(size=(4, 5)), rng.normal(size=4)
    z, test = np.abs(rng.normal(size=(21, 5))), np.abs(rng.normal(size=(9, 5))) * 2
    # 105 activations, p = 90 → linear-interpolation index 0.9 · 104 = 93.6 between sorted[93] and sorted[94]
    s = np.sort(z.ravel())
    c = s[93] + 0.6 * (s[94] - s[93])
    det = ReAct(w, b, percentile=90).fit(z)
    assert det.clip_ == pytest.approx(c, rel=1e-12)
    np.testing.assert_allclose(det.score(test), -np_logsumexp(np.minimum(test, c) @ w.T + b), rtol=1e-12)


# ---------------------------------------------------------------------------------------- API contract
MEANS4 = np.abs(np.random.default_rng(11).normal(size=(4, 16))) * 2
W4, B4 = nearest_mean_head(MEANS4)
FEATURE_DETECTORS = {
    "KNN": lambda: KNN(k=10),
    "Mahalanobis": lambda: Mahalanobis(),
    "SSD+": lambda: SSDPlus(),
    "ViM": lambda: ViM(W4, B4, dim=8),
    "DICE": lambda: DICE(W4, B4),
    "ReAct": lambda: ReAct(W4, B4),
}
LOGIT_DETECTORS = {"MSP": MSP, "MaxLogit": MaxLogit}


@pytest.mark.parametrize("name", list(FEATURE_DETECTORS) + list(LOGIT_DETECTORS) + ["ODIN"])
def test_unfitted_raises_and_dimension_mismatch_is_a_value_error(name):
    rng = np.random.default_rng(12)
    z, y, _ = clusters(rng, 80, means=MEANS4)
    if name in LOGIT_DETECTORS:
        det, x = LOGIT_DETECTORS[name](), z @ W4.T + B4
    elif name == "ODIN":
        det, x = ODIN(nn.Linear(16, 4), device="cpu"), z.astype(np.float32)
    else:
        det, x = FEATURE_DETECTORS[name](), z
    with pytest.raises(NotFittedError):
        det.score(x)
    det.fit(x, y if det.needs_labels else None)
    with pytest.raises(ValueError, match="x"):
        det.score(np.concatenate([x, x[:, :1]], axis=1))


@pytest.mark.parametrize("name", ["ViM", "DICE", "ReAct"])
def test_head_detectors_reject_features_that_do_not_fit_the_head(name):
    with pytest.raises(ValueError, match="x: expected features of shape"):
        FEATURE_DETECTORS[name]().fit(np.ones((10, 15)))
    with pytest.raises(ValueError, match="bias"):
        ViM(W4, B4[:3])


def test_labelled_detectors_need_labels():
    with pytest.raises(ValueError, match="labels"):
        Mahalanobis().fit(np.ones((10, 3)))


@pytest.mark.parametrize("name", list(FEATURE_DETECTORS) + list(LOGIT_DETECTORS))
def test_scores_are_higher_for_ood(name):
    """ID: the class clusters; OOD: small activations in no class's direction. Catches sign errors."""
    rng = np.random.default_rng(13)
    z, y, _ = clusters(rng, 400, means=MEANS4)
    z_test, _, _ = clusters(rng, 200, means=MEANS4)
    ood = np.abs(0.5 * rng.normal(size=(200, 16)))
    if name in LOGIT_DETECTORS:
        det, f = LOGIT_DETECTORS[name](), (lambda a: a @ W4.T + B4)
    else:
        det, f = FEATURE_DETECTORS[name](), (lambda a: a)
    det.fit(f(z), y if det.needs_labels else None)
    assert auroc(det.score(f(z_test)), det.score(f(ood))) > 0.9


# ---------------------------------------------------------------------------------------- benchmark wiring
def test_heat_suite_wires_each_baseline_to_the_shared_classifier():
    """The registered builds wrap the shared CE network: scores on raw inputs equal the detector applied
    to that network's features (or logits / inputs for MSP / ODIN) by hand."""
    from types import SimpleNamespace

    from ebm_ood.commands.benchmark.registry import RunContext, methods_for
    from ebm_ood.nn import MLP

    torch.manual_seed(3)
    net = MLP(6, 3, width=12, depth=3).eval()
    ctx = RunContext(dataset=None, seed=0, device="cpu")
    ctx.cache["ce-classifier"] = SimpleNamespace(net_=net)  # what shared_classifier(ctx) returns
    rng = np.random.default_rng(14)
    x, y = rng.normal(size=(90, 6)).astype(np.float32), np.arange(90) % 3
    x_new = rng.normal(size=(20, 6)).astype(np.float32) * 3
    with torch.no_grad():
        z, z_new = (net.features(torch.from_numpy(a)).numpy() for a in (x, x_new))
    w, b = net.head.weight.detach().double().numpy(), net.head.bias.detach().double().numpy()
    by_hand = {
        "MSP": lambda: MSP().fit(z @ w.T + b).score(z_new @ w.T + b),
        "MaxLogit": lambda: MaxLogit().fit(z @ w.T + b).score(z_new @ w.T + b),
        "ODIN": lambda: ODIN(net, device="cpu").fit(x).score(x_new),
        "Mahalanobis": lambda: Mahalanobis().fit(z, y).score(z_new),
        "SSD+": lambda: SSDPlus().fit(z, y).score(z_new),
        "KNN": lambda: KNN(k=50).fit(z).score(z_new),
        "ViM": lambda: ViM(w, b).fit(z).score(z_new),
        "DICE": lambda: DICE(w, b).fit(z).score(z_new),
        "ReAct": lambda: ReAct(w, b).fit(z).score(z_new),
    }
    specs = {s.name: s for s in methods_for("heat", list(by_hand))}
    for name, expected in by_hand.items():
        det = specs[name].build(ctx).fit(x, y if specs[name].uses_labels else None)
        np.testing.assert_allclose(det.score(x_new), expected(), rtol=1e-5, atol=1e-6, err_msg=name)
