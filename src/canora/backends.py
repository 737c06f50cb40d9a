"""Which runtime a model runs on: torch, an ONNX export on ONNX Runtime (no torch import), or the kept ONNX copy
of a torch model. This module is the one place that decides; the model classes never import an exporter.

:func:`choose_backend` is the rule every command follows (``--backend auto|torch|onnx``): ``auto`` runs on ONNX
Runtime on a CPU when the ``onnx`` extra is installed and, offline, when no export has to be made first (the
models are ONNX exports or their copies are kept: ``canora export bundled --cache``, which ``scripts/setup.sh``
runs once); else on torch.

:func:`open_refiner` / :func:`open_vocoder` load a model by name or path for the pipeline and the CLI: an ONNX
export (``canora export``) runs on ONNX Runtime without importing torch, unless ``backend="torch"``; a torch model
with ``backend="onnx"`` goes through its ONNX copy, made once and kept: the first run exports it (torch) into the
cache, every later run loads the copy without importing torch.

A copy lives in ``cache_dir()/exports/<key>`` (:func:`canora.io.onnx.cache_dir`), a complete ``canora export``
directory. The key is a sha256 of the model's files (an export's ``model.json`` and weights, or an official
checkpoint and its ``config.json``) and of canora's model code, so a retrained model or a canora that computes
differently gets a new copy. A copy that fails its own hash check is made again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from canora.errors import CanoraError
from canora.io.models import resolve_model
from canora.io.onnx import cache_dir, code_digest, is_onnx_export, read_graph, read_onnx_export

log = logging.getLogger(__name__)

#: the values of ``--backend``
BACKEND_CHOICES = ("auto", "torch", "onnx")


def check_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`BACKEND_CHOICES`, else one :class:`CanoraError` line."""
    if backend not in BACKEND_CHOICES:
        raise CanoraError(f"unknown backend {backend!r}; expected one of {', '.join(BACKEND_CHOICES)}")
    return backend


def onnx_available() -> bool:
    """True when torch models can be exported and run on ONNX Runtime here (the ``onnx`` extra is installed)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))


def resolve_backend(backend: str, devices: list[str] | tuple[str, ...] = ("cpu",)) -> str:
    """``"torch"`` or ``"onnx"`` for a :data:`BACKEND_CHOICES` value: ``"auto"`` is ONNX Runtime when every model
    runs on the CPU (``devices``: their device types) and the ``onnx`` extra is installed, else torch."""
    check_backend(backend)
    if backend != "auto":
        return backend
    return "onnx" if all(d == "cpu" for d in devices) and onnx_available() else "torch"


def choose_backend(backend: str, device: str = "cpu", *, models: tuple[tuple[str | Path | None, str], ...] = (),
                   streaming: bool = False, config: str | Path | None = None) -> str:
    """The runtime of a command's models, ``"torch"`` or ``"onnx"``: ``backend`` when it is not ``"auto"``;
    for ``"auto"`` ONNX Runtime on a CPU with the ``onnx`` extra installed, when streaming (exported on first
    use, the copy kept) or when every model of ``models`` ((name or path, ``"refiner"``/``"vocoder"``) pairs) is
    an ONNX export or has its ONNX copy kept (:func:`cached_copy`); else torch. ``config``: an official vocoder
    checkpoint's config.json (part of its copy's key)."""
    if resolve_backend(backend, [str(device).split(":")[0]]) != "onnx":
        return "torch"
    if backend == "onnx" or streaming:
        return "onnx"
    for name, kind in models:
        path = resolve_model(name, kind)
        if not is_onnx_export(path) and cached_copy(path, config if kind == "vocoder" else None) is None:
            log.info("%s: on torch (no ONNX copy kept; `canora export bundled --cache` or `--backend onnx` once "
                     "makes one, and later runs use ONNX Runtime)", path)
            return "torch"
    return "onnx"


def _model_files(path: Path, config: str | Path | None) -> list[Path]:
    """The files that define the model at ``path`` (a directory's regular files, or a checkpoint and its config)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    else:
        beside = path.parent / "config.json"
        files = [path] + ([Path(config)] if config is not None else [beside] if beside.is_file() else [])
    if not files:
        raise CanoraError(f"{path}: no model files to export")
    return files


def copy_key(path: str | Path, config: str | Path | None = None) -> str:
    """The cache key of the ONNX copy of the torch model at ``path`` (see the module doc)."""
    h = hashlib.sha256(code_digest().encode())
    for f in _model_files(Path(path), config):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:32]


def _intact(directory: Path) -> bool:
    """True when ``directory`` is an ONNX export whose every graph matches its hash."""
    try:
        doc = read_onnx_export(directory)
        for name in doc["files"]:
            read_graph(directory, doc, name)
    except CanoraError:
        return False
    return True


#: (cache root, config, the model's files with their sizes and times) -> (the intact copy found for them in this
#: process, its own files' sizes and times then)
_FOUND: dict[tuple[Any, ...], tuple[Path, tuple[Any, ...]]] = {}


def _stamp(files: list[Path]) -> tuple[Any, ...]:
    """Name, size and modification time of each file (a cheap test that none changed)."""
    return tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)


def cached_copy(path: str | Path, config: str | Path | None = None) -> Path | None:
    """The ONNX copy of the torch model at ``path`` if one is kept and intact, else None (nothing imported). A copy
    found once is remembered for the process while the model's files keep their size and time (a conversion asks
    for each model's copy several times; each look hashes the weights and the graphs)."""
    root = cache_dir()
    if root is None:
        return None
    memo = (str(root), str(config), _stamp(_model_files(Path(path), config)))
    found = _FOUND.get(memo)
    try:
        if found is not None and _stamp(sorted(found[0].iterdir())) == found[1]:
            return found[0]
    except OSError:  # the copy was removed meanwhile
        pass
    d = root / "exports" / copy_key(path, config)
    if not _intact(d):
        return None
    _FOUND[memo] = (d, _stamp(sorted(d.iterdir())))
    return d


def onnx_copy(path: str | Path, config: str | Path | None = None) -> Path:
    """The ONNX copy of the torch model at ``path``: the kept one, or a new export (imports torch; tens of seconds
    for the bundled models) kept for next time. Without a cache (``CANORA_CACHE_DIR`` set empty) the export goes to
    a temporary directory that lasts as long as the process."""
    found = cached_copy(path, config)
    if found is not None:
        return found
    from canora.export import export_onnx

    root = cache_dir()
    log.info("%s: exporting to ONNX once (later runs load the copy%s)", path,
             f" from {root / 'exports'}" if root is not None else "; no cache: CANORA_CACHE_DIR is empty")
    parent = root / "exports" if root is not None else None
    if parent is not None:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            parent = None
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=parent))
    export_onnx(path, tmp / "model", config=config)
    if parent is None:
        return tmp / "model"
    final = parent / copy_key(path, config)
    try:
        if final.exists() and not _intact(final):  # damaged: replace it
            shutil.rmtree(final)
        if not final.exists():  # (else another process made it meanwhile)
            os.replace(tmp / "model", final)
    except OSError as e:
        log.debug("cannot keep the ONNX copy in %s (%s); using it from %s", final, e, tmp)
        return tmp / "model"
    shutil.rmtree(tmp, ignore_errors=True)
    return final


def open_refiner(path: str | Path | None, device: str = "cpu", backend: str | None = None) -> Any:
    """The refiner at ``path`` (a name as in :func:`resolve_model`): an ONNX export on ONNX Runtime without importing
    torch (:class:`canora.refiner.ort.OrtRefiner`) unless ``backend == "torch"``; a torch model with ``backend ==
    "onnx"`` through its kept ONNX copy (:func:`onnx_copy`); else
    :meth:`canora.refiner.api.Refiner.from_pretrained`."""
    resolved = resolve_model(path, "refiner")
    if backend == "onnx" and str(device) == "cpu" and not is_onnx_export(resolved):
        resolved = onnx_copy(resolved)
    if is_onnx_export(resolved) and backend in (None, "onnx") and str(device) == "cpu":
        from canora.refiner.ort import OrtRefiner

        return OrtRefiner.load(resolved)
    from canora.refiner import Refiner

    return Refiner.from_pretrained(resolved, device=device, backend=backend)


def open_vocoder(path: str | Path | None, config: str | None = None, device: str = "cpu",
                 backend: str | None = None) -> Any:
    """The vocoder at ``path``: an ONNX export on ONNX Runtime without importing torch
    (:class:`canora.vocoder.ort.OrtVocoder`) unless ``backend == "torch"``; a torch model with ``backend == "onnx"``
    through its kept ONNX copy (:func:`onnx_copy`); else
    :meth:`canora.vocoder.api.Vocoder.from_pretrained`."""
    resolved = resolve_model(path, "vocoder")
    if backend == "onnx" and str(device) == "cpu" and not is_onnx_export(resolved):
        resolved = onnx_copy(resolved, config)
    if is_onnx_export(resolved) and backend in (None, "onnx") and str(device) == "cpu":
        from canora.vocoder.ort import OrtVocoder

        return OrtVocoder.load(resolved)
    from canora.vocoder import Vocoder

    return Vocoder.from_pretrained(resolved, config=config, device=device, backend=backend)


def on_onnx_runtime(model: Any, kind: str) -> Any:
    """``model`` (a loaded refiner or vocoder, ``kind`` ``"refiner"``/``"vocoder"``) on ONNX Runtime: itself when it
    runs there already; one loaded from a path through its kept copy (:func:`onnx_copy`); one built in memory
    exported in memory (graphs cached, :func:`canora.io.onnx.cache_dir`)."""
    if model.backend != "torch":
        return model
    if model.source and Path(model.source).exists():
        return (open_refiner if kind == "refiner" else open_vocoder)(model.source, backend="onnx")
    if kind == "refiner":
        from canora.refiner.onnx import to_onnx_backend as refiner_on_onnx

        return refiner_on_onnx(model)
    from canora.vocoder.onnx import to_onnx_backend as vocoder_on_onnx

    return vocoder_on_onnx(model)


def onnx_exports_only(refiner: str | Path | None, vocoder: str | Path | None, backend: str | None = None,
                      device: str = "cpu") -> bool:
    """True when both models (names or paths as ``from_pretrained`` takes them) will run on ONNX Runtime from ONNX
    exports: exports given, or with ``backend="onnx"`` the kept ONNX copies of torch models
    (:func:`cached_copy`). A conversion then never imports torch."""
    if backend == "torch" or str(device) != "cpu":
        return False
    paths = (resolve_model(refiner, "refiner"), resolve_model(vocoder, "vocoder"))
    return all(is_onnx_export(p) or (backend == "onnx" and cached_copy(p) is not None) for p in paths)
