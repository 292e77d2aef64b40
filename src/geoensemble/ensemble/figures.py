"""PNG figures of the evaluate stage (also logged to the ensemble's parent run)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from geoensemble.io.atomic import atomic_path


def _save(fig: plt.Figure, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return target


def members_png(
    path: str | os.PathLike[str],
    rows: Sequence[dict[str, object]],
    *,
    champion: str,
    keys: Sequence[str] = ("aic", "bic"),
    metric: str | None = None,
    best: Sequence[dict[str, object]] = (),
) -> Path:
    """AIC and BIC of every member, by generation (x) and member, the champion ringed; on
    the panel of ``metric``, the ``best`` score so far by generation as a line (the search
    history: ``generation`` and ``best`` of each entry)."""
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        pts = [r for r in rows if isinstance(r.get(key), int | float)]
        gen = np.array([float(r["generation"]) for r in pts])  # type: ignore[arg-type]
        val = np.array([float(r[key]) for r in pts])  # type: ignore[arg-type]
        jitter = np.linspace(-0.15, 0.15, len(pts)) if len(pts) > 1 else np.zeros(len(pts))
        ax.scatter(gen + jitter, val, c="tab:blue", s=25)
        for r, x, y in zip(pts, gen + jitter, val, strict=True):
            if r["member"] == champion:
                ax.scatter([x], [y], s=120, facecolors="none", edgecolors="tab:orange", lw=2)
        if key == metric and best:
            steps = [(float(h["generation"]), float(h["best"])) for h in best]  # type: ignore[arg-type]
            ax.plot(*zip(*steps, strict=True), color="tab:green", marker="o", label="best so far")
            ax.legend(loc="best", fontsize=8)
        ax.set_xlabel("generation")
        ax.set_ylabel(key.upper())
        ax.set_title(f"{key.upper()} by generation and member")
        ax.set_xticks(sorted({int(g) for g in gen}))
    return _save(fig, path)


def confusion_png(
    path: str | os.PathLike[str],
    matrix: np.ndarray,
    names: Sequence[str],
    *,
    title: str,
    xlabel: str = "predicted",
    ylabel: str = "reference",
    col_names: Sequence[str] | None = None,
) -> Path:
    """A count matrix as a heat map with the counts written in."""
    cols = list(col_names if col_names is not None else names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(cols), 1.0 + 0.7 * len(names)))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        colour = "white" if v > matrix.max() / 2 else "black"
        ax.text(j, i, str(int(v)), ha="center", va="center", color=colour, fontsize=8)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), list(names))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _save(fig, path)


def bars_png(
    path: str | os.PathLike[str],
    labels: Sequence[str],
    series: dict[str, Sequence[float]],
    *,
    title: str,
    ylabel: str,
    errors: dict[str, Sequence[float]] | None = None,
) -> Path:
    """Grouped bars (one group per label), with optional error bars per series."""
    x = np.arange(len(labels))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels) * max(len(series), 1)), 4))
    for k, (name, vals) in enumerate(series.items()):
        err = (errors or {}).get(name)
        ax.bar(
            x + (k - (len(series) - 1) / 2) * width,
            np.nan_to_num(np.asarray(vals, dtype=float)),
            width,
            yerr=None if err is None else np.nan_to_num(np.asarray(err, dtype=float)),
            capsize=3,
            label=name,
        )
    ax.set_xticks(x, list(labels), rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend()
    return _save(fig, path)
