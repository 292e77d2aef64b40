"""A stratified random validation sample drawn from a class map (Olofsson et al. 2014)."""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
from rasterio.transform import from_origin

from geoensemble.errors import ConfigError, InputFileError, OutputError
from geoensemble.predict.validation import (
    REFERENCE,
    allocate,
    draw_validation_sample,
    plan,
    total_size,
)

TRANSFORM = from_origin(500_000, 4_400_000, 30, 30)


def write_map(path: Path, arr: np.ndarray, names: dict[int, str] | None = None) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=arr.shape[1],
        height=arr.shape[0],
        count=1,
        dtype="uint8",
        nodata=255,
        crs="EPSG:32613",
        transform=TRANSFORM,
        tiled=True,
        blockxsize=64,
        blockysize=64,
    ) as dst:
        dst.write(arr, 1)
        if names:
            dst.update_tags(class_names=str(names).replace("'", '"'))
    return path


@pytest.fixture
def known(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """300 x 400 px: water (left half), forest (right half), a 50 x 50 urban corner, and a
    no-data strip at the bottom; windows of 64 px, so classes cross window seams."""
    a = np.zeros((300, 400), np.uint8)
    a[:, 200:] = 1
    a[:50, :50] = 2
    a[-10:, :] = 255
    names = {0: "water", 1: "forest", 2: "urban"}
    return write_map(tmp_path / "map.tif", a, {str(k): v for k, v in names.items()}), a


def test_total_size_is_olofssons_eq_13_and_rare_classes_get_the_floor() -> None:
    # Olofsson et al. (2014) section 5.1.2 by hand: W = (0.2, 0.3, 0.5), U = (0.7, 0.6, 0.9)
    pixels = {0: 200_000, 1: 300_000, 2: 500_000}
    ua = {0: 0.7, 1: 0.6, 2: 0.9}
    S = [math.sqrt(u * (1 - u)) for u in ua.values()]
    W = [0.2, 0.3, 0.5]
    num = sum(w * s for w, s in zip(W, S, strict=True)) ** 2
    den = 0.01**2 + sum(w * s * s for w, s in zip(W, S, strict=True)) / 1_000_000
    assert total_size(pixels, ua, 0.01) == math.ceil(num / den) == 1508
    assert allocate(pixels, 1508, 50) == {0: 302, 1: 452, 2: 754}
    assert allocate({0: 990_000, 1: 10_000}, 1000, 50) == {0: 990, 1: 50}
    assert allocate({0: 990_000, 1: 30}, 1000, 50) == {0: 1000, 1: 30}  # never above N_h


def test_the_sample_has_the_formulas_sizes_on_the_right_classes(
    known: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, arr = known
    out, design = draw_validation_sample(path, tmp_path / "sample.gpkg", seed=3)
    pixels = {0: 290 * 200 - 2500, 1: 290 * 200, 2: 2500}
    assert design.pixels == pixels
    n = total_size(pixels, dict.fromkeys(pixels, 0.8), 0.01)
    assert design.sizes == allocate(pixels, n, 50) == {0: 755, 1: 790, 2: 50}
    g = gpd.read_file(out, layer="validation")
    assert len(g) == design.total == 1595
    assert g["map_class"].value_counts().to_dict() == design.sizes
    assert (arr[g["row"], g["col"]] == g["map_class"]).all()  # on the mapped class
    assert not g.duplicated(["row", "col"]).any()  # without replacement
    assert set(g["map_class_name"]) == {"water", "forest", "urban"}
    assert np.allclose(g["inclusion_probability"], g["stratum_sample"] / g["stratum_pixels"])
    assert (g[REFERENCE] == "").all()
    assert g.crs.to_epsg() == 32613
    x, y = 500_000 + 30 * (g["col"] + 0.5), 4_400_000 - 30 * (g["row"] + 0.5)
    assert np.allclose(g.geometry.x, x) and np.allclose(g.geometry.y, y)  # pixel centres
    meta = pyogrio.read_info(out, layer="validation")["dataset_metadata"]
    assert meta["total"] == "1595" and meta["seed"] == "3" and meta["target_se"] == "0.01"
    # reproducible from the seed; another seed draws other points
    again, _ = draw_validation_sample(path, tmp_path / "again.gpkg", seed=3)
    other, _ = draw_validation_sample(path, tmp_path / "other.gpkg", seed=4)
    same = gpd.read_file(again)
    assert (same[["row", "col"]].values == g[["row", "col"]].values).all()
    assert not (gpd.read_file(other)[["row", "col"]].values == g[["row", "col"]].values).all()


def test_a_labelled_sample_or_a_foreign_file_is_never_replaced(
    known: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, _ = known
    out, _ = draw_validation_sample(path, tmp_path / "sample.gpkg", target_se=0.05)
    draw_validation_sample(path, out, target_se=0.05, seed=1)  # ours, unlabelled: replaced
    g = gpd.read_file(out)
    g.loc[0, REFERENCE] = "water"  # the analyst's first label
    g.to_file(out, layer="validation", driver="GPKG")
    with pytest.raises(OutputError, match="labelled"):
        draw_validation_sample(path, out, target_se=0.05)
    assert gpd.read_file(out).loc[0, REFERENCE] == "water"
    foreign = tmp_path / "notes.gpkg"
    foreign.write_text("mine")
    with pytest.raises(OutputError, match="not a validation sample geoensemble drew"):
        draw_validation_sample(path, foreign)
    assert foreign.read_text() == "mine"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_se": 0}, r"target_se=0 is out of range"),
        ({"min_per_class": 0}, r"min_per_class=0: use an integer >= 1"),
        ({"users_accuracy": 1.5}, r"users_accuracy .* is out of range"),
        ({"users_accuracy": {0: 0.9}}, r"users_accuracy lacks map class\(es\) \[1, 2\]"),
    ],
)
def test_bad_design_arguments_are_one_line(
    known: tuple[Path, np.ndarray], tmp_path: Path, kwargs: dict, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        draw_validation_sample(known[0], tmp_path / "s.gpkg", **kwargs)
    assert not (tmp_path / "s.gpkg").exists()


def test_a_map_that_is_not_a_class_map_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        draw_validation_sample(tmp_path / "none.tif", tmp_path / "s.gpkg")
    empty = write_map(tmp_path / "empty.tif", np.full((10, 10), 255, np.uint8))
    with pytest.raises(InputFileError, match="no classified pixel"):
        draw_validation_sample(empty, tmp_path / "s.gpkg")
    assert plan({0: 10}, min_per_class=50).sizes == {0: 10}


def test_the_sample_stage_draws_from_the_map_it_is_given(
    known: tuple[Path, np.ndarray], tmp_path: Path, make_cfg
) -> None:
    from geoensemble.app import stages
    from geoensemble.app.cli import SAMPLE_KEYS, shorthand

    assert shorthand(
        ["map=a.tif", "target_se=0.05", "seed=3"], "validation_sample", SAMPLE_KEYS
    ) == [
        "validation_sample.map=a.tif",
        "validation_sample.target_se=0.05",
        "seed=3",
    ]
    with pytest.raises(ConfigError, match=r"validation_sample\.map is not set: name the class map"):
        stages.sample(make_cfg())
    out = stages.sample(
        make_cfg(
            f"validation_sample.map={known[0]}",
            f"validation_sample.out={tmp_path}/s.gpkg",
            "validation_sample.target_se=0.05",
            "validation_sample.min_per_class=10",
        )
    )
    g = gpd.read_file(out["path"])
    assert out["points"] == len(g) and out["sizes"] == g["map_class"].value_counts().to_dict()
