"""Training task of the learned content encoder: the words of a recording without the singer.

No phoneme labels and no pretrained speech model exist here, so the encoder learns from the audio itself, with
the recipe of ContentVec (Qian et al. 2022) and NANSY (Choi et al. 2021) at CPU scale:

* **teacher units**: every frame of the clean training audio gets the label of its nearest k-means centroid of a
  DSP content feature (mel-cepstra 1-19 normalised per recording, with their deltas:
  :class:`canora.dsp.content.CepstralContent`), fitted once over all training singers;
* **perturbed inputs**: the encoder reads not the clean recording but a copy whose singer has been changed: Praat's
  PSOLA "Change gender" moves the formants (vocal-tract length) and the pitch (median and range) by random
  amounts (``variants`` copies per file, cached), and a random smooth EQ and level are applied on the fly. It must
  still name the clean frame's unit, so it learns to ignore what the perturbation changes;
* **invariance**: two differently perturbed views of the same crop must give the same content (mean squared
  distance of the normalised features);
* **singer adversary**: a classifier of the training singer from the content, per frame and per crop (the mean
  and spread of a ~1.5 s crop, as a singer-identification probe reads it), trained through a gradient-reversal
  layer, so the content is pushed to carry no cue it can use.

``benchmarks/content_identity.py`` measures the result against the DSP feature: singer identification by window
and frame on singers the encoder never heard, phoneme accuracy, and speed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from canora.content.model import ContentNet
from canora.dsp.mel import MelSpec
from canora.errors import CanoraError, CheckpointError
from canora.training.content_config import ContentTrainConfig
from canora.training.loop import Context, Task

log = logging.getLogger(__name__)

#: bump when the cached data (mels, variants, teacher features) change meaning
DATA_VERSION = 1


# ---------------------------------------------------------------------- data
@dataclass
class Recording:
    """One training file: clean log-mel (n_mels, T), its perturbed copies (V, n_mels, T), teacher feature (T, F)
    and (once fitted) teacher units (T,), the singer's index."""

    name: str
    singer: int
    mel: np.ndarray
    variants: np.ndarray
    teacher: np.ndarray
    units: np.ndarray | None = None


def teacher_feature(wav: np.ndarray, spec: MelSpec) -> np.ndarray:
    """(T, 38) float32: the DSP content feature (cepstra 1-19, normalised per recording) and its deltas."""
    from canora.dsp.content import CepstralContent

    n = spec.num_frames(len(wav))
    c = CepstralContent().extract(wav, spec.sample_rate, spec.hop_length, n)
    pad = np.pad(c, ((2, 2), (0, 0)), mode="edge")
    delta = (2 * (pad[4:] - pad[:-4]) + (pad[3:-1] - pad[1:-3])) / 10.0
    return np.concatenate([c, delta], axis=1).astype(np.float32)


def change_voice(wav: np.ndarray, sr: int, rng: np.random.Generator, cfg: ContentTrainConfig) -> np.ndarray:
    """A copy of ``wav`` (N,) sung by "another singer": Praat's Change gender with a random formant shift ratio,
    median pitch (up to ``cfg.pitch_semitones`` either way) and pitch range; same length (N,) float32."""
    import parselmouth
    from parselmouth.praat import call

    snd = parselmouth.Sound(np.asarray(wav, dtype=np.float64), sr)
    formant = float(np.exp(rng.uniform(np.log(cfg.formant[0]), np.log(cfg.formant[1]))))
    shift = float(rng.uniform(-cfg.pitch_semitones, cfg.pitch_semitones))
    spread = float(rng.uniform(*cfg.pitch_range))
    try:
        pitch = snd.to_pitch_ac(time_step=0.01, pitch_floor=60.0, pitch_ceiling=1100.0)
        median = call(pitch, "Get quantile", 0, 0, 0.5, "Hertz")
    except parselmouth.PraatError:
        median = float("nan")
    new_median = float(median) * 2 ** (shift / 12) if np.isfinite(median) and median > 0 else 0.0
    try:
        out = call(snd, "Change gender", 60.0, 1100.0, formant, new_median, spread, 1.0).values[0]
    except parselmouth.PraatError as e:
        raise CanoraError(f"Praat could not change the voice ({str(e).splitlines()[0]})") from None
    out = np.nan_to_num(np.asarray(out, dtype=np.float32))
    return np.pad(out, (0, max(0, len(wav) - len(out))))[: len(wav)]


def _fit(mel: np.ndarray, frames: int, floor: float) -> np.ndarray:
    if mel.shape[1] >= frames:
        return mel[:, :frames]
    return np.pad(mel, ((0, 0), (0, frames - mel.shape[1])), constant_values=floor)


def prepare_recording(path: str, singer: int, cfg: ContentTrainConfig, cache: Path) -> Recording:
    """Clean mel, perturbed copies and teacher feature of one file (cached under ``cache``)."""
    from canora.conditioning import _file_digest, load_training_audio
    from canora.dsp.mel import wav_to_mel
    from canora.io.files import atomic_write_with

    spec = cfg.spec
    doc = {"v": DATA_VERSION, "spec": spec.to_dict(), "hp": cfg.highpass_hz, "variants": cfg.variants,
           "formant": list(cfg.formant), "pitch": cfg.pitch_semitones, "range": list(cfg.pitch_range),
           "seed": cfg.seed, "file": _file_digest(Path(path))}
    key = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]
    file = cache / f"{Path(path).stem}.{key}.content.npz"
    if file.is_file():
        try:
            with np.load(file, allow_pickle=False) as z:
                return Recording(Path(path).stem, singer, z["mel"], z["variants"], z["teacher"])
        except (OSError, ValueError, KeyError) as e:
            log.warning("%s: unreadable cache entry (%s); recomputing", file, e)
    wav = load_training_audio(path, spec, cfg.highpass_hz)
    mel = wav_to_mel(wav, spec)
    frames = mel.shape[1]
    seed = int(hashlib.sha256(f"{cfg.seed}:{Path(path).name}".encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    variants = np.stack([_fit(wav_to_mel(change_voice(wav, spec.sample_rate, rng, cfg), spec), frames,
                              spec.log_floor) for _ in range(cfg.variants)])
    teacher = teacher_feature(wav, spec)
    teacher = np.pad(teacher, ((0, max(0, frames - len(teacher))), (0, 0)), mode="edge")[:frames]
    rec = Recording(Path(path).stem, singer, mel.astype(np.float32), variants.astype(np.float32), teacher)
    atomic_write_with(file, lambda f: np.savez(f, mel=rec.mel, variants=rec.variants, teacher=rec.teacher))
    return rec


def active(mel: np.ndarray, below_peak_db: float = 50.0) -> np.ndarray:
    """Frames (T,) whose log-mel energy is within ``below_peak_db`` of the recording's loudest."""
    e = np.log(np.exp(mel.astype(np.float64)).sum(axis=0) + 1e-12)
    return e > e.max() - below_peak_db / 8.686


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 30) -> np.ndarray:
    """Centroids (k, F) of ``x`` (N, F) by k-means++ initialisation and Lloyd iterations."""
    n = len(x)
    if n < k:
        raise CanoraError(f"{n} frames are too few for {k} teacher units; give more audio or fewer --units")
    cent = [x[rng.integers(n)]]
    d2 = ((x - cent[0]) ** 2).sum(1)
    for _ in range(1, k):
        cent.append(x[rng.choice(n, p=d2 / d2.sum())])
        d2 = np.minimum(d2, ((x - cent[-1]) ** 2).sum(1))
    c = np.stack(cent)
    for _ in range(iters):
        lab = assign(x, c)
        for j in range(k):
            members = x[lab == j]
            c[j] = members.mean(0) if len(members) else x[rng.integers(n)]
    return c.astype(np.float32)


def assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index (N,) of the nearest centroid of each row of ``x`` (N, F)."""
    out = np.empty(len(x), np.int64)
    c2 = (centroids ** 2).sum(1)
    for a in range(0, len(x), 20000):
        b = x[a: a + 20000]
        out[a: a + 20000] = np.argmin(c2[None] - 2 * b @ centroids.T, axis=1)
    return out


def random_eq(n_mels: int, gen: torch.Generator, max_db: float) -> Tensor:
    """A smooth random gain curve over the mel bands (n_mels,), in natural-log (log-mel) units."""
    u = torch.linspace(0, 1, n_mels)
    curve = torch.zeros(n_mels)
    for j in range(1, 5):
        a = float(torch.randn((), generator=gen)) * max_db / 3 / j
        ph = float(torch.rand((), generator=gen)) * 2 * np.pi
        curve += a * torch.cos(np.pi * j * u + ph)
    return curve.clamp(-max_db, max_db) / 8.686  # dB (20 log10) -> ln of magnitude


# ---------------------------------------------------------------------- heads
class GradReverse(torch.autograd.Function):
    """Identity forward; gradient times ``-scale`` backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.scale * grad, None


class Heads(nn.Module):
    """Training-only heads on the content (B, D, T): teacher-unit logits (B, K, T), singer logits per frame
    (B, S, T) and per crop (B, S)."""

    def __init__(self, dim: int, units: int, singers: int) -> None:
        super().__init__()
        self.units = nn.Conv1d(dim, units, 1)
        self.frame_singer = nn.Sequential(nn.Conv1d(dim, 128, 1), nn.ReLU(), nn.Conv1d(128, singers, 1))
        self.crop_singer = nn.Sequential(nn.Linear(2 * dim, 128), nn.ReLU(), nn.Linear(128, singers))

    def forward(self, z: Tensor, reverse: float) -> tuple[Tensor, Tensor, Tensor]:
        zr = GradReverse.apply(z, reverse)
        stats = torch.cat([zr.mean(dim=2), zr.std(dim=2)], dim=1)
        return self.units(z), self.frame_singer(zr), self.crop_singer(stats)


def normalise(z: Tensor) -> Tensor:
    """Each frame's content (B, D, T) scaled to unit RMS over D (the invariance loss compares directions)."""
    return z / z.pow(2).mean(dim=1, keepdim=True).add(1e-6).sqrt()


# ---------------------------------------------------------------------- the task
class ContentTask(Task):
    """The content encoder on folders of recordings (one folder per singer)."""

    label = "train-content"

    def __init__(self, cfg: ContentTrainConfig, data_dirs: Sequence[str | Path] = (), *,
                 singers: Sequence[str] | None = None, cache_dir: str | Path | None = None) -> None:
        super().__init__(cfg)
        self.cfg: ContentTrainConfig = cfg
        self.data_dirs = list(data_dirs)
        self.singer_names = singers
        self.cache_dir = cache_dir

    def setup(self, ctx: Context) -> None:
        from tqdm import tqdm

        from canora.training.refiner import build_manifest

        cfg = self.cfg
        if ctx.world > 1:
            raise CanoraError("train-content runs in one process (its data is small); start it without torchrun")
        manifest = build_manifest(self.data_dirs, cfg.val_count, self.singer_names)
        self.singers = list(manifest.singers)
        cache = Path(self.cache_dir) if self.cache_dir else ctx.out / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        recs: dict[str, list[Recording]] = {"train": [], "val": []}
        items = [("train", p, s) for p, s in manifest.train] + [("val", p, s) for p, s in manifest.val]
        for part, path, singer in tqdm(items, desc="perturbed copies", unit="file", disable=not ctx.progress):
            try:
                recs[part].append(prepare_recording(path, singer, cfg, cache))
            except CanoraError as e:
                log.warning("skipping %s: %s", path, e)
        self.train, self.val = recs["train"], recs["val"]
        if not self.train:
            raise CanoraError("no usable training files")
        self.centroids = self._teacher(ctx.out)
        for r in [*self.train, *self.val]:
            r.units = assign(r.teacher, self.centroids)
        # draw crops per singer evenly (each singer's files in proportion to their length), so PJS's 22 minutes do
        # not drown the others
        lengths = np.array([r.mel.shape[1] for r in self.train], np.float64)
        per_singer = {s: lengths[[r.singer == s for r in self.train]].sum() for s in {r.singer for r in self.train}}
        w = np.array([lengths[i] / per_singer[r.singer] for i, r in enumerate(self.train)])
        self.weights = torch.from_numpy(w / w.sum())
        self.net = ContentNet(cfg.net).to(ctx.device)
        self.heads = Heads(cfg.net.dim, cfg.units, len(self.singers)).to(ctx.device)
        self.opt = torch.optim.AdamW([*self.net.parameters(), *self.heads.parameters()], cfg.lr, weight_decay=1e-4)

    def _teacher(self, out: Path) -> np.ndarray:
        """The teacher units' centroids: fitted once on the training files' active frames, kept in the run."""
        path = out / "teacher_units.npy"
        if path.is_file():
            c = np.load(path)
            if c.shape == (self.cfg.units, self.train[0].teacher.shape[1]):
                return c
        from canora.io.files import atomic_save_npy

        rng = np.random.default_rng(self.cfg.seed)
        frames = np.concatenate([r.teacher[active(r.mel)] for r in self.train])
        if len(frames) > 150_000:
            frames = frames[rng.choice(len(frames), 150_000, replace=False)]
        c = kmeans(frames, self.cfg.units, rng)
        atomic_save_npy(path, c)
        return c

    def describe(self) -> str:
        n = sum(p.numel() for p in self.net.parameters())
        cfg = self.cfg
        return (f"content encoder, {n} parameters (dim {cfg.net.dim}, context +-{cfg.net.context} frames), "
                f"{len(self.singers)} singers, {len(self.train)} train / {len(self.val)} val files, {cfg.units} "
                f"teacher units, {cfg.variants} perturbed copies per file, invariance {cfg.invariance_weight:g}, "
                f"adversary {cfg.adversary_weight:g}")

    def modules(self) -> list[nn.Module]:
        return [self.net, self.heads]

    def lr_at(self, step: int) -> float:
        return self.cfg.lr * 0.5 ** (step / self.cfg.lr_decay_steps)

    def _view(self, r: Recording, start: int, gen: torch.Generator) -> Tensor:
        """One perturbed view (n_mels, F) of frames ``start:start + F`` of ``r``: a changed voice (or the clean
        recording, with ``clean_share``), a random EQ and level."""
        cfg = self.cfg
        f = cfg.crop_frames
        if float(torch.rand((), generator=gen)) < cfg.clean_share:
            src = r.mel
        else:
            src = r.variants[int(torch.randint(0, len(r.variants), (1,), generator=gen))]
        m = torch.from_numpy(_fit(src[:, start: start + f], f, cfg.spec.log_floor))
        level = (float(torch.rand((), generator=gen)) * 2 - 1) * cfg.level_db / 8.686
        return m + random_eq(m.shape[0], gen, cfg.eq_db)[:, None] + level

    def batch(self, recs: list[Recording], idx: list[int], gen: torch.Generator
              ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """-> view a (B, n_mels, F), view b (B, n_mels, F), units (B, F) (-1 = padding), singers (B,)."""
        f = self.cfg.crop_frames
        va, vb, units, singers = [], [], [], []
        for i in idx:
            r = recs[i]
            n = r.mel.shape[1]
            start = int(torch.randint(0, max(1, n - f + 1), (1,), generator=gen))
            va.append(self._view(r, start, gen))
            vb.append(self._view(r, start, gen))
            u = torch.from_numpy(r.units[start: start + f])
            units.append(torch.nn.functional.pad(u, (0, f - len(u)), value=-1))
            singers.append(r.singer)
        return torch.stack(va), torch.stack(vb), torch.stack(units), torch.tensor(singers)

    def losses(self, a: Tensor, b: Tensor, units: Tensor, singers: Tensor, reverse: float
               ) -> dict[str, Tensor]:
        x = torch.cat([a, b])
        z = self.net(x)
        logits, frame_s, crop_s = self.heads(z, reverse)
        u = torch.cat([units, units])
        s = torch.cat([singers, singers])
        ce = nn.functional.cross_entropy(logits, u, ignore_index=-1)
        za, zb = normalise(z).chunk(2)
        inv = (za - zb).pow(2).mean()
        adv_frame = nn.functional.cross_entropy(frame_s, s[:, None].expand(-1, frame_s.shape[2]))
        adv_crop = nn.functional.cross_entropy(crop_s, s)
        acc = (logits.argmax(1) == u)[u >= 0].float().mean()
        return {"unit_ce": ce, "invariance": inv, "adv_frame": adv_frame, "adv_crop": adv_crop, "unit_acc": acc,
                "frame_singer_acc": (frame_s.argmax(1) == s[:, None]).float().mean(),
                "crop_singer_acc": (crop_s.argmax(1) == s).float().mean()}

    def train_step(self, step: int, gen: torch.Generator, ctx: Context) -> dict[str, float]:
        cfg = self.cfg
        idx = torch.multinomial(self.weights, cfg.batch_size, replacement=True, generator=gen).tolist()
        a, b, units, singers = (t.to(ctx.device) for t in self.batch(self.train, idx, gen))
        lr = self.lr_at(step + 1)
        for g in self.opt.param_groups:
            g["lr"] = lr
        ramp = min(1.0, (step + 1) / max(1, cfg.adversary_warmup))
        self.net.train()
        self.heads.train()
        out = self.losses(a, b, units, singers, reverse=cfg.adversary_weight * ramp)
        # the reversal layer scales the adversary's gradient into the encoder; its heads learn at full rate
        loss = out["unit_ce"] + cfg.invariance_weight * out["invariance"]
        if cfg.adversary_weight > 0:
            loss = loss + out["adv_frame"] + out["adv_crop"]
        ctx.check_finite("content encoder", step, loss)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*self.net.parameters(), *self.heads.parameters()], 10.0)
        self.opt.step()
        return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in out.items()}, "lr": lr}

    @torch.no_grad()
    def validate(self, ctx: Context, step: int) -> dict[str, float]:
        """On held-out files, fixed crops: unit accuracy on clean input and on perturbed input, invariance, and
        how well the (training) singer heads still tell singers apart."""
        if not self.val:
            return {}
        self.net.eval()
        self.heads.eval()
        gen = torch.Generator().manual_seed(0)
        idx = [i % len(self.val) for i in range(max(len(self.val), 32))]
        a, b, units, singers = self.batch(self.val, idx, gen)
        out = {k: float(v) for k, v in self.losses(a, b, units, singers, 0.0).items()}
        clean = torch.stack([torch.from_numpy(_fit(self.val[i].mel[:, :self.cfg.crop_frames], self.cfg.crop_frames,
                                                   self.cfg.spec.log_floor)) for i in idx])
        u_clean = torch.stack([torch.nn.functional.pad(torch.from_numpy(self.val[i].units[:self.cfg.crop_frames]),
                                                       (0, self.cfg.crop_frames - len(self.val[i].units[
                                                           :self.cfg.crop_frames])), value=-1) for i in idx])
        logits = self.heads.units(self.net(clean))
        out["unit_acc_clean"] = float((logits.argmax(1) == u_clean)[u_clean >= 0].float().mean())
        self.net.train()
        self.heads.train()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "heads": self.heads.state_dict(), "opt": self.opt.state_dict(),
                "singers": self.singers}

    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        try:
            self.net.load_state_dict(state["net"], strict=True)
            self.heads.load_state_dict(state["heads"], strict=True)
            self.opt.load_state_dict(state["opt"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{source}: does not fit this content training run "
                                  f"({str(e).splitlines()[0][:200]})") from None
        if list(state.get("singers", self.singers)) != self.singers:
            raise CheckpointError(f"{source}: trained on singers {state.get('singers')}, this run has "
                                  f"{self.singers}; give the same data folders")

    def export(self, directory: Path, step: int) -> Path:
        """Slim export: ``model.json`` (kind ``content-encoder``, config, MelSpec, recipe) + ``model.safetensors``."""
        from canora.content.learned import KIND
        from canora.io.checkpoint import save_export

        cfg = self.cfg
        meta = {"trained_steps": step, "singers": self.singers, "train_files": len(self.train),
                "recipe": {"units": cfg.units, "variants": cfg.variants, "formant": list(cfg.formant),
                           "pitch_semitones": cfg.pitch_semitones, "pitch_range": list(cfg.pitch_range),
                           "eq_db": cfg.eq_db, "invariance_weight": cfg.invariance_weight,
                           "adversary_weight": cfg.adversary_weight, "highpass_hz": cfg.highpass_hz}}
        return save_export(directory, kind=KIND, config=cfg.net.to_dict(), mel_spec=cfg.spec,
                           state_dict=self.net.state_dict(), meta=meta)


def train_content(cfg: ContentTrainConfig, data_dirs: Sequence[str | Path], out: str | Path, *,
                  singers: Sequence[str] | None = None, cache_dir: str | Path | None = None,
                  progress: bool = True) -> Path | None:
    """Train (or resume) a content encoder in ``out`` on one folder per singer; returns its newest export."""
    from canora.training.loop import Loop

    task = ContentTask(cfg, data_dirs, singers=singers, cache_dir=cache_dir)
    return Loop(task, out, progress=progress).run()
