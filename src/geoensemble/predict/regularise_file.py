"""Regularise a class-map GeoTiff block by block, equal to processing the whole scene at once.

Each block is read with a halo and only its core is written:

- the **majority filter** of radius ``r`` is local: a halo of ``r`` pixels is exact;
- the **sieve** is not local (a patch or a group of specks can span many blocks), so the
  halo adapts: :func:`~geoensemble.predict.regularise.sieve_window` says which pixels of the
  window are provably the same as whole-scene sieving (patches with ``min_pixels`` pixels in
  the window are large in the scene too, and groups of small patches that do not reach the
  window's cut sides evolve alone). While a core pixel is not, the halo doubles, up to the
  whole scene. Memory is bounded by the largest window needed, which grows with the largest
  connected group of small patches, not with the scene; a window above ``max_window_pixels``
  is refused with a one-line error rather than exhausting memory.

The output is written with the predict stage's :class:`~geoensemble.predict.writer.MapWriter`
(a scratch file, then a Cloud-Optimized GeoTiff moved into place) and keeps the input's CRS,
transform, no-data, colour table, class names and tags, plus ``geoensemble_regularisation``
(what was applied); the speckle figures before and after are returned.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from geoensemble.errors import ConfigError, GeoEnsembleError, InputFileError, OutputError
from geoensemble.predict.blocks import Block, blocks
from geoensemble.predict.regularise import (
    Speckle,
    check_settings,
    describe,
    hectares_to_pixels,
    label_patches,
    majority_filter,
    sieve_window,
)
from geoensemble.predict.writer import GDAL_ENV, MapWriter

TAG = "geoensemble_regularisation"
BLOCK_SIZE = 1024
# the largest window (block plus halos) the sieve may hold: 16.7 Mpx (a 4096-px square); the
# sieve peaks at ~60 bytes a pixel on a map of specks (measured), so ~1 GB
MAX_WINDOW_PIXELS = 1 << 24


@dataclass(frozen=True)
class Regularised:
    """What :func:`regularise_file` wrote.

    Attributes
    ----------
    path
        The regularised map.
    applied
        The steps, as tagged (``majority(radius=1);sieve(min_pixels=5,connectivity=4)``).
    before, after
        The speckle figures of the input and of the output.
    halo
        The widest sieve halo a block needed (0 without the sieve).
    seconds
        Wall time, figures included.
    min_pixels
        The sieve's mapping unit in pixels (converted from hectares if given so).
    """

    path: Path
    applied: str
    before: Speckle
    after: Speckle
    halo: int
    seconds: float
    min_pixels: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "applied": self.applied,
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "halo": self.halo,
            "min_pixels": self.min_pixels,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class _Span:
    """Rows ``r0:r1`` and columns ``c0:c1`` of the scene."""

    r0: int
    r1: int
    c0: int
    c1: int

    @classmethod
    def around(cls, b: Block, pad: int, height: int, width: int) -> _Span:
        """``b`` grown by ``pad`` pixels on every side, clipped to the scene."""
        return cls(
            max(0, b.row - pad),
            min(height, b.row + b.height + pad),
            max(0, b.col - pad),
            min(width, b.col + b.width + pad),
        )

    def holds(self, other: _Span) -> bool:
        """Whether ``other`` lies within this span."""
        return (
            self.r0 <= other.r0
            and other.r1 <= self.r1
            and self.c0 <= other.c0
            and other.c1 <= self.c1
        )

    def inside(self, outer: _Span) -> tuple[slice, slice]:
        """This span's slices within an array covering ``outer``."""
        return (
            slice(self.r0 - outer.r0, self.r1 - outer.r0),
            slice(self.c0 - outer.c0, self.c1 - outer.c0),
        )

    def cut(self, height: int, width: int) -> tuple[bool, bool, bool, bool]:
        """Which sides (top, bottom, left, right) the scene continues beyond."""
        return (self.r0 > 0, self.r1 < height, self.c0 > 0, self.c1 < width)

    @property
    def pixels(self) -> int:
        return (self.r1 - self.r0) * (self.c1 - self.c0)

    def read(self, src: Any) -> np.ndarray:
        return np.asarray(src.read(1, window=Window(self.c0, self.r0, *self.size)))

    @property
    def size(self) -> tuple[int, int]:
        return self.c1 - self.c0, self.r1 - self.r0


@dataclass(frozen=True)
class Settings:
    """The regularisation of one map (validated by :func:`check_settings`)."""

    radius: int | None = None
    min_pixels: int | None = None
    connectivity: int = 4
    halo: int = 32
    max_window_pixels: int = MAX_WINDOW_PIXELS

    def __post_init__(self) -> None:
        check_settings(
            radius=self.radius, min_pixels=self.min_pixels, connectivity=self.connectivity
        )
        for key in ("halo", "max_window_pixels"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key}={value!r} is not a whole number >= 1: use 1 or more")


class BlockRegulariser:
    """The regularised pixels of any block of an open class map, exactly as whole-scene
    processing gives them.

    The last sieve window is kept with the mask of its exact pixels: a block inside it (the
    next block, once a noisy area forced a wide halo) is cut from it instead of recomputed.
    """

    def __init__(self, src: Any, settings: Settings) -> None:
        self.src = src
        self.s = settings
        self.nodata = _nodata(src)
        self.widest = 0  # the widest sieve halo a block needed
        self._last: tuple[_Span, np.ndarray, np.ndarray] | None = None

    def __call__(self, b: Block) -> np.ndarray:
        """Block ``b`` regularised.

        Raises
        ------
        ConfigError
            When the sieve would need a window above ``max_window_pixels``.
        """
        height, width = self.src.height, self.src.width
        own = _Span.around(b, 0, height, width)
        if not self.s.min_pixels:
            return self._filtered(own)
        if self._last is not None and self._last[0].holds(own):
            span, out, exact = self._last
            if exact[own.inside(span)].all():
                return out[own.inside(span)]
        halo = self.s.halo
        while True:
            inner = _Span.around(b, halo, height, width)
            self._check_size(b, halo, _Span.around(b, halo + (self.s.radius or 0), height, width))
            out, exact = sieve_window(
                self._filtered(inner),
                min_pixels=self.s.min_pixels,
                connectivity=self.s.connectivity,
                nodata=self.nodata,
                cut=inner.cut(height, width),
            )
            self._last = (inner, out, exact)
            core = own.inside(inner)
            if exact[core].all():
                self.widest = max(self.widest, halo)
                return out[core]
            halo = min(2 * halo, max(height, width))

    def _filtered(self, inner: _Span) -> np.ndarray:
        """The pixels of ``inner`` after the majority filter (read with its radius around)."""
        r = self.s.radius or 0
        src = self.src
        outer = _Span(
            max(0, inner.r0 - r),
            min(src.height, inner.r1 + r),
            max(0, inner.c0 - r),
            min(src.width, inner.c1 + r),
        )
        a = outer.read(src)
        if r:
            a = majority_filter(a, radius=r, nodata=self.nodata)
        return a[inner.inside(outer)]

    def _check_size(self, b: Block, halo: int, window: _Span) -> None:
        if window.pixels > self.s.max_window_pixels:
            raise ConfigError(
                f"the sieve needs a window of {window.pixels} pixels (halo {halo}) around block "
                f"{b.row},{b.col}, above max_window_pixels={self.s.max_window_pixels}: raise "
                f"max_window_pixels, lower block_size, or apply the majority filter first (a "
                f"vast area of specks widens the halo)"
            )


def _block_speckle(
    a: np.ndarray,
    core: tuple[slice, slice],
    cut: tuple[bool, bool, bool, bool],
    *,
    min_pixels: int,
    connectivity: int,
    nodata: int | None,
) -> Speckle:
    """The speckle figures of the ``core`` of a window ``a`` whose halo is at least
    ``max(1, min_pixels)``: a small patch is counted in the block holding its first pixel
    (row-major), and a small patch there cannot reach the window's cut sides."""
    valid = np.ones(a.shape, bool) if nodata is None else a != nodata
    off = (majority_filter(a, radius=1, nodata=nodata) != a) & valid
    labels, sizes = label_patches(a, valid, connectivity)
    ids, first = np.unique(labels.ravel(), return_index=True)
    rows, cols = np.divmod(first, a.shape[1])
    in_core = (rows >= core[0].start) & (rows < core[0].stop)
    in_core &= (cols >= core[1].start) & (cols < core[1].stop)
    top, bottom, left, right = cut
    sides = [labels[0] if top else None, labels[-1] if bottom else None]
    sides += [labels[:, 0] if left else None, labels[:, -1] if right else None]
    touching = np.unique(np.concatenate([x for x in sides if x is not None] or [[0]]))
    small = (ids > 0) & (sizes[ids] < min_pixels) & in_core & ~np.isin(ids, touching)
    return Speckle(
        int(valid[core].sum()),
        int(off[core].sum()),
        int(small.sum()),
        min_pixels,
        connectivity,
    )


def speckle_of(
    src: Any, *, min_pixels: int = 5, connectivity: int = 4, block_size: int = BLOCK_SIZE
) -> Speckle:
    """The speckle figures (:func:`~geoensemble.predict.regularise.speckle`) of band 1 of an
    open class map, block by block with a halo of ``max(1, min_pixels)``: equal to the
    whole map's."""
    check_settings(min_pixels=min_pixels, connectivity=connectivity)
    halo = max(1, min_pixels)
    nodata = _nodata(src)
    total = Speckle(0, 0, 0, min_pixels, connectivity)
    for b in blocks(src.height, src.width, block_size):
        window = _Span.around(b, halo, src.height, src.width)
        total += _block_speckle(
            window.read(src),
            _Span.around(b, 0, src.height, src.width).inside(window),
            window.cut(src.height, src.width),
            min_pixels=min_pixels,
            connectivity=connectivity,
            nodata=nodata,
        )
    return total


def speckle_file(
    path: str | os.PathLike[str],
    *,
    min_pixels: int = 5,
    connectivity: int = 4,
    block_size: int = BLOCK_SIZE,
) -> Speckle:
    """:func:`speckle_of` the class-map GeoTiff at ``path``."""
    with rasterio.Env(**GDAL_ENV), _open_map(path) as src:
        return speckle_of(
            src, min_pixels=min_pixels, connectivity=connectivity, block_size=block_size
        )


# the mapping unit's arguments, as regularise_file's messages name them (see geoensemble.errors)
UNIT = {"min_pixels": "regularise_file.min_pixels", "min_hectares": "regularise_file.min_hectares"}


def _pixels_of(min_hectares: float, src: Any) -> int:
    """``min_hectares`` in pixels of the map ``src``; its errors say what they name."""
    try:
        return hectares_to_pixels(
            min_hectares, crs=src.crs, transform=src.transform, key="min_hectares"
        )
    except GeoEnsembleError as exc:
        for name, parameter in UNIT.items():
            exc.arguments.setdefault(name, parameter)
        raise


def regularise_file(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    radius: int | None = None,
    min_pixels: int | None = None,
    min_hectares: float | None = None,
    connectivity: int = 4,
    block_size: int = BLOCK_SIZE,
    halo: int = 32,
    max_window_pixels: int = MAX_WINDOW_PIXELS,
    compress: str = "lzw",
    overviews: bool = True,
) -> Regularised:
    """Regularise a class-map GeoTiff block by block: the majority filter of ``radius`` (if
    given), then the sieve (if ``min_pixels`` or ``min_hectares``), equal to
    :func:`~geoensemble.predict.regularise.regularise` of the whole map.

    Parameters
    ----------
    path, out
        The class map (single band, uint8 or uint16, its no-data value as the file's) and the
        Cloud-Optimized GeoTiff to write (replaced only if geoensemble wrote it).
    radius, connectivity
        The majority filter's radius; the sieve's connectivity (4 or 8).
    min_pixels, min_hectares
        The sieve's mapping unit, in pixels or in hectares (at most one; hectares need a
        projected CRS, see :func:`~geoensemble.predict.regularise.hectares_to_pixels`).
    block_size
        Block edge in pixels (the core of each window read).
    halo, max_window_pixels
        The sieve's first halo (doubled for a block while not enough), and the largest
        window (block plus halos) it may read.
    compress, overviews
        The COG's compression and overviews.

    Returns
    -------
    Regularised
        The map, what was applied (also its ``geoensemble_regularisation`` tag), the speckle
        figures before and after (with the mapping unit, else 5 px, and ``connectivity``).
    """
    t0 = time.perf_counter()
    check_settings(radius=radius, min_pixels=min_pixels, connectivity=connectivity)
    if min_pixels is not None and min_hectares is not None:
        raise ConfigError(
            f"min_pixels={min_pixels} and min_hectares={min_hectares} are both set: give the "
            f"mapping unit once, in pixels or in hectares",
            arguments=UNIT,
        )
    if not radius and min_pixels is None and min_hectares is None:
        raise ConfigError(
            "nothing to apply: set radius and/or min_pixels (or min_hectares)",
            arguments={"radius": "regularise_file.radius", **UNIT},
        )
    target = _target(path, out)
    with rasterio.Env(**GDAL_ENV), _open_map(path) as src:
        if min_hectares is not None:
            min_pixels = _pixels_of(min_hectares, src)
        s = Settings(radius, min_pixels, connectivity, halo, max_window_pixels)
        unit = min_pixels or 5
        before = speckle_of(src, min_pixels=unit, connectivity=connectivity, block_size=block_size)
        written, widest = _write_blocks(src, target, s, block_size, compress, overviews)
    after = speckle_file(written, min_pixels=unit, connectivity=connectivity, block_size=block_size)
    applied = describe(radius, min_pixels, connectivity)
    return Regularised(
        written, applied, before, after, widest, time.perf_counter() - t0, min_pixels
    )


def _write_blocks(
    src: Any, target: Path, s: Settings, block_size: int, compress: str, overviews: bool
) -> tuple[Path, int]:
    """Every block of ``src`` regularised into the COG at ``target``; the map and the widest
    sieve halo a block needed."""
    writer = _writer(src, target, s, compress=compress, overviews=overviews)
    try:
        regularised = BlockRegulariser(src, s)
        for b in blocks(src.height, src.width, block_size):
            writer.write(b, regularised(b))
        return writer.finish(), regularised.widest
    except BaseException:
        writer.abort()
        raise


def _target(path: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """``out`` as a path, refused early when it is the input or a file geoensemble did not
    write (so that no work is lost)."""
    from geoensemble.io.owned import tif_refusal

    target = Path(os.fspath(out))
    if target.resolve() == Path(os.fspath(path)).resolve():
        raise ConfigError(f"out={target} is the input map: write the result to another path")
    if target.exists() or target.is_symlink():
        why = tif_refusal(target)
        if why:
            raise OutputError(
                f"refusing to replace out={target}: {why}; choose another output path or "
                f"move it away"
            )
    return target


def _writer(src: Any, target: Path, s: Settings, *, compress: str, overviews: bool) -> MapWriter:
    """The writer of the regularised map: the input's grid, no-data, tags, colour table and
    class names, plus the tag saying what was applied."""
    from geoensemble.classes import palette

    names, cmap = read_legend(src)
    nodata = _nodata(src)
    classes = None
    if names:
        codes = sorted(c for c in names if c != nodata)
        spare = dict(zip(codes, palette(len(codes)), strict=True))
        classes = {c: (names[c], _rgb(cmap, c) or spare[c]) for c in codes}
    tags = dict(src.tags())
    applied = describe(s.radius, s.min_pixels, s.connectivity)
    earlier = tags.get(TAG)
    tags[TAG] = f"{earlier};{applied}" if earlier and earlier != "none" else applied
    tags.setdefault("geoensemble_output", "map")
    description = src.descriptions[0]
    writer = MapWriter(
        target,
        width=src.width,
        height=src.height,
        count=1,
        dtype=src.dtypes[0],
        nodata=src.nodata,
        crs=src.crs,
        transform=src.transform,
        compress=compress,
        tags=tags,
        classes=classes,
        band_names=[description] if description else None,
        overviews=overviews,
    )
    if cmap:
        writer.dst.write_colormap(1, cmap)  # the whole table, before any pixel
    writer.categorical = True  # class codes: nearest-neighbour overviews
    return writer


def _rgb(cmap: dict[int, tuple[int, ...]] | None, code: int) -> tuple[int, int, int] | None:
    if not cmap or code not in cmap:
        return None
    r, g, b = cmap[code][:3]
    return int(r), int(g), int(b)


def _open_map(path: str | os.PathLike[str], key: str = "path") -> Any:
    """The class map at ``path`` opened with rasterio, or a one-line error."""
    p = Path(os.fspath(path))
    if not p.is_file():
        raise InputFileError(f"{key}={p} does not exist: pass the path of a class-map GeoTiff")
    try:
        src = rasterio.open(p)
    except rasterio.errors.RasterioIOError as exc:
        raise InputFileError(f"{key}={p} cannot be read as a raster: {exc}") from None
    if src.count != 1 or src.dtypes[0] not in ("uint8", "uint16"):
        bands, dtype = src.count, src.dtypes[0]
        src.close()
        raise ConfigError(
            f"{key}={p} has {bands} band(s) of {dtype}: pass a single-band class map of "
            f"uint8 (or uint16) codes"
        )
    return src


def _nodata(src: Any) -> int | None:
    return None if src.nodata is None else int(src.nodata)


def read_legend(
    src: Any,
) -> tuple[dict[int, str] | None, dict[int, tuple[int, ...]] | None]:
    """The class names (the ``class_names`` tag, else GDAL category names in the
    ``.aux.xml``) and the colour table of an open class map; ``None`` where it has none."""
    names: dict[int, str] | None = None
    raw = src.tags().get("class_names")
    if raw:
        try:
            names = {int(k): str(v) for k, v in json.loads(raw).items()}
        except (ValueError, AttributeError):
            names = None
    if names is None:
        names = _category_names(Path(src.name))
    try:
        cmap: dict[int, tuple[int, ...]] | None = dict(src.colormap(1))
    except ValueError:  # no colour table
        cmap = None
    return names, cmap


def _category_names(path: Path) -> dict[int, str] | None:
    """GDAL category names of band 1 from ``path.aux.xml`` (empty entries left out)."""
    import xml.etree.ElementTree as ET

    aux = Path(f"{path}.aux.xml")
    if not aux.is_file():
        return None
    try:
        root = ET.parse(aux).getroot()
    except ET.ParseError:
        return None
    for band in root.iter("PAMRasterBand"):
        if band.get("band", "1") == "1":
            cats = band.find("CategoryNames")
            if cats is not None:
                out = {i: (c.text or "") for i, c in enumerate(cats.iter("Category"))}
                return {i: n for i, n in out.items() if n} or None
    return None
