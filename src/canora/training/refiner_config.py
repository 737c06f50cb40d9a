"""The configuration of a refiner training run (:class:`RefinerTrainConfig`), torch-free: the command line reads
its defaults to build ``canora train-refiner``'s options, and ``canora --help`` should not import torch for that.
The training task is :mod:`canora.training.refiner`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from canora.conditioning import FeatureParams
from canora.dsp.mel import MelSpec
from canora.errors import CanoraError
from canora.refiner.config import RefinerConfig
from canora.refiner.schedule import LOSS_WEIGHTINGS
from canora.training.augment import TimbrePerturbation
from canora.training.run_config import RunConfig


@dataclass(frozen=True, kw_only=True)
class RefinerTrainConfig(RunConfig):
    """Everything that defines a refiner training run (saved with every checkpoint)."""

    RENAMED: ClassVar[dict[str, str]] = {"ckpt_every": "checkpoint_every"}

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
    val_frames: int = 600  # validate on the first this many frames of each held-out file
    val_steps: int = 10
    val_strength: float = 0.5
    val_sampler: str = "dpmpp"
    # timbre perturbation of the conditioning (canora.training.augment): perturbed copies per training file,
    # the share of crops that use one, the frequency-warp range and the largest EQ gain
    timbre_variants: int = 4
    timbre_prob: float = 0.75
    timbre_warp: tuple[float, float] = (0.85, 1.18)
    timbre_eq_db: float = 6.0
    # a refiner export to start from (fine-tuning; "bundled" = canora's): its architecture, MelSpec, features,
    # normalisation and content statistics are kept; a singer the base has (same name) keeps its embedding, each
    # new singer starts at the mean of the base's singer embeddings
    init_from: str | None = None
    # a refiner export whose denoiser seeds a run with other features (another content encoder): every weight
    # whose shape fits is copied, the F0 / voicing / loudness inputs of the conditioning too, the content inputs
    # start fresh, every singer at the mean of the export's singers; this run's own MelSpec and features
    warm_start: str | None = None
    # crops are drawn per singer in proportion to (its minutes) ** singer_balance (1: by length, as files are;
    # 0: every singer as often), and within a singer by file length
    singer_balance: float = 1.0
    highpass_hz: float = 0.0  # the training audio's high-pass (dsp.filters; 0 = none)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init_from and self.warm_start:
            raise CanoraError("give --init-from (fine-tune, same features) or --warm-start (other features), not both")
        if not 0.0 <= self.singer_balance <= 1.0:
            raise CanoraError(f"singer_balance={self.singer_balance} must be in [0, 1]")
        if self.batch_size < 1 or self.crop_frames < 8:
            raise CanoraError("batch_size >= 1 and crop_frames >= 8 are required")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise CanoraError(f"loss_weighting={self.loss_weighting!r} must be one of {', '.join(LOSS_WEIGHTINGS)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise CanoraError(f"ema_decay={self.ema_decay} must be in [0, 1)")
        RefinerConfig.preset(self.model)  # validates the name
        if self.timbre_variants < 0 or not 0.0 <= self.timbre_prob <= 1.0:
            raise CanoraError("timbre_variants must be >= 0 and timbre_prob in [0, 1]")
        if not 0 < self.timbre_warp[0] <= self.timbre_warp[1]:
            raise CanoraError(f"timbre_warp {self.timbre_warp} must be 0 < low <= high")

    @classmethod
    def upgrade(cls, d: dict[str, Any]) -> dict[str, Any]:
        """canora 0.1: ``ckpt_every`` (now ``checkpoint_every``); exports followed a clock
        (``export_every_minutes``), now every checkpoint; no timbre perturbation."""
        d = super().upgrade(d)
        d.pop("export_every_minutes", None)
        d.setdefault("timbre_variants", 0)
        return d

    @property
    def perturbation(self) -> TimbrePerturbation:
        return TimbrePerturbation(self.timbre_variants, self.timbre_warp, self.timbre_eq_db, self.seed)

    @property
    def spec(self) -> MelSpec:
        return MelSpec.from_dict(self.mel_spec)

    @property
    def feature_params(self) -> FeatureParams:
        return FeatureParams.from_dict(self.features)
