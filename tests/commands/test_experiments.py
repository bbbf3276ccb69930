"""The Elflein experiments (issue 7): % improvement arithmetic, γ = 0 is the unsupervised model, the
bottleneck architecture, and every command's --quick run writes well-formed tables/figures/JSON."""
import json
import math

import numpy as np
import pytest
import torch

from ebm_ood.plumbing import plotting
from ebm_ood.commands.cli import EXPERIMENTS, main
from ebm_ood.data import get_dataset
from ebm_ood.commands.experiments import common, output
from ebm_ood.commands.experiments.common import EBM_METHODS, Settings, method_config
from ebm_ood.commands.experiments.improvement import group_improvement, improvement_by_group, percent_improvement
from ebm_ood.nn import SmallWRN


# ----------------------------------------------------------------------------------- % improvement
def test_percent_improvement_reproduces_elflein_table2_from_tables_5_and_6():
    # Segment, CD -> CD-S (Elflein Tables 5/6 AUC-PR; Table 2 prints 1.85 and 0.89)
    assert round(percent_improvement(100.0, 98.18), 2) == 1.85
    new = {"constant": {"aupr_out_bal": 94.57}, "noise": {"aupr_out_bal": 98.68}}
    base = {"constant": {"aupr_out_bal": 96.13}, "noise": {"aupr_out_bal": 95.43}}
    by_hand = ((94.57 - 96.13) / 96.13 + (98.68 - 95.43) / 95.43) / 2 * 100
    assert group_improvement(new, base, ["constant", "noise"]) == pytest.approx(by_hand, rel=1e-12)
    assert round(by_hand, 2) == 0.89
    # the mean of per-set improvements, not the improvement of the mean (which gives 0.88 here)
    assert round(100 * (np.mean([94.57, 98.68]) / np.mean([96.13, 95.43]) - 1), 2) == 0.88


def test_improvement_by_group_and_edge_cases():
    base = {"a": {"aupr_out_bal": 0.5}, "b": {"aupr_out_bal": 0.8}, "c": {"aupr_out_bal": 0.4}}
    new = {"a": {"aupr_out_bal": 0.75}, "b": {"aupr_out_bal": 0.6}, "c": {"aupr_out_bal": 0.5}}
    groups = {"a": "natural", "b": "non-natural", "c": "non-natural"}
    r = improvement_by_group(new, base, groups)
    assert r["natural"] == pytest.approx(50.0)
    assert r["non-natural"] == pytest.approx((-25.0 + 25.0) / 2)
    assert math.isnan(group_improvement({"error": "diverged"}, base, ["a"]))
    assert math.isnan(group_improvement(new, base, []))
    assert math.isnan(percent_improvement(0.3, 0.0))


# ----------------------------------------------------------------------------------- γ = 0 == unsupervised
@pytest.mark.parametrize("method", sorted(EBM_METHODS))
def test_gamma_zero_is_exactly_the_unsupervised_model(method):
    """Same seed: the γ = 0 model fitted *with* labels scores exactly like the unsupervised model fitted
    without them; a γ > 0 model (the control) does not."""
    d = get_dataset("digits")
    x, y, xv, yv = d.x_train[:128], d.y_train[:128], d.x_val[:32], d.y_val[:32]
    s = Settings(preset="quick", steps=3)
    cls, _ = common._method(method)

    tiny = {"CD": {"sgld_steps": 2, "conditional_sgld_steps": 2}, "VERA": {"n_importance": 2}}.get(method, {})

    def fit(gamma, labels):
        det = cls(method_config(method, s, "image", gamma=gamma, **tiny), seed=7)
        return det.fit(x, y if labels else None, validation=(xv, yv if labels else None)).score(d.x_test[:50])

    unsup = fit(0.0, labels=False)
    assert np.array_equal(fit(0.0, labels=True), unsup)
    assert not np.allclose(fit(1.0, labels=True), unsup)


# ----------------------------------------------------------------------------------- bottleneck architecture
def _convs(net):
    return [(n, m.in_channels, m.out_channels, m.kernel_size) for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)]


def _conv_params(layers):
    return sum(i * o * k * k + o for i, o, k in layers)


def test_authors_bottleneck_matches_an_independent_count_of_shapes_and_parameters():
    """WRN-10-2 on 1×8×8, factor 0.05: after every block two 1×1 convs C → int(0.05 C) → C (the authors'
    ``_wide_layer``): ranks [1, 3, 6], and the next block and the head read the full width."""
    net = SmallWRN(1, 1, width=2, bottleneck=0.05)
    necks = [(i, o, k[0]) for n, i, o, k in _convs(net) if n.startswith("necks.")]
    assert necks == [(32, 1, 1), (1, 32, 1), (64, 3, 1), (3, 64, 1), (128, 6, 1), (6, 128, 1)]
    assert net.blocks[1].conv1.in_channels == 32 and net.blocks[2].conv1.in_channels == 64
    assert net.head.in_features == 128
    convs = [(1, 16, 3),  # stem
             (16, 32, 3), (32, 32, 3), (16, 32, 1), (32, 1, 1), (1, 32, 1),  # block 1 + bottleneck
             (32, 64, 3), (64, 64, 3), (32, 64, 1), (64, 3, 1), (3, 64, 1),  # block 2 + bottleneck
             (64, 128, 3), (128, 128, 3), (64, 128, 1), (128, 6, 1), (6, 128, 1)]  # block 3 + bottleneck
    assert sum(p.numel() for p in net.parameters()) == _conv_params(convs) + 128 * 1 + 1  # + linear head
    # each bottleneck's output is an affine image of rank int(0.05 C) at every pixel
    h, x = net.stem(torch.randn(64, 1, 8, 8)), None
    with torch.no_grad():
        for block, neck, b in zip(net.blocks, net.necks, (1, 3, 6)):
            h = neck(block(h))
            x = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1]).double()
            assert torch.linalg.matrix_rank(x - x.mean(0), rtol=1e-4).item() == b  # float32 round-off


def test_reduce_bottleneck_reads_the_reduced_width_downstream():
    net = SmallWRN(1, 1, width=2, bottleneck=0.2, bottleneck_form="reduce")
    necks = [(i, o) for n, i, o, _ in _convs(net) if n.startswith("necks.")]
    assert necks == [(32, 6), (64, 12), (128, 25)]  # int(6.4), int(12.8), int(25.6)
    assert net.blocks[1].conv1.in_channels == 6 and net.blocks[2].conv1.in_channels == 12
    assert net.head.in_features == 25
    convs = [(1, 16, 3), (16, 32, 3), (32, 32, 3), (16, 32, 1), (32, 6, 1), (6, 64, 3), (64, 64, 3), (6, 64, 1),
             (64, 12, 1), (12, 128, 3), (128, 128, 3), (12, 128, 1), (128, 25, 1)]
    assert sum(p.numel() for p in net.parameters()) == _conv_params(convs) + 25 + 1
    with pytest.raises(ValueError, match="bottleneck_form"):
        SmallWRN(1, 1, bottleneck=0.2, bottleneck_form="wide")


def test_bottleneck_factor_one_has_the_unbottlenecked_function_class():
    """Factor 1.0 (authors' form): with identity 1×1 convs it computes exactly the network without
    bottleneck (so it can represent every such function)."""
    torch.manual_seed(0)
    plain, full = SmallWRN(1, 3, width=2), SmallWRN(1, 3, width=2, bottleneck=1.0)
    assert [c for c in _convs(full) if not c[0].startswith("necks.")] == _convs(plain)
    sd = full.state_dict()
    sd.update(plain.state_dict())
    for i, c in enumerate((32, 64, 128)):
        for j in (0, 1):
            sd[f"necks.{i}.{j}.weight"] = torch.eye(c)[:, :, None, None]
            sd[f"necks.{i}.{j}.bias"] = torch.zeros(c)
    full.load_state_dict(sd)
    x = torch.randn(5, 1, 8, 8)
    assert torch.allclose(full(x), plain(x), atol=1e-5)


# ----------------------------------------------------------------------------------- embeddings scaling
def test_minmax_scaled_features_match_an_independent_scaling():
    from ebm_ood.posthoc.knn import KNN
    from ebm_ood.commands.experiments.embeddings import MinMaxScaled

    rng = np.random.default_rng(0)
    z = rng.normal(3.0, [1.0, 5.0, 0.1], size=(200, 3)).astype(np.float32)
    zq = rng.normal(3.0, 2.0, size=(20, 3)).astype(np.float32)
    det = MinMaxScaled(KNN(k=3, normalize=False)).fit(z)
    lo, hi = z.min(axis=0), z.max(axis=0)
    ref = KNN(k=3, normalize=False).fit((z - lo) / (hi - lo))
    np.testing.assert_allclose(det.score(zq), ref.score((zq - lo) / (hi - lo)), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------- the commands
QUICK = {
    "supervision": [],
    "gamma-sweep": ["--gammas", "1"],
    "density-vs-norm": ["--gammas", "0,1", "--alphas", "1,4", "--n-inputs", "20"],
    "embeddings": [],
    "bottleneck": ["--factors", "0.2"],
    "smoothness": [],
    "samples": ["--steps-sgld", "3", "--n-images", "4"],
}
FILES = {"supervision": "supervision", "gamma-sweep": "gamma_sweep", "density-vs-norm": "density_vs_norm",
         "embeddings": "embeddings", "bottleneck": "bottleneck", "smoothness": "smoothness", "samples": "samples"}
FIGURES = {"gamma-sweep", "density-vs-norm", "smoothness", "samples"}


def _check_table_json(data, labels):
    groups = data["groups"]
    assert set(groups.values()) == {"natural", "non-natural"}
    for lab in labels:
        row = data["results"][lab]
        assert "error" not in row, row
        for o in groups:
            assert 0.0 <= row[o]["aupr_out_bal"] <= 1.0
    for r in data["improvement"].values():
        assert set(r) == {"natural", "non-natural"} and all(math.isfinite(v) for v in r.values())


@pytest.mark.parametrize("name", list(QUICK))
def test_quick_command_writes_well_formed_outputs(name, tmp_path, monkeypatch):
    assert name in EXPERIMENTS
    out = tmp_path / name
    loads = []
    monkeypatch.setattr(common, "get_dataset", lambda n: loads.append(n) or get_dataset(n))
    common.load_dataset.cache_clear()
    assert main(["experiment", name, "--quick", "--steps", "3", "--methods", "SSM", "--out", str(out)] + QUICK[name]) == 0
    common.load_dataset.cache_clear()
    assert loads == ["digits"]  # flag checks, training and tables share one load
    base = FILES[name]
    data = json.loads((out / f"{base}.json").read_text())
    md = (out / f"{base}.md").read_text()
    assert data["experiment"] == base and data["preset"] == "quick" and data["steps"] == 3
    assert md.startswith("# Elflein") and "|---|" in md and "SSM" in md
    if name in ("supervision", "embeddings"):
        suffix = "-S" if name == "supervision" else "-E"
        _check_table_json(data, ["SSM", f"SSM{suffix}"])
    elif name == "bottleneck":
        _check_table_json(data, ["SSM bn=none", "SSM bn=0.2"])
        assert "Table 7" in md and "Table 4" in md
    elif name == "gamma-sweep":
        assert set(data["aupr"]["SSM"]) == {"0", "1"}
        assert all(0 <= v <= 1 for row in data["aupr"]["SSM"].values() for v in row.values())
    elif name == "density-vs-norm":
        curves = data["curves"]["SSM"]
        assert set(curves) == {"0", "1"} and all(len(c) == 2 and c[0] == 0.0 for c in curves.values())
        assert data["norms"][1] == pytest.approx(4 * data["norms"][0], rel=1e-5)
    elif name == "smoothness":
        assert set(data["summary"]["SSM"]) == {"unsupervised", "supervised", "bottleneck 0.2"}
        for row in data["summary"]["SSM"].values():
            assert set(row) == {"smooth-1", "smooth-2", "smooth-4"} and all(0 <= v["auroc"] <= 1 for v in row.values())
    elif name == "samples":
        imgs = np.asarray(data["images"]["SSM"]["supervised"])
        assert imgs.shape == (4, 1, 8, 8) and imgs.min() >= -1 and imgs.max() <= 1
        assert sorted(data["labels"]) == [0, 1, 2, 3]
    if name in FIGURES and plotting.pyplot() is not None:
        assert (out / f"{base}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_data_is_written_and_the_hint_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(plotting, "pyplot", lambda: None)
    assert output.draw_figure(lambda plt: None, str(tmp_path / "f.png")) is None
    assert not (tmp_path / "f.png").exists()
    assert 'pip install -e ".[plots]"' in capsys.readouterr().err


BAD_FLAGS = [
    (["supervision", "--methods", "XYZ"], "unknown XYZ"),
    (["bottleneck", "--dataset", "tabular"], "needs an image dataset"),
    (["gamma-sweep", "--gammas", "0,1"], "--gammas"),
    (["density-vs-norm", "--gammas", "0,nan"], "--gammas: expected non-negative numbers"),
    (["density-vs-norm", "--n-inputs", "0"], "--n-inputs: expected a positive integer, got 0"),
    (["bottleneck", "--factors", "0.2,1.5"], "--factors: expected factors in"),
    (["supervision", "--device", "tpu"], "--device"),
    (["heat-lambda", "--dataset", "nope"], "--dataset: dataset: unknown name 'nope'; valid names: .*digits"),
]


@pytest.mark.parametrize("argv, message", BAD_FLAGS)
def test_bad_flags_fail_before_training(tmp_path, argv, message):
    with pytest.raises(SystemExit, match=message):
        main(["experiment", *argv, "--out", str(tmp_path)])


def test_heat_experiments_fit_and_score_like_each_other(tmp_path, monkeypatch):
    """heat-lambda and heat-lowdata go through the benchmark's fit_method / evaluate_detector on the same
    shared backbone, so GMM and HEAT-GMM (λ = 10, the default) on 100 % of the data agree exactly, and the
    low-data models see less data while the backbone is trained once, on all of it."""
    from ebm_ood.commands.benchmark import registry as methods

    backbones = []
    build_ce = methods.build_ce
    monkeypatch.setattr(methods, "build_ce", lambda ctx: backbones.append(len(ctx.dataset.x_train)) or build_ce(ctx))
    for name in ("heat-lambda", "heat-lowdata"):
        assert main(["experiment", name, "--quick", "--out", str(tmp_path / name)]) == 0
    assert backbones == [len(get_dataset("digits").x_train)] * 2  # one per command (one seed), on all the data
    lam = json.loads((tmp_path / "heat-lambda" / "heat-lambda.json").read_text())
    low = json.loads((tmp_path / "heat-lowdata" / "heat-lowdata.json").read_text())["models"]
    assert low["GMM"]["1.0"] == lam["gmm"] and low["HEAT-GMM"]["1.0"] == lam["heat_gmm"]["10.0"]
    assert low["GMM"]["0.25"] != low["GMM"]["1.0"]
    per_set = lam["per_seed"]["gmm"][0]
    assert set(per_set) == {"digits-89", "patches", "noise", "constant", "oodomain", "average"}  # no smoothness sets
    assert per_set["average"]["auroc"] == pytest.approx(np.mean([v["auroc"] for k, v in per_set.items() if k != "average"]))
    assert all(0 <= v["auroc"] <= 100 and 0 <= v["fpr95"] <= 100 for v in per_set.values())


def test_long_experiment_runs_show_progress_and_quick_ones_stay_quiet():
    for preset, shown in (("quick", False), ("default", True), ("full", True)):
        for m in EBM_METHODS:
            assert method_config(m, Settings(preset=preset), "image").train.progress is shown


@pytest.mark.parametrize("preset", ["default", "full"])
def test_steps_flag_replaces_the_presets_epochs(preset):
    """``--steps N`` trains N steps also where the preset counts epochs (images: ``default`` and ``full``)."""
    for m in EBM_METHODS:
        assert method_config(m, Settings(preset=preset), "image").train.epochs is not None
        train = method_config(m, Settings(preset=preset, steps=200), "image").train
        assert (train.steps, train.epochs) == (200, None)
