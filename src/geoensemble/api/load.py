"""``load_array`` and ``LayerSpec``: the ingest stage's readers, specs and grid rules."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoensemble.errors import ConfigError
from geoensemble.io.limits import MAX_PIXELS
from geoensemble.io.spec import LayerSpec, ReadSpec, StacSearch, layer_spec, stac_search

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["FOLDER_GLOB", "LayerSpec", "layer_spec", "load_array", "read_spec"]

# A folder's rasters when ``path`` names no glob of its own: GeoTiffs whatever the case of
# their extension (Landsat's are .TIF).
FOLDER_GLOB = "*.[tT][iI][fF]"
_GLOB_CHARS = set("*?[")


def read_spec(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    layers: Sequence[LayerSpec | Mapping[str, Any]] | None = None,
    format: str = "auto",
    align: str = "strict",
    reference: str | None = None,
    chunks: int | None = None,
    product: str = "none",
    qa: str = "mask",
    qa_flags: Sequence[str] | None = None,
    stac: StacSearch | Mapping[str, Any] | None = None,
) -> ReadSpec:
    """The read settings these arguments stand for, with the ingest stage's checks
    (:func:`~geoensemble.io.checks.check_data_config`)."""
    from geoensemble.io.checks import ALIGN, check_data_config
    from geoensemble.io.remote import is_url

    urls: tuple[str, ...] = ()
    if not isinstance(path, str | os.PathLike):  # a list of URLs (or paths)
        urls = tuple(os.fspath(u) for u in path)
        path = urls[0] if urls else ""
    text = os.fspath(path)
    p = Path(text)
    pattern = FOLDER_GLOB
    if urls or is_url(text):
        pass  # URLs are never globbed
    elif _GLOB_CHARS & set(p.name):
        p, pattern = p.parent, p.name
        format = "geotiff_dir" if format == "auto" else format
    if align not in ALIGN:
        raise ConfigError(f"align={align!r} is unknown: use 'strict' or 'reproject'")
    if chunks is not None and not 16 <= int(chunks) <= 65536:
        raise ConfigError(f"chunks={chunks!r} is out of range: use an integer between 16 and 65536")
    d = ReadSpec(
        format=format,
        path=text if urls or is_url(text) else str(p),
        urls=urls,
        pattern=pattern,
        layers=tuple(layer_spec(s, i) for i, s in enumerate(layers or [])),
        align=align,
        reference=reference,
        chunk_size=int(chunks) if chunks is not None else ReadSpec.chunk_size,
        product=product,
        qa=qa,
        qa_flags=tuple(qa_flags) if qa_flags is not None else None,
        stac=stac_search(stac),
    )
    check_data_config(d)
    return d


def load_array(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    layers: Sequence[LayerSpec | Mapping[str, Any]] | None = None,
    format: str = "auto",
    align: str = "strict",
    reference: str | None = None,
    chunks: int | None = None,
    product: str = "none",
    qa: str = "mask",
    qa_flags: Sequence[str] | None = None,
    stac: StacSearch | Mapping[str, Any] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> xr.Dataset:
    """Read raster layers onto one grid, lazily: every reader and rule of the ingest stage.

    Parameters
    ----------
    path
        A folder of GeoTiffs (its ``*.tif``/``*.TIF`` files, searched recursively), a glob
        such as ``"scene/B*.TIF"``, or one GeoTiff, NetCDF, HDF5 or HDF4 file; or the
        ``http(s)://`` or ``s3://`` URL of a COG, a list of such URLs, or a ``.txt`` file
        listing them one a line (read window by window, see ``docs/cloud-inputs.md``).
    layers
        Which file, variable or band becomes which named layer: :class:`LayerSpec` objects
        or dicts with the same keys. Default: every raster found, named
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
    product
        A product preset (``landsat_c2_l2``, ``sentinel2_l2a``, ``sentinel2_l2a_pre04``):
        finds the product's files, applies its scale and offset, and its quality band as
        ``qa`` says (see ``docs/cloud-inputs.md``). Default ``none``.
    qa
        ``mask`` (flagged pixels become NaN), ``features`` (one 0/1 layer per flag) or
        ``keep`` (the quality band as a layer).
    qa_flags
        The flags to mask (or make features); default the preset's.
    stac
        With ``format="stac_api"`` (``path`` the API root): the search, a
        :class:`~geoensemble.io.spec.StacSearch` or a dict with its keys (``collections``,
        ``bbox``, ``datetime``, ``max_cloud``, ``limit``). A STAC item or item collection
        JSON (file or URL) needs no search: give it as ``path``.
    max_pixels
        Most pixels a file's header may declare per layer (a guard against broken or
        hostile headers; default :data:`~geoensemble.io.limits.MAX_PIXELS`): raise it for a
        real scene that is larger.

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
    from geoensemble.io.remote import is_url
    from geoensemble.io.stack import build_stack

    if not isinstance(path, str | os.PathLike) and not (
        isinstance(path, list | tuple)
        and path
        and all(isinstance(u, str) and is_url(u) for u in path)
    ):
        raise ConfigError(
            f"path={path!r} is not a path: give a folder of GeoTiffs or a raster file as a "
            f"str or pathlib.Path, e.g. load_array('data/raw/scene'), or a list of COG URLs "
            f"(http(s):// or s3://)"
        )
    d = read_spec(
        path,
        layers=layers,
        format=format,
        align=align,
        reference=reference,
        chunks=chunks,
        product=product,
        qa=qa,
        qa_flags=qa_flags,
        stac=stac,
    )
    return build_stack(d, max_pixels=max_pixels)
