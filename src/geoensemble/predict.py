"""Classified maps from a fitted model, block by block, in bounded memory.

Only valid pixels are predicted; blocks that hold none are written as no-data without calling
the model. The map is written under a temporary name and moved into place when complete, so an
interrupted run never leaves a file that looks finished.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import xarray as xr
from rasterio.windows import Window

from geoensemble.errors import FeatureMismatchError
from geoensemble.features.sample import row_strips
from geoensemble.features.table import from_table, to_table, valid_mask
from geoensemble.io.atomic import atomic_path
from geoensemble.io.profiles import TILE, class_dtype, geotiff_profile
from geoensemble.io.stack import grid_attrs


@dataclass
class MapSummary:
    """What a prediction produced: counts, timing and the class histogram."""

    path: Path
    pixels: int
    valid_pixels: int
    seconds: float
    n_classes: int
    histogram: dict[int, int] = field(default_factory=dict)

    @property
    def valid_fraction(self) -> float:
        return self.valid_pixels / self.pixels if self.pixels else 0.0


def check_features(model_names: list[str], scene_names: list[str], *, where: str) -> list[str]:
    """The scene's features in the model's order, or an error listing missing and extra."""
    missing = [n for n in model_names if n not in scene_names]
    extra = [n for n in scene_names if n not in model_names]
    if missing:
        raise FeatureMismatchError(
            f"{where} lacks feature(s) {missing} that the model was trained on "
            f"(extra in the scene: {extra or 'none'}): build the scene with the same "
            f"features config as the training run"
        )
    return list(model_names)


def n_classes_of(model: Any) -> int:
    """How many class codes a classifier or clusterer can output."""
    est = model[-1] if hasattr(model, "steps") else model
    for attr in ("n_clusters", "n_components"):
        if isinstance(getattr(est, attr, None), int):
            return int(getattr(est, attr))
    if hasattr(est, "classes_"):
        return len(est.classes_)
    raise TypeError(f"cannot tell how many classes {type(est).__name__} predicts")


def predict_map(
    features: xr.Dataset,
    model: Any,
    names: list[str],
    out_path: str | os.PathLike[str],
    *,
    block_rows: int = 1024,
    compress: str = "lzw",
    nan_threshold: int = 0,
    tags: dict[str, str] | None = None,
    colormap: dict[int, tuple[int, int, int]] | None = None,
    overwrite: bool = True,
) -> MapSummary:
    """Predict every valid pixel of ``features`` and write a classified GeoTiff.

    Parameters
    ----------
    features
        The scene's feature layers (from :func:`geoensemble.io.stack.open_store`).
    model
        A fitted scikit-learn estimator or pipeline taking ``names`` in that order.
    names
        Feature names in the order the model expects.
    block_rows
        Rows per block; rounded up to a multiple of the output tile height.
    """
    t0 = time.perf_counter()
    height, width = int(features.sizes["y"]), int(features.sizes["x"])
    n_classes = n_classes_of(model)
    dtype, nodata = class_dtype(n_classes)
    crs, transform = grid_attrs(features)
    prof = geotiff_profile(
        width=width,
        height=height,
        count=1,
        dtype=dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
        compress=compress,
    )
    step = max(TILE, int(np.ceil(block_rows / TILE)) * TILE)
    hist = np.zeros(n_classes, dtype=np.int64)
    valid_total = 0
    target = Path(out_path)
    with atomic_path(target, overwrite=overwrite) as tmp:
        with rasterio.open(tmp, "w", **prof) as dst:
            if colormap and dtype == "uint8":
                dst.write_colormap(1, colormap)  # before the pixels, or GDAL refuses
            for strip in row_strips(height, step):
                block = np.stack([features[n].isel(y=strip).to_numpy() for n in names])
                mask = valid_mask(block, nan_threshold=nan_threshold)
                n_valid = int(mask.sum())
                if n_valid:
                    codes = np.asarray(model.predict(to_table(block, mask)))
                    hist += np.bincount(codes.astype(np.int64), minlength=n_classes)[:n_classes]
                    out = from_table(codes.astype(dtype), mask, fill=nodata, dtype=dtype)
                else:
                    out = np.full(mask.shape, nodata, dtype=dtype)
                valid_total += n_valid
                dst.write(out, 1, window=Window(0, strip.start, width, strip.stop - strip.start))
            if tags:
                dst.update_tags(**tags)
    return MapSummary(
        path=target,
        pixels=height * width,
        valid_pixels=valid_total,
        seconds=time.perf_counter() - t0,
        n_classes=n_classes,
        histogram={i: int(c) for i, c in enumerate(hist)},
    )
