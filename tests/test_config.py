"""Config composition, params.yaml sync, schema validation and every group instantiating."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra.utils import instantiate

from geoensemble.app.estimators import build_pipeline
from geoensemble.app.params import compose, render
from geoensemble.app.validate import validate
from geoensemble.errors import ConfigError
from tests.conftest import run, tool

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def test_params_yaml_equals_composition_of_conf() -> None:
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert committed == yaml.safe_load(render()), (
        "params.yaml is out of sync with conf/: run python -m geoensemble.app.params"
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
    from geoensemble.app.train import member_spec

    cfg = validate(compose([f"{group}={option}"], config_dir=CONF))
    pipe = member_spec(cfg).template  # built without the `searched` markers
    assert "searched" not in pipe[-1].get_params(deep=False).values()
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


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (
            ["model.n_clusters=6"],
            r"^config key model\.n_clusters=6 is also searched by model\.space\.n_clusters="
            r"\[4,5,6,7,8,9,10,12\].*'~model\.space\.n_clusters', or model\.space=\{\}",
        ),
        (
            ["model=gmm", "model.n_clusters=6"],
            r"model\.n_clusters=6 is also searched by model\.space\.n_components",
        ),
        (
            ["model=random_forest", "model.estimator.n_estimators=50"],
            r"model\.estimator\.n_estimators=50 is also searched by model\.space\.n_estimators="
            r"\{low: 30, high: 120, step: 30\}.*'~model\.space\.n_estimators'",
        ),
        (
            ["model=random_forest", "model.estimator.max_depth=null"],
            r"model\.estimator\.max_depth=null is also searched by model\.space\.max_depth",
        ),
        (
            ["model.space={}"],
            r"model\.n_clusters is null .*does not search model\.estimator\.n_clusters",
        ),
        (
            ["model=random_forest", "model.space={}"],
            r"model\.estimator\.n_estimators=searched but model\.space does not search",
        ),
    ],
)
def test_a_parameter_both_set_and_searched_names_both_keys(
    overrides: list[str], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        validate(compose(overrides, config_dir=CONF))


def test_a_whole_space_given_on_the_command_line_replaces_the_models_own() -> None:
    """model.space={pca__n_components: ...} names a parameter the K-Means space does not
    list: it replaces the space (Hydra alone would merge it and call the key unknown)."""
    cfg = validate(
        compose(
            ["model.n_clusters=6", "model.space={pca__n_components:{low:3,high:6}}"],
            config_dir=CONF,
        )
    )
    assert cfg.model.space == {"pca__n_components": {"low": 3, "high": 6}}


def test_user_values_reach_every_member_when_the_space_is_cleared() -> None:
    from geoensemble.app.train import member_spec

    cfg = validate(compose(["model.n_clusters=6", "model.space={}"], config_dir=CONF))
    assert cfg.model.space == {} and member_spec(cfg).template[-1].n_clusters == 6
    rf = validate(
        compose(
            [
                "model=random_forest",
                "model.estimator.n_estimators=50",
                "model.estimator.max_depth=null",
                "~model.space.n_estimators",
                "~model.space.max_depth",
            ],
            config_dir=CONF,
        )
    )
    est = member_spec(rf).template[-1]
    assert est.n_estimators == 50 and est.max_depth is None
    assert set(rf.model.space) == {"min_samples_leaf", "max_features"}


def test_cli_set_and_searched_is_one_line_and_space_clears(tmp_path: Path) -> None:
    script = str(ROOT / "pipelines" / "train.py")
    bad = run([tool("python"), script, "model.n_clusters=6"], tmp_path, check=False, timeout=120)
    assert bad.returncode == 2, bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in bad.stderr
    assert lines[0].startswith("geoensemble train: error: config key model.n_clusters=6")
    assert "model.space.n_clusters" in lines[0] and "model.space={}" in lines[0]
    ok = run(
        [tool("python"), script, "model.n_clusters=6", "model.space={}", "--cfg", "job"],
        tmp_path,
        timeout=120,
    )
    model = yaml.safe_load(ok.stdout)["model"]
    assert model["space"] == {} and model["n_clusters"] == 6
