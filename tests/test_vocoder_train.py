"""HiFi-GAN training: discriminator layout and official key names, one step, mel-loss descent on real singing,
official g_/do_ files both ways, exact resume, torchrun DDP, mel/audio pairing, padding, NaN handling."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

from canora.dsp.mel import MelSpec, read_config, wav_to_mel
from canora.errors import CanoraError, MelError
from canora.io.audio import load_audio, save_wav
from canora.io.checkpoint import load_torch_file
from canora.training import hifigan
from canora.training.hifigan import HiFiGANTask, TrainConfig
from canora.training.loop import Loop, TrainingDiverged
from canora.training.vocoder_data import LoadReport, SegmentDataset, check_mel_dir, load_mel_items, load_wav_items
from canora.vocoder import discriminators as disc
from canora.vocoder.api import Vocoder
from canora.vocoder.hifigan import Generator, GeneratorConfig, from_official_keys, to_official_keys
from tests.conftest import TINY_HIFIGAN, shared_file

SR = 22050
SEG = 2048


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def _few_threads() -> None:
    """One thread: these small convolutions run several times slower with two on a loaded 2-core machine."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def run_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 3 s sung clip (PJS, 22050 Hz) in wavs/, a tiny HiFi-GAN config, and filelists naming the clip."""
    src = shared_file("pjs/pjs001_song.wav")
    root = tmp_path_factory.mktemp("vocoder_train")
    wavs = root / "wavs"
    wavs.mkdir()
    wav = load_audio(src, SR)
    save_wav(wavs / "clip.wav", wav[int(2.0 * SR): int(5.0 * SR)], SR, subtype="FLOAT")
    cfg = root / "tiny.json"
    cfg.write_text(json.dumps({**read_config("v1"), **TINY_HIFIGAN}))
    lst = root / "list.txt"
    lst.write_text("clip|some transcript\n")
    return {"wavs": wavs, "config": cfg, "list": lst, "root": root}


class Run(NamedTuple):
    cfg: TrainConfig
    out: Path


def tiny_cfg(files: dict[str, Path], out: Path, **kw) -> Run:
    base = dict(wavs=str(files["wavs"]), config=str(files["config"]), train_list=str(files["list"]),
                val_list=str(files["list"]), steps=2, batch_size=2, segment_size=SEG, disc_width_div=8,
                checkpoint_every=0, val_every=0, log_every=1, seed=7)
    base.update(kw)
    return Run(TrainConfig(**base), out)


def train_vocoder(run: Run, progress: bool = False, mel_source=None) -> Path | None:  # noqa: ANN001
    return hifigan.train_vocoder(run.cfg, run.out, progress=progress, mel_source=mel_source)


def Trainer(run: Run, progress: bool = False) -> Loop:  # noqa: N802
    return Loop(HiFiGANTask(run.cfg), run.out, progress=progress)


def _params(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


# ---------------------------------------------------------------------- official layout
def official_disc_shapes() -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """The official MPD / MSD state-dict names and shapes, written out from the official layer layout."""
    mpd: dict[str, tuple[int, ...]] = {}
    chans = [(1, 32), (32, 128), (128, 512), (512, 1024), (1024, 1024)]
    for i in range(5):
        layers = [(f"convs.{j}", a, b, (5, 1)) for j, (a, b) in enumerate(chans)] + [("conv_post", 1024, 1, (3, 1))]
        for name, a, b, k in layers:
            p = f"discriminators.{i}.{name}"
            mpd |= {f"{p}.weight_g": (b, 1, 1, 1), f"{p}.weight_v": (b, a, *k), f"{p}.bias": (b,)}
    msd: dict[str, tuple[int, ...]] = {}
    layers = [(1, 128, 15, 1), (128, 128, 41, 4), (128, 256, 41, 16), (256, 512, 41, 16), (512, 1024, 41, 16),
              (1024, 1024, 41, 16), (1024, 1024, 5, 1)]
    for i in range(3):
        for j, (a, b, k, g) in enumerate([*layers, (1024, 1, 3, 1)]):
            p = f"discriminators.{i}.{'conv_post' if j == len(layers) else f'convs.{j}'}"
            if i == 0:  # spectral norm
                msd |= {f"{p}.weight_orig": (b, a // g, k), f"{p}.weight_u": (b,), f"{p}.weight_v": (a // g * k,)}
            else:
                msd |= {f"{p}.weight_g": (b, 1, 1), f"{p}.weight_v": (b, a // g, k)}
            msd[f"{p}.bias"] = (b,)
    return mpd, msd


@pytest.mark.slow
def test_official_discriminator_state_dicts_load_strictly_and_map_back():
    """A hand-built state dict in official (legacy) names loads strictly; mapping back gives the same tensors."""
    g = torch.Generator().manual_seed(0)
    for model, shapes in zip((disc.MultiPeriodDiscriminator(), disc.MultiScaleDiscriminator()),
                             official_disc_shapes()):
        official = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
        model.load_state_dict(disc.from_official_keys(official), strict=True)
        back = disc.to_official_keys(model.state_dict())
        assert set(back) == set(official)
        for k, v in official.items():
            assert torch.equal(back[k], v), k
        # the parameter order (what optimizer states index) is the legacy one: bias, then weight_g/v or weight_orig
        names = [n for n, _ in model.named_parameters()][:3]
        assert names[0].endswith(".bias") and "parametrizations.weight.original" in names[1]


def test_discriminators_shapes_and_narrow_variant():
    y = torch.randn(2, 1, SEG) * 0.1
    for d in (disc.MultiPeriodDiscriminator(width_div=8), disc.MultiScaleDiscriminator(width_div=8)):
        real, fake, fr, fg = d(y, y.flip(-1))
        assert len(real) == len(fake) == len(fr) == len(fg) == len(d.discriminators)
        assert all(r.shape[0] == 2 and r.dim() == 2 for r in real)
    with pytest.raises(CanoraError, match="width divisor"):
        disc.MultiScaleDiscriminator(width_div=3)


# ---------------------------------------------------------------------- training
@pytest.mark.slow
def test_training_updates_all_models_and_lowers_mel_loss(run_files, tmp_path):
    """One step changes the generator and both discriminators; 20 steps lower the validation mel L1."""
    tr = Trainer(tiny_cfg(run_files, tmp_path / "run", steps=20, lr=1e-3), progress=False)
    ctx = tr.prepare()
    t = tr.task
    before = {"g": _params(t.generator), "mpd": _params(t.mpd), "msd": _params(t.msd)}
    mel_before = t.validate(ctx, 0)["mel_l1"]
    losses = tr.step_once()
    assert tr.step == 1 and np.isfinite(losses["loss_disc"]) and np.isfinite(losses["loss_gen_all"])
    for name, model in (("g", t.generator), ("mpd", t.mpd), ("msd", t.msd)):
        after = model.state_dict()
        changed = [k for k, v in before[name].items() if v.is_floating_point() and not torch.equal(v, after[k])]
        assert changed, f"{name} did not change in one step"
    for _ in range(19):
        tr.step_once()
    mel_after, samples = t.validate(ctx, tr.step)["mel_l1"], t.samples
    assert mel_after < mel_before - 0.1, (mel_before, mel_after)
    assert samples[0][1].shape == samples[0][2].shape


@pytest.mark.slow
def test_checkpoints_in_official_layout_both_ways(run_files, tmp_path):
    """g_/do_ files (full-size official discriminators) hold official key names; they load into freshly built
    models and map back to identical tensors; the generator also loads with Vocoder.from_pretrained."""
    out = tmp_path / "run"
    g_path = train_vocoder(tiny_cfg(run_files, out, steps=1, batch_size=1, segment_size=1024, disc_width_div=1),
                           progress=False)
    assert g_path == out / "g_00000001"
    g = load_torch_file(g_path)
    assert set(g) == {"generator"}
    assert not any("parametrizations" in k for k in g["generator"]) and "conv_pre.weight_g" in g["generator"]
    gen = Generator.from_config(GeneratorConfig.from_hifigan_config(read_config(run_files["config"])))
    gen.load_state_dict(from_official_keys(g["generator"]), strict=True)
    back = to_official_keys(gen.state_dict())
    assert all(torch.equal(back[k], v) for k, v in g["generator"].items()) and set(back) == set(g["generator"])

    do = load_torch_file(out / "do_00000001")
    assert {"mpd", "msd", "optim_g", "optim_d", "steps", "epoch"} <= set(do) and do["steps"] == 1
    mpd_shapes, msd_shapes = official_disc_shapes()
    for key, shapes, model in (("mpd", mpd_shapes, disc.MultiPeriodDiscriminator()),
                               ("msd", msd_shapes, disc.MultiScaleDiscriminator())):
        assert {k: tuple(v.shape) for k, v in do[key].items()} == shapes
        model.load_state_dict(disc.from_official_keys(do[key]), strict=True)
        back = disc.to_official_keys(model.state_dict())
        assert all(torch.equal(back[k], v) for k, v in do[key].items())
    n_g = sum(p.numel() for p in gen.parameters())
    assert sum(t.numel() for t in do["optim_g"]["state"][0].values() if t.dim()) > 0
    assert len(do["optim_g"]["state"]) == len(list(gen.parameters())) and n_g > 0
    voc = Vocoder.from_pretrained(out)  # config.json beside it
    assert voc.spec == MelSpec.from_hifigan_config(read_config(run_files["config"]))
    assert json.loads((out / "config.json").read_text())["segment_size"] == 1024


@pytest.mark.slow
def test_resume_continues_at_next_step_exactly(run_files, tmp_path):
    """2 steps + resume to 3 equals 3 uninterrupted steps; the resumed optimizer state is the saved one."""
    straight = train_vocoder(tiny_cfg(run_files, tmp_path / "a", steps=3), progress=False)
    cfg_b = tiny_cfg(run_files, tmp_path / "b", steps=2, checkpoint_every=2)
    train_vocoder(cfg_b, progress=False)
    tr = Trainer(cfg_b._replace(cfg=replace(cfg_b.cfg, steps=3)), progress=False)
    tr.prepare()
    assert tr.step == 2
    saved = load_torch_file(tmp_path / "b" / "do_00000002")["optim_g"]
    now = tr.task.opt_g.state_dict()
    assert now["state"].keys() == saved["state"].keys()
    for i, st in saved["state"].items():
        for k, v in st.items():
            assert torch.equal(now["state"][i][k], v)
    resumed = tr.run()
    assert resumed == tmp_path / "b" / "g_00000003"
    a, b = load_torch_file(straight)["generator"], load_torch_file(resumed)["generator"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(run_files, tmp_path):
    """`torchrun --nproc_per_node 2` (gloo): both processes train, rank 0 saves a loadable checkpoint."""
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.is_file():
        pytest.skip(f"{torchrun} not found")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "canora", "train-vocoder",
           "--wavs", str(run_files["wavs"]), "--out", str(out), "--config", str(run_files["config"]),
           "--train-list", str(run_files["list"]), "--steps", "3", "--batch-size", "2", "--segment-size", str(SEG),
           "--disc-width-div", "8", "--checkpoint-every", "0", "--val-every", "0", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stderr
    assert (out / "g_00000003").is_file() and (out / "do_00000003").is_file()
    voc = Vocoder.from_pretrained(out / "g_00000003")
    assert voc.vocode(np.full((80, 8), -5.0, np.float32)).shape == (8 * 256,)
    do = load_torch_file(out / "do_00000003")
    assert do["steps"] == 3 and json.loads(do["canora"]["train_config"])["steps"] == 3
    disc.MultiPeriodDiscriminator(width_div=8).load_state_dict(disc.from_official_keys(do["mpd"]), strict=True)


@pytest.mark.slow
def test_nan_loss_stops_with_step_and_last_good_checkpoint(run_files, tmp_path):
    out = tmp_path / "run"
    train_vocoder(tiny_cfg(run_files, out, steps=2, checkpoint_every=2), progress=False)
    tr = Trainer(tiny_cfg(run_files, out, steps=4, checkpoint_every=1), progress=False)
    tr.prepare()
    with torch.no_grad():
        tr.task.generator.conv_post.parametrizations.weight.original1.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"step 3.*g_00000002"):
        tr.run()
    assert sorted(p.name for p in out.glob("g_*")) == ["g_00000002"]
    assert not (out / "do_00000003").exists()


# ---------------------------------------------------------------------- data
def test_mel_pairing_rejects_mismatched_pairs_naming_each_file(run_files, tmp_path, capsys):
    from canora.cli import main

    spec = MelSpec()
    wavs, mels = tmp_path / "wavs", tmp_path / "mels"
    wavs.mkdir()
    mels.mkdir()
    wav = load_audio(run_files["wavs"] / "clip.wav", SR)
    for name in ("good", "long", "short"):
        save_wav(wavs / f"{name}.wav", wav, SR, subtype="FLOAT")
    mel = wav_to_mel(wav, spec)
    np.save(mels / "good.npy", mel)
    np.save(mels / "long.npy", np.pad(mel, ((0, 0), (0, 3)), constant_values=spec.log_floor))
    np.save(mels / "short.npy", mel[:, :-5])
    n = mel.shape[1]
    with pytest.raises(MelError) as e:
        load_mel_items(sorted(wavs.glob("*.wav")), mels, spec, 8)
    msg = str(e.value)
    assert "long.npy" in msg and "short.npy" in msg and "good.npy" not in msg
    assert f"{n + 3} frames" in msg and f"{n - 5} frames" in msg and f"= {n} frames" in msg
    assert "2 mel/audio pair(s)" in msg
    # through the CLI: one line, exit 2, before any training
    code = main(["train-vocoder", "--wavs", str(wavs), "--mels", str(mels), "--out", str(tmp_path / "out"),
                 "--config", str(run_files["config"]), "--val-count", "0", "--steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "long.npy" in err and "short.npy" in err
    assert not list((tmp_path / "out").glob("g_*"))


def test_short_items_are_padded_with_the_log_floor(tmp_path):
    spec = MelSpec()
    wav = (0.1 * np.sin(np.arange(3000) * 0.05)).astype(np.float32)  # 11 frames
    save_wav(tmp_path / "s.wav", wav, SR, subtype="FLOAT")
    (tmp_path / "mels").mkdir()
    np.save(tmp_path / "mels" / "s.npy", wav_to_mel(wav, spec))
    report = LoadReport()
    item = load_mel_items([tmp_path / "s.wav"], tmp_path / "mels", spec, 32, report=report)[0]
    assert item.mel.shape == (80, 32) and len(item.audio) >= 32 * 256
    assert np.all(item.mel[:, 11:] == np.float32(spec.log_floor)) and np.all(item.audio[3000:] == 0)
    assert item.mel[:, :11].max() > spec.log_floor + 3  # the real frames are kept
    assert report.padded == ["s.wav"]
    item2 = load_wav_items([tmp_path / "s.wav"], spec, 32, peak_normalize=False)[0]
    assert np.all(item2.mel[:, 11:] == np.float32(spec.log_floor))
    mel, audio = SegmentDataset([item], spec, 32).crop(0, torch.Generator().manual_seed(0))
    assert mel.shape == (80, 32) and audio.shape == (32 * 256,)


def test_unreadable_and_other_rate_files(tmp_path, caplog):
    spec = MelSpec()
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    wav = (0.1 * np.sin(np.arange(24000) * 0.05)).astype(np.float32)
    save_wav(tmp_path / "other.wav", wav, 24000, subtype="FLOAT")
    report = LoadReport()
    items = load_wav_items([tmp_path / "bad.wav", tmp_path / "other.wav"], spec, 8, cache_dir=tmp_path / "c",
                           report=report)
    assert [i.name for i in items] == ["other"] and len(items[0].audio) == 22050
    assert report.resampled == {24000: 1} and report.unreadable[0][0] == "bad.wav"
    with caplog.at_level(logging.INFO):
        report.log(spec, "t", 8)
    assert "resampled 1 file(s) from 24000 Hz" in caplog.text and "1 unreadable file(s) skipped" in caplog.text
    # the cache is keyed on the MelSpec: another spec recomputes, never reuses
    other = load_wav_items([tmp_path / "other.wav"], replace(spec, fmax=None), 8, cache_dir=tmp_path / "c")
    assert not np.allclose(other[0].mel, items[0].mel) and len(list((tmp_path / "c").glob("*.npy"))) == 2
    with pytest.raises(CanoraError, match="no usable training files"):
        SegmentDataset([], spec, 8)


def test_init_from_with_another_melspec_is_refused(run_files, tmp_path, tiny_official_ckpt):
    cfg = read_config(tiny_official_ckpt.parent / "config.json")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**cfg, "fmax": 11025}))
    tr = Trainer(tiny_cfg(run_files, tmp_path / "run", config=str(other), init_from=str(tiny_official_ckpt)),
                 progress=False)
    with pytest.raises(MelError, match=r"fmax: 11025.0 != 8000.0"):
        tr.prepare()
    ok = Trainer(tiny_cfg(run_files, tmp_path / "run2", config=None, init_from=str(tiny_official_ckpt)),
                 progress=False)
    ok.prepare()
    state = from_official_keys(torch.load(tiny_official_ckpt, weights_only=True)["generator"])
    assert all(torch.equal(ok.task.generator.state_dict()[k], v) for k, v in state.items())


class FakeReconstruction:
    """A RefinedMelSource: the true mel of the (resampled) audio, slightly brightened."""

    def __init__(self) -> None:
        self.spec, self.singer, self.identity, self.calls = MelSpec(), "pjs", "fake-v1", 0

    def __call__(self, wav: np.ndarray, sr: int) -> np.ndarray:
        from canora.io.audio import resample

        self.calls += 1
        return wav_to_mel(resample(wav, sr, self.spec.sample_rate), self.spec) + 0.1


@pytest.mark.slow
def test_refined_mel_mode_pairs_reconstructions_with_real_audio(run_files, tmp_path, caplog):
    src = FakeReconstruction()
    cfg = tiny_cfg(run_files, tmp_path / "run", steps=1, val_list=None)
    assert train_vocoder(cfg, progress=False, mel_source=src) is not None
    made = tmp_path / "run" / "refined_mels"
    assert src.calls == 1 and (made / "clip.npy").is_file()
    assert json.loads((made / "meta.json").read_text())["singer"] == "pjs"
    # a second run with the same source reuses the mels
    train_vocoder(cfg, progress=False, mel_source=src)
    assert src.calls == 1
    # mels made for another singer than the audio's: warned
    with caplog.at_level(logging.WARNING):
        check_mel_dir(made, ["clip"], MelSpec(), singer="someone_else")
    assert "naive recipe" in caplog.text and "'pjs'" in caplog.text


def test_cli_sound_recipe_with_a_real_refiner_export(run_files, tmp_path, capsys):
    """--refiner EXPORT: the refiner reconstructs the clip (target -> target) and the pairs train the vocoder."""
    from canora.cli import main
    from canora.conditioning import FeatureParams, extract_features
    from tests.test_refiner import make_refiner

    wav = load_audio(run_files["wavs"] / "clip.wav", SR)
    content_dim = extract_features(wav, MelSpec(), FeatureParams()).content.shape[0]
    make_refiner(content_dim=content_dim, singers=("pjs",)).export(tmp_path / "refiner")
    out = tmp_path / "run"
    code = main(["train-vocoder", "--wavs", str(run_files["wavs"]), "--out", str(out), "--config",
                 str(run_files["config"]), "--refiner", str(tmp_path / "refiner"), "--refiner-steps", "2",
                 "--refiner-strength", "0.1", "--train-list", str(run_files["list"]), "--steps", "1",
                 "--batch-size", "1", "--segment-size", str(SEG), "--disc-width-div", "8", "--val-every", "0",
                 "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    mel = np.load(out / "refined_mels" / "clip.npy")
    assert mel.shape == (80, MelSpec().num_frames(len(wav)))
    assert not np.allclose(mel, wav_to_mel(wav, MelSpec()), atol=0.05)  # refined, not the plain mel
    assert json.loads((out / "refined_mels" / "meta.json").read_text())["singer"] == "pjs"
    assert (out / "g_00000001").is_file()


def test_cli_help_names_both_refined_mel_recipes(capsys):
    from canora.cli import main

    with pytest.raises(SystemExit):
        main(["train-vocoder", "--help"])
    text = capsys.readouterr().out
    assert "naive" in text and "sound" in text and "target -> target" in text


@pytest.mark.slow
def test_resumes_an_official_do_file_without_canora_state(run_files, tmp_path):
    """An official run directory (g_/do_ without our 'canora' entry, official config.json) resumes at step N+1."""
    out = tmp_path / "run"
    train_vocoder(tiny_cfg(run_files, out, steps=1), progress=False)
    do = load_torch_file(out / "do_00000001")
    del do["canora"]
    torch.save(do, out / "do_00000001")
    (out / "config.json").write_text(run_files["config"].read_text())  # an official config, no canora section
    tr = Trainer(tiny_cfg(run_files, out, steps=2), progress=False)
    assert tr.run() == out / "g_00000002" and tr.step == 2 and tr.task.epoch_start == 1
    mpd = disc.MultiPeriodDiscriminator(width_div=8)
    mpd.load_state_dict(disc.from_official_keys(do["mpd"]), strict=True)
    assert not torch.equal(mpd.state_dict()[next(iter(mpd.state_dict()))],
                           tr.task.mpd.state_dict()[next(iter(tr.task.mpd.state_dict()))])  # it trained on


def test_init_from_a_canora_export_restores_the_folded_weights(run_files, tmp_path, tiny_official_ckpt):
    """An export holds folded weights; training re-wraps them in weight norm so the generator computes the same."""
    voc = Vocoder.from_pretrained(tiny_official_ckpt)
    voc.export(tmp_path / "export")
    tr = Trainer(tiny_cfg(run_files, tmp_path / "run", config=None, init_from=str(tmp_path / "export")),
                 progress=False)
    tr.prepare()
    assert tr.task.generator.has_weight_norm
    mel = torch.from_numpy(wav_to_mel(load_audio(run_files["wavs"] / "clip.wav", SR)[:SR], MelSpec()))[None]
    with torch.no_grad():
        torch.testing.assert_close(tr.task.generator(mel)[0, 0], voc(mel)[0], atol=1e-5, rtol=1e-4)
