"""Make a voice from a few minutes of a singer's recordings: check, slice, fine-tune from a base, evaluate, save.

:func:`train_voice` is what ``canora train-voice`` runs:

1. **check** the recordings: unreadable files, mixed sample rates, clipping, too little voiced audio (under a
   minute rarely makes a voice), and sound besides the voice (loud frames the F0 tracker does not hear as
   voiced: accompaniment or noise) are reported before any training;
2. **slice** them at silences into pieces of at most 30 s and hold the last ~10 % of the audio (at least one piece)
   out (:mod:`canora.training.voice_data`);
3. **fine-tune** the refiner from a base (the bundled multi-singer base, ``bundled-base``, by default; the
   bundled PJS refiner measured the same in ``benchmarks/voice_finetune.py``) for at most ``minutes`` (and,
   when asked, the NSF vocoder from the bundled one, with reconstruction losses, for a share of that time);
4. **evaluate** on the held-out pieces: each is converted into the new voice and scored (resemblyzer singer
   similarity to the centroid of the training pieces beside the piece's own, gross pitch error by harvest and
   Praat);
5. **save** a voice folder (``voice.json``, ``refiner/``, ``vocoder/`` when trained, ``README.md``) in the
   voices directory, where ``--voice NAME`` finds it.

Every step resumes when the command runs again with the same ``WORK``, whatever stopped it: the pieces are cut once
(a recording cut half-way is cut again), the trainings go on from their last checkpoint with what is left of their
time (``WORK/state.json`` keeps the minutes used; a run stopped by Ctrl-C or SIGTERM counts its time, a SIGKILL
loses the time since the last checkpoint), and a training that finished is not run again for the same budget. A
voice is saved only whole, and never without held-out audio to score it on.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from canora.errors import CanoraError
from canora.training.voice_data import RecordingReport, check_recordings, slice_recordings

log = logging.getLogger(__name__)

#: re-exported: what the recordings check and slicing were called here before they moved to voice_data
__all__ = ["RecordingReport", "check_recordings", "slice_recordings", "train_voice"]


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


class _State:
    """``WORK/state.json``: per training (``refiner``, ``vocoder``), the seconds used and the budget it finished."""

    def __init__(self, work: Path) -> None:
        from canora.training.voice_data import read_json_or_none

        self.path = work / "state.json"
        self.doc: dict[str, Any] = read_json_or_none(self.path) or {}

    def phase(self, name: str) -> dict[str, Any]:
        return self.doc.setdefault(name, {"seconds": 0.0})

    def save(self) -> None:
        from canora.training.voice_data import write_json

        write_json(self.path, self.doc)


def _train(state: _State, phase: str, budget: dict[str, Any], minutes: float,
           make_loop: Callable[[float], Any]) -> None:
    """Run the ``phase`` training (``make_loop(max_minutes)`` -> a :class:`canora.training.loop.Loop`) for what is
    left of ``minutes``, unless it finished for this ``budget`` already; its time is counted in ``state``. A run
    stopped by a signal checkpoints, counts its time and raises KeyboardInterrupt (run again to go on)."""
    rec = state.phase(phase)
    if rec.get("finished") == budget:
        log.info("the %s fine-tuning finished in an earlier run; reusing it", phase)
        return
    left = 60.0 * minutes - float(rec.get("seconds", 0.0))
    if left < 1.0:
        log.warning("the %s fine-tuning used its %.0f minute(s) in earlier runs; pass a larger --minutes to train "
                    "it further", phase, minutes)
        rec["finished"] = budget
        state.save()
        return
    if rec.get("seconds"):
        log.info("the %s fine-tuning goes on for the %.1f minute(s) left of its %.0f", phase, left / 60, minutes)
    loop = make_loop(left / 60)
    t0 = time.monotonic()
    try:
        loop.run()
    finally:
        rec["seconds"] = float(rec.get("seconds", 0.0)) + time.monotonic() - t0
        state.save()
    if loop.interrupted:
        raise KeyboardInterrupt
    rec["finished"] = budget
    state.save()


def _save_voice(staging: Path, target: Path) -> None:
    """Publish the complete voice folder ``staging`` as ``target`` (replacing a voice there)."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def train_voice(recordings: Path, name: str, *, work: Path, voices: Path, base: str = "bundled-base",
                minutes: float = 10.0, steps: int = 100_000, vocoder_share: float = 0.0, overwrite: bool = False,
                vocoder: str = "bundled", progress: bool = True) -> Path:
    """Make the voice ``name`` from the recordings in ``recordings`` (see the module doc); returns its folder.

    ``vocoder``: the vocoder the voice uses when it is not fine-tuned (``"bundled"``, referenced; or an export,
    copied into the voice folder)."""
    from canora.dsp.filters import HIGHPASS_HZ
    from canora.dsp.mel import MelSpec
    from canora.io.audio import list_audio
    from canora.io.models import is_bundled_name, resolve_model
    from canora.io.voices import check_name, write_voice_json
    from canora.refiner import Refiner
    from canora.training.loop import Loop
    from canora.training.refiner import RefinerTask, RefinerTrainConfig

    check_name(name)
    target = voices / name
    if target.exists() and not overwrite:
        raise CanoraError(f"{target}: a voice of that name exists; choose another --name or pass --overwrite")
    if not 0 <= vocoder_share < 1:
        raise CanoraError(f"vocoder share {vocoder_share} must be in [0, 1)")
    if not (isinstance(minutes, (int, float)) and 0 < minutes < float("inf")):
        raise CanoraError(f"--minutes must be a number of minutes > 0, got {minutes!r}")
    files = list_audio(recordings)
    if not files:
        raise CanoraError(f"{recordings}: no audio files in this folder")
    base_ref = Refiner.from_pretrained(base)
    spec: MelSpec = base_ref.spec
    sr, hop = spec.sample_rate, spec.hop_length
    rep = check_recordings(files, sr, hop, work)
    for w in rep.warnings:
        log.warning("%s", w)
    ref_minutes = minutes * (1 - vocoder_share)
    log.info("%s: %.1f min of audio (%.1f min sung) in %d file(s); fine-tuning the refiner from %s for at most %.0f "
             "min%s (progress bars show the time left)", name, rep.seconds / 60, rep.voiced_seconds / 60,
             len(rep.files), base, ref_minutes,
             f", then the vocoder for {minutes * vocoder_share:.0f} min" if vocoder_share else "")
    data, held = slice_recordings(rep.files, name, work, sr, hop)
    if not held:
        raise CanoraError(f"{work}: no held-out piece to score the voice on; delete that folder and run again")
    state = _State(work)

    def refiner_loop(max_minutes: float) -> Loop:
        cfg = RefinerTrainConfig(init_from=str(base), steps=steps, max_minutes=max_minutes, val_every=0,
                                 checkpoint_every=500, lr=1e-4, lr_warmup=100, mel_spec=spec.to_dict(),
                                 features=base_ref.feature_params.to_dict(), val_count=0, highpass_hz=HIGHPASS_HZ)
        return Loop(RefinerTask(cfg, [data], singers=[name]), work / "refiner", progress=progress)

    _train(state, "refiner", {"base": str(base), "steps": steps, "minutes": ref_minutes}, ref_minutes, refiner_loop)
    vocoder_export = None if is_bundled_name(vocoder) else resolve_model(vocoder, "vocoder").resolve()
    if vocoder_share:
        vocoder_export = _fine_tune_vocoder(state, data, work, minutes * vocoder_share, progress, vocoder)
    refiner_export = (work / "refiner" / "export").resolve()
    if not (refiner_export / "model.json").is_file():
        raise CanoraError(f"{work / 'refiner'}: the fine-tuning left no export; delete that folder and run again")
    evaluation = evaluate_voice(refiner_export, vocoder_export, name, data, held, sr)
    if not evaluation["pieces"]:
        raise CanoraError(f"{work}: none of the held-out pieces could be scored; the voice is not saved (delete that "
                          "folder and run again)")
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
    pieces = sorted(data.glob("*.wav"))
    doc = {"name": name, "singer": name, "refiner": "refiner", "vocoder": "vocoder" if vocoder_export else "bundled",
           "f0_range": f0_range, "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "trained": {"base": str(base), "minutes_of_audio": rep.seconds / 60, "voiced_minutes":
                       rep.voiced_seconds / 60, "refiner_steps": (trained.info or {}).get("trained_steps"),
                       "refiner_minutes": state.phase("refiner")["seconds"] / 60, "files": len(rep.files),
                       "pieces": len(pieces), "held_out_pieces": len(held), "vocoder_steps": _steps(vocoder_export)},
           "evaluation": evaluation, "warnings": rep.warnings}
    write_voice_json(staging, doc)
    (staging / "README.md").write_text(model_card(name, doc))
    _save_voice(staging, target)
    return target


def _fine_tune_vocoder(state: _State, data: Path, work: Path, minutes: float, progress: bool,
                       start: str = "bundled") -> Path:
    """An NSF vocoder (``start``: the bundled one by default) fine-tuned on the voice's pieces with reconstruction
    losses for ``minutes`` (what is left of them, on a resumed run)."""
    from canora.io.checkpoint import load_export
    from canora.io.models import resolve_model
    from canora.training.loop import Loop
    from canora.training.nsf import NSFTask, NSFTrainConfig

    bundled = resolve_model(start, "vocoder")
    doc, _ = load_export(bundled, "nsf-hifigan")
    meta = doc.get("meta", {})

    def loop(max_minutes: float) -> Loop:
        cfg = NSFTrainConfig(wavs=str(data), mel_spec=doc["mel_spec"], model=doc["config"], steps=100_000,
                             max_minutes=max_minutes, lr=1e-4, val_count=0, val_every=0, checkpoint_every=250,
                             init_from=str(bundled), f0_method=meta.get("f0_method", "swift"))
        return Loop(NSFTask(cfg), work / "vocoder", progress=progress)

    _train(state, "vocoder", {"start": str(start), "minutes": minutes}, minutes, loop)
    out = (work / "vocoder" / "export").resolve()
    if not (out / "model.json").is_file():
        raise CanoraError(f"{work / 'vocoder'}: the fine-tuning left no export; delete that folder and run again")
    return out


def _steps(export: Path | None) -> int | None:
    if export is None:
        return None
    try:
        return int(json.loads((export / "model.json").read_text()).get("meta", {}).get("trained_steps"))
    except (OSError, ValueError, TypeError):
        return None
