"""Make a voice from a few minutes of a singer's recordings: check, slice, fine-tune from a base, evaluate, save.

:func:`train_voice` is what ``canora train-voice`` runs:

1. **check** the recordings: unreadable files, mixed sample rates, clipping, too little voiced audio (under a
   minute rarely makes a voice), and sound besides the voice (loud frames the F0 tracker does not hear as
   voiced: accompaniment or noise) are reported before any training;
2. **slice** them at silences into pieces of at most 30 s under ``WORK/data/<name>/``, holding the last ~10 % of
   the audio (at least one piece) out under ``WORK/holdout/``;
3. **fine-tune** the refiner from a base (the bundled multi-singer base, ``bundled-base``, by default; the
   bundled PJS refiner measured the same in ``benchmarks/voice_finetune.py``) for at most ``minutes`` (and,
   when asked, the NSF vocoder from the bundled one, with reconstruction losses, for a share of that time);
   both runs resume when the command is run again with the same ``WORK``;
4. **evaluate** on the held-out pieces: each is converted into the new voice and scored (resemblyzer singer
   similarity to the centroid of the training pieces beside the piece's own, gross pitch error by harvest and
   Praat);
5. **save** a voice folder (``voice.json``, ``refiner/``, ``vocoder/`` when trained, ``README.md``) in the
   voices directory, where ``--voice NAME`` finds it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from canora.errors import CanoraError

log = logging.getLogger(__name__)

MIN_VOICED_SECONDS = 60.0
CLIP_SHARE = 1e-3  # more samples than this at full scale: clipped
SIDE_SOUND_SHARE = 0.3  # loud unvoiced frames above this share of the loud frames: something besides the voice


@dataclass
class RecordingReport:
    """What :func:`check_recordings` found: seconds of audio and of voice, and warnings (one line each)."""

    files: list[Path]
    seconds: float = 0.0
    voiced_seconds: float = 0.0
    rates: dict[int, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def check_recordings(files: list[Path], sample_rate: int, hop: int) -> RecordingReport:
    """Read every file (mono at ``sample_rate``) and report the problems a voice would inherit."""
    from canora.dsp.artifacts import audible_frames
    from canora.dsp.pitch import extract_f0
    from canora.io.audio import audio_info, load_audio

    rep = RecordingReport(files=[])
    for f in files:
        try:
            _, sr, _ = audio_info(f)
            wav = load_audio(f, sample_rate)
        except CanoraError as e:
            rep.warnings.append(f"{f.name}: skipped ({e})")
            continue
        rep.files.append(f)
        rep.rates[sr] = rep.rates.get(sr, 0) + 1
        rep.seconds += len(wav) / sample_rate
        clipped = float(np.mean(np.abs(wav) >= 0.99))
        if clipped > CLIP_SHARE:
            rep.warnings.append(f"{f.name}: {100 * clipped:.2f} % of the samples are clipped (full scale); the voice "
                                "will learn the distortion: record with more headroom")
        n = len(wav) // hop
        if n == 0:
            continue
        f0 = extract_f0(wav, sample_rate, hop, n)
        voiced = f0 > 0
        rep.voiced_seconds += float(voiced.sum()) * hop / sample_rate
        loud = audible_frames(wav, hop, n, below_peak_db=25.0)
        side = float(np.mean(~voiced[loud])) if loud.any() else 0.0
        if side > SIDE_SOUND_SHARE:
            rep.warnings.append(f"{f.name}: {100 * side:.0f} % of its loud frames carry no sung pitch: accompaniment, "
                                "noise or speech besides the voice? a cappella recordings make the best voice")
    if len(rep.rates) > 1:
        rates = ", ".join(f"{r} Hz ({k} file(s))" for r, k in sorted(rep.rates.items()))
        rep.warnings.append(f"mixed sample rates ({rates}); they are all resampled, but recordings from one setup "
                            "make a more consistent voice")
    if not rep.files:
        raise CanoraError("no readable recordings; give a folder of audio files of one singer")
    if rep.voiced_seconds < MIN_VOICED_SECONDS:
        rep.warnings.append(f"only {rep.voiced_seconds:.0f} s of sung voice in {rep.seconds:.0f} s of audio; under a "
                            "minute rarely makes a convincing voice (2-5 minutes is a good start)")
    return rep


def slice_recordings(files: list[Path], name: str, work: Path, sample_rate: int, hop: int,
                     holdout_share: float = 0.1) -> tuple[Path, list[Path]]:
    """Cut the recordings at silences into pieces of at most 30 s: ``work/data/<name>/`` for training and the
    last ``holdout_share`` of the audio (at least one piece) under ``work/holdout/``; returns (data dir, held
    out pieces). Pieces already there are kept (a resumed run slices the same way)."""
    from canora.dsp.slicing import plan_slices
    from canora.io.audio import load_audio, save_wav

    data, hold = work / "data" / name, work / "holdout"
    if data.is_dir() and any(data.iterdir()):
        return data, sorted(hold.glob("*.wav"))
    data.mkdir(parents=True, exist_ok=True)
    hold.mkdir(parents=True, exist_ok=True)
    pieces: list[tuple[str, np.ndarray]] = []
    for f in files:
        wav = load_audio(f, sample_rate)
        for i, s in enumerate(plan_slices(wav, sample_rate, hop=hop, max_seconds=30.0, overlap=0)):
            if not s.silent and s.end - s.start >= sample_rate:
                pieces.append((f"{f.stem}_{i:03d}", wav[s.start: s.end]))
    if len(pieces) < 2:
        raise CanoraError(f"the recordings give {len(pieces)} sung piece(s); need at least 2 (one to hold out)")
    total = sum(len(p) for _, p in pieces)
    held, acc = [], 0
    for stem, p in reversed(pieces):
        if held and acc >= holdout_share * total:
            break
        held.append((stem, p))
        acc += len(p)
    keep = pieces[: len(pieces) - len(held)]
    for stem, p in keep:
        save_wav(data / f"{stem}.wav", p, sample_rate, subtype="FLOAT")
    for stem, p in held:
        save_wav(hold / f"{stem}.wav", p, sample_rate, subtype="FLOAT")
    return data, sorted(hold.glob("*.wav"))


def evaluate_voice(refiner: Path, vocoder: Path | None, singer: str, data: Path, held: list[Path],
                   sample_rate: int) -> dict[str, Any]:
    """Convert each held-out piece into the voice; mean singer similarity (to the centroid of the training
    pieces) of the conversions and of the pieces themselves, and gross pitch error by harvest and Praat."""
    from canora.analysis.evaluation import SpeakerEmbedder, centroid, evaluate_conversion
    from canora.io.audio import load_audio
    from canora.pipeline import Converter

    conv = Converter.from_pretrained(refiner, vocoder)
    try:
        emb = SpeakerEmbedder()
    except CanoraError as e:
        log.warning("no similarity scores: %s", e)
        emb = None
    target = None
    if emb is not None:
        target = centroid([emb.embed(load_audio(p, 16000), 16000) for p in sorted(data.glob("*.wav"))[:40]])
    rows = []
    for p in held:
        wav = load_audio(p, sample_rate)
        res = conv.convert(wav, sample_rate, singer=singer, transpose=0)  # the singer's own pieces: as sung
        rows.append(evaluate_conversion(res.audio, wav, sample_rate, transpose=res.transpose, embedder=emb,
                                        target_centroid=target))

    def mean(k: str) -> float | None:
        v = [r[k] for r in rows if k in r and np.isfinite(r[k])]
        return float(np.mean(v)) if v else None

    return {"pieces": len(rows), "similarity_converted": mean("similarity_converted"),
            "similarity_source": mean("similarity_source"), "gpe_harvest": mean("gpe_harvest"),
            "gpe_praat": mean("gpe_praat")}


def _f0_range(r: Any) -> str:
    """``{"median", "p5", "p95"}`` in Hz as one phrase (whatever else as it is)."""
    try:
        return f"median {r['median']:.0f} Hz, 5th-95th percentile {r['p5']:.0f}-{r['p95']:.0f} Hz"
    except (TypeError, KeyError, ValueError):
        return str(r)


def _base_name(base: Any) -> str:
    from canora.io.models import BASE_NAME, is_bundled_name

    name = str(base).strip().lower()
    return ("the bundled PJS refiner" if is_bundled_name(name) else
            "the bundled multi-singer base" if name == BASE_NAME else str(base))


def model_card(name: str, doc: dict[str, Any]) -> str:
    """A short README.md for a voice folder from its ``voice.json`` content."""
    t, ev = doc.get("trained", {}), doc.get("evaluation", {})

    def f(v: Any, nd: int = 3) -> str:
        return f"{v:.{nd}f}" if isinstance(v, float) else str(v)

    return "\n".join([
        f"# Voice `{name}`", "",
        f"Made by `canora train-voice` on {doc.get('created', '?')}: the refiner fine-tuned from "
        f"{_base_name(t.get('base', '?'))} on {f(t.get('minutes_of_audio', 0), 1)} minutes of recordings "
        f"({f(t.get('voiced_minutes', 0), 1)} of sung voice), {t.get('refiner_steps', '?')} steps in "
        f"{f(t.get('refiner_minutes', 0), 1)} minutes; vocoder: "
        + (f"fine-tuned, {t.get('vocoder_steps')} steps" if doc.get("vocoder") != "bundled" else "the bundled one")
        + ".", "",
        f"Singer F0 range: {_f0_range(doc.get('f0_range'))}", "",
        f"On {ev.get('pieces', 0)} held-out piece(s) of the singer, converted into this voice: singer similarity "
        f"{f(ev.get('similarity_converted'))} (the pieces themselves: {f(ev.get('similarity_source'))}), gross pitch "
        f"error {f(ev.get('gpe_harvest'))} (harvest) / {f(ev.get('gpe_praat'))} (Praat).", "",
        "Warnings from the recording check:", "",
        *([f"* {w}" for w in doc.get("warnings", [])] or ["* none"]), "",
        f"Use it: `canora convert song.wav -o out.wav --voice {name}`.", "",
    ])


def train_voice(recordings: Path, name: str, *, work: Path, voices: Path, base: str = "bundled-base",
                minutes: float = 30.0, steps: int = 100_000, vocoder_share: float = 0.0, overwrite: bool = False,
                vocoder: str = "bundled", progress: bool = True) -> Path:
    """Make the voice ``name`` from the recordings in ``recordings`` (see the module doc); returns its folder.

    ``vocoder``: the vocoder the voice uses when it is not fine-tuned (``"bundled"``, referenced; or an export,
    copied into the voice folder)."""
    from canora.dsp.mel import MelSpec
    from canora.io.audio import list_audio
    from canora.io.voices import check_name, write_voice_json
    from canora.refiner import Refiner
    from canora.training.refiner import RefinerTrainConfig, train_refiner

    check_name(name)
    target = voices / name
    if target.exists() and not overwrite:
        raise CanoraError(f"{target}: a voice of that name exists; choose another --name or pass --overwrite")
    if not 0 <= vocoder_share < 1:
        raise CanoraError(f"vocoder share {vocoder_share} must be in [0, 1)")
    files = list_audio(recordings)
    if not files:
        raise CanoraError(f"{recordings}: no audio files in this folder")
    base_ref = Refiner.from_pretrained(base)
    spec: MelSpec = base_ref.spec
    sr, hop = spec.sample_rate, spec.hop_length
    rep = check_recordings(files, sr, hop)
    for w in rep.warnings:
        log.warning("%s", w)
    ref_minutes = minutes * (1 - vocoder_share)
    log.info("%s: %.1f min of audio (%.1f min sung) in %d file(s); fine-tuning the refiner from %s for at most %.0f "
             "min%s (progress bars show the time left)", name, rep.seconds / 60, rep.voiced_seconds / 60,
             len(rep.files), base, ref_minutes,
             f", then the vocoder for {minutes * vocoder_share:.0f} min" if vocoder_share else "")
    data, held = slice_recordings(rep.files, name, work, sr, hop)
    t0 = time.monotonic()
    from canora.dsp.filters import HIGHPASS_HZ

    cfg = RefinerTrainConfig(init_from=str(base), steps=steps, max_minutes=ref_minutes, val_every=0,
                             checkpoint_every=500, lr=1e-4, lr_warmup=100, mel_spec=spec.to_dict(),
                             features=base_ref.feature_params.to_dict(), val_count=0, highpass_hz=HIGHPASS_HZ)
    refiner_export = train_refiner([data], work / "refiner", cfg, singers=[name], progress=progress)
    ref_minutes_used = (time.monotonic() - t0) / 60
    from canora.io.models import is_bundled_name, resolve_model

    vocoder_export = None if is_bundled_name(vocoder) else resolve_model(vocoder, "vocoder").resolve()
    if vocoder_share:
        vocoder_export = _fine_tune_vocoder(data, work, minutes * vocoder_share, progress, vocoder)
    refiner_export = Path(refiner_export or work / "refiner" / "export").resolve()
    evaluation = evaluate_voice(refiner_export, vocoder_export, name, data, held, sr)
    trained = Refiner.from_pretrained(refiner_export)
    f0_range = trained.singer_f0_stats.get(name)
    if f0_range is None:
        raise CanoraError(f"{name}: no F0 statistics after training; the recordings hold no voiced frames")
    staging = voices / f".{name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copytree(refiner_export, staging / "refiner")
    if vocoder_export is not None:
        shutil.copytree(vocoder_export, staging / "vocoder")
    doc = {"name": name, "singer": name, "refiner": "refiner", "vocoder": "vocoder" if vocoder_export else "bundled",
           "f0_range": f0_range, "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "trained": {"base": str(base), "minutes_of_audio": rep.seconds / 60, "voiced_minutes":
                       rep.voiced_seconds / 60, "refiner_steps": (trained.info or {}).get("trained_steps"),
                       "refiner_minutes": ref_minutes_used, "files": len(rep.files), "held_out_pieces": len(held),
                       "vocoder_steps": _steps(vocoder_export)},
           "evaluation": evaluation, "warnings": rep.warnings}
    write_voice_json(staging, doc)
    (staging / "README.md").write_text(model_card(name, doc))
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


def _fine_tune_vocoder(data: Path, work: Path, minutes: float, progress: bool, start: str = "bundled") -> Path:
    """An NSF vocoder (``start``: the bundled one by default) fine-tuned on the voice's pieces with reconstruction
    losses for ``minutes``."""
    from canora.io.checkpoint import load_export
    from canora.io.models import resolve_model
    from canora.training.nsf import NSFTrainConfig, train_nsf

    bundled = resolve_model(start, "vocoder")
    doc, _ = load_export(bundled, "nsf-hifigan")
    meta = doc.get("meta", {})
    cfg = NSFTrainConfig(wavs=str(data), mel_spec=doc["mel_spec"], model=doc["config"], steps=100_000,
                         max_minutes=minutes, lr=1e-4, val_count=0, val_every=0, checkpoint_every=250,
                         init_from=str(bundled), f0_method=meta.get("f0_method", "swift"))
    out = train_nsf(cfg, work / "vocoder", progress=progress)
    return Path(out or work / "vocoder" / "export").resolve()


def _steps(export: Path | None) -> int | None:
    if export is None:
        return None
    try:
        return int(json.loads((export / "model.json").read_text()).get("meta", {}).get("trained_steps"))
    except (OSError, ValueError, TypeError):
        return None
