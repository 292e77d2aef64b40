"""PNG quicklooks: class maps with a legend, continuous layers with a colour bar, and
false-colour composites. No-data is drawn transparent."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from geoensemble.io.atomic import atomic_path

MAX_PX = 1024
#: PNG text chunk holding a class map's legend as JSON (see :func:`class_map_png`).
LEGEND_KEY = "geoensemble:legend"


def _step(shape: tuple[int, ...]) -> int:
    """The stride that brings the longer of the last two sides down to at most MAX_PX."""
    return max(1, int(np.ceil(max(shape[-2:]) / MAX_PX)))


def _thin(arr: np.ndarray) -> np.ndarray:
    """Every n-th pixel so the longer side is at most MAX_PX (quicklooks only)."""
    step = _step(arr.shape)
    return arr[..., ::step, ::step]


def _save(
    fig: plt.Figure, path: str | os.PathLike[str], metadata: dict[str, str] | None = None
) -> Path:
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(
            tmp,
            format="png",
            dpi=100,
            bbox_inches="tight",
            transparent=False,
            metadata=metadata,
        )
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
    be contiguous. Legends of more than 40 classes are cut, with a note. The full legend
    (code, name, colour) is also stored in the PNG as the text chunk :data:`LEGEND_KEY`
    (JSON), so a reader can tell what each colour means without the map.
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
    entries = [
        {"code": c, "name": str(n), "colour": "#{:02x}{:02x}{:02x}".format(*col)}
        for c, n, col in zip(code_list, names, colours, strict=True)
    ]
    return _save(fig, path, {"Title": title, LEGEND_KEY: json.dumps(entries)})


def legend_of(path: str | os.PathLike[str]) -> list[dict[str, object]]:
    """The legend entries stored in a class-map PNG by :func:`class_map_png` (``[]`` if none)."""
    from PIL import Image

    with Image.open(path) as img:
        raw = getattr(img, "text", {}).get(LEGEND_KEY)
    return list(json.loads(raw)) if raw else []


def thin_layer(layer: np.ndarray | xr.DataArray) -> np.ndarray:
    """Every n-th pixel of a layer (or ``(bands, rows, cols)`` stack) as float numpy.

    A dask-backed ``DataArray`` is thinned before it is computed, so a quicklook of a large
    scene holds one chunk at a time plus the thinned picture, never the whole layer.
    """
    if isinstance(layer, xr.DataArray):
        step = _step(layer.shape)
        dims = layer.dims[-2:]
        layer = layer.isel({dims[0]: slice(None, None, step), dims[1]: slice(None, None, step)})
        return np.asarray(layer.to_numpy(), dtype=np.float64)
    return np.asarray(_thin(layer), dtype=np.float64)


def stretch(band: np.ndarray, valid: np.ndarray | None = None) -> tuple[float, float]:
    """The 2nd and 98th percentiles of the finite (and ``valid``) values; (0, 1) if none."""
    ok = np.isfinite(band) if valid is None else valid & np.isfinite(band)
    if not ok.any():
        return 0.0, 1.0
    lo, hi = np.percentile(band[ok], [2, 98])
    return float(lo), float(hi)


def layer_png(
    path: str | os.PathLike[str],
    layer: np.ndarray | xr.DataArray,
    *,
    title: str,
    cmap: str = "RdYlGn",
) -> Path:
    """A continuous layer with a colour bar (2nd-98th percentile stretch), no-data white."""
    arr = thin_layer(layer)
    lo, hi = stretch(arr)
    fig, ax = plt.subplots(figsize=(8, 7))
    cm = plt.get_cmap(cmap).with_extremes(bad=(0.0, 0.0, 0.0, 0.0))
    im = ax.imshow(np.ma.masked_invalid(arr), cmap=cm, vmin=lo, vmax=max(hi, lo + 1e-12))
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title)
    ax.set_axis_off()
    return _save(fig, path)


def false_colour_rgba(rgb: np.ndarray) -> np.ndarray:
    """``(3, rows, cols)`` layers as an RGBA image: each stretched 2-98 %, alpha 0 where any
    layer is NaN."""
    arr = np.asarray(rgb, dtype=np.float64)
    out = np.zeros((*arr.shape[1:], 4))
    valid = np.all(np.isfinite(arr), axis=0)
    for i in range(3):
        lo, hi = stretch(arr[i], valid)
        with np.errstate(invalid="ignore"):
            out[..., i] = np.clip((arr[i] - lo) / max(hi - lo, 1e-12), 0, 1)
    out[~valid, :3] = 0.0
    out[..., 3] = valid
    return out


def false_colour_png(
    path: str | os.PathLike[str], rgb: np.ndarray | xr.DataArray, *, title: str
) -> Path:
    """Three layers ``(3, rows, cols)`` as RGB, each stretched 2-98 %, no-data transparent."""
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(false_colour_rgba(thin_layer(rgb)))
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


#: Colour maps of the quicklooks by feature name (others: ``viridis``).
FEATURE_CMAPS: dict[str, str] = {
    "ndvi": "RdYlGn",
    "ndwi": "BrBG",
    "ndsi": "Blues_r",
    "nbr": "RdYlGn",
    "savi": "RdYlGn",
}


def cmap_for(name: str) -> str:
    """The colour map a feature's quicklook uses."""
    return FEATURE_CMAPS.get(name.lower(), "viridis")
