"""One grid for every layer: check that the layers share a grid, or resample them onto it."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

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
            f"reference={ref_name!r} is not a layer: choose one of {names}",
            arguments={"reference": "ReadSpec.reference"},
        )
    with_crs = _with_crs(layers)
    named = _namer(labels or {})
    ref_label = "the target grid (target)" if target is not None else named(ref_name)
    ref = target if target is not None else layers[ref_name].grid
    if not with_crs:
        _check_without_crs(layers, ref, ref_label, named)
        return dict(layers), ref
    out: dict[str, Layer] = {}
    for name, lay in layers.items():
        if same_grid(lay.grid, ref):
            out[name] = lay
            continue
        if policy == "strict":
            raise GridMismatchError(
                f"layer {named(name)} is not on the grid of {ref_label}: it has "
                f"{lay.grid.describe()}; {ref_label} has {ref.describe()}. Set "
                f"align=reproject to resample it onto that grid, or reproject the file "
                f"(gdalwarp) first",
                arguments={"align": "ReadSpec.align", "target": "ReadSpec.target"},
            )
        method = _method(name, categorical, resampling)
        out[name] = WarpLayer(lay, ref, method)
    return out, ref


def _with_crs(layers: Mapping[str, Layer]) -> list[str]:
    """The layers that have a CRS; raise a GridMismatchError when only some have one."""
    with_crs = [n for n, lay in layers.items() if lay.grid.crs is not None]
    if 0 < len(with_crs) < len(layers):
        missing = [n for n in layers if n not in with_crs]
        raise GridMismatchError(
            f"layers {missing} have no CRS while {with_crs} have one: assign the CRS to those "
            f"files (gdal_edit.py -a_srs EPSG:xxxx), or set crs and geotransform for "
            f"HDF/NetCDF sources without geolocation",
            arguments={"crs": "ReadSpec.crs", "geotransform": "ReadSpec.geotransform"},
        )
    return with_crs


def _namer(labels: Mapping[str, str]) -> Callable[[str], str]:
    """How error messages name a layer: with where it comes from, when known."""

    def named(n: str) -> str:
        return f"'{n}' ({labels[n]})" if n in labels else f"'{n}'"

    return named


def _check_without_crs(
    layers: Mapping[str, Layer], ref: Grid, ref_label: str, named: Callable[[str], str]
) -> None:
    """Layers without a CRS cannot be reprojected: they must all be on ``ref`` already (and
    the caller of :func:`align` is warned that the stack has no CRS)."""
    for name, lay in layers.items():
        if not same_grid(lay.grid, ref):
            raise GridMismatchError(
                f"layer {named(name)} has no CRS and is not on the grid of {ref_label}: it has "
                f"{lay.grid.describe()}; {ref_label} has {ref.describe()}. Without a CRS "
                f"it cannot be reprojected: give the files a CRS (or crs and geotransform)",
                arguments={
                    **{"crs": "ReadSpec.crs", "geotransform": "ReadSpec.geotransform"},
                    "target": "ReadSpec.target",
                },
            )
    warnings.warn(
        "no layer has a CRS: the stack and the maps will have none either (their grids "
        "agree, so they are used in pixel coordinates)",
        stacklevel=3,  # the caller of align
    )


def _method(name: str, categorical: frozenset[str], resampling: Mapping[str, str] | str) -> str:
    """The resampling method of layer ``name`` (nearest for a categorical layer)."""
    if name in categorical:
        return "nearest"
    if isinstance(resampling, str):
        return resampling
    return resampling.get(name, "bilinear")
