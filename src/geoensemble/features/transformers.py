"""scikit-learn transformers for the learned part of the features (inside each member's pipeline).

:class:`RandomBandSubset` is elm's "choose among random combinations of bands": each ensemble
member keeps a seeded random subset of the input features, and because the choice is just the
``seed`` parameter, the ensemble search can vary it like any other hyper-parameter
(a search space ``{subset__seed: {low: 0, high: 1000}}`` with the step named ``subset``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from geoensemble.errors import ConfigError


class RandomBandSubset(SelectorMixin, BaseEstimator):
    """Keep a seeded random subset of the input features.

    Parameters
    ----------
    size
        How many features to keep: an integer ``>= 1``, or a fraction in ``(0, 1]`` of the
        input features (rounded up, at least one).
    seed
        Seed of the choice; members with different seeds see different band combinations.

    Attributes
    ----------
    support_
        Boolean mask of the kept input features.
    n_features_in_
        Number of input features seen in :meth:`fit`.
    feature_names_in_
        Input feature names, when fitted on a table with string column names.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.arange(12.0).reshape(2, 6)
    >>> RandomBandSubset(size=2, seed=1).fit(X).get_support().sum()
    np.int64(2)
    """

    def __init__(self, size: float = 0.5, seed: int = 0) -> None:
        self.size = size
        self.seed = seed

    def fit(self, X: Any, y: Any = None) -> RandomBandSubset:
        """Draw the subset for ``X``'s number of features (the values are not used)."""
        X = validate_data(self, X, ensure_all_finite="allow-nan")
        n = int(X.shape[1])
        k = self._n_kept(n)
        rng = np.random.default_rng(self.seed)
        support = np.zeros(n, dtype=bool)
        support[rng.choice(n, size=k, replace=False)] = True
        self.support_ = support
        return self

    def _n_kept(self, n: int) -> int:
        size = self.size
        if isinstance(size, bool) or not isinstance(size, Real):
            raise ConfigError(f"RandomBandSubset size={size!r} must be a number")
        if isinstance(size, Integral):
            if not 1 <= size <= n:
                raise ConfigError(
                    f"RandomBandSubset size={size} must be between 1 and the {n} input "
                    f"features: lower it, or give a fraction such as size=0.5"
                )
            return int(size)
        if not 0 < float(size) <= 1:
            raise ConfigError(
                f"RandomBandSubset size={size} must be an integer >= 1 or a fraction in (0, 1]"
            )
        return max(1, math.ceil(float(size) * n))

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return np.asarray(self.support_)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # the choice does not look at values
        return tags


def output_names(pipeline: Any, names: Sequence[str]) -> list[str]:
    """Feature names leaving the learned steps of a fitted member pipeline (before the model).

    Useful to record which bands a random subset kept, or what PCA produced
    (``pca0``, ``pca1``...).
    """
    steps = pipeline[:-1] if hasattr(pipeline, "steps") else None
    if steps is None or len(steps) == 0:
        return list(names)
    return [str(n) for n in steps.get_feature_names_out(np.asarray(list(names), dtype=object))]
