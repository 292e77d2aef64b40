"""GeoTiff writing (whole arrays and windowed, always through a temporary name)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS

from geoensemble.io.atomic import atomic_path
from geoensemble.io.profiles import geotiff_profile


def write_geotiff(
    path: str | os.PathLike[str],
    data: np.ndarray,
    *,
    crs: CRS | str,
    transform: Any,
    nodata: float | None,
    compress: str = "lzw",
    tags: Mapping[str, Any] | None = None,
    band_names: Sequence[str] | None = None,
    colormap: Mapping[int, tuple[int, int, int]] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a 2-D (or band-first 3-D) array as a tiled, compressed GeoTiff, atomically."""
    arr = data[np.newaxis] if data.ndim == 2 else data
    prof = geotiff_profile(
        width=arr.shape[2],
        height=arr.shape[1],
        count=arr.shape[0],
        dtype=str(arr.dtype),
        crs=crs,
        transform=transform,
        nodata=nodata,
        compress=compress,
    )
    target = Path(path)
    with atomic_path(target, overwrite=overwrite) as tmp:
        with rasterio.open(tmp, "w", **prof) as dst:
            if colormap:
                dst.write_colormap(1, dict(colormap))  # before the pixels, or GDAL refuses
            dst.write(arr)
            if tags:
                dst.update_tags(**{k: str(v) for k, v in tags.items()})
            if band_names:
                for i, name in enumerate(band_names, start=1):
                    dst.set_band_description(i, name)
    return target


def read_band(
    path: str | os.PathLike[str], band: int = 1
) -> tuple[np.ndarray, CRS | None, Any, float | None]:
    """A whole band with its CRS, transform and nodata (for small rasters such as truth)."""
    from geoensemble.errors import InputFileError

    try:
        with rasterio.open(path) as src:
            return src.read(band), src.crs, src.transform, src.nodata
    except rasterio.errors.RasterioIOError as exc:
        raise InputFileError(f"cannot read {path}: {exc}") from None


def read_tags(path: str | os.PathLike[str]) -> dict[str, str]:
    """The dataset-level metadata tags of a raster."""
    with rasterio.open(path) as src:
        return dict(src.tags())
