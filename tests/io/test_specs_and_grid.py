"""Layer-spec options (window, bbox, resample on read, no-data, scaling, metadata) and grids."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS

from geoensemble.io.grid import Grid, same_crs, same_grid
from geoensemble.io.stack import build_stack, grid_attrs, open_store, store_meta, write_stack
from geoensemble.io.window import CropLayer, WarpLayer, nodata_mask
from tests.io.conftest import T30, UTM, data, ramp, write_tif


def test_window_and_bbox_crop_values_and_transform(tmp_path: Path) -> None:
    arr = ramp(24, 20)
    write_tif(tmp_path / "in" / "a.tif", arr)
    win = build_stack(data(tmp_path / "in", {"name": "a", "window": [2, 3, 10, 8]}))
    np.testing.assert_array_equal(win["a"].values, arr[2:12, 3:11])
    assert np.allclose(grid_attrs(win)[1][:6], (T30 @ Affine.translation(3, 2))[:6])
    # The same pixels by map coordinates (pixel edges of rows 2..11, cols 3..10).
    x0, y0 = T30 @ (3, 12)
    x1, y1 = T30 @ (11, 2)
    box = build_stack(data(tmp_path / "in", {"name": "a", "bbox": [x0, y0, x1, y1]}))
    np.testing.assert_array_equal(box["a"].values, win["a"].values)


def test_out_shape_resamples_on_read_with_average(tmp_path: Path) -> None:
    arr = ramp(24, 20, "float32")
    write_tif(tmp_path / "in" / "a.tif", arr)
    cfg = data(tmp_path / "in", {"name": "a", "out_shape": [12, 10], "resampling": "average"})
    ds = build_stack(cfg)
    want = arr.reshape(12, 2, 10, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(ds["a"].values, want, rtol=1e-6)
    t = grid_attrs(ds)[1]
    assert t.a == 60.0 and t.e == -60.0 and (t.c, t.f) == (T30.c, T30.f)  # same extent


def test_resolution_resamples_and_then_aligns_with_the_other_layers(tmp_path: Path) -> None:
    write_tif(tmp_path / "in" / "fine.tif", ramp(24, 20, "float32"))
    coarse = Affine(60.0, 0, T30.c, 0, -60.0, T30.f)
    write_tif(tmp_path / "in" / "coarse.tif", ramp(12, 10, "float32"), transform=coarse)
    cfg = data(
        tmp_path / "in",
        {"name": "coarse"},
        {"name": "fine", "resolution": [60.0], "resampling": "average"},
    )
    ds = build_stack(cfg)  # strict: both on the 60 m grid now
    assert ds["fine"].shape == (12, 10)
    assert float(ds["fine"][0, 0]) == pytest.approx((1 + 2 + 21 + 22) / 4)


def test_extra_nodata_list_scale_and_offset(tmp_path: Path) -> None:
    arr = ramp(8, 8, "float32")
    arr[0, 0], arr[1, 1], arr[2, 2] = -3.4e38, -9999.0, -3.4028235e38
    write_tif(tmp_path / "in" / "a.tif", arr)
    spec = {"name": "a", "nodata": [-3.4e38, -9999], "scale": 0.5, "offset": -1.0}
    got = build_stack(data(tmp_path / "in", spec))["a"].values
    bad = np.zeros((8, 8), bool)
    bad[0, 0] = bad[1, 1] = bad[2, 2] = True
    np.testing.assert_array_equal(np.isnan(got), bad)
    np.testing.assert_allclose(got[~bad], arr[~bad] * 0.5 - 1.0)


@pytest.mark.parametrize(
    ("dtype", "value", "hits"),
    [("uint16", 65535, 1), ("uint8", -9999, 0), ("int32", 2**31 - 1, 1), ("float64", np.nan, 1)],
)
def test_nodata_compares_in_the_file_dtype(dtype: str, value: float, hits: int) -> None:
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    top = info.max if info else np.nan
    raw = np.array([1, 2, top], dtype=dtype)
    assert int(nodata_mask(raw, value).sum()) == hits


def test_layers_found_by_metadata_tags(tmp_path: Path) -> None:
    write_tif(tmp_path / "in" / "LC08_x_B4.tif", ramp(8, 8), tags={"BAND_NAME": "red"})
    write_tif(tmp_path / "in" / "LC08_x_B5.tif", ramp(8, 8) * 2, tags={"BAND_NAME": "nir"})
    with pytest.raises(Exception, match="2 files match"):
        build_stack(data(tmp_path / "in", {"name": "nir", "meta_key": "BAND_NAME"}))
    ds = build_stack(
        data(tmp_path / "in", {"name": "nir", "meta_key": "BAND_NAME", "meta_value": "^nir$"})
    )
    assert float(ds["nir"][0, 1]) == 4.0 and "B5" in ds["nir"].attrs["source"]


def test_categorical_layers_use_nearest_when_reprojected(tmp_path: Path) -> None:
    write_tif(tmp_path / "in" / "a.tif", ramp(24, 20, "float32"))
    classes = (np.arange(12 * 10).reshape(12, 10) % 5 + 1).astype("uint8")
    shifted = Affine(60.0, 0, T30.c + 17.0, 0, -60.0, T30.f - 11.0)
    write_tif(tmp_path / "in" / "lc.tif", classes, transform=shifted, nodata=0)
    cfg = data(
        tmp_path / "in",
        {"name": "a"},
        {"name": "lc", "categorical": True},
        {"name": "lc_smooth", "file": "lc"},
        align="reproject",
        resampling="bilinear",
    )
    ds = build_stack(cfg)
    lc = ds["lc"].values
    assert set(np.unique(lc[~np.isnan(lc)])) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    smooth = ds["lc_smooth"].values
    assert not np.allclose(smooth[~np.isnan(smooth)] % 1, 0)  # bilinear blends classes
    assert ds["lc"].attrs["categorical"] == 1


def test_epsg_and_wkt_of_the_same_crs_are_one_grid(tmp_path: Path) -> None:
    wkt = CRS.from_epsg(32613).to_wkt().split("AUTHORITY")[0]  # WKT without EPSG codes
    wkt_crs = CRS.from_wkt(CRS.from_epsg(32613).to_wkt())
    write_tif(tmp_path / "in" / "a.tif", ramp(8, 8), crs=UTM)
    write_tif(tmp_path / "in" / "b.tif", ramp(8, 8), crs=wkt_crs.to_wkt())
    ds = build_stack(data(tmp_path / "in"))  # strict
    assert list(ds.data_vars) == ["a", "b"]
    assert same_crs(CRS.from_string(UTM), wkt_crs)
    assert same_crs(CRS.from_string(UTM), CRS.from_proj4("+proj=utm +zone=13 +datum=WGS84"))
    assert not same_crs(CRS.from_string(UTM), CRS.from_epsg(32614))
    assert not same_crs(CRS.from_string(UTM), None) and same_crs(None, None)
    assert wkt  # a truncated WKT string is never used as a CRS


def test_layers_without_crs_on_one_grid_are_accepted_with_a_warning(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_tif(tmp_path / "in" / "a.tif", ramp(8, 8), crs=None, transform=Affine.identity())
        write_tif(tmp_path / "in" / "b.tif", ramp(8, 8), crs=None, transform=Affine.identity())
    with pytest.warns(UserWarning, match="no layer has a CRS"):
        ds = build_stack(data(tmp_path / "in"))
    report = write_stack(ds, tmp_path / "stack")
    assert report["b"]["max"] == 64.0
    crs, t = grid_attrs(open_store(tmp_path / "stack"))
    assert crs is None and t == Affine.identity()


def test_explicit_target_grid(tmp_path: Path) -> None:
    write_tif(tmp_path / "in" / "a.tif", ramp(24, 20, "float32"))
    cfg = data(
        tmp_path / "in",
        align="reproject",
        target={"resolution": [60.0], "bounds": [T30.c, T30.f - 600, T30.c + 300, T30.f]},
        resampling="average",
    )
    ds = build_stack(cfg)
    assert ds["a"].shape == (10, 5)
    assert float(ds["a"][0, 0]) == pytest.approx((1 + 2 + 21 + 22) / 4)
    geo = build_stack(data(tmp_path / "in", align="reproject", target={"crs": "EPSG:4326"}))
    crs, t = grid_attrs(geo)
    assert crs is not None and crs.to_epsg() == 4326 and abs(t.a) < 0.001
    assert np.isfinite(geo["a"].values).mean() > 0.5
    with pytest.raises(Exception, match="not on the grid of the target grid"):
        build_stack(data(tmp_path / "in", target={"resolution": [60.0]}))  # strict


@pytest.mark.parametrize("chunk_size", [16, 64])
def test_store_is_chunked_and_the_report_is_in_the_sidecar(tmp_path: Path, chunk_size: int) -> None:
    arr = ramp(40, 36, "uint16")
    arr[:, :5] = 0
    write_tif(tmp_path / "in" / "a.tif", arr, nodata=0)
    ds = build_stack(data(tmp_path / "in", chunk_size=chunk_size))
    report = write_stack(ds, tmp_path / "stack", meta={"source": "x"})
    assert report == {"a": {"valid_fraction": 31 / 36, "min": 6.0, "max": 1440.0}}
    side = store_meta(tmp_path / "stack")
    assert side["source"] == "x" and side["layers"] == report
    store = open_store(tmp_path / "stack")
    assert store["a"].chunks[0][0] == min(chunk_size, 40)
    np.testing.assert_array_equal(store["a"].values, ds["a"].values)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    r0=st.integers(0, 30),
    c0=st.integers(0, 30),
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    scale=st.sampled_from([0.5, 1.0, 1.7, 3.0]),
)
def test_blockwise_warp_equals_the_whole_warp(
    r0: int, c0: int, h: int, w: int, scale: float
) -> None:
    """Any window read through a warp equals that window of the whole warped array."""

    class Mem:
        grid = Grid(CRS.from_string(UTM), T30, (50, 50))

        def read(self, rows: slice, cols: slice) -> np.ndarray:
            a = np.arange(2500, dtype="float32").reshape(50, 50)
            return a[rows, cols]

    n = max(1, round(50 / scale))
    target = Grid(Mem.grid.crs, T30 @ Affine.scale(50 / n), (n, n))
    lay = WarpLayer(Mem(), target, "bilinear")
    whole = lay.read(slice(0, n), slice(0, n))
    r0, c0 = min(r0, n - 1), min(c0, n - 1)
    rows, cols = slice(r0, min(n, r0 + h)), slice(c0, min(n, c0 + w))
    np.testing.assert_allclose(lay.read(rows, cols), whole[rows, cols], rtol=1e-6)
    crop = CropLayer(Mem(), 3, 4, (10, 10))
    assert same_grid(crop.grid, Grid(Mem.grid.crs, T30 @ Affine.translation(4, 3), (10, 10)))
