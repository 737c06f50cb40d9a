"""ONNX exports on disk and the ONNX Runtime sessions that run them; no model code here (models sit above io).

An ONNX export is a directory in canora's export style::

    model.onnx       the network (for the refiner: its denoiser)
    encoder.onnx     further graphs a kind needs (the refiner's conditioning encoder)
    model.json       {"format": "canora-onnx-export", "format_version", "kind", "config", "mel_spec",
                      "sha256" (of model.onnx), "files" ({name: sha256} of every graph), "config_sha256" (of kind,
                      config and mel_spec: canora.io.checkpoint.config_digest), "onnx" (opset,
                      exporter, quantization, each graph's inputs and outputs), "runtime" (what the runtime
                      computes outside the graph), "meta"}

``kind`` names the model family as in the torch exports (``hifigan``, ``nsf-hifigan``, ``refiner``) and
``config`` is the same config dict, so everything but the weights reads as in a torch export. Loading checks
the format, its version, the kind and each graph's sha256.

The heavy pieces are imported only when used: ``onnxruntime`` when a session is made, ``onnx`` /
``onnxscript`` (the ``onnx`` extra) when a model is exported or quantised.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from canora.dsp.mel import MelSpec
from canora.errors import CanoraError, CheckpointError
from canora.io.checkpoint import EXPORT_WEIGHTS, check_format_version, config_digest
from canora.io.files import atomic_write_bytes, atomic_write_text
from canora.io.inputs import read_bytes_capped, read_json_file

if TYPE_CHECKING:
    import torch

ONNX_FORMAT = "canora-onnx-export"
ONNX_FORMAT_VERSION = 1
ONNX_FILE = "model.onnx"
ONNX_META = "model.json"
#: opset of the graphs canora writes (the torch.export-based exporter's default in torch 2.13)
OPSET = 18
QUANTIZATIONS = ("int8",)
INSTALL_HINT = "install the onnx extra: pip install 'canora[onnx]'"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------- files
def is_onnx_export(path: str | Path) -> bool:
    """True for a directory whose ``model.json`` says it is an ONNX export, or that holds a ``model.onnx`` and no
    torch weights (its ``model.json`` is checked on load, not here)."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / ONNX_FILE).is_file() and not (path / EXPORT_WEIGHTS).is_file():
        return True
    try:
        doc = read_json_file(path / ONNX_META, "")
    except CanoraError:
        return False
    return isinstance(doc, dict) and doc.get("format") == ONNX_FORMAT


def loads_as_onnx_export(path: Path, kind: str, backend: str | None, device_type: str,
                         backends: tuple[str, ...] = ("torch", "onnx")) -> bool:
    """For a model class's ``from_pretrained`` (``kind``: ``"refiner"`` or ``"vocoder"``): True when ``path`` is an
    ONNX export, to open on ONNX Runtime; False for a torch model. One :class:`CanoraError` line for an unknown
    ``backend``, an ONNX export asked for on torch or on a GPU, and a torch model asked for on ONNX Runtime (that
    needs an export first: :func:`canora.backends.open_refiner` / ``open_vocoder`` decide that)."""
    if backend is not None and backend not in backends:
        raise CanoraError(f"unknown {kind} backend {backend!r}; expected one of {backends}")
    if not is_onnx_export(path):
        if backend == "onnx":
            raise CanoraError(f"{path}: {kind.capitalize()}.from_pretrained loads torch models; to run one on ONNX "
                              f"Runtime, open it with canora.backends.open_{kind}(path, backend='onnx')")
        return False
    if backend == "torch":
        raise CanoraError(f"{path}: this is an ONNX export; it runs with backend 'onnx' (or load the torch model it "
                          "was exported from)")
    if device_type != "cpu":
        raise CanoraError(f"{path}: the ONNX backend runs on the CPU only; use --device cpu or the torch model")
    return True


def save_onnx_export(
    directory: str | Path,
    *,
    kind: str,
    graphs: Mapping[str, bytes],
    config: dict[str, Any],
    mel_spec: MelSpec,
    onnx_info: dict[str, Any],
    runtime: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``graphs`` ({file name: serialized ModelProto}, ``model.onnx`` among them) and ``model.json``."""
    if ONNX_FILE not in graphs:
        raise ValueError(f"an ONNX export needs a {ONNX_FILE}")
    directory = Path(directory)
    stale: list[str] = []
    if (directory / ONNX_META).is_file():  # re-exporting over an older ONNX export: drop graphs it had, we don't
        with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
            old = json.loads((directory / ONNX_META).read_text())
            if old.get("format") == ONNX_FORMAT:
                stale = [n for n in old.get("files", {}) if n not in graphs and Path(n).name == n]
    for name, blob in graphs.items():
        atomic_write_bytes(directory / name, blob)
    doc = {
        "format": ONNX_FORMAT,
        "format_version": ONNX_FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "mel_spec": mel_spec.to_dict(),
        "sha256": sha256(graphs[ONNX_FILE]),
        "files": {name: sha256(blob) for name, blob in graphs.items()},
        "onnx": onnx_info,
        "runtime": runtime or {},
        "meta": meta or {},
    }
    doc["config_sha256"] = config_digest(doc)
    atomic_write_text(directory / ONNX_META, json.dumps(doc, indent=2) + "\n")
    for name in stale:
        (directory / name).unlink(missing_ok=True)
    return directory


def read_onnx_export(directory: str | Path, kind: str | tuple[str, ...] | None = None) -> dict[str, Any]:
    """``model.json`` of an ONNX export, checked for format, version and (optionally) kind."""
    directory = Path(directory)
    meta_path = directory / ONNX_META
    if not meta_path.exists() and not meta_path.is_symlink():
        raise CheckpointError(f"{directory}: not a canora ONNX export (no {ONNX_META}); make one with "
                              "`canora export MODEL -o DIR`")
    doc = read_json_file(meta_path, "re-export the model", CheckpointError, "model description")
    if not isinstance(doc, dict) or doc.get("format") != ONNX_FORMAT:
        raise CheckpointError(f"{meta_path}: not a canora ONNX export; make one with `canora export MODEL -o DIR`")
    check_format_version(doc, ONNX_FORMAT_VERSION, meta_path, "ONNX export")
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and doc.get("kind") not in kinds:
        raise CheckpointError(f"{directory}: this is an ONNX {doc.get('kind')!r} model, expected "
                              + " or ".join(repr(k) for k in kinds))
    for key in ("config", "mel_spec", "files"):
        if not isinstance(doc.get(key), dict):
            raise CheckpointError(f"{meta_path}: incomplete ONNX export (no {key!r}); re-export the model")
    if "config_sha256" in doc and doc["config_sha256"] != config_digest(doc):
        raise CheckpointError(f"{meta_path}: its kind, config or mel_spec do not match config_sha256 (edited or "
                              "damaged); re-export the model, or restore the file")
    return doc


def read_graph(directory: str | Path, doc: dict[str, Any], name: str = ONNX_FILE) -> bytes:
    """The bytes of graph ``name`` of an export, checked against the sha256 in its ``model.json``."""
    path = Path(directory) / name
    want = doc["files"].get(name)
    if want is None:
        raise CheckpointError(f"{Path(directory) / ONNX_META}: lists no {name}; re-export the model")
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"{Path(directory)}: ONNX export has no {name}; re-export the model")
    blob = read_bytes_capped(path, "graph file", CheckpointError)
    if sha256(blob) != want:
        raise CheckpointError(f"{path}: graph does not match the hash in {ONNX_META} (corrupt or replaced)")
    return blob


# ---------------------------------------------------------------------- running
def make_session(model: bytes, threads: int | None = None, name: str = "model") -> Any:
    """An ONNX Runtime CPU session on a serialized model; ``threads`` intra-op threads (default: torch's when torch
    is imported, else the CPU cores this process may use)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise CanoraError(f"the ONNX backend needs onnxruntime; {INSTALL_HINT}") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or default_threads())
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        first = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise CheckpointError(f"{name}: onnxruntime cannot load this graph ({first}); re-export the model") from None


#: where ONNX Runtime models run: the ``device`` of the ONNX Runtime refiner and vocoder (``.type == "cpu"``, as a
#: torch device reads)
CPU = SimpleNamespace(type="cpu")

_THREADS: list[int] = []


def set_threads(n: int | None) -> None:
    """Intra-op threads of the ONNX Runtime sessions made from now on (``--threads``; None: the default)."""
    _THREADS[:] = [int(n)] if n else []


def default_threads() -> int:
    """Intra-op threads of a new session: :func:`set_threads`'s, else torch's when torch is imported, else the CPU
    cores this process may use."""
    import os
    import sys

    if _THREADS:
        return _THREADS[0]
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_io(session: Any, inputs: Sequence[str], outputs: Sequence[str], source: str) -> None:
    """Raise :class:`CheckpointError` unless ``session`` has exactly these input and output names."""
    got_in = [i.name for i in session.get_inputs()]
    got_out = [o.name for o in session.get_outputs()]
    if sorted(got_in) != sorted(inputs) or sorted(got_out) != sorted(outputs):
        raise CheckpointError(
            f"{source}: graph takes {got_in} and gives {got_out}, expected {list(inputs)} -> {list(outputs)}; "
            "re-export the model with this canora"
        )


# ---------------------------------------------------------------------- exporting
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's and the quantizer's progress prints, warnings and log lines (onnxscript, onnx_ir and
    onnxruntime.quantization log at INFO through the root logger); their errors still raise."""
    previous = logging.root.manager.disable
    try:
        logging.disable(logging.WARNING)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def cache_dir() -> Path | None:
    """Where exported graphs are kept between runs: ``$CANORA_CACHE_DIR/onnx``, else
    ``$XDG_CACHE_HOME/canora/onnx`` (``~/.cache/canora/onnx``); None when ``CANORA_CACHE_DIR`` is set empty."""
    import os

    env = os.environ.get("CANORA_CACHE_DIR")
    if env is not None:
        return Path(env).expanduser() / "onnx" if env.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "canora" / "onnx"


def code_digest() -> str:
    """sha256 of the model code (canora's refiner and vocoder packages and this module): a graph exported by
    other code is not reused."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted([*root.glob("refiner/*.py"), *root.glob("vocoder/*.py"), Path(__file__).resolve()]):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def graph_key(module: torch.nn.Module, args: tuple[torch.Tensor, ...], input_names: Sequence[str],
              output_names: Sequence[str], dynamic_shapes: dict[str, Any]) -> str:
    """The cache key of an export: the module's class, weights and buffers, the example inputs' shapes and
    dtypes, the names, the dynamic axes, the exporter's versions and the model code."""
    h = hashlib.sha256()
    h.update(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    h.update(repr([(tuple(a.shape), str(a.dtype)) for a in args]).encode())
    h.update(repr((list(input_names), list(output_names))).encode())
    h.update(repr({k: {ax: (d.__name__, getattr(d, "min", None), getattr(d, "max", None)) for ax, d in v.items()}
                   for k, v in sorted(dynamic_shapes.items())}).encode())
    h.update(json.dumps(exporter_info(), sort_keys=True).encode())
    h.update(code_digest().encode())
    return h.hexdigest()


def _cached(key: str) -> bytes | None:
    """The cached graph of ``key`` if it is there and intact (its sha256 recorded beside it), else None."""
    d = cache_dir()
    if d is None:
        return None
    graph, meta = d / f"{key}.onnx", d / f"{key}.json"
    try:
        data = graph.read_bytes()
        if json.loads(meta.read_text()).get("sha256") == sha256(data):
            return data
        logging.getLogger(__name__).warning("%s: damaged cached ONNX graph; exporting again", graph)
    except (OSError, ValueError, AttributeError):
        pass
    return None


def _store(key: str, data: bytes, what: str) -> None:
    """Keep an exported graph in the cache; a cache that cannot be written is skipped (logged at debug)."""
    d = cache_dir()
    if d is None:
        return
    try:
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(d / f"{key}.onnx", data)
        atomic_write_text(d / f"{key}.json", json.dumps({"sha256": sha256(data), "what": what, **exporter_info()}))
    except OSError as e:
        logging.getLogger(__name__).debug("ONNX graph cache %s not written: %s", d, e)


def torch_to_onnx(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_shapes: dict[str, Any],
    what: str,
) -> bytes:
    """Export ``module(*args)`` with the torch.export-based exporter (opset :data:`OPSET`), weights inside the
    graph; ``dynamic_shapes`` maps input names to ``{axis: torch.export.Dim}``. -> serialized ModelProto.

    Exports are kept in :func:`cache_dir` under :func:`graph_key`, so a model exported once (tens of seconds)
    loads at once the next time: same weights, shapes, exporter and model code give the same graph."""
    key = graph_key(module, args, input_names, output_names, dynamic_shapes)
    hit = _cached(key)
    if hit is not None:
        return hit
    data = _export(module, args, input_names, output_names, dynamic_shapes, what)
    _store(key, data, what)
    return data


def _export(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_shapes: dict[str, Any],
    what: str,
) -> bytes:
    """:func:`torch_to_onnx` without the cache."""
    try:
        import onnx  # noqa: F401  (the exporter needs both)
        import onnxscript  # noqa: F401
    except ImportError:
        raise CanoraError(f"exporting to ONNX needs the onnx and onnxscript packages; {INSTALL_HINT}") from None
    import torch

    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(
                module.eval(), args, dynamo=True, input_names=list(input_names), output_names=list(output_names),
                dynamic_shapes=dynamic_shapes, opset_version=OPSET, optimize=True, verbose=False,
                external_data=False, report=False,
            )
    except Exception as e:  # the exporter raises many kinds; one line for the user, the cause for -v
        logging.getLogger(__name__).debug("ONNX export of %s failed", what, exc_info=True)
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise CanoraError(f"{what}: torch.onnx.export failed ({type(e).__name__}: {first})") from None
    return program.model_proto.SerializeToString()


def quantize_int8(model: bytes, what: str = "model") -> bytes:
    """ONNX Runtime dynamic quantization: int8 weights (per channel) for Conv / MatMul / Gemm, activations
    quantised per call. Other ops (ConvTranspose, Resize, ...) stay float."""
    try:
        import onnx  # noqa: F401  (onnxruntime.quantization needs it)
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise CanoraError(f"int8 quantization needs onnx and onnxruntime; {INSTALL_HINT}") from None
    import tempfile

    with tempfile.TemporaryDirectory(prefix="canora-quant-") as tmp:
        src, pre, dst = Path(tmp) / "in.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "out.onnx"
        src.write_bytes(model)
        try:
            with _quiet():
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
                quantize_dynamic(pre, dst, weight_type=QuantType.QInt8, per_channel=True)
        except Exception as e:
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise CanoraError(f"{what}: int8 quantization failed ({type(e).__name__}: {first})") from None
        return dst.read_bytes()


def exporter_info() -> dict[str, Any]:
    """Versions that made a graph (stored under ``model.json["onnx"]``)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    info: dict[str, Any] = {"opset": OPSET, "exporter": "torch.onnx.export(dynamo=True)", "torch": torch.__version__}
    for pkg in ("onnx", "onnxscript", "onnxruntime"):
        with contextlib.suppress(PackageNotFoundError):
            info[pkg] = version(pkg)
    return info
