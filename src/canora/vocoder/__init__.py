"""Vocoders: mel -> waveform. :class:`Vocoder` is the inference facade (torch); see :mod:`canora.vocoder.hifigan`.
:class:`~canora.vocoder.ort.OrtVocoder` runs an ONNX export without torch.

``Vocoder`` is imported on first access, so the torch-free modules (:mod:`canora.vocoder.config`,
:mod:`canora.vocoder.excitation`, :mod:`canora.vocoder.ort`) load without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from canora.vocoder.api import Vocoder

__all__ = ["Vocoder"]


def __getattr__(name: str) -> Any:
    if name == "Vocoder":
        from canora.vocoder.api import Vocoder

        return Vocoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
