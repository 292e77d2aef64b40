"""AIC/BIC of K-Means members against cases worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.pipeline import Pipeline

from geoensemble.ensemble.scoring import kmeans_information, score_unsupervised


def test_kmeans_aic_worked_by_hand() -> None:
    # Two clusters on a line: {0, 2} around 1 and {10, 12} around 11.
    X = np.array([[0.0], [2.0], [10.0], [12.0]])
    out = kmeans_information(X, np.array([0, 0, 1, 1]), np.array([[1.0], [11.0]]))
    # inertia 4, s2 = 4 / (4 * 1) = 1
    # LL = 2 log(1/2) + 2 log(1/2) - (4 / 2) (log(2 pi) + 1) = -8.448342...
    # p = k (d + 1) = 4 ; AIC = 8 + 16.896685... ; BIC = 4 log 4 + 16.896685...
    assert out["inertia"] == pytest.approx(4.0)
    assert out["log_likelihood"] == pytest.approx(
        4 * math.log(0.5) - 2 * (math.log(2 * math.pi) + 1)
    )
    assert out["log_likelihood"] == pytest.approx(-8.4483428, abs=1e-6)
    assert out["n_params"] == 4
    assert out["aic"] == pytest.approx(24.8966857, abs=1e-6)
    assert out["bic"] == pytest.approx(22.4418631, abs=1e-6)
    assert out["elm_aic"] == pytest.approx(4 + 2 * 1 * 2)


def test_more_clusters_than_structure_are_penalised() -> None:
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 0.3, size=(300, 2)) for c in ((0, 0), (5, 5), (0, 5))])
    aic = {}
    for k in (2, 3, 12):
        pipe = Pipeline([("model", KMeans(k, n_init=3, random_state=0))]).fit(X)
        aic[k] = score_unsupervised(pipe, X)["aic"]
    assert aic[3] < aic[2]
    assert aic[3] < aic[12]
