"""End-to-end conversion: source audio -> features -> refiner -> vocoder -> audio in the target voice.

``Converter.from_pretrained()`` loads the bundled default models (a refiner trained on the PJS singer and
an NSF-HiFi-GAN singing vocoder, both in ``canora/pretrained``), or the ones given. Long audio is cut at
silences into slices of at most ``max_slice_seconds`` (:mod:`canora.dsp.slicing`), each slice converted with
some context on both sides and the slices joined with complementary cross-fades, so memory stays bounded
whatever the length and no click or gap appears at the joins. The source's loudness envelope is then put
back on the result and its silences stay silent (:mod:`canora.dsp.envelope`).

The key (``transpose``) is chosen once per recording, so every slice of a song moves together.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from canora.errors import AudioError, CanoraError

log = logging.getLogger(__name__)

PRETRAINED = Path(__file__).resolve().parent / "pretrained"
DEFAULT_REFINER = PRETRAINED / "refiner"
DEFAULT_VOCODER = PRETRAINED / "vocoder"
#: a slice counts as sung when at least this many frames repeat at their F0 with this correlation
MIN_PERIODIC_FRAMES = 5
PERIODIC = 0.5


@dataclass
class Conversion:
    """The result of :meth:`Converter.convert`.

    ``audio`` (N,) float32 at ``sample_rate`` (N = the source length at that rate); ``source_mel`` and
    ``mel`` (n_mels, T) the source's and the refined log-mel; ``source_f0`` / ``f0`` (T,) Hz, 0 = unvoiced
    (``f0`` is the transposed F0 the vocoder was driven with); ``transpose`` in semitones; ``stats`` holds
    timing, slice counts and the mel cycle error of the vocoder on the refined mel.
    """

    audio: np.ndarray
    sample_rate: int
    source_mel: np.ndarray
    mel: np.ndarray
    source_f0: np.ndarray
    f0: np.ndarray
    transpose: float
    singer: str
    stats: dict[str, Any] = field(default_factory=dict)


def _check_models(refiner: Any, vocoder: Any) -> None:
    refiner.spec.require_same(
        vocoder.spec, f"the refiner {refiner.source or ''} and the vocoder {vocoder.source or ''}",
        "use a vocoder trained on the refiner's MelSpec (see `canora doctor`), or retrain one of them",
    )


class Converter:
    """A refiner plus a vocoder that share one :class:`~canora.dsp.mel.MelSpec` (checked when built)."""

    def __init__(self, refiner: Any, vocoder: Any) -> None:
        _check_models(refiner, vocoder)
        self.refiner = refiner
        self.vocoder = vocoder
        self.spec = refiner.spec

    @classmethod
    def from_pretrained(
        cls, refiner: str | Path | None = None, vocoder: str | Path | None = None, *, device: str = "cpu"
    ) -> Converter:
        """Load a refiner export and a vocoder (an export or an official checkpoint); None = the bundled one."""
        from canora.refiner import Refiner
        from canora.vocoder import Vocoder

        ref_path = Path(refiner) if refiner is not None else DEFAULT_REFINER
        voc_path = Path(vocoder) if vocoder is not None else DEFAULT_VOCODER
        for what, p, flag in (("refiner", ref_path, "--refiner"), ("vocoder", voc_path, "--vocoder")):
            if not p.exists():
                hint = "reinstall canora (the bundled models are missing)" if p.parent == PRETRAINED else \
                    f"pass an existing path with {flag}"
                raise CanoraError(f"{p}: {what} not found; {hint}")
        return cls(Refiner.from_pretrained(ref_path, device=device), Vocoder.from_pretrained(voc_path, device=device))

    @property
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    @property
    def singers(self) -> list[str]:
        return list(self.refiner.singers)

    # ------------------------------------------------------------------ conversion
    def convert(
        self,
        audio: np.ndarray,
        sr: int,
        *,
        singer: str | int | None = None,
        transpose: float = 0.0,
        auto_transpose: bool = False,
        sampler: str | None = None,
        steps: int | None = None,
        strength: float | None = None,
        seed: int = 0,
        max_slice_seconds: float = 30.0,
        progress: bool = False,
        on_progress: Callable[[float, str], None] | None = None,
        name: str = "audio",
    ) -> Conversion:
        """Convert mono ``audio`` (N,) at ``sr`` Hz toward ``singer``; see :class:`Conversion`.

        ``transpose`` semitones (or ``auto_transpose`` toward the singer's range, once for the whole
        recording); ``sampler`` / ``steps`` / ``strength`` default to the refiner's defaults. Audio with
        no voice at all converts to silence (logged), not to an error. ``progress`` shows tqdm bars;
        ``on_progress(fraction, what)`` is called as slices are done (for UIs).
        """
        from tqdm import tqdm

        from canora.dsp.envelope import match_envelope
        from canora.dsp.mel import wav_to_mel
        from canora.dsp.metrics import mel_cycle_error
        from canora.dsp.slicing import join, plan_slices
        from canora.io.audio import resample
        from canora.refiner.api import DEFAULT_SAMPLER, DEFAULT_STEPS, DEFAULT_STRENGTH, check_steps_strength

        t0 = time.perf_counter()
        singer_name = self.singers[self.refiner.singer_index(singer)]  # unknown singer: error before any work
        sampler = sampler or DEFAULT_SAMPLER
        steps = DEFAULT_STEPS if steps is None else int(steps)
        strength = DEFAULT_STRENGTH if strength is None else float(strength)
        check_steps_strength(steps, strength)
        from canora.refiner.samplers import available_samplers

        if sampler not in available_samplers():
            raise CanoraError(f"unknown sampler {sampler!r}; choose one of {', '.join(available_samplers())}")
        if auto_transpose and singer_name not in self.refiner.singer_f0_stats:
            raise CanoraError(f"the refiner has no F0 statistics for singer {singer_name!r}; use --transpose")
        if not math.isfinite(transpose):
            raise CanoraError(f"transpose must be a finite number of semitones, got {transpose!r}")
        if not math.isfinite(max_slice_seconds) or max_slice_seconds < 1.0:
            raise CanoraError(f"max_slice_seconds must be a number >= 1, got {max_slice_seconds!r}")
        if np.asarray(audio).dtype.kind != "f":
            raise AudioError(f"{name}: audio of dtype {np.asarray(audio).dtype}; give float samples in [-1, 1] "
                             "(e.g. int16 / 32768)")
        wav = np.asarray(audio, dtype=np.float32)
        if wav.ndim != 1:
            raise AudioError(f"{name}: expected mono audio (N,), got shape {wav.shape}")
        if not np.isfinite(wav).all():
            raise AudioError(f"{name}: audio holds NaN/inf samples")
        spec = self.spec
        hop = spec.hop_length
        wav = resample(wav, int(sr), spec.sample_rate)
        total = len(wav)
        if total < spec.n_fft:
            raise AudioError(f"{name}: {total / spec.sample_rate:.3f} s of audio is too short to convert")
        overlap = 4 * hop
        slices = plan_slices(wav, spec.sample_rate, hop=hop, max_seconds=max_slice_seconds, overlap=overlap)

        def report(done: int, what: str) -> None:
            if on_progress is not None:
                on_progress(done / (2 * len(slices)), what)

        # pass 1: features of every voiced slice (F0 for the key, mel as the shallow-diffusion source)
        feats: list[Any] = []
        for i, s in enumerate(tqdm(slices, desc=f"analyse {name}", unit="slice", disable=not progress, leave=False)):
            report(i, f"analysing slice {i + 1}/{len(slices)}")
            r0, r1 = s.region(overlap, total)
            feats.append(None if s.silent else self._features(wav[r0:r1], f"{name} [{r0 / spec.sample_rate:.1f} s]"))
        voiced_f0 = [f.f0[f.voiced] for f in feats if not (f is None or isinstance(f, str))]
        silent_file = not voiced_f0
        if silent_file:
            log.warning("%s: no voice found (no pitched frames); the conversion is silence", name)
            feats = [None] * len(slices)
            transpose, auto_transpose = 0.0, False
        if auto_transpose:
            from canora.dsp.pitch import F0Stats
            from canora.dsp.pitch import auto_transpose as auto_key

            stats = self.refiner.singer_f0_stats.get(singer_name)
            if stats is None:
                raise CanoraError(f"the refiner has no F0 statistics for singer {singer_name!r}; use --transpose")
            transpose = float(auto_key(np.concatenate(voiced_f0), F0Stats.from_dict(stats)))

        # one F0 track for the whole song (each slice's own frames, transposed; 0 = unvoiced or silent): it drives
        # an NSF vocoder, so neighbouring regions get the same F0 where they overlap, and its running sum gives
        # each region's start phase: pieces that meet inside a held note are in phase where they cross-fade
        ratio = 2.0 ** (transpose / 12.0)
        src_f0 = np.zeros(total // hop, np.float32)
        for s, f in zip(slices, feats):
            if f is not None and not isinstance(f, str):
                r0 = s.region(overlap, total)[0]
                a = (s.start - r0) // hop
                own = f.f0_with_zeros()[a: a + (s.end - s.start) // hop]
                src_f0[s.start // hop: s.start // hop + len(own)] = own
        song_f0 = (src_f0 * ratio).astype(np.float32)
        cycles = self.vocoder.frame_cycles(song_f0)

        # pass 2: refine and vocode slice by slice
        pieces, mels, src_mels, cycle = [], [], [], []
        for i, (s, f) in enumerate(tqdm(list(zip(slices, feats)), desc=f"convert {name}", unit="slice",
                                        disable=not progress, leave=False)):
            report(len(slices) + i, f"converting slice {i + 1}/{len(slices)}")
            r0, r1 = s.region(overlap, total)
            region = wav[r0:r1]
            if f is None:  # silent slice: nothing to convert
                n = spec.num_frames(len(region))
                src_mel = wav_to_mel(region, spec) if n > 0 else np.zeros((spec.n_mels, 0), np.float32)
                pieces.append(np.zeros(len(region), np.float32))
                mel = np.full_like(src_mel, spec.log_floor)
            a, b = (s.start - r0) // hop, (s.start - r0) // hop + (s.end - s.start) // hop  # the slice proper
            if f is not None:
                n = spec.num_frames(len(region))
                drive = song_f0[r0 // hop: r0 // hop + n]
                start_phase = float(cycles[r0 // hop] % 1.0)
                if isinstance(f, str):  # sound without pitch (breath, consonants): resynthesise as it is
                    src_mel = mel = wav_to_mel(region, spec)
                    pieces.append(self._vocode(mel, np.zeros(mel.shape[1], np.float32), start_phase))
                else:
                    res = self.refiner.refine_features(f, singer_name, transpose=transpose, sampler=sampler,
                                                       steps=steps, strength=strength, seed=seed)
                    src_mel, mel = f.mel, res.mel
                    drive = np.pad(drive, (0, max(0, mel.shape[1] - len(drive))))[: mel.shape[1]]
                    piece = self._vocode(mel, drive, start_phase)
                    pieces.append(piece)
                    err = mel_cycle_error(mel, piece, spec)
                    if math.isfinite(err):
                        cycle.append((err, mel.shape[1]))
            # keep the frames of the slice proper (without its context) for the whole-file mels
            for store, arr in ((src_mels, src_mel), (mels, mel)):
                store.append(arr[:, a:b])
        report(2 * len(slices), "done")
        out = join(pieces, slices, total, overlap)
        out = match_envelope(out, wav, hop=hop)
        out = np.clip(out, -1.0, 1.0).astype(np.float32)
        wall = time.perf_counter() - t0
        stats = {
            "slices": len(slices), "voiced_slices": sum(1 for f in feats if not (f is None or isinstance(f, str))),
            "seconds": total / spec.sample_rate, "wall_seconds": wall,
            "real_time_factor": wall / (total / spec.sample_rate),
            "mel_cycle_error": (sum(e * n for e, n in cycle) / sum(n for _, n in cycle)) if cycle else float("nan"),
            "sampler": sampler, "steps": steps, "strength": strength, "seed": seed, "silent": silent_file,
        }
        return Conversion(out, spec.sample_rate, np.concatenate(src_mels, axis=1), np.concatenate(mels, axis=1),
                          src_f0, song_f0, float(transpose), singer_name, stats)

    def _vocode(self, mel: np.ndarray, f0: np.ndarray, start_phase: float) -> np.ndarray:
        """(n_mels, T) + F0 (T,) -> (T * hop,); F0 and phase matter only to F0-driven vocoders."""
        if self.vocoder.needs_f0:
            return self.vocoder.vocode(mel, f0, start_phase=start_phase)
        return self.vocoder.vocode(mel)

    def _features(self, region: np.ndarray, name: str) -> Any:
        """Refiner features of a slice region, or ``"unvoiced"`` when it has sound but no pitch: no voiced
        frames, or fewer than :data:`MIN_PERIODIC_FRAMES` whose waveform repeats at the tracked F0 (F0
        trackers find "pitch" in noise; a periodicity check tells it from a sung note)."""
        from canora.dsp.pitch import periodicity

        try:
            feats = self.refiner.features(region, self.spec.sample_rate, name=name)
        except AudioError as e:
            if "no voiced frames" in str(e):
                return "unvoiced"
            raise
        p = periodicity(region, feats.f0_with_zeros(), self.spec.sample_rate, self.spec.hop_length)
        return feats if int((p > PERIODIC).sum()) >= MIN_PERIODIC_FRAMES else "unvoiced"

    def convert_file(self, path: str | Path, **kwargs: Any) -> Conversion:
        """:meth:`convert` of an audio file (any common format, rate and channel count)."""
        from canora.io.audio import read_audio

        wav, sr = read_audio(path)
        return self.convert(wav, sr, name=str(path), **kwargs)
