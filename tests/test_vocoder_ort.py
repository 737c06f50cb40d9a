"""OrtVocoder: an ONNX vocoder export on ONNX Runtime without torch, against the torch Vocoder it was exported from.

Tiny random generators (HiFi-GAN v1- and v3-shaped, NSF with the smooth and the step source), exported once per
module. Tolerances: the whole vocoder within 1e-4 of torch (graph measured ~1e-6 from torch; the numpy source
within float32 rounding of the torch one); the numpy excitation within 1e-5 of ``SineSource.forward``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from canora.dsp.mel import MelSpec, read_config, wav_to_mel
from canora.errors import CanoraError, CheckpointError, MelError
from canora.vocoder import Vocoder
from canora.vocoder.config import GeneratorConfig, NSFConfig
from canora.vocoder.excitation import excitation, noise_channels
from canora.vocoder.hifigan import Generator
from canora.vocoder.nsf import NSFGenerator, SineSource
from canora.vocoder.ort import OrtVocoder

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

ATOL = 1e-4
SRC_ATOL = 1e-5
SPEC = MelSpec()
TINY_NSF = {"upsample_initial_channel": 16, "resblock_kernel_sizes": (3,), "resblock_dilation_sizes": ((1, 2),)}


def _tiny(name: str) -> Vocoder:
    """A tiny random torch vocoder: ``v1`` / ``v3`` (HiFi-GAN shapes at 16 channels, output scaled to peak near
    0.5), ``smooth`` (the current NSF design, noise at 0.3 inside notes), ``smooth1`` (the same at 1) or ``step``
    (canora 0.1's NSF)."""
    torch.manual_seed({"v1": 0, "v3": 1, "smooth": 2, "step": 3, "smooth1": 4}[name])
    if name in ("v1", "v3"):
        cfg = GeneratorConfig.from_hifigan_config({**read_config(name), "upsample_initial_channel": 16})
        gen = Generator.from_config(cfg).eval()
        with torch.no_grad():
            peak = float(gen(torch.randn(1, 80, 40) - 5).abs().max())
            gen.conv_post.parametrizations.weight.original0.mul_(0.5 / max(peak, 1e-6))
        return Vocoder(gen, SPEC, cfg, name)
    design = {"upsample": "transposed", "source": "step", "harmonics": 8} if name == "step" else {}
    if name == "smooth":  # the bundled design: quieter noise where voiced ("smooth1": the same noise everywhere)
        design = {"voiced_noise": 0.3}
    ncfg = NSFConfig(**TINY_NSF, noise_std=0.01, **design)
    return Vocoder(NSFGenerator.from_config(ncfg), SPEC, ncfg, name)


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, tuple[Vocoder, Path]]:
    """name -> (torch vocoder, its ONNX export directory)."""
    from canora.vocoder.onnx import export_vocoder_onnx

    d = tmp_path_factory.mktemp("ort_vocoders")
    out = {}
    for name in ("v1", "v3", "smooth", "step", "smooth1"):
        voc = _tiny(name)
        out[name] = (voc, export_vocoder_onnx(voc, d / name))
    return out


@pytest.fixture(scope="module")
def song() -> tuple[np.ndarray, np.ndarray]:
    """2 s of a synthetic sung tone: its log-mel (80, 173) and a frame F0 (173,) with unvoiced gaps."""
    sr = 22050
    t = np.arange(2 * sr) / sr
    f0 = 220 * 2 ** (0.3 * np.sin(2 * np.pi * 5 * t) / 12)
    wav = 0.3 * sum(np.sin(k * 2 * np.pi * np.cumsum(f0) / sr) / k for k in range(1, 12))
    mel = wav_to_mel(wav.astype(np.float32), SPEC)
    frames = np.arange(mel.shape[1])
    f0_frames = (220 * 2 ** (0.5 * np.sin(2 * np.pi * frames / 40) / 12)).astype(np.float32)
    f0_frames[(frames % 50) < 6] = 0.0
    return mel, f0_frames


def _max_diff(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


# ---------------------------------------------------------------------- against torch
@pytest.mark.parametrize("name", ["v1", "v3", "smooth", "step", "smooth1"])
@pytest.mark.slow
def test_ort_vocoder_equals_the_torch_vocoder(exports, song, name):
    voc, path = exports[name]
    ort = OrtVocoder.load(path, threads=1)
    assert ort.backend == "onnx" and ort.needs_f0 == voc.needs_f0 and ort.sample_rate == 22050
    assert ort.spec == voc.spec and ort.config == voc.config and ort.source == str(path)
    mel, f0 = song
    args = {"start_phase": 0.3, "start_frame": 5, "seed": 4}
    ref = voc.vocode(mel, f0, **args)
    assert np.abs(ref).max() > 1e-3
    out = ort.vocode(mel, f0, **args)
    assert out.dtype == np.float32 and out.shape == ref.shape == (mel.shape[1] * 256,)
    assert _max_diff(out, ref) < ATOL
    # in pieces: 173 frames in 5 pieces of 35 with the receptive field of context, on both
    voc.chunk_frames = ort.chunk_frames = 40
    try:
        cut = ort.vocode(mel, f0, **args)
        assert _max_diff(cut, voc.vocode(mel, f0, **args)) < ATOL
        assert _max_diff(cut, out) < ATOL
    finally:
        voc.chunk_frames = ort.chunk_frames = 768
    # batched, and other seeds / places in the song give the torch vocoder's other samples too
    batch, fb = np.stack([mel[:, :60], mel[:, 100:160]]), np.stack([f0[:60], f0[100:160]])
    got = ort(batch, fb, seed=7, start_frame=100)
    assert got.shape == (2, 60 * 256)
    assert _max_diff(got, voc(batch, fb, seed=7, start_frame=100)) < ATOL
    np.testing.assert_allclose(ort.frame_cycles(f0), voc.frame_cycles(f0), rtol=0, atol=1e-9)
    # the torch facade over the same graph (its source in torch, built from the export's model.json)
    from canora.vocoder.onnx import load_onnx_vocoder

    assert _max_diff(load_onnx_vocoder(path, threads=1).vocode(mel, f0, **args), ref) < ATOL


@pytest.mark.slow
def test_the_seed_changes_an_nsf_vocoders_output_the_same_way_on_both(exports, song):
    voc, path = exports["smooth"]
    ort = OrtVocoder.load(path, threads=1)
    mel, f0 = song
    a, b = ort.vocode(mel[:, :40], f0[:40], seed=1), ort.vocode(mel[:, :40], f0[:40], seed=2)
    assert _max_diff(a, b) > 1e-4
    assert _max_diff(b, voc.vocode(mel[:, :40], f0[:40], seed=2)) < ATOL


@pytest.mark.parametrize(("kind", "voiced_noise"), [("smooth", 1.0), ("smooth", 0.3), ("step", 1.0)])
def test_numpy_excitation_equals_the_sine_source(kind, voiced_noise):
    """Two items, a glide from 100 Hz to 1.6 kHz whose upper harmonics cross Nyquist (and a breath), random
    start phases and noise: the numpy source is the torch one."""
    torch.manual_seed(5)
    harmonics = 64 if kind == "smooth" else 8
    src = SineSource(22050, 256, harmonics, 0.1, 0.01, kind, voiced_noise).eval()
    frames = 300
    f0 = np.stack([100 * 2 ** np.linspace(0, 4, frames), 300 + 40 * np.sin(np.arange(frames) / 7)]).astype(np.float32)
    f0[0, 120:130] = 0.0
    f0[1, -5:] = 0.0
    rng = np.random.default_rng(0)
    phase0 = rng.random((2, harmonics))
    noise = rng.standard_normal((2, frames * 256, noise_channels(kind, harmonics))).astype(np.float32)
    with torch.no_grad():
        ref = src(torch.from_numpy(f0), None, torch.from_numpy(phase0), torch.from_numpy(noise)).numpy()
        weight, bias = src.merge.weight[0].numpy(), float(src.merge.bias[0])
    out = excitation(f0, phase0, noise, kind=kind, sample_rate=22050, hop=256, sine_amp=0.1, noise_std=0.01,
                     weight=weight, bias=bias, voiced_noise=voiced_noise)
    assert out.dtype == np.float32 and out.shape == ref.shape == (2, src.channels, frames * 256)
    assert np.abs(ref[:, 0]).max() > 0.05
    assert _max_diff(out, ref) < SRC_ATOL


# ---------------------------------------------------------------------- no torch
@pytest.mark.slow
def test_runs_in_a_process_without_torch(exports, song, tmp_path):
    """``sys.modules["torch"] = None`` before canora is imported: any torch import fails, and the samples are
    the ones this process computes."""
    mel, f0 = song
    np.save(tmp_path / "mel.npy", mel)
    np.save(tmp_path / "f0.npy", f0)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None
        import numpy as np
        from canora.vocoder.ort import OrtVocoder

        d = {str(tmp_path)!r}
        mel, f0 = np.load(d + "/mel.npy"), np.load(d + "/f0.npy")
        for name, path in {{"smooth": {str(exports["smooth"][1])!r}, "v1": {str(exports["v1"][1])!r}}}.items():
            voc = OrtVocoder.load(path, threads=1)
            voc.chunk_frames = 40
            np.save(d + f"/{{name}}.npy", voc.vocode(mel, f0, start_phase=0.3, start_frame=5))
        assert sys.modules["torch"] is None and "canora.vocoder.api" not in sys.modules
        print("torch-free")
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "torch-free" in res.stdout
    for name in ("smooth", "v1"):
        voc = OrtVocoder.load(exports[name][1], threads=1)
        voc.chunk_frames = 40
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.npy"),
                                      voc.vocode(mel, f0, start_phase=0.3, start_frame=5))


def test_config_module_and_package_import_without_torch():
    script = ("import sys; sys.modules['torch'] = None; import canora.vocoder, canora.vocoder.config, "
              "canora.vocoder.excitation, canora.vocoder.inference; print('ok')")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


# ---------------------------------------------------------------------- errors
BAD_CALLS = {
    "mel with 79 bands": lambda mel, f0: (mel[:79], f0, {}),
    "mel of one dimension": lambda mel, f0: (mel[:, 0], f0, {}),
    "NaN in the mel": lambda mel, f0: (np.where(np.arange(mel.shape[1]) == 7, np.nan, mel), f0, {}),
    "F0 one frame short": lambda mel, f0: (mel, f0[:-1], {}),
    "negative F0": lambda mel, f0: (mel, -f0, {}),
    "NaN in the F0": lambda mel, f0: (mel, np.where(np.arange(len(f0)) == 3, np.nan, f0), {}),
    "negative start frame": lambda mel, f0: (mel, f0, {"start_frame": -1}),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
@pytest.mark.slow
def test_bad_inputs_are_the_torch_vocoders_one_line_errors(exports, song, case):
    voc, path = exports["smooth"]
    ort = OrtVocoder.load(path, threads=1)
    mel, f0 = song
    m, f, kw = BAD_CALLS[case](mel[:, :30].copy(), f0[:30].copy())
    with pytest.raises(CanoraError) as got:
        ort.vocode(m, f, **kw)
    with pytest.raises(CanoraError) as want:
        voc.vocode(m, f, **kw)
    assert type(got.value) is type(want.value) and str(got.value) == str(want.value)
    assert "\n" not in str(got.value)
    assert isinstance(got.value, MelError) == (case != "negative start frame")


@pytest.mark.slow
def test_a_directory_that_is_no_onnx_vocoder_export_is_one_line(exports, tmp_path):
    voc, path = exports["smooth"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty: not a canora ONNX export .*canora export"):
        OrtVocoder.load(tmp_path / "empty")
    voc.export(tmp_path / "torch_export")  # a torch export: model.json of another format
    with pytest.raises(CheckpointError, match="not a canora ONNX export") as e:
        OrtVocoder.load(tmp_path / "torch_export")
    assert "\n" not in str(e.value)
    # an NSF export whose source weights are for another number of harmonics
    import json
    import shutil

    bad = tmp_path / "bad_state"
    shutil.copytree(path, bad)
    doc = json.loads((bad / "model.json").read_text())
    doc["runtime"]["source"]["state"]["merge.weight"] = [[0.1] * 3]
    (bad / "model.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=r"bad_state: the NSF source weights in model.json do not fit .*"
                                              r"re-export") as e:
        OrtVocoder.load(bad)
    assert "\n" not in str(e.value)
