"""Geolocation of HDF/NetCDF arrays from their metadata (or from the caller's settings when absent).

Sources, in order: GDAL/CF-style attributes (``crs_wkt``, ``spatial_ref``, ``crs``, ``epsg``
with ``GeoTransform``); the HDF-EOS ``StructMetadata.0`` grid description written by MODIS and
other NASA products (sinusoidal, geographic and UTM grids); finally the ``crs`` and
``geotransform`` the caller gives (:class:`~geoensemble.io.spec.ReadSpec`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError

from geoensemble.errors import InputFileError
from geoensemble.io.arguments import outside

# MODIS land grids: a sphere of radius 6371007.181 m (the "MODIS sinusoidal" projection).
MODIS_SINUSOIDAL = "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs"

_CRS_KEYS = ("crs_wkt", "spatial_ref", "crs", "srs", "projection", "epsg")
_GT_KEYS = ("GeoTransform", "geotransform", "geo_transform", "transform")


@dataclass(frozen=True)
class Georef:
    """A CRS (or none) and an affine transform; ``found`` is false for the identity fallback."""

    crs: CRS | None
    transform: Affine
    found: bool


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.dtype.kind in "SUO" and v.size == 1:
        return _text(v.reshape(-1)[0])
    return str(v)


def _numbers(v: Any) -> list[float]:
    if isinstance(v, str | bytes | np.str_ | np.bytes_):
        return [float(t) for t in re.split(r"[\s,;()\[\]]+", _text(v)) if t]
    return [float(x) for x in np.ravel(v)]


def parse_crs(value: Any, *, where: str, parameter: str | None = None) -> CRS:
    """A CRS from an EPSG code, WKT or PROJ string; errors name ``where`` it came from: a
    file, or the argument that stands for ``parameter`` (``"<function or class>.<name>"``)."""
    text = _text(value).strip()
    if re.fullmatch(r"\d{4,6}", text):
        text = f"EPSG:{text}"
    try:
        return CRS.from_user_input(text)
    except CRSError as exc:
        raise InputFileError(
            f"{where}: cannot understand the CRS {text[:80]!r} ({exc}); give an EPSG code, "
            f"WKT or PROJ string (crs)",
            arguments=outside(
                str(exc), {"crs": "ReadSpec.crs", **({where: parameter} if parameter else {})}
            ),
        ) from None


def from_gdal(gt: Sequence[float]) -> Affine:
    """An affine transform from a GDAL geotransform ``[x0, dx, rx, y0, ry, dy]``."""
    return Affine.from_gdal(*[float(v) for v in gt])


def from_attrs(attrs: Mapping[str, Any], *, where: str) -> Georef | None:
    """Georeferencing from CF/GDAL-style attributes, or None when they hold none."""
    crs = None
    for key in _CRS_KEYS:
        if key in attrs and _text(attrs[key]).strip():
            crs = parse_crs(attrs[key], where=f"{where} attribute {key!r}")
            break
    for key in _GT_KEYS:
        if key in attrs:
            gt = _numbers(attrs[key])
            if len(gt) != 6:
                raise InputFileError(
                    f"{where}: attribute {key!r} holds {len(gt)} numbers, a GDAL "
                    f"geotransform needs 6 (x0, dx, rx, y0, ry, dy)"
                )
            return Georef(crs, from_gdal(gt), True)
    return None


def _dms(v: float) -> float:
    """Degrees from the HDF-EOS packed DDDMMMSSS.SS notation of GCTP_GEO corners."""
    sign = -1.0 if v < 0 else 1.0
    v = abs(v)
    deg = math.floor(v / 1e6)
    minutes = math.floor((v - deg * 1e6) / 1e3)
    seconds = v - deg * 1e6 - minutes * 1e3
    return sign * (deg + minutes / 60 + seconds / 3600)


def _field(block: str, name: str) -> str | None:
    m = re.search(rf"\b{name}=([^\n]+)", block)
    return m.group(1).strip() if m else None


def from_struct_metadata(text: str, *, shape: tuple[int, int], where: str) -> Georef | None:
    """The grid of an HDF-EOS ``StructMetadata.0`` whose size matches ``shape`` (rows, cols)."""
    for block in re.findall(r"GROUP=GRID_\d+(.*?)END_GROUP=GRID_\d+", text, flags=re.S):
        xdim, ydim = _field(block, "XDim"), _field(block, "YDim")
        ul, lr = _field(block, "UpperLeftPointMtrs"), _field(block, "LowerRightMtrs")
        proj = _field(block, "Projection")
        if not (xdim and ydim and ul and lr and proj):
            continue
        if (int(ydim), int(xdim)) != tuple(shape):
            continue
        (x0, y0), (x1, y1) = _numbers(ul)[:2], _numbers(lr)[:2]
        if proj == "GCTP_SNSOID":
            crs = CRS.from_proj4(MODIS_SINUSOIDAL)
        elif proj == "GCTP_GEO":
            crs = CRS.from_epsg(4326)
            x0, y0, x1, y1 = _dms(x0), _dms(y0), _dms(x1), _dms(y1)
        elif proj == "GCTP_UTM":
            zone = int(_field(block, "ZoneCode") or 0)
            if zone == 0:
                raise InputFileError(
                    f"{where}: UTM grid without ZoneCode; set crs",
                    arguments={"crs": "ReadSpec.crs"},
                )
            crs = CRS.from_epsg((32600 if zone > 0 else 32700) + abs(zone))
        else:
            raise InputFileError(
                f"{where}: HDF-EOS projection {proj} is not supported; set crs and "
                f"geotransform explicitly",
                arguments={"crs": "ReadSpec.crs", "geotransform": "ReadSpec.geotransform"},
            )
        w, h = int(xdim), int(ydim)
        return Georef(crs, Affine((x1 - x0) / w, 0, x0, 0, (y1 - y0) / h, y0), True)
    return None


def resolve(
    found: Georef | None,
    *,
    shape: tuple[int, int],
    crs: str | None,
    geotransform: Sequence[float] | None,
    where: str,
) -> Georef:
    """The file's georeferencing, completed from ``crs`` and ``geotransform`` (the
    :class:`~geoensemble.io.spec.ReadSpec` fields)."""
    if found is not None and found.found:
        if found.crs is None and crs:
            return Georef(
                parse_crs(crs, where="crs", parameter="ReadSpec.crs"), found.transform, True
            )
        return found
    if geotransform:
        c = parse_crs(crs, where="crs", parameter="ReadSpec.crs") if crs else None
        return Georef(c, from_gdal(geotransform), True)
    c = parse_crs(crs, where="crs", parameter="ReadSpec.crs") if crs else None
    # No geolocation: pixel coordinates (identity), accepted only if every layer has none.
    return Georef(c, Affine.identity(), False)
