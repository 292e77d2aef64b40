"""Honest supervised evaluation on the tiny scene, with a real SQLite MLflow store and a real
dask cluster: evaluate reuses train's cross-validation, area estimates are design-based only
from a separate validation sample, and labelled pixels dropped by NaN features are reported."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from geoensemble.app import stages
from geoensemble.app.config import AppConfig
from geoensemble.errors import ConfigError
from tests.integration.conftest import compose_tiny, reset_mlflow_uris

Z95 = 1.959964
SUPERVISED = [
    "model=logistic_regression",
    "ensemble=supervised",
    "ensemble.size=2",
    "ensemble.generations=1",
    "ensemble.keep=1",
    "ensemble.cv.folds=3",
    "ensemble.cv.block_size=16",
    "ensemble.cv.buffer=3",
    "ensemble.previews=false",
    "data.scene.n_points=240",
    "tracking.model_name=geo_lr",
]


@pytest.fixture(autouse=True)
def _fresh_mlflow_uris() -> Iterator[None]:
    reset_mlflow_uris()
    yield
    reset_mlflow_uris()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Callable[..., AppConfig], dict]:
    """The tiny scene labelled with 240 points, and a logistic-regression ensemble on it."""
    d = tmp_path_factory.mktemp("supervised")

    def make(*overrides: str) -> AppConfig:
        return compose_tiny(d, *SUPERVISED, *overrides)

    cfg = make()
    for stage in ("scene", "ingest", "featurize", "labels"):
        stages.STAGES[stage](cfg)
    reset_mlflow_uris()
    return make, stages.train(cfg)


def test_train_records_its_cross_validation(trained: tuple[Callable, dict]) -> None:
    _, train = trained
    cv = train["cv"]
    assert {k: cv[k] for k in ("folds", "block_size", "buffer", "seed")} == {
        "folds": 3,
        "block_size": 16,
        "buffer": 3,
        "seed": 42,
    }
    assert sum(cv["fold_sizes"]) == train["sample_pixels"] == 240
    assert len(cv["digest"]) == 64 and sum(cv["buffered"]) > 0
    # the labelled points are all on valid pixels
    assert train["labelled_dropped_nan"] == 0 and "dropped_nan" not in train


def test_evaluate_reuses_train_cv_even_with_other_settings(
    trained: tuple[Callable, dict], caplog: pytest.LogCaptureFixture
) -> None:
    make, train = trained
    caplog.set_level(logging.WARNING, logger="geoensemble")
    metrics = stages.evaluate(make("ensemble.cv.folds=5", "ensemble.cv.buffer=0"))
    champ = train["champion"]
    for key in ("accuracy", "kappa", "f1_macro"):
        assert metrics[key] == pytest.approx(champ[key], abs=1e-12), key
    assert metrics["cv"]["folds"] == 3 and metrics["cv"]["buffer"] == 3
    assert metrics["cv_from"] == "train.json"
    assert "ensemble.cv.folds=5" not in caplog.text  # the warning quotes key=value (train: x)
    assert "folds=5 (train: 3)" in caplog.text and "buffer=0 (train: 3)" in caplog.text


def test_without_a_validation_sample_areas_are_not_design_based(
    trained: tuple[Callable, dict],
) -> None:
    make, _ = trained
    cfg = make()
    metrics = stages.evaluate(cfg)
    assert metrics["design_based"] is False
    assert "not design-based" in metrics["area_estimates"]
    assert "data.validation.path" in metrics["area_estimates"]
    assert not {k for k in metrics if "ci95" in k or k.endswith(("_low", "_high", "_se"))}
    saved = json.loads((Path(cfg.paths.reports) / "evaluation.json").read_text())
    assert saved["design_based"] is False
    areas = json.loads((Path(cfg.paths.reports) / "plots/areas.json").read_text())
    assert areas and all(a["ci95"] is None for a in areas)


def _champion_map(cfg: AppConfig) -> tuple[np.ndarray, Any, Any]:
    """The champion's class at every pixel (-1 where the map has none), and the grid."""
    import mlflow

    from geoensemble.io.stack import grid_attrs, open_store, store_meta

    mlflow.set_tracking_uri(cfg.tracking.uri)
    mlflow.set_registry_uri(cfg.tracking.uri)
    # the version train recorded (a training by hand moves no @champion)
    report = json.loads((Path(cfg.paths.reports) / "train.json").read_text())
    model = mlflow.sklearn.load_model(report["champion"]["uri"])
    feats = open_store(cfg.paths.features)
    names = store_meta(cfg.paths.features)["feature_names"]
    cube = np.stack([feats[n].to_numpy() for n in names]).astype(np.float32)
    valid = ~np.isnan(cube).any(axis=0)
    out = np.full(valid.shape, -1, dtype=np.int64)
    out[valid] = model.predict(cube[:, valid].T)
    return out, *grid_attrs(feats)


def _write_points(
    path: Path, rows: np.ndarray, cols: np.ndarray, names: list[str], crs, tr
) -> None:
    import geopandas as gpd
    from shapely.geometry import Point

    pts = [Point(*(tr @ (c + 0.5, r + 0.5))) for r, c in zip(rows, cols, strict=True)]
    gpd.GeoDataFrame({"class_name": names}, geometry=pts, crs=crs).to_file(path)


def test_a_stratified_validation_sample_gives_design_based_estimates(
    trained: tuple[Callable, dict], tmp_path: Path
) -> None:
    make, train = trained
    cfg = make()
    mapped, crs, tr = _champion_map(cfg)
    with rasterio.open(cfg.data.truth) as src:
        truth, tags = src.read(1), src.tags()
    with rasterio.open(Path(cfg.paths.labels) / "labels.tif") as src:
        training = src.read(1) != 255
    # 12 pixels drawn at random in each class of the champion's map, none a training label
    rng = np.random.default_rng(3)
    rows, cols = [], []
    for c in np.unique(mapped[mapped >= 0]):
        r, k = np.nonzero((mapped == c) & ~training & (truth != 255))
        pick = rng.choice(r.size, size=min(12, r.size), replace=False)
        rows += r[pick].tolist()
        cols += k[pick].tolist()
    rr, cc = np.array(rows), np.array(cols)
    ref_names = [tags[f"CLASS_{truth[r, c]}"] for r, c in zip(rr, cc, strict=True)]
    _write_points(tmp_path / "validation.geojson", rr, cc, ref_names, crs, tr)

    metrics = stages.evaluate(
        make(
            f"data.validation.path={tmp_path}/validation.geojson",
            "data.validation.design=stratified",
        )
    )
    # Olofsson et al. (2014) by hand: strata = map classes, weights = their exact map shares
    code_of = {v: int(k) for k, v in train["classes"].items()}
    strata = np.unique(mapped[mapped >= 0])
    W = np.array([(mapped == c).sum() for c in strata]) / (mapped >= 0).sum()
    ref = np.array([code_of[n] for n in ref_names])
    m = mapped[rr, cc]
    overall, var = 0.0, 0.0
    for w, c in zip(W, strata, strict=True):
        n_i = (m == c).sum()
        u = ((m == c) & (ref == c)).sum() / n_i
        overall += w * u
        var += w**2 * u * (1 - u) / (n_i - 1)
    assert metrics["design_based"] is True and metrics["validation_design"] == "stratified"
    assert metrics["validation_pixels"] == rr.size
    assert metrics["area_weighted_accuracy"] == pytest.approx(overall, abs=1e-12)
    assert metrics["area_weighted_accuracy_ci95"] == pytest.approx(Z95 * np.sqrt(var), abs=1e-9)
    pixel_area = abs(tr.a * tr.e)
    total = (mapped >= 0).sum() * pixel_area
    for name, code in code_of.items():
        share = sum(
            w * ((m == c) & (ref == code)).sum() / (m == c).sum()
            for w, c in zip(W, strata, strict=True)
        )
        got = metrics["areas"][name]
        assert got["estimated_area"] == pytest.approx(share * total, rel=1e-9), name
        assert got["mapped_area"] == pytest.approx((mapped == code).sum() * pixel_area)
        assert got["ci95"] is not None
    # accuracy and kappa stay the held-out figures of the training labels
    assert metrics["accuracy"] == pytest.approx(train["champion"]["accuracy"], abs=1e-12)


def test_a_drawn_validation_sample_once_labelled_is_what_evaluate_assesses(
    trained: tuple[Callable, dict], tmp_path: Path
) -> None:
    """draw_validation_sample on the champion's map (training labels excluded), half of the
    points labelled from the truth raster (the rest left blank): evaluate takes the labelled
    points as a stratified sample, design-based."""
    import geopandas as gpd

    import geoensemble as ge

    make, _ = trained
    cfg = make()
    mapped, crs, tr = _champion_map(cfg)
    with rasterio.open(
        tmp_path / "champion.tif",
        "w",
        driver="GTiff",
        width=mapped.shape[1],
        height=mapped.shape[0],
        count=1,
        dtype="uint8",
        nodata=255,
        crs=crs,
        transform=tr,
    ) as dst:
        dst.write(np.where(mapped >= 0, mapped, 255).astype(np.uint8), 1)
    labels = Path(cfg.paths.labels) / "labels.tif"
    out, _ = ge.draw_validation_sample(
        tmp_path / "champion.tif",
        tmp_path / "sample.gpkg",
        target_se=0.05,
        min_per_class=10,
        exclude=labels,
        seed=1,
    )
    g = gpd.read_file(out, layer="validation")
    with rasterio.open(labels) as src:
        assert (src.read(1)[g["row"], g["col"]] == 255).all()  # no training label
    with rasterio.open(cfg.data.truth) as src:
        truth, tags = src.read(1), src.tags()
    on_truth = truth[g["row"], g["col"]] != 255
    half = on_truth & (np.arange(len(g)) % 2 == 0)
    g.loc[half, "reference"] = [
        tags[f"CLASS_{truth[r, c]}"] for r, c in zip(g["row"][half], g["col"][half], strict=True)
    ]
    g.to_file(out, layer="validation", driver="GPKG")

    metrics = stages.evaluate(
        make(
            f"data.validation.path={out}",
            "data.validation.attribute=reference",
            "data.validation.design=stratified",
        )
    )
    assert metrics["design_based"] is True and metrics["validation_design"] == "stratified"
    assert metrics["validation_pixels"] == int(half.sum()) > 0  # blank references left out
    assert 0 < metrics["area_weighted_accuracy"] <= 1
    assert metrics["area_weighted_accuracy_ci95"] > 0


def test_a_validation_sample_that_overlaps_training_labels_is_refused(
    trained: tuple[Callable, dict], tmp_path: Path
) -> None:
    make, _ = trained
    cfg = make()
    _, crs, tr = _champion_map(cfg)
    with rasterio.open(Path(cfg.paths.labels) / "labels.tif") as src:
        r, c = np.nonzero(src.read(1) != 255)
    _write_points(tmp_path / "v.geojson", r[:5], c[:5], ["water"] * 5, crs, tr)
    with pytest.raises(ConfigError, match=r"5 of its 5 pixels are also training labels"):
        stages.evaluate(make(f"data.validation.path={tmp_path}/v.geojson"))


def test_labelled_pixels_dropped_by_nan_features_are_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """B5 is no-data over the west half of the forest and over all of the snow."""
    from geoensemble.classes import SCENE_CLASSES
    from geoensemble.io.labels import load_labels
    from geoensemble.io.stack import open_store, store_meta

    cfg = compose_tiny(tmp_path, *SUPERVISED, "tracking.model_name=geo_nan")
    stages.STAGES["scene"](cfg)
    code = {v[0]: k for k, v in SCENE_CLASSES.items()}
    with rasterio.open(cfg.data.truth) as src:
        truth = src.read(1)
    with rasterio.open(Path(cfg.data.path) / "B5.TIF", "r+") as dst:
        b5 = dst.read(1)
        west = np.arange(truth.shape[1])[None, :] < truth.shape[1] // 2
        b5[((truth == code["forest"]) & west) | (truth == code["snow"])] = dst.nodata
        dst.write(b5, 1)
    for stage in ("ingest", "featurize", "labels"):
        stages.STAGES[stage](cfg)
    caplog.set_level(logging.WARNING, logger="geoensemble")
    reset_mlflow_uris()
    train = stages.train(cfg)

    labels_dir = Path(cfg.paths.labels)
    with rasterio.open(labels_dir / "labels.tif") as src:
        lab = src.read(1)
    names = load_labels(labels_dir).classes
    feats = open_store(cfg.paths.features)
    nan_b5 = np.isnan(feats["B5"].to_numpy())
    labelled = lab != 255
    want = {
        names[int(c)]: {
            "dropped": int((nan_b5 & (lab == c)).sum()),
            "labelled": int((lab == c).sum()),
        }
        for c in np.unique(lab[labelled & nan_b5])
    }
    assert (
        set(want) == {"forest", "snow"}
        and 0 < want["forest"]["dropped"] < want["forest"]["labelled"]
    )
    dropped = train["dropped_nan"]
    assert dropped["classes"] == want
    assert dropped["pixels"] == train["labelled_dropped_nan"] == int((labelled & nan_b5).sum())
    assert dropped["labelled"] == int(labelled.sum())
    assert train["sample_pixels"] == dropped["labelled"] - dropped["pixels"]
    assert dropped["classes_lost"] == ["snow"]
    assert "snow" in train["classes"].values()  # the class keeps its name in the report
    nan_features = [
        n
        for n in store_meta(cfg.paths.features)["feature_names"]
        if np.isnan(feats[n].to_numpy()[labelled & nan_b5]).all()
    ]
    assert set(dropped["nan_in"]) == set(nan_features) and "B5" in nan_features
    assert f"features.nan_threshold={len(nan_features)}" in dropped["fix"]
    assert "features.impute=median" in dropped["fix"]
    line = next(
        r.getMessage() for r in caplog.records if "labelled pixels dropped" in r.getMessage()
    )
    assert f"labelled pixels dropped: {dropped['pixels']} of {dropped['labelled']}" in line
    assert "snow: {0} of {0} (the whole class)".format(want["snow"]["labelled"]) in line
    assert f"forest: {want['forest']['dropped']} of {want['forest']['labelled']};" in line
    assert "Fix: set features.nan_threshold=" in line

    metrics = stages.evaluate(cfg)
    assert metrics["labelled_dropped_nan_pixels"] == dropped["pixels"]
    assert metrics["labelled_dropped_nan"]["classes_lost"] == ["snow"]


def test_a_validation_file_without_the_attribute_names_the_validation_key(
    trained: tuple[Callable, dict], tmp_path: Path
) -> None:
    make, _ = trained
    cfg = make()
    _, crs, tr = _champion_map(cfg)
    _write_points(tmp_path / "v.geojson", np.array([1]), np.array([1]), ["water"], crs, tr)
    with pytest.raises(ConfigError, match=r"data\.validation\.attribute='cover' is not a field"):
        stages.evaluate(
            make(f"data.validation.path={tmp_path}/v.geojson", "data.validation.attribute=cover")
        )
