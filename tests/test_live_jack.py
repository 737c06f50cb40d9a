"""canora live on a real audio stack: a JACK server (dummy driver, 48 kHz, 256-frame periods) started by the test,
``canora live`` run as a process that opens its devices through PortAudio, and a JACK client of the test
(:class:`canora.jackrig.PlayRecord`) that plays a real song into canora's input and records its output.

Skipped when jackd, JACK-Client or PortAudio (sounddevice) are not installed (``CANORA_LIVE_STACK=1 bash
scripts/setup.sh`` installs them). The assertions are about behaviour, never timing: this machine may be busy."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import make_tiny_models, shared_file

jackrig = pytest.importorskip("canora.jackrig")
RATE = 48000
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _stack_or_skip() -> None:
    if jackrig.jackd_path() is None:
        pytest.skip("jackd is not installed (CANORA_LIVE_STACK=1 bash scripts/setup.sh)")
    try:
        import jack  # noqa: F401
    except (ImportError, OSError):
        pytest.skip("JACK-Client is not installed (pip install 'canora[live]')")
    probe = subprocess.run([sys.executable, "-c", "import sounddevice"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("sounddevice / the PortAudio library is not installed")


@pytest.fixture(scope="module")
def server():
    _stack_or_skip()
    with jackrig.JackServer(rate=RATE, period=256) as srv:
        yield srv


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    ref, voc = make_tiny_models(tmp_path_factory.mktemp("live_jack_models"))
    return ["--refiner", str(ref), "--vocoder", str(voc)]


def _env(server, **extra: str) -> dict[str, str]:
    return {**server.env, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", **extra}


def _live(server, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "canora", "live", *argv], env=env or _env(server),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _one_line_error(server, *argv: str, env: dict[str, str] | None = None) -> str:
    p = subprocess.run([sys.executable, "-m", "canora", "live", *argv], env=env or _env(server),
                       capture_output=True, text=True, timeout=120)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith(("Cannot connect", "jack server",
                                                                                      "JackShm"))]
    assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    return lines[0]


def _song(seconds: float) -> np.ndarray:
    from canora.io.audio import load_audio

    return load_audio(shared_file("vocadito/vocadito_10.wav"), RATE)[: int(seconds * RATE)].astype(np.float32)


@pytest.mark.slow
def test_list_devices_shows_the_server_and_the_rig(server):
    with jackrig.PlayRecord(server.name, "rig-list"):
        p = subprocess.run([sys.executable, "-m", "canora", "live", "--list-devices"], env=_env(server),
                           capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "system  [JACK Audio Connection Kit]  2 ch, 48000 Hz" in p.stdout
    assert "rig-list  [JACK Audio Connection Kit]  1 ch, 48000 Hz" in p.stdout


@pytest.mark.slow
def test_a_real_song_through_portaudio_and_jack_is_converted_never_silent_and_under_full_scale(server, tmp_path):
    song = _song(8.0)
    stats_path = tmp_path / "stats.json"
    with jackrig.PlayRecord(server.name, "rig", record_seconds=20) as rig:
        live = _live(server, "--input", "rig", "--output", "rig", "--jack-name", "canora-test", "--stats-json",
                     str(stats_path))
        try:
            assert rig.wait_connected(300), live.stderr.read() if live.poll() is not None else "not connected"
            ins, outs = rig.connections()
            assert ins == ["canora-test:out_0"] and outs == ["canora-test:in_0"]  # the client is named as asked
            time.sleep(0.5)
            rig.play(song)
            rig.wait_played(1.0, timeout=120)
            rec = rig.recording()
        finally:
            live.send_signal(2)  # Ctrl-C: a clean stop and the summary
            _, err = live.communicate(timeout=120)
    assert live.returncode == 0, err
    stats = json.loads(stats_path.read_text())
    start = next(ln for ln in err.splitlines() if ln.startswith("live: rig -> rig"))
    assert "JACK Audio Connection Kit, JACK client 'canora-test'" in start and "(auto)" in start  # backend auto chose
    assert "running key" in start and f"round trip {stats['round_trip_ms']:.1f} ms" in start
    assert stats["period"] == 256 and stats["blocks"] > 50 and stats["sung_blocks"] > 10
    assert stats["server_xruns"] is not None and stats["server_xruns"] >= 0
    assert stats["key"] and stats["key"][-1] in (-12.0, 0.0, 12.0)  # whole octaves, chosen as the song went
    assert np.abs(rec).max() < 1.0  # the limiter: no sample at full scale

    def rms(x: np.ndarray) -> np.ndarray:  # per 256-sample frame
        return np.sqrt(np.mean(x[: len(x) // 256 * 256].reshape(-1, 256) ** 2, axis=1))

    lag = round(stats["round_trip_ms"] * RATE / 1000)
    n = len(song) - RATE
    sung = rms(song[RATE // 2: RATE // 2 + n]) > 0.01  # where the singer sings (after the first half second)
    heard = rms(rec[lag + RATE // 2: lag + RATE // 2 + n])[: len(sung)]
    assert len(heard) == len(sung) and (heard[sung] > 1e-4).mean() > 0.95  # never silence for want of compute
    assert any(ln.startswith("live: ") and " late (" in ln for ln in err.splitlines())  # the summary


@pytest.mark.slow
def test_no_auto_connect_leaves_the_ports_to_the_user(server, tiny):
    with jackrig.PlayRecord(server.name, "rig-free") as rig:
        live = _live(server, *tiny, "--input", "rig-free", "--output", "rig-free", "--jack-name", "canora-free",
                     "--no-auto-connect", "--seconds", "6", "--transpose", "0")
        try:
            deadline = time.monotonic() + 120
            ports: list = []
            while not ports and time.monotonic() < deadline and live.poll() is None:
                time.sleep(0.1)
                ports = rig.client.get_ports("canora-free:")
            time.sleep(1.0)  # past the start, when the stream's own connections are undone
            assert {p.name for p in ports} == {"canora-free:in_0", "canora-free:out_0"}
            assert all(rig.client.get_all_connections(p) == [] for p in ports)
            assert rig.connections() == ([], [])
        finally:
            _, err = live.communicate(timeout=120)
    assert live.returncode == 0, err


def test_a_missing_server_is_one_line(server, tiny):
    env = _env(server, JACK_DEFAULT_SERVER="canora-no-such-server")
    line = _one_line_error(server, *tiny, "--jack-name", "canora", env=env)
    assert "no JACK server is running (server 'canora-no-such-server')" in line


def test_a_taken_client_name_is_one_line(server, tiny):
    with jackrig.PlayRecord(server.name, "taken"):
        line = _one_line_error(server, *tiny, "--jack-name", "taken")
    assert "--jack-name 'taken' is taken on JACK server" in line and "choose another --jack-name" in line


def test_a_rate_the_server_does_not_run_at_is_one_line(server, tiny):
    line = _one_line_error(server, *tiny, "--input", "system", "--output", "system", "--sample-rate", "44100")
    assert "--sample-rate 44100: the JACK server runs at 48000 Hz" in line


def test_a_busy_device_is_one_line(server, tiny, monkeypatch):
    """PortAudio's 'device unavailable' (a sound card another program holds: JACK itself never refuses a client,
    so the real server cannot make it) becomes one line naming the devices."""
    from canora.cli.live import _open_error

    e = _open_error(OSError("Error opening Stream: Device unavailable [PaErrorCode -9985]"), "hw:0", "hw:0", RATE,
                    ("ALSA", "ALSA"))
    assert str(e).startswith("--input 'hw:0' -> --output 'hw:0' at 48000 Hz: a device is busy")
