"""The vocoders on ONNX Runtime: write a :class:`~canora.vocoder.Vocoder` as an ONNX export, run one.

Graphs (weight norm folded, batch and frame count dynamic):

* HiFi-GAN (``kind = "hifigan"``): ``mel`` (B, n_mels, T) float32 -> ``wav`` (B, 1, T * hop), the whole
  generator.
* NSF-HiFi-GAN (``kind = "nsf-hifigan"``): ``mel`` (B, n_mels, T) and ``source`` (B, C, T * hop) float32 ->
  ``wav`` (B, 1, T * hop): the filter network; the sine source stays **outside** the graph. The runtime
  computes the excitation with the very :class:`~canora.vocoder.nsf.SineSource` the torch vocoder uses (its
  64 mixing weights are stored in ``model.json["runtime"]["source"]["state"]``), because

  - its phases are accumulated in float64 over every sample (``cumsum``) and wrapped; in float32 a long
    note drifts audibly, and float64 ``CumSum``/``Mod`` are among the op/type pairs ONNX runtimes support
    least well;
  - its noise (numpy, by the sample's place in the song) and the harmonics' start phases are seeded: inside the graph
    they would be another random stream (ONNX ``RandomNormal`` has its own generator and is not
    reproducible across runtimes), so the ONNX vocoder could not match the torch one sample for sample,
    and pieces of a song could no longer continue each other's phase (``start_phase``);
  - its per-harmonic loop would unroll into ~64 x 8 element-wise ops over the full-rate signal.

  The source costs a few percent of the vocoder's time, so nothing is lost by running it in torch.

:func:`load_onnx_vocoder` returns a :class:`Vocoder` whose generator runs on onnxruntime (CPU), so
``vocode(mel, f0)``, ``frame_cycles`` and the mel checks are the same as with torch.
:class:`~canora.vocoder.ort.OrtVocoder` runs the same export with no torch in the process (the source in numpy,
:mod:`canora.vocoder.excitation`).
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from canora.dsp.mel import MelSpec
from canora.errors import CanoraError, CheckpointError, MelError
from canora.io.onnx import (
    ONNX_FILE,
    QUANTIZATIONS,
    check_io,
    exporter_info,
    make_session,
    quantize_int8,
    read_graph,
    save_onnx_export,
    torch_to_onnx,
)
from canora.vocoder.api import EXPORT_KIND, NSF_KIND, Vocoder
from canora.vocoder.hifigan import GeneratorConfig
from canora.vocoder.inference import trained_singers
from canora.vocoder.nsf import NSFConfig, NSFGenerator, SineSource
from canora.vocoder.ort import read_vocoder_export

log = logging.getLogger(__name__)
#: frames of the example input the graph is traced with (any length runs afterwards)
EXAMPLE_FRAMES = 24
MAX_FRAMES = 10_000_000


class NSFFilter(nn.Module):
    """An NSF generator without its source (:meth:`NSFGenerator.network`): (mel (B, n_mels, T), excitation
    (B, C, T * hop)) -> (B, 1, T * hop)."""

    def __init__(self, gen: NSFGenerator) -> None:
        super().__init__()
        self.gen = gen

    def forward(self, mel: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        return self.gen.network(mel, src)


def _io_spec(voc: Vocoder) -> dict[str, Any]:
    n, hop = voc.spec.n_mels, voc.spec.hop_length
    inputs: dict[str, Any] = {"mel": ["batch", n, "frames"]}
    if voc.needs_f0:
        inputs["source"] = ["batch", voc.generator.source.channels, f"frames*{hop}"]
    return {ONNX_FILE: {"inputs": inputs, "outputs": {"wav": ["batch", 1, f"frames*{hop}"]}}}


def vocoder_graph(voc: Vocoder) -> bytes:
    """The serialized ONNX graph of a torch :class:`Vocoder` (see the module doc for its inputs)."""
    if voc.backend != "torch":
        raise CanoraError(f"{voc.source}: already an ONNX vocoder; export the torch model it came from")
    gen = voc.generator if voc.device.type == "cpu" else copy.deepcopy(voc.generator).cpu()
    frames = torch.export.Dim("frames", min=1, max=MAX_FRAMES)
    batch = torch.export.Dim("batch", min=1, max=4096)
    g = torch.Generator().manual_seed(0)
    mel = torch.randn(1, voc.spec.n_mels, EXAMPLE_FRAMES, generator=g) - 5
    what = f"{voc.source or 'vocoder'}"
    if not voc.needs_f0:
        return torch_to_onnx(gen, (mel,), ["mel"], ["wav"], {"mel": {0: batch, 2: frames}}, what)
    hop = voc.spec.hop_length
    src = 0.1 * torch.randn(1, gen.source.channels, EXAMPLE_FRAMES * hop, generator=g)
    return torch_to_onnx(NSFFilter(gen), (mel, src), ["mel", "source"], ["wav"],
                         {"mel": {0: batch, 2: frames}, "src": {0: batch, 2: frames * hop}}, what)


def _source_runtime(voc: Vocoder) -> dict[str, Any]:
    src: SineSource = voc.generator.source
    return {
        "outside_graph": ["source"],
        "source": {
            "what": "the NSF excitation, input 'source' (B, C, T * hop) float32: canora.vocoder.nsf.SineSource "
                    "(kind, harmonics, sample_rate, hop, sine_amp, noise_std, voiced_noise below; its merge layer's "
                    "weights in 'state') called on the frame F0 (B, T) Hz, 0 = unvoiced, with the start phases and "
                    "seeded noise of canora.vocoder.Vocoder.__call__; smooth kind: channel 1 is sine_amp * noise * "
                    "(1 - (1 - voiced_noise) * v), v the voicing gliding linearly between frame centres",
            "kind": src.kind, "channels": src.channels, "harmonics": src.harmonics,
            "sample_rate": src.sample_rate, "hop": src.hop, "sine_amp": src.sine_amp, "noise_std": src.noise_std,
            "voiced_noise": src.voiced_noise,
            "phase_dtype": "float64",
            "state": {k: v.detach().cpu().tolist() for k, v in src.state_dict().items()},
        },
    }


def export_vocoder_onnx(
    voc: Vocoder, directory: str | Path, *, quantize: str | None = None, meta: dict[str, Any] | None = None
) -> Path:
    """Write ``directory/model.onnx`` + ``model.json`` for a torch vocoder; ``quantize="int8"``: ONNX Runtime
    dynamic int8 quantization of the graph."""
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise CanoraError(f"unknown quantization {quantize!r}; expected one of {QUANTIZATIONS}")
    graph = vocoder_graph(voc)
    if quantize == "int8":
        graph = quantize_int8(graph, voc.source or "vocoder")
    return save_onnx_export(
        directory,
        kind=NSF_KIND if voc.needs_f0 else EXPORT_KIND,
        graphs={ONNX_FILE: graph},
        config=voc.config.to_dict(),
        mel_spec=voc.spec,
        onnx_info={**exporter_info(), "quantization": quantize, "graphs": _io_spec(voc)},
        runtime=_source_runtime(voc) if voc.needs_f0 else {"outside_graph": []},
        meta={"exported_from": voc.source, **({"singers": list(voc.singers)} if voc.singers else {}), **(meta or {})},
    )


class OnnxGenerator(nn.Module):
    """A generator whose network runs on ONNX Runtime, with the call signature of the torch ones:
    ``(mel)`` for HiFi-GAN, ``(mel, f0, generator, phase0, noise)`` for NSF (``source`` computes the excitation)."""

    backend = "onnx"
    has_weight_norm = False

    def __init__(self, session: Any, source: SineSource | None = None, name: str = "") -> None:
        super().__init__()
        self.session = session
        self.source = source
        self.name = name

    def remove_weight_norm(self) -> OnnxGenerator:
        return self

    def forward(
        self, mel: torch.Tensor, f0: torch.Tensor | None = None, generator: torch.Generator | None = None,
        phase0: torch.Tensor | None = None, noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        src = None
        if self.source is not None:
            if f0 is None or f0.shape != (mel.shape[0], mel.shape[2]):
                raise MelError(f"F0 of shape {None if f0 is None else tuple(f0.shape)} does not fit the mel "
                               f"{tuple(mel.shape)}: need (B, T)")
            src = self.source(f0.to(mel.dtype), generator, phase0, noise)
        return self.network(mel, src)

    def network(self, mel: torch.Tensor, src: torch.Tensor | None = None) -> torch.Tensor:
        """The graph: mel (B, n_mels, T) [+ the source's excitation (B, C, T * hop)] -> (B, 1, T * hop)."""
        feeds = {"mel": np.ascontiguousarray(mel.detach().cpu().numpy(), dtype=np.float32)}
        if (src is None) != (self.source is None):
            raise CanoraError(f"{self.name}: " + ("an NSF graph needs its source's excitation" if src is None
                                                   else "a HiFi-GAN graph takes no source excitation"))
        if src is not None:
            feeds["source"] = np.ascontiguousarray(src.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(["wav"], feeds)[0])


def _vocoder(session: Any, config: GeneratorConfig | NSFConfig, spec: MelSpec, source: str,
             source_state: dict[str, Any] | None) -> Vocoder:
    if isinstance(config, NSFConfig):
        check_io(session, ["mel", "source"], ["wav"], source)
        sine = SineSource(config.sample_rate, config.hop_length, config.harmonics, config.sine_amp, config.noise_std,
                          config.source, config.voiced_noise)
        if source_state is not None:
            try:
                sine.load_state_dict({k: torch.tensor(v, dtype=torch.float32) for k, v in source_state.items()})
            except (RuntimeError, TypeError, ValueError) as e:
                detail = str(e).strip().splitlines()[-1][:200]
                raise CheckpointError(f"{source}: the NSF source weights in model.json do not fit ({detail}); "
                                      "re-export the model") from None
        gen = OnnxGenerator(session, sine.eval(), source)
    else:
        check_io(session, ["mel"], ["wav"], source)
        gen = OnnxGenerator(session, None, source)
    return Vocoder(gen, spec, config, source)


def load_onnx_vocoder(path: str | Path, threads: int | None = None) -> Vocoder:
    """A :class:`Vocoder` on onnxruntime from an ONNX export directory (``canora export``); without torch:
    :class:`~canora.vocoder.ort.OrtVocoder`."""
    path = Path(path)
    doc, cfg, spec, state = read_vocoder_export(path)
    session = make_session(read_graph(path, doc), threads, str(path / ONNX_FILE))
    voc = _vocoder(session, cfg, spec, str(path), state)
    voc.singers = trained_singers(doc)
    return voc


def to_onnx_backend(voc: Vocoder, threads: int | None = None) -> Vocoder:
    """The same vocoder on onnxruntime, exported in memory (a few seconds; ``canora export`` saves it once)."""
    t0 = time.perf_counter()
    session = make_session(vocoder_graph(voc), threads, voc.source)
    state = _source_runtime(voc)["source"]["state"] if voc.needs_f0 else None
    out = _vocoder(session, voc.config, voc.spec, voc.source, state)
    out.singers = voc.singers
    log.info("%s: on ONNX Runtime in %.1f s (exported once, then cached; `canora export` saves a copy)", voc.source,
             time.perf_counter() - t0)
    return out
