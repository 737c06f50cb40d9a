"""``Vocoder.from_pretrained(path)``: load an official HiFi-GAN checkpoint or a canora export, run it.

Accepted ``path``:

* a canora export directory (``model.json`` + ``model.safetensors``);
* an official generator file (``g_02500000``, ``generator_v2``: ``{'generator': state_dict}``, zip or
  legacy pickle), with ``config.json`` beside it or given explicitly; without one, the official
  v1/v2/v3 config whose tensor shapes fit is used (and said);
* a directory of official files: the newest ``g_*`` and its ``config.json``;
* an ONNX export directory (``model.onnx`` + ``model.json``, written by ``canora export``): it comes back as
  an :class:`~canora.vocoder.ort.OrtVocoder` (ONNX Runtime, no torch needed, the same interface).

``backend``: ``None`` (the default) or ``"torch"``; ``"torch"`` refuses an ONNX export. Running a torch model on
ONNX Runtime (exporting it first) is decided in one place, :mod:`canora.backends` (``open_vocoder(path,
backend="onnx")``); this module never imports an exporter.

Two generator families share this facade: the official HiFi-GAN (mel in, audio out) and canora's
NSF-HiFi-GAN (mel + frame F0 in; :mod:`canora.vocoder.nsf`), the bundled singing vocoder. Call an NSF
vocoder with the F0 the pipeline extracted; without one it estimates F0 from the mel itself
(:func:`f0_from_mel`: Griffin-Lim then an F0 tracker), which is slower and less exact.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from canora.dsp.mel import BUILTIN_CONFIGS, MelSpec, read_config
from canora.errors import CanoraError, CheckpointError
from canora.io.checkpoint import (
    build_to_fit,
    is_export,
    load_export,
    load_torch_file,
    newest,
    read_export_meta,
    save_export,
)
from canora.vocoder.config import EXPORT_KIND, NSF_KIND, GeneratorConfig, NSFConfig
from canora.vocoder.excitation import start_phases
from canora.vocoder.hifigan import Generator, check_state_dict, from_official_keys
from canora.vocoder.inference import (  # noqa: F401 (CHUNK_FRAMES, f0_from_mel: re-exported)
    CHUNK_FRAMES,
    VocoderFacts,
    check_fit,
    check_mel,
    f0_from_mel,
    pieces,
    source_inputs,
    trained_singers,
)
from canora.vocoder.nsf import NSFGenerator

log = logging.getLogger(__name__)
BACKENDS = ("torch", "onnx")


def _generator_state(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The generator state dict inside a loaded checkpoint object."""
    if isinstance(obj, dict) and isinstance(obj.get("generator"), dict):
        return obj["generator"]
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if any(k.startswith("conv_pre.") for k in obj):
            return obj
    if isinstance(obj, dict) and {"mpd", "msd"} <= set(obj):
        raise CheckpointError(f"{source}: this is a discriminator file (do_*); pass the generator file (g_*)")
    raise CheckpointError(f"{source}: not a HiFi-GAN generator checkpoint (no 'generator' state dict)")


def _guess_config(state: dict[str, torch.Tensor], source: str) -> tuple[dict[str, Any], str]:
    for name in BUILTIN_CONFIGS:
        cfg = read_config(name)
        model = Generator.from_config(GeneratorConfig.from_hifigan_config(cfg))
        try:
            check_state_dict(model, state, source)
        except CheckpointError:
            continue
        return cfg, name
    raise CheckpointError(
        f"{source}: no config.json beside it and it fits none of the official v1/v2/v3 configs; pass --config"
    )


class Vocoder(VocoderFacts):
    """A generator ready for inference (weight norm folded) plus the :class:`MelSpec` it was trained on."""

    def __init__(
        self, generator: Generator | NSFGenerator, spec: MelSpec, config: GeneratorConfig | NSFConfig,
        source: str = "",
    ) -> None:
        check_fit(spec, config, source)
        self.generator = generator.eval()
        if self.generator.has_weight_norm:
            self.generator.remove_weight_norm()
        self.spec = spec
        self.config = config
        self.source = source
        self.singers: tuple[str, ...] = ()  # the singers it was trained on, when its export says (meta.singers)
        self.chunk_frames = CHUNK_FRAMES  # longer mels are vocoded in pieces (:meth:`network`)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls, path: str | Path | None = "bundled", config: str | Path | None = None, device: str | torch.device = "cpu",
        backend: str | None = None,
    ) -> Vocoder:
        """Load a canora export, an official ``g_*`` file, a directory of them, or an ONNX export (see module
        doc, also for ``backend``); ``"bundled"`` (the default) or None: the vocoder shipped with canora."""
        from canora.io.models import resolve_model

        path = resolve_model(path, "vocoder")
        from canora.io.onnx import loads_as_onnx_export

        if loads_as_onnx_export(Path(path), "vocoder", backend, torch.device(device).type, BACKENDS):
            from canora.vocoder.ort import OrtVocoder

            return OrtVocoder.load(path)  # type: ignore[return-value]
        if is_export(path):
            kind = NSF_KIND if read_export_meta(path).get("kind") == NSF_KIND else EXPORT_KIND
            doc, state = load_export(path, kind)
            family: tuple[Any, Any] = (NSFConfig, NSFGenerator) if kind == NSF_KIND else (GeneratorConfig, Generator)
            cfg = family[0].from_dict(doc["config"], str(path / "model.json"))
            gen = build_to_fit(lambda: family[1].from_config(cfg).remove_weight_norm(), state, str(path),
                               lambda probe: check_state_dict(probe, state, str(path)))
            gen.load_state_dict(state, strict=True)
            voc = cls(gen, MelSpec.from_dict(doc["mel_spec"], str(path / "model.json")), cfg, str(path)).to(device)
            voc.singers = trained_singers(doc)
            return voc
        if path.is_dir():
            ckpt = newest(path, "g_")
            if ckpt is None:
                raise CheckpointError(f"{path}: no canora export (model.json) and no g_* generator file in it")
            path = ckpt
        state = from_official_keys(_generator_state(load_torch_file(path), str(path)))
        if config is not None:
            cfg = read_config(config)
        elif (path.parent / "config.json").is_file():
            cfg = read_config(path.parent / "config.json")
        else:
            cfg, name = _guess_config(state, str(path))
            log.warning("%s: no config.json beside it; its shapes fit the official %s config, using that", path, name)
        spec = MelSpec.from_hifigan_config(cfg, source=str(config or path.parent / "config.json"))
        gcfg = GeneratorConfig.from_hifigan_config(cfg)
        gen = build_to_fit(lambda: Generator.from_config(gcfg), state, str(path),
                           lambda probe: check_state_dict(probe, state, str(path)))
        gen.load_state_dict(state, strict=True)
        return cls(gen, spec, gcfg, str(path)).to(device)

    def to(self, device: str | torch.device) -> Vocoder:
        if self.backend != "torch" and torch.device(device).type != "cpu":
            raise CanoraError(f"{self.source}: the ONNX backend runs on the CPU only")
        self.generator.to(device)
        return self

    @property
    def backend(self) -> str:
        """``"torch"``, or ``"onnx"`` for a generator running on ONNX Runtime."""
        return getattr(self.generator, "backend", "torch")

    @property
    def device(self) -> torch.device:
        p = next(self.generator.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def __call__(
        self, mel: torch.Tensor | np.ndarray, f0: torch.Tensor | np.ndarray | None = None, seed: int = 0,
        start_phase: float = 0.0, start_frame: int = 0,
    ) -> torch.Tensor:
        """Log-mel (n_mels, T) or (B, n_mels, T) -> waveform (T * hop,) or (B, T * hop), float32 in [-1, 1].

        ``f0`` (T,) or (B, T) Hz, 0 = unvoiced: used by NSF vocoders (estimated from the mel when None),
        ignored by plain HiFi-GANs. ``seed`` fixes the NSF source's noise and harmonic phase offsets (drawn with
        numpy, :mod:`canora.vocoder.excitation`, so that :class:`~canora.vocoder.ort.OrtVocoder` draws the same);
        ``start_phase`` is the fundamental's phase (cycles) before the first sample: vocoding a song in
        pieces with ``start_phase = frame_cycles(song F0)[first frame] % 1`` (:meth:`frame_cycles`) makes each
        piece's source continue the last. ``start_frame`` is the piece's first frame in the song: the source's
        noise is drawn by position in the song (:meth:`SineSource.stream_noise`), so overlapping pieces share it
        and no noise pattern repeats once per piece (pieces vocoded with the same noise at every call add a tone
        at a multiple of the frame rate).
        """
        x = torch.as_tensor(mel, dtype=torch.float32, device=self.device)
        squeeze = check_mel(tuple(x.shape), self.spec.n_mels, bool(torch.isfinite(x).all()))
        if squeeze:
            x = x.unsqueeze(0)
        if not self.needs_f0:
            wav = self.network(x).squeeze(1)
            return wav.squeeze(0) if squeeze else wav
        f0 = f0.detach().cpu().numpy() if isinstance(f0, torch.Tensor) else f0
        f_np, start = source_inputs(f0, lambda: x.cpu().numpy(), tuple(x.shape), self.spec, start_frame)
        f = torch.from_numpy(f_np).to(self.device)
        phase0 = torch.from_numpy(start_phases(seed, self.config.harmonics, start_phase)).expand(x.shape[0], -1)
        hop = self.spec.hop_length
        noise = self.generator.source.stream_noise(seed, start * hop, x.shape[2] * hop, x.shape[0])
        src = self.generator.source(f.to(x.dtype), None, phase0, noise)
        wav = self.network(x, src).squeeze(1)
        return wav.squeeze(0) if squeeze else wav

    def network(self, mel: torch.Tensor, src: torch.Tensor | None = None, chunk: int | None = None) -> torch.Tensor:
        """The generator's layers on mel (B, n_mels, T) (and an NSF source's excitation ``src`` (B, C, T * hop),
        computed over the whole input) -> (B, 1, T * hop). Inputs of more than 1.5 ``chunk`` frames (default
        ``self.chunk_frames``, :data:`CHUNK_FRAMES`) go in equal pieces of at most ``chunk`` frames, each with the
        config's ``receptive_frames()`` of context a side (:func:`~canora.vocoder.inference.pieces`)."""
        cut = pieces(mel.shape[2], self.chunk_frames if chunk is None else chunk, self.config.receptive_frames())
        if len(cut) == 1:
            return self.generator.network(mel, src)
        hop, out = self.spec.hop_length, []
        for a, b, lo, hi in cut:
            wav = self.generator.network(mel[..., lo:hi], None if src is None else src[..., lo * hop: hi * hop])
            out.append(wav[..., (a - lo) * hop: (b - lo) * hop])
        return torch.cat(out, dim=-1)

    def frame_cycles(self, f0: np.ndarray) -> np.ndarray:
        """Start phases (T + 1,) float64 in cycles of an NSF vocoder's fundamental for pieces of the song ``f0``
        (T,) Hz (0 = unvoiced) beginning at each frame, and the song's total at its end
        (:func:`canora.vocoder.excitation.frame_cycles`); zeros for a plain HiFi-GAN (no source)."""
        if not self.needs_f0:
            return np.zeros(len(f0) + 1)
        return self.generator.source.frame_cycles(f0)

    def vocode(self, mel: np.ndarray, f0: np.ndarray | None = None, start_phase: float = 0.0,
               start_frame: int = 0, seed: int = 0) -> np.ndarray:
        """numpy convenience: (n_mels, T) [+ F0 (T,)] -> (T * hop,) float32 (arguments as in :meth:`__call__`)."""
        return self(mel, f0, seed=seed, start_phase=start_phase, start_frame=start_frame).cpu().numpy()

    # ------------------------------------------------------------------ saving
    def export(self, directory: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """Write a slim export (folded weights + config + MelSpec) that :meth:`from_pretrained` reads."""
        if self.backend != "torch":
            raise CanoraError(f"{self.source}: an ONNX vocoder holds no torch weights; export the model it came from")
        return save_export(
            directory,
            kind=NSF_KIND if self.needs_f0 else EXPORT_KIND,
            config=self.config.to_dict(),
            mel_spec=self.spec,
            state_dict=self.generator.state_dict(),
            meta={**({"singers": list(self.singers)} if self.singers else {}), **(meta or {})},
        )


def official_config(gcfg: GeneratorConfig, spec: MelSpec, extra: dict[str, Any] | None = None) -> str:
    """An official-layout ``config.json`` text for a generator + MelSpec (with a ``canora`` section)."""
    cfg: dict[str, Any] = {
        **gcfg.to_hifigan_config(),
        "segment_size": 8192, "n_fft": spec.n_fft, "hop_size": spec.hop_length, "win_size": spec.win_length,
        "sampling_rate": spec.sample_rate, "fmin": spec.fmin, "fmax": spec.fmax, "fmax_for_loss": None,
        **(extra or {}),
        "canora": {"mel_spec": spec.to_dict()},
    }
    return json.dumps(cfg, indent=4) + "\n"
