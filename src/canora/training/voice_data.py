"""A voice's recordings under its working directory: checked, cut into pieces and split, each step resumable.

``WORK`` holds, once each step is complete (a step is written under a temporary name and renamed whole, so a kill
leaves it complete or absent, never half there):

* ``check.json``: what :func:`check_recordings` found, for these recordings (their names, sizes and times);
* ``pieces/<stem>/``: one recording cut at silences into pieces of at most 30 s, with ``pieces.json``;
* ``split/``: the training pieces (``data/<name>/``) and the held-out ones (``holdout/``), the last ~10 % of the
  audio and at least one piece, with ``split.json``. It is made once from every recording's pieces, so a voice is
  never trained on part of them.

A run that finds these steps done reuses them; a recording cut half-way when the run was killed is cut again. If the
recordings changed since the split was made, the run says so instead of training on a mix.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from canora.errors import CanoraError

log = logging.getLogger(__name__)

MIN_VOICED_SECONDS = 60.0
CLIP_SHARE = 1e-3  # more samples than this at full scale: clipped
SIDE_SOUND_SHARE = 0.3  # loud unvoiced frames above this share of the loud frames: something besides the voice
PIECE_SECONDS = 30.0


@dataclass
class RecordingReport:
    """What :func:`check_recordings` found: seconds of audio and of voice, and warnings (one line each)."""

    files: list[Path]
    seconds: float = 0.0
    voiced_seconds: float = 0.0
    rates: dict[int, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "files": [str(f) for f in self.files], "rates": {str(k): v for k, v in
                                                                                   self.rates.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RecordingReport:
        return cls([Path(f) for f in d["files"]], float(d["seconds"]), float(d["voiced_seconds"]),
                   {int(k): int(v) for k, v in d["rates"].items()}, [str(w) for w in d["warnings"]])


def signature(files: list[Path]) -> list[dict[str, Any]]:
    """What identifies the recordings: each file's name, size and modification time."""
    out = []
    for f in files:
        st = f.stat()
        out.append({"name": f.name, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def write_json(path: Path, doc: dict[str, Any]) -> None:
    from canora.io.files import atomic_write_text

    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def read_json_or_none(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is absent or unreadable (then the step is done again)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def check_recordings(files: list[Path], sample_rate: int, hop: int, work: Path | None = None) -> RecordingReport:
    """Read every file (mono at ``sample_rate``) and report the problems a voice would inherit; with ``work``, the
    report is kept in ``work/check.json`` and reused while the recordings are the same."""
    from canora.dsp.artifacts import audible_frames
    from canora.dsp.pitch import extract_f0
    from canora.io.audio import audio_info, load_audio

    sig = signature(files)
    if work is not None:
        kept = read_json_or_none(work / "check.json")
        if kept is not None and kept.get("recordings") == sig:
            try:
                return RecordingReport.from_dict(kept["report"])
            except (KeyError, TypeError, ValueError):
                pass
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
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
        write_json(work / "check.json", {"recordings": sig, "report": rep.to_dict()})
    return rep


def _staging_dir(parent: Path, name: str) -> Path:
    """A new temporary directory in ``parent``, named so that :func:`canora.io.files.remove_stale_temps` removes it
    once its process is gone."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{name[:100]}.canora-{os.getpid()}-", suffix=".tmp", dir=parent))


def _cut(f: Path, root: Path, sample_rate: int, hop: int) -> dict[str, Any]:
    """``f`` cut into pieces in ``root/<stem>/`` (written whole, then renamed); its ``pieces.json``."""
    from canora.dsp.slicing import plan_slices
    from canora.io.audio import load_audio, save_wav

    done = root / f.stem
    sig = signature([f])[0]
    kept = read_json_or_none(done / "pieces.json")
    if kept is not None and kept.get("recording") == sig:
        return kept
    shutil.rmtree(done, ignore_errors=True)  # another version of the recording: cut it again
    tmp = _staging_dir(root, f.stem)
    try:
        wav = load_audio(f, sample_rate)
        pieces = []
        for i, s in enumerate(plan_slices(wav, sample_rate, hop=hop, max_seconds=PIECE_SECONDS, overlap=0)):
            if not s.silent and s.end - s.start >= sample_rate:
                name = f"{f.stem}_{i:03d}.wav"
                save_wav(tmp / name, wav[s.start: s.end], sample_rate, subtype="FLOAT")
                pieces.append({"file": name, "samples": int(s.end - s.start)})
        doc = {"recording": sig, "pieces": pieces}
        write_json(tmp / "pieces.json", doc)
        os.replace(tmp, done)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return doc


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def slice_recordings(files: list[Path], name: str, work: Path, sample_rate: int, hop: int,
                     holdout_share: float = 0.1) -> tuple[Path, list[Path]]:
    """Cut the recordings at silences into pieces of at most 30 s and split them: ``work/split/data/<name>/`` for
    training and the last ``holdout_share`` of the audio (at least one piece) in ``work/split/holdout/``; returns
    (training folder, held-out pieces). Resumable at every step (see the module doc)."""
    from canora.io.files import remove_stale_temps

    split = work / "split"
    remove_stale_temps(work)
    kept = read_json_or_none(split / "split.json")
    if kept is not None:
        if kept.get("recordings") != signature(files):
            raise CanoraError(f"{work}: its pieces were cut from other recordings ({len(kept.get('recordings', []))} "
                              f"file(s) then, {len(files)} now, or changed since); use another --work, or delete "
                              "that folder to start again")
        return split / "data" / name, [split / "holdout" / p for p in kept["held_out"]]
    shutil.rmtree(split, ignore_errors=True)  # a split without its split.json was not finished
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise CanoraError(f"{f}: same name as {stems[f.stem]}; rename one (their pieces would collide)")
        stems[f.stem] = f
    root = work / "pieces"
    remove_stale_temps(root)
    pieces: list[tuple[Path, int]] = []
    for i, f in enumerate(files, 1):
        log.info("cutting %s at silences (%d/%d)", f.name, i, len(files))
        doc = _cut(f, root, sample_rate, hop)
        pieces += [(root / f.stem / p["file"], int(p["samples"])) for p in doc["pieces"]]
    if len(pieces) < 2:
        raise CanoraError(f"the recordings give {len(pieces)} sung piece(s) of 1 s or more; need at least 2 (one to "
                          "hold out for scoring the voice)")
    total = sum(n for _, n in pieces)
    held, acc = [], 0
    for p, n in reversed(pieces):
        if held and acc >= holdout_share * total:
            break
        held.append(p)
        acc += n
    train = [p for p, _ in pieces[: len(pieces) - len(held)]]
    tmp = _staging_dir(work, "split")
    try:
        (tmp / "data" / name).mkdir(parents=True)
        (tmp / "holdout").mkdir()
        for p in train:
            _link_or_copy(p, tmp / "data" / name / p.name)
        for p in held:
            _link_or_copy(p, tmp / "holdout" / p.name)
        write_json(tmp / "split.json", {"recordings": signature(files), "train": [p.name for p in train],
                                         "held_out": sorted(p.name for p in held)})
        os.replace(tmp, split)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("%d piece(s) to train on, %d held out to score the voice", len(train), len(held))
    return split / "data" / name, [split / "holdout" / p.name for p in sorted(held)]
