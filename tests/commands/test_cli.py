"""The CLI: the quick benchmark writes well-formed tables and JSON; bad flags fail before training."""
import json

import pytest

import ebm_ood

from ebm_ood.commands.cli import main
from ebm_ood.commands.flags import cpu_kind, parse_seeds


def test_quick_benchmark_writes_json_and_markdown(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["benchmark", "--quick", "--methods", "CE", "--seeds", "1", "--out", str(out)]) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["header"] == {"command": "ebm-ood benchmark", "version": ebm_ood.__version__, "preset": "quick",
                              "seeds": [0], "threads": 1, **cpu_kind(), "metric": "aupr_out_bal", "suite": "all"}
    res = data["results"]
    assert set(res) == {"tabular", "digits"}
    digits = res["digits"]["CE"]
    assert {"digits-89", "patches", "noise", "constant", "oodomain"} <= set(digits)
    for row in digits.values():
        assert 0.0 <= row["auroc"] <= 1.0 and row["auroc_std"] == 0.0 and row["seeds"] == 1
    md = (out / "results.md").read_text()
    assert "| CE |" in md and "Avg nat." in md
    assert "±" not in md  # one seed: no spread to show
    assert "Wall time" in capsys.readouterr().out


def test_bad_flags_fail_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit, match="--dataset: unknown nope; valid names: .*digits"):
        main(["benchmark", "--dataset", "nope", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--methods: unknown XYZ; valid: CE"):
        main(["benchmark", "--methods", "XYZ", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"--methods CD: not in --suite heat \(its methods: MSP, "):
        main(["benchmark", "--suite", "heat", "--methods", "MSP,CD", "--out", str(tmp_path)])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit, match="not a writable folder"):
        main(["benchmark", "--quick", "--out", str(blocker / "sub")])
    with pytest.raises(SystemExit) as stop:
        main(["bench", "nope"])
    assert stop.value.code == 2 and "invalid choice: 'nope' (choose from 'sampler'" in capsys.readouterr().err


def test_parse_seeds():
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("4,7") == [4, 7] and parse_seeds("7,") == [7]
    assert parse_seeds("0") == parse_seeds("1") == [0]
    for bad in ("x", "-2", "1.5"):
        with pytest.raises(Exception, match="--seeds"):
            parse_seeds(bad)


def test_bad_run_flags_name_the_flag_before_training(tmp_path, monkeypatch):
    from ebm_ood.commands.benchmark import runner

    monkeypatch.setattr(runner, "run_cell", lambda *a: pytest.fail("training started"))
    with pytest.raises(SystemExit, match="--device: expected 'cpu', 'cuda'"):
        main(["benchmark", "--quick", "--device", "gpu0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--threads: expected a positive integer, got 0"):
        main(["benchmark", "--quick", "--threads", "0", "--out", str(tmp_path)])
    monkeypatch.setenv("EBM_OOD_DATA", str(tmp_path / "empty-root"))
    with pytest.raises(SystemExit, match=r"--dataset segment: .*python data_scripts/prepare.py segment"):
        main(["benchmark", "--quick", "--dataset", "segment", "--out", str(tmp_path)])
    for flags in (["--device", "gpu0"], ["--seeds", "0,-1"]):
        with pytest.raises(SystemExit):
            main(["experiment", "heat-beta", "--quick", "--out", str(tmp_path)] + flags)


def test_parse_seeds_rejects_negative_and_repeated_seeds():
    for bad in ("0,-1", "2,2", ","):
        with pytest.raises(Exception, match="--seeds"):
            parse_seeds(bad)


def test_write_atomic_replaces_whole_files_and_leaves_nothing_on_failure(tmp_path):
    from ebm_ood.plumbing.atomic import write_atomic

    path = tmp_path / "sub" / "r.json"
    assert write_atomic(path, "old\n") == str(path) and path.read_text() == "old\n"
    write_atomic(path, b"\x00new")
    assert path.read_bytes() == b"\x00new"

    def half_then_crash(fh):
        fh.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(path, half_then_crash)
    assert path.read_bytes() == b"\x00new"  # the old file is intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]  # no temporary file left


def test_help_lists_every_experiment_and_bench_with_a_one_line_summary(capsys):
    from ebm_ood.commands.cli import BENCHES, EXPERIMENTS

    for kind, table in (("experiment", EXPERIMENTS), ("bench", BENCHES)):
        assert main([kind, "--help"]) == 0
        out = capsys.readouterr().out
        for name, mod in table.items():
            assert f"  {name}" in out and mod.SUMMARY in out
            assert "``" not in mod.SUMMARY and ":func:" not in mod.SUMMARY and len(mod.SUMMARY) < 100
