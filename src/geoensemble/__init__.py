"""geoensemble: ensembles of scikit-learn models over stacks of raster layers.

The stages (``scene``, ``ingest``, ``featurize``, ``train``, ``evaluate``, ``predict``) are
plain functions in :mod:`geoensemble.stages` that take a validated config; the scripts in
``pipelines/`` only wrap them for DVC, MLflow Projects and Hydra.
"""

__version__ = "0.1.0"
