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
        Naming ``features.nan_threshold`` / ``features.impute`` and the fix.
    """
    if impute is not None and impute not in IMPUTES:
        raise ConfigError(
            f"config key features.impute={impute!r} is unknown: use median, mean, constant or null"
        )
    if nan_threshold > 0 and impute is None:
        raise ConfigError(
            f"config key features.nan_threshold={nan_threshold} lets pixels with NaN features "
            f"reach the model but features.impute is null: set features.impute=median (or "
            f"mean, constant), or features.nan_threshold=0"
        )
