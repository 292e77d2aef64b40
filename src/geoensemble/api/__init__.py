"""The public Python API: what a notebook calls (re-exported by :mod:`geoensemble`).

The functions call the same library functions as the stages (readers and grid rules,
feature building, the ensemble search, blockwise prediction, the COG writer), so a notebook
and ``dvc repro`` compute the same maps for the same settings and seed. The library
functions declare the settings they read as protocols that the stages' config satisfies; the
API builds the library's own frozen settings from its arguments (``read_spec`` for
:class:`~geoensemble.io.spec.ReadSpec`, ``recipe`` for
:class:`~geoensemble.features.build.Recipe`).
"""

from geoensemble.api.features import featurize
from geoensemble.api.fit import Ensemble, fit_ensemble
from geoensemble.api.labels import rasterize_labels
from geoensemble.api.load import LayerSpec, load_array  # LayerSpec lives in io.spec
from geoensemble.api.predict import predict_many, write_map
from geoensemble.api.regularise import regularise_map
from geoensemble.ensemble.metasearch import EnsembleSearch
from geoensemble.ensemble.spatialcv import SpatialBlockCV
from geoensemble.predict.validation import draw_validation_sample

__all__ = [
    "Ensemble",
    "EnsembleSearch",
    "LayerSpec",
    "SpatialBlockCV",
    "draw_validation_sample",
    "featurize",
    "fit_ensemble",
    "load_array",
    "predict_many",
    "rasterize_labels",
    "regularise_map",
    "write_map",
]
