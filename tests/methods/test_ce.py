"""The CE baseline: scores equal the energy computed by hand; it learns the task (its bad inputs: tests/bad_input/)."""
import numpy as np
import pytest
import torch

from ebm_ood.energy import energy_from_logits
from ebm_ood.methods.ce import CEClassifier, ce_config


def test_scores_are_the_energy_of_the_logits(ce_tabular):
    d, det = ce_tabular
    logits = torch.tensor(det.logits(d.x_test), dtype=torch.float64)
    assert np.allclose(det.score(d.x_test), energy_from_logits(logits).numpy(), atol=1e-5)
    # torch input gives the same scores as numpy input
    assert np.allclose(det.score(torch.tensor(d.x_test)), det.score(d.x_test))
    msp = CEClassifier(ce_config("quick", "tabular"), score="msp")
    msp.net_, msp.fitted_, msp.input_shape_ = det.net_, True, det.input_shape_
    assert np.allclose(msp.score(d.x_test), -torch.softmax(logits, 1).amax(1).numpy(), atol=1e-6)


def test_learns_the_task(ce_tabular):
    d, det = ce_tabular
    assert det.val_accuracy_ > 0.5  # 6 classes: chance is 1/6
    # model selection keeps the weights of the best validation: their accuracy, counted here, is val_accuracy_
    assert det.val_accuracy_ == pytest.approx(np.mean(det.logits(d.x_val).argmax(1) == d.y_val), abs=1e-12)
    assert det.val_accuracy_ == max(v["val"] for _, v in det.history_.logs)
