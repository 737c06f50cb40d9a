"""The refiner's networks on ONNX Runtime: write a :class:`~canora.refiner.Refiner` as an ONNX export, run one.

:meth:`Refiner.refine` calls the model in two places: :meth:`RefinerModel.encode` once per refinement (the
conditioning: F0, voicing, loudness, content, singer -> every residual layer's projection), then
:meth:`RefinerModel.denoise` once per sampler step. The export keeps that split, so a run of N steps pays for
the conditioning once, as in torch:

* ``model.onnx``, the denoiser: ``x`` (B, n_mels, T) float32, ``t`` (B,) int64, ``cond`` (B, layers * 2C, T)
  float32 -> ``out`` (B, n_mels, T) (``v`` or ``eps``, the export's ``prediction_type``); the step embedding
  is inside.
* ``encoder.onnx``, the conditioning encoder: ``f0`` (B, T) Hz, ``voiced`` (B, T) float32 in {0, 1},
  ``loudness`` (B, T) dB, ``content`` (B, content_dim, T) (only when ``content_dim`` > 0) and ``singer_weights``
  (B, n_singers) float32 over the singer embeddings (one-hot for one singer, a mix otherwise) -> ``cond``.
  Exports written before mixes ran on ONNX Runtime take ``singer`` (B,) int64 instead; both still load.

Everything else stays in Python: feature extraction, the mel normalisation, the noise schedule and the samplers
(their state is a few scalars per step), all read from ``model.json`` (``meta`` holds what a torch refiner export
holds). Running an export is :class:`canora.refiner.ort.OrtRefiner`, which imports no torch; this module writes
exports (torch).
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from canora.errors import CanoraError
from canora.io.onnx import (
    ONNX_FILE,
    QUANTIZATIONS,
    exporter_info,
    quantize_int8,
    save_onnx_export,
    torch_to_onnx,
)
from canora.refiner.base import EXPORT_KIND
from canora.refiner.model import RefinerConfig, RefinerModel
from canora.refiner.ort import ENCODER_FILE, OrtRefiner, encoder_inputs

if TYPE_CHECKING:
    from canora.refiner.api import Refiner

log = logging.getLogger(__name__)
EXAMPLE_FRAMES = 24
MAX_FRAMES = 10_000_000


class _Encoder(nn.Module):
    def __init__(self, model: RefinerModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, f0: Tensor, voiced: Tensor, loudness: Tensor, singer: Tensor,
                content: Tensor | None = None) -> Tensor:
        return self.model.encode(f0, voiced, loudness, content, singer)


class _Denoiser(nn.Module):
    def __init__(self, model: RefinerModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self.model.denoise(x, t, cond)


def _io_spec(cfg: RefinerConfig) -> dict[str, Any]:
    cond = ["batch", cfg.layers * 2 * cfg.residual_channels, "frames"]
    enc: dict[str, Any] = {"f0": ["batch", "frames"], "voiced": ["batch", "frames"], "loudness": ["batch", "frames"],
                           "singer_weights": ["batch", cfg.n_singers]}
    if cfg.content_dim:
        enc["content"] = ["batch", cfg.content_dim, "frames"]
    return {
        ONNX_FILE: {"inputs": {"x": ["batch", cfg.n_mels, "frames"], "t": ["batch"], "cond": cond},
                    "outputs": {"out": ["batch", cfg.n_mels, "frames"]}},
        ENCODER_FILE: {"inputs": enc, "outputs": {"cond": cond}},
    }


def refiner_graphs(ref: Refiner) -> dict[str, bytes]:
    """{``model.onnx``: the denoiser, ``encoder.onnx``: the conditioning encoder} of a torch refiner."""
    if ref.backend != "torch":
        raise CanoraError(f"{ref.source}: already an ONNX refiner; export the torch model it came from")
    model = (ref.model if ref.device.type == "cpu" else copy.deepcopy(ref.model).cpu()).eval()
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    b, n = 1, EXAMPLE_FRAMES
    frames = torch.export.Dim("frames", min=1, max=MAX_FRAMES)
    batch = torch.export.Dim("batch", min=1, max=4096)
    what = ref.source or "refiner"
    f0 = 200 + 100 * torch.rand(b, n, generator=g)
    weights = torch.zeros(b, cfg.n_singers)  # the singer as weights over the embeddings: one-hot, or a mix
    weights[:, 0] = 1.0
    args: tuple[Tensor, ...] = (f0, torch.ones(b, n), -30 + 10 * torch.randn(b, n, generator=g), weights)
    shapes: dict[str, Any] = {"f0": {0: batch, 1: frames}, "voiced": {0: batch, 1: frames},
                              "loudness": {0: batch, 1: frames}, "singer": {0: batch}}
    if cfg.content_dim:
        args = (*args, torch.randn(b, cfg.content_dim, n, generator=g))
        shapes["content"] = {0: batch, 2: frames}
    encoder = torch_to_onnx(_Encoder(model), args, encoder_inputs(cfg), ["cond"], shapes, f"{what} (encoder)")
    with torch.no_grad():
        cond = model.encode(*args[:3], args[4] if cfg.content_dim else None, args[3])
    x = torch.randn(b, cfg.n_mels, n, generator=g)
    t = torch.full((b,), 500, dtype=torch.long)
    denoiser = torch_to_onnx(_Denoiser(model), (x, t, cond), ["x", "t", "cond"], ["out"],
                             {"x": {0: batch, 2: frames}, "t": {0: batch}, "cond": {0: batch, 2: frames}},
                             f"{what} (denoiser)")
    return {ONNX_FILE: denoiser, ENCODER_FILE: encoder}


def export_refiner_onnx(ref: Refiner, directory: str | Path, *, quantize: str | None = None,
                        meta: dict[str, Any] | None = None) -> Path:
    """Write ``directory/model.onnx`` (denoiser) + ``encoder.onnx`` + ``model.json`` for a torch refiner;
    ``quantize="int8"``: ONNX Runtime dynamic int8 quantization of both graphs."""
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise CanoraError(f"unknown quantization {quantize!r}; expected one of {QUANTIZATIONS}")
    graphs = refiner_graphs(ref)
    if quantize == "int8":
        graphs = {k: quantize_int8(v, f"{ref.source} ({k})") for k, v in graphs.items()}
    return save_onnx_export(
        directory, kind=EXPORT_KIND, graphs=graphs, config=ref.model.config.to_dict(), mel_spec=ref.spec,
        onnx_info={**exporter_info(), "quantization": quantize, "graphs": _io_spec(ref.model.config)},
        runtime={
            "outside_graph": ["features", "normalizer", "sampler"],
            "what": "the refiner's Python side as with torch: features (F0, voicing, loudness, content) from "
                    "audio, encoder.onnx once per refinement, model.onnx once per sampler step (noise schedule, "
                    "prediction type and mel normalisation in meta)",
        },
        meta={**ref.export_meta(), "exported_from": ref.source, **(meta or {})},
    )


def load_onnx_refiner(path: str | Path, threads: int | None = None) -> OrtRefiner:
    """An :class:`OrtRefiner` (ONNX Runtime, no torch) from an ONNX export directory (``canora export``)."""
    return OrtRefiner.load(path, threads)


def to_onnx_backend(ref: Refiner, threads: int | None = None) -> OrtRefiner:
    """The same refiner with its networks on onnxruntime, exported in memory (some seconds)."""
    t0 = time.perf_counter()
    out = OrtRefiner.from_graphs(
        refiner_graphs(ref), ref.config, ref.spec, ref.normalizer, ref.schedule, ref.feature_params,
        {**ref.export_meta(), "prediction_type": ref.prediction_type}, ref.source, threads)
    log.info("%s: on ONNX Runtime in %.1f s (exported once, then cached; `canora export` saves a copy)", ref.source,
             time.perf_counter() - t0)
    return out
