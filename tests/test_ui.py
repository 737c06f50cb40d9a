"""``canora ui``: the backend directly (no browser), and the page end to end in headless Debian chromium.

The end-to-end test skips when gradio, playwright or a ``chromium`` executable is missing; playwright drives
the system chromium (``executable_path``) and never downloads a browser of its own.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from canora.errors import AudioError, CanoraError, MelError
from tests.conftest import make_tiny_models, shared_file

CLIP_SECONDS = 3.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def converter(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A Converter over tiny random models (fast, wrong-sounding: for plumbing)."""
    from canora.pipeline import Converter

    ref, voc = make_tiny_models(tmp_path_factory.mktemp("ui_models"))
    return Converter.from_pretrained(ref, voc)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of real singing (vocadito clip 1, from 1 s on) as a wav at its own rate."""
    wav, sr = sf.read(shared_file("vocadito/vocadito_1.wav"), dtype="float32", always_2d=True)
    path = tmp_path_factory.mktemp("ui_clip") / "vocadito_1.wav"
    sf.write(path, wav[sr : sr + int(CLIP_SECONDS * sr), 0], sr)
    return path


@pytest.fixture
def text_as_wav(tmp_path: Path) -> Path:
    path = tmp_path / "notaudio.wav"
    path.write_text("this is a text file, not audio\n")
    return path


def _backend(converter: Any, workdir: Path, **limits: float) -> Any:
    from canora.ui import UIBackend, UILimits

    return UIBackend(converter, workdir, UILimits(**limits))


# ---------------------------------------------------------------------- no gradio needed
def test_import_does_not_import_gradio() -> None:
    code = "import sys, canora.ui, canora.cli.ui; sys.exit('gradio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_cli_without_gradio_says_how_to_install() -> None:
    code = "import sys; sys.modules['gradio'] = None; from canora.cli import main; sys.exit(main(['ui']))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("canora ui")]
    assert len(lines) == 1 and "pip install 'canora[ui]'" in lines[0], r.stderr


def test_cli_binds_localhost_by_default() -> None:
    from canora.cli import build_parser

    args = build_parser().parse_args(["ui"])
    assert args.host == "127.0.0.1" and args.port is None and args.refiner == "bundled" and args.vocoder == "bundled"
    args = build_parser().parse_args(["ui", "--port", "8123", "--max-upload-mb", "5", "--max-seconds", "30"])
    assert (args.port, args.max_upload_mb, args.max_seconds) == (8123, 5.0, 30.0)


@pytest.mark.slow
def test_backend_converts_a_real_clip(converter: Any, clip: Path, tmp_path: Path) -> None:
    backend = _backend(converter, tmp_path / "work")
    seen: list[tuple[float, str]] = []
    r = backend.convert(clip, singer="pjs", transpose=2, sampler="dpmpp", steps=2, strength=0.5,
                        on_progress=lambda f, what: seen.append((f, what)))
    info = sf.info(str(r.wav_path))
    assert info.samplerate == converter.spec.sample_rate
    assert info.duration == pytest.approx(CLIP_SECONDS, abs=1e-3)
    assert r.wav_path.resolve().is_relative_to((tmp_path / "work").resolve())
    assert r.source_png.startswith(PNG_MAGIC) and r.converted_png.startswith(PNG_MAGIC)
    assert r.conversion.transpose == 2.0 and r.conversion.stats["steps"] == 2
    assert "vocadito_1.wav" in r.status and "pjs" in r.status and "+2.0 semitones" in r.status
    assert seen[0][0] == 0.0 and seen[-1][0] == pytest.approx(1.0)
    auto = backend.convert(clip, steps=1)  # no transpose: the key comes from the singer's range (the default)
    assert "automatic key" in auto.status and auto.wav_path != r.wav_path
    assert f"level {auto.conversion.stats['level']['reason']}" in auto.status  # the gain it was refined at
    assert auto.conversion.stats["key"]["mode"] == "octave" and auto.conversion.transpose % 12 == 0


def test_backend_text_file_renamed_wav(converter: Any, text_as_wav: Path, tmp_path: Path) -> None:
    backend = _backend(converter, tmp_path / "work")
    with pytest.raises(AudioError, match=r"^notaudio\.wav: cannot read audio") as e:
        backend.convert(text_as_wav)
    assert str(tmp_path) not in str(e.value)  # the page shows the file name, not the server's path
    assert not list((tmp_path / "work").rglob("*.wav"))


def test_backend_rejects_other_file_types(converter: Any, tmp_path: Path, clip: Path) -> None:
    backend = _backend(converter, tmp_path / "work")
    notes = tmp_path / "notes.txt"
    notes.write_text("la la la")
    with pytest.raises(CanoraError, match=r"notes\.txt: not an audio file"):
        backend.convert(notes)
    with pytest.raises(CanoraError, match=r"vocadito_1\.wav: not a \.npy mel"):
        backend.doctor(clip)


def test_backend_caps_duration_and_size(converter: Any, clip: Path, tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"vocadito_1\.wav: 3\.0 s of audio is over this page's 2 s limit"):
        _backend(converter, tmp_path / "a", max_seconds=2).convert(clip)
    with pytest.raises(CanoraError, match=r"vocadito_1\.wav: .* MB is over this page's 0\.01 MB upload limit"):
        _backend(converter, tmp_path / "b", max_upload_mb=0.01).convert(clip)


def test_backend_doctor_verdicts(converter: Any, clip: Path, tmp_path: Path) -> None:
    from canora.analysis.conventions import synthesize
    from canora.io.audio import load_audio

    spec = converter.vocoder.spec
    wav = load_audio(clip, spec.sample_rate)
    np.save(tmp_path / "good.npy", synthesize(wav, spec, "ln"))
    np.save(tmp_path / "db.npy", synthesize(wav, spec, "db_ref1"))
    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    backend = _backend(converter, tmp_path / "work")
    assert backend.doctor(tmp_path / "good.npy").startswith("good.npy: OK")
    verdict = backend.doctor(tmp_path / "db.npy")
    assert verdict.startswith("db.npy: does NOT match") and "[db_ref1]" in verdict and "fix" in verdict
    with pytest.raises(MelError, match=r"^broken\.npy: not a readable \.npy array"):
        backend.doctor(tmp_path / "broken.npy")


# ---------------------------------------------------------------------- the page in a real browser
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _click_convert_when_the_clip_has_landed(page: Any, tries: int = 20) -> None:
    """Click Convert; Gradio shows the waveform of a clip before its upload to the server has finished, and a
    click in that window gets the page's "upload or record a clip first" (correctly): wait and click again,
    as a person would."""
    for _ in range(tries):
        page.click("#convert-button")
        page.wait_for_timeout(700)
        if "upload or record a clip first" not in (page.locator("#status").text_content() or ""):
            return
        page.wait_for_timeout(800)
    raise AssertionError("the clip never reached the server")


def _upload_and_convert(page: Any, path: Path, steps: int) -> None:
    page.locator("#source-audio input[type=file]").set_input_files(str(path))
    page.locator("#source-audio [data-testid^='waveform-']").first.wait_for(timeout=20_000)
    box = page.locator("#steps input[type=number]")
    box.fill(str(steps))
    box.press("Enter")
    _click_convert_when_the_clip_has_landed(page)


@pytest.mark.slow
def test_page_end_to_end(converter: Any, clip: Path, text_as_wav: Path, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gradio", reason="gradio is not installed (pip install 'canora[ui]')")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium executable on PATH (Debian: apt-get install chromium)")
    from canora.ui import UIBackend, UILimits, serve

    class Gated(UIBackend):
        """Records when each conversion ran; the first one holds at its first progress report until released,
        so a second request surely arrives while it runs and its progress can be seen in the page."""

        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            self.spans: list[tuple[float, float]] = []
            self.lock = threading.Lock()
            self.started, self.release = threading.Event(), threading.Event()

        def convert(self, *a: Any, on_progress: Any = None, **k: Any) -> Any:
            def hold(f: float, what: str) -> None:
                on_progress(f, what)
                if not self.started.is_set():
                    self.started.set()
                    self.release.wait(60)

            t0 = time.monotonic()
            try:
                return super().convert(*a, on_progress=hold, **k)
            finally:
                with self.lock:
                    self.spans.append((t0, time.monotonic()))

    workdir = tmp_path / "ui_work"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(workdir))  # serve() sets it too; this restores it afterwards
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    backend = Gated(converter, workdir, UILimits(max_upload_mb=5, max_seconds=20))
    port = _free_port()
    app = serve(backend, "127.0.0.1", port, block=False, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        with sync_api.sync_playwright() as pw:
            # a fake microphone (a beep) and no permission prompt, for the recording check
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=[
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
            try:
                page, other = (browser.new_page(viewport={"width": 1400, "height": 1000}) for _ in range(2))
                for p in (page, other):
                    p.goto(url)
                    p.wait_for_selector("#convert-button")
                # two sessions convert at once: the first shows its progress, the second waits in the queue
                _upload_and_convert(page, clip, steps=2)
                assert backend.started.wait(30)
                sync_api.expect(page.locator("#converted-audio")).to_contain_text("reading the clip", timeout=10_000)
                _upload_and_convert(other, clip, steps=3)
                sync_api.expect(other.locator("#converted-audio")).to_contain_text("queue", timeout=10_000)
                page.screenshot(path=str(tmp_path / "ui_progress.png"))
                backend.release.set()
                for p, steps in ((page, 2), (other, 3)):
                    sync_api.expect(p.locator("#status")).to_contain_text(f"× {steps} steps", timeout=60_000)
                    assert "converted to pjs" in p.locator("#status").inner_text()
                (a0, a1), (b0, b1) = sorted(backend.spans)
                assert a1 <= b0, f"conversions overlapped: {backend.spans}"

                # the audio result: right duration in the browser and as the downloaded file
                link = page.locator("#converted-audio a[download]")
                href = link.get_attribute("href")
                assert href and str(workdir.resolve()) in href  # served from the UI's own directory
                js_duration = page.evaluate(
                    "async (u) => { const b = await (await fetch(u)).arrayBuffer();"
                    " return (await new OfflineAudioContext(1, 1, 22050).decodeAudioData(b)).duration; }", href)
                assert js_duration == pytest.approx(CLIP_SECONDS, abs=0.01)
                with page.expect_download() as dl:
                    link.click()
                saved = tmp_path / "downloaded.wav"
                dl.value.save_as(saved)
                assert sf.info(str(saved)).duration == pytest.approx(CLIP_SECONDS, abs=1e-3)

                # both spectrogram images rendered
                for sel in ("#source-plot img", "#converted-plot img"):
                    img = page.locator(sel)
                    img.wait_for(timeout=10_000)
                    page.wait_for_function("(e) => e.complete && e.naturalWidth > 0", arg=img.element_handle())
                    assert img.evaluate("(e) => e.naturalWidth") > 300
                shot = tmp_path / "ui_converted.png"
                page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot of the converted page: {shot}")

                # a text file renamed .wav: the AudioError message in the page, no result
                page.locator("#source-audio button[aria-label='Clear']").click()
                page.locator("#source-audio input[type=file]").set_input_files(str(text_as_wav))
                page.click("#convert-button")
                sync_api.expect(page.locator("#status")).to_contain_text(
                    "Error: notaudio.wav: cannot read audio", timeout=30_000)
                assert page.locator("#converted-audio a[download]").count() == 0
                shot = tmp_path / "ui_error.png"
                page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot of the error: {shot}")

                # record from the (fake) microphone instead of uploading
                rec = browser.new_context(permissions=["microphone"]).new_page()
                rec.goto(url)
                rec.locator("#source-audio button[aria-label='Record audio']").click()
                rec.locator("#source-audio button", has_text="Record").first.click()
                rec.wait_for_timeout(1500)
                rec.locator("#source-audio button", has_text="Stop").first.click()
                rec.locator("#source-audio [data-testid^='waveform-']").first.wait_for(timeout=20_000)
                _click_convert_when_the_clip_has_landed(rec)
                # Chromium's fake microphone plays beeps: a pure tone the F0 tracker need not call a voice, so
                # the recording either converts or, correctly, converts to silence with a notice
                sync_api.expect(rec.locator("#status")).to_contain_text(
                    re.compile("converted to pjs|no voice found"), timeout=60_000)
            finally:
                browser.close()
        # uploads and results landed in the UI's own directory (closing the app empties it)
        assert {p.name for p in workdir.rglob("*.wav")} >= {"vocadito_1.wav", "notaudio.wav", "vocadito_1-pjs.wav",
                                                        "audio.wav"}
    finally:
        backend.release.set()
        app.close()


@pytest.mark.slow
def test_gradio_s_import_time_temp_folder_follows_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradio imported before the page set GRADIO_TEMP_DIR still makes its folders in the page's own directory."""
    route_utils = pytest.importorskip("gradio.route_utils", reason="gradio is not installed")
    from canora.ui import _gradio_temp_dir

    monkeypatch.setattr(route_utils, "DEFAULT_TEMP_DIR", "/somewhere/else")
    _gradio_temp_dir(tmp_path)
    assert route_utils.DEFAULT_TEMP_DIR == str(tmp_path)
