"""HDF4 scientific datasets as layers (pyhdf; the rasterio wheels carry no HDF4 driver).

Geolocation comes from GDAL/CF-style global or dataset attributes, else from the HDF-EOS
``StructMetadata.0`` grid description (MODIS tiles), else from the ``crs`` and
``geotransform`` read settings. Scaling follows the HDF4 calibration convention used by MODIS,
``value = scale_factor * (raw - add_offset)``, converted here to ``raw * scale + offset``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geoensemble.errors import InputFileError
from geoensemble.io import georef
from geoensemble.io.arguments import outside
from geoensemble.io.sources import HDF4_LOCK, RasterSource, cf_nodata, meta_strings

HDF4_MAGIC = b"\x0e\x03\x13\x01"


@dataclass(frozen=True, kw_only=True)
class Hdf4Dataset(RasterSource):
    """One 2-D plane of an HDF4 scientific dataset (SDS)."""

    path: str
    dataset: str
    index: int | None = None

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        from pyhdf.error import HDF4Error
        from pyhdf.SD import SD, SDC

        try:
            with HDF4_LOCK:
                sd = SD(self.path, SDC.READ)
                try:
                    sds = sd.select(self.dataset)
                    key = (rows, cols) if self.index is None else (self.index, rows, cols)
                    arr = np.asarray(sds[key])
                    sds.endaccess()
                finally:
                    sd.end()
        except (HDF4Error, OSError, ValueError) as exc:
            raise self._fail(rows, cols, exc) from None
        return arr


def _open(path: str, label: str) -> Any:
    from pyhdf.error import HDF4Error
    from pyhdf.SD import SD, SDC

    try:
        return SD(path, SDC.READ)
    except HDF4Error as exc:
        raise InputFileError(
            f"cannot read {label} as HDF4: {exc}. Check that the file is complete, or set "
            f"format to what the file really is",
            arguments=outside(str(exc), {"format": "ReadSpec.format"}),
        ) from None


def hdf4_candidates(
    path: str, *, label: str, crs: str | None, geotransform: Sequence[float] | None
) -> list[tuple[str, dict[str, str], list[RasterSource]]]:
    """``(dataset name, attributes, one source per plane)`` for every 2-D/3-D numeric SDS."""
    with HDF4_LOCK:
        sd = _open(path, label)
        try:
            file_attrs = sd.attributes()
            out: list[tuple[str, dict[str, str], list[RasterSource]]] = []
            for name, (_dims, shape, _kind, _idx) in sd.datasets().items():
                shape = tuple(int(s) for s in np.atleast_1d(shape))
                if len(shape) not in (2, 3):
                    continue
                sds = sd.select(name)
                attrs = sds.attributes()
                dtype = str(np.asarray(sds[(0,) * len(shape)]).dtype)
                sds.endaccess()
                if np.dtype(dtype).kind not in "iuf":
                    continue
                hw = (shape[-2], shape[-1])
                where = f"{label} dataset {name!r}"
                found = georef.from_attrs(attrs, where=where) or georef.from_attrs(
                    file_attrs, where=label
                )
                if found is None and "StructMetadata.0" in file_attrs:
                    found = georef.from_struct_metadata(
                        str(file_attrs["StructMetadata.0"]), shape=hw, where=where
                    )
                g = georef.resolve(found, shape=hw, crs=crs, geotransform=geotransform, where=where)
                s = float(attrs.get("scale_factor", 1.0))
                o = float(attrs.get("add_offset", 0.0))
                planes = [None] if len(shape) == 2 else list(range(shape[0]))
                sources: list[RasterSource] = [
                    Hdf4Dataset(
                        label=where + ("" if i is None else f" [plane {i + 1}]"),
                        shape=hw,
                        dtype=dtype,
                        crs=g.crs,
                        transform=g.transform,
                        nodata=cf_nodata(attrs),
                        scale=s,
                        offset=-s * o,
                        meta=meta_strings(attrs),
                        path=path,
                        dataset=name,
                        index=i,
                    )
                    for i in planes
                ]
                out.append((name, meta_strings(attrs), sources))
        finally:
            sd.end()
    return out
