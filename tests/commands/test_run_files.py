"""Files a run writes and reads back: temporary names of long targets, resumed early-stopped training,
Markdown cells that hold ``|`` or line breaks, flows on images without variance."""
import os

import numpy as np
import pytest
import torch
from torch import nn

from ebm_ood.plumbing.atomic import remove_orphans, temp_name, write_atomic
from ebm_ood.training import TrainConfig, train


@pytest.mark.parametrize("name", ["a" * 244 + ".pt", "é" * 125 + ".ck", "b" * 255])
def test_a_valid_long_file_name_has_a_valid_temporary_name(tmp_path, name):
    target = tmp_path / name
    assert len(os.fsencode(name)) <= 255
    write_atomic(target, "x")
    assert target.read_text() == "x" and os.listdir(tmp_path) == [name]
    assert len(os.fsencode(os.path.basename(temp_name(target)))) <= 255
    orphan = temp_name(target).replace(f".{os.getpid()}-", ".99999999-")  # a killed writer's file
    open(orphan, "w").close()
    assert remove_orphans(target) == [orphan]


def test_save_and_checkpoints_take_a_244_byte_file_name(tmp_path):
    from ebm_ood.plumbing.checkpoint import load_checkpoint, save_checkpoint

    path = str(tmp_path / ("c" * 241 + ".pt"))
    save_checkpoint({"w": torch.ones(2)}, path)
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(2))


def _early_stopping_run(path, calls):
    torch.manual_seed(0)
    net = nn.Linear(2, 1)
    values = iter([3.0, 2.0, 1.0, 0.0, -1.0, -2.0])    # the first validation is the best; then no gain

    def step(xb, yb, i):
        calls.append(i)
        return (net(xb) ** 2).mean(), {}

    cfg = TrainConfig(steps=40, eval_every=2, patience=2, batch_size=4, progress=False, checkpoint_path=str(path))
    hist = train({"net": net}, step, torch.randn(16, 2), None, cfg, name="toy", validate=lambda: next(values))
    return net, hist


def test_a_resumed_early_stopped_train_does_not_train_past_its_stop(tmp_path):
    calls = []
    net, hist = _early_stopping_run(tmp_path / "ck.pt", calls)
    assert hist.stopped_early and hist.steps_done == 6 and len(calls) == 6
    again = []
    net2, hist2 = _early_stopping_run(tmp_path / "ck.pt", again)
    assert again == [] and hist2.stopped_early and hist2.steps_done == 6 and hist2.best_step == 2
    assert torch.equal(net2.weight, net.weight) and torch.equal(net2.bias, net.bias)


def test_markdown_cells_escape_bars_and_line_breaks():
    from ebm_ood.tables import elflein_table, heat_table, timing_table

    row = {"auroc": 0.5, "auroc_std": 0.0, "fpr95": 0.5, "fpr95_std": 0.0, "aupr_out_bal": 0.5,
           "aupr_out_bal_std": 0.0, "seeds": 1}
    groups = {"cifar|svhn": "natural", "noise\nx": "non-natural"}
    results = {"M|1": {"cifar|svhn": row, "noise\nx": row}, "bad": {"error": "ValueError: a|b\nc"}}

    def columns(line):  # cells of a Markdown row: split on bars that are not escaped
        return len([c for c in __import__("re").split(r"(?<!\\)\|", line.strip())[1:-1]])

    for table in (elflein_table(results, groups), heat_table(results, groups), timing_table({"d|x": {"M|1": 1.0}})):
        rows = [l for l in table.splitlines() if l.startswith("|")]
        assert len({columns(l) for l in rows}) == 1, table
    from ebm_ood.tables import md_cell

    assert md_cell("a|b\nc") == r"a\|b c" and md_cell("plain") == "plain"


def test_a_flow_on_images_without_variance_names_the_data_not_the_learning_rate():
    from ebm_ood.methods.flows import NormalizingFlowDetector, flow_config

    x = np.full((40, 1, 8, 8), 0.5, np.float32)
    with pytest.raises(ValueError, match="zero variance.*not a learning-rate problem"):
        NormalizingFlowDetector(flow_config("quick", "image"), seed=0).fit(x)
    x = np.random.default_rng(0).uniform(0, 1, (40, 1, 8, 8)).astype(np.float32)
    x[:, :, ::2, ::2] = 0.25                           # one squeezed channel constant in every image
    with pytest.raises(ValueError, match=r"channel 0, pixels .* is constant in every image"):
        NormalizingFlowDetector(flow_config("quick", "image"), seed=0).fit(x)
