"""``regularise_map``: a classified map's majority filter and minimum mapping unit (sieve)."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from geoensemble.errors import ConfigError
from geoensemble.io.profiles import BLOCK_SIZE

if TYPE_CHECKING:
    from geoensemble.predict.regularise_file import Regularised

log = logging.getLogger("geoensemble")
COMPRESSIONS = ("lzw", "deflate", "zstd", "none")


def regularise_map(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    majority_radius: int | None = 1,
    min_pixels: int | None = None,
    min_hectares: float | None = None,
    connectivity: int = 4,
    block_size: int = BLOCK_SIZE,
    max_window_pixels: int | None = None,
    compress: str = "lzw",
) -> Regularised:
    """Regularise a classified map: a majority filter, then a minimum mapping unit.

    Like Orfeo ToolBox's ClassificationMapRegularization and ``gdal_sieve``, block by block
    in bounded memory with the same result as processing the whole map at once. The output
    is a Cloud-Optimized GeoTiff with the input's grid, no-data, colour table, class names
    and tags, plus ``geoensemble_regularisation`` saying what was applied; the speckle
    figures before and after are logged (logger ``geoensemble``, INFO) and returned.

    Parameters
    ----------
    path
        A single-band class map (uint8 with no-data 255, as the predict stage writes, or
        uint16), e.g. the ``vote`` map of :func:`write_map`.
    out
        The GeoTiff to write (a file there is replaced only if geoensemble wrote it).
    majority_radius
        The majority filter's window is ``2 * majority_radius + 1`` pixels square; each
        valid pixel takes its window's most frequent valid class; ties keep the centre's
        class if among the tied, else the smallest tied code; no-data never spreads.
        ``None``: no majority filter.
    min_pixels, min_hectares
        The minimum mapping unit (at most one): patches smaller than it take the class they
        share the most border with (ties: the smaller code; see
        :func:`geoensemble.predict.regularise.sieve`); a patch of exactly that size stays.
        Hectares (10,000 m²) need a projected CRS. Neither: no sieve.
    connectivity
        4 (patches connect through edges) or 8 (also corners).
    block_size
        Block edge in pixels.
    max_window_pixels
        The largest window the sieve may read for one block (default 16.7 Mpx, ~1 GB).
    compress
        ``lzw``, ``deflate``, ``zstd`` or ``none``.

    Returns
    -------
    Regularised
        ``path`` (the map written), ``applied``
        (e.g. ``majority(radius=1);sieve(min_pixels=5,connectivity=4)``), ``before`` and
        ``after`` (:class:`~geoensemble.predict.regularise.Speckle`: ``share`` of valid
        pixels off their 3x3 majority, ``small_patches`` below the mapping unit), and
        ``min_pixels`` (the unit in pixels).

    Raises
    ------
    ConfigError
        For a radius or unit below 1, a connectivity other than 4 or 8, both units, nothing
        to apply, hectares on a map in degrees, or a map that is not a class map.
    InputFileError
        When ``path`` is missing or unreadable.
    OutputError
        When ``out`` cannot be written or is a file geoensemble did not write.
    """
    from geoensemble.predict.regularise import check_settings
    from geoensemble.predict.regularise_file import MAX_WINDOW_PIXELS, regularise_file

    check_settings(
        radius=majority_radius,
        min_pixels=min_pixels,
        connectivity=connectivity,
        names={"radius": "majority_radius"},
    )
    _check_rest(majority_radius, min_pixels, min_hectares, block_size, compress)
    result = regularise_file(
        path,
        out,
        radius=majority_radius,
        min_pixels=min_pixels,
        min_hectares=min_hectares,
        connectivity=connectivity,
        block_size=block_size,
        max_window_pixels=max_window_pixels or MAX_WINDOW_PIXELS,
        compress=compress,
    )
    log.info(
        "regularised %s -> %s (%s in %.1f s): before %s; after %s",
        path,
        result.path,
        result.applied,
        result.seconds,
        result.before,
        result.after,
    )
    return result


def _check_rest(
    majority_radius: int | None,
    min_pixels: int | None,
    min_hectares: float | None,
    block_size: int,
    compress: str,
) -> None:
    """The arguments :func:`~geoensemble.predict.regularise.check_settings` does not check."""
    if min_pixels is not None and min_hectares is not None:
        raise ConfigError(
            f"min_pixels={min_pixels} and min_hectares={min_hectares} are both set: give the "
            f"minimum mapping unit once, in pixels or in hectares"
        )
    if not majority_radius and min_pixels is None and min_hectares is None:
        raise ConfigError(
            "nothing to apply: set majority_radius, min_pixels or min_hectares (or leave "
            "majority_radius at its default, 1)"
        )
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 16:
        raise ConfigError(f"block_size={block_size!r} is too small: use 16 pixels or more")
    if not isinstance(compress, str) or compress.lower() not in COMPRESSIONS:
        raise ConfigError(f"compress={compress!r} is unknown: use lzw, deflate, zstd or none")
