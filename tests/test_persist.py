"""ebm_ood.save / ebm_ood.load: a fitted detector comes back with bit-identical scores, from a file read with
``torch.load(weights_only=True)``; user networks need a factory; broken files are clear errors."""
import json
import os
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from ebm_ood.backbone import Backbone, FeatureSpaceDetector
from ebm_ood.plumbing.checkpoint import decode_checkpoint, save_checkpoint
from ebm_ood.plumbing.errors import CheckpointError
from ebm_ood.heat.build import make_heat_detector
from ebm_ood.heat.hybrid import heat_config
from ebm_ood.methods.ce import CEClassifier, ce_config
from ebm_ood.methods.contrastive_divergence import CDDetector, cd_config
from ebm_ood.methods.flows.detector import NormalizingFlowDetector, flow_config
from ebm_ood.methods.score_matching import SSMDetector, ssm_config
from ebm_ood.methods.vera import VERADetector, vera_config
from ebm_ood.nn import build_network
from ebm_ood.persist import FORMAT, load, save
from ebm_ood.posthoc import DICE, KNN, MSP, ODIN, MaxLogit, Mahalanobis, ReAct, SSDPlus, ViM

RNG = np.random.default_rng(0)
Z = RNG.normal(size=(80, 6)).astype(np.float32)
Y = np.arange(80) % 3
W, B = RNG.normal(size=(3, 6)), RNG.normal(size=3)

POSTHOC = {
    "KNN": lambda: KNN(k=5), "Mahalanobis": Mahalanobis, "SSD+": SSDPlus, "MSP": MSP, "MaxLogit": MaxLogit,
    "ViM": lambda: ViM(W, B, dim=3), "DICE": lambda: DICE(W, B), "ReAct": lambda: ReAct(W, B),
    "ODIN": lambda: ODIN(nn.Linear(6, 3), device="cpu"),
}


def _roundtrip(det, tmp_path, **kw):
    path = tmp_path / "det.pt"
    save(det, path)
    return load(path, **kw)


@pytest.mark.parametrize("name", sorted(POSTHOC))
def test_posthoc_detectors_come_back_bit_identical(name, tmp_path):
    torch.manual_seed(0)
    det = POSTHOC[name]()
    x = Z[:, :3] if det.input_kind == "logits" else Z
    det.fit(x, Y if det.needs_labels else None).set_threshold(x[:40])
    back = _roundtrip(det, tmp_path)
    assert type(back) is type(det) and repr(back) == repr(det)
    np.testing.assert_array_equal(back.score(x), det.score(x))
    np.testing.assert_array_equal(back.predict(x), det.predict(x))
    assert back.threshold_ == det.threshold_


def _digits_like(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, size=(n, 1, 8, 8)).astype(np.float32), np.arange(n) % 3


def test_heat_hybrid_on_a_package_backbone_comes_back_bit_identical(tmp_path):
    torch.manual_seed(0)
    x, y = _digits_like()
    bb = Backbone(build_network((1, 8, 8), 3, widen=1))
    det = make_heat_detector(bb, "GMM", residual=True, preset="quick",
                             train=replace(heat_config("quick").train, steps=3))
    det.fit(x, y)
    back = _roundtrip(det, tmp_path)
    np.testing.assert_array_equal(back.score(x), det.score(x))
    assert back.inner.hybrid_ is not None and back.backbone.hash == bb.hash


def test_cd_detector_comes_back_bit_identical(tmp_path):
    c = cd_config("quick", kind="tabular")
    det = CDDetector(c, device="cpu", seed=0, train=replace(c.train, steps=3))
    det.fit(Z)
    back = _roundtrip(det, tmp_path)
    np.testing.assert_array_equal(back.score(Z), det.score(Z))
    assert back.model_.net is back.net_                       # shared objects stay shared


ELFLEIN = {
    "SSM": lambda: SSMDetector(_short(ssm_config("quick", "tabular")), device="cpu"),
    "VERA": lambda: VERADetector(_short(vera_config("quick", "tabular")), device="cpu"),
    "flow": lambda: NormalizingFlowDetector(_short(flow_config("quick", "tabular")), device="cpu"),
    "CE": lambda: CEClassifier(_short(ce_config("quick", "tabular")), device="cpu"),
}


def _short(config):
    return replace(config, train=replace(config.train, steps=3))


@pytest.mark.parametrize("name", sorted(ELFLEIN))
def test_the_other_elflein_detectors_come_back_bit_identical(name, tmp_path):
    det = ELFLEIN[name]()
    det.fit(Z, Y if det.needs_labels else None)
    np.testing.assert_array_equal(_roundtrip(det, tmp_path).score(Z), det.score(Z))


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def embed(self, x):
        return self.conv(x).relu().mean(dim=(2, 3))

    def forward(self, x):
        return self.fc(self.embed(x))


def test_a_users_network_needs_a_factory_on_load(tmp_path):
    torch.manual_seed(0)
    x, y = _digits_like()
    model = SmallCNN()
    bb = Backbone(model, features=model.embed, head=model.fc)
    det = FeatureSpaceDetector(bb, ViM.from_backbone(bb, dim=2)).fit(x, y)
    save(det, tmp_path / "vim.pt")
    with pytest.raises(CheckpointError, match=r"class .*SmallCNN.*modules=\{'SmallCNN'"):
        load(tmp_path / "vim.pt")
    back = load(tmp_path / "vim.pt", modules={"SmallCNN": SmallCNN})
    np.testing.assert_array_equal(back.score(x), det.score(x))
    with pytest.raises(TypeError, match=r"features.*plain function"):
        save(FeatureSpaceDetector(Backbone(features=lambda a: a.flatten(1)), KNN(k=3)), tmp_path / "f.pt")


def test_the_file_is_weights_only_and_holds_json(tmp_path):
    det = KNN(k=4).fit(Z)
    save(det, tmp_path / "knn.pt")
    payload = decode_checkpoint((tmp_path / "knn.pt").read_bytes(), "knn.pt", "")
    doc = json.loads(payload["json"])
    assert payload["format"] == FORMAT and doc["__object__"] == "ebm_ood.posthoc.knn:KNN"
    assert doc["attrs"]["k"] == 4 and all(isinstance(t, torch.Tensor) for t in payload["tensors"].values())
    assert [p.name for p in tmp_path.iterdir()] == ["knn.pt"]        # no temporary file left behind


def test_missing_corrupt_and_foreign_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="path: no saved detector"):
        load(tmp_path / "nothing.pt")
    save(KNN(k=4).fit(Z), tmp_path / "knn.pt")
    data = (tmp_path / "knn.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt: its SHA-256 digest does not match"):
        load(tmp_path / "cut.pt")
    torch.save({"format": FORMAT, "json": "{}", "tensors": {}}, tmp_path / "unsigned.pt")
    with pytest.raises(CheckpointError, match="no 'ebm_ood-checkpoint-v2' header"):
        load(tmp_path / "unsigned.pt")
    save_checkpoint({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="expected format"):
        load(tmp_path / "other.pt")
    doc = {"__object__": "os:system", "id": 0, "attrs": {}, "reset": []}
    save_checkpoint({"format": FORMAT, "json": json.dumps(doc), "tensors": {}}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="os:system, which is not part of ebm_ood"):
        load(tmp_path / "evil.pt")
    for reached in ("ebm_ood.persist:os.system", "ebm_ood.persist:importlib.import_module", "ebm_ood.plumbing.atomic:os.PathLike"):
        doc = {"__object__": reached, "id": 0, "attrs": {}, "reset": []}       # names an ebm_ood module imported, not defined
        save_checkpoint({"format": FORMAT, "json": json.dumps(doc), "tensors": {}}, tmp_path / "evil.pt")
        with pytest.raises(CheckpointError, match="not a class defined in ebm_ood or torch.nn|does not have"):
            load(tmp_path / "evil.pt")
    with pytest.raises(TypeError, match="detector: expected an ebm_ood detector"):
        save(nn.Linear(2, 2), tmp_path / "x.pt")
    assert not os.path.exists(tmp_path / "x.pt")
