"""HDF5 datasets as layers (h5py), located from attributes, HDF-EOS5 metadata or the read settings.

Every numeric dataset of two or three dimensions is a candidate layer, matched by its full
path (``/group/reflectance``); a three-dimensional dataset is read as ``(band, y, x)`` and the
spec's ``band`` picks the plane. h5py serialises calls into libhdf5 itself, so reads are safe
from several threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geoensemble.errors import InputFileError
from geoensemble.io import georef
from geoensemble.io.arguments import outside
from geoensemble.io.sources import RasterSource, cf_nodata, meta_strings

STRUCT_METADATA = "HDFEOS INFORMATION/StructMetadata.0"


@dataclass(frozen=True, kw_only=True)
class Hdf5Dataset(RasterSource):
    """One 2-D plane of an HDF5 dataset."""

    path: str
    dataset: str
    index: int | None = None  # the plane of a 3-D dataset

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        import h5py

        try:
            with h5py.File(self.path, "r") as f:
                ds = f[self.dataset]
                key = (rows, cols) if self.index is None else (self.index, rows, cols)
                return np.asarray(ds[key])
        except (OSError, KeyError, ValueError) as exc:
            raise self._fail(rows, cols, exc) from None


def _open(path: str, label: str) -> Any:
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(
            f"cannot read {label} as HDF5: {exc}. Check that the file is complete, or set "
            f"format to what the file really is",
            arguments=outside(str(exc), {"format": "ReadSpec.format"}),
        ) from None


def _georef(f: Any, ds: Any, shape: tuple[int, int], where: str) -> georef.Georef | None:
    # The dataset's own attributes first, then its parent groups up to the root.
    obj = ds
    while True:
        found = georef.from_attrs(dict(obj.attrs), where=where)
        if found is not None:
            return found
        if obj.name == "/":
            break
        obj = obj.parent
    if STRUCT_METADATA in f:
        raw = f[STRUCT_METADATA][()]
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return georef.from_struct_metadata(text, shape=shape, where=where)
    return None


def hdf5_candidates(
    path: str, *, label: str, crs: str | None, geotransform: Sequence[float] | None
) -> list[tuple[str, dict[str, str], list[RasterSource]]]:
    """``(dataset path, attributes, one source per plane)`` for every raster-like dataset."""
    import h5py

    found: list[tuple[str, Any]] = []
    with _open(path, label) as f:

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and obj.ndim in (2, 3) and obj.dtype.kind in "iuf":
                found.append((name, obj))

        f.visititems(visit)
        out: list[tuple[str, dict[str, str], list[RasterSource]]] = []
        for name, ds in found:
            shape = (int(ds.shape[-2]), int(ds.shape[-1]))
            where = f"{label} dataset /{name}"
            g = georef.resolve(
                _georef(f, ds, shape, where),
                shape=shape,
                crs=crs,
                geotransform=geotransform,
                where=where,
            )
            attrs = dict(ds.attrs)
            planes = [None] if ds.ndim == 2 else list(range(int(ds.shape[0])))
            sources: list[RasterSource] = [
                Hdf5Dataset(
                    label=where + ("" if i is None else f" [plane {i + 1}]"),
                    shape=shape,
                    dtype=str(ds.dtype),
                    crs=g.crs,
                    transform=g.transform,
                    nodata=cf_nodata(attrs),
                    scale=float(np.ravel(attrs.get("scale_factor", 1.0))[0]),
                    offset=float(np.ravel(attrs.get("add_offset", 0.0))[0]),
                    meta=meta_strings(attrs),
                    path=path,
                    dataset="/" + name,
                    index=i,
                )
                for i in planes
            ]
            out.append(("/" + name, meta_strings(attrs), sources))
    return out
