"""Long training shows progress on stderr (a line with step, loss and ETA when stderr is not a terminal)
without changing any result; the benchmark's timing table names what its figures sum."""
import numpy as np
import pytest

from ebm_ood.methods.ce import CEClassifier, ce_config


def _fit(progress: bool):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 6)).astype("float32"), np.arange(300) % 3
    cfg = ce_config("quick", kind="tabular")
    from dataclasses import replace

    cfg = replace(cfg, train=replace(cfg.train, progress=progress, steps=30, eval_every=10))
    det = CEClassifier(cfg, seed=3).fit(x, y)
    return det.score(x), det.history_.logs


def test_progress_lines_name_step_loss_and_eta_and_change_nothing(monkeypatch, capsys):
    monkeypatch.setenv("EBM_OOD_PROGRESS_SECONDS", "0")
    on_scores, on_logs = _fit(True)
    out, err = capsys.readouterr()
    lines = [l for l in err.splitlines() if l.startswith("CE: step ")]
    assert out == "" and len(lines) == 30
    assert lines[0].startswith("CE: step 1/30 (3%), loss_main ") and "elapsed, ETA " in lines[0]
    assert lines[-1].startswith("CE: step 30/30 (100%)") and lines[-1].endswith("ETA 0 s")
    off_scores, off_logs = _fit(False)
    assert capsys.readouterr().err == ""
    assert np.array_equal(on_scores, off_scores) and on_logs == off_logs


def test_progress_lines_are_periodic_and_the_interval_is_checked(monkeypatch, capsys):
    monkeypatch.setenv("EBM_OOD_PROGRESS_SECONDS", "3600")
    _fit(True)
    assert "CE: step" not in capsys.readouterr().err          # a short fit: no line before the interval
    monkeypatch.setenv("EBM_OOD_PROGRESS_SECONDS", "soon")
    with pytest.raises(ValueError, match="EBM_OOD_PROGRESS_SECONDS: expected a number of seconds"):
        _fit(True)


def test_the_timing_table_says_what_rows_and_total_sum():
    from ebm_ood.commands.benchmark.report import render_markdown
    from ebm_ood.commands.benchmark.registry import methods_for

    md = render_markdown({"d": {}}, {"d": {"MSP": 2010.0}}, {"d": {}}, methods_for("all", ["MSP"]), preset="default",
                         seeds=[0, 1, 2], metric="aupr_out_bal", total_seconds=1625.0)
    assert "summed over the seeds" in md and "workers" in md
    assert "Total: 1625.0 s wall-clock time of the whole run" in md
