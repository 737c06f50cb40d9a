"""``Refiner.from_pretrained(path)``: load a refiner export and refine mels toward a target singer (torch).

Everything but the networks (singers, features, key, the checks and sampling loop of ``refine``) is
:class:`canora.refiner.base.RefinerBase`, shared with the ONNX Runtime refiner
(:class:`canora.refiner.ort.OrtRefiner`, which ``from_pretrained`` returns for an ONNX export).

Modes:

* **conversion**: ``refine_audio(source_wav, sr, singer="pjs", transpose=...)``: the source singer's
  features, the target singer's embedding; shallow diffusion from the source mel (``strength`` < 1) or
  from pure noise (``strength`` = 1).
* **reconstruction**: ``reconstruct(target_wav, sr, singer)``: a singer's own audio with its own id
  (target -> target), whose output distribution a vocoder can be fine-tuned on against the real audio.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from canora.errors import CanoraError, CheckpointError
from canora.io.checkpoint import build_to_fit, load_export, save_export
from canora.refiner.base import (  # noqa: F401  (re-exported: the names callers import from here)
    BACKENDS,
    DEFAULT_SAMPLER,
    DEFAULT_STEPS,
    DEFAULT_STRENGTH,
    EXPORT_KIND,
    REFINER_FORMAT_VERSION,
    RefinerBase,
    RefineResult,
    Singer,
    parse_singer_mix,
    read_refiner_doc,
)
from canora.refiner.model import RefinerModel
from canora.refiner.samplers import get_sampler, sample
from canora.refiner.schedule import DEFAULT_PREDICTION_TYPE

if TYPE_CHECKING:
    from canora.refiner.ort import OrtRefiner


class Refiner(RefinerBase):
    """A trained denoiser (torch) plus everything needed to use it (MelSpec, normalisation, schedule, singers)."""

    backend = "torch"

    def __init__(self, model: RefinerModel, *args: Any, **kwargs: Any) -> None:
        """``model`` and then the arguments of :class:`RefinerBase` after its config (the model's own)."""
        super().__init__(model.config, *args, **kwargs)
        self.model = model.eval()

    @classmethod
    def from_pretrained(
        cls, path: str | Path | None = "bundled", device: str | torch.device = "cpu", backend: str | None = None
    ) -> Refiner | OrtRefiner:
        """Load a slim export directory written by :meth:`export` (or by training), or an ONNX export
        (``canora export``), which then comes back as an :class:`~canora.refiner.ort.OrtRefiner` (ONNX Runtime,
        the same interface); ``"bundled"`` (the default) or None: the refiner shipped with canora.

        ``backend``: ``None`` picks by the export (ONNX export -> ONNX Runtime, else torch); ``"torch"`` refuses
        an ONNX export. Running a torch export on ONNX Runtime is :func:`canora.backends.open_refiner`'s (this
        class never imports an exporter).
        """
        from canora.io.models import resolve_model

        path = resolve_model(path, "refiner")
        from canora.io.onnx import loads_as_onnx_export

        if loads_as_onnx_export(Path(path), "refiner", backend, torch.device(device).type, BACKENDS):
            from canora.refiner.ort import OrtRefiner

            return OrtRefiner.load(path)
        doc, state = load_export(path, EXPORT_KIND)
        cfg, spec, normalizer, schedule, params, meta = read_refiner_doc(path, doc)

        def fits(probe: RefinerModel) -> None:
            expected = set(probe.state_dict())
            if set(state) != expected:
                missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
                raise CheckpointError(
                    f"{path}: weights do not fit the config (missing {missing[:3]}, unexpected {extra[:3]})"
                )
            shapes = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
            wrong = [k for k, v in shapes.items() if v != tuple(state[k].shape)]
            if wrong:
                k = wrong[0]
                raise CheckpointError(f"{path}: weights do not fit the config ({k}: weights "
                                      f"{tuple(state[k].shape)}, config {shapes[k]})")

        model = build_to_fit(lambda: RefinerModel(cfg), state, str(path), fits)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            detail = str(e).splitlines()[-1].strip()
            raise CheckpointError(f"{path}: weights do not fit the config ({detail})") from None
        return cls(
            model.to(device), spec, normalizer, schedule,
            prediction_type=meta.get("prediction_type", DEFAULT_PREDICTION_TYPE),
            singers=meta.get("singers"), singer_f0_stats=meta.get("singer_f0_stats"),
            singer_level_db=meta.get("singer_level_db"),
            feature_params=params, info=meta.get("info"), source=str(path),
        )

    def export(self, directory: str | Path) -> Path:
        """Write a slim export (weights + config + MelSpec + everything in :meth:`export_meta`)."""
        if self.backend != "torch":
            raise CanoraError(f"{self.source}: an ONNX refiner holds no torch weights; export the model it came from")
        return save_export(
            directory, kind=EXPORT_KIND, config=self.model.config.to_dict(), mel_spec=self.spec,
            state_dict=self.model.state_dict(), meta=self.export_meta(),
        )

    def only_singers(self, names: list[str]) -> Refiner:
        """A copy that knows only ``names`` (in that order): the same weights, the singer table cut to their rows,
        their F0 ranges and levels (how a one-voice refiner is cut from a multi-singer one)."""
        from dataclasses import replace

        missing = [n for n in names if n not in self.singers]
        if not names or missing:
            raise CanoraError(f"{self.source}: no singer(s) {missing or names} here; it knows "
                              f"{', '.join(self.singers)}")
        model = RefinerModel(replace(self.model.config, n_singers=len(names)))
        state = dict(self.model.state_dict())
        state["singer.weight"] = state["singer.weight"][[self.singers.index(n) for n in names]]
        model.load_state_dict(state)
        keep = set(names)
        return Refiner(model, self.spec, self.normalizer, self.schedule, prediction_type=self.prediction_type,
                       singers=list(names),
                       singer_f0_stats={k: v for k, v in self.singer_f0_stats.items() if k in keep},
                       singer_level_db={k: v for k, v in self.singer_level_db.items() if k in keep},
                       feature_params=self.feature_params, info=self.info, source=self.source)

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def _run_model(
        self, x0: np.ndarray, cond: dict[str, np.ndarray], singer: int | np.ndarray, *, sampler: str, steps: int,
        strength: float, generator: np.random.Generator,
    ) -> np.ndarray:
        dev = self.device
        with torch.inference_mode():
            t = {k: torch.from_numpy(v).to(dev) for k, v in cond.items()}
            who = (torch.tensor([singer], device=dev) if isinstance(singer, int)
                   else torch.from_numpy(singer[None]).to(dev))
            c = self.model.encode(t["f0"], t["voiced"], t["loudness"], t.get("content"), who)
            out = sample(
                lambda x, ts, cond: self.model.denoise(x, ts, cond), get_sampler(sampler, self.schedule,
                                                                                 self.prediction_type),
                steps=steps, strength=strength, source=torch.from_numpy(x0).to(dev), cond={"cond": c},
                generator=generator,
            )
            return out.float().cpu().numpy()
