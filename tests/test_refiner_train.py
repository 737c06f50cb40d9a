"""Refiner training: a tiny model overfits one real clip, resumes at the same step bit-exactly, exports, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from canora.errors import CanoraError
from canora.refiner import Refiner
from canora.training.loop import Loop
from canora.training.refiner import RefinerTask, RefinerTrainConfig, build_manifest, lr_factor

QUICK = RefinerTrainConfig(
    model="tiny", steps=6, batch_size=4, crop_frames=32, lr=3e-3, lr_warmup=1, val_every=0, log_every=1,
    checkpoint_every=3, val_frames=64, val_steps=2,
)


def Trainer(out: Path, cfg: RefinerTrainConfig, data: list[Path], progress: bool = False) -> Loop:  # noqa: N802
    return Loop(RefinerTask(cfg, data), out, progress=progress)


@pytest.fixture
def one_clip(tmp_path, sung_clip) -> Path:
    """tmp_path/data/alto/clip.wav: 3 s of real singing (vocadito clip 1)."""
    wav, sr = sung_clip
    d = tmp_path / "data" / "alto"
    d.mkdir(parents=True)
    sf.write(d / "clip.wav", wav, sr)
    return d


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_tiny_model_overfits_one_clip_and_reconstructs_it(tmp_path, one_clip, sung_clip):
    cfg = replace(QUICK, steps=600, batch_size=16, crop_frames=64, log_every=20, checkpoint_every=0, val_every=600,
                  ema_decay=0.99)
    export = Trainer(tmp_path / "run", cfg, [one_clip], progress=False).run()
    losses = [r["train/loss"] for r in read_log(tmp_path / "run") if "train/loss" in r]
    assert losses[0] / np.mean(losses[-3:]) >= 10, losses  # first 20 steps vs the last 60
    ref = Refiner.from_pretrained(export)
    assert ref.singers == ["alto"] and ref.info["trained_steps"] == 600
    wav, sr = sung_clip
    feats = ref.features(wav, sr)
    out = ref.refine_features(feats, "alto", strength=0.5, steps=10, seed=0).mel
    # the strength-0.5 start: the source noised to t_start, back in log-mel
    from canora.refiner.samplers import get_sampler

    smp = get_sampler("dpmpp", ref.schedule, ref.prediction_type)
    smp.set_timesteps(10, 0.5)
    x0 = ref.normalizer.normalize(torch.from_numpy(feats.mel))
    noised = ref.normalizer.denormalize(smp.add_noise(x0, torch.randn(x0.shape), smp.start_timestep)).numpy()
    err_out, err_noised = np.abs(out - feats.mel).mean(), np.abs(noised - feats.mel).mean()
    assert err_out < 0.5 * err_noised, (err_out, err_noised)
    val = [r for r in read_log(tmp_path / "run") if "val/mel_l1" in r][-1]
    assert val["val/mel_l1"] < val["val/mel_l1_noised_input"]


@pytest.mark.slow
def test_resume_continues_at_the_same_step_bit_exactly(tmp_path, one_clip):
    straight = Trainer(tmp_path / "a", QUICK, [one_clip], progress=False)
    straight.run()
    first = Trainer(tmp_path / "b", replace(QUICK, steps=3), [one_clip], progress=False)
    first.run()
    assert first.step == 3 and (tmp_path / "b" / "ckpt_00000003").is_file()
    resumed = Trainer(tmp_path / "b", QUICK, [one_clip], progress=False)
    resumed.run()
    assert resumed.step == 6
    for key, value in straight.task.model.state_dict().items():
        assert torch.equal(value, resumed.task.model.state_dict()[key]), key
    for key, value in straight.task.ema.state_dict().items():
        assert torch.equal(value, resumed.task.ema.state_dict()[key]), key
    steps_b = [r["step"] for r in read_log(tmp_path / "b") if "train/loss" in r]
    assert steps_b == [1, 2, 3, 4, 5, 6]
    loss_a = [r["train/loss"] for r in read_log(tmp_path / "a") if "train/loss" in r]
    loss_b = [r["train/loss"] for r in read_log(tmp_path / "b") if "train/loss" in r]
    assert loss_a == loss_b
    # the export symlink points at the newest export, which loads
    assert os.readlink(tmp_path / "b" / "export") == "exports/step_00000006"
    ref = Refiner.from_pretrained(tmp_path / "b" / "export")
    assert ref.info["trained_steps"] == 6
    # the singer's voiced level (what conversions move a song to) is its training recordings' median voiced
    # loudness: the clip's own; a copy made louder (up to 20 dB, as far as it goes below full scale) reads that
    # much higher
    from canora.dsp.loudness import voiced_level_db
    from canora.io.audio import load_audio

    feats = ref.features(load_audio(one_clip / "clip.wav", ref.spec.sample_rate), ref.spec.sample_rate)
    assert ref.singer_level_db == {"alto": pytest.approx(voiced_level_db(feats.loudness, feats.voiced), abs=0.01)}
    loud = tmp_path / "loud" / "alto"
    loud.mkdir(parents=True)
    wav, sr = sf.read(one_clip / "clip.wav", dtype="float32")
    sf.write(loud / "clip.wav", wav * 10.0 ** (20 / 20) / max(1.0, float(np.abs(wav * 10).max()) / 0.99), sr)
    louder = Trainer(tmp_path / "c", replace(QUICK, steps=1), [loud], progress=False).run()
    gain = 20 * np.log10(10.0 / max(1.0, float(np.abs(wav * 10).max()) / 0.99))
    assert Refiner.from_pretrained(louder).singer_level_db["alto"] == pytest.approx(
        ref.singer_level_db["alto"] + gain, abs=0.5)  # measured 0.36 off: the voicing moves a little too


def test_resume_refuses_other_data(tmp_path, one_clip, sung_clip):
    Trainer(tmp_path / "run", replace(QUICK, steps=1), [one_clip], progress=False).run()
    other = tmp_path / "data" / "bass"
    other.mkdir()
    sf.write(other / "x.wav", sung_clip[0], sung_clip[1])
    with pytest.raises(CanoraError, match="started on other data"):
        Trainer(tmp_path / "run", QUICK, [other], progress=False).run()


def test_manifest_one_singer_per_folder_with_held_out_files(tmp_path, synth_clip):
    wav, sr = synth_clip
    for singer, n in (("soprano", 12), ("bass", 3)):
        (tmp_path / singer).mkdir()
        for i in range(n):
            sf.write(tmp_path / singer / f"{singer}{i:02d}.wav", wav[: sr // 4], sr)
    m = build_manifest([tmp_path / "soprano", tmp_path / "bass"])
    assert m.singers == ("soprano", "bass")
    val_names = sorted(Path(p).name for p, _ in m.val)
    assert val_names == ["bass02.wav", "soprano11.wav"]  # the last 10 % (at least one) of each, by name
    assert len(m.train) == 11 + 2 and {s for _, s in m.train} == {0, 1}
    m2 = build_manifest([tmp_path / "soprano"], val_count=3, singers=["sop"])
    assert m2.singers == ("sop",) and [Path(p).name for p, _ in m2.val] == [f"soprano{i:02d}.wav" for i in (9, 10, 11)]
    with pytest.raises(CanoraError, match="leave none for training"):
        build_manifest([tmp_path / "bass"], val_count=3)
    with pytest.raises(CanoraError, match="no audio files"):
        (tmp_path / "empty").mkdir()
        build_manifest([tmp_path / "empty"])


def test_lr_schedule_warmup_then_halving():
    assert lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert lr_factor(110, 10, 100) == pytest.approx(0.5)


@pytest.mark.slow
def test_cli_train_refiner_under_torchrun_ddp(tmp_path, one_clip):
    """Two processes, DDP over gloo: both train, rank 0 saves; the result loads."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29513",
           "-m", "canora", "train-refiner", "--data", str(one_clip), "--out", str(out), "--config", "tiny",
           "--steps", "2", "--batch-size", "2", "--crop-frames", "32", "--val-every", "0", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "ckpt_00000002").is_file()
    ref = Refiner.from_pretrained(out / "export")
    assert ref.info["trained_steps"] == 2 and ref.singers == ["alto"]


@pytest.mark.slow
def test_init_from_keeps_the_bases_singers_and_starts_new_ones_at_their_mean(tmp_path, one_clip):
    def folder(name: str) -> Path:
        d = tmp_path / "data" / name
        d.mkdir()
        (d / "clip.wav").write_bytes((one_clip / "clip.wav").read_bytes())
        return d

    tenor, bass = folder("tenor"), folder("bass")
    base = Trainer(tmp_path / "base", replace(QUICK, steps=3), [one_clip, tenor]).run()
    cfg = replace(QUICK, steps=1, lr=1e-12, weight_decay=0.0, ema_decay=0.0, checkpoint_every=0, init_from=str(base))
    tuned = Refiner.from_pretrained(Trainer(tmp_path / "tuned", cfg, [bass, one_clip]).run())
    before = Refiner.from_pretrained(base).model.singer.weight.detach()
    after = tuned.model.singer.weight.detach()
    assert tuned.singers == ["bass", "alto"] and not torch.allclose(before[0], before.mean(0))
    torch.testing.assert_close(after[1], before[0], atol=1e-6, rtol=0)  # alto: the base's own embedding
    torch.testing.assert_close(after[0], before.mean(0), atol=1e-6, rtol=0)  # bass: new, at the mean


@pytest.mark.slow
def test_warm_start_copies_the_denoiser_and_starts_the_content_inputs_fresh(tmp_path, one_clip):
    from canora.conditioning import FeatureParams

    base = Trainer(tmp_path / "base", replace(QUICK, steps=2), [one_clip]).run()  # DSP content: 19 dims
    fewer = FeatureParams(content_params={"last": 12}).to_dict()  # another content feature: 12 dims
    cfg = replace(QUICK, steps=1, lr=1e-12, weight_decay=0.0, ema_decay=0.0, checkpoint_every=0,
                  warm_start=str(base), features=fewer, timbre_variants=0)
    warm = Refiner.from_pretrained(Trainer(tmp_path / "warm", cfg, [one_clip]).run())
    src = Refiner.from_pretrained(base).model.state_dict()
    got = warm.model.state_dict()
    assert warm.model.config.content_dim == 12 and warm.feature_params.content_params == {"last": 12}
    torch.testing.assert_close(got["layers.0.dilated.weight"], src["layers.0.dilated.weight"], atol=1e-6, rtol=0)
    torch.testing.assert_close(got["cond_in.weight"][:, :3], src["cond_in.weight"][:, :3], atol=1e-6, rtol=0)
    assert got["cond_in.weight"].shape[1] == 3 + 12
    with pytest.raises(CanoraError, match="not both"):
        replace(QUICK, init_from=str(base), warm_start=str(base))


@pytest.mark.slow
def test_singer_balance_draws_singers_by_a_power_of_their_minutes(tmp_path, one_clip):
    long = tmp_path / "data" / "long"
    long.mkdir()
    wav, sr = sf.read(one_clip / "clip.wav")
    for i in range(4):  # four times the audio of alto
        sf.write(long / f"c{i}.wav", wav, sr)
    for balance, share in ((1.0, 0.75), (0.5, 3**0.5 / (3**0.5 + 1)), (0.0, 0.5)):
        task = RefinerTask(replace(QUICK, singer_balance=balance, timbre_variants=0), [one_clip, long])
        Loop(task, tmp_path / f"b{balance}").prepare()
        w = task.crop_weights.numpy()
        singers = np.array([s for _, s in task.train_data])
        assert abs(w[singers == 1].sum() - share) < 0.02  # 'long' has 3 training files (1 held out) vs alto's 1
