"""One grid for every layer: check that the layers share a grid, or resample them onto it."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

from geoensemble.errors import GridMismatchError, LayerNotFoundError
from geoensemble.io.grid import Grid, same_grid
from geoensemble.io.window import Layer, WarpLayer


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
