"""Lazy float layers: no-data to NaN and scaling, cropping, and block-wise resampling.

A layer is a grid plus ``read(rows, cols)`` returning float32 with NaN for no-data. Cropping
(a window or bounding box) shifts the transform; :class:`WarpLayer` resamples onto another
grid one block at a time, reading only the source window that block needs, so memory stays
proportional to the block and never to the scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds

from geoensemble.errors import InputFileError
from geoensemble.io.grid import Grid, same_crs
from geoensemble.io.sources import RasterSource

# Reprojecting between identical "no CRS" grids is pure affine arithmetic, but GDAL insists on
# a CRS: any projected CRS used on both sides gives the same result.
_PLACEHOLDER_CRS = CRS.from_epsg(3857)


class Layer(Protocol):
    """A float32 layer on a grid, read window by window."""

    @property
    def grid(self) -> Grid: ...

    def read(self, rows: slice, cols: slice) -> np.ndarray: ...


def nodata_mask(raw: np.ndarray, value: float) -> np.ndarray:
    """Where ``raw`` equals a no-data ``value``, compared at the precision the file stores.

    Integers compare exactly (65535 in uint16); floats compare at float32 precision. Sentinels
    near the float32 limit (``|value| >= 1e30``) match within 2 %: a spec's ``-3.4e38`` must
    catch the ``-3.4028235e38`` that GIS software writes, and no real value is that large.
    """
    if math.isnan(value):
        return np.isnan(raw) if raw.dtype.kind == "f" else np.zeros(raw.shape, bool)
    if raw.dtype.kind in "iu":
        info = np.iinfo(raw.dtype)
        if value != int(value) or not info.min <= value <= info.max:
            return np.zeros(raw.shape, bool)
        return raw == raw.dtype.type(value)
    if abs(value) >= 1e30:
        with np.errstate(invalid="ignore", over="ignore"):
            ratio = raw.astype("float64", copy=False) / value
        return (ratio > 0.98) & (ratio < 1.02)
    return raw.astype("float32", copy=False) == np.float32(value)


@dataclass(frozen=True)
class SourceLayer:
    """A raw source as float32: file and spec no-data to NaN, file then spec scaling."""

    source: RasterSource
    extra_nodata: tuple[float, ...] = ()
    scale: float = 1.0
    offset: float = 0.0

    @property
    def grid(self) -> Grid:
        return self.source.grid

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        raw = self.source.read(rows, cols)
        out = raw.astype("float32")
        for v in (*self.source.nodata, *self.extra_nodata):
            out[nodata_mask(raw, v)] = np.nan
        s, o = self.source.scale * self.scale, self.source.offset * self.scale + self.offset
        if s != 1.0 or o != 0.0:
            out *= np.float32(s)
            out += np.float32(o)
        return out


@dataclass(frozen=True)
class CropLayer:
    """A window of another layer (a layer spec's ``window`` or ``bbox``)."""

    inner: Layer
    row_off: int
    col_off: int
    shape: tuple[int, int]

    @property
    def grid(self) -> Grid:
        g = self.inner.grid
        t = g.transform @ Affine.translation(self.col_off, self.row_off)
        return Grid(g.crs, t, self.shape)

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        r, c = self.row_off, self.col_off
        return self.inner.read(
            slice(rows.start + r, rows.stop + r), slice(cols.start + c, cols.stop + c)
        )


def crop_window(grid: Grid, window: list[int], *, where: str) -> tuple[int, int, int, int]:
    """``(row_off, col_off, height, width)`` checked against the grid."""
    r, c, h, w = (int(v) for v in window)
    rows, cols = grid.shape
    if r < 0 or c < 0 or h < 1 or w < 1 or r + h > rows or c + w > cols:
        raise InputFileError(
            f"{where}: window [row_off={r}, col_off={c}, height={h}, width={w}] does not fit "
            f"the layer's {rows} x {cols} pixels: fix layers[].window",
            arguments={"layers": "ReadSpec.layers"},
        )
    return r, c, h, w


def bbox_window(grid: Grid, bbox: list[float], *, where: str) -> tuple[int, int, int, int]:
    """The pixel window (rounded outwards, clipped) covering ``bbox`` in the layer's CRS."""
    rlo, rhi, clo, chi = _pixel_span(grid, tuple(float(v) for v in bbox))
    r0 = max(0, math.floor(rlo + 1e-9))
    c0 = max(0, math.floor(clo + 1e-9))
    r1 = min(grid.shape[0], math.ceil(rhi - 1e-9))
    c1 = min(grid.shape[1], math.ceil(chi - 1e-9))
    if r1 <= r0 or c1 <= c0:
        raise InputFileError(
            f"{where}: bbox {bbox} does not overlap the layer, whose bounds are "
            f"{tuple(round(b, 6) for b in grid.bounds)} in {grid.crs_name}: fix "
            f"layers[].bbox (in the layer's CRS)",
            arguments={"layers": "ReadSpec.layers"},
        )
    return r0, c0, r1 - r0, c1 - c0


def resampled_grid(
    grid: Grid, *, out_shape: list[int] | None, resolution: list[float] | None
) -> Grid:
    """The same extent (same CRS) at another size or resolution (earthio's ``buf_x/ysize``)."""
    h, w = grid.shape
    if out_shape:
        nh, nw = int(out_shape[0]), int(out_shape[1])
    else:
        assert resolution  # the caller passes one of the two
        xres, yres = float(resolution[0]), float(resolution[-1])
        nw = max(1, round(w * grid.res[0] / xres))
        nh = max(1, round(h * grid.res[1] / yres))
    return Grid(grid.crs, grid.transform @ Affine.scale(w / nw, h / nh), (nh, nw))


@dataclass(frozen=True)
class WarpLayer:
    """``inner`` resampled onto ``target``, block by block."""

    inner: Layer
    target: Grid
    resampling: str = "bilinear"

    @property
    def grid(self) -> Grid:
        return self.target

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        src = self.inner.grid
        h, w = rows.stop - rows.start, cols.stop - cols.start
        dst_t = self.target.transform @ Affine.translation(cols.start, rows.start)
        out = np.full((h, w), np.nan, dtype="float32")
        bounds = Grid(self.target.crs, dst_t, (h, w)).bounds
        if not same_crs(src.crs, self.target.crs):
            bounds = transform_bounds(self.target.crs, src.crs, *bounds, densify_pts=21)
        win = _covering(src, bounds, block=(h, w))
        if win is None:
            return out
        r0, r1, c0, c1 = win
        arr = self.inner.read(slice(r0, r1), slice(c0, c1))
        src_crs = src.crs or _PLACEHOLDER_CRS
        reproject(
            source=arr,
            destination=out,
            src_transform=src.transform @ Affine.translation(c0, r0),
            src_crs=src_crs,
            dst_transform=dst_t,
            dst_crs=self.target.crs or _PLACEHOLDER_CRS,
            src_nodata=np.nan,
            dst_nodata=np.nan,
            resampling=Resampling[self.resampling],
            num_threads=1,
        )
        return out


def _covering(
    grid: Grid, bounds: tuple[float, float, float, float], *, block: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """Rows/cols ``(r0, r1, c0, c1)`` of ``grid`` covering ``bounds``, with a margin.

    The margin is two source pixels (bilinear/cubic kernels) plus one destination pixel's
    worth of source pixels (``average`` gathers every source pixel a destination pixel covers).
    """
    if not all(map(math.isfinite, bounds)):
        return (0, grid.shape[0], 0, grid.shape[1])
    rlo, rhi, clo, chi = _pixel_span(grid, bounds)
    pad = 2 + math.ceil(max((rhi - rlo) / block[0], (chi - clo) / block[1]))
    r0 = max(0, math.floor(rlo) - pad)
    c0 = max(0, math.floor(clo) - pad)
    r1 = min(grid.shape[0], math.ceil(rhi) + pad)
    c1 = min(grid.shape[1], math.ceil(chi) + pad)
    if r1 <= r0 or c1 <= c0:
        return None
    return r0, r1, c0, c1


def _pixel_span(grid: Grid, bounds: tuple[float, ...]) -> tuple[float, float, float, float]:
    """Fractional ``(row_min, row_max, col_min, col_max)`` of ``bounds`` on ``grid``.

    By the inverse transform of the four corners: unlike ``rasterio.windows.from_bounds``,
    this also holds for south-up grids (a positive pixel height).
    """
    xmin, ymin, xmax, ymax = bounds
    inv = ~grid.transform
    cs, rs = zip(*(inv @ (x, y) for x in (xmin, xmax) for y in (ymin, ymax)), strict=True)
    return min(rs), max(rs), min(cs), max(cs)
