"""PNG quicklooks: class maps with a legend, continuous layers with a colour bar, and
false-colour composites. No-data is drawn transparent."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from geoensemble.io.atomic import atomic_path

MAX_PX = 1024


def _thin(arr: np.ndarray) -> np.ndarray:
    """Every n-th pixel so the longer side is at most MAX_PX (quicklooks only)."""
    step = max(1, int(np.ceil(max(arr.shape[-2:]) / MAX_PX)))
    return arr[..., ::step, ::step]


def _save(fig: plt.Figure, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight", transparent=False)
    plt.close(fig)
    return target


def class_map_png(
    path: str | os.PathLike[str],
    classes: np.ndarray,
    *,
    nodata: int,
    names: Sequence[str],
    colours: Sequence[tuple[int, int, int]],
    title: str,
    codes: Sequence[int] | None = None,
) -> Path:
    """A class map with one legend entry per class.

    ``codes`` are the map values of ``names`` (default ``0..len(names)-1``); codes need not
    be contiguous. Legends of more than 40 classes are cut, with a note.
    """
    arr = _thin(classes)
    code_list = list(range(len(names))) if codes is None else [int(c) for c in codes]
    # Map codes to positions so that sparse codes (e.g. 10, 20, 90) still get their colours.
    lut = np.full(int(max([*code_list, int(nodata)])) + 1, -1, dtype=np.int64)
    lut[code_list] = np.arange(len(code_list))
    pos = lut[np.clip(arr.astype(np.int64), 0, lut.size - 1)]
    cmap = ListedColormap([tuple(c / 255 for c in col) for col in colours])
    cmap.set_bad(alpha=0.0)
    shown = np.ma.masked_where((arr == nodata) | (pos < 0), pos)
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(shown, cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()
    handles = [
        Patch(facecolor=(col[0] / 255, col[1] / 255, col[2] / 255), edgecolor="k", label=name)
        for name, col in list(zip(names, colours, strict=True))[:40]
    ]
    if len(names) > 40:
        handles.append(Patch(facecolor="white", label=f"... {len(names) - 40} more"))
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _save(fig, path)


def layer_png(
    path: str | os.PathLike[str], layer: np.ndarray, *, title: str, cmap: str = "RdYlGn"
) -> Path:
    """A continuous layer with a colour bar (2nd-98th percentile stretch)."""
    arr = _thin(layer)
    finite = arr[np.isfinite(arr)]
    lo, hi = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
    fig, ax = plt.subplots(figsize=(8, 7))
    cm = plt.get_cmap(cmap).copy()
    cm.set_bad(alpha=0.0)
    im = ax.imshow(np.ma.masked_invalid(arr), cmap=cm, vmin=lo, vmax=hi)
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title)
    ax.set_axis_off()
    return _save(fig, path)


def false_colour_png(path: str | os.PathLike[str], rgb: np.ndarray, *, title: str) -> Path:
    """Three layers ``(3, rows, cols)`` as RGB, each stretched 2-98 %, no-data transparent."""
    arr = _thin(rgb).astype(np.float64)
    out = np.zeros((*arr.shape[1:], 4))
    valid = np.all(np.isfinite(arr), axis=0)
    for i in range(3):
        band = arr[i]
        lo, hi = np.percentile(band[valid], [2, 98]) if valid.any() else (0.0, 1.0)
        out[..., i] = np.clip((band - lo) / max(hi - lo, 1e-12), 0, 1)
    out[..., 3] = valid
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(out)
    ax.set_title(title)
    ax.set_axis_off()
    return _save(fig, path)


def bar_png(
    path: str | os.PathLike[str],
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    ylabel: str,
    highlight: int | None = None,
) -> Path:
    """A bar chart, e.g. AIC by member with the champion highlighted."""
    fig, ax = plt.subplots(figsize=(max(6, len(labels) * 0.6), 4))
    colours = ["tab:orange" if i == highlight else "tab:blue" for i in range(len(labels))]
    ax.bar(list(labels), list(values), color=colours)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=60)
    return _save(fig, path)
