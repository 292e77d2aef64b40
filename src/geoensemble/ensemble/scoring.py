"""Information criteria for ensemble members.

K-Means (likelihood-based AIC)
------------------------------
K-Means is read as a hard-assignment mixture of ``k`` spherical Gaussians with one shared
variance. With ``n`` pixels of ``d`` features, cluster sizes ``n_j`` and within-cluster sum of
squares ``W`` (the inertia), the maximum-likelihood variance is ``s2 = W / (n d)`` and the
classification log-likelihood is::

    LL = sum_j n_j log(n_j / n) - (n d / 2) (log(2 pi s2) + 1)

The free parameters are the centroids (``k d``), the mixing weights (``k - 1``) and the variance
(``1``): ``p = k (d + 1)``. Then ``AIC = 2 p - 2 LL`` and ``BIC = p log(n) - 2 LL``.

elm's original score, reported as ``elm_aic`` for comparison, is ``W + 2 d k``.

Gaussian mixtures use scikit-learn's own ``aic``/``bic``.
"""

from __future__ import annotations

import math

import numpy as np


def kmeans_information(X: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> dict[str, float]:
    """AIC, BIC, log-likelihood and parameter count of a K-Means partition of ``X``.

    Parameters
    ----------
    X
        ``(n, d)`` points in the space the clustering was fitted in.
    labels
        ``(n,)`` cluster index of each point.
    centers
        ``(k, d)`` centroids.
    """
    n, d = X.shape
    k = centers.shape[0]
    inertia = float(((X - centers[labels]) ** 2).sum())
    s2 = max(inertia / (n * d), np.finfo(np.float64).tiny)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    counts = counts[counts > 0]
    ll = float((counts * np.log(counts / n)).sum() - (n * d / 2) * (math.log(2 * math.pi * s2) + 1))
    p = k * (d + 1)
    return {
        "aic": 2 * p - 2 * ll,
        "bic": p * math.log(n) - 2 * ll,
        "log_likelihood": ll,
        "n_params": float(p),
        "inertia": inertia,
        "elm_aic": inertia + 2 * d * k,
    }


def score_unsupervised(pipeline: object, X: np.ndarray) -> dict[str, float]:
    """Information criteria of a fitted clustering pipeline on ``X`` (raw features)."""
    from sklearn.pipeline import Pipeline

    assert isinstance(pipeline, Pipeline)
    Xt = pipeline[:-1].transform(X) if len(pipeline) > 1 else X
    est = pipeline[-1]
    if hasattr(est, "aic") and hasattr(est, "bic"):  # GaussianMixture and friends
        return {
            "aic": float(est.aic(Xt)),
            "bic": float(est.bic(Xt)),
            "log_likelihood": float(est.score(Xt) * Xt.shape[0]),
        }
    if hasattr(est, "cluster_centers_"):
        labels = est.predict(Xt)  # in the dtype it was fitted with
        return kmeans_information(
            np.asarray(Xt, dtype=np.float64),
            labels,
            np.asarray(est.cluster_centers_, dtype=np.float64),
        )
    raise TypeError(
        f"cannot score {type(est).__name__}: it has neither aic/bic nor cluster_centers_"
    )
