"""Build the stack (every layer on one grid, float32, NaN = nodata) and store it as Zarr."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rioxarray
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from geoensemble.config import DataConfig
from geoensemble.errors import EmptyLayerError, InputFileError
from geoensemble.io.atomic import atomic_path
from geoensemble.io.grid import align_layers
from geoensemble.io.layers import LayerSource, resolve_sources


def read_layer(src: LayerSource, *, chunk_size: int) -> xr.DataArray:
    """One layer, lazily (dask), as float32 with NaN where the file says nodata."""
    try:
        da = rioxarray.open_rasterio(
            src.path, chunks={"x": chunk_size, "y": chunk_size}, masked=False, lock=False
        )
    except (rasterio.errors.RasterioIOError, OSError) as exc:
        raise InputFileError(
            f"cannot read layer '{src.name}' from {src.path}: {exc}. Check "
            f"that the file is a complete, readable raster"
        ) from None
    assert isinstance(da, xr.DataArray)
    if src.band < 1 or src.band > da.sizes["band"]:
        raise InputFileError(
            f"layer '{src.name}': {src.path.name} has {da.sizes['band']} "
            f"band(s), band={src.band} was asked for"
        )
    da = da.isel(band=src.band - 1, drop=True)
    nodata = [v for v in (da.rio.nodata, *src.nodata) if v is not None]
    out = da.astype("float32")
    for v in nodata:
        # Float rasters store nodata like -3.4e38 inexactly: compare at float32 precision.
        out = out.where(out != np.float32(v))
    if src.scale != 1.0 or src.offset != 0.0:
        out = out * np.float32(src.scale) + np.float32(src.offset)
    out.attrs = {"source": str(src.path), "band": src.band}
    out.rio.write_crs(da.rio.crs, inplace=True)
    out.rio.write_transform(da.rio.transform(), inplace=True)
    return out.rename(src.name)


def build_stack(data: DataConfig) -> xr.Dataset:
    """Read every layer named by ``data`` and put them on one grid (lazily)."""
    sources = resolve_sources(data)
    layers = {s.name: read_layer(s, chunk_size=data.chunk_size) for s in sources}
    if all(da.rio.crs is None for da in layers.values()):
        warnings.warn(
            f"no layer of {data.path} has a CRS: the stack and the maps will have none either",
            stacklevel=2,
        )
    aligned = align_layers(
        layers,
        policy=data.align.value,
        reference=data.reference,
        categorical=frozenset(s.name for s in sources if s.categorical),
        resampling=data.resampling,
    )
    ds = xr.Dataset(
        {k: v.chunk({"y": data.chunk_size, "x": data.chunk_size}) for k, v in aligned.items()}
    )
    first = next(iter(aligned.values()))
    return set_grid(ds, first.rio.crs, first.rio.transform())


def set_grid(ds: xr.Dataset, crs: CRS | None, transform: Affine) -> xr.Dataset:
    """Record the grid both for rioxarray and as plain attributes that survive Zarr."""
    ds = ds.drop_vars("spatial_ref", errors="ignore")
    ds.attrs["crs_wkt"] = crs.to_wkt() if crs else ""
    ds.attrs["geotransform"] = list(transform)[:6]
    if crs:
        ds = ds.rio.write_crs(crs)
    return ds.rio.write_transform(transform)


def grid_attrs(ds: xr.Dataset) -> tuple[CRS | None, Affine]:
    """CRS and transform recorded by :func:`set_grid`."""
    wkt = ds.attrs.get("crs_wkt", "")
    return (CRS.from_wkt(wkt) if wkt else None), Affine(*ds.attrs["geotransform"])


def layer_report(ds: xr.Dataset) -> dict[str, dict[str, float]]:
    """Per layer: valid fraction, min and max (the notebook's sanity check), computed once."""
    import dask

    stats = {}
    for name, da in ds.data_vars.items():
        stats[str(name)] = (da.notnull().mean(), da.min(), da.max())
    (computed,) = dask.compute(stats)
    report = {}
    for name, (frac, lo, hi) in computed.items():
        report[name] = {"valid_fraction": float(frac), "min": float(lo), "max": float(hi)}
        if float(frac) == 0.0:
            raise EmptyLayerError(
                f"layer '{name}' holds no valid pixel (all no-data): check "
                f"its nodata value, its window, or drop it from data.layers"
            )
    return report


def write_store(
    ds: xr.Dataset, path: str | os.PathLike[str], *, meta: dict[str, Any] | None = None
) -> Path:
    """Write a dataset as a chunked Zarr store (atomically) with a JSON sidecar."""
    target = Path(path)
    ds = ds.drop_vars("spatial_ref", errors="ignore")
    for v in ds.data_vars.values():
        v.attrs.pop("grid_mapping", None)
        v.encoding.clear()
    with atomic_path(target) as tmp:
        ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2)
        if meta is not None:
            (tmp / "geoensemble.json").write_text(json.dumps(meta, indent=2))
    return target


def open_store(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a store written by :func:`write_store`, with its grid restored."""
    p = Path(path)
    if not (p / ".zmetadata").exists():
        raise InputFileError(
            f"{p} is not a finished geoensemble store: run the stage that "
            f"writes it (dvc repro) first"
        )
    ds = xr.open_zarr(p, consolidated=True)
    crs, transform = grid_attrs(ds)
    return set_grid(ds, crs, transform)


def store_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON sidecar written with a store."""
    f = Path(path) / "geoensemble.json"
    return json.loads(f.read_text()) if f.exists() else {}
