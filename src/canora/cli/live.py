"""``canora live``: a microphone converted to the target singer's voice on the speakers, with a fixed latency."""

from __future__ import annotations

import argparse
from typing import Any

from canora.cli.common import (
    HelpFormatter,
    add_device_args,
    add_model_arg,
    add_voice_arg,
    finite_float,
    positive_int,
)
from canora.errors import CanoraError

INSTALL_HINT = "canora live needs the 'live' extra: pip install 'canora[live]'"

DESCRIPTION = """\
Convert a live input (a microphone, an interface) to the target singer's voice and play it on an output
device, block by block through canora.streaming.StreamConverter (a fixed --transpose, the refiner and vocoder
of `canora convert`). The latency is fixed: the converter's (block + lookahead + cross-fade + resampler) plus
one block of compute headroom, plus the sound card's buffers; a block whose conversion is not ready in time is
played as silence and counted as dropped, never played late. A status line on stderr shows, once a second, the
compute load (compute per block / block duration, median and max of recent blocks: above 1 drops blocks; use
a longer --block-ms, fewer --steps, or --threads N), the dropped blocks and the latency. Ctrl-C (or --seconds)
stops it and prints a summary.

Devices are PortAudio's (see --list-devices): --input/--output take an index or part of a name. Input and
output run in one duplex stream at one rate (--sample-rate, default the input device's); the converter's
22050 Hz output is resampled to it. Needs the live extra and the PortAudio library:
pip install 'canora[live]' (and e.g. apt install libportaudio2).
"""


def _gain(text: str) -> float | str:
    """``--gain-db``: ``auto`` or a finite number of dB."""
    if text.strip().lower() == "auto":
        return "auto"
    return finite_float(text)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from canora.pipeline import BACKEND_CHOICES
    from canora.refiner.base import DEFAULT_STRENGTH
    from canora.streaming import DEFAULT_BLOCK_MS, DEFAULT_STREAM_STEPS

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
    p.add_argument("--block-ms", type=finite_float, default=DEFAULT_BLOCK_MS,
                   help="block length in ms (rounded to whole 256-sample frames); longer = more latency, more "
                   "headroom")
    p.add_argument("--transpose", type=finite_float, default=0.0, metavar="SEMITONES",
                   help="shift the pitch by N semitones (fixed for the session; a live input cannot be looked at "
                   "ahead, so there is no automatic key: 12 takes a low voice up an octave)")
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
def run(args: argparse.Namespace) -> int:
    import sys

    from canora.cli.common import apply_device_args, apply_voice, load_converter, model_backend
    from canora.pipeline import check_transpose
    from canora.refiner.samplers import check_steps_strength

    # every check before any work: options, PortAudio, devices and rates, then the models
    if not 10.0 <= args.block_ms <= 2000.0:
        raise CanoraError(f"--block-ms must be in 10..2000 ms, got {args.block_ms:g}")
    if args.seconds is not None and not args.seconds > 0:
        raise CanoraError(f"--seconds must be > 0, got {args.seconds:g}")
    if args.sample_rate is not None and not 1000 <= args.sample_rate <= 1_000_000:
        raise CanoraError(f"--sample-rate must be in 1000..1000000 Hz, got {args.sample_rate}")
    check_steps_strength(args.steps, args.strength)
    check_transpose(args.transpose, "--transpose", warn=False)
    sd = import_sounddevice()
    if args.list_devices:
        print(list_devices(sd))
        return 0
    in_index, in_dev = pick_device(sd, args.input, "input")
    out_index, out_dev = pick_device(sd, args.output, "output")
    rate = args.sample_rate or int(round(float(in_dev.get("default_samplerate") or 0)))
    if rate < 1000:
        raise CanoraError(f"--input {in_index} '{in_dev.get('name', '?')}' reports no default sample rate; pass "
                          "--sample-rate")
    out_channels = min(2, int(out_dev["max_output_channels"]))
    check_rate(sd, "input", in_index, in_dev, 1, rate)
    check_rate(sd, "output", out_index, out_dev, out_channels, rate)
    apply_voice(args)
    from canora.backends import onnx_exports_only

    backend = model_backend(args, streaming=True)
    apply_device_args(args, uses_torch=not onnx_exports_only(args.refiner, args.vocoder, backend, args.device))

    from canora.live import LiveSession
    from canora.streaming import StreamConverter

    conv = load_converter(args.refiner, args.vocoder, device=args.device, backend=backend)
    singer = conv.refiner.singer_label(args.singer)
    sc = StreamConverter(conv, block_ms=args.block_ms, input_sample_rate=rate, transpose=args.transpose,
                         gain_db=args.gain_db, singer=singer, steps=args.steps, strength=args.strength)
    error = getattr(sd, "PortAudioError", OSError)

    def open_stream(samplerate: int, blocksize: int, callback: Any) -> Any:
        try:
            return sd.Stream(samplerate=samplerate, blocksize=blocksize, device=(in_index, out_index),
                             channels=(1, out_channels), dtype="float32", latency="low", callback=callback)
        except (error, ValueError) as e:
            raise CanoraError(f"cannot open {in_index} '{in_dev.get('name', '?')}' -> {out_index} "
                              f"'{out_dev.get('name', '?')}' at {samplerate} Hz: {' '.join(str(e).split())}") from None

    session = LiveSession(sc, open_stream)
    block = 1000.0 * session.blocksize / rate
    until = f"for {args.seconds:g} s" if args.seconds is not None else "until Ctrl-C"
    print(f"live: {in_dev.get('name', in_index)} -> {out_dev.get('name', out_index)} at {rate} Hz, {singer}, "
          f"blocks of {block:.1f} ms, latency {session.latency_ms:.1f} ms; running {until}", file=sys.stderr)
    session.run(seconds=args.seconds)
    return 0
