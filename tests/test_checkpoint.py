"""Checkpoints: atomic writes survive a crash mid-save; truncated/foreign files give a clear error."""
import os
import pickle

import pytest
import torch

from ebm_ood.checkpoint import load_checkpoint, save_checkpoint
from ebm_ood.errors import CheckpointError


def test_roundtrip(tmp_path):
    p = tmp_path / "ck.pt"
    save_checkpoint({"w": torch.arange(5.0), "step": 3, "nested": {"a": [1, 2]}}, p)
    ck = load_checkpoint(p)
    assert torch.equal(ck["w"], torch.arange(5.0)) and ck["step"] == 3 and ck["nested"] == {"a": [1, 2]}


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    p = tmp_path / "ck.pt"
    save_checkpoint({"w": torch.ones(3)}, p)

    def exploding_save(obj, fh, *a, **k):
        fh.write(b"partial garbage")
        raise RuntimeError("power cut")

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(RuntimeError, match="power cut"):
        save_checkpoint({"w": torch.zeros(3)}, p)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(p)["w"], torch.ones(3))
    assert [f for f in os.listdir(tmp_path) if f != "ck.pt"] == []  # no temporary file left behind


def test_truncated_missing_and_foreign_files(tmp_path):
    p = tmp_path / "ck.pt"
    save_checkpoint({"w": torch.ones(100)}, p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(p)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    q = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(2)}, q)
    with pytest.raises(CheckpointError, match="not an ebm_ood checkpoint"):
        load_checkpoint(q)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickled_objects_are_refused(tmp_path):
    q = tmp_path / "evil.pt"
    torch.save({"magic": "ebm_ood-checkpoint-v1", "x": Evil()}, q, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="not a plain-weights"):
        load_checkpoint(q)
