"""End-to-end conversion: source audio -> features -> refiner -> vocoder -> audio in the target voice.

``Converter.from_pretrained()`` loads the bundled default models (a refiner trained on the PJS singer and
an NSF-HiFi-GAN singing vocoder, both in ``canora/pretrained``), or the ones given. Long audio is cut at
silences into slices of at most ``max_slice_seconds`` (:mod:`canora.dsp.slicing`), each slice converted with
some context on both sides and the slices joined with complementary cross-fades, so memory stays bounded
whatever the length and no click or gap appears at the joins. The source's loudness envelope is then put
back on the result and its silences stay silent (:mod:`canora.dsp.envelope`).

The key (``transpose``) and the level (a gain that puts the song's voiced level on the singer's, so that a quiet
recording is not read as soft singing) are chosen once per recording, so every slice of a song moves together.
The stages are methods of :class:`Converter`: ``analyse`` (one STFT and one F0 track per slice region, and a
verdict: :class:`Silent`, :class:`Unsung` or :class:`Sung`), ``choose_key`` and ``choose_level`` (once per song),
``put_in_key`` (the one place F0 is transposed and the level moved), ``render`` (refine + vocode a region from
the song's F0 and the vocoder's phase) and ``assemble`` (cross-fades, envelope). The source is high-passed below the
lowest sung note before any analysis, and the output goes through :func:`canora.dsp.output.finish_output` (the same
high-pass as a guard, an optional loudness target, a true peak at or below -1 dBTP: never a clipped sample).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from canora.backends import (  # noqa: F401 (BACKEND_CHOICES, check_backend, onnx_available: re-exported)
    BACKEND_CHOICES,
    check_backend,
    on_onnx_runtime,
    onnx_available,
    resolve_backend,
)
from canora.dsp.level import full_scale_samples
from canora.dsp.loudness import LevelChoice
from canora.dsp.pitch import KeyChoice
from canora.errors import AudioError, CanoraError
from canora.io.models import BUNDLED
from canora.job import (  # noqa: F401 (MAX_*, WARN_TRANSPOSE, check_transpose, key_plan: re-exported)
    MAX_SEED,
    MAX_SLICE_SECONDS,
    MAX_TRANSPOSE,
    WARN_TRANSPOSE,
    Job,
    check_transpose,
    key_plan,
    mel_match_rounds,
    plan_job,
)
from canora.memory import release_free_memory
from canora.render import render_sung, vocode_matched

if TYPE_CHECKING:
    from canora.conditioning import RefinerFeatures
    from canora.dsp.slicing import Slice

log = logging.getLogger(__name__)

DEFAULT_REFINER = BUNDLED["refiner"]
DEFAULT_VOCODER = BUNDLED["vocoder"]
#: a slice counts as sung when at least this many frames repeat at their F0 with this correlation
MIN_PERIODIC_FRAMES = 5
PERIODIC = 0.5
#: what a recording with no sung note is called, everywhere it is reported
NO_VOICE = "no voice found (no sung, pitched note in it)"
#: neighbouring slices cross-fade over this many frames either side of their cut
CROSSFADE_FRAMES = 4
#: frames each slice is analysed, refined and vocoded beyond its cross-fade, then dropped: the models' convolutions
#: see zero padding at a region's edges, and two edge-distorted renders cross-faded lose up to 3 dB at the join
MARGIN_FRAMES = 8


@dataclass
class Conversion:
    """The result of :meth:`Converter.convert`.

    ``audio`` (N,) float32 at ``sample_rate`` (N = the source length at that rate); ``source_mel`` and
    ``mel`` (n_mels, T) the source's and the refined log-mel; ``source_f0`` / ``f0`` (T,) Hz, 0 = unvoiced
    (``f0`` is the transposed F0 the vocoder was driven with); ``transpose`` in semitones; ``stats`` holds
    timing, slice counts, the sampler settings, the source's samples at full scale (``source_full_scale_samples``),
    what the output stage did (``output``: :class:`canora.dsp.output.OutputLevel`) and, when asked for
    (``measure_cycle_error``), the mel cycle error of the vocoder on the refined mel (``mel_cycle_error``).
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


@dataclass(frozen=True)
class Region:
    """A slice (``cut``) with its context: samples ``[start, end)`` of the song. Slices start on the frame
    grid and the context is whole frames, so region frame ``k`` is song frame ``start // hop + k``."""

    cut: Slice
    start: int
    end: int

    def own_frames(self, hop: int) -> slice:
        """The region's frames that belong to the slice proper (without its context)."""
        a = (self.cut.start - self.start) // hop
        return slice(a, a + (self.cut.end - self.cut.start) // hop)


@dataclass(frozen=True)
class Silent:
    """A slice with nothing to convert (silence, or any slice of a file with no voice): it renders as
    silence. ``mel`` (n_mels, T) is the region's source log-mel."""

    mel: np.ndarray


@dataclass(frozen=True)
class Unsung:
    """Sound without pitch (breath, consonants, noise): no voiced frame, or too few that repeat at their F0.
    It is resynthesised as it is from ``mel`` (n_mels, T), the region's source log-mel, with F0 = 0."""

    mel: np.ndarray


@dataclass(frozen=True)
class Sung:
    """Singing: the refiner's conditioning of the region (``features``, T frames) and, once the song's key
    is chosen, the same in that key (``keyed``: F0 transposed, source mel shifted, and the level moved by
    ``gain_db``), which drives both the refiner and the vocoder. The refined mel is vocoded at that level (the
    vocoder renders the singer best at her own level) and the audio and mel are then moved back by ``gain_db``,
    so the output has the recording's level."""

    features: RefinerFeatures
    keyed: RefinerFeatures | None = None
    gain_db: float = 0.0

    @property
    def mel(self) -> np.ndarray:
        """The region's source log-mel (n_mels, T)."""
        return self.features.mel


#: What :meth:`Converter.analyse` finds in a slice.
SliceAnalysis = Silent | Unsung | Sung


@dataclass(frozen=True)
class Rendered:
    """One converted region: ``audio`` (samples,) float32, its ``source_mel`` and output ``mel`` (n_mels, T),
    and the vocoder's mel cycle error on it (None when not measured or not vocoded from a refined mel)."""

    audio: np.ndarray
    source_mel: np.ndarray
    mel: np.ndarray
    cycle_error: float | None = None


def song_f0(regions: list[Region], analyses: list[SliceAnalysis], total: int, hop: int, keyed: bool) -> np.ndarray:
    """One F0 track (total // hop,) float32 Hz for the whole song, 0 = unvoiced or not sung: each sung slice's
    own frames (without context), in the song's key when ``keyed``.

    The keyed track drives the vocoder: neighbouring regions get the same F0 where they overlap, and its
    running phase (:meth:`Vocoder.frame_cycles`) gives each region's start phase.
    """
    out = np.zeros(total // hop, np.float32)
    for r, a in zip(regions, analyses):
        if isinstance(a, Sung):
            feats = a.keyed if keyed else a.features
            own = feats.f0_with_zeros()[r.own_frames(hop)]
            out[r.cut.start // hop: r.cut.start // hop + len(own)] = own
    return out


def _song_mel(regions: list[Region], mels: list[np.ndarray], hop: int) -> np.ndarray:
    """The whole song's (n_mels, total // hop) mel from each region's (n_mels, T) mel without its context."""
    return np.concatenate([m[:, r.own_frames(hop)] for r, m in zip(regions, mels)], axis=1)


class _Progress:
    """tqdm bars (when ``show``) and ``on_progress(fraction, what)`` calls over the two passes of a conversion
    (analyse, then convert: ``2 * n`` steps for ``n`` slices)."""

    def __init__(self, n: int, name: str, show: bool, on_progress: Callable[[float, str], None] | None) -> None:
        self.n, self.name, self.show, self.on_progress = n, name, show, on_progress

    def report(self, done: int, what: str) -> None:
        if self.on_progress is not None:
            self.on_progress(done / (2 * self.n), what)

    def over(self, items: list[Any], desc: str, verb: str, offset: int) -> Iterator[Any]:
        """``items`` one by one, reporting ``"<verb> slice i/n"`` before each."""
        from tqdm import tqdm

        for i, item in enumerate(tqdm(items, desc=f"{desc} {self.name}", unit="slice", disable=not self.show,
                                      leave=False)):
            self.report(offset + i, f"{verb} slice {i + 1}/{self.n}")
            yield item

    def map(self, fn: Callable[[Any], Any], items: list[Any], desc: str, verb: str, offset: int,
            workers: int) -> list[Any]:
        """``[fn(item) for item in items]``, ``workers`` items at once (threads), in order, with progress."""
        if workers <= 1:
            return [fn(item) for item in self.over(items, desc, verb, offset)]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers, thread_name_prefix="canora-slice") as pool:
            futures = [pool.submit(fn, item) for item in items]
            try:
                return [f.result() for f in self.over(futures, desc, verb, offset)]
            finally:
                for f in futures:
                    f.cancel()


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` (None: unchanged) for the block, then restored."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _mean_cycle_error(pieces: list[Rendered]) -> float:
    """Mean mel cycle error over the measured pieces, weighted by frames (NaN when none was measured)."""
    measured = [(p.cycle_error, p.mel.shape[1]) for p in pieces if p.cycle_error is not None]
    measured = [(e, n) for e, n in measured if math.isfinite(e)]
    if not measured:
        return float("nan")
    return sum(e * n for e, n in measured) / sum(n for _, n in measured)


def _check_models(refiner: Any, vocoder: Any) -> None:
    refiner.spec.require_same(
        vocoder.spec, f"the refiner {refiner.source or ''} and the vocoder {vocoder.source or ''}",
        "use a vocoder trained on the refiner's MelSpec (see `canora doctor`), or retrain one of them",
    )


class Converter:
    """A refiner plus a vocoder that share one :class:`~canora.dsp.mel.MelSpec` (checked when built)."""

    def __init__(self, refiner: Any, vocoder: Any, singer: str | None = None) -> None:
        _check_models(refiner, vocoder)
        self.refiner = refiner
        self.vocoder = vocoder
        self.spec = refiner.spec
        self.default_singer = singer  # the singer convert() uses when given none (a voice's own)

    @classmethod
    def from_pretrained(
        cls, refiner: str | Path | None = None, vocoder: str | Path | None = None, *, device: str = "cpu",
        backend: str | None = None, voice: str | Path | None = None,
    ) -> Converter:
        """Load a refiner export and a vocoder (an export or an official checkpoint); None or ``"bundled"``: the
        bundled one.

        ``backend`` goes to both loaders: ``None`` runs ONNX exports (``canora export``) on ONNX Runtime and
        torch models on torch, ``"onnx"`` runs both models on ONNX Runtime (torch models are exported in memory
        first), ``"torch"`` runs torch models only. When both are ONNX exports, torch is never imported."""
        from canora.backends import open_refiner, open_vocoder

        singer = None
        if voice is not None:  # a voice by name or folder: its refiner, vocoder and singer (canora voices)
            from canora.io.voices import resolve_voice

            v = resolve_voice(voice)
            if refiner is not None or vocoder is not None:
                raise CanoraError(f"voice {voice!r} brings its own models; pass either voice= or refiner=/vocoder=")
            refiner, vocoder, singer = v.refiner, v.vocoder, v.singer
        return cls(open_refiner(refiner, device=device, backend=backend),
                   open_vocoder(vocoder, device=device, backend=backend), singer)

    def with_backend(self, backend: str = "auto") -> Converter:
        """This converter with its torch models on ONNX Runtime, which measured 1.5x faster than torch per
        streaming block on one CPU thread (``benchmarks/streaming.py --backends torch onnx``). ``"auto"``: ONNX
        Runtime when the models run on the CPU and the ``onnx`` extra is installed, else as they are;
        ``"torch"``: as they are; ``"onnx"``: ONNX Runtime or an error. A model loaded from a path goes through
        its kept ONNX copy (:func:`canora.backends.onnx_copy`: exported the first time, tens of seconds; later
        runs load it without torch); one built in memory is exported in memory (graphs cached,
        :func:`canora.io.onnx.cache_dir`)."""
        if resolve_backend(backend, [m.device.type for m in (self.refiner, self.vocoder)]) != "onnx":
            return self
        ref, voc = self.refiner, self.vocoder
        if "torch" not in (ref.backend, voc.backend):
            return self
        log.info("running the models on ONNX Runtime (the first time, exporting them takes some tens of seconds; "
                 "the copies are kept for later runs)")
        ref, voc = on_onnx_runtime(ref, "refiner"), on_onnx_runtime(voc, "vocoder")
        return Converter(ref, voc, self.default_singer)

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
        transpose: float | None = None,
        auto_transpose: bool | None = None,
        key_mode: str = "octave",
        sampler: str | None = None,
        steps: int | None = None,
        strength: float | None = None,
        seed: int = 0,
        max_slice_seconds: float = 30.0,
        progress: bool = False,
        on_progress: Callable[[float, str], None] | None = None,
        name: str = "audio",
        measure_cycle_error: bool = False,
        workers: int | None = None,
        match_level: bool = True,
        loudness: float | None = None,
        source_full_scale: int | None = None,
        no_voice: str = "silence",
        mel_match: int | None = None,
    ) -> Conversion:
        """Convert mono ``audio`` (N,) at ``sr`` Hz toward ``singer``; see :class:`Conversion`.

        The key: without ``transpose`` the song is moved toward the singer's range, once for the whole recording
        (:meth:`choose_key`): whole octaves with ``key_mode="octave"``, the default, so the key is kept; any
        semitone with ``"free"``. The choice and its reason land in ``stats["key"]``. A refiner with no stored
        range for the singer converts in the source's key (logged). ``transpose=N`` shifts by N semitones instead
        (0: the pitch as sung); ``auto_transpose=True`` asks for the automatic key explicitly (then the singer's
        range is required). The level: with ``match_level`` (the default) the refiner sees the song as if recorded
        at the singer's usual voiced level (:meth:`choose_level`, ``stats["level"]``; the output keeps the source's
        own loudness envelope); a refiner that stores no level for the singer sees the recording's own level.
        The output: DC and rumble removed, its true peak at or below -1 dBTP (a plain gain of up to 3 dB, then a
        look-ahead limiter; ``stats["output"]``), and with ``loudness`` (LUFS, -50 to -5) one gain to that
        integrated loudness (ITU-R BS.1770-4) first. ``sampler`` / ``steps`` /
        ``strength`` default to the refiner's defaults. ``source_full_scale``: the recording's samples at full scale
        when ``audio`` was resampled already (:func:`canora.io.audio.decode` counts them at the file's own rate);
        None: counted on ``audio``. ``no_voice``: what audio with no voice at all gives, ``"silence"`` (the default:
        silence, with a warning) or ``"error"`` (one :class:`~canora.errors.AudioError`, nothing rendered).
        ``mel_match``: rounds of :func:`canora.dsp.melmatch.mel_match` after every vocoding (0: the vocoder's output
        as it is; None: :func:`canora.job.mel_match_rounds` decides, none for a singer the vocoder was trained on;
        ``stats["mel_match"]``). ``progress`` shows tqdm bars;
        ``on_progress(fraction, what)`` is called as slices are done (for UIs). ``measure_cycle_error``
        adds the vocoder's mel cycle error to ``stats`` (one more mel of every sung slice's output).
        ``workers`` slices are analysed and rendered at once, each on ``threads // workers`` threads (torch's
        threads, or ONNX Runtime's :func:`canora.io.onnx.default_threads` with sessions of that many threads; default:
        one slice per thread, at most one per slice; both models on the CPU on one backend, else one): on two idle
        cores, two slices on one thread each measured 1.07x faster in-process and 1.16x
        for the whole command than one slice on two threads, and about 2x with another job on one of the cores
        (``benchmarks/convert_speed.py``, ``convert_memory.py``). The output differs from one worker's by float
        rounding only.

        Stages: :meth:`analyse` every slice (once), :meth:`choose_key` for the song, :meth:`put_in_key`
        (F0 transposed once), :meth:`render` every slice (refine + vocode), :meth:`assemble` the pieces.
        """
        from canora.dsp.output import check_loudness, finish_output

        if no_voice not in ("silence", "error"):
            raise CanoraError(f"no_voice must be 'silence' or 'error', got {no_voice!r}")
        t0 = time.perf_counter()
        job = self._job(singer, sampler, steps, strength, seed, transpose, auto_transpose, max_slice_seconds, key_mode)
        rounds, why = mel_match_rounds(mel_match, job.singer, getattr(self.vocoder, "singers", ()))
        job = replace(job, match_level=bool(match_level), loudness=check_loudness(loudness), mel_match=rounds)
        clipped = full_scale_samples(audio) if source_full_scale is None else int(source_full_scale)
        wav = self._prepare(audio, sr, name, clipped)
        spec, hop, total = self.spec, self.spec.hop_length, len(wav)
        overlap, context = CROSSFADE_FRAMES * hop, (CROSSFADE_FRAMES + MARGIN_FRAMES) * hop
        slices, regions = self._regions(wav, max_slice_seconds)
        bar = _Progress(len(regions), name, progress, on_progress)
        workers, threads = self._workers(workers, len(regions))
        analyses = self._analyse_regions(wav, regions, name, bar, workers, threads)
        silent_file = not any(isinstance(a, Sung) for a in analyses)
        if silent_file:
            if no_voice == "error":
                raise AudioError(f"{name}: {NO_VOICE}; nothing to convert")
            log.warning("%s: %s; the conversion is silence", name, NO_VOICE)
            analyses = [Silent(a.mel) for a in analyses]
        choice = None
        if silent_file:
            key = 0.0
        elif job.auto_key:
            choice = self.choose_key(analyses, job.singer, job.key_mode)
            key = float(choice.semitones)
        else:
            key = job.transpose
        level = None if silent_file or not job.match_level else self.choose_level(analyses, job.singer)
        gain = level.gain_db if level is not None else 0.0
        analyses = [self.put_in_key(a, key, gain) for a in analyses]
        drive = song_f0(regions, analyses, total, hop, keyed=True)
        cycles = self.vocoder.frame_cycles(drive)  # the vocoder's source phase at every frame of the song

        with self._on_threads(threads) as conv:
            def render(ra: tuple[Region, SliceAnalysis]) -> Rendered:
                try:
                    return conv.render(ra[0], ra[1], drive, cycles, job, measure_cycle_error)
                finally:
                    release_free_memory()

            pieces = bar.map(render, list(zip(regions, analyses)), "convert", "converting", len(regions), workers)
        bar.report(2 * len(regions), "done")
        out = self.assemble([p.audio for p in pieces], slices, wav, overlap, context)
        out, output = finish_output(out, spec.sample_rate, loudness=job.loudness)
        wall = time.perf_counter() - t0
        stats: dict[str, Any] = {
            "slices": len(slices), "voiced_slices": sum(isinstance(a, Sung) for a in analyses), "workers": workers,
            "seconds": total / spec.sample_rate, "wall_seconds": wall,
            "real_time_factor": wall / (total / spec.sample_rate),
        }
        if measure_cycle_error:
            stats["mel_cycle_error"] = _mean_cycle_error(pieces)
        stats.update({"sampler": job.sampler, "steps": job.steps, "strength": job.strength, "seed": job.seed,
                      "mel_match": job.mel_match, "mel_match_reason": why, "silent": silent_file,
                      "source_full_scale_samples": clipped,
                      "backend": {"refiner": self.refiner.backend, "vocoder": self.vocoder.backend},
                      "output": output.to_dict()})
        if choice is not None:
            stats["key"] = choice.to_dict()
        if job.key_note:
            stats["key_note"] = job.key_note
        if level is not None:
            stats["level"] = level.to_dict()
        return Conversion(
            out, spec.sample_rate, _song_mel(regions, [p.source_mel for p in pieces], hop),
            _song_mel(regions, [p.mel for p in pieces], hop), song_f0(regions, analyses, total, hop, keyed=False),
            drive, float(key), job.singer, stats,
        )

    def _regions(self, wav: np.ndarray, max_slice_seconds: float) -> tuple[list[Any], list[Region]]:
        """(slices of ``wav`` (N,) at the models' rate, each slice's region: the slice plus its cross-fade and
        margin)."""
        from canora.dsp.slicing import plan_slices

        hop = self.spec.hop_length
        overlap, context = CROSSFADE_FRAMES * hop, (CROSSFADE_FRAMES + MARGIN_FRAMES) * hop
        slices = plan_slices(wav, self.spec.sample_rate, hop=hop, max_seconds=max_slice_seconds, overlap=overlap)
        return slices, [Region(s, *s.region(context, len(wav))) for s in slices]

    def _analyse_regions(
        self, wav: np.ndarray, regions: list[Region], name: str, bar: _Progress, workers: int, threads: int | None,
    ) -> list[SliceAnalysis]:
        """:meth:`analyse` of every region of ``wav``, ``workers`` at a time on ``threads`` threads each."""
        with self._on_threads(threads) as conv:
            def analyse(r: Region) -> SliceAnalysis:
                where = f"{name} [{r.start / self.spec.sample_rate:.1f} s]"
                try:
                    return conv.analyse(wav[r.start: r.end], r.cut.silent, where)
                finally:
                    release_free_memory()  # a long song's memory is its results, not every slice's leftovers

            return bar.map(analyse, regions, "analyse", "analysing", 0, workers)

    def _workers(self, workers: int | None, slices: int) -> tuple[int, int | None]:
        """(slices converted at once, threads for each, None = unchanged) for ``workers`` (None: auto: one slice per
        thread, at most one per slice). Both models on the CPU on torch (torch's threads) or both on ONNX Runtime
        (:func:`canora.io.onnx.default_threads`); else one slice at a time."""
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer))
                                    or workers < 1):
            raise CanoraError(f"workers must be a whole number >= 1, got {workers!r}")
        models = (self.refiner, self.vocoder)
        on_cpu = all(m.device.type == "cpu" for m in models)
        backends = {m.backend for m in models}
        if not on_cpu or len(backends) != 1 or slices < 2 or workers == 1:
            return 1, None
        if backends == {"torch"}:
            import torch

            threads = torch.get_num_threads()
        else:
            from canora.io.onnx import default_threads

            threads = default_threads()
        n = min(threads if workers is None else int(workers), slices)
        return (n, max(1, threads // n)) if n > 1 else (1, None)

    @contextlib.contextmanager
    def _on_threads(self, threads: int | None) -> Iterator[Converter]:
        """The converter whose models run ``threads`` intra-op threads per call (None: this one as it is): torch's
        thread count for the block, or ONNX Runtime sessions of that many threads (:meth:`OrtRefiner.with_threads`)."""
        if threads is None or self.refiner.backend != "onnx":
            with _torch_threads(threads):
                yield self
            return
        yield Converter(self.refiner.with_threads(threads), self.vocoder.with_threads(threads), self.default_singer)

    def _job(
        self, singer: str | int | None, sampler: str | None, steps: int | None, strength: float | None, seed: int,
        transpose: float | None, auto_transpose: bool | None, max_slice_seconds: float, key_mode: str = "octave",
    ) -> Job:
        """:func:`canora.job.plan_job` for this converter's refiner (its voice's singer by default)."""
        return plan_job(self.refiner, self.default_singer if singer is None else singer, sampler=sampler, steps=steps,
                        strength=strength, seed=seed, transpose=transpose, auto_transpose=auto_transpose,
                        max_slice_seconds=max_slice_seconds, key_mode=key_mode)

    def _prepare(self, audio: np.ndarray, sr: int, name: str, clipped: int | None = None) -> np.ndarray:
        """Checked mono float ``audio`` (N,) at ``sr`` -> (N',) float32 at the models' rate, high-passed at
        :data:`~canora.dsp.filters.HIGHPASS_HZ` (no DC or rumble reaches the analysis or the envelope); ``clipped``:
        its samples at full scale (None: counted here), warned about."""
        from canora.dsp.filters import highpass
        from canora.io.audio import resample

        if np.asarray(audio).dtype.kind != "f":
            raise AudioError(f"{name}: audio of dtype {np.asarray(audio).dtype}; give float samples in [-1, 1] "
                             "(e.g. int16 / 32768)")
        wav = np.asarray(audio, dtype=np.float32)
        if wav.ndim != 1:
            raise AudioError(f"{name}: expected mono audio (N,), got shape {wav.shape}")
        if not np.isfinite(wav).all():
            raise AudioError(f"{name}: audio holds NaN/inf samples")
        if isinstance(sr, bool) or not isinstance(sr, (int, np.integer, float)) or not 1000 <= sr <= 1_000_000 \
                or sr != int(sr):
            raise AudioError(f"{name}: sample rate {sr!r} Hz is not a whole number of Hz in 1000..1000000")
        clipped = full_scale_samples(wav) if clipped is None else clipped
        if clipped:
            log.warning("%s: %d samples (%.2f %%) are at full scale: the recording clips there, and the conversion "
                        "follows the distorted sound (re-record or re-export it with headroom if you can)",
                        name, clipped, 100 * clipped / len(wav))
        wav = resample(wav, int(sr), self.spec.sample_rate)
        if len(wav) < self.spec.n_fft:
            raise AudioError(f"{name}: {len(wav) / self.spec.sample_rate:.3f} s of audio is too short to convert")
        return highpass(wav, self.spec.sample_rate)

    # ------------------------------------------------------------------ stages
    def analyse(self, region: np.ndarray, silent: bool, name: str) -> SliceAnalysis:
        """One pass over a slice region (N,) at the models' rate: its STFT, mel and, unless ``silent``, F0;
        then the refiner's conditioning when it is sung. Sung means voiced frames of which at least
        :data:`MIN_PERIODIC_FRAMES` repeat at the tracked F0 (F0 trackers find "pitch" in noise; a
        periodicity check tells it from a sung note)."""
        from canora.conditioning import analyse, features_from, source_f0
        from canora.dsp.pitch import periodicity

        spec, params = self.spec, self.refiner.feature_params
        if spec.num_frames(len(region)) == 0:
            return Silent(np.zeros((spec.n_mels, 0), np.float32))
        analysis = analyse(region, spec)
        if silent:
            return Silent(analysis.mel)
        f0 = source_f0(analysis, params)
        if not (f0 > 0).any():
            return Unsung(analysis.mel)
        feats = features_from(analysis, params, f0, name)
        p = periodicity(region, feats.f0_with_zeros(), spec.sample_rate, spec.hop_length)
        return Sung(feats) if int((p > PERIODIC).sum()) >= MIN_PERIODIC_FRAMES else Unsung(analysis.mel)

    def song_key(
        self, audio: np.ndarray, sr: int, *, singer: str | int | None = None, key_mode: str = "octave",
        auto_transpose: bool | None = None, max_slice_seconds: float = 30.0, workers: int | None = None,
        name: str = "audio",
    ) -> KeyChoice | None:
        """The automatic key of a whole recording (N,) at ``sr`` for ``singer``, as :meth:`convert` chooses it
        without a ``transpose`` (its analysis stage only): for a streamed conversion of a file, which can look at
        the whole song before the first block (the same slices and analysis as :meth:`convert` with the same
        ``max_slice_seconds``). None when nothing in it is sung, or when the refiner stores no pitch range for the
        singer (an error instead with ``auto_transpose=True``)."""
        job = self._job(singer, None, None, None, 0, None, auto_transpose, max_slice_seconds, key_mode)
        if not job.auto_key:  # no range stored: nothing to analyse for
            return None
        return self.song_choices(audio, sr, singer=singer, key_mode=key_mode, auto_transpose=auto_transpose,
                                 max_slice_seconds=max_slice_seconds, workers=workers, name=name)[0]

    def song_choices(
        self, audio: np.ndarray, sr: int, *, singer: str | int | None = None, transpose: float | None = None,
        key_mode: str = "octave", auto_transpose: bool | None = None, max_slice_seconds: float = 30.0,
        workers: int | None = None, name: str = "audio",
    ) -> tuple[KeyChoice | None, LevelChoice | None]:
        """(:meth:`song_key`, the level :meth:`convert` chooses with ``match_level``) of a whole recording (N,) at
        ``sr``, from one analysis pass; each None when it does not apply (the key: with a given ``transpose``)."""
        job = self._job(singer, None, None, None, 0, transpose, auto_transpose, max_slice_seconds, key_mode)
        wav = self._prepare(audio, sr, name)
        _, regions = self._regions(wav, max_slice_seconds)
        workers, threads = self._workers(workers, len(regions))
        analyses = self._analyse_regions(wav, regions, name, _Progress(len(regions), name, False, None), workers,
                                         threads)
        if not any(isinstance(a, Sung) for a in analyses):
            return None, None
        key = self.choose_key(analyses, job.singer, job.key_mode) if job.auto_key else None
        return key, self.choose_level(analyses, job.singer)

    def choose_key(self, analyses: list[SliceAnalysis], singer: str, mode: str = "octave") -> KeyChoice:
        """The song's automatic key: the refiner's choice for the voiced frames of all sung slices together
        (one key per song), in ``mode`` (whole octaves or free)."""
        return self.refiner.choose_key([a.features for a in analyses if isinstance(a, Sung)], singer, mode)

    def choose_level(self, analyses: list[SliceAnalysis], singer: str) -> LevelChoice | None:
        """The song's level: the gain that puts the voiced frames of all sung slices together (one gain per song)
        on ``singer``'s stored level; None when the refiner stores none (logged) or nothing is sung."""
        choice = self.refiner.choose_level([a.features for a in analyses if isinstance(a, Sung)], singer)
        if choice is None and self.refiner.singer_level(singer) is None:
            log.info("the refiner stores no voiced level for %s: it sees the recording's own level", singer)
        return choice

    def put_in_key(self, analysis: SliceAnalysis, transpose: float, gain_db: float = 0.0) -> SliceAnalysis:
        """A sung slice with its features in the song's key and level (the one place F0 is transposed and the level
        moved, by ``gain_db``); others as they are."""
        if not isinstance(analysis, Sung):
            return analysis
        return replace(analysis, keyed=self.refiner.transpose_features(analysis.features, transpose, gain_db),
                       gain_db=float(gain_db))

    def render(
        self, region: Region, analysis: SliceAnalysis, drive: np.ndarray, cycles: np.ndarray, job: Job,
        measure_cycle_error: bool = False,
    ) -> Rendered:
        """Convert one region: silence, the source mel resynthesised (unsung), or refined and vocoded (sung).

        ``drive`` (T_song,) is the song's transposed F0 (0 = unvoiced; :func:`song_f0`) and ``cycles``
        (T_song + 1,) the vocoder's source phase along it; the region's piece starts at the song's phase, so
        neighbouring pieces are in phase where they cross-fade.
        """
        spec = self.spec
        if isinstance(analysis, Silent):
            return Rendered(np.zeros(region.end - region.start, np.float32), analysis.mel,
                            np.full_like(analysis.mel, spec.log_floor))
        first = region.start // spec.hop_length
        start_phase = float(cycles[first] % 1.0)
        if isinstance(analysis, Unsung):  # sound without pitch (breath, consonants): resynthesise as it is
            f0 = np.zeros(analysis.mel.shape[1], np.float32)
            return Rendered(vocode_matched(self.vocoder, analysis.mel, f0, start_phase, first, job.mel_match),
                            analysis.mel, analysis.mel)
        if analysis.keyed is None:
            raise CanoraError("render() needs the slice in the song's key; call put_in_key() first")
        frames = analysis.keyed.frames
        f0 = np.pad(drive[first: first + frames], (0, max(0, first + frames - len(drive))))
        audio, mel = render_sung(self.refiner, self.vocoder, analysis.keyed, analysis.gain_db, job, f0, start_phase,
                                 first)
        err = None
        if measure_cycle_error:
            from canora.dsp.metrics import mel_cycle_error

            err = mel_cycle_error(mel, audio, spec)
        return Rendered(audio, analysis.features.mel, mel, err)

    def assemble(self, pieces: list[np.ndarray], slices: list[Slice], source: np.ndarray, overlap: int,
                 context: int | None = None) -> np.ndarray:
        """Cross-fade the rendered regions (each its slice plus ``context`` samples a side) over ``overlap``
        samples either side of each cut into one (N,) signal and give it the source's (N,) loudness envelope
        and silences -> (N,) float32, not yet limited (:func:`canora.dsp.output.finish_output` sets its level)."""
        from canora.dsp.envelope import match_envelope
        from canora.dsp.slicing import join

        out = join(pieces, slices, len(source), overlap, context)
        return match_envelope(out, source, hop=self.spec.hop_length).astype(np.float32)

    def convert_file(self, path: str | Path, **kwargs: Any) -> Conversion:
        """:meth:`convert` of an audio file (any common format, rate and channel count)."""
        from canora.io.audio import decode

        d = decode(path, self.sample_rate)  # resampled as it is decoded: no whole-file copy at the file's rate
        return self.convert(d.wav, d.sample_rate, name=str(path), source_full_scale=d.full_scale_samples, **kwargs)
