"""The one render step of a sung piece: refine it in the song's key at the singer's level, vocode it, bring it
back to the recording's level. Offline conversion (:meth:`canora.pipeline.Converter.render`) and streaming
(:class:`canora.streaming.StreamConverter`) both call :func:`render_sung`; ``canora refine`` (no vocoder) shares
its refine step, :meth:`canora.refiner.base.RefinerBase.refine_at_level`. Every vocoding of a conversion, sung or
not, goes through :func:`vocode_matched`: the vocoder, then :func:`canora.dsp.melmatch.mel_match` (``job.mel_match``
rounds) so the output's mel is the one the vocoder was given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from canora.dsp.melmatch import mel_match

if TYPE_CHECKING:
    from canora.conditioning import RefinerFeatures
    from canora.job import Job


def render_sung(refiner: Any, vocoder: Any, keyed: RefinerFeatures, gain_db: float, job: Job, f0: np.ndarray,
                start_phase: float, first_frame: int, *, seed: int | None = None,
                skip: int = 0, hold: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Render ``keyed`` (features of T frames, in key, moved ``gain_db`` to the singer's level) toward
    ``job.singer`` with the job's sampler settings (``seed``: the job's unless given) -> (audio of the frames
    ``[skip, T)``: ((T - skip) * hop,) float32 at the recording's level; the refined log-mel (n_mels, T) at the
    recording's level).

    ``f0`` ((T - skip,) Hz, 0 = unvoiced) drives the vocoder from its source phase ``start_phase`` (cycles) at the
    song's frame ``first_frame`` (its seeded noise follows the song's frames, so pieces join in phase); ``hold``:
    the last frames are look-ahead the caller drops (:func:`vocode_matched`)."""
    mel_level, mel = refiner.refine_at_level(keyed, gain_db, job.singer, sampler=job.sampler, steps=job.steps,
                                             strength=job.strength, seed=job.seed if seed is None else seed)
    audio = vocode_matched(vocoder, mel_level[:, skip:], f0, start_phase, first_frame, job.mel_match, hold)
    if gain_db != 0.0:  # refined and vocoded at the singer's level, brought back to the recording's
        audio = (audio * np.float32(10.0 ** (-gain_db / 20.0))).astype(np.float32)
    return audio, mel


def vocode_matched(vocoder: Any, mel: np.ndarray, f0: np.ndarray, start_phase: float, first_frame: int,
                   iters: int, hold: int = 0) -> np.ndarray:
    """``vocoder.vocode(mel, f0, start_phase, first_frame)`` (audio (T * hop,) float32 from ``mel`` (n_mels, T))
    put back on ``mel`` by ``iters`` rounds of :func:`canora.dsp.melmatch.mel_match` (0: as the vocoder made it);
    ``hold``: the last frames are look-ahead the caller drops, matched with the gains of the frame before them."""
    audio = vocoder.vocode(mel, f0, start_phase, first_frame)
    return mel_match(audio, mel, vocoder.spec, iters, hold=hold) if iters else audio
