"""One grid for every layer: compare grids, or reproject onto a reference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling

from geoensemble.errors import GridMismatchError


@dataclass(frozen=True)
class Grid:
    """CRS, affine transform and shape (rows, cols) of a raster."""

    crs: CRS | None
    transform: Affine
    shape: tuple[int, int]

    @property
    def res(self) -> tuple[float, float]:
        return (abs(self.transform.a), abs(self.transform.e))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        h, w = self.shape
        x0, y0 = self.transform @ (0, 0)
        x1, y1 = self.transform @ (w, h)
        return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    def describe(self) -> str:
        crs = self.crs.to_string() if self.crs else "no CRS"
        return (
            f"CRS {crs}, resolution {self.res[0]:g} x {self.res[1]:g}, "
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
    return ea is not None and ea == eb


def same_grid(a: Grid, b: Grid, *, tol: float = 1e-6) -> bool:
    """Same CRS, shape and transform (up to ``tol`` of a pixel)."""
    if a.shape != b.shape or not same_crs(a.crs, b.crs):
        return False
    px = max(a.res[0], a.res[1], 1e-12)
    return bool(np.allclose(a.transform[:6], b.transform[:6], atol=tol * px))


def align_layers(
    layers: dict[str, xr.DataArray],
    *,
    policy: str,
    reference: str | None = None,
    categorical: frozenset[str] = frozenset(),
    resampling: str = "bilinear",
) -> dict[str, xr.DataArray]:
    """Put every layer on one grid, or fail naming the layer that does not fit.

    Parameters
    ----------
    layers
        Named single-band layers, each with CRS and transform (rioxarray).
    policy
        ``strict``: all grids must already be equal; ``reproject``: resample onto the
        reference grid (nearest for ``categorical`` layers, ``resampling`` otherwise).
    reference
        The layer whose grid is the reference; default the first layer.
    """
    names = list(layers)
    ref_name = reference or names[0]
    if ref_name not in layers:
        raise GridMismatchError(f"data.reference={ref_name!r} is not a layer; layers: {names}")
    ref = grid_of(layers[ref_name])
    crs_count = sum(grid_of(da).crs is not None for da in layers.values())
    if 0 < crs_count < len(layers):
        missing = [n for n, da in layers.items() if da.rio.crs is None]
        raise GridMismatchError(
            f"layers {missing} have no CRS while others have one: assign "
            f"the CRS to those files (gdal_edit.py -a_srs) first"
        )
    out = {}
    for name, da in layers.items():
        g = grid_of(da)
        if same_grid(g, ref):
            out[name] = da
            continue
        if policy == "strict":
            raise GridMismatchError(
                f"layer '{name}' is not on the grid of '{ref_name}': it has {g.describe()}; "
                f"'{ref_name}' has {ref.describe()}. Set data.align=reproject to resample it "
                f"onto the reference grid, or reproject the file"
            )
        if crs_count == 0:
            raise GridMismatchError(
                f"layer '{name}' has no CRS and a grid different from "
                f"'{ref_name}': without a CRS it cannot be reprojected"
            )
        method = Resampling.nearest if name in categorical else Resampling[resampling]
        out[name] = da.rio.reproject_match(layers[ref_name], resampling=method)
    return out
