"""Band indices and other two-layer arithmetic, computed lazily on the stack.

Band roles (``nir``, ``red``...) map to the stack's layer names through a sensor preset, so the
same index config works for Landsat 4/5 TM and 7 ETM+ (``B4`` is NIR) and Landsat 8/9 OLI
(``B5`` is NIR). Each operation is one numpy kernel applied chunk by chunk, so an index costs
one pass over its two inputs and no temporary masks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from geoensemble.errors import ConfigError, LayerNotFoundError

_TM = {"blue": "B1", "green": "B2", "red": "B3", "nir": "B4", "swir1": "B5", "swir2": "B7"}
_OLI = {
    "coastal": "B1",
    "blue": "B2",
    "green": "B3",
    "red": "B4",
    "nir": "B5",
    "swir1": "B6",
    "swir2": "B7",
}

_S2 = {
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "nir": "B08",
    "nir08": "B8A",
    "water_vapour": "B09",
    "swir1": "B11",
    "swir2": "B12",
}

#: Band role -> layer name per sensor (USGS band numbering; ``none``: layers named by role).
SENSORS: dict[str, dict[str, str]] = {
    "landsat9": dict(_OLI),
    "landsat8": dict(_OLI),
    "landsat7": dict(_TM),
    "landsat5": dict(_TM),
    "landsat4": dict(_TM),
    # product presets (data.product): layer names as the preset names them
    "landsat_c2_l2": {**{role: f"SR_{b}" for role, b in _OLI.items()}, "lwir": "ST_B10"},
    "sentinel2_l2a": dict(_S2),
    "sentinel2_l2a_pre04": dict(_S2),
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


#: Elements per inner block: the kernels' temporaries stay in cache, so an index costs about
#: as much as reading its two inputs once (faster than numpy's whole-array expression).
BLOCK = 1 << 15


def _floats(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dtype = np.result_type(a, b, np.float32)
    a, b = np.broadcast_arrays(np.asarray(a, dtype=dtype), np.asarray(b, dtype=dtype))
    return a, b


def _blockwise(
    a: np.ndarray, b: np.ndarray, kernel: Callable[[np.ndarray, np.ndarray, np.ndarray], None]
) -> np.ndarray:
    """Run ``kernel(a, b, out)`` over flat blocks of ``BLOCK`` elements."""
    a, b = _floats(a, b)
    out = np.empty(a.shape, dtype=a.dtype)
    fa, fb, fo = a.reshape(-1), b.reshape(-1), out.reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        for start in range(0, fo.size, BLOCK):
            stop = min(start + BLOCK, fo.size)
            kernel(fa[start:stop], fb[start:stop], fo[start:stop])
    return out


def _nd_kernel(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    den = a + b
    np.subtract(a, b, out=out)
    np.divide(out, den, out=out)
    np.copyto(out, np.nan, where=den == 0)  # undefined, not inf


def _ratio_kernel(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    np.divide(a, b, out=out)
    np.copyto(out, np.nan, where=b == 0)


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / (a + b)``; NaN where ``a + b == 0`` or an input is NaN."""
    return _blockwise(a, b, _nd_kernel)


def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / b``; NaN where ``b == 0``."""
    return _blockwise(a, b, _ratio_kernel)


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a - b``."""
    return np.subtract(a, b)


def total(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + b``."""
    return np.add(a, b)


#: The two-layer operations a recipe's ``derived`` features can name.
OPS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "normalized_difference": normalized_difference,
    "ratio": ratio,
    "difference": difference,
    "sum": total,
}


def layer_name(ds: xr.Dataset, role: str, sensor: str) -> str:
    """The stack layer that plays ``role`` (``nir``) for ``sensor``, or is named ``role``.

    Besides exact names, a single layer whose name ends in ``_<name>`` matches, so Landsat
    Collection 2 names such as ``SR_B5`` or ``LC08_..._B5`` work with the presets.
    """
    if sensor not in SENSORS:
        raise ConfigError(
            f"sensor={sensor!r} is unknown: use one of {list(SENSORS)}",
            arguments={"sensor": "Recipe.sensor"},
        )
    name = SENSORS[sensor].get(role, role)
    layers = [str(v) for v in ds.data_vars]
    for wanted in dict.fromkeys((name, role)):
        if wanted in layers:
            return wanted
    suffixed = [n for n in layers if n.upper().endswith("_" + name.upper())]
    if len(suffixed) == 1:
        return suffixed[0]
    raise LayerNotFoundError(
        f"feature needs layer '{role}'"
        + (f" (= {name} for {sensor})" if name != role else "")
        + f" but the stack has {layers}"
        + (f" ({suffixed} are ambiguous)" if suffixed else "")
        + ": fix sensor or the layer names",
        arguments={"sensor": "Recipe.sensor"},
    )


def resolve_layer(ds: xr.Dataset, role: str, sensor: str) -> xr.DataArray:
    """A layer by role (``nir``) through the sensor preset, or by its own name (``B5``)."""
    return ds[layer_name(ds, role, sensor)]


def apply_op(op: str, a: xr.DataArray, b: xr.DataArray) -> xr.DataArray:
    """Apply a named two-layer operation elementwise (lazily when the inputs are dask)."""
    if op not in OPS:
        raise ConfigError(f"unknown feature operation {op!r}: use one of {list(OPS)}")
    out = xr.apply_ufunc(
        OPS[op],
        a.astype(np.float32, copy=False),
        b.astype(np.float32, copy=False),
        dask="parallelized",
        output_dtypes=[np.float32],
        keep_attrs=False,
    )
    return out


def compute(ds: xr.Dataset, op: str, a: str, b: str, *, sensor: str) -> xr.DataArray:
    """Apply a two-layer operation to layers given by role or name."""
    if op not in OPS:
        raise ConfigError(f"unknown feature operation {op!r}: use one of {list(OPS)}")
    return apply_op(op, resolve_layer(ds, a, sensor), resolve_layer(ds, b, sensor))


def derived_spec(name: str, spec: Any) -> tuple[str, str, str]:
    """Normalise a derived-feature spec: ``[a, b]`` or ``{op, a, b}``."""
    if isinstance(spec, list | tuple) and len(spec) == 2:
        return ("normalized_difference", str(spec[0]), str(spec[1]))
    if isinstance(spec, Mapping) and {"a", "b"} <= set(spec) and set(spec) <= {"op", "a", "b"}:
        op = str(spec.get("op", "normalized_difference"))
        if op not in OPS:
            raise ConfigError(
                f"derived.{name}.op={op!r} is unknown: use one of {list(OPS)}",
                arguments={"derived": "Recipe.derived"},
            )
        return (op, str(spec["a"]), str(spec["b"]))
    raise ConfigError(
        f"derived.{name}={spec!r} is not a feature spec: use [a, b] "
        f"for a normalized difference or {{op: ratio, a: B5, b: B4}} "
        f"(op: one of {list(OPS)})",
        arguments={"derived": "Recipe.derived"},
    )
