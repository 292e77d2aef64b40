"""The NaN policy for a model without an imputer of its own (an external model).

Members trained here carry their imputer inside their pipeline (their ``impute`` strategy,
fitted on the training pixels). A model trained elsewhere (an external model) does not, so it
gets the notebook's policy: pixels with more than ``nan_threshold`` NaN features are
not predicted (no-data), and the NaN features of the other pixels are filled with a value
per layer, put in front of the model as a :class:`FillNaN` step (:func:`with_fill`).

Fill values (:func:`scene_fill_values`), per layer, from the scene being predicted:

- ``mean``: exact. One pass, strip by strip, with a float64 sum and count of the layer's
  non-NaN values.
- ``median``: one pass, strip by strip, a seeded reservoir: every pixel gets a random key
  (from the seed and its row, so the draw does not depend on the strips) and the
  ``max_values`` valid values with the smallest keys are kept. When the layer has at most
  ``max_values`` valid values the reservoir holds all of them and the median is exact (it
  equals ``numpy.nanmedian`` of the layer, method ``exact``); otherwise it is the median of a
  uniform random sample of ``max_values`` of them (method ``sample``), whose quantile is off
  by about ``0.5 / sqrt(max_values)`` (0.0005 for the default million). Memory:
  ``max_values`` values and keys per layer plus one strip.
- ``constant``: the ``constant`` value for every layer, no pass.

Or from a declared sample: ``impute_stats`` names a JSON object ``{feature: value}``
(:func:`declared_fill_values`), used as it is.

The statistic of a layer is over all of its non-NaN pixels, whatever the other layers hold.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, TransformerMixin

from geoensemble.errors import ConfigError, EmptyLayerError, InputFileError
from geoensemble.features.sample import chunk_rows, row_strips

# Values per layer the median reservoir holds: exact up to this many valid pixels.
EXACT_MAX_VALUES = 1_000_000
STRATEGIES = ("median", "mean", "constant")


@dataclass
class FillValues:
    """The fill value of each feature and how it was obtained (recorded in the map's tags)."""

    strategy: str  # median | mean | constant
    values: dict[str, float]
    source: str  # "scene", "constant" or the declared JSON file
    methods: dict[str, str] = field(default_factory=dict)  # per feature: exact | sample ...

    def tags(self, nan_threshold: int, member: str) -> dict[str, str]:
        """GeoTiff tags recording the policy and the values used."""
        return {
            "nan_threshold": str(nan_threshold),
            "impute": self.strategy,
            "impute_member": member,
            "impute_source": self.source,
            "impute_values": json.dumps(self.values),
            "impute_method": json.dumps(self.methods),
        }


class FillNaN(TransformerMixin, BaseEstimator):
    """Replace NaN in column ``j`` by ``values[j]`` (fixed values: nothing is learned).

    Parameters
    ----------
    values
        One fill value per input column.
    """

    def __init__(self, values: Any = None) -> None:
        self.values = values

    def fit(self, X: Any, y: Any = None) -> FillNaN:
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return True  # the values are given, not learned

    def transform(self, X: Any) -> np.ndarray:
        X = np.asarray(X)
        fill = np.asarray(self.values, dtype=X.dtype)
        if X.ndim != 2 or X.shape[1] != fill.size:
            raise ConfigError(
                f"FillNaN got {X.shape[-1] if X.ndim else 0} columns for {fill.size} fill "
                f"values: give one value per input feature"
            )
        nan = np.isnan(X)
        return np.where(nan, fill[np.newaxis, :], X) if nan.any() else X


def with_fill(model: Any, values: list[float]) -> Any:
    """``model`` with a :class:`FillNaN` step in front (one pipeline, steps flattened so
    that its final estimator stays the model's own)."""
    from sklearn.pipeline import Pipeline

    steps = list(model.steps) if isinstance(model, Pipeline) else [("model", model)]
    return Pipeline([("geoensemble_fill_nan", FillNaN(list(values))), *steps])


def scene_fill_values(
    ds: xr.Dataset,
    names: list[str],
    strategy: str,
    *,
    constant: float = 0.0,
    seed: int = 0,
    max_values: int = EXACT_MAX_VALUES,
    strip_rows: int | None = None,
    scene: str = "scene",
) -> FillValues:
    """The fill value of each of ``names`` from the scene ``ds`` (see the module docstring).

    Raises
    ------
    EmptyLayerError
        If a layer has no valid pixel, so that it has no median or mean.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"strategy={strategy!r} is unknown: use median, mean or constant",
            arguments={"strategy": "scene_fill_values.strategy"},
        )
    if strategy == "constant":
        return FillValues(
            "constant",
            {n: float(constant) for n in names},
            "constant",
            {n: "constant" for n in names},
        )
    sums, counts, kept = _scan(ds, names, strategy == "median", seed, max_values, strip_rows)
    empty = [n for n, c in zip(names, counts, strict=True) if c == 0]
    if empty:
        raise EmptyLayerError(
            f"layer(s) {empty} of scene '{scene}' have no valid pixel, so they have no "
            f"{strategy} to fill their NaN with (strategy={strategy}): give "
            f"impute_stats (a JSON of fill values per feature), or set strategy=constant",
            arguments={
                "strategy": "scene_fill_values.strategy",
                "impute_stats": "declared_fill_values.impute_stats",
            },
        )
    values: dict[str, float] = {}
    methods: dict[str, str] = {}
    for i, n in enumerate(names):
        if strategy == "mean":
            values[n] = float(np.float32(sums[i] / counts[i]))
            methods[n] = f"exact (mean of {int(counts[i])} valid values)"
        else:
            values[n] = float(np.median(kept[i]))
            methods[n] = (
                f"exact (median of {int(counts[i])} valid values)"
                if counts[i] <= max_values
                else f"sample (median of a seeded random sample of {max_values} of "
                f"{int(counts[i])} valid values, seed {seed})"
            )
    return FillValues(strategy, values, "scene", methods)


def _scan(
    ds: xr.Dataset,
    names: list[str],
    median: bool,
    seed: int,
    max_values: int,
    strip_rows: int | None,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Per layer, strip by strip: the sum and count of the valid values and, for the
    ``median``, a seeded uniform sample of at most ``max_values`` of them."""
    height, width = int(ds.sizes["y"]), int(ds.sizes["x"])
    sums = np.zeros(len(names))
    counts = np.zeros(len(names), dtype=np.int64)
    kept: list[np.ndarray] = [np.empty(0, np.float32) for _ in names]
    keys: list[np.ndarray] = [np.empty(0, np.float32) for _ in names]
    for strip in row_strips(height, strip_rows or chunk_rows(ds, names)):
        strip_keys = _strip_keys(seed, strip, width) if median else None
        for i, n in enumerate(names):
            layer = np.asarray(ds[n].isel(y=strip).to_numpy(), dtype=np.float32)
            ok = ~np.isnan(layer)
            v = layer[ok]
            counts[i] += v.size
            if strip_keys is None:
                sums[i] += float(v.sum(dtype=np.float64))
                continue
            kept[i] = np.concatenate([kept[i], v])
            keys[i] = np.concatenate([keys[i], strip_keys[ok]])
            if kept[i].size > max_values:  # keep the smallest keys: a uniform sample
                pick = np.argpartition(keys[i], max_values)[:max_values]
                kept[i], keys[i] = kept[i][pick], keys[i][pick]
    return sums, counts, kept


def _strip_keys(seed: int, strip: slice, width: int) -> np.ndarray:
    """A random key per pixel of the rows of ``strip``."""
    # one key per pixel from its row's own seed: the sample does not depend on strips
    return np.stack(
        [
            np.random.default_rng([seed, r]).random(width, dtype=np.float32)
            for r in range(strip.start, strip.stop)
        ]
    )


def declared_fill_values(impute_stats: str | Path, names: list[str], strategy: str) -> FillValues:
    """Fill values declared in the JSON file ``impute_stats`` (``{feature: value}``), checked
    to hold a finite number for each of ``names``.

    Raises
    ------
    InputFileError
        If the file is missing, too large or not JSON.
    ConfigError
        If it is not an object with a finite number for every feature.
    """
    p = Path(impute_stats)
    key = "impute_stats"  # the messages name the argument (see geoensemble.errors)
    arguments = {key: "declared_fill_values.impute_stats"}
    if not p.is_file():
        raise InputFileError(
            f"{key}={str(p)!r} does not exist: give a JSON file of fill values per feature, "
            f'e.g. {{"{names[0] if names else "B2"}": 0.12}}, or set it to null to use the '
            f"scene's {strategy}",
            arguments=arguments,
        )
    if p.stat().st_size > 1_000_000:
        raise InputFileError(
            f"{key}={str(p)!r} is over 1 MB: it should hold one value per feature",
            arguments=arguments,
        )
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(
            f"cannot read {key}={str(p)!r}: {exc}. Write a JSON object of fill values per feature",
            arguments=arguments,
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{key}={str(p)!r} holds a {type(data).__name__}, not a JSON object: write "
            f"{{feature: value, ...}}",
            arguments=arguments,
        )
    missing = [n for n in names if n not in data]
    bad = [
        n
        for n in names
        if n in data
        and (
            isinstance(data[n], bool)
            or not isinstance(data[n], int | float)
            or not math.isfinite(data[n])
        )
    ]
    if missing or bad:
        what = f"lacks {missing}" if missing else f"has no finite number for {bad}"
        raise ConfigError(
            f"{key}={str(p)!r} {what}: give a finite fill value for every input feature "
            f"of the external model ({names})",
            arguments=arguments,
        )
    return FillValues(
        strategy,
        {n: float(np.float32(data[n])) for n in names},
        str(p),
        {n: "declared" for n in names},
    )
