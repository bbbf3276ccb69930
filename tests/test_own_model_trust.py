"""Your own model, trusted: features follow the model's current weights (memo and disk cache keyed by what
computes them), the memo is bounded, pooling other than averaging is caught, labels beside a reordering
DataLoader are refused, a refit drops the old threshold, loaders are streamed at score time, the Energy
detector, and inputs follow the model's dtype and device (ebm_ood/backbone.py, ebm_ood/plumbing/fingerprint.py)."""
import types
import warnings

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax
from torch import nn
from torch.utils.data import (BatchSampler, DataLoader, IterableDataset, RandomSampler, Sampler,
                              SequentialSampler, SubsetRandomSampler, TensorDataset, WeightedRandomSampler)

import ebm_ood
from ebm_ood.backbone import Backbone, FeatureSpaceDetector, WeightsChangedWarning
from ebm_ood.plumbing.errors import NotFittedError
from ebm_ood.posthoc import KNN, MSP, Energy, Mahalanobis, MaxLogit

RNG = np.random.default_rng(0)


class CNN(nn.Module):
    """Conv -> BatchNorm -> ReLU -> global average pool -> linear head, with an early and a late layer."""

    def __init__(self, classes=3):
        super().__init__()
        self.early = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.late = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(32, classes)

    def fmap(self, x):
        return self.late(self.early(x))

    def embed_early(self, x):
        return self.early(x).mean(dim=(2, 3))

    def embed(self, x):
        return self.fmap(x).mean(dim=(2, 3))

    def forward(self, x):
        return self.fc(self.embed(x))


def _model(seed=0):
    torch.manual_seed(seed)
    return CNN().eval()


def _images(n=24, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 1, 6, 6)).astype(np.float32)


def _msp_of(model, x):
    with torch.no_grad():
        return -softmax(model.eval()(torch.as_tensor(x)).double().numpy(), axis=1).max(axis=1)


# ----------------------------------------------------------------------------- 1. stale features
def _edits():
    """Ways a user changes a model's weights in place, each as a function of the model."""
    other = _model(seed=5).state_dict()

    def optimiser_step(m):
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        nn.functional.cross_entropy(m(torch.as_tensor(_images(8, 3))), torch.zeros(8, dtype=torch.long)).backward()
        opt.step()

    def running_stats(m):                         # a forward pass in train mode moves BatchNorm's running stats
        m.train()
        with torch.no_grad():
            m(torch.as_tensor(_images(16, 4)) * 3 + 1)
        m.eval()

    def numpy_view(m):
        m.fc.bias.detach().numpy()[0] += 2.0      # no version counter sees this

    return {
        "load_state_dict": lambda m: m.load_state_dict(other),
        "no_grad add_": lambda m: torch.no_grad()(lambda: m.late[0].weight.add_(0.3))(),
        ".data.copy_": lambda m: m.late[0].weight.data.copy_(torch.randn_like(m.late[0].weight)),
        "optimiser step": optimiser_step,
        "BatchNorm running stats": running_stats,
        "numpy view of the bias": numpy_view,
    }


@pytest.mark.parametrize("edit", list(_edits()))
def test_scores_after_a_weight_change_are_those_of_the_new_weights(edit):
    model, x = _model(), _images()
    bb = Backbone(model, feature_map=model.fmap, head=model.fc)
    det = FeatureSpaceDetector(bb, MSP(), which="logits").fit(x)
    before = det.score(x)
    _edits()[edit](model)
    with pytest.warns(WeightsChangedWarning, match="changed since fit.*call fit again"):
        after = det.score(x)
    fresh = Backbone(model, feature_map=model.fmap, head=model.fc)
    np.testing.assert_allclose(after, FeatureSpaceDetector(fresh, MSP(), which="logits").fit(x).score(x), rtol=1e-6)
    np.testing.assert_allclose(after, _msp_of(model, x), rtol=1e-5, atol=1e-6)
    assert not np.allclose(after, before)


def test_a_refit_after_a_weight_change_uses_only_the_new_weights():
    model, x, y = _model(), _images(30), np.arange(30) % 3
    val = (_images(9, seed=1), np.arange(9) % 3)
    bb = Backbone(model, feature_map=model.fmap, head=model.fc)
    det = FeatureSpaceDetector(bb, Mahalanobis()).fit(x, y, validation=val)
    det.score(x)
    model.load_state_dict(_model(seed=7).state_dict())
    det.fit(x, y, validation=val)
    ref = FeatureSpaceDetector(Backbone(model, feature_map=model.fmap, head=model.fc), Mahalanobis())
    ref.fit(x, y, validation=val)
    with warnings.catch_warnings():
        warnings.simplefilter("error", WeightsChangedWarning)    # fitted and scored with the same weights
        np.testing.assert_allclose(det.score(x), ref.score(x), rtol=1e-6)
        np.testing.assert_allclose(det.inner.validation_[0], ref.inner.validation_[0], rtol=1e-6)


def test_features_are_computed_in_eval_mode_and_the_models_mode_is_kept():
    model, x = _model(), _images()
    det = FeatureSpaceDetector(Backbone(model, feature_map=model.fmap, head=model.fc), MSP(), which="logits").fit(x)
    x_new = _images(24, seed=2)
    want = _msp_of(model, x_new)                 # the model's own softmax, in eval mode
    model.train()                                # e.g. fine-tuning goes on between two evaluations
    stats = model.early[1].running_mean.clone()
    np.testing.assert_allclose(det.score(x_new), want, rtol=1e-5, atol=1e-6)
    assert model.training and model.early[1].training                   # the user's mode is restored
    assert torch.equal(model.early[1].running_mean, stats)              # eval mode: running stats untouched


def test_functions_over_a_model_follow_its_weights_and_opaque_ones_are_not_memoised():
    model, x = _model(), _images()
    holder = types.SimpleNamespace(model=model)          # an object the fingerprint cannot read
    for features in (lambda a: model.embed(a), lambda a: holder.model.embed(a)):
        bb = Backbone(features=features, head=model.fc)
        first = bb.extract(x).logits
        model.fc.weight.data.mul_(-1)
        np.testing.assert_allclose(bb.extract(x).logits, -first + 2 * model.fc.bias.detach().numpy(), rtol=1e-5,
                                   atol=1e-5)
        model.fc.weight.data.mul_(-1)
    assert Backbone(features=lambda a: holder.model.embed(a)).hash is None
    assert Backbone(features=lambda a: model.embed(a)).hash is not None


def test_a_hook_or_a_replaced_forward_changes_the_features():
    model, x = _model(), _images()
    bb = Backbone(model, feature_map=model.fmap, head=model.fc)
    first = bb.extract(x).z
    handle = model.late.register_forward_hook(lambda m, args, out: out * 2)
    np.testing.assert_allclose(bb.extract(x).z, 2 * first, rtol=1e-6)
    handle.remove()
    np.testing.assert_array_equal(bb.extract(x).z, first)
    model.late.forward = lambda a: torch.zeros(len(a), 32, 6, 6)
    assert not bb.extract(x).z.any()


# ----------------------------------------------------------------------------- 2. disk cache collisions
def test_the_disk_cache_keys_on_the_piece_that_computes_the_features(tmp_path):
    model, x = _model(), _images()
    early = Backbone(model, features=model.embed_early, cache_dir=str(tmp_path)).extract(x)
    late = Backbone(model, features=model.embed, cache_dir=str(tmp_path)).extract(x)
    assert early.z.shape == (24, 16) and late.z.shape == (24, 32)
    no_head = Backbone(model, feature_map=model.fmap, cache_dir=str(tmp_path)).extract(x)
    assert no_head.logits is None
    with_head = Backbone(model, feature_map=model.fmap, head=model.fc, cache_dir=str(tmp_path)).extract(x)
    with torch.no_grad():
        np.testing.assert_allclose(with_head.logits, model(torch.as_tensor(x)).numpy(), rtol=1e-5, atol=1e-6)
    strided = CNN()
    strided.load_state_dict(model.state_dict())
    strided.late[0].stride = (2, 2)                    # same weights, another computation
    assert Backbone(strided, feature_map=strided.fmap).hash != Backbone(model, feature_map=model.fmap).hash
    again = Backbone(model, feature_map=model.fmap, head=model.fc, cache_dir=str(tmp_path)).extract(x)
    np.testing.assert_array_equal(again.logits, with_head.logits)          # the same pieces read the file
    scale = 2.0
    doubled = Backbone(features=lambda a: scale * a.flatten(1), cache_dir=str(tmp_path)).extract(x).z
    scale = 3.0
    tripled = Backbone(features=lambda a: scale * a.flatten(1), cache_dir=str(tmp_path)).extract(x).z
    np.testing.assert_allclose(tripled, 1.5 * doubled, rtol=1e-6)


# ----------------------------------------------------------------------------- 3. bounded memo
def test_the_memo_is_bounded_by_bytes_and_keeps_the_recent_results():
    model = _model()
    bb = Backbone(model, feature_map=model.fmap, head=model.fc, memo_bytes=10_000)
    one = bb.extract(_images(10)).nbytes                # 10 x (32 + 32 + 3) float32 = 2680 bytes
    for seed in range(300):
        bb.extract(_images(10, seed=seed))
        assert sum(f.nbytes for f in bb._memo.values()) <= 10_000
    assert len(bb._memo) == 10_000 // one
    last = bb.extract(_images(10, seed=299))
    assert bb.extract(_images(10, seed=299)) is last                     # the most recent one is memoised
    off = Backbone(model, feature_map=model.fmap, memo_bytes=0)
    off.extract(_images(10))
    assert off._memo == {}
    with pytest.raises(ValueError, match="memo_bytes"):
        Backbone(model, memo_bytes=-1)


# ----------------------------------------------------------------------------- 4. pooling other than averaging
class MaxPoolCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.convs(x).amax(dim=(2, 3)))


class FlattenCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(self.convs(x).flatten(1))


def test_a_model_that_does_not_average_pool_is_an_error_naming_features():
    torch.manual_seed(0)
    x = _images()
    for cls in (MaxPoolCNN, FlattenCNN):
        model = cls().eval()
        with pytest.raises(ValueError, match=r"^head: .*pass features="):
            FeatureSpaceDetector(Backbone(model, feature_map=model.convs, head=model.fc), MSP(), which="logits").fit(x)
    model = MaxPoolCNN().eval()
    right = Backbone(model, features=lambda a: model.convs(a).amax(dim=(2, 3)), head=model.fc)
    np.testing.assert_allclose(FeatureSpaceDetector(right, MSP(), which="logits").fit(x).score(x), _msp_of(model, x),
                               rtol=1e-5, atol=1e-6)
    model = _model()                                  # averaging: accepted, equal to the model's own softmax
    avg = Backbone(model, feature_map=model.fmap, head=model.fc)
    np.testing.assert_allclose(FeatureSpaceDetector(avg, MSP(), which="logits").fit(x).score(x), _msp_of(model, x),
                               rtol=1e-5, atol=1e-6)


def test_a_models_own_features_method_of_the_wrong_shape_is_an_error():
    class OwnFeatures(CNN):
        def features(self, x):                           # a feature map, named as if it were (N, D) features
            return self.fmap(x)

        @property
        def head(self):
            return self.fc

    model, x = OwnFeatures().eval(), _images()
    with pytest.raises(ValueError, match=r"^net\.features: expected \(N, D\) features .*pass feature_map="):
        FeatureSpaceDetector(Backbone(model), MSP(), which="logits").fit(x)


# ----------------------------------------------------------------------------- 5. misaligned labels
class Reversed(Sampler):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(range(self.n - 1, -1, -1))

    def __len__(self):
        return self.n


class Stream(IterableDataset):
    def __iter__(self):
        return iter(torch.zeros(10, 4))


def _reordering_loaders(data):
    n = len(data)
    return {
        "shuffle=True": DataLoader(data, batch_size=7, shuffle=True),
        "SubsetRandomSampler": DataLoader(data, batch_size=7, sampler=SubsetRandomSampler(range(n))),
        "WeightedRandomSampler": DataLoader(data, batch_size=7, sampler=WeightedRandomSampler([1.0] * n, n)),
        "RandomSampler with replacement": DataLoader(data, batch_size=7, sampler=RandomSampler(data, replacement=True)),
        "a custom Sampler": DataLoader(data, batch_size=7, sampler=Reversed(n)),
        "a shuffling batch_sampler": DataLoader(data, batch_sampler=BatchSampler(RandomSampler(data), 7, False)),
        "drop_last with a remainder": DataLoader(data, batch_size=7, drop_last=True),
        "an IterableDataset read by 2 workers": DataLoader(Stream(), batch_size=5, num_workers=2),
        "workers with in_order=False": DataLoader(data, batch_size=7, num_workers=2, in_order=False),
    }


@pytest.mark.parametrize("kind", list(_reordering_loaders([0])))
def test_separate_labels_beside_a_reordering_dataloader_are_refused(kind):
    z = RNG.normal(size=(30, 4)).astype(np.float32)
    loader = _reordering_loaders(TensorDataset(torch.as_tensor(z)))[kind]
    with pytest.raises(ValueError, match=r"^y: x is a DataLoader .*let its batches carry them as \(x, y\)"):
        Mahalanobis().fit(loader, np.arange(30) % 3)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU())
    with pytest.raises(ValueError, match=r"^y: x is a DataLoader"):
        FeatureSpaceDetector(Backbone(features=model), Mahalanobis()).fit(loader, np.arange(30) % 3)
    with pytest.raises(ValueError, match=r"^validation y: validation x is a DataLoader"):
        Mahalanobis().fit(z, np.arange(30) % 3, validation=(loader, np.arange(30) % 3))


def test_separate_labels_beside_an_in_order_dataloader_are_accepted():
    z, y = RNG.normal(size=(28, 4)).astype(np.float32), np.arange(28) % 3
    want = Mahalanobis().fit(z, y).score(z)
    data = TensorDataset(torch.as_tensor(z))
    for loader in (DataLoader(data, batch_size=7), DataLoader(data, batch_size=7, drop_last=True),
                   DataLoader(data, batch_sampler=BatchSampler(SequentialSampler(data), 5, False)),
                   iter([torch.as_tensor(z[:10]), torch.as_tensor(z[10:])])):
        np.testing.assert_allclose(Mahalanobis().fit(loader, y).score(z), want, rtol=1e-9)


# ----------------------------------------------------------------------------- 6. stale threshold
def test_a_refit_drops_the_threshold_of_the_old_fit():
    z = RNG.normal(size=(200, 4)).astype(np.float32)
    det = KNN(k=5).fit(z).set_threshold(z[:100])
    assert det.predict(z).mean() > 0
    det.fit(z * 10)
    assert not hasattr(det, "threshold_") and not hasattr(det, "threshold_tpr_")
    with pytest.raises(NotFittedError, match="set_threshold"):
        det.predict(z)
    model, x = _model(), _images()
    fsd = FeatureSpaceDetector(Backbone(model, feature_map=model.fmap, head=model.fc), KNN(k=3))
    fsd.fit(x).set_threshold(x)
    fsd.fit(DataLoader(TensorDataset(torch.as_tensor(x)), batch_size=5))
    with pytest.raises(NotFittedError, match="set_threshold"):
        fsd.predict(x)
    with pytest.raises(ValueError, match="at least 2 classes"):               # a refit refused: nothing lost
        Mahalanobis().fit(z, np.arange(200) % 2).set_threshold(z).fit(z, np.zeros(200, dtype=int))
    kept = Mahalanobis().fit(z, np.arange(200) % 2).set_threshold(z)
    with pytest.raises(ValueError):
        kept.fit(z, np.zeros(200, dtype=int))
    assert kept.predict(z).shape == (200,)


# ----------------------------------------------------------------------------- 7. streamed scoring
def test_score_and_evaluate_stream_a_dataloader_without_gathering_it(forbid_gathering, monkeypatch):
    import ebm_ood.detector as detector_module
    import ebm_ood.plumbing.inputs as inputs_module

    model, x, ood = _model(), _images(40), _images(20, seed=9) * 3
    bb = Backbone(model, feature_map=model.fmap, head=model.fc)
    dets = {"MSP": FeatureSpaceDetector(bb, MSP(), which="logits").fit(x),
            "KNN": FeatureSpaceDetector(bb, KNN(k=3)).fit(x), "raw KNN": KNN(k=3).fit(x.reshape(40, -1))}
    want = {k: d.score(x if k != "raw KNN" else x.reshape(40, -1)) for k, d in dets.items()}
    want_ood = ebm_ood.evaluate({k: v for k, v in dets.items() if k != "raw KNN"}, x, {"ood": ood})
    forbid_gathering(detector_module, inputs_module)
    loader = DataLoader(TensorDataset(torch.as_tensor(x)), batch_size=9)
    for k in ("MSP", "KNN"):
        np.testing.assert_allclose(dets[k].score(loader), want[k], rtol=1e-5, atol=1e-6)
    flat = DataLoader(TensorDataset(torch.as_tensor(x.reshape(40, -1))), batch_size=9)
    np.testing.assert_allclose(dets["raw KNN"].score(flat), want["raw KNN"], rtol=1e-9)
    calls, conv2d = [], torch.nn.functional.conv2d           # counted outside the model, which stays as it is

    def counting(a, *args, **kwargs):
        if a.shape[1] == 1:
            calls.append(len(a))
        return conv2d(a, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", counting)
    two = {k: v for k, v in dets.items() if k != "raw KNN"}
    ev = ebm_ood.evaluate(two, loader, {"ood": (torch.as_tensor(ood[i:i + 8]) for i in range(0, 20, 8))})
    assert calls == [9, 9, 9, 9, 4, 8, 8, 4]            # each batch once through the network, for both detectors
    for k in two:
        assert ev.metrics[k]["ood"]["auroc"] == pytest.approx(want_ood.metrics[k]["ood"]["auroc"], abs=1e-9)


# ----------------------------------------------------------------------------- 10. Energy
def test_energy_is_minus_t_logsumexp_of_the_logits():
    logits = RNG.normal(scale=3.0, size=(50, 7))
    np.testing.assert_allclose(Energy().fit(logits).score(logits), -logsumexp(logits, axis=1), rtol=1e-12)
    np.testing.assert_allclose(Energy(temperature=2.5).fit(logits).score(logits),
                               -2.5 * logsumexp(logits / 2.5, axis=1), rtol=1e-12)
    huge = logits * 1e4                                     # no overflow: logsumexp, not log(sum(exp))
    np.testing.assert_allclose(Energy().fit(huge).score(huge), -logsumexp(huge, axis=1), rtol=1e-12)
    for bad in (0, -1.0, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="temperature"):
            Energy(temperature=bad)
    with pytest.raises(ValueError, match=r"FeatureSpaceDetector\(backbone, Energy\(\.\.\.\), which=\"logits\"\)"):
        Energy().fit(_images())


def test_energy_on_your_model_saves_loads_and_clones(tmp_path):
    from sklearn.base import clone

    model, x = _model(), _images()
    det = FeatureSpaceDetector(Backbone(model, feature_map=model.fmap, head=model.fc), Energy(temperature=2.0),
                               which="logits").fit(x)
    with torch.no_grad():
        logits = model(torch.as_tensor(x)).double().numpy()
    np.testing.assert_allclose(det.score(x), -2.0 * logsumexp(logits / 2.0, axis=1), rtol=1e-5)
    ebm_ood.save(det.inner, tmp_path / "energy.pt")
    back = ebm_ood.load(tmp_path / "energy.pt")
    assert isinstance(back, Energy) and back.temperature == 2.0
    np.testing.assert_array_equal(back.score(logits), det.inner.score(logits))
    assert clone(Energy(temperature=3.0)).get_params()["temperature"] == 3.0
    assert ebm_ood.Energy is Energy and "Energy" in ebm_ood.__all__


# ----------------------------------------------------------------------------- 11. dtype and device
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.bfloat16, 5e-2)])
def test_a_model_in_another_dtype_runs_in_that_dtype(dtype, tol):
    model, x = _model().to(dtype), _images()
    det = FeatureSpaceDetector(Backbone(model, feature_map=model.fmap, head=model.fc), MSP(), which="logits").fit(x)
    with torch.no_grad():
        want = -torch.softmax(model(torch.as_tensor(x).to(dtype)).double(), dim=1).amax(dim=1).numpy()
    np.testing.assert_allclose(det.score(x), want, rtol=0, atol=tol)
    assert det.backbone.dtype == dtype


def test_a_function_over_a_model_runs_it_in_eval_mode_and_in_its_dtype():
    model, x = _model().double(), _images()
    with torch.no_grad():                                       # eval mode, float64
        want = torch.softmax(model.eval()(torch.as_tensor(x).double()), dim=1).amax(dim=1).numpy()
    model.train()
    bb = Backbone(features=lambda a: model.embed(a), head=model.fc)
    assert bb.dtype == torch.float64
    np.testing.assert_allclose(softmax(bb.extract(x).logits, axis=1).max(axis=1), want, rtol=1e-12)
    assert model.training


def test_an_encoder_with_a_separate_probe_head_is_not_compared_with_its_output():
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(36, 5)

        def features(self, x):
            return self.body(x.flatten(1))

        def forward(self, x):                 # embeddings (N, 5), not logits
            return self.features(x)

    torch.manual_seed(0)
    enc, probe, x = Encoder(), nn.Linear(5, 3), _images()
    logits = Backbone(enc, head=probe).extract(x).logits
    with torch.no_grad():
        np.testing.assert_allclose(logits, probe(enc(torch.as_tensor(x))).numpy(), rtol=1e-5, atol=1e-6)


def test_devices_follow_the_model_and_must_exist():
    model = _model()
    assert Backbone(model).device == torch.device("cpu")
    elsewhere = _model().to("meta")                              # a model on another device: the Backbone follows
    assert Backbone(elsewhere, feature_map=elsewhere.fmap).device == torch.device("meta")
    assert FeatureSpaceDetector(Backbone(elsewhere, feature_map=elsewhere.fmap), KNN()).device == torch.device("meta")
    for bad in ("mps", "xpu", "cuda:97"):
        with pytest.raises(ValueError, match=rf"^device: asked for '{bad}'"):
            KNN(device=bad)
        with pytest.raises(ValueError, match=r"^device: "):
            Backbone(model, device=bad)
    wrong = Backbone(model, feature_map=model.fmap, device="meta")
    with pytest.raises(ValueError, match=r"^device: the model's weights are on cpu, not on meta"):
        wrong.extract(_images())
