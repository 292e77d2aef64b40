"""``geoensemble.regularise_map``: the blockwise regularisation of a classified map from the
Python API, its logged figures, and its one-line errors naming the argument and the fix."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

import geoensemble as ge
from geoensemble.errors import ConfigError, InputFileError
from geoensemble.io.geotiff import write_geotiff
from geoensemble.predict.regularise import regularise, speckle

ND = 255
TRANSFORM = Affine(30.0, 0.0, 440_000.0, 0.0, -30.0, 4_480_000.0)


def speckled(height: int = 150, width: int = 210, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    classes = ((yy // 30 + xx // 40) % 5).astype(np.uint8)
    salt = rng.random(classes.shape) < 0.25
    classes[salt] = rng.integers(0, 5, int(salt.sum()))
    classes[rng.random(classes.shape) < 0.02] = ND
    return classes


@pytest.fixture
def vote(tmp_path: Path) -> tuple[Path, np.ndarray]:
    classes = speckled()
    names = {str(c): f"class {c}" for c in range(5)}
    path = write_geotiff(
        tmp_path / "vote.tif",
        classes,
        crs="EPSG:32613",
        transform=TRANSFORM,
        nodata=ND,
        colormap={c: (40 * c, 20, 200 - 40 * c) for c in range(5)},
        tags={"geoensemble_output": "vote", "class_names": json.dumps(names)},
    )
    return path, classes


def test_regularise_map_equals_the_whole_map_and_logs_the_figures(
    vote: tuple[Path, np.ndarray], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, classes = vote
    with caplog.at_level(logging.INFO, logger="geoensemble"):
        res = ge.regularise_map(path, tmp_path / "reg.tif", min_pixels=8, block_size=64)
    want = regularise(classes, radius=1, min_pixels=8)
    with rasterio.open(res.path) as out:
        assert np.array_equal(out.read(1), want)
        assert out.tags()["geoensemble_regularisation"] == res.applied
    assert res.path == tmp_path / "reg.tif"
    assert res.applied == "majority(radius=1);sieve(min_pixels=8,connectivity=4)"
    assert res.min_pixels == 8
    assert res.before == speckle(classes, min_pixels=8)
    assert res.after == speckle(want, min_pixels=8)
    assert res.after.share < res.before.share / 5
    assert res.after.small_patches < res.before.small_patches
    (line,) = [r.getMessage() for r in caplog.records if "regularised" in r.getMessage()]
    assert f"before {res.before}" in line and f"after {res.after}" in line
    assert res.as_dict()["after"]["small_patches"] == res.after.small_patches


def test_min_hectares_becomes_pixels(vote: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, classes = vote
    # 0.5 ha on 30 m pixels: 5.6 px, so 6
    res = ge.regularise_map(path, tmp_path / "mmu.tif", majority_radius=None, min_hectares=0.5)
    assert res.min_pixels == 6
    assert res.applied == "sieve(min_pixels=6,connectivity=4)"
    with rasterio.open(res.path) as out:
        assert np.array_equal(out.read(1), regularise(classes, min_pixels=6))


def test_hectares_are_refused_on_a_map_in_degrees(tmp_path: Path) -> None:
    path = write_geotiff(
        tmp_path / "geo.tif",
        speckled(20, 30),
        crs="EPSG:4326",
        transform=Affine(0.001, 0, -105, 0, -0.001, 40),
        nodata=ND,
    )
    with pytest.raises(ConfigError, match=r"^min_hectares needs a projected CRS.*give min_pixels"):
        ge.regularise_map(path, tmp_path / "out.tif", min_hectares=1)
    assert not (tmp_path / "out.tif").exists()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"majority_radius": 0}, r"^majority_radius=0 is not a whole number of pixels >= 1"),
        ({"min_pixels": 0}, r"^min_pixels=0 is not a whole number of pixels >= 1"),
        ({"connectivity": 6}, r"^connectivity=6 is unknown: use 4 \(edges\) or 8"),
        ({"min_pixels": 5, "min_hectares": 1.0}, r"^min_pixels=5 and min_hectares=1.0 are both"),
        ({"majority_radius": None}, r"^nothing to apply: set majority_radius, min_pixels or"),
        ({"compress": "jpeg"}, r"^compress='jpeg' is unknown: use lzw, deflate, zstd or none"),
        ({"block_size": 4}, r"^block_size=4 is too small"),
        ({"min_hectares": -1.0}, r"^min_hectares=-1.0 is not an area > 0"),
    ],
)
def test_bad_arguments_raise_one_line_config_errors(
    vote: tuple[Path, np.ndarray], tmp_path: Path, kwargs: dict, match: str
) -> None:
    path, _ = vote
    with pytest.raises(ConfigError, match=match) as err:
        ge.regularise_map(path, tmp_path / "out.tif", **kwargs)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out.tif").exists()


def test_a_missing_or_unfit_map(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"^path=.*nope.tif does not exist"):
        ge.regularise_map(tmp_path / "nope.tif", tmp_path / "out.tif")
    rgb = write_geotiff(
        tmp_path / "rgb.tif",
        np.zeros((3, 8, 8), np.uint8),
        crs="EPSG:32613",
        transform=TRANSFORM,
        nodata=None,
    )
    with pytest.raises(ConfigError, match=r"has 3 band\(s\) of uint8: pass a single-band"):
        ge.regularise_map(rgb, tmp_path / "out.tif")


def test_it_is_part_of_the_public_api() -> None:
    from geoensemble.api.regularise import regularise_map

    assert ge.regularise_map is regularise_map
    assert "regularise_map" in ge.__all__
