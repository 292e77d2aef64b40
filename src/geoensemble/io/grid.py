"""One grid for every layer: compare grids, derive a target grid, decide what to resample."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import calculate_default_transform, transform_bounds

from geoensemble.errors import GridMismatchError, LayerNotFoundError

if TYPE_CHECKING:
    from geoensemble.io.window import Layer


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
    resolution: list[float] | None,
    bounds: list[float] | None,
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


def align(
    layers: Mapping[str, Layer],
    *,
    policy: str,
    reference: str | None = None,
    target: Grid | None = None,
    categorical: frozenset[str] = frozenset(),
    resampling: Mapping[str, str] | str = "bilinear",
    labels: Mapping[str, str] | None = None,
) -> tuple[dict[str, Layer], Grid]:
    """Put every layer on one grid, or fail naming the layer that does not fit.

    Parameters
    ----------
    layers
        Named lazy layers (see :mod:`geoensemble.io.window`).
    policy
        ``strict``: every grid must already equal the reference; ``reproject``: resample
        each other layer onto it, block by block (nearest for ``categorical`` layers).
    reference
        The layer whose grid is the reference; default the first layer.
    target
        An explicit target grid, used instead of a reference layer's.
    resampling
        The method for continuous layers, one for all or per layer name.
    labels
        Where each layer comes from (file, variable), for error messages.

    Returns
    -------
    The layers, each on the common grid, and that grid.
    """
    from geoensemble.io.window import WarpLayer

    names = list(layers)
    ref_name = reference or names[0]
    if ref_name not in layers:
        raise LayerNotFoundError(
            f"data.reference={ref_name!r} is not a layer: choose one of {names}"
        )
    with_crs = [n for n, lay in layers.items() if lay.grid.crs is not None]
    if 0 < len(with_crs) < len(layers):
        missing = [n for n in names if n not in with_crs]
        raise GridMismatchError(
            f"layers {missing} have no CRS while {with_crs} have one: assign the CRS to those "
            f"files (gdal_edit.py -a_srs EPSG:xxxx), or set data.crs/data.geotransform for "
            f"HDF/NetCDF sources without geolocation"
        )
    labels = labels or {}

    def named(n: str) -> str:
        return f"'{n}' ({labels[n]})" if n in labels else f"'{n}'"

    ref_label = "the target grid (data.target)" if target is not None else named(ref_name)
    ref = target if target is not None else layers[ref_name].grid
    if not with_crs:
        for name, lay in layers.items():
            if not same_grid(lay.grid, ref):
                raise GridMismatchError(
                    f"layer {named(name)} has no CRS and is not on the grid of {ref_label}: it has "
                    f"{lay.grid.describe()}; {ref_label} has {ref.describe()}. Without a CRS "
                    f"it cannot be reprojected: give the files a CRS (or data.crs and "
                    f"data.geotransform)"
                )
        warnings.warn(
            "no layer has a CRS: the stack and the maps will have none either (their grids "
            "agree, so they are used in pixel coordinates)",
            stacklevel=2,
        )
        return dict(layers), ref
    out: dict[str, Layer] = {}
    for name, lay in layers.items():
        g = lay.grid
        if same_grid(g, ref):
            out[name] = lay
            continue
        if policy == "strict":
            raise GridMismatchError(
                f"layer {named(name)} is not on the grid of {ref_label}: it has {g.describe()}; "
                f"{ref_label} has {ref.describe()}. Set data.align=reproject to resample it "
                f"onto that grid, or reproject the file (gdalwarp) first"
            )
        if isinstance(resampling, str):
            method = resampling
        else:
            method = resampling.get(name, "bilinear")
        out[name] = WarpLayer(lay, ref, "nearest" if name in categorical else method)
    return out, ref
