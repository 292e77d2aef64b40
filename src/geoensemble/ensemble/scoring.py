"""Criteria that rank clustering members, all computed in one space shared by every member.

The common space
----------------
Members differ in their learned steps (``pca__n_components``, polynomial terms, a
``RandomBandSubset`` per member), so a likelihood computed in each member's own transformed
space is a likelihood of different data: its size grows with the dimension and members would
be ranked by dimension, not by fit. Every member is therefore scored in one *common space*:
the input features after the NaN policy (NaN features filled as the members' ``impute`` does:
median, mean or constant of the training sample), standardized with the training sample's
mean and standard deviation (a constant feature keeps standard deviation 1). It is computed
once per ensemble, before any member-specific step, by :func:`common_space`.

The partition criterion (``aic``, ``bic``, ``log_likelihood``)
----------------------------------------------------------------
What is scored is the member's *partition* of the sample (its ``predict`` labels), read as a
hard-assignment mixture of spherical Gaussians with one shared variance in the common space.
With ``n`` sample pixels of ``d`` common-space features ``z_i``, ``k`` non-empty clusters of
sizes ``n_j`` and centres ``c_j`` = the mean of the common-space points of cluster ``j`` (not
the member's own centroids, which live in its own space), the within-cluster sum of squares
is ``W = sum_i |z_i - c_(label i)|^2``, the maximum-likelihood variance ``s2 = W / (n d)``
and the classification log-likelihood::

    LL = sum_j n_j log(n_j / n) - (n d / 2) (log(2 pi s2) + 1)

The free parameters are the centres (``k d``), the mixing weights (``k - 1``) and the variance
(``1``): ``p = k (d + 1)``. Then ``AIC = 2 p - 2 LL`` and ``BIC = p log(n) - 2 LL``. ``n`` and
``d`` are the same for every member, so the criteria compare partitions with different
numbers of clusters fitted in different member spaces. ``inertia`` is ``W`` and ``elm_aic`` is
elm's original score ``W + 2 d k``, both in the common space.

The same formula scores any clusterer with ``predict`` (K-Means, Gaussian mixtures, ...).
A Gaussian mixture's own density criteria (scikit-learn's ``aic``/``bic``) are computed in its
own transformed space; they are reported as ``member_space_aic``, ``member_space_bic`` and
``member_space_log_likelihood`` and may rank members only when every member has the same
space (no ``<step>__<param>`` in the searched ``space`` and one sample shared by every member,
not ``per_member_sample``), see :func:`check_comparable`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from geoensemble.errors import ConfigError

# Scores of members whose value depends on the member's own transformed space.
MEMBER_SPACE_PREFIX = "member_space_"
# What supervised members report instead of an information criterion (argument names, see
# check_comparable).
SUPERVISED_ALTERNATIVES = {
    "classifier": "criterion=log_loss direction=minimize, or criterion=kappa direction=maximize",
    "regressor": "criterion=rmse direction=minimize, or criterion=r2 direction=maximize",
}
# The argument each name of a ranking message stands for (see geoensemble.errors).
RANKING_ARGUMENTS = {
    "criterion": "fit_ensemble.criterion",
    "direction": "Search.direction",
    "objectives": "Search.objectives",
    "kind": "MemberSpec.kind",
    "per_member_sample": "MemberSpec.per_member_sample",
}


def common_space(
    X: np.ndarray, *, impute: str | None = None, impute_value: float = 0.0
) -> np.ndarray:
    """The training sample in the common space: NaN policy applied, then standardized.

    Parameters
    ----------
    X
        ``(n, d)`` raw features of the training sample (NaN where a feature is missing).
    impute
        As the members' ``impute``: ``median``, ``mean`` (of the column's non-NaN sample values),
        ``constant`` (``impute_value``) or ``None`` (no NaN expected).
    impute_value
        The fill of ``constant``.

    Returns
    -------
    numpy.ndarray
        ``(n, d)`` float64: every column with mean 0 and standard deviation 1 (or 0 where the
        column is constant).
    """
    Z = np.array(X, dtype=np.float64)
    missing = np.isnan(Z)
    if missing.any():
        if impute == "constant":
            fill = np.full(Z.shape[1], float(impute_value))
        else:
            with np.errstate(all="ignore"):
                stat = np.nanmean if impute == "mean" else np.nanmedian
                # all-NaN columns (fill NaN) become 0 after centring below
                fill = np.asarray(stat(np.where(missing.all(axis=0), 0.0, Z), axis=0))
        Z[missing] = np.broadcast_to(fill, Z.shape)[missing]
    mean = Z.mean(axis=0)
    std = Z.std(axis=0)
    std[~(std > 0)] = 1.0
    return (Z - mean) / std


def kmeans_information(X: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> dict[str, float]:
    """AIC, BIC, log-likelihood and parameter count of a hard partition of ``X``.

    Parameters
    ----------
    X
        ``(n, d)`` points.
    labels
        ``(n,)`` cluster index of each point, into ``centers``.
    centers
        ``(k, d)`` cluster centres; ``k`` counts in ``p`` (see the module docstring).
    """
    n, d = X.shape
    k = centers.shape[0]
    # Column by column: no (n, d) temporary (88 MB for a million pixels x 11 features).
    inertia = 0.0
    for j in range(d):
        r = X[:, j] - centers[labels, j]
        inertia += float(r @ r)
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


def partition_information(Z: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The partition criterion of ``labels`` in the common space ``Z`` (module docstring).

    Centres are the means of ``Z`` per label; only non-empty clusters count (``n_clusters``).
    """
    codes, index = np.unique(np.asarray(labels), return_inverse=True)
    index = index.ravel()
    counts = np.bincount(index, minlength=codes.size).astype(np.float64)
    # Per-label sums column by column (np.add.at over the rows was 2.3x slower).
    sums = [np.bincount(index, weights=Z[:, j], minlength=codes.size) for j in range(Z.shape[1])]
    centres = np.stack(sums, axis=1).astype(np.float64) / counts[:, np.newaxis]
    out = kmeans_information(Z, index, centres)
    out["n_clusters"] = float(codes.size)
    return out


def score_unsupervised(
    pipeline: Any, X: np.ndarray, common: np.ndarray | None = None
) -> dict[str, float]:
    """Scores of a fitted clustering pipeline's partition of ``X`` (raw features).

    Parameters
    ----------
    pipeline
        A fitted scikit-learn ``Pipeline`` whose last step has ``predict``.
    X
        The training sample, raw features.
    common
        ``X`` in the common space (:func:`common_space`); computed without imputation when
        not given.
    """
    from sklearn.pipeline import Pipeline

    assert isinstance(pipeline, Pipeline)
    est = pipeline[-1]
    if not hasattr(est, "predict"):
        raise ConfigError(
            f"estimator={type(est).__module__}.{type(est).__name__} has no predict(): "
            f"members are scored by the partition predict() gives; use a clusterer that "
            f"predicts labels (e.g. sklearn.cluster.MiniBatchKMeans)",
            arguments={"estimator": "fit_ensemble.estimator"},
        )
    Z = common_space(X) if common is None else common
    out = partition_information(Z, np.asarray(pipeline.predict(X)))
    if hasattr(est, "aic") and hasattr(est, "bic"):  # GaussianMixture and friends
        Xt = pipeline[:-1].transform(X) if len(pipeline) > 1 else X
        out.update(
            member_space_aic=float(est.aic(Xt)),
            member_space_bic=float(est.bic(Xt)),
            member_space_log_likelihood=float(est.score(Xt) * Xt.shape[0]),
        )
    return out


def check_comparable(
    metrics: list[tuple[str, str]], *, kind: str, space: dict[str, Any], per_member_sample: bool
) -> None:
    """Refuse ranking members by a score that is not computed on the same data for all.

    Parameters
    ----------
    metrics
        ``[(argument, metric name), ...]``: ``criterion`` (the primary metric) and the further
        objectives (``objectives[0].metric``...), named as :data:`RANKING_ARGUMENTS` says.
    kind
        The members' kind (``MemberSpec.kind``).
    space
        The searched parameters.
    per_member_sample
        Whether every member fits its own draw.

    Raises
    ------
    ConfigError
        Naming the argument, why the score is not comparable and what to rank by instead.
    """
    steps = sorted(k for k in space if "__" in k and not k.startswith("model__"))
    for key, metric in metrics:
        if kind != "cluster" and metric in {"aic", "bic"}:
            raise ConfigError(
                f"{key}={metric} is not defined for kind={kind}: supervised members have no "
                f"AIC or BIC (their 2p - 2 x held-out log-likelihood is reported as "
                f"heldout_penalized_nll); rank them with "
                f"{SUPERVISED_ALTERNATIVES.get(kind, 'a held-out score')}",
                arguments=RANKING_ARGUMENTS,
            )
        if metric.startswith(MEMBER_SPACE_PREFIX) and (steps or per_member_sample):
            why = (
                f"the searched step parameters {', '.join(steps)} vary between members"
                if steps
                else "per-member samples (per_member_sample) fit each member's steps on its "
                "own draw"
            )
            raise ConfigError(
                f"{key}={metric} is computed in each member's own transformed space and "
                f"{why}, so the members' values are not comparable: rank by {key}="
                f"{metric.removeprefix(MEMBER_SPACE_PREFIX)} (the common standardized "
                f"feature space) instead",
                arguments=RANKING_ARGUMENTS,
            )


def space_id(key: Mapping[str, Any]) -> str:
    """A short id of what an ensemble's scores are computed on (``key``: the model family
    and kind, the metric, the data, sample and common space...). Two ensembles' ranking
    scores are comparable only when their ids are equal."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
