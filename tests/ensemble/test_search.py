"""The generations search on a real (in-process) dask LocalCluster: selection, generations,
consensus, multi-objective ranking, ``<step>__<param>`` keys, partial_fit and per-member draws."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

from geoensemble.app.config import AppConfig
from geoensemble.app.keys import config_keys
from geoensemble.app.params import compose
from geoensemble.app.train import member_spec, search_of
from geoensemble.app.validate import validate
from geoensemble.ensemble.search import (
    Member,
    TrainingData,
    fit_member,
    pareto_fronts,
    rank_members,
    run_ensemble,
    select,
)
from geoensemble.errors import ConfigError
from tests.conftest import ROOT


def cfg_of(*overrides: str) -> AppConfig:
    return validate(compose(["features.sample.size=1000", *overrides], config_dir=ROOT / "conf"))


def run_cfg(data: Any, cfg: AppConfig, client: Any, **kwargs: Any) -> Any:
    """The train stage's search for ``cfg``, its messages naming config keys (as the stage's)."""
    with config_keys():
        return run_ensemble(data, member_spec(cfg), search_of(cfg), client, **kwargs)


def member(number: int, aic: float, **scores: float) -> Member:
    return Member(number, 0, {"n_clusters": number}, {"aic": aic, **scores}, 0.1)


def test_selection_keeps_the_best() -> None:
    members = [member(i, a) for i, a in enumerate([30.0, 10.0, math.nan, 20.0, 5.0])]
    rank_members(members, [("aic", "minimize")])
    assert [m.number for m in select(members, 2)] == [4, 1]
    assert members[2].rank == 5  # NaN ranks last
    rank_members(members, [("aic", "maximize")])
    assert [m.number for m in select(members, 1)] == [0]


def test_multi_objective_ranks_by_front_then_primary_metric() -> None:
    assert pareto_fronts(np.array([[1, 5], [2, 2], [3, 3], [5, 1]])).tolist() == [1, 1, 2, 1]
    members = [
        member(0, 1.0, fit_seconds=5.0),
        member(1, 2.0, fit_seconds=2.0),
        member(2, 3.0, fit_seconds=3.0),  # dominated by member 1
        member(3, 5.0, fit_seconds=1.0),
    ]
    rank_members(members, [("aic", "minimize"), ("fit_seconds", "minimize")])
    assert [(m.number, m.front, m.rank) for m in members] == [
        (0, 1, 1),
        (1, 1, 2),
        (2, 2, 4),
        (3, 1, 3),
    ]


def test_generations_improve_or_keep_the_best(client: Any, blobs: np.ndarray) -> None:
    cfg = cfg_of(
        "ensemble.size=3",
        "ensemble.generations=4",
        "ensemble.patience=4",
        "ensemble.keep=2",
        "ensemble.previews=false",
        "model.space.n_clusters=[2,3,4,5,6,7,8,9,10,11,12,13,14]",
    )
    seen: list[int] = []
    result = run_cfg(blobs, cfg, client, on_generation=lambda g, ms: seen.append(len(ms)))
    bests = [h["best"] for h in result.history]
    assert len(bests) == 4 and seen == [3, 3, 3, 3]
    assert all(b2 <= b1 for b1, b2 in itertools.pairwise(bests))
    for h in result.history:
        so_far = [m.scores["aic"] for m in result.members if m.generation <= h["generation"]]
        assert h["best"] == min(so_far)
    assert result.kept[0].scores["aic"] == min(m.scores["aic"] for m in result.members)
    assert [m.rank for m in result.kept] == [1, 2]
    assert len({tuple(m.params.items()) for m in result.members}) == len(result.members)
    # n_clusters is searched, not set: every member's value comes from the space
    assert all(m.pipeline[-1].n_clusters == m.params["n_clusters"] for m in result.members)


def test_a_value_the_user_sets_is_used_by_every_member(client: Any, blobs: np.ndarray) -> None:
    cfg = cfg_of(
        "model.n_clusters=6",
        "model.space={}",
        "ensemble.size=3",
        "ensemble.generations=2",
        "ensemble.patience=2",
        "ensemble.previews=false",
    )
    assert cfg.model.space == {}  # `model.space={}` clears the space (Hydra alone merges it)
    result = run_cfg(blobs, cfg, client)
    assert len(result.members) == 6  # an empty space: members differ only by their seed
    assert [m.pipeline[-1].n_clusters for m in result.members] == [6] * 6
    assert len({m.pipeline[-1].random_state for m in result.members}) == 6


def test_forest_members_keep_the_users_values_unless_searched(
    client: Any, blobs: np.ndarray
) -> None:
    from geoensemble.ensemble.folds import spatial_folds

    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 100, len(blobs)), rng.integers(0, 100, len(blobs))
    data = TrainingData(
        X=blobs,
        y=np.repeat(np.arange(6), 250),
        folds=spatial_folds(rows, cols, n_folds=3, block_size=20),
        classes=np.arange(6),
    )
    cfg = cfg_of(
        "model=random_forest",
        "ensemble=supervised",
        "ensemble.size=2",
        "ensemble.generations=1",
        "ensemble.keep=1",
        "ensemble.previews=false",
        "model.estimator.n_estimators=50",
        "model.estimator.max_depth=null",
        "~model.space.n_estimators",
        "~model.space.max_depth",
    )
    result = run_cfg(data, cfg, client)
    for m in result.members:
        forest = m.pipeline[-1]
        assert (forest.n_estimators, forest.max_depth) == (50, None)
        assert len(forest.estimators_) == 50
        # the parameters still in the space vary, and only those
        assert set(m.params) == {"min_samples_leaf", "max_features"}
        assert forest.min_samples_leaf == m.params["min_samples_leaf"]


def test_members_are_reported_as_they_finish(client: Any, blobs: np.ndarray) -> None:
    cfg = cfg_of(
        "ensemble.size=3",
        "ensemble.generations=2",
        "ensemble.patience=2",
        "ensemble.previews=false",
        "model.space.n_clusters=[2,3,4,5,6,7,8]",
    )
    events: list[tuple[str, int, int]] = []
    result = run_cfg(
        blobs,
        cfg,
        client,
        on_member=lambda m: events.append(("member", m.generation, m.number)),
        on_generation=lambda g, ms: events.append(("generation", g, len(ms))),
    )
    # Each member once, before its generation closes (so it can be logged while the
    # others fit), with its scores already there.
    assert events == sorted(events, key=lambda e: (e[1], e[0] == "generation"))
    assert sorted(n for kind, _, n in events if kind == "member") == [
        m.number for m in result.members
    ]
    # numbered as created, without the gaps of the proposals the search dropped as repeats
    assert [m.name for m in result.members] == [f"member-{i:03d}" for i in range(6)]
    assert [e for e in events if e[0] == "generation"] == [
        ("generation", 0, 3),
        ("generation", 1, 3),
    ]


def test_members_leave_their_sample_labels_behind(blobs: np.ndarray) -> None:
    res = fit_member(TrainingData(X=blobs), member_spec(cfg_of()), {"n_clusters": 6}, 1)
    est = res.pipeline[-1]
    # One label per sample pixel would travel to the driver and into the logged model.
    assert not hasattr(est, "labels_")
    assert est.cluster_centers_.shape[0] == 6
    assert set(np.unique(res.pipeline.predict(blobs))) == set(range(6))


def test_early_stop_after_patience(client: Any, blobs: np.ndarray) -> None:
    cfg = cfg_of(
        "ensemble.size=2",
        "ensemble.generations=6",
        "ensemble.patience=1",
        "ensemble.previews=false",
        "model.space.n_clusters=[6,7]",
    )
    result = run_cfg(blobs, cfg, client)
    assert len(result.history) < 6  # the space is exhausted or the score stale


def test_consensus_member_exists_when_configured(client: Any, blobs: np.ndarray) -> None:
    cfg = cfg_of(
        "ensemble.size=4",
        "ensemble.consensus.enabled=true",
        "ensemble.consensus.top=3",
        "ensemble.keep=2",
    )
    logged: list[Member] = []
    data = TrainingData(X=blobs, preview_X=blobs[:100], preview_mask=np.ones((10, 10), bool))
    result = run_cfg(data, cfg, client, on_generation=lambda g, ms: logged.extend(ms))
    cons = [m for m in result.members if m.consensus]
    assert len(cons) == 1 and cons[0] in logged
    c = cons[0]
    best3 = [m.name for m in select([m for m in result.members if not m.consensus], 3)]
    assert c.params["consensus_of"] == ",".join(best3)
    assert c.params["n_clusters"] == c.pipeline[-1].cluster_centers_.shape[0]
    assert np.isfinite(c.scores["aic"]) and c.rank >= 1
    assert c.preview is not None and c.preview.shape == (10, 10, 4)
    assert (c.preview[..., 3] == 255).all()


def test_step_params_partial_fit_and_per_member_draws(blobs: np.ndarray) -> None:
    cfg = cfg_of(
        "+model.space.pca__n_components=[2,3]",
        "ensemble.partial_fit_batches=4",
        "ensemble.sample=per_member",
        "ensemble.member_fraction=0.5",
    )
    spec = member_spec(cfg)
    res = fit_member(TrainingData(X=blobs), spec, {"n_clusters": 5, "pca__n_components": 3}, 7)
    pipe = res.pipeline
    assert pipe.named_steps["pca"].n_components == 3
    assert pipe[-1].n_clusters == 5 and pipe[-1].n_steps_ == 4  # four partial_fit batches
    assert pipe.named_steps["scale"].n_samples_seen_ == len(blobs) // 2  # its own half
    # ... but scored on the whole sample in the common space, like every other member
    Z = (blobs - blobs.mean(axis=0, dtype=np.float64)) / blobs.std(axis=0, dtype=np.float64)
    labels = pipe.predict(blobs)
    centres = np.stack([Z[labels == c].mean(axis=0) for c in np.unique(labels)])
    within = float(((Z - centres[np.searchsorted(np.unique(labels), labels)]) ** 2).sum())
    assert res.scores["inertia"] == pytest.approx(within, rel=1e-6)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (
            ["ensemble.metric=kappa", "ensemble.direction=maximize"],
            r"ensemble metric\(s\) \['kappa'\] are not computed",
        ),
        (
            ["+model.space.pca__n_components=[2,3]", "ensemble.metric=member_space_aic"],
            r"ensemble\.metric=member_space_aic .*own transformed space",
        ),
        (["+model.space.nostep__alpha=[1,2]"], r"model\.space\.nostep__alpha.*no step 'nostep'"),
        (["+model.space.pca__n_components=[20]"], r"model\.space\.pca__n_components=20"),
        (["~model.space.n_clusters", "+model.space.n_clusters={low: 9, high: 3}"], r"low=9"),
        (["ensemble.member_fraction=0"], r"ensemble\.member_fraction=0"),
        (["ensemble.cv.folds=1"], r"ensemble\.cv\.folds=1"),
        (["ensemble.cv.buffer=-1"], r"ensemble\.cv\.buffer=-1 is out of range: use an integer"),
    ],
)
def test_bad_ensemble_config_names_the_key(
    client: Any, blobs: np.ndarray, overrides: list[str], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        run_cfg(blobs, cfg_of("ensemble.size=2", *overrides), client)


def test_aic_of_a_classifier_is_refused_before_any_fit(client: Any, blobs: np.ndarray) -> None:
    cfg = cfg_of("model=logistic_regression", "ensemble.size=2")  # ensemble.metric=aic
    data = TrainingData(X=blobs, y=np.repeat(np.arange(6), 250))  # no folds: never fitted
    with pytest.raises(
        ConfigError,
        match=r"ensemble\.metric=aic is not defined for model\.kind=classifier.*log_loss",
    ):
        run_cfg(data, cfg, client)


def test_consensus_refuses_supervised_members(client: Any, blobs: np.ndarray) -> None:
    from geoensemble.ensemble.folds import spatial_folds

    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 100, len(blobs)), rng.integers(0, 100, len(blobs))
    y = np.repeat(np.arange(6), 250)
    data = TrainingData(
        X=blobs,
        y=y,
        folds=spatial_folds(rows, cols, n_folds=3, block_size=20),
        classes=np.arange(6),
    )
    cfg = cfg_of(
        "model=logistic_regression",
        "ensemble=supervised",
        "ensemble.size=2",
        "ensemble.consensus.enabled=true",
    )
    with pytest.raises(
        ConfigError,
        match=r"\(ensemble\.consensus\.enabled\) needs clustering members \(model\.kind=cluster\)",
    ):
        run_cfg(data, cfg, client)


def test_regressor_members_report_rmse_mae_r2(client: Any, blobs: np.ndarray) -> None:
    from geoensemble.ensemble.folds import spatial_folds

    rng = np.random.default_rng(3)
    rows, cols = rng.integers(0, 120, len(blobs)), rng.integers(0, 120, len(blobs))
    y = blobs[:, 0] * 2.0 + rng.normal(0, 0.1, len(blobs))
    data = TrainingData(X=blobs, y=y, folds=spatial_folds(rows, cols, n_folds=3, block_size=30))
    cfg = cfg_of(
        "model=random_forest_regressor",
        "ensemble.size=2",
        "ensemble.metric=rmse",
        "ensemble.previews=false",
        "model.space.n_estimators={low: 10, high: 20, step: 10}",
        "model.space.max_depth={low: 4, high: 6}",
        "model.space.min_samples_leaf=[2]",
    )
    result = run_cfg(data, cfg, client)
    for m in result.members:
        assert {"rmse", "mae", "r2", "heldout_penalized_nll"} <= set(m.scores)
        assert m.family == "forest" and "aic" not in m.scores
        assert m.scores["r2"] > 0.8
    assert result.kept[0].scores["rmse"] == min(m.scores["rmse"] for m in result.members)
