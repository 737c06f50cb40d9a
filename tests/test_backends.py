"""The one rule for torch or ONNX Runtime (:mod:`canora.backends`), and ``canora export --cache`` that lets offline
``--backend auto`` run on ONNX Runtime."""

from __future__ import annotations

import json

import pytest

from canora.backends import cached_copy, choose_backend, onnx_available
from canora.errors import CanoraError
from tests.conftest import make_tiny_models

pytestmark = pytest.mark.skipif(not onnx_available(), reason="the onnx extra is not installed")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_tiny_models(tmp_path_factory.mktemp("backend_models"), seed=7)


def test_explicit_choices_and_devices_win(models):
    ref, voc = models
    pair = ((ref, "refiner"), (voc, "vocoder"))
    assert choose_backend("torch", models=pair, streaming=True) == "torch"
    assert choose_backend("onnx", models=pair) == "onnx"
    assert choose_backend("auto", "cuda:0", models=pair, streaming=True) == "torch"  # ONNX Runtime runs on the CPU
    with pytest.raises(CanoraError, match="unknown backend"):
        choose_backend("tensorrt")


@pytest.mark.slow
def test_offline_auto_runs_on_onnx_runtime_once_the_copies_are_kept(models, synth_clip, tmp_path, capsys, caplog):
    from canora.cli import main

    ref, voc = models
    pair = ((ref, "refiner"), (voc, "vocoder"))
    assert choose_backend("auto", models=pair, streaming=True) == "onnx"  # streaming exports on first use
    with caplog.at_level("INFO", logger="canora"):
        assert choose_backend("auto", models=pair) == "torch"  # offline: no export in the way of a conversion
    assert "no ONNX copy kept" in caplog.text
    assert main(["export", str(ref), "--cache"]) == 0
    assert main(["export", str(voc), "--cache"]) == 0
    copies = capsys.readouterr().out.split()
    assert [str(cached_copy(ref)), str(cached_copy(voc))] == copies  # said on stdout, kept where auto looks
    assert choose_backend("auto", models=pair) == "onnx"
    assert main(["export", str(voc), "--cache"]) == 0 and "already kept" in capsys.readouterr().err

    import numpy as np
    import soundfile as sf

    wav, sr = synth_clip
    sf.write(tmp_path / "in.wav", wav, sr)
    for backend in ("auto", "torch"):
        out = tmp_path / f"{backend}.wav"
        assert main(["convert", str(tmp_path / "in.wav"), "-o", str(out), "--refiner", str(ref), "--vocoder",
                     str(voc), "--steps", "2", "--backend", backend, "--float"]) == 0
    side = {b: json.loads((tmp_path / f"{b}.json").read_text()) for b in ("auto", "torch")}
    assert side["auto"]["backend"] == {"refiner": "onnx", "vocoder": "onnx"}
    assert side["torch"]["backend"] == {"refiner": "torch", "vocoder": "torch"}
    a, b = (sf.read(tmp_path / f"{x}.wav", dtype="float32")[0] for x in ("auto", "torch"))
    assert a.shape == b.shape and np.abs(b).max() > 1e-3 and np.max(np.abs(a - b)) < 1e-3  # float rounding only
    copy = cached_copy(voc)  # found before, remembered; a damaged copy is not
    graph = copy / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-10])
    assert cached_copy(voc) is None
    assert choose_backend("auto", models=pair) == "torch"


def test_cache_refuses_quantize_and_a_disabled_cache(models, monkeypatch, capsys):
    from canora.cli import main

    _, voc = models
    assert main(["export", str(voc), "--cache", "--quantize", "int8"]) == 2
    assert "drop --quantize" in capsys.readouterr().err
    monkeypatch.setenv("CANORA_CACHE_DIR", "")
    assert main(["export", str(voc), "--cache"]) == 2
    assert "caching is off" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # -o or --cache: one of them (an argparse usage error)
        main(["export", str(voc)])
    assert e.value.code == 2
