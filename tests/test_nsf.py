"""The NSF-HiFi-GAN singing vocoder: sine source, generator, export through the Vocoder facade, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from canora.cli import main
from canora.dsp.mel import MelSpec, wav_to_mel
from canora.errors import CanoraError, MelError
from canora.training.loop import Loop
from canora.training.nsf import Clip, NSFTask, NSFTrainConfig, crop_batch, load_clips
from canora.vocoder import Vocoder
from canora.vocoder.nsf import NOISE_CHUNK, NSFConfig, NSFGenerator, SineSource

SPEC = MelSpec()
TINY = NSFConfig(upsample_initial_channel=16, resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 2),))


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


@pytest.mark.parametrize("design", ["smooth", "step"])
def test_sine_source_carries_the_pitch_and_keeps_it_exact_over_long_inputs(design):
    src = SineSource(22050, 256, harmonics=4, sine_amp=0.1, noise_std=0.0, kind=design)
    with torch.no_grad():
        src.merge.weight.zero_()
        src.merge.weight[0, 0] = 5.0  # the fundamental only
        src.merge.bias.zero_()
    frames = 22050 * 60 // 256
    x = src(torch.full((1, frames), 1000.0), torch.Generator().manual_seed(0))[0, 0].detach().numpy()
    # one minute in, the phase is still exact: the last second peaks at 1000 Hz
    assert abs(_peak_hz(x[-22050:], 22050) - 1000.0) <= 1.0 and abs(_peak_hz(x[:22050], 22050) - 1000.0) <= 1.0
    # unvoiced frames carry noise only (in the smooth design on its own channel, the harmonic channel silent)
    un = src(torch.zeros(1, 86), torch.Generator().manual_seed(0))[0].detach().numpy()
    assert 0.02 < np.std(un[-1]) < 0.5
    if design == "smooth":
        assert np.abs(un[0]).max() < 1e-6 and src.channels == 2


def test_smooth_source_glides_instead_of_stepping_at_frame_boundaries():
    """The smooth source's F0 and voicing change linearly between frame centres (frame t's value lands on
    sample t * hop + hop / 2, the centre of its mel frame): no jump at the frame rate, and no half-frame lead."""
    from canora.vocoder.nsf import glide_f0

    f0 = torch.tensor([[0.0, 200.0, 220.0, 220.0, 0.0, 0.0]])
    f, v = glide_f0(f0, 4)
    assert f.shape == v.shape == (1, 24)
    assert float(v[0, :2].abs().max()) == 0.0  # the first half of frame 0, before any note
    # from frame 0's centre to frame 1's the note fades in at its own pitch; then it glides 200 -> 220
    assert torch.allclose(f[0, 2:6], torch.full((4,), 200.0)) and torch.allclose(v[0, 2:6], torch.arange(4) / 4)
    assert torch.allclose(f[0, 6:10], torch.tensor([200.0, 205.0, 210.0, 215.0]))
    assert float(f[0, 10]) == 220.0 and float(v[0, 6]) == 1.0  # frame 2's centre: its own value, fully voiced
    # from frame 3's centre (last voiced) it fades out at its own pitch; frames 4-5 are silent after that
    assert torch.allclose(f[0, 14:18], torch.full((4,), 220.0)) and torch.allclose(v[0, 14:18], 1 - torch.arange(4) / 4)
    assert float(v[0, 18:].abs().max()) == 0.0
    assert float(torch.diff(f[0, 2:18]).abs().max()) <= 5.0  # no step larger than one glide increment


def test_harmonics_above_nyquist_are_silenced():
    src = SineSource(22050, 256, harmonics=8, sine_amp=0.1, noise_std=0.0)
    with torch.no_grad():
        src.merge.weight.zero_()
        src.merge.weight[0, 7] = 5.0  # harmonic 8 of 2 kHz = 16 kHz > 11.025 kHz
        src.merge.bias.zero_()
    x = src(torch.full((1, 20), 2000.0), torch.Generator().manual_seed(0))
    assert float(x[:, 0].detach().abs().max()) < 1e-6


def test_interpolating_generator_has_no_frame_rate_pattern():
    """A steady mel and silence in: the interpolating design puts out a steady signal (nothing repeats per
    frame), while the transposed-convolution design stamps a pattern every hop. Random weights show it."""
    steady = torch.full((1, 80, 40), -4.0)
    f0 = torch.zeros(1, 40)
    outs = {}
    for up in ("interpolate", "transposed"):
        cfg = NSFConfig(upsample_initial_channel=16, resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 2),),
                        upsample=up, source="smooth")
        torch.manual_seed(0)
        g = NSFGenerator.from_config(cfg).remove_weight_norm()
        with torch.no_grad():
            g.source.sine_amp = 0.0  # no noise either: what the network makes of the mel alone
            outs[up] = g(steady, f0)[0, 0, 20 * 256: 30 * 256].numpy()
    assert np.ptp(outs["interpolate"]) < 1e-5 * max(1e-3, np.abs(outs["interpolate"]).max()) + 1e-7
    assert np.ptp(outs["transposed"]) > 100 * (np.ptp(outs["interpolate"]) + 1e-9)


def test_generator_shapes_and_f0_mismatch():
    torch.manual_seed(0)
    g = NSFGenerator.from_config(TINY)
    y = g(torch.randn(2, 80, 10), torch.full((2, 10), 220.0))
    assert y.shape == (2, 1, 10 * 256) and float(y.abs().max()) <= 1.0
    with pytest.raises(CanoraError, match="does not fit the mel"):
        g(torch.randn(2, 80, 10), torch.full((2, 9), 220.0))
    with pytest.raises(CanoraError, match="invalid NSF"):
        NSFConfig(upsample_rates=(8, 8), upsample_kernel_sizes=(16,))


@pytest.mark.slow
def test_export_round_trip_through_the_vocoder_facade(tmp_path, synth_clip):
    wav, sr = synth_clip
    torch.manual_seed(0)
    voc = Vocoder(NSFGenerator.from_config(TINY), SPEC, TINY, "tiny")
    assert voc.needs_f0 and not voc.generator.has_weight_norm
    mel = wav_to_mel(wav, SPEC)
    f0 = np.full(mel.shape[1], 220.0, np.float32)
    a = voc.vocode(mel, f0)
    voc.export(tmp_path / "v")
    doc = json.loads((tmp_path / "v" / "model.json").read_text())
    assert doc["kind"] == "nsf-hifigan" and doc["config"]["upsample_initial_channel"] == 16
    back = Vocoder.from_pretrained(tmp_path / "v")
    assert back.needs_f0 and back.config == TINY and back.spec == SPEC
    assert np.array_equal(back.vocode(mel, f0), a) and a.shape == (mel.shape[1] * 256,)
    # without F0 the facade estimates it from the mel (Griffin-Lim + tracker): same length, finite
    est = back.vocode(mel)
    assert est.shape == a.shape and np.isfinite(est).all()
    with pytest.raises(MelError, match="one value per frame"):
        back.vocode(mel, f0[:-1])
    with pytest.raises(MelError, match="negative"):
        back.vocode(mel, -f0)


@pytest.mark.slow
def test_f0_from_mel_finds_the_pitch_of_a_sung_tone(synth_clip):
    from canora.vocoder.api import f0_from_mel

    wav, _ = synth_clip
    f0 = f0_from_mel(wav_to_mel(wav, SPEC), SPEC)
    voiced = f0 > 0
    assert voiced.mean() > 0.6
    cents = 1200 * np.log2(np.median(f0[voiced]) / 220.0)
    assert abs(cents) < 50


def test_crops_pad_short_clips_with_the_log_floor():
    clip = Clip("short", np.zeros((80, 5), np.float32), np.full(5, 200.0, np.float32), np.ones(5 * 256, np.float32))
    mel, f0, y = crop_batch([clip], [0], 8, SPEC, torch.Generator().manual_seed(0))
    assert mel.shape == (1, 80, 8) and f0.shape == (1, 8) and y.shape == (1, 1, 8 * 256)
    assert torch.all(mel[0, :, 5:] == SPEC.log_floor) and torch.all(f0[0, 5:] == 0)
    assert torch.all(y[0, 0, 5 * 256:] == 0)


@pytest.fixture
def wav_dir(tmp_path):
    from canora.io.audio import load_audio, save_wav

    from .conftest import shared_file

    d = tmp_path / "wavs"
    d.mkdir()
    wav = load_audio(shared_file("pjs/pjs001_song.wav"), 22050)
    for i in range(3):
        save_wav(d / f"clip{i}.wav", wav[(i + 1) * 22050 * 3: (i + 2) * 22050 * 3], 22050)
    return d


def _cfg(wav_dir, out, **kw) -> NSFTrainConfig:
    base = dict(wavs=str(wav_dir), model=TINY.to_dict(), steps=4, batch_size=2, segment_frames=8,
                val_count=1, val_every=2, checkpoint_every=2, log_every=1, cache_dir=str(out.parent / "cache"))
    return NSFTrainConfig(**{**base, **kw})


def NSFTrainer(cfg: NSFTrainConfig, out, progress: bool = False) -> Loop:  # noqa: N802
    return Loop(NSFTask(cfg), out, progress=progress)


@pytest.mark.slow
def test_training_lowers_the_loss_on_real_singing(wav_dir, tmp_path):
    cfg = _cfg(wav_dir, tmp_path / "run", steps=40, lr=2e-3, checkpoint_every=40, val_every=0, log_every=0)
    tr = NSFTrainer(cfg, tmp_path / "run")
    losses = [tr.step_once()["loss_mel"] for _ in range(40)]
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8])


@pytest.mark.slow
def test_resume_continues_at_the_same_step_with_the_same_weights(wav_dir, tmp_path):
    straight = NSFTrainer(_cfg(wav_dir, tmp_path / "a", steps=4), tmp_path / "a")
    straight.run()
    half = NSFTrainer(_cfg(wav_dir, tmp_path / "b", steps=2), tmp_path / "b")
    half.run()
    resumed = NSFTrainer(_cfg(wav_dir, tmp_path / "b", steps=4), tmp_path / "b")
    resumed.prepare()
    assert resumed.step == 2
    resumed.run()
    assert resumed.step == 4
    for (k, a), b in zip(straight.task.generator.state_dict().items(),
                         resumed.task.generator.state_dict().values()):
        assert torch.equal(a, b), k
    voc = Vocoder.from_pretrained(tmp_path / "b" / "export")
    assert voc.needs_f0 and json.loads((tmp_path / "b" / "export" / "model.json").read_text())["meta"][
        "trained_steps"] == 4
    log = [json.loads(line) for line in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert any("val/mel_l1" in r for r in log)


@pytest.mark.slow
def test_adversarial_phase_updates_the_discriminators(wav_dir, tmp_path):
    tr = NSFTrainer(_cfg(wav_dir, tmp_path / "run", recon_steps=1, disc_width_div=8), tmp_path / "run")
    tr.prepare()
    before = [p.detach().clone() for p in tr.task.mpd.parameters()]
    assert "loss_disc" not in tr.step_once()
    out = tr.step_once()
    assert {"loss_disc", "loss_adv", "loss_fm"} <= set(out)
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.task.mpd.parameters()))


def test_cli_nsf_refuses_options_it_does_not_take(capsys, tmp_path, wav_dir):
    code = main(["train-vocoder", "--arch", "nsf", "--wavs", str(wav_dir), "--out", str(tmp_path / "o"),
                 "--init-from", str(tmp_path)])
    assert code == 2 and "--init-from" in capsys.readouterr().err


def test_unvoiced_or_unreadable_training_files_are_skipped(tmp_path, wav_dir, caplog):
    (wav_dir / "broken.wav").write_text("not audio")
    clips = load_clips(sorted(wav_dir.iterdir()), SPEC, None, progress=False)
    assert len(clips) == 3 and "broken.wav" in caplog.text


@pytest.mark.parametrize("design", ["smooth", "step"])
def test_vocoding_in_pieces_with_the_running_phase_continues_the_source(design):
    """The second half of a note, vocoded on its own with ``start_phase = frame_cycles(whole)[k]`` and
    ``start_frame = k``, is driven by exactly the source samples the whole note would have had, noise included
    (no phase jump where pieces meet, and no noise pattern that repeats once per piece)."""
    cfg = NSFConfig(upsample_initial_channel=16, resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 2),),
                    noise_std=0.01, source=design, upsample="interpolate" if design == "smooth" else "transposed")
    torch.manual_seed(0)
    voc = Vocoder(NSFGenerator.from_config(cfg), SPEC, cfg, "tiny")
    captured: list[torch.Tensor] = []
    voc.generator.source.register_forward_hook(lambda m, i, o: captured.append(o[0].clone()))
    frames = 40
    f0 = (330.0 * 2 ** (0.5 * np.sin(np.arange(frames) / 5) / 12)).astype(np.float32)
    f0[25:29] = 0.0  # a breath inside: the phase must stay aligned across it, and its noise the same
    mel = np.full((80, frames), -5.0, np.float32)
    voc.vocode(mel, f0)
    k = 17
    voc.vocode(mel[:, k:], f0[k:], start_phase=voc.frame_cycles(f0)[k] % 1.0, start_frame=k)
    whole, second = captured
    # identical but for the piece's first half frame (smooth; it cannot see the frame before it) and its last
    # frame (it cannot see the frame after it)
    lead = 128 if design == "smooth" else 0
    assert torch.allclose(whole[:, k * 256 + lead: (frames - 1) * 256], second[:, lead: (frames - 1 - k) * 256],
                          atol=1e-4)
    voc.vocode(mel[:, k:], f0[k:])  # without the phase and place: another source (the jump the pipeline avoids)
    assert not torch.allclose(whole[:, k * 256:], captured[-1], atol=1e-2)


@pytest.mark.slow
def test_harmonics_by_recurrence_equal_each_sine_evaluated_apart():
    """The smooth source's mix of 64 harmonics (one complex product per harmonic) is the direct sum of
    w_h * sin(2 pi (h * cycles + start_h)) over the harmonics below Nyquist, over a long glide whose high
    harmonics cross Nyquist (a wrong rotation, mask or accumulation shows at 1e-2)."""
    import math

    torch.manual_seed(1)
    src = SineSource(22050, 256, 64, 0.1, 0.003, "smooth")
    frames = 400
    f0 = torch.tensor(150.0 * 2 ** (np.linspace(0, 2, frames) + 0.2 * np.sin(np.arange(frames) / 6)),
                      dtype=torch.float32)[None]
    start = torch.rand(1, 64, dtype=torch.float64)
    fs, _ = src.sample_f0(f0)
    cycles = torch.cumsum(fs.double() / 22050, dim=1)
    h = torch.arange(1, 65, dtype=torch.float64)
    direct = torch.zeros(fs.shape[1], dtype=torch.float64)
    for k in range(0, fs.shape[1], 8192):  # chunks keep the (N, 64) float64 table small
        c, f = cycles[0, k: k + 8192, None], fs[0, k: k + 8192, None].double()
        sines = torch.sin(2 * math.pi * (c * h + start[0])) * (f * h < 11025)
        direct[k: k + 8192] = sines @ src.merge.weight[0].double()
    with torch.no_grad():
        fast = src._mixed_harmonics(fs, start)[0]
    assert (fs[0] * 64 > 11025).any() and (fs[0] * 64 < 11025).any()
    assert float((fast.double() - direct).abs().max()) < 1e-5 * float(src.merge.weight.abs().sum())
    # a low note keeps all 64 harmonics below Nyquist (no mask at all); silence has none audible but is finite
    low = torch.full((1, 2560), 110.0)
    cyc = torch.cumsum(low.double() / 22050, dim=1)
    ref = (torch.sin(2 * math.pi * (cyc[0, :, None] * h + start[0])) @ src.merge.weight[0].double())
    with torch.no_grad():
        assert float((src._mixed_harmonics(low, start)[0].double() - ref).abs().max()) < 1e-5 * 64
        assert torch.isfinite(src._mixed_harmonics(torch.zeros(1, 256), start)).all()


def test_smooth_source_noise_is_quieter_where_voiced():
    """``voiced_noise`` K: the noise channel is K x sine_amp inside notes, sine_amp in breaths, and follows the
    gliding voicing between (one frame's fade); the harmonic channel and K = 1 are as before."""
    f0 = torch.zeros(1, 80)
    f0[0, 20:60] = 220.0
    noise = torch.randn(1, 80 * 256, 1, generator=torch.Generator().manual_seed(0))
    plain = SineSource(22050, 256, 8, 0.1, 0.003, "smooth")
    quiet = SineSource(22050, 256, 8, 0.1, 0.003, "smooth", voiced_noise=0.25)
    quiet.load_state_dict(plain.state_dict())
    with torch.no_grad():
        a, b = plain(f0, None, torch.zeros(1, 8), noise), quiet(f0, None, torch.zeros(1, 8), noise)
    torch.testing.assert_close(a[:, 0], b[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(a[0, 1], 0.1 * noise[0, :, 0], rtol=0, atol=1e-7)
    _, v = quiet.sample_f0(f0)
    torch.testing.assert_close(b[0, 1], 0.1 * noise[0, :, 0] * (1 - 0.75 * v[0]), rtol=0, atol=1e-7)
    inside, outside = slice(25 * 256, 55 * 256), slice(0, 15 * 256)
    assert abs(float(b[0, 1, inside].std()) - 0.025) < 0.002 and abs(float(b[0, 1, outside].std()) - 0.1) < 0.008
    fade = v[0, 19 * 256 + 128: 20 * 256 + 129]  # frame 19's centre (unvoiced) to frame 20's (voiced)
    assert float(fade[0]) == 0.0 and float(fade[-1]) == 1.0 and bool((fade.diff() > 0).all())
    cfg = NSFConfig.from_dict({**TINY.to_dict(), "voiced_noise": 0.25})
    assert NSFGenerator.from_config(cfg).source.voiced_noise == 0.25
    assert NSFConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in TINY.to_dict().items() if k != "voiced_noise"}  # an export from before the field
    assert NSFConfig.from_dict(old).voiced_noise == 1.0
    with pytest.raises(CanoraError, match="voiced_noise"):
        NSFConfig(voiced_noise=1.5)
    with pytest.raises(CanoraError, match="smooth source"):  # canora 0.1's step source would ignore it
        NSFConfig(source="step", upsample="transposed", harmonics=8, voiced_noise=0.3)


def test_source_noise_is_tied_to_the_place_in_the_song():
    """Any piece of the song gets the samples the whole song has there, across chunk boundaries; another
    seed or batch item gets other noise, and a piece at another place is not a copy of the first piece."""
    src = SineSource(22050, 256, 8, 0.1, 0.003, "smooth")
    whole = src.stream_noise(7, 0, 3 * NOISE_CHUNK, batch=2)
    assert whole.shape == (2, 3 * NOISE_CHUNK, 1) and abs(float(whole.std()) - 1.0) < 0.02
    a = NOISE_CHUNK - 1000
    assert torch.equal(src.stream_noise(7, a, 5000, batch=2), whole[:, a: a + 5000])
    assert not torch.allclose(whole[0], whole[1])
    assert not torch.allclose(src.stream_noise(8, 0, 5000)[0], whole[0, :5000])
    assert not torch.allclose(whole[0, 2304: 2304 + 5000], whole[0, :5000])
    assert src.stream_noise(7, 0, 0).shape == (1, 0, 1)
    step = SineSource(22050, 256, 8, 0.1, 0.003, "step")
    assert step.stream_noise(0, 100, 300).shape == (1, 300, 8)
    with pytest.raises(CanoraError, match="noise"):
        src(torch.full((1, 4), 200.0), noise=torch.zeros(1, 5, 1))


def test_odd_upsampling_strides_fit():
    cfg = NSFConfig(upsample_rates=(5, 5, 4, 3), upsample_kernel_sizes=(11, 11, 8, 7), upsample_initial_channel=32,
                    resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 2),))
    y = NSFGenerator.from_config(cfg)(torch.randn(1, 80, 6), torch.full((1, 6), 200.0))
    assert y.shape == (1, 1, 6 * 300)


@pytest.mark.slow
def test_resume_keeps_the_adversarial_phase_unless_told(wav_dir, tmp_path):
    NSFTrainer(_cfg(wav_dir, tmp_path / "run", steps=2, recon_steps=1, disc_width_div=8), tmp_path / "run").run()
    resumed = NSFTrainer(_cfg(wav_dir, tmp_path / "run", steps=3, disc_width_div=8), tmp_path / "run")
    resumed.prepare()
    assert resumed.step == 2 and resumed.task.cfg.recon_steps == 1 and resumed.task.cfg.steps == 3


@pytest.mark.slow
def test_init_from_an_export_starts_where_it_ended(wav_dir, tmp_path):
    """--init-from EXPORT: the new run's generator computes exactly what the export computes, discriminators
    fresh (how the bundled vocoder's adversarial phase continues its reconstruction phase)."""
    NSFTrainer(_cfg(wav_dir, tmp_path / "a", steps=2), tmp_path / "a").run()
    export = tmp_path / "a" / "export"
    tr = NSFTrainer(_cfg(wav_dir, tmp_path / "b", steps=3, recon_steps=0, disc_width_div=8,
                         init_from=str(export)), tmp_path / "b")
    tr.prepare()
    voc = Vocoder.from_pretrained(export)
    mel = torch.full((1, 80, 12), -4.0)
    f0 = torch.full((1, 12), 220.0)
    with torch.no_grad():
        ours = tr.task.generator.eval()(mel, f0, torch.Generator().manual_seed(3))
        theirs = voc.generator(mel, f0, torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    assert tr.task.generator.has_weight_norm  # trainable again
    other = NSFConfig(upsample_initial_channel=32, resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 2),))
    with pytest.raises(CanoraError, match="NSF config differs"):
        NSFTrainer(_cfg(wav_dir, tmp_path / "c", model=other.to_dict(), init_from=str(export)), tmp_path / "c").run()
    # the source's voiced noise level has no weights: a fine-tune may set another, and its export keeps it
    quiet = {**TINY.to_dict(), "voiced_noise": 0.3}
    NSFTrainer(_cfg(wav_dir, tmp_path / "d", steps=1, model=quiet, init_from=str(export)), tmp_path / "d").run()
    quiet_export = json.loads((tmp_path / "d" / "export" / "model.json").read_text())
    assert quiet_export["config"]["voiced_noise"] == 0.3
    assert quiet_export["meta"]["trained_steps"] == 3  # 2 of the export it started from + 1


@pytest.mark.slow
def test_cli_voiced_noise_sets_the_fine_tunes_source(wav_dir, tmp_path, capsys):
    NSFTrainer(_cfg(wav_dir, tmp_path / "a", steps=1), tmp_path / "a").run()
    code = main(["train-vocoder", "--arch", "nsf", str(wav_dir), "-o", str(tmp_path / "b"), "--init-from",
                 str(tmp_path / "a" / "export"), "--voiced-noise", "0.4", "--steps", "1", "--batch-size", "1",
                 "--segment-size", "2048", "--val-count", "0", "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, capsys.readouterr().err
    assert Vocoder.from_pretrained(tmp_path / "b" / "export").config.voiced_noise == 0.4
    code = main(["train-vocoder", str(wav_dir), "-o", str(tmp_path / "c"), "--voiced-noise", "0.4"])
    assert code == 2 and "--arch nsf" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:  # out of [0, 1]: argparse names the flag
        main(["train-vocoder", "--arch", "nsf", str(wav_dir), "-o", str(tmp_path / "d"), "--voiced-noise", "2"])
    assert bad.value.code == 2 and "--voiced-noise" in capsys.readouterr().err


@pytest.mark.parametrize("hop", [5, 8, 255, 256])
def test_piece_start_phases_continue_the_song_for_even_and_odd_hops(hop):
    """A piece of a song from frame k, started at ``frame_cycles(song)[k]``, has the song's source phase from
    frame k's centre (sample k * hop + ceil(hop / 2)) on, whatever the hop and around unvoiced frames."""
    from canora.vocoder import excitation

    rng = np.random.default_rng(hop)
    f0 = 200.0 * 2 ** rng.uniform(-1, 1, 40)
    f0[[0, 7, 8, 20, 39]] = 0.0
    sr = 22050
    song, _ = excitation.sample_f0(f0[None], hop, "smooth")
    phase = np.cumsum(song[0]) / sr  # cycles after each sample
    cycles = excitation.frame_cycles(f0, hop, sr, "smooth")
    lead = hop - hop // 2
    for k in (1, 7, 8, 9, 21, 38):
        piece, _ = excitation.sample_f0(f0[None, k:], hop, "smooth")
        mine = cycles[k] + np.cumsum(piece[0]) / sr
        np.testing.assert_allclose(mine[lead:], phase[k * hop + lead:], atol=1e-9)
        np.testing.assert_allclose(piece[0, lead:], song[0, k * hop + lead:], rtol=1e-12)


# ---------------------------------------------------------------------- refined mels (the sound recipe)
@pytest.fixture
def tiny_refiner(tmp_path, wav_dir):
    """A tiny refiner export for singer "pjs" with the default features' content dim."""
    from canora.conditioning import FeatureParams, extract_features
    from canora.io.audio import load_audio

    from .test_refiner import make_refiner

    wav = load_audio(sorted(wav_dir.iterdir())[0], 22050)
    content_dim = extract_features(wav, SPEC, FeatureParams()).content.shape[0]
    return make_refiner(content_dim=content_dim, singers=("pjs",)).export(tmp_path / "refiner")


@pytest.mark.slow
def test_refined_mels_replace_the_real_ones_and_are_made_once(wav_dir, tmp_path, tiny_refiner, monkeypatch):
    """--refiner: each clip gets the refiner's reconstruction of its own frames (cached), training crops and
    validation use it against the real audio, and the export says how its mels were made."""
    from canora.training import vocoder_data

    calls = []
    real_call = vocoder_data.RefinerReconstruction.__call__
    monkeypatch.setattr(vocoder_data.RefinerReconstruction, "__call__",
                        lambda self, wav, sr: calls.append(1) or real_call(self, wav, sr))
    cfg = _cfg(wav_dir, tmp_path / "run", steps=2, refiner=str(tiny_refiner), singer="pjs", refiner_steps=2)
    tr = NSFTrainer(cfg, tmp_path / "run")
    tr.prepare()
    task = tr.task
    assert len(calls) == 3 and len(task.train) == 2 and len(task.val) == 1
    for c in task.train:
        stored = np.load(tmp_path / "run" / "refined_mels" / f"{c.name}.npy")
        assert c.refined is not None and c.refined.shape == c.mel.shape
        np.testing.assert_array_equal(c.refined, stored)
        assert np.abs(c.refined - c.mel).mean() > 0.05  # the refiner changed it
    assert task.val[0].mel is task.val[0].refined  # validation scores what conversions feed
    gen = torch.Generator().manual_seed(0)
    mel, _, audio = crop_batch(task.train, [0], task.train[0].mel.shape[1], SPEC, gen, refined_share=1.0)
    np.testing.assert_array_equal(mel[0].numpy(), task.train[0].refined)
    np.testing.assert_array_equal(audio[0, 0].numpy(), task.train[0].audio)  # the real waveform
    tr.run()
    meta = json.loads((tmp_path / "run" / "export" / "model.json").read_text())["meta"]
    assert meta["refined_mels"] == {"refiner": str(tiny_refiner), "singer": "pjs", "strength": 0.6, "steps": 2,
                                    "share": 1.0}
    resumed = NSFTrainer(_cfg(wav_dir, tmp_path / "run", steps=3, refiner=str(tiny_refiner), singer="pjs",
                              refiner_steps=2), tmp_path / "run")
    resumed.run()
    assert resumed.step == 3 and len(calls) == 3  # resumed on the cached reconstructions


def test_refined_share_mixes_refined_and_real_crops():
    mel, ref = np.zeros((80, 8), np.float32), np.ones((80, 8), np.float32)
    clip = Clip("c", mel, np.full(8, 200.0, np.float32), np.zeros(8 * 256, np.float32), refined=ref)
    gen = torch.Generator().manual_seed(0)
    picks = [float(crop_batch([clip], [0], 8, SPEC, gen, refined_share=0.3)[0].mean()) for _ in range(400)]
    assert set(picks) == {0.0, 1.0} and 0.22 < np.mean(picks) < 0.38
    assert float(crop_batch([clip], [0], 8, SPEC, gen, refined_share=0.0)[0].mean()) == 0.0
    assert float(crop_batch([clip], [0], 8, SPEC, gen)[0].mean()) == 0.0  # no share given: the real mel
    with pytest.raises(CanoraError, match="refined_share"):
        NSFTrainConfig(wavs="w", refined_share=1.5)


@pytest.mark.slow
def test_cli_nsf_fine_tunes_on_refined_mels(wav_dir, tmp_path, tiny_refiner, capsys):
    code = main(["train-vocoder", "--arch", "nsf", str(wav_dir), "-o", str(tmp_path / "run"), "--refiner",
                 str(tiny_refiner), "--refiner-steps", "1", "--refined-share", "0.5", "--steps", "1",
                 "--batch-size", "1", "--segment-size", "2048", "--val-count", "0", "--cache-dir",
                 str(tmp_path / "cache"), "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    meta = json.loads((tmp_path / "run" / "export" / "model.json").read_text())["meta"]["refined_mels"]
    assert (meta["share"], meta["steps"], meta["singer"]) == (0.5, 1, "pjs")
    assert len(list((tmp_path / "run" / "refined_mels").glob("*.npy"))) == 3
    code = main(["train-vocoder", "--arch", "nsf", str(wav_dir), "-o", str(tmp_path / "b"), "--refined-share", "0.5"])
    assert code == 2 and "need --refiner" in capsys.readouterr().err
    code = main(["train-vocoder", str(wav_dir), "-o", str(tmp_path / "c"), "--refiner", str(tiny_refiner),
                 "--refined-share", "0.5"])
    assert code == 2 and "--arch nsf" in capsys.readouterr().err
