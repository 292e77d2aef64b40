"""Spatial block folds: no block is ever on both sides of a fold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoensemble.ensemble.folds import block_ids, spatial_folds
from geoensemble.errors import ConfigError


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(20, 400),
    block=st.integers(1, 40),
    folds=st.integers(2, 6),
    seed=st.integers(0, 10_000),
)
def test_folds_never_share_a_block_and_test_every_pixel_once(
    n: int, block: int, folds: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(0, 300, n), rng.integers(0, 300, n)
    ids = block_ids(rows, cols, block)
    if np.unique(ids).size < folds:
        with pytest.raises(ConfigError, match=r"ensemble\.cv"):
            spatial_folds(rows, cols, n_folds=folds, block_size=block, seed=seed)
        return
    out = spatial_folds(rows, cols, n_folds=folds, block_size=block, seed=seed)
    assert len(out) == folds
    tested = np.concatenate([f.test for f in out])
    assert np.array_equal(np.sort(tested), np.arange(n))
    for f in out:
        assert f.test.size > 0
        assert np.intersect1d(f.train, f.test).size == 0
        assert np.union1d(f.train, f.test).size == n
        assert not set(ids[f.train]) & set(ids[f.test])


def test_blocks_are_square_cells_of_the_grid() -> None:
    ids = block_ids(np.array([0, 31, 32, 0]), np.array([0, 31, 0, 32]), 32)
    assert ids[0] == ids[1] and len({ids[0], ids[2], ids[3]}) == 3


def test_folds_are_balanced_and_seeded() -> None:
    rows, cols = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    a = spatial_folds(rows.ravel(), cols.ravel(), n_folds=4, block_size=8, seed=1)
    b = spatial_folds(rows.ravel(), cols.ravel(), n_folds=4, block_size=8, seed=1)
    assert [f.test.size for f in a] == [1024] * 4
    assert all(np.array_equal(x.test, y.test) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_folds": 1, "block_size": 4}, r"ensemble\.cv\.folds=1"),
        ({"n_folds": 3, "block_size": 0}, r"ensemble\.cv\.block_size=0"),
        ({"n_folds": 5, "block_size": 1000}, r"fall in only 1 spatial block"),
    ],
)
def test_bad_fold_settings_name_the_key(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        spatial_folds(np.arange(10), np.arange(10), **kwargs)
