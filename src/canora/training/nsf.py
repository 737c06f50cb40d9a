"""Training task of the NSF-HiFi-GAN (F0-driven singing vocoder) on a folder of recordings, on a CPU budget.

Two phases: reconstruction (45 x mel L1 + ``stft_weight`` x multi-resolution STFT, no discriminator), which
converges in minutes on a CPU because the sine source already carries the pitch; then, from ``recon_steps``,
an adversarial phase with narrowed HiFi-GAN discriminators (MPD + MSD, LSGAN, feature matching) for
naturalness. Mel and F0 come from :func:`canora.conditioning.load_features` (the refiner's cache serves the
vocoder too) with the F0 tracker ``f0_method``, which the export records. Validation scores the waveform
artifact metrics of :mod:`canora.dsp.artifacts` beside the mel L1, because a frame-rate buzz is invisible
in mel metrics.

With ``refiner`` (a refiner export) the vocoder learns the mels it is given in a conversion: the refiner
reconstructs each recording (target -> target, at ``refiner_strength`` / ``refiner_steps``, the conversion
defaults unless told; cached in ``OUT/refined_mels``) and a share ``refined_share`` of the crops pairs that
refined mel with the real waveform (the rest the recording's own mel). Validation then runs on refined mels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from canora.dsp.mel import MelSpec, mel_spectrogram
from canora.dsp.pitch import DEFAULT_F0_METHOD
from canora.errors import CanoraError, CheckpointError
from canora.io.audio import list_audio
from canora.refiner.base import DEFAULT_STEPS, DEFAULT_STRENGTH
from canora.training.gan import discriminator_step, generator_adversarial_backward
from canora.training.loop import Context, RunConfig, Task, holdout
from canora.vocoder import discriminators as disc
from canora.vocoder.losses import MEL_WEIGHT, STFT_RESOLUTIONS, mel_loss, multi_resolution_stft_loss
from canora.vocoder.nsf import NSFConfig, NSFGenerator

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class NSFTrainConfig(RunConfig):
    """Everything that defines an NSF vocoder training run (saved in every checkpoint).

    ``recon_steps``: updates without discriminators; after them the adversarial phase starts (None:
    reconstruction only). ``val_count``: held-out files (None: 5 %, at least one, when there are 5 or more;
    0: none). ``stft_resolutions``: (n_fft, hop, win) of the multi-resolution STFT loss; the last, long window
    has 10.8 Hz bins that resolve a comb of lines at the frame rate (86 Hz). ``refiner``: a refiner export whose
    reconstructions of the recordings (for ``singer``) replace the real mel in a share ``refined_share`` of the
    crops (see the module docstring).
    """

    RESUMABLE: ClassVar[frozenset[str]] = RunConfig.RESUMABLE | {"recon_steps"}

    wavs: str
    mel_spec: dict[str, Any] = field(default_factory=lambda: MelSpec().to_dict())
    model: dict[str, Any] = field(default_factory=lambda: NSFConfig().to_dict())
    steps: int = 20_000
    batch_size: int = 8
    segment_frames: int = 32
    lr: float = 5e-4
    lr_decay_steps: int = 20_000  # lr halves every this many steps
    betas: tuple[float, float] = (0.8, 0.99)
    stft_weight: float = 20.0
    stft_resolutions: tuple[tuple[int, int, int], ...] = (*STFT_RESOLUTIONS, (2048, 512, 2048))
    recon_steps: int | None = None
    disc_width_div: int = 4
    val_count: int | None = None
    val_seconds: float = 4.0
    log_every: int = 50
    checkpoint_every: int = 500
    seed: int = 1234
    cache_dir: str | None = None
    f0_method: str = DEFAULT_F0_METHOD
    init_from: str | None = None  # an NSF export to start the generator from (a fresh run only)
    refiner: str | None = None
    singer: str | None = None
    refiner_strength: float = DEFAULT_STRENGTH
    refiner_steps: int = DEFAULT_STEPS
    refined_share: float = 1.0
    highpass_hz: float = 0.0  # the training audio's high-pass (0: none; the CLI's default is dsp.filters.HIGHPASS_HZ)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size < 1 or self.segment_frames < 4:
            raise CanoraError("batch_size >= 1 and segment_frames >= 4 are required")
        if not 0.0 <= self.refined_share <= 1.0:
            raise CanoraError(f"refined_share must be in [0, 1], got {self.refined_share}")
        if self.refiner is not None and not (0.0 < self.refiner_strength <= 1.0 and self.refiner_steps >= 1):
            raise CanoraError("the refiner's reconstruction needs a strength in (0, 1] and at least 1 step")
        if self.disc_width_div not in disc.WIDTH_DIVS:
            raise CanoraError(f"disc_width_div must be one of {disc.WIDTH_DIVS}")
        NSFConfig.from_dict(self.model)  # validates

    @property
    def spec(self) -> MelSpec:
        return MelSpec.from_dict(self.mel_spec)

    @property
    def nsf(self) -> NSFConfig:
        return NSFConfig.from_dict(self.model)


@dataclass
class Clip:
    """One training file: mel (n_mels, T), F0 (T,) Hz with 0 = unvoiced, audio (T * hop,); ``refined``: the
    refiner's reconstruction of the same frames (n_mels, T), or None."""

    name: str
    mel: np.ndarray
    f0: np.ndarray
    audio: np.ndarray
    refined: np.ndarray | None = None


def load_clips(
    files: list[Path], spec: MelSpec, cache_dir: Path | None, progress: bool = True,
    f0_method: str = DEFAULT_F0_METHOD, highpass_hz: float = 0.0,
) -> list[Clip]:
    """Mel, F0 and audio of each file, high-passed at ``highpass_hz`` when > 0 (features cached; unreadable or
    unvoiced files are skipped, said)."""
    from tqdm import tqdm

    from canora.conditioning import FeatureParams, load_features, load_training_audio

    clips = []
    params = FeatureParams(f0_method=f0_method)
    for path in tqdm(files, desc="features", unit="file", disable=not progress):
        try:
            feats = load_features(path, spec, params, cache_dir, highpass_hz)
            audio = load_training_audio(path, spec, highpass_hz)
        except CanoraError as e:
            log.warning("skipping %s: %s", path.name, e)
            continue
        n = feats.frames
        audio = np.pad(audio, (0, max(0, n * spec.hop_length - len(audio))))[: n * spec.hop_length]
        clips.append(Clip(path.stem, feats.mel.astype(np.float32), feats.f0_with_zeros(), audio.astype(np.float32)))
    return clips


def crop_batch(
    clips: list[Clip], indices: list[int], frames: int, spec: MelSpec, generator: torch.Generator,
    refined_share: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> mel (B, n_mels, frames), f0 (B, frames), audio (B, 1, frames * hop); short clips padded with
    the log floor, 0 Hz and silence. A clip with a ``refined`` mel gives it instead of its own mel with
    probability ``refined_share`` (always at 1; a draw from ``generator`` in between)."""
    hop, floor = spec.hop_length, spec.log_floor
    mels, f0s, wavs = [], [], []
    for i in indices:
        c = clips[i]
        n = c.mel.shape[1]
        start = int(torch.randint(0, max(1, n - frames + 1), (1,), generator=generator))
        source = c.mel
        if c.refined is not None and refined_share > 0.0:
            if refined_share >= 1.0 or float(torch.rand((), generator=generator)) < refined_share:
                source = c.refined
        m = source[:, start: start + frames]
        f = c.f0[start: start + frames]
        a = c.audio[start * hop: (start + frames) * hop]
        if m.shape[1] < frames:
            pad = frames - m.shape[1]
            m = np.pad(m, ((0, 0), (0, pad)), constant_values=floor)
            f = np.pad(f, (0, pad))
            a = np.pad(a, (0, frames * hop - len(a)))
        mels.append(m)
        f0s.append(f)
        wavs.append(a)
    return (torch.from_numpy(np.stack(mels)), torch.from_numpy(np.stack(f0s)),
            torch.from_numpy(np.stack(wavs))[:, None])


class NSFTask(Task):
    """The NSF-HiFi-GAN generator (+ discriminators for the adversarial phase) on ``cfg.wavs``."""

    label = "train-vocoder"

    def __init__(self, cfg: NSFTrainConfig) -> None:
        super().__init__(cfg)
        self.cfg: NSFTrainConfig = cfg

    def setup(self, ctx: Context) -> None:
        cfg = self.cfg
        self.spec = cfg.spec
        nsf = cfg.nsf
        if nsf.hop_length != self.spec.hop_length or nsf.sample_rate != self.spec.sample_rate:
            raise CanoraError(f"NSF generator (hop {nsf.hop_length}, {nsf.sample_rate} Hz) does not fit the "
                              f"MelSpec (hop {self.spec.hop_length}, {self.spec.sample_rate} Hz)")
        self.loss_spec = self.spec.for_loss(None)  # full band, as HiFi-GAN's loss mel
        self.device = ctx.device
        self.generator = NSFGenerator.from_config(nsf).to(ctx.device)
        self.mpd = disc.MultiPeriodDiscriminator(width_div=cfg.disc_width_div).to(ctx.device)
        self.msd = disc.MultiScaleDiscriminator(width_div=cfg.disc_width_div).to(ctx.device)
        self.opt_g = torch.optim.AdamW(self.generator.parameters(), cfg.lr, betas=cfg.betas)
        self.opt_d = torch.optim.AdamW([*self.mpd.parameters(), *self.msd.parameters()], cfg.lr, betas=cfg.betas)
        if cfg.init_from and not ctx.resuming:
            self._init_from(Path(cfg.init_from), ctx)
        self.g_ddp, self.mpd_ddp, self.msd_ddp = ctx.wrap(self.generator), ctx.wrap(self.mpd), ctx.wrap(self.msd)
        wavs = Path(cfg.wavs)
        if not wavs.is_dir():
            raise CanoraError(f"{wavs}: --wavs must be a directory of recordings")
        files = list_audio(wavs)
        if not files:
            raise CanoraError(f"{wavs}: no audio files in this directory")
        train_files, val_files = holdout(files, cfg.val_count)
        cache = Path(cfg.cache_dir) if cfg.cache_dir else ctx.out / "cache"
        if ctx.is_main:  # rank 0 fills the cache, the others read it
            self.train = load_clips(train_files, self.spec, cache, ctx.progress, cfg.f0_method, cfg.highpass_hz)
        ctx.barrier()
        if not ctx.is_main:
            self.train = load_clips(train_files, self.spec, cache, False, cfg.f0_method, cfg.highpass_hz)
        self.val = (load_clips(val_files, self.spec, cache, False, cfg.f0_method, cfg.highpass_hz) if ctx.is_main
                    else [])
        if not self.train:
            raise CanoraError(f"{wavs}: no usable training files (all unreadable or without voice)")
        if cfg.refiner:
            self._attach_refined(ctx, [*train_files, *val_files])

    def _attach_refined(self, ctx: Context, files: list[Path]) -> None:
        """Reconstruct every clip with ``cfg.refiner`` (each rank its share; cached in OUT/refined_mels) and
        attach the refined mels; validation clips then score on them. A reconstruction that fails or does
        not match the clip's frames leaves that clip on its real mel (said)."""
        from canora.training.vocoder_data import RefinerReconstruction, reconstruct_files

        cfg = self.cfg
        source = RefinerReconstruction(Path(cfg.refiner), cfg.singer, cfg.refiner_strength, cfg.refiner_steps,
                                       cfg.seed)
        self.singer = source.singer
        out = ctx.out / "refined_mels"
        made = reconstruct_files(files, source, out, self.spec, ctx, fallback="it trains on its real mel")
        for c in [*self.train, *self.val]:
            path = out / f"{c.name}.npy"
            if c.name not in made:
                continue
            mel = np.load(path)
            if mel.shape != c.mel.shape:
                log.warning("%s: the refined mel has shape %s, the clip %s; it trains on its real mel", path,
                            mel.shape, c.mel.shape)
                continue
            c.refined = mel.astype(np.float32)
        for c in self.val:  # validation scores what conversions feed the vocoder
            if c.refined is not None:
                c.mel = c.refined

    def _init_from(self, path: Path, ctx: Context) -> None:
        """The generator starts from an NSF export (its config must be this run's; discriminators stay fresh)."""
        from canora.io.checkpoint import load_export

        doc, state = load_export(path, "nsf-hifigan")
        exported = NSFConfig.from_dict(doc["config"], str(path))
        # the source's voiced noise level has no weights: a fine-tune may change it
        if replace(exported, voiced_noise=self.cfg.nsf.voiced_noise) != self.cfg.nsf:
            raise CanoraError(f"{path}: its NSF config differs from this run's ({exported} vs {self.cfg.nsf}); "
                              "train with the export's config (the CLI does so with --init-from)")
        MelSpec.from_dict(doc["mel_spec"], str(path)).require_same(
            self.spec, f"--init-from {path} vs the run's MelSpec", "train on the export's MelSpec")
        self.generator.load_folded({k: v.to(ctx.device) for k, v in state.items()}, str(path))
        if ctx.is_main:
            log.info("initialised the generator from %s (step %s); discriminators are fresh", path,
                     doc.get("meta", {}).get("trained_steps", "?"))

    def describe(self) -> str:
        n_g = sum(p.numel() for p in self.generator.parameters())
        phase = ("reconstruction losses only" if self.cfg.recon_steps is None
                 else f"adversarial from step {self.cfg.recon_steps}")
        refined = ""
        if self.cfg.refiner:
            n_ref = sum(c.refined is not None for c in self.train)
            refined = (f", {self.cfg.refined_share:.0%} of crops on refined mels of singer {self.singer!r} "
                       f"({n_ref} of {len(self.train)} files reconstructed)")
        return (f"NSF-HiFi-GAN, {n_g} generator parameters, {len(self.train)} train / {len(self.val)} val files, "
                f"batch {self.cfg.batch_size} x {self.cfg.segment_frames} frames, F0 by {self.cfg.f0_method}, "
                f"voiced noise {self.cfg.nsf.voiced_noise:g}, {phase}{refined}")

    def modules(self) -> list[nn.Module]:
        return [self.generator, self.mpd, self.msd]

    def lr_at(self, step: int) -> float:
        return self.cfg.lr * 0.5 ** (step / self.cfg.lr_decay_steps)

    def train_step(self, step: int, gen: torch.Generator, ctx: Context) -> dict[str, float]:
        cfg = self.cfg
        idx = torch.randint(0, len(self.train), (cfg.batch_size,), generator=gen).tolist()
        mel, f0, y = (t.to(ctx.device) for t in crop_batch(self.train, idx, cfg.segment_frames, self.spec, gen,
                                                             cfg.refined_share))
        lr = self.lr_at(step + 1)
        for opt in (self.opt_g, self.opt_d):
            for g in opt.param_groups:
                g["lr"] = lr
        self.g_ddp.train()
        y_hat = self.g_ddp(mel, f0, gen)
        with torch.no_grad():
            y_mel = mel_spectrogram(y.squeeze(1), self.loss_spec)
        out = {}
        adversarial = cfg.recon_steps is not None and step >= cfg.recon_steps
        discs = (self.mpd_ddp, self.msd_ddp)
        if adversarial:
            out["loss_disc"] = discriminator_step(ctx, step, discs, self.opt_d, y, y_hat)
        self.opt_g.zero_grad(set_to_none=True)
        l_mel = mel_loss(y_mel, y_hat, self.loss_spec)
        l_stft = multi_resolution_stft_loss(y, y_hat, cfg.stft_resolutions)
        loss = MEL_WEIGHT * l_mel + cfg.stft_weight * l_stft
        if adversarial:
            loss, adv, fm = generator_adversarial_backward(ctx, step, discs, y, y_hat, loss)
            out["loss_adv"], out["loss_fm"] = float(adv.detach()), float(fm.detach())
        else:
            ctx.check_finite("generator", step, loss)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(self.generator.parameters(), 100.0)
        self.opt_g.step()
        return {"loss": float(loss.detach()), "loss_mel": float(l_mel.detach()), "loss_stft": float(l_stft.detach()),
                **out, "lr": lr}

    @torch.no_grad()
    def validate(self, ctx: Context, step: int) -> dict[str, float]:
        """On the first ``val_seconds`` of each held-out file: full-band mel L1 (``mel_l1``), and the output's
        frame-rate periodicity, frame-rate line level and HNR minus the recording's (``*_excess``), gross pitch
        error by harvest and by Praat (:mod:`canora.dsp.artifacts`)."""
        from canora.dsp import artifacts

        if not self.val:
            return {}
        self.generator.eval()
        sr, hop = self.spec.sample_rate, self.spec.hop_length
        frames = max(1, int(self.cfg.val_seconds * sr) // hop)
        scores: dict[str, list[float]] = {}
        self.samples = []
        for c in self.val:
            n = min(frames, c.mel.shape[1])
            y = torch.from_numpy(c.audio[: n * hop])[None].to(ctx.device)
            y_hat = self.generator(torch.from_numpy(c.mel[:, :n])[None].to(ctx.device),
                                   torch.from_numpy(c.f0[:n])[None].to(ctx.device), torch.Generator().manual_seed(0))
            scores.setdefault("mel_l1", []).append(
                float(mel_loss(mel_spectrogram(y, self.loss_spec), y_hat, self.loss_spec)))
            made = y_hat[0, 0].cpu().numpy()
            out, ref = artifacts.compare(made, c.audio[: n * hop], sr, hop)
            for k, v in (("periodicity_excess", out.frame_rate_periodicity - ref.frame_rate_periodicity),
                         ("frame_rate_line_excess_db", out.frame_rate_line_db - ref.frame_rate_line_db),
                         ("hnr_excess_db", out.hnr_db - ref.hnr_db), ("gpe_harvest", out.gpe_harvest),
                         ("gpe_praat", out.gpe_praat)):
                scores.setdefault(k, []).append(v)
            self.samples.append((c.name, made))
        self.generator.train()
        return {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in scores.items()}

    def log_media(self, writer: Any, step: int) -> None:
        for name, audio in getattr(self, "samples", [])[:2]:
            writer.add_audio(f"val/{name}", torch.from_numpy(audio)[None], step, self.spec.sample_rate)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.state_dict(), "mpd": self.mpd.state_dict(), "msd": self.msd.state_dict(),
                "optim_g": self.opt_g.state_dict(), "optim_d": self.opt_d.state_dict()}

    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        try:
            self.generator.load_state_dict(state["generator"], strict=True)
            self.mpd.load_state_dict(state["mpd"], strict=True)
            self.msd.load_state_dict(state["msd"], strict=True)
            self.opt_g.load_state_dict(state["optim_g"])
            self.opt_d.load_state_dict(state["optim_d"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{source}: does not fit this NSF training run ({str(e).splitlines()[0][:200]})") \
                from None

    def _init_steps(self) -> int:
        """Steps the ``init_from`` export had been trained for (0 if it does not say or is gone)."""
        from canora.io.files import read_json_object

        try:
            steps = read_json_object(Path(self.cfg.init_from) / "model.json", "").get("meta", {}).get("trained_steps")
        except CanoraError:
            return 0
        return steps if isinstance(steps, int) else 0

    def export(self, directory: Path, step: int) -> Path:
        """Slim export of the current generator (weight norm folded) that ``Vocoder.from_pretrained`` reads."""
        from canora.vocoder.api import Vocoder

        gen = NSFGenerator.from_config(self.cfg.nsf)  # a fresh copy: deepcopy would share parametrizations
        gen.load_state_dict(self.generator.state_dict())
        info = {"trained_steps": step, "trained_on": str(self.cfg.wavs), "f0_method": self.cfg.f0_method,
                "highpass_hz": self.cfg.highpass_hz}
        if self.cfg.refiner:
            info["refined_mels"] = {"refiner": str(self.cfg.refiner), "singer": self.singer,
                                    "strength": self.cfg.refiner_strength, "steps": self.cfg.refiner_steps,
                                    "share": self.cfg.refined_share}
        if self.cfg.init_from is not None:  # a fine-tune: count the steps of the export it started from too
            info["trained_steps"] = step + self._init_steps()
            info["fine_tuned_from"] = str(self.cfg.init_from)
        return Vocoder(gen, self.spec, self.cfg.nsf, "training").export(directory, info)


def train_nsf(cfg: NSFTrainConfig, out: str | Path, *, progress: bool = True) -> Path | None:
    """Train (or resume) an NSF-HiFi-GAN in ``out``; returns its newest export directory."""
    from canora.training.loop import Loop

    return Loop(NSFTask(cfg), out, progress=progress).run()
