"""``canora ui``: a local Gradio page to convert, compare and diagnose in the browser.

:class:`UIBackend` does the work (upload checks, conversion, plots, doctor) and knows nothing of Gradio, so it
is tested directly; :func:`build_app` lays the page out over it and :func:`serve` starts it. The page binds to
127.0.0.1 unless told otherwise, queues requests (one conversion at a time, the others wait their turn),
rejects uploads that are not audio or ``.npy`` with a message in the page, caps upload size and duration, and
writes only into its own directory (Gradio's upload cache is pointed there too).

Gradio is an optional extra (``pip install 'canora[ui]'``): it is imported only inside :func:`build_app` and
:func:`serve`, never when this module is imported.
"""

from __future__ import annotations

import html
import io
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from canora.errors import AudioError, CanoraError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'canora[ui]'"
OUTPUT_MAX_AGE_SECONDS = 6 * 3600  # converted files older than this are pruned from the work dir


@dataclass(frozen=True)
class UILimits:
    """Per-upload caps: file size in MB (also enforced by Gradio before the upload lands), audio seconds, and
    decoded samples (channels x rate x seconds, read from the header before decoding: a small compressed file of
    many channels at a high rate would otherwise decode to gigabytes)."""

    max_upload_mb: float = 50.0
    max_seconds: float = 600.0
    max_samples: float = 120e6  # 10 minutes of stereo at 96 kHz; 480 MB of float32 at most


@dataclass
class ConvertResult:
    """What one conversion gives the page: the wav written in the work dir, two PNG plots, a status line,
    and the full :class:`canora.pipeline.Conversion` (audio (N,), mels (n_mels, T), F0 (T,), stats)."""

    wav_path: Path
    source_png: bytes
    converted_png: bytes
    status: str
    conversion: Any


#: the automatic key's choices in the page -> Converter key modes
KEY_CHOICES = {"keep the key (octaves)": "octave", "free (any semitone)": "free"}

def _safe_name(s: str, limit: int = 60) -> str:
    """A file-name-safe version of ``s`` (letters, digits, ``._-``), never empty."""
    return re.sub(r"[^\w.-]+", "_", s).strip("._")[:limit] or "audio"


def _with_name(err: CanoraError, path: Path) -> str:
    """The message of ``err`` with the server-side path of an upload replaced by its file name."""
    return str(err).replace(str(path), path.name)


def _colour_range(mel: np.ndarray, spec: Any) -> tuple[float, float]:
    """(vmin, vmax) for drawing a log-mel (n_mels, T): its 99.9th percentile and 9 ln units (~80 dB) below."""
    if mel.size == 0:
        return float(spec.log_floor), 0.0
    top = float(np.percentile(mel, 99.9))
    return max(float(spec.log_floor), top - 9.0), top


def mel_f0_png(
    mel: np.ndarray, f0: np.ndarray | None, spec: Any, title: str, *, vmin: float | None = None,
    vmax: float | None = None,
) -> bytes:
    """PNG bytes of a log-mel ``mel`` (n_mels, T) with its F0 curve ``f0`` (T,) Hz (0 = unvoiced) drawn at the
    height of the fundamental (mel band axis left, Hz right). Uses matplotlib's object API (thread-safe)."""
    from matplotlib.figure import Figure

    from canora.analysis.plots import band_centres_hz
    from canora.dsp.melbank import hz_to_mel

    n_mels, n_frames = mel.shape
    sec = spec.hop_length / spec.sample_rate
    htk = spec.mel_scale == "htk"
    centres = hz_to_mel(band_centres_hz(spec), htk=htk)

    def band_of(hz: np.ndarray) -> np.ndarray:
        return np.interp(hz_to_mel(hz, htk=htk), centres, np.arange(n_mels))

    fig = Figure(figsize=(7.0, 3.4), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax,
              extent=(0, max(n_frames, 1) * sec, -0.5, n_mels - 0.5), interpolation="nearest")
    if f0 is not None and np.any(f0 > 0):
        voiced = f0 > 0
        y = np.full(len(f0), np.nan)
        y[voiced] = band_of(f0[voiced])
        ax.plot((np.arange(len(f0)) + 0.5) * sec, y, color="#29e3ff", lw=1.4, label="F0")
        ax.legend(loc="upper right", fontsize=8, framealpha=0.6)
        title += f" · median F0 {float(np.median(f0[voiced])):.0f} Hz"
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band")
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, max(n_frames, 1) * sec)
    ax2 = ax.twinx()
    ax2.set_ylim(ax.get_ylim())
    ticks: list[tuple[float, float]] = []  # (band, Hz), at least 4 bands apart
    for hz in (100, 200, 400, 800, 1600, 3200, 6400):
        band = float(band_of(np.array([hz], float))[0])
        if spec.fmin < hz < spec.fmax_hz and (not ticks or band - ticks[-1][0] >= 4):
            ticks.append((band, hz))
    ax2.set_yticks([b for b, _ in ticks], [f"{hz:g}" for _, hz in ticks])
    ax2.set_ylabel("Hz")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class UIBackend:
    """What the page calls; separate from Gradio so it can be tested directly.

    ``converter`` is a :class:`canora.pipeline.Converter`; every file it writes goes under ``workdir``.
    """

    def __init__(self, converter: Any, workdir: str | Path, limits: UILimits | None = None) -> None:
        self.converter = converter
        self.workdir = Path(workdir).resolve()
        self.limits = limits or UILimits()
        self.workdir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ choices for the page
    @property
    def singers(self) -> list[str]:
        return list(self.converter.singers)

    @property
    def samplers(self) -> list[str]:
        from canora.refiner.samplers import available_samplers

        return available_samplers()

    @property
    def defaults(self) -> dict[str, Any]:
        from canora.refiner.base import DEFAULT_SAMPLER, DEFAULT_STEPS, DEFAULT_STRENGTH

        return {"sampler": DEFAULT_SAMPLER, "steps": DEFAULT_STEPS, "strength": DEFAULT_STRENGTH}

    @property
    def vocoder_spec(self) -> Any:
        """The MelSpec the doctor checks against (the vocoder's; the converter checked the refiner has it too)."""
        vocoder = getattr(self.converter, "vocoder", None)
        return vocoder.spec if vocoder is not None else self.converter.spec

    # ------------------------------------------------------------------ uploads
    def _check_file(self, path: str | Path, suffixes: tuple[str, ...], what: str) -> Path:
        p = Path(path)
        if not p.is_file():
            raise CanoraError(f"{p.name}: the upload is missing; upload it again")
        if p.suffix.lower() not in suffixes:
            raise CanoraError(f"{p.name}: not {what} (accepted: {', '.join(suffixes)})")
        size = p.stat().st_size
        if size == 0:
            raise CanoraError(f"{p.name}: the upload is empty (0 bytes); upload it again")
        size_mb = size / 2**20
        if size_mb > self.limits.max_upload_mb:
            raise CanoraError(f"{p.name}: {size_mb:.1f} MB is over this page's {self.limits.max_upload_mb:g} MB "
                              "upload limit; cut the file or start `canora ui --max-upload-mb` higher")
        return p

    def read_clip(self, path: str | Path) -> tuple[np.ndarray, int]:
        """Check and read an uploaded clip -> ((N,) float32 mono, sample rate). Errors name the file only."""
        from canora.io.audio import AUDIO_EXTENSIONS, audio_info, read_audio

        p = self._check_file(path, AUDIO_EXTENSIONS, "an audio file")
        cap = self.limits.max_seconds
        too_long = f"over this page's {cap:g} s limit; cut the clip or start `canora ui --max-seconds` higher"
        try:  # cheap header checks first, so an hour-long or 8-channel 192 kHz file is refused before it is decoded
            channels, rate, frames = audio_info(p)
        except CanoraError:
            channels = rate = frames = 0  # unreadable: read_audio below says why
        if rate > 0 and frames / rate > cap:
            raise AudioError(f"{p.name}: {frames / rate:.1f} s of audio is {too_long}")
        if channels * frames > self.limits.max_samples:
            raise AudioError(f"{p.name}: {channels} channel(s) x {frames} frames ({channels * frames / 1e6:.0f} M "
                             f"samples at {rate} Hz) is over this page's {self.limits.max_samples / 1e6:g} M decoded "
                             "samples; mix it down or lower its rate, or start `canora ui --max-samples` higher")
        try:
            wav, sr = read_audio(p)
        except CanoraError as e:
            raise AudioError(_with_name(e, p)) from None
        if len(wav) / sr > cap:
            raise AudioError(f"{p.name}: {len(wav) / sr:.1f} s of audio is {too_long}")
        return wav, sr

    # ------------------------------------------------------------------ conversion
    def _out_dir(self) -> Path:
        """A fresh directory for one conversion's files; prunes those older than OUTPUT_MAX_AGE_SECONDS."""
        root = self.workdir / "out"
        root.mkdir(exist_ok=True)
        now = time.time()
        for old in root.iterdir():
            try:
                if old.is_dir() and now - old.stat().st_mtime > OUTPUT_MAX_AGE_SECONDS:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
        d = root / uuid.uuid4().hex
        d.mkdir()
        return d

    def convert(
        self,
        path: str | Path,
        *,
        singer: str | None = None,
        transpose: float | None = None,
        auto_transpose: bool | None = None,
        key_mode: str = "octave",
        sampler: str | None = None,
        steps: int | None = None,
        strength: float | None = None,
        on_progress: Callable[[float, str], None] | None = None,
    ) -> ConvertResult:
        """Convert the uploaded clip at ``path``; the wav (N,) at the model rate is written under ``workdir``.
        The key as in :meth:`canora.pipeline.Converter.convert`: automatic (``key_mode``) unless ``transpose`` is
        given."""
        from canora.io.audio import save_wav
        from canora.pipeline import NO_VOICE

        p = Path(path)
        if on_progress is not None:
            on_progress(0.0, "reading the clip")
        wav, sr = self.read_clip(p)
        try:
            res = self.converter.convert(
                wav, sr, singer=singer or None, transpose=None if transpose is None else float(transpose),
                auto_transpose=auto_transpose,
                key_mode=key_mode or "octave", sampler=sampler or None, steps=None if steps is None else int(steps),
                strength=None if strength is None else float(strength), on_progress=on_progress, name=p.name,
            )
        except CanoraError as e:
            raise type(e)(_with_name(e, p)) from None
        out = self._out_dir() / f"{_safe_name(p.stem)}-{_safe_name(res.singer)}.wav"
        save_wav(out, res.audio, res.sample_rate)
        spec = self.converter.spec
        (s_lo, s_hi), (c_lo, c_hi) = _colour_range(res.source_mel, spec), _colour_range(res.mel, spec)
        shared = abs(s_hi - c_hi) < 3.0  # one colour scale when the levels agree, else each its own
        title = f"converted mel + F0 → {res.singer}, {res.transpose:+.1f} st"
        title += "" if shared else " (own colour scale)"
        src_png = mel_f0_png(res.source_mel, res.source_f0, spec, "source mel + F0", vmin=s_lo, vmax=s_hi)
        out_png = mel_f0_png(res.mel, res.f0, spec, title, vmin=s_lo if shared else c_lo, vmax=s_hi if shared else c_hi)
        st = res.stats
        seconds = len(res.audio) / res.sample_rate
        if st.get("silent"):
            status = f"{p.name}: {NO_VOICE}, so the result is {seconds:.1f} s of silence"
        else:
            key = (f"automatic key ({st['key']['reason']})" if "key" in st
                   else f"transpose {res.transpose:+.1f} semitones")
            if st.get("key_note"):
                key += f" ({st['key_note']})"
            if "level" in st:
                key += f", level {st['level']['reason']}"
            stage = st.get("output")
            if stage and (abs(stage["gain_db"]) > 1e-3 or stage["limited_ms"]):  # the output stage changed the level
                key += f", output {stage['reason']}"
            status = (f"{p.name}: {seconds:.2f} s converted to {res.singer}, {key}, "
                      f"{st.get('sampler')} × {st.get('steps')} steps, strength {st.get('strength'):g}, "
                      f"in {st.get('wall_seconds', 0.0):.1f} s "
                      f"(real-time factor {st.get('real_time_factor', 0.0):.2f})")
        return ConvertResult(out, src_png, out_png, status, res)

    # ------------------------------------------------------------------ doctor
    def doctor(self, path: str | Path) -> str:
        """The doctor's verdict (a few lines of text) on an uploaded ``.npy`` mel against the vocoder's MelSpec."""
        from canora.analysis.doctor import diagnose
        from canora.io.melfiles import load_npy

        p = self._check_file(path, (".npy",), "a .npy mel")
        try:
            mel = load_npy(p)
            return diagnose(mel, self.vocoder_spec, name=p.name).summary()
        except CanoraError as e:
            raise type(e)(_with_name(e, p)) from None


# ---------------------------------------------------------------------- the page
def _status_html(text: str, error: bool = False) -> str:
    colour = "#c0392b" if error else "inherit"
    label = "<b>Error:</b> " if error else ""
    return f'<div class="canora-status" style="color:{colour}">{label}{html.escape(text)}</div>'


def build_app(backend: UIBackend, title: str = "canora") -> Any:
    """The Gradio Blocks page over ``backend`` (queued: one conversion at a time, the rest wait)."""
    import gradio as gr

    def png_file(data: bytes, directory: Path, name: str) -> str:
        p = directory / name
        p.write_bytes(data)
        return str(p)

    def do_convert(audio_path, singer, transpose, auto, key_mode, sampler, steps, strength,  # noqa: ANN001, ANN202
                   progress=gr.Progress()):  # noqa: B008 - Gradio's way of asking for a progress tracker
        if not audio_path:
            return None, None, None, _status_html("upload or record a clip first", error=True)
        try:
            r = backend.convert(audio_path, singer=singer, transpose=None if auto else float(transpose or 0.0),
                                key_mode=KEY_CHOICES.get(key_mode, "octave"), sampler=sampler, steps=steps,
                                strength=strength, on_progress=lambda f, d: progress(f, desc=d))
        except CanoraError as e:
            return None, None, None, _status_html(str(e), error=True)
        d = r.wav_path.parent
        return (str(r.wav_path), png_file(r.source_png, d, "source.png"), png_file(r.converted_png, d, "converted.png"),
                _status_html(r.status))

    def do_doctor(file_path):  # noqa: ANN001, ANN202
        if not file_path:
            return "Error: upload a .npy mel first."
        try:
            return backend.doctor(file_path)
        except CanoraError as e:
            return f"Error: {e}"

    spec = backend.vocoder_spec
    defaults = backend.defaults
    singers = backend.singers
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, OUTPUT_MAX_AGE_SECONDS)) as app:
        gr.Markdown(f"# {html.escape(title)} · singing voice conversion\n"
                    "Upload or record a sung clip, pick a singer and a key, convert, listen and download. "
                    f"Clips up to {backend.limits.max_seconds:g} s and {backend.limits.max_upload_mb:g} MB.")
        with gr.Tab("Convert"):
            with gr.Row():
                with gr.Column():
                    audio_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label="source clip",
                                        buttons=["download"], elem_id="source-audio")
                    singer = gr.Dropdown(singers, value=singers[0] if singers else None, label="singer",
                                         elem_id="singer")
                    with gr.Row():
                        transpose = gr.Slider(-24, 24, value=0, step=1, label="transpose (semitones)",
                                              elem_id="transpose", interactive=False)
                        auto = gr.Checkbox(value=True, label="automatic key (toward the singer's range)",
                                           elem_id="auto-key")
                        key_mode = gr.Radio(list(KEY_CHOICES), value=next(iter(KEY_CHOICES)), label="automatic key",
                                            elem_id="key-mode")
                    with gr.Row():
                        sampler = gr.Dropdown(backend.samplers, value=defaults["sampler"], label="sampler",
                                              elem_id="sampler")
                        steps = gr.Slider(1, 50, value=defaults["steps"], step=1, label="steps", elem_id="steps")
                        strength = gr.Slider(0.05, 1.0, value=defaults["strength"], step=0.05, label="strength",
                                             elem_id="strength")
                    go = gr.Button("Convert", variant="primary", elem_id="convert-button")
                with gr.Column():
                    status = gr.HTML(_status_html("ready"), elem_id="status")
                    audio_out = gr.Audio(label="converted (download with the arrow)", type="filepath",
                                         interactive=False, buttons=["download"], elem_id="converted-audio")
            with gr.Row(equal_height=True):
                src_img = gr.Image(label="source mel + F0", show_label=False, type="filepath", interactive=False,
                                   buttons=["download", "fullscreen"], elem_id="source-plot")
                out_img = gr.Image(label="converted mel + F0", show_label=False, type="filepath", interactive=False,
                                   buttons=["download", "fullscreen"], elem_id="converted-plot")
            auto.change(lambda a: gr.Slider(interactive=not a), auto, transpose, queue=False)
            go.click(do_convert, [audio_in, singer, transpose, auto, key_mode, sampler, steps, strength],
                     [audio_out, src_img, out_img, status], concurrency_limit=1, concurrency_id="convert",
                     show_progress_on=[audio_out])
        with gr.Tab("Doctor"):
            gr.Markdown("Upload a `.npy` mel to see which convention it is in and whether it matches the "
                        f"vocoder's MelSpec ({html.escape(spec.describe())}), with the fix.")
            npy = gr.File(label=".npy mel", file_types=[".npy"], type="filepath", elem_id="doctor-file")
            check = gr.Button("Diagnose", elem_id="doctor-button")
            verdict = gr.Textbox(label="verdict", lines=8, interactive=False, elem_id="doctor-verdict")
            check.click(do_doctor, [npy], [verdict], concurrency_limit=1, concurrency_id="doctor")
    app.queue(default_concurrency_limit=1, max_size=None)  # unbounded: a waiting request is never dropped
    return app


#: Gradio modules that read GRADIO_TEMP_DIR once, when imported (the server makes folders there when it starts)
_TEMP_DIR_MODULES = ("gradio.route_utils", "gradio.routes", "gradio.mcp", "gradio.screen_recording_utils")


def _gradio_temp_dir(workdir: Path) -> None:
    """Point Gradio's import-time temp folder at ``workdir`` too, when Gradio was imported before it was set (else
    the server makes its folders in the system's temp directory, outside the page's own)."""
    import sys

    for name in _TEMP_DIR_MODULES:
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "DEFAULT_TEMP_DIR"):
            module.DEFAULT_TEMP_DIR = str(workdir)


def serve(backend: UIBackend, host: str = "127.0.0.1", port: int | None = None, *, block: bool = True,
          quiet: bool = False) -> Any:
    """Build the page and start it on ``host:port`` (None = Gradio's 7860 or the next free port).

    Gradio's upload cache is set to ``backend.workdir`` first, so uploads and results stay there.
    ``block=True`` serves until Ctrl+C (or SIGTERM via the CLI), then closes; ``block=False`` returns the
    running app at once (serving from a thread; stop it with ``app.close()``).
    """
    os.environ["GRADIO_TEMP_DIR"] = str(backend.workdir)  # read when the app is built, so before build_app
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    _gradio_temp_dir(backend.workdir)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise CanoraError(f"the web UI needs gradio, which is not installed: {INSTALL_HINT}") from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: anyone who can reach this address can use the page (there is no login)", host)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own startup requests are not news
    app = build_app(backend)
    app.launch(
        server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True,
        quiet=True, show_error=False, max_file_size=int(backend.limits.max_upload_mb * 2**20),
        allowed_paths=[], ssr_mode=False, mcp_server=False, pwa=False,
    )
    if not quiet:
        print(f"canora ui: serving {app.local_url} (Ctrl+C to stop)", flush=True)
    if block:
        try:
            while True:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            app.close()
    return app
