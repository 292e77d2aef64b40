"""User feature functions referenced by ``_target_``."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from geoensemble.errors import ConfigError, LayerNotFoundError
from geoensemble.features.build import build_features
from geoensemble.features.custom import with_roles
from tests.features.conftest import recipe, stack_dataset


def tasseled_wetness(ds: xr.Dataset, *, weight: float = 2.0) -> xr.Dataset:
    """A user function returning a Dataset of two layers (stands for any user code)."""
    return xr.Dataset({"wet": ds["swir1"] * weight, "dry": ds["B7"] - ds["nir"]})


def not_layers(ds: xr.Dataset) -> int:
    return 3


def wrong_grid(ds: xr.Dataset) -> dict[str, xr.DataArray]:
    return {"small": ds["B1"].isel(y=slice(0, 2))}


@pytest.mark.parametrize("chunks", [None, 8])
def test_custom_functions_add_named_layers(chunks: int | None) -> None:
    ds = stack_dataset(chunks=chunks)
    fcfg = recipe(
        bands=["B5"],
        custom=[
            {"_target_": "geoensemble.features.custom.savi", "L": 0.5},
            {"_target_": "geoensemble.features.custom.brightness", "layers": ["red", "green"]},
            {"_target_": f"{__name__}.tasseled_wetness", "weight": 3.0},
        ],
    )
    out = build_features(ds, fcfg, trusted_modules=["tests"])  # the user's own module
    assert list(out.data_vars) == ["B5", "savi", "brightness", "wet", "dry"]
    assert all(out[n].dtype == np.float32 for n in out.data_vars)
    if chunks:
        assert out["savi"].chunks is not None  # still lazy
    ref = stack_dataset()
    nir, red, green = (ref[b].to_numpy().astype(np.float64) for b in ("B5", "B4", "B3"))
    np.testing.assert_allclose(out["savi"], 1.5 * (nir - red) / (nir + red + 0.5), rtol=1e-5)
    np.testing.assert_allclose(out["brightness"], (red + green) / 2, rtol=1e-6)
    np.testing.assert_allclose(out["wet"], 3.0 * ref["B6"], rtol=1e-6)


def test_savi_of_known_reflectances() -> None:
    ds = xr.Dataset({"nir": (("y", "x"), [[0.5]]), "red": (("y", "x"), [[0.1]])})
    out = build_features(
        ds, recipe(sensor="none", custom=[{"_target_": "geoensemble.features.custom.savi"}])
    )
    assert out["savi"].item() == pytest.approx(1.5 * 0.4 / 1.1, rel=1e-6)


def test_roles_are_aliases_of_the_sensor_bands() -> None:
    view = with_roles(stack_dataset(), "landsat7")
    assert view["nir"] is not None
    np.testing.assert_array_equal(view["nir"], view["B4"])
    assert "coastal" not in view  # landsat7 has no coastal band


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ({"_target_": "no.such.module.fn"}, ConfigError, r"custom\[0\]\._target_='no\.such"),
        ({"L": 0.5}, ConfigError, r"custom\[0\].*_target_"),
        (
            {"_target_": "geoensemble.features.custom.savi", "gain": 2},
            ConfigError,
            "rejected its arguments",
        ),
        ({"_target_": f"{__name__}.not_layers"}, ConfigError, r"returned int"),
        ({"_target_": f"{__name__}.wrong_grid"}, ConfigError, r"'small'.*shape \(40, 30\)"),
        (
            {"_target_": "geoensemble.features.custom.brightness", "layers": ["thermal"]},
            LayerNotFoundError,
            r"'thermal'",
        ),
        (
            {"_target_": "geoensemble.features.custom.savi", "name": "B5"},
            ConfigError,
            r"\['B5'\] that already exist",
        ),
    ],
)
def test_bad_custom_functions_name_the_entry(
    spec: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        build_features(
            stack_dataset(), recipe(bands=["B5"], custom=[spec]), trusted_modules=["tests"]
        )
