"""A corpus of hostile inputs for every command: each gets one clear line, before the work, and nothing is lost.

Every case builds its files in a fresh workspace (``in/`` for inputs, ``out/`` for outputs, tiny models shared
by the module), runs the command in-process and checks:

* the exit status: 2 for bad input (or a disk that refuses a write), 1 for a batch with failures, 0 where the
  input is odd but fine (downmixed, replaced with --overwrite, ...);
* for status 2: exactly one non-empty line on stderr, no "Traceback", naming what is wrong;
* for status 1: a "skipped:" line naming the bad file and a summary, no "Traceback";
* the inputs and the models are unchanged (hashes before and after);
* no partial outputs (``out/`` as it was, or only the outputs of the good files) and no temp files anywhere.

Real recordings are used where a case needs singing (skipped when ../shared/data is missing); the rest is
synthetic. Write errors (read-only or full disk) are simulated by making the writer raise the OSError, so the
cases do not depend on running as root or on a real full disk.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from canora.cli import main
from canora.dsp.mel import MelSpec, wav_to_mel
from tests.conftest import make_tiny_models, shared_file

SR = 22050
SPEC = MelSpec()


def tone(seconds: float = 1.0, hz: float = 220.0, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    f0 = hz * 2 ** (0.3 * np.sin(2 * np.pi * 5 * t) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    return (amp * sum(np.sin(k * phase) / k for k in range(1, 8))).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_tiny_models(tmp_path_factory.mktemp("bad_inputs_models"))


# ---------------------------------------------------------------------- the workspace of one case
class WS:
    """Files of one case: ``inp`` (inputs, hashed), ``out`` (outputs), copies of the tiny models."""

    def __init__(self, root: Path, models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
        self.root, self.mp = root, monkeypatch
        self.inp, self.out = root / "in", root / "out"
        self.inp.mkdir()
        self.ref, self.voc = models
        self.watched: list[Path] = [self.inp, self.ref, self.voc]

    # inputs
    def wav(self, name: str, data: np.ndarray | None = None, sr: int = SR, subtype: str = "PCM_16") -> Path:
        p = self.inp / name
        sf.write(p, tone() if data is None else data, sr, subtype=subtype, format="WAV")
        return p

    def raw(self, name: str, data: bytes) -> Path:
        p = self.inp / name
        p.write_bytes(data)
        return p

    def npy(self, name: str, arr: np.ndarray) -> Path:
        p = self.inp / name
        with open(p, "wb") as f:
            np.save(f, arr)
        return p

    def mel(self, name: str = "m.npy") -> Path:
        return self.npy(name, wav_to_mel(tone(), SPEC))

    def model_copy(self, which: str, edit: Callable[[dict], None] | None = None, text: str | None = None,
                   keep_hash: bool = False) -> Path:
        """A copy of the tiny refiner/vocoder in ``in/`` (so it is watched) with model.json edited: as an export
        written before ``config_sha256`` existed (the hash dropped), or with it kept (``keep_hash``)."""
        d = self.inp / f"{which}_model"
        shutil.copytree(self.ref if which == "refiner" else self.voc, d)
        if edit is not None:
            doc = json.loads((d / "model.json").read_text())
            if not keep_hash:
                doc.pop("config_sha256", None)
            edit(doc)
            (d / "model.json").write_text(json.dumps(doc))
        if text is not None:
            (d / "model.json").write_text(text)
        return d

    # checks
    def hashes(self) -> dict[str, str]:
        out = {}
        for base in self.watched:
            for p in sorted([base] if base.is_file() else base.rglob("*")):
                if p.is_file():
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        return out

    def out_files(self) -> dict[str, str]:
        if not self.out.exists():
            return {}
        return {str(p.relative_to(self.out)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(self.out.rglob("*")) if p.is_file()}

    def models_args(self) -> list[str]:
        return ["--refiner", str(self.ref), "--vocoder", str(self.voc)]


@dataclass
class Case:
    argv: list[str]
    code: int = 2
    expect: str | tuple[str, ...] = ()  # in the error line (status 2) or in stderr (status 1)
    made: tuple[str, ...] = ()  # outputs (relative to out/) that must exist afterwards
    check: Callable[[], None] | None = None
    extra: dict = field(default_factory=dict)


CASES: dict[str, Callable[[WS], Case]] = {}


def case(fn: Callable[[WS], Case]) -> Callable[[WS], Case]:
    CASES[fn.__name__.removeprefix("c_")] = fn
    return fn


def wav_header(channels: int, sr: int, frames: int, bits: int = 16) -> bytes:
    block = channels * bits // 8
    data = frames * block
    return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, channels, sr,
                                                                             sr * block, block, bits)
            + b"data" + struct.pack("<I", data))


def simulate_write_error(ws: WS, code: int, after: int = 0, name_filter: str = "") -> None:
    """Make canora's writer fail with ``OSError(code)``: after ``after`` files were written (per process), and only
    for outputs whose name contains ``name_filter``."""
    import canora.io.files as files

    real = files._mkstemp
    seen = {"n": 0}

    def failing(path: Path) -> tuple[int, str]:
        if name_filter in path.name:
            seen["n"] += 1
            if seen["n"] > after:
                raise OSError(code, os.strerror(code), str(path))
        return real(path)

    ws.mp.setattr(files, "_mkstemp", failing)


# ---------------------------------------------------------------------- audio
@case
def c_audio_corrupt(ws: WS) -> Case:
    return Case(["mel", ws.raw("corrupt.wav", b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 20), "-o", ws.out],
                expect=("corrupt.wav", "cannot read audio"))


@case
def c_audio_zero_bytes(ws: WS) -> Case:
    return Case(["mel", ws.raw("zero.wav", b""), "-o", ws.out], expect=("zero.wav", "cannot read audio"))


@case
def c_audio_empty(ws: WS) -> Case:
    return Case(["mel", ws.wav("empty.wav", np.zeros(0, np.float32)), "-o", ws.out], expect=("empty.wav", "empty"))


@case
def c_audio_silent(ws: WS) -> Case:
    return Case(["mel", ws.wav("silent.wav", np.zeros(SR, np.float32)), "-o", ws.out],
                expect=("silent.wav", "silent"))


@case
def c_audio_nan(ws: WS) -> Case:
    x = tone()
    x[100:200] = np.nan
    return Case(["mel", ws.wav("nan.wav", x, subtype="FLOAT"), "-o", ws.out], expect=("nan.wav", "NaN"))


@case
def c_audio_inf_convert(ws: WS) -> Case:
    x = tone()
    x[5] = np.inf
    return Case(["convert", ws.wav("inf.wav", x, subtype="FLOAT"), "-o", ws.out / "o.wav", *ws.models_args()],
                expect=("inf.wav", "NaN/inf"))


@case
def c_audio_text_named_wav(ws: WS) -> Case:
    return Case(["convert", ws.raw("notes.wav", b"la la la, not audio\n" * 50), "-o", ws.out / "o.wav",
                 *ws.models_args()], expect=("notes.wav", "cannot read audio"))


@case
def c_audio_npy_named_wav(ws: WS) -> Case:
    p = ws.inp / "mel.wav"
    with open(p, "wb") as f:
        np.save(f, np.zeros((80, 10), np.float32))
    return Case(["mel", p, "-o", ws.out], expect=("mel.wav", "cannot read audio"))


@case
def c_audio_text_named_mp3(ws: WS) -> Case:
    return Case(["vocode", ws.raw("song.mp3", b"ID3 but not really" * 30), "-o", ws.out, "--vocoder", ws.voc],
                expect=("song.mp3", "cannot read audio"))


@case
def c_audio_absurd_channel_header(ws: WS) -> Case:
    return Case(["mel", ws.raw("chan.wav", wav_header(60000, SR, 10, bits=8) + b"\x00" * 100), "-o", ws.out],
                expect="chan.wav")


@case
def c_audio_truncated_header(ws: WS) -> Case:
    return Case(["mel", ws.raw("trunc.wav", wav_header(1, SR, 1000)[:20]), "-o", ws.out], expect="trunc.wav")


@case
def c_audio_many_channels_downmixed(ws: WS) -> Case:
    """64 channels: accepted, decoded block by block and averaged to mono."""
    x = np.repeat(tone(0.5)[:, None], 64, axis=1) * 0.5
    p = ws.inp / "many.wav"
    sf.write(p, x, SR, subtype="PCM_16")
    return Case(["mel", p, "-o", ws.out], code=0, made=("many.npy",))


@case
def c_audio_too_short_to_convert(ws: WS) -> Case:
    return Case(["convert", ws.wav("short.wav", tone(0.01)), "-o", ws.out / "o.wav", *ws.models_args()],
                expect=("short.wav", "too short"))


@case
def c_audio_missing_input(ws: WS) -> Case:
    return Case(["convert", ws.inp / "nope.wav", "-o", ws.out, *ws.models_args()],
                expect=("nope.wav", "no such file"))


@case
def c_audio_dir_without_audio(ws: WS) -> Case:
    ws.raw("readme.txt", b"hello")
    return Case(["mel", ws.inp, "-o", ws.out], expect="no input files")


@case
def c_audio_same_stem_twice(ws: WS) -> Case:
    ws.wav("a.wav")
    sf.write(ws.inp / "a.flac", tone(), SR)
    return Case(["mel", ws.inp, "-o", ws.out], expect=("same name", "collide"))


# ---------------------------------------------------------------------- mels
@case
def c_mel_npz_as_npy_vocode(ws: WS) -> Case:
    p = ws.inp / "m.npy"
    with open(p, "wb") as f:
        np.savez(f, mel=wav_to_mel(tone(), SPEC))
    return Case(["vocode", p, "-o", ws.out, "--vocoder", ws.voc], expect=("m.npy", ".npz archive"))


@case
def c_mel_npz_as_npy_refine(ws: WS) -> Case:
    p = ws.inp / "m.npy"
    with open(p, "wb") as f:
        np.savez(f, a=np.zeros(3), b=np.ones(2))
    return Case(["refine", p, "-o", ws.out, "--refiner", ws.ref], expect=("m.npy", ".npz archive"))


@case
def c_mel_npz_as_npy_doctor(ws: WS) -> Case:
    p = ws.inp / "m.npy"
    with open(p, "wb") as f:
        np.savez(f, mel=np.zeros((80, 5)))
    return Case(["doctor", p], expect=("m.npy", ".npz archive"))


@case
def c_mel_time_major(ws: WS) -> Case:
    return Case(["vocode", ws.npy("t.npy", wav_to_mel(tone(), SPEC).T.copy()), "-o", ws.out, "--vocoder", ws.voc],
                expect=("t.npy", "(T, 80) layout"))


@case
def c_mel_time_major_refine(ws: WS) -> Case:
    return Case(["refine", ws.npy("t.npy", wav_to_mel(tone(), SPEC).T.copy()), "-o", ws.out, "--refiner", ws.ref],
                expect=("t.npy", "(T, 80) layout"))


@case
def c_mel_nan(ws: WS) -> Case:
    m = wav_to_mel(tone(), SPEC)
    m[3, 4] = np.nan
    return Case(["vocode", ws.npy("n.npy", m), "-o", ws.out, "--vocoder", ws.voc], expect=("n.npy", "NaN"))


@case
def c_mel_power_db(ws: WS) -> Case:
    m = np.random.default_rng(0).uniform(-80, 0, (80, 40)).astype(np.float32)
    return Case(["vocode", ws.npy("db.npy", m), "-o", ws.out, "--vocoder", ws.voc], expect=("db.npy", "dB"))


@case
def c_mel_one_dimensional(ws: WS) -> Case:
    return Case(["vocode", ws.npy("v.npy", np.zeros(80, np.float32)), "-o", ws.out, "--vocoder", ws.voc],
                expect=("v.npy", "shape"))


@case
def c_mel_integer(ws: WS) -> Case:
    return Case(["vocode", ws.npy("i.npy", np.full((80, 10), -5, np.int16)), "-o", ws.out, "--vocoder", ws.voc],
                expect=("i.npy", "dtype"))


@case
def c_mel_complex(ws: WS) -> Case:
    return Case(["vocode", ws.npy("c.npy", np.zeros((80, 10), np.complex64)), "-o", ws.out, "--vocoder", ws.voc],
                expect=("c.npy", "real numbers"))


@case
def c_mel_pickled_objects(ws: WS) -> Case:
    p = ws.inp / "o.npy"
    with open(p, "wb") as f:
        np.save(f, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    return Case(["vocode", p, "-o", ws.out, "--vocoder", ws.voc], expect=("o.npy", "not a readable .npy"))


@case
def c_mel_empty_array(ws: WS) -> Case:
    return Case(["vocode", ws.npy("e.npy", np.zeros((80, 0), np.float32)), "-o", ws.out, "--vocoder", ws.voc],
                expect=("e.npy", "empty"))


@case
def c_mel_truncated(ws: WS) -> Case:
    p = ws.mel("t.npy")
    p.write_bytes(p.read_bytes()[:200])
    return Case(["vocode", p, "-o", ws.out, "--vocoder", ws.voc], expect=("t.npy", "not a readable .npy"))


@case
def c_mel_header_claims_huge_shape(ws: WS) -> Case:
    p = ws.mel("h.npy")
    raw = p.read_bytes()
    head_len = struct.unpack("<H", raw[8:10])[0]
    header = raw[10:10 + head_len].decode("latin1")
    shape = header[header.index("(") : header.index(")") + 1]
    new = header.replace(shape, "(80, 999999999999)").ljust(head_len)[:head_len]
    p.write_bytes(raw[:10] + new.encode("latin1") + raw[10 + head_len:])
    return Case(["vocode", p, "-o", ws.out, "--vocoder", ws.voc], expect=("h.npy", "not a readable .npy"))


@case
def c_mel_zero_byte(ws: WS) -> Case:
    return Case(["doctor", ws.raw("z.npy", b"")], expect=("z.npy", "not a readable .npy"))


@case
def c_mel_f0_wrong_length(ws: WS) -> Case:
    p = ws.mel("s.npy")
    ws.npy("s.f0.npy", np.full(7, 220.0, np.float32))
    return Case(["vocode", p, "-o", ws.out, "--vocoder", ws.voc], expect=("s.f0.npy", "does not fit"))


@case
def c_mel_f0_negative(ws: WS) -> Case:
    p = ws.mel("s.npy")
    ws.npy("s.f0.npy", np.full(np.load(p).shape[1], -5.0, np.float32))
    return Case(["vocode", p, "-o", ws.out, "--vocoder", ws.voc], expect=("s.f0.npy", "negative"))


@case
def c_mel_f0_npz(ws: WS) -> Case:
    p = ws.mel("s.npy")
    with open(ws.inp / "s.f0.npy", "wb") as f:
        np.savez(f, f0=np.zeros(3))
    return Case(["vocode", p, "-o", ws.out, "--vocoder", ws.voc], expect=("s.f0.npy", ".npz archive"))


# ---------------------------------------------------------------------- checkpoints and models
@case
def c_ckpt_garbage(ws: WS) -> Case:
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", ws.raw("g_00000001", os.urandom(500))],
                expect=("g_00000001", "not a torch checkpoint"))


@case
def c_ckpt_truncated_zip(ws: WS) -> Case:
    p = ws.inp / "g_00000002"
    torch.save({"generator": {"conv_pre.weight": torch.zeros(4, 80, 7)}}, p)
    p.write_bytes(p.read_bytes()[:300])
    return Case(["vocode", ws.mel(), "-o", ws.out, "--checkpoint", p], expect=("g_00000002", "not a torch checkpoint"))


@case
def c_ckpt_pickle_payload(ws: WS) -> Case:
    import pickle

    marker = ws.root / "pwned"

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, (f"touch {marker}",))

    p = ws.inp / "g_00000003"
    p.write_bytes(pickle.dumps({"generator": Evil()}, protocol=2))

    def not_run() -> None:
        assert not marker.exists(), "the pickle payload ran"

    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", p], expect=("g_00000003", "weights_only"),
                check=not_run)


@case
def c_ckpt_missing(ws: WS) -> Case:
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", ws.inp / "nowhere"], expect=("nowhere", "not found"))


@case
def c_ckpt_export_weights_replaced(ws: WS) -> Case:
    d = ws.model_copy("vocoder")
    (d / "model.safetensors").write_bytes(b"\x00" * 64)
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", d], expect=("model.safetensors", "hash"))


@case
def c_ckpt_dir_without_model(ws: WS) -> Case:
    d = ws.inp / "empty_model"
    d.mkdir()
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--refiner", d, "--vocoder", ws.voc],
                expect=("empty_model", "model"))


@case
def c_ckpt_wrong_kind(ws: WS) -> Case:
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--refiner", ws.voc], expect=("expected a 'refiner'",))


@case
def c_ckpt_discriminator_file(ws: WS) -> Case:
    p = ws.inp / "do_00000001"
    torch.save({"mpd": {"w": torch.zeros(1)}, "msd": {"w": torch.zeros(1)}}, p)
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", p], expect=("do_00000001", "discriminator"))


# ---------------------------------------------------------------------- configs
@case
def c_config_refiner_wrong_type(ws: WS) -> Case:
    d = ws.model_copy("refiner", lambda doc: doc["config"].__setitem__("layers", "abc"))
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--refiner", d],
                expect=("model.json", "layers", "expected an integer"))


@case
def c_config_refiner_unknown_key(ws: WS) -> Case:
    d = ws.model_copy("refiner", lambda doc: doc["config"].__setitem__("wings", 2))
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--refiner", d, "--vocoder", ws.voc],
                expect=("model.json", "unknown keys", "wings"))


@case
def c_config_refiner_invalid_json(ws: WS) -> Case:
    d = ws.model_copy("refiner", text='{"format": "canora-export", ')
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--refiner", d], expect=("model.json", "not valid JSON"))


@case
def c_config_refiner_singers_not_a_list(ws: WS) -> Case:
    d = ws.model_copy("refiner", lambda doc: doc["meta"].__setitem__("singers", 5))
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--refiner", d], expect=("model.json",))


@case
def c_config_refiner_normalizer_text(ws: WS) -> Case:
    d = ws.model_copy("refiner", lambda doc: doc["meta"]["normalizer"].__setitem__("lo", "x"))
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--refiner", d], expect=("model.json",))


@case
def c_config_refiner_unknown_f0_method(ws: WS) -> Case:
    d = ws.model_copy("refiner", lambda doc: doc["meta"]["features"].__setitem__("f0_method", "crepe-xl"))
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--refiner", d, "--vocoder", ws.voc],
                expect=("model.json", "crepe-xl"))


@case
def c_config_vocoder_wrong_type(ws: WS) -> Case:
    d = ws.model_copy("vocoder", lambda doc: doc["mel_spec"].__setitem__("hop_length", [256]))
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", d], expect=("model.json", "hop_length"))


@case
def c_config_vocoder_config_list(ws: WS) -> Case:
    d = ws.model_copy("vocoder", lambda doc: doc.__setitem__("config", [1, 2]))
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", d], expect=("model.json", "JSON object"))


@case
def c_config_mel_invalid_json(ws: WS) -> Case:
    cfg = ws.raw("cfg.json", b"{not json")
    return Case(["mel", ws.wav("s.wav"), "-o", ws.out, "--config", cfg], expect=("cfg.json", "not valid JSON"))


@case
def c_config_mel_wrong_type(ws: WS) -> Case:
    cfg = ws.raw("spec.json", json.dumps({**SPEC.to_dict(), "sample_rate": "fast"}).encode())
    return Case(["mel", ws.wav("s.wav"), "-o", ws.out, "--config", cfg], expect=("spec.json", "sample_rate"))


@case
def c_config_mel_unknown_key(ws: WS) -> Case:
    cfg = ws.raw("spec.json", json.dumps({**SPEC.to_dict(), "dither": 1}).encode())
    return Case(["mel", ws.wav("s.wav"), "-o", ws.out, "--config", cfg], expect=("spec.json", "unknown keys"))


@case
def c_config_mel_array(ws: WS) -> Case:
    cfg = ws.raw("arr.json", b"[1, 2, 3]")
    return Case(["mel", ws.wav("s.wav"), "-o", ws.out, "--config", cfg], expect=("arr.json", "JSON object"))


@case
def c_config_mel_missing(ws: WS) -> Case:
    return Case(["mel", ws.wav("s.wav"), "-o", ws.out, "--config", ws.inp / "nope.json"],
                expect=("nope.json", "not found"))


@case
def c_config_refine_mel_spec_invalid(ws: WS) -> Case:
    ws.mel("m.npy")
    ws.raw("mel_spec.json", b"{{{")
    return Case(["refine", ws.inp, "-o", ws.out, "--refiner", ws.ref], expect=("mel_spec.json", "not valid JSON"))


@case
def c_config_refine_mel_spec_wrong_type(ws: WS) -> Case:
    m = ws.mel("m.npy")
    spec = ws.raw("my_spec.json", json.dumps({**SPEC.to_dict(), "n_mels": "eighty"}).encode())
    return Case(["refine", m, "-o", ws.out, "--refiner", ws.ref, "--mel-spec", spec],
                expect=("my_spec.json", "n_mels"))


@case
def c_config_vocode_hifigan_config_missing_keys(ws: WS) -> Case:
    cfg = ws.raw("config.json", b'{"resblock": "1"}')
    p = ws.inp / "g_00000001"
    torch.save({"generator": {"conv_pre.weight": torch.zeros(4, 80, 7)}}, p)
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", p, "--config", cfg],
                expect=("config.json", "missing keys"))


# ---------------------------------------------------------------------- sidecars (canora eval)
def _eval_case(ws: WS, side: bytes) -> Case:
    conv = ws.inp / "conv"
    conv.mkdir()
    sf.write(conv / "a.wav", tone(), SR)
    (conv / "a.json").write_bytes(side)
    return Case(["eval", conv, "-o", ws.out / "scores.json"], expect="a.json")


@case
def c_sidecar_invalid_json(ws: WS) -> Case:
    return _eval_case(ws, b'{"transpose": ')


@case
def c_sidecar_a_list(ws: WS) -> Case:
    return _eval_case(ws, b"[1, 2]")


@case
def c_sidecar_transpose_text(ws: WS) -> Case:
    return _eval_case(ws, json.dumps({"transpose": "up", "source": "x.wav"}).encode())


@case
def c_sidecar_sample_rate_zero(ws: WS) -> Case:
    return _eval_case(ws, json.dumps({"sample_rate": 0, "transpose": 0}).encode())


@case
def c_sidecar_source_number(ws: WS) -> Case:
    return _eval_case(ws, json.dumps({"source": 12, "transpose": 0}).encode())


@case
def c_sidecar_batch_one_bad(ws: WS) -> Case:
    """Two converted files, one with a broken sidecar: the other is scored, exit 1."""
    conv = ws.inp / "conv"
    conv.mkdir()
    for stem in ("good", "bad"):
        sf.write(conv / f"{stem}.wav", tone(1.0), SR)
    (conv / "good.json").write_text(json.dumps({"source": str(conv / "good.wav"), "transpose": 0, "sample_rate": SR}))
    (conv / "bad.json").write_text("{oops")

    def scored() -> None:
        doc = json.loads((ws.out / "scores.json").read_text())
        assert [r["file"] for r in doc["files"]] == ["good.wav"]

    return Case(["eval", conv, "-o", ws.out / "scores.json", "--f0-method", "dio"], code=1, expect="bad.json",
                made=("scores.json",), check=scored)


@case
def c_eval_out_not_json(ws: WS) -> Case:
    conv = ws.inp / "conv"
    conv.mkdir()
    sf.write(conv / "a.wav", tone(), SR)
    return Case(["eval", conv, "-o", ws.out / "scores.txt"], expect=".json")


@case
def c_eval_out_exists(ws: WS) -> Case:
    conv = ws.inp / "conv"
    conv.mkdir()
    sf.write(conv / "a.wav", tone(), SR)
    ws.out.mkdir()
    (ws.out / "scores.json").write_text("{}")
    return Case(["eval", conv, "-o", ws.out / "scores.json"], expect=("scores.json", "already exists", "--overwrite"))


# ---------------------------------------------------------------------- flags
@case
def c_flag_device_gpu(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--device", "gpu"], expect=("--device", "gpu", "cpu"))


@case
def c_flag_device_cuda_on_cpu_build(ws: WS) -> Case:
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: --device cuda is fine")
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", ws.voc, "--device", "cuda"],
                expect=("--device cuda", "--device cpu"))


@case
def c_flag_device_cuda_index(ws: WS) -> Case:
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--refiner", ws.ref, "--device", "cuda:7"],
                expect="cuda:7")


@case
def c_flag_threads_negative(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--threads", "-1"], expect=("--threads", "-1"))


@case
def c_flag_threads_zero(ws: WS) -> Case:
    return Case(["vocode", ws.mel(), "-o", ws.out, "--threads", "0"], expect="--threads")


@case
def c_flag_transpose_1000(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--transpose", "1000", *ws.models_args()],
                expect=("1000", "36"))


@case
def c_flag_transpose_nan(ws: WS) -> Case:
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--refiner", ws.ref, "--transpose", "nan"],
                expect=("--transpose", "finite"))


@case
def c_flag_transpose_refine_beyond(ws: WS) -> Case:
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--refiner", ws.ref, "--transpose", "-40"],
                expect=("-40", "36"))


@case
def c_flag_loudness_nan(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--loudness", "nan", *ws.models_args()],
                expect=("--loudness", "finite"))


@case
def c_flag_loudness_inf(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--loudness=-inf", *ws.models_args()],
                expect=("--loudness", "finite"))


@case
def c_flag_loudness_out_of_range(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--loudness", "3", *ws.models_args()],
                expect=("--loudness", "LUFS", "-50", "-5"))


@case
def c_flag_loudness_with_stream(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--loudness", "-14", "--stream", *ws.models_args()],
                expect=("--loudness", "--stream"))


@case
def c_flag_steps_zero(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--steps", "0"], expect="--steps")


@case
def c_flag_workers_zero(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--workers", "0"], expect="--workers")


@case
def c_flag_strength_two(ws: WS) -> Case:
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--refiner", ws.ref, "--strength", "2"],
                expect=("--strength", "(0, 1]"))


@case
def c_flag_unknown_sampler(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--sampler", "euler"], expect=("euler", "dpmpp"))


@case
def c_flag_unknown_f0_method(ws: WS) -> Case:
    return Case(["train-refiner", ws.inp, "-o", ws.out, "--f0-method", "crepe"], expect=("crepe", "harvest"))


@case
def c_flag_unknown_content_method(ws: WS) -> Case:
    return Case(["train-refiner", ws.inp, "-o", ws.out, "--content-method", "whisper"], expect=("whisper", "dsp"))


@case
def c_flag_hubert_without_model(ws: WS) -> Case:
    ws.wav("s.wav")
    return Case(["train-refiner", ws.inp, "-o", ws.out, "--content-method", "hubert"],
                expect=("--content-model", "hubert"), check=lambda: None)


@case
def c_flag_hubert_model_dir_empty(ws: WS) -> Case:
    ws.wav("s.wav")
    d = ws.root / "hubert"
    d.mkdir()
    return Case(["train-refiner", ws.inp, "-o", ws.out, "--content-method", "hubert", "--content-model", d],
                expect=("hubert", "config.json"))


@case
def c_flag_content_model_without_hubert(ws: WS) -> Case:
    ws.wav("s.wav")
    return Case(["train-refiner", ws.inp, "-o", ws.out, "--content-model", ws.root], expect="--content-model")


@case
def c_flag_unknown_singer(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--singer", "bob", *ws.models_args()],
                expect=("unknown singer 'bob'", "pjs"))


@case
def c_flag_max_slice_zero(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--max-slice-seconds", "0", *ws.models_args()],
                expect="--max-slice-seconds")


@case
def c_flag_key_mode(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--auto-transpose", "--key-mode", "fifths"],
                expect="fifths")


@case
def c_flag_key_mode_with_transpose(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--transpose", "3", "--key-mode", "free",
                 *ws.models_args()], expect=("--key-mode", "--transpose"))


@case
def c_flag_refine_key_mode_without_auto(ws: WS) -> Case:
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--refiner", ws.ref, "--key-mode", "free"],
                expect=("--key-mode", "--auto-transpose"))


@case
def c_flag_unknown_option(ws: WS) -> Case:
    return Case(["mel", ws.wav("s.wav"), "-o", ws.out, "--colour", "blue"], expect="--colour")


@case
def c_flag_ui_port_in_use(ws: WS) -> Case:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    ws.extra_socket = s  # type: ignore[attr-defined]
    return Case(["ui", "--port", str(port), *ws.models_args()], expect=(str(port), "in use"), check=s.close)


@case
def c_flag_ui_port_out_of_range(ws: WS) -> Case:
    return Case(["ui", "--port", "70000"], expect=("--port", "70000"))


@case
def c_flag_eval_f0_method(ws: WS) -> Case:
    return Case(["eval", ws.wav("a.wav"), "-o", ws.out / "s.json", "--f0-method", "yin2"], expect="yin2")


# ---------------------------------------------------------------------- paths
@case
def c_path_existing_output(ws: WS) -> Case:
    ws.out.mkdir()
    (ws.out / "o.wav").write_bytes(b"precious")
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out / "o.wav", *ws.models_args()],
                expect=("o.wav", "already exists", "--overwrite"))


@case
def c_path_existing_output_in_dir(ws: WS) -> Case:
    ws.out.mkdir()
    (ws.out / "s.npy").write_bytes(b"precious")
    return Case(["mel", ws.wav("s.wav"), "-o", ws.out], expect=("s.npy", "already exists"))


@case
def c_path_existing_output_overwrite(ws: WS) -> Case:
    ws.out.mkdir()
    (ws.out / "s.npy").write_bytes(b"old")

    def replaced() -> None:
        assert np.load(ws.out / "s.npy").shape[0] == 80

    return Case(["mel", ws.wav("s.wav"), "-o", ws.out, "--overwrite"], code=0, made=("s.npy",), check=replaced)


@case
def c_path_output_is_the_input(ws: WS) -> Case:
    p = ws.wav("s.wav")
    return Case(["convert", p, "-o", p, *ws.models_args()], expect=("s.wav", "overwrite the input"))


@case
def c_path_output_dir_is_input_dir(ws: WS) -> Case:
    ws.wav("s.wav")
    return Case(["mel", ws.inp, "-o", ws.inp], expect="input directory")


@case
def c_path_output_under_an_input_file(ws: WS) -> Case:
    p = ws.wav("s.wav")
    return Case(["vocode", p, "-o", p / "out", "--vocoder", ws.voc], expect=("s.wav", "not a directory"))


@case
def c_path_output_is_a_file_not_dir(ws: WS) -> Case:
    ws.out.mkdir()
    blocker = ws.out / "mels"
    blocker.write_text("a file")
    return Case(["mel", ws.wav("s.wav"), "-o", blocker], expect=("mels", "not a directory"))


@case
def c_path_dir_of_inputs_to_one_file(ws: WS) -> Case:
    ws.wav("a.wav")
    ws.wav("b.wav")
    return Case(["convert", ws.inp, "-o", ws.out / "x.wav", *ws.models_args()], expect="output directory")


@case
def c_path_out_mp3(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out / "o.mp3", *ws.models_args()],
                expect=("o.mp3", ".wav or .flac"))


@case
def c_path_out_flac_float(ws: WS) -> Case:
    return Case(["vocode", ws.mel(), "-o", ws.out / "o.flac", "--vocoder", ws.voc, "--float"], expect=("FLAC",))


@case
def c_path_mel_to_wav_name(ws: WS) -> Case:
    return Case(["mel", ws.wav("s.wav"), "-o", ws.out / "s.wav"], expect=("s.wav", ".npy"))


@case
def c_path_report_out_html(ws: WS) -> Case:
    (ws.inp / "o").mkdir()
    (ws.inp / "r").mkdir()
    return Case(["report", ws.inp / "o", ws.inp / "r", "-o", ws.out / "report.html"],
                expect=("report.html", "writes a directory"))


@case
def c_path_doctor_fix_to_npy(ws: WS) -> Case:
    return Case(["doctor", ws.mel(), "--fix", "-o", ws.out / "fixed.npy"], expect=("fixed.npy", "directory"))


@case
def c_path_doctor_out_without_fix(ws: WS) -> Case:
    return Case(["doctor", ws.mel(), "-o", ws.out], expect=("--fix",))


@case
def c_path_vocode_to_flac(ws: WS) -> Case:
    def is_flac() -> None:
        assert sf.info(str(ws.out / "o.flac")).format == "FLAC"

    return Case(["vocode", ws.mel(), "-o", ws.out / "o.flac", "--vocoder", ws.voc], code=0, made=("o.flac",),
                check=is_flac)


@case
def c_path_train_refiner_out_inside_data(ws: WS) -> Case:
    ws.wav("s.wav")
    return Case(["train-refiner", ws.inp, "-o", ws.inp / "run"], expect=("inside", "data directory"))


@case
def c_path_train_vocoder_out_is_data(ws: WS) -> Case:
    ws.wav("s.wav")
    return Case(["train-vocoder", ws.inp, "-o", ws.inp], expect="data directory")


@case
def c_path_train_refiner_out_is_file(ws: WS) -> Case:
    ws.wav("s.wav")
    ws.out.mkdir()
    (ws.out / "run").write_text("x")
    return Case(["train-refiner", ws.inp, "-o", ws.out / "run"], expect=("run", "is a file"))


@case
def c_path_train_data_without_audio(ws: WS) -> Case:
    return Case(["train-vocoder", ws.inp, "-o", ws.out / "run"], expect="no audio files")


@case
def c_path_read_only_dir(ws: WS) -> Case:
    if os.geteuid() == 0:  # root writes anyway: simulate the file system refusing the probe instead
        import canora.io.files as files

        def refuse(*a: object, **k: object) -> tuple[int, str]:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        ws.mp.setattr(files.tempfile, "mkstemp", refuse)
    else:
        ws.out.mkdir()
        ws.out.chmod(0o555)
    return Case(["mel", ws.wav("s.wav"), "-o", ws.out / "mels"], expect=("mels", "choose another -o"))


@case
def c_path_input_dir_unreadable(ws: WS) -> Case:
    """An OSError no check foresaw (here: listing the input directory is refused) is one line naming the path."""
    ws.wav("s.wav")
    real = Path.iterdir

    def refuse(self: Path):  # noqa: ANN202
        if self == ws.inp:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real(self)

    ws.mp.setattr(Path, "iterdir", refuse)
    return Case(["mel", ws.inp, "-o", ws.out], expect=("in", "Permission denied"))


@case
def c_path_disk_full_before_work(ws: WS) -> Case:
    import canora.io.files as files

    ws.mp.setattr(files.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out / "o.wav", *ws.models_args()], expect=("disk is full",))


@case
def c_path_enospc_while_writing_sidecar(ws: WS) -> Case:
    """The conversion is done, the audio is staged, the sidecar hits a full disk: neither is published."""
    simulate_write_error(ws, errno.ENOSPC, name_filter=".json")
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out / "o.wav", "--steps", "1", *ws.models_args()],
                expect=("o.json", "disk is full"))


@case
def c_path_erofs_while_writing(ws: WS) -> Case:
    simulate_write_error(ws, errno.EROFS)
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", ws.voc], expect=("m.wav", "read-only"))


@case
def c_path_eacces_while_writing(ws: WS) -> Case:
    simulate_write_error(ws, errno.EACCES)
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--refiner", ws.ref, "--steps", "1"],
                expect=("s.npy", "permission"))


@case
def c_path_rename_fails(ws: WS) -> Case:
    """The second rename of a set fails: the first file is taken back, nothing is left."""
    import canora.io.files as files

    real = files.publish
    calls = {"n": 0}

    def publish(a: str, b: Path, overwrite: bool = True) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(b))
        real(a, b, overwrite)

    ws.mp.setattr(files, "publish", publish)
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--refiner", ws.ref, "--steps", "1"],
                expect=("s.f0.npy", "input/output error"))


@case
def c_path_stale_temp_removed(ws: WS) -> Case:
    """A temp file of a killed run (its pid is gone) is cleaned up; the run then works."""
    ws.out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (ws.out / f".s.npy.canora-{int(dead.stdout)}-abc123.tmp").write_bytes(b"half")
    return Case(["mel", ws.wav("s.wav"), "-o", ws.out], code=0, made=("s.npy",))


# ---------------------------------------------------------------------- batches with one bad file
@case
def c_batch_mel_one_corrupt(ws: WS) -> Case:
    ws.wav("a.wav")
    ws.wav("c.wav", tone(0.5))
    ws.raw("b.wav", b"RIFF nonsense")
    return Case(["mel", ws.inp, "-o", ws.out], code=1, expect=("b.wav", "1 failed"), made=("a.npy", "c.npy"))


@case
def c_batch_vocode_one_npz(ws: WS) -> Case:
    ws.mel("a.npy")
    with open(ws.inp / "b.npy", "wb") as f:
        np.savez(f, mel=np.zeros((80, 3)))
    return Case(["vocode", ws.inp, "-o", ws.out, "--vocoder", ws.voc], code=1, expect=("b.npy", ".npz archive"),
                made=("a.wav",))


@case
def c_batch_vocode_one_nan(ws: WS) -> Case:
    ws.mel("a.npy")
    m = wav_to_mel(tone(), SPEC)
    m[0, 0] = np.nan
    ws.npy("b.npy", m)
    return Case(["vocode", ws.inp, "-o", ws.out, "--vocoder", ws.voc], code=1, expect=("b.npy", "NaN"),
                made=("a.wav",))


@case
def c_batch_refine_one_corrupt(ws: WS) -> Case:
    ws.wav("a.wav")
    ws.raw("b.flac", b"fLaC but broken")
    return Case(["refine", ws.inp, "-o", ws.out, "--refiner", ws.ref, "--steps", "1"], code=1,
                expect=("b.flac", "1 failed"), made=("a.npy", "a.f0.npy"))


@case
def c_batch_convert_one_corrupt(ws: WS) -> Case:
    ws.wav("a.wav")
    ws.raw("b.wav", b"garbage" * 30)
    return Case(["convert", ws.inp, "-o", ws.out, "--steps", "1", *ws.models_args()], code=1, expect="b.wav",
                made=("a.wav", "a.json"))


@case
def c_batch_doctor_one_unreadable(ws: WS) -> Case:
    ws.mel("a.npy")
    ws.raw("b.npy", b"\x93NUMPY garbage")
    return Case(["doctor", ws.inp], code=1, expect="b.npy")


@case
def c_batch_disk_full_stops(ws: WS) -> Case:
    """A full disk at the second file: the batch stops there (the rest would fail the same way), says so."""
    for s in "abc":
        ws.wav(f"{s}.wav")
    simulate_write_error(ws, errno.ENOSPC, after=1)
    return Case(["mel", ws.inp, "-o", ws.out], code=1, expect=("b.npy", "disk is full", "not attempted: c.wav"),
                made=("a.npy",))


@case
def c_batch_eacces_goes_on(ws: WS) -> Case:
    """No permission for one output: that file fails, the others are written."""
    for s in "abc":
        ws.wav(f"{s}.wav")
    simulate_write_error(ws, errno.EACCES, name_filter="b.npy")
    return Case(["mel", ws.inp, "-o", ws.out], code=1, expect=("b.npy", "permission"), made=("a.npy", "c.npy"))


@case
def c_batch_unexpected_error_goes_on(ws: WS) -> Case:
    """A bug in one file's processing (simulated): that file fails with one line, the rest are done."""
    import canora.dsp.mel as dmel

    real = dmel.wav_to_mel

    def flaky(wav: np.ndarray, spec: MelSpec) -> np.ndarray:
        if len(wav) == SR // 2:
            raise ZeroDivisionError("simulated")
        return real(wav, spec)

    ws.mp.setattr(dmel, "wav_to_mel", flaky)
    ws.wav("a.wav")
    ws.wav("b.wav", tone(0.5))
    return Case(["mel", ws.inp, "-o", ws.out], code=1, expect=("b.wav", "ZeroDivisionError"), made=("a.npy",))


@case
def c_unexpected_error_single(ws: WS) -> Case:
    import canora.dsp.mel as dmel

    def broken(wav: np.ndarray, spec: MelSpec) -> np.ndarray:
        raise RuntimeError("simulated\nover two lines")

    ws.mp.setattr(dmel, "wav_to_mel", broken)
    return Case(["mel", ws.wav("s.wav"), "-o", ws.out], code=1, expect=("unexpected error", "RuntimeError"))


# ---------------------------------------------------------------------- real recordings and a real checkpoint
@case
def c_real_wav_truncated_mid_data(ws: WS) -> Case:
    """A real song cut off mid-file (the header promises more): read as far as it goes, not an error."""
    data = shared_file("pjs/pjs001_song.wav").read_bytes()
    return Case(["mel", ws.raw("cut.wav", data[:200_000]), "-o", ws.out], code=0, made=("cut.npy",))


@case
def c_real_wav_named_npy(ws: WS) -> Case:
    data = shared_file("vocadito/vocadito_1.wav").read_bytes()
    return Case(["vocode", ws.raw("v.npy", data[:100_000]), "-o", ws.out, "--vocoder", ws.voc],
                expect=("v.npy", "an audio file named .npy"))


@case
def c_real_mel_time_major(ws: WS) -> Case:
    from canora.io.audio import load_audio

    wav = load_audio(shared_file("vocadito/vocadito_1.wav"), SR)[: 2 * SR]
    return Case(["refine", ws.npy("real.npy", wav_to_mel(wav, SPEC).T.copy()), "-o", ws.out, "--refiner", ws.ref],
                expect=("real.npy", "(T, 80) layout"))


@case
def c_real_mel_in_db(ws: WS) -> Case:
    from canora.io.audio import load_audio

    wav = load_audio(shared_file("vocadito/vocadito_1.wav"), SR)[: 2 * SR]
    db = 20 * wav_to_mel(wav, SPEC) / np.log(10)  # the same mel in dB (20 log10 |x|)
    return Case(["vocode", ws.npy("db.npy", db.astype(np.float32)), "-o", ws.out, "--vocoder", ws.voc],
                expect=("db.npy", "look like"))


@case
def c_real_ckpt_truncated(ws: WS) -> Case:
    d = ws.inp / "lj"
    d.mkdir()
    src = shared_file("hifigan/LJ_V2/generator_v2")
    (d / "config.json").write_bytes((src.parent / "config.json").read_bytes())
    (d / "generator_v2").write_bytes(src.read_bytes()[:1_000_000])
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", d / "generator_v2"],
                expect=("generator_v2", "not a torch checkpoint"))


@case
def c_real_ckpt_config_wrong_type(ws: WS) -> Case:
    d = ws.inp / "lj"
    d.mkdir()
    src = shared_file("hifigan/LJ_V2/generator_v2")
    cfg = json.loads((src.parent / "config.json").read_text())
    cfg["num_mels"] = "eighty"
    (d / "config.json").write_text(json.dumps(cfg))
    shutil.copy(src, d / "generator_v2")
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", d / "generator_v2"], expect=("config.json",))


@case
def c_real_batch_one_cut_to_nothing(ws: WS) -> Case:
    """Real songs, one cut to its header: the others are done, the empty one is named, exit 1."""
    from canora.io.audio import load_audio

    wav = load_audio(shared_file("vocadito/vocadito_1.wav"), SR)
    sf.write(ws.inp / "a.wav", wav[SR: 2 * SR], SR)
    sf.write(ws.inp / "b.flac", wav[2 * SR: 3 * SR], SR)
    ws.raw("c.wav", shared_file("pjs/pjs002_song.wav").read_bytes()[:44])
    return Case(["mel", ws.inp, "-o", ws.out], code=1, expect=("c.wav", "1 failed"), made=("a.npy", "b.npy"))


# ---------------------------------------------------------------------- issue 33: memory, hangs, lost work
def big(ws: WS, name: str) -> Path:
    """A path for a large (sparse) file outside the watched inputs (they are hashed byte by byte)."""
    d = ws.root / "big"
    d.mkdir(exist_ok=True)
    return d / name


def sparse_wav(path: Path, channels: int, sr: int, minutes: float) -> Path:
    """A WAV whose header claims ``minutes`` of 16-bit audio; its data a sparse hole (nothing on disk)."""
    frames = int(minutes * 60 * sr)
    head = wav_header(channels, sr, frames)
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + frames * channels * 2)
    return path


def flac_bytes(data: np.ndarray, sr: int, *, total: int | None = None, rate: int | None = None) -> bytes:
    """A FLAC of ``data``; its STREAMINFO's total samples (0 = unknown length) and rate overwritten when given."""
    import io

    buf = io.BytesIO()
    sf.write(buf, data, sr, format="FLAC", subtype="PCM_16")
    b = bytearray(buf.getvalue())
    si = 8  # "fLaC" + the metadata block header
    if rate is not None:
        b[si + 10], b[si + 11] = (rate >> 12) & 0xFF, (rate >> 4) & 0xFF
        b[si + 12] = ((rate & 0xF) << 4) | (b[si + 12] & 0x0F)
    if total is not None:
        b[si + 13] = (b[si + 13] & 0xF0) | ((total >> 32) & 0x0F)
        b[si + 14: si + 18] = (total & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(b)


def fifo(ws: WS, name: str) -> Path:
    p = ws.inp / name
    os.mkfifo(p)
    return p


@case
def c_limit_sparse_wav_2h_convert(ws: WS) -> Case:
    """A 4 KB file claiming 2 hours of 48 kHz stereo: refused from its header, before anything is decoded."""
    f = sparse_wav(big(ws, "long.wav"), 2, 48000, 120)
    return Case(["convert", f, "-o", ws.out, *ws.models_args()],
                expect=("long.wav", "120.0 minutes", "limit of 30 minutes", "--max-audio-minutes 120"))


@case
def c_limit_sparse_wav_2h_mel(ws: WS) -> Case:
    return Case(["mel", sparse_wav(big(ws, "long.wav"), 2, 48000, 120), "-o", ws.out],
                expect=("long.wav", "--max-audio-minutes"))


@case
def c_limit_sparse_wav_2h_refine(ws: WS) -> Case:
    return Case(["refine", sparse_wav(big(ws, "long.wav"), 1, 8000, 120), "-o", ws.out, "--refiner", ws.ref],
                expect=("long.wav", "limit of 30 minutes"))


@case
def c_limit_sparse_wav_2h_vocode(ws: WS) -> Case:
    return Case(["vocode", sparse_wav(big(ws, "long.wav"), 1, 8000, 120), "-o", ws.out, "--vocoder", ws.voc],
                expect=("long.wav", "limit of 30 minutes"))


@case
def c_limit_sparse_wav_2h_eval(ws: WS) -> Case:
    conv = big(ws, "conv")
    conv.mkdir()
    sparse_wav(conv / "a.wav", 1, 22050, 120)
    (conv / "a.json").write_text(json.dumps({"source": str(ws.wav("s.wav")), "transpose": 0, "sample_rate": SR}))
    return Case(["eval", conv / "a.wav", "-o", ws.out / "s.json"], expect=("a.wav", "--max-audio-minutes"))


@case
def c_limit_flac_384k_2h_header(ws: WS) -> Case:
    """A small FLAC whose header says 2 hours at 384 kHz."""
    data = flac_bytes(tone(0.5), SR, total=2 * 3600 * 384000, rate=384000)
    return Case(["convert", ws.raw("long.flac", data), "-o", ws.out, *ws.models_args()],
                expect=("long.flac", "120.0 minutes", "limit"))


@case
def c_limit_flac_unknown_length_converts(ws: WS) -> Case:
    """A FLAC whose header says "unknown length" decodes, and the disk check makes no absurd estimate."""
    return Case(["mel", ws.raw("u.flac", flac_bytes(tone(1.0), SR, total=0)), "-o", ws.out], code=0, made=("u.npy",))


@case
def c_limit_flac_unknown_length_convert(ws: WS) -> Case:
    return Case(["convert", ws.raw("u.flac", flac_bytes(tone(1.0), SR, total=0)), "-o", ws.out, "--steps", "1",
                 *ws.models_args()], code=0, made=("u.wav", "u.json"))


@case
def c_limit_flac_unknown_length_over_the_cap(ws: WS) -> Case:
    """With no length in its header, the cap is applied while decoding."""
    return Case(["mel", ws.raw("u.flac", flac_bytes(tone(2.0), SR, total=0)), "-o", ws.out,
                 "--max-audio-minutes", "0.01"], expect=("u.flac", "header does not say", "--max-audio-minutes"))


@case
def c_limit_decoded_samples(ws: WS) -> Case:
    """Short, but many channels at a high rate: over the decoded-samples cap."""
    ws.wav("wide.wav", np.zeros((96000, 16), np.float32), sr=192000)
    return Case(["mel", ws.inp / "wide.wav", "-o", ws.out, "--max-audio-minutes", "0.01"],
                expect=("wide.wav", "decoded samples", "--max-audio-minutes"))


@case
def c_limit_header_rate_absurd(ws: WS) -> Case:
    return Case(["mel", ws.raw("r.wav", wav_header(1, 2_000_000_000, 100) + b"\0" * 200), "-o", ws.out],
                expect="r.wav")


@case
def c_limit_raised_cap_reads(ws: WS) -> Case:
    """--max-audio-minutes raises the cap: a file over the default that fits the new one is read (mel of a sparse
    31-minute 1 kHz... kept small: 31 minutes at 1 kHz of silence)."""
    f = sparse_wav(big(ws, "quiet.wav"), 1, 1000, 31)
    return Case(["mel", f, "-o", ws.out, "--max-audio-minutes", "32"], expect=("quiet.wav", "silent"))


@case
def c_flag_max_audio_minutes_zero(ws: WS) -> Case:
    return Case(["mel", ws.wav("s.wav"), "-o", ws.out, "--max-audio-minutes", "0"], expect="--max-audio-minutes")


@case
def c_flag_max_audio_minutes_nan(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--max-audio-minutes", "nan"],
                expect="--max-audio-minutes")


@case
def c_flag_max_audio_minutes_huge(ws: WS) -> Case:
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--max-audio-minutes", "1e12"],
                expect="--max-audio-minutes")


# hangs: pipes and devices are refused, never read
@case
def c_hang_fifo_audio_convert(ws: WS) -> Case:
    return Case(["convert", fifo(ws, "pipe.wav"), "-o", ws.out, *ws.models_args()],
                expect=("pipe.wav", "named pipe", "not a regular file"))


@case
def c_hang_fifo_audio_mel(ws: WS) -> Case:
    return Case(["mel", fifo(ws, "pipe.flac"), "-o", ws.out], expect=("pipe.flac", "named pipe"))


@case
def c_hang_fifo_mel_vocode(ws: WS) -> Case:
    return Case(["vocode", fifo(ws, "m.npy"), "-o", ws.out, "--vocoder", ws.voc], expect=("m.npy", "named pipe"))


@case
def c_hang_fifo_weights(ws: WS) -> Case:
    d = ws.model_copy("vocoder")
    (d / "model.safetensors").unlink()
    os.mkfifo(d / "model.safetensors")
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", d], expect=("model.safetensors", "named pipe"))


@case
def c_hang_weights_linked_to_dev_zero(ws: WS) -> Case:
    d = ws.model_copy("refiner")
    (d / "model.safetensors").unlink()
    (d / "model.safetensors").symlink_to("/dev/zero")
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--refiner", d],
                expect=("model.safetensors", "character device"))


@case
def c_hang_model_json_fifo(ws: WS) -> Case:
    d = ws.model_copy("vocoder")
    (d / "model.json").unlink()
    os.mkfifo(d / "model.json")
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", d], expect=("model.json", "named pipe"))


@case
def c_hang_config_dev_zero(ws: WS) -> Case:
    return Case(["mel", ws.wav("s.wav"), "-o", ws.out, "--config", "/dev/zero"],
                expect=("/dev/zero", "character device"))


@case
def c_hang_config_fifo(ws: WS) -> Case:
    return Case(["mel", ws.wav("s.wav"), "-o", ws.out, "--config", fifo(ws, "config.json")],
                expect=("config.json", "named pipe"))


@case
def c_hang_official_checkpoint_fifo(ws: WS) -> Case:
    d = ws.inp / "hifigan"
    d.mkdir()
    os.mkfifo(d / "g_00000001")
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", d / "g_00000001", "--config", "v1"],
                expect=("g_00000001", "named pipe"))


@case
def c_hang_weights_huge(ws: WS) -> Case:
    """A weights file grown to 2 GB (sparse): refused from its size, not read."""
    d = ws.root / "voc"
    shutil.copytree(ws.voc, d)
    with open(d / "model.safetensors", "r+b") as f:
        f.truncate(2 * 2**30)
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", d], expect=("model.safetensors", "MB"))


@case
def c_hang_train_voice_minutes_zero(ws: WS) -> Case:
    ws.wav("a.wav")
    return Case(["train-voice", ws.inp, "--name", "ana", "--minutes", "0", "-o", ws.out], expect="--minutes")


# model configs: checked against their hash and bounds before anything is built
@case
def c_model_config_edited_hash_kept(ws: WS) -> Case:
    d = ws.model_copy("vocoder", lambda doc: doc["config"].__setitem__("upsample_initial_channel", 64),
                      keep_hash=True)
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", d], expect=("model.json", "config_sha256"))


@case
def c_model_refiner_n_singers_edited_hash_kept(ws: WS) -> Case:
    d = ws.model_copy("refiner", lambda doc: doc["config"].__setitem__("n_singers", 5000), keep_hash=True)
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--refiner", d], expect=("model.json", "config_sha256"))


@case
def c_model_upsample_channel_absurd(ws: WS) -> Case:
    """An export from before the config hash, edited to a million channels: refused by its bounds."""
    d = ws.model_copy("vocoder", lambda doc: doc["config"].__setitem__("upsample_initial_channel", 1_000_000))
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", d],
                expect=("model.json", "upsample_initial_channel", "sane range"))


@case
def c_model_n_singers_absurd(ws: WS) -> Case:
    d = ws.model_copy("refiner", lambda doc: doc["config"].__setitem__("n_singers", 10**9))
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--refiner", d], expect=("n_singers", "sane range"))


@case
def c_model_config_larger_than_weights(ws: WS) -> Case:
    """Within the bounds but larger than its weights: found on the meta device, before any allocation."""
    d = ws.model_copy("refiner", lambda doc: doc["config"].__setitem__("residual_channels", 1024))
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--refiner", d], expect=("weights do not fit", "config"))


@case
def c_model_vocoder_channels_not_the_weights(ws: WS) -> Case:
    d = ws.model_copy("vocoder", lambda doc: doc["config"].__setitem__("upsample_initial_channel", 2048))
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", d], expect=("does not match the model config",))


@case
def c_model_nan_in_config(ws: WS) -> Case:
    d = ws.model_copy("refiner", lambda doc: doc["config"].__setitem__("loudness_scale_db", float("nan")))
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--refiner", d],
                expect=("model.json", "loudness_scale_db", "finite"))


@case
def c_model_nan_in_mel_spec(ws: WS) -> Case:
    d = ws.model_copy("vocoder", lambda doc: doc["mel_spec"].__setitem__("fmin", float("nan")))
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", d], expect=("model.json", "fmin", "finite"))


@case
def c_model_nan_in_normaliser(ws: WS) -> Case:
    d = ws.model_copy("refiner", lambda doc: doc["meta"]["normalizer"]["lo"].__setitem__(0, float("nan")))
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--refiner", d], expect=("model.json", "NaN"))


@case
def c_model_format_version_text(ws: WS) -> Case:
    d = ws.model_copy("vocoder", lambda doc: doc.__setitem__("format_version", "1"))
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", d],
                expect=("model.json", "format_version '1'", "not a format version"))


@case
def c_model_format_version_newer(ws: WS) -> Case:
    d = ws.model_copy("vocoder", lambda doc: doc.__setitem__("format_version", 99))
    return Case(["vocode", ws.mel(), "-o", ws.out, "--vocoder", d], expect=("version 99", "up to 1", "upgrade"))


@case
def c_model_refiner_is_a_text_file(ws: WS) -> Case:
    notes = ws.raw("notes.txt", b"my notes")
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--refiner", notes, "--vocoder", ws.voc],
                expect=("notes.txt", "is a file, not a model directory"))


# numbers at the boundary: 0, negative, inf, NaN, huge, not whole
@case
def c_flag_max_slice_huge(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--max-slice-seconds", "1e308", *ws.models_args()],
                expect=("--max-slice-seconds", "1e308"))


@case
def c_flag_max_slice_inf(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--max-slice-seconds", "inf"],
                expect="--max-slice-seconds")


@case
def c_flag_seed_negative(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--seed", "-1"], expect=("--seed", "-1"))


@case
def c_flag_seed_huge(ws: WS) -> Case:
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--seed", str(2**40)], expect="--seed")


@case
def c_flag_seed_text(ws: WS) -> Case:
    return Case(["train-refiner", ws.inp, "-o", ws.out / "run", "--seed", "x"], expect="--seed")


@case
def c_flag_export_threads_negative(ws: WS) -> Case:
    return Case(["export", ws.voc, "-o", ws.out / "onnx", "--threads", "-1"], expect=("--threads", "-1"))


@case
def c_flag_threads_huge(ws: WS) -> Case:
    return Case(["vocode", ws.mel(), "-o", ws.out, "--threads", "100000"], expect="--threads")


@case
def c_flag_workers_huge(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--workers", "1000000"], expect="--workers")


@case
def c_flag_steps_fraction(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--steps", "2.5"], expect=("--steps", "2.5"))


@case
def c_flag_steps_huge(ws: WS) -> Case:
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--steps", "100000"], expect=("--steps", "1..1000"))


@case
def c_flag_strength_zero_names_the_flag(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--strength", "0"], expect=("--strength", "(0, 1]"))


@case
def c_flag_strength_nan(ws: WS) -> Case:
    return Case(["refine", ws.wav("s.wav"), "-o", ws.out, "--strength", "nan"], expect="--strength")


@case
def c_flag_block_ms_zero(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out, "--stream", "--block-ms", "0"], expect="--block-ms")


@case
def c_flag_eval_transpose_huge(ws: WS) -> Case:
    return Case(["eval", ws.wav("a.wav"), "-o", ws.out / "s.json", "--transpose", "1e300"], expect="--transpose")


@case
def c_flag_train_refiner_batch_huge(ws: WS) -> Case:
    return Case(["train-refiner", ws.inp, "-o", ws.out / "run", "--batch-size", "1000000000"],
                expect="--batch-size")


@case
def c_flag_train_refiner_lr_zero(ws: WS) -> Case:
    return Case(["train-refiner", ws.inp, "-o", ws.out / "run", "--lr", "0"], expect="--lr")


@case
def c_flag_train_refiner_minutes_negative(ws: WS) -> Case:
    return Case(["train-refiner", ws.inp, "-o", ws.out / "run", "--max-minutes", "-5"], expect="--max-minutes")


@case
def c_flag_train_vocoder_steps_negative(ws: WS) -> Case:
    return Case(["train-vocoder", ws.inp, "-o", ws.out / "run", "--steps", "-1"], expect="--steps")


@case
def c_flag_train_vocoder_segment_zero(ws: WS) -> Case:
    return Case(["train-vocoder", ws.inp, "-o", ws.out / "run", "--segment-size", "0"], expect="--segment-size")


@case
def c_flag_train_vocoder_share_two(ws: WS) -> Case:
    return Case(["train-vocoder", ws.inp, "-o", ws.out / "run", "--refined-share", "2"], expect="--refined-share")


@case
def c_flag_train_voice_share_one(ws: WS) -> Case:
    return Case(["train-voice", ws.inp, "--name", "ana", "--vocoder-share", "1"], expect="--vocoder-share")


@case
def c_flag_report_examples_huge(ws: WS) -> Case:
    return Case(["report", ws.inp, ws.inp, "-o", ws.out, "--examples", "1000000"], expect="--examples")


@case
def c_flag_ui_max_seconds_zero(ws: WS) -> Case:
    return Case(["ui", "--max-seconds", "0"], expect="--max-seconds")


# outputs: never a directory by accident, never replaced unasked, never two writers
@case
def c_path_out_unknown_extension(ws: WS) -> Case:
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out / "a.wave", *ws.models_args()],
                expect=("a.wave", ".wave is not a format", ".wav"))


@case
def c_path_mel_out_unknown_extension(ws: WS) -> Case:
    return Case(["mel", ws.wav("s.wav"), "-o", ws.out / "m.np"], expect=("m.np", ".npy"))


@case
def c_path_export_out_onnx_file_name(ws: WS) -> Case:
    return Case(["export", ws.voc, "-o", ws.out / "model.onnx"], expect=("model.onnx", "directory"))


@case
def c_path_export_existing_without_overwrite(ws: WS) -> Case:
    d = ws.out / "onnx"
    d.mkdir(parents=True)
    (d / "model.json").write_text(json.dumps({"format": "canora-onnx-export"}))
    return Case(["export", ws.voc, "-o", d], expect=("onnx", "already there", "--overwrite"))


@case
def c_path_export_into_a_folder_of_other_files(ws: WS) -> Case:
    d = ws.out / "mine"
    d.mkdir(parents=True)
    (d / "notes.txt").write_text("x")
    return Case(["export", ws.voc, "-o", d, "--overwrite"], expect=("mine", "other files"))


@case
def c_path_another_run_writes_the_output(ws: WS) -> Case:
    """A live process holds the output's lock: the second run is refused at once, naming it."""
    ws.out.mkdir()
    (ws.out / ".o.wav.canora-lock").write_text(f"{os.getppid()}\n")
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out / "o.wav", *ws.models_args()],
                expect=("o.wav", f"pid {os.getppid()}", "another canora run"))


@case
def c_path_stale_lock_taken_over(ws: WS) -> Case:
    ws.out.mkdir()
    (ws.out / ".m.npy.canora-lock").write_text("999999\n")  # a pid that is gone

    def no_lock_left() -> None:
        assert not (ws.out / ".m.npy.canora-lock").exists()

    return Case(["mel", ws.wav("s.wav"), "-o", ws.out / "m.npy"], code=0, made=("m.npy",), check=no_lock_left)


@case
def c_path_symlink_loop_in_output(ws: WS) -> Case:
    ws.out.mkdir()
    (ws.out / "loop").symlink_to("loop")
    return Case(["convert", ws.wav("s.wav"), "-o", ws.out / "loop" / "o.wav", *ws.models_args()],
                expect=("loop", "symbolic link loop"))


@case
def c_path_symlink_loop_input(ws: WS) -> Case:
    (ws.inp / "loop").symlink_to("loop")
    return Case(["mel", ws.inp / "loop" / "a.wav", "-o", ws.out], expect=("loop", "symbolic link loop"))


@case
def c_path_recursive_out_inside_input(ws: WS) -> Case:
    (ws.inp / "ana").mkdir()
    sf.write(ws.inp / "ana" / "a.wav", tone(), SR)
    return Case(["mel", ws.inp, "-o", ws.inp / "mels", "--recursive"], expect=("mels", "inside the input directory"))


@case
def c_path_recursive_mirrors_folders(ws: WS) -> Case:
    for singer in ("ana", "bob"):
        (ws.inp / singer).mkdir()
        sf.write(ws.inp / singer / "take.wav", tone(), SR)
    return Case(["mel", ws.inp, "-o", ws.out, "--recursive"], code=0, made=("ana/take.npy", "bob/take.npy"))


@case
def c_path_folder_of_folders_without_recursive(ws: WS) -> Case:
    (ws.inp / "ana").mkdir()
    sf.write(ws.inp / "ana" / "take.wav", tone(), SR)
    return Case(["convert", ws.inp, "-o", ws.out, *ws.models_args()], expect=("no input files", "--recursive"))


# clear lines for what a first afternoon meets
@case
def c_clear_doctor_on_audio(ws: WS) -> Case:
    return Case(["doctor", ws.wav("song.wav")], expect=("song.wav", "an audio file, not a .npy mel", "canora mel"))


@case
def c_clear_silence_is_one_line(ws: WS) -> Case:
    x = (1e-3 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32)  # hiss, no voice
    return Case(["convert", ws.wav("hiss.wav", x), "-o", ws.out, *ws.models_args()],
                expect=("hiss.wav", "no voice found", "--allow-silence"))


@case
def c_clear_silence_allowed(ws: WS) -> Case:
    x = (1e-3 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32)
    def silent() -> None:
        side = json.loads((ws.out / "hiss.json").read_text())
        assert side["silent"] is True

    return Case(["convert", ws.wav("hiss.wav", x), "-o", ws.out, "--allow-silence", *ws.models_args()], code=0,
                made=("hiss.wav", "hiss.json"), check=silent)


@case
def c_clear_voices_one_broken_folder(ws: WS) -> Case:
    """A voice folder with a bad format_version is named; `canora voices` still lists the others."""
    voices = ws.out / "voices"
    ws.mp.setenv("CANORA_VOICES", str(voices))
    for name, version in (("good", 1), ("broken", "x")):
        (voices / name).mkdir(parents=True)
        (voices / name / "voice.json").write_text(json.dumps({"format": "canora-voice", "format_version": version,
                                                              "name": name, "refiner": "bundled"}))
    return Case(["voices"], code=0, expect=("broken", "format_version 'x'"))


@case
def c_clear_voices_newer_format(ws: WS) -> Case:
    voices = ws.out / "voices"
    ws.mp.setenv("CANORA_VOICES", str(voices))
    (voices / "next").mkdir(parents=True)
    (voices / "next" / "voice.json").write_text(json.dumps({"format": "canora-voice", "format_version": 7}))
    return Case(["voices"], code=0, expect=("voice format 7 is newer", "up to 1"))


@case
def c_clear_train_refiner_without_data(ws: WS) -> Case:
    return Case(["train-refiner", "-o", ws.out / "run"], expect="needs at least one folder")


# ---------------------------------------------------------------------- the corpus
@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.slow
def test_bad_input(name: str, tmp_path: Path, models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:
    ws = WS(tmp_path, models, monkeypatch)
    c = CASES[name](ws)
    before, out_before = ws.hashes(), ws.out_files()
    capsys.readouterr()
    try:
        code = main([str(a) for a in c.argv])
    except SystemExit as e:  # argparse: a bad flag
        code = e.code
    finally:
        if ws.out.exists():
            ws.out.chmod(0o755)
    out, err = capsys.readouterr()
    assert code == c.code, f"exit {code}, expected {c.code}\nstderr:\n{err}"
    assert "Traceback" not in err and "Traceback" not in out
    expect = (c.expect,) if isinstance(c.expect, str) else c.expect
    if c.code == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1, f"expected one error line, got:\n{err}"
        assert lines[0].startswith(f"canora {c.argv[0]}: error: "), lines[0]
        text = lines[0]
    else:
        text = err
        if c.code == 1 and "unexpected error" not in err.split("\n")[0]:
            assert "skipped:" in err or "failed" in err, err
    for e in expect:
        assert e in text, f"{e!r} not in:\n{text}"
    assert ws.hashes() == before, "an input or a model changed"
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, f"temp files left: {leftovers}"
    now = ws.out_files()
    if c.code == 2:
        assert now == out_before, f"partial outputs: {sorted(set(now) - set(out_before))}"
    for m in c.made:
        assert m in now, f"{m} not written ({sorted(now)})"
    if c.code == 1:  # only the outputs of the good files (and, for eval, the scores)
        assert set(now) - set(out_before) <= set(c.made), sorted(now)
    if c.check is not None:
        c.check()


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 200


# ---------------------------------------------------------------------- UI uploads (the UIBackend API)
@pytest.fixture(scope="module")
def backend_converter(models: tuple[Path, Path]):  # noqa: ANN201
    from canora.pipeline import Converter

    return Converter.from_pretrained(*models)


def _upload(tmp_path: Path, name: str, write: Callable[[Path], None]) -> Path:
    p = tmp_path / "uploads" / name
    p.parent.mkdir(exist_ok=True)
    write(p)
    return p


UPLOADS: dict[str, tuple[str, Callable[[Path], None], str, dict]] = {
    "text_as_wav": ("t.wav", lambda p: p.write_text("not audio"), r"^t\.wav: cannot read audio", {}),
    "empty_file": ("e.wav", lambda p: p.write_bytes(b""), r"^e\.wav: the upload is empty", {}),
    "other_type": ("notes.txt", lambda p: p.write_text("x"), r"^notes\.txt: not an audio file", {}),
    "nan_audio": ("n.wav", lambda p: sf.write(p, np.full(SR, np.nan, np.float32), SR, subtype="FLOAT"),
                  r"^n\.wav: audio holds NaN", {}),
    "too_long": ("long.wav", lambda p: sf.write(p, tone(3.0), SR), r"^long\.wav: 3\.0 s of audio is over",
                 {"max_seconds": 2.0}),
    "too_many_samples": ("wide.flac", lambda p: sf.write(p, np.zeros((96000, 8), np.float32), 192000,
                                                         subtype="PCM_16"),
                         r"^wide\.flac: 8 channel\(s\) x 96000 frames .* decoded samples", {"max_samples": 1e5}),
    "too_big": ("big.wav", lambda p: sf.write(p, tone(2.0), SR), r"^big\.wav: .* MB is over", {"max_upload_mb": 0.01}),
}


@pytest.mark.parametrize("name", sorted(UPLOADS))
@pytest.mark.slow
def test_ui_upload(name: str, tmp_path: Path, backend_converter) -> None:  # noqa: ANN001
    from canora.errors import CanoraError
    from canora.ui import UIBackend, UILimits

    fname, write, pattern, limits = UPLOADS[name]
    p = _upload(tmp_path, fname, write)
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    backend = UIBackend(backend_converter, tmp_path / "work", UILimits(**limits))
    with pytest.raises(CanoraError, match=pattern) as e:
        backend.convert(p)
    assert str(tmp_path) not in str(e.value)  # the page shows the file name, not the server's path
    assert "\n" not in str(e.value)
    assert hashlib.sha256(p.read_bytes()).hexdigest() == digest
    assert not list((tmp_path / "work").rglob("*.wav")) and not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("arr, pattern", [
    ("npz", r"^m\.npy: an \.npz archive"),
    ("empty", r"^m\.npy: an empty array"),
    ("garbage", r"^m\.npy: not a readable \.npy array"),
    ("objects", r"^m\.npy: not a readable \.npy array"),
])
@pytest.mark.slow
def test_ui_doctor_upload(arr: str, pattern: str, tmp_path: Path, backend_converter) -> None:  # noqa: ANN001
    from canora.errors import CanoraError
    from canora.ui import UIBackend

    p = tmp_path / "m.npy"
    if arr == "npz":
        with open(p, "wb") as f:
            np.savez(f, mel=np.zeros((80, 4)))
    elif arr == "empty":
        with open(p, "wb") as f:
            np.save(f, np.zeros((80, 0), np.float32))
    elif arr == "garbage":
        p.write_bytes(b"\x93NUMPY\x01\x00garbage")
    else:
        with open(p, "wb") as f:
            np.save(f, np.array([None], dtype=object), allow_pickle=True)
    with pytest.raises(CanoraError, match=pattern):
        UIBackend(backend_converter, tmp_path / "work").doctor(p)


# ---------------------------------------------------------------------- odd but fine: notices, not errors
def test_clipping_and_far_transpose_get_a_notice(tmp_path: Path, models: tuple[Path, Path],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    x = np.clip(tone(1.0, amp=3.0), -1, 1)
    sf.write(tmp_path / "loud.wav", x, SR, subtype="FLOAT")
    code = main(["convert", str(tmp_path / "loud.wav"), "-o", str(tmp_path / "o.wav"), "--steps", "1",
                 "--transpose", "30", "--refiner", str(models[0]), "--vocoder", str(models[1])])
    assert code == 0
    assert "full scale" in caplog.text and "clips" in caplog.text
    assert caplog.text.count("more than 2 octaves") == 1
    side = json.loads((tmp_path / "o.json").read_text())
    assert side["transpose"] == 30 and "refiner_check" in side
    assert side["refiner_check"]["cycle_error_limit"] > 0 and "first sung stretch" in side["notes"]["refiner_check"]


def test_an_untrained_refiner_is_flagged(tmp_path: Path, models: tuple[Path, Path],
                                         caplog: pytest.LogCaptureFixture) -> None:
    """The tiny random refiner on real singing: the quick check of the result warns (and records why)."""
    from canora.io.audio import load_audio

    wav = load_audio(shared_file("vocadito/vocadito_1.wav"), SR)[SR: 4 * SR]
    sf.write(tmp_path / "sung.wav", wav, SR)
    code = main(["convert", str(tmp_path / "sung.wav"), "-o", str(tmp_path / "o.wav"), "--steps", "2",
                 "--refiner", str(models[0]), "--vocoder", str(models[1])])
    assert code == 0
    check = json.loads((tmp_path / "o.json").read_text())["refiner_check"]
    assert check["ok"] is False and check["cycle_error"] > 1.5
    assert "looks collapsed" in caplog.text


def test_pyworld_import_warning_is_silenced() -> None:
    code = "import canora.cli, pyworld"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "pkg_resources" not in r.stderr, r.stderr


def test_outputs_go_to_stdout_and_the_help_shows_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sf.write(tmp_path / "s.wav", tone(), SR)
    assert main(["mel", str(tmp_path / "s.wav"), "-o", str(tmp_path / "m")]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "m" / "s.npy") and "wrote mels" in err
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    text = capsys.readouterr().out
    for needle in ("(default: 3)", "(default: 0.6)", "{ddim,ddpm,dpmpp}", "(default: bundled)", "(default: cpu)",
                   "--overwrite"):  # 3 steps: chosen by conversion_sweep (the model card)
        assert needle in text, needle
