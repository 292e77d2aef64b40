"""Small seeded stacks on a real UTM grid, numpy- or dask-backed, with a no-data corner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from geoensemble.app.config import FeaturesConfig
from geoensemble.app.settings import recipe_of
from geoensemble.features.build import Recipe

BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7"]


def stack_dataset(
    height: int = 40,
    width: int = 30,
    *,
    seed: int = 0,
    chunks: int | None = None,
    names: list[str] | None = None,
    nodata_corner: bool = True,
) -> xr.Dataset:
    """Reflectances in (0.01, 0.6); the top-left 5 x 5 pixels NaN in every layer, and a few
    single-layer NaNs (a band missing at some pixels)."""
    rng = np.random.default_rng(seed)
    names = names or BANDS
    transform = Affine(30.0, 0, 450_000.0, 0, -30.0, 4_500_000.0)
    x = transform.c + transform.a * (np.arange(width) + 0.5)
    y = transform.f + transform.e * (np.arange(height) + 0.5)
    layers = {}
    for i, n in enumerate(names):
        arr = rng.uniform(0.01, 0.6, (height, width)).astype(np.float32)
        if nodata_corner:
            arr[:5, :5] = np.nan
            arr[(10 + i) % height, 3] = np.nan  # one band missing at one pixel per band
        layers[n] = xr.DataArray(arr, dims=("y", "x"), coords={"y": y, "x": x})
    # the grid attributes io.stack.set_grid records (set by hand: no dependency on io/)
    ds = xr.Dataset(layers)
    ds.attrs.update(crs_wkt=CRS.from_epsg(32613).to_wkt(), geotransform=list(transform)[:6])
    return ds.chunk({"y": chunks, "x": chunks}) if chunks else ds


@pytest.fixture
def make_stack() -> Callable[..., xr.Dataset]:
    return stack_dataset


def recipe(**features: Any) -> Recipe:
    """The ``features`` config with these keys, as the stages hand it to the library."""
    return recipe_of(FeaturesConfig(**features))
