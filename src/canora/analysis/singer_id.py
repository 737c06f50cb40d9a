"""Singer identification: which of a panel of real singers a recording's windows sound like.

The cosine of a clip's GE2E embedding to a singer's centroid saturates on singing (two female singers can score
0.86-0.93 against each other's centroid, as high as their own takes). The embeddings of short windows do separate
singers: resemblyzer's partial embeddings (1.6 s windows, half overlapping, of audio resampled to 16 kHz and
cleaned by its ``preprocess_wav``) classified by a linear model trained on recordings of each singer of a panel.

:class:`SingerPanel` is that judge: built from recordings per singer (``fit``), it tells for any audio the share
of its windows given to each singer (``shares``). A conversion is read as the share of its windows given to the
target singer, beside the same share for its source. The classifier is a multinomial logistic regression with L2,
classes weighted equally whatever their amount of audio (numpy + scipy's L-BFGS; no extra dependency).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from canora.errors import CanoraError

#: resemblyzer's rate
SAMPLE_RATE = 16000
#: the least audio (s) after resemblyzer's silence trimming that gives one window
MIN_SECONDS = 1.6


class WindowEmbedder:
    """Partial (window) GE2E embeddings from resemblyzer: ``windows(wav (N,), sr) -> (n, 256)`` unit vectors."""

    def __init__(self) -> None:
        try:
            from resemblyzer import VoiceEncoder
        except ImportError as e:  # optional extra
            raise CanoraError(f"singer identification needs resemblyzer ({e}); pip install 'canora[eval]'") from None
        self.encoder = VoiceEncoder("cpu", verbose=False)

    def windows(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """(n, 256) window embeddings of ``wav`` (N,) (n = 0 when under :data:`MIN_SECONDS` remain after
        resemblyzer's silence trimming)."""
        from resemblyzer import preprocess_wav

        from canora.dsp.resample import resample

        x = resample(np.asarray(wav, np.float32), sample_rate, SAMPLE_RATE)
        if not np.isfinite(x).all() or float(np.abs(x).max(initial=0.0)) == 0.0:
            return np.zeros((0, 256), np.float32)
        x = preprocess_wav(x, source_sr=SAMPLE_RATE)
        if len(x) < MIN_SECONDS * SAMPLE_RATE:
            return np.zeros((0, 256), np.float32)
        _, partials, _ = self.encoder.embed_utterance(x, return_partials=True)
        return np.asarray(partials, np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class SingerPanel:
    """A linear singer classifier over window embeddings. ``singers``: class names; ``weights`` (256 + 1, S)."""

    singers: list[str]
    weights: np.ndarray
    windows_per_singer: dict[str, int] = field(default_factory=dict)

    @classmethod
    def fit(cls, embeddings: Mapping[str, Sequence[np.ndarray]], l2: float = 1e-3) -> SingerPanel:
        """Train on ``embeddings``: singer -> window embeddings (n_i, 256) per recording; at least two singers
        with windows. Classes are weighted equally (balanced); ``l2`` penalises the weights."""
        from scipy.optimize import minimize

        names = [s for s, es in embeddings.items() if sum(len(e) for e in es) > 0]
        if len(names) < 2:
            raise CanoraError("singer identification needs recordings of at least two singers with 1.6 s of voice")
        x = np.concatenate([np.concatenate([e for e in embeddings[s] if len(e)]) for s in names]).astype(np.float64)
        y = np.concatenate([np.full(sum(len(e) for e in embeddings[s]), i) for i, s in enumerate(names)])
        counts = np.bincount(y, minlength=len(names)).astype(np.float64)
        w_sample = (len(y) / (len(names) * counts))[y]
        xb = np.hstack([x, np.ones((len(x), 1))])
        onehot = np.eye(len(names))[y]
        shape = (xb.shape[1], len(names))

        def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
            w = flat.reshape(shape)
            p = _softmax(xb @ w)
            ll = -np.sum(w_sample * np.log(np.maximum((p * onehot).sum(1), 1e-12))) / len(y)
            grad = xb.T @ ((p - onehot) * w_sample[:, None]) / len(y)
            reg = l2 * np.sum(w[:-1] ** 2)
            grad[:-1] += 2 * l2 * w[:-1]
            return float(ll + reg), grad.ravel()

        res = minimize(loss, np.zeros(shape).ravel(), jac=True, method="L-BFGS-B", options={"maxiter": 500})
        return cls(names, res.x.reshape(shape).astype(np.float32),
                   {s: int(c) for s, c in zip(names, counts.astype(int))})

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Class index (n,) of each window embedding (n, 256)."""
        if len(windows) == 0:
            return np.zeros(0, np.int64)
        xb = np.hstack([np.asarray(windows, np.float64), np.ones((len(windows), 1))])
        return np.argmax(xb @ self.weights, axis=1)

    def shares(self, windows: np.ndarray) -> dict[str, float]:
        """Share of the windows (n, 256) given to each singer (NaN for every singer when n = 0)."""
        pred = self.predict(windows)
        if len(pred) == 0:
            return {s: float("nan") for s in self.singers}
        counts = np.bincount(pred, minlength=len(self.singers))
        return {s: float(c / len(pred)) for s, c in zip(self.singers, counts)}

    def share_of(self, windows: np.ndarray, singer: str) -> float:
        """The share of ``windows`` given to ``singer`` (a name of the panel)."""
        if singer not in self.singers:
            raise CanoraError(f"{singer!r} is not in the singer panel ({', '.join(self.singers)})")
        return self.shares(windows)[singer]

    def top(self, windows: np.ndarray) -> str:
        """The singer most windows are given to ("" without windows)."""
        s = self.shares(windows)
        return "" if not len(windows) else max(s, key=lambda k: s[k])


def identify_conversion(panel: Mapping[str, Sequence[np.ndarray]], source: np.ndarray, converted: np.ndarray,
                        target: str = "target") -> dict[str, float | str]:
    """Who a conversion sounds like: a panel (singer -> window embeddings per recording, the target among them as
    ``target``) plus the source's own windows (n, 256) as one more singer, fitted for this source; -> the share of the
    conversion's windows (n', 256) given to the target (``id_target_converted``) and to the source's singer
    (``id_source_converted``), the share of the source's own windows given to the target (``id_target_source``),
    and the singer most of the conversion's windows go to (``id_top_converted``; "source" for the source's)."""
    classes = {name: list(w) for name, w in panel.items()}
    if target not in classes:
        raise CanoraError(f"the singer panel has no {target!r} recordings")
    classes["source"] = [source]
    fitted = SingerPanel.fit(classes)
    conv = fitted.shares(converted)
    src = fitted.shares(source)
    top = fitted.top(converted)
    return {"id_target_converted": conv[target], "id_source_converted": conv.get("source", float("nan")),
            "id_target_source": src[target], "id_top_converted": top}


def panel_from_folders(root: Path, embedder: WindowEmbedder, sample_rate: int = SAMPLE_RATE,
                       progress: bool = False) -> dict[str, list[np.ndarray]]:
    """Window embeddings of every recording in each sub-folder of ``root`` (one singer per folder, named after it;
    audio files directly in ``root`` are one singer each, named after the file)."""
    from canora.io.audio import AUDIO_EXTENSIONS, list_audio, load_audio

    if not root.is_dir():
        raise CanoraError(f"{root}: --panel takes a folder of singer folders (each holding that singer's recordings)")
    groups: dict[str, list[Path]] = {}
    for p in sorted(root.iterdir()):
        if p.is_dir():
            files = [f for f in list_audio(p) if f.suffix.lower() in AUDIO_EXTENSIONS]
            if files:
                groups[p.name] = files
        elif p.suffix.lower() in AUDIO_EXTENSIONS:
            groups[p.stem] = [p]
    if not groups:
        raise CanoraError(f"{root}: no singer folders with recordings in it")
    from tqdm import tqdm

    return {name: [embedder.windows(load_audio(f, sample_rate), sample_rate) for f in files]
            for name, files in tqdm(groups.items(), desc="singer panel", unit="singer", disable=not progress)}
