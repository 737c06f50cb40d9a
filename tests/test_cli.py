"""The `canora mel` / `canora vocode` commands end to end, and the one-line errors bad input gets."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from canora.cli import main
from canora.dsp.mel import MelSpec, wav_to_mel


@pytest.fixture
def wav_dir(tmp_path, synth_clip):
    wav, sr = synth_clip
    d = tmp_path / "wavs"
    d.mkdir()
    sf.write(d / "a.wav", wav, sr)
    sf.write(d / "b.flac", wav[: sr // 2], sr)
    return d


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_mel_writes_official_layout_npy(capsys, tmp_path, wav_dir):
    code, err = run(capsys, "mel", wav_dir, "-o", tmp_path / "mels", "--config", "v1")
    assert code == 0
    assert "2 file(s)" in err and "real-time factor" in err
    mel = np.load(tmp_path / "mels" / "a.npy")
    wav, _ = sf.read(wav_dir / "a.wav", dtype="float32")
    assert mel.shape == (80, len(wav) // 256) and mel.dtype == np.float32
    np.testing.assert_array_equal(mel, wav_to_mel(wav, MelSpec()))
    assert np.load(tmp_path / "mels" / "b.npy").shape == (80, (22050 // 2) // 256)  # b.flac holds 0.5 s


@pytest.mark.slow
def test_vocode_mels_and_audio(capsys, tmp_path, wav_dir, tiny_official_ckpt):
    assert run(capsys, "mel", wav_dir, "-o", tmp_path / "mels")[0] == 0
    code, err = run(capsys, "vocode", tmp_path / "mels", "-o", tmp_path / "out", "--checkpoint", tiny_official_ckpt)
    assert code == 0, err
    out, sr = sf.read(tmp_path / "out" / "a.wav")
    assert sr == 22050 and len(out) == np.load(tmp_path / "mels" / "a.npy").shape[1] * 256
    code, err = run(capsys, "vocode", wav_dir / "a.wav", "-o", tmp_path / "copy", "--checkpoint", tiny_official_ckpt)
    assert code == 0 and (tmp_path / "copy" / "a.wav").exists()
    # an official HiFi-GAN's output is the generator's unless mel matching is asked for; then it is closer to its mel
    from canora.dsp.metrics import mel_cycle_error

    mel = np.load(tmp_path / "mels" / "a.npy")
    code, err = run(capsys, "vocode", tmp_path / "mels" / "a.npy", "-o", tmp_path / "mm.wav", "--checkpoint",
                    tiny_official_ckpt, "--mel-match", "2", "--float")
    assert code == 0, err
    code, err = run(capsys, "vocode", tmp_path / "mels" / "a.npy", "-o", tmp_path / "raw.wav", "--checkpoint",
                    tiny_official_ckpt, "--float", "--backend", "torch")
    assert code == 0, err
    raw, matched = sf.read(tmp_path / "raw.wav")[0], sf.read(tmp_path / "mm.wav")[0]
    np.testing.assert_allclose(raw, sf.read(tmp_path / "out" / "a.wav")[0], atol=1 / 32768)  # the default: no matching
    assert mel_cycle_error(mel, matched, MelSpec()) < 0.7 * mel_cycle_error(mel, raw, MelSpec())


@pytest.mark.parametrize(
    "make,expect",
    [
        (lambda p: np.zeros((5, 80, 3)), "shape"),
        (lambda p: np.full((40, 80), -5.0, np.float32), "(T, 80) layout"),
        (lambda p: np.where(np.eye(80, 20) > 0, np.nan, -5.0).astype(np.float32), "NaN"),
        (lambda p: np.random.default_rng(0).uniform(-80, 0, (80, 20)).astype(np.float32), "power dB"),
        (lambda p: np.random.default_rng(0).uniform(-1, 1, (80, 20)).astype(np.float32), "normalised"),
        (lambda p: np.random.default_rng(0).uniform(-5, 1, (80, 20)).clip(-5, None).astype(np.float32), "log10"),
        (lambda p: np.random.default_rng(0).uniform(-20.8, 1, (80, 20)).clip(np.log(1e-9), None), "clamp 1e-9"),
    ],
)
def test_bad_mels_get_one_clear_error_and_no_output(capsys, tmp_path, tiny_official_ckpt, make, expect):
    p = tmp_path / "bad.npy"
    np.save(p, make(p))
    if expect == "log10":  # pin the floor so it is unambiguous
        arr = np.load(p)
        arr[0, 0] = -5.0
        np.save(p, arr)
    code, err = run(capsys, "vocode", p, "-o", tmp_path / "out", "--checkpoint", tiny_official_ckpt)
    assert code == 2
    line = one_error_line(err)
    assert "bad.npy" in line and expect in line
    assert not (tmp_path / "out" / "bad.wav").exists()


def test_bad_audio_and_paths_get_one_clear_error(capsys, tmp_path, wav_dir, tiny_official_ckpt):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    code, err = run(capsys, "mel", tmp_path / "corrupt.wav", "-o", tmp_path / "m")
    assert code == 2 and "corrupt.wav" in one_error_line(err)
    sf.write(tmp_path / "silent.wav", np.zeros(22050, np.float32), 22050)
    code, err = run(capsys, "mel", tmp_path / "silent.wav", "-o", tmp_path / "m")
    assert code == 2 and "silent" in one_error_line(err)
    code, err = run(capsys, "mel", tmp_path / "missing.wav", "-o", tmp_path / "m")
    assert code == 2 and "missing.wav" in one_error_line(err)
    code, err = run(capsys, "mel", wav_dir, "-o", wav_dir)
    assert code == 2 and "output directory is the input directory" in one_error_line(err)
    assert sorted(p.name for p in wav_dir.iterdir()) == ["a.wav", "b.flac"]
    (tmp_path / "junk").write_text("junk")
    out = tmp_path / "o"
    code, err = run(capsys, "vocode", wav_dir, "-o", out, "--checkpoint", tmp_path / "junk", "--config", "v2")
    assert code == 2 and "not a torch checkpoint" in one_error_line(err)
    code, err = run(capsys, "vocode", wav_dir, "-o", out, "--checkpoint", tiny_official_ckpt, "--config", "v1")
    assert code == 2 and "does not match the model config" in one_error_line(err)
    assert not (tmp_path / "o").exists()


def test_batch_skips_bad_files_and_exits_nonzero(capsys, tmp_path, wav_dir):
    (wav_dir / "c.wav").write_bytes(b"not audio at all")
    code, err = run(capsys, "mel", wav_dir, "-o", tmp_path / "mels")
    assert code == 1
    assert "c.wav" in err and "1 failed" in err
    assert sorted(p.name for p in (tmp_path / "mels").iterdir()) == ["a.npy", "b.npy"]


@pytest.mark.slow
def test_python_dash_m_entry_point():
    res = subprocess.run([sys.executable, "-m", "canora", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "mel" in res.stdout and "vocode" in res.stdout


def test_one_naming_scheme_across_commands(capsys, tmp_path, wav_dir):
    """Positional inputs, -o for outputs, --refiner/--vocoder (a path or 'bundled', the old --model/--checkpoint
    still accepted), --device/--threads wherever a model runs, defaults and choices in --help, paths on stdout."""
    from pathlib import Path

    from canora.cli import build_parser

    p = build_parser()
    assert p.parse_args(["vocode", "x", "-o", "y"]).vocoder == "bundled"
    assert p.parse_args(["vocode", "x", "-o", "y", "--checkpoint", "g_1"]).vocoder == "g_1"
    assert p.parse_args(["refine", "x", "-o", "y", "--model", "r"]).refiner == "r"
    assert p.parse_args(["refine", "x", "-o", "y"]).refiner == "bundled"
    assert p.parse_args(["train-refiner", "d1", "d2", "-o", "r"]).data == [Path("d1"), Path("d2")]
    assert p.parse_args(["train-refiner", "--data", "d1", "-o", "r"]).data_opt == [Path("d1")]
    assert p.parse_args(["train-vocoder", "w", "-o", "r"]).wavs == Path("w")
    assert p.parse_args(["train-vocoder", "--wavs", "w", "-o", "r"]).wavs_opt == Path("w")
    a = p.parse_args(["report", "orig", "ref", "-o", "rep"])
    assert (a.original, a.refined) == (Path("orig"), Path("ref"))
    for cmd in (["convert", "x", "-o", "y"], ["refine", "x", "-o", "y"], ["vocode", "x", "-o", "y"],
                ["report", "a", "b", "-o", "y"], ["demo"], ["ui"], ["train-refiner", "d", "-o", "r"],
                ["train-vocoder", "w", "-o", "r"]):
        a = p.parse_args([*cmd, "--device", "CPU", "--threads", "1"])
        assert (a.device, a.threads) == ("cpu", 1), cmd
    for cmd in ("convert", "refine", "vocode", "mel", "eval", "doctor", "report"):
        assert "--overwrite" in p._subparsers._group_actions[0].choices[cmd].format_help(), cmd
    for cmd, sub in p._subparsers._group_actions[0].choices.items():  # argparse %-formats help, not descriptions
        assert "%%" not in sub.format_help(), cmd

    code = main(["vocode", str(wav_dir / "b.flac"), "-o", str(tmp_path / "v"), "--vocoder", "bundled"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.strip() == str(tmp_path / "v" / "b.wav") and "vocoded 1 file(s)" in err


def test_flag_errors_are_one_line_in_the_subcommands_words(capsys, tmp_path):
    for argv, expect in ((["mel", "x", "-o", "y", "--bogus"], "canora mel: error: unrecognized arguments: --bogus"),
                         (["convert", "x", "-o", "y", "--device", "gpu"], "canora convert: error: argument --device"),
                         (["vocode", "x", "-o", "y", "--threads", "-1"], "canora vocode: error: argument --threads")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        assert expect in one_error_line(capsys.readouterr().err)
