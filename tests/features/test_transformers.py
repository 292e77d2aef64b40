"""Learned steps: the random band-subset selector and the configured sklearn steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from geoensemble.app.estimators import build_pipeline
from geoensemble.app.params import compose
from geoensemble.app.validate import validate
from geoensemble.errors import ConfigError
from geoensemble.features.transformers import RandomBandSubset, output_names

CONF = Path(__file__).resolve().parents[2] / "conf"
NAMES = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "ndwi", "ndvi", "ndsi", "nbr"]


@parametrize_with_checks([RandomBandSubset(), RandomBandSubset(size=1, seed=3)])
def test_random_band_subset_follows_the_estimator_rules(estimator, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


def test_random_band_subset_keeps_a_seeded_choice_of_columns() -> None:
    X = np.arange(30, dtype=float).reshape(3, 10)
    sel = RandomBandSubset(size=4, seed=11).fit(X)
    kept = np.flatnonzero(sel.get_support())
    assert kept.size == 4
    np.testing.assert_array_equal(sel.transform(X), X[:, kept])
    # same seed, same choice; the choice is reproducible from the seed alone
    np.testing.assert_array_equal(
        RandomBandSubset(size=4, seed=11).fit(X * 0).support_, sel.support_
    )
    rng = np.random.default_rng(11)
    np.testing.assert_array_equal(kept, np.sort(rng.choice(10, size=4, replace=False)))
    # fractions round up; NaN is allowed (the choice ignores values)
    X[0, 0] = np.nan
    assert RandomBandSubset(size=0.25).fit(X).transform(X).shape == (3, 3)
    names = np.array([f"f{i}" for i in range(10)], dtype=object)
    assert list(sel.get_feature_names_out(names)) == [f"f{i}" for i in kept]


def test_seeds_give_different_band_combinations() -> None:
    X = np.zeros((2, 11))
    choices = {tuple(RandomBandSubset(size=5, seed=s).fit(X).support_) for s in range(20)}
    assert len(choices) > 10


@pytest.mark.parametrize(
    ("size", "match"),
    [
        (0, r"size=0 must be between 1 and the 4"),
        (5, r"size=5 must be between 1 and the 4"),
        (1.5, r"fraction in \(0, 1\]"),
        ("half", "must be a number"),
    ],
)
def test_bad_subset_size_is_a_clear_error(size: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RandomBandSubset(size=size).fit(np.zeros((3, 4)))  # type: ignore[arg-type]


def test_random_subset_config_lets_the_search_vary_the_seed() -> None:
    cfg = validate(compose(["features=random_subsets"], config_dir=CONF))
    # the ensemble's model.space carries the step parameter in set_params naming
    assert cfg.model.space["subset__seed"] == {"low": 0, "high": 1000}
    assert "n_clusters" in cfg.model.space  # the model's own space is kept
    pipe = build_pipeline(cfg.features.steps, cfg.model.estimator, n_features=len(NAMES))
    assert [n for n, _ in pipe.steps] == ["subset", "scale", "model"]
    X = np.random.default_rng(0).random((300, len(NAMES)))
    chosen = []
    for seed in (1, 2):
        member = clone(pipe).set_params(subset__seed=seed, model__n_clusters=3).fit(X)
        chosen.append(output_names(member, NAMES))
        assert len(chosen[-1]) == 5 and set(chosen[-1]) <= set(NAMES)
    assert chosen[0] != chosen[1]


@pytest.mark.parametrize(
    ("option", "expected_steps", "names_out"),
    [
        ("bands", ["scale", "model"], NAMES[:7]),
        ("indices_poly_pca", ["scale", "poly", "pca", "model"], [f"pca{i}" for i in range(4)]),
        ("impute_median", ["impute", "scale", "pca", "model"], [f"pca{i}" for i in range(8)]),
    ],
)
def test_feature_configs_build_and_fit_member_pipelines(
    option: str, expected_steps: list[str], names_out: list[str]
) -> None:
    cfg = validate(
        compose([f"features={option}", "model.n_clusters=3", "model.space={}"], config_dir=CONF)
    )
    n_in = 7 if option == "bands" else (4 if option == "indices_poly_pca" else 15)
    names = NAMES[:n_in] if n_in <= len(NAMES) else [f"f{i}" for i in range(n_in)]
    pipe = build_pipeline(
        cfg.features.steps, cfg.model.estimator, impute=cfg.features.impute, n_features=n_in
    )
    assert [n for n, _ in pipe.steps] == expected_steps
    X = np.random.default_rng(1).random((400, n_in))
    X[::7, 0] = np.nan if cfg.features.impute else X[::7, 0]
    pipe.fit(X)
    got = output_names(pipe, names)
    assert got == (names if option == "bands" else names_out)
    if option == "indices_poly_pca":
        # 4 indices -> 4 + 6 pairwise interaction terms before PCA
        assert pipe.named_steps["poly"].n_output_features_ == 10


def test_select_config_keeps_the_k_most_discriminating_features() -> None:
    cfg = validate(compose(["features=select"], config_dir=CONF))
    pipe = build_pipeline(
        cfg.features.steps,
        {"_target_": "sklearn.linear_model.LogisticRegression", "max_iter": 200},
    )
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 600)
    X = rng.normal(size=(600, 11))
    X[:, [1, 4, 6, 8, 9, 10]] += y[:, None] * 2.0  # six informative features
    X[:, 2] = 0.5  # a constant one
    pipe.fit(X, y)
    assert output_names(pipe, NAMES) == [NAMES[i] for i in (1, 4, 6, 8, 9, 10)]
    assert not pipe.named_steps["variance"].get_support()[2]
