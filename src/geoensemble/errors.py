"""Every error geoensemble raises on purpose.

Each class derives from :class:`GeoEnsembleError` and from the builtin that best describes it,
so callers can catch either. Messages say what failed, name the file, argument or value, and
how to fix it; the command-line wrapper prints them without a traceback.

The library's messages name its own arguments (``nan_threshold=2``), as a Python caller gave
them. ``arguments`` says which: each name the message uses, mapped to the library parameter it
stands for (``"nan_threshold": "fit_ensemble.nan_threshold"``). The application, which knows
which config key feeds which parameter, renders those names as its keys
(:mod:`geoensemble.app.keys`); the library never names a config key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class GeoEnsembleError(Exception):
    """Root of all geoensemble errors.

    Parameters
    ----------
    *args
        The message (and any further exception arguments).
    arguments
        The argument names the message uses, each mapped to the library parameter it stands
        for as ``"<function or class>.<parameter>"`` (see the module's docstring).
    """

    def __init__(self, *args: Any, arguments: Mapping[str, str] | None = None) -> None:
        super().__init__(*args)
        self.arguments: dict[str, str] = dict(arguments or {})

    def __reduce__(self) -> tuple[Any, ...]:
        # keep ``arguments`` when the error travels back from a dask worker
        return (_rebuild, (type(self), self.args, self.arguments))


def _rebuild(cls: type[GeoEnsembleError], args: tuple[Any, ...], arguments: dict[str, str]) -> Any:
    return cls(*args, arguments=arguments)


class ConfigError(GeoEnsembleError, ValueError):
    """A configuration key is unknown, missing, of the wrong type or out of range."""


class InputFileError(GeoEnsembleError, OSError):
    """An input file or folder is missing, unreadable or corrupt."""


class LayerNotFoundError(GeoEnsembleError, LookupError):
    """A layer spec matched no layer (or more than one)."""


class GridMismatchError(GeoEnsembleError, ValueError):
    """Layers do not share one grid (CRS, transform, shape)."""


class EmptyLayerError(GeoEnsembleError, ValueError):
    """A layer (or a whole scene) holds no valid pixel."""


class FeatureMismatchError(GeoEnsembleError, ValueError):
    """The scene's features do not match what the model was trained on."""


class ModelNotFoundError(GeoEnsembleError, LookupError):
    """A registered model, version or alias does not exist."""


class TrackingError(GeoEnsembleError, RuntimeError):
    """The MLflow tracking store or server cannot be used."""


class OutputError(GeoEnsembleError, OSError):
    """An output cannot be written (permissions, existing file, full disk)."""


class ComputeError(GeoEnsembleError, RuntimeError):
    """A task of the dask cluster failed for good (e.g. it kept killing its workers)."""


class DiskFullError(OutputError):
    """No space is left on the device (or in the quota) while an output is written."""


class PromotionError(GeoEnsembleError, ValueError):
    """A registered version cannot become the champion (degenerate, not comparable...)."""
