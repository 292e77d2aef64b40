"""Output profile defaults, kept in one documented place.

Classified maps are uint8 with nodata 255 (uint16 with nodata 65535 above 254 classes), tiled
512 x 512 and LZW-compressed by default, which every GIS opens and which costs ~0.2 s per
20 Mpx to write. Float layers (regression) use float32 with NaN as nodata.
"""

from __future__ import annotations

from typing import Any

TILE = 512
#: The default block edge of prediction and of regularising a map (``predict_scene``,
#: ``predict_many``, ``regularise_map``): one tile.
BLOCK_SIZE = TILE
CLASS_NODATA_U8 = 255
CLASS_NODATA_U16 = 65535


def class_dtype(n_classes: int) -> tuple[str, int]:
    """The smallest unsigned dtype that holds ``n_classes`` codes plus a nodata value."""
    if n_classes <= 254:
        return "uint8", CLASS_NODATA_U8
    if n_classes <= 65534:
        return "uint16", CLASS_NODATA_U16
    raise ValueError(f"{n_classes} classes do not fit a uint16 map (at most 65534)")


def geotiff_profile(
    *,
    width: int,
    height: int,
    count: int,
    dtype: str,
    crs: Any,
    transform: Any,
    nodata: float | None,
    compress: str = "lzw",
) -> dict[str, Any]:
    """A tiled, compressed GeoTiff profile; predictor 2 for integers, 3 for floats."""
    prof: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": dtype,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "tiled": width >= TILE or height >= TILE,
        "BIGTIFF": "IF_SAFER",
    }
    if prof["tiled"]:
        prof.update(blockxsize=TILE, blockysize=TILE)
    if compress.lower() != "none":
        prof["compress"] = compress.upper()
        if compress.lower() in {"lzw", "deflate", "zstd"} and dtype != "uint8":
            prof["predictor"] = 3 if dtype.startswith("float") else 2
    return prof


def cog_options(*, compress: str, dtype: str, categorical: bool) -> dict[str, str]:
    """Creation options of a Cloud-Optimized GeoTiff (GDAL's COG driver).

    512-px tiles, overviews down to one tile (nearest-neighbour for class codes so that an
    overview never invents a class, average for continuous layers), the chosen compression
    (LZW default; DEFLATE, ZSTD or NONE), a predictor for non-byte data.
    """
    opts = {
        "BLOCKSIZE": str(TILE),
        "COMPRESS": compress.upper(),
        "OVERVIEWS": "AUTO",
        "OVERVIEW_RESAMPLING": "NEAREST" if categorical else "AVERAGE",
        "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": "ALL_CPUS",
    }
    if compress.lower() != "none" and dtype != "uint8":
        opts["PREDICTOR"] = "YES"
    return opts
