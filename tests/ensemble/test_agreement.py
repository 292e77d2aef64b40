"""The truth-free criterion: each member's mean agreement with the other members."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from geoensemble.app.train import member_spec, search_of
from geoensemble.ensemble.agreement import (
    agreement_subset,
    mean_agreement,
    pairwise_agreement,
)
from geoensemble.ensemble.search import run_ensemble
from geoensemble.errors import ConfigError
from tests.ensemble.test_search import cfg_of, run_cfg


def test_identical_partitions_agree_fully_whatever_their_codes() -> None:
    a = np.array([0, 0, 1, 1, 2, 2])
    b = np.array([5, 5, 3, 3, 9, 9])  # the same partition, other codes
    c = np.array([0, 1, 0, 1, 0, 1])  # unrelated
    pairs = pairwise_agreement([a, b, c], kind="cluster")
    assert pairs[0, 1] == pytest.approx(1.0)
    ac = adjusted_rand_score(a, c)
    assert pairs[0, 2] == pytest.approx(ac) and pairs[2, 1] == pytest.approx(ac)
    # mean over the two others: (1 + ARI(a, c)) / 2 for a and b, ARI(a, c) for c
    assert mean_agreement([a, b, c], kind="cluster").tolist() == pytest.approx(
        [(1 + ac) / 2, (1 + ac) / 2, ac]
    )


def test_classifiers_agree_by_the_share_of_equal_labels() -> None:
    a = np.array([1, 1, 2, 2])
    b = np.array([1, 2, 2, 2])  # 3 of 4 equal
    c = np.array([2, 2, 1, 1])  # none equal to a, 1 of 4 equal to b
    assert mean_agreement([a, b, c], kind="classifier").tolist() == pytest.approx(
        [(0.75 + 0.0) / 2, (0.75 + 0.25) / 2, (0.0 + 0.25) / 2]
    )


def test_one_member_has_no_agreement_and_the_subset_is_seeded() -> None:
    assert np.isnan(mean_agreement([np.zeros(3)], kind="cluster")).all()
    assert agreement_subset(50, seed=1).tolist() == list(range(50))
    sub = agreement_subset(100_000, seed=3)
    assert len(sub) == 10_000 and np.all(np.diff(sub) > 0)
    assert np.array_equal(sub, agreement_subset(100_000, seed=3))


def test_the_search_ranks_by_agreement_over_all_members(client: Any, blobs: np.ndarray) -> None:
    cfg = cfg_of(
        "ensemble.metric=mean_agreement",
        "ensemble.direction=maximize",
        "ensemble.size=3",
        "ensemble.generations=2",
        "ensemble.patience=5",
        "model.space={n_clusters:[2,3,4,6,8,10]}",
    )
    result = run_ensemble(blobs, member_spec(cfg), search_of(cfg), client)
    members = result.members
    assert len(members) == 6
    # the final values are those of every member against all the others, recomputed by hand
    labels = [m.pipeline.predict(blobs) for m in members]
    expected = mean_agreement(labels, kind="cluster")
    got = np.array([m.scores["mean_agreement"] for m in members])
    assert got == pytest.approx(expected)
    assert result.kept[0].scores["mean_agreement"] == pytest.approx(expected.max())
    assert result.kept[0].rank == 1


def test_agreement_is_reported_beside_aic(client: Any, blobs: np.ndarray) -> None:
    cfg = cfg_of("ensemble.size=2", "ensemble.generations=1", "ensemble.keep=1")
    result = run_ensemble(blobs, member_spec(cfg), search_of(cfg), client)
    a, b = result.members
    ari = adjusted_rand_score(a.pipeline.predict(blobs), b.pipeline.predict(blobs))
    assert a.scores["mean_agreement"] == pytest.approx(ari) == b.scores["mean_agreement"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["ensemble.metric=mean_agreement"],
            "ensemble.direction=minimize: mean_agreement is better when",
        ),
        (["ensemble.direction=maximize"], "ensemble.direction=maximize: aic is better when"),
    ],
)
def test_a_score_ranked_the_wrong_way_round_is_refused(
    client: Any, blobs: np.ndarray, overrides: list[str], message: str
) -> None:
    cfg = cfg_of(*overrides)
    with pytest.raises(ConfigError, match=message):
        run_cfg(blobs, cfg, client)  # as the train stage: its messages name config keys


def test_agreement_is_never_compared_across_ensembles() -> None:
    from types import SimpleNamespace

    from geoensemble.app.promote import best_candidate
    from geoensemble.app.sweep import summarize
    from geoensemble.errors import PromotionError

    tags = {
        "criterion": "mean_agreement",
        "direction": "maximize",
        "score_space": "s",
        "kind": "cluster",
    }

    def version(n: int, value: str, ensemble: str) -> Any:
        return SimpleNamespace(
            version=str(n),
            tags={**tags, "criterion_value": value, "n_classes": "3", "ensemble_run_id": ensemble},
        )

    one = [version(1, "0.8", "a"), version(2, "0.9", "a")]
    assert best_candidate("m", "a", one)[0].version == "2"  # within one ensemble: ranked
    with pytest.raises(PromotionError, match="several ensembles and rank by mean_agreement"):
        best_candidate("m", "latest", [*one, version(3, "0.95", "b")])

    rows = [
        {"job": j, "run_id": f"r{j}", "status": "FINISHED", "overrides": f"seed={j}"}
        | {"metrics": {"best_mean_agreement": v}, "tags": {"model_family": "k", "score_space": "s"}}
        for j, v in enumerate([0.7, 0.9])
    ]
    best, _, why = summarize(rows, metric="mean_agreement", direction="maximize")
    assert best is None and why is not None and "its own ensemble" in why
