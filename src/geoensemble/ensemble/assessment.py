"""Accuracy assessment: area-weighted accuracy and area estimates with confidence intervals.

Good practice (Olofsson et al. 2014, Remote Sensing of Environment 148, 42-57): the error
matrix of a sample is turned into estimated *area proportions* using the mapped area of each
class, because a sample's raw accuracy depends on how it was drawn. With map classes ``i``
(strata, mapped area share ``W_i``), reference classes ``j``, sample counts ``n_ij`` and row
totals ``n_i.``::

    p_ij  = W_i n_ij / n_i.                               estimated area proportion
    O     = sum_j p_jj                                    overall accuracy
    V(O)  = sum_i W_i^2 U_i (1 - U_i) / (n_i. - 1)
    U_i   = n_ii / n_i.,  V(U_i) = U_i (1 - U_i) / (n_i. - 1)        user's accuracy
    P_j   = p_jj / p_.j                                   producer's accuracy, with
    V(P_j)= [N_j.^2 (1-P_j)^2 U_j (1-U_j) / (n_j.-1)
             + P_j^2 sum_{i!=j} N_i.^2 (n_ij/n_i.)(1 - n_ij/n_i.) / (n_i.-1)] / N_.j^2
    p_.j  = sum_i p_ij,  SE(p_.j) = sqrt(sum_i W_i^2 (n_ij/n_i.)(1 - n_ij/n_i.) / (n_i. - 1))
    area_j = A p_.j,  95 % CI = area_j +- 1.96 A SE(p_.j)

``N_i.`` is the mapped pixel count of class ``i`` and ``N_.j = sum_i N_i. n_ij / n_i.``.

When the estimates are valid: the sample must be a probability sample of the map, separate
from the training labels (a validation sample): ``stratified`` (drawn at random within each
class of the assessed map: the strata are its classes and ``W_i`` their exact shares of the
map's valid pixels) or ``random`` (simple random over the map, post-stratified by map class
with the same formulas; Olofsson et al. 2014, section 5; Card 1982). Strata with a single
sample pixel contribute no variance (``n_i. - 1`` is floored at 1) and mapped classes without
sample pixels no area (a bias the report flags with ``unsampled_map_classes``). The held-out
predictions of the training labels are not such a sample (they follow where labels were
drawn, often by reference class): evaluate then reports the point estimates flagged
``design_based: false`` and no interval.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

Z95 = 1.959964


def error_matrix(mapped: np.ndarray, reference: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Counts ``n_ij`` with map class ``i`` in rows and reference class ``j`` in columns."""
    idx = {int(c): k for k, c in enumerate(classes)}
    m = np.zeros((classes.size, classes.size), dtype=np.int64)
    for i, j in zip(mapped.astype(np.int64), reference.astype(np.int64), strict=True):
        m[idx[int(i)], idx[int(j)]] += 1
    return m


def area_weighted_accuracy(
    counts: np.ndarray, mapped_pixels: np.ndarray, *, pixel_area: float = 1.0
) -> dict[str, Any]:
    """Olofsson et al. (2014) estimators from an error matrix and the mapped pixel counts.

    Parameters
    ----------
    counts
        ``(k, k)`` sample counts, map classes in rows, reference classes in columns.
    mapped_pixels
        ``(k,)`` pixels mapped as each class.
    pixel_area
        Area of one pixel (map units squared), to report areas.

    Returns
    -------
    dict
        ``overall_accuracy`` and its ``overall_accuracy_se``/``_ci95``; per class
        ``users_accuracy``, ``producers_accuracy`` (with standard errors), ``area_proportion``,
        ``area`` with ``area_ci95`` (half-width), ``mapped_area``; ``unsampled_map_classes``.
    """
    n = counts.astype(np.float64)
    N = mapped_pixels.astype(np.float64)
    total = N.sum()
    W = N / total
    n_i = n.sum(axis=1)
    sampled = n_i > 0
    rows = np.divide(n, n_i[:, None], out=np.zeros_like(n), where=sampled[:, None])  # n_ij/n_i.
    p = W[:, None] * rows
    denom = np.maximum(n_i - 1, 1)
    U = np.diag(rows).copy()
    p_j = p.sum(axis=0)
    P = np.divide(np.diag(p), p_j, out=np.full(p_j.shape, np.nan), where=p_j > 0)
    overall = float(np.trace(p))
    var_O = float(np.sum(np.where(sampled, W**2 * U * (1 - U) / denom, 0.0)))
    var_U = np.where(sampled, U * (1 - U) / denom, np.nan)
    var_pj = np.sum(
        np.where(sampled[:, None], W[:, None] ** 2 * rows * (1 - rows), 0.0) / denom[:, None],
        axis=0,
    )
    var_P = _producers_variance(N, rows, P, U, denom, sampled)
    area_total = total * pixel_area
    return {
        "overall_accuracy": overall,
        "overall_accuracy_se": math.sqrt(var_O),
        "overall_accuracy_ci95": Z95 * math.sqrt(var_O),
        "users_accuracy": np.where(sampled, U, np.nan).tolist(),
        "users_accuracy_se": np.sqrt(var_U).tolist(),
        "producers_accuracy": P.tolist(),
        "producers_accuracy_se": np.sqrt(var_P).tolist(),
        "area_proportion": p_j.tolist(),
        "area_proportion_se": np.sqrt(var_pj).tolist(),
        "area": (p_j * area_total).tolist(),
        "area_ci95": (Z95 * np.sqrt(var_pj) * area_total).tolist(),
        "mapped_area": (N * pixel_area).tolist(),
        "unsampled_map_classes": int(np.sum(~sampled & (N > 0))),
    }


def _producers_variance(
    N: np.ndarray,
    rows: np.ndarray,
    P: np.ndarray,
    U: np.ndarray,
    denom: np.ndarray,
    sampled: np.ndarray,
) -> np.ndarray:
    """The variance of each producer's accuracy ``P`` (Olofsson et al. 2014); NaN for
    a class with no estimated reference pixels."""
    N_j = (N[:, None] * rows).sum(axis=0)  # estimated reference pixels of class j
    var_P = np.full(P.shape, np.nan)
    for j in range(P.size):
        if N_j[j] <= 0:
            continue
        first = N[j] ** 2 * (1 - P[j]) ** 2 * U[j] * (1 - U[j]) / denom[j] if sampled[j] else 0.0
        others = sum(
            N[i] ** 2 * rows[i, j] * (1 - rows[i, j]) / denom[i]
            for i in range(P.size)
            if i != j and sampled[i]
        )
        var_P[j] = (first + P[j] ** 2 * others) / N_j[j] ** 2
    return var_P


def fold_permutation_importance(
    pipeline: Any,
    X: np.ndarray,
    y: np.ndarray,
    folds: list[Any],
    *,
    scoring: str,
    n_repeats: int = 5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Held-out predictions and permutation importance averaged over spatial folds.

    Each fold's model is fitted on its training blocks; its importance is the drop of
    ``scoring`` on its test blocks when one feature is shuffled, weighted by test size.

    Returns
    -------
    tuple
        Out-of-fold predictions, importance means and standard deviations per feature.
    """
    from sklearn.base import clone
    from sklearn.inspection import permutation_importance

    pred = np.empty(y.shape, dtype=y.dtype)
    means = np.zeros(X.shape[1])
    sq = np.zeros(X.shape[1])
    weight = 0
    for k, fold in enumerate(folds):
        model = clone(pipeline).fit(X[fold.train], y[fold.train])
        pred[fold.test] = model.predict(X[fold.test])
        r = permutation_importance(
            model,
            X[fold.test],
            y[fold.test],
            scoring=scoring,
            n_repeats=n_repeats,
            random_state=seed + k,
        )
        w = fold.test.size
        means += w * r.importances_mean
        sq += w * (r.importances_std**2 + r.importances_mean**2)
        weight += w
    mean = means / weight
    std = np.sqrt(np.maximum(sq / weight - mean**2, 0.0))
    return pred, mean, std
