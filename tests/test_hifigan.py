"""HiFi-GAN generator: official sizes, official checkpoint layout, weight-norm folding, the Vocoder facade."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from canora.dsp.mel import MelSpec, read_config, wav_to_mel
from canora.dsp.metrics import mel_cycle_error
from canora.errors import CheckpointError, MelError
from canora.vocoder import Vocoder
from canora.vocoder.hifigan import Generator, GeneratorConfig, from_official_keys, to_official_keys

from .conftest import TINY_HIFIGAN, shared_file


@pytest.mark.parametrize("version,count", [("v1", 13_936_130), ("v2", 928_514), ("v3", 1_464_322)])
def test_official_configs_have_official_parameter_counts(version, count):
    gen = Generator.from_config(GeneratorConfig.from_hifigan_config(read_config(version)))
    assert sum(p.numel() for p in gen.parameters()) == count


def test_official_key_names_and_shapes():
    gen = Generator.from_config(GeneratorConfig.from_hifigan_config(read_config("v1")))
    sd = to_official_keys(gen.state_dict())
    assert sd["ups.0.weight_g"].shape == (512, 1, 1)  # ConvTranspose1d weight norm over the input channel
    assert "resblocks.4.convs1.2.weight_v" in sd and "conv_post.bias" in sd
    assert not any("parametrizations" in k for k in sd)
    assert from_official_keys(sd).keys() == gen.state_dict().keys()


@pytest.mark.parametrize("legacy_pickle", [False, True])
def test_official_layout_checkpoint_loads_strictly_and_folding_keeps_output(tmp_path, legacy_pickle):
    cfg = {**read_config("v1"), **TINY_HIFIGAN}
    torch.manual_seed(0)
    gen = Generator.from_config(GeneratorConfig.from_hifigan_config(cfg))
    with torch.no_grad():  # make weight norm matter: g != ||v||
        for name, p in gen.named_parameters():
            if name.endswith("original0"):
                p.mul_(torch.rand_like(p) + 0.5)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    torch.save(
        {"generator": to_official_keys(gen.state_dict())}, tmp_path / "g_00001000",
        _use_new_zipfile_serialization=not legacy_pickle,
    )
    voc = Vocoder.from_pretrained(tmp_path / "g_00001000")
    assert not voc.generator.has_weight_norm
    mel = torch.randn(1, 80, 20) - 5
    with torch.no_grad():
        ref = gen.eval()(mel).squeeze(1)
    out = voc(mel)
    assert out.shape == (1, 20 * 256)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    # the directory form picks the newest g_* and its config.json
    torch.testing.assert_close(Vocoder.from_pretrained(tmp_path)(mel), ref, atol=1e-5, rtol=1e-4)


def test_export_round_trip_is_exact(tiny_official_ckpt, tmp_path):
    voc = Vocoder.from_pretrained(tiny_official_ckpt)
    voc.export(tmp_path / "export")
    again = Vocoder.from_pretrained(tmp_path / "export")
    assert again.spec == voc.spec and again.config == voc.config
    mel = np.random.default_rng(0).normal(-5, 1, (80, 12)).astype(np.float32)
    np.testing.assert_array_equal(again.vocode(mel), voc.vocode(mel))
    for k, v in voc.generator.state_dict().items():
        assert torch.equal(v, again.generator.state_dict()[k])


def test_checkpoint_for_another_config_is_refused(tiny_official_ckpt, tmp_path):
    with pytest.raises(CheckpointError, match="does not match the model config"):
        Vocoder.from_pretrained(tiny_official_ckpt, config="v1")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "g_00000001").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a torch checkpoint"):
        Vocoder.from_pretrained(tmp_path / "g_00000001", config="v2")
    torch.save({"mpd": {}, "msd": {}}, tmp_path / "do_00000001")
    with pytest.raises(CheckpointError, match="discriminator file"):
        Vocoder.from_pretrained(tmp_path / "do_00000001", config="v2")
    with pytest.raises(CheckpointError, match="not found"):
        Vocoder.from_pretrained(tmp_path / "nothing_here", config="v2")


def test_unsafe_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    torch.save({"generator": Evil()}, tmp_path / "g_1")
    with pytest.raises(CheckpointError, match="weights_only"):
        Vocoder.from_pretrained(tmp_path / "g_1", config="v2")


def test_mel_shape_and_nan_errors(tiny_official_ckpt):
    voc = Vocoder.from_pretrained(tiny_official_ckpt)
    with pytest.raises(MelError, match="shape"):
        voc(np.zeros((12, 80), np.float32))
    bad = np.full((80, 10), -5.0, np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(MelError, match="NaN"):
        voc(bad)


@pytest.mark.slow
def test_config_is_guessed_from_shapes_when_absent(tmp_path):
    gen = Generator.from_config(GeneratorConfig.from_hifigan_config(read_config("v3")))
    torch.save({"generator": to_official_keys(gen.state_dict())}, tmp_path / "g_00000005")
    voc = Vocoder.from_pretrained(tmp_path / "g_00000005")
    assert voc.config.resblock == "2" and voc.config.upsample_rates == (8, 8, 4)


@pytest.fixture(scope="module")
def lj_v2() -> Vocoder:
    return Vocoder.from_pretrained(shared_file("hifigan/LJ_V2/generator_v2"))


@pytest.mark.slow
def test_official_lj_v2_loads_strictly(lj_v2):
    assert lj_v2.spec == MelSpec()
    assert sum(p.numel() for p in Generator.from_config(lj_v2.config).parameters()) == 928_514


@pytest.mark.parametrize(
    "clip,limit",
    [("speech/cmu_arctic_us_aew_a0001.wav", 0.6), ("vocadito/vocadito_1.wav", 0.7)],
)
@pytest.mark.slow
def test_lj_v2_copy_synthesis_has_a_small_mel_cycle_error(lj_v2, clip, limit):
    """Threshold: LJ_V2 measured 0.44 on speech and 0.42 on this sung clip (4 s); a mel in the wrong
    convention (librosa power dB) measured 1.9-2.5 on the same clips. The limits sit well between."""
    from canora.io.audio import load_audio

    wav = load_audio(shared_file(clip), 22050)[: 22050 * 4]
    mel = wav_to_mel(wav, lj_v2.spec)
    out = lj_v2.vocode(mel)
    assert out.shape == (mel.shape[1] * 256,) and np.isfinite(out).all()
    err = mel_cycle_error(mel, out, lj_v2.spec)
    assert err < limit
    import librosa

    db = librosa.power_to_db(np.exp(mel) ** 2, ref=np.max).astype(np.float32)
    assert mel_cycle_error(mel, lj_v2.vocode(db), lj_v2.spec) > 2 * err
