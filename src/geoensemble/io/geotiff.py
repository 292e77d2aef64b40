"""GeoTiff writing (whole arrays and windowed, always through a temporary name)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS

from geoensemble.io.atomic import Replaceable, atomic_path
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
    replace_if: Replaceable | None = None,
) -> Path:
    """Write a 2-D (or band-first 3-D) array as a tiled, compressed GeoTiff, atomically.

    ``replace_if`` says why an existing file at ``path`` must not be replaced (see
    :func:`~geoensemble.io.atomic.atomic_path`).
    """
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
    with atomic_path(target, overwrite=overwrite, replace_if=replace_if) as tmp:
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


def check_band_fits(
    path: str | os.PathLike[str], *, key: str = "", copies: int = 3, src: Any = None
) -> None:
    """Refuse a raster that is not a GeoTiff, or whose band, as ``copies`` int64-sized
    arrays (what a caller makes of it), does not fit in the free memory.

    ``key`` is what the caller calls ``path`` (its argument name, say), for the error.
    """
    from geoensemble.io.memory import ensure_fits
    from geoensemble.io.sources import check_geotiff

    if src is None:
        with rasterio.open(path) as opened:
            check_band_fits(path, key=key, copies=copies, src=opened)
        return
    check_geotiff(src, where=str(path))
    ensure_fits(
        src.width * src.height * 8 * copies,
        what=f"{key or 'the raster'}={path} ({src.width} x {src.height} pixels)",
        fix=f"crop or resample it to the features' grid, or set {key}=null"
        if key
        else "crop or resample it",
    )


def read_band(
    path: str | os.PathLike[str], band: int = 1, *, key: str = "", copies: int = 3
) -> tuple[np.ndarray, CRS | None, Any, float | None]:
    """A whole band with its CRS, transform and nodata (for small rasters such as truth),
    after :func:`check_band_fits`."""
    from geoensemble.errors import InputFileError

    try:
        with rasterio.open(path) as src:
            check_band_fits(path, key=key, copies=copies, src=src)
            return src.read(band), src.crs, src.transform, src.nodata
    except rasterio.errors.RasterioIOError as exc:
        raise InputFileError(f"cannot read {path}: {exc}") from None


def read_tags(path: str | os.PathLike[str]) -> dict[str, str]:
    """The dataset-level metadata tags of a raster."""
    with rasterio.open(path) as src:
        return dict(src.tags())


def to_cog(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    compress: str = "lzw",
    categorical: bool = True,
    overviews: bool = True,
) -> Path:
    """Copy a finished GeoTiff to a Cloud-Optimized GeoTiff (tiles, overviews, compression).

    The colour table, nodata, band descriptions, scales and metadata tags are carried over.
    ``overviews=False`` writes none (still a valid COG: tiled, header first).
    """
    import rasterio.shutil

    from geoensemble.io.profiles import cog_options

    with rasterio.open(src) as s:
        dtype = s.dtypes[0]
    opts = cog_options(compress=compress, dtype=dtype, categorical=categorical)
    if not overviews:
        opts["OVERVIEWS"] = "NONE"
    rasterio.shutil.copy(str(src), str(dst), driver="COG", **opts)
    return Path(dst)


def write_category_names(
    path: str | os.PathLike[str],
    names: Mapping[int, str],
    histogram: np.ndarray | None = None,
    nodata: int | None = None,
) -> Path:
    """Class names as GDAL category names in the map's ``.aux.xml`` (read by GDAL and QGIS).

    With ``histogram`` (counts of band 1's values 0..255, no-data left out), the exact
    statistics and histogram go in too, as GDAL writes them: ``gdalinfo -stats``, QGIS and
    rasterio's ``stats()`` then find them and write nothing beside the map, so a map under
    DVC stays unchanged when it is looked at.
    """
    from xml.sax.saxutils import escape

    target = Path(f"{path}.aux.xml")
    table = [""] * (max(names) + 1 if names else 0)
    for code, name in names.items():
        table[code] = name
    cats = "\n".join(f"      <Category>{escape(n)}</Category>" for n in table)
    stats = _pam_statistics(histogram, nodata) if histogram is not None else ""
    xml = (
        '<PAMDataset>\n  <PAMRasterBand band="1">\n    <CategoryNames>\n'
        f"{cats}\n    </CategoryNames>\n{stats}  </PAMRasterBand>\n</PAMDataset>\n"
    )
    with atomic_path(target) as tmp:
        tmp.write_text(xml, encoding="utf-8")
    return target


def _pam_statistics(histogram: np.ndarray, nodata: int | None) -> str:
    """GDAL's ``<Histograms>`` and ``STATISTICS_*`` items for a byte band's exact counts."""
    counts = np.asarray(histogram, dtype=np.int64)[:256].copy()
    if nodata is not None and 0 <= nodata < counts.size:
        counts[nodata] = 0
    total = int(counts.sum())
    if not total:
        return ""
    values = np.arange(counts.size, dtype=np.float64)
    mean = float((values * counts).sum() / total)
    std = float(np.sqrt((counts * (values - mean) ** 2).sum() / total))
    present = np.nonzero(counts)[0]
    valid = 100 * total / max(1, int(np.asarray(histogram, dtype=np.int64).sum()))
    mdi = {
        "STATISTICS_MAXIMUM": float(present.max()),
        "STATISTICS_MEAN": mean,
        "STATISTICS_MINIMUM": float(present.min()),
        "STATISTICS_STDDEV": std,
        "STATISTICS_VALID_PERCENT": valid,
    }
    items = "\n".join(f'      <MDI key="{k}">{v!r}</MDI>' for k, v in mdi.items())
    return (
        "    <Histograms>\n      <HistItem>\n        <HistMin>-0.5</HistMin>\n"
        "        <HistMax>255.5</HistMax>\n        <BucketCount>256</BucketCount>\n"
        "        <IncludeOutOfRange>0</IncludeOutOfRange>\n        <Approximate>0</Approximate>\n"
        f"        <HistCounts>{'|'.join(str(int(c)) for c in counts)}</HistCounts>\n"
        f"      </HistItem>\n    </Histograms>\n    <Metadata>\n{items}\n    </Metadata>\n"
    )


def write_qml(
    path: str | os.PathLike[str],
    entries: Mapping[int, tuple[str, tuple[int, int, int]]],
) -> Path:
    """A QGIS style beside the map (``map.qml``): QGIS applies it when the map is opened,
    as a paletted renderer with one labelled colour per class."""
    from xml.sax.saxutils import quoteattr

    target = Path(path).with_suffix(".qml")
    rows = "\n".join(
        f'        <paletteEntry value="{code}" color="#{r:02x}{g:02x}{b:02x}" alpha="255" '
        f"label={quoteattr(name)}/>"
        for code, (name, (r, g, b)) in sorted(entries.items())
    )
    xml = (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.28" styleCategories="Symbology">\n  <pipe>\n'
        '    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1">\n'
        "      <rasterTransparency/>\n      <colorPalette>\n"
        f"{rows}\n      </colorPalette>\n    </rasterrenderer>\n  </pipe>\n</qgis>\n"
    )
    with atomic_path(target) as tmp:
        tmp.write_text(xml, encoding="utf-8")
    return target


# matplotlib's magma at 0, 1/4, 1/2, 3/4 and 1: the quicklooks' colour map for percent layers
MAGMA = ("#000004", "#51127c", "#b73779", "#fc8961", "#fcfdbf")


def write_ramp_qml(path: str | os.PathLike[str], *, minimum: float, maximum: float) -> Path:
    """A QGIS style beside a continuous map (``map.qml``): a magma colour ramp from
    ``minimum`` to ``maximum`` (in the band's scaled values, which QGIS shows), labelled in
    percent of the range, so an agreement map opens on the same scale as its quicklook."""
    target = Path(path).with_suffix(".qml")
    n = len(MAGMA) - 1
    items = "\n".join(
        f'          <item alpha="255" value="{minimum + (maximum - minimum) * i / n:.6g}" '
        f'label="{100 * i // n} %" color="{colour}"/>'
        for i, colour in enumerate(MAGMA)
    )
    xml = (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.28" styleCategories="Symbology">\n  <pipe>\n'
        '    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="1" '
        f'alphaBand="-1" classificationMin="{minimum:.6g}" classificationMax="{maximum:.6g}">\n'
        "      <rasterTransparency/>\n      <minMaxOrigin><limits>None</limits>"
        "<extent>WholeRaster</extent></minMaxOrigin>\n      <rastershader>\n"
        '        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0" '
        f'minimumValue="{minimum:.6g}" maximumValue="{maximum:.6g}">\n'
        f"{items}\n        </colorrampshader>\n      </rastershader>\n"
        "    </rasterrenderer>\n  </pipe>\n</qgis>\n"
    )
    with atomic_path(target) as tmp:
        tmp.write_text(xml, encoding="utf-8")
    return target


def read_thumbnail(
    path: str | os.PathLike[str], *, max_px: int = 1024, band: int = 1
) -> tuple[np.ndarray, float | None]:
    """A band decimated so its longer side is at most ``max_px`` (read from the overviews,
    so memory does not depend on the map size), with its nodata value."""
    from rasterio.enums import Resampling

    with rasterio.open(path) as src:
        step = max(1, int(np.ceil(max(src.height, src.width) / max_px)))
        shape = (max(1, src.height // step), max(1, src.width // step))
        arr = src.read(band, out_shape=shape, resampling=Resampling.nearest)
        return arr, src.nodata
