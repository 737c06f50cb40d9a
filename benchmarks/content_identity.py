"""How much singer identity (and how much phonetic content) each candidate content feature carries.

    .venv/bin/python benchmarks/content_identity.py [--out bench_out/content_identity.json] [--pjs-files 6]
        [--learned NAME=EXPORT ...] [--only TEXT]

Identity: singer classification over the singers in ../shared/data (pjs, nitsong070 f001, three vocadito
singers, dagstuhl soprano S1 and basses B1/B2, two smstools singers). Singers with two or more files are
split by file (the last file is the test set); singers with one file are split in time (first 60% train,
last 40% test). Two probes, both reporting balanced accuracy (mean per-singer recall; chance = 1/singers):
``window``: logistic regression (and, as a nonlinear probe, 5-nearest-neighbours) on the mean and std of
each 1 s window; ``frame``: logistic regression on single frames (what a refiner could read locally).
Lower = less identity. With ~150 test windows, differences below ~0.05 are noise.
Content: frame-level phoneme classification on nitsong070 f001_004 with its HTS labels (first 60% of the
song trains, last 40% tests; one singer, so identity cannot help). Higher = more content kept.
Learned encoders (``canora train-content``; the bundled one when present, and any ``--learned NAME=EXPORT``) are
scored beside the DSP features; none of these singers was in their training data (PJS songs 082-090 are held out of
it, and the benchmark's PJS files are taken from those with ``--pjs-from 82``, the default). ``s_per_min`` is the
extraction time per minute of audio (one thread, the machine's load at the time).
Needs scikit-learn (benchmark only).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SR, HOP = 22050, 256
Feature = Callable[[np.ndarray], np.ndarray]  # wav (T,) at SR -> (frames, dim)


def singer_files(pjs_files: int, pjs_from: int = 82) -> dict[str, list[Path]]:
    """Singer name -> recordings (only those present)."""
    d = DATA
    spec = {
        "pjs": [d / f"pjs/pjs{i:03d}_song.wav" for i in range(pjs_from, pjs_from + pjs_files)],
        "nitsong_f001": sorted((d / "nitsong070").glob("*.wav")),
        "vocadito_1": [d / "vocadito/vocadito_1.wav"],
        "vocadito_10": [d / "vocadito/vocadito_10.wav"],
        "vocadito_14": [d / "vocadito/vocadito_14.wav"],
        "dagstuhl_S1": sorted((d / "dagstuhl").glob("*_S1_*.wav")),
        "dagstuhl_B1": sorted((d / "dagstuhl").glob("*_B1_*.wav")),
        "dagstuhl_B2": sorted((d / "dagstuhl").glob("*_B2_*.wav")),
        "sms_female": [d / "smstools/singing-female.wav"],
        "sms_vignesh": [d / "smstools/vignesh.wav"],
    }
    return {k: [p for p in v if p.exists()] for k, v in spec.items() if any(p.exists() for p in v)}


def learned(export: str, normalize: bool | None = None) -> Feature:
    """The learned content encoder in ``export`` ('bundled' or a path), reading the HiFi-GAN mel (``normalize``:
    force its per-recording normalisation on or off; None: as the export says)."""
    from canora.content.learned import LearnedContent
    from canora.dsp.mel import MelSpec, wav_to_mel

    kw = {} if normalize is None else {"normalize": normalize}
    enc, spec = LearnedContent(export, **kw), MelSpec()
    return lambda wav: enc.extract_from_mel(wav_to_mel(wav, spec), spec)


def candidates(extra: dict[str, str] | None = None) -> dict[str, Feature]:
    from canora.content.learned import BUNDLED_DIR
    from canora.dsp.content import CepstralContent, cmvn
    from canora.dsp.mel import MelSpec, wav_to_mel

    spec = MelSpec()

    def logmel(wav: np.ndarray) -> np.ndarray:
        return wav_to_mel(wav, spec).T

    def enc(**kw: object) -> Feature:
        e = CepstralContent(**kw)
        return lambda wav: e.extract(wav, SR, HOP, len(wav) // HOP)

    def perturbed(wav: np.ndarray) -> np.ndarray:
        """The default content of a timbre-perturbed copy (a random frequency warp and EQ per recording), as
        the refiner's training sees it (canora.training.augment)."""
        from canora.conditioning import FeatureParams
        from canora.training.augment import TimbrePerturbation, timbre_variants

        how = TimbrePerturbation(variants=1)
        return timbre_variants(wav, spec, FeatureParams(), how, f"clip{len(wav)}", len(wav) // HOP)[0][0].T

    return {
        "logmel80 (raw)": logmel,
        "logmel80 cmvn": lambda wav: cmvn(logmel(wav)),
        "mfcc c0-19": enc(first=0, normalize=False, vtln=False),
        "mfcc c1-19 cmvn (dsp default)": enc(first=1, vtln=False),
        "dsp default, timbre-perturbed (refiner training)": perturbed,
        "mfcc c2-19 cmvn": enc(first=2, vtln=False),
        "mfcc c1-19 cmvn vtln": enc(first=1, vtln=True),
        "mfcc c2-19 cmvn vtln": enc(first=2, vtln=True),
        "mfcc c1-12 cmvn": enc(first=1, last=12, vtln=False),
        "mfcc c4-19 cmvn vtln": enc(first=4, vtln=True),
        **({"learned (bundled)": learned("bundled")} if BUNDLED_DIR.is_dir() else {}),
        **{f"learned {name}": learned(path, False) for name, path in (extra or {}).items()},
        **{f"learned {name} cmvn": learned(path, True) for name, path in (extra or {}).items()},
    }


def active_frames(wav: np.ndarray) -> np.ndarray:
    """Frames (n,) bool within 40 dB of the loudest (drops silence, which only shows the room)."""
    from canora.dsp.loudness import loudness

    db = loudness(wav, SR, HOP)
    return db > db.max() - 40


def windows(x: np.ndarray, size: int) -> np.ndarray:
    """Mean and std of each full ``size``-frame window of ``x`` (n, d) -> (w, 2d)."""
    w = len(x) // size
    if w == 0:
        return np.zeros((0, 2 * x.shape[1]))
    blocks = x[: w * size].reshape(w, size, -1)
    return np.concatenate([blocks.mean(1), blocks.std(1)], axis=1)


def classify(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, knn: bool = False) -> float:
    """Balanced accuracy of a standardised multinomial logistic regression (or 5-nearest-neighbours)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = KNeighborsClassifier(5) if knn else LogisticRegression(max_iter=3000, C=1.0)
    clf = make_pipeline(StandardScaler(), model)
    clf.fit(xtr, ytr)
    return float(balanced_accuracy_score(yte, clf.predict(xte)))


def identity(
    feats: dict[str, list[tuple[np.ndarray, np.ndarray]]], rng: np.random.Generator
) -> dict[str, float]:
    """Window and frame singer-classification accuracy; ``feats``: singer -> [(features, active)] per file."""
    per_frame = int(1.0 * SR / HOP)
    sets: dict[str, list[list[np.ndarray]]] = {"win_tr": [], "win_te": [], "fr_tr": [], "fr_te": []}
    labels: dict[str, list[np.ndarray]] = {k: [] for k in sets}
    for label, (_, files) in enumerate(sorted(feats.items())):
        if len(files) >= 2:
            split = {"tr": [f[0][f[1]] for f in files[:-1]], "te": [files[-1][0][files[-1][1]]]}
        else:
            x = files[0][0][files[0][1]]
            cut = int(0.6 * len(x))
            split = {"tr": [x[:cut]], "te": [x[cut:]]}
        for part, xs in split.items():
            win = np.concatenate([windows(x, per_frame) for x in xs])
            fr = np.concatenate(xs)
            fr = fr[rng.choice(len(fr), min(len(fr), 1500 if part == "tr" else 600), replace=False)]
            for key, arr in ((f"win_{part}", win), (f"fr_{part}", fr)):
                sets[key].append(arr)
                labels[key].append(np.full(len(arr), label))
    cat = {k: np.concatenate(v) for k, v in sets.items()}
    lab = {k: np.concatenate(v) for k, v in labels.items()}
    return {
        "window_acc": classify(cat["win_tr"], lab["win_tr"], cat["win_te"], lab["win_te"]),
        "window_knn_acc": classify(cat["win_tr"], lab["win_tr"], cat["win_te"], lab["win_te"], knn=True),
        "test_windows": int(len(lab["win_te"])),
        "frame_acc": classify(cat["fr_tr"], lab["fr_tr"], cat["fr_te"], lab["fr_te"]),
    }


def phoneme_labels(lab: Path, n_frames: int) -> np.ndarray:
    """Phoneme name per mel frame (n_frames,) from an HTS full-context label file (times in 100 ns)."""
    out = np.full(n_frames, "", dtype=object)
    centres = (np.arange(n_frames) + 0.5) * HOP / SR
    for line in lab.read_text().splitlines():
        start, end, ctx = line.split(maxsplit=2)
        phone = ctx.split("-", 1)[1].split("+", 1)[0]
        out[(centres >= int(start) * 1e-7) & (centres < int(end) * 1e-7)] = phone
    return out


def content(fn: Feature, wav: np.ndarray, phones: np.ndarray) -> float:
    """Phoneme classification accuracy (balanced over phonemes seen in both halves), context +-2 frames."""
    x = fn(wav)
    n = min(len(x), len(phones))
    x, y = x[:n], phones[:n]
    ctx = np.concatenate([np.roll(x, s, axis=0) for s in (-2, -1, 0, 1, 2)], axis=1)
    keep = (y != "") & (y != "pau") & (y != "sil")
    cut = int(0.6 * n)
    tr, te = keep & (np.arange(n) < cut), keep & (np.arange(n) >= cut)
    common = np.intersect1d(np.unique(y[tr]), np.unique(y[te]))
    tr &= np.isin(y, common)
    te &= np.isin(y, common)
    return classify(ctx[tr], y[tr].astype(str), ctx[te], y[te].astype(str))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("bench_out/content_identity.json"))
    p.add_argument("--pjs-files", type=int, default=6, help="PJS songs to use (of 90)")
    p.add_argument("--pjs-from", type=int, default=82, help="the first PJS song (82-90 are held out of training)")
    p.add_argument("--learned", action="append", default=[], metavar="NAME=EXPORT",
                   help="also score this content encoder export (repeatable)")
    p.add_argument("--threads", type=int, default=1, help="torch / BLAS threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default="", help="run only features whose name contains this text")
    args = p.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: this benchmark needs ../shared/data")
    import torch

    from canora.io.audio import load_audio

    torch.set_num_threads(args.threads)
    extra = dict(item.split("=", 1) for item in args.learned)
    files = singer_files(args.pjs_files, args.pjs_from)
    audio = {s: [load_audio(f, SR) for f in fs] for s, fs in files.items()}
    active = {s: [active_frames(w) for w in ws] for s, ws in audio.items()}
    lab = DATA / "nitsong070" / "nitech_jp_song070_f001_004.lab"
    song = load_audio(lab.with_suffix(".wav"), SR) if lab.exists() else None
    phones = phoneme_labels(lab, len(song) // HOP) if song is not None else None
    rows = []
    minutes = sum(len(w) for ws in audio.values() for w in ws) / SR / 60
    for name, fn in candidates(extra).items():
        if args.only not in name:
            continue
        t0 = time.perf_counter()
        feats = {s: [(fn(w), a) for w, a in zip(ws, active[s])] for s, ws in audio.items()}
        secs = time.perf_counter() - t0
        row = {
            "feature": name,
            "dim": int(next(iter(feats.values()))[0][0].shape[1]),
            **identity(feats, np.random.default_rng(args.seed)),
            "extract_s": round(secs, 2),
            "s_per_min": round(secs / minutes, 3),
        }
        if phones is not None:
            row["phoneme_acc"] = content(fn, song, phones)
        rows.append(row)
        print(f"  {name}: {row}", flush=True)
    n = len(files)
    print(
        f"\n{n} singers (chance {1 / n:.3f}); identity: lower = less singer identity; "
        "phoneme_acc: higher = more content"
    )
    print_table(
        rows, ["feature", "dim", "window_acc", "window_knn_acc", "frame_acc", "phoneme_acc", "s_per_min"]
    )
    write_json(
        args.out,
        {
            "benchmark": "content_identity",
            "sample_rate": SR,
            "hop": HOP,
            "singers": {s: [str(f.relative_to(DATA)) for f in fs] for s, fs in files.items()},
            "chance": 1 / n,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
