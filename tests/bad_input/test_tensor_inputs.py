"""Tensors numpy cannot hold (meta tensors, bfloat16 and other dtypes numpy lacks) are a TypeError naming the
argument, wherever the public API reads them: detectors' fit and score, features, labels, metrics."""
import numpy as np
import pytest
import torch

from ebm_ood.class_gaussian import fit_class_gaussian
from ebm_ood.posthoc.knn import KNN
from ebm_ood.metrics import auroc
from ebm_ood.plumbing.checks import check_array, check_labels

UNREADABLE = {
    "meta": (lambda t: t.to("meta"), "meta tensor"),
    "bfloat16": (lambda t: t.to(torch.bfloat16), "bfloat16 has no numpy equivalent"),
    "float8": (lambda t: t.to(torch.float8_e4m3fn), "float8_e4m3fn has no numpy equivalent"),
    "meta bfloat16": (lambda t: t.to(torch.bfloat16).to("meta"), "meta tensor"),
    "bfloat16 requiring grad": (lambda t: t.to(torch.bfloat16).requires_grad_(), "bfloat16"),
}


@pytest.fixture(params=sorted(UNREADABLE))
def unreadable(request):
    return UNREADABLE[request.param]


def test_check_array_and_labels_name_the_argument(unreadable):
    make, match = unreadable
    with pytest.raises(TypeError, match=f"validation x: .*{match}"):
        check_array(make(torch.zeros(4, 3)), "validation x")
    with pytest.raises(TypeError, match=f"y: .*{match}"):
        check_labels(make(torch.zeros(4)), "y", 4)


def test_detector_fit_and_score(unreadable):
    make, match = unreadable
    z = torch.randn(30, 5, generator=torch.Generator().manual_seed(0))
    with pytest.raises(TypeError, match=f"x: .*{match}"):
        KNN(k=3).fit(make(z))
    det = KNN(k=3).fit(z)
    with pytest.raises(TypeError, match=f"x: .*{match}"):
        det.score(make(z[:4]))
    assert np.isfinite(det.score(z[:4])).all()


def test_features_and_metrics(unreadable):
    make, match = unreadable
    z, y = torch.randn(20, 3, generator=torch.Generator().manual_seed(1)), torch.arange(20) % 2
    with pytest.raises(TypeError, match=f"z: .*{match}"):
        fit_class_gaussian(make(z), y)
    with pytest.raises(TypeError, match=f"score_ood: .*{match}"):
        auroc(torch.rand(8), make(torch.rand(8)))


def test_dataloader_batches_name_the_batch(unreadable):
    make, match = unreadable
    z = torch.randn(12, 3, generator=torch.Generator().manual_seed(2))
    batches = [z[:6], make(z[6:])]
    with pytest.raises(TypeError, match=f"batch 1 of x: .*{match}"):
        KNN(k=3).fit(iter(batches))
