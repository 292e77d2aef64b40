"""User feature functions: a recipe's ``custom`` entries, mapping the stack to new named layers.

Each entry is ``{_target_: package.module.function, **kwargs}``; the function is called as
``function(stack, **kwargs)`` and returns a mapping (or an ``xarray.Dataset``) of new layer
names to ``DataArray`` on the stack's grid. The stack it receives also holds the band roles of
the configured sensor (``nir``, ``red``...) as aliases of the real layers, so one function works
for every Landsat generation. Keep the arithmetic in xarray (or ``xr.apply_ufunc``) so it stays
lazy and chunked: the same function runs again on every scene to be predicted.

Two examples ship with geoensemble: :func:`savi` and :func:`brightness`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from geoensemble.errors import ConfigError, GeoEnsembleError, LayerNotFoundError
from geoensemble.features.indices import SENSORS, layer_name
from geoensemble.trust import check_custom


def with_roles(stack: xr.Dataset, sensor: str) -> xr.Dataset:
    """The stack plus its sensor's band roles as aliases (no data is copied)."""
    out = stack.copy()
    for role in SENSORS.get(sensor, {}):
        if role in out.data_vars:
            continue
        try:
            out[role] = stack[layer_name(stack, role, sensor)]
        except LookupError:
            continue  # a role whose band is absent cannot be used, nothing to alias
    return out


def _function(
    spec: Any, key: str, trusted_modules: Sequence[str]
) -> tuple[Callable[..., Any], dict[str, Any]]:
    if not isinstance(spec, Mapping) or not spec.get("_target_"):
        raise ConfigError(
            f"{key}={spec!r} is not a feature function: use "
            f"{{_target_: package.module.function, <keyword>: <value>...}}",
            arguments={"custom": "Recipe.custom"},
        )
    kwargs = {str(k): v for k, v in spec.items() if k != "_target_"}
    # The trust policy: geoensemble's functions, or a module of the trusted modules.
    try:
        fn = check_custom(spec, key, modules=trusted_modules, resolve_targets=True)
    except GeoEnsembleError as exc:  # its message names ``key``: say what it stands for
        exc.arguments.setdefault("custom", "Recipe.custom")
        raise
    return fn, kwargs


def apply_custom(
    stack: xr.Dataset,
    specs: Sequence[Any],
    *,
    sensor: str,
    trusted_modules: Sequence[str] = (),
) -> dict[str, xr.DataArray]:
    """Run every feature function of ``specs`` on ``stack``; new layers by name, in order.

    Parameters
    ----------
    stack
        The ingested stack.
    specs
        The recipe's ``custom``: ``[{_target_: package.module.function, **kwargs}, ...]``;
        messages name entry ``i`` ``custom[i]``.
    sensor
        The recipe's ``sensor``, whose band roles the functions may use.
    trusted_modules
        Modules beyond geoensemble's own whose functions may be named.

    Raises
    ------
    ConfigError
        When a ``_target_`` is refused by the trust policy (:mod:`geoensemble.trust`), cannot
        be imported, fails on its arguments, or returns something other than named layers on
        the stack's grid.
    """
    if not specs:
        return {}
    view = with_roles(stack, sensor)
    shape = (int(stack.sizes["y"]), int(stack.sizes["x"]))
    out: dict[str, xr.DataArray] = {}
    for i, spec in enumerate(specs):
        key = f"custom[{i}]"
        fn, kwargs = _function(spec, key, trusted_modules)
        what = f"{key} ({spec['_target_']})"
        result = _call(fn, view, kwargs, what)
        layers = result.data_vars if isinstance(result, xr.Dataset) else result
        if not isinstance(layers, Mapping) or not layers:
            raise ConfigError(
                f"{what} returned {type(result).__name__}: a feature "
                f"function must return a dict (or Dataset) of name -> DataArray",
                arguments={"custom": "Recipe.custom"},
            )
        for name, da in layers.items():
            _check_layer(name, da, shape, what)
            if str(name) in out:
                raise ConfigError(
                    f"{key} returns layer {name!r} a second time: rename one",
                    arguments={"custom": "Recipe.custom"},
                )
            out[str(name)] = da.astype(np.float32, copy=False)
    return out


def _call(fn: Callable[..., Any], view: xr.Dataset, kwargs: dict[str, Any], what: str) -> Any:
    """``fn(view, **kwargs)``; arguments it rejects or a layer it misses are one line."""
    try:
        return fn(view, **kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"{what} rejected its arguments {kwargs}: {exc}", arguments={"custom": "Recipe.custom"}
        ) from None
    except KeyError as exc:
        raise LayerNotFoundError(
            f"{what} asks for layer {exc} but the stack has "
            f"{[str(v) for v in view.data_vars]}: fix its arguments or sensor",
            arguments={"custom": "Recipe.custom", "sensor": "Recipe.sensor"},
        ) from None


def _check_layer(name: Any, da: Any, shape: tuple[int, int], what: str) -> None:
    """Raise a ConfigError unless ``da`` is a DataArray on the stack's grid."""
    if isinstance(da, xr.DataArray) and da.dims == ("y", "x") and tuple(da.shape) == shape:
        return
    got = (
        f"dims {da.dims} shape {tuple(da.shape)}"
        if isinstance(da, xr.DataArray)
        else type(da).__name__
    )
    raise ConfigError(
        f"{what} returned layer {name!r} with {got}: "
        f"it must be a DataArray with dims ('y', 'x') and shape {shape}",
        arguments={"custom": "Recipe.custom"},
    )


def savi(
    ds: xr.Dataset, *, nir: str = "nir", red: str = "red", L: float = 0.5, name: str = "savi"
) -> dict[str, xr.DataArray]:
    """Soil-adjusted vegetation index (Huete 1988): ``(1 + L) (nir - red) / (nir + red + L)``.

    Reflectances are expected in 0..1; ``L = 0.5`` suits intermediate vegetation cover.
    """
    a, b = ds[nir].astype(np.float32), ds[red].astype(np.float32)
    den = a + b + np.float32(L)
    return {name: (np.float32(1 + L) * (a - b) / den.where(den != 0)).astype(np.float32)}


def brightness(
    ds: xr.Dataset, *, layers: Sequence[str], name: str = "brightness"
) -> dict[str, xr.DataArray]:
    """The mean of ``layers`` (NaN where any of them is NaN)."""
    if not layers:
        raise ConfigError("brightness needs at least one layer in its 'layers' argument")
    total = sum((ds[n].astype(np.float32) for n in layers[1:]), ds[layers[0]].astype(np.float32))
    return {name: (total / np.float32(len(layers))).astype(np.float32)}
