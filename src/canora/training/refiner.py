"""Training task of the Diffusion Mel Refiner: manifest, cached features, AdamW + EMA, validation, exports.

Beside the loop's files (:mod:`canora.training.loop`), a refiner run directory holds::

    OUT/manifest.json       train / validation files per singer (fixed at the first run; reused on resume)
    OUT/train_config.json   the RefinerTrainConfig of the run
    OUT/cache/              cached features (keyed on file bytes + every extraction parameter)

Exports hold the EMA weights (``Refiner.from_pretrained`` reads them). The loss is
:func:`canora.refiner.diffusion.training_loss` with Min-SNR weights, the one the unit tests cover.
Audio previews during training take any callable mel -> audio (``preview``), so the refiner never imports a
vocoder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from canora.conditioning import FeatureParams, RefinerFeatures, load_features
from canora.config import Config
from canora.dsp.mel import MelSpec
from canora.errors import CanoraError, CheckpointError
from canora.io.audio import AUDIO_EXTENSIONS
from canora.io.files import atomic_write_text
from canora.refiner.api import Refiner
from canora.refiner.diffusion import NoiseSchedule, loss_weights, sample_train_timesteps, training_loss
from canora.refiner.model import RefinerConfig, RefinerModel
from canora.refiner.normalize import MelNormalizer
from canora.refiner.samplers import get_sampler, sample
from canora.training.loop import Context, Task
from canora.training.refiner_config import RefinerTrainConfig  # noqa: F401 (the run's config, re-exported)

log = logging.getLogger(__name__)

#: a callable that makes audio (N,) from a log-mel (n_mels, T), for TensorBoard previews
Preview = Callable[[np.ndarray], np.ndarray]


# ---------------------------------------------------------------------- manifest
@dataclass(frozen=True)
class Manifest(Config):
    """Singers (one per data folder, named after it) and their train / validation files (path, singer index)."""

    singers: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    val: tuple[tuple[str, int], ...]


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


Variants = list[tuple[np.ndarray, np.ndarray]]  # (content (D, T), loudness (T,)) of timbre-perturbed copies


def random_crops(
    data: Sequence[tuple[RefinerFeatures, int]], batch: int, n: int, gen: torch.Generator,
    variants: Sequence[Variants] | None = None, prob: float = 0.0, weights: torch.Tensor | None = None,
) -> list[tuple[RefinerFeatures, int]]:
    """``batch`` random crops of ``n`` frames; files are drawn with probability ``weights`` (files,) (default:
    proportional to their length). With ``variants`` (one list per file), a crop takes the content and loudness of a
    random timbre-perturbed copy with probability ``prob`` (the mel, F0 and voicing stay the recording's)."""
    if weights is None:
        lengths = torch.tensor([f.frames for f, _ in data], dtype=torch.float64)
        weights = lengths / lengths.sum()
    picks = torch.multinomial(weights, batch, replacement=True, generator=gen).tolist()
    out = []
    for i in picks:
        f, s = data[i]
        start = int(torch.randint(0, max(1, f.frames - n + 1), (1,), generator=gen))
        if variants is not None and variants[i]:  # the draws do not depend on prob: same crops either way
            use = float(torch.rand((), generator=gen)) < prob
            k = int(torch.randint(0, len(variants[i]), (1,), generator=gen))
            if use:
                content, loud = variants[i][k]
                f = RefinerFeatures(f.mel, f.f0, f.voiced, loud, content)
        out.append((f.crop(start, n), s))
    return out


# ---------------------------------------------------------------------- EMA, LR schedule
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


def _extract_all(
    manifest: Manifest, spec: MelSpec, params: FeatureParams, cache: Path, progress: bool, highpass_hz: float = 0.0
) -> tuple[list[tuple[RefinerFeatures, int]], list[tuple[RefinerFeatures, int]], list[str]]:
    """(train items, validation items, the train items' paths): features of every manifest file (cached);
    files that fail (e.g. without voiced frames) are skipped and said."""
    from tqdm import tqdm

    out: dict[str, list[tuple[RefinerFeatures, int]]] = {"train": [], "val": []}
    paths: list[str] = []
    items = [("train", p, s) for p, s in manifest.train] + [("val", p, s) for p, s in manifest.val]
    failed: list[str] = []
    for part, path, singer in tqdm(items, desc="features", unit="file", disable=not progress):
        try:
            out[part].append((load_features(path, spec, params, cache, highpass_hz), singer))
        except CanoraError as e:  # e.g. a file without voiced frames: skip it, say so
            log.warning("skipping %s", e)
            failed.append(" ".join(str(e).split()))
            continue
        if part == "train":
            paths.append(path)
    if not out["train"]:
        first = f": {failed[0]}" + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "") if failed else ""
        raise CanoraError(f"no usable training files (every file failed feature extraction){first}")
    return out["train"], out["val"], paths


# ---------------------------------------------------------------------- the task
class RefinerTask(Task):
    """The refiner on folders of recordings (one folder per singer)."""

    label = "train-refiner"

    def __init__(
        self,
        cfg: RefinerTrainConfig,
        data_dirs: Sequence[str | Path] = (),
        *,
        singers: Sequence[str] | None = None,
        cache_dir: str | Path | None = None,
        preview: Preview | None = None,
    ) -> None:
        super().__init__(cfg)
        self.cfg: RefinerTrainConfig = cfg
        self.data_dirs = list(data_dirs)
        self.singer_names = singers
        self.cache_dir = cache_dir
        self.preview = preview

    # -------------------------------------------------------------- setup
    def _manifest(self, ctx: Context) -> Manifest:
        mpath = ctx.out / "manifest.json"
        if mpath.is_file():
            try:
                manifest = Manifest.from_dict(json.loads(mpath.read_text()), str(mpath))
            except json.JSONDecodeError as e:
                raise CheckpointError(f"{mpath}: unreadable ({e}); restore it or use a new --out") from None
            if self.data_dirs and build_manifest(self.data_dirs, self.cfg.val_count, self.singer_names) != manifest:
                raise CanoraError(f"{mpath}: this run was started on other data; use a new --out or the same --data")
            return manifest
        manifest = build_manifest(self.data_dirs, self.cfg.val_count, self.singer_names)
        if ctx.is_main:
            atomic_write_text(mpath, json.dumps(manifest.to_dict(), indent=1) + "\n")
        return manifest

    def setup(self, ctx: Context) -> None:
        cfg = self.cfg
        self.manifest = self._manifest(ctx)
        if ctx.is_main:
            atomic_write_text(ctx.out / "train_config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
        spec, params = cfg.spec, cfg.feature_params
        cache = Path(self.cache_dir) if self.cache_dir else ctx.out / "cache"
        if ctx.is_main:  # rank 0 fills the cache, the others read it
            self.train_data, self.val_data, self.train_paths = _extract_all(self.manifest, spec, params, cache,
                                                                            ctx.progress, cfg.highpass_hz)
        ctx.barrier()
        if not ctx.is_main:
            self.train_data, self.val_data, self.train_paths = _extract_all(self.manifest, spec, params, cache, False,
                                                                            cfg.highpass_hz)
        self.variants = self._timbre_variants(ctx, cache)
        content_dim = self.train_data[0][0].content.shape[0]
        base = self._base(spec, params, content_dim) if cfg.init_from else None
        warm = Refiner.from_pretrained(cfg.warm_start) if cfg.warm_start else None
        if base is not None:
            from dataclasses import replace

            mcfg = replace(base.model.config, n_singers=len(self.manifest.singers))
        elif warm is not None:
            from dataclasses import replace

            warm.spec.require_same(spec, f"--warm-start {cfg.warm_start} vs this run's MelSpec",
                                   "warm-start from a refiner of the same MelSpec")
            mcfg = replace(warm.model.config, content_dim=content_dim, n_singers=len(self.manifest.singers))
        else:
            mcfg = RefinerConfig.preset(cfg.model, n_mels=spec.n_mels, content_dim=content_dim,
                                        n_singers=len(self.manifest.singers))
        self.model = RefinerModel(mcfg).to(ctx.device)
        if base is not None:
            self._start_from(base, ctx)
        elif warm is not None and not ctx.resuming:
            self._warm_start(warm, ctx)
        if base is None and content_dim:
            allc = np.concatenate([f.content for f, _ in self.train_data], axis=1)
            self.model.set_content_stats(torch.from_numpy(allc.mean(1)), torch.from_numpy(allc.std(1)))
        self.ema = RefinerModel(mcfg).to(ctx.device)
        self.ema.load_state_dict(self.model.state_dict())
        self.ema.requires_grad_(False)
        if base is not None or warm is not None:
            self.normalizer = (base or warm).normalizer
        else:
            self.normalizer = (MelNormalizer.fixed(spec) if cfg.norm == "fixed"
                               else MelNormalizer.per_bin((f.mel for f, _ in self.train_data), spec))
        self.schedule = NoiseSchedule(cfg.schedule, cfg.timesteps)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                     weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, cfg.lr_warmup, cfg.lr_half_life)
        )
        self.crop_weights = self._crop_weights()
        self.singer_stats = self._singer_f0_stats()
        self.singer_levels = self._singer_level_db()
        self.ddp = ctx.wrap(self.model)
        self.device = ctx.device

    def _timbre_variants(self, ctx: Context, cache: Path) -> list[Variants] | None:
        """Timbre-perturbed (content, loudness) copies of every training file (cached; rank 0 computes them
        first, the other ranks then read the cache)."""
        from tqdm import tqdm

        from canora.training.augment import load_variants

        cfg = self.cfg
        if not cfg.timbre_variants or not cfg.timbre_prob:
            return None
        spec, params, how = cfg.spec, cfg.feature_params, cfg.perturbation

        def compute(progress: bool) -> list[Variants]:
            return [load_variants(path, spec, params, how, f.frames, cache, cfg.highpass_hz)
                    for (f, _), path in tqdm(list(zip(self.train_data, self.train_paths)), desc="timbre variants",
                                             unit="file", disable=not progress)]

        out = compute(ctx.progress) if ctx.is_main else []
        ctx.barrier()
        if not ctx.is_main:
            out = compute(False)
        if not any(out):
            log.warning("timbre perturbation is off: content method %r has no spectral front end to perturb",
                        params.content_method)
            return None
        return out

    def _base(self, spec: MelSpec, params: FeatureParams, content_dim: int) -> Refiner:
        """The refiner to fine-tune from (``init_from``), checked against this run's MelSpec and features."""
        base = Refiner.from_pretrained(self.cfg.init_from)
        base.spec.require_same(spec, f"--init-from {self.cfg.init_from} vs this run's MelSpec",
                               "train with the base's MelSpec (--mel-config) or another base")
        if base.feature_params != params:
            raise CanoraError(f"--init-from {self.cfg.init_from}: its features ({base.feature_params.to_dict()}) "
                              f"differ from this run's ({params.to_dict()}); train with the base's --f0-method and "
                              "--content-method")
        if base.model.config.content_dim != content_dim:
            raise CanoraError(f"--init-from {self.cfg.init_from}: content dim {base.model.config.content_dim}, "
                              f"the data gives {content_dim}")
        return base

    def _start_from(self, base: Refiner, ctx: Context) -> None:
        """Copy ``base``'s weights (all but the singer table); a singer the base has under the same name keeps its
        embedding, every other singer of this run starts at the mean of the base's singer embeddings (a neutral
        voice the fine-tune moves toward the new singer)."""
        state = {k: v for k, v in base.model.state_dict().items() if k != "singer.weight"}
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if unexpected or set(missing) != {"singer.weight"}:
            raise CheckpointError(f"--init-from {self.cfg.init_from}: does not fit ({missing}, {unexpected})")
        table = base.model.singer.weight
        known = {name: i for i, name in enumerate(base.singers)}
        with torch.no_grad():
            for j, name in enumerate(self.manifest.singers):
                self.model.singer.weight[j] = table[known[name]] if name in known else table.mean(0)
        if ctx.is_main:
            kept = [n for n in self.manifest.singers if n in known]
            log.info("fine-tuning from %s (%s; %d singer(s) there%s)", self.cfg.init_from,
                     base.info.get("trained_steps", "?") if base.info else "?", len(base.singers),
                     f"; kept: {', '.join(kept)}" if kept else "")
            if kept:
                log.warning("singer(s) %s: the base has a singer of that name; starting from its embedding (rename "
                            "the folder to start from the mean of the base's singers instead)", ", ".join(kept))

    def _warm_start(self, warm: Refiner, ctx: Context) -> None:
        """Seed the model from ``warm`` (see ``RefinerTrainConfig.warm_start``)."""
        own = self.model.state_dict()
        copied, fresh = 0, []
        with torch.no_grad():
            for k, v in warm.model.state_dict().items():
                if k == "singer.weight":
                    own[k][:] = v.mean(0)
                elif k == "cond_in.weight":  # (cc, 3 + content_dim, 3): keep F0, voicing and loudness
                    own[k][:, :3] = v[:, :3]
                    fresh.append("content inputs")
                elif k in ("content_mean", "content_std"):
                    continue
                elif k in own and own[k].shape == v.shape:
                    own[k].copy_(v)
                    copied += 1
                else:
                    fresh.append(k)
        self.model.load_state_dict(own)
        if ctx.is_main:
            log.info("warm start from %s: %d tensors copied; fresh: %s; every singer starts at the mean of its %d "
                     "singers", self.cfg.warm_start, copied, ", ".join(fresh) or "-", len(warm.singers))

    def _crop_weights(self) -> torch.Tensor:
        """Probability (files,) of drawing each training file: its singer's share ((its minutes) ** balance,
        normalised) split among the singer's files by length."""
        lengths = np.array([f.frames for f, _ in self.train_data], np.float64)
        singers = np.array([s for _, s in self.train_data])
        w = np.zeros_like(lengths)
        for s in np.unique(singers):
            mine = singers == s
            total = lengths[mine].sum()
            w[mine] = lengths[mine] / total * total ** self.cfg.singer_balance
        return torch.from_numpy(w / w.sum())

    def _singer_f0_stats(self) -> dict[str, dict[str, Any]]:
        from canora.dsp.pitch import F0Stats

        stats = {}
        for i, name in enumerate(self.manifest.singers):
            f0s = [f.f0[f.voiced] for f, s in self.train_data if s == i]
            if f0s:
                stats[name] = F0Stats.from_f0(np.concatenate(f0s)).to_dict()
        return stats

    def _singer_level_db(self) -> dict[str, float]:
        """Each singer's median A-weighted loudness (dB) over its voiced training frames (the recordings as they
        are, not their timbre-perturbed copies): the level a conversion moves a song to."""
        from canora.dsp.loudness import voiced_level_db

        levels = {}
        for i, name in enumerate(self.manifest.singers):
            mine = [f for f, s in self.train_data if s == i]
            if any(f.voiced.any() for f in mine):
                levels[name] = voiced_level_db(np.concatenate([f.loudness for f in mine]),
                                               np.concatenate([f.voiced for f in mine]))
        return levels

    def describe(self) -> str:
        return (f"refiner {self.cfg.model}, {self.model.num_parameters()} parameters, {len(self.manifest.singers)} "
                f"singer(s) ({', '.join(self.manifest.singers)}), {len(self.train_data)} train / "
                f"{len(self.val_data)} val files")

    def modules(self) -> list[nn.Module]:
        return [self.model]

    # -------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "normalizer": json.dumps(self.normalizer.to_dict())}

    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        try:
            self.model.load_state_dict(state["model"], strict=True)
            self.ema.load_state_dict(state["ema"], strict=True)
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            self.normalizer = MelNormalizer.from_dict(json.loads(state["normalizer"]))
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{source}: does not fit this run's model ({str(e).splitlines()[0]})") from None

    def refiner(self, step: int) -> Refiner:
        """The EMA weights as a :class:`Refiner` (a copy; training continues undisturbed)."""
        model = RefinerModel(self.ema.config)
        model.load_state_dict(self.ema.state_dict())
        info = {"trained_steps": step, "train_config": self.cfg.to_dict(),
                "train_files": len(self.manifest.train), "val_files": len(self.manifest.val)}
        return Refiner(model, self.cfg.spec, self.normalizer, self.schedule, prediction_type=self.cfg.prediction_type,
                       singers=list(self.manifest.singers), singer_f0_stats=self.singer_stats,
                       singer_level_db=self.singer_levels,
                       feature_params=self.cfg.feature_params, info=info, source="training")

    def export(self, directory: Path, step: int) -> Path:
        return self.refiner(step).export(directory)

    # -------------------------------------------------------------- steps
    def _loss(self, model: Any, b: Batch, t: Tensor, noise: Tensor, mask: Tensor | None) -> Tensor:
        cfg = self.cfg
        x0 = self.normalizer.normalize(b.mel)
        w = loss_weights(self.schedule, t, cfg.prediction_type, cfg.loss_weighting, cfg.min_snr_gamma)
        return training_loss(model, self.schedule, x0, t, noise, cfg.prediction_type, mask=mask, weights=w,
                             **b.cond())

    def train_step(self, step: int, gen: torch.Generator, ctx: Context) -> dict[str, float]:
        cfg = self.cfg
        b = make_batch(random_crops(self.train_data, cfg.batch_size, cfg.crop_frames, gen, self.variants,
                                    cfg.timbre_prob, self.crop_weights), cfg.crop_frames, cfg.spec.log_floor)
        t = sample_train_timesteps(self.schedule, b.mel.shape[0], gen)
        noise = torch.randn(b.mel.shape, generator=gen)
        self.ddp.train()
        loss = self._loss(self.ddp, b, t, noise, b.mask)
        ctx.check_finite("refiner", step, loss)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        ema_update(self.ema, self.model, cfg.ema_decay, step + 1)
        return {"loss": float(loss.detach()), "lr": self.sched.get_last_lr()[0]}

    @torch.inference_mode()
    def validate(self, ctx: Context, step: int) -> dict[str, float]:
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
                losses.append(float(self._loss(self.ema, b, t, noise, None)))
            cond = self.ema.encode(b.f0, b.voiced, b.loudness, b.content, b.singer)
            smp = get_sampler(cfg.val_sampler, self.schedule, cfg.prediction_type)
            sgen = torch.Generator().manual_seed(0)
            out = sample(lambda x, t, cond: self.ema.denoise(x, t, cond), smp, steps=cfg.val_steps,
                         strength=cfg.val_strength, source=x0, cond={"cond": cond}, generator=sgen)
            smp.set_timesteps(cfg.val_steps, cfg.val_strength)
            noised = smp.add_noise(x0, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)),
                                   smp.start_timestep)
            l1.append(float((self.normalizer.denormalize(out) - b.mel).abs().mean()))
            l1_noised.append(float((self.normalizer.denormalize(noised) - b.mel).abs().mean()))
        self._val_step = step
        return {"loss": float(np.mean(losses)), "mel_l1": float(np.mean(l1)),
                "mel_l1_noised_input": float(np.mean(l1_noised))}

    def log_media(self, writer: Any, step: int) -> None:
        """A vocoded reconstruction of the first held-out file (when a ``preview`` was given)."""
        if self.preview is None or not self.val_data:
            return
        f, s = self.val_data[0]
        crop = f.crop(0, self.cfg.val_frames)
        out = self.refiner(step).refine(crop.mel, crop.f0, crop.loudness, crop.content, s, voiced=crop.voiced,
                                        steps=self.cfg.val_steps, strength=self.cfg.val_strength)
        sr = self.cfg.spec.sample_rate
        writer.add_audio("val/reconstruction", torch.from_numpy(self.preview(out))[None], step, sr)
        if step <= self.cfg.val_every:
            writer.add_audio("val/ground_truth_vocoded", torch.from_numpy(self.preview(crop.mel))[None], step, sr)


def train_refiner(
    data_dirs: Sequence[str | Path],
    out_dir: str | Path,
    config: RefinerTrainConfig | None = None,
    *,
    progress: bool = True,
    **kwargs: Any,
) -> Path | None:
    """Train (or resume) a refiner on ``data_dirs`` (one folder per singer) into ``out_dir``; returns the
    newest export directory. ``kwargs`` go to :class:`RefinerTask` (``singers``, ``cache_dir``, ``preview``)."""
    from canora.training.loop import Loop

    return Loop(RefinerTask(config or RefinerTrainConfig(), data_dirs, **kwargs), out_dir, progress=progress).run()
