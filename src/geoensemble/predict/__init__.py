"""Prediction: fitted members to classified Cloud-Optimized GeoTiffs, blockwise, in bounded
memory.

- :mod:`~geoensemble.predict.models`: a loaded member (registered or external) and the
  feature-name check;
- :mod:`~geoensemble.predict.combine`: one block through every member, vote, agreement,
  probabilities;
- :mod:`~geoensemble.predict.blocks`: tile-aligned blocks on threads or a dask cluster;
- :mod:`~geoensemble.predict.writer`: windows to a scratch file, then a COG in place;
- :mod:`~geoensemble.predict.scene`: one scene through every member into its maps;
- :mod:`~geoensemble.predict.legend`: what the codes of a map mean.

The predict stage that resolves models from the config is :mod:`geoensemble.app.predict`.
"""

from geoensemble.predict.combine import BlockPredictor, ClassScheme, output_keys, vote
from geoensemble.predict.models import LoadedMember, check_features, model_kind, n_classes_of
from geoensemble.predict.scene import SceneSummary, map_paths, predict_scene

__all__ = [
    "BlockPredictor",
    "ClassScheme",
    "LoadedMember",
    "SceneSummary",
    "check_features",
    "map_paths",
    "model_kind",
    "n_classes_of",
    "output_keys",
    "predict_scene",
    "vote",
]
