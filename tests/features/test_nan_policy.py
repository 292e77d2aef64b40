"""The NaN policy end to end: nan_threshold masking, imputation fitted on the training pixels
and stored in the logged model, feature names carried to the model signature (real MLflow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geoensemble.app.config import TrackingConfig
from geoensemble.app.estimators import build_pipeline
from geoensemble.app.params import compose
from geoensemble.app.tracker import tracker_for
from geoensemble.app.validate import validate
from geoensemble.errors import ConfigError
from geoensemble.features.build import build_features
from geoensemble.features.sample import sample_pixels
from geoensemble.features.table import flatten, unflatten
from tests.features.conftest import recipe, stack_dataset

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.mark.parametrize(
    ("impute", "expected"),
    [("median", [2.0, 20.0]), ("mean", [7.0 / 3, 70.0 / 3]), ("constant", [0.0, 0.0])],
)
def test_imputer_fills_with_training_statistics_not_the_scenes(
    impute: str, expected: list[float]
) -> None:
    train = np.array([[1.0, 10.0], [2.0, np.nan], [4.0, 20.0], [np.nan, 40.0]])
    pipe = build_pipeline(
        {}, {"_target_": "sklearn.preprocessing.FunctionTransformer"}, impute=impute
    ).fit(train)
    scene = np.array([[np.nan, 1000.0], [500.0, np.nan]])  # very different statistics
    filled = pipe[:-1].transform(scene)
    np.testing.assert_allclose(filled, [[expected[0], 1000.0], [500.0, expected[1]]])


def test_constant_imputation_fills_with_the_configured_value() -> None:
    cfg = validate(
        compose(["features.impute=constant", "features.impute_value=-1"], config_dir=CONF)
    )
    pipe = build_pipeline(
        {},
        {"_target_": "sklearn.preprocessing.FunctionTransformer"},
        impute=cfg.features.impute,
        impute_value=cfg.features.impute_value,
    ).fit(np.array([[1.0, np.nan], [2.0, 3.0]]))
    np.testing.assert_array_equal(pipe[:-1].transform([[np.nan, 5.0]]), [[-1.0, 5.0]])


def test_nan_threshold_without_imputation_is_refused_by_the_config() -> None:
    with pytest.raises(ConfigError, match=r"nan_threshold=2 .*features\.impute=median"):
        validate(compose(["features.nan_threshold=2"], config_dir=CONF))
    cfg = validate(compose(["features=impute_median"], config_dir=CONF))
    assert cfg.features.nan_threshold == 3 and cfg.features.impute == "median"


def test_logged_model_imputes_with_training_medians_and_names_its_features(
    tmp_path: Path,
) -> None:
    fcfg = recipe(bands=["B2", "B3", "B4", "B5"], indices=["ndvi", "ndwi"])
    train_feats = build_features(stack_dataset(height=60, width=50, seed=1, chunks=16), fcfg)
    names = [str(n) for n in train_feats.data_vars]
    sample = sample_pixels(train_feats, names, size=2000, seed=0, nan_threshold=2)
    assert np.isnan(sample.X).any()  # pixels missing a band (and so its indices) are in
    pipe = build_pipeline(
        {
            "subset": {
                "_target_": "geoensemble.features.transformers.RandomBandSubset",
                "size": 5,
                "seed": 4,
            },
            "scale": {"_target_": "sklearn.preprocessing.StandardScaler"},
        },
        {"_target_": "sklearn.cluster.KMeans", "n_clusters": 4, "n_init": 2, "random_state": 0},
        impute="median",
    ).fit(sample.X)
    train_medians = np.nanmedian(sample.X, axis=0)
    np.testing.assert_allclose(pipe.named_steps["impute"].statistics_, train_medians)

    t = TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="features-test")
    tracker = tracker_for(t)
    exp_id = tracker.open()
    with tracker.parent_run(exp_id, run_name="nan-policy", params={}, tags={}) as run_id:
        version = tracker.log_model(
            run_id,
            pipe,
            feature_names=names,
            example=sample.X[:5],
            model_name="nan-policy",
            tags={},
        )
    loaded = tracker.load_model(f"models:/nan-policy/{version}")
    assert loaded.feature_names == names == ["B2", "B3", "B4", "B5", "ndvi", "ndwi"]

    # A scene twice as bright: its medians differ, the model must still use the training's.
    scene = stack_dataset(height=30, width=20, seed=9) * 2.0
    table = flatten(build_features(scene, fcfg), names, nan_threshold=2)
    rows_with_nan = np.isnan(table.X).any(axis=1)
    assert rows_with_nan.any()
    filled = np.where(np.isnan(table.X), train_medians, table.X)
    pred = loaded.model.predict(table.X)
    np.testing.assert_array_equal(pred, pipe.predict(filled))
    np.testing.assert_array_equal(pred, pipe.predict(table.X))
    # back on the grid: no-data corner and pixels missing > 2 features are the fill value
    grid = unflatten(pred, table, fill=255, dtype="uint8").to_numpy()
    assert (grid[:5, :5] == 255).all()
    assert (grid[table.mask] < 4).all() and (grid[~table.mask] == 255).all()
