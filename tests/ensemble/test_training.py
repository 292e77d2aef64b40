"""Labelled training samples: uniform or class-balanced draws of the labelled pixels."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from geoensemble.ensemble.training import labelled_sample
from geoensemble.io.labels import NODATA, Labels


@pytest.fixture
def scene() -> tuple[xr.Dataset, Labels]:
    # 40 x 40 pixels; class 0 labels 400 pixels, class 1 labels 40, class 2 labels 8.
    rng = np.random.default_rng(0)
    ds = xr.Dataset({n: (("y", "x"), rng.random((40, 40)).astype("float32")) for n in "ab"})
    arr = np.full((40, 40), NODATA, dtype=np.uint8)
    arr[:10, :] = 0
    arr[10, :] = 1
    arr[20, :8] = 2
    return ds, Labels(array=arr, classes={0: "a", 1: "b", 2: "c"})


def test_stratified_draw_gives_each_class_an_equal_share(scene) -> None:
    ds, labels = scene
    s = labelled_sample(ds, ["a", "b"], labels, size=60, seed=1, stratify=True)
    assert dict(zip(*np.unique(s.y, return_counts=True), strict=True)) == {0: 26, 1: 26, 2: 8}
    # the features are those of the drawn pixels
    np.testing.assert_array_equal(s.X[:, 0], ds["a"].to_numpy()[s.rows, s.cols])
    np.testing.assert_array_equal(s.y, labels.array[s.rows, s.cols])


def test_uniform_draw_follows_the_label_frequencies(scene) -> None:
    ds, labels = scene
    s = labelled_sample(ds, ["a", "b"], labels, size=60, seed=1)
    counts = dict(zip(*np.unique(s.y, return_counts=True), strict=True))
    assert len(s.y) == 60 and counts[0] > 40 and counts.get(2, 0) <= 4
    again = labelled_sample(ds, ["a", "b"], labels, size=60, seed=1)
    np.testing.assert_array_equal(s.rows, again.rows)


def test_a_given_splitter_makes_the_folds(scene) -> None:
    from sklearn.model_selection import KFold

    from geoensemble.ensemble.spatialcv import SpatialBlockCV
    from geoensemble.ensemble.training import draw_training_data

    ds, labels = scene
    kw = {"kind": "classifier", "size": 300, "seed": 1}
    cv = SpatialBlockCV(3, block_size=8, buffer=1, random_state=4)
    drawn = draw_training_data(ds, ["a", "b"], labels, cv=cv, **kw)
    ls = drawn.labelled
    assert ls is not None
    where = np.column_stack([ls.rows, ls.cols])
    want = list(cv.split(ls.X, ls.y, where))  # the splitter's own folds, on the same pixels
    assert len(drawn.folds) == 3
    for got, (train, test) in zip(drawn.folds, want, strict=True):
        np.testing.assert_array_equal(got.train, train)
        np.testing.assert_array_equal(got.test, test)
    # any scikit-learn splitter: KFold ignores the positions
    plain = draw_training_data(ds, ["a", "b"], labels, cv=KFold(4), **kw)
    assert [len(f.test) for f in plain.folds] == [75, 75, 75, 75]
    np.testing.assert_array_equal(plain.folds[0].test, np.arange(75))
