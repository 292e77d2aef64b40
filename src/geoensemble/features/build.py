"""Stateless raster-level features: the same function runs on the training scene and on every
scene to be predicted, so the model always sees identically built inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from geoensemble.errors import ConfigError
from geoensemble.features.custom import apply_custom
from geoensemble.features.indices import NAMED_INDICES, apply_op, derived_spec, resolve_layer


@dataclass(frozen=True)
class Recipe:
    """Which raster-level features to build (the application's ``features`` config gives
    one through ``FeaturesConfig.recipe()``).

    ``sensor`` names the band-role preset (``none``: layers are named by role); ``bands``
    the layers kept (``*``: all); ``indices`` named normalized differences; ``derived``
    ``{name: [a, b] or {op, a, b}}``; ``custom`` ``[{_target_: dotted.path, **kwargs}]``.
    """

    sensor: str = "none"
    bands: tuple[str, ...] = ("*",)
    indices: tuple[str, ...] = ()
    derived: Mapping[str, Any] = field(default_factory=dict)
    custom: tuple[Mapping[str, Any], ...] = ()


# the recipe's fields its messages name, as the arguments (see geoensemble.errors)
SELECTION = {
    "bands": "Recipe.bands",
    "indices": "Recipe.indices",
    "derived": "Recipe.derived",
    "custom": "Recipe.custom",
}


def feature_names(stack_layers: list[str], fcfg: Recipe) -> list[str]:
    """The ordered feature names a recipe produces from a stack with ``stack_layers``.

    Layers of the recipe's ``custom`` functions are only known once the functions run, so
    they are not included here (:func:`build_features` appends them).
    """
    bands = stack_layers if "*" in fcfg.bands else list(fcfg.bands)
    names = [*bands, *fcfg.indices, *fcfg.derived]
    _check_names(names, custom=bool(fcfg.custom))
    return names


def _check_names(names: list[str], *, custom: bool) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"feature name(s) {dupes} appear twice across bands, indices, derived and "
            f"custom: rename one",
            arguments=SELECTION,
        )
    if not names and not custom:
        raise ConfigError(
            "the recipe selects no feature: set bands, indices, derived or custom",
            arguments=SELECTION,
        )


def build_features(
    stack: xr.Dataset, fcfg: Recipe, *, trusted_modules: Sequence[str] = ()
) -> xr.Dataset:
    """Bands, named indices, derived layers and custom layers as one lazy dataset.

    Parameters
    ----------
    stack
        The ingested stack (float32, NaN = no-data), numpy- or dask-backed.
    fcfg
        Which features (the ``features`` config, or a :class:`Recipe`).
    trusted_modules
        Modules whose functions the recipe's ``custom`` entries may name besides
        geoensemble's own (see :mod:`geoensemble.trust`).

    Returns
    -------
    xarray.Dataset
        One float32 layer per feature, in the order bands, indices, derived, custom, with the
        stack's grid attributes; dask-backed inputs stay lazy with the stack's chunks.
    """
    feature_names([str(v) for v in stack.data_vars], fcfg)
    out: dict[str, xr.DataArray] = {}
    bands = [str(v) for v in stack.data_vars] if "*" in fcfg.bands else fcfg.bands
    for b in bands:
        out[str(b)] = resolve_layer(stack, str(b), fcfg.sensor).astype(np.float32, copy=False)
    for idx in fcfg.indices:
        if idx not in NAMED_INDICES:
            raise ConfigError(
                f"indices has unknown index {idx!r}: use one of "
                f"{sorted(NAMED_INDICES)} or define it under derived",
                arguments={"indices": "Recipe.indices", "derived": "Recipe.derived"},
            )
        op, a, b = NAMED_INDICES[idx]
        out[idx] = apply_op(
            op, resolve_layer(stack, a, fcfg.sensor), resolve_layer(stack, b, fcfg.sensor)
        )
    for name, spec in fcfg.derived.items():
        op, a, b = derived_spec(name, spec)
        out[name] = apply_op(
            op, resolve_layer(stack, a, fcfg.sensor), resolve_layer(stack, b, fcfg.sensor)
        )
    custom = apply_custom(stack, fcfg.custom, sensor=fcfg.sensor, trusted_modules=trusted_modules)
    clash = sorted(set(custom) & set(out))
    if clash:
        raise ConfigError(
            f"custom returns layer(s) {clash} that already exist as band, index or derived "
            f"features: rename them (most feature functions take a 'name' argument)",
            arguments={"custom": "Recipe.custom"},
        )
    out.update(custom)
    _check_names(list(out), custom=False)
    ds = xr.Dataset(
        {n: da.drop_vars("spatial_ref", errors="ignore").rename(n) for n, da in out.items()}
    )
    ds.attrs.update(stack.attrs)
    return ds
