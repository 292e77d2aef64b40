"""``load_array`` and ``LayerSpec``: the ingest stage's readers, specs and grid rules."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoensemble.api._keys import DATA, argument_names
from geoensemble.errors import ConfigError

if TYPE_CHECKING:
    import xarray as xr

    from geoensemble.app.config import DataConfig, LayerSpecConfig

# A folder's rasters when ``path`` names no glob of its own: GeoTiffs whatever the case of
# their extension (Landsat's are .TIF).
FOLDER_GLOB = "*.[tT][iI][fF]"
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class LayerSpec:
    """How to find one layer and what to call it (the keys of ``data.layers``).

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
    """

    name: str
    _: dataclasses.KW_ONLY
    file: str | None = None
    variable: str | None = None
    meta_key: str | None = None
    meta_value: str | None = None
    band: int | None = None
    window: Sequence[int] | None = None
    bbox: Sequence[float] | None = None
    out_shape: Sequence[int] | None = None
    resolution: Sequence[float] | None = None
    resampling: str | None = None
    nodata: float | Sequence[float] | None = None
    scale: float | None = None
    offset: float | None = None
    categorical: bool = False

    def to_config(self) -> LayerSpecConfig:
        """The ``data.layers`` entry this spec stands for."""
        from geoensemble.app.config import LayerSpecConfig

        nodata = self.nodata
        values = [] if nodata is None else [nodata] if isinstance(nodata, int | float) else nodata
        return LayerSpecConfig(
            name=self.name,
            file=self.file,
            variable=self.variable,
            meta_key=self.meta_key,
            meta_value=self.meta_value,
            band=1 if self.band is None else int(self.band),
            nodata=[float(v) for v in values],
            scale=1.0 if self.scale is None else float(self.scale),
            offset=0.0 if self.offset is None else float(self.offset),
            categorical=bool(self.categorical),
            window=_ints(self.window),
            bbox=None if self.bbox is None else [float(v) for v in self.bbox],
            out_shape=_ints(self.out_shape),
            resolution=None if self.resolution is None else [float(v) for v in self.resolution],
            resampling=self.resampling,
        )


def _ints(values: Sequence[int] | None) -> list[int] | None:
    return None if values is None else [int(v) for v in values]


_SPEC_KEYS = [f.name for f in dataclasses.fields(LayerSpec) if f.name != "_"]


def layer_spec(value: LayerSpec | Mapping[str, Any], i: int) -> LayerSpec:
    """A :class:`LayerSpec` from itself or from a dict with the keys of ``data.layers``.

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
            f"with the keys of data.layers ({', '.join(_SPEC_KEYS)})"
        )
    unknown = sorted(set(value) - set(_SPEC_KEYS))
    if unknown:
        raise ConfigError(f"layers[{i}] has unknown key(s) {unknown}: use {', '.join(_SPEC_KEYS)}")
    if "name" not in value:
        raise ConfigError(f"layers[{i}]={dict(value)!r} has no name: add name='red' (say)")
    kwargs = dict(value)
    return LayerSpec(str(kwargs.pop("name")), **kwargs)


def data_config(
    path: str | os.PathLike[str],
    *,
    layers: Sequence[LayerSpec | Mapping[str, Any]] | None = None,
    format: str = "auto",
    align: str = "strict",
    reference: str | None = None,
    chunks: int | None = None,
) -> DataConfig:
    """The ``data`` config the ingest stage would read for these arguments, checked.

    This is the coupling to the application config that the library's layering removes:
    :func:`~geoensemble.io.stack.build_stack` still takes a ``DataConfig``.
    """
    from geoensemble.app.config import Align, DataConfig
    from geoensemble.io.checks import check_data_config

    p = Path(os.fspath(path))
    pattern = FOLDER_GLOB
    if _GLOB_CHARS & set(p.name):
        p, pattern = p.parent, p.name
        format = "geotiff_dir" if format == "auto" else format
    if align not in {a.value for a in Align}:
        raise ConfigError(f"align={align!r} is unknown: use 'strict' or 'reproject'")
    if chunks is not None and not 16 <= int(chunks) <= 65536:
        raise ConfigError(f"chunks={chunks!r} is out of range: use an integer between 16 and 65536")
    d = DataConfig(
        name="api",
        format=format,
        path=str(p),
        pattern=pattern,
        layers=[layer_spec(s, i).to_config() for i, s in enumerate(layers or [])],
        align=Align(align),
        reference=reference,
        chunk_size=int(chunks) if chunks is not None else DataConfig.chunk_size,
    )
    with argument_names(DATA):
        check_data_config(d)
    return d


def load_array(
    path: str | os.PathLike[str],
    *,
    layers: Sequence[LayerSpec | Mapping[str, Any]] | None = None,
    format: str = "auto",
    align: str = "strict",
    reference: str | None = None,
    chunks: int | None = None,
) -> xr.Dataset:
    """Read raster layers onto one grid, lazily: every reader and rule of the ingest stage.

    Parameters
    ----------
    path
        A folder of GeoTiffs (its ``*.tif``/``*.TIF`` files, searched recursively), a glob
        such as ``"scene/B*.TIF"``, or one GeoTiff, NetCDF, HDF5 or HDF4 file.
    layers
        Which file, variable or band becomes which named layer: :class:`LayerSpec` objects
        or dicts with the same keys (``data.layers``). Default: every raster found, named
        after its file stem, band description or variable.
    format
        ``auto`` (from the path), ``geotiff_dir``, ``geotiff``, ``netcdf``, ``hdf5``,
        ``hdf4`` or ``gdal``.
    align
        ``strict``: layers must share one grid (else :class:`GridMismatchError` names the
        layer and how it differs); ``reproject``: resample them onto the ``reference``
        layer's grid.
    reference
        The layer whose grid is the reference (default: the first).
    chunks
        Pixels per side of a dask chunk (default 1024).

    Returns
    -------
    xarray.Dataset
        One float32 ``(y, x)`` layer per spec, NaN for no-data, dask-backed, with the grid's
        CRS and transform (``ds.rio.crs``, ``ds.attrs["crs_wkt"]``, ``ds.attrs["geotransform"]``).

    Raises
    ------
    InputFileError, LayerNotFoundError, GridMismatchError, ConfigError
        Naming the file, the spec or the layer and how to fix it.

    Examples
    --------
    >>> ds = load_array("scene", layers=[LayerSpec("red", file=r"B4\\.TIF$")])  # doctest: +SKIP
    """
    from geoensemble.io.stack import build_stack

    d = data_config(
        path, layers=layers, format=format, align=align, reference=reference, chunks=chunks
    )
    with argument_names(DATA):
        return build_stack(d)
