"""HEAT detectors on raw inputs (build.py), the benchmark registration and the low-data subsets."""
import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from ebm_ood.backbone import Backbone
from ebm_ood.heat.build import make_heat_detector
from ebm_ood.heat.priors import GMMPrior
from ebm_ood.nn import build_network


def _backbone_and_data(seed=0):
    torch.manual_seed(seed)
    net = build_network((1, 8, 8), 3, widen=1)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(90, 1, 8, 8)).astype(np.float32)
    y = np.arange(90) % 3
    return Backbone(net), x, y


def _count_calls(monkeypatch) -> list:
    """Batch sizes seen by the networks' first convolution (the one reading the 1-channel images), counted in
    ``torch.nn.functional.conv2d`` so that the networks themselves stay as they are."""
    calls, conv2d = [], torch.nn.functional.conv2d

    def counting(x, *args, **kwargs):
        if x.shape[1] == 1:
            calls.append(len(x))
        return conv2d(x, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", counting)
    return calls


def test_backbone_features_match_the_network_and_run_it_once_per_dataset(monkeypatch):
    bb, x, _ = _backbone_and_data()
    with torch.no_grad():
        fmap = bb.net.feature_map(torch.as_tensor(x)).double().numpy().reshape(len(x), 64, -1)   # (N, C, H·W)
        logits = bb.net(torch.as_tensor(x)).double().numpy()
    calls = _count_calls(monkeypatch)
    bb.batch_size = 32                                        # several batches
    f = bb.extract(x)
    np.testing.assert_allclose(f.z, fmap.mean(2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f.z_std, fmap.std(2), rtol=1e-4, atol=1e-5)   # population std over H·W
    np.testing.assert_allclose(f.logits, logits, rtol=1e-5, atol=1e-5)         # head(z) = the classifier
    assert calls == [32, 32, 26]
    assert bb.extract(x.copy()) is f and bb.extract(torch.as_tensor(x)) is f and calls == [32, 32, 26]
    assert bb.extract(x[:10]) is not f and calls[3:] == [10]  # other content: extracted anew
    with pytest.raises(ValueError, match="x"):
        bb.extract(np.zeros(5, np.float32))


def test_disk_cache_reuses_features_of_the_same_weights_only(tmp_path, monkeypatch):
    bb, x, _ = _backbone_and_data()
    cached = Backbone(bb.net, cache_dir=str(tmp_path))
    f = cached.extract(x)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"features-{cached.hash}-{files[0].split('-')[2]}"] and files[0].endswith(".npz")
    fresh = Backbone(bb.net, cache_dir=str(tmp_path))          # a later run: same weights, same inputs
    calls = _count_calls(monkeypatch)
    g = fresh.extract(x)
    assert calls == []                                          # read from disk, the network did not run
    for a, b in ((f.z, g.z), (f.z_std, g.z_std), (f.logits, g.logits)):
        np.testing.assert_array_equal(a, b)
    other, _, _ = _backbone_and_data(seed=1)                    # other weights: another file, features anew
    assert other.hash != cached.hash
    assert not np.allclose(Backbone(other.net, cache_dir=str(tmp_path)).extract(x).z, f.z)
    assert len(list(tmp_path.iterdir())) == 2


def test_prior_detectors_on_raw_inputs_use_the_right_features():
    bb, x, y = _backbone_and_data()
    f = bb.extract(x)
    gmm_std = make_heat_detector(bb, "GMM-std", residual=False).fit(x, y)
    ref = GMMPrior(reg=gmm_std.inner.prior_.reg).fit(f.z_std, y)   # the ridge it ended with (degenerate tiny data)
    np.testing.assert_allclose(gmm_std.score(x[:10]), ref(torch.as_tensor(f.z_std[:10])).double().numpy(), rtol=1e-5)
    el = make_heat_detector(bb, "EL", residual=False).fit(x, y)
    raw = -logsumexp(f.logits.astype(np.float64), axis=1)
    np.testing.assert_allclose(el.score(x), raw, rtol=1e-4, atol=1e-4)   # T = 1 (HEAT App. B, authors' code)
    assert el.name == "EL" and make_heat_detector(bb, "GMM").name == "HEAT-GMM"


def test_heat_methods_are_registered_in_the_heat_suite():
    from ebm_ood.commands.benchmark.registry import methods_for

    names = [m.name for m in methods_for("heat")]
    for n in ("EL", "GMM", "GMM-std", "HEAT-EL", "HEAT-GMM", "HEAT-GMM-std", "HEAT"):
        assert n in names


def test_stratified_subset_keeps_every_class_and_the_fraction():
    from ebm_ood.commands.experiments.heat_lowdata import stratified_subset

    y = np.repeat(np.arange(4), [50, 30, 10, 3])
    idx = stratified_subset(y, 0.2, seed=0)
    np.testing.assert_array_equal(np.bincount(y[idx]), [10, 6, 2, 2])
    assert len(np.unique(idx)) == len(idx)


def test_pair_compositions_reuse_the_fitted_hybrids_and_follow_eq7():
    """The Table-3 rows ("HEAT (EL+GMM)", ...) compose the very hybrids the HEAT-<prior> rows fitted."""
    from ebm_ood.commands.benchmark.registry import heat_part
    from ebm_ood.commands.benchmark.registry import RunContext, methods_for
    from ebm_ood.commands.benchmark.runner import fit_method
    from ebm_ood.data import get_dataset
    from ebm_ood.heat.compose import compose_energies

    names = [m.name for m in methods_for("heat")]
    assert {"HEAT (EL+GMM)", "HEAT (EL+GMM-std)", "HEAT (GMM+GMM-std)"} <= set(names)
    d = get_dataset("digits")
    ctx = RunContext(dataset=d, seed=0, preset="quick")
    spec = methods_for("heat", ["HEAT (EL+GMM)"])[0]
    pair = fit_method(spec, ctx)
    assert list(pair.parts) == ["HEAT-EL", "HEAT-GMM"]
    assert pair.parts["HEAT-EL"] is heat_part(ctx, "EL") and pair.parts["HEAT-GMM"] is heat_part(ctx, "GMM")
    x = d.x_test[:50]
    np.testing.assert_allclose(pair.score(x), compose_energies(pair.part_scores(x), 0.0), rtol=1e-6, atol=1e-6)


def test_gmm_std_on_an_mlp_backbone_is_a_clear_error():
    net = build_network((4,), 3, mlp_width=8, depth=2)   # an MLP: no spatial feature map
    with pytest.raises(ValueError, match="GMM-std needs a conv backbone"):
        make_heat_detector(Backbone(net), "GMM-std")
    with pytest.raises(ValueError, match="form"):
        make_heat_detector(Backbone(net), "EL", form="papr")


def test_code_form_sets_the_authors_settings_and_overrides_win():
    bb, _, _ = _backbone_and_data()
    el = make_heat_detector(bb, "EL", form="code").inner
    assert el.prior.init == "normal" and el.config.sampler == "code" and el.config.control == "code"
    assert (el.config.sgld_steps, el.config.step_size, el.config.noise_std, el.config.lam) == (50, 0.1, 0.1, 0.1)
    std = make_heat_detector(bb, "GMM-std", form="code", sgld_steps=3, reg=1e-3, domain="real").inner
    assert std.prior.form == "code" and std.config.sgld_steps == 3 and std.config.lam == 10.0
    assert std.prior.reg == 1e-3 and std.prior.domain == "real"
    paper = make_heat_detector(bb, "GMM").inner
    assert paper.config.sampler == "paper" and paper.config.control == "pooled" and paper.config.mlp == "plain"
