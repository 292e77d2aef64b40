"""The library's own settings (io.spec, features.build.Recipe, compute.Cluster) and the app's
config dataclasses describe the same thing: same defaults, so the API and the stages read
alike; and the API's LayerSpec reads exactly as a ``data.layers`` entry does."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from geoensemble.app.config import (
    Align,
    ComputeConfig,
    DataConfig,
    FeaturesConfig,
    LayerSpecConfig,
    TargetGridConfig,
)
from geoensemble.compute import Cluster
from geoensemble.errors import ConfigError
from geoensemble.features.build import Recipe
from geoensemble.io.checks import ALIGN
from geoensemble.io.spec import LayerSpec, ReadSpec, TargetGrid, layer_spec
from geoensemble.io.stack import build_stack

from .conftest import write_tif


def _defaults(obj: Any, names: list[str]) -> dict[str, Any]:
    out = {}
    for n in names:
        v = getattr(obj, n)
        out[n] = tuple(v) if isinstance(v, list | tuple) else v
    return out


@pytest.mark.parametrize(
    ("library", "app", "skip"),
    [
        (ReadSpec(path="p"), DataConfig(path="p"), {"layers", "target", "urls", "stac"}),
        (TargetGrid(), TargetGridConfig(), set()),
        (LayerSpec("a"), LayerSpecConfig(name="a"), set()),
        (Cluster(), ComputeConfig(), set()),
    ],
    ids=["ReadSpec", "TargetGrid", "LayerSpec", "Cluster"],
)
def test_library_settings_default_like_the_config(library: Any, app: Any, skip: set[str]) -> None:
    names = [f.name for f in dataclasses.fields(library) if f.name not in skip]
    assert _defaults(library, names) == _defaults(app, names)


def test_recipe_keys_are_features_keys_and_align_values_match() -> None:
    keys = {f.name for f in dataclasses.fields(FeaturesConfig)}
    assert {f.name for f in dataclasses.fields(Recipe)} <= keys
    assert set(ALIGN) == {a.value for a in Align}


def test_layer_spec_normalizes_like_a_data_layers_entry() -> None:
    spec = layer_spec({"name": "red", "nodata": 0, "window": [1, 2, 3, 4], "scale": 2}, 0)
    assert (spec.band, spec.nodata, spec.window, spec.scale, spec.offset) == (
        1,
        (0.0,),
        (1, 2, 3, 4),
        2.0,
        0.0,
    )
    assert LayerSpec("red", nodata=[1, 2.5]).nodata == (1.0, 2.5)
    with pytest.raises(ConfigError, match=r"layers\[3\] has unknown key\(s\) \['colour'\]"):
        layer_spec({"name": "red", "colour": 1}, 3)


def test_build_stack_reads_a_read_spec_as_it_reads_the_config(tmp_path: Path) -> None:
    arr = np.arange(24, dtype="uint16").reshape(4, 6)
    write_tif(tmp_path / "in" / "a.tif", arr, nodata=0)
    spec = LayerSpec("a", file=r"a\.tif$", window=[1, 1, 2, 3], scale=0.5)
    ours = build_stack(ReadSpec(path=str(tmp_path / "in"), format="geotiff_dir", layers=(spec,)))
    cfg = DataConfig(
        path=str(tmp_path / "in"),
        format="geotiff_dir",
        layers=[LayerSpecConfig(name="a", file=r"a\.tif$", window=[1, 1, 2, 3], scale=0.5)],
    )
    theirs = build_stack(cfg)
    assert ours.attrs == theirs.attrs
    np.testing.assert_array_equal(ours["a"].values, theirs["a"].values)
    np.testing.assert_array_equal(ours["a"].values, arr[1:3, 1:4] * 0.5)
