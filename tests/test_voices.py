"""Voices: made from a few clips by fine-tuning a tiny base, used by name, copied elsewhere and used by path,
resumed; `canora voices` lists them; --voice conflicts and unknown names are one clear line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from canora.cli import main
from canora.errors import CanoraError
from canora.io.voices import bundled_voice_names, list_voices, resolve_voice

from .conftest import make_tiny_models

SR = 22050


def sung(seconds: float, hz: float, seed: int) -> np.ndarray:
    """A harmonic tone with vibrato and a short pause (a stand-in singer)."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = hz * 2 ** (0.3 * np.sin(2 * np.pi * 5 * t + seed) / 12)
    ph = 2 * np.pi * np.cumsum(f0) / SR
    x = 0.3 * sum(np.sin(k * ph) / k for k in range(1, 12))
    x[int(0.45 * len(x)): int(0.55 * len(x))] = 0.0
    return x.astype(np.float32)


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    refiner, vocoder = make_tiny_models(tmp_path / "base")
    rec = tmp_path / "recordings"
    rec.mkdir()
    for i, hz in enumerate((196.0, 220.0, 247.0)):
        sf.write(rec / f"take{i}.wav", sung(4.0, hz, i), SR)
    voices = tmp_path / "voices"
    monkeypatch.setenv("CANORA_VOICES", str(voices))
    return {"refiner": refiner, "vocoder": vocoder, "rec": rec, "voices": voices, "tmp": tmp_path}


@pytest.mark.slow
def test_a_voice_is_made_used_by_name_copied_and_reused(setup, caplog):
    from canora.pipeline import Converter
    from canora.training.voice import train_voice

    folder = train_voice(setup["rec"], "ana", work=setup["tmp"] / "work", voices=setup["voices"],
                         base=str(setup["refiner"]), minutes=5.0, steps=3, vocoder=str(setup["vocoder"]),
                         progress=False)
    assert folder == setup["voices"] / "ana"
    doc = json.loads((folder / "voice.json").read_text())
    assert doc["singer"] == "ana" and doc["trained"]["refiner_steps"] == 3 and doc["vocoder"] == "vocoder"
    assert set(doc["f0_range"]) == {"median", "p5", "p95"} and (folder / "README.md").is_file()
    card = (folder / "README.md").read_text()
    assert "5th-95th percentile" in card and "Hz" in card and "{" not in card  # readable, not a dict
    assert doc["evaluation"]["pieces"] >= 1
    assert "under a minute rarely makes" in caplog.text  # 12 s of voice: warned, made anyway
    assert [v.name for v in list_voices()] == ["pjs", *bundled_voice_names(), "ana"]
    # used by name: the voice's refiner, vocoder (copied in) and singer
    v = resolve_voice("ana")
    assert v.singer == "ana" and v.refiner == (folder / "refiner").resolve()
    assert v.vocoder == (folder / "vocoder").resolve()
    conv = Converter.from_pretrained(voice="ana")
    res = conv.convert(sung(2.0, 220.0, 9), SR, steps=2)
    assert res.singer == "ana" and np.isfinite(res.audio).all()
    # copied to another place, it works from there by path
    elsewhere = setup["tmp"] / "elsewhere" / "ana-copy"
    shutil.copytree(folder, elsewhere)
    assert resolve_voice(str(elsewhere)).refiner == (elsewhere / "refiner").resolve()
    # run again with more steps and the same work dir: the training resumes from its checkpoint
    again = train_voice(setup["rec"], "ana", work=setup["tmp"] / "work", voices=setup["voices"],
                        base=str(setup["refiner"]), minutes=5.0, steps=5, overwrite=True,
                        vocoder=str(setup["vocoder"]), progress=False)
    assert json.loads((again / "voice.json").read_text())["trained"]["refiner_steps"] == 5


def test_cli_voices_lists_and_bad_names_fail_clearly(setup, capsys):
    assert main(["voices"]) == 0
    assert "pjs" in capsys.readouterr().out
    with pytest.raises(CanoraError, match="no voice 'nobody'"):
        resolve_voice("nobody")
    code = main(["convert", str(setup["rec"] / "take0.wav"), "-o", str(setup["tmp"] / "o.wav"), "--voice", "nobody"])
    err = capsys.readouterr().err
    assert code == 2 and "no voice 'nobody'" in err and "Traceback" not in err
    code = main(["train-voice", str(setup["rec"]), "--name", "pjs"])
    assert code == 2 and "bundled voice" in capsys.readouterr().err
    (setup["voices"] / "broken").mkdir(parents=True)
    (setup["voices"] / "broken" / "voice.json").write_text("{not json")
    with pytest.raises(CanoraError, match="voice.json: not valid JSON"):
        resolve_voice(str(setup["voices"] / "broken"))
    # an unreadable folder is left out of the list
    assert [v.name for v in list_voices()] == ["pjs", *bundled_voice_names()]


@pytest.mark.slow
def test_an_interrupted_voice_resumes_to_the_same_weights(setup, caplog):
    """Stopped after 2 steps and run again to 4, the voice's refiner is the one an uninterrupted 4-step run makes."""
    from safetensors.numpy import load_file

    from canora.training.voice import train_voice

    def make(work: str, steps: int, voices: str) -> Path:
        return train_voice(setup["rec"], "ana", work=setup["tmp"] / work, voices=setup["tmp"] / voices,
                           base=str(setup["refiner"]), minutes=5.0, steps=steps, vocoder=str(setup["vocoder"]),
                           progress=False)

    whole = make("w1", 4, "v1")
    make("w2", 2, "v2")
    shutil.rmtree(setup["tmp"] / "v2" / "ana")  # as if the first run had stopped before saving the voice
    caplog.clear()
    with caplog.at_level("INFO"):
        resumed = make("w2", 4, "v2")
    assert "at step 2" in caplog.text and "resumed" in caplog.text  # it went on from the checkpoint
    a, b = (load_file(str(f / "refiner" / "model.safetensors")) for f in (whole, resumed))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert json.loads((resumed / "voice.json").read_text())["trained"]["refiner_steps"] == 4


@pytest.mark.slow
def test_a_voice_killed_while_slicing_resumes_whole(setup, monkeypatch):
    """Killed half-way through cutting the recordings (a temp file left behind too), the run again cuts the rest
    and trains on every piece, holds audio out and says so in voice.json; changed recordings are named, not mixed."""
    import canora.io.audio as audio
    from canora.training.voice import train_voice

    work = setup["tmp"] / "work"
    real = audio.save_wav
    calls = {"n": 0}

    def dies_on_the_third_piece(*a, **k):  # noqa: ANN002, ANN003
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(audio, "save_wav", dies_on_the_third_piece)
    with pytest.raises(KeyboardInterrupt):
        train_voice(setup["rec"], "ana", work=work, voices=setup["voices"], base=str(setup["refiner"]), minutes=5.0,
                    steps=2, vocoder=str(setup["vocoder"]), progress=False)
    monkeypatch.setattr(audio, "save_wav", real)
    assert not (work / "split").exists() and not list(work.rglob("*.tmp"))  # nothing half-made is kept
    (work / "pieces" / ".take2.canora-999999-x.tmp").mkdir(parents=True)  # a temp of a process that is gone
    folder = train_voice(setup["rec"], "ana", work=work, voices=setup["voices"], base=str(setup["refiner"]),
                         minutes=5.0, steps=2, vocoder=str(setup["vocoder"]), progress=False)
    doc = json.loads((folder / "voice.json").read_text())
    split = json.loads((work / "split" / "split.json").read_text())
    pieces = sum(len(json.loads((d / "pieces.json").read_text())["pieces"]) for d in (work / "pieces").iterdir())
    assert doc["trained"]["files"] == 3 and doc["trained"]["pieces"] + doc["trained"]["held_out_pieces"] == pieces
    assert len(split["train"]) == doc["trained"]["pieces"] >= 3 and split["held_out"]
    assert doc["evaluation"]["pieces"] == doc["trained"]["held_out_pieces"] >= 1
    assert not list(work.rglob("*.tmp")) and not list(setup["voices"].glob(".*"))
    state = json.loads((work / "state.json").read_text())
    assert state["refiner"]["finished"]["steps"] == 2 and state["refiner"]["seconds"] > 0
    sf.write(setup["rec"] / "take3.wav", sung(3.0, 262.0, 3), SR)  # the recordings change under the same work
    with pytest.raises(CanoraError, match="cut from other recordings"):
        train_voice(setup["rec"], "ana", work=work, voices=setup["voices"], base=str(setup["refiner"]),
                    minutes=5.0, steps=2, overwrite=True, vocoder=str(setup["vocoder"]), progress=False)


@pytest.mark.slow
def test_a_voice_stopped_in_training_counts_its_minutes_and_goes_on(setup, monkeypatch):
    """SIGTERM during the fine-tuning: the run checkpoints, counts the time it used and stops (no voice saved);
    run again, it goes on from the checkpoint to the steps asked for, and a finished training is not run again."""
    import os
    import signal

    from canora.training import loop as loop_module
    from canora.training.voice import train_voice

    real = loop_module.Loop.step_once

    def step_then_term(self):  # noqa: ANN001, ANN202
        out = real(self)
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    work = setup["tmp"] / "work"
    kw = dict(work=work, voices=setup["voices"], base=str(setup["refiner"]), minutes=5.0, steps=4,
              vocoder=str(setup["vocoder"]), progress=False)
    monkeypatch.setattr(loop_module.Loop, "step_once", step_then_term)
    with pytest.raises(KeyboardInterrupt):
        train_voice(setup["rec"], "ana", **kw)
    monkeypatch.setattr(loop_module.Loop, "step_once", real)
    state = json.loads((work / "state.json").read_text())
    assert state["refiner"]["seconds"] > 0 and "finished" not in state["refiner"]
    assert not (setup["voices"] / "ana").exists()
    folder = train_voice(setup["rec"], "ana", **kw)
    assert json.loads((folder / "voice.json").read_text())["trained"]["refiner_steps"] == 4
    ran = []
    monkeypatch.setattr(loop_module.Loop, "run", lambda self: ran.append(1))
    train_voice(setup["rec"], "ana", **{**kw, "overwrite": True})  # finished for this budget: not trained again
    assert not ran


def test_cli_train_voice_refuses_a_budget_of_nothing(setup, capsys):
    for flag, value in (("--minutes", "0"), ("--minutes", "-1"), ("--minutes", "nan"), ("--vocoder-share", "1"),
                        ("--steps", "0")):
        try:
            code = main(["train-voice", str(setup["rec"]), "--name", "ana", flag, value])
        except SystemExit as e:  # argparse: a bad flag
            code = e.code
        err = capsys.readouterr().err
        assert code == 2 and flag in err and len(err.strip().splitlines()) == 1, err
