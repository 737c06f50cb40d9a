"""Real-time factor of HiFi-GAN v1/v2/v3 inference and of the mel extraction on this machine.

For each config, side by side on the same 10 s mel: a plain eager forward with weight norm (what the
official inference script does), the canora path (weight norm folded, ``inference_mode``), and optionally
``torch.compile`` of the folded model. RTF = processing seconds / audio seconds (lower is faster).

    .venv/bin/python benchmarks/vocoder.py [--seconds 10] [--threads 2] [--compile] [--out bench_out/vocoder.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from _common import median_time, print_table, write_json

from canora.demo import synth_phrase
from canora.dsp.mel import MelSpec, mel_spectrogram, read_config
from canora.vocoder.hifigan import Generator, GeneratorConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to warm up on CPU)")
    ap.add_argument("--configs", nargs="+", default=["v1", "v2", "v3"])
    ap.add_argument("--out", type=Path, default=Path("bench_out/vocoder.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = MelSpec()
    phrase = synth_phrase(spec.sample_rate)
    n = int(args.seconds * spec.sample_rate)
    wav = np.tile(phrase, n // len(phrase) + 1)[:n]
    audio_s = len(wav) / spec.sample_rate
    x = torch.from_numpy(wav)

    rows = []
    with torch.inference_mode():
        t_mel = median_time(lambda: mel_spectrogram(x, spec), args.repeats)
        mel = mel_spectrogram(x, spec).unsqueeze(0).clone()
    rows.append({"what": "mel extraction", "variant": "torch, inference_mode", "rtf": t_mel / audio_s,
                 "speedup_vs_eager": 1.0})
    for name in args.configs:
        gcfg = GeneratorConfig.from_hifigan_config(read_config(name))
        gen = Generator.from_config(gcfg).eval()
        folded = Generator.from_config(gcfg).eval()
        folded.load_state_dict(gen.state_dict())
        folded.remove_weight_norm()

        def eager(g: Generator = gen) -> torch.Tensor:
            with torch.no_grad():
                return g(mel)

        def fast(g: Generator = folded) -> torch.Tensor:
            with torch.inference_mode():
                return g(mel)

        t_eager = median_time(eager, args.repeats)
        t_fast = median_time(fast, args.repeats)
        with torch.no_grad():
            same = float((eager() - fast()).abs().max())
        rows.append({"what": f"hifigan {name}", "variant": "eager, weight norm", "rtf": t_eager / audio_s,
                     "speedup_vs_eager": 1.0})
        rows.append({"what": f"hifigan {name}", "variant": "folded, inference_mode", "rtf": t_fast / audio_s,
                     "speedup_vs_eager": t_eager / t_fast, "max_abs_diff": same})
        if args.compile:
            compiled = torch.compile(folded)

            def comp(compiled: torch.nn.Module = compiled) -> torch.Tensor:
                with torch.inference_mode():
                    return compiled(mel)

            t_comp = median_time(comp, args.repeats, warmup=2)
            rows.append({"what": f"hifigan {name}", "variant": "folded, torch.compile", "rtf": t_comp / audio_s,
                         "speedup_vs_eager": t_eager / t_comp})
    print(f"{audio_s:.1f} s of audio, {args.threads} threads, median of {args.repeats}")
    print_table(rows, ["what", "variant", "rtf", "speedup_vs_eager", "max_abs_diff"])
    write_json(args.out, {"audio_seconds": audio_s, "rows": rows})


if __name__ == "__main__":
    main()
