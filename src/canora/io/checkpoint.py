"""Versioned, safe checkpoint I/O shared by every model.

Two kinds of file:

* **Training state** (resumable): a torch file with model, optimizer, scheduler, step, EMA and RNG
  state, written atomically and read with ``weights_only=True``. :func:`prune` keeps the newest N.
* **Inference export** (slim): a directory holding ``model.safetensors`` and ``model.json`` =
  ``{"format": "canora-export", "format_version", "kind", "config", "mel_spec", "sha256", "meta"}``.
  Loading checks the format version, the kind and the weights' hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from canora.dsp.mel import MelSpec
from canora.errors import CheckpointError
from canora.io.files import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    import torch

FORMAT_VERSION = 1
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_META = "model.json"


def _first_sentence(e: BaseException, limit: int = 160) -> str:
    """The first sentence of an exception's message (torch's run on for a paragraph), at most ``limit`` chars."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text.split(". ")[0].rstrip(".")[:limit]


def load_torch_file(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, with one clear error for anything that is not a checkpoint.

    Reads both zip and legacy (non-zip) torch pickles.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({e.strerror or e})") from None
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # zip archive or legacy pickle
        raise CheckpointError(f"{path}: not a torch checkpoint (neither a zip nor a pickle file)")
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = _first_sentence(e)
        raise CheckpointError(
            f"{path}: not a safe torch checkpoint ({first}); canora only loads weights (weights_only=True)"
        ) from None
    except MemoryError:
        raise CheckpointError(f"{path}: too large to load into memory; is it a checkpoint?") from None
    except Exception as e:  # truncated zips, corrupt pickles, foreign objects: torch raises many types
        first = _first_sentence(e)
        raise CheckpointError(f"{path}: not a torch checkpoint ({first})") from None


def save_torch_file(path: str | Path, obj: Any) -> None:
    """Atomically ``torch.save`` ``obj`` to ``path`` (never leaves a half-written file)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def prune(directory: Path, prefix: str, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest ``<prefix><digits>`` files in ``directory``; return those deleted."""
    found = sorted(
        (int(m.group(1)), p)
        for p in directory.glob(f"{prefix}*")
        if (m := re.fullmatch(re.escape(prefix) + r"(\d+)", p.name))
    )
    doomed = [p for _, p in found[: max(0, len(found) - keep)]]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


def newest(directory: Path, prefix: str) -> Path | None:
    """The ``<prefix><digits>`` file in ``directory`` with the highest number, or None."""
    best: tuple[int, Path] | None = None
    for p in directory.glob(f"{prefix}*"):
        m = re.fullmatch(re.escape(prefix) + r"(\d+)", p.name)
        if m and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), p)
    return best[1] if best else None


# ---------------------------------------------------------------------- slim inference export
def save_export(
    directory: str | Path,
    *,
    kind: str,
    config: dict[str, Any],
    mel_spec: MelSpec,
    state_dict: dict[str, torch.Tensor],
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` + ``model.json`` into ``directory`` (atomically, file by file)."""
    from safetensors.torch import save as st_save

    directory = Path(directory)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    blob = st_save(tensors)
    atomic_write_bytes(directory / EXPORT_WEIGHTS, blob)
    doc = {
        "format": "canora-export",
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "mel_spec": mel_spec.to_dict(),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "meta": meta or {},
    }
    atomic_write_text(directory / EXPORT_META, json.dumps(doc, indent=2) + "\n")
    return directory


def is_export(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / EXPORT_META).is_file()


def read_export_meta(directory: str | Path, kind: str | None = None) -> dict[str, Any]:
    """``model.json`` of an export, checked for format, version and (optionally) kind."""
    directory = Path(directory)
    meta_path = directory / EXPORT_META
    try:
        doc = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{directory}: not a canora model export (no {EXPORT_META})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{meta_path}: corrupt model description ({e}); re-export the model") from None
    except OSError as e:
        raise CheckpointError(f"{meta_path}: cannot read the model description ({e.strerror or e})") from None
    if not isinstance(doc, dict) or doc.get("format") != "canora-export":
        raise CheckpointError(f"{meta_path}: not a canora model export")
    version = doc.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{directory}: export format version {version} is newer than this canora reads ({FORMAT_VERSION}); "
            "upgrade canora"
        )
    if kind is not None and doc.get("kind") != kind:
        raise CheckpointError(f"{directory}: this is a {doc.get('kind')!r} model, expected a {kind!r} model")
    return doc


def load_export(directory: str | Path, kind: str | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """-> (model.json contents, state dict). Verifies the weights' sha256."""
    from safetensors.torch import load as st_load

    directory = Path(directory)
    doc = read_export_meta(directory, kind)
    wpath = directory / EXPORT_WEIGHTS
    try:
        blob = wpath.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{directory}: export has no {EXPORT_WEIGHTS}") from None
    except OSError as e:
        raise CheckpointError(f"{wpath}: cannot read the weights ({e.strerror or e})") from None
    if doc.get("sha256") and hashlib.sha256(blob).hexdigest() != doc["sha256"]:
        raise CheckpointError(f"{wpath}: weights do not match the hash in {EXPORT_META} (corrupt or replaced)")
    try:
        state = st_load(blob)
    except Exception as e:  # safetensors raises its own SafetensorError type
        raise CheckpointError(f"{wpath}: unreadable safetensors file ({e})") from None
    return doc, state
