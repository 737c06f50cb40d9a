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
from canora.pipeline import Converter
from canora.streaming import StreamConverter

from .conftest import make_tiny_models

SR = 22050
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


class FakeStream:
    """The ``sounddevice.Stream`` surface a session uses. ``tick(x)`` plays one block through the callback;
    with ``realtime`` a thread ticks a tone every block duration after ``start()``."""

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
        period, t, i = self.blocksize / self.samplerate, time.monotonic(), 0
        n = self.blocksize
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

    return LiveSession(sc, factory, out=io.StringIO(), **kw), made


def _drive(session: LiveSession, x: np.ndarray, pump: bool = True) -> np.ndarray:
    """``x`` through the session block by block, converting after each callback -> the first output channel."""
    stream = session.open()
    b = session.blocksize
    x = np.pad(x, (0, -len(x) % b))
    outs = []
    for i in range(0, len(x), b):
        out = stream.tick(x[i: i + b])
        assert np.array_equal(out[:, 0], out[:, 1])  # mono on every output channel
        outs.append(out[:, 0])
        if pump:
            session.pump()
    return np.concatenate(outs)


# ---------------------------------------------------------------------- the loop
def test_passes_audio_through_with_the_documented_latency(tiny_converter):
    sc = IdentityStream(tiny_converter, block_ms=60, input_sample_rate=SR)
    session, _ = _session(sc)
    assert session.blocksize == sc.block_samples and session.headroom == sc.block_samples
    lat = sc.latency_samples + session.blocksize  # converter + one block of compute headroom
    assert session.latency_ms == pytest.approx(1000 * lat / SR)
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    y = _drive(session, x)
    assert np.all(y[:lat] == 0)
    np.testing.assert_allclose(y[lat:], x[: len(y) - lat], atol=1e-6)  # (the cross-fade rounds)
    assert session.dropped == 0 and session.blocks == len(y) // session.blocksize


def test_resamples_to_the_device_rate_with_the_documented_latency(tiny_converter):
    rate = 48000
    sc = IdentityStream(tiny_converter, block_ms=60, input_sample_rate=rate)
    session, _ = _session(sc)
    x = np.zeros(rate, np.float32)
    x[rate // 3] = 1.0
    y = _drive(session, x)
    expect = rate // 3 + session.latency_ms * rate / 1000  # converter + headroom (+ the output resampler's wait)
    assert abs(int(np.argmax(np.abs(y))) - expect) <= 1
    assert session.dropped == 0


def test_late_audio_is_silence_counted_as_dropped_and_the_latency_holds(tiny_converter):
    sc = IdentityStream(tiny_converter, block_ms=60, input_sample_rate=SR)
    session, _ = _session(sc)
    stream, b = session.open(), session.blocksize
    x = (0.1 * np.random.default_rng(1).standard_normal(12 * b)).astype(np.float32)
    outs = []
    for i in range(12):
        outs.append(stream.tick(x[i * b: (i + 1) * b])[:, 0])
        if i not in (3, 4):  # the worker misses two callbacks: blocks 4 and 5 play silence
            session.pump()
    y = np.concatenate(outs)
    assert session.dropped == 2
    lat = sc.latency_samples + b
    assert np.all(y[5 * b: 6 * b] == 0) and not np.all(y[3 * b: 4 * b] == 0)
    np.testing.assert_allclose(y[6 * b:], x[6 * b - lat: len(y) - lat], atol=1e-6)  # the late audio is not played late


def test_a_worker_far_behind_resyncs_and_keeps_the_latency(tiny_converter):
    sc = IdentityStream(tiny_converter, block_ms=60, input_sample_rate=SR)
    session, _ = _session(sc, max_behind_blocks=4)
    stream, b = session.open(), session.blocksize
    x = (0.1 * np.random.default_rng(2).standard_normal(16 * b)).astype(np.float32)
    outs = []
    for i in range(16):
        outs.append(stream.tick(x[i * b: (i + 1) * b])[:, 0])
        if not 2 <= i <= 7:  # a stall of six callbacks: blocks 2..7 are skipped, the converter restarts at 8
            session.pump()
    y = np.concatenate(outs)
    assert session.resyncs == 1 and session._inq.qsize() == 0 and session.dropped >= 4
    lat = sc.latency_samples + b
    restart = 8 * b + lat  # the restarted converter's first sample, on the old schedule
    assert np.all(y[7 * b: restart] == 0)
    np.testing.assert_allclose(y[restart:], x[restart - lat: len(y) - lat], atol=1e-6)


def test_slow_processing_drops_blocks_in_real_time_and_prints_the_summary(tiny_converter):
    sc = SlowStream(tiny_converter, block_ms=40, input_sample_rate=SR)
    sc.delay = 1.6 * sc.block_duration_ms / 1000
    session, made = _session(sc, realtime=True)
    stats = session.run(seconds=1.3, warm_up=False)
    text = session.out.getvalue()
    lines = text.strip().splitlines()
    assert lines[0].startswith("live ") and "load" in lines[0] and "dropped" in lines[0]  # the running display
    assert lines[-1].startswith("live: ") and f"{stats.dropped} dropped" in lines[-1] and "latency" in lines[-1]
    assert stats.dropped > 0 and stats.load_max > 1.0 and stats.blocks >= 15
    assert made[0].started and made[0].stopped and made[0].closed and session._worker is None
    assert stats.device_latency_ms == pytest.approx(15.0)


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


def test_live_command_runs_with_the_tiny_models(capsys, fake_sd, tiny_paths):
    ref, voc = tiny_paths
    code = main(["live", "--refiner", str(ref), "--vocoder", str(voc), "--input", "microphone", "--output",
                 "Built-in Output", "--seconds", "1.2", "--transpose", "2", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    (s,) = fake_sd.streams
    assert s.kwargs["samplerate"] == 44100 and s.kwargs["device"] == (0, 2) and s.kwargs["channels"] == (1, 2)
    assert s.kwargs["blocksize"] == round(9 * 256 * 44100 / SR) and s.closed
    assert "live: Built-in Microphone -> Built-in Output at 44100 Hz" in err
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("live: 1.2 s") and "dropped" in summary and "latency" in summary
    assert len(s.outputs) >= 8 and np.isfinite(np.concatenate(s.outputs)).all()


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
