"""Diffusion Mel Refiner: conditional diffusion in mel space, its noise schedule and samplers.

Inference: ``Refiner.from_pretrained(path)`` (:mod:`canora.refiner.api`, torch) or, for an ONNX export,
:class:`canora.refiner.ort.OrtRefiner` (ONNX Runtime, no torch import); training:
:func:`canora.training.refiner.train_refiner` (imported lazily: inference never imports training code).
The names below are imported on first use, so ``canora.refiner.<torch-free module>`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "Refiner": "canora.refiner.api",
    "RefineResult": "canora.refiner.base",
    "RefinerConfig": "canora.refiner.config",
    "RefinerModel": "canora.refiner.model",
    "MelNormalizer": "canora.refiner.normalize",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'canora.refiner' has no attribute {name!r}")
    return getattr(importlib.import_module(_NAMES[name]), name)
