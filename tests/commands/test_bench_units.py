"""``ebm-ood bench units``: every timed call runs and gets a row (speed itself is never asserted)."""
import json

import pytest

from ebm_ood.commands.cli import main


def test_bench_units_times_every_call_on_image_data(capsys):
    assert main(["bench", "units", "--rounds", "2", "--calls", "1", "--heat-steps", "1", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    rows = {r["call"]: r for r in got["rows"]}
    assert list(rows) == ["CE step", "CE step, contiguous", "CE step, batch 128", "CE validation", "CE validation, batch 1024",
                          "features (train split)", "features (train split), batch 64", "GMM prior fit",
                          "HEAT-GMM fit"]
    assert isinstance(rows["features (train split), batch 64"]["same_numbers"], bool)
    assert isinstance(rows["CE validation, batch 1024"]["same_numbers"], bool)
    assert rows["CE step"]["same_numbers"] is True and rows["CE step, batch 128"]["same_numbers"] is False
    assert isinstance(rows["CE step, contiguous"]["same_numbers"], bool)
    assert all(r["ms"] > 0 and r["unit_s"] > 0 for r in rows.values()) and got["threads"] == 1


def test_bench_units_refuses_tabular_data_and_bad_counts():
    with pytest.raises(SystemExit, match="--dataset tabular: expected image data"):
        main(["bench", "units", "--dataset", "tabular", "--rounds", "2"])
    with pytest.raises(SystemExit, match="--rounds must be >= 2"):
        main(["bench", "units", "--rounds", "1"])


def test_synthetic_images_are_seeded_mnist_sized_classes():
    from ebm_ood.commands.speed.units import synthetic_images

    a, b = synthetic_images(90), synthetic_images(90)
    assert a.x_train.shape == (90, 1, 28, 28) and a.x_val.shape == (10, 1, 28, 28) and a.kind == "image"
    assert sorted(set(a.y_train.tolist())) == list(range(10)) and abs(a.x_train).max() <= 1
    assert (a.x_train == b.x_train).all()
    with pytest.raises(SystemExit, match="--synthetic: expected at least 10 images"):
        main(["bench", "units", "--synthetic", "5"])


def test_accuracy_rows_train_each_memory_format_as_the_detector_does(monkeypatch):
    """``--seeds``: per seed, the default CE classifier in each memory format; its numbers are those of a
    CEClassifier fitted directly with the same settings (here the quick preset, so that the test is short)."""
    from dataclasses import replace

    import ebm_ood.methods.ce as ce_module
    from ebm_ood.commands.speed import units
    from ebm_ood.data import get_dataset

    quick = ce_module.ce_config("quick", "image")
    monkeypatch.setattr(ce_module, "ce_config", lambda *a, **k: quick)
    rows = units.accuracy_rows("digits", [0])
    assert [r["format"] for r in rows] == ["channels-last", "contiguous"]
    d = get_dataset("digits")
    for r in rows:
        cfg = replace(quick, channels_last=r["format"] == "channels-last",
                      train=replace(quick.train, progress=False))
        det = ce_module.CEClassifier(cfg, seed=0).fit(d.x_train, d.y_train, validation=(d.x_val, d.y_val))
        assert r["val_accuracy"] == det.val_accuracy_ and r["steps"] == det.history_.steps_done
        assert r["ms_per_step"] == pytest.approx(1e3 * r["cpu_s"] / r["steps"])
    text = units.accuracy_markdown(rows)
    assert f"| 0 | channels-last | {100 * rows[0]['val_accuracy']:.2f} |" in text and "Mean ID validation accuracy" in text
