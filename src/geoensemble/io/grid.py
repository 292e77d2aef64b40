"""The grid of a raster (CRS, transform, shape): compare grids and derive a target grid.

Which layers get resampled onto which grid is decided in :mod:`geoensemble.io.align`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import calculate_default_transform, transform_bounds


@dataclass(frozen=True)
class Grid:
    """CRS, affine transform and shape (rows, cols) of a raster."""

    crs: CRS | None
    transform: Affine
    shape: tuple[int, int]

    @property
    def res(self) -> tuple[float, float]:
        t = self.transform
        return (math.hypot(t.a, t.d), math.hypot(t.b, t.e))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        h, w = self.shape
        xs, ys = zip(*(self.transform @ (c, r) for c in (0, w) for r in (0, h)), strict=True)
        return (min(xs), min(ys), max(xs), max(ys))

    @property
    def crs_name(self) -> str:
        if self.crs is None:
            return "no CRS"
        epsg = self.crs.to_epsg()
        return f"EPSG:{epsg}" if epsg else self.crs.to_string()[:80]

    def describe(self) -> str:
        return (
            f"CRS {self.crs_name}, resolution {self.res[0]:g} x {self.res[1]:g}, "
            f"shape {self.shape[0]} x {self.shape[1]}, bounds "
            f"({', '.join(f'{b:.6g}' for b in self.bounds)})"
        )


def grid_of(da: xr.DataArray | xr.Dataset) -> Grid:
    """The grid of a rioxarray-aware array or dataset."""
    return Grid(
        crs=da.rio.crs, transform=da.rio.transform(), shape=(int(da.rio.height), int(da.rio.width))
    )


def same_crs(a: CRS | None, b: CRS | None) -> bool:
    """Equal CRSs, also when one is written as an EPSG code and the other as WKT."""
    if a is None or b is None:
        return a is None and b is None
    if a == b:
        return True
    ea, eb = a.to_epsg(), b.to_epsg()
    if ea is not None and ea == eb:
        return True
    from pyproj import CRS as ProjCRS

    try:
        return bool(ProjCRS(a.to_wkt()).equals(ProjCRS(b.to_wkt()), ignore_axis_order=True))
    except Exception:  # pyproj raises CRSError and others on exotic WKT
        return False


def same_grid(a: Grid, b: Grid, *, tol: float = 1e-6) -> bool:
    """Same CRS, shape and transform (up to ``tol`` of a pixel)."""
    if a.shape != b.shape or not same_crs(a.crs, b.crs):
        return False
    px = max(a.res[0], a.res[1], 1e-12)
    return bool(np.allclose(a.transform[:6], b.transform[:6], rtol=0, atol=tol * px))


def target_grid(
    ref: Grid,
    *,
    crs: CRS | None,
    resolution: Sequence[float] | None,
    bounds: Sequence[float] | None,
) -> Grid:
    """An explicit target grid; parts left out come from the reference grid ``ref``.

    Without ``bounds`` the reference's bounds are transformed into ``crs``; without
    ``resolution`` the reference's resolution is kept (same CRS) or estimated by GDAL.
    """
    crs = crs or ref.crs
    if bounds:
        xmin, ymin, xmax, ymax = (float(v) for v in bounds)
    elif same_crs(crs, ref.crs):
        xmin, ymin, xmax, ymax = ref.bounds
    else:
        xmin, ymin, xmax, ymax = transform_bounds(ref.crs, crs, *ref.bounds, densify_pts=21)
    if resolution:
        xres, yres = float(resolution[0]), float(resolution[-1])
    elif same_crs(crs, ref.crs):
        xres, yres = ref.res
    else:
        t, _, _ = calculate_default_transform(ref.crs, crs, ref.shape[1], ref.shape[0], *ref.bounds)
        xres = yres = min(abs(t.a), abs(t.e))
    w = max(1, round((xmax - xmin) / xres))
    h = max(1, round((ymax - ymin) / yres))
    return Grid(crs, Affine(xres, 0, xmin, 0, -yres, ymax), (h, w))
