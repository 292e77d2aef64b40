"""A chosen member at an end of a searched integer range is reported with the fix."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import xarray as xr
from sklearn.cluster import MiniBatchKMeans
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import geoensemble as ge
from geoensemble.ensemble.space import RangeEdge, range_edges

SPACE = {
    "n_clusters": {"low": 4, "high": 12},
    "pca__n_components": [3, 4, 5],
    "tol": {"low": 0.001, "high": 0.1},
    "init": ["k-means++", "random", "x"],
    "n_init": [1, 3],
}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"n_clusters": 12}, [RangeEdge("n_clusters", 12, 4, 12)]),
        ({"n_clusters": 4}, [RangeEdge("n_clusters", 4, 4, 12)]),
        ({"n_clusters": 8}, []),
        ({"pca__n_components": 5}, [RangeEdge("pca__n_components", 5, 3, 5)]),
        ({"pca__n_components": 4}, []),
        ({"tol": 0.1, "init": "x", "n_init": 3}, []),  # floats, strings, two choices
    ],
)
def test_range_edges_name_integer_ranges_only(params: dict, expected: list) -> None:
    assert range_edges(SPACE, params) == expected


def test_the_message_names_the_edge_and_a_wider_range() -> None:
    (top,) = range_edges(SPACE, {"n_clusters": 12})
    assert top.message("model.space.n_clusters") == (
        "the chosen member's n_clusters=12 is the top of the searched range 4..12: a better "
        "value may lie beyond it; widen model.space.n_clusters (e.g. {low: 4, high: 16}) and "
        "train again"
    )
    (bottom,) = range_edges({"k": {"low": 2, "high": 3}}, {"k": 2})
    assert bottom.edge == "bottom" and bottom.wider == {"low": 1, "high": 3}


def test_fit_ensemble_warns_when_the_best_member_is_at_the_top(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three well-separated blobs per half: more clusters always lower the inertia, so
    the best member by inertia has the most clusters searched."""
    rng = np.random.default_rng(0)
    centres = rng.uniform(-50, 50, size=(12, 2))
    pts = centres[rng.integers(0, 12, 4096)] + rng.normal(0, 0.5, (4096, 2))
    ds = xr.Dataset(
        {f"b{i}": (("y", "x"), pts[:, i].reshape(64, 64).astype(np.float32)) for i in (0, 1)},
        coords={"y": np.arange(64.0)[::-1], "x": np.arange(64.0)},
    )
    pipe = Pipeline([("scale", StandardScaler()), ("km", MiniBatchKMeans(n_init=3))])
    with caplog.at_level(logging.WARNING, logger="geoensemble"):
        ens = ge.fit_ensemble(
            pipe,
            ds,
            space={"km__n_clusters": [2, 3, 4]},
            size=3,
            generations=1,
            keep=1,
            criterion="inertia",
            sample=4096,
        )
    assert ens.best.params["n_clusters"] == 4
    assert ens.warnings == [
        "the chosen member's n_clusters=4 is the top of the searched range 2..4: a better "
        "value may lie beyond it; widen space['km__n_clusters'] (e.g. {low: 2, high: 6}) and "
        "train again"
    ]
    assert ens.warnings[0] in caplog.text
