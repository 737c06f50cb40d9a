"""Vocoder speed at identical output: the official HiFi-GAN against canora's torch path, faster torch variants and
ONNX Runtime; and the bundled NSF vocoder on torch and on ONNX Runtime.

For each HiFi-GAN config (v1: the official architecture with random weights; v2: the official LJ_V2 generator
from ../shared/data when present), on the same mel of real singing (vocadito clip 1; a synthetic phrase without
../shared/data), at each thread count, warm, best of N rounds with every variant run once per round
(interleaved, so that a load change on the machine hits all of them alike):

* (a) ``official``: the official implementation rebuilt as published (tests/official_hifigan.py: legacy
  weight norm, ``remove_weight_norm()``, ``torch.no_grad()``: what the official inference.py does);
* (b) ``canora``: ``Vocoder.from_pretrained`` (weight norm folded, ``inference_mode``, mels of more than 1.5 x
  ``CHUNK_FRAMES`` vocoded in pieces), and the same in one piece whatever the length;
* (c) torch variants of (b): ``jit.optimize_for_inference`` (trace + freeze + oneDNN layout), ``conv2d (1, k)``
  (each Conv1d as a Conv2d over (B, C, 1, T)), ``flush denormals`` (``torch.set_flush_denormal``), and with
  ``--compile`` ``torch.compile`` (inductor; its warm-up is timed separately);
* (d) ONNX Runtime: ``onnx fp32`` and ``onnx int8`` (dynamic quantization) through ``Vocoder.from_pretrained``
  of an export made by ``canora export``, and fp32 through ``OrtVocoder`` (numpy in and out, the NSF source in
  numpy: the path a conversion on ONNX exports takes, with no torch).

Every row reports seconds, real-time factor (seconds / audio seconds), speed vs (a) and max |diff| vs (a); the
int8 rows also the mel cycle error and the log-mel L1 against (a)'s output. The machine's load average is
printed and stored: the numbers are only comparable within one run.

    .venv/bin/python benchmarks/vocoder_speed.py [--seconds 10] [--threads 1 2] [--repeats 3] [--configs v1 v2]
        [--compile] [--no-nsf] [--out bench_out/vocoder_speed.json]

``--configs`` with no name times only the bundled NSF vocoder. ``--seconds 30`` shows what cutting long mels
into pieces gains (at 10 s the mel is short enough to go in one piece).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import print_table, write_json
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from canora.dsp.mel import MelSpec, read_config, wav_to_mel  # noqa: E402
from canora.dsp.metrics import mel_cycle_error  # noqa: E402
from canora.vocoder import Vocoder  # noqa: E402
from canora.vocoder.hifigan import Generator, GeneratorConfig, to_official_keys  # noqa: E402
from canora.vocoder.ort import OrtVocoder  # noqa: E402
from tests.official_hifigan import official_inference_generator  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
LJ_V2 = SHARED / "hifigan" / "LJ_V2" / "generator_v2"


def load_clip(seconds: float, sr: int = 22050) -> tuple[np.ndarray, str]:
    path = SHARED / "vocadito" / "vocadito_1.wav"
    if path.exists():
        from canora.io.audio import load_audio

        return load_audio(path, sr)[: int(seconds * sr)], f"{path.name} (first {seconds:g} s)"
    from canora.demo import synth_phrase

    phrase = synth_phrase(sr)
    n = int(seconds * sr)
    return np.tile(phrase, n // len(phrase) + 1)[:n].astype(np.float32), "canora.demo.synth_phrase (tiled)"


def as_conv2d(gen: nn.Module) -> nn.Module:
    """A copy of a folded generator with every Conv1d / ConvTranspose1d as the same 2-D layer over (B, C, 1, T)."""
    gen = copy.deepcopy(gen)

    def conv(m: nn.Module) -> nn.Module:
        if isinstance(m, nn.ConvTranspose1d):
            c: nn.Module = nn.ConvTranspose2d(m.in_channels, m.out_channels, (1, m.kernel_size[0]), (1, m.stride[0]),
                                              padding=(0, m.padding[0]))
        else:
            c = nn.Conv2d(m.in_channels, m.out_channels, (1, m.kernel_size[0]), 1, dilation=(1, m.dilation[0]),
                          padding=(0, m.padding[0]))
        c.weight.data = m.weight.data.unsqueeze(2).contiguous()
        c.bias.data = m.bias.data.clone()
        return c

    for module in list(gen.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, (nn.Conv1d, nn.ConvTranspose1d)):
                setattr(module, name, conv(child))
    return gen


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run_rounds(variants: dict[str, Callable[[], Any]], repeats: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Warm each variant once, then ``repeats`` interleaved rounds; -> (best seconds, last output) per variant."""
    outs = {k: f() for k, f in variants.items()}
    best = {k: float("inf") for k in variants}
    for _ in range(repeats):
        for k, f in variants.items():
            dt, outs[k] = timed(f)
            best[k] = min(best[k], dt)
    return best, outs


def flat(y: Any) -> np.ndarray:
    return np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y, np.float64).reshape(-1)


def hifigan_rows(name: str, mel: np.ndarray, threads: list[int], repeats: int, compile_: bool,
                 tmp: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from canora.export import export_onnx
    from canora.vocoder.onnx import load_onnx_vocoder

    h = read_config(name)
    if name == "v2" and LJ_V2.exists():
        from canora.io.checkpoint import load_torch_file

        h = json.loads((LJ_V2.parent / "config.json").read_text())
        state = load_torch_file(LJ_V2)["generator"]
        weights = "LJ_V2 (official)"
    else:
        torch.manual_seed(0)
        state = to_official_keys(Generator.from_config(GeneratorConfig.from_hifigan_config(h)).state_dict())
        weights = "random (official init)"
    d = tmp / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(h))
    torch.save({"generator": state}, d / "g_00000001")
    official = official_inference_generator(h, state)
    voc = Vocoder.from_pretrained(d / "g_00000001")
    one = copy.copy(voc)  # the same model vocoding any length in one piece (canora before it cut long mels)
    one.chunk_frames = 10**9
    t_export, res = timed(lambda: export_onnx(d / "g_00000001", tmp / f"{name}_onnx"))
    t_quant, _ = timed(lambda: export_onnx(d / "g_00000001", tmp / f"{name}_int8", quantize="int8"))
    spec = voc.spec
    x = torch.from_numpy(mel)[None]
    audio_s = mel.shape[1] * spec.hop_length / spec.sample_rate
    gen2d = as_conv2d(voc.generator).eval()
    info: dict[str, Any] = {"weights": weights, "onnx_export_seconds": t_export, "int8_export_seconds": t_quant,
                            "onnx_size_mb": sum(res.files.values()) / 1e6,
                            "int8_size_mb": (tmp / f"{name}_int8" / "model.onnx").stat().st_size / 1e6}
    rows = []
    compiled = None
    for n in threads:
        torch.set_num_threads(n)
        ort32 = load_onnx_vocoder(tmp / f"{name}_onnx", threads=n)
        ort8 = load_onnx_vocoder(tmp / f"{name}_int8", threads=n)
        ortnp = OrtVocoder.load(tmp / f"{name}_onnx", threads=n)
        with torch.no_grad():
            traced = torch.jit.optimize_for_inference(torch.jit.trace(voc.generator, x).eval())

        def off() -> torch.Tensor:
            with torch.no_grad():
                return official(x)

        def jit(traced: Any = traced) -> torch.Tensor:
            with torch.inference_mode():
                return traced(x)

        def conv2d() -> torch.Tensor:
            with torch.inference_mode():
                return gen2d(x.unsqueeze(2)).squeeze(2)

        def denormal() -> torch.Tensor:
            old = torch.set_flush_denormal(True)
            try:
                return voc(mel)
            finally:
                torch.set_flush_denormal(old)

        variants: dict[str, Callable[[], Any]] = {
            "(a) official": off, "(b) canora Vocoder": lambda: voc(mel), "(b) canora, one piece": lambda: one(mel),
            "(c) jit.optimize_for_inference": jit, "(c) conv2d (1, k)": conv2d, "(c) flush denormals": denormal,
            "(d) onnx fp32": lambda v=ort32: v.vocode(mel), "(d) onnx int8": lambda v=ort8: v.vocode(mel),
            "(d) onnx fp32, numpy (OrtVocoder)": lambda v=ortnp: v.vocode(mel),
        }
        if compile_:
            if compiled is None:
                compiled = torch.compile(voc.generator)
                with torch.inference_mode():
                    info["compile_warmup_seconds"], _ = timed(lambda c=compiled: c(x))

            def comp(compiled: Any = compiled) -> torch.Tensor:
                with torch.inference_mode():
                    return compiled(x)

            variants["(c) torch.compile"] = comp
        best, outs = run_rounds(variants, repeats)
        ref = flat(outs["(a) official"])
        ref_mel = wav_to_mel(ref.astype(np.float32), spec)
        for k, t in best.items():
            y = flat(outs[k])
            row = {"model": f"hifigan {name}", "variant": k, "threads": n, "seconds": t, "rtf": t / audio_s,
                   "speed_vs_a": best["(a) official"] / t, "max_abs_diff_vs_a": float(np.abs(y - ref).max())}
            if "int8" in k or "fp32" in k:
                row["mel_l1_vs_a"] = float(np.abs(wav_to_mel(y.astype(np.float32), spec) - ref_mel).mean())
                row["mel_cycle_error"] = mel_cycle_error(mel, y.astype(np.float32), spec)
                row["mel_cycle_error_a"] = mel_cycle_error(mel, ref.astype(np.float32), spec)
            rows.append(row)
        print_table([r for r in rows if r["threads"] == n], ["model", "variant", "threads", "seconds", "rtf",
                                                               "speed_vs_a", "max_abs_diff_vs_a"])
        print(f"load average {os.getloadavg()}", flush=True)
    return rows, info


def nsf_rows(wav: np.ndarray, threads: list[int], repeats: int, tmp: Path) -> tuple[list[dict[str, Any]], dict]:
    from canora.dsp.pitch import extract_f0
    from canora.pipeline import DEFAULT_VOCODER
    from canora.vocoder.onnx import export_vocoder_onnx, load_onnx_vocoder

    voc = Vocoder.from_pretrained(DEFAULT_VOCODER)
    one = copy.copy(voc)
    one.chunk_frames = 10**9
    spec = voc.spec
    mel = wav_to_mel(wav, spec)
    f0 = extract_f0(wav, spec.sample_rate, hop_length=spec.hop_length, n_frames=mel.shape[1])
    audio_s = mel.shape[1] * spec.hop_length / spec.sample_rate
    t_export, _ = timed(lambda: export_vocoder_onnx(voc, tmp / "nsf_onnx"))
    export_vocoder_onnx(voc, tmp / "nsf_int8", quantize="int8")
    info = {"onnx_export_seconds": t_export, "voiced_fraction": float((f0 > 0).mean()),
            "onnx_size_mb": (tmp / "nsf_onnx" / "model.onnx").stat().st_size / 1e6,
            "int8_size_mb": (tmp / "nsf_int8" / "model.onnx").stat().st_size / 1e6}
    rows = []
    for n in threads:
        torch.set_num_threads(n)
        ort32 = load_onnx_vocoder(tmp / "nsf_onnx", threads=n)
        ort8 = load_onnx_vocoder(tmp / "nsf_int8", threads=n)
        ortnp = OrtVocoder.load(tmp / "nsf_onnx", threads=n)
        f0_t = torch.from_numpy(f0)[None]

        def source_only(f0_t: torch.Tensor = f0_t) -> torch.Tensor:
            with torch.inference_mode():
                return voc.generator.source(f0_t, torch.Generator().manual_seed(0), None)

        def source_per_sine(f0_t: torch.Tensor = f0_t) -> torch.Tensor:
            """The source's harmonics as computed before the recurrence: each sine evaluated apart."""
            src = voc.generator.source
            with torch.inference_mode():
                fs, voiced = src.sample_f0(f0_t)
                start = torch.rand(1, src.harmonics, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
                cycles = torch.cumsum(fs.double() / src.sample_rate, dim=1)
                harmonic = src.merge.bias.expand(fs.shape)
                for h in range(1, src.harmonics + 1):
                    phase = torch.remainder(cycles * h + start[:, h - 1: h], 1.0).to(fs.dtype)
                    audible = (fs * h < src.sample_rate / 2).to(fs.dtype)
                    harmonic = harmonic + src.merge.weight[0, h - 1] * torch.sin(2 * np.pi * phase) * audible \
                        * src.sine_amp * voiced
                return torch.tanh(harmonic)

        variants = {"torch Vocoder": lambda: voc.vocode(mel, f0), "torch, one piece": lambda: one.vocode(mel, f0),
                    "onnx fp32": lambda v=ort32: v.vocode(mel, f0),
                    "onnx int8": lambda v=ort8: v.vocode(mel, f0),
                    "onnx fp32, numpy source (OrtVocoder, no torch)": lambda v=ortnp: v.vocode(mel, f0),
                    "source only (torch)": source_only,
                    "source, each sine apart (before)": source_per_sine}
        best, outs = run_rounds(variants, repeats)
        ref = flat(outs["torch Vocoder"])
        ref_mel = wav_to_mel(ref.astype(np.float32), spec)
        for k, t in best.items():
            row = {"model": "nsf bundled", "variant": k, "threads": n, "seconds": t, "rtf": t / audio_s,
                   "speed_vs_a": best["torch Vocoder"] / t}
            if not k.startswith("source"):
                y = flat(outs[k])
                row["max_abs_diff_vs_a"] = float(np.abs(y - ref).max())
                row["mel_l1_vs_a"] = float(np.abs(wav_to_mel(y.astype(np.float32), spec) - ref_mel).mean())
                row["mel_cycle_error"] = mel_cycle_error(mel, y.astype(np.float32), spec)
            rows.append(row)
        print_table([r for r in rows if r["threads"] == n], ["model", "variant", "threads", "seconds", "rtf",
                                                               "speed_vs_a", "max_abs_diff_vs_a", "mel_cycle_error"])
        print(f"load average {os.getloadavg()}", flush=True)
    return rows, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up (best is kept)")
    ap.add_argument("--configs", nargs="*", default=["v1", "v2"], help="HiFi-GAN configs (none: the NSF rows only)")
    ap.add_argument("--compile", action="store_true", help="also torch.compile (minutes of warm-up on a CPU)")
    ap.add_argument("--no-nsf", action="store_true", help="skip the bundled NSF vocoder")
    ap.add_argument("--out", type=Path, default=Path("bench_out/vocoder_speed.json"))
    args = ap.parse_args()
    wav, clip = load_clip(args.seconds)
    mel = wav_to_mel(wav, MelSpec())
    load_before = os.getloadavg()
    print(f"mel of {clip}: {mel.shape[1]} frames; threads {args.threads}; best of {args.repeats}; "
          f"load average {load_before}", flush=True)
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="canora-bench-") as tmp:
        for name in args.configs:
            r, i = hifigan_rows(name, mel, args.threads, args.repeats, args.compile, Path(tmp))
            rows += r
            info[f"hifigan {name}"] = i
        if not args.no_nsf:
            r, i = nsf_rows(wav, args.threads, args.repeats, Path(tmp))
            rows += r
            info["nsf bundled"] = i
    print()
    print_table(rows, ["model", "variant", "threads", "seconds", "rtf", "speed_vs_a", "max_abs_diff_vs_a",
                       "mel_cycle_error"])
    print(json.dumps(info, indent=1))
    load_after = os.getloadavg()
    print(f"load average before {load_before}, after {load_after}")
    write_json(args.out, {"clip": clip, "frames": int(mel.shape[1]), "repeats": args.repeats,
                          "load_average_before": load_before, "load_average_after": load_after,
                          "info": info, "rows": rows})


if __name__ == "__main__":
    main()
