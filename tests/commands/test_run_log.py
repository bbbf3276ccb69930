"""A run is never lost or mixed: the cells log (``results.cells.jsonl``) is touched only after every flag
check, resumed by an identical rerun (to the same ``results.json``), never deleted, locked against a
second run, written a whole line at a time; bad ``--classifier`` files and clashing ``--dataset`` names
stop before training; a failed cell gives a non-zero exit code; Ctrl-C prints one line."""
import errno
import json
import os

import numpy as np
import pytest

from ebm_ood.commands.benchmark import runner
from ebm_ood.commands import cell_log
from ebm_ood.commands.cell_log import CellLog, CellResult, read_cells
from ebm_ood.commands.cli import main
from ebm_ood.data import get_dataset

RUN = ["benchmark", "--quick", "--methods", "CE,MSP", "--dataset", "tabular", "--seeds", "0,1", "--jobs", "1"]
CELLS = "results.cells.jsonl"


def _fake_cells(monkeypatch, calls=None):
    """Cells without training: metrics that depend on (method, seed) only."""
    def fake(spec, ctx):
        if calls is not None:
            calls.append((spec.name, ctx.seed))
        v = 0.5 + 0.01 * ctx.seed + 0.001 * len(spec.name)
        row = {"auroc": v, "fpr95": 1 - v, "aupr_out_bal": v}
        return CellResult(metrics={ood: row for ood in ctx.dataset.ood}, seconds=0.1)
    monkeypatch.setattr(runner, "run_cell", fake)


def _no_training(monkeypatch):
    monkeypatch.setattr(runner, "run_cell", lambda *a, **k: pytest.fail("training started"))


def _write_folder(root, d):
    (root / "ood").mkdir(parents=True)
    np.savez(root / "train.npz", x=d.x_train, y=d.y_train)
    np.savez(root / "val.npz", x=d.x_val, y=d.y_val)
    np.savez(root / "test.npz", x=d.x_test)
    for name, s in d.ood.items():
        np.savez(root / "ood" / f"{name}.npz", x=s.x, group=np.array(s.group))
    return root


def test_a_rerun_with_a_bad_flag_leaves_the_earlier_cells_alone(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    earlier = b'{"header": {"flags": {}}}\n{"dataset": "tabular", "seed": 0}\n'
    (out / CELLS).write_bytes(earlier)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "train.npz").write_bytes(b"not a zip")
    _no_training(monkeypatch)
    for flags in (["--dataset", "nope"], ["--dataset", str(broken)], ["--jobs", "0"], ["--device", "gpu0"],
                  ["--suite", "elflein", "--classifier", "x.py:f"]):
        with pytest.raises(SystemExit):
            main(["benchmark", "--quick", "--methods", "CE", "--out", str(out)] + flags)
        assert (out / CELLS).read_bytes() == earlier, flags
    assert sorted(os.listdir(out)) == [CELLS]


def test_an_interrupted_run_resumes_to_the_same_results_json(tmp_path, monkeypatch, capsys):
    assert main(RUN + ["--out", str(tmp_path / "whole")]) == 0
    written = []
    original = CellLog.__call__

    def killed_after_two(self, *cell):
        original(self, *cell)
        written.append(cell[:3])
        if len(written) == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(CellLog, "__call__", killed_after_two)
    out = tmp_path / "resumed"
    assert main(RUN + ["--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("ebm-ood: stopped by Ctrl-C")
    assert written == [("tabular", 0, "CE"), ("tabular", 0, "MSP")]
    monkeypatch.setattr(CellLog, "__call__", original)
    ran = []
    real = runner.run_cell
    monkeypatch.setattr(runner, "run_cell", lambda spec, ctx: ran.append((spec.name, ctx.seed)) or real(spec, ctx))
    assert main(RUN + ["--out", str(out)]) == 0
    assert ran == [("CE", 1), ("MSP", 1)]               # the kept cells are not trained again
    assert (out / "results.json").read_bytes() == (tmp_path / "whole" / "results.json").read_bytes()
    _, cells, broken = read_cells(str(out / CELLS))
    assert len(cells) == 4 and broken == 0


def test_the_log_of_another_run_is_moved_aside_never_deleted(tmp_path, monkeypatch):
    _fake_cells(monkeypatch)
    other = b'{"header": {"flags": {"seeds": [7]}, "threads": 1}}\n{"dataset": "x", "seed": 7}\n'
    (tmp_path / CELLS).write_bytes(other)
    (tmp_path / (CELLS + ".1")).write_bytes(b"older\n")
    assert main(RUN + ["--out", str(tmp_path)]) == 0
    assert (tmp_path / (CELLS + ".1")).read_bytes() == b"older\n"
    assert (tmp_path / (CELLS + ".2")).read_bytes() == other
    assert len(read_cells(str(tmp_path / CELLS))[1]) == 4


def test_a_second_run_into_the_same_out_is_refused(tmp_path, monkeypatch):
    _no_training(monkeypatch)
    holder = CellLog(tmp_path / "other.cells.jsonl", {"flags": {}})
    holder.start()                                      # a run in progress in this folder
    try:
        with pytest.raises(SystemExit, match="another run is writing there now"):
            main(RUN + ["--out", str(tmp_path)])
        assert not (tmp_path / CELLS).exists()
    finally:
        holder.close()
    _fake_cells(monkeypatch)
    assert main(RUN + ["--out", str(tmp_path)]) == 0     # released: the folder is free again


def test_a_broken_last_line_is_ignored_with_a_message_and_good_lines_kept(tmp_path, monkeypatch, capsys):
    _fake_cells(monkeypatch)
    assert main(RUN + ["--out", str(tmp_path)]) == 0
    lines = (tmp_path / CELLS).read_bytes().splitlines(keepends=True)
    (tmp_path / CELLS).write_bytes(b"".join(lines[:2]) + lines[2][:30])   # killed while writing line 3
    capsys.readouterr()
    calls = []
    _fake_cells(monkeypatch, calls)
    assert main(RUN + ["--out", str(tmp_path)]) == 0
    assert "ignoring line 3, not a whole cell" in capsys.readouterr().err
    assert calls == [("MSP", 0), ("CE", 1), ("MSP", 1)]  # the good cell (CE, seed 0) is kept
    header, cells, broken = read_cells(str(tmp_path / CELLS))
    assert len(cells) == 4 and broken == 1 and (tmp_path / CELLS).read_bytes().endswith(b"\n")


def test_a_full_disk_leaves_whole_lines_a_clear_error_and_the_tables(tmp_path, monkeypatch, capsys):
    _fake_cells(monkeypatch)
    real_write, count = os.write, []

    def disk_full_at_the_third_cell(fd, data):
        count.append(1)
        if len(count) == 3:
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)
    monkeypatch.setattr(cell_log.os, "write", disk_full_at_the_third_cell)
    with pytest.raises(SystemExit, match=f"could not write {tmp_path / CELLS}: No space left on device"):
        main(RUN + ["--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| CE |" in out and "| MSP |" in out         # the tables of the two cells kept
    header, cells, broken = read_cells(str(tmp_path / CELLS))
    assert broken == 0 and sorted(cells) == [("tabular", 0, "CE"), ("tabular", 0, "MSP")]


def test_an_unwritable_result_file_names_its_path_and_still_prints_the_tables(tmp_path, monkeypatch, capsys):
    from ebm_ood.commands.benchmark import command

    _fake_cells(monkeypatch)
    real = command.write_atomic

    def read_only(path, text):
        if str(path).endswith("results.json"):
            raise PermissionError(errno.EROFS, "Read-only file system")
        return real(path, text)
    monkeypatch.setattr(command, "write_atomic", read_only)
    assert main(RUN + ["--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert f"could not write {tmp_path / 'results.json'}: Read-only file system" in captured.err
    assert "| CE |" in captured.out and "Traceback" not in captured.err


def test_a_failed_cell_makes_the_exit_code_non_zero(tmp_path, monkeypatch, capsys):
    _fake_cells(monkeypatch)
    fake = runner.run_cell
    monkeypatch.setattr(runner, "run_cell", lambda spec, ctx: CellResult(error="DivergenceError: x")
                        if spec.name == "MSP" else fake(spec, ctx))
    assert main(RUN + ["--out", str(tmp_path)]) == 1
    assert "1 method failed: tabular/MSP" in capsys.readouterr().err


@pytest.mark.parametrize("body, message", [
    ("import sys\ndef load():\n    sys.exit(0)\n", r"load\(\) in .* raised SystemExit: 0 \(line 3\)"),
    ("def load():\n    raise RuntimeError('no weights')\n", r"raised RuntimeError: no weights \(line 2\)"),
    ("def load(:\n    pass\n", r"running .* raised SyntaxError: .*\(line 1\)"),
    ("import sys\nsys.exit(3)\ndef load():\n    pass\n", r"running .* raised SystemExit: 3"),
    ("from torch import nn\ndef load():\n    return nn.Sequential(nn.Linear(18, 8), nn.ReLU(), nn.Linear(8, 6))\n",
     r"returned a Sequential without a `head`.*Backbone\(features=model\[:-1\], head=model\[-1\]\)"),
])
def test_a_classifier_file_that_fails_stops_before_training_with_an_error(tmp_path, monkeypatch, capsys, body, message):
    _no_training(monkeypatch)
    (tmp_path / "model.py").write_text(body)
    with pytest.raises(SystemExit, match="--classifier: .*" + message):
        main(["benchmark", "--quick", "--suite", "heat", "--methods", "MSP", "--dataset", "tabular",
              "--classifier", f"{tmp_path / 'model.py'}:load", "--out", str(tmp_path / "out")])
    assert "Traceback" not in capsys.readouterr().err


def test_a_classifier_no_chosen_method_uses_is_refused(tmp_path, monkeypatch):
    _no_training(monkeypatch)
    (tmp_path / "model.py").write_text("def load():\n    pass\n")
    with pytest.raises(SystemExit, match="--classifier: none of the chosen methods .* uses a classifier"):
        main(["benchmark", "--quick", "--suite", "elflein", "--dataset", "tabular",
              "--classifier", f"{tmp_path / 'model.py'}:load", "--out", str(tmp_path / "out")])


def test_two_dataset_folders_of_one_name_are_refused(tmp_path, monkeypatch):
    _no_training(monkeypatch)
    d = get_dataset("tabular")
    a, b = _write_folder(tmp_path / "a" / "data", d), _write_folder(tmp_path / "b" / "data", d)
    with pytest.raises(SystemExit, match=r"--dataset: .*a/data and .*b/data \(both 'data'\).*rename"):
        main(["benchmark", "--quick", "--methods", "CE", "--dataset", str(a), "--dataset", str(b),
              "--out", str(tmp_path / "out")])


def test_a_folder_named_like_a_built_in_dataset_wins_over_it(tmp_path, monkeypatch):
    d = get_dataset("tabular")
    mine = _write_folder(tmp_path / "tabular", d)
    np.savez(mine / "train.npz", x=d.x_train[:50], y=d.y_train[:50])   # other data than the built-in set
    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(runner, "run_cell", lambda spec, ctx: seen.append(len(ctx.dataset.x_train)) or CellResult(
        error="RuntimeError: not trained here"))
    main(["benchmark", "--quick", "--methods", "CE", "--dataset", "tabular", "--seeds", "1", "--jobs", "1",
          "--out", str(tmp_path / "out")])
    assert seen == [50]
    (mine / "train.npz").unlink()                       # ./tabular exists but is no data folder: an error
    with pytest.raises(SystemExit, match="names both the built-in dataset and './tabular'"):
        main(["benchmark", "--quick", "--methods", "CE", "--dataset", "tabular", "--out", str(tmp_path / "out")])


def test_an_experiment_rerun_trains_only_the_cells_its_log_lacks(tmp_path, monkeypatch):
    args = ["experiment", "supervision", "--quick", "--steps", "3", "--methods", "SSM", "--seeds", "0,1",
            "--out", str(tmp_path)]
    assert main(args) == 0
    log = tmp_path / "supervision.cells.jsonl"
    first = json.loads((tmp_path / "supervision.json").read_text())
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]))                # the last cell was lost to a kill
    ran = []
    real = runner.run_cell
    monkeypatch.setattr(runner, "run_cell", lambda spec, ctx: ran.append((spec.name, ctx.seed)) or real(spec, ctx))
    assert main(args) == 0
    assert ran == [(json.loads(lines[-1])["method"], json.loads(lines[-1])["seed"])]
    assert json.loads((tmp_path / "supervision.json").read_text()) == first
    with pytest.raises(SystemExit):                      # a bad flag never touches the log
        main(args[:-2] + ["--steps", "0", "--out", str(tmp_path)])
    assert len(read_cells(str(log))[1]) == 4


def test_a_failed_experiment_cell_makes_the_exit_code_non_zero(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "run_cell", lambda spec, ctx: CellResult(error="DivergenceError: x"))
    code = main(["experiment", "supervision", "--quick", "--steps", "3", "--methods", "SSM", "--out", str(tmp_path)])
    assert code == 1 and "failed: SSM" in capsys.readouterr().err
