"""PNG quicklooks: class maps with a legend, continuous layers with a colour bar, and
false-colour composites. No-data is drawn transparent.

Class maps (what every predict run draws) are drawn with Pillow alone; matplotlib, which
takes longer to import than a small scene takes to predict, is imported only by the
continuous-layer and chart functions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geoensemble.io.atomic import atomic_path

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure

MAX_PX = 1024
#: PNG text chunk holding a class map's legend as JSON (see :func:`class_map_png`).
LEGEND_KEY = "geoensemble:legend"


def thin_step(shape: tuple[int, ...]) -> int:
    """The stride that brings the longer of the last two sides down to at most MAX_PX."""
    return max(1, int(np.ceil(max(shape[-2:]) / MAX_PX)))


def _thin(arr: np.ndarray) -> np.ndarray:
    """Every n-th pixel so the longer side is at most MAX_PX (quicklooks only)."""
    step = thin_step(arr.shape)
    return arr[..., ::step, ::step]


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(
    fig: Figure, path: str | os.PathLike[str], metadata: dict[str, str] | None = None
) -> Path:
    plt = _pyplot()
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
    code_list = list(range(len(names))) if codes is None else [int(c) for c in codes]
    pixels = _class_pixels(_thin(classes), code_list, nodata, colours)
    img = _with_legend(pixels, names, colours, title)
    return _save_image(img, path, _legend_info(title, code_list, names, colours))


def _class_pixels(
    arr: np.ndarray,
    code_list: list[int],
    nodata: int,
    colours: Sequence[tuple[int, int, int]],
) -> np.ndarray:
    """The RGBA pixels of the class map ``arr`` (no-data transparent), small maps zoomed."""
    # Map codes to positions so that sparse codes (e.g. 10, 20, 90) still get their colours.
    lut = np.full(int(max([*code_list, int(nodata)])) + 1, -1, dtype=np.int64)
    lut[code_list] = np.arange(len(code_list))
    pos = lut[np.clip(arr.astype(np.int64), 0, lut.size - 1)]
    n = len(code_list)
    rgba = np.zeros((n + 1, 4), dtype=np.uint8)  # the last entry: no-data, transparent
    if n:
        rgba[:n, :3] = np.asarray(colours, dtype=np.uint8).reshape(n, 3)
        rgba[:n, 3] = 255
    return _zoomed(rgba[np.where((arr == nodata) | (pos < 0), n, pos)])


def _zoomed(pixels: np.ndarray) -> np.ndarray:
    """``(rows, cols, 4)`` pixels of a map smaller than :data:`MIN_SIDE`, zoomed by a whole
    factor (at most 8)."""
    zoom = max(1, min(8, MIN_SIDE // max(1, *pixels.shape[:2])))
    if zoom > 1:
        pixels = pixels.repeat(zoom, axis=0).repeat(zoom, axis=1)
    return pixels


def _save_image(img: Any, path: str | os.PathLike[str], info: Any = None) -> Path:
    """A Pillow image as a PNG at ``path``, written under a temporary name and moved."""
    target = Path(path)
    with atomic_path(target) as tmp:
        img.save(tmp, format="PNG", pnginfo=info)
    return target


def _with_legend(
    pixels: np.ndarray,
    names: Sequence[str],
    colours: Sequence[tuple[int, int, int]],
    title: str,
) -> Any:
    """A PIL image of the map ``pixels`` under ``title`` with a legend beside it (at most
    :data:`MAX_LEGEND` entries, then a note of how many more)."""
    from PIL import Image, ImageDraw

    font = _font()
    shown = list(zip(names, colours, strict=True))[:MAX_LEGEND]
    labels = [str(name) for name, _ in shown]
    if len(names) > MAX_LEGEND:
        labels.append(f"... {len(names) - MAX_LEGEND} more")
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max([measure.textlength(t, font=font) for t in [*labels, ""]])
    pad, line, box = 16, 20, 14
    map_h, map_w = pixels.shape[:2]
    title_h = 2 * pad + line
    legend_w = int(2 * pad + box + 8 + text_w)
    width = max(pad + map_w + legend_w, int(measure.textlength(title, font=font)) + 2 * pad)
    height = title_h + max(map_h, len(labels) * line) + pad
    img = Image.new("RGBA", (width, height), (255, 255, 255, 255))
    img.paste(Image.fromarray(pixels, "RGBA"), (pad, title_h))  # no-data stays transparent
    draw = ImageDraw.Draw(img)
    draw.text((pad, pad), title, fill=(0, 0, 0, 255), font=font)
    x0 = pad + map_w + pad
    for i, text in enumerate(labels):
        y = title_h + i * line
        if i < len(shown):
            draw.rectangle(
                (x0, y + 2, x0 + box, y + 2 + box),
                fill=tuple(int(v) for v in shown[i][1]),
                outline=(0, 0, 0),
            )
        draw.text((x0 + box + 8, y + 2), text, fill=(0, 0, 0, 255), font=font)
    return img


def _legend_info(
    title: str,
    code_list: list[int],
    names: Sequence[str],
    colours: Sequence[tuple[int, int, int]],
) -> Any:
    """The PNG text chunks: the title and the full legend as JSON under :data:`LEGEND_KEY`."""
    from PIL.PngImagePlugin import PngInfo

    entries = [
        {"code": c, "name": str(nm), "colour": "#{:02x}{:02x}{:02x}".format(*col)}
        for c, nm, col in zip(code_list, names, colours, strict=True)
    ]
    info = PngInfo()
    info.add_text("Title", title)
    info.add_text(LEGEND_KEY, json.dumps(entries))
    return info


#: Legend entries drawn on a class-map quicklook (the PNG's legend chunk holds them all).
MAX_LEGEND = 40
#: Maps smaller than this (longer side, pixels) are zoomed by a whole factor.
MIN_SIDE = 512


def _font() -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


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
    import xarray as xr

    if isinstance(layer, xr.DataArray):
        step = thin_step(layer.shape)
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
    limits: tuple[float, float] | None = None,
) -> Path:
    """A continuous layer with a colour bar (2nd-98th percentile stretch, or ``limits``),
    no-data transparent."""
    arr = thin_layer(layer)
    lo, hi = limits if limits is not None else stretch(arr)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 7))
    cm = plt.get_cmap(cmap).with_extremes(bad=(0.0, 0.0, 0.0, 0.0))
    im = ax.imshow(np.ma.masked_invalid(arr), cmap=cm, vmin=lo, vmax=max(hi, lo + 1e-12))
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title)
    ax.set_axis_off()
    return _save(fig, path)


#: Colour ramps of the map quicklooks drawn without matplotlib: 9 evenly spaced colours of
#: matplotlib's maps of the same name, interpolated linearly.
RAMPS: dict[str, list[tuple[int, int, int]]] = {
    "magma": [
        (0, 0, 4), (29, 17, 71), (81, 18, 124), (131, 38, 129), (183, 55, 121),
        (231, 82, 99), (252, 137, 97), (254, 196, 136), (252, 253, 191),
    ],
    "viridis": [
        (68, 1, 84), (71, 45, 123), (59, 82, 139), (44, 114, 142), (33, 145, 140),
        (40, 174, 128), (94, 201, 98), (173, 220, 48), (253, 231, 37),
    ],
}  # fmt: skip


def ramp_lut(name: str, n: int = 256) -> np.ndarray:
    """``(n, 3)`` uint8 colours of the ramp ``name`` (:data:`RAMPS`)."""
    anchors = np.asarray(RAMPS[name], dtype=np.float64)
    at = np.linspace(0, 1, len(anchors))
    x = np.linspace(0, 1, n)
    return (
        np.stack([np.interp(x, at, anchors[:, i]) for i in range(3)], axis=1)
        .round()
        .astype(np.uint8)
    )


def ramp_png(
    path: str | os.PathLike[str],
    layer: np.ndarray,
    *,
    title: str,
    ramp: str = "viridis",
    limits: tuple[float, float] | None = None,
) -> Path:
    """A continuous map with a colour bar (2nd-98th percentile stretch, or ``limits``),
    NaN transparent: drawn with Pillow, so a prediction never imports matplotlib (its import
    and drawing took ~90 MB at the end of a 21 Mpx prediction)."""
    from PIL import Image, ImageDraw

    arr = np.asarray(_thin(layer), dtype=np.float64)
    lo, hi = limits if limits is not None else stretch(arr)
    lut = ramp_lut(ramp)
    ok = np.isfinite(arr)
    with np.errstate(invalid="ignore"):
        idx = np.clip((arr - lo) / max(hi - lo, 1e-12) * 255, 0, 255)
    pixels = np.zeros((*arr.shape, 4), dtype=np.uint8)
    pixels[ok, :3] = lut[idx[ok].astype(np.int64)]
    pixels[ok, 3] = 255
    pixels = _zoomed(pixels)
    font = _font()
    pad, line, bar_w = 16, 20, 18
    map_h, map_w = pixels.shape[:2]
    ticks = [f"{v:.4g}" for v in (hi, (lo + hi) / 2, lo)]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = int(max(measure.textlength(t, font=font) for t in ticks))
    title_h = 2 * pad + line
    width = max(
        pad + map_w + 2 * pad + bar_w + 8 + text_w,
        int(measure.textlength(title, font=font)) + 2 * pad,
    )
    img = Image.new("RGBA", (width, title_h + map_h + pad), (255, 255, 255, 255))
    img.paste(Image.fromarray(pixels, "RGBA"), (pad, title_h))
    draw = ImageDraw.Draw(img)
    draw.text((pad, pad), title, fill=(0, 0, 0, 255), font=font)
    x0 = pad + map_w + 2 * pad
    bar = lut[::-1][np.linspace(0, 255, map_h).astype(np.int64)]  # top: the highest value
    img.paste(Image.fromarray(np.repeat(bar[:, None, :], bar_w, axis=1), "RGB"), (x0, title_h))
    draw.rectangle((x0, title_h, x0 + bar_w, title_h + map_h - 1), outline=(0, 0, 0))
    for i, t in enumerate(ticks):
        y = title_h + i * (map_h - line) // 2
        draw.text((x0 + bar_w + 8, y), t, fill=(0, 0, 0, 255), font=font)
    return _save_image(img, path)


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
    plt = _pyplot()
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
    plt = _pyplot()
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
