"""NetCDF variables as layers (read with netCDF4, located with rioxarray's CF decoding).

Each data variable with two spatial dimensions (``y``/``x``, ``lat``/``lon``, ...) is a
candidate layer; a third dimension (time, band) is indexed by the spec's ``band`` (from 1).
The grid comes from the CF ``grid_mapping`` variable and the coordinate values; rows are
flipped to north-up when ``y`` increases. Variables on latitude/longitude without a grid
mapping are taken as WGS 84 (EPSG:4326), as CF prescribes for such coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from geoensemble.errors import InputFileError
from geoensemble.io import georef
from geoensemble.io.arguments import outside
from geoensemble.io.sources import NETCDF_LOCK, RasterSource, cf_nodata, meta_strings

_LATLON = {"lat", "latitude", "lon", "longitude"}


@dataclass(frozen=True, kw_only=True)
class NetcdfVariable(RasterSource):
    """One 2-D slice of a NetCDF variable."""

    path: str
    variable: str
    dims: tuple[str, ...]  # the variable's dimensions in file order
    y_dim: str
    x_dim: str
    index: int = 0  # along the extra dimension, if any
    flip_y: bool = False

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        import netCDF4

        h = self.shape[0]
        r = slice(h - rows.stop, h - rows.start) if self.flip_y else rows
        key = tuple(
            r if d == self.y_dim else cols if d == self.x_dim else self.index for d in self.dims
        )
        try:
            with NETCDF_LOCK, netCDF4.Dataset(self.path) as nc:
                var = nc.variables[self.variable]
                var.set_auto_maskandscale(False)
                arr = np.asarray(var[key])
        except (OSError, RuntimeError, KeyError, IndexError) as exc:
            raise self._fail(rows, cols, exc) from None
        spatial = [d for d in self.dims if d in (self.y_dim, self.x_dim)]
        if spatial[0] == self.x_dim:
            arr = arr.T
        return arr[::-1] if self.flip_y else arr


def _open(path: str, label: str) -> Any:
    import xarray as xr

    try:
        return xr.open_dataset(
            path, mask_and_scale=False, decode_times=False, decode_coords="all", cache=False
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputFileError(
            f"cannot read {label} as NetCDF: {exc}. Check that the file is complete, or set "
            f"format to what the file really is",
            arguments=outside(str(exc), {"format": "ReadSpec.format"}),
        ) from None


def _axis(values: np.ndarray, name: str, where: str) -> tuple[float, float]:
    """First coordinate and step of a regular axis."""
    v = np.asarray(values, dtype="float64")
    if v.size < 2:
        raise InputFileError(
            f"{where}: dimension {name!r} has {v.size} value(s); the pixel size cannot be "
            f"derived: set geotransform",
            arguments={"geotransform": "ReadSpec.geotransform"},
        )
    step = np.diff(v)
    if not np.allclose(step, step[0], rtol=1e-5, atol=0):
        raise InputFileError(
            f"{where}: coordinate {name!r} is not regularly spaced; regrid the file onto a "
            f"regular grid (e.g. cdo remapbil) first"
        )
    return float(v[0]), float(step.mean())


def netcdf_candidates(
    path: str, *, label: str, crs: str | None, geotransform: Sequence[float] | None
) -> list[tuple[str, dict[str, str], list[RasterSource]]]:
    """``(variable, attributes, one source per index of the extra dimension)`` per variable."""
    import rioxarray  # noqa: F401  (registers .rio)

    ds = _open(path, label)
    out: list[tuple[str, dict[str, str], list[RasterSource]]] = []
    with ds:
        for name, da in ds.data_vars.items():
            dims = _spatial_dims(ds, da)
            if dims is None:
                continue
            y_dim, x_dim = dims
            extra = [d for d in da.dims if d not in (x_dim, y_dim)]
            if len(extra) > 1 or da.dtype.kind not in "iuf":
                continue
            where = f"{label} variable {name!r}"
            h, w = int(da.sizes[y_dim]), int(da.sizes[x_dim])
            flip = False
            if geotransform or x_dim not in ds.variables or y_dim not in ds.variables:
                g = georef.resolve(
                    None, shape=(h, w), crs=crs, geotransform=geotransform, where=where
                )
                file_crs, transform = g.crs, g.transform
            else:
                x0, dx = _axis(da[x_dim].values, str(x_dim), where)
                y0, dy = _axis(da[y_dim].values, str(y_dim), where)
                flip = dy > 0
                top = y0 + dy * (h - 1) if flip else y0
                transform = Affine(dx, 0, x0 - dx / 2, 0, -abs(dy), top + abs(dy) / 2)
                file_crs = _crs_of(da, {x_dim.lower(), y_dim.lower()}, crs, where)
            attrs = dict(da.attrs)
            n = int(da.sizes[extra[0]]) if extra else 1
            sources: list[RasterSource] = [
                NetcdfVariable(
                    label=f"{where}" + (f" [{extra[0]}={i + 1}]" if extra else ""),
                    shape=(h, w),
                    dtype=str(da.dtype),
                    crs=file_crs,
                    transform=transform,
                    nodata=cf_nodata(attrs),
                    scale=float(attrs.get("scale_factor", 1.0)),
                    offset=float(attrs.get("add_offset", 0.0)),
                    meta=meta_strings(attrs),
                    path=path,
                    variable=str(name),
                    dims=tuple(str(d) for d in da.dims),
                    y_dim=str(y_dim),
                    x_dim=str(x_dim),
                    index=i,
                    flip_y=flip,
                )
                for i in range(n)
            ]
            out.append((str(name), meta_strings(attrs), sources))
    return out


_X_NAMES = ("x", "lon", "longitude", "easting")
_Y_NAMES = ("y", "lat", "latitude", "northing")


def _spatial_dims(ds: Any, da: Any) -> tuple[str, str] | None:
    """The ``(y, x)`` dimensions of a variable, by name or by CF coordinate attributes."""

    def find(names: tuple[str, ...], axis: str, std: tuple[str, ...], units: str) -> str | None:
        for d in da.dims:
            if str(d).lower() in names:
                return str(d)
        for d in da.dims:
            a = ds[d].attrs if d in ds.variables else {}
            if a.get("axis") == axis or a.get("standard_name") in std or a.get("units") == units:
                return str(d)
        return None

    x = find(_X_NAMES, "X", ("projection_x_coordinate", "longitude"), "degrees_east")
    y = find(_Y_NAMES, "Y", ("projection_y_coordinate", "latitude"), "degrees_north")
    return (y, x) if x and y and x != y else None


def _crs_of(da: Any, dims: set[str], crs: str | None, where: str) -> CRS | None:
    try:
        found = da.rio.crs
    except Exception:  # rioxarray raises several types on malformed grid mappings
        found = None
    if found is not None:
        return CRS.from_wkt(found.to_wkt())
    if crs:
        return georef.parse_crs(crs, where="crs", parameter="ReadSpec.crs")
    if dims & _LATLON:
        return CRS.from_epsg(4326)
    return None
