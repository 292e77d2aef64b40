"""Scores of supervised members under spatial block cross-validation.

Every fold refits a clone of the member's pipeline on the other folds' blocks and predicts its
own, so each labelled pixel gets one held-out prediction. The metrics are computed on these
out-of-fold predictions; the member itself is then refitted on every labelled pixel.

Held-out log-likelihood and its penalized form
----------------------------------------------
For a classifier, the held-out log-likelihood is ``LL = sum_i log p_i(y_i)`` over the
out-of-fold class probabilities (clipped at 1e-15 like ``log_loss``), so ``LL = -n log_loss``.
For a regressor, the residuals are read as Gaussian with the out-of-fold mean squared error as
variance: ``LL = -(n / 2) (log(2 pi MSE) + 1)``, and the variance adds one parameter. Both are
reported as ``heldout_log_likelihood``, and ``heldout_penalized_nll = 2 p - 2 LL``.

This is *not* an AIC: AIC penalizes the in-sample likelihood to estimate out-of-sample fit,
while ``LL`` here is already out-of-sample, so the penalty counts overfitting twice. No AIC or
BIC is reported for supervised members, and ranking them by ``aic``/``bic`` is refused (see
:func:`geoensemble.ensemble.scoring.check_comparable`): rank by ``log_loss``, ``kappa``,
``rmse``... instead.

Parameter counts ``p`` (of the final estimator; ``K`` classes, ``d`` inputs)
--------------------------------------------------------------------------
- linear models (``coef_``, e.g. LogisticRegression): ``coef_.size + intercept_.size``
  (``K d + K`` for multinomial logistic regression);
- one decision tree: ``leaves (K - 1)`` for a classifier, ``leaves`` for a regressor;
- random forest / extra trees: the mean tree's count, since averaging trees adds no free
  parameter (the forest is counted as one average tree);
- gradient boosting: every leaf of every stage's trees (their values add up) plus the ``K``
  (or 1) initial values;
- anything else: ``(d + 1) (K - 1)`` (``d + 1`` for a regressor), the count of the linear model
  on the same inputs, recorded as family ``other``.

Preprocessing steps (scaling, PCA) are not counted: they are the same for every member.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)

from geoensemble.ensemble.folds import Fold

EPS = 1e-15


def _tree_leaves(tree: Any) -> int:
    return int(tree.tree_.n_leaves) if hasattr(tree, "tree_") else int(tree.get_n_leaves())


def n_parameters(est: Any, *, n_features: int, n_classes: int) -> tuple[float, str]:
    """The parameter count of a fitted supervised estimator and the family it was read as.

    ``n_classes`` is 0 for a regressor. See the module docstring for the counts.
    """
    per_leaf = max(n_classes - 1, 1) if n_classes else 1
    if hasattr(est, "coef_"):
        intercept = np.asarray(getattr(est, "intercept_", np.zeros(0)))
        return float(np.asarray(est.coef_).size + intercept.size), "linear"
    if hasattr(est, "tree_"):
        return float(_tree_leaves(est) * per_leaf), "tree"
    trees = getattr(est, "estimators_", None)
    if trees is not None and hasattr(est, "init_"):  # gradient boosting: (stages, K) trees
        leaves = sum(_tree_leaves(t) for t in np.asarray(trees).ravel())
        return float(leaves + (n_classes if n_classes > 2 else 1)), "boosting"
    if isinstance(trees, list) and trees and hasattr(trees[0], "tree_"):
        mean_leaves = float(np.mean([_tree_leaves(t) for t in trees]))
        return mean_leaves * per_leaf, "forest"
    return float((n_features + 1) * per_leaf), "other"


@dataclass
class CrossValidation:
    """Out-of-fold predictions (and class probabilities) of one member."""

    predictions: np.ndarray
    probabilities: np.ndarray | None  # (n, len(classes)) for classifiers with predict_proba


def cross_validate(
    pipeline: Any,
    X: np.ndarray,
    y: np.ndarray,
    folds: list[Fold],
    *,
    classes: np.ndarray | None = None,
) -> CrossValidation:
    """Fit a clone per fold on its training blocks and predict its test blocks.

    ``classes`` (all class codes, sorted) makes the probability columns line up across folds
    even when a fold's training blocks lack a class (its probability is then 0).
    """
    pred = np.empty(y.shape, dtype=y.dtype)
    proba = None
    if classes is not None:
        proba = np.zeros((y.size, classes.size), dtype=np.float64)
    for fold in folds:
        model = clone(pipeline).fit(X[fold.train], y[fold.train])
        pred[fold.test] = model.predict(X[fold.test])
        if proba is not None and classes is not None and hasattr(model, "predict_proba"):
            cols = np.searchsorted(classes, model.classes_)
            proba[np.ix_(fold.test, cols)] = model.predict_proba(X[fold.test])
    if proba is not None and not np.any(proba):
        proba = None  # no predict_proba: no log loss, no likelihood
    return CrossValidation(predictions=pred, probabilities=proba)


def classification_scores(
    y: np.ndarray,
    cv: CrossValidation,
    classes: np.ndarray,
    n_params: float,
) -> dict[str, float]:
    """Accuracy, Cohen's kappa, macro F1, log loss and the held-out (penalized) likelihood."""
    n = y.size
    out = {
        "accuracy": float(accuracy_score(y, cv.predictions)),
        "kappa": float(cohen_kappa_score(y, cv.predictions)),
        "f1_macro": float(f1_score(y, cv.predictions, average="macro", zero_division=0)),
        "n_params": float(n_params),
        "n_labelled": float(n),
    }
    if cv.probabilities is not None:
        p_true = cv.probabilities[np.arange(n), np.searchsorted(classes, y)]
        # Renormalise (a fold may lack classes) and clip like sklearn's log_loss.
        p_true = p_true / np.maximum(cv.probabilities.sum(axis=1), EPS)
        ll = float(np.log(np.clip(p_true, EPS, 1.0)).sum())
        out.update(
            log_loss=-ll / n,
            heldout_log_likelihood=ll,
            heldout_penalized_nll=2 * n_params - 2 * ll,
        )
    return out


def regression_scores(y: np.ndarray, cv: CrossValidation, n_params: float) -> dict[str, float]:
    """RMSE, MAE, R2 and the held-out Gaussian (penalized) likelihood (the variance counts as a
    parameter)."""
    n = y.size
    mse = float(mean_squared_error(y, cv.predictions))
    ll = -(n / 2) * (math.log(2 * math.pi * max(mse, EPS)) + 1)
    p = n_params + 1
    return {
        "rmse": math.sqrt(mse),
        "mae": float(mean_absolute_error(y, cv.predictions)),
        "r2": float(r2_score(y, cv.predictions)),
        "heldout_log_likelihood": ll,
        "n_params": float(p),
        "n_labelled": float(n),
        "heldout_penalized_nll": 2 * p - 2 * ll,
    }


def score_supervised(
    pipeline: Any,
    X: np.ndarray,
    y: np.ndarray,
    folds: list[Fold],
    *,
    kind: str,
    classes: np.ndarray | None = None,
) -> tuple[Any, dict[str, float], str]:
    """Cross-validate an unfitted pipeline, then fit it on every labelled pixel.

    Returns
    -------
    tuple
        The pipeline fitted on all pixels, its scores (see the module docstring) and the
        family its parameters were counted as (``linear``, ``tree``, ``forest``...).
    """
    if kind == "classifier":
        if classes is None:
            classes = np.unique(y)
        cv = cross_validate(pipeline, X, y, folds, classes=classes)
        pipeline.fit(X, y)
        p, family = n_parameters(pipeline[-1], n_features=X.shape[1], n_classes=classes.size)
        scores = classification_scores(y, cv, classes, p)
    else:
        cv = cross_validate(pipeline, X, y, folds)
        pipeline.fit(X, y)
        p, family = n_parameters(pipeline[-1], n_features=X.shape[1], n_classes=0)
        scores = regression_scores(y, cv, p)
    return pipeline, scores, family
