"""One set of search defaults: the library's, taken by the app's schema, its YAML and the API."""

from __future__ import annotations

import inspect

import geoensemble as ge
from geoensemble.app.config import AppConfig
from geoensemble.app.params import compose
from geoensemble.app.validate import validate
from geoensemble.ensemble import defaults
from geoensemble.ensemble.search import Search
from tests.conftest import ROOT


def test_the_api_the_schema_the_yaml_and_the_search_agree() -> None:
    expected = {
        "size": 4,
        "generations": 2,
        "keep": 3,
        "criterion": "aic",
        "sample": 200_000,
        "folds": 5,
        "block_size": 32,
        "retries": 2,
    }
    lib = {
        "size": defaults.SIZE,
        "generations": defaults.GENERATIONS,
        "keep": defaults.KEEP,
        "criterion": defaults.CRITERION,
        "sample": defaults.SAMPLE,
        "folds": defaults.CV_FOLDS,
        "block_size": defaults.CV_BLOCK,
        "retries": defaults.RETRIES,
    }
    assert lib == expected
    s = Search()
    assert (s.size, s.generations, s.keep, s.objectives[0][0], s.retries) == (4, 2, 3, "aic", 2)

    api = inspect.signature(ge.fit_ensemble).parameters
    got = {k: api[k].default for k in ("size", "generations", "keep", "criterion", "sample")}
    assert got == {k: expected[k] for k in got}

    for cfg in (AppConfig(), validate(compose([], config_dir=ROOT / "conf"))):
        e = cfg.ensemble
        assert (e.size, e.generations, e.keep, e.metric) == (4, 2, 3, "aic")
        assert (e.cv.folds, e.cv.block_size) == (5, 32)
        assert cfg.features.sample.size == 200_000
        assert cfg.compute.retries == 2


def test_direction_follows_the_criterion() -> None:
    assert defaults.direction_of("aic") == "minimize"
    assert defaults.direction_of("kappa") == "maximize"
    assert defaults.direction_of("rmse") == "minimize"
