"""Model averaging across K-Means members, as elm did, and consensus labelling.

Pooled-centroid member
    Each of the best members partitions the sample; the mean of every cluster is taken in the
    feature space of the best member's fitted preprocessing (scaler, PCA...), so centroids of
    members with different preprocessing are comparable. All these centroids are pooled and
    clustered once more, weighted by cluster size; the result is a K-Means whose centres are
    the consensus of the members, put behind the best member's preprocessing.

Consensus labels
    Cluster codes have no meaning across members, so each member's labels are first matched to
    a reference member's by the Hungarian algorithm on their contingency table; the consensus
    is then the majority label per pixel and the agreement the share of members voting for it.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.pipeline import Pipeline


def _transform(pipeline: Pipeline, X: np.ndarray) -> np.ndarray:
    return np.asarray(pipeline[:-1].transform(X) if len(pipeline) > 1 else X, dtype=np.float64)


def pooled_centroids(
    pipelines: list[Pipeline], X: np.ndarray, *, space: Pipeline | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (and sizes) of every member's clusters, in ``space``'s feature space.

    ``space`` defaults to the first (best) pipeline.
    """
    Xt = _transform(space or pipelines[0], X)
    centres, sizes = [], []
    for pipe in pipelines:
        labels = np.asarray(pipe.predict(X))
        for code in np.unique(labels):
            sel = labels == code
            centres.append(Xt[sel].mean(axis=0))
            sizes.append(int(sel.sum()))
    return np.asarray(centres), np.asarray(sizes, dtype=np.float64)


def pooled_centroid_member(
    pipelines: list[Pipeline], X: np.ndarray, *, n_clusters: int, seed: int = 0
) -> Pipeline:
    """A K-Means pipeline whose centres cluster the pooled centroids of ``pipelines``.

    Parameters
    ----------
    pipelines
        Fitted clustering pipelines, best first; the first one's preprocessing is reused.
    X
        The training sample (raw features).
    n_clusters
        Clusters of the consensus member (at most the number of pooled centroids).
    seed
        Seed of the K-Means over the centroids.
    """
    centres, sizes = pooled_centroids(pipelines, X)
    k = min(n_clusters, len(centres))
    # Fit in the dtype the pipeline feeds the model: KMeans predicts only in its fit dtype.
    dtype = np.asarray(pipelines[0][:-1].transform(X[:1]) if len(pipelines[0]) > 1 else X).dtype
    km = KMeans(n_clusters=k, n_init=10, random_state=seed)
    km.fit(centres.astype(dtype), sample_weight=sizes)
    steps: list[tuple[str, Any]] = copy.deepcopy(pipelines[0].steps[:-1])
    return Pipeline([*steps, ("model", km)])


def match_codes(
    reference: np.ndarray,
    labels: np.ndarray,
    *,
    n_reference: int,
    n_labels: int,
    min_overlap: int = 1,
) -> np.ndarray:
    """Lookup from every code ``0..n_labels-1`` of ``labels`` to a reference code.

    Codes are matched one to one by the Hungarian algorithm on the contingency table of the
    two labellings of the same pixels (largest total overlap). Pairs overlapping on fewer than
    ``min_overlap`` pixels are not matches: such codes, and those left over when ``labels`` has
    more codes than the reference, get new codes ``n_reference, n_reference + 1, ...``.
    """
    table = np.zeros((n_labels, n_reference), dtype=np.int64)
    np.add.at(table, (np.asarray(labels, np.int64), np.asarray(reference, np.int64)), 1)
    lookup = np.full(n_labels, -1, dtype=np.int64)
    r, c = linear_sum_assignment(table, maximize=True)
    keep = table[r, c] >= min_overlap
    lookup[r[keep]] = c[keep]
    spare = np.flatnonzero(lookup < 0)
    lookup[spare] = n_reference + np.arange(spare.size)
    return lookup


def align_labels(reference: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``labels`` recoded to best match ``reference`` (Hungarian matching on overlaps).

    Codes of ``labels`` without a partner (more clusters than the reference) get new codes
    above the reference's largest.
    """
    ref_codes, ref_idx = np.unique(reference, return_inverse=True)
    lab_codes, lab_idx = np.unique(labels, return_inverse=True)
    lookup = match_codes(
        ref_idx, lab_idx, n_reference=ref_codes.size, n_labels=lab_codes.size, min_overlap=0
    )
    spare = int(ref_codes.max()) + 1 if ref_codes.size else 0
    codes = np.concatenate([ref_codes.astype(np.int64), spare + np.arange(lab_codes.size)])
    return codes[lookup[lab_idx]]


def consensus_labels(label_sets: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Majority label per pixel across members, and the share of members that agree with it.

    The first member is the reference the others are matched to.
    """
    ref = np.asarray(label_sets[0], dtype=np.int64)
    aligned = np.stack([ref, *(align_labels(ref, np.asarray(s)) for s in label_sets[1:])])
    n_codes = int(aligned.max()) + 1
    votes = np.zeros((n_codes, ref.size), dtype=np.int64)
    for row in aligned:
        np.add.at(votes, (row, np.arange(ref.size)), 1)
    winner = votes.argmax(axis=0)
    agreement = votes[winner, np.arange(ref.size)] / len(label_sets)
    return winner, agreement
