"""The learned content encoder: numpy = torch, its export and checks, its training task end to end, ONNX."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from canora.content.config import ContentNetConfig
from canora.content.model import ContentNet
from canora.content.net import NumpyContentNet
from canora.errors import CanoraError, CheckpointError

SR = 22050
TINY = ContentNetConfig(channels=16, dilations=(1, 2), dim=8)


def vowel(f0: float, formants: tuple[float, ...], seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A sung vowel: harmonics of ``f0`` with vibrato, shaped by resonances at ``formants`` (Hz)."""
    t = np.arange(int(seconds * SR)) / SR
    f = f0 * 2 ** (0.3 * np.sin(2 * np.pi * 5 * t) / 12)
    phase = 2 * np.pi * np.cumsum(f) / SR
    out = np.zeros_like(t)
    for k in range(1, int(5000 / f0)):
        amp = sum(1.0 / (1 + ((k * f0 - fm) / 120.0) ** 2) for fm in formants)
        out += amp * np.sin(k * phase)
    out += 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    env = np.minimum(1, t / 0.05) * np.minimum(1, (seconds - t) / 0.05)
    return (0.2 * out / np.abs(out).max() * env).astype(np.float32)


def test_numpy_network_is_the_torch_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import canora.content.net as net_module

    torch.manual_seed(0)
    model = ContentNet(TINY).eval()
    mel = np.random.default_rng(0).normal(-6, 2.5, (80, 700)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(mel)[None])[0].numpy()
    net = NumpyContentNet(TINY, model.numpy_state())
    assert np.abs(net(mel) - ref).max() < 1e-5
    monkeypatch.setattr(net_module, "CHUNK_FRAMES", 64)  # long inputs run in chunks: the same result
    assert np.abs(net(mel) - ref).max() < 1e-5
    assert ref.shape == (TINY.dim, 700)


def test_level_does_not_change_the_content() -> None:
    model = ContentNet(TINY).eval()
    net = NumpyContentNet(TINY, model.numpy_state())
    mel = np.random.default_rng(1).normal(-4, 1.0, (80, 50)).astype(np.float32)
    assert np.abs(net(mel) - net(mel + 1.5)).max() < 1e-4  # +13 dB louder, same content


def test_config_bounds_and_misfit_weights_are_refused() -> None:
    with pytest.raises(CanoraError, match="channels"):
        ContentNetConfig(channels=10**6)
    with pytest.raises(CheckpointError, match="dilations"):
        ContentNetConfig.from_dict({"dilations": [1, 1000]}, "model.json")
    state = ContentNet(TINY).numpy_state()
    state["proj.weight"] = state["proj.weight"][:4]
    with pytest.raises(CheckpointError, match="do not fit"):
        NumpyContentNet(TINY, state, "w.safetensors")
    assert TINY.context == 2 + 1 + 2


def test_kmeans_finds_separated_clusters() -> None:
    from canora.training.content import assign, kmeans

    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    x = np.concatenate([c + rng.normal(0, 0.5, (200, 2)) for c in centres]).astype(np.float32)
    c = kmeans(x, 3, rng)
    labels = assign(x, c)
    for k in range(3):  # each true cluster lands on one unit
        assert len(np.unique(labels[k * 200:(k + 1) * 200])) == 1


def test_change_voice_moves_the_pitch_and_keeps_the_length() -> None:
    import parselmouth

    from canora.training.content import ContentTrainConfig, change_voice

    wav = vowel(220.0, (700.0, 1200.0))
    cfg = replace(ContentTrainConfig(), pitch_semitones=6.0, pitch_range=(1.0, 1.0))
    out = change_voice(wav, SR, np.random.default_rng(3), cfg)
    assert out.shape == wav.shape and np.isfinite(out).all()

    def median(x: np.ndarray) -> float:
        p = parselmouth.Sound(x.astype(np.float64), SR).to_pitch_ac(pitch_floor=60.0, pitch_ceiling=1100.0)
        f = p.selected_array["frequency"]
        return float(np.median(f[f > 0]))

    shift = 12 * np.log2(median(out) / median(wav))
    assert 0.3 < abs(shift) <= 6.5  # moved, by at most the range asked


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A content encoder trained for a few steps on two synthetic singers; -> its export directory."""
    from canora.training.content import ContentTrainConfig, train_content

    root = tmp_path_factory.mktemp("content")
    for singer, f0, formants in (("low", 150.0, (600.0, 1000.0)), ("high", 330.0, (800.0, 1400.0))):
        d = root / singer
        d.mkdir()
        for i, vowels in enumerate(((300.0, 2300.0), (700.0, 1200.0), (500.0, 900.0))):
            wav = np.concatenate([vowel(f0, formants, 1.0, i), vowel(f0 * 1.12, vowels, 1.0, i + 7)])
            sf.write(d / f"{singer}_{i}.wav", wav, SR)
    cfg = ContentTrainConfig(model=TINY.to_dict(), steps=6, batch_size=2, crop_frames=32, units=4, variants=1,
                             val_every=3, checkpoint_every=3, log_every=3, adversary_warmup=2)
    export = train_content(cfg, [root / "low", root / "high"], root / "run", progress=False)
    assert export is not None
    log = [json.loads(line) for line in (root / "run" / "train_log.jsonl").read_text().splitlines()]
    assert any("val/unit_acc_clean" in row for row in log) and all(
        np.isfinite(v) for row in log for v in row.values() if isinstance(v, float))
    return root / "run" / "export"


@pytest.mark.slow
def test_trained_encoder_feeds_the_refiner_features(tiny_encoder: Path, synth_clip: tuple[np.ndarray, int]) -> None:
    from canora.conditioning import FeatureParams, extract_features
    from canora.content.learned import LearnedContent
    from canora.dsp.mel import MelSpec

    enc = LearnedContent(str(tiny_encoder))
    assert json.loads((tiny_encoder / "model.json").read_text())["kind"] == "content-encoder"
    params = FeatureParams(content_method="learned", content_params={"model": str(tiny_encoder),
                                                                     "sha256": enc.sha256})
    wav, _ = synth_clip
    feats = extract_features(wav, MelSpec(), params)
    assert feats.content.shape == (TINY.dim, feats.frames) and np.isfinite(feats.content).all()
    # the same from the audio directly (the encoder's own mel), frame for frame
    direct = enc.extract(wav, SR, 256, feats.frames)
    assert np.abs(direct.T - feats.content).max() < 1e-4


@pytest.mark.slow
def test_a_refiner_is_tied_to_its_encoder(tiny_encoder: Path, tmp_path: Path) -> None:
    from canora.dsp.content import get_content_encoder

    with pytest.raises(CheckpointError, match="not the one the model was trained with"):
        get_content_encoder("learned", model=str(tiny_encoder), sha256="0" * 64)
    broken = tmp_path / "enc"
    broken.mkdir()
    (broken / "model.json").write_text((tiny_encoder / "model.json").read_text())
    (broken / "model.safetensors").write_bytes((tiny_encoder / "model.safetensors").read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(CheckpointError, match="do not match the hash"):
        get_content_encoder("learned", model=str(broken))
    with pytest.raises(CheckpointError, match="not a content encoder export"):
        get_content_encoder("learned", model=str(tmp_path / "missing"))


@pytest.mark.slow
def test_onnx_export_matches_numpy(tiny_encoder: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    from canora.export import export_onnx

    res = export_onnx(tiny_encoder, tmp_path / "onnx")
    assert res.kind == "content-encoder" and res.max_abs_diff < 1e-4
    assert (tmp_path / "onnx" / "model.onnx").is_file()
