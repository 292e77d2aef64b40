"""Rasters to tables and back: exact round trips, NaN placement, coordinates, NaN policy."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from geoensemble.errors import ConfigError, FeatureMismatchError, LayerNotFoundError
from geoensemble.features.table import (
    flatten,
    from_table,
    to_table,
    unflatten,
    valid_mask,
)
from tests.features.conftest import BANDS, stack_dataset


def test_worked_example_of_flatten_and_inverse() -> None:
    # 2 layers on a 2 x 3 grid; pixel (0, 0) has no data, pixel (1, 2) misses layer b.
    a = np.array([[np.nan, 1, 2], [3, 4, 5]], dtype=np.float32)
    b = np.array([[np.nan, 10, 20], [30, 40, np.nan]], dtype=np.float32)
    ds = xr.Dataset(
        {"a": (("y", "x"), a), "b": (("y", "x"), b)},
        coords={"y": [100.0, 70.0], "x": [5.0, 35.0, 65.0]},
    )
    t = flatten(ds)
    np.testing.assert_array_equal(t.X, [[1, 10], [2, 20], [3, 30], [4, 40]])
    np.testing.assert_array_equal(t.rows, [0, 0, 1, 1])
    np.testing.assert_array_equal(t.cols, [1, 2, 0, 1])
    xs, ys = t.coords()
    np.testing.assert_array_equal(xs, [35, 65, 5, 35])
    np.testing.assert_array_equal(ys, [100, 100, 70, 70])
    # a prediction per row goes back with NaN where rows were dropped
    pred = unflatten(np.array([7, 8, 9, 6], dtype=np.float32), t)
    np.testing.assert_array_equal(pred.to_numpy(), [[np.nan, 7, 8], [9, 6, np.nan]])
    assert pred.x.values.tolist() == [5.0, 35.0, 65.0]
    # integer classes take the output no-data value instead
    codes = unflatten(np.array([1, 2, 3, 0]), t, fill=255, dtype="uint8")
    np.testing.assert_array_equal(codes.to_numpy(), [[255, 1, 2], [3, 0, 255]])
    # with nan_threshold=1 the pixel missing one layer becomes a row, all-NaN never does
    t1 = flatten(ds, nan_threshold=1)
    assert len(t1) == 5 and not t1.mask[0, 0] and t1.mask[1, 2]
    assert np.isnan(t1.X[-1, 1])


@pytest.mark.parametrize("chunks", [None, 4, 9, 16, 64])
@pytest.mark.parametrize("nan_threshold", [0, 1, 7])
def test_flatten_then_unflatten_is_the_exact_inverse(
    chunks: int | None, nan_threshold: int
) -> None:
    ds = stack_dataset(height=23, width=17, chunks=chunks)
    t = flatten(ds, nan_threshold=nan_threshold)
    assert t.X.shape == (int(t.mask.sum()), len(BANDS)) and t.X.dtype == np.float32
    back = unflatten(t.X, t, name=t.names)
    assert isinstance(back, xr.Dataset)
    ref = ds.compute()
    for n in BANDS:
        got, want = back[n].to_numpy(), ref[n].to_numpy()
        # valid pixels identical; dropped ones NaN; NaN of kept pixels stays NaN
        np.testing.assert_array_equal(got[t.mask], want[t.mask])
        assert np.isnan(got[~t.mask]).all()
        np.testing.assert_array_equal(back[n].x, ref.x)
    # 5 x 5 no-data corner is never a row; single missing bands are rows iff threshold >= 1
    assert not t.mask[:5, :5].any()
    assert t.mask[10, 3] == (nan_threshold >= 1)


def test_multi_column_values_become_one_layer_each() -> None:
    mask = np.array([[True, False], [True, True]])
    probs = np.array([[0.1, 0.9], [0.5, 0.5], [1.0, 0.0]])
    out = from_table(probs, mask, fill=-1.0)
    assert out.shape == (2, 2, 2)
    np.testing.assert_array_equal(out[0], [[0.1, -1], [0.5, 1.0]])
    np.testing.assert_array_equal(out[1], [[0.9, -1], [0.5, 0.0]])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda t: unflatten(np.zeros(3), t), FeatureMismatchError, r"\(3,\).*valid"),
        (
            lambda t: unflatten(np.zeros((len(t), 2)), t, name=["a"]),
            FeatureMismatchError,
            "1 names",
        ),
        (lambda t: unflatten(np.zeros(len(t), dtype=int), t), ConfigError, "fill=<no-data"),
        (lambda t: flatten(stack_dataset(), ["B1", "ndvi"]), LayerNotFoundError, r"\['ndvi'\]"),
        (lambda t: valid_mask(np.zeros((1, 2, 2)), nan_threshold=-1), ConfigError, "negative"),
    ],
)
def test_bad_table_input_is_a_clear_error(call, error: type[Exception], match: str) -> None:  # type: ignore[no-untyped-def]
    t = flatten(stack_dataset(height=12, width=9))
    with pytest.raises(error, match=match):
        call(t)


@settings(max_examples=50, deadline=None)
@given(
    block=arrays(
        np.float32,
        st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9)),
        elements=st.one_of(st.just(np.nan), st.floats(-1e3, 1e3, width=32)),
    ),
    nan_threshold=st.integers(0, 4),
)
def test_table_round_trip_property(block: np.ndarray, nan_threshold: int) -> None:
    mask = valid_mask(block, nan_threshold=nan_threshold)
    nans = np.isnan(block).sum(axis=0)
    np.testing.assert_array_equal(mask, (nans <= nan_threshold) & (nans < block.shape[0]))
    table = to_table(block, mask)
    assert table.shape == (int(mask.sum()), block.shape[0])
    back = from_table(table, mask, fill=np.nan)
    np.testing.assert_array_equal(back[:, mask], block[:, mask])
    assert np.isnan(back[:, ~mask]).all()
