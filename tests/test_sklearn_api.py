"""scikit-learn conventions and self-documentation of every public class exported by ``ebm_ood``:
``inspect.signature`` / ``help`` show the real constructor parameters, ``sklearn.base.is_outlier_detector``
is true, ``score_samples == -score``, ``clone`` gives an unfitted copy, and every docstring has a
Parameters section, what the detector needs from the backbone and a runnable example."""
import doctest
import inspect
import pydoc
import re
from pathlib import Path

import numpy as np
import pytest
import sklearn.base
import torch

import ebm_ood
from ebm_ood.detector import Detector

PUBLIC = sorted(name for name in ebm_ood.__all__ if isinstance(getattr(ebm_ood, name), type))
DETECTORS = [n for n in PUBLIC if issubclass(getattr(ebm_ood, n), Detector)]

RNG = np.random.default_rng(0)
Z = RNG.normal(size=(60, 6)).astype(np.float32)
Y = np.arange(60) % 3
W, B = RNG.normal(size=(3, 6)), RNG.normal(size=3)
BB = ebm_ood.Backbone(features=torch.nn.Identity(), head=torch.nn.Linear(6, 3))
VECTORS = {   # one instance of each public vector detector, fitted on Z (labels when needed)
    "MSP": lambda: ebm_ood.MSP(), "MaxLogit": lambda: ebm_ood.MaxLogit(), "KNN": lambda: ebm_ood.KNN(k=5),
    "Mahalanobis": lambda: ebm_ood.Mahalanobis(), "SSDPlus": lambda: ebm_ood.SSDPlus(),
    "ViM": lambda: ebm_ood.ViM(W, B, dim=3), "DICE": lambda: ebm_ood.DICE(W, B), "ReAct": lambda: ebm_ood.ReAct(W, B),
    "ODIN": lambda: ebm_ood.ODIN(torch.nn.Linear(6, 3)),
    "FeatureSpaceDetector": lambda: ebm_ood.FeatureSpaceDetector(BB, ebm_ood.KNN(k=5)),
}


def test_the_public_api_has_detectors_to_check():
    assert {"MSP", "KNN", "ViM", "HEATDetector", "CDDetector", "FeatureSpaceDetector"} <= set(DETECTORS)


@pytest.mark.parametrize("name", PUBLIC)
def test_signature_and_help_show_the_constructor_parameters(name):
    cls = getattr(ebm_ood, name)
    init = list(inspect.signature(cls.__init__).parameters.values())[1:]
    shown = inspect.signature(cls)
    assert list(shown.parameters.values()) == init, (name, str(shown))
    assert not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in shown.parameters.values()) or \
        any(p.kind == p.VAR_KEYWORD for p in init)
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    assert f"{name}({', '.join(str(p) for p in init)})" in re.sub(r"\s+\|\s+", " ", text).replace("\n", " ") or \
        str(shown).strip("()") in text


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_class_documents_parameters_and_an_example(name):
    cls = getattr(ebm_ood, name)
    doc = inspect.getdoc(cls) or ""
    assert re.search(r"^Parameters\n-{10}", doc, re.M), f"{name}: no Parameters section"
    assert re.search(r"^Example\n-{7}", doc, re.M) and ">>> " in doc, f"{name}: no Example section"
    for p in list(inspect.signature(cls).parameters)[:6]:
        assert re.search(rf"^(\*\*)?{p} :", doc, re.M), f"{name}: parameter {p} undocumented"
    if issubclass(cls, Detector):
        assert re.search(r"^Needs\n-{5}", doc, re.M), f"{name}: no Needs section (what it needs from the backbone)"


@pytest.mark.parametrize("name", PUBLIC)
def test_every_docstring_example_runs(name):
    cls = getattr(ebm_ood, name)
    finder, runner = doctest.DocTestFinder(recurse=False), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = [t for t in finder.find(cls, name, globs={}) if t.examples]
    assert tests, f"{name}: no doctest example"
    for t in tests:
        runner.run(t)
    assert runner.failures == 0, f"{name}: its docstring example fails"


@pytest.mark.parametrize("name", DETECTORS)
def test_scikit_learn_sees_an_outlier_detector(name):
    cls = getattr(ebm_ood, name)
    det = VECTORS[name]() if name in VECTORS else cls.__new__(cls)
    assert sklearn.base.is_outlier_detector(det)
    tags = sklearn.utils.get_tags(det)
    assert tags.requires_fit and tags.target_tags.required == bool(getattr(det, "needs_labels", cls.needs_labels))


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_score_samples_is_minus_score_and_clone_is_unfitted(name):
    det = VECTORS[name]()
    det.fit(Z, Y if det.needs_labels else None)
    np.testing.assert_array_equal(det.score_samples(Z), -det.score(Z))
    twin = sklearn.base.clone(det)
    assert type(twin) is type(det) and repr(twin) == repr(det) and not getattr(twin, "fitted_", False)
    np.testing.assert_array_equal(twin.fit(Z, Y if det.needs_labels else None).score(Z), det.score(Z))


# ----------------------------------------------------------------------------- the README's API table
def _readme_api_table() -> list[str]:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split("## Your own model")[1].split("\n## ")[0]
    start = section.index("| class (parameters) |")
    return [line for line in section[start:].split("\n\n")[0].splitlines()[2:]]


@pytest.mark.parametrize("name", [n for n in DETECTORS if n not in ("Detector", "FeatureSpaceDetector")])
def test_every_public_detector_has_a_row_in_the_readme_api_table(name):
    rows = [r for r in _readme_api_table() if re.search(rf"`(ebm_ood\.)?{name}\b", r) or
            (name == "HEATDetector" and "make_heat_detector" in r)]
    assert rows, f"{name}: no row in README's API table"
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert len(cells) == 4 and cells[1] and cells[2] and cells[3].split()[0] in ("yes", "no"), rows[0]


def test_backbone_freezes_the_model_as_the_readme_says():
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3)).train()
    bb = ebm_ood.Backbone(model, features=model[:2], head=model[2])
    assert not model.training and not any(m.training for m in model.modules())
    grads = []
    model[0].register_forward_hook(lambda m, i, o: grads.append(torch.is_grad_enabled()))
    feats = bb.extract(Z)
    assert grads and not any(grads)
    again = ebm_ood.Backbone(model, features=model[:2], head=model[2]).extract(Z)
    np.testing.assert_array_equal(feats.z, again.z)                   # dropout off: deterministic


def test_fpr95_counts_id_as_positive_unlike_the_ood_positive_reading():
    from ebm_ood.metrics import fpr_at_tpr
    rng = np.random.default_rng(3)
    s_id, s_ood = rng.normal(0, 1, 400), rng.normal(1.5, 2, 300)
    ours = fpr_at_tpr(s_id, s_ood)
    assert ours == np.mean(s_ood <= np.quantile(s_id, 0.95))          # OOD called ID, 95 % of ID kept
    ood_positive = np.mean(s_id >= np.quantile(s_ood, 0.05))          # ID flagged, 95 % of OOD caught
    assert abs(ours - ood_positive) > 0.1
