"""Learned content encoders: what is sung (the words), without who sings it.

* :mod:`canora.content.config`: :class:`ContentNetConfig`, the encoder's sizes (torch-free);
* :mod:`canora.content.net`: the network as numpy (inference: no torch, no ONNX Runtime needed);
* :mod:`canora.content.model`: the same network in torch (training, ONNX export);
* :mod:`canora.content.learned`: :class:`LearnedContent`, registered as the ``"learned"`` content encoder of
  :func:`canora.dsp.content.get_content_encoder` once this package is imported (``canora.conditioning`` does).

Training lives in :mod:`canora.training.content` (``canora train-content``).
"""

from __future__ import annotations

from canora.content import learned as _learned  # noqa: F401 (registers "learned")
