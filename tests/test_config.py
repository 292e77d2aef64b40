"""Config composition, params.yaml sync, schema validation and every group instantiating."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra.utils import instantiate

from geoensemble.config import validate
from geoensemble.ensemble.pipeline import build_pipeline
from geoensemble.errors import ConfigError
from geoensemble.params import compose, render

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def test_params_yaml_equals_composition_of_conf() -> None:
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert committed == yaml.safe_load(render()), (
        "params.yaml is out of sync with conf/: run python -m geoensemble.params"
    )


def group_options() -> list[tuple[str, str]]:
    return sorted(
        (d.name, f.stem)
        for d in CONF.iterdir()
        if d.is_dir()
        for f in d.glob("*.yaml")
        if d.name != "experiment"
    )


@pytest.mark.parametrize(("group", "option"), group_options())
def test_every_group_option_composes_validates_and_instantiates(group: str, option: str) -> None:
    cfg = validate(compose([f"{group}={option}"], config_dir=CONF))
    pipe = build_pipeline(cfg.features.steps, cfg.model.estimator, impute=cfg.features.impute)
    assert pipe.steps[-1][0] == "model"
    assert type(pipe[-1]).__name__ == cfg.model.estimator["_target_"].rsplit(".", 1)[1]
    for name, spec in cfg.features.steps.items():
        if spec is not None:
            assert type(instantiate(spec)).__name__ == spec["_target_"].rsplit(".", 1)[1], name


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["+data.colour=red"], r"data\.colour"),
        (["ensemble.size=zero"], r"ensemble\.size"),
        (["ensemble.size=0"], r"ensemble\.size=0 is out of range"),
        (["data.align=sideways"], r"data\.align"),
        (["features.nan_threshold=-1"], r"features\.nan_threshold"),
        (["predict.compress=lzma"], r"predict\.compress"),
        (["data.chunk_size=4"], r"data\.chunk_size"),
        (["~model.estimator._target_"], r"model\.estimator\._target_"),
    ],
)
def test_bad_config_names_the_key(overrides: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        validate(compose(overrides, config_dir=CONF))


def test_bad_target_names_the_key_and_class() -> None:
    cfg = validate(
        compose(["model.estimator._target_=sklearn.cluster.NoSuchKMeans"], config_dir=CONF)
    )
    with pytest.raises(ConfigError, match=r"model\.estimator.*NoSuchKMeans"):
        build_pipeline(cfg.features.steps, cfg.model.estimator)
