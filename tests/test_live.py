"""canora live: the audio loop (canora.live.LiveSession) through a fake sounddevice stream, and the command with a
stubbed sounddevice module (this machine has no sound card and no PortAudio)."""

from __future__ import annotations

import io
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from canora.cli import main
from canora.live import LiveSession
from canora.live_policy import choose_headroom_ms
from canora.pipeline import Converter
from canora.streaming import StreamConverter

from .conftest import make_tiny_models

SR = 22050
PERIOD = 256  # device frames per callback in these tests
INSTALL = "canora live: error: canora live needs the 'live' extra: pip install 'canora[live]'"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_paths(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_tiny_models(tmp_path_factory.mktemp("live_models"))


@pytest.fixture(scope="module")
def tiny_converter(tiny_paths: tuple[Path, Path]) -> Converter:
    return Converter.from_pretrained(*tiny_paths)


class IdentityStream(StreamConverter):
    """The stream's framing with the models replaced by the identity (as in test_streaming)."""

    def _render(self, window: np.ndarray, a: int, v0: int, k: int) -> np.ndarray:
        return window[(v0 - a) * self.hop:]


class SlowStream(IdentityStream):
    """The identity, taking ``delay`` seconds a block: compute longer than the block."""

    delay = 0.0

    def _render(self, window: np.ndarray, a: int, v0: int, k: int) -> np.ndarray:
        time.sleep(self.delay)
        return super()._render(window, a, v0, k)


class HalfStream(IdentityStream):
    """Half the input: converted audio tells itself apart from the dry input."""

    def _render(self, window: np.ndarray, a: int, v0: int, k: int) -> np.ndarray:
        return 0.5 * super()._render(window, a, v0, k)


class FakeStream:
    """The ``sounddevice.Stream`` surface a session uses. ``tick(x)`` plays one device period through the callback;
    with ``realtime`` a thread ticks a tone every period after ``start()`` (``blocksize`` 0: 256 frames)."""

    def __init__(self, samplerate: int, blocksize: int, callback: Any, channels: int = 2,
                 realtime: bool = False) -> None:
        self.samplerate, self.blocksize, self.callback = samplerate, blocksize, callback
        self.channels, self.realtime = channels, realtime
        self.latency = (0.005, 0.010)
        self.started = self.stopped = self.closed = False
        self.outputs: list[np.ndarray] = []
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self, x: np.ndarray) -> np.ndarray:
        out = np.full((len(x), self.channels), np.nan, np.float32)
        self.callback(np.asarray(x, np.float32)[:, None], out, len(x), None, None)
        return out

    def _play(self) -> None:
        n = self.blocksize or PERIOD
        period, t, i = n / self.samplerate, time.monotonic(), 0
        while True:
            t += period
            if self._halt.wait(max(0.0, t - time.monotonic())):
                return
            s = (np.arange(i * n, (i + 1) * n) / self.samplerate).astype(np.float64)
            self.outputs.append(self.tick((0.2 * np.sin(2 * np.pi * 220 * s)).astype(np.float32)))
            i += 1

    def start(self) -> None:
        self.started = True
        if self.realtime:
            self._thread = threading.Thread(target=self._play, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self.stopped = True
        self._halt.set()
        if self._thread is not None:
            self._thread.join()

    def close(self) -> None:
        self.closed = True


def _session(sc: StreamConverter, realtime: bool = False, **kw: Any) -> tuple[LiveSession, list[FakeStream]]:
    made: list[FakeStream] = []

    def factory(samplerate: int, blocksize: int, callback: Any) -> FakeStream:
        made.append(FakeStream(samplerate, blocksize, callback, realtime=realtime))
        return made[-1]

    kw.setdefault("filters", False)
    return LiveSession(sc, factory, out=io.StringIO(), **kw), made


def _drive(session: LiveSession, x: np.ndarray, skip: range = range(0)) -> np.ndarray:
    """``x`` through the session one period at a time, converting after each callback but those in ``skip`` -> the
    first output channel."""
    stream = session.open()
    x = np.pad(x, (0, -len(x) % PERIOD))
    outs = []
    for j, i in enumerate(range(0, len(x), PERIOD)):
        out = stream.tick(x[i: i + PERIOD])
        assert np.array_equal(out[:, 0], out[:, 1])  # mono on every output channel
        outs.append(out[:, 0])
        if j not in skip:
            session.pump()
    return np.concatenate(outs)


# ---------------------------------------------------------------------- the loop
def test_passes_audio_through_with_the_documented_latency(tiny_converter):
    sc = IdentityStream(tiny_converter, block_ms=60, input_sample_rate=SR)
    session, _ = _session(sc, headroom_ms=20.0)
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    y = _drive(session, x)
    assert session.period == PERIOD and session.headroom == round(0.020 * SR) + PERIOD  # budget + one period
    lat = sc.latency_samples + session.headroom
    assert session.latency_ms == pytest.approx(1000 * lat / SR)
    assert session.round_trip_ms == pytest.approx(session.latency_ms + 15.0)  # + the device's 5 + 10 ms
    assert np.all(y[:lat] == 0)
    np.testing.assert_allclose(y[lat:], x[: len(y) - lat], atol=1e-6)  # (the cross-fade rounds)
    assert session.late == 0 and session.blocks == (len(y) - sc.lookahead_frames * sc.hop) // sc.block_samples
    assert session.stats().dry_ms == 0


def test_resamples_to_the_device_rate_with_the_documented_latency(tiny_converter):
    rate = 48000
    sc = IdentityStream(tiny_converter, block_ms=60, input_sample_rate=rate)
    session, _ = _session(sc, headroom_ms=20.0)
    x = np.zeros(rate, np.float32)
    x[rate // 3] = 1.0
    y = _drive(session, x)
    expect = rate // 3 + session.latency_ms * rate / 1000  # converter + headroom (+ the output resampler's wait)
    assert abs(int(np.argmax(np.abs(y))) - expect) <= 1
    assert session.late == 0


def test_late_audio_plays_the_dry_input_counted_as_late_and_the_latency_holds(tiny_converter):
    sc = HalfStream(tiny_converter, block_ms=60, input_sample_rate=SR)
    session, _ = _session(sc, headroom_ms=20.0, adapt_steps=False)
    x = (0.1 * np.random.default_rng(1).standard_normal(2 * SR)).astype(np.float32)
    y = _drive(session, x, skip=range(100, 116))  # the worker misses 16 periods (186 ms): more than its headroom
    lat = sc.latency_samples + session.headroom
    assert session.late >= 1 and session.late_after_1s == session.late
    s = session.stats()
    assert s.dry_ms > 0 and session._fill.dry_samples < len(y)
    dry = np.flatnonzero(np.abs(y[lat:] - x[: len(y) - lat]) < 1e-6) + lat  # the input as it came: the dry input
    wet = np.flatnonzero(np.abs(y[lat:] - 0.5 * x[: len(y) - lat]) < 1e-6) + lat
    assert len(dry) > 10 * PERIOD // 2 and dry.min() > 100 * PERIOD  # only once the worker fell behind
    assert wet.max() > dry.max() and len(wet) > len(y) // 2  # the converted audio comes back, on schedule
    assert not np.any(np.convolve(y[lat:] == 0, np.ones(64), "valid") == 64)  # never silent for want of compute


def test_a_worker_far_behind_resyncs_and_keeps_the_latency(tiny_converter):
    sc = HalfStream(tiny_converter, block_ms=60, input_sample_rate=SR)
    session, _ = _session(sc, headroom_ms=20.0, max_behind_blocks=4)
    x = (0.1 * np.random.default_rng(2).standard_normal(3 * SR)).astype(np.float32)
    y = _drive(session, x, skip=range(30, 80))  # a stall of 50 periods (580 ms, about 10 blocks)
    assert session.resyncs == 1 and session._inq.qsize() == 0 and session.stats().dry_ms > 0
    lat = sc.latency_samples + session.headroom
    tail = slice(len(y) - SR // 2, len(y))  # the restarted converter plays on the old schedule
    np.testing.assert_allclose(y[tail], 0.5 * x[tail.start - lat: tail.stop - lat], atol=1e-6)
    assert not np.any(np.convolve(y[lat:] == 0, np.ones(64), "valid") == 64)  # the dry input filled the stall


@pytest.mark.slow
def test_slow_processing_plays_the_dry_input_in_real_time_and_prints_the_summary(tiny_converter):
    sc = SlowStream(tiny_converter, block_ms=40, input_sample_rate=SR)
    sc.delay = 1.6 * sc.block_duration_ms / 1000
    session, made = _session(sc, realtime=True, headroom_ms=10.0)
    stats = session.run(seconds=1.3, warm_up=False)
    text = session.out.getvalue()
    lines = text.strip().splitlines()
    assert lines[0].startswith("live ") and "load" in lines[0] and "late" in lines[0]  # the running display
    assert lines[-1].startswith("live: ") and f"{stats.late} late" in lines[-1] and "round trip" in lines[-1]
    assert stats.late > 0 and stats.dry_ms > 0 and stats.callbacks >= 80
    assert made[0].started and made[0].stopped and made[0].closed and session._worker is None
    assert stats.device_latency_ms == pytest.approx(15.0)
    lat = round(session.latency_ms * SR / 1000) + PERIOD
    y = np.concatenate([o[:, 0] for o in made[0].outputs])[lat:]
    assert not np.any(np.convolve(y == 0, np.ones(64), "valid") == 64)  # the tone never stops


def test_ctrl_c_stops_cleanly_with_a_summary(tiny_converter):
    sc = IdentityStream(tiny_converter, block_ms=60, input_sample_rate=SR)
    now = [0.0]

    def sleep(dt: float) -> None:
        now[0] += max(dt, 0.01)
        if now[0] >= 2.5:
            raise KeyboardInterrupt

    session, made = _session(sc, clock=lambda: now[0], sleep=sleep)
    stats = session.run(warm_up=False)
    lines = session.out.getvalue().strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("live    1.0 s") and lines[1].startswith("live    2.0 s")
    assert lines[2].startswith("live: 2.5 s") and stats.seconds == pytest.approx(2.5)
    assert made[0].stopped and made[0].closed


def test_a_failing_conversion_stops_the_session_and_is_raised(tiny_converter):
    class Broken(IdentityStream):
        def _render(self, window: np.ndarray, a: int, v0: int, k: int) -> np.ndarray:
            raise RuntimeError("boom")

    session, made = _session(Broken(tiny_converter, block_ms=40, input_sample_rate=SR), realtime=True)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="boom"):
        session.run(seconds=5.0, warm_up=False)
    assert time.monotonic() - t0 < 3.0 and made[0].closed


@pytest.mark.slow
def test_warm_up_measures_sung_blocks_and_sets_the_headroom(tiny_converter):
    sc = StreamConverter(tiny_converter, block_ms=60, input_sample_rate=SR)
    session, _ = _session(sc)
    assert session.auto_headroom and session.headroom_ms == pytest.approx(sc.block_duration_ms)
    sung = session.warm_up(seconds=2.0)
    assert sung and session.headroom_ms == pytest.approx(choose_headroom_ms(sung[1:]))
    assert sc.block_seconds == [] and sc.block_sung == []


def test_filters_keep_every_sample_under_full_scale(tiny_converter):
    rate = 48000
    sc = IdentityStream(tiny_converter, block_ms=60, input_sample_rate=rate)
    session, _ = _session(sc, headroom_ms=20.0, filters=True)
    t = np.arange(rate) / rate
    x = (1.3 * np.sin(2 * np.pi * 440 * t) + 0.5).astype(np.float32)  # over full scale, with DC
    y = _drive(session, x)
    assert np.abs(y).max() < 1.0 and abs(float(y[rate // 2:].mean())) < 0.01


# ---------------------------------------------------------------------- the command
DEVICES = [
    {"name": "Built-in Microphone", "hostapi": 0, "max_input_channels": 2, "max_output_channels": 0,
     "default_samplerate": 44100.0},
    {"name": "USB Audio Interface", "hostapi": 0, "max_input_channels": 2, "max_output_channels": 2,
     "default_samplerate": 48000.0},
    {"name": "Built-in Output", "hostapi": 0, "max_input_channels": 0, "max_output_channels": 2,
     "default_samplerate": 44100.0},
    {"name": "USB Headset", "hostapi": 0, "max_input_channels": 1, "max_output_channels": 2,
     "default_samplerate": 48000.0},
]


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A stub ``sounddevice``: the devices above (each takes only its default rate), defaults 0 and 2, and a
    ``Stream`` that ticks in real time."""
    sd = types.ModuleType("sounddevice")
    sd.PortAudioError = type("PortAudioError", (Exception,), {})
    sd.default = types.SimpleNamespace(device=[0, 2])
    sd.query_devices = lambda: [dict(d) for d in DEVICES]
    sd.query_hostapis = lambda: ({"name": "ALSA"},)
    sd.streams = []

    def check(kind: str):
        def f(device: int, channels: int, samplerate: float, dtype: str) -> None:
            d = DEVICES[device]
            if channels > d[f"max_{kind}_channels"] or samplerate != d["default_samplerate"]:
                raise sd.PortAudioError("Invalid sample rate [PaErrorCode -9997]")
        return f

    sd.check_input_settings, sd.check_output_settings = check("input"), check("output")

    def stream(**kw: Any) -> FakeStream:
        s = FakeStream(kw["samplerate"], kw["blocksize"], kw["callback"], channels=kw["channels"][1], realtime=True)
        s.kwargs = kw
        sd.streams.append(s)
        return s

    sd.Stream = stream
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    return sd


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_list_devices(capsys, fake_sd):
    assert main(["live", "--list-devices"]) == 0
    out = capsys.readouterr().out
    inputs, outputs = out.split("output devices:")
    assert "input devices:" in inputs and "Built-in Output" not in inputs
    assert "*  0  Built-in Microphone  [ALSA]  2 ch, 44100 Hz  (default)" in inputs
    assert "   1  USB Audio Interface  [ALSA]  2 ch, 48000 Hz" in inputs and "USB Headset  [ALSA]  1 ch" in inputs
    assert "*  2  Built-in Output  [ALSA]  2 ch, 44100 Hz  (default)" in outputs and "Microphone" not in outputs


def test_missing_extra_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import sounddevice -> ImportError
    assert main(["live", "--list-devices"]) == 2
    assert _one_line(capsys.readouterr().err) == INSTALL


@pytest.mark.parametrize("argv, expect", [
    (["--input", "nothing"], "--input 'nothing': no input device matches; choose one of: 0 'Built-in Microphone', "
                             "ALSA; 1 'USB Audio Interface', ALSA; 3 'USB Headset', ALSA"),
    (["--input", "usb"], "--input 'usb' matches 2 input devices"),
    (["--output", "0"], "--output 0: no output device has index 0; choose one of: 1 'USB Audio Interface'"),
    (["--input", "usb audio", "--output", "built-in"], "--output 2 'Built-in Output' does not take 2 channel(s) at "
                                                       "48000 Hz"),
    (["--sample-rate", "16000"], "--input 0 'Built-in Microphone' does not take 1 channel(s) at 16000 Hz"),
    (["--block-ms", "5"], "--block-ms must be in 10..2000 ms"),
    (["--seconds", "0"], "--seconds must be > 0"),
])
def test_bad_devices_and_options_are_one_line_with_status_2(capsys, fake_sd, argv, expect):
    assert main(["live", *argv, "--refiner", "/nonexistent/refiner"]) == 2  # checked before the models load
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("canora live: error: ") and expect in line, line
    assert fake_sd.streams == []


@pytest.mark.slow
def test_live_command_runs_with_the_tiny_models(capsys, fake_sd, tiny_paths):
    ref, voc = tiny_paths
    code = main(["live", "--refiner", str(ref), "--vocoder", str(voc), "--input", "microphone", "--output",
                 "Built-in Output", "--seconds", "1.2", "--transpose", "2", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    (s,) = fake_sd.streams
    assert s.kwargs["samplerate"] == 44100 and s.kwargs["device"] == (0, 2) and s.kwargs["channels"] == (1, 2)
    assert s.kwargs["blocksize"] == 0 and s.closed  # the host's period
    start = next(ln for ln in err.splitlines() if ln.startswith("live: Built-in"))
    assert "live: Built-in Microphone -> Built-in Output (ALSA) at 44100 Hz" in start
    assert "torch (auto)" in start or "ONNX Runtime (auto)" in start  # which backend auto chose
    assert "key +2 semitones (fixed)" in start and "round trip" in start and "+ device 15.0" in start
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("live: 1.2 s") and "late" in summary and "round trip" in summary
    assert len(s.outputs) >= 8 and np.isfinite(np.concatenate(s.outputs)).all()


@pytest.mark.slow
def test_live_gain_sets_the_level_the_refiner_hears(capsys, fake_sd, tiny_paths, monkeypatch):
    """--gain-db reaches the stream converter (the level the refiner hears the microphone at): auto by default,
    a number fixes it, anything else is refused."""
    import canora.streaming

    seen = []

    class Recording(canora.streaming.StreamConverter):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            seen.append("auto" if self.auto_level else self.gain_db)

    monkeypatch.setattr(canora.streaming, "StreamConverter", Recording)
    ref, voc = tiny_paths
    for extra in ([], ["--gain-db", "7.5"]):
        code = main(["live", "--refiner", str(ref), "--vocoder", str(voc), "--input", "microphone", "--output",
                     "Built-in Output", "--seconds", "0.3", "--threads", "1", *extra])
        assert code == 0, capsys.readouterr().err
    assert seen == ["auto", 7.5]
    with pytest.raises(SystemExit):
        main(["live", "--refiner", str(ref), "--vocoder", str(voc), "--gain-db", "loud"])
    assert "loud" in capsys.readouterr().err


def test_the_step_governor_lowers_steps_when_compute_falls_short_and_raises_them_when_calm():
    from canora.live_policy import STEP_UP_BLOCKS, StepGovernor

    g = StepGovernor(3, budget_ms=50.0)
    assert g.observe(45.0) == 2 and g.observe(45.0) == 1 and g.observe(45.0) == 1  # never below one step
    for _ in range(STEP_UP_BLOCKS - 1):
        assert g.observe(10.0) == 1
    assert g.observe(10.0) == 2 and g.lowest == 1 and g.changes == 3
    assert choose_headroom_ms([20.0] * 19 + [40.0]) == pytest.approx(1.5 * np.percentile([20.0] * 19 + [40.0], 95))
    assert choose_headroom_ms([1.0, 2.0]) == 20.0  # at least HEADROOM_MIN_MS


@pytest.mark.parametrize("channel, opened", [("1", 1), ("2", 2), ("mix", 2)])
@pytest.mark.slow
def test_input_channel_opens_the_channels_it_needs(capsys, fake_sd, tiny_paths, channel, opened):
    ref, voc = tiny_paths
    code = main(["live", "--refiner", str(ref), "--vocoder", str(voc), "--input", "USB Audio", "--output", "USB Audio",
                 "--seconds", "0.3", "--threads", "1", "--input-channel", channel, "--headroom-ms", "30"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert fake_sd.streams[-1].kwargs["channels"] == (opened, 2)
    assert "running key (whole octaves toward pjs's range)" in err and "compute headroom 30.0 (given)" in err
    assert "mel matching 2 rounds" in err  # the tiny vocoder names no singers: the output is matched


def test_a_third_input_channel_of_a_two_channel_device_is_one_line(capsys, fake_sd):
    assert main(["live", "--input", "USB Audio", "--input-channel", "3", "--refiner", "/nonexistent/refiner"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "--input-channel 3: --input 1 'USB Audio Interface' has 2 input channel(s)" in line


def test_a_stream_stop_that_does_not_return_is_pending_and_abandons_the_stream(tiny_converter, monkeypatch):
    """A server that no longer calls the stream: stop() gives up after STOP_TIMEOUT_SECONDS, leaves the stream
    unclosed and says ``stop_pending`` (the CLI then leaves with os._exit, as PortAudio's terminate would wait);
    a stream that stops is closed and nothing is pending."""
    import canora.live as live

    monkeypatch.setattr(live, "STOP_TIMEOUT_SECONDS", 0.2)
    sc = IdentityStream(tiny_converter, block_ms=60, input_sample_rate=SR)
    session, made = _session(sc)
    session.open()
    assert not session.stop_pending
    session.stop()
    assert made[0].closed and not session.stop_pending and not session.abandoned
    release = threading.Event()
    session2, made2 = _session(sc)
    session2.open()
    monkeypatch.setattr(made2[0], "stop", lambda: release.wait(10.0))
    session2.stop()
    assert session2.abandoned and session2.stop_pending and not made2[0].closed
    release.set()
