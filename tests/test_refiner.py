"""The refiner's model, normalisation, export and inference facade, `canora refine`, and its bad-input errors."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from canora.cli import main
from canora.conditioning import FeatureParams
from canora.dsp.mel import MelSpec, wav_to_mel
from canora.dsp.spectral import shift_mel_pitch
from canora.errors import CanoraError, CheckpointError, MelError
from canora.refiner import MelNormalizer, Refiner, RefinerConfig, RefinerModel
from canora.refiner.diffusion import NoiseSchedule

SPEC = MelSpec()


def make_refiner(content_dim: int = 0, singers: tuple[str, ...] = ("alto", "pjs"), seed: int = 0) -> Refiner:
    """A tiny randomly initialised refiner whose zero-initialised output layers are perturbed (so it does something)."""
    torch.manual_seed(seed)
    model = RefinerModel(RefinerConfig.preset("tiny", content_dim=content_dim, n_singers=len(singers)))
    with torch.no_grad():
        for p in (model.out_proj.weight, model.x_gain.weight):
            p.normal_(0, 0.05)
    stats = {s: {"median": 220.0 * k, "p5": 150.0 * k, "p95": 330.0 * k} for k, s in enumerate(singers, 1)}
    levels = {s: -20.0 - 10.0 * k for k, s in enumerate(singers)}
    return Refiner(model, SPEC, MelNormalizer.fixed(SPEC), NoiseSchedule("linear", 1000), singers=list(singers),
                   singer_f0_stats=stats, singer_level_db=levels, feature_params=FeatureParams())


def inputs(frames: int = 40, content_dim: int = 0, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    f0 = np.where(np.arange(frames) % 10 < 7, 220.0, 0.0).astype(np.float32)
    return {
        "mel": rng.uniform(-9, 0, (80, frames)).astype(np.float32),
        "f0": f0,
        "loudness": rng.uniform(-50, -10, frames).astype(np.float32),
        "content": rng.normal(size=(content_dim, frames)).astype(np.float32) if content_dim else None,
    }


# ---------------------------------------------------------------------- model and normalisation
def test_config_roundtrip_presets_and_sizes():
    cfg = RefinerConfig.preset("default", content_dim=20, n_singers=3)
    assert RefinerConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(CheckpointError, match="unknown keys"):
        RefinerConfig.from_dict({**cfg.to_dict(), "future_knob": 1})
    with pytest.raises(CanoraError, match="unknown refiner size"):
        RefinerConfig.preset("huge")
    with pytest.raises(CanoraError, match="kernel_size"):
        RefinerConfig(kernel_size=4)
    n = RefinerModel(cfg).num_parameters()
    assert 1_000_000 < n < 3_500_000, n  # "a few M parameters": a < 15 MB float32 export
    assert cfg.receptive_field == 1 + 2 * 5 * (1 + 2 + 4 + 8)  # 20 layers, dilations 1,2,4,8 cycled
    assert RefinerModel(RefinerConfig.preset("tiny")).num_parameters() < 100_000


def test_model_forward_is_encode_then_denoise_and_checks_content():
    torch.manual_seed(0)
    model = make_refiner(content_dim=5).model
    b, t = 2, 37
    cond = {"f0": torch.full((b, t), 300.0), "voiced": torch.ones(b, t), "loudness": torch.full((b, t), -20.0),
            "content": torch.randn(b, 5, t), "singer": torch.tensor([0, 1])}
    x, steps = torch.randn(b, 80, t), torch.tensor([10, 900])
    out = model(x, steps, **cond)
    assert out.shape == (b, 80, t)
    enc = model.encode(cond["f0"], cond["voiced"], cond["loudness"], cond["content"], cond["singer"])
    torch.testing.assert_close(model.denoise(x, steps, enc), out)
    # the singer and the step both change the output
    assert not torch.allclose(out[0], model(x, torch.tensor([10, 10]), **{**cond, "singer": torch.tensor([1, 1])})[0])
    assert not torch.allclose(out[1], model(x, torch.tensor([10, 10]), **cond)[1])
    with pytest.raises(CanoraError, match="content features of dim 5"):
        model(x, steps, **{**cond, "content": torch.randn(b, 4, t)})


def test_fixed_normalisation_maps_floor_and_top_and_round_trips():
    norm = MelNormalizer.fixed(SPEC)
    mel = torch.tensor([[SPEC.log_floor, 2.0, -3.0]]).repeat(80, 1)
    x = norm.normalize(mel)
    torch.testing.assert_close(x[:, 0], torch.full((80,), -1.0))
    torch.testing.assert_close(x[:, 1], torch.full((80,), 1.0))
    torch.testing.assert_close(norm.denormalize(x), mel)
    assert float(norm.denormalize(torch.full((80, 1), -3.0)).min()) == pytest.approx(SPEC.log_floor)  # clamped
    log10 = MelNormalizer.fixed(MelSpec(log_base="10"))
    assert log10.lo[0] == pytest.approx(-5.0) and log10.hi[0] == pytest.approx(2.0 / np.log(10))
    assert MelNormalizer.from_dict(json.loads(json.dumps(norm.to_dict()))) == norm


def test_per_bin_normalisation_uses_data_range():
    top = np.linspace(-1, -6, 80)[:, None]  # bins with different ranges, all wider than the minimum of 1
    mels = [(top - np.linspace(0, 4, 7)[None]).astype(np.float32), np.full((80, 3), -2.0, np.float32)]
    norm = MelNormalizer.per_bin(mels, SPEC)
    x = norm.normalize(torch.from_numpy(np.concatenate(mels, axis=1)))
    torch.testing.assert_close(x.min(dim=1).values, torch.full((80,), -1.0))
    torch.testing.assert_close(x.max(dim=1).values, torch.full((80,), 1.0))
    narrow = MelNormalizer.per_bin([np.full((80, 4), -3.0, np.float32)], SPEC)
    assert narrow.hi[0] - narrow.lo[0] == pytest.approx(1.0)  # constant bins get the minimum range


def test_shift_mel_pitch_moves_harmonics_up_an_octave(synth_clip):
    wav, sr = synth_clip
    mel = wav_to_mel(wav, SPEC)
    shifted = shift_mel_pitch(mel, 12.0, SPEC)
    import librosa

    centres = librosa.mel_frequencies(n_mels=82, fmin=0, fmax=8000)[1:-1]
    frame = mel.shape[1] // 2
    peak, peak_shifted = centres[np.argmax(mel[:, frame])], centres[np.argmax(shifted[:, frame])]
    assert 1.7 < peak_shifted / peak < 2.3, (peak, peak_shifted)
    np.testing.assert_array_equal(shift_mel_pitch(mel, 0.0, SPEC), mel)


# ---------------------------------------------------------------------- facade: refine, export
def test_refine_shapes_determinism_and_strength():
    ref = make_refiner()
    x = inputs()
    a = ref.refine(**x, singer="pjs", steps=4, strength=0.5, seed=3)
    assert a.shape == (80, 40) and a.dtype == np.float32 and np.isfinite(a).all()
    assert a.min() >= SPEC.log_floor - 1e-5
    np.testing.assert_array_equal(a, ref.refine(**x, singer="pjs", steps=4, strength=0.5, seed=3))
    assert not np.array_equal(a, ref.refine(**x, singer="pjs", steps=4, strength=0.5, seed=4))
    assert not np.array_equal(a, ref.refine(**x, singer="alto", steps=4, strength=0.5, seed=3))
    for sampler in ("ddpm", "ddim", "dpmpp"):
        out = ref.refine(**x, singer=1, sampler=sampler, steps=3, strength=1.0, seed=0)
        assert out.shape == (80, 40) and np.isfinite(out).all()


def test_export_round_trips_bit_exactly(tmp_path):
    ref = make_refiner(content_dim=3)
    ref.export(tmp_path / "m")
    back = Refiner.from_pretrained(tmp_path / "m")
    sd, sd2 = ref.model.state_dict(), back.model.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    assert back.spec == ref.spec and back.normalizer == ref.normalizer and back.singers == ref.singers
    assert back.schedule.to_dict() == ref.schedule.to_dict() and back.prediction_type == ref.prediction_type
    assert back.singer_f0_stats == ref.singer_f0_stats and back.feature_params == ref.feature_params
    assert back.singer_level_db == ref.singer_level_db == {"alto": -20.0, "pjs": -30.0}
    x = inputs(content_dim=3)
    np.testing.assert_array_equal(ref.refine(**x, singer="alto", steps=3, seed=1),
                                  back.refine(**x, singer="alto", steps=3, seed=1))
    size = sum(p.stat().st_size for p in (tmp_path / "m").iterdir())
    assert size < 400_000


def test_bad_inputs_get_clear_errors(tmp_path):
    ref = make_refiner()
    x = inputs()
    with pytest.raises(CanoraError, match="unknown singer 'bob'.*alto, pjs"):
        ref.refine(**x, singer="bob")
    with pytest.raises(CanoraError, match="choose one with --singer: alto, pjs"):
        ref.refine(**x, singer=None)
    with pytest.raises(CanoraError, match="steps must be a whole number in 1..1000"):
        ref.refine(**x, singer="pjs", steps=0)
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(CanoraError, match=r"strength must be a number in \(0, 1\]"):
            ref.refine(**x, singer="pjs", strength=bad)
    other = MelSpec(fmax=None, hop_length=200, n_fft=1000, win_length=1000)
    with pytest.raises(MelError, match="MelSpec mismatch.*hop_length: 256 != 200.*fmax: 8000.0 != None"):
        ref.refine(**x, singer="pjs", spec=other)
    with pytest.raises(MelError, match=r"\(80, T\)"):
        ref.refine(**{**x, "mel": x["mel"][:40]}, singer="pjs")
    with pytest.raises(CanoraError, match="no voiced frames"):
        ref.refine(**{**x, "f0": np.zeros(40, np.float32)}, singer="pjs")
    with pytest.raises(CanoraError, match=r"loudness has shape \(39,\)"):
        ref.refine(**{**x, "loudness": x["loudness"][:39]}, singer="pjs")


@pytest.mark.parametrize("field,value,match", [
    ("refiner_format_version", 99, "refiner format version 99 is newer"),
    ("format_version", 99, "export format version 99 is newer"),
])
def test_newer_export_is_refused(tmp_path, field, value, match):
    ref = make_refiner()
    ref.export(tmp_path / "m")
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    if field == "format_version":
        doc[field] = value
    else:
        doc["meta"][field] = value
    (tmp_path / "m" / "model.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=match):
        Refiner.from_pretrained(tmp_path / "m")


def test_vocoder_export_is_not_a_refiner(tmp_path, tiny_official_ckpt):
    from canora.vocoder import Vocoder

    Vocoder.from_pretrained(tiny_official_ckpt).export(tmp_path / "voc")
    with pytest.raises(CheckpointError, match="expected a 'refiner' model"):
        Refiner.from_pretrained(tmp_path / "voc")


# ---------------------------------------------------------------------- real audio: features, CLI
@pytest.fixture
def real_refiner(sung_clip, tmp_path):
    """A tiny refiner whose content dimension fits the default content extractor, exported to tmp_path/model."""
    from canora.conditioning import extract_features

    wav, sr = sung_clip
    feats = extract_features(wav, SPEC, FeatureParams())
    ref = make_refiner(content_dim=feats.content.shape[0], singers=("pjs",))
    ref.export(tmp_path / "model")
    return ref, feats


def test_features_are_frame_aligned_with_the_mel(sung_clip, real_refiner):
    wav, _ = sung_clip
    _, feats = real_refiner
    frames = SPEC.num_frames(len(wav))
    assert feats.mel.shape == (80, frames)
    assert feats.f0.shape == feats.voiced.shape == feats.loudness.shape == (frames,)
    assert feats.content.shape[1] == frames
    assert 0.3 < feats.voiced.mean() <= 1.0
    assert (feats.f0 >= 50).all() and (feats.f0 <= 1100).all()  # continuous: no zeros at unvoiced frames
    assert np.isfinite(feats.loudness).all() and np.isfinite(feats.content).all()
    np.testing.assert_array_equal(feats.mel, wav_to_mel(wav, SPEC))


def test_feature_cache_is_keyed_on_parameters(tmp_path, sung_clip):
    import soundfile as sf

    from canora.conditioning import load_features

    wav, sr = sung_clip
    sf.write(tmp_path / "a.wav", wav, sr)
    cache = tmp_path / "cache"
    a = load_features(tmp_path / "a.wav", SPEC, FeatureParams(), cache)
    assert len(list(cache.iterdir())) == 1
    b = load_features(tmp_path / "a.wav", SPEC, FeatureParams(), cache)
    np.testing.assert_array_equal(a.f0, b.f0)
    load_features(tmp_path / "a.wav", SPEC, FeatureParams(f0_max=800.0), cache)
    load_features(tmp_path / "a.wav", MelSpec(fmax=None), FeatureParams(), cache)
    assert len(list(cache.iterdir())) == 3


def test_audio_without_voiced_frames_is_a_clear_error(real_refiner):
    ref, _ = real_refiner
    noise = np.random.default_rng(0).normal(0, 1e-3, 22050).astype(np.float32)
    with pytest.raises(CanoraError, match="no voiced frames"):
        ref.refine_audio(noise, 22050, "pjs")


@pytest.mark.slow
def test_refine_audio_transpose_and_reconstruct(sung_clip, real_refiner):
    ref, feats = real_refiner
    wav, sr = sung_clip
    res = ref.refine_audio(wav, sr, "pjs", transpose=12, steps=2, strength=0.5)
    assert res.mel.shape == feats.mel.shape and res.transpose == 12
    voiced = res.f0 > 0
    np.testing.assert_array_equal(voiced, feats.voiced)
    np.testing.assert_allclose(res.f0[voiced], 2 * feats.f0[feats.voiced], rtol=1e-5)
    auto = ref.refine_audio(wav, sr, "pjs", auto_transpose=True, steps=2)
    assert np.isfinite(auto.transpose)
    rec = ref.reconstruct(wav, sr, "pjs", strength=0.3, steps=3)
    assert rec.shape == feats.mel.shape


@pytest.mark.slow
def test_cli_refine_audio_and_npy_inputs(capsys, tmp_path, sung_clip, real_refiner):
    import soundfile as sf

    wav, sr = sung_clip
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "song.wav", wav, sr)
    assert main(["mel", str(audio), "-o", str(tmp_path / "mels"), "--save-spec"]) == 0
    model = tmp_path / "model"
    code = main(["refine", str(audio), "-o", str(tmp_path / "r1"), "--model", str(model), "--steps", "2",
                 "--transpose", "-3", "--seed", "1"])
    assert code == 0, capsys.readouterr().err
    mel, f0 = np.load(tmp_path / "r1" / "song.npy"), np.load(tmp_path / "r1" / "song.f0.npy")
    frames = SPEC.num_frames(len(wav))
    assert mel.shape == (80, frames) and f0.shape == (frames,) and mel.dtype == np.float32
    # -3 semitones (the file is 16-bit PCM, the fixture float: the trackers may differ by a fraction of a cent)
    assert np.median(f0[f0 > 0]) == pytest.approx(np.median(real_refiner[1].f0_with_zeros()[f0 > 0]) * 2 ** (-3 / 12),
                                                  rel=1e-3)
    code = main(["refine", str(tmp_path / "mels"), "-o", str(tmp_path / "r2"), "--model", str(model), "--steps", "2",
                 "--transpose", "-3", "--seed", "1", "--audio", str(audio)])
    assert code == 0, capsys.readouterr().err
    np.testing.assert_array_equal(np.load(tmp_path / "r2" / "song.npy"), mel)  # same features, same seed
    capsys.readouterr()
    (tmp_path / "mels" / "mel_spec.json").write_text(MelSpec(fmax=None).to_json())
    code = main(["refine", str(tmp_path / "mels"), "-o", str(tmp_path / "r3"), "--model", str(model)])
    err = capsys.readouterr().err
    assert code == 2 and "MelSpec mismatch" in err and "fmax: 8000.0 != None" in err and "Traceback" not in err
    code = main(["refine", str(audio), "-o", str(tmp_path / "r4"), "--model", str(model), "--singer", "bob"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown singer 'bob'" in err and "pjs" in err
    with pytest.raises(SystemExit) as bad:  # argparse names the flag
        main(["refine", str(audio), "-o", str(tmp_path / "r5"), "--model", str(model), "--strength", "0"])
    assert bad.value.code == 2 and "--strength" in capsys.readouterr().err
    # refined at the singer's level by default (then moved back to the song's); --no-match-level: as recorded
    code = main(["refine", str(audio), "-o", str(tmp_path / "r6"), "--model", str(model), "--steps", "2",
                 "--transpose", "-3", "--seed", "1", "--no-match-level"])
    assert code == 0, capsys.readouterr().err
    raw = np.load(tmp_path / "r6" / "song.npy")
    ref, feats = real_refiner
    expect = ref.refine_features(feats, transpose=-3, steps=2, seed=1).mel  # match_level off
    assert np.abs(raw - expect).mean() < 0.02 and np.abs(raw - mel).mean() > 0.02


@pytest.mark.slow
def test_cli_npy_without_audio_uses_griffin_lim_features(capsys, caplog, tmp_path, sung_clip, real_refiner):
    from canora.io.melfiles import save_mel

    wav, _ = sung_clip
    (tmp_path / "mels").mkdir()
    save_mel(tmp_path / "mels" / "song.npy", wav_to_mel(wav, SPEC))
    code = main(["refine", str(tmp_path / "mels"), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "model"),
                 "--steps", "2"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Griffin-Lim" in caplog.text
    f0 = np.load(tmp_path / "out" / "song.f0.npy")
    ref_f0 = real_refiner[1].f0_with_zeros()
    both = (f0 > 0) & (ref_f0 > 0)
    assert both.mean() > 0.3
    cents = 1200 * np.abs(np.log2(f0[both] / ref_f0[both]))
    assert np.median(cents) < 50  # F0 re-extracted from a Griffin-Lim reconstruction is still close


def test_singer_mix_interpolates_the_embeddings():
    """--singer alto:0.7,pjs:0.3: the conditioning uses 0.7 x alto's embedding + 0.3 x pjs's; a pure "mix"
    equals the singer; the mixed range is the weighted geometric mean; bad mixes are one clear error."""
    ref = make_refiner(singers=("alto", "pjs"))
    x = inputs()
    kw = dict(steps=2, strength=0.5, seed=3)
    alto = ref.refine(x["mel"], x["f0"], x["loudness"], None, "alto", **kw)
    assert np.array_equal(ref.refine(x["mel"], x["f0"], x["loudness"], None, "alto:1", **kw), alto)
    mixed = ref.refine(x["mel"], x["f0"], x["loudness"], None, "alto:0.7,pjs:0.3", **kw)
    pjs = ref.refine(x["mel"], x["f0"], x["loudness"], None, "pjs", **kw)
    assert not np.allclose(mixed, alto) and not np.allclose(mixed, pjs)
    # the mix is the embedding interpolation (checked on the conditioning the model sees)
    m = ref.model
    emb = 0.7 * m.singer.weight[0] + 0.3 * m.singer.weight[1]
    w = torch.tensor([[0.7, 0.3]])
    args = (torch.full((1, 8), 220.0), torch.ones(1, 8), torch.full((1, 8), -20.0), None)
    with torch.no_grad():
        a = m.encode(*args, w)
        m.singer.weight[0] = emb  # row 0 now holds the mix: index 0 must give the same conditioning
        b = m.encode(*args, torch.tensor([0]))
    torch.testing.assert_close(a, b)
    assert ref.singer_label({"pjs": 1, "alto": 3}) == "alto:0.75,pjs:0.25"
    rng = ref.singer_f0_range("alto:0.5,pjs:0.5")
    assert rng.median == pytest.approx(np.sqrt(220.0 * 440.0))
    for bad, msg in (("alto:x", "not a number"), ("bob:1", "unknown singer"), ("alto:0,pjs:0", "all 0"),
                     (":1", "empty name")):
        with pytest.raises(CanoraError, match=msg):
            ref.singer_weights(bad)


def test_level_is_a_gain_on_loudness_and_mel_chosen_from_the_singers_level(tmp_path):
    """transpose_features(gain_db=g): loudness + g, the log-mel + ln(10^(g/20)) kept above the floor, F0, voicing
    and content as they are. choose_level puts a song's median voiced loudness on the singer's stored level (a
    mix: the weighted mean); no stored level means no choice; a bad stored value is refused on load."""
    import math

    from canora.conditioning import RefinerFeatures

    ref = make_refiner(content_dim=3)
    x = inputs(content_dim=3)
    feats = RefinerFeatures(x["mel"], np.maximum(x["f0"], 220.0), x["f0"] > 0, x["loudness"], x["content"])
    feats.mel[:, :3] = SPEC.log_floor  # digital silence: stays on the floor however loud the rest becomes
    feats.loudness[:2] = -100.0  # (and so does its loudness)
    louder = ref.transpose_features(feats, 0.0, gain_db=12.0)
    np.testing.assert_allclose(louder.loudness[2:], feats.loudness[2:] + 12.0, atol=1e-5)
    assert (louder.loudness[:2] == -100.0).all()
    np.testing.assert_allclose(louder.mel[:, 3:], feats.mel[:, 3:] + 12.0 * math.log(10) / 20, atol=1e-5)
    assert (louder.mel[:, :3] == np.float32(SPEC.log_floor)).all()
    assert louder.f0 is not feats.f0 and np.array_equal(louder.f0, feats.f0) and louder.content is feats.content
    quieter = ref.transpose_features(feats, 0.0, gain_db=-60.0)
    assert quieter.mel.min() == np.float32(SPEC.log_floor)
    with pytest.raises(CanoraError, match="gain"):
        ref.transpose_features(feats, 0.0, gain_db=float("nan"))
    median = float(np.median(feats.loudness[feats.voiced].astype(np.float64)))
    choice = ref.choose_level(feats, "pjs")
    assert choice.singer_db == -30.0 and choice.target_db == -25.0 and choice.source_db == pytest.approx(median)
    assert choice.gain_db == pytest.approx(-25.0 - median, abs=1e-5) and "to -25.0 dB" in choice.reason
    assert ref.choose_level([feats, feats], "alto").gain_db == pytest.approx(-15.0 - median, abs=1e-5)
    assert ref.singer_level("alto:0.5,pjs:0.5") == pytest.approx(-25.0)
    assert ref.singer_level("alto:0.75,pjs:0.25") == pytest.approx(-22.5)  # weighted
    # a log10 power mel moves by 20 dB / 10 = 2 (amplitude x10 is power x100), not by ln(10)
    log10 = make_refiner(content_dim=3)
    log10.spec = MelSpec(log_base="10", power=2.0)
    mel = np.full((80, 4), -3.0, np.float32)
    np.testing.assert_allclose(log10.shift_mel_level(mel, 20.0), -1.0, atol=1e-6)
    # a recording far too quiet is moved by at most 40 dB, and the reason says so
    quiet = ref.choose_level(replace(feats, loudness=np.full_like(feats.loudness, -95.0)), "pjs")
    assert quiet.gain_db == 40.0 and quiet.target_db == -25.0 and "capped at 40 dB" in quiet.reason
    assert "capped" not in choice.reason
    ref.singer_level_db.pop("alto")
    assert ref.singer_level("pjs") == -30.0 and ref.singer_level("alto:0.5,pjs:0.5") is None
    assert ref.choose_level(feats, "alto") is None
    unvoiced = RefinerFeatures(x["mel"], np.full_like(x["f0"], 220.0), np.zeros_like(feats.voiced), x["loudness"],
                               x["content"])
    assert ref.choose_level(unvoiced, "pjs") is None
    ref.export(tmp_path / "m")
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    for bad in ({"pjs": "loud"}, [-20.0]):
        doc["meta"]["singer_level_db"] = bad
        (tmp_path / "m" / "model.json").write_text(json.dumps(doc))
        with pytest.raises(CheckpointError, match="singer_level_db"):
            Refiner.from_pretrained(tmp_path / "m")


@pytest.mark.slow
def test_refine_with_match_level_refines_a_quiet_recording_as_a_loud_one_at_its_own_level():
    """refine_features(match_level=True): the same song 20 dB quieter is refined as the loud one is (the refiner
    sees both at the singer's level) and comes back 20 dB (2.3 ln) lower, as quiet as it came in; without
    match_level the refiner sees the quiet song as it is."""
    ref = make_refiner(content_dim=19)
    SR = SPEC.sample_rate  # noqa: N806
    t = np.arange(2 * SR) / SR
    wav = (0.4 * sum(np.sin(2 * np.pi * k * 220 * t) / k for k in range(1, 12))).astype(np.float32)
    loud = ref.features(wav, SR)
    quiet = ref.features(wav * np.float32(0.1), SR)
    a = ref.refine_features(loud, "pjs", steps=2, seed=0, match_level=True)
    b = ref.refine_features(quiet, "pjs", steps=2, seed=0, match_level=True)
    c = ref.refine_features(quiet, "pjs", steps=2, seed=0)
    assert b.level.gain_db - a.level.gain_db == pytest.approx(20.0, abs=0.05) and c.level is None
    above = (a.mel > SPEC.log_floor + 3) & (b.mel > SPEC.log_floor)
    shift = (a.mel - b.mel)[above]
    assert np.median(shift) == pytest.approx(20 * np.log(10) / 20, abs=0.05) and shift.std() < 0.1
    assert np.abs((a.mel - c.mel)[above] - np.median(shift)).mean() > 3 * np.abs(shift - np.median(shift)).mean()


@pytest.mark.slow
def test_only_singers_cuts_the_singer_table_and_keeps_the_rest(tmp_path):
    from canora.refiner import Refiner

    base = Refiner.from_pretrained("bundled-base")
    one = base.only_singers(["guelen"])
    assert one.singers == ["guelen"] and one.model.config.n_singers == 1
    assert torch.equal(one.model.singer.weight[0], base.model.singer.weight[base.singers.index("guelen")])
    assert torch.equal(one.model.cond_proj.weight, base.model.cond_proj.weight)
    assert set(one.singer_f0_stats) <= {"guelen"} and one.feature_params == base.feature_params
    again = Refiner.from_pretrained(one.export(tmp_path / "one"))
    assert again.singers == ["guelen"]
    with pytest.raises(CanoraError, match="no singer"):
        base.only_singers(["nobody"])
