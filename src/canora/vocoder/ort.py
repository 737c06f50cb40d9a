"""An ONNX vocoder export on ONNX Runtime with no torch in the process: :class:`OrtVocoder`.

It reads the directory ``canora export`` writes (``model.onnx`` + ``model.json``, see
:mod:`canora.vocoder.onnx`), computes an NSF vocoder's source with numpy (:mod:`canora.vocoder.excitation`,
the merge weights from ``model.json["runtime"]["source"]["state"]``) and runs the graph piece-wise as the torch
:class:`~canora.vocoder.Vocoder` does, with the same seeded noise and phases: the same samples to float rounding.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from canora.dsp.mel import MelSpec
from canora.errors import CheckpointError
from canora.io.onnx import CPU, ONNX_FILE, check_io, make_session, read_graph, read_onnx_export
from canora.vocoder import excitation
from canora.vocoder.config import EXPORT_KIND, NSF_KIND, GeneratorConfig, NSFConfig
from canora.vocoder.inference import (
    CHUNK_FRAMES,
    VocoderFacts,
    check_fit,
    check_mel,
    pieces,
    source_inputs,
    trained_singers,
)


def read_vocoder_export(
    path: Path,
) -> tuple[dict[str, Any], GeneratorConfig | NSFConfig, MelSpec, dict[str, Any] | None]:
    """``model.json`` of an ONNX vocoder export, its generator config, MelSpec and (NSF) source state dict
    (None for a HiFi-GAN); one-line :class:`CheckpointError` naming the directory when it is none."""
    doc = read_onnx_export(path, (EXPORT_KIND, NSF_KIND))
    try:
        cls = NSFConfig if doc["kind"] == NSF_KIND else GeneratorConfig
        cfg: GeneratorConfig | NSFConfig = cls.from_dict(doc["config"], str(path / "model.json"))
        spec = MelSpec.from_dict(doc["mel_spec"], str(path / "model.json"))
        state = doc["runtime"]["source"]["state"] if doc["kind"] == NSF_KIND else None
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: incomplete ONNX vocoder export (missing {e}); re-export it") from None
    return doc, cfg, spec, state


def merge_weights(state: dict[str, Any], harmonics: int, source: str) -> tuple[np.ndarray, float]:
    """The NSF source's merge layer from its state dict (``merge.weight`` (1, H), ``merge.bias`` (1,)) ->
    (weight (H,) float32, bias)."""
    try:
        weight = np.asarray(state["merge.weight"], np.float32)
        bias = np.asarray(state["merge.bias"], np.float32)
        if weight.shape != (1, harmonics) or bias.shape != (1,) or set(state) != {"merge.weight", "merge.bias"}:
            raise ValueError(f"merge.weight {weight.shape}, merge.bias {bias.shape}; need (1, {harmonics}), (1,)")
        if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
            raise ValueError("NaN or infinity in merge.weight or merge.bias")
    except (KeyError, TypeError, ValueError) as e:
        detail = str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{source}: the NSF source weights in model.json do not fit ({detail}); "
                              "re-export the model") from None
    return weight[0], float(bias[0])


class OrtVocoder(VocoderFacts):
    """A vocoder ONNX export on ONNX Runtime (CPU), numpy in and out, no torch: the interface of
    :class:`~canora.vocoder.Vocoder` that the pipeline uses (``vocode``, ``frame_cycles``, ``spec`` ...)."""

    backend = "onnx"
    device = CPU

    def __init__(self, session: Any, spec: MelSpec, config: GeneratorConfig | NSFConfig, source: str = "",
                 source_state: dict[str, Any] | None = None, graph: bytes | None = None) -> None:
        check_fit(spec, config, source)
        self.session = session
        self._graph = graph  # kept for :meth:`with_threads`
        self._by_threads: dict[int, OrtVocoder] = {}
        self.spec = spec
        self.config = config
        self.source = source
        self.singers: tuple[str, ...] = ()  # the singers it was trained on, when its export says (meta.singers)
        self.chunk_frames = CHUNK_FRAMES  # longer mels are vocoded in pieces (:meth:`network`)
        self.merge: tuple[np.ndarray, float] | None = None
        if isinstance(config, NSFConfig):
            check_io(session, ["mel", "source"], ["wav"], source)
            if source_state is None:
                raise CheckpointError(f"{source}: an NSF vocoder export without its source weights; re-export it")
            self.merge = merge_weights(source_state, config.harmonics, source)
        else:
            check_io(session, ["mel"], ["wav"], source)

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> OrtVocoder:
        """The vocoder in an ONNX export directory (``canora export``), on ``threads`` intra-op threads."""
        path = Path(path)
        doc, cfg, spec, state = read_vocoder_export(path)
        graph = read_graph(path, doc)
        voc = cls(make_session(graph, threads, str(path / ONNX_FILE)), spec, cfg, str(path), state, graph)
        voc.singers = trained_singers(doc)
        return voc

    def with_threads(self, threads: int) -> OrtVocoder:
        """This vocoder on a session of ``threads`` intra-op threads (made once, then kept): the pipeline converts
        slices in parallel on one-thread sessions."""
        if self._graph is None:
            return self
        if threads not in self._by_threads:
            other = copy.copy(self)
            other.session = make_session(self._graph, threads, self.source)
            other._by_threads = {}
            self._by_threads[threads] = other
        return self._by_threads[threads]

    def frame_cycles(self, f0: np.ndarray) -> np.ndarray:
        """Start phases (T + 1,) float64 in cycles of an NSF vocoder's fundamental for pieces of the song ``f0``
        (T,) Hz (0 = unvoiced) beginning at each frame, and the song's total at its end
        (:func:`canora.vocoder.excitation.frame_cycles`); zeros for a plain HiFi-GAN (no source)."""
        if not isinstance(self.config, NSFConfig):
            return np.zeros(len(f0) + 1)
        return excitation.frame_cycles(f0, self.config.hop_length, self.config.sample_rate, self.config.source)

    def __call__(self, mel: np.ndarray, f0: np.ndarray | None = None, seed: int = 0, start_phase: float = 0.0,
                 start_frame: int = 0) -> np.ndarray:
        """Log-mel (n_mels, T) or (B, n_mels, T) -> waveform (T * hop,) or (B, T * hop) float32; ``f0`` (T,) or
        (B, T) Hz, ``seed``, ``start_phase`` and ``start_frame`` as in :meth:`canora.vocoder.Vocoder.__call__`."""
        x = np.asarray(mel, dtype=np.float32)
        squeeze = check_mel(x.shape, self.spec.n_mels, bool(np.isfinite(x).all()))
        if squeeze:
            x = x[None]
        if not isinstance(self.config, NSFConfig) or self.merge is None:
            wav = self.network(x)[:, 0]
            return wav[0] if squeeze else wav
        f, start = source_inputs(f0, lambda: x, x.shape, self.spec, start_frame)
        cfg, (weight, bias) = self.config, self.merge
        batch, hop = x.shape[0], cfg.hop_length
        phase0 = np.broadcast_to(excitation.start_phases(seed, cfg.harmonics, start_phase), (batch, cfg.harmonics))
        noise = excitation.stream_noise(seed, start * hop, x.shape[2] * hop,
                                        excitation.noise_channels(cfg.source, cfg.harmonics), batch)
        src = excitation.excitation(f, phase0, noise, kind=cfg.source, sample_rate=cfg.sample_rate, hop=hop,
                                    sine_amp=cfg.sine_amp, noise_std=cfg.noise_std, weight=weight, bias=bias,
                                    voiced_noise=cfg.voiced_noise)
        wav = self.network(x, src)[:, 0]
        return wav[0] if squeeze else wav

    def vocode(self, mel: np.ndarray, f0: np.ndarray | None = None, start_phase: float = 0.0,
               start_frame: int = 0, seed: int = 0) -> np.ndarray:
        """(n_mels, T) [+ F0 (T,)] -> (T * hop,) float32 (arguments as in :meth:`__call__`)."""
        return self(mel, f0, seed=seed, start_phase=start_phase, start_frame=start_frame)

    def network(self, mel: np.ndarray, src: np.ndarray | None = None, chunk: int | None = None) -> np.ndarray:
        """The graph on mel (B, n_mels, T) float32 [+ an NSF source's excitation (B, C, T * hop)] -> (B, 1, T * hop),
        long inputs in pieces (:func:`~canora.vocoder.inference.pieces`) as the torch vocoder cuts them."""
        cut = pieces(mel.shape[2], self.chunk_frames if chunk is None else chunk, self.config.receptive_frames())
        hop, out = self.spec.hop_length, []
        for a, b, lo, hi in cut:
            feeds = {"mel": np.ascontiguousarray(mel[..., lo:hi])}
            if src is not None:
                feeds["source"] = np.ascontiguousarray(src[..., lo * hop: hi * hop], dtype=np.float32)
            wav = self.session.run(["wav"], feeds)[0]
            out.append(wav[..., (a - lo) * hop: (b - lo) * hop])
        return out[0] if len(out) == 1 else np.concatenate(out, axis=-1)
