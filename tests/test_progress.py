"""Progress a person can see: a bar per batch (file n/N, time left) and one per song (its slices), on a terminal
only; piped, stderr holds the log lines and nothing else."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from canora.cli import main
from canora.cli import progress as progress_module
from tests.conftest import make_tiny_models

SR = 22050


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_tiny_models(tmp_path_factory.mktemp("progress_models"))


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    sf.write(d / "a.wav", tone(2.0), SR)
    sf.write(d / "b.wav", tone(1.0), SR)
    return d


def test_a_batch_and_its_songs_show_bars_on_a_terminal(batch: Path, tmp_path: Path, models: tuple[Path, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    code = main(["convert", str(batch), "-o", str(tmp_path / "out"), "--steps", "1", "--max-slice-seconds", "1",
                 "--refiner", str(models[0]), "--vocoder", str(models[1])])
    text = term.getvalue()
    assert code == 0
    assert "convert 1/2 a.wav" in text and "convert 2/2 b.wav" in text and "100%" in text  # the batch: n/N
    assert re.search(r"a\.wav: converting slice 2/\d", text), text  # the song: its slices
    assert "<00:" in text  # the time left


@pytest.mark.slow
def test_piped_stderr_holds_no_bars(batch: Path, tmp_path: Path, models: tuple[Path, Path],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["convert", str(batch), "-o", str(tmp_path / "out"), "--steps", "1",
                 "--refiner", str(models[0]), "--vocoder", str(models[1])])
    err = capsys.readouterr().err
    assert code == 0 and "%|" not in err and "\r" not in err and "converted to" in err


def test_progress_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert progress_module.enabled()
    monkeypatch.setenv("CANORA_PROGRESS", "0")
    assert not progress_module.enabled()
