"""``canora ui``: a local web page (Gradio) to convert, compare and diagnose in the browser."""

from __future__ import annotations

import argparse
from pathlib import Path

from canora.cli.common import add_device_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ui",
        help="a local web page to convert, compare spectrograms and run the doctor (needs canora[ui])",
        description="Start a local web page: upload or record a clip, pick singer, key, sampler, steps and "
        "strength, convert, listen and download; see source and converted mels with F0 side by side; check a "
        ".npy mel with the doctor. Binds to 127.0.0.1 by default; requests are queued, one conversion at a time. "
        "Needs the ui extra: pip install 'canora[ui]'.",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; anything else exposes the page, without a login)")
    p.add_argument("--port", type=int, default=None, help="port (default: 7860 or the next free one)")
    p.add_argument("--refiner", type=Path, default=None, help="refiner export (default: the bundled one)")
    p.add_argument("--vocoder", type=Path, default=None,
                   help="vocoder export or official checkpoint (default: the bundled one)")
    p.add_argument("--max-upload-mb", type=float, default=50.0, help="largest accepted upload in MB (default 50)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="longest accepted clip in seconds (default 600)")
    add_device_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import shutil
    import signal
    import tempfile

    from canora.cli.common import apply_device_args
    from canora.errors import CanoraError
    from canora.ui import INSTALL_HINT, UIBackend, UILimits, serve

    try:
        import gradio  # noqa: F401
    except ImportError:
        raise CanoraError(f"the web UI needs gradio, which is not installed: {INSTALL_HINT}") from None
    if args.max_upload_mb <= 0 or args.max_seconds <= 0:
        raise CanoraError("--max-upload-mb and --max-seconds must be > 0")
    if args.port is not None and not 0 < args.port < 65536:
        raise CanoraError(f"--port {args.port}: expected 1-65535")
    from canora.pipeline import Converter

    apply_device_args(args)
    converter = Converter.from_pretrained(args.refiner, args.vocoder, device=args.device)
    workdir = Path(tempfile.mkdtemp(prefix="canora-ui-"))

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM ends the page like Ctrl+C: server closed, work dir removed

    signal.signal(signal.SIGTERM, stop)
    try:
        serve(UIBackend(converter, workdir, UILimits(args.max_upload_mb, args.max_seconds)), args.host, args.port)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
