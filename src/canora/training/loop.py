"""The one training loop every canora model trains with; a :class:`Task` supplies model, data, step and
validation.

What the loop owns, once for every task:

* **resume**: the newest checkpoint that loads (older ones are tried when the newest is damaged, and the
  skipped ones are named); the saved run config wins except for the fields a task marks resumable;
* **determinism**: step ``s`` on rank ``r`` draws from a generator seeded with ``(seed, r, s)``, and the
  global torch RNG is saved and restored, so a resumed run ends bit-identical to one that never stopped;
* **signals**: SIGTERM / SIGINT finish the current step, checkpoint, export and return;
* **distributed**: under ``torchrun`` (``WORLD_SIZE`` > 1) one process group (gloo on CPU, nccl on CUDA),
  stop decisions agreed by all ranks, rank 0 alone logs, validates, checkpoints and exports;
* **non-finite policy**: a loss that is NaN/inf stops training before any update or checkpoint with it
  (:meth:`Context.check_finite`, agreed across ranks), and weights that became non-finite are never saved;
* **checkpoints**: atomic, every ``checkpoint_every`` steps and at the end, the newest ``keep`` kept, a lock on
  the run directory so that two trainers never share it;
* **exports**: a slim export at every checkpoint, written to ``exports/step_N`` and published by switching
  the ``export`` symlink atomically (a crash never leaves a half-written export behind that link);
* **logging**: TensorBoard and ``train_log.jsonl`` (non-finite values as null), a progress bar.

Run directory ``OUT``::

    OUT/ckpt_00001000       resumable state (the HiFi-GAN task writes the official g_/do_ pair instead)
    OUT/exports/step_N/     slim exports; OUT/export -> exports/step_N, the newest
    OUT/logs/               TensorBoard; OUT/train_log.jsonl: the same scalars as JSON lines
    OUT/.lock               held while a trainer runs
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from canora.errors import CanoraError, CheckpointError
from canora.io.checkpoint import load_torch_file, prune, save_torch_file
from canora.training.run_config import RunConfig  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

STATE_VERSION = 2


class TrainingDiverged(CanoraError):
    """A non-finite loss: training stopped before any update or checkpoint with it."""


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The generator of update ``step`` (0-based) on ``rank``: a function of (seed, rank, step) only."""
    return torch.Generator().manual_seed((seed * 1_000_003 + rank * 7_919 + step) % (2**63 - 1))


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment (0, 1, 0 without it)."""
    env = os.environ
    return int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", "0"))


class Context:
    """What a task sees of the run: directory, process, device, progress; DDP and finiteness helpers."""

    def __init__(self, out: Path, device: str, progress: bool) -> None:
        self.out = out
        self.rank, self.world, self.local_rank = dist_info()
        self.progress = progress and self.rank == 0
        if device.startswith("cuda") and self.world > 1:
            device = f"cuda:{self.local_rank}"
        self.device = torch.device(device)
        self.last_good: Path | None = None
        self.resuming = False  # set by the loop before Task.setup: a checkpoint will be loaded after it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def any_rank(self, local: bool) -> bool:
        """True on every rank when ``local`` is True on any rank."""
        if self.world == 1:
            return local
        import torch.distributed as dist

        flag = torch.tensor([1.0 if local else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` under DistributedDataParallel when distributed, else itself."""
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    @staticmethod
    @contextmanager
    def no_sync(*modules: nn.Module) -> Iterator[None]:
        """Skip DDP's gradient all-reduce for ``modules`` (for gradients that are thrown away)."""
        ctxs = [m.no_sync() for m in modules if hasattr(m, "no_sync")]
        for c in ctxs:
            c.__enter__()
        try:
            yield
        finally:
            for c in reversed(ctxs):
                c.__exit__(None, None, None)

    def check_finite(self, what: str, step: int, *losses: torch.Tensor) -> None:
        """Raise :class:`TrainingDiverged` (on every rank) when any loss is NaN/inf; call before ``backward``."""
        bad = not all(bool(torch.isfinite(x.detach()).all()) for x in losses)
        if self.any_rank(bad):
            values = ", ".join(f"{float(x.detach()):g}" for x in losses)
            raise TrainingDiverged(
                f"{what} loss became non-finite ({values}) at step {step + 1}; no update and no checkpoint was "
                f"made with it; the last good checkpoint is {self.last_good or 'none (none written yet)'}: resume "
                "from it with a lower --lr, or check the data")


class CheckpointStore:
    """Resumable state as one torch file per checkpoint, ``<out>/ckpt_<step:08d>``."""

    prefix = "ckpt_"

    def candidates(self, out: Path) -> list[Path]:
        """Checkpoints in ``out``, newest first."""
        found = []
        for p in out.glob(f"{self.prefix}*"):
            tail = p.name[len(self.prefix):]
            if tail.isdigit() and p.is_file():
                found.append((int(tail), p))
        return [p for _, p in sorted(found, reverse=True)]

    def read(self, path: Path) -> dict[str, Any]:
        """-> ``{"step", "train_config" (JSON text or None), "rng_torch" (or None), "task": {...}}``."""
        st = load_torch_file(path)
        if not isinstance(st, dict) or "task" not in st or "step" not in st:
            raise CheckpointError(f"{path}: not a canora training checkpoint")
        if int(st.get("format_version", 0)) > STATE_VERSION:
            raise CheckpointError(f"{path}: training state version {st.get('format_version')} is newer than this "
                                  "canora; upgrade canora")
        return st

    def write(self, out: Path, step: int, payload: dict[str, Any]) -> Path:
        path = out / f"{self.prefix}{step:08d}"
        save_torch_file(path, {"format_version": STATE_VERSION, **payload})
        return path

    def prune(self, out: Path, keep: int) -> None:
        prune(out, self.prefix, keep)


class Task(ABC):
    """A model to train: the loop calls :meth:`setup` once, then :meth:`train_step` per update, with
    :meth:`validate`, :meth:`state_dict` and :meth:`export` at their cadence."""

    label: ClassVar[str] = "train"
    store: CheckpointStore = CheckpointStore()

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    @abstractmethod
    def setup(self, ctx: Context) -> None:
        """Build models, optimizers and data (after :meth:`load_state_dict` may be called)."""

    @abstractmethod
    def modules(self) -> list[nn.Module]:
        """Every trained module (checked for finite weights before a checkpoint)."""

    @abstractmethod
    def train_step(self, step: int, gen: torch.Generator, ctx: Context) -> dict[str, float]:
        """Update number ``step + 1`` with randomness from ``gen``; call ``ctx.check_finite`` before
        ``backward``; return the scalars to log (``loss`` first)."""

    def validate(self, ctx: Context, step: int) -> dict[str, float]:
        """Scores on held-out data (rank 0 only); default: none."""
        return {}

    def log_media(self, writer: Any, step: int) -> None:  # noqa: B027 (optional hook)
        """Audio or figures for TensorBoard after a validation (rank 0 only); default: none."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything besides step, RNG and config that a bit-exact resume needs."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        """Inverse of :meth:`state_dict` (a :class:`CheckpointError` naming ``source`` when it does not fit)."""

    def export(self, directory: Path, step: int) -> Path | None:
        """Write a slim export of the current weights into ``directory``; None when the task has none."""
        return None

    def describe(self) -> str:
        """One line for the log when training starts."""
        return ""

    def config_for_resume(self, saved: dict[str, Any], source: str) -> RunConfig:
        """The run config saved in a checkpoint (a dict), parsed."""
        return type(self.cfg).from_dict(saved, source)


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` (an advisory lock) for the run; a second trainer on ``out`` is refused."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    fh = open(out / ".lock", "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise CanoraError(f"{out}: another trainer is running in this directory; wait for it, stop it, or use "
                              "another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield
    finally:
        fh.close()


def log_scalars(writer: Any, out: Path, step: int, scalars: dict[str, float]) -> None:
    """``scalars`` to TensorBoard (when ``writer``) and one JSON line in ``out/train_log.jsonl`` (non-finite
    values as null)."""
    if writer is not None:
        for k, v in scalars.items():
            writer.add_scalar(k, v, step)
    line = {"step": step, "time": round(time.time(), 1),
            **{k: (round(float(v), 6) if math.isfinite(v) else None) for k, v in scalars.items()}}
    with open(out / "train_log.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


def publish_export(out: Path, step: int, task: Task, keep: int = 2) -> Path | None:
    """``task.export`` into ``out/exports/step_N``, then switch the ``out/export`` symlink to it atomically;
    the newest ``keep`` exports stay. Returns the export directory (None when the task has no export)."""
    target = out / "exports" / f"step_{step:08d}"
    if target.exists():
        shutil.rmtree(target)
    if task.export(target, step) is None:
        return None
    link, tmp = out / "export", out / ".export.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(Path("exports") / target.name)
    if link.exists() and not link.is_symlink():  # an export directory written by canora 0.1
        shutil.rmtree(link)
    os.replace(tmp, link)
    for old in sorted((out / "exports").glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for orphan in (out / "exports").glob(".*.tmp*"):
        shutil.rmtree(orphan, ignore_errors=True) if orphan.is_dir() else orphan.unlink(missing_ok=True)
    return target


class Loop:
    """Train ``task`` in ``out`` (resuming the run there): ``Loop(task, out).run()``."""

    def __init__(self, task: Task, out: str | Path, *, progress: bool = True) -> None:
        self.task = task
        self.out = Path(out)
        self.progress = progress
        self.step = 0
        self.ctx: Context | None = None
        self.resumed = False
        self.interrupted = False  # the last run() stopped at a signal (SIGTERM, Ctrl-C), after its checkpoint

    # -------------------------------------------------------------- resume
    def _resume_state(self, ctx: Context) -> tuple[Path | None, dict[str, Any] | None]:
        """The newest checkpoint that reads, with its state; damaged newer ones are named and skipped."""
        skipped = []
        for path in self.task.store.candidates(self.out):
            try:
                state = self.task.store.read(path)
            except CheckpointError as e:
                skipped.append(f"{path.name} ({e})")
                continue
            if skipped and ctx.is_main:
                log.warning("resuming from %s; skipped unreadable newer checkpoint(s): %s", path.name,
                            "; ".join(skipped))
            return path, state
        if skipped:
            raise CheckpointError(f"{self.out}: no checkpoint here can be read ({'; '.join(skipped)}); restore one "
                                  "or use a new --out")
        return None, None

    def _merge_config(self, saved: RunConfig, ctx: Context) -> RunConfig:
        given = self.task.cfg
        resumable = type(given).RESUMABLE
        # a resumable field given as None was not given (e.g. no --recon-steps: keep the run's phase plan)
        changed = {k: v for k, v in asdict(given).items()
                   if k in resumable and v is not None and v != getattr(saved, k)}
        ignored = [k for k, v in asdict(given).items() if k not in resumable and v != getattr(saved, k)]
        if ignored and ctx.is_main:
            log.warning("resuming %s: keeping its saved %s (only %s may change on resume)",
                        self.out, ", ".join(sorted(ignored)), ", ".join(sorted(resumable)))
        return replace(saved, **changed)

    # -------------------------------------------------------------- checkpoints
    def save(self, ctx: Context) -> Path:
        """Checkpoint (refused when a weight is non-finite), prune, export."""
        if not all(bool(torch.isfinite(p).all()) for m in self.task.modules() for p in m.parameters()):
            raise TrainingDiverged(f"weights became non-finite by step {self.step}; not saving them; the last good "
                                   f"checkpoint is {ctx.last_good or 'none'}")
        path = self.task.store.write(self.out, self.step, {
            "step": self.step, "train_config": json.dumps(self.task.cfg.to_dict()),
            "rng_torch": torch.get_rng_state(), "task": self.task.state_dict()})
        self.task.store.prune(self.out, self.task.cfg.keep)
        ctx.last_good = path
        publish_export(self.out, self.step, self.task)
        return path

    # -------------------------------------------------------------- the loop
    def prepare(self) -> Context:
        """Resume (the newest readable checkpoint) and set the task up; idempotent. :meth:`run` calls it;
        tests call it to drive :meth:`step_once` by hand."""
        if self.ctx is not None:
            return self.ctx
        self.out.mkdir(parents=True, exist_ok=True)
        ctx = Context(self.out, self.task.cfg.device, self.progress)
        if ctx.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("nccl" if ctx.device.type == "cuda" else "gloo")
        task = self.task
        resume_path, state = self._resume_state(ctx)
        if state is not None and state.get("train_config"):
            saved = task.config_for_resume(json.loads(state["train_config"]), str(resume_path))
            task.cfg = self._merge_config(saved, ctx)
        torch.manual_seed(task.cfg.seed)
        ctx.resuming = state is not None
        task.setup(ctx)
        if state is not None:
            task.load_state_dict(state["task"], str(resume_path))
            self.step = int(state["step"])
            if state.get("rng_torch") is not None:
                torch.set_rng_state(state["rng_torch"])
            ctx.last_good = resume_path
            if ctx.is_main:
                log.info("resumed %s at step %d", resume_path, self.step)
        self.resumed = state is not None
        self.ctx = ctx
        return ctx

    def step_once(self) -> dict[str, float]:
        """One update with this step's generator; returns the task's scalars."""
        ctx = self.prepare()
        scalars = self.task.train_step(self.step, step_generator(self.task.cfg.seed, ctx.rank, self.step), ctx)
        self.step += 1
        return scalars

    def run(self) -> Path | None:
        """Train to ``steps`` (or ``max_minutes``, or a signal); returns the newest export directory, or the
        newest checkpoint for tasks without exports (None on ranks > 0)."""
        _, world, _ = dist_info()
        try:
            if dist_info()[0] == 0:
                self.out.mkdir(parents=True, exist_ok=True)
                with run_lock(self.out):
                    return self._run()
            return self._run()
        finally:
            if world > 1:
                import torch.distributed as dist

                if dist.is_initialized():
                    dist.destroy_process_group()

    def _run(self) -> Path | None:
        from tqdm import tqdm

        ctx = self.prepare()
        task, cfg = self.task, self.task.cfg
        writer = None
        if ctx.is_main:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.out / "logs"), purge_step=self.step or None)
            log.info("%s: %s, step %d -> %d", task.label, task.describe(), self.step, cfg.steps)
        stop = {"now": False}

        def _handler(signum: int, frame: Any) -> None:
            stop["now"] = True

        old = {s: signal.signal(s, _handler) for s in (signal.SIGTERM, signal.SIGINT)}
        bar = tqdm(total=cfg.steps, initial=self.step, desc=task.label, unit="step", disable=not ctx.progress,
                   mininterval=0.5 if sys.stderr.isatty() else 60.0)
        t0 = time.monotonic()
        running: list[dict[str, float]] = []
        saved_at = self.step if self.resumed else -1
        try:
            if ctx.is_main and self.step == 0 and cfg.val_every:
                self._validate(ctx, writer)  # the baseline (the starting point's score, for fine-tunes)
            while self.step < cfg.steps:
                running.append(self.step_once())
                bar.update(1)
                want = stop["now"] or bool(cfg.max_minutes and time.monotonic() - t0 >= 60 * cfg.max_minutes)
                if ctx.any_rank(want):
                    if ctx.is_main:
                        log.info("stopping at step %d (%s)", self.step, "signal" if stop["now"] else "max_minutes")
                    break
                if not ctx.is_main:
                    continue
                if cfg.log_every and self.step % cfg.log_every == 0:
                    mean = {k: float(np.mean([r[k] for r in running if k in r])) for k in running[-1]}
                    running.clear()
                    log_scalars(writer, self.out, self.step, {f"train/{k}": v for k, v in mean.items()})
                    bar.set_postfix({k: f"{v:.4g}" for k, v in list(mean.items())[:1]})
                if cfg.val_every and self.step % cfg.val_every == 0:
                    self._validate(ctx, writer)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save(ctx)
                    saved_at = self.step
            if ctx.is_main and saved_at != self.step:
                self.save(ctx)
        finally:
            self.interrupted = stop["now"]
            bar.close()
            for s, h in old.items():
                signal.signal(s, h)
            if writer is not None:
                writer.close()
        ctx.barrier()
        if not ctx.is_main:
            return None
        link = self.out / "export"
        return link.resolve() if link.exists() else ctx.last_good

    def _validate(self, ctx: Context, writer: Any) -> None:
        scores = self.task.validate(ctx, self.step)
        if scores:
            log_scalars(writer, self.out, self.step, {f"val/{k}": v for k, v in scores.items()})
        if writer is not None:
            self.task.log_media(writer, self.step)


def holdout(files: list[Path], count: int | None, fraction: float = 0.05, most: int = 10
            ) -> tuple[list[Path], list[Path]]:
    """Split ``files`` (sorted by name) into (train, validation): the last ``count`` files, or with ``count``
    None ``fraction`` of them (at least 1, at most ``most``; none for a single file). ``count`` 0 = no
    validation; a count that would leave nothing to train on is an error."""
    files = sorted(files)
    n = len(files)
    if count is None:
        k = min(most, max(1, round(fraction * n))) if n >= 2 else 0
    else:
        if count < 0:
            raise CanoraError(f"--val-count must be >= 0, got {count}")
        if count >= n and count > 0:
            raise CanoraError(f"--val-count {count} would hold out all {n} file(s); give at most {n - 1}, or 0 for "
                              "no validation")
        k = count
    return files[: n - k], files[n - k:]
