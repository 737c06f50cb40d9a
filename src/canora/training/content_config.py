"""The settings of a content-encoder training run (:class:`ContentTrainConfig`), apart from the training code
(:mod:`canora.training.content`) so that building the command line imports no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from canora.content.config import ContentNetConfig
from canora.dsp.filters import HIGHPASS_HZ
from canora.dsp.mel import MelSpec
from canora.errors import CanoraError
from canora.training.run_config import RunConfig


@dataclass(frozen=True, kw_only=True)
class ContentTrainConfig(RunConfig):
    """Everything that defines a content-encoder training run (saved in every checkpoint).

    ``units``: k-means teacher units; ``variants``: perturbed copies per file; ``formant``: range of Praat's formant
    shift ratio; ``pitch_semitones``: the median pitch moves by up to this much either way; ``pitch_range``: factor
    on the pitch range; ``eq_db``: random EQ amplitude; weights of the losses: ``invariance_weight``,
    ``adversary_weight`` (0 turns the adversary off; ramped up over ``adversary_warmup`` steps).
    """

    RESUMABLE: ClassVar[frozenset[str]] = RunConfig.RESUMABLE

    mel_spec: dict[str, Any] = field(default_factory=lambda: MelSpec().to_dict())
    model: dict[str, Any] = field(default_factory=lambda: ContentNetConfig().to_dict())
    steps: int = 12_000
    batch_size: int = 16
    crop_frames: int = 128
    lr: float = 1e-3
    lr_decay_steps: int = 6_000
    units: int = 96
    variants: int = 6
    formant: tuple[float, float] = (0.8, 1.25)
    pitch_semitones: float = 7.0
    pitch_range: tuple[float, float] = (0.6, 1.4)
    eq_db: float = 8.0
    level_db: float = 12.0
    clean_share: float = 0.15
    invariance_weight: float = 1.0
    adversary_weight: float = 0.5
    adversary_warmup: int = 2_000
    highpass_hz: float = HIGHPASS_HZ
    val_count: int = 0
    val_every: int = 1000
    checkpoint_every: int = 1000
    log_every: int = 100
    seed: int = 1234

    def __post_init__(self) -> None:
        super().__post_init__()
        problems = []
        if self.batch_size < 2 or self.crop_frames < 16:
            problems.append("batch_size >= 2 and crop_frames >= 16 are required")
        if not 2 <= self.units <= 4096:
            problems.append(f"units={self.units} must be in 2..4096")
        if self.variants < 1:
            problems.append("variants must be >= 1")
        if not (0 < self.formant[0] <= self.formant[1] < 4 and 0 < self.pitch_range[0] <= self.pitch_range[1] < 4):
            problems.append("formant and pitch_range must be increasing ranges of positive factors")
        if not 0.0 <= self.clean_share <= 1.0:
            problems.append("clean_share must be in [0, 1]")
        if min(self.invariance_weight, self.adversary_weight, self.eq_db, self.level_db, self.pitch_semitones) < 0:
            problems.append("weights, eq_db, level_db and pitch_semitones must be >= 0")
        if problems:
            raise CanoraError("invalid content training settings: " + "; ".join(problems))
        ContentNetConfig.from_dict(self.model)

    @property
    def spec(self) -> MelSpec:
        return MelSpec.from_dict(self.mel_spec)

    @property
    def net(self) -> ContentNetConfig:
        return ContentNetConfig.from_dict(self.model)
