"""The content encoder's forward pass in numpy: inference without torch or ONNX Runtime.

Bit-for-bit the computation of :class:`canora.content.model.ContentNet` (to float32 rounding): the same weights
(a state dict of numpy arrays, keys as torch names them), the same per-frame normalisation of the log-mel, the
same zero padding at the sequence edges. Long inputs are computed in chunks of frames with
:attr:`ContentNetConfig.context` frames of overlap, which gives exactly the whole-sequence result in bounded memory.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from canora.content.config import ContentNetConfig
from canora.errors import CheckpointError

#: the log-mel floor the input is clamped to (ln 1e-5) and the scale it is divided by
MEL_FLOOR = float(np.log(1e-5))
INPUT_SCALE = 4.0
LN_EPS = 1e-5
CHUNK_FRAMES = 4096


def prepare_mel(mel: np.ndarray) -> np.ndarray:
    """Log-mel (n_mels, T) -> the network's input (n_mels, T) float32: clamped to the floor, each frame's mean over
    bands removed (the level: the content does not depend on how loud), divided by :data:`INPUT_SCALE`."""
    x = np.maximum(np.asarray(mel, dtype=np.float32), MEL_FLOOR)
    return (x - x.mean(axis=0, keepdims=True)) / INPUT_SCALE


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, dilation: int = 1) -> np.ndarray:
    """'same' zero-padded 1-D convolution of ``x`` (C_in, T) with torch-layout ``w`` (C_out, C_in, k) -> (C_out, T)."""
    c_out, c_in, k = w.shape
    t = x.shape[1]
    if k == 1:
        return w[:, :, 0] @ x + b[:, None]
    pad = dilation * (k - 1) // 2
    xp = np.pad(x, ((0, 0), (pad, pad)))
    cols = np.concatenate([xp[:, i * dilation: i * dilation + t] for i in range(k)], axis=0)  # (k * C_in, T)
    return w.transpose(0, 2, 1).reshape(c_out, k * c_in) @ cols + b[:, None]


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """LayerNorm over channels of ``x`` (C, T)."""
    mu = x.mean(axis=0, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=0, keepdims=True)
    return (x - mu) / np.sqrt(var + LN_EPS) * w[:, None] + b[:, None]


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


class NumpyContentNet:
    """``ContentNet`` in numpy: ``net(mel (n_mels, T)) -> content (dim, T)`` float32."""

    def __init__(self, config: ContentNetConfig, state: Mapping[str, np.ndarray], source: str = "") -> None:
        self.config = config
        self.w = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}
        expected = self.expected_shapes(config)
        wrong = [k for k, s in expected.items() if k not in self.w or self.w[k].shape != s]
        extra = sorted(set(self.w) - set(expected))
        if wrong or extra:
            where = f"{source}: " if source else ""
            raise CheckpointError(f"{where}content encoder weights do not fit its config (missing or misshapen: "
                                  f"{wrong[:5]}, unexpected: {extra[:5]}); re-export the model")

    @staticmethod
    def expected_shapes(cfg: ContentNetConfig) -> dict[str, tuple[int, ...]]:
        """Every weight's name and shape for ``cfg`` (torch's names)."""
        c = cfg.channels
        shapes: dict[str, tuple[int, ...]] = {"conv_in.weight": (c, cfg.n_mels, cfg.in_kernel), "conv_in.bias": (c,)}
        for i in range(len(cfg.dilations)):
            p = f"blocks.{i}."
            shapes.update({p + "norm.weight": (c,), p + "norm.bias": (c,), p + "conv.weight": (c, c, cfg.kernel_size),
                           p + "conv.bias": (c,), p + "mix.weight": (c, c, 1), p + "mix.bias": (c,)})
        shapes.update({"norm_out.weight": (c,), "norm_out.bias": (c,), "proj.weight": (cfg.dim, c, 1),
                       "proj.bias": (cfg.dim,)})
        return shapes

    def _forward(self, x: np.ndarray) -> np.ndarray:
        w, cfg = self.w, self.config
        h = _conv(x, w["conv_in.weight"], w["conv_in.bias"])
        for i, d in enumerate(cfg.dilations):
            p = f"blocks.{i}."
            y = _layer_norm(h, w[p + "norm.weight"], w[p + "norm.bias"])
            y = _silu(_conv(y, w[p + "conv.weight"], w[p + "conv.bias"], d))
            h = h + _conv(y, w[p + "mix.weight"], w[p + "mix.bias"])
        h = _silu(_layer_norm(h, w["norm_out.weight"], w["norm_out.bias"]))
        return _conv(h, w["proj.weight"], w["proj.bias"])

    def __call__(self, mel: np.ndarray) -> np.ndarray:
        """Log-mel (n_mels, T) -> content (dim, T) float32."""
        x = prepare_mel(mel)
        t, ctx = x.shape[1], self.config.context
        if t <= CHUNK_FRAMES:
            return self._forward(x).astype(np.float32)
        out = np.empty((self.config.dim, t), np.float32)
        for a in range(0, t, CHUNK_FRAMES):
            b = min(t, a + CHUNK_FRAMES)
            lo, hi = max(0, a - ctx), min(t, b + ctx)
            out[:, a:b] = self._forward(x[:, lo:hi])[:, a - lo: a - lo + (b - a)]
        return out
