"""The settings of map regularisation, checked without loading the map code.

The predict stage checks its regularisation settings when its config is validated, before any
work, and the command line must not import NumPy, SciPy or the predict package for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral
from typing import Any

from geoensemble.errors import ConfigError


def describe(radius: int | None, min_pixels: int | None, connectivity: int = 4) -> str:
    """What was applied, as the map's tag says it, e.g.
    ``majority(radius=1);sieve(min_pixels=5,connectivity=4)`` (``none`` for nothing)."""
    steps = []
    if radius:
        steps.append(f"majority(radius={radius})")
    if min_pixels:
        steps.append(f"sieve(min_pixels={min_pixels},connectivity={connectivity})")
    return ";".join(steps) or "none"


# the parameters the messages of check_settings name (see geoensemble.errors)
PARAMETERS = {
    "radius": "check_settings.radius",
    "min_pixels": "check_settings.min_pixels",
    "connectivity": "check_settings.connectivity",
}


def check_settings(
    *,
    radius: Any = None,
    min_pixels: Any = None,
    connectivity: Any = 4,
    names: Mapping[str, str] | None = None,
) -> None:
    """Refuse a radius or mapping unit below 1, or a connectivity other than 4 or 8.

    ``names`` renames the arguments in the messages (e.g. ``{"radius": "majority_radius"}``
    for the API); each error says which parameter a name stands for (its ``arguments``,
    ``check_settings.<parameter>``). ``None`` means the step is skipped.

    Raises
    ------
    ConfigError
        One line naming the argument and the fix.
    """
    n = {"radius": "radius", "min_pixels": "min_pixels", "connectivity": "connectivity"}
    n.update(names or {})
    for key, value in (("radius", radius), ("min_pixels", min_pixels)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ConfigError(
                f"{n[key]}={value!r} is not a whole number of pixels >= 1: use 1 or more, "
                f"or None to skip the {'majority filter' if key == 'radius' else 'sieve'}",
                arguments={n[key]: PARAMETERS[key]},
            )
    if isinstance(connectivity, bool) or connectivity not in (4, 8):
        raise ConfigError(
            f"{n['connectivity']}={connectivity!r} is unknown: use 4 (edges) or 8 (edges and "
            f"corners)",
            arguments={n["connectivity"]: PARAMETERS["connectivity"]},
        )
