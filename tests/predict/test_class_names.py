"""Class names end to end: from polygons with string classes through labels, training and
prediction to every output (GeoTiff tags, colour table, .aux.xml, .qml, PNG legend, the MLflow
predict run); from classes.json for a model registered without names; from an external
model's string classes."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import geopandas as gpd
import mlflow
import numpy as np
import rasterio
from shapely.geometry import box

from geoensemble import plots
from geoensemble.app import stages
from geoensemble.app.config import TrackingConfig
from geoensemble.classes import CLASS_NAMES_TAG, class_colour
from geoensemble.io.stack import write_store
from tests.predict.conftest import NAMES, make_scene, register, valid_table

# developed, forest, water: the classes of the polygons, coded by sorted name.
CLASSES = {0: "developed", 1: "forest", 2: "water"}


def hex_of(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def assert_map_names(tif: Path, names: dict[int, str]) -> None:
    """Every output of a class map carries ``names`` in the class name's own colour."""
    with rasterio.open(tif) as src:
        assert json.loads(src.tags()["class_names"]) == {str(k): v for k, v in names.items()}
        cmap = src.colormap(1)
    for code, name in names.items():
        assert cmap[code][:3] == class_colour(name), name
    aux = Path(f"{tif}.aux.xml").read_text()
    cats = [c.split("</Category>")[0] for c in aux.split("<Category>")[1:]]
    assert cats == [names.get(i, "") for i in range(max(names) + 1)]
    qml = tif.with_suffix(".qml").read_text()
    for code, name in names.items():
        assert f'value="{code}" color="{hex_of(class_colour(name))}"' in qml
        assert f'label="{name}"' in qml
    legend = plots.legend_of(tif.with_suffix(".png"))
    assert [(e["code"], e["name"], e["colour"]) for e in legend] == [
        (c, n, hex_of(class_colour(n))) for c, n in sorted(names.items())
    ]


def polygons(tmp_path: Path) -> Path:
    """Four 20 x 20 px squares in the scene's top-left corner, with string classes."""
    x0, y0 = 440_000.0, 4_480_000.0  # the scene's corner (conftest.TRANSFORM)
    squares = [((0, 0), "water"), ((30, 0), "forest"), ((0, 30), "developed"), ((30, 30), "forest")]
    geoms = [
        box(x0 + 30 * c, y0 - 30 * (r + 20), x0 + 30 * (c + 20), y0 - 30 * r)
        for (c, r), _ in squares
    ]
    gdf = gpd.GeoDataFrame({"class": [n for _, n in squares]}, geometry=geoms, crs="EPSG:32613")
    path = tmp_path / "landcover.geojson"
    gdf.to_file(path, engine="pyogrio")
    return path


def test_polygon_class_names_reach_every_output_through_the_stages(
    tmp_path: Path, make_cfg, store: TrackingConfig
) -> None:
    ds = make_scene(150, 170)
    ds = ds.fillna(0.0)  # labelled pixels everywhere valid: the names must not vanish
    write_store(ds, tmp_path / "features", meta={"feature_names": NAMES})
    labels = polygons(tmp_path)
    cfg = make_cfg(
        "model=random_forest",
        "ensemble.metric=kappa",
        "ensemble.direction=maximize",
        f"data.labels.path={labels}",
        "data.labels.attribute=class",
        "data.truth=null",
        "ensemble.size=2",
        "ensemble.generations=1",
        "ensemble.previews=false",
        "ensemble.cv.folds=2",
        "ensemble.cv.block_size=25",
        "features.sample.size=2000",
        "features.steps.pca=null",
        "predict.progress=false",
    )
    stages.labels(cfg)
    assert json.loads((tmp_path / "labels/classes.json").read_text())["classes"] == {
        str(k): v for k, v in CLASSES.items()
    }
    rep = stages.train(cfg)
    assert rep["classes"] == {str(k): v for k, v in CLASSES.items()}
    tags = mlflow.MlflowClient().get_model_version("geoensemble", rep["champion"]["version"]).tags
    assert json.loads(tags[CLASS_NAMES_TAG]) == {str(k): v for k, v in CLASSES.items()}
    # The model alone carries the names: classes.json is gone before predicting.
    (tmp_path / "labels/classes.json").unlink()
    cfg.predict.model_uri = "train_report"  # the version train registered (no @champion by hand)
    out = stages.predict(cfg)
    tif = Path(out["path"])
    assert_map_names(tif, CLASSES)
    with rasterio.open(tif) as src:
        assert src.tags()["class_source"].startswith("model models:/geoensemble")
    run = mlflow.MlflowClient().get_run(out["run_id"])
    assert json.loads(run.data.tags["class_names"]) == {str(k): v for k, v in CLASSES.items()}
    legend = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(run_id=out["run_id"], dst_path=str(tmp_path / "a"))
        )
        .joinpath("maps/legend.json")
        .read_text()
    )
    assert [(c["code"], c["name"]) for c in legend["classes"]] == sorted(CLASSES.items())


def test_a_model_registered_without_names_is_named_from_classes_json(
    tmp_path: Path, make_cfg, store: TrackingConfig
) -> None:
    from sklearn.ensemble import RandomForestClassifier

    write_store(make_scene(), tmp_path / "features", meta={"feature_names": NAMES})
    X, _ = valid_table(make_scene(), NAMES)
    y = (X[:, 0] > 0).astype(int) + (X[:, -1] > 0.5).astype(int)  # codes 0, 1, 2
    register(store, [RandomForestClassifier(5, random_state=0).fit(X, y)], NAMES)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels/classes.json").write_text(
        json.dumps({"target": "classes", "classes": {str(k): v for k, v in CLASSES.items()}})
    )
    out = stages.predict(make_cfg("predict.progress=false"))
    assert_map_names(Path(out["path"]), CLASSES)
    # Labels naming other codes than the model's do not name it: neutral names instead.
    (tmp_path / "labels/classes.json").write_text(
        json.dumps({"target": "classes", "classes": {"0": "developed", "1": "water"}})
    )
    out = stages.predict(make_cfg("predict.progress=false", "predict.overwrite=true"))
    with rasterio.open(out["path"]) as src:
        assert json.loads(src.tags()["class_names"]) == {
            "0": "class 0",
            "1": "class 1",
            "2": "class 2",
        }
        assert src.tags()["class_source"] == "none"


def test_string_classes_of_an_external_model_reach_every_output(
    tmp_path: Path, make_cfg, store: TrackingConfig
) -> None:
    from sklearn.ensemble import RandomForestClassifier

    write_store(make_scene(), tmp_path / "features", meta={"feature_names": NAMES})
    X, _ = valid_table(make_scene(), NAMES)
    y = np.where(X[:, -1] > 0.5, "snow", np.where(X[:, 0] > 0, "grassland", "open water"))
    model = RandomForestClassifier(5, random_state=0).fit(X, y)
    path = tmp_path / "external.pkl"
    path.write_bytes(pickle.dumps(model))
    out = stages.predict(
        make_cfg(
            f"predict.external.path={path}",
            "predict.external.allow_pickle=true",
            f"predict.external.feature_names=[{','.join(NAMES)}]",
            "predict.progress=false",
        )
    )
    names = {0: "grassland", 1: "open water", 2: "snow"}
    assert_map_names(Path(out["path"]), names)
    assert class_colour("open water") == class_colour("water") != class_colour("snow")
