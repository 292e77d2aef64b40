"""Factories for tiny real rasters (GeoTiff, NetCDF, HDF5, HDF4) written into tmp_path."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

from geoensemble.app.config import Align, DataConfig, LayerSpecConfig, TargetGridConfig
from geoensemble.app.settings import read_spec_of
from geoensemble.io.checks import check_data_config
from geoensemble.io.spec import ReadSpec

UTM = "EPSG:32613"
T30 = Affine(30.0, 0.0, 440000.0, 0.0, -30.0, 4480000.0)


def write_tif(
    path: Path,
    arr: np.ndarray,
    *,
    crs: str | None = UTM,
    transform: Affine = T30,
    nodata: float | None = None,
    descriptions: list[str] | None = None,
    tags: dict[str, str] | None = None,
) -> Path:
    """A plain GeoTiff (band-first if 3-D) with the given grid."""
    a = arr[np.newaxis] if arr.ndim == 2 else arr
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # no-CRS files on purpose
        dst = rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=a.shape[2],
            height=a.shape[1],
            count=a.shape[0],
            dtype=a.dtype,
            crs=crs,
            transform=transform,
            nodata=nodata,
        )
    with dst:
        dst.write(a)
        for i, d in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, d)
        if tags:
            dst.update_tags(**tags)
    return path


def data(path: Path | str, *layers: dict[str, Any], **kw: Any) -> ReadSpec:
    """The readers' settings of a ``data`` config for ``path``, converted and checked as the
    stages do (:func:`geoensemble.app.settings.read_spec_of`, then the ``validate`` checks)."""
    target = kw.pop("target", None)
    if "align" in kw:
        kw["align"] = Align(kw["align"])
    cfg = DataConfig(
        path=str(path),
        pattern=kw.pop("pattern", "*.tif"),
        layers=[LayerSpecConfig(**spec) for spec in layers],
        chunk_size=kw.pop("chunk_size", 16),
        target=TargetGridConfig(**(target or {})),
        **kw,
    )
    spec = read_spec_of(cfg)
    check_data_config(spec)
    return spec


def ramp(h: int = 24, w: int = 20, dtype: str = "int16", start: int = 1) -> np.ndarray:
    """Distinct values per pixel, so misplaced rows or columns show."""
    return (np.arange(h * w).reshape(h, w) + start).astype(dtype)


@pytest.fixture
def make_tif(tmp_path: Path) -> Callable[..., Path]:
    def _make(name: str, arr: np.ndarray, **kw: Any) -> Path:
        return write_tif(tmp_path / name, arr, **kw)

    return _make
