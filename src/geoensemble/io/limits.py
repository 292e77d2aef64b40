"""Sizes checked before work starts, so a wrong or hostile file fails in one line at once.

A GeoTiff header can declare 10^6 x 10^6 pixels in a few bytes (a sparse file); a sidecar
``classes.json`` can be hundreds of megabytes. Each limit is documented in
docs/troubleshooting.md and can be raised by the caller (the stages pass their config's value).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from geoensemble.errors import InputFileError

# Pixels (rows x columns) one layer may declare: 2 Gpx is a 45,000 px square, larger than any
# single Landsat or Sentinel-2 product (about 60 and 120 Mpx) or a state-wide mosaic at 30 m.
MAX_PIXELS = 2_000_000_000
# Bytes of a JSON sidecar we read (classes.json, a store's metadata, a stage report): ours are
# a few kilobytes.
MAX_SIDECAR_BYTES = 16_000_000


def check_declared_size(label: str, shape: tuple[int, int], max_pixels: int) -> None:
    """Refuse a raster whose header declares more than ``max_pixels`` pixels (the argument of
    :func:`~geoensemble.io.stack.build_stack`).

    Raises
    ------
    InputFileError
        Naming the file, its declared size, the limit and ``max_pixels`` to raise it.
    """
    rows, cols = (int(v) for v in shape)
    if rows * cols > max_pixels:
        raise InputFileError(
            f"{label} declares {cols} x {rows} px ({rows * cols / 1e6:,.0f} Mpx), over the "
            f"limit of {max_pixels / 1e6:,.0f} Mpx per layer: check the file (a broken or "
            f"sparse header?), crop it (layers[].bbox), or raise max_pixels if it is real",
            arguments={"layers": "ReadSpec.layers", "max_pixels": "build_stack.max_pixels"},
        )


def check_real(label: str, dtype: str) -> None:
    """Refuse a complex-valued band: casting it to float would drop its imaginary part.

    Raises
    ------
    InputFileError
        Naming the file and what to give instead.
    """
    if np.dtype(dtype).kind == "c":
        raise InputFileError(
            f"{label} holds complex values ({dtype}): geoensemble reads real-valued bands, and "
            f"keeping only the real part would change the data; write the amplitude or phase "
            f"you mean as a real band first (e.g. numpy.abs or gdal_calc.py --calc='abs(A)')"
        )


def read_json(path: str | os.PathLike[str], *, max_bytes: int = MAX_SIDECAR_BYTES) -> Any:
    """A JSON sidecar's content, after checking its size.

    Raises
    ------
    InputFileError
        If the file is larger than ``max_bytes`` (it is not one we wrote).
    OSError, ValueError
        As reading and parsing raise them (callers say what the file is).
    """
    p = Path(path)
    size = p.stat().st_size
    if size > max_bytes:
        raise InputFileError(
            f"{p} is {size / 1e6:,.1f} MB, over the {max_bytes / 1e6:g} MB a geoensemble "
            f"sidecar or report can be: it is not the file geoensemble wrote; rerun the stage "
            f"that writes it, or move that file away"
        )
    return json.loads(p.read_text(encoding="utf-8"))
