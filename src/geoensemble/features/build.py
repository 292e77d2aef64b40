"""Stateless raster-level features: the same function runs on the training scene and on every
scene to be predicted, so the model always sees identically built inputs."""

from __future__ import annotations

import numpy as np
import xarray as xr

from geoensemble.config import FeaturesConfig
from geoensemble.errors import ConfigError
from geoensemble.features.indices import NAMED_INDICES, compute, derived_spec, resolve_layer


def feature_names(stack_layers: list[str], fcfg: FeaturesConfig) -> list[str]:
    """The ordered feature names a config produces from a stack with ``stack_layers``."""
    bands = stack_layers if "*" in fcfg.bands else list(fcfg.bands)
    names = [*bands, *fcfg.indices, *fcfg.derived]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"feature name(s) {dupes} appear twice across features.bands, "
            f"features.indices and features.derived: rename one"
        )
    if not names:
        raise ConfigError(
            "the features config selects no feature: set features.bands, "
            "features.indices or features.derived"
        )
    return names


def build_features(stack: xr.Dataset, fcfg: FeaturesConfig) -> xr.Dataset:
    """Bands, named indices and derived layers as one lazily computed dataset."""
    names = feature_names([str(v) for v in stack.data_vars], fcfg)
    out: dict[str, xr.DataArray] = {}
    bands = list(stack.data_vars) if "*" in fcfg.bands else fcfg.bands
    for b in bands:
        out[str(b)] = resolve_layer(stack, str(b), fcfg.sensor).astype(np.float32)
    for idx in fcfg.indices:
        if idx not in NAMED_INDICES:
            raise ConfigError(
                f"features.indices has unknown index {idx!r}: use one of "
                f"{sorted(NAMED_INDICES)} or define it under features.derived"
            )
        op, a, b = NAMED_INDICES[idx]
        out[idx] = compute(stack, op, a, b, sensor=fcfg.sensor)
    for name, spec in fcfg.derived.items():
        op, a, b = derived_spec(name, spec)
        out[name] = compute(stack, op, a, b, sensor=fcfg.sensor)
    ds = xr.Dataset({n: out[n].drop_vars("spatial_ref", errors="ignore") for n in names})
    ds.attrs.update(stack.attrs)
    return ds
