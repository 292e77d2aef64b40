"""Vote, agreement and probabilities on a hand-made 3-member case; class codes and dtypes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from rasterio.crs import CRS
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsClassifier

from geoensemble.app.config import PredictOutputsConfig
from geoensemble.io.profiles import class_dtype
from geoensemble.io.stack import set_grid
from geoensemble.predict import (
    BlockPredictor,
    ClassScheme,
    LoadedMember,
    output_keys,
    predict_scene,
    vote,
)
from tests.predict.conftest import TRANSFORM

# Pixel value v in 0..4 -> each member's class (1-nearest-neighbour lookups, so exact).
A = [0, 1, 2, 0, 0]
B = [0, 1, 1, 2, 1]
C = [0, 2, 1, 2, 2]
VOTE = [0, 1, 1, 2, 0]  # pixel 4 is a three-way tie: the first member's class wins
AGREE = [100, 67, 67, 67, 33]


def lookup(labels: list) -> KNeighborsClassifier:
    x = np.repeat(np.arange(len(labels)), 2)[:, None]  # two samples per class
    return KNeighborsClassifier(n_neighbors=1).fit(x, np.repeat(np.array(labels), 2))


def members(*label_sets: list) -> list[LoadedMember]:
    return [
        LoadedMember(f"m{i}", lookup(ls), ["v"], f"test:m{i}") for i, ls in enumerate(label_sets)
    ]


def tiny_scene(values: np.ndarray) -> xr.Dataset:
    ds = xr.Dataset({"v": (("y", "x"), values.astype(np.float32))})
    return set_grid(ds, CRS.from_epsg(32613), TRANSFORM)


def test_vote_and_agreement_of_three_members_by_hand() -> None:
    ms = members(A, B, C)
    keys = output_keys(ms, PredictOutputsConfig(probabilities=True))
    assert keys == [
        "member:0",
        "member:1",
        "member:2",
        "vote",
        "agreement",
        "probabilities",
        "max_probability",
    ]
    pred = BlockPredictor(ms, ["v"], ClassScheme.of(ms), keys)
    out = pred.predict_table(np.arange(5, dtype=np.float32)[:, None])
    np.testing.assert_array_equal(out["member:1"], B)
    np.testing.assert_array_equal(out["vote"], VOTE)
    np.testing.assert_array_equal(out["agreement"], AGREE)
    # Mean of one-hot probabilities: pixel 1 votes (1, 1, 2) -> 67 % class 1, 33 % class 2.
    np.testing.assert_array_equal(out["probabilities"][:, 1], [0, 67, 33])
    np.testing.assert_array_equal(out["max_probability"], AGREE)


def test_vote_function_ties_go_to_the_earliest_member() -> None:
    winner, count = vote(np.array([[3, 5, 7], [4, 5, 8], [4, 6, 9]]))
    np.testing.assert_array_equal(winner, [4, 5, 7])
    np.testing.assert_array_equal(count, [2, 2, 1])


def test_three_member_maps_written_as_cogs_with_names_colours_and_nodata(tmp_path: Path) -> None:
    values = np.tile(np.arange(5, dtype=np.float32), (6, 2))  # 6 x 10 px
    values[0, :] = np.nan
    ms = members(A, B, C)
    keys = output_keys(ms, PredictOutputsConfig(probabilities=True))
    pred = BlockPredictor(ms, ["v"], ClassScheme.of(ms), keys)
    paths = {k: tmp_path / f"{k.replace(':', '_')}.tif" for k in keys}
    s = predict_scene(tiny_scene(values), pred, paths, block_size=16, tags={"scene": "hand"})
    assert s.valid_pixels == 50 and s.histogram == {0: 20, 1: 20, 2: 10}
    with rasterio.open(s.maps["vote"]) as src:
        got = src.read(1)
        assert src.nodata == 255 and src.dtypes[0] == "uint8"
        assert src.colormap(1)[2][:3] == (77, 175, 74)
        assert json.loads(src.tags()["class_names"]) == {
            "0": "class 0",
            "1": "class 1",
            "2": "class 2",
        }
        assert src.tags()["scene"] == "hand"
    assert (got[0] == 255).all()
    np.testing.assert_array_equal(got[1:], np.tile(VOTE, (5, 2)))
    with rasterio.open(s.maps["agreement"]) as src:
        np.testing.assert_array_equal(src.read(1)[1:], np.tile(AGREE, (5, 2)))
        assert src.scales == (0.01,)
    with rasterio.open(s.maps["probabilities"]) as src:
        assert src.count == 3 and src.descriptions == ("class 0", "class 1", "class 2")
        np.testing.assert_array_equal(src.read()[:, 2, 1], [0, 67, 33])
    aux = Path(f"{s.maps['vote']}.aux.xml").read_text()
    assert "<Category>class 1</Category>" in aux
    assert 'label="class 2"' in s.maps["vote"].with_suffix(".qml").read_text()
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize(
    ("n_classes", "dtype", "nodata"), [(254, "uint8", 255), (300, "uint16", 65535)]
)
def test_class_maps_switch_to_uint16_above_254_classes(
    tmp_path: Path, n_classes: int, dtype: str, nodata: int
) -> None:
    ms = members(list(range(n_classes)))
    values = np.arange(n_classes, dtype=np.float32).reshape(1, -1).repeat(2, axis=0)
    values[1, :3] = np.nan
    keys = output_keys(ms, PredictOutputsConfig(max_probability=False))
    pred = BlockPredictor(ms, ["v"], ClassScheme.of(ms), keys)
    s = predict_scene(tiny_scene(values), pred, {"member:0": tmp_path / "m.tif"}, block_size=64)
    with rasterio.open(s.maps["member:0"]) as src:
        got = src.read(1)
        assert src.dtypes[0] == dtype and src.nodata == nodata
    np.testing.assert_array_equal(got[0], np.arange(n_classes))
    assert (got[1, :3] == nodata).all()
    assert class_dtype(n_classes) == (dtype, nodata)


def test_string_labels_are_coded_by_sorted_position_and_named() -> None:
    ms = members(["water", "forest", "snow"])
    scheme = ClassScheme.of(ms)
    assert scheme.names == ["forest", "snow", "water"]
    pred = BlockPredictor(ms, ["v"], scheme, ["member:0"])
    np.testing.assert_array_equal(
        pred.predict_table(np.array([[0.0], [1.0], [2.0]]))["member:0"], [2, 0, 1]
    )


def test_sparse_integer_labels_keep_their_values_as_codes() -> None:
    scheme = ClassScheme.of(members([10, 20, 90]))
    np.testing.assert_array_equal(scheme.codes, [10, 20, 90])
    assert scheme.dtype == "uint8"


def test_regressors_write_float32_with_nan_nodata_and_their_mean(tmp_path: Path) -> None:
    x = np.arange(5, dtype=np.float64)[:, None]
    ms = [
        LoadedMember("r0", LinearRegression().fit(x, 2 * x[:, 0]), ["v"], "test:r0"),
        LoadedMember("r1", LinearRegression().fit(x, 4 * x[:, 0]), ["v"], "test:r1"),
    ]
    keys = output_keys(ms, PredictOutputsConfig())
    assert keys == ["member:0", "member:1", "mean"]
    values = np.array([[0, 1, np.nan], [2, 3, 4]], dtype=np.float32)
    pred = BlockPredictor(ms, ["v"], ClassScheme.of(ms), keys)
    paths = {k: tmp_path / f"{k.replace(':', '_')}.tif" for k in keys}
    s = predict_scene(tiny_scene(values), pred, paths, block_size=16)
    with rasterio.open(s.maps["mean"]) as src:
        got = src.read(1)
        assert src.dtypes[0] == "float32"
    np.testing.assert_allclose(got, 3 * values, rtol=1e-5)
    assert np.isnan(got[0, 2])


def test_one_member_max_probability_without_the_per_class_table() -> None:
    """One member, no per-class layers: the largest probability per pixel is kept alone,
    with the same values as through the table of every class."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 2)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    forest = RandomForestClassifier(7, max_depth=3, random_state=0).fit(X, y)
    (m,) = [LoadedMember("f", forest, ["a", "b"], "test:f")]
    scheme = ClassScheme.of([m])
    lean = BlockPredictor([m], ["a", "b"], scheme, ["member:0", "max_probability"])
    full = BlockPredictor([m], ["a", "b"], scheme, ["member:0", "probabilities", "max_probability"])
    a, b = lean.predict_table(X), full.predict_table(X)
    expected = np.rint(100 * forest.predict_proba(X).max(axis=1).astype(np.float32))
    np.testing.assert_array_equal(a["max_probability"], expected.astype(np.uint8))
    np.testing.assert_array_equal(a["max_probability"], b["max_probability"])
    np.testing.assert_array_equal(a["member:0"], b["member:0"])
    assert "probabilities" not in a and 40 < expected.mean() <= 100
