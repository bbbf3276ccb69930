"""``full`` trains images for Elflein App. B's 50 epochs at the authors' batch sizes (``configs/dataset``:
32 CIFAR-10, 64 FMNIST, 512 Segment / Sensorless) and tabular data for 10,000 steps; the trainer turns
epochs into ``epochs · ⌈N / batch⌉`` steps of the N training samples."""
import math

import pytest
import torch
from torch import nn

from ebm_ood.methods.ce import ce_config
from ebm_ood.methods.contrastive_divergence import cd_config
from ebm_ood.methods.flows.detector import flow_config
from ebm_ood.methods.score_matching import ssm_config
from ebm_ood.methods.vera import vera_config
from ebm_ood.training import TrainConfig, steps_for_epochs, train

CONFIGS = (ce_config, cd_config, ssm_config, vera_config, flow_config)
AUTHORS = {"cifar10": ("image", 32), "fmnist": ("image", 64), "segment": ("tabular", 512), "sensorless": ("tabular", 512)}


@pytest.mark.parametrize("epochs,n,batch", [(50, 45_000, 32), (50, 48_000, 64), (1, 64, 64), (3, 65, 64), (2, 1, 512)])
def test_steps_for_epochs_is_epochs_times_the_batches_per_pass(epochs, n, batch):
    assert steps_for_epochs(epochs, n, batch) == epochs * math.ceil(n / batch)


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(n=0), dict(batch_size=-1), dict(epochs=1.5), dict(epochs=True)])
def test_steps_for_epochs_rejects_non_positive_integers(bad):
    args = dict(epochs=2, n=10, batch_size=4) | bad
    with pytest.raises(ValueError, match=next(iter(bad)) if "n" not in bad else "n:"):
        steps_for_epochs(**args)


@pytest.mark.parametrize("n,batch,epochs", [(10, 4, 2), (12, 4, 3), (5, 64, 2)])
def test_trainer_runs_the_derived_number_of_steps(n, batch, epochs):
    torch.manual_seed(0)
    net, calls = nn.Linear(2, 1), []

    def step(xb, yb, i):
        calls.append(xb.shape[0])
        return net(xb).pow(2).mean(), {}

    hist = train({"net": net}, step, torch.randn(n, 2), None,
                 TrainConfig(steps=999, epochs=epochs, batch_size=batch, eval_every=1, progress=False), name="t")
    assert len(calls) == hist.steps_done == epochs * math.ceil(n / batch)


@pytest.mark.parametrize("make", CONFIGS)
@pytest.mark.parametrize("dataset", sorted(AUTHORS))
def test_full_presets_use_the_authors_batch_and_the_papers_schedule(make, dataset):
    kind, batch = AUTHORS[dataset]
    t = make("full", kind, dataset).train
    assert t.batch_size == batch
    if kind == "image":
        assert t.epochs == 50
        n = 45_000 if dataset == "cifar10" else 54_000  # a training split of each size
        assert steps_for_epochs(t.epochs, n, t.batch_size) == 50 * math.ceil(n / batch)
    else:
        assert t.epochs is None and t.steps == 10_000


@pytest.mark.parametrize("make", CONFIGS)
@pytest.mark.parametrize("kind", ["tabular", "image"])
def test_quick_stays_in_steps(make, kind):
    assert make("quick", kind).train.epochs is None
    assert make("quick", kind, "cifar10") == make("quick", kind)
