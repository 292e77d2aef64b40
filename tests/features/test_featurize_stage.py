"""The featurize stage on a stored stack: named features, values, quicklooks, no-data."""

from __future__ import annotations

from collections.abc import Callable

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from matplotlib.image import imread

from geoensemble import plots
from geoensemble.app import stages
from geoensemble.app.config import AppConfig
from geoensemble.io.stack import open_store, store_meta, write_store
from tests.features.conftest import stack_dataset


def test_featurize_writes_features_meta_and_pictures(
    make_cfg: Callable[..., AppConfig],
) -> None:
    cfg = make_cfg("features=impute_median")
    stack = stack_dataset(height=70, width=50, chunks=32)
    write_store(stack, cfg.paths.stack)
    names = stages.featurize(cfg)
    expected = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "ndwi", "ndvi", "ndsi", "nbr"]
    assert names == [*expected, "nir_swir_ratio", "ndmi", "savi", "brightness"]
    feats = open_store(cfg.paths.features)
    meta = store_meta(cfg.paths.features)
    assert meta["feature_names"] == names and meta["sensor"] == "landsat8"
    assert feats["ndvi"].data.chunksize == (32, 32)  # the stack's chunks are kept
    nir, red, swir1 = (stack[b].to_numpy().astype(np.float64) for b in ("B5", "B4", "B6"))
    np.testing.assert_allclose(feats["ndvi"], (nir - red) / (nir + red), rtol=1e-5)
    np.testing.assert_allclose(feats["nir_swir_ratio"], nir / swir1, rtol=1e-5)
    np.testing.assert_allclose(feats["ndmi"], (nir - swir1) / (nir + swir1), rtol=1e-5)
    assert np.isnan(feats["savi"].to_numpy()[:5, :5]).all()
    figs = cfg.paths.reports + "/figures/features"
    for name in ["ndvi", "savi", "ndmi", "false_colour"]:
        img = imread(f"{figs}/{name}.png")
        assert img.ndim == 3 and img.shape[0] > 100, name


def test_quicklooks_of_missing_features_are_skipped(
    make_cfg: Callable[..., AppConfig], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_cfg("features=bands", "features.quicklooks=[B5,ndvi]")
    write_store(stack_dataset(height=20, width=20), cfg.paths.stack)
    stages.featurize(cfg)
    assert "no quicklook of 'ndvi'" in caplog.text


def white_fraction(path: str) -> float:
    img = imread(path)[..., :3]
    return float(np.all(img == 1.0, axis=-1).mean())


def test_nodata_is_white_in_the_layer_quicklook(tmp_path: pytest.TempPathFactory) -> None:
    layer = np.tile(np.linspace(-1, 1, 200, dtype=np.float32), (200, 1))
    full = plots.layer_png(f"{tmp_path}/full.png", layer, title="full")
    layer[:, :100] = np.nan  # half the scene is no-data
    half = plots.layer_png(f"{tmp_path}/half.png", layer, title="half")
    # the same figure, but the NaN half is white (transparent over a white background)
    assert white_fraction(str(half)) > white_fraction(str(full)) + 0.15


def test_false_colour_rgba_stretches_and_hides_nodata() -> None:
    ramp = np.tile(np.arange(101, dtype=np.float64), (3, 4, 1))  # (3, 4, 101)
    ramp[1] *= -1.0
    ramp[2, 0, 0] = np.nan
    rgba = plots.false_colour_rgba(ramp)
    assert rgba.shape == (4, 101, 4)
    assert rgba[0, 0, 3] == 0.0 and (rgba[0, 0, :3] == 0).all()  # no-data: transparent
    assert (rgba[1:, :, 3] == 1.0).all()
    # red: 2nd..98th percentile (2..98) -> 0..1, clipped outside
    np.testing.assert_allclose(rgba[1, [0, 2, 50, 98, 100], 0], [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(rgba[1, [2, 98], 1], [1, 0])  # green is the reversed ramp


def test_quicklook_thins_dask_layers_before_computing() -> None:
    arr = np.arange(2100 * 30, dtype=np.float32).reshape(2100, 30)
    lazy = xr.DataArray(da.from_array(arr, chunks=(256, 30)), dims=("y", "x"))
    thin = plots.thin_layer(lazy)
    np.testing.assert_array_equal(thin, arr[::3, ::3])
    assert max(thin.shape) <= plots.MAX_PX
