"""Refiner speed and few-step quality: real-time factor of ``Refiner.refine`` per sampler and step count,
and the mel distance of each result to the 50-step DDPM result (same features, same seed).

    .venv/bin/python benchmarks/refiner.py                       # default-size model, random weights (speed only)
    .venv/bin/python benchmarks/refiner.py --model runs/refiner_pjs/export   # a trained export (+ quality)

RTF = refine seconds / audio seconds (warm, features extracted once beforehand and timed separately).
Quality: mean |log-mel difference| to the 50-step DDPM output at the same strength (lower = closer to the
reference); with random weights it only shows that the samplers converge to the same place.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_time, print_table, write_json  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def random_refiner(content_dim: int):  # noqa: ANN201
    from canora.dsp.mel import MelSpec
    from canora.refiner import MelNormalizer, Refiner, RefinerConfig, RefinerModel
    from canora.refiner.diffusion import NoiseSchedule

    torch.manual_seed(0)
    model = RefinerModel(RefinerConfig.preset("default", content_dim=content_dim))
    with torch.no_grad():
        model.out_proj.weight.normal_(0, 0.02)
    spec = MelSpec()
    return Refiner(model, spec, MelNormalizer.fixed(spec), NoiseSchedule("linear", 1000), singers=["singer0"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None, help="refiner export (default: random default-size model)")
    p.add_argument("--audio", type=Path, default=DATA / "pjs" / "pjs085_song.wav", help="source audio")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of audio to refine (default 10)")
    p.add_argument("--singer", default=None)
    p.add_argument("--samplers", nargs="+", default=["ddpm", "ddim", "dpmpp"])
    p.add_argument("--steps", type=int, nargs="+", default=[1, 4, 10, 25, 50])
    p.add_argument("--strengths", type=float, nargs="+", default=[1.0, 0.6])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("bench_out/refiner.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from canora.conditioning import FeatureParams, extract_features
    from canora.io.audio import load_audio
    from canora.refiner import Refiner

    if args.model is not None:
        ref = Refiner.from_pretrained(args.model)
    else:
        ref = random_refiner(0)
    wav = load_audio(args.audio, ref.spec.sample_rate)[: int(args.seconds * ref.spec.sample_rate)]
    if args.model is None:  # a random model whose content dimension fits the default content extractor
        ref = random_refiner(extract_features(wav, ref.spec, FeatureParams()).content.shape[0])
    seconds = len(wav) / ref.spec.sample_rate
    t0 = time.perf_counter()
    feats = ref.features(wav, ref.spec.sample_rate)
    feat_rtf = (time.perf_counter() - t0) / seconds
    singer = args.singer if args.singer is not None else ref.singers[0]
    print(f"refiner: {ref.model.num_parameters():,} parameters ({'trained' if args.model else 'random weights'}), "
          f"{seconds:.1f} s of {args.audio.name}, {torch.get_num_threads()} threads; feature extraction RTF "
          f"{feat_rtf:.3f}")

    def run(sampler: str, steps: int, strength: float) -> np.ndarray:
        return ref.refine_features(feats, singer, sampler=sampler, steps=steps, strength=strength, seed=0).mel

    rows = []
    for strength in args.strengths:
        reference = run("ddpm", 50, strength)
        for sampler in args.samplers:
            for steps in args.steps:
                repeats = 3 if steps <= 10 else 1
                secs = median_time(lambda s=sampler, n=steps, k=strength: run(s, n, k), repeats=repeats, warmup=1)
                out = run(sampler, steps, strength)
                rows.append({"strength": strength, "sampler": sampler, "steps": steps, "rtf": secs / seconds,
                             "l1_to_ddpm50": float(np.abs(out - reference).mean()),
                             "l1_to_source": float(np.abs(out - feats.mel).mean())})
    print_table(rows, ["strength", "sampler", "steps", "rtf", "l1_to_ddpm50", "l1_to_source"])
    base = {(r["strength"], r["sampler"]): r["rtf"] for r in rows if r["steps"] == 1}
    for r in rows:
        r["rtf_vs_1_step"] = r["rtf"] / base[(r["strength"], r["sampler"])]
    write_json(args.out, {
        "model": str(args.model) if args.model else "random default-size model",
        "parameters": ref.model.num_parameters(), "audio": str(args.audio), "seconds": seconds,
        "feature_extraction_rtf": feat_rtf, "rows": rows,
    })


if __name__ == "__main__":
    main()
