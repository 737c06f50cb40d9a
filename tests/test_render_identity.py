"""Restructuring does not change what canora computes: the same models and seed give the same samples.

``tests/data/render_golden.npz`` holds the outputs of the three ways canora renders a song (offline conversion,
streaming, ``refine_features`` as ``canora refine`` calls it) with tiny seeded models on a synthetic tone,
recorded before the key, level and render steps were gathered into one module, all without mel matching
(``mel_match=0``, the renderings as they were then); ``*_matched`` are offline and streamed renderings with the
default mel matching, recorded when it came. A refactor that changes one sample fails here. A deliberate change
of the computation regenerates the file::

    .venv/bin/python tests/test_render_identity.py --write
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parent / "data" / "render_golden.npz"


def _tone() -> np.ndarray:
    """2.5 s of a sung-like tone with a glide and a pause (22050 Hz, float32)."""
    sr = 22050
    t = np.arange(int(2.5 * sr)) / sr
    f0 = 196 * 2 ** ((2 * t + 0.3 * np.sin(2 * np.pi * 5 * t)) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 10))
    env = np.minimum(1, t / 0.1) * np.minimum(1, np.abs(t - 1.3) / 0.15) * np.minimum(1, (2.5 - t) / 0.2)
    return (0.25 * wav * env).astype(np.float32)


def render_all(directory: Path) -> dict[str, np.ndarray]:
    """The three renderings of :func:`_tone` with the tiny models of ``tests/conftest.make_tiny_models``."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import make_tiny_models

    from canora.pipeline import Converter
    from canora.refiner import Refiner
    from canora.streaming import StreamConverter

    torch.set_num_threads(1)
    ref_dir, voc_dir = make_tiny_models(directory, singers=("pjs", "alto"), seed=3)
    wav, sr = _tone(), 22050
    conv = Converter.from_pretrained(ref_dir, voc_dir)
    offline = conv.convert(wav, sr, singer="alto", seed=5, workers=1, mel_match=0).audio
    keyed = conv.convert(wav, sr, singer="pjs", transpose=-3, steps=2, strength=0.8, seed=1, workers=1,
                         mel_match=0).audio
    stream = StreamConverter(Converter.from_pretrained(ref_dir, voc_dir), block_ms=60, singer="alto", transpose=2,
                             seed=2, mel_match=0).convert(wav)
    offline_matched = conv.convert(wav, sr, singer="alto", seed=5, workers=1).audio
    stream_matched = StreamConverter(Converter.from_pretrained(ref_dir, voc_dir), block_ms=60, singer="alto",
                                     transpose=2, seed=2).convert(wav)
    refiner = Refiner.from_pretrained(ref_dir)
    refined = refiner.refine_features(refiner.features(wav, sr, name="tone"), "alto", auto_transpose=True,
                                      match_level=True, steps=3, strength=0.6, seed=4).mel
    return {"offline": np.asarray(offline, np.float32), "offline_keyed": np.asarray(keyed, np.float32),
            "stream": np.asarray(stream, np.float32), "refined_mel": np.asarray(refined, np.float32),
            "offline_matched": np.asarray(offline_matched, np.float32),
            "stream_matched": np.asarray(stream_matched, np.float32)}


@pytest.mark.skipif(not GOLDEN.is_file(), reason="no golden renderings recorded")
def test_renderings_are_bit_identical_to_the_recorded_ones(tmp_path):
    golden = np.load(GOLDEN)
    now = render_all(tmp_path)
    assert set(now) == set(golden.files)
    for name, out in now.items():
        want = golden[name]
        assert out.shape == want.shape, name
        diff = float(np.max(np.abs(out - want))) if out.size else 0.0
        assert np.array_equal(out, want), f"{name}: differs from the recorded rendering by up to {diff:.3g}"
        assert np.abs(out).max() > 1e-4, f"{name}: silent, the comparison would prove nothing"


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        outs = render_all(Path(d))
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, **outs)
    print(GOLDEN, {k: v.shape for k, v in outs.items()})
