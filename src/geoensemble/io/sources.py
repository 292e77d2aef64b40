"""Raw raster sources: one 2-D array inside a file, read window by window.

A source knows its shape, dtype, grid, the file's no-data values and the file's own
scale/offset, and reads any window of raw values. Sources hold paths, never open handles, so
they pickle to dask workers; every read opens the file, which costs about a millisecond and
keeps reads thread-safe. Readers whose C libraries are not thread-safe (netCDF, HDF4) share a
per-process lock.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from dask.utils import SerializableLock
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from geoensemble.errors import InputFileError
from geoensemble.io.arguments import outside
from geoensemble.io.grid import Grid
from geoensemble.io.remote import cloud_env
from geoensemble.redact import redact_uri

# netCDF-C and the HDF4 library are not thread-safe: one lock per process for each.
NETCDF_LOCK = SerializableLock("geoensemble-netcdf")
HDF4_LOCK = SerializableLock("geoensemble-hdf4")
GDAL_LOCK = SerializableLock("geoensemble-gdal-multidim")


@dataclass(frozen=True, kw_only=True)
class RasterSource:
    """One 2-D array in a file: its grid, the file's no-data and scaling, and a window reader.

    ``value = raw * scale + offset`` (the CF convention); readers convert other conventions.
    """

    label: str  # the file (and variable) for messages
    shape: tuple[int, int]
    dtype: str
    crs: CRS | None
    transform: Affine
    nodata: tuple[float, ...] = ()
    scale: float = 1.0
    offset: float = 0.0
    meta: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def grid(self) -> Grid:
        return Grid(self.crs, self.transform, self.shape)

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        """Raw values of the window ``rows`` x ``cols`` (``start:stop`` slices, step 1)."""
        raise NotImplementedError

    def _fail(self, rows: slice, cols: slice, exc: BaseException) -> InputFileError:
        why = redact_uri(str(exc))
        return InputFileError(
            f"cannot read {self.label} (rows {rows.start}-{rows.stop}, cols "
            f"{cols.start}-{cols.stop}): {why}. The file may be truncated or corrupt (or, for "
            f"a URL, the server unreachable): copy it again or drop it from layers",
            arguments=outside(why, {"layers": "ReadSpec.layers"}),
        )


@contextlib.contextmanager
def _quiet_georef() -> Iterator[None]:
    # Files without georeferencing are handled by the grid policy, not by a warning per read.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def open_gdal(path: str, *, where: str) -> Any:
    """``rasterio.open`` with errors that name the file and say what to check."""
    try:
        with _quiet_georef():
            return rasterio.open(path)
    except (RasterioError, OSError) as exc:
        if path.startswith("/vsi") and not path.startswith("/vsimem/"):
            raise InputFileError(
                f"cannot read {where}: {redact_uri(str(exc))}. Check the URL, the network, "
                f"and the credentials in the environment (AWS_*, GDAL_HTTP_*; see "
                f"docs/cloud-inputs.md)"
            ) from None
        raise InputFileError(
            f"cannot read {where}: {exc}. Check that it is a complete raster file that GDAL "
            f"reads (or set format)",
            arguments=outside(str(exc), {"format": "ReadSpec.format"}),
        ) from None


GEOTIFF_SUFFIXES = (".tif", ".tiff", ".gtif")


def check_geotiff(src: Any, *, where: str) -> None:
    """Refuse a file named like a GeoTiff that GDAL reads as something else (a PNG or a JPEG
    renamed ``.tif``): its missing CRS or grid would be blamed instead.

    Raises
    ------
    InputFileError
        Naming the file and the format GDAL found.
    """
    name = str(getattr(src, "name", ""))
    if name.lower().endswith(GEOTIFF_SUFFIXES) and src.driver not in ("GTiff", "COG"):
        raise InputFileError(
            f"{where} is not a GeoTiff: its name ends in {Path(name).suffix}, but GDAL reads "
            f"it as {src.driver}. Replace it with the GeoTiff it should be (or give it its "
            f"real extension and keep it out of the input)"
        )


@dataclass(frozen=True, kw_only=True)
class GdalBand(RasterSource):
    """A band of anything GDAL opens: GeoTiff, a GDAL subdataset (``HDF5:"f.h5"://x``)."""

    path: str
    band: int = 1
    locked: bool = False

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        lock = GDAL_LOCK if self.locked else contextlib.nullcontext()
        try:
            with lock, _quiet_georef(), cloud_env(self.path), rasterio.open(self.path) as src:
                return np.asarray(
                    src.read(self.band, window=Window.from_slices(rows, cols), masked=False)
                )
        except (RasterioError, OSError) as exc:
            raise self._fail(rows, cols, exc) from None


def gdal_bands(path: str, *, label: str, locked: bool = False) -> list[GdalBand]:
    """Every band of a GDAL dataset as a source, with band tags and description as ``meta``."""
    with cloud_env(path):
        return _gdal_bands(path, label=label, locked=locked)


def _gdal_bands(path: str, *, label: str, locked: bool) -> list[GdalBand]:
    src = open_gdal(path, where=label)
    with src:
        check_geotiff(src, where=label)
        out = []
        for b in range(1, src.count + 1):
            meta = {**{k: str(v) for k, v in src.tags().items()}, **src.tags(b)}
            if src.descriptions[b - 1]:
                meta["description"] = src.descriptions[b - 1]
            nodata = src.nodatavals[b - 1]
            crs = src.crs if src.crs and src.crs.to_wkt() else None
            out.append(
                GdalBand(
                    label=label if src.count == 1 else f"{label} band {b}",
                    shape=(src.height, src.width),
                    dtype=src.dtypes[b - 1],
                    crs=crs,
                    transform=src.transform,
                    nodata=() if nodata is None else (float(nodata),),
                    scale=float(src.scales[b - 1]),
                    offset=float(src.offsets[b - 1]),
                    meta=meta,
                    path=path,
                    band=b,
                    locked=locked,
                )
            )
        return out


def subdatasets(path: str, *, label: str) -> list[str]:
    """The GDAL subdataset names of a container file (NetCDF, HDF5), empty when none."""
    with open_gdal(path, where=label) as src:
        return list(src.subdatasets)


def cf_nodata(attrs: dict[str, Any]) -> tuple[float, ...]:
    """No-data values from CF/HDF attributes (``_FillValue``, ``missing_value``, ``nodata``)."""
    out: list[float] = []
    for key in ("_FillValue", "missing_value", "nodata", "NoDataValue", "fill_value"):
        if key in attrs:
            with contextlib.suppress(TypeError, ValueError):
                out.extend(float(v) for v in np.ravel(attrs[key]))
    return tuple(dict.fromkeys(out))


def meta_strings(attrs: dict[str, Any]) -> dict[str, str]:
    """Attributes as strings, for matching ``meta_key``/``meta_value`` in layer specs."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, np.ndarray) and v.size == 1:
            v = v.reshape(-1)[0]
            v = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
        out[str(k)] = str(v)
    return out
