"""scikit-learn conventions and self-documentation of every public class exported by ``ebm_ood``:
``inspect.signature`` / ``help`` show the real constructor parameters, ``sklearn.base.is_outlier_detector``
is true, ``score_samples == -score``, ``clone`` gives an unfitted copy, and every docstring has a
Parameters section, what the detector needs from the backbone and a runnable example."""
import doctest
import inspect
import pydoc
import re

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
