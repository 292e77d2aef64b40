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
    "ReadSpec.align": "data.align",
    "ReadSpec.crs": "data.crs",
    "ReadSpec.format": "data.format",
    "ReadSpec.geotransform": "data.geotransform",
    "ReadSpec.layers": "data.layers",
    "ReadSpec.path": "data.path",
    "ReadSpec.pattern": "data.pattern",
    "ReadSpec.product": "data.product",
    "ReadSpec.qa": "data.qa",
    "ReadSpec.qa_flags": "data.qa_flags",
    "ReadSpec.reference": "data.reference",
    "ReadSpec.resampling": "data.resampling",
    "ReadSpec.stac": "data.stac",
    "ReadSpec.target": "data.target",
    "StacSearch.bbox": "data.stac.bbox",
    "StacSearch.limit": "data.stac.limit",
    "StacSearch.max_cloud": "data.stac.max_cloud",
    "TargetGrid.bounds": "data.target.bounds",
    "TargetGrid.crs": "data.target.crs",
    "TargetGrid.resolution": "data.target.resolution",
    "atomic_path.overwrite": "predict.overwrite",
    "build_stack.max_pixels": "limits.max_pixels",
    "check_labels_target.folder": "paths.labels",
    "read_labels.attribute": "data.labels.attribute",
    "read_labels.code_attribute": "data.labels.code_attribute",
    "read_labels.layer": "data.labels.layer",
    "read_labels.path": "data.labels.path",
    "read_labels.target": "data.labels.target",
    "write_scene.out_dir": "paths.raw",
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
    "MemberSpec.kind": "model.kind",
    "MemberSpec.per_member_sample": "ensemble.sample",
    "Search.consensus_top": "ensemble.consensus.enabled",
    "Search.direction": "ensemble.direction",  # the direction of objectives[0], the criterion
    "Search.objectives": "ensemble.objectives",  # the objectives after the criterion
    "Search.size": "ensemble.size",
    "Search.space": "model.space",
    "TrainingData.y": "data.labels.path",
    "check_precedence.estimator": "model.estimator",
    "check_precedence.n_clusters": "model.n_clusters",
    "check_precedence.space": "model.space",
    "draw_training_data.nan_threshold": "features.nan_threshold",
    "ensemble_pipeline.impute": "features.impute",
    "ensemble_pipeline.steps": "features.steps",
    "fit_ensemble.cv": "ensemble.cv",
    "fit_ensemble.criterion": "ensemble.metric",
    "fit_ensemble.estimator": "model.estimator",
    "fit_ensemble.sample": "features.sample.size",
    "spatial_folds.block_size": "ensemble.cv.block_size",
    "spatial_folds.buffer": "ensemble.cv.buffer",
    "spatial_folds.n_folds": "ensemble.cv.folds",
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
    "Cluster.address": "compute.address",
    "Cluster.memory_limit": "compute.memory_limit",
    "Cluster.n_workers": "compute.n_workers",
    "Cluster.retries": "compute.retries",
    "Cluster.timeout": "compute.timeout",
    "Tracker.artifact_root": "tracking.artifact_root",
    "Tracker.timeout": "tracking.timeout",
    "Tracker.uri": "tracking.uri",
    "check_params.params": "trust.params",
    "check_target.modules": "trust.modules",
    "check_types.types": "trust.types",
    "find_ensemble_run.spec": "predict.ensemble",
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
