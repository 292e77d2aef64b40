"""geoensemble: ensembles of scikit-learn models over stacks of raster layers.

The Python API (for notebooks; no Hydra, DVC or MLflow needed)::

    import geoensemble as ge

    ds = ge.load_array("scene", layers=[ge.LayerSpec("red", file=r"B4\\.TIF$"), ...])
    feats = ge.featurize(ds, sensor="landsat8", indices=["ndvi"])
    ens = ge.fit_ensemble(pipeline, feats, space={"n_clusters": [4, 6, 8]}, size=4)
    (maps,) = ge.predict_many(ens, [feats])
    ge.write_map(maps["vote"], "vote.tif")
    ge.regularise_map("vote.tif", "vote_mmu.tif", majority_radius=1, min_hectares=0.5)

The stages (``scene``, ``ingest``, ``featurize``, ``train``, ``evaluate``, ``predict``) are
plain functions in :mod:`geoensemble.app.stages` that take a validated config; the scripts in
``pipelines/`` only wrap them for DVC, MLflow Projects and Hydra.

The names below are imported on first use, so ``import geoensemble`` stays fast and imports
neither xarray, dask, scikit-learn nor MLflow; ``__init__.pyi`` gives type checkers their
signatures.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

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


def __getattr__(name: str) -> Any:
    if name in __all__:
        # relative: the stages never load the API (dvc.yaml's code deps follow that)
        value = getattr(importlib.import_module(".api", __name__), name)
        globals()[name] = value  # once imported, an ordinary attribute
        return value
    raise AttributeError(f"module 'geoensemble' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
