"""The methods' preset tables (``*_PRESETS``, read through ``ebm_ood.presets``).

The ``full`` presets are compared with values typed here from the papers' texts: Elflein et al. 2021,
App. B and C, and Lafon et al. 2023 (HEAT), App. B, each next to the sentence it comes from. Where a paper
is silent and a preset takes the authors' code's value, the value is typed from the authors' configs
(``selflein/EBM-OOD-Detection``, ``configs/model/*.yaml``).
"""
import inspect
import math
import re
from dataclasses import dataclass, field

import pytest
from torch import nn

from ebm_ood.heat import hybrid
from ebm_ood.heat.build import make_composition
from ebm_ood.heat.hybrid import HEAT_PRESETS, ResidualMLP, heat_config
from ebm_ood.methods import ce, contrastive_divergence, score_matching, vera
from ebm_ood.methods.ce import CE_PRESETS, ce_config
from ebm_ood.methods.contrastive_divergence import CD_PRESETS, cd_config
from ebm_ood.methods.flows import detector as flows
from ebm_ood.methods.flows.detector import FLOW_PRESETS, flow_config
from ebm_ood.methods.score_matching import SSM_PRESETS, ssm_config
from ebm_ood.methods.vera import VERA_PRESETS, make_generator, vera_config
from ebm_ood.presets import KINDS, PRESETS, PerKind, preset_config, preset_values
from ebm_ood.training import TrainConfig

ELFLEIN = {"ce": ce_config, "cd": cd_config, "ssm": ssm_config, "vera": vera_config, "flow": flow_config}
TABLES = {ce: CE_PRESETS, contrastive_divergence: CD_PRESETS, score_matching: SSM_PRESETS, vera: VERA_PRESETS,
          flows: FLOW_PRESETS, hybrid: HEAT_PRESETS}


# ------------------------------------------------------------------------------- Elflein et al., App. B / C
@pytest.mark.parametrize("method", ELFLEIN)
def test_full_presets_follow_elfleins_schedule(method):
    # "we use learning rate warm-up with 2500 steps across all models. We train the models on the tabular
    # datasets for 10,000 steps and the image datasets for 50 epochs."
    make = ELFLEIN[method]
    assert make("full", "tabular").train.steps == 10_000
    for kind in KINDS:
        assert make("full", kind).train.warmup == 2500
    # "Unless otherwise specified we use the Adam optimizer with default parameters β1 = 0.9 and β2 = 0.999"
    # (VERA specifies (0.0, 0.9), below)
    if method != "vera":
        assert tuple(make("full", "image").train.betas) == (0.9, 0.999)
    # epochs are counted as steps: the docstring must say how the 50 epochs were translated
    assert "50 epochs" in " ".join(inspect.getdoc(make).split())


def test_cd_full_preset_is_elflein_app_b():
    # "set the step size α to 1 and reinitialize samples from the replay buffer with probability 0.05. The size
    # of the buffer is set to 10000. [...] we set the number of SGLD steps to 100 [...] we set the initial
    # learning rate to 0.001. We add additive Gaussian noise with variance 0.1 to the inputs"
    for kind in KINDS:
        c = cd_config("full", kind)
        assert (c.step_size, c.reinit_prob, c.buffer_size, c.sgld_steps, c.train.lr) == (1, 0.05, 10000, 100, 0.001)
    assert math.isclose(cd_config("full", "image").data_noise_std ** 2, 0.1, rel_tol=1e-12)
    assert cd_config("full", "tabular").data_noise_std == 0  # the authors' fc_mcmc.yaml adds no noise (no sigma)


def test_vera_full_preset_is_elflein_app_b():
    # "initialize the variance of the variational approximation η with 0.1 and clamp it in the range
    # [0.01, 0.3]. [...] found 1e-4 [entropy regularizer] [...] the learning rate of the EBM to 3e-4 and the
    # learning rate of the generator to 6e-4. The Adam optimizer is used to optimize the generator with
    # parameters β1 = 0.0 and β2 = 0.9."
    for kind in KINDS:
        c = vera_config("full", kind)
        assert (c.eta_init, c.sigma_min, c.sigma_max, c.entropy_weight) == (0.1, 0.01, 0.3, 1e-4)
        assert (c.train.lr, c.train.lrs["gen"], tuple(c.train.betas)) == (3e-4, 6e-4, (0.0, 0.9))
        # the authors' fc_vera.yaml / img_vera.yaml: "post_lr: 0.00003", "pg_control: 0.1"
        assert (c.train.lrs["post"], c.grad_penalty) == (3e-5, 0.1)
    # "a 5-layer MLP for the tabular datasets with hidden dimension 100 [...] The latent distribution is a
    # 16-dim. isotropic Normal distribution. For the image datasets [...] latent dimension 128."
    assert vera_config("full", "image").latent_dim == 128
    g = make_generator((18,), vera_config("full", "tabular"))
    linears = [m for m in g.g.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 5 and linears[0].in_features == 16
    assert [m.out_features for m in linears[:-1]] == [100] * 4


def test_ssm_full_preset_is_elflein_app_b():
    # "We set the distribution p_v to a multivariate Rademacher distribution which enables to use the variance
    # reduced objective (SSM-VR) [...] we use a single projection vector v"
    for kind in KINDS:
        c = ssm_config("full", kind)
        assert (c.projection, c.variance_reduction, c.n_projections) == ("rademacher", True, 1)
    # no learning rate in the paper; the authors' fc_ssm.yaml and img_ssm.yaml: "learning_rate: 0.001" / "0.0001"
    assert (ssm_config("full", "tabular").train.lr, ssm_config("full", "image").train.lr) == (0.001, 0.0001)


def test_flow_full_preset_is_elflein_app_b_and_c():
    # "learning rate 1e-3. We perform early stopping based on the log-likelihood with patience 10."
    # App. C: "Glow [...] with L = 3 layers, K = 32 steps, and C = 512 channels [...] 20 stacked radial transforms"
    for kind in KINDS:
        c = flow_config("full", kind)
        assert (c.train.lr, c.train.patience) == (1e-3, 10)
        assert (c.glow.levels, c.glow.steps, c.glow.hidden, c.radial_layers) == (3, 32, 512, 20)


def test_ce_full_preset_is_elflein_app_b():
    # "learning rate 1e-3 on the tabular and 1e-4 on the image datasets. Further, we use weight decay with weight
    # 5e-4 and perform early stopping based on the accuracy of the model." (patience: fc_ce_baseline.yaml, 10)
    assert (ce_config("full", "tabular").train.lr, ce_config("full", "image").train.lr) == (1e-3, 1e-4)
    for kind in KINDS:
        assert (ce_config("full", kind).train.weight_decay, ce_config("full", kind).train.patience) == (5e-4, 10)


# ------------------------------------------------------------------------------------ HEAT, App. B
def test_heat_full_preset_is_heat_app_b():
    # "HEAT consists in a 6 layers MLP trained for 20 epochs with Adam with learning rate 5e-6. The network input
    # dimension is 512 [...] The hidden dimension is 1024 [...] For SGLD sampling, we use 20 steps with an
    # initial step size of 1e-4 linearly decayed to 1e-5 and an initial noise scale of 5e-3 linearly decayed
    # to 5e-4. We add a small Gaussian noise with std 1e-4 to each input [...] The L2 coefficient is set to 10."
    c = heat_config("full")
    assert (c.train.lr, c.train.warmup, c.sgld_steps, c.lam, c.input_noise) == (5e-6, 0, 20, 10, 1e-4)
    assert (c.step_size, c.step_end, c.noise_std, c.noise_end) == (1e-4, 1e-5, 5e-3, 5e-4)
    linears = [m for m in ResidualMLP(512, c.width, c.depth).modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 6 and [m.out_features for m in linears] == [1024] * 5 + [1]
    # §5: "we used β = 0 for HEAT in Tab. 5 and Tab. 4"
    assert inspect.signature(make_composition).parameters["beta"].default == 0
    assert "20 epochs" in " ".join(inspect.getdoc(heat_config).split())


# ------------------------------------------------------------------------------------ the tables themselves
@pytest.mark.parametrize("module", TABLES, ids=lambda m: m.__name__)
def test_every_full_value_names_its_source(module):
    """Each leaf value of a ``full`` preset carries a comment naming where it comes from."""
    src = inspect.getsource(module)
    name = next(n for n, t in vars(module).items() if t is TABLES[module])
    own = next((n for n, t in vars(module).items() if t is TABLES[module]["full"]), None)  # e.g. CD_FULL
    if own is not None:  # the full row is a module-level dict that the table (and its default) refer to
        full = src[src.index(f"{own} = {{"):]
        lines = full[:full.index("\n}")].splitlines()[1:]
    else:
        full = src[src.index(f"{name} = {{"):]
        full = full[full.index('"full": {'):]
        lines = full[:full.index("\n    },")].splitlines()[1:]
    leaf = re.compile(r'^\s*("\w+"|\w+)\s*[:=]')
    values = [ln for ln in lines if leaf.match(ln) and not ln.rstrip().endswith("(")]
    assert len(values) >= 5
    unsourced = [ln.strip() for ln in values
                 if not re.search(r"#.*(Elflein|HEAT|App\. [BC]|\.yaml|\.py|ours)", ln)]
    assert not unsourced, f"{name}: full values without a source comment: {unsourced}"
    assert set(TABLES[module]) == set(PRESETS)


@dataclass
class _Toy:
    train: TrainConfig = field(default_factory=TrainConfig)
    width: int = 7
    names: tuple = ()


_TABLE = {
    "quick": {"width": PerKind(tabular=1, image=2)},
    "default": {},
    "full": {"train": dict(steps=PerKind(tabular=10, image=20), lrs={"gen": 0.5}), "names": ("a", "b")},
}


def test_preset_values_resolve_per_kind_and_are_fresh_copies():
    assert preset_values(_TABLE, "quick", "tabular") == {"width": 1}
    assert preset_values(_TABLE, "quick", "image") == {"width": 2}
    got = preset_values(_TABLE, "full", "image")
    assert got == {"train": {"steps": 20, "lrs": {"gen": 0.5}}, "names": ("a", "b")}
    got["train"]["lrs"]["gen"] = 9.0
    assert _TABLE["full"]["train"]["lrs"] == {"gen": 0.5}
    assert preset_config(_Toy, _TABLE, "full", "tabular", train=TrainConfig) == \
        _Toy(train=TrainConfig(steps=10, lrs={"gen": 0.5}), names=("a", "b"))
    assert preset_config(_Toy, _TABLE, "default", "image", train=TrainConfig) == _Toy()
    a = vera_config("full", "image")
    a.train.lrs["gen"] = 1.0
    assert vera_config("full", "image").train.lrs["gen"] == 6e-4


def test_preset_lookup_errors_name_the_argument():
    with pytest.raises(ValueError, match="preset: expected 'quick', 'default' or 'full', got 'huge'"):
        preset_values(_TABLE, "huge", "image")
    with pytest.raises(ValueError, match="kind: expected 'tabular' or 'image', got 'text'"):
        cd_config("full", "text")
    with pytest.raises(ValueError, match=r"kind: the full\.train\.steps preset value differs .* got None"):
        preset_values(_TABLE, "full")
    with pytest.raises(KeyError, match="has no 'default' preset"):
        preset_values({"quick": {}, "full": {}}, "default", "image")
    with pytest.raises(TypeError, match="unexpected keyword argument 'lamda'"):
        heat_config("full", lamda=1.0)
