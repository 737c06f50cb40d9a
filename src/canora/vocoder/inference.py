"""What vocoding means apart from the network, without torch: the input checks and their one-line errors, the cut
of a long mel into pieces, and F0 from a bare mel. The torch :class:`~canora.vocoder.Vocoder` and
:class:`~canora.vocoder.ort.OrtVocoder` both use these, so they take and refuse the same inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from canora.errors import CanoraError, CheckpointError, MelError
from canora.vocoder.config import GeneratorConfig, NSFConfig

if TYPE_CHECKING:
    from canora.dsp.mel import MelSpec

#: mels longer than 1.5x this many frames are vocoded in pieces of at most this many (about 9 s at 22050 Hz / 256),
#: each with its generator's receptive field of context either side: the output is the same to float rounding,
#: and on a CPU the network's (channels x samples) activations stay in cache. A 30-s NSF slice measured 2.0x faster
#: in pieces of 646 frames than in one on two threads, 1.5x on one (``benchmarks/vocoder_speed.py --seconds 30``)
CHUNK_FRAMES = 768


def pieces(n_frames: int, chunk: int, context: int) -> list[tuple[int, int, int, int]]:
    """How to vocode ``n_frames`` frames: ``(a, b, lo, hi)`` per piece, whose output frames ``[a, b)`` come from
    the network run on frames ``[lo, hi)`` (``context`` frames more either side where there are any). Up to
    1.5 ``chunk`` frames make one piece; more make equal pieces of at most ``chunk`` frames."""
    if n_frames <= 1.5 * chunk:
        return [(0, n_frames, 0, n_frames)]
    count = -(-n_frames // chunk)
    size = -(-n_frames // count)
    return [(a, min(n_frames, a + size), max(0, a - context), min(n_frames, a + size + context))
            for a in range(0, n_frames, size)]


def check_fit(spec: MelSpec, config: GeneratorConfig | NSFConfig, source: str) -> None:
    """A :class:`CheckpointError` when a generator ``config`` does not fit the mel ``spec`` it comes with."""
    if config.hop_length != spec.hop_length:
        raise CheckpointError(f"{source}: generator upsamples by {config.hop_length} but the mel hop is "
                              f"{spec.hop_length}")
    if config.n_mels != spec.n_mels:
        raise CheckpointError(f"{source}: generator takes {config.n_mels} mels but the MelSpec has {spec.n_mels}")
    if isinstance(config, NSFConfig) and config.sample_rate != spec.sample_rate:
        raise CheckpointError(f"{source}: NSF source runs at {config.sample_rate} Hz but the MelSpec at "
                              f"{spec.sample_rate} Hz")


def check_mel(shape: tuple[int, ...], n_mels: int, finite: bool) -> bool:
    """Check a mel of ``shape`` (n_mels, T) or (B, n_mels, T), all ``finite``; -> True when unbatched."""
    if len(shape) not in (2, 3) or shape[-2] != n_mels:
        raise MelError(f"vocoder expects a mel of shape ({n_mels}, T), got {tuple(shape)}")
    if not finite:
        raise MelError("mel holds NaN/inf values; the vocoder would output garbage")
    return len(shape) == 2


def check_f0(shape: tuple[int, ...], mel_shape: tuple[int, ...], valid: bool) -> None:
    """Check a batched F0 of ``shape`` against the batched mel's (B, n_mels, T); ``valid``: finite and >= 0."""
    if tuple(shape) != (mel_shape[0], mel_shape[2]):
        raise MelError(f"F0 of shape {tuple(shape)} does not fit the mel {tuple(mel_shape)}: one value per frame")
    if not valid:
        raise MelError("F0 holds NaN/inf or negative values; give Hz with 0 at unvoiced frames")


def check_start_frame(start_frame: object) -> int:
    """``start_frame`` as a frame index >= 0, or a :class:`CanoraError`."""
    if isinstance(start_frame, bool) or not isinstance(start_frame, (int, np.integer)) or start_frame < 0:
        raise CanoraError(f"start_frame must be a frame index >= 0, got {start_frame!r}")
    return int(start_frame)


def f0_from_mel(mel: np.ndarray, spec: MelSpec, method: str | None = None) -> np.ndarray:
    """Estimate F0 (T,) Hz (0 = unvoiced) of a log-mel (n_mels, T): Griffin-Lim audio, then an F0 tracker.

    For NSF vocoders given a bare mel; the pipeline passes the F0 it extracted from the source instead.
    """
    from canora.dsp.pitch import DEFAULT_F0_METHOD, extract_f0
    from canora.dsp.spectral import griffin_lim

    wav = griffin_lim(np.asarray(mel, dtype=np.float32), spec)
    n = mel.shape[1]
    wav = np.pad(wav, (0, max(0, n * spec.hop_length - len(wav))))
    return extract_f0(wav, spec.sample_rate, hop_length=spec.hop_length, n_frames=n, method=method or DEFAULT_F0_METHOD)


def source_inputs(f0: Any, mels: Callable[[], np.ndarray], mel_shape: tuple[int, ...], spec: MelSpec,
                  start_frame: object) -> tuple[np.ndarray, int]:
    """An NSF vocoder's checked source inputs: (F0 (B, T) float32 Hz for the batched mel of ``mel_shape``
    (B, n_mels, T), estimated from ``mels()`` (B, n_mels, T) when ``f0`` is None; ``start_frame`` as an int)."""
    if f0 is None:
        f0 = np.stack([f0_from_mel(m, spec) for m in mels()])
    f = np.asarray(f0, dtype=np.float32)
    if f.ndim == 1:
        f = f[None]
    check_f0(f.shape, mel_shape, bool(np.isfinite(f).all() and not (f < 0).any()))
    return f, check_start_frame(start_frame)


def trained_singers(doc: dict[str, Any]) -> tuple[str, ...]:
    """The singers a vocoder export says it was trained on (``model.json["meta"]["singers"]``; () when it does not
    say): a conversion into one of them is left as the vocoder renders it (:func:`canora.job.mel_match_rounds`)."""
    singers = (doc.get("meta") or {}).get("singers") or ()
    return tuple(str(s) for s in singers) if isinstance(singers, (list, tuple)) else ()


class VocoderFacts:
    """What a vocoder tells about itself from its ``spec`` (:class:`~canora.dsp.mel.MelSpec`) and generator
    ``config``, the same for the torch :class:`~canora.vocoder.Vocoder` and :class:`~canora.vocoder.ort.OrtVocoder`."""

    spec: Any
    config: GeneratorConfig | NSFConfig

    @property
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    @property
    def needs_f0(self) -> bool:
        """True for an F0-driven (NSF) vocoder: call it with the F0 of the mel's frames."""
        return isinstance(self.config, NSFConfig)

