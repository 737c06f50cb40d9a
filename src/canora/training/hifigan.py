"""Training task of the official HiFi-GAN: from scratch, from an official or canora generator, on precomputed or
refined mels; one process or ``torchrun`` DDP (through :mod:`canora.training.loop`).

Layout of an output directory ``OUT`` (the official one, so the official tools read it and vice versa)::

    OUT/config.json        official-layout config (generator + mel + training keys, and a ``canora`` section)
    OUT/g_00001000         {'generator': state dict in the official (legacy weight-norm) key names}
    OUT/do_00001000        {'mpd', 'msd', 'optim_g', 'optim_d', 'steps', 'epoch', 'canora': {...}}
    OUT/refined_mels/      the reconstruction-mode refined mels (``refiner`` runs only)
    OUT/cache/             cached mels of the wavs (keyed on every MelSpec field + file mtime/size)

Steps count completed updates: ``g_00001000`` holds the weights after 1000 updates, and a resumed run
continues with update 1001. The ``canora`` entry of ``do_*`` holds the epoch start, RNG state and the train
config; the learning rate is a closed form of (step, epoch) and needs no other scheduler state: ``official``:
lr * lr_decay ** epoch (ExponentialLR stepped once per epoch); ``finetune``: a constant low lr after a linear
warmup. Batches are drawn from a generator seeded with (seed, rank, step) over a
:class:`~torch.utils.data.DistributedSampler` order per epoch, so a resumed run sees exactly the batches an
uninterrupted one would.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from canora.dsp.mel import MelSpec, hifigan_fmax_for_loss, mel_spectrogram, read_config
from canora.errors import CanoraError, CheckpointError
from canora.io.audio import list_audio
from canora.io.checkpoint import is_export, load_torch_file, prune, save_torch_file
from canora.io.files import atomic_write_text
from canora.training.gan import discriminator_step, generator_adversarial_backward
from canora.training.loop import STATE_VERSION, CheckpointStore, Context, RunConfig, Task, holdout
from canora.training.vocoder_data import (
    Item,
    LoadReport,
    RefinedMelSource,
    RefinerReconstruction,
    SegmentDataset,
    check_mel_dir,
    load_mel_items,
    load_wav_items,
    read_filelist,
    reconstruct_files,
)
from canora.vocoder import discriminators as disc
from canora.vocoder.hifigan import Generator, GeneratorConfig, check_state_dict, from_official_keys, to_official_keys
from canora.vocoder.losses import MEL_WEIGHT, mel_loss, multi_resolution_stft_loss

log = logging.getLogger(__name__)

SCHEDULES = ("official", "finetune")
DEFAULT_LR = {"official": 2e-4, "finetune": 1e-5}


@dataclass(frozen=True, kw_only=True)
class TrainConfig(RunConfig):
    """Everything that defines a HiFi-GAN training run (saved in every ``do_*`` file).

    ``config``: v1/v2/v3 or the path of a HiFi-GAN config.json (None: the ``init_from`` checkpoint's).
    ``mels``: a directory of precomputed ``<stem>.npy`` mels paired with ``wavs/<stem>.wav``.
    ``refiner``: a refiner export; its reconstruction of each wav (target -> target) becomes the mel.
    ``lr`` None = 2e-4 (official) or 1e-5 (finetune). ``segment_size`` None = the config's (8192).
    ``peak_normalize`` None = on for mels computed here (official training), off for given/refined mels.
    ``recon_steps``: first N steps without discriminators (mel + ``stft_weight`` x multi-resolution STFT).
    ``disc_width_div``: 1 = the official MPD/MSD; 2, 4, 8 divide their channels (cheaper, not official).
    ``val_count``: held-out files without filelists (None: 5 %, 1 to 10; 0: none).
    """

    wavs: str
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
    val_files: int = 4
    val_seconds: float = 4.0
    log_every: int = 10
    seed: int = 1234
    peak_normalize: bool | None = None
    singer: str | None = None
    refiner: str | None = None
    refiner_strength: float = 0.5
    refiner_steps: int = 10
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        problems = []
        if self.mels and self.refiner:
            problems.append("give either --mels (precomputed) or --refiner (reconstructed), not both")
        for name in ("steps", "batch_size", "val_files"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        for name in ("recon_steps", "warmup_steps"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if self.lr is not None and not self.lr > 0:
            problems.append("lr must be > 0")
        if self.disc_width_div not in disc.WIDTH_DIVS:
            problems.append(f"disc_width_div must be one of {disc.WIDTH_DIVS}")
        if problems:
            raise CanoraError("invalid vocoder training settings: " + "; ".join(problems))

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.schedule]


def lr_at(cfg: TrainConfig, step: int, epoch: int) -> float:
    """Learning rate of update number ``step`` (1-based) in ``epoch`` (0-based)."""
    if cfg.schedule == "official":
        return cfg.base_lr * cfg.lr_decay**epoch
    return cfg.base_lr * (min(1.0, step / cfg.warmup_steps) if cfg.warmup_steps else 1.0)


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
    model = Generator.from_config(gcfg)
    model.load_folded(folded, source)
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


class OfficialStore(CheckpointStore):
    """Checkpoints in the official layout: ``g_<step>`` (generator) + ``do_<step>`` (discriminators, optimizers,
    ``steps``, ``epoch`` and canora's own entry with the train config and RNG state)."""

    prefix = "g_"

    def read(self, path: Path) -> dict[str, Any]:
        do_path = path.parent / f"do_{path.name[2:]}"
        if not do_path.is_file():
            raise CheckpointError(f"{path}: no {do_path.name} beside it; cannot resume from it (restore it or use a "
                                  "new --out)")
        g = load_torch_file(path)
        if not isinstance(g, dict) or not isinstance(g.get("generator"), dict):
            raise CheckpointError(f"{path}: not a HiFi-GAN generator file (no 'generator')")
        do = load_torch_file(do_path)
        if not isinstance(do, dict) or not {"mpd", "msd"} <= set(do):
            raise CheckpointError(f"{do_path}: not a HiFi-GAN discriminator file (no 'mpd'/'msd')")
        extra = do.get("canora") or {}
        if int(extra.get("format_version", 0)) > STATE_VERSION:
            raise CheckpointError(f"{do_path}: training state version {extra.get('format_version')} is newer than "
                                  "this canora; upgrade canora")
        return {"step": int(do.get("steps", 0)), "train_config": extra.get("train_config"),
                "rng_torch": extra.get("rng_torch"), "task": {"generator": g["generator"], "do": do,
                                                              "do_path": str(do_path)}}

    def write(self, out: Path, step: int, payload: dict[str, Any]) -> Path:
        st = payload["task"]
        do = {**st["do"], "steps": step}
        do["canora"] = {**do.get("canora", {}), "format_version": STATE_VERSION,
                        "train_config": payload["train_config"], "rng_torch": payload["rng_torch"]}
        save_torch_file(out / f"do_{step:08d}", do)
        g_path = out / f"g_{step:08d}"
        save_torch_file(g_path, {"generator": st["generator"]})
        return g_path

    def prune(self, out: Path, keep: int) -> None:
        prune(out, "do_", keep)
        prune(out, "g_", keep)


class HiFiGANTask(Task):
    """The official HiFi-GAN generator with MPD + MSD (optionally narrowed) on ``cfg.wavs``."""

    label = "train-vocoder"
    store = OfficialStore()

    def __init__(self, cfg: TrainConfig, *, mel_source: RefinedMelSource | None = None) -> None:
        super().__init__(cfg)
        self.cfg: TrainConfig = cfg
        self.mel_source = mel_source
        self.epoch = 0
        self.epoch_start = 0

    # -------------------------------------------------------------- configuration
    def _resolve_config(self, ctx: Context) -> tuple[dict[str, Any], InitWeights | None]:
        """The HiFi-GAN config dict of this run, and the init weights (fresh runs with ``init_from``)."""
        cfg = self.cfg
        given = read_config(cfg.config) if cfg.config else None
        if ctx.resuming:
            if cfg.init_from and ctx.is_main:
                log.info("%s holds a run: resuming it (--init-from %s is not used)", ctx.out, cfg.init_from)
            beside = ctx.out / "config.json"
            run_cfg = read_config(beside) if beside.is_file() else given
            if run_cfg is None:
                raise CanoraError(f"{ctx.out}: no config.json to resume with; pass --config")
            if given is not None:
                MelSpec.from_hifigan_config(run_cfg).require_same(
                    MelSpec.from_hifigan_config(given), f"--config {cfg.config} vs the run in {ctx.out}",
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
    def setup(self, ctx: Context) -> None:
        cfg = self.cfg
        self.ctx = ctx
        self.device = ctx.device
        hcfg, init = self._resolve_config(ctx)
        self.hifigan_config = hcfg
        if init is not None and cfg.config is None:
            self.spec = init.spec  # already read (and any unknown config keys reported) with the checkpoint
        else:
            beside = ctx.out / "config.json"
            source = str(beside) if ctx.resuming and beside.is_file() else str(cfg.config)
            self.spec = MelSpec.from_hifigan_config(hcfg, source=source)
        self.loss_spec = self.spec.for_loss(hifigan_fmax_for_loss(hcfg))
        self.gcfg = GeneratorConfig.from_hifigan_config(hcfg)
        seg = cfg.segment_size or int(hcfg.get("segment_size", 8192))
        if seg % self.spec.hop_length or seg < self.spec.hop_length:
            raise CanoraError(f"segment size {seg} must be a positive multiple of the hop ({self.spec.hop_length})")
        self.segment_frames = seg // self.spec.hop_length
        self.generator = Generator.from_config(self.gcfg).to(self.device)
        self.mpd = disc.MultiPeriodDiscriminator(width_div=cfg.disc_width_div).to(self.device)
        self.msd = disc.MultiScaleDiscriminator(width_div=cfg.disc_width_div).to(self.device)
        b = (cfg.adam_b1, cfg.adam_b2)
        self.opt_g = torch.optim.AdamW(self.generator.parameters(), cfg.base_lr, betas=b)
        self.opt_d = torch.optim.AdamW([*self.msd.parameters(), *self.mpd.parameters()], cfg.base_lr, betas=b)
        for opt in (self.opt_g, self.opt_d):
            opt.param_groups[0]["initial_lr"] = cfg.base_lr  # what the official ExponentialLR expects on resume
        if init is not None:
            check_state_dict(self.generator, init.generator, init.source)
            self.generator.load_state_dict(init.generator, strict=True)
            if init.do is not None and cfg.disc_width_div != 1:
                if ctx.is_main:
                    log.warning("not loading %s: the discriminators are narrowed (width divisor %d); they start "
                                "fresh", init.do["_path"], cfg.disc_width_div)
            elif init.do is not None:
                self._load_do(init.do, init.do["_path"], resume=False)
                if ctx.is_main:
                    log.info("discriminators and optimizer states from %s", init.do["_path"])
            elif ctx.is_main:
                log.info("initialised the generator from %s; discriminators are fresh", init.source)
        if ctx.is_main:
            from canora.vocoder.api import official_config

            extra = {"batch_size": cfg.batch_size, "learning_rate": cfg.base_lr, "adam_b1": cfg.adam_b1,
                     "adam_b2": cfg.adam_b2, "lr_decay": cfg.lr_decay, "seed": cfg.seed, "segment_size": seg,
                     "fmax_for_loss": hifigan_fmax_for_loss(hcfg), "num_gpus": ctx.world}
            atomic_write_text(ctx.out / "config.json", official_config(self.gcfg, self.spec, extra))
        self._load_data(ctx)
        self.g_ddp, self.mpd_ddp, self.msd_ddp = ctx.wrap(self.generator), ctx.wrap(self.mpd), ctx.wrap(self.msd)
        from torch.utils.data import DistributedSampler

        self.sampler = DistributedSampler(self.train_data, num_replicas=ctx.world, rank=ctx.rank, shuffle=True,
                                          seed=cfg.seed)

    def describe(self) -> str:
        n_g = sum(p.numel() for p in self.generator.parameters())
        return (f"HiFi-GAN generator {n_g} parameters, {len(self.train_data)} train / {len(self.val_items)} val "
                f"files, {self.ctx.world} process(es), batch {self.cfg.batch_size} x "
                f"{self.segment_frames * self.spec.hop_length} samples, schedule {self.cfg.schedule} "
                f"(lr {self.cfg.base_lr:g})")

    def modules(self) -> list[nn.Module]:
        return [self.generator, self.mpd, self.msd]

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
        if resume:
            extra = do.get("canora") or {}
            self.epoch = int(do.get("epoch", 0))
            self.epoch_start = int(extra.get("epoch_start", do.get("steps", 0)))

    def _load_data(self, ctx: Context) -> None:
        cfg = self.cfg
        wavs = Path(cfg.wavs)
        if not wavs.is_dir():
            raise CanoraError(f"{wavs}: --wavs must be a directory of recordings")
        if cfg.train_list:
            train_files = read_filelist(Path(cfg.train_list), wavs)
            val_files = read_filelist(Path(cfg.val_list), wavs) if cfg.val_list else []
        else:
            files = list_audio(wavs)
            if not files:
                raise CanoraError(f"{wavs}: no audio files in this directory")
            train_files, val_files = holdout(files, cfg.val_count)
        val_files = val_files[: cfg.val_files]
        report = LoadReport()
        show = ctx.progress
        mels_dir = Path(cfg.mels) if cfg.mels else None
        source = self.mel_source
        if source is None and cfg.refiner:
            source = RefinerReconstruction(Path(cfg.refiner), cfg.singer, cfg.refiner_strength, cfg.refiner_steps,
                                           cfg.seed)
        if source is not None:  # each rank reconstructs its share of the files
            mels_dir = ctx.out / "refined_mels"
            made = reconstruct_files([*train_files, *val_files], source, mels_dir, self.spec, ctx,
                                     fallback="skipped")
            train_files = [f for f in train_files if f.stem in made]
            val_files = [f for f in val_files if f.stem in made]
        if mels_dir is not None:
            if ctx.is_main:
                check_mel_dir(mels_dir, [f.stem for f in [*train_files, *val_files]], self.spec,
                              cfg.singer if source is None else source.singer)
            train = load_mel_items(train_files, mels_dir, self.spec, self.segment_frames, report=report, progress=show)
            val = load_mel_items(val_files, mels_dir, self.spec, 1, report=report)
        else:
            normalize = True if cfg.peak_normalize is None else cfg.peak_normalize
            cache = Path(cfg.cache_dir) if cfg.cache_dir else ctx.out / "cache"
            train = load_wav_items(train_files, self.spec, self.segment_frames, peak_normalize=normalize,
                                   cache_dir=cache, report=report, progress=show)
            val = load_wav_items(val_files, self.spec, 1, peak_normalize=normalize, cache_dir=cache, report=report)
        if ctx.is_main:
            report.log(self.spec, "train-vocoder", self.segment_frames)
        if not train:
            raise CanoraError(f"{cfg.wavs}: no usable training files left ({len(report.unreadable)} unreadable)")
        self.train_data = SegmentDataset(train, self.spec, self.segment_frames)
        self.val_items: list[Item] = val
        self.report = report

    # -------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"generator": to_official_keys(self.generator.state_dict()), "do": {
            "mpd": disc.to_official_keys(self.mpd.state_dict()), "msd": disc.to_official_keys(self.msd.state_dict()),
            "optim_g": self.opt_g.state_dict(), "optim_d": self.opt_d.state_dict(), "epoch": self.epoch,
            "canora": {"epoch_start": self.epoch_start, "schedule": self.cfg.schedule,
                       "lr": lr_at(self.cfg, max(1, self._step), self.epoch)}}}

    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        gen = from_official_keys(state["generator"])
        check_state_dict(self.generator, gen, source)
        self.generator.load_state_dict(gen, strict=True)
        self._load_do(state["do"], state.get("do_path", source), resume=True)
        if self.ctx.is_main:
            log.info("resumed at epoch %d", self.epoch)

    # -------------------------------------------------------------- one update
    _step = 0

    def _batch_indices(self, step: int) -> list[int]:
        b = self.cfg.batch_size
        self.sampler.set_epoch(self.epoch)
        order = list(iter(self.sampler))
        per_epoch = max(1, len(order) // b)
        if step - self.epoch_start >= per_epoch:
            self.epoch += 1
            self.epoch_start = step
            self.sampler.set_epoch(self.epoch)
            order = list(iter(self.sampler))
        pos = step - self.epoch_start
        return [order[(pos * b + j) % len(order)] for j in range(b)]

    def train_step(self, step: int, gen: torch.Generator, ctx: Context) -> dict[str, float]:
        """One update of the discriminators then the generator (official order); returns the losses."""
        cfg = self.cfg
        idx = self._batch_indices(step)
        mel, y = self.train_data.batch(idx, gen)
        mel, y = mel.to(self.device), y.to(self.device)
        lr = lr_at(cfg, step + 1, self.epoch)
        for opt in (self.opt_g, self.opt_d):
            for g in opt.param_groups:
                g["lr"] = lr
        with torch.no_grad():
            y_mel = mel_spectrogram(y.squeeze(1), self.loss_spec)
        self.g_ddp.train()
        self.mpd_ddp.train()
        self.msd_ddp.train()
        y_hat = self.g_ddp(mel)
        out: dict[str, float] = {}
        adversarial = step >= cfg.recon_steps
        discs = (self.mpd_ddp, self.msd_ddp)
        if adversarial:
            out["loss_disc"] = discriminator_step(ctx, step, discs, self.opt_d, y, y_hat)
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
            ctx.check_finite("generator", step, *parts)
            loss_g, adv, fm = generator_adversarial_backward(ctx, step, discs, y, y_hat, loss_g)
            out["loss_adv"], out["loss_fm"] = float(adv.detach()), float(fm.detach())
        else:
            ctx.check_finite("generator", step, loss_g, *parts)
            loss_g.backward()
        self.opt_g.step()
        self._step = step + 1
        return {"loss_gen_all": float(loss_g.detach()), "loss_mel": float(l_mel.detach()), **out, "lr": lr}

    # -------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self, ctx: Context, step: int) -> dict[str, float]:
        """Mean loss-mel L1 of the generator on the validation files (first ``val_seconds`` of each)."""
        if not self.val_items:
            return {}
        self.generator.eval()
        hop = self.spec.hop_length
        max_frames = max(1, int(self.cfg.val_seconds * self.spec.sample_rate) // hop)
        errs, self.samples = [], []
        for it in self.val_items:
            frames = min(max_frames, it.mel.shape[1])
            mel = torch.from_numpy(it.mel[:, :frames]).to(self.device)[None]
            y = torch.from_numpy(it.audio[: frames * hop]).to(self.device)[None]
            y_hat = self.generator(mel)
            errs.append(float(mel_loss(mel_spectrogram(y, self.loss_spec), y_hat, self.loss_spec)))
            self.samples.append((it.name, y_hat[0, 0].cpu().numpy(), y[0].cpu().numpy()))
        self.generator.train()
        return {"mel_l1": float(np.mean(errs))}

    _logged_real = False

    def log_media(self, writer: Any, step: int) -> None:
        sr = self.spec.sample_rate
        for name, made, real in getattr(self, "samples", [])[:2]:
            writer.add_audio(f"val/{name}/generated", torch.from_numpy(made)[None], step, sr)
            if not self._logged_real:
                writer.add_audio(f"val/{name}/real", torch.from_numpy(real)[None], step, sr)
        self._logged_real = True


def train_vocoder(
    cfg: TrainConfig, out: str | Path, *, progress: bool = True, mel_source: RefinedMelSource | None = None
) -> Path | None:
    """Train (or resume) a HiFi-GAN in ``out``; returns the newest ``g_*`` file (None on ranks > 0).

    ``mel_source`` overrides ``cfg.refiner``: any callable wav -> refined mel (see :class:`RefinedMelSource`).
    """
    from canora.training.loop import Loop

    return Loop(HiFiGANTask(cfg, mel_source=mel_source), out, progress=progress).run()
