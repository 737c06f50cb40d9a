"""The singer panel: a linear classifier of window embeddings that tells singers apart."""

from __future__ import annotations

import numpy as np
import pytest

from canora.analysis.singer_id import SingerPanel
from canora.errors import CanoraError

from .conftest import shared_file


def clusters(rng: np.random.Generator, centre: np.ndarray, n: int) -> np.ndarray:
    x = centre + 0.04 * rng.standard_normal((n, len(centre)))  # noise of norm ~0.6 around a unit centre
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_panel_separates_singers_and_balances_classes() -> None:
    rng = np.random.default_rng(0)
    c = rng.standard_normal((3, 256))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    # a class with ten times the windows must not swallow the others
    panel = SingerPanel.fit({"a": [clusters(rng, c[0], 400)], "b": [clusters(rng, c[1], 40)],
                             "c": [clusters(rng, c[2], 40), np.zeros((0, 256), np.float32)]})
    for i, name in enumerate("abc"):
        assert panel.share_of(clusters(rng, c[i], 50), name) > 0.95
        assert panel.top(clusters(rng, c[i], 50)) == name
    mixed = np.concatenate([clusters(rng, c[0], 30), clusters(rng, c[1], 10)])
    shares = panel.shares(mixed)
    assert abs(shares["a"] - 0.75) < 0.05 and abs(sum(shares.values()) - 1) < 1e-9
    assert np.isnan(panel.share_of(np.zeros((0, 256)), "a")) and panel.top(np.zeros((0, 256))) == ""
    with pytest.raises(CanoraError, match="not in the singer panel"):
        panel.share_of(mixed, "d")
    with pytest.raises(CanoraError, match="at least two singers"):
        SingerPanel.fit({"a": [clusters(rng, c[0], 10)], "b": [np.zeros((0, 256), np.float32)]})


@pytest.mark.slow
def test_real_singers_are_told_apart_on_files_the_panel_never_heard() -> None:
    pytest.importorskip("resemblyzer")
    from canora.analysis.singer_id import WindowEmbedder
    from canora.io.audio import load_audio

    files = {"pjs": (["pjs/pjs001_song.wav", "pjs/pjs002_song.wav"], "pjs/pjs085_song.wav"),
             "barbaros": (["makam/barbaros/02_Gel_2_zemin.flac", "makam/barbaros/02_Gel_4_nakarat.flac"],
                          "makam/barbaros/02_Koklasam_3_zemin.flac")}
    emb = WindowEmbedder()
    train = {s: [emb.windows(load_audio(shared_file(f), 22050), 22050) for f in tr] for s, (tr, _) in files.items()}
    panel = SingerPanel.fit(train)
    for s, (_, test) in files.items():
        w = emb.windows(load_audio(shared_file(test), 22050), 22050)
        assert len(w) >= 4 and panel.share_of(w, s) > 0.8
    assert len(emb.windows(np.zeros(22050 * 3, np.float32), 22050)) == 0  # silence: no windows


def test_identify_conversion_reads_target_source_and_leak(tmp_path) -> None:
    from canora.analysis.singer_id import identify_conversion, panel_from_folders

    rng = np.random.default_rng(1)
    c = rng.standard_normal((3, 256))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    panel = {"target": [clusters(rng, c[0], 60)], "other": [clusters(rng, c[1], 60)]}
    source = clusters(rng, c[2], 40)
    half = np.concatenate([clusters(rng, c[0], 20), clusters(rng, c[2], 20)])  # half the voice moved
    out = identify_conversion(panel, source, half)
    assert abs(out["id_target_converted"] - 0.5) < 0.1 and abs(out["id_source_converted"] - 0.5) < 0.1
    assert out["id_target_source"] < 0.05
    assert identify_conversion(panel, source, clusters(rng, c[0], 30))["id_top_converted"] == "target"
    with pytest.raises(CanoraError, match="no 'target'"):
        identify_conversion({"other": panel["other"]}, source, half)
    with pytest.raises(CanoraError, match="no singer folders"):
        panel_from_folders(tmp_path, None)  # type: ignore[arg-type]
