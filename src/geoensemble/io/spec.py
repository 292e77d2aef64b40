"""What the readers read: layer specs and read settings, as the library declares them.

The readers (:func:`~geoensemble.io.layers.resolve_sources`,
:func:`~geoensemble.io.stack.build_stack`) and the checks
(:func:`~geoensemble.io.checks.check_data_config`) take a :class:`ReadSpec` of
:class:`LayerSpec` objects: the public API builds one from its arguments, the application
from its ``data`` config (:func:`geoensemble.app.settings.read_spec_of`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from geoensemble.errors import ConfigError


def _tuple(values: Sequence[Any] | None, kind: type) -> tuple[Any, ...] | None:
    return None if values is None else tuple(kind(v) for v in values)


@dataclass(frozen=True, init=False)
class LayerSpec:
    """How to find one layer and what to call it (one entry of :attr:`ReadSpec.layers`).

    Parameters
    ----------
    name
        The layer's name in the dataset.
    file
        Regular expression on the file name (a folder of GeoTiffs).
    variable
        Regular expression on the NetCDF/HDF variable, dataset or subdataset.
    meta_key, meta_value
        A metadata key whose value must match the regular expression ``meta_value``.
    band
        Band (GeoTiff) or index along the extra dimension (NetCDF/HDF), from 1 (default 1).
    window
        ``[row_off, col_off, height, width]`` in source pixels.
    bbox
        ``[xmin, ymin, xmax, ymax]`` in the layer's CRS.
    out_shape
        ``[rows, cols]`` to resample to on read.
    resolution
        ``[xres, yres]`` (or ``[res]``) to resample to on read.
    resampling
        Resampling method for ``out_shape``, ``resolution`` and ``align="reproject"``
        (default bilinear; categorical layers always use nearest).
    nodata
        Extra no-data value(s) besides the file's own.
    scale, offset
        ``value = raw * scale + offset`` after the file's own scale and offset.
    categorical
        Class codes: resampled with nearest neighbour only.

    Notes
    -----
    The attributes hold the values the readers use (``band`` 1, ``nodata`` a tuple,
    ``scale`` 1.0 ... where left out), so a spec is a :class:`LayerSpec`.
    """

    name: str
    file: str | None
    variable: str | None
    meta_key: str | None
    meta_value: str | None
    band: int
    window: tuple[int, ...] | None
    bbox: tuple[float, ...] | None
    out_shape: tuple[int, ...] | None
    resolution: tuple[float, ...] | None
    resampling: str | None
    nodata: tuple[float, ...]
    scale: float
    offset: float
    categorical: bool

    def __init__(
        self,
        name: str,
        *,
        file: str | None = None,
        variable: str | None = None,
        meta_key: str | None = None,
        meta_value: str | None = None,
        band: int | None = None,
        window: Sequence[int] | None = None,
        bbox: Sequence[float] | None = None,
        out_shape: Sequence[int] | None = None,
        resolution: Sequence[float] | None = None,
        resampling: str | None = None,
        nodata: float | Sequence[float] | None = None,
        scale: float | None = None,
        offset: float | None = None,
        categorical: bool = False,
    ) -> None:
        values = [] if nodata is None else [nodata] if isinstance(nodata, int | float) else nodata
        given = {
            "name": name,
            "file": file,
            "variable": variable,
            "meta_key": meta_key,
            "meta_value": meta_value,
            "band": 1 if band is None else int(band),
            "window": _tuple(window, int),
            "bbox": _tuple(bbox, float),
            "out_shape": _tuple(out_shape, int),
            "resolution": _tuple(resolution, float),
            "resampling": resampling,
            "nodata": tuple(float(v) for v in values),
            "scale": 1.0 if scale is None else float(scale),
            "offset": 0.0 if offset is None else float(offset),
            "categorical": bool(categorical),
        }
        for key, value in given.items():
            object.__setattr__(self, key, value)  # frozen: set once, here


SPEC_KEYS = [f.name for f in dataclasses.fields(LayerSpec)]


def layer_spec(value: LayerSpec | Mapping[str, Any], i: int) -> LayerSpec:
    """A :class:`LayerSpec` from itself or from a dict with its fields (entry ``i`` of
    ``layers``).

    Raises
    ------
    ConfigError
        Naming the entry and the unknown or missing key.
    """
    if isinstance(value, LayerSpec):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"layers[{i}]={value!r} is a {type(value).__name__}: give a LayerSpec or a dict "
            f"with its fields ({', '.join(SPEC_KEYS)})",
            arguments={"layers": "ReadSpec.layers"},
        )
    unknown = sorted(set(value) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(
            f"layers[{i}] has unknown key(s) {unknown}: use {', '.join(SPEC_KEYS)}",
            arguments={"layers": "ReadSpec.layers"},
        )
    if "name" not in value:
        raise ConfigError(
            f"layers[{i}]={dict(value)!r} has no name: add name='red' (say)",
            arguments={"layers": "ReadSpec.layers"},
        )
    kwargs = dict(value)
    return LayerSpec(str(kwargs.pop("name")), **kwargs)


@dataclass(frozen=True)
class TargetGrid:
    """An explicit target grid; ``None`` parts follow the reference layer (a
    :class:`TargetGrid`)."""

    crs: str | None = None
    resolution: tuple[float, ...] | None = None
    bounds: tuple[float, ...] | None = None


@dataclass(frozen=True)
class StacSearch:
    """A STAC API search (a :class:`StacSearch`): ``max_cloud`` in percent."""

    collections: tuple[str, ...] = ()
    bbox: tuple[float, ...] | None = None
    datetime: str | None = None
    max_cloud: float | None = None
    limit: int = 1


@dataclass(frozen=True)
class ReadSpec:
    """Read settings built by the API (a :class:`ReadSpec`; defaults as the ingest stage's)."""

    path: str
    format: str = "auto"
    pattern: str = "*.tif"
    layers: tuple[LayerSpec, ...] = ()
    align: str = "strict"
    reference: str | None = None
    target: TargetGrid = field(default_factory=TargetGrid)
    resampling: str = "bilinear"
    chunk_size: int = 1024
    crs: str | None = None
    geotransform: tuple[float, ...] | None = None
    product: str = "none"
    qa: str = "mask"
    qa_flags: tuple[str, ...] | None = None
    stac: StacSearch = field(default_factory=StacSearch)
    urls: tuple[str, ...] = ()


def stac_search(value: StacSearch | Mapping[str, Any] | None) -> StacSearch:
    """A :class:`StacSearch` from itself, ``None`` (no search) or a dict with its fields."""
    if value is None or isinstance(value, StacSearch):
        return value or StacSearch()
    keys = {"collections", "bbox", "datetime", "max_cloud", "limit"}
    unknown = sorted(set(value) - keys)
    if unknown:
        raise ConfigError(
            f"stac has unknown key(s) {unknown}: use {sorted(keys)}",
            arguments={"stac": "ReadSpec.stac"},
        )
    v = dict(value)
    return StacSearch(
        collections=tuple(v.get("collections") or ()),
        bbox=tuple(float(b) for b in v["bbox"]) if v.get("bbox") else None,
        datetime=v.get("datetime"),
        max_cloud=float(v["max_cloud"]) if v.get("max_cloud") is not None else None,
        limit=int(v.get("limit", 1)),
    )
