"""canora report: renders, metrics.json validates against its schema, the HTML shows its images in Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from canora.analysis.conventions import synthesize
from canora.analysis.report import SCHEMA_PATH, build_report
from canora.cli import main
from canora.dsp.mel import MelSpec
from tests.conftest import shared_file

SPEC = MelSpec()
CLIPS = ("vocadito/vocadito_1.wav", "vocadito/vocadito_14.wav", "pjs/pjs002_song.wav")


@pytest.fixture(scope="module")
def wavs() -> dict[str, np.ndarray]:
    from canora.io.audio import load_audio

    return {Path(c).stem: load_audio(shared_file(c), 22050)[22050 : 22050 * 3] for c in CLIPS}


@pytest.fixture
def mel_dirs(tmp_path: Path, wavs: dict[str, np.ndarray]) -> tuple[Path, Path]:
    """original ln mels; "refined" = the same raised by +1.5 in bands 60-69, and one file in power dB."""
    orig, ref = tmp_path / "orig", tmp_path / "ref"
    orig.mkdir()
    ref.mkdir()
    for stem, wav in wavs.items():
        mel = synthesize(wav, SPEC, "ln")
        np.save(orig / f"{stem}.npy", mel)
        moved = mel.copy()
        moved[60:70] += 1.5
        np.save(ref / f"{stem}.npy", synthesize(wav, SPEC, "db_ref1") if stem == "vocadito_14" else moved)
    return orig, ref


def _schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


@pytest.mark.slow
def test_distribution_report_finds_moved_bands(tmp_path: Path, mel_dirs: tuple[Path, Path]) -> None:
    import jsonschema

    orig, ref = mel_dirs
    # only the two shifted files: the moved bands must be the ones shifted
    (ref / "vocadito_14.npy").unlink()
    m = build_report(orig, ref, tmp_path / "out", spec=SPEC)
    jsonschema.validate(m, _schema())
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == m
    top = [t["band"] for t in m["distribution"]["top_bands"]]
    assert all(60 <= b < 70 for b in top)
    assert all(t["mean_shift"] == pytest.approx(1.5, abs=1e-3) for t in m["distribution"]["top_bands"])
    w = np.array(m["distribution"]["band_wasserstein"])
    assert w[:60].max() < 1e-6 and w[60:70].min() == pytest.approx(1.5, abs=1e-3)
    assert m["summary"]["files"] == 2 and m["files"][0]["refined"] is None
    assert m["distribution"]["harmonic_contrast"] is None  # no audio: no waveform measure


@pytest.mark.slow
def test_harmonic_detail_sees_a_refiner_that_smooths_harmonics(tmp_path: Path, wavs) -> None:
    """Refined mels blurred along frequency (what a refiner that turns harmonics into a noise band does)
    keep their per-band means but lose harmonic detail: the report's ratio falls below 0.9 in every band."""
    from scipy.ndimage import uniform_filter1d

    orig, ref = tmp_path / "orig", tmp_path / "ref"
    orig.mkdir()
    ref.mkdir()
    for stem, wav in wavs.items():
        mel = synthesize(wav, SPEC, "ln")
        np.save(orig / f"{stem}.npy", mel)
        np.save(ref / f"{stem}.npy", uniform_filter1d(mel, 3, axis=0))
    hd = build_report(orig, ref, tmp_path / "out", spec=SPEC)["distribution"]["harmonic_detail"]
    assert hd["frames"] > 100 and all(q < 0.9 for q in hd["ratio"]), hd
    assert "Harmonic detail" in (tmp_path / "out" / "report.html").read_text()
    same = build_report(orig, orig, tmp_path / "same", spec=SPEC)["distribution"]["harmonic_detail"]
    assert all(q == pytest.approx(1.0) for q in same["ratio"])


@pytest.mark.slow
def test_report_with_vocoder_flags_the_db_file(tmp_path: Path, mel_dirs: tuple[Path, Path]) -> None:
    import jsonschema

    from canora.vocoder import Vocoder

    orig, ref = mel_dirs
    voc = Vocoder.from_pretrained(shared_file("hifigan/LJ_V2/generator_v2"))
    m = build_report(orig, ref, tmp_path / "out", spec=voc.spec, vocoder=voc)
    jsonschema.validate(m, _schema())
    by = {f["name"]: f for f in m["files"]}
    assert by["vocadito_14"]["refined_conventions"] == ["db_ref1"]
    assert by["vocadito_14"]["refined"]["collapsed"]
    assert not any(f["original"]["collapsed"] for f in m["files"])
    assert m["summary"]["collapsed_original"] == 0 and m["summary"]["collapsed_refined"] >= 1
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 6 and "vocadito_14" in html
    hc = m["distribution"]["harmonic_contrast"]  # both sides vocoded: both measured, on all three files
    values = hc["refined_audio"] + hc["original_audio"]
    assert hc["files"] == 3 and all(v is not None and np.isfinite(v) for v in values)


@pytest.mark.slow
def test_cli_report_with_generated_dir(tmp_path: Path, mel_dirs: tuple[Path, Path], wavs, capsys) -> None:
    import jsonschema

    from canora.io.audio import save_wav

    orig, ref = mel_dirs
    gen = tmp_path / "gen"
    for stem, wav in wavs.items():  # "generated" = the real audio: must reproduce the original mels
        save_wav(gen / f"{stem}.wav", wav, 22050, subtype="FLOAT")
    out = tmp_path / "rep"
    assert main(["report", "--original", str(orig), "--refined", str(orig), "--generated", str(gen),
                 "--config", "v1", "-o", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    jsonschema.validate(m, _schema())
    assert all(f["refined"]["cycle_error"] < 0.05 and not f["refined"]["collapsed"] for f in m["files"])
    assert m["distribution"]["mean_wasserstein"] == 0.0
    hc = m["distribution"]["harmonic_contrast"]  # the real recordings' harmonics, heard from the wavs
    assert hc["files"] == 3 and hc["original_audio"] is None and min(hc["refined_audio"]) > 0.3, hc
    assert "Harmonics in the audio" in (out / "report.html").read_text()
    # noise in place of the audio, scored at the recordings' F0 (<stem>.f0.npy beside the mels): no harmonics
    from canora.dsp.pitch import extract_f0

    noise_dir, mels = tmp_path / "noise", tmp_path / "mels_f0"
    shutil.copytree(orig, mels)
    rng = np.random.default_rng(0)
    for stem, wav in wavs.items():
        np.save(mels / f"{stem}.f0.npy", extract_f0(wav, 22050, 256, np.load(orig / f"{stem}.npy").shape[1]))
        save_wav(noise_dir / f"{stem}.wav", (0.1 * rng.standard_normal(len(wav))).astype(np.float32), 22050)
    assert main(["report", "--original", str(orig), "--refined", str(mels), "--generated", str(noise_dir),
                 "--config", "v1", "-o", str(tmp_path / "rep_noise")]) == 0
    noisy = json.loads((tmp_path / "rep_noise" / "metrics.json").read_text())["distribution"]["harmonic_contrast"]
    assert max(abs(v) for v in noisy["refined_audio"]) < 0.15, noisy
    assert main(["report", "--original", str(orig), "--refined", str(ref), "-o", str(orig)]) == 2


@pytest.mark.slow
def test_schema_rejects_a_broken_metrics(tmp_path: Path, mel_dirs: tuple[Path, Path]) -> None:
    import jsonschema

    m = build_report(*mel_dirs, tmp_path / "out", spec=SPEC)
    del m["files"][0]["mean_wasserstein"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(m, _schema())


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.slow
def test_html_shows_its_images_in_headless_chromium(tmp_path: Path, mel_dirs: tuple[Path, Path]) -> None:
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium installed")
    build_report(*mel_dirs, tmp_path / "out", spec=SPEC)
    page = (tmp_path / "out" / "report.html").read_text()
    probe = ("<script>window.addEventListener('load',()=>{const im=[...document.images];"
             "document.body.setAttribute('data-images',im.length);"
             "document.body.setAttribute('data-rendered',im.filter(i=>i.complete&&i.naturalWidth>100).length);});"
             "</script></body>")
    (tmp_path / "probe.html").write_text(page.replace("</body>", probe))
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'prof'}",
           "--virtual-time-budget=5000", "--dump-dom", (tmp_path / "probe.html").as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    import re

    n = re.search(r'data-images="(\d+)"', dom)
    ok = re.search(r'data-rendered="(\d+)"', dom)
    assert n and ok, dom[:500]
    assert int(n.group(1)) >= 5 and ok.group(1) == n.group(1)


def test_the_summary_line_is_rounded_and_says_why_a_score_is_missing() -> None:
    from canora.cli.report import summary_line

    m = {"summary": {"files": 3, "collapsed_refined": 0, "collapsed_original": 0, "median_cycle_error_refined":
                     0.123456789, "median_cycle_error_original": None}, "distribution": {"mean_wasserstein": 0.98765}}
    line = summary_line(m, vocoded=True)
    assert "0.1234" not in line and "refined 0.123" in line and "original n/a" in line and "None" not in line
    assert "0.988" in line
    assert "pass --vocoder or --generated" in summary_line(m, vocoded=False)
