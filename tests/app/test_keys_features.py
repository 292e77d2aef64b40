"""Features and predict: the library's messages name its arguments; the stages' name the
config keys that feed them (through :data:`geoensemble.app.keys.KEYS`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geoensemble.api import featurize
from geoensemble.app.keys import KEYS, config_keys, keyed
from geoensemble.app.params import compose
from geoensemble.app.validate import validate
from geoensemble.errors import ConfigError, GeoEnsembleError, InputFileError, LayerNotFoundError
from geoensemble.features.build import build_features
from geoensemble.features.impute import declared_fill_values
from geoensemble.features.nanpolicy import check_nan_policy
from geoensemble.features.sample import sample_pixels
from geoensemble.predict.regularise_file import regularise_file
from geoensemble.regularisation import check_settings
from tests.features.conftest import recipe, stack_dataset

CONF = Path(__file__).resolve().parents[2] / "conf"


def _raised(fn: object, *args: object, **kwargs: object) -> GeoEnsembleError:
    try:
        fn(*args, **kwargs)  # type: ignore[operator]
    except GeoEnsembleError as exc:
        return exc
    raise AssertionError(f"{fn} raised nothing")


def test_the_nan_policy_names_arguments_for_python_and_keys_for_the_config() -> None:
    exc = _raised(check_nan_policy, 2, None)
    assert str(exc) == (
        "nan_threshold=2 lets pixels with NaN features reach the model but impute is None "
        "(null): set impute=median (or mean, constant), or nan_threshold=0"
    )
    assert str(keyed(exc)) == (
        "features.nan_threshold=2 lets pixels with NaN features reach the model but "
        "features.impute is None (null): set features.impute=median (or mean, constant), or "
        "features.nan_threshold=0"
    )
    # the config check runs before any stage, and renders it itself
    with pytest.raises(ConfigError) as info:
        validate(compose(["features.nan_threshold=2", "features.impute=null"], config_dir=CONF))
    assert str(info.value) == str(keyed(exc))
    with pytest.raises(ConfigError, match=r"^features\.impute='mode' is unknown: use median"):
        validate(compose(["features.impute=mode"], config_dir=CONF))


def test_a_recipe_error_names_the_argument_in_the_api_and_the_key_in_a_stage() -> None:
    ds = stack_dataset()
    with pytest.raises(ConfigError) as api:
        featurize(ds, indices=["evi"])
    want = (
        "indices has unknown index 'evi': use one of ['nbr', 'ndsi', 'ndvi', 'ndwi'] or "
        "define it under derived"
    )
    assert str(api.value) == want
    with pytest.raises(ConfigError) as stage, config_keys():  # as the featurize stage runs
        build_features(ds, recipe(indices=["evi"]))
    assert str(stage.value) == (
        "features.indices has unknown index 'evi': use one of ['nbr', 'ndsi', 'ndvi', "
        "'ndwi'] or define it under features.derived"
    )
    # a layer missing for the sensor preset: the same error, argument then key
    exc = _raised(build_features, ds, recipe(sensor="none", indices=["ndvi"]))
    assert isinstance(exc, LayerNotFoundError)
    assert str(exc).endswith(": fix sensor or the layer names")
    assert str(keyed(exc)).endswith(": fix features.sensor or the layer names")


def test_a_custom_entry_refused_by_the_trust_policy_names_its_entry() -> None:
    spec = {"_target_": "geoensemble.features.custom.savi", "gain": 2}
    exc = _raised(build_features, stack_dataset(), recipe(bands=["B5"], custom=[spec]))
    assert exc.arguments["custom"] == "Recipe.custom"
    assert str(exc).startswith("custom[0] (geoensemble.features.custom.savi) rejected its ")
    assert str(keyed(exc)).startswith(
        "features.custom[0] (geoensemble.features.custom.savi) rejected its arguments {'gain': 2}"
    )
    missing = {"_target_": "no.such.module.fn"}
    refused = _raised(build_features, stack_dataset(), recipe(custom=[missing]))
    assert "custom[0]._target_='no.such.module.fn'" in str(refused)
    assert "features.custom[0]._target_='no.such.module.fn'" in str(keyed(refused))


def test_declared_fill_values_name_impute_stats_and_the_stage_its_key(tmp_path: Path) -> None:
    # a folder named like the argument: a path is never rewritten
    stats = tmp_path / "impute_stats" / "s.json"
    exc = _raised(declared_fill_values, stats, ["B2"], "median")
    assert isinstance(exc, InputFileError)
    assert str(exc).startswith(f"impute_stats={str(stats)!r} does not exist: give a JSON file")
    assert str(keyed(exc)).startswith(
        f"predict.external.impute_stats={str(stats)!r} does not exist: give a JSON file"
    )


def test_sample_errors_and_their_warnings_render_in_a_stage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ds = stack_dataset()
    exc = _raised(sample_pixels, ds, ["B1"], size=0, seed=0)
    assert (str(exc), str(keyed(exc))) == (
        "size=0 must be >= 1",
        "features.sample.size=0 must be >= 1",
    )
    log = logging.getLogger("geoensemble")
    with caplog.at_level(logging.WARNING, logger="geoensemble"), config_keys():
        log.warning("kept going: %s", exc, extra={"arguments": exc.arguments})
    assert caplog.records[-1].getMessage() == "kept going: features.sample.size=0 must be >= 1"


def test_regularisation_names_its_arguments_and_the_stage_the_regularise_keys(
    tmp_path: Path,
) -> None:
    exc = _raised(check_settings, radius=0)
    assert str(exc).startswith("radius=0 is not a whole number of pixels >= 1")
    assert str(keyed(exc)).startswith("predict.regularise.majority_radius=0 is not a whole")
    api = _raised(check_settings, connectivity=6, names={"connectivity": "conn"})  # renamed
    assert str(api).startswith("conn=6 is unknown") and str(keyed(api)).startswith(
        "predict.regularise.connectivity=6 is unknown: use 4 (edges) or 8"
    )
    with pytest.raises(ConfigError, match=r"^predict\.regularise\.min_pixels=0 is not a whole"):
        validate(compose(["predict.regularise.min_pixels=0"], config_dir=CONF))
    # a real class map in degrees: a mapping unit in hectares cannot be converted
    src = tmp_path / "vote.tif"
    profile = {"driver": "GTiff", "width": 8, "height": 6, "count": 1, "dtype": "uint8"}
    transform = Affine(0.001, 0, -105.0, 0, -0.001, 40.0)
    with rasterio.open(src, "w", crs="EPSG:4326", transform=transform, **profile) as dst:
        dst.write(np.ones((1, 6, 8), np.uint8))
    exc = _raised(regularise_file, src, tmp_path / "out.tif", min_hectares=0.5)
    assert str(exc) == (
        "min_hectares needs a projected CRS but the map is in EPSG:4326 (degrees): "
        "reproject the map (e.g. to its UTM zone) or give min_pixels instead"
    )
    assert str(keyed(exc)) == (
        "predict.regularise.min_hectares needs a projected CRS but the map is in EPSG:4326 "
        "(degrees): reproject the map (e.g. to its UTM zone) or give "
        "predict.regularise.min_pixels instead"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vote.tif"]


def test_the_features_and_predict_parameters_all_have_config_keys() -> None:
    for parameter in (
        "check_settings.connectivity",
        "check_settings.min_pixels",
        "check_settings.radius",
        "regularise_file.min_hectares",
        "regularise_file.min_pixels",
        "regularise_file.radius",
        "Recipe.bands",
        "Recipe.custom",
        "Recipe.derived",
        "Recipe.indices",
        "Recipe.sensor",
        "check_nan_policy.impute",
        "check_nan_policy.nan_threshold",
        "declared_fill_values.impute_stats",
        "map_paths.out_dir",
        "predict_scene.block_size",
        "predict_scene.threads",
        "sample_pixels.nan_threshold",
        "sample_pixels.size",
        "sample_pixels.stratify",
        "scene_fill_values.strategy",
    ):
        assert KEYS[parameter].startswith(("features.", "predict.")), parameter
    assert KEYS["map_paths.out_dir"] == "predict.output_dir"
