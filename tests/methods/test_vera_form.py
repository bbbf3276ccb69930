"""VERA's paper form (Elflein App. B): η clamped to [0.01, 0.3] and Adam β = (0, 0.9) for the generator
only (the EBM and posterior optimizers keep Adam's defaults), the default; ``form="code"`` passes one β
pair to every optimizer and leaves η unclamped, as the authors' code."""
import math

import numpy as np
import pytest
import torch
from dataclasses import replace

from ebm_ood.methods.vera import PosteriorProposal, VERADetector, vera_config
from ebm_ood import training


def _optimizers(monkeypatch, **overrides):
    made = []
    real = training._adam_with_warmup

    def spy(params, config):
        opt, sch = real(params, config)
        made.append(opt)
        return opt, sch

    monkeypatch.setattr(training, "_adam_with_warmup", spy)
    x = np.random.default_rng(0).normal(size=(60, 3)).astype("float32")
    det = VERADetector(vera_config("quick", kind="tabular"), seed=0, **overrides).fit(x)
    return det, {g: o.param_groups[0]["betas"] for g, o in made[0].items()}


def test_code_form_gives_every_optimizer_the_one_pair(monkeypatch):
    _, betas = _optimizers(monkeypatch, form="code")
    assert betas == {"ebm": (0.0, 0.9), "gen": (0.0, 0.9), "post": (0.0, 0.9)}


def test_paper_form_gives_the_generator_its_pair_and_the_rest_adam_defaults(monkeypatch):
    _, betas = _optimizers(monkeypatch, form="paper")
    assert betas == {"ebm": (0.9, 0.999), "gen": (0.0, 0.9), "post": (0.9, 0.999)}


@pytest.mark.parametrize("preset", ["quick", "default", "full"])
def test_the_paper_form_is_the_default_of_every_preset(monkeypatch, preset):
    for kind in ("tabular", "image"):
        assert vera_config(preset, kind).form == "paper"
    _, betas = _optimizers(monkeypatch)
    assert betas == {"ebm": (0.9, 0.999), "gen": (0.0, 0.9), "post": (0.9, 0.999)}


def test_eta_clamp_on_and_off():
    free, clamped = PosteriorProposal(0.1), PosteriorProposal(0.1, (0.01, 0.3))
    for p in (free, clamped):
        with torch.no_grad():
            p.log_eta.fill_(math.log(2.0))
    assert free.eta.item() == pytest.approx(2.0) and clamped.eta.item() == pytest.approx(0.3)
    h = torch.zeros(5, 4)
    torch.manual_seed(0)
    hp, _ = clamped.sample(h, 3000)
    assert hp.std().item() == pytest.approx(0.3, rel=0.05)
    clamped.clamp_(), free.clamp_()
    assert clamped.log_eta.item() == pytest.approx(math.log(0.3)) and free.log_eta.item() == pytest.approx(math.log(2.0))
    with torch.no_grad():
        clamped.log_eta.fill_(math.log(1e-4))
    assert clamped.eta.item() == pytest.approx(0.01)


def test_paper_form_keeps_eta_in_range_during_training():
    """A large posterior learning rate drives η below 0.01 after the first steps; the paper form holds it
    at the bound (logged η at every validation)."""
    x = np.random.default_rng(1).normal(size=(60, 3)).astype("float32")
    cfg = vera_config("quick", kind="tabular")
    train = replace(cfg.train, lrs={"post": 0.5}, progress=False)
    det = VERADetector(cfg, seed=0, form="paper", eta_init=0.05, train=train).fit(x)
    etas = [logs["eta"] for _, logs in det.history_.logs]
    assert all(0.01 - 1e-7 <= e <= 0.3 + 1e-7 for e in etas)
    assert min(etas) == pytest.approx(0.01, rel=1e-6)  # the bound was reached and held
    assert 0.01 <= det.proposal_.eta.item() <= 0.3


def test_bad_form_and_bad_group_betas():
    with pytest.raises(ValueError, match="form"):
        VERADetector(form="papers")
    with pytest.raises(ValueError, match="eta_clamp"):
        PosteriorProposal(0.5, (0.01, 0.3))
    x = np.zeros((20, 3), dtype="float32")
    cfg = vera_config("quick", kind="tabular")
    for bad, msg in (({"gan": (0.0, 0.9)}, "group_betas: 'gan'"), ({"gen": (1.0, 0.9)}, r"group_betas\['gen'\]")):
        t = type(cfg.train)(**{**cfg.train.__dict__, "group_betas": bad})
        with pytest.raises(ValueError, match=msg):
            VERADetector(cfg, train=t).fit(x)
