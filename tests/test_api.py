"""The public API: what ``import ebm_ood`` gives, Backbone on any feature extractor (with one error listing
what a detector misses), and the scikit-learn conventions of every detector (clone, params, repr,
thresholded predict)."""
import ast
import warnings
from pathlib import Path

import types

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch import nn

import ebm_ood
from ebm_ood.backbone import Backbone, FeatureSpaceDetector
from ebm_ood.plumbing.errors import NotFittedError
from ebm_ood.metrics import fpr_at_tpr
from ebm_ood.nn import build_network, pooled_features
from ebm_ood.persist import load, save
from ebm_ood.posthoc import DICE, KNN, MSP, ODIN, MaxLogit, Mahalanobis, ReAct, SSDPlus, ViM

RNG = np.random.default_rng(0)
Z = RNG.normal(size=(60, 6)).astype(np.float32)
Y = np.arange(60) % 3
W, B = RNG.normal(size=(3, 6)), RNG.normal(size=3)
POSTHOC = {
    "KNN": lambda: KNN(k=7, batch_size=100), "Mahalanobis": lambda: Mahalanobis(reg=1e-3), "SSD+": SSDPlus,
    "MSP": MSP, "MaxLogit": MaxLogit, "ViM": lambda: ViM(W, B, dim=3), "DICE": lambda: DICE(W, B, percentile=80),
    "ReAct": lambda: ReAct(W, B), "ODIN": lambda: ODIN(nn.Linear(6, 3), device="cpu"),
}


def _data(det):
    return Z[:, :3] if det.input_kind == "logits" else Z


# ----------------------------------------------------------------------------- import ebm_ood
def _module_level_imports(path: Path) -> set[str]:
    """Modules imported when ``path`` is imported (statements outside functions; lazy imports excluded)."""
    found, todo = set(), list(ast.parse(path.read_text(encoding="utf-8")).body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))
    return found


def _import_closure(root: Path) -> set[str]:
    """Every ebm_ood module (and external top-level package) reached from ``import ebm_ood``."""
    def file_of(mod):
        rel = Path(*mod.split("."))
        for cand in (root / rel.with_suffix(".py"), root / rel / "__init__.py"):
            if cand.exists():
                return cand
        return None

    seen, todo = set(), ["ebm_ood"]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = file_of(mod)
        if path is None:
            continue
        parts = mod.split(".")
        parents = [".".join(parts[:i]) for i in range(1, len(parts))]   # importing a.b.c runs a and a.b
        for dep in _module_level_imports(path) | set(parents):
            if dep.startswith("ebm_ood") and file_of(dep) is not None:
                todo.append(dep)
            elif not dep.startswith("ebm_ood"):
                seen.add(dep.split(".")[0])
    return seen


def test_the_package_exports_its_api_and_stays_light():
    for name in ebm_ood.__all__:
        assert getattr(ebm_ood, name) is not None, name
    assert ebm_ood.KNN is KNN and ebm_ood.Backbone is Backbone and callable(ebm_ood.evaluate)
    assert ebm_ood.save is save and ebm_ood.load is load
    reached = _import_closure(Path(ebm_ood.__file__).resolve().parents[1])
    assert {"ebm_ood.backbone", "ebm_ood.persist", "ebm_ood.evaluation", "torch"} <= reached
    heavy = sorted(m for m in reached if m.startswith(("ebm_ood.commands.cli", "ebm_ood.commands.experiments", "matplotlib")))
    assert heavy == [], f"import ebm_ood pulls in {heavy}"


# ----------------------------------------------------------------------------- Backbone on any model
class SmallCNN(nn.Module):
    """A user's classifier: no .features / .feature_map / .head, the head is called fc."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def fmap(self, x):
        return self.conv(x).relu()

    def embed(self, x):
        return self.fmap(x).mean(dim=(2, 3))

    def forward(self, x):
        return self.fc(self.embed(x))


def _images(n=20):
    return RNG.uniform(-1, 1, size=(n, 1, 6, 6)).astype(np.float32)


def test_backbone_with_a_users_feature_map_and_head_matches_the_model():
    torch.manual_seed(0)
    model, x = SmallCNN(), _images()
    with torch.no_grad():
        fmap = model.fmap(torch.as_tensor(x)).double().numpy().reshape(len(x), 4, -1)
        logits = model(torch.as_tensor(x)).double().numpy()
    f = Backbone(model, feature_map=model.fmap, head=model.fc).extract(x)
    np.testing.assert_allclose(f.z, fmap.mean(2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f.z_std, fmap.std(2), rtol=1e-4, atol=1e-6)     # population std over H·W
    np.testing.assert_allclose(f.logits, logits, rtol=1e-5, atol=1e-6)
    g = Backbone(features=model.embed, head=lambda z: model.fc(z)).extract(x)   # callables only
    np.testing.assert_allclose(g.z, fmap.mean(2), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(g.z_std, np.zeros_like(g.z))
    np.testing.assert_allclose(g.logits, logits, rtol=1e-5, atol=1e-6)
    flat = Backbone(lambda a: a.flatten(1)).extract(x)                          # a plain encoder callable
    np.testing.assert_array_equal(flat.z, x.reshape(len(x), -1))
    assert flat.logits is None


def test_backbone_keeps_the_package_networks_bit_for_bit():
    torch.manual_seed(0)
    net, x = build_network((1, 8, 8), 3, widen=1), RNG.uniform(-1, 1, size=(10, 1, 8, 8)).astype(np.float32)
    bb = Backbone(net)
    assert Backbone(net, head=net.head).hash == bb.hash                        # a piece of the net: same pieces
    assert Backbone(net, feature_map=net.feature_map).hash == bb.hash
    z, s = pooled_features(net, torch.as_tensor(x))
    f = bb.extract(x)
    np.testing.assert_array_equal(f.z, z.numpy())
    np.testing.assert_array_equal(f.z_std, s.numpy())
    np.testing.assert_array_equal(f.logits, net.head(z).detach().numpy())


def test_one_error_lists_everything_a_detector_misses():
    model = SmallCNN()
    with pytest.raises(TypeError, match=r"^Backbone\(SmallCNN\): ViM needs a linear head \(its W and b\): pass "
                                        r"head=model\.fc \(an nn\.Linear\); and a feature extractor: pass features="):
        ViM.from_backbone(Backbone(model))
    with pytest.raises(TypeError, match=r"MSP needs a head mapping features to logits: pass head=\.\.\."):
        FeatureSpaceDetector(Backbone(features=model.embed), MSP(), which="logits")
    with pytest.raises(TypeError, match=r"DICE needs a linear head .*got a function"):
        DICE.from_backbone(Backbone(model, features=model.embed, head=lambda z: model.fc(z)))
    with pytest.raises(TypeError, match=r"KNN needs a feature map \(N, C, H, W\)"):
        FeatureSpaceDetector(Backbone(model, features=model.embed), KNN(), which="z_std")
    with pytest.raises(TypeError, match=r"Backbone: expected a network or a feature extractor"):
        Backbone()
    with pytest.raises(TypeError, match=r"head: expected a callable"):
        Backbone(model, head=3)
    with pytest.raises(ValueError, match=r"features: expected \(N, D\) features .*got shape \(20, 4, 6, 6\); "
                                         r"for a feature map \(N, C, H, W\) pass feature_map="):
        Backbone(model, features=model.fmap).extract(_images())
    holder = types.SimpleNamespace(model=model)                    # an object the fingerprint cannot read
    with pytest.raises(ValueError, match=r"cache_dir: .*features cannot be fingerprinted"):
        Backbone(features=lambda a: holder.model.embed(a), cache_dir="/tmp")
    w, b = Backbone(model, features=model.embed, head=nn.Linear(4, 3, bias=False)).weight_bias()
    assert w.shape == (3, 4) and np.array_equal(b, np.zeros(3))


def test_a_users_cnn_through_feature_space_detectors_matches_manual_features():
    torch.manual_seed(0)
    model, x = SmallCNN(), _images(40)
    bb = Backbone(model, feature_map=model.fmap, head=model.fc)
    y = np.arange(40) % 3
    with torch.no_grad():
        z = model.embed(torch.as_tensor(x)).numpy()
    vim = FeatureSpaceDetector(bb, ViM.from_backbone(bb, dim=2)).fit(x, y)
    ref = ViM(model.fc.weight.detach().numpy(), model.fc.bias.detach().numpy(), dim=2).fit(z)
    np.testing.assert_allclose(vim.score(x), ref.score(z), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- scikit-learn conventions
@pytest.mark.parametrize("name", sorted(POSTHOC))
def test_clone_gives_an_unfitted_detector_with_equal_params(name):
    torch.manual_seed(0)
    det = POSTHOC[name]()
    x = _data(det)
    det.fit(x, Y if det.needs_labels else None)
    twin = clone(det)
    assert type(twin) is type(det) and repr(twin) == repr(det) and twin is not det
    p, q = det.get_params(), twin.get_params()
    assert p.keys() == q.keys()
    for k in p:
        if isinstance(p[k], nn.Module):
            assert all(torch.equal(a, b) for a, b in zip(p[k].state_dict().values(), q[k].state_dict().values()))
        else:
            np.testing.assert_array_equal(p[k], q[k], err_msg=k)
    with pytest.raises(NotFittedError):
        twin.score(x)
    np.testing.assert_array_equal(twin.fit(x, Y if det.needs_labels else None).score(x), det.score(x))


def test_repr_lists_the_settings_that_differ_from_the_defaults():
    assert repr(KNN()) == "KNN()" and repr(KNN(k=10)) == "KNN(k=10)"
    assert repr(Mahalanobis(reg=0.5)) == "Mahalanobis(reg=0.5)"
    assert repr(ViM(W, B, dim=2)) == "ViM(weight=<array (3, 6)>, bias=<array (3,)>, dim=2)"
    bb = Backbone(features=lambda a: a)
    assert repr(FeatureSpaceDetector(bb, KNN(k=3), which="z")).startswith("FeatureSpaceDetector(backbone=")
    assert "inner=KNN(k=3)" in repr(FeatureSpaceDetector(bb, KNN(k=3)))


def test_set_params_rebuilds_validates_and_unfits():
    det = KNN(k=5).fit(Z)
    assert det.set_params(k=3) is det and det.k == 3 and repr(det) == "KNN(k=3)"
    with pytest.raises(NotFittedError):
        det.score(Z)
    np.testing.assert_array_equal(det.fit(Z).score(Z), KNN(k=3).fit(Z).score(Z))
    with pytest.raises(ValueError, match=r"kk: not a setting of KNN; valid: \['batch_size', 'device', 'k', 'normalize'\]"):
        det.set_params(kk=3)
    with pytest.raises(ValueError, match=r"k: expected an integer >= 1"):
        det.set_params(k=0)
    outer = FeatureSpaceDetector(Backbone(features=lambda a: a), KNN(k=5)).set_params(inner__k=2)
    assert outer.inner.k == 2 and outer.get_params()["inner__k"] == 2


def test_predict_flags_ood_at_the_id_quantile_threshold():
    rng = np.random.default_rng(1)
    train, id_val, ood = rng.normal(size=(200, 4)), rng.normal(size=(300, 4)), rng.normal(1.5, 1, size=(100, 4))
    det = KNN(k=10).fit(train)
    with pytest.raises(NotFittedError, match=r"set_threshold\(x_id, tpr=0.95\)"):
        det.predict(ood)
    s_id, s_ood = det.score(id_val), det.score(ood)
    det.set_threshold(id_val, tpr=0.95)
    assert det.threshold_ == np.quantile(s_id, 0.95)
    kept = ~det.predict(id_val)
    assert kept.mean() == 0.95 and np.array_equal(kept, s_id <= np.quantile(s_id, 0.95))
    flags = det.predict(ood)
    assert flags.dtype == bool and np.array_equal(flags, s_ood > np.quantile(s_id, 0.95))
    assert np.isclose(1 - flags.mean(), fpr_at_tpr(s_id, s_ood))               # the metrics' FPR95 convention
    with pytest.raises(ValueError, match=r"tpr: expected a fraction in \(0, 1\], got 95"):
        det.set_threshold(id_val, tpr=95)


# ----------------------------------------------------------------------------- the README's example
def test_the_readme_your_own_model_example_runs_verbatim(tmp_path, monkeypatch, capsys):
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split("<!-- your-own-model:start -->")[1].split("<!-- your-own-model:end -->")[0]
    code = section.split("```python\n")[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    scope = {"__name__": "readme_example"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(code, "README.md", "exec"), scope)
    # the example runs clean; only a machine without a C++ compiler may add the op's fallback notice
    caught = [w for w in caught if "fused SGLD op unavailable" not in str(w.message)]
    assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]
    out = capsys.readouterr().out
    assert "| KNN" in out and "| HEAT-GMM" in out and "noise flagged OOD:" in out and "HEAT-GMM fit:" in out
    knn, x_val = scope["knn"], scope["d"].x_val
    s_val = knn.score(x_val)
    assert np.array_equal(knn.predict(x_val), s_val > np.quantile(s_val, 0.95)) and (tmp_path / "knn.pt").exists()
    assert np.array_equal(scope["same"].score(x_val), knn.score(x_val))
