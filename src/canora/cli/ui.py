"""``canora ui``: a local web page (Gradio) to convert, compare and diagnose in the browser."""

from __future__ import annotations

import argparse
from pathlib import Path

from canora.cli.common import (
    HelpFormatter,
    add_device_args,
    add_model_arg,
    add_voice_arg,
    float_in,
    port_arg,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from canora.ui import UILimits

    p = sub.add_parser(
        "ui", formatter_class=HelpFormatter,
        help="a local web page to convert, compare spectrograms and run the doctor (needs canora[ui])",
        description="Start a local web page: upload or record a clip, pick singer, key, sampler, steps and "
        "strength, convert, listen and download; see source and converted mels with F0 side by side; check a "
        ".npy mel with the doctor. Binds to 127.0.0.1 by default; requests are queued, one conversion at a time. "
        "Needs the ui extra: pip install 'canora[ui]'.",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (anything but 127.0.0.1 exposes the page, without a login)")
    p.add_argument("--port", type=port_arg, default=None, help="port (default: 7860 or the next free one)")
    add_model_arg(p, "refiner")
    add_model_arg(p, "vocoder")
    add_voice_arg(p)
    p.add_argument("--max-upload-mb", type=float_in(0, 100_000, lo_open=True), default=UILimits.max_upload_mb,
                   help="largest accepted upload in MB")
    p.add_argument("--max-seconds", type=float_in(0, 86_400, lo_open=True), default=UILimits.max_seconds,
                   help="longest accepted clip in seconds")
    p.add_argument("--max-samples", type=float_in(0, 1e11, lo_open=True), default=UILimits.max_samples,
                   help="most decoded samples accepted per clip (channels x rate x seconds), so a small file of many "
                   "channels at a high rate cannot fill the memory")
    add_device_args(p)
    p.set_defaults(run=run)


def check_port_free(host: str, port: int) -> None:
    """One :class:`CanoraError` when ``host:port`` cannot be bound (in use, not an address of this machine)."""
    import errno
    import socket

    from canora.errors import CanoraError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise CanoraError(f"--host {host}: not an address of this machine ({e.strerror or e})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind(addr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise CanoraError(f"--port {port}: already in use on {host}; choose another port, or leave --port "
                                  "out to take the next free one") from None
            raise CanoraError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror or e}); choose another "
                              "--port or --host") from None


def run(args: argparse.Namespace) -> int:
    import shutil
    import signal
    import tempfile

    from canora.cli.common import apply_device_args, apply_voice, load_converter
    from canora.errors import CanoraError
    from canora.ui import INSTALL_HINT, UIBackend, UILimits, serve

    if args.port is not None:
        check_port_free(args.host, args.port)
    import importlib.util

    if importlib.util.find_spec("gradio") is None:  # not imported here: Gradio reads its temp folder when imported
        raise CanoraError(f"the web UI needs gradio, which is not installed: {INSTALL_HINT}")
    apply_device_args(args)
    apply_voice(args)
    converter = load_converter(args.refiner, args.vocoder, device=args.device)
    workdir = Path(tempfile.mkdtemp(prefix="canora-ui-"))

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM ends the page like Ctrl+C: server closed, work dir removed

    signal.signal(signal.SIGTERM, stop)
    try:
        limits = UILimits(args.max_upload_mb, args.max_seconds, args.max_samples)
        serve(UIBackend(converter, workdir, limits), args.host, args.port)
    except OSError as e:  # the port was taken between the check and the start, or no free port at all
        raise CanoraError(f"cannot serve on {args.host}:{args.port or 'any free port'} ({e}); choose another "
                          "--port") from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
