"""Prediction: registered models (or an external one) to classified Cloud-Optimized GeoTiffs,
blockwise, in bounded memory.

- :mod:`~geoensemble.predict.models`: which models (alias, version, ensemble members,
  external file) and the feature-name check;
- :mod:`~geoensemble.predict.combine`: one block through every member, vote, agreement,
  probabilities;
- :mod:`~geoensemble.predict.blocks`: tile-aligned blocks on threads or a dask cluster;
- :mod:`~geoensemble.predict.writer`: windows to a scratch file, then a COG in place;
- :mod:`~geoensemble.predict.run`: ``predict_many``, the stage's logic.
"""

from geoensemble.predict.combine import BlockPredictor, ClassScheme, output_keys, vote
from geoensemble.predict.models import (
    Member,
    check_features,
    external_member,
    model_kind,
    n_classes_of,
    resolve_members,
)
from geoensemble.predict.run import SceneSummary, map_paths, predict_many, predict_scene

__all__ = [
    "BlockPredictor",
    "ClassScheme",
    "Member",
    "SceneSummary",
    "check_features",
    "external_member",
    "map_paths",
    "model_kind",
    "n_classes_of",
    "output_keys",
    "predict_many",
    "predict_scene",
    "resolve_members",
    "vote",
]
