"""Build the stack (every layer on one grid, float32, NaN = nodata) and store it as Zarr.

Layers stay lazy until the store is written: each dask chunk reads only the window of the
file (or, when resampling, of the source) it needs, and the store is written chunk by chunk
in the same pass that computes the per-layer report, so memory does not grow with the scene.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as dsa
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from dask.base import tokenize
from rasterio.crs import CRS

from geoensemble.errors import EmptyLayerError, InputFileError, LayerNotFoundError, OutputError
from geoensemble.io.align import align
from geoensemble.io.atomic import atomic_path, disk_full
from geoensemble.io.checks import unsafe_name
from geoensemble.io.georef import parse_crs
from geoensemble.io.grid import Grid, target_grid
from geoensemble.io.layers import LayerSource, resolve_sources
from geoensemble.io.limits import MAX_PIXELS, check_declared_size, check_real, read_json
from geoensemble.io.owned import SIDECAR, STORE_STAGES, store_refusal
from geoensemble.io.products import apply_qa, get_product
from geoensemble.io.spec import ReadSpec
from geoensemble.io.window import (
    CropLayer,
    Layer,
    SourceLayer,
    WarpLayer,
    bbox_window,
    crop_window,
    resampled_grid,
)


def prepare_layer(src: LayerSource, *, default_resampling: str = "bilinear") -> Layer:
    """The lazy float layer of one matched spec: no-data, scaling, crop, resample on read."""
    layer: Layer = SourceLayer(src.source, src.nodata, src.scale, src.offset)
    where = f"layer '{src.name}' ({src.label})"
    if src.window is not None:
        r, c, h, w = crop_window(layer.grid, list(src.window), where=where)
        layer = CropLayer(layer, r, c, (h, w))
    elif src.bbox is not None:
        r, c, h, w = bbox_window(layer.grid, list(src.bbox), where=where)
        layer = CropLayer(layer, r, c, (h, w))
    if src.out_shape is not None or src.resolution is not None:
        grid = resampled_grid(
            layer.grid,
            out_shape=list(src.out_shape) if src.out_shape else None,
            resolution=list(src.resolution) if src.resolution else None,
        )
        layer = WarpLayer(layer, grid, _method(src, default_resampling))
    return layer


def _method(src: LayerSource, default: str) -> str:
    if src.categorical:
        return "nearest"
    return src.resampling or default


@dataclass(frozen=True)
class _Blocks:
    """The array interface dask's ``from_array`` needs, reading through a layer."""

    layer: Layer

    @property
    def shape(self) -> tuple[int, int]:
        return self.layer.grid.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype("float32")

    @property
    def ndim(self) -> int:
        return 2

    def __getitem__(self, key: Any) -> np.ndarray:
        # dask passes slices for chunks, but fuses plain indexing (ints, steps) into reads.
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (2 - len(key))
        bounds: list[slice] = []
        picks: list[slice | int] = []
        for k, n in zip(key, self.shape, strict=True):
            if isinstance(k, slice):
                start, stop, step = k.indices(n)
                if step < 0:
                    raise IndexError("negative steps are not supported when reading layers")
                stop = max(start, stop)
                bounds.append(slice(start, stop))
                picks.append(slice(None, None, step))
            else:
                i = int(k) + (n if int(k) < 0 else 0)
                bounds.append(slice(i, i + 1))
                picks.append(0)
        return self.layer.read(bounds[0], bounds[1])[tuple(picks)]


def to_dataarray(layer: Layer, name: str, *, chunk_size: int) -> xr.DataArray:
    """A lazy (dask) ``y, x`` DataArray of ``layer`` with coordinates, CRS and transform."""
    grid = layer.grid
    arr = dsa.from_array(
        _Blocks(layer),
        chunks=(chunk_size, chunk_size),
        name=f"ingest-{name}-{tokenize(repr(layer))}",
        meta=np.empty((0, 0), dtype="float32"),
        lock=False,
    )
    h, w = grid.shape
    t = grid.transform
    da = xr.DataArray(
        arr,
        dims=("y", "x"),
        coords={"y": t.f + t.e * (np.arange(h) + 0.5), "x": t.c + t.a * (np.arange(w) + 0.5)},
        name=name,
    )
    if grid.crs is not None:
        da = da.rio.write_crs(grid.crs)
    return da.rio.write_transform(t)


def read_layer(src: LayerSource, *, chunk_size: int) -> xr.DataArray:
    """One layer on its own grid, lazily, as float32 with NaN where the file says nodata."""
    return to_dataarray(prepare_layer(src), src.name, chunk_size=chunk_size)


def build_stack(data: ReadSpec, *, max_pixels: int = MAX_PIXELS) -> xr.Dataset:
    """Read every layer named by ``data`` and put them on one grid (lazily).

    ``max_pixels`` bounds what one file may declare (:data:`~geoensemble.io.limits.MAX_PIXELS`
    by default), checked before anything is read.

    Raises
    ------
    InputFileError, LayerNotFoundError, GridMismatchError
        Naming the file, the spec or the layer and how to fix it.
    """
    sources = resolve_sources(data)
    for s in sources:
        check_declared_size(s.label, s.source.shape, max_pixels)
        check_real(s.label, s.source.dtype)
    layers = {s.name: prepare_layer(s, default_resampling=data.resampling) for s in sources}
    t = data.target
    target: Grid | None = None
    if t.crs is not None or t.resolution or t.bounds:
        ref_name = data.reference or sources[0].name
        if ref_name not in layers:
            raise LayerNotFoundError(
                f"reference={ref_name!r} is not a layer: choose one of {list(layers)}",
                arguments={"reference": "ReadSpec.reference"},
            )
        target = target_grid(
            layers[ref_name].grid,
            crs=parse_crs(t.crs, where="target.crs", parameter="TargetGrid.crs") if t.crs else None,
            resolution=t.resolution,
            bounds=t.bounds,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # the no-CRS warning must reach the user once
        aligned, grid = align(
            layers,
            policy=str(data.align),  # a StrEnum from the config: its value
            reference=data.reference,
            target=target,
            categorical=frozenset(s.name for s in sources if s.categorical),
            resampling={s.name: s.resampling or data.resampling for s in sources},
            labels={s.name: s.label for s in sources},
        )
    product = get_product(data.product)
    if product is not None:
        aligned = apply_qa(aligned, product, qa=data.qa, flags=data.qa_flags)
    by_name = {s.name: s for s in sources}
    qa_label = by_name[product.qa.layer].label if product and product.qa.layer in by_name else ""
    ds = xr.Dataset(
        {
            name: to_dataarray(lay, name, chunk_size=data.chunk_size).assign_attrs(
                source=by_name[name].label if name in by_name else qa_label,
                categorical=int(by_name[name].categorical) if name in by_name else 0,
            )
            for name, lay in aligned.items()
        }
    )
    return set_grid(ds, grid.crs, grid.transform)


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


def _stats(ds: xr.Dataset) -> dict[str, tuple[Any, Any, Any]]:
    return {
        str(name): (da.notnull().mean(), da.min(skipna=True), da.max(skipna=True))
        for name, da in ds.data_vars.items()
    }


def _report(ds: xr.Dataset, computed: dict[str, Any]) -> dict[str, dict[str, float]]:
    report = {}
    for name, (frac, lo, hi) in computed.items():
        if float(frac) == 0.0:
            src = ds[name].attrs.get("source", "its file")
            raise EmptyLayerError(
                f"layer '{name}' ({src}) holds no valid pixel (all no-data): check its "
                f"no-data values (layers[].nodata), its window or bbox, or drop it from "
                f"layers",
                arguments={"layers": "ReadSpec.layers"},
            )
        report[name] = {"valid_fraction": float(frac), "min": float(lo), "max": float(hi)}
    return report


def _storable(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.drop_vars("spatial_ref", errors="ignore")
    for v in ds.data_vars.values():
        v.attrs.pop("grid_mapping", None)
        v.encoding.clear()
    return ds


def chunk_manifest(store: Path) -> dict[str, list[int]]:
    """Per array of a Zarr store: ``[chunk files, bytes]`` (a listing, no reads).

    Written into the sidecar when the store is made and compared by :func:`open_store`:
    Zarr reads a missing chunk as its fill value (NaN), so a lost file would otherwise be a
    silent no-data hole.
    """
    out = {}
    for d in sorted(store.iterdir()):
        if d.is_dir() and (d / ".zarray").is_file():
            with os.scandir(d) as it:
                # files or links to files (DVC's symlink cache type links each file)
                sizes = [f.stat().st_size for f in it if not f.name.startswith(".") and f.is_file()]
            out[d.name] = [len(sizes), sum(sizes)]
    return out


def _write_sidecar(tmp: Path, kind: str, meta: dict[str, Any] | None) -> None:
    side = {**(meta or {}), "kind": kind, "chunks": chunk_manifest(tmp)}
    (tmp / SIDECAR).write_text(json.dumps(side, indent=2))


def _guard(kind: str) -> Callable[[Path], str | None]:
    return lambda p: store_refusal(p, kind)


def write_store(
    ds: xr.Dataset,
    path: str | os.PathLike[str],
    *,
    meta: dict[str, Any] | None = None,
    kind: str = "features",
    key: str | None = None,
) -> Path:
    """Write a dataset as a chunked Zarr store (atomically) with a JSON sidecar.

    The sidecar ``geoensemble.json`` holds ``meta``, the store's ``kind`` and its chunk
    manifest. An existing ``path`` is replaced only if it is a ``kind`` store we wrote.
    """
    target = Path(path)
    ds = _storable(ds)
    check_names(ds, key)
    with atomic_path(target, replace_if=_guard(kind), key=key) as tmp, _joined_pool():
        try:
            ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2)
        except RuntimeError as exc:
            if disk_full(exc, target.parent):
                raise
            # numcodecs reports a corrupt chunk of an input store as a RuntimeError
            raise InputFileError(
                f"cannot compute {target}: reading its input failed ({exc}). An input store "
                f"is damaged (a truncated or corrupt chunk file): rebuild it with "
                f"dvc repro --force on the stage that writes it"
            ) from None
        _write_sidecar(tmp, kind, meta)
    return target


def write_stack(
    ds: xr.Dataset,
    path: str | os.PathLike[str],
    *,
    meta: dict[str, Any] | None = None,
    key: str | None = None,
) -> dict[str, dict[str, float]]:
    """Write the stack chunk by chunk and compute its report in the same single read.

    The sidecar ``geoensemble.json`` holds ``meta`` plus ``layers`` (the report), the kind
    (``stack``) and the chunk manifest. Nothing is left behind when a layer turns out empty:
    the store is written under a temporary name.

    Returns
    -------
    The per-layer report (valid fraction, min, max).
    """
    import dask

    target = Path(path)
    ds = _storable(ds)
    check_names(ds, key)
    with atomic_path(target, replace_if=_guard("stack"), key=key) as tmp, _joined_pool():
        store = ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2, compute=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN chunks
            _, computed = dask.compute(store, _stats(ds))
        report = _report(ds, computed)
        _write_sidecar(tmp, "stack", {**(meta or {}), "layers": report})
    return report


@contextlib.contextmanager
def _joined_pool() -> Iterator[None]:
    """Dask's threaded computations in the block on a pool of their own, joined when the
    block ends (:func:`~geoensemble.compute.joined_pool`): when one chunk write fails (a
    full disk), dask raises at once while other threads may still be writing chunks;
    joined, none of them recreates the temporary store after
    :func:`~geoensemble.io.atomic.atomic_path` removed it. (A distributed client, if one is
    the default scheduler, ignores the pool.)"""
    import dask

    from geoensemble.compute import joined_pool

    with joined_pool(os.cpu_count() or 1, "geoensemble-write") as pool, dask.config.set(pool=pool):
        yield


def check_names(ds: xr.Dataset, key: str | None = None) -> None:
    """Every variable name can be a Zarr array (a folder) of its own.

    Raises
    ------
    OutputError
        Naming the variable and why (names from files and config are checked earlier, at
        ingest; this is the last guard before a name becomes a path).
    """
    for name in ds.data_vars:
        why = unsafe_name(str(name))
        if why:
            raise OutputError(
                f"cannot write {key or 'the store'}: the layer name {str(name)!r} {why}; "
                f"rename it (layers[].name, or the feature's name)",
                arguments={"layers": "ReadSpec.layers"},
            )


def open_store(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a store written by :func:`write_store`, with its grid restored."""
    p = Path(path)
    if not (p / ".zmetadata").exists():
        raise InputFileError(
            f"{p} is not a finished geoensemble store: run the stage that "
            f"writes it (dvc repro) first"
        )
    try:
        meta = json.loads((p / ".zmetadata").read_text())["metadata"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputFileError(
            f"{p} is a damaged store (unreadable .zmetadata: {exc}): rebuild it with "
            f"dvc repro --force on the stage that writes it"
        ) from None
    # Zarr reads a missing chunk as its fill value (NaN): a deleted array would silently
    # become an all-no-data layer.
    lost = sorted(k.split("/")[0] for k in meta if k.endswith("/.zarray") and not (p / k).exists())
    if lost:
        raise InputFileError(
            f"{p} is a damaged store: array(s) {lost} are listed but missing on disk; "
            f"rebuild it with dvc repro --force on the stage that writes it"
        )
    check_chunks(p)
    ds = xr.open_zarr(p, consolidated=True)
    crs, transform = grid_attrs(ds)
    return set_grid(ds, crs, transform)


def check_chunks(path: str | os.PathLike[str]) -> None:
    """Compare a store's chunk files with the manifest written with it (a listing only).

    Raises
    ------
    InputFileError
        Naming the store, the layer and the stage to re-run. Stores of earlier versions,
        without a manifest, are not checked.
    """
    p = Path(path)
    side = store_meta(p)
    want = side.get("chunks")
    if not isinstance(want, dict):
        return
    have = chunk_manifest(p)
    kind = str(side.get("kind") or "")
    for name, (n, size) in want.items():
        got_n, got_size = have.get(name, [0, 0])
        if (got_n, got_size) != (n, size):
            what = (
                f"{n - got_n} of its {n} chunk files are missing"
                if got_n < n
                else (
                    f"its chunk files hold {got_size} bytes instead of {size}"
                    if got_n == n
                    else f"it has {got_n} chunk files instead of {n}"
                )
            )
            stage = STORE_STAGES.get(kind)
            fix = f"dvc repro --force {stage}" if stage else "re-run the stage that wrote it"
            raise InputFileError(
                f"{p} is a damaged store: layer '{name}' does not match what was written "
                f"({what}); rebuild it: {fix}"
            )


def store_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON sidecar written with a store."""
    f = Path(path) / SIDECAR
    try:
        meta = read_json(f) if f.exists() else {}
    except (OSError, ValueError) as exc:
        raise InputFileError(
            f"{f} is damaged ({exc}): rebuild the store it describes with dvc repro --force "
            f"on the stage that writes it"
        ) from None
    return meta if isinstance(meta, dict) else {}
