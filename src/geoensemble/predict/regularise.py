"""Map regularisation on arrays: a majority (mode) filter and a minimum mapping unit (sieve).

Like Orfeo ToolBox's ClassificationMapRegularization (majority voting) and ``gdal_sieve``
(minimum mapping unit), on a 2-D integer class map (uint8 with no-data 255, or uint16):

- :func:`majority_filter`: each valid pixel takes the most frequent class among the valid
  pixels of its ``(2r+1) x (2r+1)`` window. **Ties** keep the centre's class when it is among
  the tied classes, else the smallest tied class code. No-data pixels are never counted and
  stay no-data; a valid pixel never becomes no-data.
- :func:`sieve`: patches (connected pixels of one class, 4- or 8-connected) smaller than
  ``min_pixels`` take the class they share the most border with, see :func:`sieve` for the
  exact, deterministic rule; no-data is never filled.
- :func:`speckle`: the figures logged before and after (share of valid pixels off their 3x3
  majority, number of patches below the mapping unit).

Everything is vectorised (box sums of per-class planes, ``scipy.ndimage.label``, flat index
arithmetic); :mod:`geoensemble.predict.regularise_file` applies the same functions blockwise to
a GeoTiff, with halos that make the result equal whole-scene processing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from geoensemble.errors import ConfigError

# the settings' check and description live where the command line can read them cheaply
from geoensemble.regularisation import check_settings as check_settings
from geoensemble.regularisation import describe as describe

CLASS_NODATA = 255
SQUARE_METRES_PER_HECTARE = 10_000.0
# the key of the per-patch class tables: patch id * CODES + class code (codes < 65536)
CODES = 1 << 16
# (top, bottom, left, right): which sides of a window are cut out of a larger scene
Cut = tuple[bool, bool, bool, bool]
WHOLE: Cut = (False, False, False, False)


def _check_map(classes: Any) -> np.ndarray:
    """``classes`` as a 2-D integer numpy array (refused otherwise)."""
    a = np.asarray(classes)
    if a.ndim != 2 or a.dtype.kind not in "iu" or a.dtype.itemsize > 2:
        raise ConfigError(
            f"classes is a {a.ndim}-D {a.dtype} array: pass a 2-D class map of uint8 (or "
            f"uint16) codes"
        )
    return a


def _valid(a: np.ndarray, nodata: int | None) -> np.ndarray:
    return np.ones(a.shape, bool) if nodata is None else a != nodata


# -- majority filter --------------------------------------------------------------------------


def window_sum(plane: np.ndarray, radius: int) -> np.ndarray:
    """The sum of ``plane`` (0/1) over the ``(2r+1)`` square window of every pixel, zero
    outside the array: two running sums (cumulative sums and differences, one per axis).

    Unsigned arithmetic wraps modulo 2**bits, so the differences are exact as long as a
    window's sum fits: uint16 up to radius 127, uint32 beyond.
    """
    w = 2 * radius + 1
    dtype = np.uint16 if w * w < 1 << 16 else np.uint32
    out = plane
    for axis in (0, 1):
        n = out.shape[axis]
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius + 1, radius)
        cs = np.cumsum(np.pad(out, pad), axis=axis, dtype=dtype)
        if axis == 0:
            out = np.subtract(cs[w : w + n], cs[:n])
        else:
            out = np.subtract(cs[:, w : w + n], cs[:, :n])
    return out


def majority_filter(
    classes: np.ndarray, *, radius: int = 1, nodata: int | None = CLASS_NODATA
) -> np.ndarray:
    """A majority (mode) filter of a class map.

    Parameters
    ----------
    classes
        2-D uint8 (or uint16) class codes.
    radius
        Window half-size: the window is ``(2 * radius + 1)`` pixels square.
    nodata
        The no-data code (``None``: every pixel is valid).

    Returns
    -------
    numpy.ndarray
        A new map of the same dtype: each valid pixel holds the most frequent class among the
        valid pixels of its window (pixels outside the map are not counted). Ties keep the
        centre's class when it is among the tied classes, else the smallest tied class code.
        No-data pixels stay no-data and are never counted: no-data never spreads, and a
        valid pixel never becomes no-data.
    """
    a = _check_map(classes)
    check_settings(radius=radius)
    valid = _valid(a, nodata)
    best = np.zeros(a.shape, np.uint32)  # the highest count so far
    best_code = np.zeros_like(a)
    centre = np.zeros(a.shape, np.uint32)  # the count of the centre's own class
    for code in np.unique(a[valid]):  # ascending: on a tie the smaller code stays
        is_code = a == code
        count = window_sum(is_code.view(np.uint8), radius)
        more = count > best
        np.copyto(best, count, where=more)
        np.copyto(best_code, code, where=more)
        np.copyto(centre, count, where=is_code)
    out = np.where(centre == best, a, best_code)
    out[~valid] = a[~valid]
    return out


# -- sieve ------------------------------------------------------------------------------------


def structure(connectivity: int) -> np.ndarray:
    """The ``scipy.ndimage.label`` structure of 4- (edges) or 8-connectivity (and corners)."""
    return ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)


def label_patches(
    a: np.ndarray, valid: np.ndarray, connectivity: int
) -> tuple[np.ndarray, np.ndarray]:
    """Patches: connected pixels of one class. Returns the int32 labels (0 on no-data; the
    patches of each class numbered after those of the smaller codes) and their sizes
    (``sizes[label]``, ``sizes[0] == 0``)."""
    labels = np.zeros(a.shape, np.int32)
    offset = 0
    s = structure(connectivity)
    for code in np.unique(a[valid]):
        lab, n = ndimage.label(a == code, structure=s)
        hit = lab > 0
        labels[hit] = lab[hit] + offset
        offset += n
    sizes = np.bincount(labels.ravel(), minlength=offset + 1)
    sizes[0] = 0
    return labels, sizes


def _offsets(connectivity: int, row: int) -> list[int]:
    """Flat offsets of the neighbours of a pixel in an array ``row`` pixels wide."""
    edges = [-1, 1, -row, row]
    return edges if connectivity == 4 else [*edges, -row - 1, -row + 1, row - 1, row + 1]


def _winners(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From ``id * CODES + code`` keys (one per shared edge or per pixel): for every id the
    code with the most keys, ties to the smaller code. Returns ``(ids, codes)``."""
    if not keys.size:
        return keys, keys
    uk, count = np.unique(keys, return_counts=True)
    ids, codes = uk // CODES, uk % CODES
    order = np.lexsort((codes, -count, ids))  # by id, then count down, then code up
    first = order[np.r_[True, ids[order][1:] != ids[order][:-1]]]
    return ids[first], codes[first]


@dataclass
class _Flat:
    """A window padded by one pixel and flattened, so neighbours are index offsets."""

    cur: np.ndarray  # class codes (changed as patches merge)
    large: np.ndarray  # bool: in a patch of at least min_pixels (never changes again)
    patch: np.ndarray  # int32 patch labels of the original map (0 outside)
    offsets: list[int]

    @classmethod
    def of(cls, a: np.ndarray, large: np.ndarray, labels: np.ndarray, connectivity: int) -> _Flat:
        return cls(
            np.pad(a, 1).ravel(),
            np.pad(large, 1).ravel(),
            np.pad(labels, 1).ravel(),
            _offsets(connectivity, a.shape[1] + 2),
        )


def _merge_round(f: _Flat, rem: np.ndarray) -> np.ndarray:
    """One round of merging into large patches; returns the pixels still small.

    Every remaining small patch that shares border with large patches takes the class it
    shares the most border with (shared edges summed per class, ties to the smaller code),
    all at once; it is then part of a large patch. A small patch of that same class touching
    it joins too (one patch now), keeping its class.
    """
    patch = f.patch[rem].astype(np.int64)
    keys = []
    for o in f.offsets:
        nb = rem + o
        hit = f.large[nb]
        keys.append(patch[hit] * CODES + f.cur[nb[hit]])
    ids, codes = _winners(np.concatenate(keys))
    if not ids.size:
        return rem
    lut = np.full(int(patch.max()) + 1, -1, np.int64)
    lut[ids] = codes
    new = lut[patch]
    changed = new >= 0
    f.cur[rem[changed]] = new[changed]
    f.large[rem[changed]] = True
    rest, rest_patch = rem[~changed], patch[~changed]
    joined = np.zeros(lut.size, bool)
    for o in f.offsets:
        nb = rest + o
        fresh = f.large[nb] & (f.cur[nb] == f.cur[rest])  # only merged pixels can match
        joined[rest_patch[fresh]] = True
    join = joined[rest_patch]
    f.large[rest[join]] = True
    return rest[~join]


def _islands(f: _Flat, rem: np.ndarray, clusters: np.ndarray) -> None:
    """Groups of small patches that touch no large patch (only no-data, the map's edge and
    each other) each become one patch of their most frequent class (ties: smaller code)."""
    cid = np.pad(clusters, 1).ravel()[rem].astype(np.int64)
    ids, codes = _winners(cid * CODES + f.cur[rem])
    lut = np.zeros(int(cid.max()) + 1, np.int64)
    lut[ids] = codes
    f.cur[rem] = lut[cid]


def _touching(clusters: np.ndarray, cut: Cut) -> np.ndarray:
    """The cluster ids (> 0) with a pixel on a cut side of the window."""
    top, bottom, left, right = cut
    edges = [
        clusters[0] if top else None,
        clusters[-1] if bottom else None,
        clusters[:, 0] if left else None,
        clusters[:, -1] if right else None,
    ]
    ids = np.unique(np.concatenate([e for e in edges if e is not None] or [np.zeros(0, int)]))
    return ids[ids > 0]


def sieve_window(
    classes: np.ndarray,
    *,
    min_pixels: int,
    connectivity: int = 4,
    nodata: int | None = CLASS_NODATA,
    cut: Cut = WHOLE,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sieve` on a window of a larger map, with where its result is exact.

    ``cut`` says which sides (top, bottom, left, right) continue beyond the window. A patch
    with at least ``min_pixels`` pixels in the window is large in the whole map too, and
    large patches never change. The small patches form *clusters* (connected groups of pixels
    not in a large patch) that evolve independently, each from its own pixels and the large
    patches around it; a cluster that reaches a cut side may continue outside (or hold a
    patch that is large there), so only its pixels are uncertain.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The sieved window and a bool mask of the pixels whose value equals whole-map
        sieving (all True when nothing is cut).
    """
    a = _check_map(classes)
    check_settings(min_pixels=min_pixels, connectivity=connectivity)
    valid = _valid(a, nodata)
    labels, sizes = label_patches(a, valid, connectivity)
    large = (sizes >= min_pixels)[labels] & valid
    small = valid & ~large
    if not small.any():
        return a.copy(), np.ones(a.shape, bool)
    clusters, _ = ndimage.label(small, structure=structure(connectivity))
    frozen = np.isin(clusters, _touching(clusters, cut)) if any(cut) else np.zeros(a.shape, bool)
    f = _Flat.of(a, large, labels, connectivity)
    rem = np.flatnonzero(np.pad(small & ~frozen, 1))
    while rem.size:
        left = _merge_round(f, rem)
        if left.size == rem.size:
            break
        rem = left
    if rem.size:
        _islands(f, rem, clusters)
    out = f.cur.reshape(a.shape[0] + 2, a.shape[1] + 2)[1:-1, 1:-1]
    return out.copy(), ~frozen


def sieve(
    classes: np.ndarray,
    *,
    min_pixels: int,
    connectivity: int = 4,
    nodata: int | None = CLASS_NODATA,
) -> np.ndarray:
    """A minimum mapping unit: patches smaller than ``min_pixels`` merge into their neighbours.

    A patch is a set of connected pixels of one class (``connectivity`` 4: through edges; 8:
    edges and corners). The rule, deterministic and independent of scan order:

    1. Patches of at least ``min_pixels`` pixels are *large* and never change.
    2. In rounds, every small patch that touches a large patch (a neighbour under
       ``connectivity``) takes the class it shares the most border with among the large
       patches it touches. Border is counted in neighbouring pixel pairs and summed per
       class (a class split into two patches around the speck still surrounds it); ties go
       to the smaller class code. All such patches change at once, and each then belongs to
       a large patch, as does a small patch of that class touching it. Small patches
       touching only other small patches (or no-data) wait for a later round, so a group of
       specks is eaten from the outside in, like ``gdal_sieve``'s repeated passes.
    3. A group of small patches touching nothing but no-data, the map's edge and each other
       (an island) becomes one patch of its most frequent class (ties: smaller code), even if
       it stays below ``min_pixels``: there is nothing else it could join.

    No-data pixels are never filled and never counted.

    Parameters
    ----------
    classes
        2-D uint8 (or uint16) class codes.
    min_pixels
        The smallest patch kept; a patch of exactly ``min_pixels`` pixels stays.
    connectivity
        4 or 8.
    nodata
        The no-data code (``None``: every pixel is valid).

    Returns
    -------
    numpy.ndarray
        A new map of the same dtype.
    """
    out, _ = sieve_window(classes, min_pixels=min_pixels, connectivity=connectivity, nodata=nodata)
    return out


def regularise(
    classes: np.ndarray,
    *,
    radius: int | None = None,
    min_pixels: int | None = None,
    connectivity: int = 4,
    nodata: int | None = CLASS_NODATA,
) -> np.ndarray:
    """The whole map at once: :func:`majority_filter` (if ``radius``), then :func:`sieve` (if
    ``min_pixels``). The blockwise :func:`~geoensemble.predict.regularise_file.regularise_file`
    gives the same result in bounded memory."""
    check_settings(radius=radius, min_pixels=min_pixels, connectivity=connectivity)
    out = _check_map(classes).copy()
    if radius:
        out = majority_filter(out, radius=radius, nodata=nodata)
    if min_pixels:
        out = sieve(out, min_pixels=min_pixels, connectivity=connectivity, nodata=nodata)
    return out


# -- figures and units ------------------------------------------------------------------------


@dataclass(frozen=True)
class Speckle:
    """How speckled a class map is (logged before and after regularisation).

    Attributes
    ----------
    valid_pixels
        Pixels that are not no-data.
    off_majority
        Valid pixels whose class differs from their 3x3 majority (:func:`majority_filter`).
    small_patches
        Patches smaller than ``min_pixels`` (``connectivity``-connected).
    """

    valid_pixels: int
    off_majority: int
    small_patches: int
    min_pixels: int
    connectivity: int

    @property
    def share(self) -> float:
        """The share of valid pixels off their 3x3 majority (0 for an empty map)."""
        return self.off_majority / self.valid_pixels if self.valid_pixels else 0.0

    def __add__(self, other: Speckle) -> Speckle:
        """The figures of two disjoint parts of one map (blockwise counting)."""
        return Speckle(
            self.valid_pixels + other.valid_pixels,
            self.off_majority + other.off_majority,
            self.small_patches + other.small_patches,
            self.min_pixels,
            self.connectivity,
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "share": round(self.share, 6)}

    def __str__(self) -> str:
        return (
            f"{100 * self.share:.2f}% of {self.valid_pixels} valid pixels off their 3x3 "
            f"majority, {self.small_patches} patches < {self.min_pixels} px"
        )


def speckle(
    classes: np.ndarray,
    *,
    nodata: int | None = CLASS_NODATA,
    min_pixels: int = 5,
    connectivity: int = 4,
) -> Speckle:
    """The speckle figures of a whole class map (see :class:`Speckle`)."""
    a = _check_map(classes)
    check_settings(min_pixels=min_pixels, connectivity=connectivity)
    valid = _valid(a, nodata)
    off = int(np.count_nonzero((majority_filter(a, radius=1, nodata=nodata) != a) & valid))
    _, sizes = label_patches(a, valid, connectivity)
    small = int(np.count_nonzero(sizes[1:] < min_pixels))
    return Speckle(int(valid.sum()), off, small, min_pixels, connectivity)


def hectares_to_pixels(hectares: float, *, crs: Any, transform: Any, key: str = "hectares") -> int:
    """The mapping unit in pixels: the fewest whole pixels covering ``hectares``
    (1 ha = 10,000 m²), so a patch of at least that area stays.

    Parameters
    ----------
    hectares
        The minimum mapping unit (> 0).
    crs, transform
        The map's CRS (projected, in metres or other linear units) and affine transform.
    key
        The argument named in the errors.

    Raises
    ------
    ConfigError
        For a non-positive area, a map without a CRS or in a geographic CRS (degrees).
    """
    from rasterio.crs import CRS

    if isinstance(hectares, bool) or not isinstance(hectares, int | float) or not hectares > 0:
        raise ConfigError(f"{key}={hectares!r} is not an area > 0 in hectares: use e.g. 0.5")
    if crs is None:
        raise ConfigError(f"{key} needs a map with a CRS: give min_pixels instead")
    crs = CRS.from_user_input(crs)
    if crs.is_geographic or not crs.is_projected:
        raise ConfigError(
            f"{key} needs a projected CRS but the map is in {crs.to_string()} (degrees): "
            f"reproject the map (e.g. to its UTM zone) or give min_pixels instead"
        )
    _, metres = crs.linear_units_factor
    area = abs(transform.a * transform.e - transform.b * transform.d) * metres * metres
    pixels = hectares * SQUARE_METRES_PER_HECTARE / area
    return max(1, math.ceil(pixels - 1e-9))
