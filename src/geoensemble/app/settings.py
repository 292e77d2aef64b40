"""The application's config sections as the library's own settings objects.

The library takes frozen dataclasses it declares (:class:`geoensemble.compute.Cluster`,
:class:`geoensemble.features.build.Recipe`, :class:`geoensemble.io.spec.ReadSpec`), never the
config; the stages convert here, the one place that knows both. (The config schema itself
imports nothing of the library, so that the command line starts quickly:
``tests/io/test_spec.py`` keeps their defaults equal.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from geoensemble.app.config import ComputeConfig, DataConfig, FeaturesConfig
from geoensemble.compute import Cluster
from geoensemble.io.spec import ReadSpec, TargetGrid, layer_spec, stac_search

if TYPE_CHECKING:
    from geoensemble.features.build import Recipe


def cluster_of(compute: ComputeConfig) -> Cluster:
    """``compute`` as the :class:`~geoensemble.compute.Cluster` :func:`dask_client` reads."""
    return Cluster(**{f.name: getattr(compute, f.name) for f in dataclasses.fields(Cluster)})


def recipe_of(features: FeaturesConfig) -> Recipe:
    """The raster-level part of ``features`` as a :class:`~geoensemble.features.build.Recipe`."""
    from geoensemble.features.build import Recipe  # xarray: only where features are built

    return Recipe(
        sensor=features.sensor,
        bands=tuple(features.bands),
        indices=tuple(features.indices),
        derived=dict(features.derived),
        custom=tuple(features.custom),
    )


def _opt_tuple(values: Sequence[Any] | None) -> tuple[Any, ...] | None:
    return None if values is None else tuple(values)


def read_spec_of(data: DataConfig) -> ReadSpec:
    """Where ``data`` reads from and how, as the readers' :class:`~geoensemble.io.spec.ReadSpec`."""
    layers = tuple(layer_spec(dataclasses.asdict(e), i) for i, e in enumerate(data.layers))
    return ReadSpec(
        path=data.path,
        format=data.format,
        pattern=data.pattern,
        layers=layers,
        align=str(data.align),
        reference=data.reference,
        target=TargetGrid(
            crs=data.target.crs,
            resolution=_opt_tuple(data.target.resolution),
            bounds=_opt_tuple(data.target.bounds),
        ),
        resampling=data.resampling,
        chunk_size=data.chunk_size,
        crs=data.crs,
        geotransform=_opt_tuple(data.geotransform),
        product=data.product,
        qa=data.qa,
        qa_flags=_opt_tuple(data.qa_flags),
        stac=stac_search(dataclasses.asdict(data.stac)),
    )
