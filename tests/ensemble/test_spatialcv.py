"""SpatialBlockCV: spatial block folds as a scikit-learn splitter."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from geoensemble.ensemble.folds import block_ids, spatial_folds
from geoensemble.ensemble.metasearch import EnsembleSearch
from geoensemble.ensemble.spatialcv import SpatialBlockCV


def grid(rows: int, cols: int) -> np.ndarray:
    """``(rows * cols, 2)`` (row, col) of every pixel of a ``rows`` x ``cols`` grid."""
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return np.column_stack([r.ravel(), c.ravel()])


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 40 x 40 grid sampled at 500 random pixels: features, labels, coordinates."""
    rng = np.random.default_rng(0)
    coords = grid(40, 40)[rng.choice(1600, 500, replace=False)]
    X = np.column_stack([coords / 40.0, rng.normal(size=(500, 2))])
    y = (coords[:, 0] + rng.normal(0, 5, 500) > 20).astype(int)
    return X, y, coords


def test_folds_never_share_a_block_and_test_every_sample_once(
    scene: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    X, _, coords = scene
    cv = SpatialBlockCV(4, block_size=8, random_state=0)
    folds = list(cv.split(X, groups=coords))
    assert len(folds) == cv.get_n_splits() == 4
    ids = block_ids(coords[:, 0], coords[:, 1], 8)
    tested = np.sort(np.concatenate([test for _, test in folds]))
    np.testing.assert_array_equal(tested, np.arange(500))
    for train, test in folds:
        assert not set(ids[train]) & set(ids[test])
        np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(500))


def test_the_folds_are_those_of_spatial_folds(
    scene: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    X, _, coords = scene
    ours = list(SpatialBlockCV(3, block_size=10, buffer=2, random_state=4).split(X, None, coords))
    seed = int(np.random.RandomState(4).randint(np.iinfo(np.int32).max))
    theirs = spatial_folds(
        coords[:, 0], coords[:, 1], n_folds=3, block_size=10, seed=seed, buffer=2
    )
    for (train, test), fold in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(train, fold.train)
        np.testing.assert_array_equal(test, fold.test)


def test_the_buffer_removes_the_training_pixels_next_to_the_test_blocks() -> None:
    coords = grid(12, 12)
    X = np.zeros((144, 1))
    cv = SpatialBlockCV(2, block_size=6, buffer=1, random_state=0)
    for train, test in cv.split(X, groups=coords):
        rest = np.setdiff1d(np.arange(144), test)
        # Chebyshev distance of every non-test pixel to the nearest test pixel
        d = np.abs(coords[rest, None, :] - coords[None, test, :]).max(axis=2).min(axis=1)
        np.testing.assert_array_equal(train, rest[d > 1])
        assert (d <= 1).sum() > 0  # the buffer did remove pixels
    # without a buffer the training set is every pixel outside the test blocks
    for train, test in SpatialBlockCV(2, block_size=6, random_state=0).split(X, None, coords):
        np.testing.assert_array_equal(train, np.setdiff1d(np.arange(144), test))


def test_same_random_state_same_folds(scene: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    X, _, coords = scene

    def tests(seed: int) -> list[list[int]]:
        cv = SpatialBlockCV(5, block_size=4, random_state=seed)
        return [test.tolist() for _, test in cv.split(X, groups=coords)]

    assert tests(1) == tests(1)


def test_cross_val_score_and_the_search_use_it_through_groups(
    scene: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    X, y, coords = scene
    cv = SpatialBlockCV(3, block_size=10, buffer=1, random_state=0)
    scores = cross_val_score(LogisticRegression(), X, y, groups=coords, cv=cv)
    assert scores.shape == (3,) and (scores > 0.5).all()
    search = EnsembleSearch(
        LogisticRegression(),
        {"C": [0.01, 1.0]},
        n_members=2,
        generations=1,
        criterion="accuracy",
        cv=cv,
    ).fit(X, y, groups=coords)
    assert search.n_splits_ == 3
    i = search.cv_results_["params"].index({"C": 1.0})
    assert search.cv_results_["mean_test_accuracy"][i] == pytest.approx(scores.mean())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_splits": 1}, r"n_splits=1 must be an integer >= 2"),
        ({"block_size": 0}, r"block_size=0 must be an integer >= 1"),
        ({"buffer": -1}, r"buffer=-1 must be an integer >= 0"),
        ({"block_size": 2.5}, r"block_size=2.5 must be an integer"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SpatialBlockCV(**kwargs)


@pytest.mark.parametrize(
    ("cv", "groups", "match"),
    [
        (SpatialBlockCV(2), None, r"needs groups="),
        (SpatialBlockCV(2), np.zeros((10, 3)), r"groups has shape \(10, 3\)"),
        (SpatialBlockCV(2), np.zeros((9, 2)), r"groups has 9 rows but X has 10 samples"),
        (SpatialBlockCV(2), np.full((10, 2), 0.5), r"whole-pixel"),
        (SpatialBlockCV(2, block_size=64), grid(2, 5), r"only 1 block\(s\) of block_size=64"),
        (SpatialBlockCV(2, block_size=1, buffer=9), grid(2, 5), r"buffer=9 leaves a fold"),
    ],
)
def test_bad_coordinates_name_the_argument(cv: SpatialBlockCV, groups: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        list(cv.split(np.zeros((10, 1)), groups=groups))
    assert "ensemble.cv" not in str(err.value)  # arguments, not config keys


def test_repr_shows_the_arguments() -> None:
    text = repr(SpatialBlockCV(3, block_size=16, buffer=2, random_state=0))
    assert text == "SpatialBlockCV(block_size=16, buffer=2, n_splits=3, random_state=0)"
