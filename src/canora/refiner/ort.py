"""The refiner on ONNX Runtime without torch: :class:`OrtRefiner` runs an ONNX export (``canora export``; its
graphs are described in :mod:`canora.refiner.onnx`) with numpy around the two sessions: the conditioning encoder
once per refinement, the denoiser once per sampler step, the samplers and normalisation in numpy
(:func:`canora.refiner.samplers.sample_numpy`). Nothing here imports torch, so a process that converts with ONNX
exports never loads it; the noise comes from the same numpy generator as on torch, so one seed gives the same
refinement on both backends (to float32 rounding).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from canora.errors import CanoraError, CheckpointError
from canora.io.onnx import CPU, ONNX_FILE, check_io, make_session, read_graph, read_onnx_export
from canora.refiner.base import EXPORT_KIND, RefinerBase, read_refiner_doc
from canora.refiner.config import RefinerConfig
from canora.refiner.samplers import get_sampler, sample_numpy

ENCODER_FILE = "encoder.onnx"


def encoder_inputs(cfg: RefinerConfig, weights: bool = True) -> list[str]:
    """Input names of the conditioning encoder graph: the singer as ``singer_weights`` (B, n_singers), or, in exports
    written before mixes ran on ONNX Runtime, as ``singer`` (B,) indices."""
    return ["f0", "voiced", "loudness", "singer_weights" if weights else "singer"] + (
        ["content"] if cfg.content_dim else [])


def _np(x: Any, dtype: Any = np.float32) -> np.ndarray:
    """A numpy array of ``x`` (numpy, or a CPU torch tensor) in ``dtype``, contiguous."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=dtype)


def _like(out: np.ndarray, x: Any) -> Any:
    """``out`` as a torch tensor when ``x`` is one (callers comparing with a torch model), else numpy."""
    if hasattr(x, "detach"):
        import torch

        return torch.from_numpy(out)
    return out


class OrtRefinerModel:
    """The two refiner networks on ONNX Runtime, with :class:`~canora.refiner.model.RefinerModel`'s ``encode`` /
    ``denoise`` calls on numpy arrays (torch tensors in give torch tensors out)."""

    backend = "onnx"

    def __init__(self, config: RefinerConfig, encoder: Any, denoiser: Any, source: str = "") -> None:
        self.takes_weights = "singer" not in {i.name for i in encoder.get_inputs()}
        check_io(encoder, encoder_inputs(config, self.takes_weights), ["cond"], f"{source} ({ENCODER_FILE})")
        check_io(denoiser, ["x", "t", "cond"], ["out"], f"{source} ({ONNX_FILE})")
        self.config = config
        self.encoder = encoder
        self.denoiser = denoiser
        self.source = source

    def encode(self, f0: Any, voiced: Any, loudness: Any, content: Any | None, singer: Any) -> Any:
        """f0, voiced, loudness (B, T); content (B, content_dim, T) or None; singer (B,) int indices or (B, n_singers)
        weights over the singer embeddings (a mix) -> cond (B, layers * 2C, T)."""
        feeds = {"f0": _np(f0), "voiced": _np(voiced), "loudness": _np(loudness)}
        if self.takes_weights:
            if np.ndim(singer) == 1:  # indices -> one-hot rows (the same embedding, exactly)
                feeds["singer_weights"] = np.eye(self.config.n_singers, dtype=np.float32)[_np(singer, np.int64)]
            else:
                feeds["singer_weights"] = _np(singer)
        elif np.ndim(singer) == 1:
            feeds["singer"] = _np(singer, np.int64)
        else:
            raise CanoraError(f"{self.source}: this ONNX export takes one singer index, not a mix of singers; "
                              "re-export it with `canora export` (mixes run on exports written since), or use the "
                              "torch model")
        if self.config.content_dim:
            if content is None or content.shape[1] != self.config.content_dim:
                got = None if content is None else tuple(content.shape)
                raise CanoraError(f"refiner expects content features of dim {self.config.content_dim}, got {got}")
            feeds["content"] = _np(content)
        return _like(self.encoder.run(["cond"], feeds)[0], f0)

    def denoise(self, x: Any, t: Any, cond: Any) -> Any:
        """x (B, n_mels, T), t (B,) int, cond from :meth:`encode` -> the model output (B, n_mels, T)."""
        feeds = {"x": _np(x), "t": _np(t, np.int64), "cond": _np(cond)}
        return _like(self.denoiser.run(["out"], feeds)[0], x)


class OrtRefiner(RefinerBase):
    """A refiner whose networks run on ONNX Runtime (see the module doc); the interface of
    :class:`~canora.refiner.api.Refiner` but for ``export``, on the CPU."""

    backend = "onnx"
    device = CPU

    def __init__(self, model: OrtRefinerModel, *args: Any, graphs: dict[str, bytes] | None = None,
                 **kwargs: Any) -> None:
        """``model`` and then the arguments of :class:`RefinerBase` after its config; ``graphs`` (the serialized
        encoder and denoiser) let :meth:`with_threads` make sessions of other thread counts."""
        super().__init__(model.config, *args, **kwargs)
        self.model = model
        self._graphs = graphs  # kept for :meth:`with_threads`
        self._by_threads: dict[int, OrtRefiner] = {}

    def with_threads(self, threads: int) -> OrtRefiner:
        """This refiner on sessions of ``threads`` intra-op threads (made once, then kept): the pipeline converts
        slices in parallel on one-thread sessions."""
        if self._graphs is None:
            return self
        if threads not in self._by_threads:
            other = copy.copy(self)
            other.model = OrtRefinerModel(
                self.config, make_session(self._graphs[ENCODER_FILE], threads, f"{self.source} ({ENCODER_FILE})"),
                make_session(self._graphs[ONNX_FILE], threads, f"{self.source} ({ONNX_FILE})"), self.source)
            other._by_threads = {}
            self._by_threads[threads] = other
        return self._by_threads[threads]

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> OrtRefiner:
        """An ONNX export directory (``canora export``) on ONNX Runtime, ``threads`` intra-op threads each session."""
        path = Path(path)
        doc = read_onnx_export(path, EXPORT_KIND)
        cfg, spec, normalizer, schedule, params, meta = read_refiner_doc(path, doc)
        graphs = {name: read_graph(path, doc, name) for name in (ENCODER_FILE, ONNX_FILE)}
        return cls.from_graphs(graphs, cfg, spec, normalizer, schedule, params, meta, str(path), threads)

    @classmethod
    def from_graphs(cls, graphs: dict[str, bytes], cfg: RefinerConfig, spec: Any, normalizer: Any, schedule: Any,
                    params: Any, meta: dict[str, Any], source: str, threads: int | None = None) -> OrtRefiner:
        """From the serialized graphs (``encoder.onnx``, ``model.onnx``) and the parts of a refiner's model.json."""
        model = OrtRefinerModel(cfg, make_session(graphs[ENCODER_FILE], threads, f"{source} ({ENCODER_FILE})"),
                                make_session(graphs[ONNX_FILE], threads, f"{source} ({ONNX_FILE})"), source)
        try:
            return cls(model, spec, normalizer, schedule, prediction_type=meta.get("prediction_type", "v"),
                       singers=meta.get("singers"), singer_f0_stats=meta.get("singer_f0_stats"),
                       singer_level_db=meta.get("singer_level_db"),
                       feature_params=params, info=meta.get("info"), source=source, graphs=graphs)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{source}: incomplete refiner export ({e}); re-export it") from None

    def export(self, directory: str | Path) -> Path:
        raise CanoraError(f"{self.source}: an ONNX refiner holds no torch weights; export the model it came from")

    def _run_model(
        self, x0: np.ndarray, cond: dict[str, np.ndarray], singer: int | np.ndarray, *, sampler: str, steps: int,
        strength: float, generator: np.random.Generator,
    ) -> np.ndarray:
        who = np.array([singer], np.int64) if isinstance(singer, int) else np.asarray(singer, np.float32)[None]
        c = self.model.encode(cond["f0"], cond["voiced"], cond["loudness"], cond.get("content"), who)
        return sample_numpy(lambda x, t, cond: self.model.denoise(x, t, cond),
                            get_sampler(sampler, self.schedule, self.prediction_type),
                            steps=steps, strength=strength, source=x0, cond={"cond": c}, generator=generator)
