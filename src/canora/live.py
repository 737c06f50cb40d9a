"""Live conversion: a sound card's input through a :class:`~canora.streaming.StreamConverter` to its output.

:class:`LiveSession` runs the audio loop of ``canora live``. It knows nothing of PortAudio: it is given a
``StreamConverter`` and a stream factory ``open_stream(samplerate, blocksize, callback)`` that returns an object
with ``start()``, ``stop()`` and ``close()`` (a ``sounddevice.Stream``, or a test's stub) and calls
``callback(indata, outdata, frames, time, status)`` once per block, as ``sounddevice`` does.

Why a callback and a worker thread, with the output on a fixed schedule (not a blocking read/convert/write loop):

* one duplex stream, one clock: input and output run at one sample rate (the input device's), so they never
  drift apart; the converter's 22050 Hz output is resampled to that rate by a
  :class:`~canora.streaming.StreamResampler` unless the rate is 22050 Hz;
* the audio callback only moves samples: it queues the input block and copies the converted samples due at
  this output position from a buffer; a worker thread runs :meth:`StreamConverter.process` (one converter block
  per device block at most; its compute time varies on a loaded machine) off the audio thread;
* the output plays converted stream position ``p`` at device position ``p + headroom`` whatever happens:
  ``headroom`` is ``headroom_blocks`` device blocks (the worker's compute budget; one block = one converter block)
  plus the output resampler's wait. Audio that is not ready when its position comes is played as silence and the
  block is counted as dropped; when it arrives late it is thrown away, so a slow block never adds delay. A
  blocking loop would instead play late audio late: the delay would grow with every slow block and stay.

So the latency is fixed: :attr:`LiveSession.latency_ms` = the converter's algorithmic latency (block +
lookahead + cross-fade + resampler) + the headroom, plus the device's own buffering (``stream.latency``). When
the worker falls more than ``max_behind_blocks`` blocks behind (a stall, or compute longer than the block for a
while) it skips the stale input and restarts the converter at the newest block (a resync), so the queue stays
bounded and the output comes back after one latency.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

import numpy as np

from canora.errors import CanoraError
from canora.streaming import StreamConverter, StreamResampler

#: seconds of recent blocks the running display's load statistics cover
LOAD_WINDOW_SECONDS = 5.0

Callback = Callable[[np.ndarray, np.ndarray, int, Any, Any], None]


class AudioStream(Protocol):
    """The part of ``sounddevice.Stream`` a session uses."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


StreamFactory = Callable[[int, int, Callback], AudioStream]


@dataclass
class LiveStats:
    """What a session did: blocks played, dropped (silence for want of converted audio), resyncs, device
    over/underflows reported by the stream, compute load (compute per converter block / block duration)."""

    seconds: float = 0.0
    blocks: int = 0
    dropped: int = 0
    resyncs: int = 0
    xruns: int = 0
    load_median: float = float("nan")
    load_p95: float = float("nan")
    load_max: float = float("nan")
    latency_ms: float = 0.0
    device_latency_ms: float | None = None


def _ms(x: float) -> str:
    return f"{x:.1f}"


def _load(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return float("nan"), float("nan"), float("nan")
    a = np.asarray(values)
    return float(np.median(a)), float(np.percentile(a, 95)), float(a.max())


class LiveSession:
    """The audio loop of ``canora live`` over ``converter`` (primed; its ``input_sample_rate`` is the stream's
    rate) and ``open_stream``; see the module doc. ``headroom_blocks`` device blocks of compute budget;
    ``max_behind_blocks`` queued input blocks before a resync; ``clock`` / ``sleep`` / ``out`` (the running
    display and the summary) are replaceable for tests."""

    def __init__(
        self,
        converter: StreamConverter,
        open_stream: StreamFactory,
        *,
        headroom_blocks: int = 1,
        max_behind_blocks: int = 4,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        out: TextIO | None = None,
    ) -> None:
        if not converter.prime:
            raise CanoraError("a live session needs a primed StreamConverter (prime=True)")
        if headroom_blocks < 1 or max_behind_blocks < 1:
            raise CanoraError("headroom_blocks and max_behind_blocks must be >= 1")
        self.converter = converter
        self.open_stream = open_stream
        self.samplerate = converter.input_sample_rate
        #: samples per callback at the stream's rate: one converter block, rounded down (a callback's input then
        #: completes at most one converter block: the worker never owes two blocks' compute in one block's time)
        self.blocksize = max(1, converter.block_samples * self.samplerate // converter.sample_rate)
        self._out_rs = StreamResampler(converter.sample_rate, self.samplerate)
        margin = 0 if self._out_rs.identity else \
            self._out_rs.delay_out + math.ceil(self.samplerate / converter.sample_rate) + 1  # + floor rounding
        #: device samples between a converted sample's stream position and the output position that plays it
        self.headroom = headroom_blocks * self.blocksize + margin
        self.max_behind_blocks = int(max_behind_blocks)
        self.clock, self.sleep = clock, sleep
        self.out = out
        self.stream: AudioStream | None = None
        self._last_stream: AudioStream | None = None  # for the summary's device latency after stop()
        self._inq: queue.Queue[np.ndarray] = queue.Queue()
        self._lock = threading.Lock()
        self._chunks: deque[tuple[int, np.ndarray]] = deque()  # (stream position, converted samples at the rate)
        self._produced = 0  # stream position after the last converted sample
        self._in_pos = 0  # input samples the worker has converted or skipped
        self._played = 0  # device output samples requested so far
        self._loads: deque[float] = deque(maxlen=max(1, round(LOAD_WINDOW_SECONDS * 1000
                                                              / converter.block_duration_ms)))
        self._all_loads: list[float] = []
        self.blocks = self.dropped = self.resyncs = self.xruns = 0
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None

    # ------------------------------------------------------------------ geometry
    @property
    def latency_ms(self) -> float:
        """Input to output (without the device's buffers): the converter's latency plus the headroom."""
        return self.converter.latency_ms + 1000.0 * self.headroom / self.samplerate

    @property
    def device_latency_ms(self) -> float | None:
        """The stream's reported input + output latency (ms), when it reports one."""
        lat = getattr(self.stream or self._last_stream, "latency", None)
        if lat is None:
            return None
        try:
            return 1000.0 * float(sum(lat) if isinstance(lat, (tuple, list)) else lat)
        except (TypeError, ValueError):
            return None

    # ------------------------------------------------------------------ the audio thread
    def callback(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's callback: queue the input, play the converted samples due (silence when missing)."""
        try:
            if status:
                self.xruns += 1
            x = np.asarray(indata, np.float32)
            self._inq.put_nowait(x.mean(axis=1) if x.ndim == 2 else x.copy())
            y, missing = self._take(self._played - self.headroom, frames)
            self._played += frames
            self.blocks += 1
            if missing:
                self.dropped += 1
            outdata[:] = y[:, None] if np.ndim(outdata) == 2 else y
        except Exception as e:  # never raise into PortAudio: the session stops and re-raises
            self._error = self._error or e
            outdata.fill(0)

    def _take(self, p0: int, n: int) -> tuple[np.ndarray, bool]:
        """Converted samples of stream positions [p0, p0 + n) -> (them, whether any at a position >= 0 was not
        ready: positions < 0 are the start, silent by design). Everything before p0 + n is then thrown away, so
        audio that comes later for these positions is never played (late)."""
        y = np.zeros(n, np.float32)
        filled, p1 = 0, p0 + n
        with self._lock:
            chunks = self._chunks
            for start, a in chunks:
                if start >= p1:
                    break
                lo, hi = max(start, p0), min(start + len(a), p1)
                if hi > lo:
                    y[lo - p0: hi - p0] = a[lo - start: hi - start]
                    filled += hi - lo
            while chunks and chunks[0][0] + len(chunks[0][1]) <= p1:
                chunks.popleft()
            if chunks and chunks[0][0] < p1:
                start, a = chunks[0]
                chunks[0] = (p1, a[p1 - start:])
        return y, filled < n - min(n, max(0, -p0))

    # ------------------------------------------------------------------ the worker
    def pump(self, timeout: float = 0.0) -> int:
        """Convert the queued input blocks (waiting up to ``timeout`` s for the first) -> how many were taken.

        The worker thread's loop body; tests call it directly."""
        taken = 0
        while True:
            try:
                block = self._inq.get(timeout=timeout) if timeout > 0 and taken == 0 else self._inq.get_nowait()
            except queue.Empty:
                return taken
            taken += 1
            if self._inq.qsize() >= self.max_behind_blocks:
                self._resync(block)
            else:
                self._convert(block)

    def _convert(self, block: np.ndarray) -> None:
        sc = self.converter
        n0 = len(sc.block_seconds)
        y = self._out_rs.push(sc.process(block))
        self._in_pos += len(block)
        loads = [s * 1000.0 / sc.block_duration_ms for s in sc.block_seconds[n0:]]
        with self._lock:
            if len(y):
                self._chunks.append((self._produced, y))
                self._produced += len(y)
            self._loads.extend(loads)
            self._all_loads.extend(loads)

    def _resync(self, block: np.ndarray) -> None:
        """Skip the stale input (this block and all queued but the newest) and restart the converter at the
        newest block's position: its output is placed at that stream position, so the schedule holds."""
        skipped = len(block)
        while self._inq.qsize() > 1:
            skipped += len(self._inq.get_nowait())
        self._in_pos += skipped
        self.converter.reset()
        self._out_rs.reset()
        with self._lock:
            self._produced = max(self._produced, self._in_pos)
            self.resyncs += 1

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                self.pump(timeout=0.05)
        except BaseException as e:  # a failed conversion stops the session; run() re-raises it
            self._error = self._error or e
            self._stop.set()

    # ------------------------------------------------------------------ control
    def warm_up(self, seconds: float = 0.5) -> None:
        """Convert ``seconds`` of a quiet sung tone once (first-call costs: allocations, the F0 tracker's session)
        so the first live blocks are not dropped; the converter is reset and its timings cleared."""
        sc = self.converter
        sr = sc.input_sample_rate
        t = np.arange(int(seconds * sr)) / sr
        sc.convert((0.1 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32))
        sc.reset()
        sc.block_seconds.clear()

    def open(self) -> AudioStream:
        """Create the stream (not started)."""
        if self.stream is None:
            self.stream = self._last_stream = self.open_stream(self.samplerate, self.blocksize, self.callback)
        return self.stream

    def start(self) -> None:
        """Open the stream, start the worker, then the stream."""
        stream = self.open()
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="canora-live-worker", daemon=True)
        self._worker.start()
        stream.start()

    def stop(self) -> None:
        """Stop and close the stream, then the worker (idempotent)."""
        stream, self.stream = self.stream, None
        try:
            if stream is not None:
                try:
                    stream.stop()
                finally:
                    stream.close()
        finally:
            self._stop.set()
            if self._worker is not None:
                self._worker.join(timeout=5.0)
                self._worker = None

    def stats(self, seconds: float = 0.0, recent: bool = False) -> LiveStats:
        """A snapshot; ``recent`` takes the load over the last :data:`LOAD_WINDOW_SECONDS` only."""
        with self._lock:
            loads = list(self._loads if recent else self._all_loads)
        med, p95, mx = _load(loads)
        return LiveStats(seconds=seconds, blocks=self.blocks, dropped=self.dropped, resyncs=self.resyncs,
                         xruns=self.xruns, load_median=med, load_p95=p95, load_max=mx, latency_ms=self.latency_ms,
                         device_latency_ms=self.device_latency_ms)

    def status_line(self, s: LiveStats) -> str:
        """The running display: load (median / max of recent blocks), dropped blocks, latency."""
        load = "-" if math.isnan(s.load_median) else f"{s.load_median:.2f} / {s.load_max:.2f}"
        line = (f"live {s.seconds:6.1f} s | load {load} (median / max) | dropped {s.dropped} of {s.blocks} | "
                f"latency {_ms(s.latency_ms)} ms")
        if s.resyncs:
            line += f" | resyncs {s.resyncs}"
        return line

    def summary(self, s: LiveStats) -> str:
        """The closing line(s)."""
        pct = 100.0 * s.dropped / s.blocks if s.blocks else 0.0
        load = "no block converted" if math.isnan(s.load_median) else \
            f"load median {s.load_median:.2f}, p95 {s.load_p95:.2f}, max {s.load_max:.2f}"
        dev = "" if s.device_latency_ms is None else f" + device {_ms(s.device_latency_ms)} ms"
        text = (f"live: {s.seconds:.1f} s, {s.blocks} blocks of {_ms(1000 * self.blocksize / self.samplerate)} ms, "
                f"{s.dropped} dropped ({pct:.1f} %); {load}; latency {_ms(s.latency_ms)} ms (converter "
                f"{_ms(self.converter.latency_ms)} + headroom {_ms(1000 * self.headroom / self.samplerate)}){dev}")
        if s.resyncs or s.xruns:
            text += f"; {s.resyncs} resync(s), {s.xruns} device over/underflow(s)"
        return text

    def run(self, seconds: float | None = None, warm_up: bool = True) -> LiveStats:
        """Run until ``seconds`` have passed (None: until Ctrl-C), a status line on ``out`` once a second, then
        stop cleanly and print the summary -> the stats. A failure of the worker or the callback is re-raised
        after the stream is closed."""
        out = self.out if self.out is not None else sys.stderr
        tty = bool(getattr(out, "isatty", lambda: False)())
        if warm_up:
            self.warm_up()
        t0 = self.clock()
        shown = False
        try:
            self.start()
            t0 = self.clock()
            next_show = t0 + 1.0
            while self._error is None:
                now = self.clock()
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
                self.sleep(max(0.0, min(0.1, wait)))
        except KeyboardInterrupt:
            pass
        finally:
            elapsed = self.clock() - t0
            self.stop()
        if shown and tty:
            out.write("\n")
        stats = self.stats(elapsed)
        out.write(self.summary(stats) + "\n")
        out.flush()
        if self._error is not None:
            raise self._error
        return stats
