"""Training of the Diffusion Mel Refiner: manifest, cached features, AdamW + EMA, validation, checkpoints.

Layout of an output directory ``OUT``::

    OUT/manifest.json           train / validation files per singer (fixed at the first run; reused on resume)
    OUT/train_config.json       the RefinerTrainConfig of the run
    OUT/cache/                  cached features (keyed on file bytes + every extraction parameter)
    OUT/ckpt_00001000           resumable training state (model, EMA, optimizer, scheduler, step, RNG), atomic
    OUT/exports/step_00001000/  slim exports of the EMA weights (Refiner.from_pretrained reads them)
    OUT/export -> exports/...   symlink to the newest export, switched atomically
    OUT/logs/                   TensorBoard events; OUT/train_log.jsonl: the same scalars as JSON lines

Determinism: the crops, timesteps and noise of step ``s`` on rank ``r`` come from a generator seeded with
``(seed, r, s)``, so a resumed run draws exactly the batches an uninterrupted one would, and a run
resumed from step ``s`` ends bit-identical to one that never stopped.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) each process trains on its own batches of
``batch_size`` crops (global batch = batch_size x world size) with DDP over gloo; rank 0 extracts the
features first (the others read its cache), logs, validates and saves.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from canora.conditioning import FeatureParams, RefinerFeatures, load_features
from canora.dsp.mel import MelSpec
from canora.errors import CanoraError, CheckpointError
from canora.io.audio import AUDIO_EXTENSIONS
from canora.io.checkpoint import load_torch_file, newest, prune, save_torch_file
from canora.io.files import atomic_write_text
from canora.refiner.api import Refiner
from canora.refiner.diffusion import NoiseSchedule, q_sample, sample_train_timesteps, training_target
from canora.refiner.model import RefinerConfig, RefinerModel
from canora.refiner.normalize import MelNormalizer
from canora.refiner.samplers import get_sampler, sample

log = logging.getLogger(__name__)

CKPT_PREFIX = "ckpt_"
TRAIN_STATE_VERSION = 1
# Fields that may change when a run is resumed (they do not change what is learned).
RESUMABLE_CHANGES = {"steps", "log_every", "val_every", "ckpt_every", "export_every_minutes", "keep", "max_minutes"}


@dataclass(frozen=True)
class RefinerTrainConfig:
    """Everything that defines a refiner training run (saved with every checkpoint)."""

    model: str = "default"  # RefinerConfig preset: tiny | small | default
    steps: int = 100_000
    batch_size: int = 16
    crop_frames: int = 128
    lr: float = 4e-4
    lr_warmup: int = 500
    lr_half_life: int = 40_000  # exponential decay after warm-up: lr halves every this many steps
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    schedule: str = "linear"
    timesteps: int = 1000
    prediction_type: str = "v"
    loss_weighting: str = "min_snr"  # min_snr (Hang et al. 2023) | none (plain MSE on the prediction target)
    min_snr_gamma: float = 5.0
    norm: str = "fixed"
    mel_spec: dict[str, Any] = field(default_factory=lambda: MelSpec().to_dict())
    features: dict[str, Any] = field(default_factory=lambda: FeatureParams().to_dict())
    val_count: int = 0  # held-out files per singer; 0 = 10 % (at least 1, none for one-file singers)
    val_every: int = 1000
    val_frames: int = 600  # validate on the first this many frames of each held-out file
    val_steps: int = 10
    val_strength: float = 0.5
    val_sampler: str = "dpmpp"
    log_every: int = 50
    ckpt_every: int = 1000
    export_every_minutes: float = 10.0
    keep: int = 3
    max_minutes: float = 0.0  # stop (with a checkpoint and an export) after this long; 0 = no limit
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.crop_frames < 8 or self.steps < 0:
            raise CanoraError("batch_size >= 1, crop_frames >= 8 and steps >= 0 are required")
        if self.loss_weighting not in ("min_snr", "none"):
            raise CanoraError(f"loss_weighting={self.loss_weighting!r} must be 'min_snr' or 'none'")
        if not 0.0 <= self.ema_decay < 1.0:
            raise CanoraError(f"ema_decay={self.ema_decay} must be in [0, 1)")
        RefinerConfig.preset(self.model)  # validates the name

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RefinerTrainConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise CheckpointError(f"training config has unknown keys {sorted(unknown)}; written by a newer canora?")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(float(b) for b in d["betas"])
        return cls(**d)

    @property
    def spec(self) -> MelSpec:
        return MelSpec.from_dict(self.mel_spec)

    @property
    def feature_params(self) -> FeatureParams:
        return FeatureParams.from_dict(self.features)


# ---------------------------------------------------------------------- manifest
@dataclass(frozen=True)
class Manifest:
    """Singers (one per data folder, named after it) and their train / validation files."""

    singers: tuple[str, ...]
    train: tuple[tuple[str, int], ...]  # (path, singer index)
    val: tuple[tuple[str, int], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"singers": list(self.singers), "train": [list(x) for x in self.train],
                "val": [list(x) for x in self.val]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        return cls(tuple(d["singers"]), tuple((str(p), int(i)) for p, i in d["train"]),
                   tuple((str(p), int(i)) for p, i in d["val"]))


def build_manifest(
    data_dirs: Sequence[str | Path], val_count: int = 0, singers: Sequence[str] | None = None
) -> Manifest:
    """One singer per directory (named after it unless ``singers`` names them); the last ``val_count``
    files of each (sorted by name; 0 = 10 %, at least 1 when a singer has 2+ files) are held out."""
    if not data_dirs:
        raise CanoraError("no training data: pass --data DIR (one folder of recordings per singer)")
    if singers is not None and len(singers) != len(data_dirs):
        raise CanoraError(f"{len(singers)} singer names for {len(data_dirs)} data folders; give one name per folder")
    names: list[str] = []
    train: list[tuple[str, int]] = []
    val: list[tuple[str, int]] = []
    for i, d in enumerate(data_dirs):
        d = Path(d)
        if not d.is_dir():
            raise CanoraError(f"{d}: not a directory; --data takes folders of recordings, one per singer")
        name = singers[i] if singers is not None else d.resolve().name
        if name in names:
            raise CanoraError(f"{d}: singer name {name!r} used twice; rename a folder or pass --singers")
        files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        if not files:
            raise CanoraError(f"{d}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
        n_val = val_count if val_count > 0 else (max(1, round(0.1 * len(files))) if len(files) > 1 else 0)
        if n_val >= len(files):
            raise CanoraError(
                f"{d}: {len(files)} files leave none for training with {n_val} held out; lower --val-count"
            )
        names.append(name)
        train += [(str(p.resolve()), i) for p in files[: len(files) - n_val]]
        val += [(str(p.resolve()), i) for p in files[len(files) - n_val:]]
    return Manifest(tuple(names), tuple(train), tuple(val))


# ---------------------------------------------------------------------- batches
@dataclass
class Batch:
    """Stacked crops: mel (B, n_mels, N), f0/voiced/loudness (B, N), content (B, D, N), singer (B,), mask (B, 1, N)."""

    mel: Tensor
    f0: Tensor
    voiced: Tensor
    loudness: Tensor
    content: Tensor
    singer: Tensor
    mask: Tensor

    def cond(self) -> dict[str, Tensor]:
        return {"f0": self.f0, "voiced": self.voiced, "loudness": self.loudness, "content": self.content,
                "singer": self.singer}


def _pad_to(f: RefinerFeatures, n: int, floor: float) -> tuple[RefinerFeatures, int]:
    """Pad a crop shorter than ``n`` frames (mel with the floor, others with edge values); -> (crop, real frames)."""
    real = f.frames
    if real >= n:
        return f, real
    p = n - real
    return RefinerFeatures(
        np.pad(f.mel, ((0, 0), (0, p)), constant_values=floor), np.pad(f.f0, (0, p), mode="edge"),
        np.pad(f.voiced, (0, p)), np.pad(f.loudness, (0, p), mode="edge"),
        np.pad(f.content, ((0, 0), (0, p)), mode="edge"),
    ), real


def make_batch(items: Sequence[tuple[RefinerFeatures, int]], n: int, floor: float) -> Batch:
    """Stack ``(features, singer)`` crops (each at most ``n`` frames) into a :class:`Batch`."""
    padded = [(_pad_to(f, n, floor), s) for f, s in items]
    mask = np.zeros((len(items), 1, n), np.float32)
    for i, ((_, real), _) in enumerate(padded):
        mask[i, 0, :real] = 1.0

    def stack(key: str) -> Tensor:
        return torch.from_numpy(np.stack([getattr(f, key) for (f, _), _ in padded]).astype(np.float32))

    return Batch(stack("mel"), stack("f0"), stack("voiced"), stack("loudness"), stack("content"),
                 torch.tensor([s for _, s in padded], dtype=torch.long), torch.from_numpy(mask))


def random_crops(
    data: Sequence[tuple[RefinerFeatures, int]], batch: int, n: int, gen: torch.Generator
) -> list[tuple[RefinerFeatures, int]]:
    """``batch`` random crops of ``n`` frames; files are drawn with probability proportional to their length."""
    lengths = torch.tensor([f.frames for f, _ in data], dtype=torch.float64)
    picks = torch.multinomial(lengths / lengths.sum(), batch, replacement=True, generator=gen).tolist()
    out = []
    for i in picks:
        f, s = data[i]
        start = int(torch.randint(0, max(1, f.frames - n + 1), (1,), generator=gen))
        out.append((f.crop(start, n), s))
    return out


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The generator of step ``step`` on rank ``rank``: a function of (seed, rank, step) only."""
    return torch.Generator().manual_seed((seed * 1_000_003 + rank * 7_919 + step) % (2**63 - 1))


# ---------------------------------------------------------------------- objective, EMA, LR schedule
def loss_weights(schedule: NoiseSchedule, t: Tensor, prediction_type: str, weighting: str, gamma: float) -> Tensor:
    """Per-example weights (B,) of the squared error on the prediction target.

    ``"min_snr"`` (Min-SNR-gamma, Hang et al. 2023): the implied x0 error is weighted by ``min(SNR, gamma)``,
    i.e. ``min(SNR, gamma) / (SNR + 1)`` on v and ``min(SNR, gamma) / SNR`` on eps. The plain v loss weights
    x0 errors by ``SNR + 1``, so the nearly-clean steps (SNR in the hundreds), whose error hardly moves
    what the samplers produce, dominate it and slow learning everywhere else. ``"none"``: weight 1.
    """
    if weighting == "none":
        return torch.ones(t.shape, dtype=torch.float32)
    acp = schedule.alphas_cumprod[t.cpu()]
    snr = acp / (1 - acp)
    w = snr.clamp(max=gamma) / (snr + 1 if prediction_type == "v" else snr)
    return w.float()


def diffusion_loss(
    model: Any, schedule: NoiseSchedule, x0: Tensor, t: Tensor, noise: Tensor, cfg: RefinerTrainConfig,
    mask: Tensor | None = None, **cond: Tensor,
) -> Tensor:
    """Weighted MSE between ``model(x_t, t, **cond)`` and the target (see :func:`loss_weights`); x0, noise
    (B, n_mels, T), t (B,), mask (B, 1, T) with 1 on real frames. Returns a scalar."""
    x_t = q_sample(schedule, x0, noise, t)
    err = (model(x_t, t, **cond) - training_target(schedule, x0, noise, t, cfg.prediction_type)) ** 2
    err = err * loss_weights(schedule, t, cfg.prediction_type, cfg.loss_weighting, cfg.min_snr_gamma)[:, None, None]
    if mask is None:
        return err.mean()
    mask = mask.to(err.dtype).expand_as(err)
    return (err * mask).sum() / mask.sum().clamp(min=1.0)



@torch.no_grad()
def ema_update(ema: RefinerModel, model: RefinerModel, decay: float, step: int) -> None:
    """``ema = d * ema + (1 - d) * model`` with ``d = min(decay, (1 + step) / (10 + step))`` (warm-up)."""
    d = min(decay, (1 + step) / (10 + step))
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1.0 - d)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def lr_factor(step: int, warmup: int, half_life: int) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then ``0.5 ** ((step - warmup) / half_life)``."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 ** ((step - warmup) / half_life) if half_life > 0 else 1.0


# ---------------------------------------------------------------------- the trainer
class _Stop:
    """Set by SIGTERM / SIGINT: finish the current step, checkpoint, export, exit."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.requested = True


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


def _extract_all(
    manifest: Manifest, spec: MelSpec, params: FeatureParams, cache: Path, progress: bool
) -> tuple[list[tuple[RefinerFeatures, int]], list[tuple[RefinerFeatures, int]]]:
    from tqdm import tqdm

    out: dict[str, list[tuple[RefinerFeatures, int]]] = {"train": [], "val": []}
    items = [("train", p, s) for p, s in manifest.train] + [("val", p, s) for p, s in manifest.val]
    for part, path, singer in tqdm(items, desc="features", unit="file", disable=not progress):
        try:
            out[part].append((load_features(path, spec, params, cache), singer))
        except CanoraError as e:  # e.g. a file without voiced frames: skip it, say so
            log.warning("skipping %s", e)
    if not out["train"]:
        raise CanoraError("no usable training files (every file failed feature extraction)")
    return out["train"], out["val"]


class Trainer:
    """One training run in ``out_dir`` (resumes from the newest checkpoint there)."""

    def __init__(
        self,
        out_dir: str | Path,
        config: RefinerTrainConfig,
        data_dirs: Sequence[str | Path] = (),
        *,
        singers: Sequence[str] | None = None,
        vocoder: str | Path | None = None,
        cache_dir: str | Path | None = None,
        progress: bool = True,
    ) -> None:
        self.out = Path(out_dir)
        self.rank, self.world = _dist_info()
        self.progress = progress and self.rank == 0
        self.cache = Path(cache_dir) if cache_dir else self.out / "cache"
        self.vocoder_path = vocoder
        self.out.mkdir(parents=True, exist_ok=True)
        self.resume_from = newest(self.out, CKPT_PREFIX)
        saved = self._saved_config()
        if saved is not None:
            config = self._merge_resumed(saved, config)
        self.cfg = config
        mpath = self.out / "manifest.json"
        if mpath.is_file():
            self.manifest = Manifest.from_dict(json.loads(mpath.read_text()))
            if data_dirs and build_manifest(data_dirs, config.val_count, singers) != self.manifest:
                raise CanoraError(f"{mpath}: this run was started on other data; use a new --out or the same --data")
        else:
            self.manifest = build_manifest(data_dirs, config.val_count, singers)
            if self.rank == 0:
                atomic_write_text(mpath, json.dumps(self.manifest.to_dict(), indent=1) + "\n")
        if self.rank == 0:
            atomic_write_text(self.out / "train_config.json", json.dumps(config.to_dict(), indent=2) + "\n")

    def _saved_config(self) -> RefinerTrainConfig | None:
        if self.resume_from is None:
            return None
        state = load_torch_file(self.resume_from)
        if not isinstance(state, dict) or "train_config" not in state:
            raise CheckpointError(f"{self.resume_from}: not a canora refiner training checkpoint")
        return RefinerTrainConfig.from_dict(json.loads(state["train_config"]))

    def _merge_resumed(self, saved: RefinerTrainConfig, given: RefinerTrainConfig) -> RefinerTrainConfig:
        changed = {k: v for k, v in asdict(given).items() if k in RESUMABLE_CHANGES and v != getattr(saved, k)}
        ignored = [k for k, v in asdict(given).items() if k not in RESUMABLE_CHANGES and v != getattr(saved, k)]
        if ignored and self.rank == 0:
            log.warning("resuming %s: keeping its saved %s (only %s may change on resume)",
                        self.out, ", ".join(ignored), ", ".join(sorted(RESUMABLE_CHANGES)))
        return replace(saved, **changed)

    # -------------------------------------------------------------- setup
    def _setup(self) -> None:
        import torch.distributed as dist

        cfg = self.cfg
        spec, params = cfg.spec, cfg.feature_params
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("gloo")
        if self.rank == 0:
            self.train_data, self.val_data = _extract_all(self.manifest, spec, params, self.cache, self.progress)
        if self.world > 1:
            dist.barrier()
            if self.rank != 0:
                self.train_data, self.val_data = _extract_all(self.manifest, spec, params, self.cache, False)
        content_dim = self.train_data[0][0].content.shape[0]
        mcfg = RefinerConfig.preset(cfg.model, n_mels=spec.n_mels, content_dim=content_dim,
                                    n_singers=len(self.manifest.singers))
        torch.manual_seed(cfg.seed)
        self.model = RefinerModel(mcfg)
        if content_dim:
            allc = np.concatenate([f.content for f, _ in self.train_data], axis=1)
            self.model.set_content_stats(torch.from_numpy(allc.mean(1)), torch.from_numpy(allc.std(1)))
        self.ema = RefinerModel(mcfg)
        self.ema.load_state_dict(self.model.state_dict())
        self.ema.requires_grad_(False)
        self.normalizer = (MelNormalizer.fixed(spec) if cfg.norm == "fixed"
                           else MelNormalizer.per_bin((f.mel for f, _ in self.train_data), spec))
        self.schedule = NoiseSchedule(cfg.schedule, cfg.timesteps)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                     weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, cfg.lr_warmup, cfg.lr_half_life)
        )
        self.step = 0
        self.singer_stats = self._singer_f0_stats()
        if self.resume_from is not None:
            self._load(self.resume_from)
        self.ddp: torch.nn.Module = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(self.model)

    def _singer_f0_stats(self) -> dict[str, dict[str, Any]]:
        from canora.dsp.pitch import F0Stats

        stats = {}
        for i, name in enumerate(self.manifest.singers):
            f0s = [f.f0[f.voiced] for f, s in self.train_data if s == i]
            if f0s:
                stats[name] = F0Stats.from_f0(np.concatenate(f0s)).to_dict()
        return stats

    # -------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        return {
            "version": TRAIN_STATE_VERSION,
            "train_config": json.dumps(self.cfg.to_dict()),
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "normalizer": json.dumps(self.normalizer.to_dict()),
            "rng_torch": torch.get_rng_state(),
        }

    def _load(self, path: Path) -> None:
        st = load_torch_file(path)
        if st.get("version", 0) > TRAIN_STATE_VERSION:
            raise CheckpointError(f"{path}: training state version {st.get('version')} is newer than this canora")
        try:
            self.model.load_state_dict(st["model"], strict=True)
            self.ema.load_state_dict(st["ema"], strict=True)
            self.opt.load_state_dict(st["optimizer"])
            self.sched.load_state_dict(st["scheduler"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{path}: does not fit this run's model ({str(e).splitlines()[0]})") from None
        self.normalizer = MelNormalizer.from_dict(json.loads(st["normalizer"]))
        self.step = int(st["step"])
        torch.set_rng_state(st["rng_torch"])
        if self.rank == 0:
            log.info("resumed %s at step %d", path, self.step)

    def save_checkpoint(self) -> Path:
        path = self.out / f"{CKPT_PREFIX}{self.step:08d}"
        save_torch_file(path, self.state())
        prune(self.out, CKPT_PREFIX, self.cfg.keep)
        return path

    def refiner(self) -> Refiner:
        """The EMA weights as a :class:`Refiner` (a copy; training continues undisturbed)."""
        model = RefinerModel(self.ema.config)
        model.load_state_dict(self.ema.state_dict())
        info = {"trained_steps": self.step, "train_config": self.cfg.to_dict(),
                "train_files": len(self.manifest.train), "val_files": len(self.manifest.val)}
        return Refiner(model, self.cfg.spec, self.normalizer, self.schedule, prediction_type=self.cfg.prediction_type,
                       singers=list(self.manifest.singers), singer_f0_stats=self.singer_stats,
                       feature_params=self.cfg.feature_params, info=info, source=str(self.out))

    def save_export(self) -> Path:
        """Write ``exports/step_N`` and point the ``export`` symlink at it atomically; keep the newest two."""
        target = self.out / "exports" / f"step_{self.step:08d}"
        self.refiner().export(target)
        link, tmp = self.out / "export", self.out / ".export.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(Path("exports") / target.name)
        os.replace(tmp, link)
        import shutil

        for old in sorted((self.out / "exports").glob("step_*"))[:-2]:
            shutil.rmtree(old, ignore_errors=True)
        return target

    # -------------------------------------------------------------- steps
    def train_step(self) -> float:
        cfg = self.cfg
        gen = step_generator(cfg.seed, self.rank, self.step)
        b = make_batch(random_crops(self.train_data, cfg.batch_size, cfg.crop_frames, gen), cfg.crop_frames,
                       cfg.spec.log_floor)
        x0 = self.normalizer.normalize(b.mel)
        t = sample_train_timesteps(self.schedule, x0.shape[0], gen)
        noise = torch.randn(x0.shape, generator=gen)
        self.ddp.train()
        loss = diffusion_loss(self.ddp, self.schedule, x0, t, noise, cfg, b.mask, **b.cond())
        if not torch.isfinite(loss):
            raise CanoraError(f"training loss became {loss.item()} at step {self.step}; lower --lr and resume")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        self.step += 1
        ema_update(self.ema, self.model, cfg.ema_decay, self.step)
        return float(loss.detach())

    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        """EMA model on held-out files: diffusion loss at fixed (t, noise), and the mel L1 (log-mel) of a
        shallow reconstruction (``val_strength``, ``val_steps``) next to the L1 of its noised start."""
        cfg = self.cfg
        data = self.val_data or self.train_data[:1]
        gen = torch.Generator().manual_seed(1234)
        losses, l1, l1_noised = [], [], []
        self.ema.eval()
        for f, s in data:
            crop = f.crop(0, cfg.val_frames)
            b = make_batch([(crop, s)], crop.frames, cfg.spec.log_floor)
            x0 = self.normalizer.normalize(b.mel)
            for tv in (50, 250, 500, 750, 950):
                t = torch.full((1,), min(tv, self.schedule.num_train_timesteps), dtype=torch.long)
                noise = torch.randn(x0.shape, generator=gen)
                losses.append(float(diffusion_loss(self.ema, self.schedule, x0, t, noise, cfg, **b.cond())))
            cond = self.ema.encode(b.f0, b.voiced, b.loudness, b.content, b.singer)
            smp = get_sampler(cfg.val_sampler, self.schedule, cfg.prediction_type)
            sgen = torch.Generator().manual_seed(0)
            out = sample(lambda x, t, cond: self.ema.denoise(x, t, cond), smp, steps=cfg.val_steps,
                         strength=cfg.val_strength, source=x0, cond={"cond": cond}, generator=sgen)
            smp.set_timesteps(cfg.val_steps, cfg.val_strength)
            noised = smp.add_noise(x0, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)),
                                   smp.start_timestep)
            real = b.mel
            l1.append(float((self.normalizer.denormalize(out) - real).abs().mean()))
            l1_noised.append(float((self.normalizer.denormalize(noised) - real).abs().mean()))
        return {"val/loss": float(np.mean(losses)), "val/mel_l1": float(np.mean(l1)),
                "val/mel_l1_noised_input": float(np.mean(l1_noised))}

    def _audio_samples(self, writer: Any) -> None:
        if not self.vocoder_path or not self.val_data:
            return
        from canora.vocoder import Vocoder

        voc = Vocoder.from_pretrained(self.vocoder_path)
        if voc.spec != self.cfg.spec:
            log.warning("vocoder %s has another MelSpec than the refiner; no audio samples", self.vocoder_path)
            self.vocoder_path = None
            return
        f, s = self.val_data[0]
        crop = f.crop(0, self.cfg.val_frames)
        out = self.refiner().refine(crop.mel, crop.f0, crop.loudness, crop.content, s, voiced=crop.voiced,
                                    steps=self.cfg.val_steps, strength=self.cfg.val_strength)
        sr = self.cfg.spec.sample_rate
        writer.add_audio("val/reconstruction", torch.from_numpy(voc.vocode(out))[None], self.step, sr)
        if self.step <= self.cfg.val_every:
            writer.add_audio("val/ground_truth_vocoded", torch.from_numpy(voc.vocode(crop.mel))[None], self.step, sr)

    # -------------------------------------------------------------- the loop
    def run(self) -> Path | None:
        """Train until ``steps`` (or ``max_minutes``, or SIGTERM); returns the newest export (rank 0)."""
        from tqdm import tqdm

        self._setup()
        cfg = self.cfg
        writer = None
        if self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.out / "logs"), purge_step=self.step or None)
            log.info("refiner %s: %d parameters, %d singers (%s), %d train / %d val files, step %d -> %d",
                     cfg.model, self.model.num_parameters(), len(self.manifest.singers),
                     ", ".join(self.manifest.singers), len(self.train_data), len(self.val_data), self.step, cfg.steps)
        stop = _Stop()
        old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        t_start = last_export = time.monotonic()
        import sys

        bar = tqdm(total=cfg.steps, initial=self.step, desc="train-refiner", unit="step", disable=not self.progress,
                   mininterval=0.1 if sys.stderr.isatty() else 60.0)
        running: list[float] = []
        export_path = None
        try:
            while self.step < cfg.steps:
                loss = self.train_step()
                running.append(loss)
                bar.update(1)
                elapsed = time.monotonic() - t_start
                if self._should_stop(stop.requested or bool(cfg.max_minutes and elapsed >= 60 * cfg.max_minutes)):
                    log.info("stopping at step %d (%s)", self.step, "signal" if stop.requested else "max_minutes")
                    break
                if self.rank != 0:
                    continue
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    mean = float(np.mean(running))
                    running.clear()
                    self._log(writer, {"train/loss": mean, "train/lr": self.sched.get_last_lr()[0]})
                    bar.set_postfix(loss=f"{mean:.4f}")
                if cfg.val_every and self.step % cfg.val_every == 0:
                    self._log(writer, self.validate())
                    self._audio_samples(writer)
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                    self.save_checkpoint()
                if cfg.export_every_minutes and time.monotonic() - last_export >= 60 * cfg.export_every_minutes:
                    self.save_checkpoint()
                    export_path = self.save_export()
                    last_export = time.monotonic()
            if self.rank == 0:
                self.save_checkpoint()
                export_path = self.save_export()
        finally:
            bar.close()
            for s, h in old.items():
                signal.signal(s, h)
            if writer is not None:
                writer.close()
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
        return export_path

    def _should_stop(self, local: bool) -> bool:
        """True on every rank when any rank wants to stop (so DDP processes leave the loop together)."""
        if self.world == 1:
            return local
        import torch.distributed as dist

        flag = torch.tensor([1.0 if local else 0.0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def _log(self, writer: Any, scalars: dict[str, float]) -> None:
        for k, v in scalars.items():
            writer.add_scalar(k, v, self.step)
        rounded = {k: round(v, 6) for k, v in scalars.items()}
        line = json.dumps({"step": self.step, "time": round(time.time(), 1), **rounded})
        with open(self.out / "train_log.jsonl", "a") as f:
            f.write(line + "\n")


def train_refiner(
    data_dirs: Sequence[str | Path],
    out_dir: str | Path,
    config: RefinerTrainConfig | None = None,
    **kwargs: Any,
) -> Path | None:
    """Train (or resume) a refiner on ``data_dirs`` (one folder per singer) into ``out_dir``; returns the
    newest export directory. ``kwargs`` go to :class:`Trainer` (``singers``, ``vocoder``, ``cache_dir``)."""
    return Trainer(out_dir, config or RefinerTrainConfig(), data_dirs, **kwargs).run()


