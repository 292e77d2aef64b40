"""One output map: windows written as blocks finish, then a Cloud-Optimized GeoTiff.

Blocks go to an uncompressed, tiled scratch GeoTiff beside the target (a hidden
``.name.partial-xxxx`` file), which is converted to a COG (compression and, unless
``overviews=False``, nearest-neighbour overviews) under another temporary name and moved into
place only when complete. A decimated copy of band 1 (every n-th pixel, as the quicklook
shows it) is kept from the blocks as they are written, so the quicklook never re-reads the
map. The colour table, class names
and provenance tags travel with it; class maps also get an ``.aux.xml`` with GDAL category
names and a ``.qml`` QGIS style, so they open labelled and coloured.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from geoensemble.io.atomic import atomic_path, tmp_name
from geoensemble.io.geotiff import to_cog, write_category_names, write_qml, write_ramp_qml
from geoensemble.io.owned import refuse_unless_ours_tif
from geoensemble.io.profiles import TILE, geotiff_profile
from geoensemble.predict.blocks import Block

# GDAL's block cache: small and fixed, so writing does not grow with the scene.
# 64 MB: the dirty tiles of every map being written and the tiles being read share it
GDAL_ENV = {"GDAL_CACHEMAX": 64, "GDAL_NUM_THREADS": "ALL_CPUS"}


def thin_into(thumb: np.ndarray, step: int, block: Block, arr: np.ndarray) -> None:
    """Put the pixels of the whole map's ``[::step, ::step]`` that fall in ``block`` (whose
    values are ``arr``) into ``thumb``, so a thumbnail builds up as the blocks arrive."""
    r0, c0 = -block.row % step, -block.col % step
    part = arr[r0::step, c0::step]
    r, c = (block.row + r0) // step, (block.col + c0) // step
    thumb[r : r + part.shape[0], c : c + part.shape[1]] = part


class MapWriter:
    """Write one map window by window; :meth:`finish` makes it a COG in place.

    Parameters
    ----------
    target
        Final path of the map.
    count, dtype, nodata
        Bands, data type and no-data value.
    classes
        ``{code: (name, rgb)}`` for class maps: colour table, names and QGIS style.
    scales
        Per-band scale (e.g. 0.01 for percent layers, so GDAL reads fractions).
    overviews
        Build the COG's overviews (False: none, a smaller and faster write).
    thumbnail_step
        Keep every ``thumbnail_step``-th pixel of band 1 in :attr:`thumbnail` (0: none).
    """

    def __init__(
        self,
        target: Path,
        *,
        width: int,
        height: int,
        count: int,
        dtype: str,
        nodata: float,
        crs: Any,
        transform: Any,
        compress: str,
        tags: Mapping[str, str],
        classes: Mapping[int, tuple[str, tuple[int, int, int]]] | None = None,
        band_names: Sequence[str] | None = None,
        scales: Sequence[float] | None = None,
        overviews: bool = True,
        thumbnail_step: int = 0,
        ramp: tuple[float, float] | None = None,
    ) -> None:
        self.target = Path(target)
        self.ramp = ramp  # a continuous map's QGIS colour ramp (scaled values)
        self.compress = compress
        self.overviews = overviews
        self.nodata = nodata
        self.step = 0
        self.thumbnail: np.ndarray | None = None
        self.classes = classes
        self.categorical = classes is not None
        self.scratch = tmp_name(self.target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        prof = geotiff_profile(
            width=width,
            height=height,
            count=count,
            dtype=dtype,
            crs=crs,
            transform=transform,
            nodata=nodata,
            compress="none",
        )
        prof.update(tiled=True, blockxsize=TILE, blockysize=TILE, BIGTIFF="IF_SAFER")
        self.dst = rasterio.open(self.scratch, "w", **prof)
        if classes and dtype == "uint8":
            # Before any pixel is written, or GDAL refuses.
            self.dst.write_colormap(1, {c: rgb for c, (_, rgb) in classes.items()})
        all_tags = dict(tags)
        if classes:
            all_tags["class_names"] = json.dumps({str(c): n for c, (n, _) in classes.items()})
        self.dst.update_tags(**all_tags)
        if band_names:
            for i, name in enumerate(band_names, start=1):
                self.dst.set_band_description(i, name)
        if scales:
            self.dst.scales = tuple(scales)
        if thumbnail_step:  # needs self.dst
            self.keep_thumbnail(thumbnail_step)
        # a byte class map's counts per value, all pixels (no-data too, for the valid share):
        # its exact statistics are written with it (see write_category_names)
        self.histogram = np.zeros(256, np.int64) if classes and dtype == "uint8" else None

    def add_tags(self, tags: Mapping[str, str]) -> None:
        """More provenance tags, known only once the blocks are written (before :meth:`finish`)."""
        self.dst.update_tags(**{k: str(v) for k, v in tags.items()})

    def keep_thumbnail(self, step: int) -> None:
        """From now on keep every ``step``-th pixel of band 1 in :attr:`thumbnail`."""
        self.step = step
        self.thumbnail = np.full(
            (-(-self.dst.height // step), -(-self.dst.width // step)),
            self.nodata,
            dtype=self.dst.dtypes[0],
        )

    def write(self, block: Block, arr: np.ndarray) -> None:
        """Write a ``(rows, cols)`` or ``(bands, rows, cols)`` array at ``block``."""
        win = Window(block.col, block.row, block.width, block.height)
        if arr.ndim == 2:
            self.dst.write(arr, 1, window=win)
        else:
            self.dst.write(arr, window=win)
        if self.thumbnail is not None:
            thin_into(self.thumbnail, self.step, block, arr if arr.ndim == 2 else arr[0])
        if self.histogram is not None:
            band = arr if arr.ndim == 2 else arr[0]
            self.histogram += np.bincount(band.ravel(), minlength=256)[:256]

    def finish(self) -> Path:
        """Convert to a COG under a temporary name, move it into place, add the sidecars."""
        self.dst.close()
        try:
            with atomic_path(self.target, replace_if=refuse_unless_ours_tif()) as tmp:
                to_cog(
                    self.scratch,
                    tmp,
                    compress=self.compress,
                    categorical=self.categorical,
                    overviews=self.overviews,
                )
                # Sidecars first: a map in place always has its own class names beside it,
                # never an older run's, even if the process dies right after the move.
                if self.classes:
                    names = {c: n for c, (n, _) in self.classes.items()}
                    nodata = int(self.nodata) if self.nodata is not None else None
                    write_category_names(self.target, names, self.histogram, nodata)
                    write_qml(self.target, self.classes)
                elif self.ramp is not None:
                    write_ramp_qml(self.target, minimum=self.ramp[0], maximum=self.ramp[1])
        finally:
            self.scratch.unlink(missing_ok=True)
        return self.target

    def abort(self) -> None:
        """Drop the scratch file (after an error)."""
        if not self.dst.closed:
            self.dst.close()
        self.scratch.unlink(missing_ok=True)
