"""PortAudio's JACK host API, as ``canora live`` uses it: the client's name, and leaving its ports unconnected.

PortAudio reads no environment variable for either (its JACK host API, ``pa_jack.c``): the client name is set by
``PaJack_SetClientName`` (``pa_jack.h``), which must be called before ``Pa_Initialize`` and keeps the pointer it is
given; the default name is ``PortAudio``. A stream connects its ports to the ports of the devices it was opened
on (every JACK client is a PortAudio device) when it starts, always. So :func:`set_client_name` re-initialises
PortAudio around that call (``sounddevice`` initialises it on import), and :func:`disconnect_client` undoes the
connections right after the stream starts (its output is silent then: the session's start is primed), through
a short-lived JACK client of its own (JACK-Client). The server is the one JACK clients find by default
(``JACK_DEFAULT_SERVER``, else ``default``).
"""

from __future__ import annotations

import ctypes
import os
import re
from typing import Any

from canora.errors import CanoraError

#: the name PortAudio's host API list gives JACK
JACK_HOSTAPI = "JACK Audio Connection Kit"

_names: list[ctypes.c_char_p] = []  # PortAudio keeps the pointer: the names must live as long as the process


def server_name() -> str:
    """The JACK server clients connect to: ``JACK_DEFAULT_SERVER``, else ``default``."""
    return os.environ.get("JACK_DEFAULT_SERVER") or "default"


def jack_running(sd: Any) -> bool:
    """Whether PortAudio reached a JACK server (its JACK host API lists devices only then)."""
    try:
        return any(h["name"] == JACK_HOSTAPI for h in sd.query_hostapis())
    except Exception:  # a stub without host APIs
        return False


def _portaudio(sd: Any) -> ctypes.CDLL:
    return ctypes.CDLL(sd._libname)


def set_client_name(sd: Any, name: str) -> None:
    """Make PortAudio's JACK client ``name`` (PortAudio is re-initialised; call before any stream is open).
    One :class:`CanoraError` when this PortAudio has no JACK support."""
    if not re.fullmatch(r"[A-Za-z0-9_.+\- ]{1,60}", name):
        raise CanoraError(f"--jack-name {name!r}: use 1-60 letters, digits, spaces, '.', '_', '+' or '-'")
    try:
        fn = _portaudio(sd).PaJack_SetClientName
    except (AttributeError, OSError):
        raise CanoraError("--jack-name: this PortAudio library was built without JACK support") from None
    cname = ctypes.c_char_p(name.encode())
    _names.append(cname)
    sd._terminate()
    fn.restype = ctypes.c_int
    fn(cname)
    sd._initialize()


def client_name(sd: Any) -> str | None:
    """The name the JACK server gave PortAudio's client (it adds a suffix when the name is taken), or None."""
    try:
        fn = _portaudio(sd).PaJack_GetClientName
    except (AttributeError, OSError):
        return None
    out = ctypes.c_char_p()
    fn.restype = ctypes.c_int
    if fn(ctypes.byref(out)) != 0 or not out.value:
        return None
    return out.value.decode(errors="replace")


def check_client_name(sd: Any, wanted: str) -> None:
    """One :class:`CanoraError` when the server renamed the client (``wanted`` is taken by another client)."""
    got = client_name(sd)
    if got is not None and got != wanted:
        raise CanoraError(f"--jack-name {wanted!r} is taken on JACK server {server_name()!r} (another canora live, or "
                          f"another program; the server offered {got!r}); choose another --jack-name")


def disconnect_client(name: str) -> int:
    """Disconnect every port of JACK client ``name`` -> how many connections were undone. One
    :class:`CanoraError` when JACK-Client is missing or the server cannot be reached."""
    try:
        import jack
    except (ImportError, OSError):
        raise CanoraError("--no-auto-connect needs JACK-Client: pip install 'canora[live]'") from None
    jack.set_error_function(lambda msg: None)
    try:
        ctl = jack.Client(f"{name}-ctl", no_start_server=True)
    except jack.JackOpenError:
        raise CanoraError(f"--no-auto-connect: cannot reach JACK server {server_name()!r}") from None
    undone = 0
    try:
        for port in ctl.get_ports(f"^{re.escape(name)}:"):
            for other in ctl.get_all_connections(port):
                src, dst = (port, other) if port.is_output else (other, port)
                ctl.disconnect(src, dst)
                undone += 1
    finally:
        ctl.close()
    return undone


class XrunMonitor:
    """The JACK server's xruns as the server counts them, through a client of its own named ``name`` (PortAudio
    flags a callback after one or more xruns: several in a row read as one). :attr:`count`; :meth:`close`."""

    def __init__(self, name: str) -> None:
        try:
            import jack
        except (ImportError, OSError):
            raise CanoraError("counting the JACK server's xruns needs JACK-Client: pip install 'canora[live]'") \
                from None
        jack.set_error_function(lambda msg: None)
        try:
            self.client = jack.Client(name, no_start_server=True)
        except jack.JackOpenError:
            raise CanoraError(f"cannot reach JACK server {server_name()!r} to count its xruns") from None
        self.count = 0
        self.client.set_xrun_callback(self._xrun)
        self.client.activate()

    def _xrun(self, delayed_usecs: float) -> None:
        self.count += 1

    def close(self) -> None:
        try:
            self.client.deactivate()
        finally:
            self.client.close()
