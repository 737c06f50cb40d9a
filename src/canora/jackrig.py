"""A real audio stack on one machine: a JACK server with its dummy driver and a client that plays and records.

For the tests and benchmarks of ``canora live`` (and for anyone who wants to check ``canora live`` without a sound
card): :class:`JackServer` starts ``jackd -n NAME -d dummy -r RATE -p PERIOD`` under a unique server name, waits
until it takes clients and stops it; :class:`PlayRecord` is a JACK client (JACK-Client, the ``live`` extra) with
one output port that plays a signal and one input port that records, sample-synchronous (both in the same
process cycle), so the lag between what it played and what it recorded is the round trip through whatever sits
between the two ports. It also counts the server's xruns (JACK's xrun callback).

``canora live`` reaches the server through PortAudio, where every JACK client is a device: with
``JACK_DEFAULT_SERVER=NAME`` in its environment, ``--input RIG --output RIG`` (the :class:`PlayRecord` client's
name) connects canora's ports to the rig's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from typing import Any

import numpy as np

from canora.errors import CanoraError


def jackd_path() -> str | None:
    """The ``jackd`` executable on PATH, or None."""
    return shutil.which("jackd")


def import_jack() -> Any:
    """The JACK-Client module (``import jack``), or one :class:`CanoraError` saying what to install."""
    try:
        import jack
    except ImportError:
        raise CanoraError("the JACK rig needs JACK-Client: pip install 'canora[live]'") from None
    except OSError as e:  # JACK-Client is installed, the JACK library is not
        raise CanoraError(f"the JACK rig needs the JACK library ({e}); install it (e.g. apt install "
                          "libjack-jackd2-0)") from None
    return jack


class JackServer:
    """``jackd`` with the dummy driver under a unique ``name`` (a context manager): ``start()`` waits until a client
    can connect (:class:`CanoraError` after ``timeout`` s, with the server's last words), ``stop()`` ends it.
    :attr:`env` is the environment that points JACK clients (PortAudio's among them) at it."""

    def __init__(self, name: str | None = None, rate: int = 48000, period: int = 256, timeout: float = 10.0) -> None:
        self.name = name or f"canora-{uuid.uuid4().hex[:8]}"
        self.rate, self.period, self.timeout = int(rate), int(period), float(timeout)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = b""

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_AUDIO_RESERVATION": "1"}

    def start(self) -> JackServer:
        exe = jackd_path()
        if exe is None:
            raise CanoraError("jackd is not installed (e.g. apt install jackd2)")
        jack = import_jack()
        cmd = [exe, "-n", self.name, "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + self.timeout
        while True:
            if self.proc.poll() is not None:
                self._log = self.proc.stdout.read() if self.proc.stdout else b""
                raise CanoraError(f"jackd -n {self.name} exited ({self.proc.returncode}): {self.last_words()}")
            try:
                probe = jack.Client("canora-probe", servername=self.name, no_start_server=True)
            except jack.JackOpenError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise CanoraError(f"jackd -n {self.name} took no client within {self.timeout:g} s") from None
                time.sleep(0.05)
                continue
            probe.close()
            return self

    def last_words(self) -> str:
        lines = [ln for ln in self._log.decode(errors="replace").splitlines() if ln.strip()]
        return " | ".join(lines[-3:]) or "no output"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            self._log = proc.stdout.read() or self._log
            proc.stdout.close()

    def __enter__(self) -> JackServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class PlayRecord:
    """A JACK client ``name`` on server ``server``: port ``play`` plays the signal given to :meth:`play` (float32 at
    the server's rate, silence before and after), port ``rec`` records into a buffer of ``record_seconds``.

    Both happen in the same process cycle, so ``recording[i]`` and the played sample ``i`` (both counted from
    :meth:`play`'s first cycle) are simultaneous at the ports. :attr:`xruns` counts the server's xruns."""

    def __init__(self, server: str, name: str = "rig", record_seconds: float = 120.0) -> None:
        jack = import_jack()
        self.client = jack.Client(name, servername=server, no_start_server=True, use_exact_name=True)
        self.name = self.client.name
        self.rate = int(self.client.samplerate)
        self.out = self.client.outports.register("play")
        self.inp = self.client.inports.register("rec")
        self._signal = np.zeros(0, np.float32)
        self._pos = -1  # samples of the signal played so far; -1: not playing (nor recording)
        self._rec = np.zeros(int(record_seconds * self.rate), np.float32)
        self._lock = threading.Lock()
        self.xruns = 0
        self.xrun_positions: list[int] = []  # :attr:`position` at each xrun
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)
        self.client.activate()

    def _xrun(self, delayed_usecs: float) -> None:
        self.xruns += 1
        self.xrun_positions.append(self._pos)

    def _process(self, frames: int) -> None:
        out = self.out.get_array()
        out.fill(0.0)
        pos = self._pos
        if pos < 0:
            return
        sig = self._signal
        if pos < len(sig):
            n = min(frames, len(sig) - pos)
            out[:n] = sig[pos: pos + n]
        m = max(0, min(frames, len(self._rec) - pos))
        self._rec[pos: pos + m] = self.inp.get_array()[:m]
        self._pos = pos + frames

    # ------------------------------------------------------------------ control
    def connections(self) -> tuple[list[str], list[str]]:
        """(ports feeding ``rec``, ports ``play`` feeds) by name."""
        return ([p.name for p in self.client.get_all_connections(self.inp)],
                [p.name for p in self.client.get_all_connections(self.out)])

    def wait_connected(self, timeout: float) -> bool:
        """Wait until both ports are connected to someone -> whether they are."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ins, outs = self.connections()
            if ins and outs:
                return True
            time.sleep(0.05)
        return False

    def play(self, signal: np.ndarray) -> None:
        """Start playing ``signal`` (n,) from the next cycle, and recording from the same cycle (from rest)."""
        with self._lock:
            self._signal = np.asarray(signal, np.float32)
            self._rec.fill(0.0)
            self._pos = 0

    @property
    def position(self) -> int:
        """Samples played since :meth:`play` (-1 before)."""
        return self._pos

    def wait_played(self, extra_seconds: float = 0.0, timeout: float | None = None) -> None:
        """Wait until the signal and ``extra_seconds`` after it have gone by."""
        end = len(self._signal) + int(extra_seconds * self.rate)
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pos < end:
            if deadline is not None and time.monotonic() > deadline:
                raise CanoraError(f"the rig played {self._pos} of {end} samples in {timeout:g} s (server stalled?)")
            time.sleep(0.02)

    def recording(self) -> np.ndarray:
        """What ``rec`` heard since :meth:`play` (n,) float32."""
        return self._rec[: max(0, min(self._pos, len(self._rec)))].copy()

    def close(self) -> None:
        try:
            self.client.deactivate()
        finally:
            self.client.close()

    def __enter__(self) -> PlayRecord:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def round_trip_samples(played: np.ndarray, recorded: np.ndarray, max_lag: int) -> tuple[int, float]:
    """The lag (samples) at which ``recorded`` best matches ``played`` (both (n,), e.g. a click track), searched in
    [0, ``max_lag``], by normalised cross-correlation -> (lag, correlation in [-1, 1])."""
    from scipy.signal import correlate

    a = np.asarray(played, np.float64)
    b = np.asarray(recorded, np.float64)
    n = min(len(a), len(b) - max_lag) if len(b) > max_lag else 0
    if n <= 0:
        return 0, 0.0
    c = correlate(b[: n + max_lag], a[:n], mode="valid")[: max_lag + 1]
    lag = int(np.argmax(np.abs(c)))
    den = np.sqrt(np.dot(a[:n], a[:n]) * np.dot(b[lag: lag + n], b[lag: lag + n]))
    return lag, float(c[lag] / den) if den > 0 else 0.0
