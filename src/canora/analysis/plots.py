"""Matplotlib figures of the report (Agg backend), returned as PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from canora.dsp.mel import MelSpec


def _plt():  # noqa: ANN202 - matplotlib.pyplot module
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def band_centres_hz(spec: MelSpec) -> np.ndarray:
    """(n_mels,) centre frequency of each band in Hz (librosa mel points of the spec's scale)."""
    import librosa

    pts = librosa.mel_frequencies(spec.n_mels + 2, fmin=spec.fmin, fmax=spec.fmax_hz, htk=spec.mel_scale == "htk")
    return pts[1:-1]


def band_mean_std(
    mean_a: np.ndarray, std_a: np.ndarray, mean_b: np.ndarray, std_b: np.ndarray, labels: tuple[str, str]
) -> bytes:
    """Per-band mean +- std of two mel sets, and their difference."""
    plt = _plt()
    bands = np.arange(len(mean_a))
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    for m, s, lab, c in ((mean_a, std_a, labels[0], "tab:blue"), (mean_b, std_b, labels[1], "tab:orange")):
        ax.plot(bands, m, color=c, label=f"{lab} mean")
        ax.fill_between(bands, m - s, m + s, color=c, alpha=0.2, label=f"{lab} ± std")
    ax.set_ylabel("log-mel (ln)")
    ax.set_title("Per-band mean and standard deviation")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    ax2.bar(bands, mean_b - mean_a, color="tab:purple", label="mean difference")
    ax2.plot(bands, std_b - std_a, color="tab:green", label="std difference")
    ax2.axhline(0, color="k", lw=0.6)
    ax2.set_xlabel("mel band")
    ax2.set_ylabel(f"{labels[1]} − {labels[0]}")
    ax2.legend(loc="upper right", fontsize=8)
    ax2.grid(alpha=0.3)
    return _png(fig)


def histograms(edges: np.ndarray, hists: Sequence[np.ndarray], labels: Sequence[str], title: str) -> bytes:
    """Pooled value histograms of several mel sets over the same edges."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.8))
    centres = (edges[:-1] + edges[1:]) / 2
    for h, lab in zip(hists, labels, strict=True):
        ax.step(centres, h, where="mid", label=lab)
    ax.set_xlabel("log-mel value (ln)")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def band_distance(distance: np.ndarray, spec: MelSpec, top: Sequence[int]) -> bytes:
    """Per-band Wasserstein distance bar chart, the most-moved bands highlighted and labelled in Hz."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.4))
    colors = ["tab:red" if i in set(top) else "tab:gray" for i in range(len(distance))]
    ax.bar(np.arange(len(distance)), distance, color=colors)
    hz = band_centres_hz(spec)
    for i in list(top)[:1]:
        ax.annotate(f"{hz[i]:.0f} Hz", (i, distance[i]), textcoords="offset points", xytext=(0, 3),
                    ha="center", fontsize=7)
    ax.set_xlabel("mel band")
    ax.set_ylabel("Wasserstein-1 (ln units)")
    ax.set_title("Distribution shift per band (original → refined); red = moved most")
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def per_file_metric(names: Sequence[str], series: dict[str, Sequence[float]], ylabel: str, title: str,
                    threshold: float | None = None) -> bytes:
    """Grouped bars of a metric per file for several series (e.g. original vs refined)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(names) + 3), 3.6))
    x = np.arange(len(names))
    w = 0.8 / max(1, len(series))
    for j, (lab, vals) in enumerate(series.items()):
        v = np.array([np.nan if val is None else val for val in vals], dtype=float)
        ax.bar(x + (j - (len(series) - 1) / 2) * w, v, width=w, label=lab)
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"collapse threshold {threshold:g}")
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def spectrograms(panels: Sequence[tuple[str, np.ndarray]], spec: MelSpec, title: str) -> bytes:
    """Stacked log-mel spectrograms with colourbars: one shared colour scale when the panels' levels agree,
    else one scale per panel (a mel in another convention would otherwise paint the others black)."""
    plt = _plt()
    n = len(panels)
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.3 * n + 0.6), squeeze=False, sharex=True)
    tops = [float(np.percentile(m, 99.9)) for _, m in panels]
    mids = [float(np.median(m)) for _, m in panels]
    shared = max(tops) - min(tops) < 3.0 and max(mids) - min(mids) < 3.0
    sec = spec.hop_length / spec.sample_rate
    for ax, (lab, m), top in zip(axes[:, 0], panels, tops, strict=True):
        vmax = max(tops) if shared else top
        vmin = max(spec.log_floor, vmax - 12.0) if shared else max(float(m.min()), vmax - 12.0 * max(1.0, abs(top) / 4))
        im = ax.imshow(m, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="magma",
                       extent=(0, m.shape[1] * sec, 0, m.shape[0]))
        ax.set_ylabel("mel band")
        ax.set_title(lab + ("" if shared else " (own colour scale)"), fontsize=9)
        if not shared:
            fig.colorbar(im, ax=ax, label="value", pad=0.01)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(title)
    if shared:
        fig.colorbar(im, ax=axes[:, 0].tolist(), label="log-mel (ln)", shrink=0.9, pad=0.01)
    return _png(fig)
