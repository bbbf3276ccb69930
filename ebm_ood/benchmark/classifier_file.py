"""Your own trained classifier in the benchmark: ``ebm-ood benchmark --classifier FILE.py:FUNCTION``.

``FUNCTION()`` in your Python file returns the trained model: an ``nn.Module`` whose ``forward`` gives
logits and which has ``feature_map`` (x -> (N, C, H, W)) or ``features`` (x -> (N, D)) and a linear
``head``, or a :class:`~ebm_ood.backbone.Backbone` built from your model's pieces. Loading runs your own
code (nothing is unpickled by us); load weights inside it with ``torch.load(..., weights_only=True)``.
The post-hoc detectors and HEAT then work on its features instead of the benchmark's CE classifier.
"""
from __future__ import annotations

import importlib.util
import os
from functools import lru_cache

from torch import nn

from ebm_ood.backbone import Backbone


@lru_cache(maxsize=4)
def load_classifier(spec: str):
    """``"path/to/file.py:function"`` → what ``function()`` returns (an ``nn.Module`` in eval mode, or a
    :class:`Backbone`), loaded once per process; each problem is an error naming ``--classifier``."""
    path, _, name = str(spec).rpartition(":")
    if not path or not name.isidentifier():
        raise ValueError(f"--classifier: expected FILE.py:FUNCTION, got {spec!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--classifier: file {path!r} not found")
    module_spec = importlib.util.spec_from_file_location(f"_ebm_ood_classifier_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    make = getattr(module, name, None)
    if not callable(make):
        raise ValueError(f"--classifier: {path} defines no function {name!r}")
    model = make()
    if isinstance(model, Backbone):
        return model
    if not isinstance(model, nn.Module):
        raise TypeError(f"--classifier: {name}() returned {type(model).__name__}; expected an nn.Module or a Backbone")
    return model.eval()
