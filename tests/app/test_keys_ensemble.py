"""The ensemble library's messages name its arguments; the stages' name the config keys."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.cluster import MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline

from geoensemble.app.keys import KEYS, config_keys, keyed, render
from geoensemble.app.params import compose
from geoensemble.app.validate import validate
from geoensemble.ensemble import checks, precedence, scoring, training
from geoensemble.ensemble.folds import spatial_folds
from geoensemble.ensemble.pipeline import member_pipeline
from geoensemble.ensemble.precedence import check_precedence
from geoensemble.ensemble.space import check_space_size
from geoensemble.errors import ConfigError
from geoensemble.io.labels import Labels
from tests.conftest import ROOT


def test_fold_settings_name_n_folds_for_python_and_the_cv_keys_for_the_stage() -> None:
    rows = cols = np.arange(10)
    with pytest.raises(ConfigError) as exc:
        spatial_folds(rows, cols, n_folds=5, block_size=1000)
    assert str(exc.value) == (
        "the 10 labelled pixels fall in only 1 spatial block(s) of block_size=1000 px, fewer "
        "than n_folds=5: lower block_size or n_folds, or add labels"
    )
    assert str(keyed(exc.value)) == (
        "the 10 labelled pixels fall in only 1 spatial block(s) of ensemble.cv.block_size=1000 "
        "px, fewer than ensemble.cv.folds=5: lower ensemble.cv.block_size or ensemble.cv.folds, "
        "or add labels"
    )


def test_a_size_above_the_space_names_size_and_space_or_their_keys() -> None:
    with pytest.raises(ConfigError) as exc:
        check_space_size({"n_clusters": [3, 4]}, 5)
    assert str(exc.value) == (
        "size=5 members per generation, but space allows only 2 distinct member(s) "
        "(space.n_clusters): lower size to at most 2, or widen space"
    )
    with pytest.raises(ConfigError) as staged:
        with config_keys():  # what a stage does with it
            check_space_size({"n_clusters": [3, 4]}, 5)
    assert str(staged.value) == (
        "ensemble.size=5 members per generation, but model.space allows only 2 distinct "
        "member(s) (model.space.n_clusters): lower ensemble.size to at most 2, or widen "
        "model.space"
    )


def test_a_step_asking_too_many_components_names_the_step_or_its_config_key() -> None:
    template = Pipeline([("pca", PCA(n_components=20)), ("model", MiniBatchKMeans())])
    with pytest.raises(ConfigError) as exc:
        member_pipeline(template, {"n_clusters": 3}, n_features=5)
    assert str(exc.value) == "steps.pca.n_components=20 is more than the 5 features: lower it"
    assert str(keyed(exc.value)) == (
        "features.steps.pca.n_components=20 is more than the 5 features: lower it"
    )
    with pytest.raises(ConfigError) as searched:
        member_pipeline(template, {"pca__n_components": 9}, n_features=5)
    assert str(keyed(searched.value)) == (
        "model.space.pca__n_components=9 is more than the 5 features: lower it"
    )


def test_the_precedence_rule_names_arguments_and_validate_names_the_keys() -> None:
    with pytest.raises(ConfigError) as exc:
        check_precedence(6, {"n_clusters": 6}, {"n_clusters": [4, 6]})
    assert str(exc.value).startswith(
        "n_clusters=6 is also searched by space.n_clusters=[4,6]: a value you set is used by "
        "every member and only space varies"
    )
    assert "'~space.n_clusters', or space={} to search nothing" in str(exc.value)
    with pytest.raises(ConfigError) as staged:
        validate(compose(["model.n_clusters=6"], config_dir=ROOT / "conf"))
    assert str(staged.value).startswith(
        "config key model.n_clusters=6 is also searched by model.space.n_clusters="
        "[4,5,6,7,8,9,10,12]: a value you set is used by every member and only model.space "
        "varies"
    )
    assert "'~model.space.n_clusters', or model.space={} to search nothing" in str(staged.value)


def test_the_nan_drop_warning_and_fix_name_arguments_or_keys(
    caplog: pytest.LogCaptureFixture,
) -> None:
    X = np.array([[1.0, np.nan], [2.0, 3.0], [np.nan, 1.0]])
    ok = ~np.isnan(X).any(axis=1)
    labels = Labels(np.array([[1, 2, 1]], dtype=np.uint8), target="classes", source="y")
    with caplog.at_level(logging.WARNING, logger="geoensemble"):
        out = training.nan_dropped(X, np.array([1, 2, 1]), ok, ["a", "b"], labels, 0)
        with config_keys():
            training.nan_dropped(X, np.array([1, 2, 1]), ok, ["a", "b"], labels, 0)
    fix = "set nan_threshold=1 with impute=median (or mean, constant) to keep them"
    assert out["fix"].startswith(fix)
    assert render(out["fix"], training.NAN_FIX_ARGUMENTS).startswith(
        "set features.nan_threshold=1 with features.impute=median (or mean, constant)"
    )
    python, stage = (r.getMessage() for r in caplog.records)
    assert "more than nan_threshold=0 NaN features" in python and f"Fix: {fix}" in python
    assert "more than features.nan_threshold=0 NaN features" in stage
    assert "Fix: set features.nan_threshold=1 with features.impute=median" in stage


@pytest.mark.parametrize(
    "arguments",
    [
        scoring.RANKING_ARGUMENTS,
        training.NAN_FIX_ARGUMENTS,
        checks.ARGUMENTS,
        precedence.ARGUMENTS,
    ],
)
def test_every_argument_table_of_the_ensemble_maps_to_a_config_key(
    arguments: dict[str, str],
) -> None:
    """The tables messages pass as ``arguments=`` by name (not as a literal the completeness
    test of test_keys.py reads) are in KEYS too."""
    assert set(arguments.values()) <= set(KEYS), set(arguments.values()) - set(KEYS)
