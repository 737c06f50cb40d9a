"""The singer panel the voice and conversion benchmarks judge identity with (``canora.analysis.singer_id``).

Classes: the target (its held-out recordings), the other development singers no bundled model trained as a
target here (PJS when she is not the target, the four makam singers), and each source singer's own audio outside
the converted clip (the rest of its recording and its other takes), so a conversion that still sounds like its
source is read as such.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from canora.analysis.singer_id import SingerPanel, WindowEmbedder
from canora.io.audio import load_audio

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SR = 22050
#: other development singers for the panel (patterns under the data folder)
OTHER_SINGERS = {"pjs": [f"pjs/pjs{i:03d}_song.wav" for i in range(82, 91)], "idil": ["makam/idil/*.flac"],
                 "guelen": ["makam/guelen/*.flac"], "barbaros": ["makam/barbaros/*.flac"],
                 "guelcin": ["makam/guelcin/*.flac"]}
#: other takes of each source's singer (besides the rest of its own recording)
SOURCE_OTHER = {"nitech_jp_song070_f001_004": ["nitsong070/nitech_jp_song070_f001_007.wav"],
                "DCS_SE_FullChoir_ScaleUpDown02_S1_DYN": ["dagstuhl/*S1_LRX*.wav"],
                "DCS_SE_FullChoir_ScaleUpDown02_B2_DYN": ["dagstuhl/*B2_LRX*.wav"]}


def glob(patterns: list[str]) -> list[Path]:
    return sorted(p for pat in patterns for p in DATA.glob(pat))


def middle(wav: np.ndarray, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(the middle ``seconds`` of ``wav``, the rest of it joined)."""
    n = int(seconds * SR)
    a = max(0, (len(wav) - n) // 2)
    return wav[a: a + n], np.concatenate([wav[:a], wav[a + n:]])


class IdentityJudge:
    """A singer panel for one target and one set of source clips: ``share(wav)`` -> (share of the windows given to
    the target, the singer most windows go to)."""

    def __init__(self, target: str, target_files: list[Path], sources: list[Path], clip_seconds: float,
                 exclude: tuple[Path, ...] = ()) -> None:
        self.win = WindowEmbedder()
        skip = {p.resolve() for p in [*target_files, *exclude]}
        panel: dict[str, list[np.ndarray]] = {target: [self.win.windows(load_audio(p, SR), SR) for p in target_files]}
        for name, pats in OTHER_SINGERS.items():
            if name != target:
                panel[name] = [self.win.windows(load_audio(p, SR), SR) for p in glob(pats) if p.resolve() not in skip]
        for p in sources:
            _, rest = middle(load_audio(p, SR), clip_seconds)
            own = [self.win.windows(rest, SR)] + [self.win.windows(load_audio(q, SR), SR)
                                                   for q in glob(SOURCE_OTHER.get(p.stem, []))]
            if sum(len(e) for e in own):
                panel[f"src:{p.stem}"] = own
        self.target = target
        self.panel = SingerPanel.fit(panel)

    def share(self, wav: np.ndarray) -> tuple[float, str]:
        w = self.win.windows(wav, SR)
        return (self.panel.share_of(w, self.target) if len(w) else float("nan")), self.panel.top(w)
