"""The content encoder as an ONNX export (``canora export`` of a ``content-encoder`` export).

One graph, ``model.onnx``: ``mel`` (B, n_mels, T) float32 log-mel -> ``content`` (B, dim, T), batch and frame
count dynamic, the per-frame normalisation inside. canora itself runs the encoder in numpy
(:mod:`canora.content.net`); the ONNX export is for other programs (and streaming hosts) that embed it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from canora.content.learned import KIND, resolve
from canora.errors import CanoraError


def export_content_onnx(model: str | Path, out: str | Path) -> tuple[Path, float]:
    """Write ``out/model.onnx`` + ``model.json`` for the content encoder export ``model`` ('bundled' or a path);
    -> (out, the largest difference of ONNX Runtime from the numpy network on a random log-mel)."""
    import torch

    from canora.content.config import ContentNetConfig
    from canora.content.learned import LearnedContent
    from canora.content.model import ContentNet
    from canora.dsp.mel import MelSpec
    from canora.io.checkpoint import load_export
    from canora.io.onnx import exporter_info, make_session, save_onnx_export, torch_to_onnx

    src = resolve(model)
    doc, state = load_export(src, KIND)
    cfg = ContentNetConfig.from_dict(doc["config"], f"{src}/model.json")
    net = ContentNet(cfg)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CanoraError(f"{src}: weights do not fit the encoder's config ({str(e).splitlines()[0]})") from None
    frames = torch.export.Dim("frames", min=1, max=1 << 20)
    batch = torch.export.Dim("batch", min=1, max=1024)
    example = torch.full((1, cfg.n_mels, 64), -5.0)
    graph = torch_to_onnx(net.eval(), (example,), ["mel"], ["content"], {"mel": {0: batch, 2: frames}},
                          f"{src} (content encoder)")
    out = Path(out)
    save_onnx_export(out, kind=KIND, graphs={"model.onnx": graph}, config=cfg.to_dict(),
                     mel_spec=MelSpec.from_dict(doc["mel_spec"]), onnx_info=exporter_info(),
                     runtime={"input": "mel (B, n_mels, T) natural-log mel, floor ln 1e-5",
                              "output": "content (B, dim, T)"},
                     meta={**doc.get("meta", {}), "weights_sha256": doc.get("sha256")})
    mel = np.random.default_rng(0).normal(-6.0, 2.5, (1, cfg.n_mels, 300)).astype(np.float32)
    ref = LearnedContent(str(src)).net(mel[0])
    got = make_session(graph, threads=1, name="content encoder").run(["content"], {"mel": mel})[0][0]
    return out, float(np.abs(got - ref).max())
