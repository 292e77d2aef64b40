"""``rasterize_labels``: training labels (points, polygons or a raster) on a dataset's grid."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import numpy as np

from geoensemble.errors import ConfigError

if TYPE_CHECKING:
    import xarray as xr


def rasterize_labels(
    path: str | os.PathLike[str],
    *,
    like: xr.Dataset,
    attribute: str = "class_name",
    code_attribute: str | None = None,
    target: str = "classes",
    layer: str | None = None,
    buffer: float = 0.0,
    all_touched: bool = False,
) -> xr.DataArray:
    """Labels from a vector file (points, lines or polygons, in any CRS) or a label raster,
    on the grid of ``like``: what the labels stage writes, for :func:`fit_ensemble`'s ``y``.

    Parameters
    ----------
    path
        A GeoPackage, Shapefile or GeoJSON (reprojected to ``like``'s CRS), or a raster.
    like
        A dataset from :func:`load_array` or :func:`featurize`: its grid is used.
    attribute
        The attribute holding class names (or values with ``target="value"``).
    code_attribute
        An attribute of integer class codes; without it, codes are the sorted names'
        positions.
    target
        ``classes`` (integer codes, names in ``attrs["class_names"]``) or ``value``.
    layer
        The layer of a multi-layer vector file.
    buffer
        A distance in map units drawn around each geometry (points become discs).
    all_touched
        Label every pixel a geometry touches, not only those whose centre it covers.

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` float32: class codes (or values), NaN where unlabelled.

    Raises
    ------
    InputFileError, ConfigError, GridMismatchError, EmptyLayerError
        Naming the file, the argument and the fix.
    """
    import xarray as xr

    from geoensemble.io.grid import Grid
    from geoensemble.io.labels import read_labels
    from geoensemble.io.stack import grid_attrs

    if not isinstance(path, str | os.PathLike):
        raise ConfigError(f"path={path!r} is not a path: give the label file's path")
    if "geotransform" not in getattr(like, "attrs", {}):
        raise ConfigError(
            "like has no grid: give a dataset from load_array or featurize, whose grid the "
            "labels are drawn on"
        )
    crs, transform = grid_attrs(like)
    grid = Grid(crs, transform, (int(like.sizes["y"]), int(like.sizes["x"])))
    labels = read_labels(
        path,
        grid,
        attribute=attribute,
        code_attribute=code_attribute,
        target=target,
        layer=layer,
        buffer=buffer,
        all_touched=all_touched,
    )
    values = np.where(labels.mask, labels.array, np.nan).astype(np.float32)
    attrs = {"source": str(path), "target": labels.target}
    if labels.target == "classes":
        attrs["class_names"] = json.dumps({str(k): v for k, v in sorted(labels.classes.items())})
    return xr.DataArray(
        values, coords={"y": like["y"], "x": like["x"]}, dims=("y", "x"), attrs=attrs
    )
