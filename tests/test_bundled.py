"""The bundled default models: they load with no network, agree on one MelSpec, and convert real singing.

Thresholds (stated in the README's model card): after conversion the output's F0 follows the source's
(transposed) F0 with a median absolute error under 50 cents and fewer than 15 % of frames voiced in both
off by more than 50 cents; the output keeps the source's length, is finite, and is not silent.
"""

from __future__ import annotations

import numpy as np
import pytest

from canora.analysis.evaluation import f0_scores
from canora.cli import main
from canora.dsp.mel import MelSpec
from canora.dsp.pitch import extract_f0
from canora.pipeline import DEFAULT_REFINER, DEFAULT_VOCODER, Converter

SR = 22050


@pytest.fixture(scope="module")
def converter() -> Converter:
    return Converter.from_pretrained()


def _follows(source: np.ndarray, out: np.ndarray, transpose: float) -> tuple[float, float]:
    """(median |cents|, share of frames > 50 cents off) over frames voiced in both."""
    f_src = extract_f0(source, SR, 256)
    f_out = extract_f0(out, SR, 256)
    ref = np.where(f_src > 0, f_src * 2 ** (transpose / 12), 0.0)
    both = (ref > 0) & (f_out > 0)
    assert both.mean() > 0.3, "too few frames voiced in both: the output lost the voice"
    cents = np.abs(1200 * np.log2(f_out[both] / ref[both]))
    return float(np.median(cents)), float(np.mean(cents > 50))


def test_bundled_models_are_small_versioned_and_share_the_hifigan_melspec(converter):
    size = sum(p.stat().st_size for d in (DEFAULT_REFINER, DEFAULT_VOCODER) for p in d.iterdir())
    assert size < 50 * 2**20
    assert converter.spec == MelSpec()  # the official HiFi-GAN v1 mel
    assert converter.vocoder.needs_f0 and converter.singers == ["pjs"]
    # the vocoder was fine-tuned with its source's noise quieter inside notes: run at 1 it would add the noise
    # band above 4 kHz back without any error
    assert converter.vocoder.config.voiced_noise == 0.4


@pytest.mark.slow
def test_bundled_conversion_of_a_real_clip_follows_the_source_pitch(converter):
    from canora.io.audio import load_audio

    from .conftest import shared_file

    wav = load_audio(shared_file("vocadito/vocadito_10.wav"), SR)[2 * SR: 6 * SR]
    res = converter.convert(wav, SR, transpose=5, measure_cycle_error=True)  # the default sampler settings
    assert (res.stats["sampler"], res.stats["steps"], res.stats["strength"]) == ("dpmpp", 3, 0.6)
    assert res.audio.shape == wav.shape and np.isfinite(res.audio).all()
    assert np.sqrt(np.mean(res.audio**2)) > 0.1 * np.sqrt(np.mean(wav**2))
    median_cents, gross = _follows(wav, res.audio, 5)
    assert median_cents < 50 and gross < 0.15, (median_cents, gross)
    assert res.stats["mel_cycle_error"] < 1.0


@pytest.mark.slow
def test_a_quietly_recorded_song_converts_like_the_recording(converter):
    """PJS 087 (held out), 20 dB quieter than recorded: the refiner sees it at PJS's stored level (-28.9 dB
    over her training songs, + 5 dB), so the refined mel of its sung frames is the recording's conversion 20 dB
    down, within 0.15 ln (measured 0.07), and each output is as loud as its recording. Without the level it is
    refined as soft singing (0.81 ln away; converted into PJS it scored singer similarity 0.85 instead of
    0.93). Every singer of the bundled base has a level."""
    from canora.io.audio import load_audio
    from canora.refiner import Refiner

    from .conftest import shared_file

    assert converter.refiner.singer_level_db == {"pjs": pytest.approx(-28.94, abs=0.01)}
    assert set(Refiner.from_pretrained("bundled-base").singer_level_db) == set(
        Refiner.from_pretrained("bundled-base").singers)
    wav = load_audio(shared_file("pjs/pjs087_song.wav"), SR)[20 * SR: 25 * SR]
    a = converter.convert(wav, SR, steps=4)
    quiet = wav * np.float32(0.1)
    b = converter.convert(quiet, SR, steps=4)
    c = converter.convert(quiet, SR, steps=4, match_level=False)
    # 0.25 dB: a note's last frame, at SwiftF0's absolute floor (a peak of 1e-3), is voiced in one and not the
    # other, which moves the median of these 5 s by 0.15 dB
    assert b.stats["level"]["gain_db"] - a.stats["level"]["gain_db"] == pytest.approx(20.0, abs=0.25)
    v = a.f0 > 0
    assert np.abs(b.mel - (a.mel - np.log(10.0)))[:, v].mean() < 0.15  # the same mel, 20 dB (ln 10) down
    assert np.abs(c.mel - b.mel)[:, v].mean() > 0.4  # sung softly (measured 0.81)
    for res, src in ((a, wav), (b, quiet)):  # each output as loud as its own recording
        assert 20 * np.log10(np.sqrt(np.mean(res.audio ** 2) / np.mean(src ** 2))) == pytest.approx(0.0, abs=1.5)
    # and the quiet one sounds like the loud one, 20 dB down: vocoded at PJS's level too, then scaled (vocoded at
    # the recording's level, its 4-8 kHz came out 0.7 ln weaker and the output's mel 0.66 ln away)
    from canora.dsp.mel import wav_to_mel

    ma, mb = wav_to_mel(a.audio, converter.spec), wav_to_mel(b.audio * np.float32(10.0), converter.spec)
    sung = (ma > -8.0) & v[None, : ma.shape[1]]
    assert np.abs(mb - ma)[sung].mean() < 0.3  # measured 0.13


@pytest.mark.slow
def test_demo_phrase_converts_with_auto_key(converter):
    from canora.demo import synth_phrase

    wav = synth_phrase(SR)
    res = converter.convert(wav, SR, auto_transpose=True, steps=4)
    assert res.audio.shape == wav.shape and np.isfinite(res.audio).all() and np.abs(res.audio).max() > 0.05
    median_cents, gross = _follows(wav, res.audio, res.transpose)
    assert median_cents < 50 and gross < 0.15, (median_cents, gross)
    scores = f0_scores(extract_f0(wav, SR, 256), extract_f0(res.audio, SR, 256), res.transpose)
    assert scores.pearson > 0.9


@pytest.mark.slow
def test_readme_main_job_runs(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "demo")]) == 0
    assert (tmp_path / "demo" / "phrase_converted.wav").is_file()
    assert main(["demo", "-o", str(tmp_path / "demo")]) == 0  # the README's line runs twice: it replaces its own
    assert main(["demo", "-o", str(tmp_path / "demo"), "--keep"]) == 2
    assert "converted it to singer 'pjs'" in capsys.readouterr().err


@pytest.mark.slow
def test_forced_cuts_inside_a_held_note_leave_no_dip_or_click(converter):
    """A 9 s held note with vibrato and no pause, converted in slices of at most 2 s, against the same note
    converted in one piece: around every join the level stays within ~1.5 dB of the one-piece conversion
    (no cancellation hole), and the sample-to-sample step at the joins is no larger than inside the slices
    (no click). (Cuts land on the quietest frames, which in a vibrato are its amplitude troughs, so the
    one-piece conversion is the fair reference, not the song's median level.)"""
    from canora.dsp.slicing import plan_slices

    t = np.arange(9 * SR) / SR
    f0 = 262.0 * 2 ** (0.3 * np.sin(2 * np.pi * 5.5 * t) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    wav = (0.3 * sum(np.sin(k * phase) / k ** 1.2 for k in range(1, 20)) * np.minimum(1, t / 0.1)).astype(np.float32)
    sliced = converter.convert(wav, SR, steps=4, max_slice_seconds=2.0).audio
    whole = converter.convert(wav, SR, steps=4, max_slice_seconds=30.0).audio
    joins = [s.start for s in plan_slices(wav, SR, max_seconds=2.0, overlap=4 * 256)[1:]]
    assert len(joins) >= 3

    def rms(y: np.ndarray, j: int) -> float:
        return float(np.sqrt(np.mean(y[j - 512: j + 512] ** 2)))

    # measured 1.02-1.09; without the render margin around each cut, 0.69-0.86 (two edge-distorted renders)
    for j in joins:
        ratio = rms(sliced, j) / rms(whole, j)
        assert 0.85 < ratio < 1.25, f"level change x{ratio:.2f} at the join at {j / SR:.2f} s"
    step = np.abs(np.diff(sliced))
    typical = np.percentile(step[SR:], 99.9)
    for j in joins:
        assert step[j - 1024: j + 1024].max() <= 1.5 * typical, f"click at the join at {j / SR:.2f} s"


def test_the_bundled_models_load_by_name():
    from canora.refiner import Refiner
    from canora.vocoder import Vocoder

    assert Vocoder.from_pretrained().source == Vocoder.from_pretrained("bundled").source == str(DEFAULT_VOCODER)
    assert Refiner.from_pretrained("bundled").singers == ["pjs"]


@pytest.mark.slow
def test_the_bundled_base_is_a_multi_singer_refiner_that_pairs_with_the_bundled_vocoder(converter):
    """The base new voices start from: PJS and the other singers, the bundled refiner's MelSpec, features and
    F0 tracker (so a voice made from it runs with the bundled vocoder), every singer with its F0 range, and a
    singer embedding that changes the refined mel."""
    from canora.io.models import BUNDLED_BASE
    from canora.refiner import Refiner

    base = Refiner.from_pretrained("bundled-base")
    assert base.source == str(BUNDLED_BASE) and "pjs" in base.singers and len(base.singers) >= 5
    assert base.spec == converter.spec and base.feature_params == converter.refiner.feature_params
    assert set(base.singer_f0_stats) == set(base.singers)
    assert sum(p.stat().st_size for p in BUNDLED_BASE.iterdir()) < 20 * 2**20
    t = np.arange(SR) / SR
    wav = (0.3 * sum(np.sin(2 * np.pi * k * 220 * t) / k for k in range(1, 10))).astype(np.float32)
    feats = base.features(wav, SR)
    a = base.refine_features(feats, "pjs", steps=2, seed=0).mel
    b = base.refine_features(feats, "guelen", steps=2, seed=0).mel  # a makam singer the base was trained on
    mix = base.refine_features(feats, "pjs:0.5,guelen:0.5", steps=2, seed=0).mel
    assert np.isfinite(mix).all() and np.abs(a - b).mean() > 0.01
    assert np.abs(mix - a).mean() < np.abs(b - a).mean()  # halfway, nearer than the other singer


@pytest.mark.slow
def test_bundled_vocoder_copy_synthesis_is_as_clean_as_the_recording():
    """Copy-synthesis of 6 s of a PJS song neither model trained on (088), from its own mel and F0: the
    frame-rate metrics stay within the issue's margins of the recording's own values (periodicity at lag = hop
    in audible unvoiced frames +0.1, lines at k * 86 Hz under notes +3 dB) and voiced HNR within 3 dB. The
    0.1 vocoder failed all three here (periodicity 0.92 vs 0.08, lines +11.6 vs +8.2 dB, HNR 8.3 vs 14.6 dB)."""
    from canora.dsp import artifacts
    from canora.dsp.mel import wav_to_mel
    from canora.io.audio import load_audio
    from canora.vocoder import Vocoder

    from .conftest import shared_file

    wav = load_audio(shared_file("pjs/pjs088_song.wav"), SR)[2 * SR: 8 * SR]
    voc = Vocoder.from_pretrained()
    mel = wav_to_mel(wav, voc.spec)
    ref = wav[: mel.shape[1] * 256]
    out = voc.vocode(mel, extract_f0(ref, SR, 256, mel.shape[1]))[: len(ref)]
    masks = artifacts.reference_masks(ref.astype(np.float64), SR, 256)
    assert masks.voiced.sum() > 100 and masks.audible_unvoiced.sum() > 10
    rec = artifacts.artifact_metrics(ref, SR, 256, masks, is_reference=True)
    got = artifacts.artifact_metrics(out, SR, 256, masks)
    tol = artifacts.TOLERANCE
    assert got.frame_rate_periodicity <= rec.frame_rate_periodicity + tol["frame_rate_periodicity"], (got, rec)
    assert got.frame_rate_line_db <= max(rec.frame_rate_line_db, 0.0) + tol["frame_rate_line_db"], (got, rec)
    assert got.hnr_db >= rec.hnr_db - tol["hnr_db"], (got, rec)
    # the vocoder follows the swift F0 it is given, which itself differs from harvest by > 50 cents in 6 % of
    # these frames; a frame-rate buzz takes Praat's error to 30 % and more
    assert got.gpe_harvest <= 0.15 and got.gpe_praat <= 0.08, (got, rec)


@pytest.mark.slow
def test_bundled_vocoder_pitch_is_on_time():
    """The vocoder's pitch sits where the recording's does: copy-synthesis of the sms-tools Carnatic phrase (fast
    ornaments, where timing shows as pitch error), pitch tracked every 32 samples on both, matches best with no
    shift (within +-64 samples). Before the NSF source put each frame's F0 on its mel frame's centre, the best
    shift was 128-192 samples (the output early) and 10 % of the frames were more than 50 cents off."""
    from canora.dsp.mel import wav_to_mel
    from canora.io.audio import load_audio
    from canora.vocoder import Vocoder

    from .conftest import shared_file

    wav = load_audio(shared_file("smstools/vignesh.wav"), SR)
    voc = Vocoder.from_pretrained()
    mel = wav_to_mel(wav, voc.spec)
    ref = wav[: mel.shape[1] * 256]
    out = voc.vocode(mel, extract_f0(ref, SR, 256, mel.shape[1]))[: len(ref)]
    hop, n = 32, len(ref) // 32
    a = extract_f0(ref, SR, hop, n, method="parselmouth")
    b = extract_f0(out, SR, hop, n, method="parselmouth")

    def mean_cents(lag: int) -> float:  # b later than a by lag frames when lag > 0
        x, y = (a[: n - lag], b[lag:]) if lag >= 0 else (a[-lag:], b[: n + lag])
        both = (x > 0) & (y > 0)
        return float(np.mean(np.minimum(np.abs(1200 * np.log2(y[both] / x[both])), 300)))

    errors = {lag * hop: mean_cents(lag) for lag in range(-8, 9)}
    best = min(errors, key=errors.get)
    assert abs(best) <= 64, errors
    assert errors[0] < 0.8 * errors[-128], errors  # half a frame early is clearly worse


@pytest.mark.slow
def test_the_bundled_idil_voice_converts_a_real_clip_into_her_range(converter):
    """The second bundled voice: listed, loaded by name, conditioned on the bundled learned content encoder like
    the base it was made from, its card states the data's licence and credit, and a real clip of another singer
    converts into it by whole octaves toward her median (298 Hz), following the source's pitch, and differs
    from the same clip converted into PJS."""
    from canora.io.audio import load_audio
    from canora.io.voices import BUNDLED_VOICES_DIR, bundled_voice_names
    from canora.refiner import Refiner

    from .conftest import shared_file

    assert "idil" in bundled_voice_names()
    card = (BUNDLED_VOICES_DIR / "idil" / "README.md").read_text()
    assert "CC BY 4.0" in card and "Universitat Pompeu Fabra" in card
    conv = Converter.from_pretrained(voice="idil")
    assert conv.refiner.singers == ["idil"]
    assert conv.refiner.feature_params == Refiner.from_pretrained("bundled-base").feature_params
    assert conv.refiner.feature_params.content_method == "learned"
    wav = load_audio(shared_file("vocadito/vocadito_14.wav"), SR)[2 * SR: 6 * SR]
    res = conv.convert(wav, SR, steps=3, seed=0)
    assert res.transpose % 12 == 0 and res.audio.shape == wav.shape and np.isfinite(res.audio).all()
    median_cents, gross = _follows(wav, res.audio, res.transpose)
    assert median_cents < 50 and gross < 0.15, (median_cents, gross)
    f_out = extract_f0(res.audio, SR, 256)
    assert 150 < np.median(f_out[f_out > 0]) < 600  # within an octave of her median
    pjs = converter.convert(wav, SR, steps=3, seed=0, transpose=res.transpose)
    assert np.abs(pjs.audio - res.audio).mean() > 0.01 * np.abs(wav).mean()
