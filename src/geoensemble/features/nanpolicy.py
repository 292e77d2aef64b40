"""The NaN policy of the training pixels: how many NaN features a pixel may have, and the
fill that members learn for them. One check for the train stage and ``fit_ensemble``."""

from __future__ import annotations

from geoensemble.errors import ConfigError

IMPUTES = ("median", "mean", "constant")


def check_nan_policy(nan_threshold: int, impute: str | None) -> None:
    """Refuse a fill that is not one of :data:`IMPUTES`, and NaN features kept without one.

    Raises
    ------
    ConfigError
        Naming ``nan_threshold`` / ``impute`` and the fix.
    """
    if impute is not None and impute not in IMPUTES:
        raise ConfigError(
            f"impute={impute!r} is unknown: use median, mean, constant or None (null)",
            arguments={"impute": "check_nan_policy.impute"},
        )
    if nan_threshold > 0 and impute is None:
        raise ConfigError(
            f"nan_threshold={nan_threshold} lets pixels with NaN features reach the model "
            f"but impute is None (null): set impute=median (or mean, constant), or "
            f"nan_threshold=0",
            arguments={
                "nan_threshold": "check_nan_policy.nan_threshold",
                "impute": "check_nan_policy.impute",
            },
        )
