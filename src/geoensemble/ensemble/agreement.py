"""A selection criterion that needs no truth: a member's mean agreement with the others.

A map user wants the map that does not depend on the accident of one fit. Each member's
labels on one fixed subset of the training sample are compared with every other member's:

- clusterers: the adjusted Rand index (cluster codes mean nothing across members, the ARI
  compares partitions: 1 for the same partition, about 0 for unrelated ones);
- classifiers: the share of pixels given the same class.

``mean_agreement`` is the mean over the other members. It ranks members of one ensemble only:
it depends on which members there are, so the search recomputes it for every member each
time members are added, and two ensembles' values are not compared (promotion across
ensembles refuses them, as it refuses different criteria).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Sample pixels every member labels for the criterion: enough for an ARI to the third
# decimal, few enough that predicting them costs far less than a fit.
SUBSET = 10_000
NAME = "mean_agreement"  # sorts after aic: MLflow compare plots the first metric
# Why two ensembles' agreement values are not compared (in messages).
RELATIVE = "measures a member against the other members of its own ensemble"


def agreement_subset(n: int, seed: int, size: int = SUBSET) -> np.ndarray:
    """Sorted indices of at most ``size`` of ``n`` sample rows, drawn with ``seed``."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def pairwise_agreement(labels: Sequence[np.ndarray], *, kind: str) -> np.ndarray:
    """``(m, m)`` agreement of every pair of members' labels of the same pixels.

    Parameters
    ----------
    labels
        One ``(n,)`` array per member.
    kind
        ``"cluster"`` (adjusted Rand index) or ``"classifier"`` (share of equal labels).
    """
    from sklearn.metrics import adjusted_rand_score

    m = len(labels)
    out = np.eye(m)
    for i in range(m):
        for j in range(i + 1, m):
            if kind == "cluster":
                value = float(adjusted_rand_score(labels[i], labels[j]))
            else:
                value = float(np.mean(np.asarray(labels[i]) == np.asarray(labels[j])))
            out[i, j] = out[j, i] = value
    return out


def mean_agreement(labels: Sequence[np.ndarray], *, kind: str) -> np.ndarray:
    """Each member's mean agreement with the other members (NaN with fewer than two)."""
    m = len(labels)
    if m < 2:
        return np.full(m, np.nan)
    pairs = pairwise_agreement(labels, kind=kind)
    return (pairs.sum(axis=1) - 1.0) / (m - 1)
