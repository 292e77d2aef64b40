"""The one table from library arguments to config keys, and the rendering of messages with it.

The library's errors and warnings name its own arguments and say which parameter each name
stands for (:class:`geoensemble.errors.GeoEnsembleError` ``arguments``, or ``extra={"arguments":
...}`` on a log record). The stages feed those parameters from config keys, so their one-line
messages name the keys: :data:`KEYS` says which key feeds which parameter.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from geoensemble.errors import GeoEnsembleError

# library parameter ("<function or class>.<parameter>") -> the config key that feeds it
KEYS: dict[str, str] = {
    # --- io: reading layers and labels
    # --- features
    "Recipe.bands": "features.bands",
    "Recipe.custom": "features.custom",
    "Recipe.derived": "features.derived",
    "Recipe.indices": "features.indices",
    "Recipe.sensor": "features.sensor",
    "check_nan_policy.impute": "features.impute",
    "check_nan_policy.nan_threshold": "features.nan_threshold",
    "sample_pixels.nan_threshold": "features.nan_threshold",
    "sample_pixels.size": "features.sample.size",
    "sample_pixels.stratify": "features.sample.stratify",
    "scene_fill_values.strategy": "features.impute",
    # --- ensemble: the search and its criteria
    # --- predict
    "check_settings.connectivity": "predict.regularise.connectivity",
    "check_settings.min_pixels": "predict.regularise.min_pixels",
    "check_settings.radius": "predict.regularise.majority_radius",
    "declared_fill_values.impute_stats": "predict.external.impute_stats",
    "map_paths.out_dir": "predict.output_dir",
    "predict_scene.block_size": "predict.block_size",
    "predict_scene.threads": "predict.threads",
    "regularise_file.min_hectares": "predict.regularise.min_hectares",
    "regularise_file.min_pixels": "predict.regularise.min_pixels",
    "regularise_file.radius": "predict.regularise.majority_radius",
    # --- tracking and compute
}


def render(text: str, arguments: Mapping[str, str], keys: Mapping[str, str] = KEYS) -> str:
    """``text`` with each argument name of ``arguments`` replaced by the config key that feeds
    its parameter (names without a key stay as they are). A name is only replaced where it
    stands alone: not inside a longer word, a dotted name or a path, nor before ``(``."""
    for name in sorted(arguments, key=len, reverse=True):
        key = keys.get(arguments[name])
        if key and key != name:
            text = re.sub(rf"(?<![\w./\-]){re.escape(name)}(?![\w(])", key, text)
    return text


def keyed(exc: GeoEnsembleError, keys: Mapping[str, str] = KEYS) -> GeoEnsembleError:
    """``exc`` as the same kind of error naming config keys (``exc`` itself if it names none)."""
    if not exc.arguments:
        return exc
    new = type(exc)(render(str(exc), exc.arguments, keys))
    for note in getattr(exc, "__notes__", []):
        new.add_note(note)
    return new


class _KeyFilter(logging.Filter):
    """Renders the argument names of a record that says which they are (``extra``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        arguments = getattr(record, "arguments", None)
        if arguments:
            record.msg, record.args = render(record.getMessage(), arguments), None
            record.arguments = None
        return True


@contextlib.contextmanager
def config_keys() -> Iterator[None]:
    """For the block: the ``geoensemble`` logger's records and the errors raised name config
    keys instead of library arguments."""
    logger, flt = logging.getLogger("geoensemble"), _KeyFilter()
    logger.addFilter(flt)
    try:
        yield
    except GeoEnsembleError as exc:
        new = keyed(exc)
        if new is exc:
            raise
        raise new from exc.__cause__
    finally:
        logger.removeFilter(flt)


F = TypeVar("F", bound=Callable[..., Any])


def with_config_keys(fn: F) -> F:
    """``fn`` run under :func:`config_keys` (the stages)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with config_keys():
            return fn(*args, **kwargs)

    return run  # type: ignore[return-value]
