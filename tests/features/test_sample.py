"""The training sample: seeded, size-limited, strip by strip, optionally class-balanced."""

from __future__ import annotations

import numpy as np
import pytest

from geoensemble.errors import ConfigError, EmptyLayerError, GridMismatchError
from geoensemble.features.sample import balanced_quotas, sample_pixels
from geoensemble.features.table import flatten
from tests.features.conftest import BANDS, stack_dataset


def test_sample_is_valid_pixels_at_their_grid_positions() -> None:
    ds = stack_dataset(height=40, width=30)
    s = sample_pixels(ds, BANDS, size=100, seed=1)
    assert len(s) == 100 and s.X.dtype == np.float32 and s.y is None
    ref = ds.compute()
    for i, n in enumerate(BANDS):
        np.testing.assert_array_equal(s.X[:, i], ref[n].to_numpy()[s.rows, s.cols])
    assert not np.isnan(s.X).any()
    assert len(set(zip(s.rows.tolist(), s.cols.tolist(), strict=True))) == 100  # no repeats


@pytest.mark.parametrize("chunks", [None, 6, 16])
def test_sample_depends_only_on_data_and_seed_not_on_strips_or_backend(
    chunks: int | None,
) -> None:
    ref = sample_pixels(stack_dataset(), BANDS, size=50, seed=7, strip_rows=40)
    for strip_rows in (1, 7, None):
        s = sample_pixels(
            stack_dataset(chunks=chunks), BANDS, size=50, seed=7, strip_rows=strip_rows
        )
        np.testing.assert_array_equal(s.X, ref.X)
        np.testing.assert_array_equal(s.rows, ref.rows)
    other = sample_pixels(stack_dataset(), BANDS, size=50, seed=8)
    assert not np.array_equal(other.rows, ref.rows)


def test_size_limit_and_all_pixels_when_fewer() -> None:
    ds = stack_dataset(height=10, width=10)
    everything = flatten(ds)
    s = sample_pixels(ds, BANDS, size=10_000, seed=0)
    assert len(s) == len(everything)  # all valid pixels, in random order
    assert sorted(zip(s.rows, s.cols, strict=True)) == sorted(
        zip(everything.rows, everything.cols, strict=True)
    )


def test_nan_threshold_admits_pixels_missing_some_layers() -> None:
    ds = stack_dataset(height=20, width=10)
    strict = sample_pixels(ds, BANDS, size=10_000, seed=0)
    loose = sample_pixels(ds, BANDS, size=10_000, seed=0, nan_threshold=1)
    assert len(loose) == len(strict) + len(BANDS)  # the single-band gaps
    assert np.isnan(loose.X).sum() == len(BANDS)


def test_labels_restrict_and_stratify_balances_classes() -> None:
    ds = stack_dataset(height=40, width=30)
    labels = np.full((40, 30), 255, dtype=np.int64)
    labels[20:, :] = 0  # 300 pixels of class 0
    labels[10:20, 10:30] = 1  # 200 of class 1
    labels[6:8, 20:30] = 2  # 20 of class 2 (rare)
    plain = sample_pixels(ds, BANDS, size=90, seed=3, labels=labels)
    assert plain.y is not None and set(np.unique(plain.y)) <= {0, 1, 2}
    np.testing.assert_array_equal(plain.y, labels[plain.rows, plain.cols])
    strat = sample_pixels(ds, BANDS, size=90, seed=3, labels=labels, stratify=True)
    assert strat.y is not None
    counts = np.bincount(strat.y, minlength=3)
    assert counts.tolist() == [35, 35, 20]  # the rare class keeps all 20, the rest split
    np.testing.assert_array_equal(strat.y, labels[strat.rows, strat.cols])
    # each strip keeps only its smallest keys (per class): the same sample whatever the strip
    for kw in ({"stratify": True}, {}):
        ref = sample_pixels(ds, BANDS, size=90, seed=3, labels=labels, strip_rows=40, **kw)
        for strip_rows in (1, 3, 11):
            s = sample_pixels(
                ds, BANDS, size=90, seed=3, labels=labels, strip_rows=strip_rows, **kw
            )
            np.testing.assert_array_equal(s.rows, ref.rows)
            np.testing.assert_array_equal(s.cols, ref.cols)
            np.testing.assert_array_equal(s.X, ref.X)


def test_balanced_quotas() -> None:
    assert balanced_quotas({0: 1000, 1: 1000}, 100) == {0: 50, 1: 50}
    assert balanced_quotas({0: 5, 1: 1000, 2: 1000}, 100) == {0: 5, 1: 47, 2: 48}
    assert balanced_quotas({0: 3, 1: 4}, 100) == {0: 3, 1: 4}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"size": 0}, ConfigError, r"^size=0 must be >= 1$"),
        ({"stratify": True}, ConfigError, r"stratify=true needs class labels"),
        ({"labels": np.zeros((3, 3))}, GridMismatchError, r"\(3, 3\).*\(40, 30\)"),
        ({"labels": np.full((40, 30), 255)}, EmptyLayerError, "labels overlap"),
    ],
)
def test_bad_sample_requests_are_clear_errors(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    args: dict[str, object] = {"size": 10, "seed": 0, **kwargs}
    with pytest.raises(error, match=match):
        sample_pixels(stack_dataset(), BANDS, **args)  # type: ignore[arg-type]


def test_an_all_nodata_scene_is_an_empty_layer_error() -> None:
    ds = stack_dataset(height=8, width=8)
    ds = ds.where(ds.x < 0)  # every pixel NaN
    with pytest.raises(EmptyLayerError, match="no valid pixel"):
        sample_pixels(ds, BANDS, size=10, seed=0)
