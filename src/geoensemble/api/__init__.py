"""The public Python API: what a notebook calls (re-exported by :mod:`geoensemble`).

The functions call the same library functions as the stages (readers and grid rules,
feature building, the ensemble search, blockwise prediction, the COG writer), so a notebook
and ``dvc repro`` compute the same maps for the same settings and seed. Where a library
function still takes (part of) the application config, the API builds that config from its
arguments (``data_config``, ``features_config``, ``app_config``): that coupling is what the
layering refactor removes.
"""

from geoensemble.api.features import featurize
from geoensemble.api.fit import Ensemble, fit_ensemble
from geoensemble.api.load import LayerSpec, load_array
from geoensemble.api.predict import predict_many, write_map

__all__ = [
    "Ensemble",
    "LayerSpec",
    "featurize",
    "fit_ensemble",
    "load_array",
    "predict_many",
    "write_map",
]
