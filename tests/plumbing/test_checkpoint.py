"""Checkpoints: atomic writes survive a crash mid-save; truncated, altered or foreign files give a clear error."""
import os
import pickle

import pytest
import torch

from ebm_ood.plumbing.atomic import write_atomic
from ebm_ood.plumbing.checkpoint import MAGIC, encode_checkpoint, load_checkpoint, save_checkpoint
from ebm_ood.plumbing.errors import CheckpointError


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


def test_pickled_objects_are_refused_even_with_a_valid_digest(tmp_path):
    import hashlib
    import io

    buf = io.BytesIO()
    torch.save({"x": Evil()}, buf, pickle_module=pickle)
    payload = buf.getvalue()
    q = tmp_path / "evil.pt"
    q.write_bytes(f"{MAGIC} {hashlib.sha256(payload).hexdigest()}\n".encode() + payload)
    with pytest.raises(CheckpointError, match="not a plain-weights"):
        load_checkpoint(q)


def test_every_single_bit_flip_is_detected(tmp_path):
    # torch's zip reader skips CRC checks: a flip inside a tensor's bytes would load as a changed weight.
    # Flip one bit at 400 positions spread over the whole file (header, zip structure, tensor data).
    p = tmp_path / "ck.pt"
    save_checkpoint({"w": torch.linspace(-1, 1, 64), "step": 7, "logs": [[1, {"val": 0.5}]]}, p)
    data = p.read_bytes()
    positions = sorted({(i * 7919) % (8 * len(data)) for i in range(400)})
    assert len(positions) == 400
    for bit in positions:
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        p.write_bytes(bytes(flipped))
        with pytest.raises(CheckpointError):
            load_checkpoint(p)
    p.write_bytes(data)
    assert torch.equal(load_checkpoint(p)["w"], torch.linspace(-1, 1, 64))


def test_digest_header_matches_an_independent_sha256(tmp_path):
    import hashlib

    raw = encode_checkpoint({"w": torch.ones(3)})
    header, payload = raw.split(b"\n", 1)
    assert header == f"{MAGIC} {hashlib.sha256(payload).hexdigest()}".encode()


def test_orphan_temporary_files_of_dead_writers_are_removed(tmp_path):
    import subprocess
    import sys

    p = tmp_path / "ck.pt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a process that has exited: its temporary files are orphans
    orphans = [tmp_path / f".ck.pt.{dead_pid}-{tok}.tmp" for tok in ("0123abcd", "deadbeef")]
    live = tmp_path / f".ck.pt.{os.getppid()}-00ff00ff.tmp"  # a running writer's file stays
    other = tmp_path / f".other.pt.{dead_pid}-0123abcd.tmp"  # another target's file stays
    for f in (*orphans, live, other):
        f.write_bytes(b"half written")
    save_checkpoint({"w": torch.ones(2)}, p)
    assert sorted(os.listdir(tmp_path)) == sorted(["ck.pt", live.name, other.name])
    write_atomic(tmp_path / "other.pt", b"x")
    assert sorted(os.listdir(tmp_path)) == sorted(["ck.pt", "other.pt", live.name])


def test_temporary_file_of_a_killed_save_is_removed_by_the_next_save(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    p = tmp_path / "ck.pt"
    writer = ("import sys, time; from ebm_ood.plumbing.atomic import write_atomic\n"
              "def stall(fh):\n    fh.write(b'half'); fh.flush(); time.sleep(120)\n"
              "write_atomic(sys.argv[1], stall)\n")
    proc = subprocess.Popen([sys.executable, "-c", writer, str(p)])
    try:
        deadline = time.monotonic() + 60
        while not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]:
            assert proc.poll() is None and time.monotonic() < deadline, "the writer never started"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".tmp")]) == 1  # kill -9 leaves it behind
    save_checkpoint({"w": torch.ones(2)}, p)
    assert os.listdir(tmp_path) == ["ck.pt"]
