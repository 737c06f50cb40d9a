"""Training an NSF-HiFi-GAN (F0-driven singing vocoder) on a folder of recordings, on a CPU budget.

Two phases (DESIGN.md section 7): a reconstruction phase (mel L1 + multi-resolution STFT, no
discriminator) that converges in minutes on a CPU because the sine source already carries the pitch,
then an optional adversarial phase with narrowed HiFi-GAN discriminators (MPD + MSD, LSGAN, feature
matching) for naturalness. Mel and F0 come from :func:`canora.conditioning.load_features`, so a
refiner trained on the same folder shares its feature cache, and the vocoder sees exactly the F0
convention the conversion pipeline gives it (0 Hz = unvoiced).

Run directory ``OUT``::

    OUT/ckpt_00001000   resumable state: generator (+ discriminators), optimizers, step, RNG, train config
    OUT/export/         slim export (model.safetensors + model.json, kind "nsf-hifigan")
    OUT/logs/           TensorBoard; OUT/train_log.jsonl: the same scalars as JSON lines
"""

from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from canora.dsp.mel import MelSpec, mel_spectrogram
from canora.dsp.pitch import DEFAULT_F0_METHOD
from canora.errors import CanoraError, CheckpointError
from canora.io.audio import list_audio, load_audio
from canora.io.checkpoint import load_torch_file, newest, prune, save_torch_file
from canora.vocoder import discriminators as disc
from canora.vocoder.losses import (
    MEL_WEIGHT,
    STFT_RESOLUTIONS,
    discriminator_loss,
    feature_loss,
    generator_loss,
    mel_loss,
    multi_resolution_stft_loss,
)
from canora.vocoder.nsf import NSFConfig, NSFGenerator

log = logging.getLogger(__name__)
STATE_VERSION = 1
RESUMABLE_CHANGES = {"steps", "checkpoint_every", "keep", "val_every", "log_every", "max_minutes", "recon_steps"}


@dataclass(frozen=True)
class NSFTrainConfig:
    """Everything that defines an NSF vocoder training run (saved in every checkpoint).

    ``recon_steps``: updates without discriminators; after them the adversarial phase starts (None:
    reconstruction only). ``stft_weight`` multiplies the multi-resolution STFT loss
    (the mel L1 is weighted 45, as in HiFi-GAN).
    """

    wavs: str
    out: str
    mel_spec: dict[str, Any] = field(default_factory=lambda: MelSpec().to_dict())
    model: dict[str, Any] = field(default_factory=lambda: NSFConfig().to_dict())
    steps: int = 20_000
    batch_size: int = 8
    segment_frames: int = 32
    lr: float = 5e-4
    lr_decay_steps: int = 20_000  # lr halves every this many steps
    betas: tuple[float, float] = (0.8, 0.99)
    stft_weight: float = 20.0
    # (n_fft, hop, win): Parallel WaveGAN's three, plus a long window whose bins (10.8 Hz) resolve a comb of
    # lines at the frame rate (86 Hz) that the shorter ones blur into noise
    stft_resolutions: tuple[tuple[int, int, int], ...] = (*STFT_RESOLUTIONS, (2048, 512, 2048))
    recon_steps: int | None = None
    disc_width_div: int = 4
    val_count: int = 4
    val_seconds: float = 4.0
    val_every: int = 1000
    checkpoint_every: int = 500
    keep: int = 3
    log_every: int = 50
    max_minutes: float = 0.0
    seed: int = 1234
    cache_dir: str | None = None
    f0_method: str = DEFAULT_F0_METHOD  # the tracker that gives the training F0 (and should give it at inference)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.segment_frames < 4 or self.steps < 0:
            raise CanoraError("batch_size >= 1, segment_frames >= 4 and steps >= 0 are required")
        NSFConfig.from_dict(self.model)  # validates

    @property
    def spec(self) -> MelSpec:
        return MelSpec.from_dict(self.mel_spec)

    @property
    def nsf(self) -> NSFConfig:
        return NSFConfig.from_dict(self.model)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        d["stft_resolutions"] = [list(r) for r in self.stft_resolutions]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NSFTrainConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise CheckpointError(f"NSF training config has unknown keys {sorted(unknown)}; written by a newer canora?")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(float(b) for b in d["betas"])
        if "stft_resolutions" in d:
            d["stft_resolutions"] = tuple(tuple(int(v) for v in r) for r in d["stft_resolutions"])
        return cls(**d)


@dataclass
class Clip:
    """One training file: mel (n_mels, T), F0 (T,) Hz with 0 = unvoiced, audio (T * hop,)."""

    name: str
    mel: np.ndarray
    f0: np.ndarray
    audio: np.ndarray


def load_clips(
    files: list[Path], spec: MelSpec, cache_dir: Path | None, progress: bool = True,
    f0_method: str = DEFAULT_F0_METHOD,
) -> list[Clip]:
    """Mel, F0 and audio of each file (features cached; unreadable or unvoiced files are skipped, said)."""
    from tqdm import tqdm

    from canora.conditioning import FeatureParams, load_features

    clips = []
    params = FeatureParams(f0_method=f0_method)
    for path in tqdm(files, desc="features", unit="file", disable=not progress):
        try:
            feats = load_features(path, spec, params, cache_dir)
            audio = load_audio(path, spec.sample_rate)
        except CanoraError as e:
            log.warning("skipping %s: %s", path.name, e)
            continue
        n = feats.frames
        audio = np.pad(audio, (0, max(0, n * spec.hop_length - len(audio))))[: n * spec.hop_length]
        clips.append(Clip(path.stem, feats.mel.astype(np.float32), feats.f0_with_zeros(), audio.astype(np.float32)))
    return clips


def crop_batch(
    clips: list[Clip], indices: list[int], frames: int, spec: MelSpec, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> mel (B, n_mels, frames), f0 (B, frames), audio (B, 1, frames * hop); short clips padded with
    the log floor, 0 Hz and silence."""
    hop, floor = spec.hop_length, spec.log_floor
    mels, f0s, wavs = [], [], []
    for i in indices:
        c = clips[i]
        n = c.mel.shape[1]
        start = int(torch.randint(0, max(1, n - frames + 1), (1,), generator=generator))
        m = c.mel[:, start: start + frames]
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


class NSFTrainer:
    """One run in ``cfg.out``; resumes from its newest ``ckpt_*`` at the exact step."""

    def __init__(self, cfg: NSFTrainConfig, *, progress: bool = True) -> None:
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.resume_from = newest(self.out, "ckpt_")
        self.state: dict[str, Any] | None = None
        if self.resume_from is not None:
            self.state = load_torch_file(self.resume_from)
            saved = NSFTrainConfig.from_dict(json.loads(self.state["train_config"]))
            if cfg.spec != saved.spec:
                cfg.spec.require_same(saved.spec, f"the run in {self.out}", "use a new --out")
            given = {k: v for k, v in asdict(cfg).items()
                     if k in RESUMABLE_CHANGES and not (k == "recon_steps" and v is None)}
            old = asdict(saved)
            ignored = [k for k, v in asdict(cfg).items()
                       if k not in RESUMABLE_CHANGES | {"wavs", "out", "cache_dir"} and v != old[k]]
            if ignored:
                log.warning("resuming %s: keeping its saved %s (only %s may change on resume)", self.out,
                            ", ".join(ignored), ", ".join(sorted(RESUMABLE_CHANGES)))
            cfg = replace(saved, **given, wavs=cfg.wavs, cache_dir=cfg.cache_dir)
        self.cfg = cfg
        self.spec = cfg.spec
        if cfg.nsf.hop_length != self.spec.hop_length or cfg.nsf.sample_rate != self.spec.sample_rate:
            raise CanoraError(f"NSF generator (hop {cfg.nsf.hop_length}, {cfg.nsf.sample_rate} Hz) does not fit the "
                              f"MelSpec (hop {self.spec.hop_length}, {self.spec.sample_rate} Hz)")
        self.loss_spec = self.spec.for_loss(None)  # full band, as HiFi-GAN's loss mel
        torch.manual_seed(cfg.seed)
        self.generator = NSFGenerator.from_config(cfg.nsf)
        self.mpd = disc.MultiPeriodDiscriminator(width_div=cfg.disc_width_div)
        self.msd = disc.MultiScaleDiscriminator(width_div=cfg.disc_width_div)
        self.opt_g = torch.optim.AdamW(self.generator.parameters(), cfg.lr, betas=cfg.betas)
        self.opt_d = torch.optim.AdamW([*self.mpd.parameters(), *self.msd.parameters()], cfg.lr, betas=cfg.betas)
        self.step = 0
        self.last_good: Path | None = self.resume_from
        if self.state is not None:
            self._load(self.state, str(self.resume_from))
            self.state = None
        self._data_ready = False

    # ------------------------------------------------------------------ state
    def _load(self, st: dict[str, Any], source: str) -> None:
        if st.get("format_version", 0) > STATE_VERSION:
            raise CheckpointError(f"{source}: written by a newer canora (state version {st.get('format_version')})")
        try:
            self.generator.load_state_dict(st["generator"], strict=True)
            self.mpd.load_state_dict(st["mpd"], strict=True)
            self.msd.load_state_dict(st["msd"], strict=True)
            self.opt_g.load_state_dict(st["optim_g"])
            self.opt_d.load_state_dict(st["optim_d"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{source}: does not fit this NSF training run ({str(e).splitlines()[0][:200]})") \
                from None
        self.step = int(st["step"])
        torch.set_rng_state(st["rng_torch"])
        log.info("resumed %s at step %d", source, self.step)

    def save_checkpoint(self) -> Path:
        """Atomic ``ckpt_<step>`` (refused when a weight is non-finite); prunes old ones."""
        mods = (self.generator, self.mpd, self.msd)
        if not all(torch.isfinite(p).all() for m in mods for p in m.parameters()):
            raise CanoraError(f"weights became non-finite by step {self.step}; last good checkpoint: {self.last_good}")
        path = self.out / f"ckpt_{self.step:08d}"
        save_torch_file(path, {
            "format_version": STATE_VERSION, "train_config": json.dumps(self.cfg.to_dict()), "step": self.step,
            "generator": self.generator.state_dict(), "mpd": self.mpd.state_dict(), "msd": self.msd.state_dict(),
            "optim_g": self.opt_g.state_dict(), "optim_d": self.opt_d.state_dict(),
            "rng_torch": torch.get_rng_state(),
        })
        prune(self.out, "ckpt_", self.cfg.keep)
        self.last_good = path
        return path

    def export(self, directory: Path | None = None, meta: dict[str, Any] | None = None) -> Path:
        """Slim export of the current generator (weight norm folded) that ``Vocoder.from_pretrained`` reads."""
        from canora.vocoder.api import Vocoder

        gen = NSFGenerator.from_config(self.cfg.nsf)  # a fresh copy: deepcopy would share parametrization classes
        gen.load_state_dict(self.generator.state_dict())
        info = {"trained_steps": self.step, "trained_on": str(self.cfg.wavs), "f0_method": self.cfg.f0_method,
                **(meta or {})}
        return Vocoder(gen, self.spec, self.cfg.nsf, "training").export(directory or self.out / "export", info)

    # ------------------------------------------------------------------ data
    def setup_data(self) -> None:
        if self._data_ready:
            return
        wavs = Path(self.cfg.wavs)
        if not wavs.is_dir():
            raise CanoraError(f"{wavs}: --wavs must be a directory of recordings")
        files = list_audio(wavs)
        if not files:
            raise CanoraError(f"{wavs}: no audio files in this directory")
        n_val = min(self.cfg.val_count, max(0, len(files) - 1))
        train_files, val_files = files[: len(files) - n_val], files[len(files) - n_val:]
        cache = Path(self.cfg.cache_dir) if self.cfg.cache_dir else self.out / "cache"
        self.train = load_clips(train_files, self.spec, cache, self.progress, self.cfg.f0_method)
        self.val = load_clips(val_files, self.spec, cache, False, self.cfg.f0_method)
        if not self.train:
            raise CanoraError(f"{wavs}: no usable training files (all unreadable or without voice)")
        self._data_ready = True

    # ------------------------------------------------------------------ training
    def lr_at(self, step: int) -> float:
        return self.cfg.lr * 0.5 ** (step / self.cfg.lr_decay_steps)

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)
        idx = torch.randint(0, len(self.train), (cfg.batch_size,), generator=gen).tolist()
        mel, f0, y = crop_batch(self.train, idx, cfg.segment_frames, self.spec, gen)
        lr = self.lr_at(self.step + 1)
        for opt in (self.opt_g, self.opt_d):
            for g in opt.param_groups:
                g["lr"] = lr
        self.generator.train()
        y_hat = self.generator(mel, f0, gen)
        with torch.no_grad():
            y_mel = mel_spectrogram(y.squeeze(1), self.loss_spec)
        out = {"lr": lr}
        adversarial = cfg.recon_steps is not None and self.step >= cfg.recon_steps
        if adversarial:
            self.opt_d.zero_grad(set_to_none=True)
            r, g, _, _ = self.mpd(y, y_hat.detach())
            l_d = discriminator_loss(r, g)
            r, g, _, _ = self.msd(y, y_hat.detach())
            l_d = l_d + discriminator_loss(r, g)
            if not torch.isfinite(l_d):
                raise CanoraError(f"discriminator loss became non-finite at step {self.step + 1}; "
                                  f"last good checkpoint: {self.last_good}")
            l_d.backward()
            self.opt_d.step()
            out["loss_disc"] = float(l_d.detach())
        self.opt_g.zero_grad(set_to_none=True)
        l_mel = mel_loss(y_mel, y_hat, self.loss_spec)
        l_stft = multi_resolution_stft_loss(y, y_hat, cfg.stft_resolutions)
        loss = MEL_WEIGHT * l_mel + cfg.stft_weight * l_stft
        if adversarial:
            _, g_f, fr_f, fg_f = self.mpd(y, y_hat)
            _, g_s, fr_s, fg_s = self.msd(y, y_hat)
            adv = generator_loss(g_f) + generator_loss(g_s)
            fm = feature_loss(fr_f, fg_f) + feature_loss(fr_s, fg_s)
            loss = loss + adv + fm
            out["loss_adv"], out["loss_fm"] = float(adv.detach()), float(fm.detach())
        if not torch.isfinite(loss):
            raise CanoraError(f"generator loss became non-finite at step {self.step + 1}; "
                              f"last good checkpoint: {self.last_good}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.generator.parameters(), 100.0)
        self.opt_g.step()
        self.step += 1
        out.update(loss=float(loss.detach()), loss_mel=float(l_mel.detach()), loss_stft=float(l_stft.detach()))
        return out

    @torch.no_grad()
    def validate(self) -> tuple[dict[str, float], list[tuple[str, np.ndarray]]]:
        """Scores on the first ``val_seconds`` of each held-out file, and the audio made: full-band mel L1
        (``mel_l1``) and the waveform artifact metrics of :mod:`canora.dsp.artifacts` (the output's minus the
        recording's frame-rate periodicity and line level, and HNR; gross pitch error by harvest and Praat),
        which hear a frame-rate buzz that the mel L1 cannot."""
        from canora.dsp import artifacts

        self.generator.eval()
        sr, hop = self.spec.sample_rate, self.spec.hop_length
        frames = max(1, int(self.cfg.val_seconds * sr) // hop)
        scores: dict[str, list[float]] = {}
        samples = []
        for c in self.val:
            n = min(frames, c.mel.shape[1])
            y = torch.from_numpy(c.audio[: n * hop])[None]
            y_hat = self.generator(torch.from_numpy(c.mel[:, :n])[None], torch.from_numpy(c.f0[:n])[None],
                                   torch.Generator().manual_seed(0))
            scores.setdefault("mel_l1", []).append(float(mel_loss(mel_spectrogram(y, self.loss_spec), y_hat,
                                                                  self.loss_spec)))
            out, ref = artifacts.compare(y_hat[0, 0].numpy(), c.audio[: n * hop], sr, hop)
            for k, v in (("periodicity_excess", out.frame_rate_periodicity - ref.frame_rate_periodicity),
                         ("frame_rate_line_excess_db", out.frame_rate_line_db - ref.frame_rate_line_db),
                         ("hnr_excess_db", out.hnr_db - ref.hnr_db), ("gpe_harvest", out.gpe_harvest),
                         ("gpe_praat", out.gpe_praat)):
                scores.setdefault(k, []).append(v)
            samples.append((c.name, y_hat[0, 0].numpy()))
        self.generator.train()
        return {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in scores.items()}, samples

    def run(self) -> Path:
        """Train to ``steps`` (or ``max_minutes``, or SIGTERM/SIGINT), checkpointing; returns the export dir."""
        import sys

        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        self.setup_data()
        cfg = self.cfg
        writer = SummaryWriter(str(self.out / "logs"), purge_step=self.step or None)
        n_g = sum(p.numel() for p in self.generator.parameters())
        log.info("train-vocoder (nsf): %d generator parameters, %d train / %d val files, batch %d x %d frames, "
                 "step %d -> %d (%s)", n_g, len(self.train), len(self.val), cfg.batch_size, cfg.segment_frames,
                 self.step, cfg.steps, "reconstruction losses only" if cfg.recon_steps is None
                 else f"adversarial from step {cfg.recon_steps}")
        stop = {"now": False}

        def _handler(signum: int, frame: Any) -> None:
            stop["now"] = True

        old = {s: signal.signal(s, _handler) for s in (signal.SIGTERM, signal.SIGINT)}
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train-vocoder", unit="step",
                   disable=not self.progress, mininterval=0.5 if sys.stderr.isatty() else 60.0)
        t0 = time.monotonic()
        running: list[dict[str, float]] = []
        saved_at = self.step
        try:
            while self.step < cfg.steps:
                running.append(self.train_step())
                bar.update(1)
                if cfg.log_every and self.step % cfg.log_every == 0:
                    mean = {k: float(np.mean([r[k] for r in running if k in r])) for k in running[-1]}
                    running = []
                    self._log(writer, {f"train/{k}": v for k, v in mean.items()})
                    bar.set_postfix(mel=f"{mean['loss_mel']:.3f}")
                if cfg.val_every and self.step % cfg.val_every == 0 and self.val:
                    scores, samples = self.validate()
                    self._log(writer, {f"val/{k}": v for k, v in scores.items()})
                    for name, audio in samples[:2]:
                        writer.add_audio(f"val/{name}", torch.from_numpy(audio)[None], self.step,
                                         self.spec.sample_rate)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                    self.export()
                    saved_at = self.step
                if stop["now"] or (cfg.max_minutes and time.monotonic() - t0 >= 60 * cfg.max_minutes):
                    log.info("stopping at step %d (%s)", self.step, "signal" if stop["now"] else "max_minutes")
                    break
            if saved_at != self.step:
                self.save_checkpoint()
                self.export()
        finally:
            bar.close()
            for s, h in old.items():
                signal.signal(s, h)
            writer.close()
        return self.out / "export"

    def _log(self, writer: Any, scalars: dict[str, float]) -> None:
        from canora.vocoder.train import log_scalars

        log_scalars(writer, self.out, self.step, scalars)


def train_nsf(cfg: NSFTrainConfig, *, progress: bool = True) -> Path:
    """Train (or resume) an NSF-HiFi-GAN in ``cfg.out``; returns its export directory."""
    return NSFTrainer(cfg, progress=progress).run()
