"""The CLI: the quick benchmark writes well-formed tables and JSON; bad flags fail before training."""
import json

import pytest

from ebm_ood.cli import main, parse_seeds


def test_quick_benchmark_writes_json_and_markdown(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["benchmark", "--quick", "--methods", "CE", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res) == {"tabular", "digits"}
    digits = res["digits"]["CE"]
    assert {"digits-89", "patches", "noise", "constant", "oodomain"} <= set(digits)
    for row in digits.values():
        assert 0.0 <= row["auroc"] <= 1.0 and row["auroc_std"] == 0.0
    md = (out / "results.md").read_text()
    assert "| CE |" in md and "Avg nat." in md
    assert "Wall time" in capsys.readouterr().out


def test_bad_flags_fail_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit, match="unknown dataset nope; valid names: .*digits"):
        main(["benchmark", "--dataset", "nope", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="unknown XYZ; valid: CE"):
        main(["benchmark", "--methods", "XYZ", "--out", str(tmp_path)])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit, match="not a writable folder"):
        main(["benchmark", "--quick", "--out", str(blocker / "sub")])
    assert main(["bench", "nope"]) == 2


def test_parse_seeds():
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("4,7") == [4, 7]
    for bad in ("0", "x", "-2"):
        with pytest.raises(Exception, match="--seeds"):
            parse_seeds(bad)
