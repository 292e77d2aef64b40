"""Product presets on small files with the real products' names, scaling and quality bands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from geoensemble.api.load import load_array
from geoensemble.errors import ConfigError, LayerNotFoundError
from geoensemble.features.indices import compute
from geoensemble.io.stack import build_stack
from tests.io.conftest import data, write_tif

LC09 = "LC09_L2SP_034032_20230715_20230718_02_T1"
# QA_PIXEL values: 21824 is clear land (bits 6, 8, 10, 12, 14: clear, low confidences)
CLEAR = 21824
QA = np.array(
    [
        [CLEAR, CLEAR | 1 << 3, CLEAR | 1 << 4, 1],  # clear, cloud, shadow, fill
        [CLEAR | 1 << 7, CLEAR | 1 << 1, CLEAR | 1 << 2, CLEAR | 1 << 5],  # water, dil., cir., snow
    ],
    dtype="uint16",
)


def landsat_scene(folder: Path) -> Path:
    """A 2 x 4 Landsat 9 C2 L2 scene: SR bands, ST_B10, QA_PIXEL, and the files around them."""
    for b in range(1, 8):
        sr = np.full((2, 4), 10000 + 1000 * b, dtype="uint16")
        sr[0, 0] = 10000 if b == 4 else 20000 if b == 5 else sr[0, 0]
        write_tif(folder / f"{LC09}_SR_B{b}.TIF", sr, nodata=0)
    st = np.full((2, 4), 44000, dtype="uint16")
    write_tif(folder / f"{LC09}_ST_B10.TIF", st, nodata=0)
    write_tif(folder / f"{LC09}_QA_PIXEL.TIF", QA, nodata=1)
    write_tif(folder / f"{LC09}_SR_QA_AEROSOL.TIF", np.zeros((2, 4), "uint8"))
    write_tif(folder / f"{LC09}_ST_QA.TIF", np.zeros((2, 4), "int16"))
    (folder / f"{LC09}_MTL.txt").write_text("GROUP = LANDSAT_METADATA_FILE\n")
    return folder


def test_landsat_c2_l2_scales_and_masks_by_qa_pixel(tmp_path: Path) -> None:
    ds = build_stack(
        data(landsat_scene(tmp_path / "scene"), product="landsat_c2_l2", pattern="*.TIF")
    )
    assert list(ds.data_vars) == [f"SR_B{b}" for b in range(1, 8)] + ["ST_B10"]
    red = ds["SR_B4"].values
    # DN 10000 * 0.0000275 - 0.2 = 0.075 (clear pixel); 14000 -> 0.185 (water, kept)
    assert red[0, 0] == pytest.approx(0.075, abs=1e-6)
    assert red[1, 0] == pytest.approx(14000 * 0.0000275 - 0.2, abs=1e-6)
    # cloud, shadow, fill, dilated cloud, cirrus, snow -> NaN
    assert np.isnan(red[0, 1:]).all() and np.isnan(red[1, 1:]).all()
    # 44000 * 0.00341802 + 149.0 = 299.39288 K
    assert ds["ST_B10"].values[0, 0] == pytest.approx(299.39288, abs=1e-3)
    ndvi = compute(ds, "normalized_difference", "nir", "red", sensor="landsat_c2_l2").values
    nir = 20000 * 0.0000275 - 0.2  # 0.35
    assert ndvi[0, 0] == pytest.approx((nir - 0.075) / (nir + 0.075), abs=1e-5)


def test_landsat_qa_as_features_and_chosen_flags(tmp_path: Path) -> None:
    scene = landsat_scene(tmp_path / "scene")
    ds = build_stack(
        data(
            scene,
            product="landsat_c2_l2",
            qa="features",
            qa_flags=["cloud", "water"],
            pattern="*.TIF",
        )
    )
    assert {"qa_cloud", "qa_water"} <= set(ds.data_vars)
    np.testing.assert_array_equal(ds["qa_cloud"].values[0], [0, 1, 0, np.nan])  # fill: NaN
    np.testing.assert_array_equal(ds["qa_water"].values[1], [1, 0, 0, 0])
    assert not np.isnan(ds["SR_B4"].values[0, 1])  # not masked in features mode
    only_cloud = build_stack(
        data(scene, product="landsat_c2_l2", qa_flags=["cloud"], pattern="*.TIF")
    )
    red = only_cloud["SR_B4"].values
    assert np.isnan(red[0, 1]) and not np.isnan(red[0, 2])  # the shadow is kept


def s2_scene(folder: Path) -> Path:
    """A Sentinel-2 L2A granule's IMG_DATA: 10 m bands 4 x 4, 20 m bands and SCL 2 x 2."""
    t10 = Affine(10.0, 0.0, 399960.0, 0.0, -10.0, 4500000.0)
    t20 = Affine(20.0, 0.0, 399960.0, 0.0, -20.0, 4500000.0)
    stem = "T13TDE_20230715T174909"
    b04 = np.full((4, 4), 1500, dtype="uint16")
    b04[3, 3] = 0  # no data
    write_tif(folder / "R10m" / f"{stem}_B04_10m.jp2", b04, transform=t10, nodata=0)
    write_tif(folder / "R10m" / f"{stem}_B08_10m.jp2", b04 * 2, transform=t10, nodata=0)
    write_tif(folder / "R20m" / f"{stem}_B04_20m.jp2", np.full((2, 2), 9, "uint16"), transform=t20)
    b11 = np.full((2, 2), 3000, dtype="uint16")
    write_tif(folder / "R20m" / f"{stem}_B11_20m.jp2", b11, transform=t20, nodata=0)
    scl = np.array([[4, 9], [3, 6]], dtype="uint8")  # vegetation, cloud high, shadow, water
    write_tif(folder / "R20m" / f"{stem}_SCL_20m.jp2", scl, transform=t20, nodata=0)
    return folder


@pytest.mark.parametrize(
    ("product", "value"), [("sentinel2_l2a", 0.05), ("sentinel2_l2a_pre04", 0.15)]
)
def test_sentinel2_l2a_boa_offset_and_scl_mask(tmp_path: Path, product: str, value: float) -> None:
    scene = s2_scene(tmp_path / "IMG_DATA")
    ds = build_stack(
        data(scene, product=product, pattern="*.jp2", align="reproject", reference="B04")
    )
    assert list(ds.data_vars) == ["B04", "B08", "B11"]  # the 10 m B04, not the 20 m copy
    red = ds["B04"].values
    assert red.shape == (4, 4)
    # (1500 + BOA_ADD_OFFSET) / 10000: -1000 from baseline 04.00 on, 0 before
    assert red[0, 0] == pytest.approx(value, abs=1e-6)
    # SCL 20 m pixels: [vegetation, cloud high; cloud shadow, water] -> 2 x 2 blocks at 10 m
    expected_nan = np.kron(np.array([[0, 1], [1, 0]]), np.ones((2, 2))).astype(bool)
    expected_nan[3, 3] = True  # B04's own no data
    np.testing.assert_array_equal(np.isnan(red), expected_nan)
    ndvi = compute(ds, "normalized_difference", "nir", "red", sensor=product).values
    nir = 3000 * 1e-4 + (value - 0.15)
    assert ndvi[0, 0] == pytest.approx((nir - value) / (nir + value), abs=1e-5)


def test_api_load_array_takes_a_product(tmp_path: Path) -> None:
    ds = load_array(landsat_scene(tmp_path / "scene"), product="landsat_c2_l2")
    assert ds["SR_B4"].values[0, 0] == pytest.approx(0.075, abs=1e-6)


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"product": "landsat7"}, ConfigError, "^product='landsat7' is invalid"),
        ({"product": "landsat_c2_l2", "qa": "drop"}, ConfigError, "^qa='drop' is invalid"),
        (
            {"product": "sentinel2_l2a", "qa_flags": ["cloud"]},
            ConfigError,
            r"^qa_flags has \['cloud'\]",
        ),
    ],
)
def test_bad_product_settings(tmp_path: Path, kw: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        build_stack(data(landsat_scene(tmp_path / "scene"), pattern="*.TIF", **kw))


def test_missing_qa_band_is_named(tmp_path: Path) -> None:
    scene = landsat_scene(tmp_path / "scene")
    (scene / f"{LC09}_QA_PIXEL.TIF").unlink()
    fix = r"no QA_PIXEL file .* but qa=mask needs it; add it, or set qa=keep"
    with pytest.raises(LayerNotFoundError, match=fix):
        build_stack(data(scene, product="landsat_c2_l2", pattern="*.TIF"))
    assert "SR_B4" in build_stack(data(scene, product="landsat_c2_l2", qa="keep", pattern="*.TIF"))
