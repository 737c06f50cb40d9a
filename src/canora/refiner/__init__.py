"""Diffusion Mel Refiner: conditional diffusion in mel space, its noise schedule and samplers.

Inference: ``Refiner.from_pretrained(path)`` (:mod:`canora.refiner.api`); training:
:func:`canora.training.refiner.train_refiner` (imported lazily: inference never imports training code).
"""

from canora.refiner.api import Refiner, RefineResult
from canora.refiner.model import RefinerConfig, RefinerModel
from canora.refiner.normalize import MelNormalizer

__all__ = ["MelNormalizer", "RefineResult", "Refiner", "RefinerConfig", "RefinerModel"]
