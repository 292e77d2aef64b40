"""The readers' errors name their arguments for a Python caller and config keys in the stages.

Real errors of the io package, raised once through the public API (``load_array``,
``rasterize_labels``) and once through the app (a stage, ``validate`` or ``keyed`` with the
table the app uses there).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import geoensemble as ge
from geoensemble.api.labels import rasterize_labels
from geoensemble.app import stages
from geoensemble.app.evaluate import VALIDATION_KEYS
from geoensemble.app.keys import KEYS, keyed
from geoensemble.app.predict import scene_keys
from geoensemble.errors import ConfigError, InputFileError, LayerNotFoundError
from geoensemble.io.arguments import outside
from geoensemble.io.checks import READ_ARGUMENTS
from geoensemble.synthetic import write_scene
from tests.app.test_keys import config_keys_below_the_app

IO_FILES = ("io/", "synthetic.py", "api/load.py", "api/labels.py")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("keys_io") / "raw"
    write_scene(raw, width=48, height=32, n_points=12)
    return raw


def test_a_missing_input_names_path_for_python_and_data_path_in_the_stage(
    tmp_path: Path, make_cfg: Callable[..., object]
) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(InputFileError) as api:
        ge.load_array(missing)
    assert str(api.value) == (
        f"input {missing} does not exist: set path to your folder of rasters or to your "
        f"NetCDF/HDF/GeoTiff file (relative paths start at the project root)"
    )
    assert api.value.arguments == {"path": "ReadSpec.path"}
    with pytest.raises(InputFileError) as stage:
        stages.ingest(make_cfg(f"data.path={missing}"))  # type: ignore[arg-type]
    assert str(stage.value) == (
        f"input {missing} does not exist: set data.path to your folder of rasters or to "
        f"your NetCDF/HDF/GeoTiff file (relative paths start at the project root)"
    )
    # a scene to predict reads with the same readers: its own entry is named
    assert str(keyed(api.value, scene_keys("predict.scenes[1]"))).startswith(
        f"input {missing} does not exist: set predict.scenes[1].path to your folder"
    )


def test_a_bad_layer_spec_names_layers_for_python_and_the_config_key_in_validate(
    scene: Path, make_cfg: Callable[..., object]
) -> None:
    with pytest.raises(ConfigError) as api:
        ge.load_array(scene / "scene", layers=[ge.LayerSpec("red", file="B4", band=0)])
    assert str(api.value) == "layers[0].band=0 is invalid: use a band number >= 1"
    with pytest.raises(ConfigError) as config:
        make_cfg("data.layers=[{name: red, file: B4, band: 0}]")
    assert str(config.value) == (
        "config key data.layers[0].band=0 is invalid: use a band number >= 1"
    )
    with pytest.raises(LayerNotFoundError) as nothing:
        ge.load_array(scene / "scene", layers=[{"name": "swir", "file": "B9"}])
    text = str(nothing.value)
    assert text.startswith("layers[0] (layer 'swir'): nothing matches file 'B9'; there are 7")
    assert text.endswith(". Fix layers[0].file")
    assert str(keyed(nothing.value)).endswith(". Fix data.layers[0].file")


def test_a_missing_label_attribute_names_attribute_then_the_training_or_validation_key(
    scene: Path,
) -> None:
    like = ge.load_array(scene / "scene")
    points = scene / "labels" / "points.geojson"
    fields = sorted(json.loads(points.read_text())["features"][0]["properties"])
    with pytest.raises(ConfigError) as api:
        rasterize_labels(points, like=like, attribute="landcover")
    assert str(api.value) == f"attribute='landcover' is not a field of {points}: it has {fields}"
    assert str(keyed(api.value)) == (
        f"data.labels.attribute='landcover' is not a field of {points}: it has {fields}"
    )
    assert str(keyed(api.value, VALIDATION_KEYS)) == (
        f"data.validation.attribute='landcover' is not a field of {points}: it has {fields}"
    )
    with pytest.raises(ConfigError) as target:
        rasterize_labels(points, like=like, target="classess")
    assert str(target.value) == "target='classess' is unknown: use classes or value"
    assert str(keyed(target.value)) == (
        "data.labels.target='classess' is unknown: use classes or value"
    )


def test_every_parameter_the_readers_name_has_a_config_key() -> None:
    """The arguments built at run time (not dict literals the guard of test_keys reads)."""
    assert set(READ_ARGUMENTS.values()) <= set(KEYS)
    assert KEYS["TargetGrid.crs"] == "data.target.crs"
    assert KEYS["StacSearch.limit"] == "data.stac.limit"
    for parameter in ("ReadSpec.crs", "read_labels.layer", "write_scene.out_dir"):
        assert parameter in KEYS


def test_a_quoted_message_keeps_its_own_words() -> None:
    gdal = "'x.tif' not recognized as being in a supported file format."
    args = {"format": "ReadSpec.format", "layers": "ReadSpec.layers"}
    assert outside(gdal, args) == {"layers": "ReadSpec.layers"}
    assert outside("/data/format/x.tif: format_version 3", args) == args


def test_the_io_package_spells_no_config_key() -> None:
    assert [h for h in config_keys_below_the_app() if h.startswith(IO_FILES)] == []
