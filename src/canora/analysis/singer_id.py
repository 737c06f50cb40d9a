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
