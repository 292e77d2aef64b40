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
        ({"n_folds": 1, "block_size": 4}, r"^n_folds=1 must be >= 2$"),
        ({"n_folds": 3, "block_size": 0}, r"^block_size=0 must be >= 1"),
        (
            {"n_folds": 5, "block_size": 1000},
            r"fall in only 1 spatial block\(s\) of block_size=1000 px, fewer than n_folds=5",
        ),
    ],
)
def test_bad_fold_settings_name_the_argument(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        spatial_folds(np.arange(10), np.arange(10), **kwargs)


# A hand-made grid: block (0, 0) holds a, d, e; block (0, 1) holds b, c, f (4-px blocks).
#   a=(0,3) b=(0,4) c=(0,6) d=(3,0) e=(2,1) f=(1,4)
HAND = {"a": (0, 3), "b": (0, 4), "c": (0, 6), "d": (3, 0), "e": (2, 1), "f": (1, 4)}


def _hand_folds(buffer: int) -> dict[str, tuple[set[str], set[str]]]:
    """``{test pixels: (train, buffered)}`` of each fold, by pixel name."""
    names = list(HAND)
    rows = np.array([HAND[n][0] for n in names])
    cols = np.array([HAND[n][1] for n in names])
    out = {}
    for f in spatial_folds(rows, cols, n_folds=2, block_size=4, seed=0, buffer=buffer):
        key = "".join(sorted(names[i] for i in f.test))
        out[key] = ({names[i] for i in f.train}, {names[i] for i in f.buffered})
    return out


@pytest.mark.parametrize(
    ("buffer", "left_out_a_d_e", "left_out_b_c_f"),
    [
        (0, set(), set()),
        # b and f (diagonal: Chebyshev 1, Euclidean 1.4) touch a; c is 3 px from a
        (1, {"b", "f"}, {"a"}),
        (2, {"b", "f"}, {"a"}),
        # e is 3 px from b and from f (rows 2 vs 0/1, cols 1 vs 4); d is 4 px from b and f
        (3, {"b", "c", "f"}, {"a", "e"}),
    ],
)
def test_buffer_leaves_out_exactly_the_training_pixels_near_a_test_pixel(
    buffer: int, left_out_a_d_e: set[str], left_out_b_c_f: set[str]
) -> None:
    if left_out_a_d_e == {"b", "c", "f"}:  # every training pixel of that fold: refused
        with pytest.raises(
            ConfigError, match=r"^buffer=3 leaves fold \d of 2 .*lower buffer, or raise block_size$"
        ):
            _hand_folds(buffer)
        return
    folds = _hand_folds(buffer)
    assert folds["ade"] == ({"b", "c", "f"} - left_out_a_d_e, left_out_a_d_e)
    assert folds["bcf"] == ({"a", "d", "e"} - left_out_b_c_f, left_out_b_c_f)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), buffer=st.integers(1, 6), block=st.integers(3, 12))
def test_buffer_matches_a_brute_force_chebyshev_search(seed: int, buffer: int, block: int) -> None:
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(0, 60, 150), rng.integers(0, 60, 150)
    try:
        out = spatial_folds(rows, cols, n_folds=3, block_size=block, seed=seed, buffer=buffer)
    except ConfigError:
        return  # too few blocks, or a fold left without training pixels
    plain = spatial_folds(rows, cols, n_folds=3, block_size=block, seed=seed)
    for f, p in zip(out, plain, strict=True):
        assert np.array_equal(f.test, p.test)  # the buffer never moves test pixels
        cheb = np.maximum(
            np.abs(rows[p.train, None] - rows[None, p.test]),
            np.abs(cols[p.train, None] - cols[None, p.test]),
        ).min(axis=1)
        assert np.array_equal(f.buffered, p.train[cheb <= buffer])
        assert np.array_equal(f.train, p.train[cheb > buffer])


def test_folds_digest_changes_with_the_assignment() -> None:
    from geoensemble.ensemble.folds import folds_digest

    rows, cols = np.meshgrid(np.arange(40), np.arange(40), indexing="ij")
    r, c = rows.ravel(), cols.ravel()
    a = spatial_folds(r, c, n_folds=3, block_size=8, seed=1)
    assert folds_digest(r, c, a) == folds_digest(
        r, c, spatial_folds(r, c, n_folds=3, block_size=8, seed=1)
    )
    for other in (
        spatial_folds(r, c, n_folds=4, block_size=8, seed=1),
        spatial_folds(r, c, n_folds=3, block_size=8, seed=2),
        spatial_folds(r, c, n_folds=3, block_size=8, seed=1, buffer=1),
    ):
        assert folds_digest(r, c, other) != folds_digest(r, c, a)
