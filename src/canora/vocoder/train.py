"""HiFi-GAN training and fine-tuning: from scratch, from an official or canora generator, on precomputed or
refined mels; one process or ``torchrun`` DDP.

Layout of an output directory ``OUT`` (the official one, so the official tools read it and vice versa)::

    OUT/config.json        official-layout config (generator + mel + training keys, and a ``canora`` section)
    OUT/g_00001000         {'generator': state dict in the official (legacy weight-norm) key names}
    OUT/do_00001000        {'mpd', 'msd', 'optim_g', 'optim_d', 'steps', 'epoch', 'canora': {...}}
    OUT/refined_mels/      the reconstruction-mode refined mels (``refiner`` runs only)
    OUT/cache/             cached mels of the wavs (keyed on every MelSpec field + file mtime/size)
    OUT/logs/              TensorBoard; OUT/train_log.jsonl: the same scalars as JSON lines

Steps count completed updates: ``g_00001000`` holds the weights after 1000 updates, and a resumed run
continues with update 1001. The ``canora`` entry of ``do_*`` holds the epoch start, RNG state and the
train config; the learning rate is a closed form of (step, epoch) and needs no other scheduler state:
``official``: lr * lr_decay ** epoch (ExponentialLR stepped once per epoch); ``finetune``: a constant low
lr after a linear warmup. Batches are drawn from a generator seeded with (seed, rank, step) over a
:class:`~torch.utils.data.DistributedSampler` order per epoch, so a resumed run sees exactly the batches an
uninterrupted one would.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from canora.dsp.mel import MelSpec, hifigan_fmax_for_loss, mel_spectrogram, read_config
from canora.errors import CanoraError, CheckpointError
from canora.io.audio import list_audio
from canora.io.checkpoint import is_export, load_torch_file, newest, prune, save_torch_file
from canora.io.files import atomic_write_text
from canora.vocoder import discriminators as disc
from canora.vocoder.data import (
    Item,
    LoadReport,
    RefinedMelSource,
    RefinerReconstruction,
    SegmentDataset,
    auto_split,
    check_mel_dir,
    load_mel_items,
    load_wav_items,
    make_refined_mels,
    prepare_refined_dir,
    read_filelist,
)
from canora.vocoder.hifigan import Generator, GeneratorConfig, check_state_dict, from_official_keys, to_official_keys
from canora.vocoder.losses import (
    MEL_WEIGHT,
    discriminator_loss,
    feature_loss,
    generator_loss,
    mel_loss,
    multi_resolution_stft_loss,
)

log = logging.getLogger(__name__)

CANORA_STATE_VERSION = 1
SCHEDULES = ("official", "finetune")
DEFAULT_LR = {"official": 2e-4, "finetune": 1e-5}
# Fields that may change when a run is resumed (they do not change what is learned).
RESUMABLE_CHANGES = {"steps", "checkpoint_every", "keep", "val_every", "log_every", "max_minutes", "device"}


class TrainingDiverged(CanoraError):
    """A non-finite loss: training stopped before any update or checkpoint with it."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a vocoder training run (saved in every ``do_*`` file).

    ``config``: v1/v2/v3 or the path of a HiFi-GAN config.json (None: the ``init_from`` checkpoint's).
    ``mels``: a directory of precomputed ``<stem>.npy`` mels paired with ``wavs/<stem>.wav``.
    ``refiner``: a refiner export; its reconstruction of each wav (target -> target) becomes the mel.
    ``lr`` None = 2e-4 (official) or 1e-5 (finetune). ``segment_size`` None = the config's (8192).
    ``peak_normalize`` None = on for mels computed here (official training), off for given/refined mels.
    ``recon_steps``: first N steps without discriminators (mel + ``stft_weight`` x multi-resolution STFT).
    ``disc_width_div``: 1 = the official MPD/MSD; 2, 4, 8 divide their channels (cheaper, not official).
    """

    wavs: str
    out: str
    config: str | None = None
    mels: str | None = None
    train_list: str | None = None
    val_list: str | None = None
    val_count: int | None = None
    init_from: str | None = None
    schedule: Literal["official", "finetune"] = "official"
    lr: float | None = None
    lr_decay: float = 0.999
    warmup_steps: int = 100
    adam_b1: float = 0.8
    adam_b2: float = 0.99
    steps: int = 100_000
    batch_size: int = 16
    segment_size: int | None = None
    recon_steps: int = 0
    stft_weight: float = 0.0
    disc_width_div: int = 1
    checkpoint_every: int = 1000
    keep: int = 3
    val_every: int = 1000
    val_files: int = 4
    val_seconds: float = 4.0
    log_every: int = 10
    max_minutes: float = 0.0
    seed: int = 1234
    peak_normalize: bool | None = None
    singer: str | None = None
    refiner: str | None = None
    refiner_strength: float = 0.5
    refiner_steps: int = 10
    cache_dir: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        problems = []
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule {self.schedule!r} must be one of {', '.join(SCHEDULES)}")
        if self.mels and self.refiner:
            problems.append("give either --mels (precomputed) or --refiner (reconstructed), not both")
        for name in ("steps", "batch_size", "keep", "val_files"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        for name in ("checkpoint_every", "val_every", "log_every", "recon_steps", "warmup_steps"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if self.lr is not None and not self.lr > 0:
            problems.append("lr must be > 0")
        if problems:
            raise CanoraError("invalid vocoder training settings: " + "; ".join(problems))

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.schedule]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise CheckpointError(f"vocoder train config has unknown keys {sorted(unknown)}; from a newer canora?")
        return cls(**d)


def lr_at(cfg: TrainConfig, step: int, epoch: int) -> float:
    """Learning rate of update number ``step`` (1-based) in ``epoch`` (0-based)."""
    if cfg.schedule == "official":
        return cfg.base_lr * cfg.lr_decay**epoch
    return cfg.base_lr * (min(1.0, step / cfg.warmup_steps) if cfg.warmup_steps else 1.0)


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The generator behind the crops of update ``step`` on ``rank``."""
    return torch.Generator().manual_seed((seed * 1_000_003 + rank * 7919 + step) % (2**63))


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment (0, 1, 0 without it)."""
    env = os.environ
    return int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", "0"))


def _finite_params(*modules: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for m in modules for p in m.parameters())


class _Stop:
    """Set by SIGTERM / SIGINT: finish the current step, checkpoint, exit."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.requested = True


# ---------------------------------------------------------------------- init-from
@dataclass
class InitWeights:
    """Weights to start from: generator state (parametrization names), its config and MelSpec, optional
    discriminator/optimizer states from a ``do_*`` beside it."""

    source: str
    gcfg: GeneratorConfig
    spec: MelSpec
    config: dict[str, Any]
    generator: dict[str, torch.Tensor]
    do: dict[str, Any] | None


def _rewrap_weight_norm(folded: dict[str, torch.Tensor], gcfg: GeneratorConfig, source: str) -> dict[str, torch.Tensor]:
    """Folded (inference) weights -> weight-norm parameters (g = ||w|| per output slice, v = w)."""
    from torch.nn.utils.parametrizations import weight_norm

    model = Generator.from_config(gcfg)
    wrapped = [name for name, m in model.named_modules() if hasattr(m, "parametrizations")]
    model.remove_weight_norm()
    check_state_dict(model, folded, source)
    model.load_state_dict(folded, strict=True)
    for name in wrapped:
        weight_norm(model.get_submodule(name))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def load_init(path: str | Path, config: str | Path | None = None) -> InitWeights:
    """Read a generator to fine-tune: an official ``g_*`` file / directory (with ``config.json`` beside it or
    ``config``) or a canora export. A ``do_*`` file with the same number beside a ``g_*`` is loaded too."""
    from canora.vocoder.api import Vocoder, _generator_state, official_config

    path = Path(path)
    voc = Vocoder.from_pretrained(path, config=config)
    hcfg = json.loads(official_config(voc.config, voc.spec))
    if is_export(path):
        from canora.io.checkpoint import load_export

        _, state = load_export(path, "hifigan")
        state = _rewrap_weight_norm(state, voc.config, str(path))
        return InitWeights(str(path), voc.config, voc.spec, hcfg, state, None)
    gfile = Path(voc.source)
    if config is not None:
        hcfg = read_config(config)
    elif (gfile.parent / "config.json").is_file():
        hcfg = read_config(gfile.parent / "config.json")
    state = from_official_keys(_generator_state(load_torch_file(gfile), str(gfile)))
    do = None
    if gfile.name.startswith("g_") and (gfile.parent / f"do_{gfile.name[2:]}").is_file():
        do_path = gfile.parent / f"do_{gfile.name[2:]}"
        do = load_torch_file(do_path)
        if not isinstance(do, dict) or not {"mpd", "msd"} <= set(do):
            raise CheckpointError(f"{do_path}: not a HiFi-GAN discriminator file (no 'mpd'/'msd')")
        do = {**do, "_path": str(do_path)}
    return InitWeights(str(gfile), voc.config, voc.spec, hcfg, state, do)


# ---------------------------------------------------------------------- the trainer
class Trainer:
    """One training run in ``cfg.out`` (resumes from the newest ``g_``/``do_`` pair there)."""

    def __init__(self, cfg: TrainConfig, *, progress: bool = True, mel_source: RefinedMelSource | None = None) -> None:
        self.rank, self.world, self.local_rank = dist_info()
        self.out = Path(cfg.out)
        self.progress = progress and self.rank == 0
        self.mel_source = mel_source
        self.out.mkdir(parents=True, exist_ok=True)
        self.resume_from = newest(self.out, "g_")
        self.resume_do: dict[str, Any] | None = None
        if self.resume_from is not None:
            do_path = self.out / f"do_{self.resume_from.name[2:]}"
            if not do_path.is_file():
                raise CheckpointError(f"{self.resume_from}: no {do_path.name} beside it; cannot resume the run in "
                                      f"{self.out} (restore it or use a new --out)")
            self.resume_do = load_torch_file(do_path)
            saved = (self.resume_do.get("canora") or {}).get("train_config")
            if saved:
                cfg = self._merge_resumed(TrainConfig.from_dict(json.loads(saved)), cfg)
        self.cfg = cfg
        self.last_good: Path | None = self.resume_from
        self.step = 0
        self.epoch = 0
        self.epoch_start = 0
        self._logged_real = False
        self._ready = False

    def _merge_resumed(self, saved: TrainConfig, given: TrainConfig) -> TrainConfig:
        changed = {k: v for k, v in asdict(given).items() if k in RESUMABLE_CHANGES and v != getattr(saved, k)}
        ignored = [k for k, v in asdict(given).items() if k not in RESUMABLE_CHANGES and v != getattr(saved, k)]
        if ignored and self.rank == 0:
            log.warning("resuming %s: keeping its saved %s (only %s may change on resume)",
                        self.out, ", ".join(ignored), ", ".join(sorted(RESUMABLE_CHANGES)))
        return replace(saved, **changed)

    # -------------------------------------------------------------- configuration
    def _resolve_config(self) -> tuple[dict[str, Any], InitWeights | None]:
        """The HiFi-GAN config dict of this run, and the init weights (fresh runs with ``init_from``)."""
        cfg = self.cfg
        given = read_config(cfg.config) if cfg.config else None
        if self.resume_from is not None:
            if cfg.init_from and self.rank == 0:
                log.info("%s holds a run: resuming it (--init-from %s is not used)", self.out, cfg.init_from)
            beside = self.out / "config.json"
            run_cfg = read_config(beside) if beside.is_file() else given
            if run_cfg is None:
                raise CanoraError(f"{self.out}: no config.json to resume with; pass --config")
            if given is not None:
                MelSpec.from_hifigan_config(run_cfg).require_same(
                    MelSpec.from_hifigan_config(given), f"--config {cfg.config} vs the run in {self.out}",
                    "resume with the run's own config (omit --config) or use a new --out")
            return run_cfg, None
        init = load_init(cfg.init_from, None) if cfg.init_from else None
        if given is None:
            if init is None:
                raise CanoraError("no --config: pass v1, v2, v3 or a HiFi-GAN config.json (or --init-from)")
            return init.config, init
        if init is not None:
            MelSpec.from_hifigan_config(given, source=str(cfg.config)).require_same(
                init.spec, f"--config {cfg.config} vs --init-from {init.source}",
                "train with the checkpoint's own config (omit --config) or convert the data")
        return given, init

    # -------------------------------------------------------------- setup
    def setup(self) -> None:
        """Build models, optimizers and data; load the run / init weights (once; :meth:`run` calls it)."""
        if self._ready:
            return
        cfg = self.cfg
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("nccl" if cfg.device.startswith("cuda") else "gloo")
        self.device = torch.device(f"cuda:{self.local_rank}" if cfg.device == "cuda" and self.world > 1
                                   else cfg.device)
        hcfg, init = self._resolve_config()
        self.hifigan_config = hcfg
        if init is not None and cfg.config is None:
            self.spec = init.spec  # already read (and any unknown config keys reported) with the checkpoint
        else:
            beside = self.out / "config.json"
            source = str(beside) if self.resume_from is not None and beside.is_file() else str(cfg.config)
            self.spec = MelSpec.from_hifigan_config(hcfg, source=source)
        self.loss_spec = self.spec.for_loss(hifigan_fmax_for_loss(hcfg))
        self.gcfg = GeneratorConfig.from_hifigan_config(hcfg)
        seg = cfg.segment_size or int(hcfg.get("segment_size", 8192))
        if seg % self.spec.hop_length or seg < self.spec.hop_length:
            raise CanoraError(f"segment size {seg} must be a positive multiple of the hop ({self.spec.hop_length})")
        self.segment_frames = seg // self.spec.hop_length
        torch.manual_seed(cfg.seed)
        self.generator = Generator.from_config(self.gcfg).to(self.device)
        self.mpd = disc.MultiPeriodDiscriminator(width_div=cfg.disc_width_div).to(self.device)
        self.msd = disc.MultiScaleDiscriminator(width_div=cfg.disc_width_div).to(self.device)
        b = (cfg.adam_b1, cfg.adam_b2)
        self.opt_g = torch.optim.AdamW(self.generator.parameters(), cfg.base_lr, betas=b)
        self.opt_d = torch.optim.AdamW([*self.msd.parameters(), *self.mpd.parameters()], cfg.base_lr, betas=b)
        for opt in (self.opt_g, self.opt_d):
            opt.param_groups[0]["initial_lr"] = cfg.base_lr  # what the official ExponentialLR expects on resume
        if self.resume_from is not None:
            self._load_generator(load_torch_file(self.resume_from), str(self.resume_from))
            self._load_do(self.resume_do or {}, str(self.out / f"do_{self.resume_from.name[2:]}"), resume=True)
            self.resume_do = None  # loaded; do not hold the (large) optimizer states twice
        elif init is not None:
            check_state_dict(self.generator, init.generator, init.source)
            self.generator.load_state_dict(init.generator, strict=True)
            if init.do is not None and cfg.disc_width_div != 1:
                if self.rank == 0:
                    log.warning("not loading %s: the discriminators are narrowed (width divisor %d); they start "
                                "fresh", init.do["_path"], cfg.disc_width_div)
            elif init.do is not None:
                self._load_do(init.do, init.do["_path"], resume=False)
                if self.rank == 0:
                    log.info("discriminators and optimizer states from %s", init.do["_path"])
            elif self.rank == 0:
                log.info("initialised the generator from %s; discriminators are fresh", init.source)
        if self.rank == 0:
            from canora.vocoder.api import official_config

            extra = {"batch_size": cfg.batch_size, "learning_rate": cfg.base_lr, "adam_b1": cfg.adam_b1,
                     "adam_b2": cfg.adam_b2, "lr_decay": cfg.lr_decay, "seed": cfg.seed, "segment_size": seg,
                     "fmax_for_loss": hifigan_fmax_for_loss(hcfg), "num_gpus": self.world}
            atomic_write_text(self.out / "config.json", official_config(self.gcfg, self.spec, extra))
        self._load_data()
        self.g_ddp, self.mpd_ddp, self.msd_ddp = self.generator, self.mpd, self.msd
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_ddp = DDP(self.generator, device_ids=ids)
            self.mpd_ddp = DDP(self.mpd, device_ids=ids)
            self.msd_ddp = DDP(self.msd, device_ids=ids)
        from torch.utils.data import DistributedSampler

        self.sampler = DistributedSampler(self.train_data, num_replicas=self.world, rank=self.rank, shuffle=True,
                                          seed=cfg.seed)
        self._ready = True

    def _load_generator(self, obj: Any, source: str) -> None:
        if not isinstance(obj, dict) or not isinstance(obj.get("generator"), dict):
            raise CheckpointError(f"{source}: not a HiFi-GAN generator file (no 'generator')")
        state = from_official_keys(obj["generator"])
        check_state_dict(self.generator, state, source)
        self.generator.load_state_dict(state, strict=True)

    def _load_do(self, do: dict[str, Any], source: str, *, resume: bool) -> None:
        missing = [k for k in ("mpd", "msd") if k not in do]
        if missing:
            raise CheckpointError(f"{source}: not a HiFi-GAN discriminator file (missing {missing})")
        try:
            self.mpd.load_state_dict(disc.from_official_keys(do["mpd"]), strict=True)
            self.msd.load_state_dict(disc.from_official_keys(do["msd"]), strict=True)
            if "optim_g" in do and "optim_d" in do:
                self.opt_g.load_state_dict(do["optim_g"])
                self.opt_d.load_state_dict(do["optim_d"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{source}: does not fit the official MPD/MSD layout "
                                  f"({str(e).splitlines()[0][:200]})") from None
        for opt in (self.opt_g, self.opt_d):
            opt.param_groups[0].setdefault("initial_lr", self.cfg.base_lr)
        if not resume:
            return
        extra = do.get("canora") or {}
        self.step = int(do.get("steps", 0))
        self.epoch = int(do.get("epoch", 0))
        self.epoch_start = int(extra.get("epoch_start", self.step))
        if "rng_torch" in extra:
            torch.set_rng_state(extra["rng_torch"])
        if self.rank == 0:
            log.info("resumed %s at step %d (epoch %d); next update is step %d", source, self.step, self.epoch,
                     self.step + 1)

    def _files(self) -> tuple[list[Path], list[Path]]:
        cfg, wavs = self.cfg, Path(self.cfg.wavs)
        if not wavs.is_dir():
            raise CanoraError(f"{wavs}: --wavs must be a directory of recordings")
        if cfg.train_list:
            train = read_filelist(Path(cfg.train_list), wavs)
            val = read_filelist(Path(cfg.val_list), wavs) if cfg.val_list else []
            return train, val
        files = list_audio(wavs)
        if not files:
            raise CanoraError(f"{wavs}: no audio files in this directory")
        return auto_split(files, cfg.val_count)

    def _load_data(self) -> None:
        cfg = self.cfg
        train_files, val_files = self._files()
        val_files = val_files[: cfg.val_files]
        report = LoadReport()
        show = self.progress
        mels_dir = Path(cfg.mels) if cfg.mels else None
        source = self.mel_source
        if source is None and cfg.refiner:
            source = RefinerReconstruction(Path(cfg.refiner), cfg.singer, cfg.refiner_strength, cfg.refiner_steps,
                                           cfg.seed)
        if source is not None:  # each rank reconstructs its share of the files
            mels_dir = self.out / "refined_mels"
            if self.rank == 0:
                prepare_refined_dir(source, mels_dir, self.spec)
            self._barrier()
            failed: list[tuple[str, str]] = []
            make_refined_mels([*train_files, *val_files][self.rank::self.world], source, mels_dir, progress=show,
                              on_error=lambda p, why: failed.append((p.name, why)))
            for name, why in failed:
                log.warning("refiner reconstruction failed for %s (%s); skipped", name, why)
            self._barrier()
            made = {p.stem for p in mels_dir.glob("*.npy")}
            train_files = [f for f in train_files if f.stem in made]
            val_files = [f for f in val_files if f.stem in made]
        if mels_dir is not None:
            if self.rank == 0:
                check_mel_dir(mels_dir, [f.stem for f in [*train_files, *val_files]], self.spec,
                              cfg.singer if source is None else source.singer)
            train = load_mel_items(train_files, mels_dir, self.spec, self.segment_frames, report=report, progress=show)
            val = load_mel_items(val_files, mels_dir, self.spec, 1, report=report)
        else:
            normalize = True if cfg.peak_normalize is None else cfg.peak_normalize
            cache = Path(cfg.cache_dir) if cfg.cache_dir else self.out / "cache"
            train = load_wav_items(train_files, self.spec, self.segment_frames, peak_normalize=normalize,
                                   cache_dir=cache, report=report, progress=show)
            val = load_wav_items(val_files, self.spec, 1, peak_normalize=normalize, cache_dir=cache, report=report)
        if self.rank == 0:
            report.log(self.spec, "train-vocoder", self.segment_frames)
        if not train:
            raise CanoraError(f"{cfg.wavs}: no usable training files left ({len(report.unreadable)} unreadable)")
        self.train_data = SegmentDataset(train, self.spec, self.segment_frames)
        self.val_items: list[Item] = val
        self.report = report

    def _barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    # -------------------------------------------------------------- state
    def save_checkpoint(self) -> Path:
        """Write ``g_<step>`` + ``do_<step>`` atomically (never with non-finite weights), prune old ones."""
        if not _finite_params(self.generator, self.mpd, self.msd):
            raise TrainingDiverged(
                f"weights became non-finite by step {self.step}; not saving them; the last good checkpoint is "
                f"{self.last_good or 'none'}")
        g_path = self.out / f"g_{self.step:08d}"
        do_path = self.out / f"do_{self.step:08d}"
        extra = {"format_version": CANORA_STATE_VERSION, "train_config": json.dumps(self.cfg.to_dict()),
                 "epoch_start": self.epoch_start, "rng_torch": torch.get_rng_state(),
                 "schedule": self.cfg.schedule, "lr": self.lr}
        save_torch_file(do_path, {
            "mpd": disc.to_official_keys(self.mpd.state_dict()),
            "msd": disc.to_official_keys(self.msd.state_dict()),
            "optim_g": self.opt_g.state_dict(), "optim_d": self.opt_d.state_dict(),
            "steps": self.step, "epoch": self.epoch, "canora": extra,
        })
        save_torch_file(g_path, {"generator": to_official_keys(self.generator.state_dict())})
        prune(self.out, "do_", self.cfg.keep)
        prune(self.out, "g_", self.cfg.keep)
        self.last_good = g_path
        return g_path

    @property
    def lr(self) -> float:
        return lr_at(self.cfg, max(1, self.step), self.epoch)

    # -------------------------------------------------------------- one update
    def _batch_indices(self) -> list[int]:
        b = self.cfg.batch_size
        self.sampler.set_epoch(self.epoch)
        order = list(iter(self.sampler))
        per_epoch = max(1, len(order) // b)
        if self.step - self.epoch_start >= per_epoch:
            self.epoch += 1
            self.epoch_start = self.step
            self.sampler.set_epoch(self.epoch)
            order = list(iter(self.sampler))
        pos = self.step - self.epoch_start
        return [order[(pos * b + j) % len(order)] for j in range(b)]

    def _check_finite(self, what: str, *losses: torch.Tensor) -> None:
        flag = torch.tensor([0.0 if all(bool(torch.isfinite(x)) for x in losses) else 1.0], device=self.device)
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0:
            values = ", ".join(f"{float(x.detach()):g}" for x in losses)
            raise TrainingDiverged(
                f"{what} loss became non-finite ({values}) at step {self.step + 1}; no update and no checkpoint "
                f"was made with it; the last good checkpoint is {self.last_good or 'none (none written yet)'}: "
                "resume from it with a lower --lr, or check the data")

    def train_step(self) -> dict[str, float]:
        """One update of the discriminators then the generator (official order); returns the losses."""
        cfg = self.cfg
        idx = self._batch_indices()
        mel, y = self.train_data.batch(idx, step_generator(cfg.seed, self.rank, self.step + 1))
        mel, y = mel.to(self.device), y.to(self.device)
        lr = lr_at(cfg, self.step + 1, self.epoch)
        for opt in (self.opt_g, self.opt_d):
            for g in opt.param_groups:
                g["lr"] = lr
        with torch.no_grad():
            y_mel = mel_spectrogram(y.squeeze(1), self.loss_spec)
        self.g_ddp.train()
        self.mpd_ddp.train()
        self.msd_ddp.train()
        y_hat = self.g_ddp(mel)
        out: dict[str, float] = {"lr": lr}
        adversarial = self.step >= cfg.recon_steps
        if adversarial:
            self.opt_d.zero_grad(set_to_none=True)
            r, g, _, _ = self.mpd_ddp(y, y_hat.detach())
            loss_f = discriminator_loss(r, g)
            r, g, _, _ = self.msd_ddp(y, y_hat.detach())
            loss_s = discriminator_loss(r, g)
            loss_d = loss_f + loss_s
            self._check_finite("discriminator", loss_d)
            loss_d.backward()
            self.opt_d.step()
            out["loss_disc"] = float(loss_d.detach())
        self.opt_g.zero_grad(set_to_none=True)
        l_mel = mel_loss(y_mel, y_hat, self.loss_spec)
        loss_g = MEL_WEIGHT * l_mel
        parts = [l_mel]
        if cfg.stft_weight > 0:
            l_stft = multi_resolution_stft_loss(y, y_hat)
            loss_g = loss_g + cfg.stft_weight * l_stft
            parts.append(l_stft)
            out["loss_stft"] = float(l_stft.detach())
        if adversarial:
            with _no_sync(self.mpd_ddp), _no_sync(self.msd_ddp):  # D grads of the G step are discarded
                _, g_f, fr_f, fg_f = self.mpd_ddp(y, y_hat)
                _, g_s, fr_s, fg_s = self.msd_ddp(y, y_hat)
                adv = generator_loss(g_f) + generator_loss(g_s)
                fm = feature_loss(fr_f, fg_f) + feature_loss(fr_s, fg_s)
                loss_g = loss_g + adv + fm
                parts += [adv, fm]
                self._check_finite("generator", loss_g, *parts)
                loss_g.backward()
            out["loss_adv"] = float(adv.detach())
            out["loss_fm"] = float(fm.detach())
        else:
            self._check_finite("generator", loss_g, *parts)
            loss_g.backward()
        self.opt_g.step()
        self.step += 1
        out["loss_gen_all"] = float(loss_g.detach())
        out["loss_mel"] = float(l_mel.detach())
        return out

    # -------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self) -> tuple[float, list[tuple[str, np.ndarray, np.ndarray]]]:
        """Mean loss-mel L1 of the generator on the validation files (first ``val_seconds`` of each);
        returns it with (name, generated, real) audio of each file."""
        self.generator.eval()
        hop = self.spec.hop_length
        max_frames = max(1, int(self.cfg.val_seconds * self.spec.sample_rate) // hop)
        errs, samples = [], []
        for it in self.val_items:
            frames = min(max_frames, it.mel.shape[1])
            mel = torch.from_numpy(it.mel[:, :frames]).to(self.device)[None]
            y = torch.from_numpy(it.audio[: frames * hop]).to(self.device)[None]
            y_hat = self.generator(mel)
            errs.append(float(mel_loss(mel_spectrogram(y, self.loss_spec), y_hat, self.loss_spec)))
            samples.append((it.name, y_hat[0, 0].cpu().numpy(), y[0].cpu().numpy()))
        self.generator.train()
        return (float(np.mean(errs)) if errs else float("nan")), samples

    # -------------------------------------------------------------- the loop
    def run(self) -> Path | None:
        """Train until ``steps`` (or ``max_minutes``, or SIGTERM/SIGINT); returns the newest ``g_*`` (rank 0)."""
        try:
            return self._run()
        finally:
            if self.world > 1:
                import torch.distributed as dist

                if dist.is_initialized():
                    dist.destroy_process_group()

    def _run(self) -> Path | None:
        import sys

        from tqdm import tqdm

        self.setup()
        cfg = self.cfg
        writer = None
        if self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.out / "logs"), purge_step=self.step or None)
            n_g = sum(p.numel() for p in self.generator.parameters())
            log.info("train-vocoder: generator %d parameters, %d train / %d val files, %d process(es), "
                     "batch %d x %d samples, schedule %s (lr %g), step %d -> %d",
                     n_g, len(self.train_data), len(self.val_items), self.world, cfg.batch_size,
                     self.segment_frames * self.spec.hop_length, cfg.schedule, cfg.base_lr, self.step, cfg.steps)
        stop = _Stop()
        old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train-vocoder", unit="step", disable=not self.progress,
                   mininterval=0.5 if sys.stderr.isatty() else 60.0)
        if self.rank == 0 and self.step == 0 and cfg.val_every and self.val_items:
            self._validate_and_log(writer)  # the baseline (the init checkpoint's error, for fine-tunes)
        t_start = time.monotonic()
        t_log, running = time.monotonic(), []
        saved_at = self.step if self.resume_from is not None else -1
        seg_seconds = cfg.batch_size * self.world * self.segment_frames * self.spec.hop_length / self.spec.sample_rate
        try:
            while self.step < cfg.steps:
                losses = self.train_step()
                running.append(losses)
                bar.update(1)
                elapsed = time.monotonic() - t_start
                want_stop = stop.requested or bool(cfg.max_minutes and elapsed >= 60 * cfg.max_minutes)
                if self._agree(want_stop):
                    if self.rank == 0:
                        log.info("stopping at step %d (%s)", self.step, "signal" if stop.requested else "max_minutes")
                    break
                if self.rank != 0:
                    continue
                if cfg.log_every and self.step % cfg.log_every == 0:
                    now = time.monotonic()
                    mean = {k: float(np.mean([r[k] for r in running if k in r])) for k in running[-1]}
                    mean["audio_sec_per_sec"] = seg_seconds * len(running) / max(1e-9, now - t_log)
                    t_log, running = now, []
                    self._log(writer, {f"train/{k}": v for k, v in mean.items()})
                    bar.set_postfix(mel=f"{mean['loss_mel']:.3f}")
                if cfg.val_every and self.step % cfg.val_every == 0 and self.val_items:
                    self._validate_and_log(writer)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                    saved_at = self.step
            if self.rank == 0 and saved_at != self.step:
                self.save_checkpoint()
        finally:
            bar.close()
            for s, h in old.items():
                signal.signal(s, h)
            if writer is not None:
                writer.close()
        self._barrier()
        return self.last_good if self.rank == 0 else None

    def _agree(self, local: bool) -> bool:
        """True on every rank when any rank wants to stop (so DDP processes leave the loop together)."""
        if self.world == 1:
            return local
        import torch.distributed as dist

        flag = torch.tensor([1.0 if local else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def _validate_and_log(self, writer: Any) -> None:
        err, samples = self.validate()
        self._log(writer, {"val/mel_l1": err})
        sr = self.spec.sample_rate
        for name, gen, real in samples[:2]:
            writer.add_audio(f"val/{name}/generated", torch.from_numpy(gen)[None], self.step, sr)
            if not self._logged_real:
                writer.add_audio(f"val/{name}/real", torch.from_numpy(real)[None], self.step, sr)
        self._logged_real = True

    def _log(self, writer: Any, scalars: dict[str, float]) -> None:
        log_scalars(writer, self.out, self.step, scalars)


def log_scalars(writer: Any, out: Path, step: int, scalars: dict[str, float]) -> None:
    """``scalars`` to TensorBoard and as one JSON line in ``out/train_log.jsonl`` (non-finite values as null)."""
    for k, v in scalars.items():
        writer.add_scalar(k, v, step)
    line = {"step": step, "time": round(time.time(), 1),
            **{k: (round(v, 6) if math.isfinite(v) else None) for k, v in scalars.items()}}
    with open(out / "train_log.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


class _no_sync:
    """``ddp.no_sync()`` for a DDP module, nothing for a plain one."""

    def __init__(self, module: nn.Module) -> None:
        self.ctx = module.no_sync() if hasattr(module, "no_sync") else None

    def __enter__(self) -> None:
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self.ctx is not None:
            self.ctx.__exit__(*exc)


def train_vocoder(
    cfg: TrainConfig, *, progress: bool = True, mel_source: RefinedMelSource | None = None
) -> Path | None:
    """Train (or resume) a HiFi-GAN in ``cfg.out``; returns the newest ``g_*`` file (None on ranks > 0).

    ``mel_source`` overrides ``cfg.refiner``: any callable wav -> refined mel (see :class:`RefinedMelSource`).
    """
    return Trainer(cfg, progress=progress, mel_source=mel_source).run()
