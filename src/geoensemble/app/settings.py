"""The application's config sections as the library's own settings objects.

The library takes frozen dataclasses it declares (:class:`geoensemble.compute.Cluster`,
:class:`geoensemble.features.build.Recipe`), never the config; the stages convert here, the
one place that knows both. (The config schema itself imports nothing of the library, so that
the command line starts quickly: ``tests/io/test_spec.py`` keeps their defaults equal.)
"""

from __future__ import annotations

import dataclasses

from geoensemble.app.config import ComputeConfig, FeaturesConfig
from geoensemble.compute import Cluster
from geoensemble.features.build import Recipe


def cluster_of(compute: ComputeConfig) -> Cluster:
    """``compute`` as the :class:`~geoensemble.compute.Cluster` :func:`dask_client` reads."""
    return Cluster(**{f.name: getattr(compute, f.name) for f in dataclasses.fields(Cluster)})


def recipe_of(features: FeaturesConfig) -> Recipe:
    """The raster-level part of ``features`` as a :class:`~geoensemble.features.build.Recipe`."""
    return Recipe(
        sensor=features.sensor,
        bands=tuple(features.bands),
        indices=tuple(features.indices),
        derived=dict(features.derived),
        custom=tuple(features.custom),
    )
