"""The trainer contract, run over every task (refiner, HiFi-GAN, NSF): bit-exact resume, stop on a NaN before
any update or checkpoint with it, a checkpoint and an export on SIGTERM, a damaged newest checkpoint skipped,
one trainer per run directory."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from canora.errors import CanoraError
from canora.training.loop import Loop, Task, TrainingDiverged, holdout, run_lock

from .conftest import TINY_HIFIGAN


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def data_dir(tmp_path: Path, synth_clip: tuple[np.ndarray, int]) -> Path:
    """Three 2-s synthetic sung tones (each a little higher) in tmp_path/singer/."""
    wav, sr = synth_clip
    d = tmp_path / "singer"
    d.mkdir()
    for i in range(3):
        from canora.io.audio import resample

        sf.write(d / f"take{i}.wav", resample(wav, sr, int(sr * 2 ** (-i / 12))), sr)
    return d


def _refiner(data: Path, **kw) -> Task:
    from canora.training.refiner import RefinerTask, RefinerTrainConfig

    cfg = RefinerTrainConfig(model="tiny", steps=4, batch_size=2, crop_frames=16, lr=1e-3, lr_warmup=1, val_every=0,
                             log_every=1, checkpoint_every=2, val_frames=32, val_steps=2, val_count=1, **kw)
    return RefinerTask(cfg, [data])


def _hifigan(data: Path, **kw) -> Task:
    from canora.dsp.mel import read_config
    from canora.training.hifigan import HiFiGANTask, TrainConfig

    cfg_file = data.parent / "tiny_hifigan.json"
    cfg_file.write_text(json.dumps({**read_config("v1"), **TINY_HIFIGAN}))
    cfg = TrainConfig(wavs=str(data), config=str(cfg_file), steps=4, batch_size=2, segment_size=2048,
                      disc_width_div=8, checkpoint_every=2, val_every=0, log_every=1, seed=7, val_count=1, **kw)
    return HiFiGANTask(cfg)


def _nsf(data: Path, **kw) -> Task:
    from canora.training.nsf import NSFTask, NSFTrainConfig
    from canora.vocoder.nsf import NSFConfig

    model = NSFConfig(upsample_initial_channel=16, resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 2),),
                      harmonics=8)
    cfg = NSFTrainConfig(wavs=str(data), model=model.to_dict(), steps=4, batch_size=2, segment_frames=8,
                         recon_steps=2, disc_width_div=8, val_count=1, val_every=0, checkpoint_every=2, log_every=1,
                         cache_dir=str(data.parent / "cache"), **kw)
    return NSFTask(cfg)


TASKS: dict[str, Callable[..., Task]] = {"refiner": _refiner, "hifigan": _hifigan, "nsf": _nsf}


def _weights(loop: Loop) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in loop.task.modules()]


@pytest.mark.parametrize("name", TASKS)
@pytest.mark.slow
def test_resume_is_bit_exact(name, data_dir, tmp_path):
    straight = Loop(TASKS[name](data_dir), tmp_path / "a", progress=False)
    straight.run()
    first = Loop(TASKS[name](data_dir, ), tmp_path / "b", progress=False)
    first.task.cfg = type(first.task.cfg).from_dict({**first.task.cfg.to_dict(), "steps": 2})
    first.run()
    resumed = Loop(TASKS[name](data_dir), tmp_path / "b", progress=False)
    resumed.run()
    assert resumed.step == straight.step == 4
    for a, b in zip(_weights(straight), _weights(resumed)):
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    # the log of the interrupted run continues where it stopped, step by step
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()
             if "train/" in line]
    assert steps == [1, 2, 3, 4]


@pytest.mark.parametrize("name", TASKS)
def test_a_nan_stops_before_any_update_or_checkpoint(name, data_dir, tmp_path):
    loop = Loop(TASKS[name](data_dir, ), tmp_path / "run", progress=False)
    loop.task.cfg = type(loop.task.cfg).from_dict({**loop.task.cfg.to_dict(), "checkpoint_every": 1})
    loop.prepare()
    loop.step_once()  # one good step
    first = loop.task.modules()[0]
    with torch.no_grad():
        next(first.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="step 2"):
        loop.run()
    found = sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(("ckpt_", "g_", "do_")))
    assert not any(n.endswith("00000002") for n in found), found


class _SigtermAt:
    """Wrap a task's step: deliver SIGTERM to this process after update ``at``."""

    def __init__(self, task: Task, at: int) -> None:
        self.task, self.at, self.inner = task, at, task.train_step

    def __call__(self, step: int, gen: torch.Generator, ctx) -> dict[str, float]:  # noqa: ANN001
        out = self.inner(step, gen, ctx)
        if step + 1 == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return out


@pytest.mark.parametrize("name", TASKS)
@pytest.mark.slow
def test_sigterm_checkpoints_and_exports_then_returns(name, data_dir, tmp_path):
    task = TASKS[name](data_dir)
    task.cfg = type(task.cfg).from_dict({**task.cfg.to_dict(), "checkpoint_every": 0, "steps": 10})
    task.train_step = _SigtermAt(task, 3)
    loop = Loop(task, tmp_path / "run", progress=False)
    result = loop.run()
    assert loop.step == 3
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert ("ckpt_00000003" in names) or ({"g_00000003", "do_00000003"} <= names)
    if name == "hifigan":
        assert result == tmp_path / "run" / "g_00000003"  # the official layout is its own export
    else:
        assert result == (tmp_path / "run" / "exports" / "step_00000003").resolve()
        assert os.readlink(tmp_path / "run" / "export") == "exports/step_00000003"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_is_skipped_with_a_notice(data_dir, tmp_path, caplog):
    Loop(_refiner(data_dir), tmp_path / "run", progress=False).run()  # ckpt 2 and 4
    (tmp_path / "run" / "ckpt_00000004").write_bytes(b"PK\x03\x04 cut off")
    loop = Loop(_refiner(data_dir), tmp_path / "run", progress=False)
    loop.prepare()
    assert loop.step == 2 and "skipped unreadable newer checkpoint(s): ckpt_00000004" in caplog.text


def test_one_trainer_per_run_directory(tmp_path):
    with run_lock(tmp_path / "run"), pytest.raises(CanoraError, match="another trainer is running"), \
            run_lock(tmp_path / "run"):
        pass
    with run_lock(tmp_path / "run"):  # released: free again
        pass


def test_holdout_rule():
    files = [Path(f"f{i:02d}.wav") for i in range(40)]
    train, val = holdout(files, None)
    assert [p.name for p in val] == ["f38.wav", "f39.wav"] and len(train) == 38  # 5 %
    assert holdout(files[:4], None)[1] == [Path("f03.wav")]  # at least one
    assert holdout(files[:1], None) == ([Path("f00.wav")], [])  # a single file trains
    assert holdout(files[:4], 0) == (files[:4], [])  # 0 = no validation
    with pytest.raises(CanoraError, match="would hold out all 4"):
        holdout(files[:4], 4)
