"""The public API tried as a pytorch-ood or scikit-learn user would: odd models, odd loaders, odd tensors,
odd call orders. Each case either works as documented or raises an error naming the argument."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ebm_ood
from ebm_ood import Backbone, FeatureSpaceDetector, KNN, ReAct
from ebm_ood.detector import Detector
from ebm_ood.plumbing.errors import NotFittedError
from ebm_ood.plumbing.inputs import UnorderedScoresWarning

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


class TupleNet(nn.Module):
    """A model whose forward returns (logits, features), as many research models do."""

    def __init__(self):
        super().__init__()
        self.m = _mlp()

    def forward(self, x):
        return self.m(x), self.m[:2](x)


def test_odin_names_a_model_that_does_not_return_logits():
    x = RNG.normal(size=(8, 4)).astype(np.float32)
    with pytest.raises(TypeError, match=r"net: ODIN needs net\(x\) to return logits .* got a tuple"):
        ebm_ood.ODIN(TupleNet()).fit(x).score(x)


def test_a_list_of_batches_says_to_wrap_it_in_iter():
    det = KNN(k=5).fit(Z)
    with pytest.raises(ValueError, match=r"x: expected 2 dimensions.*list of 2 arrays.*iter\(\.\.\.\)"):
        det.score([torch.from_numpy(Z[:30]), torch.from_numpy(Z[30:])])
    pairs = [[torch.from_numpy(Z[i:i + 16]), torch.arange(16) % 3] for i in range(0, 48, 16)]
    with pytest.raises(ValueError, match=r"x: a list that is not one rectangular array.*iter\(\.\.\.\)"):
        ebm_ood.Mahalanobis().fit(pairs)
    np.testing.assert_array_equal(det.score(iter([Z[:30], Z[30:]])), det.score(Z))


@pytest.mark.parametrize("through_backbone", [False, True])
def test_scoring_a_shuffling_loader_warns_that_scores_are_out_of_order(through_backbone):
    x = RNG.normal(size=(32, 4)).astype(np.float32)
    m = _mlp()
    det = FeatureSpaceDetector(Backbone(m, features=m[:2]), KNN(k=5)) if through_backbone else KNN(k=5)
    data = x if through_backbone else Z[:32]
    det.fit(data)
    ordered = DataLoader(TensorDataset(torch.from_numpy(data)), batch_size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(det.score(ordered), det.score(data), rtol=1e-6)
    for loader in (DataLoader(TensorDataset(torch.from_numpy(data)), batch_size=8, shuffle=True),
                   DataLoader(TensorDataset(torch.from_numpy(data)), batch_size=5, drop_last=True)):
        with pytest.warns(UnorderedScoresWarning, match="x: is a DataLoader with .* do not follow the dataset's order"):
            det.score(loader)
    with warnings.catch_warnings():                                  # evaluate needs no order
        warnings.simplefilter("error")
        ebm_ood.evaluate(det, DataLoader(TensorDataset(torch.from_numpy(data)), batch_size=8, shuffle=True),
                         {"far": data + 5})


@pytest.mark.parametrize("make, match", [
    (lambda: KNN(k=True), "k: expected an integer >= 1"),
    (lambda: KNN(k=5.0), "k: expected an integer >= 1"),
    (lambda: KNN(normalize="no"), "normalize: expected True or False"),
    (lambda: KNN(batch_size=0), "batch_size: expected an integer >= 1"),
    (lambda: ebm_ood.MSP(batch_size="a"), "batch_size: expected an integer >= 1"),
    (lambda: Backbone(_mlp(), batch_size=-1), "batch_size: expected an integer >= 1"),
    (lambda: ebm_ood.ViM(W, B, dim=True), "dim: expected an integer >= 1"),
    (lambda: ReAct(W, B, percentile="90"), r"percentile: expected a number in \(0, 100\]"),
    (lambda: ReAct(W, B, percentile=float("nan")), r"percentile: expected a number in \(0, 100\]"),
    (lambda: ebm_ood.DICE(W, B, percentile="90"), r"percentile: expected a number in \[0, 100\)"),
    (lambda: ebm_ood.Mahalanobis(reg=float("inf")), "reg: expected a non-negative finite number"),
    (lambda: ebm_ood.HEATDetector(nn.Linear(2, 1), residual="yes"), "residual: expected True or False"),
])
def test_settings_of_the_wrong_kind_are_refused_by_name(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_copies_of_a_fitted_detector_score_the_same():
    import copy
    import pickle
    from sklearn.base import clone
    m = _mlp()
    x = RNG.normal(size=(40, 4)).astype(np.float32)
    for det, data in ((FeatureSpaceDetector(Backbone(m, features=m[:2], head=m[2]), ebm_ood.MSP(), which="logits"), x),
                      (ebm_ood.ViM(W, B, dim=2), Z), (ebm_ood.ODIN(_mlp()), x)):
        det.fit(data).set_threshold(data, tpr=0.9)
        s = det.score(data)
        for other in (copy.deepcopy(det), pickle.loads(pickle.dumps(det))):
            np.testing.assert_array_equal(other.score(data), s)
            np.testing.assert_array_equal(other.predict(data), det.predict(data))
        fresh = clone(det)
        assert not getattr(fresh, "fitted_", False) and not hasattr(fresh, "threshold_")
        np.testing.assert_allclose(fresh.fit(data).score(data), s, rtol=1e-6)
