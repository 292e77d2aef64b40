"""Spatial block cross-validation as a scikit-learn splitter.

:class:`SpatialBlockCV` deals whole square blocks of pixels to folds with
:func:`geoensemble.ensemble.folds.spatial_folds` (the folds the train stage uses), so it plugs
into scikit-learn's own tools (``cross_val_score(..., groups=coords, cv=SpatialBlockCV())``)
and into :class:`~geoensemble.ensemble.metasearch.EnsembleSearch` through ``cv=``.

The pixel coordinates travel as ``groups``: an ``(n_samples, 2)`` array of integer
``(row, col)`` grid indices, one row per sample, which scikit-learn passes through to
``split`` unchanged.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np
from sklearn.model_selection import BaseCrossValidator
from sklearn.utils import check_random_state

from geoensemble.ensemble.folds import block_ids, spatial_folds
from geoensemble.errors import ConfigError


class SpatialBlockCV(BaseCrossValidator):
    """K folds of whole spatial blocks, with an optional buffer around each test fold.

    Pixels are grouped into ``block_size`` x ``block_size`` squares of the grid; every block
    (and every pixel in it) is in the test set of exactly one fold and never in that fold's
    training set. Blocks are dealt largest first to the fold with the fewest pixels so far,
    which keeps folds about equally large when samples are clustered.

    Parameters
    ----------
    n_splits
        Number of folds, at least 2.
    block_size
        Side of a block, in pixels (at least 1).
    buffer
        Training pixels within this many pixels (Chebyshev distance) of any test pixel of a
        fold are left out of that fold's training set (they stay in their own fold's test
        set). ``0`` keeps every pixel outside the test blocks.
    random_state
        Seed of the shuffle that breaks ties between equally large blocks. Pass an int for the
        same folds on every call to ``split``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.cluster import KMeans
    >>> from sklearn.model_selection import cross_val_score
    >>> rows, cols = np.divmod(np.arange(400), 20)
    >>> coords = np.column_stack([rows, cols])
    >>> X = np.random.default_rng(0).normal(size=(400, 3))
    >>> cv = SpatialBlockCV(n_splits=4, block_size=5, random_state=0)
    >>> len(cross_val_score(KMeans(3, n_init=1), X, groups=coords, cv=cv))
    4
    """

    def __init__(
        self,
        n_splits: int = 5,
        *,
        block_size: int = 64,
        buffer: int = 0,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        # Validated here, like KFold: a bad splitter fails where it is built.
        _check_int("n_splits", n_splits, minimum=2)
        _check_int("block_size", block_size, minimum=1)
        _check_int("buffer", buffer, minimum=0)
        self.n_splits = n_splits
        self.block_size = block_size
        self.buffer = buffer
        self.random_state = random_state

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """The number of folds (``n_splits``); the arguments are ignored.

        Returns
        -------
        int
        """
        return int(self.n_splits)

    def split(
        self, X: Any, y: Any = None, groups: Any = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Training and test row indices of each fold.

        Parameters
        ----------
        X
            ``(n_samples, n_features)`` samples; only their number is used.
        y
            Ignored; accepted for scikit-learn's splitter interface.
        groups
            ``(n_samples, 2)`` integer ``(row, col)`` grid position of every sample.

        Yields
        ------
        train, test : numpy.ndarray
            Row indices of the fold's training and test samples.

        Raises
        ------
        ValueError
            If ``groups`` is missing or not ``(n_samples, 2)`` integer coordinates, if the
            samples fall in fewer blocks than ``n_splits``, or if ``buffer`` leaves a fold
            without training samples.
        """
        rows, cols = self._coordinates(X, groups)
        n_blocks = np.unique(block_ids(rows, cols, self.block_size)).size
        if n_blocks < self.n_splits:
            raise ValueError(
                f"the {rows.size} samples fall in only {n_blocks} block(s) of "
                f"block_size={self.block_size} px, fewer than n_splits={self.n_splits}: lower "
                f"block_size or n_splits"
            )
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        try:
            folds = spatial_folds(
                rows,
                cols,
                n_folds=self.n_splits,
                block_size=self.block_size,
                seed=seed,
                buffer=self.buffer,
            )
        except ConfigError as exc:
            # The arguments were checked above, so only the buffer can empty a fold here;
            # folds.py words it for the config, this splitter for its own arguments.
            raise ValueError(
                f"buffer={self.buffer} leaves a fold without training samples (all of them are "
                f"within {self.buffer} px of its test samples): lower buffer or raise block_size"
            ) from exc
        for fold in folds:
            yield fold.train, fold.test

    def _coordinates(self, X: Any, groups: Any) -> tuple[np.ndarray, np.ndarray]:
        """``groups`` checked and split into integer rows and columns."""
        if groups is None:
            raise ValueError(
                "SpatialBlockCV.split needs groups=: the (n_samples, 2) integer (row, col) "
                "grid position of every sample"
            )
        coords = np.asarray(groups)
        if coords.ndim != 2 or coords.shape[1] != 2:
            raise ValueError(
                f"groups has shape {coords.shape}; SpatialBlockCV needs (n_samples, 2) "
                f"(row, col) grid positions"
            )
        n = _n_samples(X)
        if n is not None and coords.shape[0] != n:
            raise ValueError(f"groups has {coords.shape[0]} rows but X has {n} samples")
        if not np.issubdtype(coords.dtype, np.number) or not np.isfinite(coords).all():
            raise ValueError("groups must hold finite numeric (row, col) grid positions")
        if not np.array_equal(coords, np.round(coords)):
            raise ValueError("groups must hold whole-pixel (row, col) grid indices, not map x/y")
        coords = coords.astype(np.int64)
        return coords[:, 0], coords[:, 1]


def _n_samples(X: Any) -> int | None:
    """How many samples ``X`` holds (``None`` when it cannot tell)."""
    if X is None:
        return None
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    try:
        return len(X)
    except TypeError:
        return None


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an int of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
