"""``canora export``: a vocoder or refiner -> an ONNX export directory that ONNX Runtime runs.

It lives above :mod:`canora.vocoder` and :mod:`canora.refiner` (it takes either); each model's graph and
runtime are in :mod:`canora.vocoder.onnx` and :mod:`canora.refiner.onnx`, the file format in
:mod:`canora.io.onnx`.

Accepted models: an official HiFi-GAN generator (``g_*`` file or its directory, ``config.json`` beside it or
given), a canora vocoder export (``hifigan`` or ``nsf-hifigan``), a canora refiner export or a content encoder
export (``content-encoder``, :mod:`canora.content.onnx`). After writing,
the export is loaded back and run on ONNX Runtime against the torch model on a synthetic sung tone; the
largest difference is reported (for ``quantize="int8"`` that is the quantization error).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from canora.errors import CanoraError
from canora.io.checkpoint import is_export, read_export_meta
from canora.io.onnx import ONNX_META, QUANTIZATIONS, is_onnx_export, read_onnx_export

log = logging.getLogger(__name__)
FORMATS = ("onnx",)
VOCODER_KINDS = ("hifigan", "nsf-hifigan")
#: ONNX Runtime vs torch on the check input: fp32 graphs beyond this are reported as a problem
FP32_TOLERANCE = 1e-3


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote: the directory, the kind, the files and their sizes, and the check."""

    directory: Path
    kind: str
    files: dict[str, int] = field(default_factory=dict)
    quantize: str | None = None
    max_abs_diff: float = float("nan")
    check: str = ""

    def summary(self) -> str:
        size = sum(self.files.values()) / 1e6
        q = f", {self.quantize}" if self.quantize else ""
        return (f"wrote {self.directory} ({self.kind}{q}: {', '.join(self.files)}, {size:.1f} MB); "
                f"ONNX Runtime vs torch on {self.check}: max |diff| {self.max_abs_diff:.2e}")


def check_export_out(model: Path, out: Path, overwrite: bool = False) -> None:
    """``out`` can take the export: not a file, not the model's own directory, and either absent or empty, or (with
    ``overwrite``) an ONNX export that may be replaced."""
    if out.exists() and not out.is_dir():
        raise CanoraError(f"{out}: exists and is not a directory; choose another -o")
    if out.resolve() == (model if model.is_dir() else model.parent).resolve():
        raise CanoraError(f"{out}: is the model's own directory; write the ONNX export to another -o")
    if (out / ONNX_META).is_file() and not is_onnx_export(out):
        raise CanoraError(f"{out}: holds another model's {ONNX_META}; write the ONNX export to another -o")
    if out.is_dir() and any(out.iterdir()):
        if not is_onnx_export(out):
            raise CanoraError(f"{out}: a directory that holds other files; write the ONNX export to a new or empty -o")
        if not overwrite:
            raise CanoraError(f"{out}: an ONNX export is already there; pass --overwrite to replace it, or choose "
                              "another -o")


def _swap_in(staging: Path, out: Path) -> None:
    """Publish the finished export ``staging`` as ``out`` (replacing an export there): two renames, the old one
    removed after."""
    import shutil

    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.canora-{os.getpid()}-old.tmp")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    try:
        os.replace(staging, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _tone(sr: int, seconds: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """A sung tone with vibrato (samples,) and its F0 per sample: test input every machine has."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 220 * 2 ** (0.5 * np.sin(2 * np.pi * 5 * t) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 12)) * np.minimum(1, t / 0.1)
    return (0.3 * wav).astype(np.float32), f0


def _check_vocoder(torch_voc: Any, directory: Path) -> tuple[float, str]:
    from canora.dsp.mel import wav_to_mel
    from canora.vocoder.onnx import load_onnx_vocoder

    spec = torch_voc.spec
    wav, f0s = _tone(spec.sample_rate)
    mel = wav_to_mel(wav, spec)
    f0 = f0s[:: spec.hop_length][: mel.shape[1]].astype(np.float32) if torch_voc.needs_f0 else None
    ref = torch_voc.vocode(mel, f0)
    out = load_onnx_vocoder(directory).vocode(mel, f0)
    return float(np.abs(out - ref).max()), f"a {len(wav) / spec.sample_rate:.1f} s synthetic sung tone"


def _check_refiner(torch_ref: Any, directory: Path) -> tuple[float, str]:
    from canora.refiner.onnx import load_onnx_refiner

    onnx_ref = load_onnx_refiner(directory)
    cfg = torch_ref.model.config
    g = torch.Generator().manual_seed(0)
    n = 64
    f0, voiced = 200 + 50 * torch.rand(1, n, generator=g), torch.ones(1, n)
    loud = -30 + 5 * torch.randn(1, n, generator=g)
    content = torch.randn(1, cfg.content_dim, n, generator=g) if cfg.content_dim else None
    singer = torch.zeros(1, dtype=torch.long)
    x = torch.randn(1, cfg.n_mels, n, generator=g)
    worst = 0.0
    with torch.inference_mode():
        cond = torch_ref.model.encode(f0, voiced, loud, content, singer)
        cond_onnx = onnx_ref.model.encode(f0, voiced, loud, content, singer)
        worst = float((cond - cond_onnx).abs().max())
        for step in (1, 500, torch_ref.schedule.num_train_timesteps):
            t = torch.full((1,), step, dtype=torch.long)
            ref = torch_ref.model.denoise(x, t, cond)
            worst = max(worst, float((onnx_ref.model.denoise(x, t, cond_onnx) - ref).abs().max()))
    return worst, f"random input, {n} frames (encoder, and the denoiser at 3 noise levels)"


def export_onnx(
    model: str | Path, out: str | Path, *, quantize: str | None = None, config: str | Path | None = None,
    fmt: str = "onnx", overwrite: bool = False,
) -> ExportResult:
    """Export ``model`` (see module doc) to ``out``: ``model.onnx`` (+ ``encoder.onnx`` for a refiner) and
    ``model.json``; returns what was written and the ONNX-vs-torch check. The export is written and checked in a
    temporary directory beside ``out`` and then renamed to it, so ``out`` holds a whole export or none; an export
    already at ``out`` is replaced only with ``overwrite``."""
    import tempfile

    from canora.io.files import claim, remove_stale_temps

    model, out = Path(model), Path(out)
    check_export_out(model, out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out.parent)
    with claim([out]):
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name[:100]}.canora-{os.getpid()}-", suffix=".tmp",
                                        dir=out.parent))
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(staging, 0o777 & ~umask)  # a directory like any other, not mkdtemp's private one
            res = _export(model, staging, quantize=quantize, config=config, fmt=fmt)
            check_export_out(model, out, overwrite)  # another run may have written it meanwhile
            _swap_in(staging, out)
        finally:
            if staging.exists():
                import shutil

                shutil.rmtree(staging, ignore_errors=True)
    res.directory = out
    return res


def _export(
    model: Path, out: Path, *, quantize: str | None = None, config: str | Path | None = None, fmt: str = "onnx",
) -> ExportResult:
    """:func:`export_onnx` into the (new, empty) directory ``out``."""
    if fmt not in FORMATS:
        raise CanoraError(f"unknown export format {fmt!r}; expected one of {FORMATS}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise CanoraError(f"unknown quantization {quantize!r}; expected one of {QUANTIZATIONS}")
    if not model.exists():
        raise CanoraError(f"{model}: no such file or directory; pass a vocoder (g_* file, its directory, or a "
                          "canora vocoder export) or a canora refiner export")
    if is_onnx_export(model):
        raise CanoraError(f"{model}: is already an ONNX export; pass the torch model it was exported from")
    kind = read_export_meta(model).get("kind") if is_export(model) else "hifigan"
    if kind == "refiner":
        from canora.refiner import Refiner
        from canora.refiner.onnx import export_refiner_onnx

        ref = Refiner.from_pretrained(model, backend="torch")
        export_refiner_onnx(ref, out, quantize=quantize)
        diff, what = _check_refiner(ref, out)
    elif kind in VOCODER_KINDS:
        from canora.vocoder import Vocoder
        from canora.vocoder.onnx import export_vocoder_onnx

        voc = Vocoder.from_pretrained(model, config=config, backend="torch")
        kind = "nsf-hifigan" if voc.needs_f0 else "hifigan"
        export_vocoder_onnx(voc, out, quantize=quantize)
        diff, what = _check_vocoder(voc, out)
    elif kind == "content-encoder":
        from canora.content.onnx import export_content_onnx

        if quantize is not None:
            raise CanoraError("--quantize applies to vocoders and refiners; the content encoder exports in float32")
        _, diff = export_content_onnx(model, out)
        what = "random log-mel, 300 frames (against the numpy encoder canora runs)"
    else:
        raise CanoraError(f"{model}: a canora {kind!r} export; `canora export` takes a vocoder (HiFi-GAN or NSF), "
                          "a refiner or a content encoder")
    if not math.isfinite(diff):
        raise CanoraError(f"{out}: the ONNX model gives NaN/inf where torch does not; report this as a bug")
    if quantize is None and diff > FP32_TOLERANCE:
        log.warning("%s: ONNX Runtime differs from torch by %.2e (more than %.0e); check the export", out, diff,
                    FP32_TOLERANCE)
    files = {name: (out / name).stat().st_size for name in read_onnx_export(out)["files"]}
    return ExportResult(out, kind, files, quantize, diff, what)
