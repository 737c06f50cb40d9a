"""Output safety shared by every command: sets of files published together, checks before the work, stale temp
files, write errors as one line; and the model names (``bundled``) resolved in one place."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from canora.errors import CanoraError, CheckpointError
from canora.io.files import (
    OutputError,
    OutputSet,
    atomic_write_bytes,
    check_outputs,
    check_writable,
    remove_stale_temps,
)
from canora.io.models import BUNDLED, load_model, resolve_model


def test_an_output_set_is_published_together(tmp_path: Path) -> None:
    with OutputSet() as s:
        s.add(tmp_path / "a.wav", b"audio")
        s.add(tmp_path / "sub" / "a.json", b"{}")
        assert not (tmp_path / "a.wav").exists()  # staged only, under a temp name
    assert (tmp_path / "a.wav").read_bytes() == b"audio" and (tmp_path / "sub" / "a.json").read_bytes() == b"{}"
    assert not list(tmp_path.rglob("*.tmp"))


def test_an_error_inside_the_set_publishes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), OutputSet() as s:
        s.add(tmp_path / "a.wav", b"audio")
        1 / 0  # noqa: B018
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_is_one_line_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import canora.io.files as files

    real = files._mkstemp

    def full(path: Path) -> tuple[int, str]:
        if path.suffix == ".json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path)

    monkeypatch.setattr(files, "_mkstemp", full)
    with pytest.raises(OutputError, match=r"a\.json: cannot write \(No space left on device\); the disk is full") as e:
        with OutputSet() as s:
            s.add(tmp_path / "a.wav", b"audio")
            s.add(tmp_path / "a.json", b"{}")
    assert e.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # the staged wav was removed too
    with pytest.raises(OutputError, match="disk is full"):
        atomic_write_bytes(tmp_path / "b.json", b"{}")
    assert list(tmp_path.iterdir()) == []


def test_outputs_are_checked_before_the_work(tmp_path: Path) -> None:
    src = tmp_path / "in.wav"
    src.write_bytes(b"x")
    with pytest.raises(OutputError, match="overwrite the input"):
        check_outputs([src], inputs=[src])
    (tmp_path / "old.wav").write_bytes(b"keep")
    with pytest.raises(OutputError, match=r"old\.wav: already exists \(and 1 more output\(s\)\); pass --overwrite"):
        check_outputs([tmp_path / "old.wav", src])
    check_outputs([tmp_path / "old.wav"], overwrite=True)
    with pytest.raises(OutputError, match="is a directory"):
        check_outputs([tmp_path])
    with pytest.raises(OutputError, match=r"in\.wav is a file, not a directory"):
        check_writable(src / "deeper" / "still")
    check_writable(tmp_path / "not" / "yet" / "made")
    assert not (tmp_path / "not").exists()  # the probe creates nothing that stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "old.wav"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_found_by_the_probe(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="cannot write here"):
            check_writable(ro / "out")
    finally:
        ro.chmod(0o755)


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    stale = tmp_path / f".a.wav.canora-{dead}-xyz.tmp"
    live = tmp_path / f".b.wav.canora-{os.getpid()}-xyz.tmp"
    other = tmp_path / ".c.wav.tmp"  # not canora's naming: left alone
    for p in (stale, live, other):
        p.write_bytes(b"half")
    assert remove_stale_temps(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


def test_bundled_names_resolve_to_the_shipped_models(tmp_path: Path) -> None:
    for kind in ("refiner", "vocoder"):
        assert resolve_model(None, kind) == BUNDLED[kind] == resolve_model("bundled", kind)
        assert resolve_model("Bundled", kind) == BUNDLED[kind]
    assert resolve_model(tmp_path, "refiner") == tmp_path
    with pytest.raises(CheckpointError, match=r"nope: vocoder not found; .* 'bundled'"):
        resolve_model(tmp_path / "nope", "vocoder")
    with pytest.raises(CanoraError, match="unknown model kind"):
        resolve_model(None, "diffuser")


def test_bundled_base_names_the_shipped_base_refiner_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import canora.io.models as models

    assert resolve_model(models.BASE_NAME, "refiner") == models.BUNDLED_BASE
    assert resolve_model(" Bundled-Base ", "refiner") == models.BUNDLED_BASE
    with pytest.raises(CanoraError, match="bundled-base is a refiner"):
        resolve_model("bundled-base", "vocoder")
    (tmp_path / "bundled-base").mkdir()  # a folder of that name is ./bundled-base
    monkeypatch.chdir(tmp_path)
    assert resolve_model("./bundled-base", "refiner") == Path("./bundled-base")
    monkeypatch.setattr(models, "BUNDLED_BASE", tmp_path / "gone")
    with pytest.raises(CheckpointError, match="the bundled base refiner is missing; reinstall canora"):
        resolve_model("bundled-base", "refiner")


def test_load_model_names_the_file_of_every_failure(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.json").write_text(json.dumps({"format": "canora-export"}))

    def wrong_type(p: Path) -> None:
        raise TypeError("'int' object is not iterable")

    def unnamed(p: Path) -> None:
        raise CheckpointError("RefinerConfig.layers = 'x': expected an integer")

    with pytest.raises(CheckpointError, match=r"m/model\.json: not a usable refiner \(TypeError: 'int'"):
        load_model(d, "refiner", wrong_type)
    with pytest.raises(CheckpointError, match=r"m/model\.json: RefinerConfig\.layers"):
        load_model(d, "refiner", unnamed)
    assert load_model("bundled", "vocoder", lambda p: p) == BUNDLED["vocoder"]
    shutil.rmtree(d)


# ---------------------------------------------------------------------- two writers of one output
def test_an_output_that_appears_meanwhile_is_never_replaced(tmp_path: Path) -> None:
    """Without overwrite a set is published only where nothing exists by then: another run's file stays as it
    was, this run's files are all taken back, and the error says what happened."""
    with pytest.raises(OutputError, match=r"a\.wav: already exists \(written meanwhile by another run\?\); pass "
                                          r"--overwrite"), OutputSet(overwrite=False) as s:
        s.add(tmp_path / "a.json", b"{}")
        s.add(tmp_path / "a.wav", b"mine")
        (tmp_path / "a.wav").write_bytes(b"theirs")  # the other run published first
    assert (tmp_path / "a.wav").read_bytes() == b"theirs" and not (tmp_path / "a.json").exists()
    assert not list(tmp_path.glob(".*"))
    with OutputSet(overwrite=True) as s:  # with --overwrite, replaced
        s.add(tmp_path / "a.wav", b"mine")
    assert (tmp_path / "a.wav").read_bytes() == b"mine"
    with pytest.raises(OutputError, match="already exists"):
        atomic_write_bytes(tmp_path / "a.wav", b"again", overwrite=False)


def test_a_claimed_output_refuses_a_second_writer(tmp_path: Path) -> None:
    from canora.io.files import claim

    out = tmp_path / "o.wav"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / ".o.wav.canora-lock").write_text(f"{other.pid}\n")  # a live process holds it
        with pytest.raises(OutputError, match=rf"o\.wav: another canora run \(pid {other.pid}\) is writing it now"), \
                claim([out]):
            pass
        assert (tmp_path / ".o.wav.canora-lock").exists()  # its lock is left alone
    finally:
        other.kill()
        other.wait()
    with claim([out]):  # its process is gone: the lock is taken over, and removed afterwards
        assert (tmp_path / ".o.wav.canora-lock").read_text().strip() == str(os.getpid())
    assert not (tmp_path / ".o.wav.canora-lock").exists()


@pytest.mark.slow
def test_two_converts_to_one_output_cannot_both_write_it(tmp_path: Path, tiny_models) -> None:  # noqa: ANN001
    """The second convert to an output a first one is making is refused at once (the first's lock), with no
    --overwrite; the first's file is the one written."""
    import numpy as np
    import soundfile as sf

    from canora.cli import main
    from canora.io.files import claim

    sf.write(tmp_path / "s.wav", (0.3 * np.sin(np.arange(22050) * 0.06)).astype(np.float32), 22050)
    out = tmp_path / "out" / "o.wav"
    args = ["convert", str(tmp_path / "s.wav"), "-o", str(out), "--steps", "1", "--refiner", str(tiny_models[0]),
            "--vocoder", str(tiny_models[1])]
    first = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        out.parent.mkdir()
        (out.parent / ".o.wav.canora-lock").write_text(f"{first.pid}\n")  # the first run, in the middle of its work
        assert main(args) == 2 and not out.exists()
    finally:
        first.kill()
        first.wait()
    (out.parent / ".o.wav.canora-lock").unlink()
    with claim([out.with_name("other.wav")]):  # another output's lock does not stop it
        assert main(args) == 0 and out.exists()
    assert main(args) == 2  # and once written, a second run without --overwrite is refused


# ---------------------------------------------------------------------- export
def test_export_names_bundled_as_both_models(tmp_path: Path) -> None:
    from canora.cli.export import _jobs
    from canora.io.models import BUNDLED_BASE

    assert _jobs("bundled", tmp_path) == [(BUNDLED["refiner"], tmp_path / "refiner"),
                                          (BUNDLED["vocoder"], tmp_path / "vocoder")]
    assert _jobs("bundled-base", tmp_path) == [(BUNDLED_BASE, tmp_path)]
    assert _jobs("my_model", tmp_path) == [(Path("my_model"), tmp_path)]
