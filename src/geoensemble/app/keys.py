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
    # --- ensemble: the search and its criteria
    # --- predict
    # --- tracking and compute
    "Cluster.address": "compute.address",
    "Cluster.memory_limit": "compute.memory_limit",
    "Cluster.n_workers": "compute.n_workers",
    "Cluster.timeout": "compute.timeout",
    "Tracker.artifact_root": "tracking.artifact_root",
    "Tracker.timeout": "tracking.timeout",
    "Tracker.uri": "tracking.uri",
    "check_params.params": "trust.params",
    "check_target.modules": "trust.modules",
    "check_types.types": "trust.types",
    "find_ensemble_run.spec": "predict.ensemble",
    # fit_ensemble's sample, named by compute.out_of_memory's advice (one entry if the
    # ensemble section lists it too)
    "fit_ensemble.sample": "features.sample.size",
    "kept_member_uris.model_name": "tracking.model_name",
    "load_skops_bytes.trusted_types": "trust.types",
    "model_version.name": "tracking.model_name",
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
