"""ONNX export and the ONNX Runtime backend: tiny HiFi-GAN v1/v2/v3-shaped generators, NSF (both designs) and the
refiner against torch, dynamic lengths, the CLI round trip, clear errors, and no onnxruntime import unless asked.

Tolerances: every fp32 graph runs within 1e-5 (max |diff|) of torch (measured 1e-7 to 8e-7: float reordering
in ONNX Runtime's kernels); a whole refinement (4 DPM-Solver++ steps) within 1e-4 of torch; the int8 graph of a
generator whose output peaks near 0.5 within 0.1 (dynamic quantization error, measured ~0.01 on these tiny
random models).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from canora.cli import main
from canora.dsp.mel import MelSpec, read_config, wav_to_mel
from canora.errors import CanoraError, CheckpointError
from canora.vocoder import Vocoder

from .conftest import SHARED_DATA, make_tiny_models
from .official_hifigan import official_inference_generator

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

FP32_ATOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # export is single-threaded; the runtimes follow torch's thread count


@pytest.fixture(scope="module")
def clip() -> tuple[np.ndarray, np.ndarray]:
    """2 s of real singing (vocadito clip 1) when ../shared/data is there, else a synthetic sung tone; with its
    log-mel (80, T)."""
    sr = 22050
    path = SHARED_DATA / "vocadito" / "vocadito_1.wav"
    if path.exists():
        from canora.io.audio import load_audio

        wav = load_audio(path, sr)[sr : sr * 3]
    else:
        t = np.arange(2 * sr) / sr
        f0 = 220 * 2 ** (0.3 * np.sin(2 * np.pi * 5 * t) / 12)
        wav = (0.3 * sum(np.sin(k * 2 * np.pi * np.cumsum(f0) / sr) / k for k in range(1, 12))).astype(np.float32)
    return wav, wav_to_mel(wav, MelSpec())


def _tiny_official(directory: Path, version: str, channels: int) -> Path:
    """A random generator in the official layout with ``version``'s shape at ``channels`` initial channels, its
    output scaled to peak near 0.5 on a speech-like mel so that tolerances mean something."""
    from canora.vocoder.hifigan import Generator, GeneratorConfig, to_official_keys

    cfg = {**read_config(version), "upsample_initial_channel": channels}
    torch.manual_seed(0)
    gen = Generator.from_config(GeneratorConfig.from_hifigan_config(cfg)).eval()
    with torch.no_grad():
        peak = float(gen(torch.randn(1, 80, 40) - 5).abs().max())
        gen.conv_post.parametrizations.weight.original0.mul_(0.5 / max(peak, 1e-6))
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(cfg))
    torch.save({"generator": to_official_keys(gen.state_dict())}, directory / "g_00000001")
    return directory / "g_00000001"


def _max_diff(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


# ---------------------------------------------------------------------- HiFi-GAN
@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
@pytest.mark.slow
def test_hifigan_onnx_matches_torch_at_two_lengths(tmp_path, clip, version):
    """v1 and v3: tiny random generators of their shape (tolerance 1e-5); v2: the official LJ_V2 generator when
    ../shared/data is there, else a tiny v2-shaped one. LJ_V2's real weights reorder more float error: measured
    max |diff| 3e-6 on 10 s of singing and 1.3e-5 on the export's synthetic check tone, so 1e-4 for it."""
    from canora.export import export_onnx

    lj_v2 = SHARED_DATA / "hifigan" / "LJ_V2" / "generator_v2"
    tol = FP32_ATOL
    if version == "v2" and lj_v2.exists():
        ckpt, tol = lj_v2, 1e-4
    else:
        ckpt = _tiny_official(tmp_path / "official", version, 16)
    res = export_onnx(ckpt, tmp_path / "onnx")
    assert res.kind == "hifigan" and res.max_abs_diff < tol
    torch_voc = Vocoder.from_pretrained(ckpt)
    onnx_voc = Vocoder.from_pretrained(tmp_path / "onnx")
    assert onnx_voc.backend == "onnx" and torch_voc.backend == "torch"
    assert onnx_voc.spec == torch_voc.spec and onnx_voc.config == torch_voc.config
    _, mel = clip
    ref = torch_voc.vocode(mel)
    assert 0.05 < np.abs(ref).max() < 1
    # torch is the official implementation's output: the generator rebuilt as published, run as inference.py does
    official = official_inference_generator(json.loads((ckpt.parent / "config.json").read_text()),
                                            torch.load(ckpt, map_location="cpu", weights_only=True)["generator"])
    with torch.no_grad():
        assert _max_diff(official(torch.from_numpy(mel)[None]).reshape(-1), ref) < 1e-6
    out = onnx_voc.vocode(mel)
    assert out.shape == ref.shape == (mel.shape[1] * 256,)
    assert _max_diff(out, ref) < tol
    # one export, other lengths and a batch: the frame axis and the batch axis are dynamic
    short = mel[:, 5:42]
    assert _max_diff(onnx_voc.vocode(short), torch_voc.vocode(short)) < tol
    batch = np.stack([mel[:, :60], mel[:, 100:160]])
    assert _max_diff(onnx_voc(batch), torch_voc(batch)) < tol
    doc = json.loads((tmp_path / "onnx" / "model.json").read_text())
    assert doc["format"] == "canora-onnx-export" and doc["kind"] == "hifigan"
    assert doc["config"] == torch_voc.config.to_dict() and MelSpec.from_dict(doc["mel_spec"]) == torch_voc.spec
    assert doc["onnx"]["graphs"]["model.onnx"]["inputs"] == {"mel": ["batch", 80, "frames"]}


# ---------------------------------------------------------------------- NSF
@pytest.fixture(scope="module")
def tiny_exports(tmp_path_factory) -> dict[str, Path]:
    """Tiny torch exports (refiner, NSF vocoder) and their ONNX exports, made once for this module."""
    from canora.export import export_onnx

    d = tmp_path_factory.mktemp("onnx_models")
    ref, voc = make_tiny_models(d)
    export_onnx(ref, d / "refiner_onnx")
    export_onnx(voc, d / "vocoder_onnx")
    return {"refiner": ref, "vocoder": voc, "refiner_onnx": d / "refiner_onnx", "vocoder_onnx": d / "vocoder_onnx"}


def _f0_of(clip: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """A frame F0 (T,) with unvoiced gaps for the clip's mel (from the mel's own frame energy: no tracker)."""
    _, mel = clip
    t = np.arange(mel.shape[1])
    f0 = (220 * 2 ** (0.5 * np.sin(2 * np.pi * t / 40) / 12)).astype(np.float32)
    f0[(t % 50) < 6] = 0.0
    return f0


@pytest.mark.slow
def test_nsf_onnx_matches_torch(tiny_exports, clip):
    torch_voc = Vocoder.from_pretrained(tiny_exports["vocoder"])
    onnx_voc = Vocoder.from_pretrained(tiny_exports["vocoder_onnx"])
    assert onnx_voc.needs_f0 and onnx_voc.backend == "onnx"
    _, mel = clip
    f0 = _f0_of(clip)
    ref = torch_voc.vocode(mel, f0, start_phase=0.3)
    out = onnx_voc.vocode(mel, f0, start_phase=0.3)
    assert out.shape == ref.shape and np.abs(ref).max() > 1e-3
    assert _max_diff(out, ref) < FP32_ATOL
    assert _max_diff(onnx_voc.vocode(mel[:, 3:50], f0[3:50]), torch_voc.vocode(mel[:, 3:50], f0[3:50])) < FP32_ATOL
    np.testing.assert_array_equal(onnx_voc.frame_cycles(f0), torch_voc.frame_cycles(f0))
    runtime = json.loads((tiny_exports["vocoder_onnx"] / "model.json").read_text())["runtime"]
    assert runtime["outside_graph"] == ["source"] and runtime["source"]["phase_dtype"] == "float64"
    assert len(runtime["source"]["state"]["merge.weight"][0]) == torch_voc.config.harmonics


@pytest.mark.slow
def test_legacy_nsf_design_exports_too(tmp_path, clip):
    """canora 0.1's NSF (transposed-convolution upsampling, stepped source) loads and so must export."""
    from canora.export import export_onnx
    from canora.vocoder.nsf import NSFConfig, NSFGenerator

    cfg = NSFConfig(upsample_initial_channel=16, resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 2),),
                    upsample="transposed", source="step", harmonics=8)
    torch.manual_seed(1)
    Vocoder(NSFGenerator.from_config(cfg), MelSpec(), cfg, "legacy").export(tmp_path / "torch")
    assert export_onnx(tmp_path / "torch", tmp_path / "onnx").max_abs_diff < FP32_ATOL
    _, mel = clip
    f0 = _f0_of(clip)
    out = Vocoder.from_pretrained(tmp_path / "onnx").vocode(mel, f0)
    assert _max_diff(out, Vocoder.from_pretrained(tmp_path / "torch").vocode(mel, f0)) < FP32_ATOL


# ---------------------------------------------------------------------- refiner
@pytest.mark.slow
def test_refiner_denoiser_and_encoder_match_torch(tiny_exports, clip):
    from canora.refiner import Refiner

    torch_ref = Refiner.from_pretrained(tiny_exports["refiner"])
    onnx_ref = Refiner.from_pretrained(tiny_exports["refiner_onnx"])
    assert onnx_ref.backend == "onnx" and onnx_ref.singers == torch_ref.singers
    assert onnx_ref.schedule == torch_ref.schedule and onnx_ref.spec == torch_ref.spec
    cfg = torch_ref.model.config
    g = torch.Generator().manual_seed(0)
    for n in (17, 203):  # one export, two lengths
        f0, voiced = 150 + 200 * torch.rand(1, n, generator=g), (torch.rand(1, n, generator=g) > 0.2).float()
        loud = -40 + 10 * torch.randn(1, n, generator=g)
        content = torch.randn(1, cfg.content_dim, n, generator=g)
        singer = torch.zeros(1, dtype=torch.long)
        with torch.inference_mode():
            cond = torch_ref.model.encode(f0, voiced, loud, content, singer)
            assert _max_diff(onnx_ref.model.encode(f0, voiced, loud, content, singer), cond) < FP32_ATOL
            x = torch.randn(1, cfg.n_mels, n, generator=g)
            for step in (1, 250, 1000):
                t = torch.full((1,), step, dtype=torch.long)
                assert _max_diff(onnx_ref.model.denoise(x, t, cond), torch_ref.model.denoise(x, t, cond)) < FP32_ATOL
    # a whole refinement of real (or synthetic) singing: features, 4 sampler steps, the same seed
    wav, _ = clip
    feats = torch_ref.features(wav, 22050)
    kw = {"sampler": "dpmpp", "steps": 4, "strength": 0.6, "seed": 3}
    ref = torch_ref.refine_in_key(feats, "pjs", **kw)
    out = onnx_ref.refine_in_key(feats, "pjs", **kw)
    assert out.shape == ref.shape and _max_diff(out, ref) < 1e-4


@pytest.mark.slow
def test_converter_runs_onnx_exports(tiny_exports, synth_clip):
    from canora.pipeline import Converter

    wav, sr = synth_clip
    conv = Converter.from_pretrained(tiny_exports["refiner_onnx"], tiny_exports["vocoder_onnx"], backend="onnx")
    assert conv.refiner.backend == conv.vocoder.backend == "onnx"
    ref = Converter.from_pretrained(tiny_exports["refiner"], tiny_exports["vocoder"]).convert(wav, sr, steps=3)
    out = conv.convert(wav, sr, steps=3)
    assert out.audio.shape == ref.audio.shape and _max_diff(out.audio, ref.audio) < 1e-4
    with pytest.raises(CanoraError, match="ONNX export"):
        Converter.from_pretrained(tiny_exports["refiner_onnx"], tiny_exports["vocoder"], backend="torch")


@pytest.mark.slow
def test_convert_command_on_onnx_exports_never_imports_torch(tiny_exports, synth_clip, tmp_path):
    """`canora convert` with two ONNX exports runs in a process where importing torch fails (features, refiner
    sampling, NSF source and the output check in numpy), and gives the torch models' conversion of the same seed."""
    import soundfile as sf

    from canora.pipeline import Converter

    wav, sr = synth_clip
    sf.write(tmp_path / "in.wav", wav, sr, subtype="FLOAT")
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any import of torch now fails\n"
        "from canora.cli import main\n"
        f"rc = main(['convert', {str(tmp_path / 'in.wav')!r}, '-o', {str(tmp_path / 'out.wav')!r}, '--float',\n"
        f"           '--refiner', {str(tiny_exports['refiner_onnx'])!r}, '--vocoder', "
        f"{str(tiny_exports['vocoder_onnx'])!r}, '--steps', '3', '--threads', '1'])\n"
        "assert rc == 0, rc\n"
        "assert 'torch' not in {m.split('.')[0] for m, v in sys.modules.items() if v is not None}\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out, out_sr = sf.read(tmp_path / "out.wav", dtype="float32")
    ref = Converter.from_pretrained(tiny_exports["refiner"], tiny_exports["vocoder"]).convert(wav, sr, steps=3)
    assert out_sr == ref.sample_rate and out.shape == ref.audio.shape
    assert np.abs(ref.audio).max() > 1e-3 and _max_diff(out, ref.audio) < 1e-3
    side = json.loads((tmp_path / "out.json").read_text())
    assert side["refiner_check"]["ok"] in (True, False)  # the output's mel check ran (numpy mel)


@pytest.mark.slow
def test_cli_export_writes_a_whole_export_says_where_on_stdout_and_replaces_only_with_overwrite(
        tiny_exports, tmp_path, capsys):
    from canora.cli import main

    out = tmp_path / "exported"
    assert main(["export", str(tiny_exports["vocoder"]), "-o", str(out)]) == 0
    std = capsys.readouterr()
    assert std.out.strip() == str(out) and "wrote" in std.err and (out / "model.onnx").is_file()
    before = (out / "model.json").read_bytes()
    assert main(["export", str(tiny_exports["vocoder"]), "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "model.json").read_bytes() == before
    assert main(["export", str(tiny_exports["vocoder"]), "-o", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no staging or old copy left
    doc = json.loads((out / "model.json").read_text())
    assert doc["config_sha256"]  # the ONNX export hashes its config too


# ---------------------------------------------------------------------- runtime details
@pytest.mark.slow
def test_backend_onnx_exports_a_torch_model_in_memory(tiny_official_ckpt, clip):
    _, mel = clip
    voc = _in_memory(tiny_official_ckpt)
    assert voc.backend == "onnx"
    assert _max_diff(voc.vocode(mel[:, :80]), Vocoder.from_pretrained(tiny_official_ckpt).vocode(mel[:, :80])) \
        < FP32_ATOL
    with pytest.raises(CanoraError, match="no torch weights"):
        voc.export(tiny_official_ckpt.parent / "again")
    with pytest.raises(CanoraError, match="unknown vocoder backend"):
        Vocoder.from_pretrained(tiny_official_ckpt, backend="tensorrt")
    with pytest.raises(CanoraError, match="canora.backends.open_vocoder"):  # the model class exports nothing
        Vocoder.from_pretrained(tiny_official_ckpt, backend="onnx")


def _in_memory(ckpt):
    """The checkpoint's vocoder on ONNX Runtime, exported in memory (:func:`canora.backends.on_onnx_runtime` of a
    model with no file behind it)."""
    from canora.backends import on_onnx_runtime

    voc = Vocoder.from_pretrained(ckpt)
    voc.source = ""
    return on_onnx_runtime(voc, "vocoder")


@pytest.mark.slow
def test_in_memory_exports_are_cached_by_weights_and_survive_damage(tmp_path, tiny_official_ckpt, clip,
                                                                     monkeypatch, caplog):
    import canora.io.onnx as io_onnx

    monkeypatch.setenv("CANORA_CACHE_DIR", str(tmp_path / "cache"))
    _, mel = clip
    first = _in_memory(tiny_official_ckpt).vocode(mel[:, :80])
    graphs = sorted((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(graphs) == 1 and graphs[0].with_suffix(".json").is_file()
    calls = []
    real = io_onnx._export
    monkeypatch.setattr(io_onnx, "_export", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = _in_memory(tiny_official_ckpt).vocode(mel[:, :80])
    assert calls == [] and np.array_equal(first, again)  # the cached graph, the same output
    graphs[0].write_bytes(graphs[0].read_bytes()[:-10])  # damaged: found out, exported again, replaced
    with caplog.at_level("WARNING"):
        _in_memory(tiny_official_ckpt)
    assert calls == [1] and "damaged cached ONNX graph" in caplog.text
    voc = Vocoder.from_pretrained(tiny_official_ckpt)  # other weights: another key
    with torch.no_grad():
        next(voc.generator.parameters()).add_(0.01)
    key = io_onnx.graph_key(voc.generator, (torch.zeros(1, 80, 64),), ["mel"], ["wav"], {})
    assert key != io_onnx.graph_key(Vocoder.from_pretrained(tiny_official_ckpt).generator,
                                    (torch.zeros(1, 80, 64),), ["mel"], ["wav"], {})
    monkeypatch.setenv("CANORA_CACHE_DIR", "")  # caching off
    assert io_onnx.cache_dir() is None
    _in_memory(tiny_official_ckpt)
    assert calls == [1, 1]
    (tmp_path / "ro").write_text("a file where the cache folder would go")  # cannot be made: skipped, still works
    monkeypatch.setenv("CANORA_CACHE_DIR", str(tmp_path / "ro"))
    assert np.array_equal(_in_memory(tiny_official_ckpt).vocode(mel[:, :80]), first)


@pytest.mark.slow
def test_int8_quantization_and_tampered_graph(tmp_path, tiny_exports, clip):
    from canora.io.onnx import ONNX_FILE, quantize_int8, read_onnx_export
    from canora.vocoder.onnx import load_onnx_vocoder

    src = tiny_exports["vocoder_onnx"]
    q = tmp_path / "int8"
    q.mkdir()
    graph = quantize_int8((src / ONNX_FILE).read_bytes())
    assert len(graph) < (src / ONNX_FILE).stat().st_size
    doc = read_onnx_export(src)
    (q / ONNX_FILE).write_bytes(graph)
    from canora.io.onnx import sha256

    doc["files"] = {ONNX_FILE: sha256(graph)}
    doc["onnx"]["quantization"] = "int8"
    (q / "model.json").write_text(json.dumps(doc))
    _, mel = clip
    f0 = _f0_of(clip)
    ref = Vocoder.from_pretrained(src).vocode(mel, f0)
    out = load_onnx_vocoder(q).vocode(mel, f0)
    assert 0 < _max_diff(out, ref) < 0.1
    (q / ONNX_FILE).write_bytes(graph[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="does not match the hash"):
        Vocoder.from_pretrained(q)


@pytest.mark.slow
def test_onnxruntime_is_imported_only_when_asked(tiny_official_ckpt):
    code = (
        "import sys, numpy as np\n"
        "from canora.pipeline import Converter\n"
        "from canora.vocoder import Vocoder\n"
        "from canora.refiner import Refiner\n"
        f"v = Vocoder.from_pretrained({str(tiny_official_ckpt)!r})\n"
        "v.vocode(np.full((80, 8), -5, np.float32))\n"
        "assert 'onnxruntime' not in sys.modules and 'onnx' not in sys.modules, 'imported'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


# ---------------------------------------------------------------------- CLI
def _run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.slow
def test_cli_export_round_trip(capsys, tmp_path, tiny_official_ckpt, clip):
    from canora.cli import build_parser

    assert "export" in build_parser().format_help()
    code, err = _run(capsys, "export", tiny_official_ckpt, "-o", tmp_path / "onnx", "--format", "onnx")
    assert code == 0, err
    assert "wrote" in err and "max |diff|" in err
    assert {p.name for p in (tmp_path / "onnx").iterdir()} == {"model.onnx", "model.json"}
    _, mel = clip
    (tmp_path / "mels").mkdir()
    np.save(tmp_path / "mels" / "a.npy", mel[:, :50])
    code, err = _run(capsys, "vocode", tmp_path / "mels", "-o", tmp_path / "wav_onnx", "--checkpoint",
                     tmp_path / "onnx")
    assert code == 0, err
    code, err = _run(capsys, "vocode", tmp_path / "mels", "-o", tmp_path / "wav_torch", "--checkpoint",
                     tiny_official_ckpt)
    assert code == 0, err
    import soundfile as sf

    a, _ = sf.read(tmp_path / "wav_onnx" / "a.wav", dtype="float32")
    b, _ = sf.read(tmp_path / "wav_torch" / "a.wav", dtype="float32")
    assert a.shape == b.shape == (50 * 256,) and _max_diff(a, b) <= 1 / 32768  # 16-bit PCM: one step at most


@pytest.mark.parametrize(
    "make,expect",
    [
        (lambda d: d / "nothing_here", "no such file or directory"),
        (lambda d: (d / "g_00000001").write_text("not a model") and d / "g_00000001", "not a torch checkpoint"),
        (lambda d: d, "no canora export (model.json) and no g_* generator file"),
    ],
    ids=["missing", "garbage", "empty-dir"],
)
def test_cli_export_bad_model_is_one_line_exit_2(capsys, tmp_path, make, expect):
    model = make(tmp_path)
    code, err = _run(capsys, "export", model, "-o", tmp_path / "out")
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("canora export: error:") and expect in lines[0]


@pytest.mark.slow
def test_cli_export_refuses_an_onnx_export_and_its_own_directory(capsys, tmp_path, tiny_exports):
    code, err = _run(capsys, "export", tiny_exports["vocoder_onnx"], "-o", tmp_path / "again")
    assert code == 2 and "already an ONNX export" in err and len(err.strip().splitlines()) == 1
    code, err = _run(capsys, "export", tiny_exports["vocoder"], "-o", tiny_exports["vocoder"])
    assert code == 2 and "model's own directory" in err


@pytest.mark.slow
def test_backend_onnx_keeps_an_onnx_copy_and_later_runs_skip_torch(tiny_exports, synth_clip, tmp_path, monkeypatch):
    """`convert --backend onnx` on torch models exports them once into the cache; the next run loads the copies
    without importing torch (same audio), and a damaged copy is exported again."""
    import soundfile as sf

    from canora.backends import cached_copy, copy_key

    wav, sr = synth_clip
    sf.write(tmp_path / "in.wav", wav, sr, subtype="FLOAT")
    cache = tmp_path / "cache"
    monkeypatch.setenv("CANORA_CACHE_DIR", str(cache))
    models = ["--refiner", str(tiny_exports["refiner"]), "--vocoder", str(tiny_exports["vocoder"])]
    args = ["convert", tmp_path / "in.wav", "--float", "--steps", "2", "--backend", "onnx", "--overwrite", *models]
    assert main([str(a) for a in [*args, "-o", tmp_path / "first.wav"]]) == 0
    copies = [cached_copy(tiny_exports[k]) for k in ("refiner", "vocoder")]
    assert all(c is not None and c.parent == cache / "onnx" / "exports" for c in copies)
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "from canora.cli import main\n"
        f"sys.exit(main({[str(a) for a in [*args, '-o', tmp_path / 'second.wav']]!r}))\n"
    )
    env = {**__import__("os").environ, "CANORA_CACHE_DIR": str(cache)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    first, _ = sf.read(tmp_path / "first.wav", dtype="float32")
    second, _ = sf.read(tmp_path / "second.wav", dtype="float32")
    assert first.shape == second.shape and _max_diff(first, second) < 1e-4
    graph = copies[1] / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-8] + b"damaged!")
    assert cached_copy(tiny_exports["vocoder"]) is None
    assert main([str(a) for a in [*args, "-o", tmp_path / "third.wav"]]) == 0
    assert cached_copy(tiny_exports["vocoder"]) == copies[1] and copies[1].name == copy_key(tiny_exports["vocoder"])


@pytest.mark.slow
def test_onnx_runtime_slices_in_parallel_on_one_thread_sessions(tiny_exports, monkeypatch):
    """On ONNX Runtime models the default converts one slice per thread on sessions of one thread each (made once
    and kept), giving the one-at-a-time conversion to float rounding."""
    from canora.io import onnx as onnx_io
    from canora.pipeline import Converter

    from .test_pipeline import SR, held_note

    monkeypatch.setattr(onnx_io, "_THREADS", [2])
    conv = Converter.from_pretrained(tiny_exports["refiner_onnx"], tiny_exports["vocoder_onnx"])
    wav = np.concatenate([held_note(1.5, 262.0), held_note(1.5, 330.0), held_note(1.5, 196.0)])
    kw = dict(transpose=2.0, max_slice_seconds=1.0, steps=2, seed=1)
    one = conv.convert(wav, SR, workers=1, **kw)
    two = conv.convert(wav, SR, **kw)
    assert one.stats["workers"] == 1 and two.stats["workers"] == 2 and two.stats["slices"] >= 4
    assert set(conv.refiner._by_threads) == set(conv.vocoder._by_threads) == {1}  # one-thread sessions, kept
    assert conv.vocoder.with_threads(1) is conv.vocoder.with_threads(1)
    assert conv.vocoder.with_threads(1).session.get_session_options().intra_op_num_threads == 1
    np.testing.assert_array_equal(two.f0, one.f0)
    np.testing.assert_allclose(two.audio, one.audio, atol=1e-4)


@pytest.mark.slow
def test_onnx_refiner_of_two_singers_takes_each_and_mixes(tmp_path, synth_clip):
    """An ONNX refiner of two singers refines toward each, and toward a mix of the two, like the torch one (same
    seed, 1e-4): its encoder takes the singer as weights over the embeddings."""
    from canora.export import export_onnx
    from canora.refiner import Refiner
    from canora.refiner.ort import OrtRefiner

    ref_dir, _ = make_tiny_models(tmp_path, singers=("a", "b"))
    export_onnx(ref_dir, tmp_path / "onnx")
    torch_ref, ort_ref = Refiner.from_pretrained(ref_dir), OrtRefiner.load(tmp_path / "onnx", threads=1)
    wav, sr = synth_clip
    feats = torch_ref.features(wav, sr)
    outs = {}
    for singer in ("a", "b"):
        outs[singer] = ort_ref.refine_in_key(feats, singer, steps=2, seed=3)
        assert _max_diff(outs[singer], torch_ref.refine_in_key(feats, singer, steps=2, seed=3)) < 1e-4
    assert _max_diff(outs["a"], outs["b"]) > 1e-3  # the singer matters
    mix = ort_ref.refine_in_key(feats, "a:0.7,b:0.3", steps=2, seed=3)
    assert _max_diff(mix, torch_ref.refine_in_key(feats, "a:0.7,b:0.3", steps=2, seed=3)) < 1e-4
    assert _max_diff(mix, outs["a"]) > 1e-4 and _max_diff(mix, outs["b"]) > 1e-4
    assert "singer_weights" in {i.name for i in ort_ref.model.encoder.get_inputs()}


@pytest.mark.slow
def test_onnx_refiner_exported_with_singer_indices_still_loads(tiny_exports, synth_clip, tmp_path):
    """An export whose encoder takes ``singer`` (B,) indices (written before mixes ran on ONNX Runtime) loads and
    refines as before; a mix on it is one clear error naming the fix."""
    import hashlib
    import shutil

    from canora.io.onnx import sha256, torch_to_onnx
    from canora.refiner import Refiner
    from canora.refiner.onnx import _Encoder
    from canora.refiner.ort import ENCODER_FILE, OrtRefiner, encoder_inputs

    torch_ref = Refiner.from_pretrained(tiny_exports["refiner"])
    cfg, n = torch_ref.config, 24
    args = (200 + torch.rand(1, n), torch.ones(1, n), -30 + torch.randn(1, n), torch.zeros(1, dtype=torch.long),
            torch.randn(1, cfg.content_dim, n))
    frames, batch = torch.export.Dim("frames", min=1, max=10**6), torch.export.Dim("batch", min=1, max=64)
    shapes = {"f0": {0: batch, 1: frames}, "voiced": {0: batch, 1: frames}, "loudness": {0: batch, 1: frames},
              "singer": {0: batch}, "content": {0: batch, 2: frames}}
    graph = torch_to_onnx(_Encoder(torch_ref.model), args, encoder_inputs(cfg, weights=False), ["cond"], shapes,
                          "legacy encoder")
    legacy = tmp_path / "legacy"
    shutil.copytree(tiny_exports["refiner_onnx"], legacy)
    (legacy / ENCODER_FILE).write_bytes(graph)
    doc = json.loads((legacy / "model.json").read_text())
    doc["files"][ENCODER_FILE] = sha256(graph)
    (legacy / "model.json").write_text(json.dumps(doc))
    old = OrtRefiner.load(legacy)
    assert not old.model.takes_weights and hashlib.sha256(graph).hexdigest() == doc["files"][ENCODER_FILE]
    wav, sr = synth_clip
    feats = torch_ref.features(wav, sr)
    assert _max_diff(old.refine_in_key(feats, "pjs", steps=2), torch_ref.refine_in_key(feats, "pjs", steps=2)) < 1e-4
    with pytest.raises(CanoraError, match="re-export it"):
        old.model.encode(*args[:3], args[4], torch.tensor([[1.0]]))
