"""Vocoders: mel -> waveform. :class:`Vocoder` is the inference facade; see :mod:`canora.vocoder.hifigan`."""

from canora.vocoder.api import Vocoder

__all__ = ["Vocoder"]
