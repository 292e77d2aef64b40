"""``featurize``: the featurize stage's bands, indices, derived and custom layers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from geoensemble.errors import ConfigError

if TYPE_CHECKING:
    import xarray as xr

    from geoensemble.features.build import Recipe


def dotted_name(obj: Any, where: str) -> str:
    """``module.qualname`` of a function or class the user passed, to be named in a spec.

    The stages name code by its dotted path (``_target_``); an object defined in a notebook
    cell or a script (``__main__``) has no such path that another process could import.

    Raises
    ------
    ConfigError
        For an object of ``__main__``, a lambda or a nested function.
    """
    module = getattr(obj, "__module__", None) or ""
    qual = getattr(obj, "__qualname__", "") or ""
    name = getattr(obj, "__name__", repr(obj))
    if module == "__main__" or not module:
        raise ConfigError(
            f"{where}: {name} is defined in a notebook cell or script (__main__), so it "
            f"cannot be named by its module: move it into a module on the Python path "
            f"(e.g. my_features.py) and import it from there"
        )
    if "<" in qual:
        raise ConfigError(
            f"{where}: {name} is a lambda or a nested function ({qual}): define it at the "
            f"top level of a module and import it from there"
        )
    return public_path(obj, module, qual)


def public_path(obj: Any, module: str, qual: str) -> str:
    """The shortest dotted path under which ``obj`` is found among imported modules
    (``sklearn.decomposition.PCA`` rather than ``sklearn.decomposition._pca.PCA``)."""
    import sys

    parts = module.split(".")
    for i in range(1, len(parts)):
        mod = sys.modules.get(".".join(parts[:i]))
        if "." not in qual and mod is not None and getattr(mod, qual, None) is obj:
            return f"{'.'.join(parts[:i])}.{qual}"
    return f"{module}.{qual}"


def custom_specs(
    custom: Sequence[Callable[..., Any] | Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The recipe's ``custom`` entries and the modules the user vouched for by passing code.

    An entry is a function (called as ``fn(stack)``), or a dict ``{"_target_": fn or
    "package.module.fn", **kwargs}``. A function object was imported by the caller, so its
    module is trusted; a dotted string follows the stage's policy (geoensemble's own
    functions only, see :mod:`geoensemble.trust`).
    """
    specs: list[dict[str, Any]] = []
    modules: list[str] = []
    for i, entry in enumerate(custom):
        where = f"custom[{i}]"
        spec: dict[str, Any] = dict(entry) if isinstance(entry, Mapping) else {"_target_": entry}
        target = spec.get("_target_")
        if callable(target):
            spec["_target_"] = dotted_name(target, where)
            modules.append(str(target.__module__))
        elif not isinstance(target, str):
            raise ConfigError(
                f"{where}={entry!r} is not a feature function: give a function, or "
                f"{{'_target_': function, <keyword>: <value>...}}"
            )
        specs.append(spec)
    return specs, sorted(set(modules))


def recipe(
    *,
    sensor: str | None = None,
    bands: Sequence[str] = ("*",),
    indices: Sequence[str] = (),
    derived: Mapping[str, Any] | None = None,
    custom: Sequence[Callable[..., Any] | Mapping[str, Any]] = (),
) -> tuple[Recipe, list[str]]:
    """The features these arguments stand for (checked as the stage checks ``features``),
    and the modules trusted for ``custom``."""
    from geoensemble.features.build import Recipe
    from geoensemble.features.indices import SENSORS
    from geoensemble.io.checks import check_name
    from geoensemble.trust import check_modules

    sensor = "none" if sensor is None else sensor
    if sensor not in SENSORS:
        raise ConfigError(f"sensor={sensor!r} is unknown: use one of {list(SENSORS)} or None")
    if isinstance(bands, str) or isinstance(indices, str):
        raise ConfigError(
            "bands and indices are lists of names: write bands=['B4'], indices=['ndvi']"
        )
    for name in derived or {}:
        check_name(f"derived.{name}", name)
    specs, modules = custom_specs(custom)
    check_modules(modules, key="the modules of custom")
    rec = Recipe(
        sensor=sensor,
        bands=tuple(str(b) for b in bands),
        indices=tuple(str(i) for i in indices),
        derived=dict(derived or {}),
        custom=tuple(specs),
    )
    return rec, modules


def featurize(
    ds: xr.Dataset,
    *,
    sensor: str | None = None,
    bands: Sequence[str] = ("*",),
    indices: Sequence[str] = (),
    derived: Mapping[str, Any] | None = None,
    custom: Sequence[Callable[..., Any] | Mapping[str, Any]] = (),
) -> xr.Dataset:
    """Bands, named indices, derived and custom layers: the featurize stage's features.

    Parameters
    ----------
    ds
        A stack from :func:`load_array` (float32, NaN = no-data), numpy- or dask-backed.
    sensor
        Band-role preset (``landsat8``, ``landsat5``...) mapping ``nir``, ``red``... to layer
        names (``B5``, ``B4``...); ``None``: layers are named by role.
    bands
        Layers to keep as features, by name or role; ``("*",)`` keeps every layer.
    indices
        Named normalized differences: ``ndvi``, ``ndwi``, ``ndsi``, ``nbr``.
    derived
        ``{name: [a, b]}`` (normalized difference of two layers) or ``{name: {"op": ...,
        "a": ..., "b": ...}}`` with op ``normalized_difference``, ``ratio``, ``difference``
        or ``sum``.
    custom
        Functions ``fn(stack, **kwargs) -> {name: DataArray}``: a function, or
        ``{"_target_": fn, **kwargs}`` (see :mod:`geoensemble.features.custom`).

    Returns
    -------
    xarray.Dataset
        One float32 layer per feature, in the order bands, indices, derived, custom, with
        the stack's grid (CRS and transform); lazy where ``ds`` is.

    Raises
    ------
    ConfigError, LayerNotFoundError
        Naming the argument, the feature or the missing layer and how to fix it.
    """
    from geoensemble.features.build import build_features
    from geoensemble.io.stack import grid_attrs, set_grid

    rec, modules = recipe(
        sensor=sensor, bands=bands, indices=indices, derived=derived, custom=custom
    )
    feats = build_features(ds, rec, trusted_modules=modules)
    if "geotransform" in feats.attrs:  # keep the grid for rioxarray too, as a store does
        crs, transform = grid_attrs(feats)
        feats = set_grid(feats, crs, transform)
    return feats
