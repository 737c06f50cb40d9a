"""Shared fixtures: the ../shared/data folder (tests skip cleanly without it) and tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_file(rel: str) -> Path:
    """A file under ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA / rel
    if not path.exists():
        pytest.skip(f"{path} not available (../shared/data is missing)")
    return path


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    """One torch thread per test (the fast tier runs on two processes, ``-n 2``). Two torch threads on a core another
    process is busy on made a training test 28x slower (80 steps: 138 s against 4.9 s), the way OpenMP threads wait
    on each other when one of them has no core."""
    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _own_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Exported ONNX graphs are cached in a folder of the test session's, never in the user's cache."""
    import os

    os.environ["CANORA_CACHE_DIR"] = str(tmp_path_factory.mktemp("canora-cache"))


@pytest.fixture
def sung_clip() -> tuple[np.ndarray, int]:
    """3 s of real singing (vocadito clip 1), mono float32 at 22050 Hz."""
    from canora.io.audio import load_audio

    wav = load_audio(shared_file("vocadito/vocadito_1.wav"), 22050)
    return wav[22050 : 22050 * 4], 22050


@pytest.fixture
def synth_clip() -> tuple[np.ndarray, int]:
    """2 s of a synthetic sung tone (vibrato, harmonics, envelope) at 22050 Hz: data every test machine has."""
    sr = 22050
    t = np.arange(2 * sr) / sr
    f0 = 220 * 2 ** (0.3 * np.sin(2 * np.pi * 5 * t) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = np.minimum(1, t / 0.1) * np.minimum(1, (2 - t) / 0.2)
    return (0.3 * wav * env).astype(np.float32), sr


TINY_HIFIGAN = {
    "resblock": "2",
    "upsample_rates": [8, 8, 4],
    "upsample_kernel_sizes": [16, 16, 8],
    "upsample_initial_channel": 16,
    "resblock_kernel_sizes": [3],
    "resblock_dilation_sizes": [[1, 2]],
}


@pytest.fixture
def tiny_official_ckpt(tmp_path: Path) -> Path:
    """A tiny randomly initialised generator saved in the official layout: dir/g_00000001 + dir/config.json."""
    import json

    from canora.dsp.mel import read_config
    from canora.vocoder.hifigan import Generator, GeneratorConfig, to_official_keys

    cfg = {**read_config("v1"), **TINY_HIFIGAN}
    torch.manual_seed(0)
    gen = Generator.from_config(GeneratorConfig.from_hifigan_config(cfg))
    d = tmp_path / "tiny_vocoder"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    torch.save({"generator": to_official_keys(gen.state_dict())}, d / "g_00000001")
    return d / "g_00000001"


def make_tiny_models(directory: Path, singers: tuple[str, ...] = ("pjs",), seed: int = 0) -> tuple[Path, Path]:
    """A tiny random refiner export (content dim of the default DSP extractor) and a tiny NSF vocoder export,
    written under ``directory``; -> (refiner dir, vocoder dir). They convert fast and wrongly: for plumbing."""
    from canora.conditioning import FeatureParams
    from canora.dsp.content import get_content_encoder
    from canora.dsp.mel import MelSpec
    from canora.refiner import MelNormalizer, Refiner, RefinerConfig, RefinerModel
    from canora.refiner.diffusion import NoiseSchedule
    from canora.vocoder import Vocoder
    from canora.vocoder.nsf import NSFConfig, NSFGenerator

    spec = MelSpec()
    fp = FeatureParams()
    dim = get_content_encoder(fp.content_method, **dict(fp.content_params)).dim
    torch.manual_seed(seed)
    model = RefinerModel(RefinerConfig.preset("tiny", content_dim=dim, n_singers=len(singers)))
    with torch.no_grad():
        for p in (model.out_proj.weight, model.x_gain.weight):
            p.normal_(0, 0.05)
    stats = {s: {"median": 220.0 * k, "p5": 150.0 * k, "p95": 330.0 * k} for k, s in enumerate(singers, 1)}
    levels = {s: -20.0 - 5.0 * k for k, s in enumerate(singers)}
    ref = Refiner(model, spec, MelNormalizer.fixed(spec), NoiseSchedule("linear", 1000), singers=list(singers),
                  singer_f0_stats=stats, singer_level_db=levels, feature_params=fp)
    ncfg = NSFConfig(upsample_initial_channel=16, resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 2),))
    voc = Vocoder(NSFGenerator.from_config(ncfg), spec, ncfg, "tiny")
    return ref.export(directory / "refiner"), voc.export(directory / "vocoder")


@pytest.fixture
def tiny_models(tmp_path: Path) -> tuple[Path, Path]:
    """(refiner export dir, NSF vocoder export dir) of tiny random models in tmp_path."""
    return make_tiny_models(tmp_path / "models")
