"""The public API tried as a pytorch-ood or scikit-learn user would: odd models, odd loaders, odd tensors,
odd call orders. Each case either works as documented or raises an error naming the argument."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ebm_ood
from ebm_ood import Backbone, FeatureSpaceDetector, KNN, ReAct
from ebm_ood.detector import Detector
from ebm_ood.errors import NotFittedError

RNG = np.random.default_rng(0)
Z = RNG.normal(size=(60, 6)).astype(np.float32)
W, B = RNG.normal(size=(3, 6)), RNG.normal(size=3)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


class Spy(Detector):
    """Records the validation data it was given."""
    input_kind = "features"

    def _fit(self, x, y):
        self.seen_validation_ = self.validation_

    def _score(self, x):
        return x.sum(1)


def test_a_validation_loader_is_streamed_through_the_backbone():
    m = _mlp()
    x = RNG.normal(size=(40, 4)).astype(np.float32)
    xv, yv = RNG.normal(size=(10, 4)).astype(np.float32), np.arange(10) % 3
    bb = Backbone(m, features=m[:2], head=m[2])
    ref = FeatureSpaceDetector(bb, Spy()).fit(x, validation=(xv, yv))
    loader = DataLoader(TensorDataset(torch.from_numpy(xv), torch.from_numpy(yv)), batch_size=4)
    det = FeatureSpaceDetector(bb, Spy()).fit(x, validation=loader)
    assert det.validation_[0].shape == (10, 6)                       # features held, not raw inputs
    np.testing.assert_allclose(det.inner.seen_validation_[0], ref.inner.seen_validation_[0], rtol=1e-5, atol=1e-6)
    assert det.inner.seen_validation_[1] is None                     # Spy was fitted without labels
    with pytest.raises(ValueError, match="validation x batch 0"):
        FeatureSpaceDetector(bb, Spy()).fit(x, validation=DataLoader(TensorDataset(torch.zeros(4, 5))))


def test_react_clip_value_is_not_the_prediction_threshold():
    det = ReAct(W, B).fit(Z)
    before = det.score(Z)
    with pytest.raises(NotFittedError, match="set_threshold"):
        det.predict(Z)
    det.set_threshold(Z, tpr=0.9)
    np.testing.assert_array_equal(det.score(Z), before)
