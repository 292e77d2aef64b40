"""Consensus labelling and the pooled-centroid member."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from geoensemble.ensemble.consensus import (
    align_labels,
    consensus_labels,
    pooled_centroid_member,
)


def test_align_labels_undoes_a_permutation() -> None:
    ref = np.array([0, 0, 1, 1, 2, 2])
    assert align_labels(ref, np.array([2, 2, 0, 0, 1, 1])).tolist() == ref.tolist()


def test_align_labels_gives_unmatched_codes_new_values() -> None:
    ref = np.array([0, 0, 1, 1])
    out = align_labels(ref, np.array([5, 6, 7, 7]))
    assert out[2] == out[3] == 1
    assert sorted(out[:2].tolist()) in ([0, 2], [0, 2][::-1])


def test_consensus_is_the_majority_after_matching() -> None:
    a = np.array([0, 0, 1, 1])
    b = np.array([1, 1, 0, 0])  # same partition, other codes
    c = np.array([0, 1, 1, 1])  # disagrees on pixel 1
    winner, agreement = consensus_labels([a, b, c])
    assert winner.tolist() == [0, 0, 1, 1]
    assert agreement.tolist() == [1.0, 2 / 3, 1.0, 1.0]


def test_pooled_centroid_member_recovers_the_shared_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [6, 0], [0, 6]], dtype=np.float32)
    X = np.concatenate([rng.normal(c, 0.4, (200, 2)) for c in centres]).astype(np.float32)
    members = [
        Pipeline([("scale", StandardScaler()), ("model", KMeans(k, n_init=3, random_state=s))]).fit(
            X
        )
        for k, s in ((3, 0), (4, 1), (3, 2))
    ]
    pipe = pooled_centroid_member(members, X, n_clusters=3, seed=0)
    assert pipe[-1].cluster_centers_.shape == (3, 2)
    labels = pipe.predict(X)
    truth = np.repeat([0, 1, 2], 200)
    assert (align_labels(truth, labels) == truth).mean() > 0.99
