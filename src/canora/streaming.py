"""Streaming conversion: blocks of a live signal in, the converted signal out with a fixed latency.

:class:`StreamConverter` wraps a :class:`~canora.pipeline.Converter` (the same models and stages) and converts
audio as it arrives. ``process(block)`` takes any number of mono float32 samples at ``input_sample_rate`` and
returns the output samples due so far at the vocoder's rate (22050 Hz); ``flush()`` returns the tail.

How a block is converted (``B`` frames of ``hop`` = 256 samples at the models' rate, ``N = B * hop``):

* the input is resampled to the models' rate by a streaming polyphase filter (:class:`StreamResampler`, a
  fixed delay of a few samples, exact against :func:`scipy.signal.resample_poly` of the whole signal);
* internal block ``k`` (song frames ``[kB, (k + 1)B)``) is converted once ``lookahead_frames`` more frames of
  audio have arrived: a window of ``context_frames`` past frames plus the block plus the lookahead is analysed
  again (:meth:`Converter.analyse`: STFT, mel, F0, loudness, content, sung or not; with its end mirrored over
  :data:`EDGE_MIRROR_FRAMES` frames, so the F0 tracker does not see the note stop there), put in the fixed key
  (:meth:`Converter.put_in_key`), refined (the window's past frames are the refiner's context; its noise is
  seeded with ``seed + k``, so a stream converts the same way every time whatever the caller's block sizes) and
  vocoded from ``crossfade_frames + VOCODER_MARGIN`` frames before the block on, with the NSF source's noise of
  that place in the song (``start_frame``: the same noise wherever a block starts, so no pattern repeats per block);
* F0 that drove the vocoder for output already emitted is committed: the next window's source repeats it
  exactly over the cross-fade, from the same running NSF phase, so two renders of a held note cross-fade in
  phase (no level dip, no click); the complementary linear cross-fade is ``crossfade_frames`` long;
* the source's loudness envelope is put back on each window (:func:`canora.dsp.envelope.match_envelope`) and
  frames 50 dB below the loudest frame heard so far (or below -80 dBFS) are silenced.

Latency (:attr:`StreamConverter.latency_samples`, at the output rate) is fixed:
``N + lookahead + cross-fade + resampler delay`` (``N - 1`` of it is waiting for a block to fill). Output
sample ``n`` of the stream is converted input time ``n - latency``. With ``prime=True`` (the default, for live
use) the stream starts with ``latency`` samples of silence, so every call returns as many samples as its input
lasts (``floor(total_in * out_sr / in_sr)`` in all) and ``flush()`` the last ``latency`` samples plus rounding;
with ``prime=False`` (files) the output is the aligned conversion itself, ``latency`` samples behind the input,
and ``process`` + ``flush`` return exactly ``round(total_in * out_sr / in_sr)`` samples.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from canora.backends import choose_backend
from canora.errors import AudioError, CanoraError
from canora.job import Job, check_transpose, mel_match_rounds, plan_job
from canora.pipeline import Converter, Sung
from canora.render import render_sung, vocode_matched

if TYPE_CHECKING:
    from canora.conditioning import RefinerFeatures
    from canora.stream_key import RunningKey

#: block length (ms) when none is given, by benchmarks/streaming.py: 9 frames (104.5 ms), latency 139 ms (<= 150),
#: and the only size <= 150 ms latency that dropped no block on a loaded 2-core machine (README, Streaming)
DEFAULT_BLOCK_MS = 100.0
#: refiner steps when none are given (offline: 3): the refiner's cost is per step (20 layers of small convolutions,
#: ~10-20 ms a step whatever the window), and 2 DPM-Solver++ steps from strength 0.6 measured as well as 4
DEFAULT_STREAM_STEPS = 2
#: the F0 tracker of the stream (``f0_method=None``: the refiner's own; harvest costs ~70 ms a block, swift ~5)
STREAM_F0_METHOD = "swift"
#: frames quieter than this (dBFS) are silent whatever came before (digital silence stays silent)
SILENCE_DBFS = -80.0
#: trackers leave the last frames of a window unvoiced (swift: 3; their analysis window runs past the audio)
EDGE_FRAMES = 3
#: frames vocoded before the cross-fade, so the vocoder's receptive field starts on real frames
VOCODER_MARGIN = 8
#: frames before the look-ahead whose mel-matching gains are held too: their STFT windows reach into it (a window
#: runs 2.5 hops past its frame's start). With tiny random models, whose gains sit at the bounds, holding 0, 1, 2
#: and 3 frames left a join at 0.41, 0.45, 0.71 and 0.70 of the level around it; with the bundled models on a held
#: tone the joins were at 0.81-0.98 with and without matching whatever the hold
MATCH_HOLD_EXTRA = 2
#: a window is analysed with its last samples mirrored over this many frames past its end, so the F0 tracker and
#: the features see the note go on instead of stopping at the edge; then cut back to the window. Streamed pitch
#: error on 6 s of four unseen clips fell from 9.1-15.4 % (harvest) / 3.5-7.1 % (Praat) to 1.1-7.2 % / 0.5-3.7 %,
#: about the offline conversion's 3.1-8.4 % / 1.3-2.8 %; 2 and 8 frames measured about the same
EDGE_MIRROR_FRAMES = 4
#: ``gain_db="auto"``: the level follows the median of the voiced frames heard so far, once there are this many
#: (2 s at 86 frames/s), over at most the last this many (about a minute), moving by at most this many dB a block
AUTO_LEVEL_MIN_FRAMES = 172
AUTO_LEVEL_MAX_FRAMES = 5168
AUTO_LEVEL_STEP_DB = 1.0
#: frames more than this many dB below the loudest frame so far are silent in the output
GATE_DB = 50.0


def _first_frames(analysis: Any, frames: int) -> Any:
    """A window's analysis (:class:`~canora.pipeline.Sung`, ``Unsung`` or ``Silent``) cut to its first ``frames``."""
    if isinstance(analysis, Sung):
        return Sung(analysis.features.crop(0, frames))
    return type(analysis)(analysis.mel[:, :frames])


def _hold_voicing(feats: RefinerFeatures) -> None:
    """Keep a note voiced into the last :data:`EDGE_FRAMES` frames of a window (in place): the tracker cannot
    see them whole, and the next block, which can, decides."""
    v = feats.voiced.copy()
    for j in range(max(1, len(v) - EDGE_FRAMES), len(v)):
        v[j] = v[j] or v[j - 1]
    feats.voiced = v


class StreamResampler:
    """Streaming polyphase resampling (Kaiser-windowed sinc of :func:`scipy.signal.resample_poly`).

    ``push(x)`` (n,) -> the output samples now computable; output sample ``m`` is input time ``m * sr_in /
    sr_out`` exactly (no group delay), it just waits for :attr:`delay_in` input samples beyond it. After
    ``n`` inputs at least ``floor(n * sr_out / sr_in) - delay_out`` outputs have been returned.
    """

    def __init__(self, sr_in: int, sr_out: int) -> None:
        from scipy.signal import firwin

        ratio = Fraction(int(sr_out), int(sr_in))
        self.up, self.down = ratio.numerator, ratio.denominator
        self.identity = self.up == self.down
        half = 10 * max(self.up, self.down)  # resample_poly's default filter
        self.h = None if self.identity else firwin(2 * half + 1, 1.0 / max(self.up, self.down),
                                                    window=("kaiser", 5.0))
        self.delay_in = 0 if self.identity else math.ceil(half / self.up) + 1
        self.delay_out = 0 if self.identity else math.ceil(self.delay_in * self.up / self.down) + 1
        self.reset()

    def reset(self) -> None:
        self._x = np.zeros(0, np.float64)  # input from global sample self._x0 (a multiple of down) on
        self._x0 = 0
        self._n_in = 0
        self._m = 0  # outputs returned

    def _compute(self, m1: int) -> np.ndarray:
        from scipy.signal import resample_poly

        m0, up, down = self._m, self.up, self.down
        if m1 <= m0:
            return np.zeros(0, np.float32)
        s0 = max(0, (m0 * down) // up - self.delay_in)
        s0 -= s0 % down
        s1 = min(self._x0 + len(self._x), -(-m1 * down // up) + self.delay_in + 1)
        seg = self._x[s0 - self._x0: s1 - self._x0]
        y = resample_poly(seg, up, down, window=self.h)
        off = s0 * up // down
        out = y[m0 - off: m1 - off]
        if len(out) < m1 - m0:  # only at the very end (flush): zeros beyond the signal
            out = np.pad(out, (0, m1 - m0 - len(out)))
        self._m = m1
        keep = max(0, (m1 * down) // up - self.delay_in - down)
        keep -= keep % down
        if keep > self._x0:
            self._x, self._x0 = self._x[keep - self._x0:], keep
        return out.astype(np.float32)

    def push(self, x: np.ndarray) -> np.ndarray:
        """Input (n,) -> output (m,) float32 (m may be 0)."""
        self._n_in += len(x)
        if self.identity:
            self._m += len(x)
            return np.asarray(x, np.float32)
        self._x = np.concatenate([self._x, np.asarray(x, np.float64)])
        return self._compute(max(0, (self._n_in - self.delay_in) * self.up // self.down))

    def flush(self) -> np.ndarray:
        """The remaining outputs up to ``ceil(n_in * sr_out / sr_in)`` (the signal taken as zero after its end)."""
        if self.identity:
            return np.zeros(0, np.float32)
        self._x = np.concatenate([self._x, np.zeros(self.delay_in + self.down + 1)])
        return self._compute(-(-self._n_in * self.up // self.down))


class StreamConverter:
    """A :class:`Converter` run block by block with a fixed latency; see the module doc.

    ``block_ms`` is rounded to whole frames (:attr:`block_frames`); ``transpose`` is fixed (semitones), or ``"auto"``:
    the running key (:class:`~canora.stream_key.RunningKey`: the offline rule, whole octaves toward the singer's
    range in ``key_mode``, on the pitch sung so far, changed only between phrases); so is ``gain_db``, the level
    the refiner sees the input at (:meth:`Converter.choose_level`; 0 by default: the
    input's own), unless it is ``"auto"``: then it follows the input, moving the median of the voiced frames heard
    so far to the singer's level once 2 s of them have been heard (a live input cannot be measured ahead);
    ``steps`` / ``strength`` / ``sampler`` as in :meth:`Converter.convert` (``steps`` defaults to
    :data:`DEFAULT_STREAM_STEPS`); ``f0_method`` replaces the refiner's F0 tracker (default
    :data:`STREAM_F0_METHOD`; None keeps the refiner's). Per-block compute times (seconds) accumulate in
    :attr:`block_seconds`, and whether each block was sung (refined) in :attr:`block_sung`.
    """

    def __init__(
        self,
        converter: Converter,
        *,
        block_ms: float = DEFAULT_BLOCK_MS,
        input_sample_rate: int = 22050,
        transpose: float | str = 0.0,
        gain_db: float | str = 0.0,
        key_mode: str = "octave",
        singer: str | int | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        strength: float | None = None,
        seed: int = 0,
        context_frames: int = 24,
        lookahead_frames: int = 2,
        crossfade_frames: int = 1,
        f0_method: str | None = STREAM_F0_METHOD,
        prime: bool = True,
        mel_match: int | None = None,
    ) -> None:
        params = converter.refiner.feature_params
        if f0_method is not None and f0_method != params.f0_method:  # the same models with a faster F0 tracker
            from canora.dsp.pitch import get_f0_extractor

            get_f0_extractor(f0_method)  # unknown name: one error before any work
            refiner = copy.copy(converter.refiner)
            refiner.feature_params = replace(params, f0_method=f0_method, f0_params={})
            converter = Converter(refiner, converter.vocoder, converter.default_singer)
        self.converter = converter
        spec = converter.spec
        self.hop = spec.hop_length
        self.sample_rate = spec.sample_rate
        if isinstance(input_sample_rate, bool) or not isinstance(input_sample_rate, (int, np.integer)) \
                or not 1000 <= input_sample_rate <= 1_000_000:
            raise AudioError(f"input_sample_rate {input_sample_rate!r} is not a whole number of Hz in 1000..1000000")
        self.input_sample_rate = int(input_sample_rate)
        try:
            block_ms = float(block_ms)
        except (TypeError, ValueError):
            raise CanoraError(f"block_ms must be a number of milliseconds, got {block_ms!r}") from None
        if not math.isfinite(block_ms) or not 10.0 <= block_ms <= 2000.0:
            raise CanoraError(f"block_ms must be in 10..2000 ms, got {block_ms!r}")
        for name, v, lo in (("context_frames", context_frames, 0), ("lookahead_frames", lookahead_frames, 0),
                            ("crossfade_frames", crossfade_frames, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise CanoraError(f"{name} must be an integer >= {lo}, got {v!r}")
        self.block_frames = max(1, round(block_ms / 1000 * self.sample_rate / self.hop))
        if crossfade_frames > self.block_frames:
            raise CanoraError(f"crossfade_frames {crossfade_frames} is longer than the block "
                              f"({self.block_frames} frames); use a longer block or a shorter cross-fade")
        self.context_frames = int(context_frames)
        self.lookahead_frames = int(lookahead_frames)
        #: frames at a window's end whose mel-matching gains are those of the frame before them: the look-ahead,
        #: which the vocoder renders without what follows, and MATCH_HOLD_EXTRA more
        self.match_hold = self.lookahead_frames + MATCH_HOLD_EXTRA
        self.crossfade_frames = int(crossfade_frames)
        self.running_key: RunningKey | None = None
        singer = converter.default_singer if singer is None else singer  # a voice's own singer by default
        if transpose == "auto":
            from canora.stream_key import RunningKey

            singer_name = converter.refiner.singer_label(singer)
            self.running_key = RunningKey(converter.refiner.singer_f0_range(singer_name), key_mode)
            transpose = 0.0
        self.transpose = check_transpose(transpose)
        self.auto_level = gain_db == "auto"
        if not self.auto_level and (isinstance(gain_db, bool) or not isinstance(gain_db, (int, float, np.floating))
                                    or not math.isfinite(gain_db)):
            raise CanoraError(f"gain_db must be a finite number of dB or 'auto', got {gain_db!r}")
        self._fixed_gain = 0.0 if self.auto_level else float(gain_db)
        self.job: Job = plan_job(converter.refiner, singer, sampler=sampler,
                                 steps=DEFAULT_STREAM_STEPS if steps is None else steps, strength=strength,
                                 seed=seed, transpose=self.transpose, auto_transpose=False)
        rounds, self.mel_match_reason = mel_match_rounds(mel_match, self.job.singer,
                                                         getattr(converter.vocoder, "singers", ()))
        self.job = replace(self.job, mel_match=rounds)
        self._singer_db = converter.refiner.singer_level(self.job.singer)  # None: no level stored, auto stays 0
        self.prime = bool(prime)
        self.block_seconds: list[float] = []
        self.block_sung: list[bool] = []
        self._sung = False  # whether the last block rendered was sung
        self._resampler = StreamResampler(self.input_sample_rate, self.sample_rate)
        fade = self.crossfade_frames * self.hop
        self._fade_in = ((np.arange(fade) + 0.5) / fade).astype(np.float32)
        self.reset()

    @classmethod
    def from_pretrained(
        cls, refiner: str | Path | None = None, vocoder: str | Path | None = None, *, device: str = "cpu",
        backend: str = "auto", voice: str | Path | None = None, **kwargs: Any,
    ) -> StreamConverter:
        """Load the models as :meth:`Converter.from_pretrained` does, on ``backend`` (:meth:`Converter.with_backend`:
        ``"auto"`` = ONNX Runtime when the ``onnx`` extra is installed); ``kwargs`` as in the constructor."""
        chosen = choose_backend(backend, device, streaming=True)
        conv = Converter.from_pretrained(refiner, vocoder, device=device, voice=voice,
                                         backend="onnx" if chosen == "onnx" else None)
        return cls(conv.with_backend(backend), **kwargs)

    # ------------------------------------------------------------------ geometry
    @property
    def block_samples(self) -> int:
        """Samples of one internal block at the output rate (``block_frames * hop``)."""
        return self.block_frames * self.hop

    @property
    def block_duration_ms(self) -> float:
        return 1000.0 * self.block_samples / self.sample_rate

    @property
    def latency_samples(self) -> int:
        """The fixed algorithmic delay at the output rate: block + lookahead + cross-fade + resampler."""
        return (self.block_frames + self.lookahead_frames + self.crossfade_frames) * self.hop \
            + self._resampler.delay_out

    @property
    def latency_ms(self) -> float:
        """:attr:`latency_samples` in milliseconds."""
        return 1000.0 * self.latency_samples / self.sample_rate

    def reset(self) -> None:
        """Forget the stream (a new one starts; :attr:`block_seconds` is kept)."""
        self._resampler.reset()
        self._n_in = 0  # input samples received
        self._emitted = 0  # stream samples returned
        self._buf = np.zeros(0, np.float32)  # models' rate input from global sample self._buf0 on
        self._buf0 = 0
        self._k = 0  # next internal block
        self._ready: list[np.ndarray] = []  # converted samples not yet returned, from global sample self._ready0
        self._ready_len = 0
        self._ready0 = 0
        self._tail: np.ndarray | None = None  # the last render's cross-fade region, faded out by the next
        self._drive = np.zeros(0, np.float32)  # committed vocoder F0 of frames [self._drive0, ...)
        self._drive0 = 0
        self._cycles0 = 0.0  # the NSF fundamental's phase (cycles) at frame self._drive0
        self._peak_db = -200.0
        self.gain_db = self._fixed_gain  # the level the refiner hears the input at (dB), see auto_level
        self._heard_db = np.zeros(0, np.float32)  # loudness of the voiced frames heard so far (auto_level)
        self._heard_to = 0  # song frames [0, _heard_to) are in _heard_db
        if self.running_key is not None:
            self.running_key.reset()
            self.transpose = self.running_key.semitones

    # ------------------------------------------------------------------ public API
    def process(self, block: np.ndarray) -> np.ndarray:
        """Mono float ``block`` (n,) at ``input_sample_rate`` -> the output due now (m,) float32 at 22050 Hz.

        In all, ``floor(total_in * 22050 / input_sample_rate)`` samples (fewer by :attr:`latency_samples` with
        ``prime=False``)."""
        x = self._check(block)
        self._n_in += len(x)
        self._feed(self._resampler.push(x))
        due = (self._n_in * self.sample_rate) // self.input_sample_rate
        return self._emit(due if self.prime else max(0, due - self.latency_samples))

    def flush(self) -> np.ndarray:
        """The tail: after it the stream holds ``round(total_in * 22050 / input_sample_rate)`` converted samples
        (plus the :attr:`latency_samples` of silence it started with when primed). The converter is then reset."""
        total = round(Fraction(self._n_in * self.sample_rate, self.input_sample_rate))  # as Python rounds
        self._feed(self._resampler.flush())
        pad = (self.block_frames + self.lookahead_frames + self.crossfade_frames + 1) * self.hop
        while self._ready0 + self._ready_len < total:
            self._feed(np.zeros(pad, np.float32))
        out = self._emit(total + (self.latency_samples if self.prime else 0), final=True)
        self.reset()
        return out

    def convert(self, wav: np.ndarray, chunk: int | None = None) -> np.ndarray:
        """The whole of ``wav`` (N,) through the stream in chunks of ``chunk`` input samples (default: one block)
        -> the aligned conversion (round(N * 22050 / input_sample_rate),) float32 (the latency removed)."""
        chunk = chunk or max(1, round(self.block_samples * self.input_sample_rate / self.sample_rate))
        self.reset()
        parts = [self.process(wav[i: i + chunk]) for i in range(0, len(wav), chunk)] + [self.flush()]
        out = np.concatenate(parts)
        return out[self.latency_samples:] if self.prime else out

    # ------------------------------------------------------------------ internals
    def _check(self, block: np.ndarray) -> np.ndarray:
        arr = np.asarray(block)
        if arr.dtype.kind != "f":
            raise AudioError(f"stream block of dtype {arr.dtype}; give float samples in [-1, 1] (e.g. int16 / 32768)")
        if arr.ndim != 1:
            raise AudioError(f"stream block of shape {arr.shape}; give mono samples (n,)")
        if not np.isfinite(arr).all():
            raise AudioError("stream block holds NaN/inf samples")
        return arr.astype(np.float32, copy=False)

    def _emit(self, target: int, final: bool = False) -> np.ndarray:
        """Stream samples up to ``target`` (the stream counts the priming silence when primed) -> (m,)."""
        lead = self.latency_samples if self.prime else 0
        want = target - self._emitted
        if want <= 0:
            return np.zeros(0, np.float32)
        start = self._emitted - lead  # first converted sample due (negative: priming silence)
        zeros = min(want, max(0, -start))
        n = want - zeros
        have = np.concatenate(self._ready) if self._ready else np.zeros(0, np.float32)
        skip = max(0, start) - self._ready0
        body = have[skip: skip + n]
        if len(body) < n:
            if not final:
                raise CanoraError(f"stream underrun by {n - len(body)} samples (a bug: the latency is too short)")
            body = np.pad(body, (0, n - len(body)))
        rest = have[skip + n:]
        self._ready, self._ready_len, self._ready0 = [rest], len(rest), self._ready0 + skip + n
        self._emitted = target
        return np.concatenate([np.zeros(zeros, np.float32), body]).astype(np.float32, copy=False)

    def _feed(self, x: np.ndarray) -> None:
        """Models' rate audio (n,) -> converted blocks for every internal block now complete."""
        if len(x):
            self._buf = np.concatenate([self._buf, x.astype(np.float32, copy=False)])
        bf, hop = self.block_frames, self.hop
        while self._buf0 + len(self._buf) >= ((self._k + 1) * bf + self.lookahead_frames) * hop:
            t0 = time.perf_counter()
            self._step(self._k)
            self.block_seconds.append(time.perf_counter() - t0)
            self.block_sung.append(self._sung)
            self._k += 1
            keep = max(0, self._k * bf - self.context_frames) * hop  # the next window's first sample
            if keep > self._buf0:
                self._buf, self._buf0 = self._buf[keep - self._buf0:], keep

    def _step(self, k: int) -> None:
        """Convert internal block ``k``: render its window and queue samples [kN - F, (k + 1)N - F)."""
        bf, hop, fade = self.block_frames, self.hop, self.crossfade_frames * self.hop
        a = max(0, k * bf - self.context_frames)
        b = (k + 1) * bf + self.lookahead_frames
        window = self._buf[a * hop - self._buf0: b * hop - self._buf0]
        v0 = max(a, k * bf - self.crossfade_frames - VOCODER_MARGIN)
        audio = self._render(window, a, v0, k)  # samples [v0 * hop, b * hop)
        lo = max(0, k * bf * hop - fade)
        piece = audio[lo - v0 * hop: (k + 1) * bf * hop - v0 * hop].astype(np.float32)
        if self._tail is not None:
            piece[:fade] = self._tail * (1.0 - self._fade_in) + piece[:fade] * self._fade_in
        self._tail = piece[-fade:].copy()
        body = piece[:-fade]
        self._ready.append(body)
        self._ready_len += len(body)

    def _render(self, window: np.ndarray, a: int, v0: int, k: int) -> np.ndarray:
        """Convert ``window`` (samples of song frames ``[a, b)``) -> audio (samples of frames ``[v0, b)``).

        The override point of tests (an identity render shows the framing and the latency exactly)."""
        conv, hop = self.converter, self.hop
        frames = len(window) // hop
        mirrored = np.pad(window, (0, EDGE_MIRROR_FRAMES * hop), mode="reflect") if len(window) > 1 else window
        analysis = _first_frames(conv.analyse(mirrored, False, f"stream block {k}"), frames)
        if self.auto_level:
            self._follow_level(analysis, a)
        if self.running_key is not None:
            self._follow_key(analysis, a, k)
        analysis = conv.put_in_key(analysis, self.transpose, self.gain_db)
        self._sung = isinstance(analysis, Sung)
        if isinstance(analysis, Sung):
            _hold_voicing(analysis.keyed)
            drive = self._commit(analysis.keyed.f0_with_zeros(), a, k)
            audio, _ = render_sung(conv.refiner, conv.vocoder, analysis.keyed, analysis.gain_db, self.job,
                                   drive[v0 - a:], self._phase_at(v0), v0, seed=self.job.seed + k, skip=v0 - a,
                                   hold=self.match_hold)
        else:  # unsung or silent: the source mel resynthesised without pitch
            drive = self._commit(np.zeros(frames, np.float32), a, k)
            audio = vocode_matched(conv.vocoder, analysis.mel[:, v0 - a:], drive[v0 - a:], self._phase_at(v0), v0,
                                   self.job.mel_match, self.match_hold)
        self._trim(k)
        return self._envelope(audio, window[(v0 - a) * hop:])

    def _follow_level(self, analysis: Any, a: int) -> None:
        """``auto_level``: add the voiced frames of the window (song frames ``[a, ...)``) not heard before to the
        running record and move :attr:`gain_db` toward the gain that puts their median on the singer's level
        (+5 dB, as :meth:`Converter.choose_level`), by at most :data:`AUTO_LEVEL_STEP_DB` per block, once
        :data:`AUTO_LEVEL_MIN_FRAMES` voiced frames have been heard."""
        if self._singer_db is None or not isinstance(analysis, Sung):
            return
        feats = analysis.features
        new = max(0, self._heard_to - a)
        if new < feats.frames:  # the last minute or so of singing
            fresh = feats.loudness[new:][feats.voiced[new:]].astype(np.float32)
            self._heard_db = np.concatenate([self._heard_db, fresh])[-AUTO_LEVEL_MAX_FRAMES:]
            self._heard_to = a + feats.frames
        if len(self._heard_db) < AUTO_LEVEL_MIN_FRAMES:
            return
        from canora.dsp.loudness import choose_level

        want = choose_level(self._heard_db, np.ones(len(self._heard_db), bool), self._singer_db).gain_db
        self.gain_db += float(np.clip(want - self.gain_db, -AUTO_LEVEL_STEP_DB, AUTO_LEVEL_STEP_DB))

    def _follow_key(self, analysis: Any, a: int, k: int) -> None:
        """The running key: hear the window's source pitch (song frames ``[a, ...)``) and take the key for block
        ``k`` (:meth:`RunningKey.update`: a first choice, or a new one in a pause)."""
        rk = self.running_key
        if isinstance(analysis, Sung):
            feats = analysis.features
            rk.hear(feats.f0, feats.voiced, a)
        else:
            frames = analysis.mel.shape[1]
            rk.hear(np.zeros(frames, np.float32), np.zeros(frames, bool), a)
        self.transpose = rk.update(k * self.block_frames, (k + 1) * self.block_frames)

    def set_steps(self, steps: int) -> None:
        """Refiner steps of the blocks from now on (a live session lowers them when compute falls short)."""
        self.job = replace(self.job, steps=int(steps))

    def _commit(self, new_f0: np.ndarray, a: int, k: int) -> np.ndarray:
        """The window's vocoder F0 (frames [a, b)): committed F0 where earlier blocks fixed it, ``new_f0`` after;
        then commit frames up to one past this block's end (its cross-fade is rendered again by the next)."""
        d0, d = self._drive0, self._drive
        end = d0 + len(d)  # first uncommitted frame
        drive = new_f0.copy()
        lo, hi = max(a, d0), min(end, a + len(drive))  # frames before d0 are before the vocoder's start
        if hi > lo:
            drive[lo - a: hi - a] = d[lo - d0: hi - d0]
        upto = min((k + 1) * self.block_frames + 1, a + len(drive))
        if upto > end:
            d = np.concatenate([d, drive[end - a: upto - a]])
        self._drive = d
        return drive

    def _trim(self, k: int) -> None:
        """Drop committed F0 before block ``k + 1``'s vocoder start, advancing the phase over it."""
        d0, d = self._drive0, self._drive
        nxt = min(max(0, (k + 1) * self.block_frames - self.crossfade_frames - VOCODER_MARGIN), d0 + len(d))
        if nxt > d0:
            cycles = self.converter.vocoder.frame_cycles(d[: nxt - d0 + 1])
            self._cycles0 = float((self._cycles0 + cycles[nxt - d0]) % 1.0)
            self._drive, self._drive0 = d[nxt - d0:], nxt

    def _phase_at(self, frame: int) -> float:
        """The NSF fundamental's phase (cycles, in [0, 1)) at the start of committed ``frame``."""
        if frame == self._drive0:
            return self._cycles0
        cycles = self.converter.vocoder.frame_cycles(self._drive[: frame - self._drive0 + 1])
        return float((self._cycles0 + cycles[frame - self._drive0]) % 1.0)

    def _envelope(self, audio: np.ndarray, source: np.ndarray) -> np.ndarray:
        """``audio`` (n,) with ``source``'s (n,) loudness envelope, silent below the gate."""
        from canora.dsp.envelope import match_envelope
        from canora.dsp.slicing import frame_db

        out = match_envelope(audio, source, hop=self.hop)
        db = frame_db(source, self.hop)
        self._peak_db = max(self._peak_db, float(db.max()) if len(db) else -200.0)
        gate = (db > max(self._peak_db - GATE_DB, SILENCE_DBFS)).astype(np.float64)
        gate = np.convolve(np.pad(gate, 1, mode="edge"), np.ones(3) / 3, mode="valid")  # soft edges
        centres = (np.arange(len(gate)) + 0.5) * self.hop
        g = np.interp(np.arange(len(out)), centres, gate)
        return np.clip(out * g, -1.0, 1.0).astype(np.float32)
