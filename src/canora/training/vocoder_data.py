"""Vocoder training data: (log-mel, audio) pairs held in memory, cropped into matching segments.

Three sources of mels for the same recordings:

* computed from the wavs (``mels=None``), cached on disk under a key of every :class:`MelSpec` field, the
  file's resolved path, mtime and size, and the peak-normalisation flag;
* precomputed ``<stem>.npy`` (n_mels, T) beside nothing but their ``<stem>.wav`` (official fine-tuning):
  every frame count is checked against ``spec.num_frames(samples)`` before training;
* produced by a :class:`RefinedMelSource` (the refiner in reconstruction mode, target -> target), written
  once to a directory and then paired like precomputed mels.

Shapes: mel (n_mels, frames) float32; audio (frames * hop + r,) float32 at ``spec.sample_rate`` with
r < hop. A crop of ``S`` frames starting at frame f pairs ``mel[:, f:f+S]`` with ``audio[f*hop:(f+S)*hop]``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from canora.dsp.mel import PEAK_NORMALIZE, MelSpec, wav_to_mel
from canora.errors import AudioError, CanoraError, MelError
from canora.io.audio import AUDIO_EXTENSIONS, read_audio, resample
from canora.io.files import atomic_save_npy, atomic_write_text
from canora.io.melfiles import load_mel

log = logging.getLogger(__name__)



@dataclass
class Item:
    """One recording: ``mel`` (n_mels, F) float32 and ``audio`` (>= F * hop,) float32."""

    name: str
    mel: np.ndarray
    audio: np.ndarray


@dataclass
class LoadReport:
    """What happened while loading: resampled files (by original rate), padded and unreadable files."""

    resampled: Counter = field(default_factory=Counter)
    padded: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def log(self, spec: MelSpec, what: str, segment_frames: int) -> None:
        for sr, n in sorted(self.resampled.items()):
            log.info("%s: resampled %d file(s) from %d Hz to %d Hz", what, n, sr, spec.sample_rate)
        if self.padded:
            log.info("%s: %d file(s) shorter than a segment (%d frames), padded with silence / the log floor: %s",
                     what, len(self.padded), segment_frames, ", ".join(self.padded[:10])
                     + (" ..." if len(self.padded) > 10 else ""))
        for name, why in self.unreadable:
            log.warning("%s: skipped %s (%s)", what, name, why)
        if self.unreadable:
            log.warning("%s: %d unreadable file(s) skipped", what, len(self.unreadable))


# ---------------------------------------------------------------------- file lists
def read_filelist(path: Path, wav_dir: Path) -> list[Path]:
    """A HiFi-GAN filelist (``name|...`` per line, name with or without extension) -> audio paths in ``wav_dir``.

    Every name that matches no file is listed in one :class:`CanoraError`.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CanoraError(f"{path}: filelist not found") from None
    except UnicodeDecodeError:
        raise CanoraError(f"{path}: not a text filelist (one 'name|...' per line)") from None
    files, missing = [], []
    for line in lines:
        name = line.split("|", 1)[0].strip()
        if not name:
            continue
        cands = [wav_dir / name] + [wav_dir / f"{name}{ext}" for ext in AUDIO_EXTENSIONS]
        hit = next((c for c in cands if c.is_file() and c.suffix.lower() in AUDIO_EXTENSIONS), None)
        if hit is None:
            missing.append(name)
        else:
            files.append(hit)
    if missing:
        raise CanoraError(
            f"{path}: {len(missing)} name(s) have no audio file in {wav_dir}: {', '.join(missing[:20])}"
            + (" ..." if len(missing) > 20 else "") + "; fix the filelist or --wavs"
        )
    if not files:
        raise CanoraError(f"{path}: the filelist names no files")
    return files


def _read(path: Path, spec: MelSpec, report: LoadReport, peak_normalize: bool) -> np.ndarray:
    wav, sr = read_audio(path)
    if sr != spec.sample_rate:
        report.resampled[sr] += 1
        wav = resample(wav, sr, spec.sample_rate)
    if peak_normalize:
        peak = float(np.abs(wav).max())
        if peak > 0:
            wav = wav / peak * PEAK_NORMALIZE
    return np.ascontiguousarray(wav, dtype=np.float32)


def cache_key(path: Path, spec: MelSpec, peak_normalize: bool) -> str:
    """Hash of everything a cached mel depends on: every MelSpec field, the file's path, mtime and size."""
    st = path.stat()
    doc = {"spec": spec.to_dict(), "path": str(path.resolve()), "mtime_ns": st.st_mtime_ns, "size": st.st_size,
           "peak_normalize": peak_normalize, "version": 1}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


def _pad(item: Item, frames: int, spec: MelSpec) -> bool:
    """Pad a short item in place to ``frames`` frames: audio with zeros, mel with the log floor."""
    if item.mel.shape[1] >= frames:
        return False
    n = frames - item.mel.shape[1]
    item.mel = np.pad(item.mel, ((0, 0), (0, n)), constant_values=spec.log_floor)
    item.audio = np.pad(item.audio, (0, max(0, frames * spec.hop_length - len(item.audio))))
    return True


def load_wav_items(
    files: Sequence[Path],
    spec: MelSpec,
    segment_frames: int,
    *,
    peak_normalize: bool = True,
    cache_dir: Path | None = None,
    report: LoadReport | None = None,
    progress: bool = False,
) -> list[Item]:
    """Recordings with their mel computed from the audio (cached in ``cache_dir`` when given)."""
    from tqdm import tqdm

    report = report if report is not None else LoadReport()
    items = []
    for path in tqdm(files, desc="audio+mel", unit="file", disable=not progress):
        try:
            wav = _read(path, spec, report, peak_normalize)
        except AudioError as e:
            report.unreadable.append((path.name, str(e)))
            continue
        if len(wav) < spec.n_fft:
            wav = np.pad(wav, (0, spec.n_fft - len(wav)))
        mel = None
        cached = cache_dir / f"{path.stem}-{cache_key(path, spec, peak_normalize)}.npy" if cache_dir else None
        if cached is not None and cached.is_file():
            try:
                mel = np.load(cached, allow_pickle=False)
            except (ValueError, OSError, EOFError):
                mel = None
        if mel is None or mel.shape != (spec.n_mels, spec.num_frames(len(wav))):
            mel = wav_to_mel(wav, spec)
            if cached is not None:
                atomic_save_npy(cached, mel)
        item = Item(path.stem, mel, wav)
        if _pad(item, segment_frames, spec):
            report.padded.append(path.name)
        items.append(item)
    return items


def load_mel_items(
    files: Sequence[Path],
    mels_dir: Path,
    spec: MelSpec,
    segment_frames: int,
    *,
    report: LoadReport | None = None,
    progress: bool = False,
) -> list[Item]:
    """Recordings paired with precomputed ``mels_dir/<stem>.npy`` (n_mels, T) mels (no peak normalisation).

    Every wav without a mel, every unreadable or invalid mel and every frame-count mismatch (mel frames vs
    ``spec.num_frames(samples)``) is collected and raised as one :class:`MelError` naming each file.
    """
    from tqdm import tqdm

    report = report if report is not None else LoadReport()
    items, problems = [], []
    for path in tqdm(files, desc="audio+mel", unit="file", disable=not progress):
        mel_path = mels_dir / f"{path.stem}.npy"
        if not mel_path.is_file():
            problems.append(f"{path.name}: no {mel_path.name} in {mels_dir}")
            continue
        try:
            wav = _read(path, spec, report, peak_normalize=False)
        except AudioError as e:
            report.unreadable.append((path.name, str(e)))
            continue
        try:
            mel = load_mel(mel_path, spec)
        except MelError as e:
            problems.append(str(e))
            continue
        expected = spec.num_frames(len(wav))
        if mel.shape[1] != expected:
            problems.append(
                f"{mel_path.name}: {mel.shape[1]} frames but {path.name} has {len(wav)} samples at "
                f"{spec.sample_rate} Hz = {expected} frames (hop {spec.hop_length})"
            )
            continue
        item = Item(path.stem, mel, wav)
        if _pad(item, segment_frames, spec):
            report.padded.append(path.name)
        items.append(item)
    if problems:
        raise MelError(
            f"{len(problems)} mel/audio pair(s) do not match: " + "; ".join(problems)
            + f"; re-extract the mels from these wavs with the training MelSpec ({spec.describe()})"
        )
    return items


def check_mel_dir(mels_dir: Path, stems: Sequence[str], spec: MelSpec, singer: str | None) -> None:
    """Warn when precomputed mels come from another singer or do not cover the same recordings.

    Reads ``mels_dir/mel_spec.json`` (must equal ``spec``), ``mels_dir/meta.json`` and ``<stem>.json``
    sidecars (``"singer"``: the singer the mels were refined toward / made from).
    """
    spec_file = mels_dir / "mel_spec.json"
    if spec_file.is_file():
        spec.require_same(MelSpec.from_json(spec_file.read_text()), f"{mels_dir} (described by {spec_file.name})",
                          "re-extract the mels with the --config MelSpec")
    mel_singers: dict[str, str] = {}
    meta = _read_json(mels_dir / "meta.json")
    for stem in stems:
        side = _read_json(mels_dir / f"{stem}.json")
        s = side.get("singer", meta.get("singer"))
        if s is not None:
            mel_singers[stem] = str(s)
    others = sorted({s for s in mel_singers.values() if singer is not None and s != singer})
    if others:
        log.warning(
            "%s: mels of %d file(s) come from singer(s) %s but the audio is singer %r: the vocoder will learn "
            "to map those mels to this singer's audio (the naive recipe undoes the refinement); fine-tune on "
            "the target singer's own reconstructed mels instead (--refiner)",
            mels_dir, sum(s != singer for s in mel_singers.values()), ", ".join(map(repr, others)), singer,
        )
    elif mel_singers and singer is None:
        log.info("%s: mels made for singer(s) %s; pass --singer to check they match the audio",
                 mels_dir, ", ".join(sorted(set(mel_singers.values()))))
    extra = sorted({p.stem for p in mels_dir.glob("*.npy")} - set(stems))
    if extra:
        log.warning("%s: %d mel(s) have no matching audio file and are not used (stems do not match): %s",
                    mels_dir, len(extra), ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else ""))


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("%s: not valid JSON; ignored", path)
        return {}
    return doc if isinstance(doc, dict) else {}


# ---------------------------------------------------------------------- refined mels (the sound recipe)
class RefinedMelSource(Protocol):
    """Turns a singer's own recording into the mel the refiner produces for it (target -> target).

    ``__call__(wav (T,) float32, sr) -> mel (n_mels, spec.num_frames(T at spec.sample_rate))`` in ``spec``.
    ``identity`` names everything the output depends on (model hash, singer, steps, ...), for caching.
    """

    spec: MelSpec
    singer: str | None
    identity: str

    def __call__(self, wav: np.ndarray, sr: int) -> np.ndarray: ...


@dataclass
class RefinerReconstruction:
    """:class:`RefinedMelSource` backed by a refiner export (``Refiner.reconstruct``)."""

    path: Path
    singer: str | None = None
    strength: float = 0.5
    steps: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        from canora.io.checkpoint import read_export_meta
        from canora.refiner.api import Refiner

        self.refiner = Refiner.from_pretrained(self.path)
        self.spec = self.refiner.spec
        self.singer = self.refiner.singers[self.refiner.singer_index(self.singer)]
        sha = read_export_meta(self.path).get("sha256", "")
        self.identity = json.dumps({"refiner": sha, "singer": self.singer, "strength": self.strength,
                                    "steps": self.steps, "seed": self.seed}, sort_keys=True)

    def __call__(self, wav: np.ndarray, sr: int) -> np.ndarray:
        return self.refiner.reconstruct(wav, sr, self.singer, strength=self.strength, steps=self.steps,
                                        seed=self.seed)


def prepare_refined_dir(source: RefinedMelSource, out_dir: Path, spec: MelSpec) -> Path:
    """Make ``out_dir`` hold mels of ``source`` only: when its ``meta.json`` names another ``source.identity``,
    delete the old mels; write ``meta.json`` (singer, identity) and ``mel_spec.json``. Returns ``out_dir``."""
    spec.require_same(source.spec, "the refiner's MelSpec vs the vocoder --config",
                      "train the vocoder with the refiner's MelSpec (its model.json holds it)")
    out_dir.mkdir(parents=True, exist_ok=True)
    meta_path = out_dir / "meta.json"
    if _read_json(meta_path).get("identity") != source.identity:
        for old in out_dir.glob("*.npy"):
            old.unlink()
        meta = {"singer": source.singer, "identity": source.identity, "recipe": "reconstruction (target -> target)"}
        atomic_write_text(out_dir / "mel_spec.json", spec.to_json() + "\n")
        atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    return out_dir


def make_refined_mels(
    files: Sequence[Path],
    source: RefinedMelSource,
    out_dir: Path,
    *,
    progress: bool = False,
    on_error: Callable[[Path, str], None] | None = None,
) -> Path:
    """Write ``out_dir/<stem>.npy`` = ``source(wav)`` for each recording not done yet (call
    :func:`prepare_refined_dir` first). Under DDP each rank passes its own share of ``files``."""
    from tqdm import tqdm

    todo = [f for f in files if not (out_dir / f"{f.stem}.npy").is_file()]
    for path in tqdm(todo, desc="refine (reconstruction)", unit="file", disable=not progress):
        try:
            wav, sr = read_audio(path)
            mel = source(wav, sr)
        except CanoraError as e:
            if on_error is not None:
                on_error(path, str(e))
            continue
        atomic_save_npy(out_dir / f"{path.stem}.npy", np.ascontiguousarray(mel, dtype=np.float32))
    return out_dir


def reconstruct_files(
    files: Sequence[Path], source: RefinedMelSource, out_dir: Path, spec: MelSpec, ctx: Any, *, fallback: str,
) -> set[str]:
    """Every file's refined mel in ``out_dir`` (:func:`prepare_refined_dir` on rank 0, then each rank of
    ``ctx`` (a :class:`canora.training.loop.Context`) its share of :func:`make_refined_mels`); a failure is
    logged with ``fallback`` (what happens to that file instead). Returns the stems that have a mel."""
    if ctx.is_main:
        prepare_refined_dir(source, out_dir, spec)
    ctx.barrier()
    failed: list[tuple[str, str]] = []
    make_refined_mels(list(files)[ctx.rank::ctx.world], source, out_dir, progress=ctx.progress,
                      on_error=lambda p, why: failed.append((p.name, why)))
    for name, why in failed:
        log.warning("refiner reconstruction failed for %s (%s); %s", name, why, fallback)
    ctx.barrier()
    return {p.stem for p in out_dir.glob("*.npy")}


# ---------------------------------------------------------------------- crops
class SegmentDataset:
    """Random matching (mel, audio) crops of ``segment_frames`` frames from in-memory :class:`Item` s."""

    def __init__(self, items: list[Item], spec: MelSpec, segment_frames: int) -> None:
        if not items:
            raise CanoraError("no usable training files left (all unreadable or missing)")
        self.items = items
        self.spec = spec
        self.frames = segment_frames
        self.hop = spec.hop_length

    def __len__(self) -> int:
        return len(self.items)

    def crop(self, index: int, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """-> (mel (n_mels, S), audio (S * hop,)) at a random frame offset."""
        it = self.items[index]
        top = it.mel.shape[1] - self.frames
        start = int(torch.randint(0, top + 1, (1,), generator=generator)) if top > 0 else 0
        mel = it.mel[:, start:start + self.frames]
        audio = it.audio[start * self.hop:(start + self.frames) * self.hop]
        return mel, audio

    def batch(self, indices: Sequence[int], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (mel (B, n_mels, S), audio (B, 1, S * hop))."""
        crops = [self.crop(i, generator) for i in indices]
        mel = torch.from_numpy(np.stack([c[0] for c in crops]))
        audio = torch.from_numpy(np.stack([c[1] for c in crops])).unsqueeze(1)
        return mel, audio


