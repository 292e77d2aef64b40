"""Training labels on the features' grid, from a label raster or a vector file.

Vector files (GeoPackage, Shapefile, GeoJSON... anything OGR reads, through pyogrio) hold
points or polygons with a class attribute; they are reprojected to the grid's CRS, points are
optionally buffered, and everything is rasterized (later features win where they overlap).
Class names are mapped to integer codes, either from a code attribute or by sorting the names;
the mapping is stored beside the label raster as ``classes.json``. A label raster is taken as
is when it is on the grid and resampled by nearest neighbour when it is not; its codes are
named from its class table (:func:`raster_class_names`: ``CLASS_<code>`` tags, or GDAL
category names or a raster attribute table in its ``.aux.xml``) when it has one.

Class labels are stored as uint8 with 255 = unlabelled; values (regression targets) as float32
with NaN = unlabelled.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from geoensemble.errors import (
    ConfigError,
    EmptyLayerError,
    GridMismatchError,
    InputFileError,
    OutputError,
)
from geoensemble.io.arguments import outside
from geoensemble.io.atomic import atomic_path, write_json
from geoensemble.io.geotiff import write_geotiff
from geoensemble.io.grid import Grid
from geoensemble.io.limits import read_json
from geoensemble.io.owned import OUTPUT_TAG, refuse_unless_ours_tif

NODATA = 255
RASTER_SUFFIXES = {".tif", ".tiff", ".vrt", ".img", ".nc", ".jp2"}
LABELS_FILE = "labels.tif"
CLASSES_FILE = "classes.json"


@dataclass
class Labels:
    """Labels on a grid: codes (uint8, 255 = none) or values (float32, NaN = none)."""

    array: np.ndarray
    target: str = "classes"
    classes: dict[int, str] = field(default_factory=dict)
    source: str = ""
    outside: int = 0  # features or labelled pixels that fell off the grid

    @property
    def mask(self) -> np.ndarray:
        """Where a pixel is labelled."""
        if self.target == "value":
            return np.isfinite(self.array)
        return self.array != NODATA

    def counts(self) -> dict[str, int]:
        """Labelled pixels per class name (or the total for values)."""
        if self.target == "value":
            return {"labelled": int(self.mask.sum())}
        codes, n = np.unique(self.array[self.mask], return_counts=True)
        return {
            self.classes.get(int(c), str(int(c))): int(k) for c, k in zip(codes, n, strict=True)
        }


def read_labels(
    path: str | os.PathLike[str],
    grid: Grid,
    *,
    attribute: str = "class_name",
    code_attribute: str | None = None,
    target: str = "classes",
    layer: str | None = None,
    buffer: float = 0.0,
    all_touched: bool = False,
) -> Labels:
    """Labels from ``path`` (raster or vector) on ``grid``.

    Parameters
    ----------
    path
        A label raster or a vector file.
    grid
        The features' grid.
    attribute
        Vector attribute holding the class name (or the value when ``target="value"``).
    code_attribute
        Vector attribute holding integer class codes; without it codes are the sorted
        class names' positions (or the attribute's own values when it is an integer).
    target
        ``classes`` or ``value``.
    layer
        Layer of a multi-layer vector file.
    buffer
        Distance in map units drawn around points (and polygons).
    all_touched
        Rasterize every pixel a geometry touches, not only those whose centre it covers.

    Raises
    ------
    InputFileError
        The file is missing or unreadable.
    ConfigError
        The attribute is missing, codes are inconsistent, or there are too many classes.
    EmptyLayerError
        No label falls on the grid.
    """
    p = Path(path)
    _check_source(p, target)
    if p.suffix.lower() in RASTER_SUFFIXES:
        labels = _from_raster(p, grid, target)
    else:
        labels = _from_vector(
            p,
            grid,
            attribute=attribute,
            code_attribute=code_attribute,
            target=target,
            layer=layer,
            buffer=buffer,
            all_touched=all_touched,
        )
    _check_on_grid(labels, p, grid)
    return labels


def _check_source(p: Path, target: str) -> None:
    """Raise unless the label file exists and ``target`` is known."""
    if not p.exists():
        raise InputFileError(
            f"label file {p} does not exist: set path to a label raster or a vector file "
            f"(GeoPackage, Shapefile, GeoJSON)",
            arguments={"path": "read_labels.path"},
        )
    if target not in {"classes", "value"}:
        raise ConfigError(
            f"target={target!r} is unknown: use classes or value",
            arguments={"target": "read_labels.target"},
        )


def _check_on_grid(labels: Labels, p: Path, grid: Grid) -> None:
    """Raise an EmptyLayerError when no label of ``p`` falls on the grid."""
    if not labels.mask.any():
        raise EmptyLayerError(
            f"no label of {p} falls on the features' grid (CRS {grid.crs}): check the "
            f"file's CRS and extent against the scene"
        )


def _from_raster(p: Path, grid: Grid, target: str) -> Labels:
    from rasterio.warp import Resampling, reproject

    try:
        with rasterio.open(p) as src:
            arr, nodata, tags = src.read(1), src.nodata, src.tags()
            same = (src.crs == grid.crs or grid.crs is None) and (
                src.transform == grid.transform and src.shape == grid.shape
            )
            if not same:
                if src.crs is None or grid.crs is None:
                    raise GridMismatchError(
                        f"label raster {p} is not on the features' grid and one of them has "
                        f"no CRS: resample it onto the scene's grid first"
                    )
                out = np.full(grid.shape, np.nan, dtype=np.float64)
                reproject(
                    arr.astype(np.float64),
                    out,
                    src_transform=src.transform,
                    src_crs=src.crs,
                    src_nodata=nodata,
                    dst_transform=grid.transform,
                    dst_crs=grid.crs,
                    dst_nodata=np.nan,
                    resampling=Resampling.nearest,
                )
                arr, nodata = out, np.nan
    except rasterio.errors.RasterioIOError as exc:
        raise InputFileError(f"cannot read label raster {p}: {exc}") from None
    values = arr.astype(np.float64)
    unlabelled = ~np.isfinite(values)
    if nodata is not None and np.isfinite(nodata):
        unlabelled |= values == nodata
    if target == "value":
        return Labels(np.where(unlabelled, np.nan, values).astype(np.float32), "value", {}, str(p))
    codes = np.unique(values[~unlabelled]).astype(np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= NODATA):
        raise ConfigError(
            f"label raster {p} holds codes {int(codes.min())}..{int(codes.max())}: class codes "
            f"must be 0..254 (set its nodata value, or use target=value)",
            arguments={"target": "read_labels.target"},
        )
    table = raster_class_names(p, tags)
    names = {int(c): table.get(int(c), f"class_{int(c)}") for c in codes}
    out8 = np.where(unlabelled, NODATA, values).astype(np.uint8)
    return Labels(out8, "classes", names, str(p))


# Columns of a GDAL raster attribute table that hold class names / codes (case-insensitive).
RAT_NAME_COLUMNS = ("class_name", "classname", "class", "name", "label", "land_cover")
RAT_CODE_COLUMNS = ("value", "code", "class_code", "id")


def raster_class_names(
    path: str | os.PathLike[str], tags: dict[str, str] | None = None
) -> dict[int, str]:
    """The class table of a categorical raster: code -> name.

    Read from, in this order: ``CLASS_<code>`` metadata tags (what geoensemble writes), the
    GDAL category names of band 1 in the ``.aux.xml`` sidecar (what GDAL, QGIS and ArcGIS
    write for GeoTiffs), and a raster attribute table in that sidecar (a name column such as
    ``class_name`` or ``name``, codes from a ``value`` column or the row number). Empty
    category names are skipped. Returns ``{}`` when the raster has no class table.
    """
    if tags is None:
        with rasterio.open(path) as src:
            tags = dict(src.tags())
    names = {int(k[6:]): v for k, v in tags.items() if k.startswith("CLASS_") and k[6:].isdigit()}
    if names:
        return names
    aux = Path(f"{path}.aux.xml")
    if not aux.is_file():
        return {}
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(aux).getroot()
    except (ET.ParseError, OSError):
        return {}
    band = root.find("PAMRasterBand[@band='1']")
    if band is None:
        band = root.find("PAMRasterBand")
    if band is None:
        return {}
    cats = band.find("CategoryNames")
    if cats is not None:
        names = {i: (c.text or "").strip() for i, c in enumerate(cats.findall("Category"))}
        names = {i: n for i, n in names.items() if n}
        if names:
            return names
    rat = band.find("GDALRasterAttributeTable")
    if rat is None:
        return {}
    cols = [(f.findtext("Name") or "").strip().lower() for f in rat.findall("FieldDefn")]
    name_col = next((cols.index(c) for c in RAT_NAME_COLUMNS if c in cols), None)
    code_col = next((cols.index(c) for c in RAT_CODE_COLUMNS if c in cols), None)
    if name_col is None:
        return {}
    out: dict[int, str] = {}
    for i, row in enumerate(rat.findall("Row")):
        fields = [(f.text or "").strip() for f in row.findall("F")]
        try:
            raw = fields[code_col] if code_col is not None else row.get("index", str(i))
            code = int(float(raw))
        except (ValueError, IndexError):
            continue
        if name_col < len(fields) and fields[name_col]:
            out[code] = fields[name_col]
    return out


def _from_vector(
    p: Path,
    grid: Grid,
    *,
    attribute: str,
    code_attribute: str | None,
    target: str,
    layer: str | None,
    buffer: float,
    all_touched: bool,
) -> Labels:
    """Labels rasterized from the vector file ``p`` onto ``grid``."""
    from rasterio.features import rasterize

    gdf = _read_vector(p, layer, attribute, code_attribute, grid)
    geoms = gdf.geometry.buffer(buffer) if buffer > 0 else gdf.geometry
    shape = grid.shape
    if target == "value":
        try:
            vals = gdf[attribute].astype(np.float64).to_numpy()
        except (TypeError, ValueError):
            raise ConfigError(
                f"attribute={attribute!r} of {p} is not numeric: target=value needs numbers",
                arguments={"attribute": "read_labels.attribute", "target": "read_labels.target"},
            ) from None
        arr = rasterize(
            zip(geoms, vals, strict=True),
            out_shape=shape,
            transform=grid.transform,
            fill=np.nan,
            dtype="float32",
            all_touched=all_touched,
        )
        inside = _inside(geoms, grid)
        return Labels(arr, "value", {}, str(p), int((~inside).sum()))
    codes, classes = _class_codes(gdf, attribute, code_attribute, p)
    arr = rasterize(
        zip(geoms, codes, strict=True),
        out_shape=shape,
        transform=grid.transform,
        fill=NODATA,
        dtype="uint8",
        all_touched=all_touched,
    )
    inside = _inside(geoms, grid)
    return Labels(arr, "classes", classes, str(p), int((~inside).sum()))


def _read_vector(
    p: Path, layer: str | None, attribute: str, code_attribute: str | None, grid: Grid
) -> Any:
    """The labelled features of ``p`` (those with a geometry and ``attribute``) in the
    grid's CRS."""
    import geopandas as gpd

    try:
        gdf = gpd.read_file(p, layer=layer, engine="pyogrio")
    except Exception as exc:  # pyogrio raises its own DataSourceError/DataLayerError
        why = str(exc).splitlines()[0]
        raise InputFileError(
            f"cannot read label file {p}"
            + (f" ({layer=!r})" if layer else "")
            + f": {why}. Check the file and layer",
            arguments=outside(why, {"layer": "read_labels.layer"}),
        ) from None
    for name, col in (("attribute", attribute), ("code_attribute", code_attribute)):
        if col is not None and col not in gdf.columns:
            raise ConfigError(
                f"{name}={col!r} is not a field of {p}: it has "
                f"{[c for c in gdf.columns if c != 'geometry']}",
                arguments={
                    "attribute": "read_labels.attribute",
                    "code_attribute": "read_labels.code_attribute",
                },
            )
    # a feature without a value is unlabelled: null, or a blank string (a validation sample
    # whose reference column is filled as the analyst goes)
    value = gdf[attribute]
    blank = value.map(lambda v: isinstance(v, str) and not v.strip()).astype(bool)
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty & value.notna() & ~blank]
    if gdf.crs is not None and grid.crs is not None:
        gdf = gdf.to_crs(grid.crs)
    elif gdf.crs is None and grid.crs is not None:
        raise GridMismatchError(
            f"label file {p} has no CRS while the scene is in {grid.crs.to_string()}: "
            f"assign the CRS to the file (e.g. ogr2ogr -a_srs)"
        )
    return gdf


def _inside(geoms: Any, grid: Grid) -> np.ndarray:
    from shapely.geometry import box

    rows, cols = grid.shape
    left, top = grid.transform @ (0, 0)
    right, bottom = grid.transform @ (cols, rows)
    frame = box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    return np.asarray(geoms.intersects(frame), dtype=bool)


def _class_codes(
    gdf: Any, attribute: str, code_attribute: str | None, p: Path
) -> tuple[np.ndarray, dict[int, str]]:
    import pandas as pd

    names = gdf[attribute]
    if code_attribute is not None:
        codes = gdf[code_attribute].to_numpy()
        pairs = {(int(c), str(n)) for c, n in zip(codes, names, strict=True)}
        by_code: dict[int, str] = {}
        for c, n in sorted(pairs):
            if c in by_code:
                raise ConfigError(
                    f"{p}: code {c} of code_attribute={code_attribute!r} has "
                    f"more than one {attribute!r} ({by_code[c]!r}, {n!r}): fix the file",
                    arguments={"code_attribute": "read_labels.code_attribute"},
                )
            by_code[c] = n
        classes = by_code
        out = codes.astype(np.int64)
    elif pd.api.types.is_integer_dtype(names.dtype):
        out = names.to_numpy().astype(np.int64)
        classes = {int(c): f"class_{int(c)}" for c in np.unique(out)}
    else:
        uniq = sorted({str(n) for n in names})
        index = {n: i for i, n in enumerate(uniq)}
        out = np.array([index[str(n)] for n in names], dtype=np.int64)
        classes = dict(enumerate(uniq))
    if out.size and (out.min() < 0 or out.max() >= NODATA):
        raise ConfigError(
            f"{p}: class codes must be 0..254, found {int(out.min())}..{int(out.max())}: "
            f"recode the classes or drop code_attribute",
            arguments={"code_attribute": "read_labels.code_attribute"},
        )
    return out, classes


def write_labels(labels: Labels, folder: str | os.PathLike[str], grid: Grid) -> dict[str, Path]:
    """``labels.tif`` (on ``grid``) and ``classes.json`` (the code-to-name mapping) in folder."""
    from geoensemble.classes import class_colours

    out = Path(folder)
    colormap = None
    if labels.target == "classes" and labels.classes:
        # Each class in its name's colour, as on the maps (geoensemble.classes).
        codes = sorted(labels.classes)
        colours = class_colours([labels.classes[c] for c in codes])
        colormap = dict(zip(codes, colours, strict=True))
    tif = write_geotiff(
        out / LABELS_FILE,
        labels.array,
        crs=grid.crs,
        transform=grid.transform,
        nodata=np.nan if labels.target == "value" else NODATA,
        tags={OUTPUT_TAG: "labels", **{f"CLASS_{k}": v for k, v in labels.classes.items()}},
        colormap=colormap,
        replace_if=replaceable_labels,
    )
    meta = {
        "source": labels.source,
        "target": labels.target,
        "classes": {str(k): v for k, v in sorted(labels.classes.items())},
        "counts": labels.counts(),
        "labelled_pixels": int(labels.mask.sum()),
        "outside_grid": labels.outside,
    }
    js = write_json(out / CLASSES_FILE, meta)
    return {"labels": tif, "classes": js}


def write_no_labels(folder: str | os.PathLike[str]) -> Path:
    """``classes.json`` saying there are no labels (unsupervised runs)."""
    js = Path(folder) / CLASSES_FILE
    with atomic_path(js) as tmp:
        tmp.write_text(json.dumps({"target": None, "classes": {}, "labelled_pixels": 0}) + "\n")
    tif = Path(folder) / LABELS_FILE
    if tif.exists() and replaceable_labels(tif) is None:  # an earlier run's, not the user's
        tif.unlink()
    return js


def _earlier_labels(tif: Path) -> bool:
    """A class ``labels.tif`` of a geoensemble version before the output tag: its class
    tags are the classes of the ``classes.json`` beside it."""
    try:
        meta = json.loads((tif.parent / CLASSES_FILE).read_text())
        with rasterio.open(tif) as src:
            tags = src.tags()
    except (OSError, ValueError, rasterio.errors.RasterioError):
        return False
    classes = meta.get("classes") if isinstance(meta, dict) else None
    if not classes or not isinstance(classes, dict):
        return False
    return {k[6:]: v for k, v in tags.items() if k.startswith("CLASS_")} == classes


replaceable_labels = refuse_unless_ours_tif(_earlier_labels)


def check_labels_target(folder: str | os.PathLike[str]) -> None:
    """Fail before any work if ``labels.tif`` in ``folder`` exists and is not ours.

    Raises
    ------
    OutputError
        Naming ``folder``, the file and the fix.
    """
    tif = Path(folder) / LABELS_FILE
    if tif.exists() or tif.is_symlink():
        why = replaceable_labels(tif)
        if why:
            raise OutputError(
                f"refusing to replace {tif} (folder={folder}): {why}; set folder to a new "
                f"path, or move that file away",
                arguments=outside(why, {"folder": "check_labels_target.folder"}),
            )


def load_labels(folder: str | os.PathLike[str]) -> Labels | None:
    """Labels written by :func:`write_labels`, or ``None`` when the run has none."""
    f = Path(folder)
    js = f / CLASSES_FILE
    if not js.exists():
        raise InputFileError(f"{js} does not exist: run the labels stage (dvc repro labels) first")
    meta = read_json(js)
    if not meta.get("target"):
        return None
    with rasterio.open(f / LABELS_FILE) as src:
        arr = src.read(1)
    return Labels(
        arr,
        meta["target"],
        {int(k): v for k, v in meta["classes"].items()},
        meta.get("source", ""),
        int(meta.get("outside_grid", 0)),
    )
