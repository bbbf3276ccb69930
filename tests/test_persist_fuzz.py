"""Mutated detector files: ``ebm_ood.load`` returns a detector whose scores equal the original's, or raises
CheckpointError — never another exception, never a function the file names, never an allocation the file
does not hold. Unsigned mutations (bit flips, truncations, insertions) must all fail the digest; crafted
files re-signed with a valid digest reach the decoder and must fail its allow-lists."""
import builtins
import io
import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from ebm_ood.backbone import Backbone, FeatureSpaceDetector
from ebm_ood.plumbing.checkpoint import decode_checkpoint, encode_checkpoint
from ebm_ood.detector import Detector
from ebm_ood.plumbing.errors import CheckpointError
from ebm_ood.methods.contrastive_divergence import CDDetector, cd_config
from ebm_ood.nn import build_network
from ebm_ood.persist import load, save
from ebm_ood.posthoc import KNN, ViM

RNG = np.random.default_rng(0)
Z = RNG.normal(size=(40, 6)).astype(np.float32)
X = RNG.uniform(-1, 1, size=(30, 1, 8, 8)).astype(np.float32)
Y = np.arange(30) % 3


class Called(BaseException):
    """Raised by the sentinels below; a BaseException so no ``except Exception`` in load can swallow it."""


@pytest.fixture
def sentinels(monkeypatch):
    """Functions a crafted file might name: calling any of them fails the test."""
    calls = []

    def trap(name):
        def f(*a, **k):
            calls.append(name)
            raise Called(name)
        return f
    for mod, names in ((os, ("abort", "_exit", "system", "remove", "unlink", "rmdir", "kill")),
                       (sys, ("exit",)), (shutil, ("rmtree",)), (subprocess, ("run", "Popen", "call")),
                       (builtins, ("exit", "quit"))):
        for n in names:
            if hasattr(mod, n):
                monkeypatch.setattr(mod, n, trap(f"{mod.__name__}.{n}"))
    return calls


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return _files(tmp_path_factory.mktemp("saved"))


def _files(tmp_path):
    """(name, bytes, x, scores) of three fitted detectors covering arrays, tensors, parameters, networks,
    bound methods, generators, shared objects and dataclasses."""
    torch.manual_seed(0)
    out = []
    knn = KNN(k=3).fit(Z)
    bb = Backbone(build_network((1, 8, 8), 3, widen=1))
    vim = FeatureSpaceDetector(bb, ViM.from_backbone(bb, dim=2)).fit(X, Y)
    c = cd_config("quick", kind="tabular")
    cd = CDDetector(c, device="cpu", seed=0, train=replace(c.train, steps=2)).fit(Z)
    for name, det, x in (("knn", knn, Z), ("vim", vim, X), ("cd", cd, Z)):
        save(det, tmp_path / f"{name}.pt")
        out.append((name, (tmp_path / f"{name}.pt").read_bytes(), x, det.score(x)))
    return out


def _check(path, x, scores, sentinel_calls, same=True):
    """Load ``path``: a CheckpointError, or a detector (whose scores equal ``scores`` when ``same``)."""
    try:
        det = load(path)
    except CheckpointError:
        return "error"
    assert not sentinel_calls
    assert isinstance(det, Detector)
    if same:
        np.testing.assert_array_equal(det.score(x), scores)
    return "loaded"


def test_unsigned_mutations_all_fail_the_digest(files, tmp_path, sentinels):
    rng = random.Random(0)
    for name, data, x, scores in files:
        path = tmp_path / f"mut-{name}.pt"
        outcomes = []
        for i in range(120):
            b = bytearray(data)
            kind = i % 4
            if kind == 0:                                            # one flipped bit
                pos = rng.randrange(len(b))
                b[pos] ^= 1 << rng.randrange(8)
            elif kind == 1:                                          # a flip in the payload's last tenth (tensors)
                pos = rng.randrange(len(b) - len(b) // 10, len(b))
                b[pos] ^= 1 << rng.randrange(8)
            elif kind == 2:                                          # truncated
                b = b[: rng.randrange(len(b))]
            else:                                                    # inserted bytes
                pos = rng.randrange(len(b) + 1)
                b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
            path.write_bytes(bytes(b))
            outcomes.append(_check(path, x, scores, sentinels))
        assert outcomes == ["error"] * len(outcomes), name


def _payload(data):
    return decode_checkpoint(data, "test file", "")


def _write_signed(path, payload, json_text=None):
    if json_text is not None:
        payload = {**payload, "json": json_text}
    path.write_bytes(encode_checkpoint(payload))


def _nodes(doc, where=()):
    """Every (path, value) of the JSON tree."""
    yield where, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _nodes(v, where + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _nodes(v, where + (i,))


def _set(doc, where, value):
    if not where:
        return value
    node = doc
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = value
    return doc


HOSTILE = [
    {"__dtype__": "V100000000"}, {"__dtype__": "abort"}, {"__dtype__": "load"}, {"__dtype__": 3},
    {"__array__": "t0", "dtype": "V100000000", "shape": [100000000]},
    {"__array__": "t0", "dtype": "<f8", "shape": [10 ** 12]}, {"__array__": "t0", "dtype": "|O", "shape": [1]},
    {"__object__": "os:abort", "id": 9999, "attrs": {}, "reset": []},
    {"__object__": "sys:exit", "id": 9999, "attrs": {}, "reset": []},
    {"__object__": "ebm_ood.persist:os.abort", "id": 9999, "attrs": {}, "reset": []},
    {"__object__": "ebm_ood.plumbing.atomic:write_atomic", "id": 9999, "attrs": {}, "reset": []},
    {"__object__": "ebm_ood.plumbing.build_lock:BuildLock", "id": 9999, "attrs": {}, "reset": []},
    {"__object__": "ebm_ood.posthoc.knn:Nope", "id": 9999, "attrs": {}, "reset": []},
    {"__object__": "ebm_ood.__main__:main", "id": 9999, "attrs": {}, "reset": []},
    {"__object__": "ebm_ood.commands.experiments.samples:x", "id": 9999, "attrs": {}, "reset": []},
    {"__object__": "ebm_ood.posthoc.knn:KNN.__init__.__globals__", "id": 9999, "attrs": {}, "reset": []},
    {"__object__": "ebm_ood.posthoc.knn:KNN.__class__", "id": 9999, "attrs": {}, "reset": []},
    {"__user_module__": "nocolon", "id": 9999, "state": {}},
    {"__object__": "ebm_ood.posthoc.knn:KNN", "id": 9999, "attrs": {"_score": {"__ref__": 0}}, "reset": []},
    {"__object__": "ebm_ood.posthoc.knn:KNN", "id": 9999, "attrs": {"__class__": 1}, "reset": []},
    {"__object__": "ebm_ood.posthoc.knn:KNN", "id": 0, "attrs": {}, "reset": []},
    {"__object__": "ebm_ood.posthoc.knn:KNN", "id": 9999, "attrs": {}, "reset": ["fitted_"]},
    {"__object__": "torch.nn.modules.linear:Linear", "id": 9999,
     "attrs": {"_forward_hooks": {"__dict__": {"0": {"__method__": "forward", "of": {"__ref__": 0}}}}}, "reset": []},
    {"__object__": "torch.nn.modules.linear:Linear", "id": 9999,
     "attrs": {"_parameters": {"__dict__": {"weight": 3}}}, "reset": []},
    {"__method__": "abort", "of": {"__ref__": 0}}, {"__method__": "__class__", "of": {"__ref__": 0}},
    {"__method__": "__reduce_ex__", "of": {"__ref__": 0}}, {"__method__": "apply", "of": {"__ref__": 0}},
    {"__method__": "fit", "of": {"__ref__": 0}}, {"__ref__": 10 ** 6}, {"__ref__": "0"}, {"__ref__": True},
    {"__user_module__": "os:abort", "id": 9999, "state": {}},
    {"__tensor__": "t999999", "device": "cpu"}, {"__tensor__": "t0", "device": "nonsense:7"},
    {"__param__": "t0", "grad": "yes", "device": "cpu", "dtype": "float32", "shape": [1]},
    {"__tensor__": "t0", "device": "cpu", "dtype": "float32", "shape": [10 ** 12]}, {"__generator__": "t0"},
    {"__float__": "1e999999"}, {"__float__": "__import__('os')"}, {"__set__": [[1], [2]]},
    {"__tuple__": 5}, {"__dict__": [1, 2]}, {"__tensor__": "t0"}, {"__unknown__": 1}, {}, 10 ** 30, -1, "x",
    None, [], 1.5,
]


def test_signed_crafted_files_fail_the_allow_lists(files, tmp_path, sentinels):
    """Valid digest, altered description: every hostile entry at every kind of place is refused or
    harmless; nothing but CheckpointError escapes and no named function runs."""
    rng = random.Random(1)
    path = tmp_path / "crafted.pt"
    counts = {"error": 0, "loaded": 0}
    for name, data, x, scores in files:
        payload = _payload(data)
        doc = json.loads(payload["json"])
        places = [w for w, _ in _nodes(doc)]
        _write_signed(path, payload)                                 # re-signed unchanged: loads the same
        assert _check(path, x, scores, sentinels) == "loaded"
        for hostile in HOSTILE:
            for where in rng.sample(places, min(6, len(places))):
                mutated = _set(json.loads(payload["json"]), where, json.loads(json.dumps(hostile)))
                _write_signed(path, payload, json.dumps(mutated))
                counts[_check(path, x, scores, sentinels, same=False)] += 1
        for text in ("[" * 100000 + "]" * 100000, '{"__tuple__":' * 5000 + "[]" + "}" * 5000,
                     "not json", "", '{"__object__": "ebm_ood.posthoc.knn:KNN"}'):
            _write_signed(path, payload, text)
            assert _check(path, x, scores, sentinels, same=False) == "error"
        for tensors in ({"t0": [1, 2]}, [], {"t0": torch.zeros(3)}, {1: torch.zeros(1)}):  # the tensor table
            _write_signed(path, {**payload, "tensors": tensors})
            assert _check(path, x, scores, sentinels, same=False) == "error"
        for key in list(payload["tensors"])[:5]:                     # a tensor of another shape or dtype
            for t in (torch.zeros(7, dtype=torch.float16), torch.zeros(2, 2, 2, dtype=torch.int8)):
                _write_signed(path, {**payload, "tensors": {**payload["tensors"], key: t}})
                assert _check(path, x, scores, sentinels, same=False) == "error"
    assert not sentinels
    assert counts["error"] > 0.9 * sum(counts.values()), counts


@pytest.mark.parametrize("hostile", [
    {"__dtype__": "V100000000"}, {"__dtype__": "abort"},
    {"__array__": "t0", "dtype": "V100000000", "shape": [100000000]},
    {"__method__": "abort", "of": {"__ref__": 0}}, {"__method__": "__class__", "of": {"__ref__": 0}},
    {"__ref__": 12345}, {"__set__": [[1]]},
    {"__object__": "ebm_ood.__main__:main", "id": 99, "attrs": {}, "reset": []},
])
def test_each_hostile_value_in_a_detector_attribute_is_a_checkpoint_error(hostile, tmp_path, sentinels):
    save(KNN(k=3).fit(Z), tmp_path / "knn.pt")
    payload = _payload((tmp_path / "knn.pt").read_bytes())
    doc = json.loads(payload["json"])
    doc["attrs"]["k"] = hostile
    _write_signed(tmp_path / "bad.pt", payload, json.dumps(doc))
    with pytest.raises(CheckpointError, match="bad.pt"):
        load(tmp_path / "bad.pt")
    assert not sentinels


def test_a_users_network_methods_and_weights_are_checked(tmp_path, sentinels):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 3)

        def embed(self, x):
            return x

        def forward(self, x):
            return self.fc(x)

    net = Net()
    det = FeatureSpaceDetector(Backbone(net, features=net.embed, head=net.fc), KNN(k=3)).fit(Z)
    save(det, tmp_path / "u.pt")
    np.testing.assert_array_equal(load(tmp_path / "u.pt", modules={"Net": Net}).score(Z), det.score(Z))
    with pytest.raises(CheckpointError, match=r"weights stored for .*Net do not fit"):
        load(tmp_path / "u.pt", modules={"Net": lambda: nn.Sequential(nn.Linear(2, 2))})
    payload = _payload((tmp_path / "u.pt").read_bytes())
    for method in ("train", "load_state_dict", "register_forward_hook", "_apply", "__init__"):
        text = payload["json"].replace('"__method__": "embed"', f'"__method__": "{method}"')
        assert text != payload["json"]
        _write_signed(tmp_path / "bad.pt", payload, text)
        with pytest.raises(CheckpointError, match=f"names the method '{method}'"):
            load(tmp_path / "bad.pt", modules={"Net": Net})
    with pytest.raises(TypeError, match="cannot save the method"):
        save(FeatureSpaceDetector(Backbone(features=net.train), KNN(k=3)), tmp_path / "m.pt")
    assert not sentinels


# ---------------------------------------------------------------------------------------- invalid values, re-signed
INVALID = [-1, 0, 500, 7, 10 ** 30, -0.5, 1e30, {"__float__": "nan"}, {"__float__": "-inf"}]
FREE = {"alpha_", "clip_", "input_range_", "threshold_", "batch_size"}  # any finite value is a valid setting / learned value


def _value_detectors():
    """(detector, scoring input) pairs covering integer, float and array settings and learned arrays."""
    w, b = RNG.normal(size=(3, 6)), RNG.normal(size=3)
    from ebm_ood.posthoc import DICE, MSP, Energy, Mahalanobis, ReAct
    return [(KNN(k=3).fit(Z), Z), (ViM(w, b, dim=2).fit(Z), Z), (ReAct(w, b, percentile=80).fit(Z), Z),
            (DICE(w, b, percentile=70).fit(Z), Z), (Energy(temperature=2.0).fit(Z[:, :3]), Z[:, :3]),
            (Mahalanobis().fit(Z, np.arange(40) % 3), Z),
            (MSP().fit(Z[:, :3]).set_threshold(Z[:, :3], tpr=0.9), Z[:, :3])]


def _outcome(path, x, scores, predicted):
    """'error' (CheckpointError), 'same' (scores and predictions equal the original's) or 'refused' (scoring
    raises a ValueError); anything else (other scores, another exception) fails the test."""
    try:
        det = load(path)
    except CheckpointError:
        return "error"
    try:
        got = det.score(x)
        pred = det.predict(x) if predicted is not None else None
    except ValueError:
        return "refused"
    np.testing.assert_array_equal(got, scores)
    if predicted is not None:
        np.testing.assert_array_equal(pred, predicted)
    return "same"


def test_signed_files_with_invalid_values_never_score_differently(tmp_path, sentinels):
    """Every number of the description set to an invalid value (negative, zero, huge, NaN, a fraction
    out of range), and every stored array replaced by one of another shape: load raises CheckpointError,
    or the detector scores exactly as before, or scoring raises a ValueError."""
    counts = {"error": 0, "same": 0, "refused": 0}
    path = tmp_path / "v.pt"
    for det, x in _value_detectors():
        save(det, tmp_path / "orig.pt")
        payload = _payload((tmp_path / "orig.pt").read_bytes())
        scores = det.score(x)
        predicted = det.predict(x) if hasattr(det, "threshold_") else None
        doc = json.loads(payload["json"])
        numbers = [w for w, v in _nodes(doc) if (isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 and not {"shape", "id", "__ref__"} & set(map(str, w))
                                                 and not FREE & set(map(str, w)))]
        assert numbers, type(det).__name__
        for where in numbers:
            for bad in INVALID:
                _write_signed(path, payload, json.dumps(_set(json.loads(payload["json"]), where, bad)))
                try:
                    counts[_outcome(path, x, scores, predicted)] += 1
                except AssertionError:
                    raise AssertionError(f"{type(det).__name__}: {where} = {bad} loads and scores differently")
        shapes = {w[:-1]: v for w, v in _nodes(doc) if w and w[-1] == "shape"}
        for where, shape in shapes.items():
            node = json.loads(payload["json"])
            entry = node
            for k in where:
                entry = entry[k]
            key = entry.get("__array__") or entry.get("__tensor__") or entry.get("__param__")
            t = payload["tensors"][key]
            for new in ([t[:-1]] if t.ndim and t.shape[0] > 1 else []) + ([t.T.contiguous()] if t.ndim == 2 else []) \
                    + [t.reshape(-1)[:1].reshape(())] * (t.ndim > 0):
                if tuple(new.shape) == tuple(t.shape):
                    continue
                entry["shape"] = list(new.shape)
                _write_signed(path, {**payload, "tensors": {**payload["tensors"], key: new.clone()}}, json.dumps(node))
                try:
                    counts[_outcome(path, x, scores, predicted)] += 1
                except AssertionError:
                    raise AssertionError(f"{type(det).__name__}: {where} of shape {list(new.shape)} loads and "
                                         "scores differently")
    assert not sentinels
    assert counts["error"] > 0.8 * sum(counts.values()), counts


@pytest.mark.parametrize("field, value, match", [
    (("attrs", "_params", "__dict__", "k"), -1, "k: expected an integer >= 1"),
    (("attrs", "k"), 7, "'k'"),
    (("attrs", "k_"), 50, "k_"),
    (("attrs", "k_"), -1, "k_"),
    (("attrs", "threshold_tpr_"), 7.0, "threshold_tpr_"),
    (("attrs", "input_shape_"), {"__tuple__": [-6]}, "input_shape_"),
])
def test_an_invalid_value_names_its_field(field, value, match, tmp_path):
    det = KNN(k=3).fit(Z).set_threshold(Z)
    save(det, tmp_path / "knn.pt")
    payload = _payload((tmp_path / "knn.pt").read_bytes())
    _write_signed(tmp_path / "bad.pt", payload, json.dumps(_set(json.loads(payload["json"]), field, value)))
    with pytest.raises(CheckpointError, match=match):
        load(tmp_path / "bad.pt")


def test_a_feature_space_detector_file_is_checked_through_its_backbone(tmp_path):
    """The Backbone's settings go through its constructor, and a probe batch runs the network and the inner
    detector (without the memo or cache_dir): a network setting that no longer runs, or an inner detector
    fitted on features of another size, is a CheckpointError."""
    torch.manual_seed(0)
    det = FeatureSpaceDetector(Backbone(build_network((1, 8, 8), 3, widen=1), cache_dir=str(tmp_path / "cache")),
                               KNN(k=3)).fit(X)
    save(det, tmp_path / "fsd.pt")
    cached = sorted(os.listdir(tmp_path / "cache"))
    payload = _payload((tmp_path / "fsd.pt").read_bytes())
    np.testing.assert_array_equal(load(tmp_path / "fsd.pt").score(X), det.score(X))
    doc = json.loads(payload["json"])
    places = {w[-1]: w for w, _ in _nodes(doc) if w and w[-1] in ("batch_size", "stride", "input_shape_")}
    bb_batch = next(w for w, _ in _nodes(doc) if w[-2:] == ("attrs", "batch_size") and "backbone" in w)
    inner_shape = next(w for w, _ in _nodes(doc) if w and w[-1] == "input_shape_" and "inner" in w)
    for where, value, match in ((bb_batch, -1, "Backbone whose settings .* batch_size"),
                                (places["stride"], {"__tuple__": [0, 0]}, "probe batch"),
                                (inner_shape, {"__tuple__": [5]}, "probe batch")):
        _write_signed(tmp_path / "bad.pt", payload, json.dumps(_set(json.loads(payload["json"]), where, value)))
        with pytest.raises(CheckpointError, match=match):
            load(tmp_path / "bad.pt")
    assert sorted(os.listdir(tmp_path / "cache")) == cached             # the probes wrote nothing
