"""``default`` is ``full`` shortened by one stated factor (``presets.DEFAULT_FACTOR``: 1/4 of the tabular
steps, all 50 image epochs) for the generative methods: the same batch sizes, learning rates, betas and
model settings, except each method's named cost reductions. CE keeps its own ``default``."""
import pytest

from ebm_ood.methods.ce import CE_PRESETS, CEConfig, ce_config
from ebm_ood.methods.contrastive_divergence import CD_PRESETS, cd_config
from ebm_ood.methods.flows.detector import FLOW_PRESETS, flow_config
from ebm_ood.methods.score_matching import SSM_PRESETS, ssm_config
from ebm_ood.methods.vera import VERA_PRESETS, vera_config
from ebm_ood.presets import DEFAULT_FACTOR, PerDataset, PerKind, derived_default, scale_length

GENERATIVE = {"CD": (CD_PRESETS, cd_config), "SSM": (SSM_PRESETS, ssm_config),
              "VERA": (VERA_PRESETS, vera_config), "NF": (FLOW_PRESETS, flow_config)}
REDUCED = {  # the cost reductions each table states, by field
    "CD": {"sgld_steps", "buffer_size", "widen"}, "SSM": {"widen"}, "VERA": {"entropy_weight", "sigma_init", "widen"},
    "NF": {"glow"},
}
CASES = [("tabular", "tabular"), ("tabular", "segment"), ("image", "digits"), ("image", "cifar10"), ("image", "fmnist")]


def test_the_factor_is_a_quarter_of_the_steps_and_all_the_epochs():
    assert DEFAULT_FACTOR == PerKind(tabular=1 / 4, image=1)


@pytest.mark.parametrize("method", sorted(GENERATIVE))
@pytest.mark.parametrize("kind,dataset", CASES)
def test_default_is_full_with_every_length_scaled(method, kind, dataset):
    _, make = GENERATIVE[method]
    full, default = make("full", kind, dataset), make("default", kind, dataset)
    f = getattr(DEFAULT_FACTOR, kind)
    for name in ("steps", "warmup", "eval_every"):
        assert getattr(default.train, name) == max(1, round(getattr(full.train, name) * f)), name
    if kind == "image":
        assert (full.train.epochs, default.train.epochs) == (50, 50)
    else:
        assert (full.train.epochs, default.train.epochs, default.train.steps) == (None, None, 2500)
    for name in ("batch_size", "lr", "betas", "lrs", "weight_decay", "patience", "guard_keys", "max_abs"):
        assert getattr(default.train, name) == getattr(full.train, name), name
    differ = {k for k in vars(full) if k != "train" and getattr(full, k) != getattr(default, k)}
    assert differ <= REDUCED[method], differ


@pytest.mark.parametrize("method", sorted(GENERATIVE))
def test_each_table_is_built_by_the_rule(method):
    table, _ = GENERATIVE[method]
    reductions = {k: v for k, v in table["default"].items() if k != "train" and table["full"].get(k) != v}
    assert set(reductions) == REDUCED[method]
    assert table["default"] == derived_default(table["full"], **reductions)


def test_ce_keeps_its_own_default():
    assert CE_PRESETS["default"] == {}
    for kind in ("tabular", "image"):
        assert ce_config("default", kind) == CEConfig()


@pytest.mark.parametrize("value,factor,want", [(10_000, 0.1, 1000), (2500, 0.5, 1250), (3, 0.1, 1), (0, 0.5, 0),
                                               (None, 0.5, None), (25, 0.1, 2), (35, 0.1, 4)])
def test_scale_length_rounds_and_keeps_at_least_one(value, factor, want):
    assert scale_length(value, factor) == want


def test_scale_length_per_kind_and_per_dataset():
    assert scale_length(2500, PerKind(0.1, 0.5)) == PerKind(250, 1250)
    assert scale_length(PerKind(10_000, None), PerKind(0.1, 0.5)) == PerKind(1000, None)
    assert scale_length(PerDataset({"a": 100}, 40), 0.5) == PerDataset({"a": 50}, 20)


@pytest.mark.parametrize("value,factor,match", [(1.5, 0.5, "value"), (-1, 0.5, "value"), (True, 0.5, "value"),
                                                (10, 0.0, "factor"), (10, 2.0, "factor")])
def test_scale_length_refuses_bad_input(value, factor, match):
    with pytest.raises(ValueError, match=match):
        scale_length(value, factor)


def test_derived_default_refuses_a_train_reduction():
    with pytest.raises(ValueError, match="train"):
        derived_default({"train": {"steps": 10}}, train={"steps": 1})
