"""Band indices and two-layer arithmetic: worked examples, sensor presets, properties."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from geoensemble.errors import ConfigError, LayerNotFoundError
from geoensemble.features.build import Recipe, build_features
from geoensemble.features.indices import (
    NAMED_INDICES,
    OPS,
    SENSORS,
    derived_spec,
    layer_name,
    normalized_difference,
    ratio,
)
from tests.features.conftest import BANDS, recipe, stack_dataset


def one_pixel(**bands: float) -> xr.Dataset:
    return xr.Dataset(
        {
            k: xr.DataArray(np.array([[v]], dtype=np.float32), dims=("y", "x"))
            for k, v in bands.items()
        }
    )


def test_ndvi_of_known_reflectances() -> None:
    # Healthy vegetation: NIR 0.50, red 0.08 -> (0.50 - 0.08) / (0.50 + 0.08) = 0.7241...
    ds = one_pixel(B4=0.08, B5=0.50)
    out = build_features(ds, recipe(indices=["ndvi"]))
    assert out["ndvi"].dtype == np.float32
    assert out["ndvi"].item() == pytest.approx(0.42 / 0.58, rel=1e-6)


@pytest.mark.parametrize(
    ("sensor", "bands"),
    [
        # green, nir, red, swir1, swir2 in each sensor's band numbering
        ("landsat8", {"B3": 0.1, "B5": 0.4, "B4": 0.2, "B6": 0.3, "B7": 0.05}),
        ("landsat9", {"B3": 0.1, "B5": 0.4, "B4": 0.2, "B6": 0.3, "B7": 0.05}),
        ("landsat7", {"B2": 0.1, "B4": 0.4, "B3": 0.2, "B5": 0.3, "B7": 0.05}),
        ("landsat5", {"B2": 0.1, "B4": 0.4, "B3": 0.2, "B5": 0.3, "B7": 0.05}),
    ],
)
def test_four_indices_use_the_standard_band_pairs_of_each_landsat(
    sensor: str, bands: dict[str, float]
) -> None:
    # Same reflectances by role on every sensor, so every sensor must give the same indices.
    green, nir, red, swir1, swir2 = 0.1, 0.4, 0.2, 0.3, 0.05
    out = build_features(
        one_pixel(**bands), recipe(sensor=sensor, indices=["ndwi", "ndvi", "ndsi", "nbr"])
    )
    want = {
        "ndwi": (green - nir) / (green + nir),
        "ndvi": (nir - red) / (nir + red),
        "ndsi": (green - swir1) / (green + swir1),
        "nbr": (nir - swir2) / (nir + swir2),
    }
    for name, value in want.items():
        assert out[name].item() == pytest.approx(value, rel=1e-6), name


def test_sensor_presets_name_the_usgs_bands() -> None:
    assert SENSORS["landsat8"]["nir"] == "B5" and SENSORS["landsat8"]["swir2"] == "B7"
    assert SENSORS["landsat7"]["nir"] == "B4" and SENSORS["landsat5"]["swir1"] == "B5"
    assert set(NAMED_INDICES) == {"ndvi", "ndwi", "ndsi", "nbr"}


@pytest.mark.parametrize(
    ("spec", "a", "b", "expected"),
    [
        (["B5", "B4"], 0.4, 0.1, 0.3 / 0.5),
        ({"op": "normalized_difference", "a": "B5", "b": "B4"}, 0.4, 0.1, 0.3 / 0.5),
        ({"op": "ratio", "a": "B5", "b": "B4"}, 0.4, 0.1, 4.0),
        ({"op": "difference", "a": "B5", "b": "B4"}, 0.4, 0.1, 0.3),
        ({"op": "sum", "a": "nir", "b": "red"}, 0.4, 0.1, 0.5),
        ({"op": "ratio", "a": "B5", "b": "B4"}, 0.4, 0.0, np.nan),  # undefined, not inf
        (["B5", "B4"], 0.0, 0.0, np.nan),
        (["B5", "B4"], np.nan, 0.1, np.nan),
    ],
)
def test_derived_operations_of_any_two_layers(
    spec: object, a: float, b: float, expected: float
) -> None:
    out = build_features(one_pixel(B5=a, B4=b), recipe(derived={"f": spec}))
    np.testing.assert_allclose(out["f"].item(), expected, rtol=1e-6)


def test_collection2_layer_names_match_the_preset_by_suffix() -> None:
    ds = one_pixel(SR_B4=0.1, SR_B5=0.3)
    assert layer_name(ds, "nir", "landsat8") == "SR_B5"
    out = build_features(ds, recipe(indices=["ndvi"]))
    assert out["ndvi"].item() == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("fcfg", "error", "match"),
    [
        (
            recipe(indices=["evi"]),
            ConfigError,
            r"^indices has unknown index 'evi'.* or define it under derived$",
        ),
        (recipe(sensor="sentinel2", indices=["ndvi"]), ConfigError, r"sentinel2"),
        (recipe(bands=["B9"]), LayerNotFoundError, r"'B9'.*stack has"),
        (
            recipe(sensor="landsat7", indices=["ndvi"]),
            LayerNotFoundError,
            r"'red' \(= B3 for landsat7\)",
        ),
        (recipe(derived={"x": ["B5"]}), ConfigError, r"^derived\.x=\['B5'\] is not a feature spec"),
        (
            recipe(derived={"x": {"op": "product", "a": "B5", "b": "B4"}}),
            ConfigError,
            r"derived\.x\.op='product'",
        ),
        (recipe(bands=["B4"], derived={"B4": ["B5", "B4"]}), ConfigError, r"twice"),
        (recipe(), ConfigError, r"selects no feature"),
    ],
)
def test_bad_feature_configs_name_the_key(fcfg: Recipe, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build_features(one_pixel(B4=0.1, B5=0.3), fcfg)


def test_ambiguous_suffix_is_an_error() -> None:
    with pytest.raises(LayerNotFoundError, match="ambiguous"):
        layer_name(one_pixel(SR_B5=0.1, TOA_B5=0.2), "nir", "landsat8")


@pytest.mark.parametrize("chunks", [None, 7, 16, 64])
def test_dask_and_numpy_stacks_give_identical_features(chunks: int | None) -> None:
    fcfg = recipe(
        bands=["*"],
        indices=["ndwi", "ndvi", "ndsi", "nbr"],
        derived={"r": {"op": "ratio", "a": "nir", "b": "red"}},
    )
    ref = build_features(stack_dataset(), fcfg).compute()
    out = build_features(stack_dataset(chunks=chunks), fcfg)
    if chunks:
        assert out["ndvi"].chunks is not None
        assert out["ndvi"].data.chunksize == (min(chunks, 40), min(chunks, 30))
    assert list(out.data_vars) == [*BANDS, "ndwi", "ndvi", "ndsi", "nbr", "r"]
    xr.testing.assert_identical(out.compute(), ref)
    # NaN exactly where an input band is NaN
    s = stack_dataset()
    np.testing.assert_array_equal(
        np.isnan(ref["ndvi"].to_numpy()), np.isnan(s["B5"] + s["B4"]).to_numpy()
    )
    assert ref.attrs["crs_wkt"] and len(ref.attrs["geotransform"]) == 6


def test_derived_spec_normalises_both_forms() -> None:
    assert derived_spec("a", ["nir", "red"]) == ("normalized_difference", "nir", "red")
    assert derived_spec("a", {"op": "sum", "a": "B1", "b": "B2"}) == ("sum", "B1", "B2")


# --------------------------------------------------------------------------- properties
reflectance = st.floats(min_value=0.0009765625, max_value=1.0, width=32)  # 2**-10
pixels = arrays(np.float32, st.integers(1, 64), elements=reflectance)


@settings(max_examples=60, deadline=None)
@given(a=pixels, data=st.data())
def test_normalized_difference_is_bounded_antisymmetric_and_matches_the_formula(
    a: np.ndarray, data: st.DataObject
) -> None:
    b = data.draw(arrays(np.float32, a.shape, elements=reflectance))
    nd = normalized_difference(a, b)
    assert nd.dtype == np.float32
    assert np.all(np.abs(nd) <= 1.0 + 1e-6)
    np.testing.assert_allclose(nd, -normalized_difference(b, a), atol=1e-7)
    expected = (a.astype(np.float64) - b) / (a.astype(np.float64) + b)
    np.testing.assert_allclose(nd, expected, rtol=1e-4, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(a=pixels, data=st.data())
def test_ratio_sum_difference_identities(a: np.ndarray, data: st.DataObject) -> None:
    b = data.draw(arrays(np.float32, a.shape, elements=reflectance))
    np.testing.assert_allclose(ratio(a, b) * b, a, rtol=1e-5)
    total, diff = OPS["sum"](a, b), OPS["difference"](a, b)
    np.testing.assert_allclose((total + diff) / 2, a, rtol=1e-5, atol=1e-7)
    # NDVI-style: (a - b) / (a + b) == diff / total
    np.testing.assert_allclose(normalized_difference(a, b), diff / total, rtol=1e-5, atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(
    a=arrays(np.float32, 16, elements=st.one_of(st.just(np.nan), st.just(0.0), reflectance)),
    data=st.data(),
)
def test_nan_and_zero_denominators_give_nan_never_inf(a: np.ndarray, data: st.DataObject) -> None:
    b = data.draw(
        arrays(np.float32, 16, elements=st.one_of(st.just(np.nan), st.just(0.0), reflectance))
    )
    for op in OPS.values():
        out = op(a, b)
        assert not np.isinf(out).any()
        assert np.isnan(out[np.isnan(a) | np.isnan(b)]).all()
    assert np.isnan(ratio(a, b)[b == 0]).all()
    assert np.isnan(normalized_difference(a, b)[(a + b) == 0]).all()
