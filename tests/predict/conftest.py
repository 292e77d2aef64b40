"""Fixtures for prediction tests: in-memory scenes with a real grid, a real SQLite MLflow
store with registered models, and tiny fitted scikit-learn models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from geoensemble.app.config import TrackingConfig
from geoensemble.io.stack import set_grid

NAMES = ["B2", "B3", "B4", "B5", "ndvi"]
TRANSFORM = Affine(30.0, 0.0, 440_000.0, 0.0, -30.0, 4_480_000.0)


def make_scene(
    height: int = 150,
    width: int = 170,
    *,
    names: list[str] | None = None,
    seed: int = 0,
    chunks: int | None = None,
) -> xr.Dataset:
    """A seeded scene of smooth patches with no-data: the top 64 rows, a ragged left edge
    and scattered single pixels are NaN, so some blocks hold no valid pixel at all."""
    names = names or NAMES
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    layers = {}
    for i, n in enumerate(names):
        base = (
            np.sin(yy / (7 + i))
            + np.cos(xx / (5 + 2 * i))
            + 0.1 * rng.standard_normal((height, width))
        )
        layers[n] = base.astype(np.float32)
    nodata = (yy < 64) | (xx < (yy % 13)) | (rng.random((height, width)) < 0.02)
    for n in names:
        layers[n][nodata] = np.nan
    layers[names[0]][rng.random((height, width)) < 0.01] = np.nan  # one layer only
    ds = xr.Dataset({n: (("y", "x"), a) for n, a in layers.items()})
    if chunks:
        ds = ds.chunk({"y": chunks, "x": chunks})
    return set_grid(ds, CRS.from_epsg(32613), TRANSFORM)


def valid_table(ds: xr.Dataset, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """All valid pixels as one table (the in-memory reference) and the valid mask."""
    cube = np.stack([ds[n].to_numpy() for n in names])
    mask = ~np.isnan(cube).any(axis=0)
    return np.ascontiguousarray(cube[:, mask].T), mask


@pytest.fixture
def scene() -> Callable[..., xr.Dataset]:
    return make_scene


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TrackingConfig:
    """A fresh SQLite MLflow store (and artifact root) in ``tmp_path``."""
    import mlflow

    from geoensemble.app.tracker import tracker_for

    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    t = TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db", model_name="geoensemble")
    tracker_for(t).open()
    # For the tests' own checks with a bare MlflowClient(); geoensemble never relies on it.
    mlflow.set_tracking_uri(t.uri)
    mlflow.set_registry_uri(t.uri)
    return t


def fit_kmeans(names: list[str], k: int = 5, seed: int = 0) -> object:
    from sklearn.cluster import KMeans
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, _ = valid_table(make_scene(seed=seed), names)
    return Pipeline(
        [("scale", StandardScaler()), ("model", KMeans(k, n_init=2, random_state=seed))]
    ).fit(X[:4000])


def fit_forest(names: list[str], seed: int = 0) -> object:
    from sklearn.ensemble import RandomForestClassifier

    X, _ = valid_table(make_scene(seed=seed), names)
    y = (X[:, 0] > 0).astype(int) + 2 * (X[:, -1] > 0.5).astype(int)
    return RandomForestClassifier(10, max_depth=6, random_state=seed).fit(X[:4000], y[:4000])


def register(
    t: TrackingConfig,
    models: list[object],
    names: list[str],
    *,
    alias: str | None = "champion",
    ensemble_tags: dict[str, str] | None = None,
) -> tuple[str, list[str]]:
    """Log ``models`` as the kept members of one ensemble run; return (parent id, versions)."""
    from geoensemble.app.tracker import tracker_for

    tracker = tracker_for(t)
    exp = tracker.open()
    example = np.zeros((3, len(names)), dtype=np.float32)
    versions = []
    with tracker.parent_run(
        exp, run_name="ensemble-test", params={}, tags=ensemble_tags or {}
    ) as parent:
        for i, m in enumerate(models):
            run = tracker.log_child_run(
                exp, parent, run_name=f"member-{i:03d}", params={}, metrics={}, tags={}
            )
            versions.append(
                tracker.log_model(
                    run,
                    m,
                    feature_names=names,
                    example=example,
                    model_name=t.model_name,
                    tags={"ensemble_run_id": parent, "rank": str(i)},
                )
            )
    if alias:
        tracker.set_alias(t.model_name, alias, versions[0])
    return parent, versions
