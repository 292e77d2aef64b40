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
