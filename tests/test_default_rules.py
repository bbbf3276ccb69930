"""The rules every derived ``default`` follows besides its length factor (``ebm_ood/presets.py``):

* warm-up: at most ``WARMUP_SHARE`` of the run's steps, however the run is counted (steps on tabular data,
  epochs of the dataset on images), for every method × kind × dataset;
* model selection on a criterion that measures fit on ID data: SSM's objective and the flow's NLL on ID
  validation data; CD and VERA, whose losses measure no fit, keep their last weights.
"""
import numpy as np
import pytest
import torch
from torch import nn

from ebm_ood.methods.contrastive_divergence import CDDetector, cd_config
from ebm_ood.methods.flows.detector import flow_config
from ebm_ood.methods.score_matching import ssm_config
from ebm_ood.methods.vera import VERADetector, vera_config
from ebm_ood.presets import PRESETS, WARMUP_SHARE
from ebm_ood.training import TrainConfig, effective_warmup, steps_for_epochs, train

CONFIGS = {"CD": cd_config, "SSM": ssm_config, "VERA": vera_config, "NF": flow_config}
# (kind, dataset, training samples): the embedded sets, and the authors' sets at their training sizes
CASES = [("tabular", "tabular", 1584), ("tabular", "segment", 1500), ("tabular", "sensorless", 40_000),
         ("image", "digits", 1010), ("image", "fmnist", 60_000), ("image", "cifar10", 50_000)]


def _run_steps(train_config, n):
    if train_config.epochs is None:
        return train_config.steps
    return steps_for_epochs(train_config.epochs, n, train_config.batch_size)


@pytest.mark.parametrize("method", sorted(CONFIGS))
@pytest.mark.parametrize("kind,dataset,n", CASES)
def test_the_derived_warmup_is_at_most_its_share_of_the_run(method, kind, dataset, n):
    t = CONFIGS[method]("default", kind, dataset).train
    steps = _run_steps(t, n)
    assert t.warmup_share == WARMUP_SHARE == 1 / 4
    warm = effective_warmup(t.warmup, steps, t.warmup_share)
    assert warm <= WARMUP_SHARE * steps
    assert warm == min(t.warmup, steps // 4)  # the scaled App. B warm-up unless it is over the share


def test_the_trainer_applies_the_share_after_counting_epochs():
    # 3 epochs of 16 samples in batches of 4 = 12 steps; warm-up 100 capped at 12 // 4 = 3 steps: the
    # learning rate of step s is lr · min(1, (s + 1) / 3), which Adam's update size shows under a constant gradient
    net = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(100.0)
    ws = []

    def step(xb, yb, s):
        ws.append(net.weight.item())
        return net(xb).mean(), {}

    config = TrainConfig(steps=1, epochs=3, batch_size=4, lr=1.0, warmup=100, warmup_share=0.25, progress=False)
    hist = train({"net": net}, step, torch.ones(16, 1), None, config, name="share")
    assert hist.steps_done == 12
    deltas = [ws[i] - ws[i + 1] for i in range(len(ws) - 1)]
    assert deltas == pytest.approx([1 / 3, 2 / 3] + [1.0] * 9, abs=1e-5)


@pytest.mark.parametrize("share", [0.0, 1.5, -0.1, True, "1/4"])
def test_a_bad_share_is_named(share):
    with pytest.raises(ValueError, match="warmup_share"):
        train({"net": nn.Linear(1, 1)}, lambda xb, yb, s: (xb.sum(), {}), torch.ones(4, 1), None,
              TrainConfig(steps=2, warmup_share=share, progress=False), name="bad")


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("kind", ["tabular", "image"])
def test_cd_keeps_its_last_weights_in_every_preset(preset, kind):
    assert cd_config(preset, kind).select == "last"


@pytest.mark.parametrize("detector,config", [(CDDetector, cd_config), (VERADetector, vera_config)])
def test_cd_and_vera_end_with_the_weights_of_their_last_step(detector, config):
    x = np.random.default_rng(0).normal(size=(200, 4)).astype("float32")
    cfg = config("quick", "tabular")
    det = detector(cfg, seed=0).fit(x)
    assert det.history_.best_step == det.history_.steps_done == cfg.train.steps
    # no criterion was evaluated: the trainer records the (0-based) step index as each validation's value
    assert [v["val"] for _, v in det.history_.logs] == [float(s - 1) for s, _ in det.history_.logs]


@pytest.mark.parametrize("preset", ["default", "full"])
def test_ssm_adds_the_authors_input_noise_on_images_only(preset):
    # without it the SSM objective is unbounded below on images with constant pixels (SSM_FULL's comment)
    assert ssm_config(preset, "image").data_noise_std == 0.1
    assert ssm_config(preset, "tabular").data_noise_std == 0.0
