"""Versioned, safe checkpoint I/O shared by every model.

Two kinds of file:

* **Training state** (resumable): a torch file with model, optimizer, scheduler, step, EMA and RNG
  state, written atomically and read with ``weights_only=True``. :func:`prune` keeps the newest N.
* **Inference export** (slim): a directory holding ``model.safetensors`` and ``model.json`` =
  ``{"format": "canora-export", "format_version", "kind", "config", "mel_spec", "sha256", "config_sha256",
  "meta"}``. Loading checks the format version, the kind, the weights' hash (``sha256``) and the hash of the kind,
  config and MelSpec (``config_sha256``), so an edited config is refused before a model is built from it. Exports
  written before ``config_sha256`` existed load without it (their configs are still checked against bounds, and the
  model is built on torch's meta device and compared with the weights before any memory is allocated for it).
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from canora.config import regular_file
from canora.dsp.mel import MelSpec
from canora.errors import CheckpointError
from canora.io.files import atomic_write_bytes, atomic_write_text
from canora.io.inputs import read_bytes_capped, read_json_file

#: the largest torch file canora opens (an official HiFi-GAN v1 do_* training state is about 0.9 GB)
MAX_TORCH_FILE_BYTES = 4 * 2**30

if TYPE_CHECKING:
    import torch

M = TypeVar("M")

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
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"{path}: checkpoint not found")
    size = regular_file(path, "checkpoint", CheckpointError).st_size  # a pipe or device would block or never end
    if size > MAX_TORCH_FILE_BYTES:
        raise CheckpointError(f"{path}: {size / 2**30:.1f} GB is more than a checkpoint canora reads (at most "
                              f"{MAX_TORCH_FILE_BYTES // 2**30} GB); is it the right file?")
    head = _head(path)
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


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(4)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({e.strerror or e})") from None


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
def config_digest(doc: dict[str, Any]) -> str:
    """sha256 of the ``kind``, ``config`` and ``mel_spec`` of a ``model.json`` (canonical JSON): what an export's
    ``config_sha256`` holds, so that an edited config is refused before a model is built from it."""
    body = {k: doc.get(k) for k in ("kind", "config", "mel_spec")}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except ValueError:  # NaN or infinity in the config: it cannot match any hash canora wrote
        return ""
    return hashlib.sha256(text.encode()).hexdigest()


def check_format_version(doc: dict[str, Any], current: int, where: Path | str, what: str) -> None:
    """One :class:`CheckpointError` when ``doc["format_version"]`` is not a whole number >= 1, or is newer than
    ``current``."""
    version = doc.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{where}: format_version {version!r} is not a format version (a whole number >= 1); "
                              f"the {what} is damaged: re-export it")
    if version > current:
        raise CheckpointError(f"{where}: {what} format version {version} is newer than this canora reads "
                              f"(up to {current}); upgrade canora")


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
    doc["config_sha256"] = config_digest(doc)
    atomic_write_text(directory / EXPORT_META, json.dumps(doc, indent=2) + "\n")
    return directory


def build_to_fit(build: Callable[[], M], state: dict[str, Any], source: str,
                 check: Callable[[Any], None] | None = None) -> M:
    """``build()`` (a torch module), once a copy built on torch's meta device (no memory allocated) fits ``state``:
    ``check(probe)`` raises when it does not (default: the same names and shapes). A config edited to ask for a
    huge model is refused here, before the model is allocated."""
    import torch

    with torch.device("meta"):
        probe = build()
    if check is not None:
        check(probe)
    else:
        want = {k: tuple(v.shape) for k, v in probe.state_dict().items()}  # type: ignore[attr-defined]
        have = {k: tuple(getattr(v, "shape", ())) for k, v in state.items()}
        if want != have:
            wrong = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
            k = wrong[0]
            raise CheckpointError(f"{source}: weights do not fit the config ({len(wrong)} tensor(s) differ, first "
                                  f"{k}: weights {have.get(k, 'missing')}, config {want.get(k, 'missing')}); "
                                  "re-export the model")
    del probe
    return build()


def is_export(path: str | Path) -> bool:
    """A directory with a ``model.json`` (of any kind of file: reading it says what is wrong with it)."""
    path = Path(path)
    return path.is_dir() and ((path / EXPORT_META).exists() or (path / EXPORT_META).is_symlink())


def read_export_meta(directory: str | Path, kind: str | None = None) -> dict[str, Any]:
    """``model.json`` of an export, checked for format, version and (optionally) kind."""
    directory = Path(directory)
    meta_path = directory / EXPORT_META
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory}: is a file, not a model directory; pass an export directory (with "
                              f"{EXPORT_META})")
    if not meta_path.exists() and not meta_path.is_symlink():
        raise CheckpointError(f"{directory}: not a canora model export (no {EXPORT_META})")
    doc = read_json_file(meta_path, "re-export the model", CheckpointError, "model description")
    if not isinstance(doc, dict) or doc.get("format") != "canora-export":
        raise CheckpointError(f"{meta_path}: not a canora model export")
    check_format_version(doc, FORMAT_VERSION, meta_path, "export")
    if kind is not None and doc.get("kind") != kind:
        raise CheckpointError(f"{directory}: this is a {doc.get('kind')!r} model, expected a {kind!r} model")
    if "config_sha256" in doc and doc["config_sha256"] != config_digest(doc):
        raise CheckpointError(f"{meta_path}: its kind, config or mel_spec do not match config_sha256 (edited or "
                              "damaged); re-export the model, or restore the file")
    return doc


def load_export(directory: str | Path, kind: str | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """-> (model.json contents, state dict). Verifies the weights' sha256."""
    from safetensors.torch import load as st_load

    directory = Path(directory)
    doc = read_export_meta(directory, kind)
    wpath = directory / EXPORT_WEIGHTS
    if not wpath.exists() and not wpath.is_symlink():
        raise CheckpointError(f"{directory}: export has no {EXPORT_WEIGHTS}")
    blob = read_bytes_capped(wpath, "weights file", CheckpointError)
    if doc.get("sha256") and hashlib.sha256(blob).hexdigest() != doc["sha256"]:
        raise CheckpointError(f"{wpath}: weights do not match the hash in {EXPORT_META} (corrupt or replaced)")
    try:
        state = st_load(blob)
    except Exception as e:  # safetensors raises its own SafetensorError type
        raise CheckpointError(f"{wpath}: unreadable safetensors file ({e})") from None
    return doc, state
