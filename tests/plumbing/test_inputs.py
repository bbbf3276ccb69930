"""Data as arrays, tensors or iterables of batches (a DataLoader): the same results as one array, the labels
read from (x, y) batches, images handed to vector detectors pointed to FeatureSpaceDetector
(ebm_ood/plumbing/inputs.py; the errors for other inputs: tests/bad_input/)."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ebm_ood.backbone import Backbone, FeatureSpaceDetector
from ebm_ood.plumbing.inputs import collect, is_batch_iterable
from ebm_ood.nn import build_network
from ebm_ood.posthoc import KNN, MSP, Mahalanobis, ViM

RNG = np.random.default_rng(0)
Z = RNG.normal(size=(50, 4)).astype(np.float32)
Y = np.arange(50) % 3


def _loader(*arrays, batch_size=7):
    return DataLoader(TensorDataset(*map(torch.as_tensor, arrays)), batch_size=batch_size, shuffle=False)


def test_collect_concatenates_batches_and_their_labels():
    x, y = collect(_loader(Z, Y), "x")
    np.testing.assert_array_equal(x, Z)
    np.testing.assert_array_equal(y, Y)
    x, y = collect(_loader(Z), "x")                                  # TensorDataset of x alone: [x] batches
    np.testing.assert_array_equal(x, Z)
    assert y is None
    x, y = collect(TensorDataset(torch.as_tensor(Z), torch.as_tensor(Y)), "x")   # a Dataset of samples
    np.testing.assert_array_equal(x, Z)
    np.testing.assert_array_equal(y, Y)
    x, y = collect((torch.as_tensor(Z[i:i + 10]) for i in range(0, 50, 10)), "x")   # a generator of tensors
    np.testing.assert_array_equal(x, Z)
    assert y is None
    nested = [[0.5, 1.5], [2.5, 3.5]]                                # lists stay array-likes, as in numpy
    assert not is_batch_iterable(nested) and collect(nested, "x")[0] is nested


def test_detectors_fit_and_score_a_dataloader_like_an_array():
    by_array = Mahalanobis().fit(Z, Y)
    by_loader = Mahalanobis().fit(_loader(Z, Y))                     # labels read from the (x, y) batches
    # score(loader) scores batch by batch: the same values up to rounding (matrix kernels vary with the batch)
    np.testing.assert_allclose(by_loader.score(_loader(Z)), by_array.score(Z), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(by_loader.gaussian_.means.numpy(), by_array.gaussian_.means.numpy())
    knn = KNN(k=3).fit(_loader(Z))
    np.testing.assert_allclose(knn.score(iter([torch.as_tensor(Z[:20]), torch.as_tensor(Z[20:])])),
                               KNN(k=3).fit(Z).score(Z), rtol=1e-12, atol=1e-12)
    val = KNN(k=3).fit(Z, validation=_loader(Z[:10])).validation_[0]
    np.testing.assert_array_equal(val, Z[:10])
    x_val, y_val = Mahalanobis().fit(Z, Y, validation=_loader(Z[:9], Y[:9])).validation_   # labelled batches
    np.testing.assert_array_equal(x_val, Z[:9])
    np.testing.assert_array_equal(y_val, Y[:9])
    same = Mahalanobis().fit(_loader(Z), Y)                        # unshuffled x batches + separate labels
    np.testing.assert_array_equal(same.score(Z), by_array.score(Z))


def test_backbone_streams_a_dataloader_with_its_labels():
    torch.manual_seed(0)
    x = RNG.uniform(-1, 1, size=(30, 1, 8, 8)).astype(np.float32)
    bb = Backbone(build_network((1, 8, 8), 3, widen=1))
    whole, streamed = bb.extract(x), bb.extract(_loader(x, Y[:30], batch_size=8))
    for a, b in ((whole.z, streamed.z), (whole.z_std, streamed.z_std), (whole.logits, streamed.logits)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(streamed.y, Y[:30])
    assert whole.y is None


def test_vector_detectors_handed_images_point_to_feature_space_detector():
    images = np.zeros((5, 1, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"x: KNN works on features of shape \(N, D\), got raw inputs of shape "
                                         r"\(5, 1, 8, 8\); wrap it as ebm_ood\.backbone\.FeatureSpaceDetector\("
                                         r"backbone, KNN\(\.\.\.\)\)"):
        KNN().fit(images)
    with pytest.raises(ValueError, match=r"FeatureSpaceDetector\(backbone, MSP\(\.\.\.\), which=\"logits\"\)"):
        MSP().fit(_loader(images))
    fitted = ViM(np.eye(3, 4), np.zeros(3), dim=2).fit(Z)
    with pytest.raises(ValueError, match=r"wrap it as ebm_ood\.backbone\.FeatureSpaceDetector\(backbone, ViM"):
        fitted.score(torch.zeros(2, 3, 4, 4))
    torch.manual_seed(0)
    bb = Backbone(build_network((1, 8, 8), 3, widen=1))
    x = RNG.uniform(-1, 1, size=(20, 1, 8, 8)).astype(np.float32)
    wrapped = FeatureSpaceDetector(bb, KNN(k=3)).fit(_loader(x))      # the fix the message names works
    np.testing.assert_allclose(wrapped.score(x), KNN(k=3).fit(bb.extract(x).z).score(bb.extract(x).z),
                               rtol=1e-5, atol=1e-6, err_msg="features of batches of 7 vs one batch of 20: "
                               "float32 rounding may differ with the batch shape")


def test_a_feature_space_detector_streams_a_dataloader_and_equals_the_array_fit(forbid_gathering):
    """fit(DataLoader) runs each batch through the backbone and keeps only features: the raw inputs are never
    gathered (``collect`` is not called), and the scores equal those of fit(array)."""
    import ebm_ood.detector as detector_module

    torch.manual_seed(0)
    net = build_network((6,), 3, mlp_width=8, depth=3)
    x = RNG.normal(size=(60, 6)).astype(np.float32)
    y = np.arange(60) % 3
    x_val, y_val = x[:9], y[:9]
    same_batches = Backbone(net, batch_size=7)           # the array path run in the loader's batches
    want = FeatureSpaceDetector(same_batches, Mahalanobis()).fit(x, y, validation=(x_val, y_val)).score(x[:20])
    forbid_gathering(detector_module)
    det = FeatureSpaceDetector(Backbone(net), Mahalanobis()).fit(_loader(x, y), validation=(x_val, y_val))
    np.testing.assert_array_equal(det.inner.score(same_batches.extract(x[:20]).z), want)
    assert det.input_shape_ == (6,) and det.num_classes_ == 3 and det.input_range_ == float(np.abs(x).max())
    bad = x.copy()
    bad[30, 2] = np.nan                                  # batch 4 of 7-sample batches
    with pytest.raises(ValueError, match=r"x batch 4: expected finite values"):
        FeatureSpaceDetector(Backbone(net), Mahalanobis()).fit(_loader(bad, y))
    with pytest.raises(ValueError, match="y: given twice"):
        FeatureSpaceDetector(Backbone(net), Mahalanobis()).fit(_loader(x, y), y)
    with pytest.raises(ValueError, match="needs class labels"):
        FeatureSpaceDetector(Backbone(net), Mahalanobis()).fit(_loader(x))
