"""Long mels are vocoded in pieces (``Vocoder.network``): every generator's declared receptive field bounds
what its output depends on, so pieces with that much context give the one-piece output."""

from __future__ import annotations

import pytest
import torch

from canora.dsp.mel import MelSpec, read_config
from canora.vocoder import Vocoder
from canora.vocoder import api as vocoder_api
from canora.vocoder.hifigan import Generator, GeneratorConfig
from canora.vocoder.nsf import NSFConfig, NSFGenerator

SPEC = MelSpec()
SMALL = {"upsample_initial_channel": 32}  # the receptive field does not depend on the width


def _config(name: str) -> GeneratorConfig | NSFConfig:
    if name.startswith("nsf"):
        return NSFConfig(**SMALL, upsample="transposed" if name == "nsf-transposed" else "interpolate")
    return GeneratorConfig.from_hifigan_config({**read_config(f"config_{name}"), **SMALL})


def _generator(cfg: GeneratorConfig | NSFConfig) -> Generator | NSFGenerator:
    torch.manual_seed(0)
    gen = (NSFGenerator if isinstance(cfg, NSFConfig) else Generator).from_config(cfg).remove_weight_norm()
    return gen.double().eval()


def _reach(diff: torch.Tensor, at: int, hop: int) -> tuple[int, int]:
    """Frames before and after frame ``at`` whose output samples changed."""
    changed = torch.nonzero(diff.abs() > 1e-13)[:, -1]
    return at - int(changed.min()) // hop, int(changed.max()) // hop - at


@pytest.mark.parametrize("name", ["v1", "v2", "v3", "nsf", "nsf-transposed"])
def test_receptive_field_bounds_what_the_output_depends_on(name):
    """A change at one mel frame (and, for NSF, at one sample of the source excitation) moves output samples
    only within ``receptive_frames()`` frames of it. If the bound were too small, pieces cut with that context
    would differ from the whole."""
    cfg = _config(name)
    rf, hop, n, at = cfg.receptive_frames(), cfg.hop_length, 60, 30
    gen = _generator(cfg)
    g = torch.Generator().manual_seed(1)
    mel = torch.randn(1, 80, n, generator=g, dtype=torch.float64)
    nsf = isinstance(cfg, NSFConfig)
    src = torch.randn(1, gen.source.channels, n * hop, generator=g, dtype=torch.float64) if nsf else None
    with torch.no_grad():
        base = gen.network(mel, src)
        bumped = mel.clone()
        bumped[..., at] += 1.0
        before, after = _reach(gen.network(bumped, src) - base, at, hop)
        assert 0 < before <= rf and 0 < after <= rf, (before, after, rf)
        if nsf:
            s2 = src.clone()
            s2[..., at * hop] += 1.0
            before, after = _reach(gen.network(mel, s2) - base, at, hop)
            assert before <= rf and after <= rf, (before, after, rf)
    assert rf <= 20  # a bound this loose would make pieces cost far more context than they need


@pytest.mark.parametrize("name", ["v2", "nsf"])
@pytest.mark.slow
def test_vocoding_in_pieces_gives_the_one_piece_output(name, monkeypatch):
    cfg = _config(name)
    gen = _generator(cfg).float()
    voc = Vocoder(gen, SPEC, cfg, "test")
    g = torch.Generator().manual_seed(2)
    n = 230
    mel = torch.randn(80, n, generator=g) - 4.0
    f0 = torch.where(torch.arange(n) % 50 < 35, 180.0 + torch.arange(n).float(), torch.zeros(n))
    assert voc.chunk_frames == vocoder_api.CHUNK_FRAMES
    voc.chunk_frames = 10**9
    whole = voc(mel, f0, start_frame=7)
    voc.chunk_frames = 40  # 230 frames -> 6 pieces of 39 frames
    pieces = voc(mel, f0, start_frame=7)
    assert pieces.shape == whole.shape == (n * cfg.hop_length,)
    torch.testing.assert_close(pieces, whole, atol=1e-6, rtol=0)
    # too little context would show: pieces cut with none differ from the whole
    src = gen.source(f0[None], None, None, None) if isinstance(cfg, NSFConfig) else None
    monkeypatch.setattr(type(cfg), "receptive_frames", lambda self: 0)
    bare = voc.network(mel[None], src, chunk=40)[0, 0]
    assert (bare - voc.network(mel[None], src, chunk=10**9)[0, 0]).abs().max() > 1e-3
