"""Live conversion: a sound card's input through a :class:`~canora.streaming.StreamConverter` to its output.

:class:`LiveSession` runs the audio loop of ``canora live``. It knows nothing of PortAudio: it is given a
``StreamConverter`` and a stream factory ``open_stream(samplerate, blocksize, callback)`` that returns an object
with ``start()``, ``stop()`` and ``close()`` (a ``sounddevice.Stream``, or a test's stub) and calls
``callback(indata, outdata, frames, time, status)`` once per device period, as ``sounddevice`` does
(``blocksize`` 0: the host's own period, e.g. JACK's 256 frames, so PortAudio adds no buffering of its own).

Why a callback and a worker thread, with the output on a fixed schedule (not a blocking read/convert/write loop):

* one duplex stream, one clock: input and output run at one sample rate (the input device's), so they never
  drift apart; the converter's 22050 Hz output is resampled to that rate by a
  :class:`~canora.streaming.StreamResampler` unless the rate is 22050 Hz;
* the audio callback only moves samples: it high-passes the input (:class:`~canora.dsp.filters.StreamingHighpass`,
  40 Hz), queues it, and copies the converted samples due at this output position from a buffer; a worker thread
  runs :meth:`StreamConverter.process` off the audio thread, then the output's high-pass and a limiter
  (:class:`~canora.dsp.limiter.StreamingLimiter`: no sample at full scale);
* the output plays converted stream position ``p`` at device position ``p + headroom`` whatever happens:
  ``headroom`` = the compute budget (by default chosen at start-up from a warm-up on a sung phrase,
  :func:`~canora.live_policy.choose_headroom_ms`) + one device period (a block's input arrives with the callback
  that completes it) + the output resampler's wait. Audio not ready when its position comes is never played late
  (a blocking loop would play it late and the delay would grow with every slow block); the input of that moment
  is played instead (:class:`~canora.live_fill.DryFill`, cross-faded), so the output is never silent for want of
  compute, and the block is counted as late. While singing, a block that uses most of its budget lowers the
  refiner's steps (:class:`~canora.live_policy.StepGovernor`).

So the latency is fixed: :attr:`LiveSession.latency_ms` = the converter's algorithmic latency (block + lookahead +
cross-fade + resampler) + the headroom; :attr:`LiveSession.round_trip_ms` adds the device's own buffering
(``stream.latency``, input + output). When the worker falls more than ``max_behind_blocks`` converter blocks
behind (a stall) it skips the stale input and restarts the converter at the newest input (a resync; the dry input
plays meanwhile), so the queue stays bounded.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

import numpy as np

from canora.dsp.filters import StreamingHighpass
from canora.dsp.limiter import StreamingLimiter
from canora.errors import CanoraError
from canora.live_fill import DryFill
from canora.live_policy import StepGovernor, choose_headroom_ms
from canora.streaming import StreamConverter, StreamResampler

#: ``canora live``'s block (ms; 5 frames, 58.0 ms), by benchmarks/live_jack.py on a JACK dummy server with a busy
#: loop and trainings beside (load average 1.6-9): round trip 134-152 ms stated (measured within 1-6 ms of it), no
#: late block in 60 s of singing, the same similarity as 104.5 ms blocks (round trip 188-205 ms)
LIVE_BLOCK_MS = 58.0
#: seconds of recent blocks the running display's load statistics cover
LOAD_WINDOW_SECONDS = 5.0
#: seconds of the synthetic sung phrase converted at start-up (first-call costs, and the compute budget)
WARM_UP_SECONDS = 3.0
#: the audio server is taken as gone when it has not called the stream for this long (s)
STALL_SECONDS = 3.0
#: a stream that does not stop within this long (s) is abandoned (PortAudio's JACK host API waits up to 10 minutes
#: for a server that no longer calls it)
STOP_TIMEOUT_SECONDS = 3.0
#: the audio thread waits at most this long for the interpreter (Python's default switch interval is 5 ms, about
#: a JACK period at 256 frames and 48 kHz: a callback kept waiting that long misses its deadline)
SWITCH_INTERVAL_S = 0.0001

#: the worker thread's real-time (SCHED_FIFO) priority, under the audio server's (JACK's default is 10 and its
#: clients' threads 5 above the server's driver priority... any value > 0 puts the worker above ordinary
#: processes). A worker at ordinary priority that is preempted while it holds the interpreter lock keeps the audio
#: callback waiting for it (priority inversion): an xrun each time the machine is busy
WORKER_PRIORITY = 1

Callback = Callable[[np.ndarray, np.ndarray, int, Any, Any], None]


def _stop_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM and SIGINT stop a session as Ctrl-C does (a summary, the stream closed) -> a function that restores
    the previous handlers. SIGINT too because a process started from a non-interactive shell in the background
    inherits it ignored, and Python then leaves it so: `kill -INT` (or a script's Ctrl-C) would not stop the
    session. Only from the main thread (elsewhere: nothing to restore)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    return lambda: [signal.signal(sig, handler) for sig, handler in previous.items()] and None


def _main_thread_realtime() -> Callable[[], None]:
    """Put the calling (main) thread under SCHED_FIFO at :data:`WORKER_PRIORITY` while a session runs, where allowed:
    it only sleeps and prints, but at ordinary priority it can be preempted while it holds the interpreter lock, and
    the audio callback then waits -> a function that restores its policy."""
    import os

    if not hasattr(os, "sched_getscheduler"):
        return lambda: None
    try:
        before = (os.sched_getscheduler(0), os.sched_getparam(0))
    except OSError:
        return lambda: None
    if not _realtime_thread(WORKER_PRIORITY):
        return lambda: None

    def restore() -> None:
        try:
            os.sched_setscheduler(0, before[0], before[1])
        except OSError:
            pass

    return restore


def _realtime_thread(priority: int) -> bool:
    """Put the calling thread under SCHED_FIFO at ``priority`` -> whether it could (it needs the right, e.g. root or
    an rtprio limit from the audio group; without it the thread stays as it was)."""
    import os

    if priority <= 0 or not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, PermissionError):
        return False
    return True


class AudioStream(Protocol):
    """The part of ``sounddevice.Stream`` a session uses."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


StreamFactory = Callable[[int, int, Callback], AudioStream]


@dataclass
class LiveStats:
    """What a session did. ``callbacks``: device periods played; ``late``: converter blocks whose audio was not ready
    when it was due (the dry input played in its place), ``late_after_1s`` of them after the first second;
    ``dry_ms``: output time that held dry input; ``resyncs``; ``xruns``: callbacks the device flagged
    (over/underflow; PortAudio flags one callback for several xruns in a row), ``server_xruns`` the audio
    server's own count, where it gives one (JACK);
    the compute load (compute per converter block / block duration) of sung blocks; the steps (asked for, lowest)."""

    seconds: float = 0.0
    callbacks: int = 0
    blocks: int = 0
    sung_blocks: int = 0
    late: int = 0
    late_after_1s: int = 0
    dry_ms: float = 0.0
    resyncs: int = 0
    xruns: int = 0
    server_xruns: int | None = None
    load_median: float = float("nan")
    load_p95: float = float("nan")
    load_max: float = float("nan")
    steps: int = 0
    steps_lowest: int = 0
    latency_ms: float = 0.0
    device_latency_ms: float | None = None
    round_trip_ms: float = 0.0
    headroom_ms: float = 0.0
    key: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def _ms(x: float) -> str:
    return f"{x:.1f}"


def _load(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return float("nan"), float("nan"), float("nan")
    a = np.asarray(values)
    return float(np.median(a)), float(np.percentile(a, 95)), float(a.max())


class LiveSession:
    """The audio loop of ``canora live`` over ``converter`` (primed; its ``input_sample_rate`` is the stream's
    rate) and ``open_stream``; see the module doc.

    ``headroom_ms``: the compute budget per converter block (None: chosen by :meth:`warm_up`, one converter block
    until then); ``blocksize``: device frames per callback asked of the stream (0: the host's period);
    ``input_channel``: the input channel to convert (0-based; None mixes all the stream delivers);
    ``max_behind_blocks``: converter blocks of queued input before a resync; ``adapt_steps``: lower the refiner's
    steps when compute falls short; ``filters``: the 40 Hz high-pass on input and output and the output's limiter
    (tests of the framing turn them off); ``clock`` / ``sleep`` / ``out`` (the running display and the summary) are
    replaceable for tests."""

    def __init__(
        self,
        converter: StreamConverter,
        open_stream: StreamFactory,
        *,
        headroom_ms: float | None = None,
        blocksize: int = 0,
        input_channel: int | None = 0,
        max_behind_blocks: int = 4,
        adapt_steps: bool = True,
        filters: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        out: TextIO | None = None,
    ) -> None:
        if not converter.prime:
            raise CanoraError("a live session needs a primed StreamConverter (prime=True)")
        if max_behind_blocks < 1:
            raise CanoraError("max_behind_blocks must be >= 1")
        if headroom_ms is not None and not (math.isfinite(headroom_ms) and headroom_ms > 0):
            raise CanoraError(f"the headroom must be > 0 ms, got {headroom_ms!r}")
        self.converter = converter
        self.open_stream = open_stream
        self.samplerate = converter.input_sample_rate
        self.blocksize = int(blocksize)
        self.input_channel = input_channel
        #: device samples of one converter block
        self.block_device = max(1, converter.block_samples * self.samplerate // converter.sample_rate)
        self._out_rs = StreamResampler(converter.sample_rate, self.samplerate)
        #: the output resampler's wait, in device samples (+ floor rounding)
        self.margin = 0 if self._out_rs.identity else \
            self._out_rs.delay_out + math.ceil(self.samplerate / converter.sample_rate) + 1
        self.auto_headroom = headroom_ms is None
        self.headroom_ms = float(headroom_ms) if headroom_ms is not None else converter.block_duration_ms
        self.period: int | None = None  # device frames per callback, known from the first callback
        self.max_behind_blocks = int(max_behind_blocks)
        self.clock, self.sleep = clock, sleep
        self.out = out
        self.steps_asked = converter.job.steps
        self.governor = StepGovernor(self.steps_asked, self.headroom_ms) if adapt_steps else None
        self.stream: AudioStream | None = None
        self._last_stream: AudioStream | None = None  # for the summary's device latency after stop()
        self._inq: queue.Queue[np.ndarray] = queue.Queue()
        self._queued = 0  # input samples queued, not yet taken by the worker
        self._lock = threading.Lock()
        self._chunks: deque[tuple[int, np.ndarray]] = deque()  # (stream position, converted samples at the rate)
        self._produced = 0  # stream position after the last converted sample
        self._in_pos = 0  # input samples the worker has converted or skipped
        self._skip_out = 0  # output samples (at the rate) still to drop: a restarted converter's priming silence
        self._played = 0  # device output samples requested so far
        self.filters = bool(filters)
        self._in_hp = StreamingHighpass(self.samplerate)
        self._out_hp = StreamingHighpass(self.samplerate)
        self._limiter = StreamingLimiter(self.samplerate)
        self._fill: DryFill | None = None
        self._loads: deque[float] = deque(maxlen=max(1, round(LOAD_WINDOW_SECONDS * 1000
                                                              / converter.block_duration_ms)))
        self._all_loads: list[float] = []
        self.callbacks = self.blocks = self.sung_blocks = 0
        self.late = self.late_after_1s = self.resyncs = self.xruns = 0
        self.keys: list[float] = []  # every key the running key took, in order
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._switch: float | None = None
        self.worker_realtime = False  # whether the worker thread runs under SCHED_FIFO
        self.abandoned = False  # the stream did not stop (the server stopped calling it); see stop()
        self._stopper: threading.Thread | None = None  # the thread of the last stream stop (see stop_pending)
        self._last_call = 0.0  # time.monotonic() of the last callback
        #: the audio server's xrun count since the session started, where it can be read (JACK), else None
        self.server_xruns: Callable[[], int] | None = None

    # ------------------------------------------------------------------ geometry
    @property
    def headroom(self) -> int:
        """Device samples between a converted sample's stream position and the output position that plays it:
        the compute budget + one device period (the host's period; one converter block's worth before the first
        callback) + the output resampler's wait."""
        period = self.period if self.period is not None else (self.blocksize or 0)
        return round(self.headroom_ms * self.samplerate / 1000.0) + period + self.margin

    @property
    def latency_ms(self) -> float:
        """Input to output (without the device's buffers): the converter's latency plus the headroom."""
        return self.converter.latency_ms + 1000.0 * self.headroom / self.samplerate

    @property
    def device_latency_ms(self) -> float | None:
        """The stream's reported input + output latency (ms), when it reports a sane one."""
        lat = getattr(self.stream or self._last_stream, "latency", None)
        if lat is None:
            return None
        try:
            ms = 1000.0 * float(sum(lat) if isinstance(lat, (tuple, list)) else lat)
        except (TypeError, ValueError):
            return None
        return ms if 0.0 <= ms < 10_000.0 else None

    @property
    def round_trip_ms(self) -> float:
        """The whole round trip: :attr:`latency_ms` + the device's buffering (when the stream reports it)."""
        return self.latency_ms + (self.device_latency_ms or 0.0)

    def _set_period(self, frames: int) -> None:
        self.period = int(frames)
        delay = round(self.converter.latency_ms * self.samplerate / 1000.0) + self.headroom
        self._fill = DryFill(self.samplerate, delay, max_frames=max(8192, 2 * frames))

    # ------------------------------------------------------------------ the audio thread
    def _mono(self, indata: np.ndarray) -> np.ndarray:
        x = np.asarray(indata, np.float32)
        if x.ndim == 1:
            return x.copy()
        if self.input_channel is None:
            return x.mean(axis=1)
        return x[:, min(self.input_channel, x.shape[1] - 1)].copy()

    def callback(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's callback: queue the (high-passed) input, play the converted samples due, the dry input where
        they are missing."""
        try:
            self._last_call = time.monotonic()
            if status:
                self.xruns += 1
            if self.period is None:
                self._set_period(frames)
            x = self._mono(indata)
            if self.filters:
                x = self._in_hp.process(x)
            self._queued += len(x)
            self._inq.put_nowait(x)
            self._fill.push(x)
            y, ready = self._take(self._played - self.headroom, frames)
            y = self._fill.mix(y, ready, self._played)
            self._played += frames
            self.callbacks += 1
            outdata[:] = y[:, None] if np.ndim(outdata) == 2 else y
        except Exception as e:  # never raise into PortAudio: the session stops and re-raises
            self._error = self._error or e
            outdata.fill(0)

    def _take(self, p0: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Converted samples of stream positions [p0, p0 + n) -> (them, which were ready (n,) bool: positions < 0
        are the start, silent by design, and count as ready). Everything before p0 + n is then thrown away, so audio
        that comes later for these positions is never played (late)."""
        y = np.zeros(n, np.float32)
        ready = np.zeros(n, bool)
        if p0 < 0:
            ready[: min(n, -p0)] = True
        p1 = p0 + n
        with self._lock:
            chunks = self._chunks
            for start, a in chunks:
                if start >= p1:
                    break
                lo, hi = max(start, p0), min(start + len(a), p1)
                if hi > lo:
                    y[lo - p0: hi - p0] = a[lo - start: hi - start]
                    ready[lo - p0: hi - p0] = True
            while chunks and chunks[0][0] + len(chunks[0][1]) <= p1:
                chunks.popleft()
            if chunks and chunks[0][0] < p1:
                start, a = chunks[0]
                chunks[0] = (p1, a[p1 - start:])
        return y, ready

    # ------------------------------------------------------------------ the worker
    def pump(self, timeout: float = 0.0) -> int:
        """Convert the queued input (waiting up to ``timeout`` s for the first piece) -> how many pieces were taken.

        The worker thread's loop body; tests call it directly."""
        taken = 0
        while True:
            try:
                piece = self._inq.get(timeout=timeout) if timeout > 0 and taken == 0 else self._inq.get_nowait()
            except queue.Empty:
                return taken
            taken += 1
            self._queued -= len(piece)
            if self._queued >= self.max_behind_blocks * self.block_device:
                self._resync(piece)
            else:
                self._convert(piece)

    def _convert(self, piece: np.ndarray) -> None:
        sc = self.converter
        n0 = len(sc.block_seconds)
        y = sc.process(piece)
        self._in_pos += len(piece)
        y = self._out_rs.push(y)
        if self._skip_out and len(y):  # a restarted converter's priming silence: not audio, the dry input plays
            cut = min(self._skip_out, len(y))
            self._skip_out -= cut
            y = y[cut:]
            with self._lock:
                self._produced += cut
        if len(y) and self.filters:
            y = self._limiter.process(self._out_hp.process(y))
        new = sc.block_seconds[n0:]
        sung = sc.block_sung[n0:]
        loads = [s * 1000.0 / sc.block_duration_ms for s, v in zip(new, sung) if v]
        if self.governor is not None:
            for s, v in zip(new, sung):
                if v:
                    sc.set_steps(self.governor.observe(1000.0 * s))
        if sc.running_key is not None and (not self.keys or self.keys[-1] != sc.transpose):
            self.keys.append(sc.transpose)
        with self._lock:
            due = self._played - self.headroom  # the stream position the output plays now
            if len(y):
                if new and self._produced < due:  # a block finished after its first sample was due
                    self.late += len(new)
                    if self._played > self.samplerate:
                        self.late_after_1s += len(new)
                self._chunks.append((self._produced, y))
                self._produced += len(y)
            self.blocks += len(new)
            self.sung_blocks += len(loads)
            self._loads.extend(loads)
            self._all_loads.extend(loads)

    def _resync(self, piece: np.ndarray) -> None:
        """Skip the stale input (this piece and all queued but the newest) and restart the converter at the
        newest piece's position: its output is placed at that stream position, so the schedule holds."""
        skipped = len(piece)
        while self._inq.qsize() > 1:
            p = self._inq.get_nowait()
            self._queued -= len(p)
            skipped += len(p)
        self._in_pos += skipped
        self.converter.reset()
        self._out_rs.reset()
        self._skip_out = round(self.converter.latency_samples * self.samplerate / self.converter.sample_rate)
        with self._lock:
            self._produced = max(self._produced, self._in_pos)
            self.resyncs += 1

    def _work(self) -> None:
        self.worker_realtime = _realtime_thread(WORKER_PRIORITY)
        try:
            while not self._stop.is_set():
                self.pump(timeout=0.05)
        except BaseException as e:  # a failed conversion stops the session; run() re-raises it
            self._error = self._error or e
            self._stop.set()

    # ------------------------------------------------------------------ control
    def warm_up(self, seconds: float = WARM_UP_SECONDS) -> list[float]:
        """Convert ``seconds`` of a synthetic sung phrase once (first-call costs: allocations, the F0 tracker's
        session) -> the compute of its sung blocks (ms each). With an automatic headroom the compute budget is
        chosen from them (:func:`~canora.live_policy.choose_headroom_ms`). The converter is then reset and its
        timings cleared."""
        from canora.demo import synth_phrase

        sc = self.converter
        x = synth_phrase(sc.input_sample_rate)[: int(seconds * sc.input_sample_rate)]
        n0 = len(sc.block_seconds)

        def convert() -> None:  # at the worker's priority, so the budget is measured as the worker will run
            _realtime_thread(WORKER_PRIORITY)
            sc.convert(np.asarray(x, np.float32))

        t = threading.Thread(target=convert, name="canora-live-warm-up", daemon=True)
        t.start()
        t.join()
        sung = [1000.0 * s for s, v in zip(sc.block_seconds[n0:], sc.block_sung[n0:]) if v]
        if self.auto_headroom and sung:
            self.headroom_ms = choose_headroom_ms(sung[1:] or sung)  # the first block pays first-call costs
            if self.governor is not None:
                self.governor = StepGovernor(self.steps_asked, self.headroom_ms)
        sc.reset()
        sc.block_seconds.clear()
        sc.block_sung.clear()
        return sung

    def open(self) -> AudioStream:
        """Create the stream (not started)."""
        if self.stream is None:
            self.stream = self._last_stream = self.open_stream(self.samplerate, self.blocksize, self.callback)
        return self.stream

    def start(self) -> None:
        """Open the stream, start the worker, then the stream (the interpreter's switch interval shortened while
        it runs)."""
        stream = self.open()
        self._stop.clear()
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch, SWITCH_INTERVAL_S))
        self._worker = threading.Thread(target=self._work, name="canora-live-worker", daemon=True)
        self._worker.start()
        stream.start()

    @property
    def stop_pending(self) -> bool:
        """True while a stream stop has not returned (the stream abandoned, or a stop still running when an error
        cut :meth:`stop` short): a process that exits normally then hangs in PortAudio's terminate, which waits for
        that stream (seen under load on JACK), so the caller should leave with ``os._exit``."""
        return self.abandoned or (self._stopper is not None and self._stopper.is_alive())

    def stop(self) -> None:
        """Stop and close the stream, then the worker (idempotent)."""
        stream, self.stream = self.stream, None
        try:
            if stream is not None:
                stopper = self._stopper = threading.Thread(target=stream.stop, name="canora-live-stop", daemon=True)
                stopper.start()
                stopper.join(STOP_TIMEOUT_SECONDS)
                if stopper.is_alive():  # the server no longer calls the stream: leave it (the process ends soon)
                    self.abandoned = True
                else:
                    stream.close()
        finally:
            self._stop.set()
            if self._worker is not None:
                self._worker.join(timeout=5.0)
                self._worker = None
            if self._switch is not None:
                sys.setswitchinterval(self._switch)
                self._switch = None

    def stats(self, seconds: float = 0.0, recent: bool = False) -> LiveStats:
        """A snapshot; ``recent`` takes the load over the last :data:`LOAD_WINDOW_SECONDS` only."""
        with self._lock:
            loads = list(self._loads if recent else self._all_loads)
        med, p95, mx = _load(loads)
        dry = self._fill.dry_samples if self._fill is not None else 0
        steps = self.governor.steps if self.governor is not None else self.converter.job.steps
        lowest = self.governor.lowest if self.governor is not None else steps
        return LiveStats(seconds=seconds, callbacks=self.callbacks, blocks=self.blocks, sung_blocks=self.sung_blocks,
                         late=self.late, late_after_1s=self.late_after_1s, dry_ms=1000.0 * dry / self.samplerate,
                         resyncs=self.resyncs, xruns=self.xruns,
                         server_xruns=self.server_xruns() if self.server_xruns is not None else None,
                         load_median=med, load_p95=p95, load_max=mx,
                         steps=steps, steps_lowest=lowest, latency_ms=self.latency_ms,
                         device_latency_ms=self.device_latency_ms, round_trip_ms=self.round_trip_ms,
                         headroom_ms=self.headroom_ms, key=list(self.keys))

    def status_line(self, s: LiveStats) -> str:
        """The running display: load of sung blocks (median / max, recent), late blocks, dry time, latency."""
        load = "-" if math.isnan(s.load_median) else f"{s.load_median:.2f} / {s.load_max:.2f}"
        line = (f"live {s.seconds:6.1f} s | load {load} (sung, median / max) | late {s.late} of {s.blocks} | "
                f"dry {s.dry_ms / 1000:.1f} s | round trip {_ms(s.round_trip_ms)} ms")
        if s.steps != self.steps_asked:
            line += f" | steps {s.steps}"
        if s.key:
            line += f" | key {s.key[-1]:+g}"
        if s.resyncs:
            line += f" | resyncs {s.resyncs}"
        if s.xruns or s.server_xruns:
            line += f" | xruns {s.xruns if s.server_xruns is None else s.server_xruns}"
        return line

    def summary(self, s: LiveStats) -> str:
        """The closing line."""
        pct = 100.0 * s.late / s.blocks if s.blocks else 0.0
        load = "no sung block" if math.isnan(s.load_median) else \
            f"load of {s.sung_blocks} sung blocks median {s.load_median:.2f}, p95 {s.load_p95:.2f}, " \
            f"max {s.load_max:.2f}"
        dev = "" if s.device_latency_ms is None else f" + device {_ms(s.device_latency_ms)}"
        text = (f"live: {s.seconds:.1f} s, {s.blocks} blocks of {_ms(self.converter.block_duration_ms)} ms, {s.late} "
                f"late ({pct:.1f} %, {s.late_after_1s} after the first second), dry input played {s.dry_ms / 1000:.2f} "
                f"s; {load}; round trip {_ms(s.round_trip_ms)} ms (converter {_ms(self.converter.latency_ms)} + "
                f"headroom {_ms(1000 * self.headroom / self.samplerate)}{dev})")
        if s.steps_lowest != self.steps_asked:
            text += f"; steps {self.steps_asked} lowered to {s.steps_lowest} at times"
        if s.key:
            text += f"; key {', '.join(f'{k:+g}' for k in s.key)} semitones"
        if s.resyncs or s.xruns or s.server_xruns:
            server = "" if s.server_xruns is None else f" ({s.server_xruns} by the server's count)"
            text += f"; {s.resyncs} resync(s), {s.xruns} callback(s) flagged by the device{server}"
        return text

    def run(self, seconds: float | None = None, warm_up: bool = True,
            on_start: Callable[[LiveSession], None] | None = None) -> LiveStats:
        """Run until ``seconds`` have passed (None: until Ctrl-C or SIGTERM), a status line on ``out`` once a
        second, then stop cleanly and print the summary -> the stats. ``on_start`` is called once the stream runs
        (its first callback seen; the start-up line). A failure of the worker or the callback is re-raised after
        the stream is closed."""
        out = self.out if self.out is not None else sys.stderr
        tty = bool(getattr(out, "isatty", lambda: False)())
        if warm_up:
            self.warm_up()
        restore = _stop_on_sigterm()
        policy = _main_thread_realtime()
        t0 = self.clock()
        shown = False
        try:
            self.start()
            t0 = self.clock()
            next_show = t0 + 1.0
            started = on_start is None
            while self._error is None:
                now = self.clock()
                if self.period is not None and time.monotonic() - self._last_call > STALL_SECONDS:
                    self._error = CanoraError(
                        f"the audio server stopped calling canora for {STALL_SECONDS:g} s (it stopped, or it dropped "
                        "canora's client after a stall); check the server and restart canora live")
                    break
                if not started and (self.period is not None or now - t0 >= 1.0):
                    on_start(self)
                    started = True
                if seconds is not None and now - t0 >= seconds:
                    break
                if now >= next_show:
                    line = self.status_line(self.stats(now - t0, recent=True))
                    out.write(f"\r{line}\x1b[K" if tty else f"{line}\n")
                    out.flush()
                    shown = True
                    next_show += 1.0 * max(1, math.floor(now - next_show) + 1)
                wait = next_show - now
                if seconds is not None:
                    wait = min(wait, t0 + seconds - now)
                if not started:
                    wait = min(wait, 0.01)
                self.sleep(max(0.0, min(0.1, wait)))
        except KeyboardInterrupt:
            pass
        finally:
            elapsed = self.clock() - t0
            self.stop()
            restore()
            policy()
        if shown and tty:
            out.write("\n")
        stats = self.stats(elapsed)
        out.write(self.summary(stats) + "\n")
        out.flush()
        if self._error is not None:
            raise self._error
        return stats
