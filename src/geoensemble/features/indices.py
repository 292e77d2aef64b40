"""Band indices and other two-layer arithmetic, computed lazily on the stack.

Band roles (``nir``, ``red``...) map to the stack's layer names through a sensor preset, so the
same index config works for Landsat 5/7 (``B4`` is NIR) and Landsat 8/9 (``B5`` is NIR).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from geoensemble.errors import ConfigError, LayerNotFoundError

SENSORS: dict[str, dict[str, str]] = {
    "landsat8": {
        "coastal": "B1",
        "blue": "B2",
        "green": "B3",
        "red": "B4",
        "nir": "B5",
        "swir1": "B6",
        "swir2": "B7",
    },
    "landsat9": {
        "coastal": "B1",
        "blue": "B2",
        "green": "B3",
        "red": "B4",
        "nir": "B5",
        "swir1": "B6",
        "swir2": "B7",
    },
    "landsat7": {
        "blue": "B1",
        "green": "B2",
        "red": "B3",
        "nir": "B4",
        "swir1": "B5",
        "swir2": "B7",
    },
    "landsat5": {
        "blue": "B1",
        "green": "B2",
        "red": "B3",
        "nir": "B4",
        "swir1": "B5",
        "swir2": "B7",
    },
    "none": {},
}

# name -> (op, a, b) with band roles; standard definitions:
# NDVI (Rouse 1974), NDWI (McFeeters 1996, open water), NDSI (Hall 1995, snow), NBR (Key 2006).
NAMED_INDICES: dict[str, tuple[str, str, str]] = {
    "ndvi": ("normalized_difference", "nir", "red"),
    "ndwi": ("normalized_difference", "green", "nir"),
    "ndsi": ("normalized_difference", "green", "swir1"),
    "nbr": ("normalized_difference", "nir", "swir2"),
}


def _safe_div(num: xr.DataArray, den: xr.DataArray) -> xr.DataArray:
    # A zero denominator has no defined index: NaN, not inf.
    return num / den.where(den != 0)


OPS: dict[str, Callable[[xr.DataArray, xr.DataArray], xr.DataArray]] = {
    "normalized_difference": lambda a, b: _safe_div(a - b, a + b),
    "ratio": _safe_div,
    "difference": lambda a, b: a - b,
    "sum": lambda a, b: a + b,
}


def resolve_layer(ds: xr.Dataset, role: str, sensor: str) -> xr.DataArray:
    """A layer by role (``nir``) through the sensor preset, or by its own name (``B5``)."""
    if sensor not in SENSORS:
        raise ConfigError(f"features.sensor={sensor!r} is unknown: use one of {list(SENSORS)}")
    name = SENSORS[sensor].get(role, role)
    if name not in ds.data_vars:
        raise LayerNotFoundError(
            f"feature needs layer '{role}'"
            + (f" (= {name} for {sensor})" if name != role else "")
            + f" but the stack has {list(ds.data_vars)}: fix features.sensor or the layer names"
        )
    return ds[name]


def compute(ds: xr.Dataset, op: str, a: str, b: str, *, sensor: str) -> xr.DataArray:
    """Apply a two-layer operation to layers given by role or name."""
    if op not in OPS:
        raise ConfigError(f"unknown feature operation {op!r}: use one of {list(OPS)}")
    out = OPS[op](resolve_layer(ds, a, sensor), resolve_layer(ds, b, sensor))
    return out.astype(np.float32)


def derived_spec(name: str, spec: Any) -> tuple[str, str, str]:
    """Normalise a derived-feature spec: ``[a, b]`` or ``{op, a, b}``."""
    if isinstance(spec, list | tuple) and len(spec) == 2:
        return ("normalized_difference", str(spec[0]), str(spec[1]))
    if isinstance(spec, Mapping) and {"a", "b"} <= set(spec):
        return (str(spec.get("op", "normalized_difference")), str(spec["a"]), str(spec["b"]))
    raise ConfigError(
        f"features.derived.{name}={spec!r} is not a feature spec: use [a, b] "
        f"for a normalized difference or {{op: ratio, a: B5, b: B4}}"
    )
