"""``canora live``: a microphone converted to the target singer's voice on the speakers, with a fixed latency."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canora.cli.common import (
    HelpFormatter,
    add_device_args,
    add_mel_match_arg,
    add_model_arg,
    add_voice_arg,
    finite_float,
    positive_int,
)
from canora.errors import CanoraError

INSTALL_HINT = "canora live needs the 'live' extra: pip install 'canora[live]'"

DESCRIPTION = """\
Convert a live input (a microphone, an interface) to the target singer's voice and play it on an output
device, block by block through canora.streaming.StreamConverter (the refiner and vocoder of `canora convert`).
The key follows the singer: whole octaves toward the target's range, as `canora convert` chooses them, on the
pitch sung so far, changed only between phrases (--transpose N fixes it instead). The latency is fixed and the
start-up line states the whole round trip: the converter's (block + lookahead + cross-fade + resampler), a
compute headroom (measured at start-up on a sung phrase, or --headroom-ms), one device period and the device's
buffering. A block whose conversion is not ready in time is never played late: the input of that moment plays
in its place (cross-faded) and the block counts as late; while singing, a block that uses most of its headroom
lowers the refiner's steps. Input and output are high-passed at 40 Hz and the output never reaches full scale.
A status line on stderr shows, once a second, the compute load of sung blocks (compute per block / block
duration, median and max), the late blocks, the dry time and the round trip. Ctrl-C (or --seconds) stops it
and prints a summary.

Devices are PortAudio's (see --list-devices): --input/--output take an index or part of a name; with a JACK
server running every JACK client is a device (e.g. system). Input and output run in one duplex stream at one
rate (--sample-rate, default the input device's), called once per device period; the converter's 22050 Hz
output is resampled to it. The models run on one thread by default (--threads N), leaving the other cores to
the audio server. Needs the live extra and the PortAudio library: pip install 'canora[live]' (and e.g. apt
install libportaudio2).
"""


def _headroom(text: str) -> float | None:
    """``--headroom-ms``: ``auto`` (None) or a number of ms > 0."""
    if text.strip().lower() == "auto":
        return None
    v = finite_float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 ms or auto, got {text}")
    return v


def _channel(text: str) -> int | None:
    """``--input-channel``: ``mix`` (None) or a channel number from 1 -> 0-based index."""
    if text.strip().lower() == "mix":
        return None
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a channel number (1, 2, ...) or mix, got {text}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"channels are numbered from 1, got {v}")
    return v - 1


def _gain(text: str) -> float | str:
    """``--gain-db``: ``auto`` or a finite number of dB."""
    if text.strip().lower() == "auto":
        return "auto"
    return finite_float(text)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from canora.backends import BACKEND_CHOICES
    from canora.dsp.melmatch import MEL_MATCH_ITERS
    from canora.live import LIVE_BLOCK_MS
    from canora.refiner.base import DEFAULT_STRENGTH
    from canora.streaming import DEFAULT_STREAM_STEPS

    p = sub.add_parser("live", help="convert a microphone live to the target singer's voice (needs canora[live])",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--list-devices", action="store_true",
                   help="list the input and output devices (index, name, channels, default rate) and exit")
    p.add_argument("--input", default=None, metavar="DEV",
                   help="input device: an index or part of its name (default: the system's default input)")
    p.add_argument("--output", default=None, metavar="DEV",
                   help="output device: an index or part of its name (default: the system's default output)")
    p.add_argument("--sample-rate", type=positive_int, default=None, metavar="HZ",
                   help="the devices' sample rate (default: the input device's default rate)")
    p.add_argument("--block-ms", type=finite_float, default=LIVE_BLOCK_MS,
                   help="block length in ms (rounded to whole 256-sample frames); longer = more latency, more "
                   "headroom")
    p.add_argument("--transpose", type=finite_float, default=None, metavar="SEMITONES",
                   help="shift the pitch by N semitones, fixed for the session (default: the running key, whole "
                   "octaves toward the singer's range chosen on the pitch sung so far, changed only between phrases; "
                   "0 when the refiner stores no range)")
    p.add_argument("--headroom-ms", type=_headroom, default=None, metavar="MS|auto",
                   help="compute headroom per block, part of the latency: auto (the default) = 1.5 x the 95th "
                   "percentile of the compute of sung blocks, measured at start-up on a sung phrase")
    p.add_argument("--input-channel", type=_channel, default=0, metavar="N|mix",
                   help="the input channel to convert, from 1 (default 1), or mix = the mean of the input device's "
                   "first two channels")
    p.add_argument("--jack-name", default=None, metavar="NAME",
                   help="the JACK client name of canora's ports (PortAudio's default: PortAudio); an error when a "
                   "client of that name exists")
    p.add_argument("--no-auto-connect", action="store_true",
                   help="JACK: leave canora's ports unconnected (PortAudio connects them to the devices' ports); "
                   "connect them yourself, e.g. with jack_connect or a patchbay")
    p.add_argument("--stats-json", type=Path, default=None, metavar="PATH",
                   help="write the session's summary (latency, late blocks, load, xruns, keys) to this JSON file")
    p.add_argument("--gain-db", type=_gain, default="auto", metavar="DB|auto",
                   help="the level the refiner hears the microphone at, in dB: auto (the default) follows the "
                   "singing, moving the median of the voiced frames heard so far to the singer's level once 2 s have "
                   "been heard; a number fixes it for the session (e.g. the gain `canora convert` printed for a take "
                   "made with the same microphone; 0 = as it comes in). The output keeps the input's loudness")
    p.add_argument("--singer", default=None, help="target singer (default: the refiner's only singer), or a mix such "
                   "as a:0.7,b:0.3")
    p.add_argument("--steps", type=positive_int, default=DEFAULT_STREAM_STEPS, help="denoising steps per block")
    p.add_argument("--strength", type=finite_float, default=DEFAULT_STRENGTH,
                   help="shallow-diffusion depth in (0, 1]")
    add_mel_match_arg(p, None, f"default: {MEL_MATCH_ITERS}, or 0 when the vocoder was trained on the target "
                      "singer; about 1 ms a block")
    p.add_argument("--seconds", type=finite_float, default=None, metavar="N",
                   help="stop after N seconds (default: run until Ctrl-C)")
    p.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                   help="run the models on torch or ONNX Runtime (1.5x faster per block here; exported once, then "
                   "cached); auto = ONNX Runtime when the onnx extra is installed")
    add_model_arg(p, "refiner")
    add_model_arg(p, "vocoder")
    add_voice_arg(p)
    add_device_args(p)
    p.set_defaults(run=run)


# ---------------------------------------------------------------------- PortAudio
def import_sounddevice() -> Any:
    """The ``sounddevice`` module, or one :class:`CanoraError` saying what to install."""
    try:
        import sounddevice
    except ImportError:
        raise CanoraError(INSTALL_HINT) from None
    except OSError as e:  # sounddevice is installed but the PortAudio library is not
        raise CanoraError(f"canora live needs the PortAudio library ({e}); install it (e.g. apt install "
                          "libportaudio2, brew install portaudio)") from None
    return sounddevice


def _devices(sd: Any) -> list[dict]:
    try:
        return [dict(d) for d in sd.query_devices()]
    except Exception as e:  # PortAudioError: no audio system
        raise CanoraError(f"cannot list the audio devices: {e}") from None


def _hostapis(sd: Any) -> list[str]:
    try:
        return [str(h["name"]) for h in sd.query_hostapis()]
    except Exception:  # a stub or an old sounddevice: no host API names
        return []


def _defaults(sd: Any, devices: list[dict]) -> tuple[int | None, int | None]:
    """The system's default (input, output) device indices, None where there is none."""
    try:
        pair = list(sd.default.device)
    except Exception:
        pair = [None, None]
    out: list[int | None] = []
    for kind, v in zip(("input", "output"), (pair + [None, None])[:2]):
        try:
            i = int(v)
        except (TypeError, ValueError):
            i = -1
        ok = 0 <= i < len(devices) and devices[i].get(f"max_{kind}_channels", 0) > 0
        out.append(i if ok else None)
    return out[0], out[1]


def _describe(i: int, d: dict, hostapis: list[str]) -> str:
    api = d.get("hostapi")
    where = f", {hostapis[api]}" if isinstance(api, int) and 0 <= api < len(hostapis) else ""
    return f"{i} '{d.get('name', '?')}'{where}"


def list_devices(sd: Any) -> str:
    """The text of ``--list-devices``: input devices, then output devices; the defaults marked with ``*``."""
    devices, apis = _devices(sd), _hostapis(sd)
    defaults = _defaults(sd, devices)
    lines = []
    for kind, default in zip(("input", "output"), defaults):
        rows = [(i, d) for i, d in enumerate(devices) if d.get(f"max_{kind}_channels", 0) > 0]
        lines.append(f"{kind} devices:" if rows else f"{kind} devices: none")
        for i, d in rows:
            api = d.get("hostapi")
            where = f"  [{apis[api]}]" if isinstance(api, int) and 0 <= api < len(apis) else ""
            mark = "*" if i == default else " "
            lines.append(f" {mark}{i:3d}  {d.get('name', '?')}{where}  {d[f'max_{kind}_channels']} ch, "
                         f"{float(d.get('default_samplerate', 0)):g} Hz{'  (default)' if i == default else ''}")
    return "\n".join(lines)


def pick_device(sd: Any, spec: str | None, kind: str) -> tuple[int, dict]:
    """``--input`` / ``--output`` (an index, part of a name, or None for the default) -> (index, device info);
    one :class:`CanoraError` naming the choices when it does not name exactly one device of that kind."""
    devices, apis = _devices(sd), _hostapis(sd)
    key = f"max_{kind}_channels"
    choices = [(i, d) for i, d in enumerate(devices) if d.get(key, 0) > 0]
    listing = "; ".join(_describe(i, d, apis) for i, d in choices)
    if not choices:
        raise CanoraError(f"no audio {kind} device found (no sound card, or PortAudio sees none); see "
                          "canora live --list-devices")
    if spec is None:
        default = _defaults(sd, devices)[0 if kind == "input" else 1]
        if default is None:
            raise CanoraError(f"no default {kind} device; choose one with --{kind}: {listing}")
        return default, devices[default]
    s = spec.strip()
    if s.lstrip("-").isdigit():
        i = int(s)
        if 0 <= i < len(devices) and devices[i].get(key, 0) > 0:
            return i, devices[i]
        raise CanoraError(f"--{kind} {spec}: no {kind} device has index {i}; choose one of: {listing}")
    found = [(i, d) for i, d in choices if s.lower() in str(d.get("name", "")).lower()]
    exact = [(i, d) for i, d in found if str(d.get("name", "")).lower() == s.lower()]
    if len(exact) == 1 or len(found) == 1:
        return (exact or found)[0]
    if not found:
        raise CanoraError(f"--{kind} {spec!r}: no {kind} device matches; choose one of: {listing}")
    raise CanoraError(f"--{kind} {spec!r} matches {len(found)} {kind} devices "
                      f"({'; '.join(_describe(i, d, apis) for i, d in found)}); give the index")


def check_rate(sd: Any, kind: str, index: int, device: dict, channels: int, rate: int) -> None:
    """One :class:`CanoraError` when ``device`` does not take ``channels`` float32 channels at ``rate`` Hz."""
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=index, channels=channels, samplerate=rate, dtype="float32")
    except Exception as e:  # PortAudioError / ValueError: invalid sample rate, channel count
        raise CanoraError(f"--{kind} {index} '{device.get('name', '?')}' does not take {channels} channel(s) at "
                          f"{rate} Hz ({' '.join(str(e).split())}); its default rate is "
                          f"{float(device.get('default_samplerate', 0)):g} Hz: pass --sample-rate") from None


# ---------------------------------------------------------------------- the command
def _no_device_hint(sd: Any) -> str:
    """Why PortAudio may see no device: no sound card, and no JACK server it could reach."""
    from canora.portaudio_jack import jack_running, server_name

    if jack_running(sd):
        return ""
    return f" and no JACK server is running (server {server_name()!r}; start one, e.g. jackd -d alsa)"


def _open_error(e: Exception, in_name: str, out_name: str, rate: int, apis: tuple[str, str]) -> CanoraError:
    """A PortAudio error opening or starting the stream -> one line naming the devices and the fix."""
    text = " ".join(str(e).split())
    what = f"--input {in_name!r} -> --output {out_name!r} at {rate} Hz"
    if "Device unavailable" in text or "-9985" in text or "busy" in text.lower():
        return CanoraError(f"{what}: a device is busy (another program holds it: {text}); close it or choose another "
                           "device (canora live --list-devices)")
    if apis[0] != apis[1] or "Illegal combination" in text or "-9993" in text:
        return CanoraError(f"{what}: the devices are on different audio systems ({apis[0]} and {apis[1]}); choose an "
                           "input and an output of the same one (canora live --list-devices)")
    if "sample rate" in text.lower():
        return CanoraError(f"{what}: {text}; pass the devices' rate with --sample-rate")
    return CanoraError(f"cannot open {what}: {text}")


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    from canora.live import LiveSession

    # every check before any work: options, PortAudio, devices and rates, then the models
    _check_options(args)
    sd = import_sounddevice()
    _check_jack(sd, args)
    if args.list_devices:
        print(list_devices(sd))
        return 0
    devs = _open_devices(sd, args)
    conv, backend = _load_models(args)
    sc, singer, key_note = _stream_converter(conv, args, devs.rate)
    session = LiveSession(sc, devs.stream_opener(sd), headroom_ms=args.headroom_ms, input_channel=args.input_channel)
    runtime = "ONNX Runtime" if backend == "onnx" or type(conv.refiner).__name__.startswith("Ort") else "torch"
    key = f"key {args.transpose:+g} semitones (fixed)" if args.transpose is not None else \
        ("key as sung" + key_note if key_note else f"running key (whole octaves toward {singer}'s range)")
    matching = f"mel matching {sc.job.mel_match} rounds" if sc.job.mel_match else "no mel matching"
    what = (f"{singer}, {runtime} ({'auto' if args.backend == 'auto' else 'asked for'}), {args.threads} thread(s), "
            f"{key}, {matching}")
    stats = _run_session(session, args, sd, devs, _on_start(args, sd, devs, sc, what))
    if args.stats_json is not None:
        _write_stats(args, stats, session, sc, runtime, devs.rate)
    if session.stop_pending:  # PortAudio would wait for the stream again at exit
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _check_options(args: argparse.Namespace) -> None:
    from canora.pipeline import check_transpose
    from canora.refiner.samplers import check_steps_strength

    if not 10.0 <= args.block_ms <= 2000.0:
        raise CanoraError(f"--block-ms must be in 10..2000 ms, got {args.block_ms:g}")
    if args.seconds is not None and not args.seconds > 0:
        raise CanoraError(f"--seconds must be > 0, got {args.seconds:g}")
    if args.sample_rate is not None and not 1000 <= args.sample_rate <= 1_000_000:
        raise CanoraError(f"--sample-rate must be in 1000..1000000 Hz, got {args.sample_rate}")
    check_steps_strength(args.steps, args.strength)
    if args.transpose is not None:
        check_transpose(args.transpose, "--transpose", warn=False)
    if args.stats_json is not None:
        from canora.io.files import check_outputs

        if args.stats_json.suffix.lower() != ".json":
            raise CanoraError(f"--stats-json {args.stats_json}: name a .json file")
        check_outputs([args.stats_json], overwrite=True)


def _check_jack(sd: Any, args: argparse.Namespace) -> None:
    """--jack-name / --no-auto-connect: a JACK server runs, and the client name is free (set before any stream)."""
    from canora import portaudio_jack as pj

    if args.jack_name is not None or args.no_auto_connect:
        if args.jack_name is not None:
            pj.set_client_name(sd, args.jack_name)
        if not pj.jack_running(sd):
            flag = "--jack-name" if args.jack_name is not None else "--no-auto-connect"
            raise CanoraError(f"{flag}: no JACK server is running (server {pj.server_name()!r}); start it (e.g. jackd "
                              "-d alsa) or set JACK_DEFAULT_SERVER to its name")
        if args.jack_name is not None:
            pj.check_client_name(sd, args.jack_name)


@dataclass
class _Devices:
    """The input and output devices chosen, their channels and the one rate of the duplex stream."""

    in_index: int
    in_dev: dict
    out_index: int
    out_dev: dict
    apis: list[str]
    rate: int = 0
    in_channels: int = 1
    out_channels: int = 2

    def api_of(self, d: dict) -> str:
        api = d.get("hostapi")
        return self.apis[api] if isinstance(api, int) and 0 <= api < len(self.apis) else "?"

    @property
    def names(self) -> tuple[str, str]:
        return str(self.in_dev.get("name", self.in_index)), str(self.out_dev.get("name", self.out_index))

    def open_error(self, e: Exception, rate: int) -> CanoraError:
        return _open_error(e, *self.names, rate, (self.api_of(self.in_dev), self.api_of(self.out_dev)))

    def stream_opener(self, sd: Any) -> Any:
        """``open_stream(samplerate, blocksize, callback)`` for :class:`canora.live.LiveSession`: the duplex
        stream on these devices, a PortAudio error one line naming them."""
        error = getattr(sd, "PortAudioError", OSError)

        def open_stream(samplerate: int, blocksize: int, callback: Any) -> Any:
            try:
                return sd.Stream(samplerate=samplerate, blocksize=blocksize, device=(self.in_index, self.out_index),
                                 channels=(self.in_channels, self.out_channels), dtype="float32", latency="low",
                                 callback=callback)
            except (error, ValueError) as e:
                raise self.open_error(e, samplerate) from None

        return open_stream


def _open_devices(sd: Any, args: argparse.Namespace) -> _Devices:
    """--input / --output picked, the rate and the channels chosen and checked against both devices."""
    from canora import portaudio_jack as pj

    try:
        in_index, in_dev = pick_device(sd, args.input, "input")
        out_index, out_dev = pick_device(sd, args.output, "output")
    except CanoraError as e:
        if str(e).startswith("no audio"):
            raise CanoraError(str(e).replace(" (no sound card", f" (no sound card{_no_device_hint(sd)}", 1)) from None
        raise
    devs = _Devices(in_index, in_dev, out_index, out_dev, _hostapis(sd))
    devs.rate = args.sample_rate or int(round(float(in_dev.get("default_samplerate") or 0)))
    if devs.rate < 1000:
        raise CanoraError(f"--input {in_index} '{in_dev.get('name', '?')}' reports no default sample rate; pass "
                          "--sample-rate")
    devs.in_channels = 1 if args.input_channel == 0 else min(
        int(in_dev["max_input_channels"]), 2 if args.input_channel is None else args.input_channel + 1)
    if args.input_channel is not None and args.input_channel >= int(in_dev["max_input_channels"]):
        raise CanoraError(f"--input-channel {args.input_channel + 1}: --input {in_index} '{in_dev.get('name', '?')}' "
                          f"has {in_dev['max_input_channels']} input channel(s)")
    devs.out_channels = min(2, int(out_dev["max_output_channels"]))
    for kind, index, dev, ch in (("input", in_index, in_dev, devs.in_channels),
                                 ("output", out_index, out_dev, devs.out_channels)):
        if pj.JACK_HOSTAPI == devs.api_of(dev) and devs.rate != int(round(float(dev.get("default_samplerate") or 0))):
            hz = float(dev["default_samplerate"])
            raise CanoraError(f"--sample-rate {devs.rate}: the JACK server runs at {hz:g} Hz and JACK does not "
                              f"resample; pass --sample-rate {hz:g} or restart the server at this rate")
        check_rate(sd, kind, index, dev, ch, devs.rate)
    return devs


def _load_models(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The voice applied, the threads (one by default) and the device set, the models loaded -> (converter,
    backend)."""
    from canora.backends import onnx_exports_only
    from canora.cli.common import apply_device_args, apply_voice, load_converter, model_backend

    apply_voice(args)
    if args.threads is None:  # one thread for the models: the other cores are the audio server's and the system's
        args.threads = 1
    backend = model_backend(args, streaming=True)
    apply_device_args(args, uses_torch=not onnx_exports_only(args.refiner, args.vocoder, backend, args.device))
    return load_converter(args.refiner, args.vocoder, device=args.device, backend=backend), backend


def _stream_converter(conv: Any, args: argparse.Namespace, rate: int) -> tuple[Any, str, str]:
    """-> (the streaming converter at the devices' rate, the singer, a note when the key stays as sung because
    the refiner stores no pitch range)."""
    from canora.streaming import StreamConverter

    singer = conv.refiner.singer_label(args.singer)
    transpose: float | str = args.transpose if args.transpose is not None else "auto"
    key_note = ""
    if transpose == "auto":
        try:
            conv.refiner.singer_f0_range(singer)
        except CanoraError:
            transpose, key_note = 0.0, " (the refiner stores no pitch range: kept as sung)"
    sc = StreamConverter(conv, block_ms=args.block_ms, input_sample_rate=rate, transpose=transpose,
                         gain_db=args.gain_db, singer=singer, steps=args.steps, strength=args.strength,
                         mel_match=args.mel_match)
    return sc, singer, key_note


def _on_start(args: argparse.Namespace, sd: Any, devs: _Devices, sc: Any, what: str) -> Any:
    """What the session calls once its stream runs: JACK ports disconnected (--no-auto-connect), the start-up line
    (devices, ``what`` is converted how, and the round trip term by term)."""
    import sys

    from canora import portaudio_jack as pj

    until = f"for {args.seconds:g} s" if args.seconds is not None else "until Ctrl-C"
    in_name, out_name = devs.names
    rate = devs.rate

    def started(s: Any) -> None:
        if args.no_auto_connect:
            name = pj.client_name(sd)
            if name is None:
                raise CanoraError("--no-auto-connect: canora's JACK client was not found (is the stream on JACK?)")
            pj.disconnect_client(name)
        api = devs.api_of(devs.in_dev)
        jack = f", JACK client {pj.client_name(sd)!r}" if api == pj.JACK_HOSTAPI else ""
        dev = s.device_latency_ms
        dev_text = f" + device {dev:.1f}" if dev is not None else " + the device's buffers (not reported)"
        period = s.period or 0
        print(f"live: {in_name} -> {out_name} ({api}{jack}) at {rate} Hz, {what}; blocks of "
              f"{sc.block_duration_ms:.1f} ms, {sc.job.steps} steps; round trip "
              f"{s.round_trip_ms:.1f} ms = converter {sc.latency_ms:.1f} + compute headroom {s.headroom_ms:.1f} "
              f"({'measured' if s.auto_headroom else 'given'}) + period {1000 * period / rate:.1f} + resampler "
              f"{1000 * s.margin / rate:.1f}{dev_text}; running {until}", file=sys.stderr)

    return started


def _run_session(session: Any, args: argparse.Namespace, sd: Any, devs: _Devices, started: Any) -> Any:
    """The session until --seconds or Ctrl-C (JACK's xruns counted) -> its stats; a stream that cannot be
    abandoned cleanly exits the process at once, with the one error line."""
    import os
    import sys

    from canora import portaudio_jack as pj

    monitor = None
    if devs.api_of(devs.in_dev) == pj.JACK_HOSTAPI:
        monitor = pj.XrunMonitor(f"{args.jack_name or 'canora'}-xruns")
        start_count = monitor.count
        session.server_xruns = lambda: monitor.count - start_count
    try:
        return session.run(seconds=args.seconds, on_start=started)
    except getattr(sd, "PortAudioError", OSError) as e:
        raise devs.open_error(e, devs.rate) from None
    except BaseException as e:
        if session.stop_pending:  # PortAudio would wait for the stream again at exit:
            # leave now, with the one line
            print(f"canora live: error: {e if isinstance(e, CanoraError) else repr(e)}", file=sys.stderr, flush=True)
            os._exit(2 if isinstance(e, CanoraError) else 1)
        raise
    finally:
        if monitor is not None and not session.abandoned:
            monitor.close()


def _write_stats(args: argparse.Namespace, stats: Any, session: Any, sc: Any, runtime: str, rate: int) -> None:
    """--stats-json: the session's summary and settings, written; its path on stdout."""
    import json

    from canora.io.files import atomic_write_bytes

    payload = {**stats.to_dict(), "backend": runtime, "sample_rate": rate, "block_ms": sc.block_duration_ms,
               "converter_latency_ms": sc.latency_ms, "period": session.period, "threads": args.threads}
    atomic_write_bytes(args.stats_json, (json.dumps(payload, indent=2) + "\n").encode())
    print(args.stats_json)
