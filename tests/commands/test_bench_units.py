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
