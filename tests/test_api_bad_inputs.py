"""Bad inputs to the public API: the stages' error classes, one line naming the argument (not
the config key) and the fix, and nothing written where nothing should be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from sklearn.cluster import MiniBatchKMeans
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import geoensemble as ge
from geoensemble.errors import (
    ConfigError,
    FeatureMismatchError,
    GeoEnsembleError,
    GridMismatchError,
    InputFileError,
    LayerNotFoundError,
    OutputError,
)
from geoensemble.synthetic import write_scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("api_bad") / "raw"
    write_scene(raw, width=64, height=48, n_points=20)
    return raw / "scene"


@pytest.fixture(scope="module")
def feats(scene: Path) -> xr.Dataset:
    ds = ge.load_array(scene)
    return ge.featurize(ds, sensor="landsat8", indices=["ndvi"])


def _one_line(exc: pytest.ExceptionInfo[GeoEnsembleError], *parts: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    for p in parts:
        assert p in msg, msg
    for key in ("data.", "features.", "model.", "ensemble."):
        assert f" {key}" not in f" {msg}", msg  # argument names, not config keys


@pytest.mark.parametrize(
    ("kwargs", "error", "parts"),
    [
        ({"path": "missing"}, InputFileError, ["missing does not exist", "set path"]),
        (
            {"layers": [{"name": "red", "colour": 1}]},
            ConfigError,
            ["layers[0] has unknown key(s) ['colour']", "file"],
        ),
        ({"layers": [{"file": "B4"}]}, ConfigError, ["layers[0]", "has no name"]),
        (
            {"layers": [ge.LayerSpec("red", file="B4", band=0)]},
            ConfigError,
            ["layers[0].band=0 is invalid", "band number >= 1"],
        ),
        (
            {"layers": [ge.LayerSpec("red", file="B9")]},
            LayerNotFoundError,
            ["layers[0] (layer 'red'): nothing matches file 'B9'", "B1.TIF", "Fix layers[0].file"],
        ),
        ({"align": "warp"}, ConfigError, ["align='warp' is unknown", "reproject"]),
        ({"chunks": 4}, ConfigError, ["chunks=4 is out of range", "16"]),
    ],
)
def test_load_array_names_the_argument_and_the_fix(
    scene: Path, kwargs: dict, error: type, parts: list[str]
) -> None:
    path = kwargs.pop("path", scene)
    with pytest.raises(error) as exc:
        ge.load_array(path, **kwargs)
    _one_line(exc, *parts)


def test_load_array_takes_a_glob_and_a_strict_grid_names_the_layer(
    scene: Path, tmp_path: Path
) -> None:
    ds = ge.load_array(scene / "B[45].TIF")
    assert list(ds.data_vars) == ["B4", "B5"]
    assert ds.rio.crs.to_epsg() == 32613 and ds["B4"].dtype == np.float32
    import shutil

    import rasterio
    from rasterio.enums import Resampling

    shutil.copy(scene / "B4.TIF", tmp_path / "B4.TIF")
    with rasterio.open(scene / "B5.TIF") as src:  # the same band on a coarser grid
        prof = src.profile
        data = src.read(
            out_shape=(1, src.height // 2, src.width // 2), resampling=Resampling.average
        )
        prof.update(
            width=src.width // 2,
            height=src.height // 2,
            transform=src.transform * src.transform.scale(2),
        )
    with rasterio.open(tmp_path / "B5.TIF", "w", **prof) as dst:
        dst.write(data)
    with pytest.raises(GridMismatchError) as exc:
        ge.load_array(tmp_path)
    assert "B5" in str(exc.value) and "align=reproject" in str(exc.value)
    ok = ge.load_array(tmp_path, align="reproject", reference="B4")
    assert ok["B5"].shape == ok["B4"].shape


@pytest.mark.parametrize(
    ("kwargs", "error", "parts"),
    [
        ({"indices": ["evi"]}, ConfigError, ["indices has unknown index 'evi'", "ndvi"]),
        ({"sensor": "sentinel9"}, ConfigError, ["sensor='sentinel9' is unknown", "landsat8"]),
        ({"bands": ["nir", "tir"]}, LayerNotFoundError, ["layer 'tir'", "sensor"]),
        ({"bands": "B4"}, ConfigError, ["bands=['B4']"]),
        ({"derived": {"a/b": ["nir", "red"]}}, ConfigError, ["derived.a/b", "not a safe name"]),
        ({"custom": [lambda s: {}]}, ConfigError, ["custom[0]", "lambda", "top level"]),
        ({"custom": [{"_target_": "os.system"}]}, ConfigError, ["custom[0]._target_", "os"]),
    ],
)
def test_featurize_names_the_argument_and_the_fix(
    scene: Path, kwargs: dict, error: type, parts: list[str]
) -> None:
    ds = ge.load_array(scene)
    with pytest.raises(error) as exc:
        ge.featurize(ds, sensor=kwargs.pop("sensor", "landsat8"), **kwargs)
    _one_line(exc, *parts)


def test_featurize_runs_a_custom_function_passed_as_an_object(scene: Path) -> None:
    from geoensemble.features.custom import savi

    feats = ge.featurize(ge.load_array(scene), sensor="landsat8", bands=[], custom=[savi])
    assert list(feats.data_vars) == ["savi"]


KMEANS = MiniBatchKMeans(n_init=1, random_state=0)


@pytest.mark.parametrize(
    ("estimator", "kwargs", "error", "parts"),
    [
        ("kmeans", {}, ConfigError, ["estimator='kmeans' is not a scikit-learn estimator"]),
        (MiniBatchKMeans, {}, ConfigError, ["is a class", "MiniBatchKMeans()"]),
        (KMEANS, {"size": 0}, ConfigError, ["size=0 is out of range", ">= 1"]),
        (KMEANS, {"keep": 5, "size": 2}, ConfigError, ["keep=5 is out of range", "raise size"]),
        (KMEANS, {"sample": 5}, ConfigError, ["sample=5 is out of range", ">= 10"]),
        (
            MiniBatchKMeans(n_clusters=6),
            {"space": {"n_clusters": [4, 6]}},
            ConfigError,
            ["the estimator's n_clusters=6 is also searched by space['n_clusters']", "default"],
        ),
        (
            KMEANS,
            {"space": {"n_clusters": [4, 9999]}, "sample": 100},
            ConfigError,
            ["space.n_clusters=9999 needs at least 9999 pixels", "lower space.n_clusters"],
        ),
        (
            Pipeline([("scale", StandardScaler()), ("km", KMEANS)]),
            {"space": {"pca__n_components": [2]}},
            ConfigError,
            ["space['pca__n_components']", "no step 'pca'"],
        ),
        (KMEANS, {"criterion": "kappa"}, ConfigError, ["criterion", "kappa", "not computed"]),
        (RandomForestClassifier(), {}, ConfigError, ["classifier, which needs labels", "pass y"]),
        (KMEANS, {"client": "tcp://x"}, ConfigError, ["not a dask.distributed Client"]),
        (
            KMEANS,
            {"nan_threshold": 2},
            ConfigError,
            ["nan_threshold=2 lets pixels with NaN features", "set impute=median"],
        ),
        (KMEANS, {"impute": "mode"}, ConfigError, ["impute='mode' is unknown", "median"]),
    ],
)
def test_fit_ensemble_names_the_argument_and_the_fix(
    feats: xr.Dataset, estimator: object, kwargs: dict, error: type, parts: list[str]
) -> None:
    kwargs = {"size": 2, "sample": 500, **kwargs}
    with pytest.raises(error) as exc:
        ge.fit_ensemble(estimator, feats, **kwargs)
    _one_line(exc, *parts)


def test_fit_ensemble_refuses_labels_off_the_grid(feats: xr.Dataset) -> None:
    y = xr.DataArray(np.zeros((3, 3)), dims=("y", "x"))
    with pytest.raises(GridMismatchError) as exc:
        ge.fit_ensemble(RandomForestClassifier(n_estimators=5), feats, y=y)
    _one_line(exc, "y has shape (3, 3)", "same grid")


def test_supervised_members_fit_on_labels_and_predict_probabilities(
    feats: xr.Dataset, tmp_path: Path
) -> None:
    small = xr.DataArray(np.ones(feats["ndvi"].shape), dims=("y", "x"))
    with pytest.raises(ConfigError) as exc:  # 4 blocks of 32 px: fewer than the 5 CV folds
        ge.fit_ensemble(RandomForestClassifier(n_estimators=5), feats, y=small)
    _one_line(exc, "block(s) of block_size=32 px, fewer than n_folds=5", "pass cv=SpatialBlockCV(")
    with pytest.raises(ConfigError) as exc:
        ge.fit_ensemble(RandomForestClassifier(n_estimators=5), feats, y=small, cv=5)
    _one_line(exc, "cv=5 is not a splitter", "SpatialBlockCV(5, block_size=32)")
    write_scene(tmp_path, width=160, height=128, n_points=20)
    feats = ge.featurize(ge.load_array(tmp_path / "scene"), sensor="landsat8", indices=["ndvi"])
    h, w = feats.sizes["y"], feats.sizes["x"]
    codes = (feats["ndvi"].fillna(0).values > 0.3).astype(float) + 1.0
    codes[::2, :] = np.nan  # half the rows unlabelled
    y = xr.DataArray(codes, dims=("y", "x"))
    search = {"space": {"max_depth": [2, 3]}, "size": 2, "keep": 2, "criterion": "log_loss"}
    ens = ge.fit_ensemble(RandomForestClassifier(n_estimators=5), feats, y=y, **search)
    assert set(ens.scores.columns) >= {"log_loss", "kappa", "max_depth"}
    # the folds of a splitter of one's own (here smaller blocks) score the same members
    # differently
    cv = ge.SpatialBlockCV(3, block_size=8, random_state=0)
    own = ge.fit_ensemble(RandomForestClassifier(n_estimators=5), feats, y=y, cv=cv, **search)
    assert list(own.scores["max_depth"]) == list(ens.scores["max_depth"])
    assert not np.allclose(own.scores["log_loss"], ens.scores["log_loss"])
    (out,) = ge.predict_many(ens, feats, outputs=("vote", "probabilities"))
    assert out["vote"].shape == (h, w) and out["probabilities"].sizes["class"] == 2
    assert set(np.unique(out["vote"].values)) <= {1, 2, 255}


def test_predict_many_lists_missing_features_and_write_map_refuses_a_foreign_file(
    feats: xr.Dataset, tmp_path: Path
) -> None:
    ens = ge.fit_ensemble(KMEANS, feats, space={"n_clusters": [3, 4]}, size=2, sample=500)
    with pytest.raises(FeatureMismatchError) as exc:
        ge.predict_many(ens, [feats.drop_vars("ndvi")])
    _one_line(exc, "scenes[0] lacks feature(s) ['ndvi']")
    with pytest.raises(ConfigError, match=r"outputs=\('median',\): choose among"):
        ge.predict_many(ens, [feats], outputs=("median",))
    vote = ens.predict(feats)
    foreign = tmp_path / "vote.tif"
    foreign.write_text("a user's file")
    with pytest.raises(OutputError):
        ge.write_map(vote, foreign)
    assert foreign.read_text() == "a user's file"  # not ours: left alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vote.tif"]  # no temporary left
    with pytest.raises(ConfigError, match="compress='jpeg' is unknown"):
        ge.write_map(vote, tmp_path / "x.tif", compress="jpeg")
    with pytest.raises(ConfigError, match="has no grid"):
        ge.write_map(xr.DataArray(vote.values, dims=("y", "x")), tmp_path / "x.tif")
    n = int(vote.values[vote.values != 255].max()) + 1
    with pytest.raises(ConfigError, match=r"class_names lacks class code\(s\) \[1, 2"):
        ge.write_map(vote, tmp_path / "partial.tif", class_names=["water"])
    assert not (tmp_path / "partial.tif").exists() and n >= 3
    path = ge.write_map(
        vote,
        tmp_path / "named.tif",
        class_names=["water", "forest", "rock", "snow"],
        colors=["blue", "green", (128, 128, 128), "white"],
    )
    import rasterio

    with rasterio.open(path) as src:
        assert src.colormap(1)[1][:3] == (0, 128, 0)
        assert '"1": "forest"' in src.tags()["class_names"]
        np.testing.assert_array_equal(src.read(1), vote.values)


@pytest.mark.parametrize("path", [123, None, ["scene"]])
def test_load_array_of_something_that_is_no_path_is_one_clear_error(path: object) -> None:
    with pytest.raises(ConfigError, match=r"path=.* is not a path: give a folder of GeoTiffs"):
        ge.load_array(path)  # type: ignore[arg-type]


def test_searched_names_come_back_as_given_and_nan_features_are_imputed(
    feats: xr.Dataset,
) -> None:
    """``kmeans__n_clusters`` stays ``kmeans__n_clusters`` in the scores; with nan_threshold
    and impute, pixels with a NaN feature are sampled and filled by each member."""
    holed = feats.copy()
    nd = holed["ndvi"].values.copy()
    nd[:, ::3] = np.nan  # a third of the columns lack NDVI
    holed["ndvi"] = (holed["ndvi"].dims, nd)
    pipe = Pipeline([("scale", StandardScaler()), ("kmeans", MiniBatchKMeans(n_init=1))])
    kwargs = {"space": {"kmeans__n_clusters": [3, 4]}, "size": 2, "generations": 1, "keep": 1}
    strict = ge.fit_ensemble(pipe, holed, sample=5000, **kwargs)
    filled = ge.fit_ensemble(pipe, holed, sample=5000, nan_threshold=1, impute="median", **kwargs)
    assert "kmeans__n_clusters" in strict.scores.columns
    assert set(strict.scores["kmeans__n_clusters"]) <= {3, 4}
    n_nan = sum(np.isnan(holed[v].values).astype(int) for v in holed.data_vars)
    assert strict.sample_pixels == int((n_nan == 0).sum())  # only pixels with every feature
    assert filled.sample_pixels == int((n_nan <= 1).sum())  # NDVI imputed where it lacks
    assert filled.sample_pixels > 1.4 * strict.sample_pixels
    assert filled.params["features.impute"] == "median"
    step = filled.best.pipeline.steps[0][1]
    assert type(step).__name__ == "SimpleImputer" and step.strategy == "median"


def test_write_map_colours_classes_by_name_as_the_stage_does(tmp_path: Path) -> None:
    """Water is water's blue whatever its code (it came out brown by position)."""
    import rasterio

    from geoensemble.classes import class_colour

    arr = np.array([[0, 1], [1, 255]], dtype=np.uint8)
    da = xr.DataArray(arr, dims=("y", "x"), coords={"y": [15.0, 5.0], "x": [5.0, 15.0]})
    da = da.rio.write_crs("EPSG:32613").rio.write_nodata(255, encoded=False)
    out = ge.write_map(da, tmp_path / "m.tif", class_names=["cropland", "water"])
    with rasterio.open(out) as src:
        cmap = src.colormap(1)
    assert cmap[1][:3] == class_colour("water") == (31, 120, 180)  # blue
    assert cmap[0][:3] == class_colour("cropland") == (240, 205, 40)  # yellow
    assert cmap[0][:3] != cmap[1][:3]


def test_a_class_map_carries_its_exact_statistics_so_readers_write_nothing(
    tmp_path: Path,
) -> None:
    """The .aux.xml holds the class names, the exact statistics and histogram; rasterio's
    stats (GDAL's, as gdalinfo -stats and QGIS ask) find them and leave the file alone."""
    import rasterio

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 4, (300, 200)).astype(np.uint8)
    arr[:20] = 255
    da = xr.DataArray(
        arr, dims=("y", "x"), coords={"y": np.arange(300.0)[::-1] * 30, "x": np.arange(200.0) * 30}
    )
    da = da.rio.write_crs("EPSG:32613").rio.write_nodata(255, encoded=False)
    out = ge.write_map(da, tmp_path / "m.tif", class_names=["a", "b", "c", "d"])
    aux = tmp_path / "m.tif.aux.xml"
    before = aux.read_bytes()
    assert b"<Category>d</Category>" in before and b"<HistCounts>" in before
    valid = arr[arr != 255].astype(float)
    with rasterio.open(out) as src:
        (st,) = src.stats(approx=False)
    assert (st.min, st.max) == (0, 3)
    assert st.mean == pytest.approx(valid.mean()) and st.std == pytest.approx(valid.std())
    assert aux.read_bytes() == before
    counts = np.bincount(valid.astype(int), minlength=256)
    text = before.decode()
    assert text.split("<HistCounts>")[1].split("<")[0] == "|".join(map(str, counts))
    assert 'key="STATISTICS_VALID_PERCENT">' + repr(100 * valid.size / arr.size) in text
