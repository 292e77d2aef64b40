"""An external model gets the configured NaN policy: pixels over ``features.nan_threshold``
are no-data, the others have their NaN features filled with the scene's per-layer statistic
(or a declared one), and the map's tags record the policy and the values."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest
import rasterio
import xarray as xr

from geoensemble.app import stages
from geoensemble.app.config import TrackingConfig
from geoensemble.errors import ConfigError, EmptyLayerError, InputFileError
from geoensemble.features.impute import (
    FillNaN,
    declared_fill_values,
    scene_fill_values,
    with_fill,
)
from geoensemble.io.stack import write_store
from tests.predict.conftest import NAMES, make_scene, valid_table

H, W = 600, 530  # several 256-px chunks and 512-px blocks


def holed_scene() -> xr.Dataset:
    """The test scene with more holes: one band missing (filled at threshold 1) over a
    band of rows, two bands missing (over the threshold) over a patch."""
    ds = make_scene(H, W)
    b3 = ds["B3"].to_numpy().copy()
    b3[300:340, 100:400] = np.nan  # one NaN feature (B2 may add one: then two)
    ds["B3"] = (("y", "x"), b3)
    b4, b5 = ds["B4"].to_numpy().copy(), ds["B5"].to_numpy().copy()
    b4[100:160, 200:260] = np.nan
    b5[100:160, 200:260] = np.nan
    ds["B4"], ds["B5"] = (("y", "x"), b4), (("y", "x"), b5)
    return ds.chunk({"y": 256, "x": 256})


def logistic_pipeline() -> object:
    """StandardScaler + LogisticRegression: refuses NaN input."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, _ = valid_table(make_scene(seed=3), NAMES)
    y = (X[:, 0] + X[:, 2] > 0).astype(int) + (X[:, 4] > 0.5).astype(int)
    return Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())]).fit(X, y)


def reference(ds: xr.Dataset, model: object, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """The notebook's way in plain numpy: per-layer nanmedian fill, mask over threshold."""
    cube = np.stack([ds[n].to_numpy() for n in NAMES]).astype(np.float32)
    nans = np.isnan(cube).sum(axis=0)
    mask = (nans <= threshold) & (nans < len(NAMES))
    med = np.array([np.nanmedian(layer) for layer in cube], dtype=np.float32)
    filled = np.where(np.isnan(cube), med[:, None, None], cube)
    return model.predict(filled[:, mask].T), mask  # type: ignore[attr-defined]


def test_external_pipeline_without_nan_support_gets_the_median_policy(
    tmp_path: Path, make_cfg, store: TrackingConfig
) -> None:
    ds = holed_scene()
    write_store(ds, tmp_path / "features", meta={"feature_names": NAMES})
    model = logistic_pipeline()
    with pytest.raises(ValueError, match="NaN"):  # what used to become an "internal error"
        model.predict(np.full((1, len(NAMES)), np.nan))  # type: ignore[attr-defined]
    joblib.dump(model, tmp_path / "lr.joblib")
    cfg = make_cfg(
        f"predict.external.path={tmp_path}/lr.joblib",
        "predict.external.allow_pickle=true",
        f"predict.external.feature_names=[{','.join(NAMES)}]",
        "features.nan_threshold=1",
        "features.impute=median",
        "predict.block_size=512",
        "predict.progress=false",
    )
    out = stages.predict(cfg)
    want, mask = reference(ds, model, 1)
    nans = np.isnan(np.stack([ds[n].to_numpy() for n in NAMES])).sum(axis=0)
    assert (mask & (nans == 1)).sum() > 10_000  # many pixels really were filled
    assert ((nans == 2) & ~mask).sum() > 3_000  # and many masked for two NaN features
    with rasterio.open(out["path"]) as src:
        got, nodata, tags = src.read(1), src.nodata, src.tags()
    np.testing.assert_array_equal(got[mask], want)
    assert (got[~mask] == nodata).all()
    assert out["valid_pixels"] == int(mask.sum())
    medians = {n: float(np.nanmedian(ds[n].to_numpy())) for n in NAMES}
    assert json.loads(tags["impute_values"]) == medians
    policy = (tags["nan_threshold"], tags["impute"], tags["impute_source"])
    assert policy == ("1", "median", "scene")
    assert tags["impute_member"] == "lr"
    assert all(m.startswith("exact") for m in json.loads(tags["impute_method"]).values())


def test_declared_fill_values_are_used_as_given(
    tmp_path: Path, make_cfg, store: TrackingConfig
) -> None:
    ds = holed_scene()
    write_store(ds, tmp_path / "features", meta={"feature_names": NAMES})
    model = logistic_pipeline()
    joblib.dump(model, tmp_path / "lr.joblib")
    declared = {n: 0.25 * i for i, n in enumerate(NAMES)}
    (tmp_path / "stats.json").write_text(json.dumps(declared))
    cfg = make_cfg(
        f"predict.external.path={tmp_path}/lr.joblib",
        "predict.external.allow_pickle=true",
        f"predict.external.feature_names=[{','.join(NAMES)}]",
        f"predict.external.impute_stats={tmp_path}/stats.json",
        "features.nan_threshold=2",
        "features.impute=median",
        "predict.progress=false",
    )
    out = stages.predict(cfg)
    cube = np.stack([ds[n].to_numpy() for n in NAMES]).astype(np.float32)
    nans = np.isnan(cube).sum(axis=0)
    mask = (nans <= 2) & (nans < len(NAMES))
    fill = np.array([declared[n] for n in NAMES], np.float32)
    filled = np.where(np.isnan(cube), fill[:, None, None], cube)
    with rasterio.open(out["path"]) as src:
        got, tags = src.read(1), src.tags()
    np.testing.assert_array_equal(got[mask], model.predict(filled[:, mask].T))  # type: ignore[attr-defined]
    assert tags["impute_source"] == str(tmp_path / "stats.json")
    assert json.loads(tags["impute_values"]) == declared


def test_scene_statistics_exact_sampled_mean_and_constant() -> None:
    ds = holed_scene()
    cube = {n: ds[n].to_numpy().astype(np.float32) for n in NAMES}
    exact = scene_fill_values(ds, NAMES, "median", strip_rows=37)
    assert exact.values == {n: float(np.nanmedian(cube[n])) for n in NAMES}
    mean = scene_fill_values(ds, NAMES, "mean", strip_rows=100)
    for n in NAMES:
        assert mean.values[n] == pytest.approx(float(np.nanmean(cube[n].astype(np.float64))))
    # more valid values than the reservoir holds: a seeded sample, close in rank
    sampled = scene_fill_values(ds, NAMES, "median", max_values=20_000, seed=5)
    again = scene_fill_values(ds, NAMES, "median", max_values=20_000, seed=5, strip_rows=64)
    assert sampled.values == again.values  # the draw does not depend on the strips
    for n in NAMES:
        v = cube[n][~np.isnan(cube[n])]
        rank = (v < sampled.values[n]).mean()
        assert abs(rank - 0.5) < 0.02  # 4 standard errors of a 20,000-value sample median
        want = f"sample (median of a seeded random sample of 20000 of {v.size} valid values"
        assert sampled.methods[n].startswith(want)
    const = scene_fill_values(ds, NAMES, "constant", constant=-1.5)
    assert set(const.values.values()) == {-1.5}
    empty = ds.assign(B3=ds["B3"] * np.nan)
    no_b3 = r"\['B3'\] of scene 'x' have no valid pixel.*impute_stats"
    with pytest.raises(EmptyLayerError, match=no_b3):
        scene_fill_values(empty, NAMES, "median", scene="x")


def test_fill_step_fills_only_nan_and_keeps_the_final_estimator() -> None:
    model = logistic_pipeline()
    wrapped = with_fill(model, [1.0, 2.0, 3.0, 4.0, 5.0])
    assert wrapped[-1] is model[-1]  # type: ignore[index]
    X = np.array([[np.nan, 0.5, np.nan, 0.125, 0.25]], np.float32)
    want = np.array([[1.0, 0.5, 3.0, 0.125, 0.25]], np.float32)
    np.testing.assert_array_equal(FillNaN([1.0, 2.0, 3.0, 4.0, 5.0]).transform(X), want)
    assert wrapped.predict(X) == model.predict(want)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("content", "error", "match"),
    [
        (None, InputFileError, r"impute_stats='.*s\.json' does not exist: give a JSON file"),
        ("[1, 2]", ConfigError, r"holds a list, not a JSON object"),
        ('{"B2": 1}', ConfigError, r"lacks \['B3'\]: give a finite fill value"),
        ('{"B2": 1, "B3": NaN}', ConfigError, r"has no finite number for \['B3'\]"),
        ("{", InputFileError, r"^cannot read impute_stats="),
    ],
)
def test_declared_fill_values_are_checked(
    tmp_path: Path, content: str | None, error: type, match: str
) -> None:
    p = tmp_path / "s.json"
    if content is not None:
        p.write_text(content)
    with pytest.raises(error, match=match):
        declared_fill_values(p, ["B2", "B3"], "median")


def test_declared_values_and_a_constant_fill_are_refused_together(make_cfg) -> None:
    with pytest.raises(ConfigError, match=r"impute_stats='s\.json' gives fill values but "):
        make_cfg(
            "predict.external.impute_stats=s.json",
            "features.nan_threshold=1",
            "features.impute=constant",
        )
