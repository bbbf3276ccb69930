"""Resumable training (ebm_ood.plumbing.resume): the data fingerprint against an independent SHA-256, snapshots are
deep copies, the run identity against the config written out by hand, the refusal messages, and the
checkpoint layout (so checkpoints of earlier versions keep loading)."""
import dataclasses
import hashlib
import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from ebm_ood.plumbing.checkpoint import load_checkpoint
from ebm_ood.plumbing.errors import CheckpointError
from ebm_ood.plumbing.resume import check_resumable, data_fingerprint, restore, run_identity, snapshot
from ebm_ood.training import TrainConfig, train


def test_data_fingerprint_is_the_sha256_of_dtype_shape_and_bytes():
    x = torch.arange(6, dtype=torch.float32).reshape(3, 2) / 7
    y = torch.tensor([0, 1, 1])
    ref = hashlib.sha256(b"torch.float32(3, 2);" + x.numpy().tobytes() + b"torch.int64(3,);" + y.numpy().tobytes())
    assert data_fingerprint(x, y) == ref.hexdigest()
    no_labels = hashlib.sha256(b"torch.float32(3, 2);" + x.numpy().tobytes() + b"none;").hexdigest()
    assert data_fingerprint(x, None) == no_labels
    transposed = hashlib.sha256(b"torch.float32(2, 3);" + x.t().numpy().tobytes() + b"none;")  # C order
    assert data_fingerprint(x.t(), None) == transposed.hexdigest()
    assert data_fingerprint(x[:0]) == hashlib.sha256(b"torch.float32(0, 2);").hexdigest()
    # the same bytes under another shape or dtype are other data
    assert len({no_labels, data_fingerprint(x.reshape(2, 3), None), data_fingerprint(x.view(torch.int32), None)}) == 3


def test_snapshot_is_a_deep_copy_that_restore_loads_back():
    torch.manual_seed(0)
    modules = {"net": nn.Linear(3, 2), "bn": nn.BatchNorm1d(2)}
    w0 = modules["net"].weight.detach().clone()
    snap = snapshot(modules)
    with torch.no_grad():
        modules["net"].weight.add_(1.0)          # in-place changes, as an optimizer step makes them
    modules["bn"].train()
    modules["bn"](torch.randn(8, 2))             # running statistics move in place too
    assert torch.equal(snap["net"]["weight"], w0) and torch.equal(snap["bn"]["running_mean"], torch.zeros(2))
    restore(modules, snap)
    assert torch.equal(modules["net"].weight, w0)
    assert torch.equal(modules["bn"].running_mean, torch.zeros(2)) and int(modules["bn"].num_batches_tracked) == 0


def _identity(config, **kw):
    x, y = torch.ones(4, 3), torch.tensor([0, 1, 0, 1])
    args = dict(name="m", modules={"net": nn.Linear(3, 2)}, groups={"main": ["net"]}, stateful={}, x=x, y=y,
                config=config, identity=None)
    args.update(kw)
    return run_identity(**args)


def test_run_identity_records_the_config_without_what_a_resumed_run_may_change():
    cfg = TrainConfig(steps=7, patience=3, lr=0.01, seed=5, progress=False, lrs={"main": 0.02})
    method = {"train": TrainConfig(steps=9, seed=2), "gamma": np.float32(0.5), "shape": (1, 2)}
    ident = _identity(cfg, identity=method)
    assert sorted(ident) == sorted(["method", "modules", "optimizers", "stateful", "train config", "seed",
                                    "data fingerprint", "method config"])
    resumable = ("steps", "patience", "progress", "checkpoint_path")
    by_hand = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in resumable + ("seed",)}
    assert json.loads(ident["train config"]) == json.loads(json.dumps(by_hand))
    nested = {k: v for k, v in dataclasses.asdict(method["train"]).items() if k not in resumable}  # seed kept
    assert json.loads(ident["method config"]) == json.loads(json.dumps({"train": nested, "gamma": 0.5, "shape": [1, 2]}))
    assert json.loads(ident["modules"]) == {"net": {"weight": [2, 3], "bias": [2]}}
    assert (ident["seed"], ident["method"], ident["optimizers"]) == ("5", '"m"', '{"main": ["net"]}')
    assert json.loads(ident["data fingerprint"]) == data_fingerprint(torch.ones(4, 3), torch.tensor([0, 1, 0, 1]))
    more = dataclasses.replace(cfg, steps=100, patience=None, progress=True, checkpoint_path="elsewhere.pt")
    assert _identity(more, identity=method) == ident


def test_check_resumable_names_what_differs():
    cfg = TrainConfig(lr=0.01, seed=5)
    ck = {"identity": _identity(cfg), "step": 20}
    check_resumable(ck, _identity(cfg), "ck.pt", 20)  # the same run, within its budget: no error
    with pytest.raises(CheckpointError, match=r"^checkpoint 'ck.pt' belongs to another run; it differs in: "
                                              r"train config \(lr: 0.01 -> 0.02\); seed \(5 -> 6\)\. Use another"):
        check_resumable(ck, _identity(TrainConfig(lr=0.02, seed=6)), "ck.pt", 20)
    renamed = ('modules (model: "(absent)" -> {"bias": [2], "weight": [2, 3]}, '
               'net: {"bias": [2], "weight": [2, 3]} -> "(absent)")')
    with pytest.raises(CheckpointError, match=re.escape(f"differs in: {renamed}. Use another")):
        check_resumable(ck, _identity(cfg, modules={"model": nn.Linear(3, 2)}), "ck.pt", 20)
    other_data = _identity(cfg)
    other_data["data fingerprint"] = json.dumps(data_fingerprint(torch.zeros(4, 3), None))
    fa, fb = json.loads(ck["identity"]["data fingerprint"]), json.loads(other_data["data fingerprint"])
    with pytest.raises(CheckpointError, match=re.escape(f"differs in: data (fingerprint {fa[:12]}... -> {fb[:12]}...)")):
        check_resumable(ck, other_data, "ck.pt", 20)
    with pytest.raises(CheckpointError, match="records no run identity"):
        check_resumable({"step": 20}, _identity(cfg), "ck.pt", 20)
    with pytest.raises(CheckpointError, match="already at step 20, beyond steps=19"):
        check_resumable(ck, _identity(cfg), "ck.pt", 19)


class _Counter:
    """A stateful object: counts the steps it has seen; its count is saved in checkpoints."""

    def __init__(self):
        self.n = 0

    def state_dict(self):
        return {"n": torch.tensor(self.n)}

    def load_state_dict(self, state):
        self.n = int(state["n"])


def _counting_run(path, steps):
    torch.manual_seed(0)
    net, counter = nn.Linear(3, 1), _Counter()

    def step(xb, yb, _):
        counter.n += 1
        return ((net(xb).squeeze(1) - yb) ** 2).mean(), {}

    x = torch.linspace(-1, 1, 96).reshape(32, 3)
    cfg = TrainConfig(steps=steps, lr=0.05, eval_every=10, progress=False, checkpoint_path=str(path))
    hist = train({"net": net}, step, x, x.sum(1), cfg, name="count", stateful={"counter": counter})
    return net, counter, hist


def test_checkpoint_layout_is_stable_and_restores_every_part(tmp_path):
    path = tmp_path / "ck.pt"
    net, counter, _ = _counting_run(path, 20)
    ck = load_checkpoint(path)
    assert list(ck) == ["modules", "optimizers", "schedulers", "stateful", "batch_rng", "torch_rng", "step",
                        "evals_without_gain", "best_step", "best_value", "best", "logs", "identity"]
    # without validate the criterion is the step index, so the last validation is the best
    assert (ck["step"], ck["evals_without_gain"], ck["best_step"], ck["best_value"]) == (20, 0, 20, 19.0)
    assert [s for s, _ in ck["logs"]] == [10, 20] and ck["stateful"] == {"counter": {"n": torch.tensor(20)}}
    assert torch.equal(ck["modules"]["net"]["weight"], net.weight) and torch.equal(ck["best"]["net"]["bias"], net.bias)
    assert ck["optimizers"]["main"]["state"][0]["step"] == 20 and ck["schedulers"]["main"]["last_epoch"] == 20
    assert torch.equal(ck["torch_rng"], torch.get_rng_state())  # the trainer draws nothing after its last save
    net2, counter2, hist = _counting_run(path, 30)  # a fresh counter gets the checkpoint's count back
    assert counter2.n == 30 and hist.steps_done == 30 and [s for s, _ in hist.logs] == [10, 20, 30]
