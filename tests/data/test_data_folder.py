"""Your own data: a folder of .npz files read as a dataset, by the library and by ``ebm-ood benchmark``."""
import json
import math

import numpy as np
import pytest
import torch

from ebm_ood.commands.benchmark.registry import methods_for
from ebm_ood.commands.benchmark.runner import run_benchmark
from ebm_ood.commands.cli import main
from ebm_ood.data import get_dataset
from ebm_ood.data.dataset import shuffle_ood
from ebm_ood.data.folder import load_folder


def _write_folder(root, d, with_val=True):
    (root / "ood").mkdir(parents=True)
    np.savez(root / "train.npz", x=d.x_train, y=d.y_train)
    if with_val:
        np.savez(root / "val.npz", x=d.x_val, y=d.y_val)
    np.savez(root / "test.npz", x=d.x_test)
    for name, s in d.ood.items():
        np.savez(root / "ood" / f"{name}.npz", x=s.x, group=np.array(s.group))
    return root


def test_a_folder_holds_exactly_the_arrays_written(tmp_path):
    d = get_dataset("tabular")
    got = load_folder(_write_folder(tmp_path / "mine", d))
    assert got.name == "mine" and got.kind == "tabular" and got.num_classes == d.num_classes
    for split in ("x_train", "y_train", "x_val", "y_val", "x_test"):
        assert np.array_equal(getattr(got, split), getattr(d, split))
    assert {k: (v.group, v.x.tolist()) for k, v in got.ood.items()} == {k: (v.group, v.x.tolist()) for k, v in d.ood.items()}
    no_val = load_folder(_write_folder(tmp_path / "noval", d, with_val=False), seed=3)
    assert len(no_val.x_val) == math.ceil(0.1 * len(d.x_train)) and len(no_val.x_train) + len(no_val.x_val) == len(d.x_train)
    assert sorted(np.r_[no_val.y_train, no_val.y_val]) == sorted(d.y_train)   # a split of train, nothing lost


def test_the_benchmark_on_a_folder_equals_the_benchmark_on_the_same_arrays(tmp_path, capsys):
    """The benchmark loads a folder as ``get_dataset`` does: its OOD sets in the seeded random order."""
    d = get_dataset("tabular")
    folder = _write_folder(tmp_path / "mine", d)
    out = tmp_path / "out"
    assert main(["benchmark", "--quick", "--methods", "CE,MSP", "--dataset", str(folder), "--seeds", "1",
                 "--jobs", "1", "--out", str(out)]) == 0
    got = json.loads((out / "results.json").read_text())["results"]["mine"]
    stored = load_folder(folder)  # exactly the arrays written (test above), in their stored order
    d = shuffle_ood(stored, seed=0)
    want, _ = run_benchmark([d], methods_for("all", ["CE", "MSP"]), [0], preset="quick", log=lambda m: None)
    assert got == json.loads(json.dumps(want["mine"]))
    assert "## mine: FPR95" in (out / "results.md").read_text()


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "test.npz").unlink(), r"test.npz: not found; a data folder holds train.npz"),
    (lambda r: np.savez(r / "train.npz", x=np.zeros((4, 3), np.float32)), r"train.npz: expected arrays x, y, missing y"),
    (lambda r: (r / "val.npz").write_bytes(b"not a zip"), r"val.npz: not a readable .npz file"),
    (lambda r: np.savez(r / "ood" / "bad.npz", x=np.full((2, 18), np.nan, np.float32)), r"bad.npz: x: expected finite"),
    (lambda r: np.savez(r / "ood" / "bad.npz", x=np.zeros((2, 5), np.float32)), r"bad.npz: x: expected shape \(N, 18\)"),
    (lambda r: np.savez(r / "ood" / "bad.npz", x=np.zeros((2, 18), np.float32), group=np.array("far")),
     r"bad.npz: group: expected 'natural' or 'non-natural', got 'far'"),
    (lambda r: [f.unlink() for f in (r / "ood").iterdir()], r"expected at least one OOD set ood/NAME.npz"),
])
def test_a_bad_folder_is_an_error_naming_the_file(tmp_path, damage, message):
    root = _write_folder(tmp_path / "mine", get_dataset("tabular"))
    damage(root)
    with pytest.raises((ValueError, FileNotFoundError, TypeError), match=message):
        load_folder(root)


def test_an_unknown_dataset_names_the_folder_layout(tmp_path):
    with pytest.raises(SystemExit, match=r"--dataset: unknown .*nowhere.*or the path of a data folder holding train.npz"):
        main(["benchmark", "--quick", "--dataset", str(tmp_path / "nowhere"), "--out", str(tmp_path)])


MODEL_FILE = '''
import torch
from ebm_ood.nn import MLP


def load():
    torch.manual_seed(0)
    return MLP(18, 6, width=16, depth=3)
'''


def test_the_benchmark_on_your_classifier_equals_the_detectors_on_its_features(tmp_path):
    from ebm_ood.backbone import Backbone, FeatureSpaceDetector
    from ebm_ood.metrics import all_metrics
    from ebm_ood.nn import MLP
    from ebm_ood.posthoc import KNN, MSP

    (tmp_path / "model.py").write_text(MODEL_FILE)
    out = tmp_path / "out"
    assert main(["benchmark", "--quick", "--suite", "heat", "--methods", "MSP,KNN", "--dataset", "tabular", "--seeds",
                 "1", "--jobs", "1", "--classifier", f"{tmp_path / 'model.py'}:load", "--out", str(out)]) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["header"]["classifier"].endswith("model.py:load")
    d = get_dataset("tabular")
    torch.manual_seed(0)
    bb = Backbone(MLP(18, 6, width=16, depth=3).eval())
    for name, det in (("MSP", FeatureSpaceDetector(bb, MSP(), which="logits")), ("KNN", FeatureSpaceDetector(bb, KNN(k=50)))):
        det.fit(d.x_train)
        s_id = det.score(d.x_test)
        for ood, row in data["results"]["tabular"][name].items():
            want = all_metrics(s_id, det.score(d.ood[ood].x))
            assert {k: row[k] for k in want} == pytest.approx(want, abs=0), (name, ood)


def test_a_bad_classifier_file_fails_before_training(tmp_path):
    (tmp_path / "model.py").write_text("def load():\n    return 3\n")
    for spec, message in ((f"{tmp_path / 'model.py'}:load", "returned int; expected an nn.Module or a Backbone"),
                          (f"{tmp_path / 'model.py'}:nope", "defines no function 'nope'"),
                          (f"{tmp_path / 'none.py'}:load", "not found"), ("model.py", "expected FILE.py:FUNCTION")):
        with pytest.raises(SystemExit, match=f"--classifier: .*{message}"):
            main(["benchmark", "--quick", "--suite", "heat", "--dataset", "tabular", "--classifier", spec,
                  "--out", str(tmp_path / "out")])
