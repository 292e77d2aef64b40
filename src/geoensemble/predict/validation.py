"""A validation sample to label: stratified random points drawn from a class map.

The design follows Olofsson et al. (2014), "Good practices for estimating area and assessing
accuracy of land change" (Remote Sensing of Environment 148, 42-57), section 5.1.2: the map's
classes are the strata; the total sample size comes from a target standard error of overall
accuracy (their eq. 13, Cochran 1977 eq. 5.25); each class gets its share of the area,
but at least ``min_per_class`` points (their advice for rare classes), never more than it has
pixels. Points are pixel centres, drawn without replacement, reproducible from ``seed``.
The map is read twice, window by window (counts, then the chosen pixels), so memory stays
bounded whatever its size.

Each point records its design: the stratum (map class code and name), the stratum's
pixels and sample size, and its inclusion probability, so that an area-weighted accuracy
can be computed from the labelled points alone.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoensemble.errors import ConfigError, InputFileError

# The column the analyst fills with each point's reference class name.
REFERENCE = "reference"
NODATA = 255
SAMPLE_MARK = "geoensemble_validation_sample"


@dataclass(frozen=True)
class Design:
    """A stratified random design: per map class, its pixels and its sample size.

    Attributes
    ----------
    pixels
        ``{code: N_h}``: mapped pixels per class (the strata).
    sizes
        ``{code: n_h}``: points drawn per class.
    target_se
        The standard error of overall accuracy the total size was computed for.
    users_accuracy
        ``{code: U_h}``: the user's accuracies the size formula assumed.
    seed
        Seeds the draw.
    eligible
        ``{code: E_h}``: pixels of each class the points may fall on (those not excluded,
        e.g. not training labels); the sizes never exceed them.
    """

    pixels: dict[int, int]
    sizes: dict[int, int]
    target_se: float
    users_accuracy: dict[int, float]
    seed: int
    eligible: dict[int, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Points drawn in all."""
        return sum(self.sizes.values())


def total_size(pixels: Mapping[int, int], users_accuracy: Mapping[int, float], se: float) -> int:
    """Olofsson et al. (2014) eq. 13: the sample size for a standard error ``se`` of overall
    accuracy, with ``S_h = sqrt(U_h (1 - U_h))`` and the finite population term.

    ``n = (sum W_h S_h)^2 / (se^2 + sum W_h S_h^2 / N)``, rounded up.
    """
    N = float(sum(pixels.values()))
    W = {h: n / N for h, n in pixels.items()}
    S = {h: math.sqrt(users_accuracy[h] * (1 - users_accuracy[h])) for h in pixels}
    num = sum(W[h] * S[h] for h in pixels) ** 2
    den = se**2 + sum(W[h] * S[h] ** 2 for h in pixels) / N
    return max(1, math.ceil(num / den))


def allocate(pixels: Mapping[int, int], n: int, min_per_class: int) -> dict[int, int]:
    """Points per class: ``n`` in proportion to area, at least ``min_per_class``, at most
    the class's pixels (so the total may exceed ``n`` when rare classes are raised)."""
    N = float(sum(pixels.values()))
    return {h: int(min(N_h, max(min_per_class, round(n * N_h / N)))) for h, N_h in pixels.items()}


def plan(
    pixels: Mapping[int, int],
    *,
    target_se: float = 0.01,
    users_accuracy: float | Mapping[int, float] = 0.8,
    min_per_class: int = 50,
    seed: int = 0,
    eligible: Mapping[int, int] | None = None,
) -> Design:
    """The design for a map with ``pixels`` per class (see :func:`total_size`, :func:`allocate`).

    Raises
    ------
    ConfigError
        For a target standard error outside (0, 0.5), user's accuracies outside [0, 1] or
        for classes the map lacks, or ``min_per_class`` below 1.
    """
    if not 0 < float(target_se) < 0.5:
        raise ConfigError(f"target_se={target_se!r} is out of range: use e.g. 0.01 (1 %)")
    if isinstance(min_per_class, bool) or not isinstance(min_per_class, int) or min_per_class < 1:
        raise ConfigError(f"min_per_class={min_per_class!r}: use an integer >= 1 (e.g. 50)")
    ua = (
        {h: float(users_accuracy[h]) for h in pixels if h in users_accuracy}
        if isinstance(users_accuracy, Mapping)
        else {h: float(users_accuracy) for h in pixels}
    )
    if missing := sorted(set(pixels) - set(ua)):
        raise ConfigError(f"users_accuracy lacks map class(es) {missing}: give one per class")
    if bad := {h: u for h, u in ua.items() if not 0 <= u <= 1}:
        raise ConfigError(f"users_accuracy {bad} is out of range: use values in [0, 1]")
    n = total_size(pixels, ua, float(target_se))
    can = dict(eligible) if eligible is not None else dict(pixels)
    sizes = {h: min(k, can.get(h, 0)) for h, k in allocate(pixels, n, min_per_class).items()}
    sizes = {h: k for h, k in sizes.items() if k}
    return Design(dict(pixels), sizes, float(target_se), ua, int(seed), can)


def _window(src: Any, exclude: Any, w: Any, nodata: int) -> np.ndarray:
    """Band 1 of ``src`` in window ``w``, with the pixels ``exclude`` labels set to no-data."""
    arr = src.read(1, window=w)
    if exclude is not None:
        ex = exclude.read(1, window=w)
        arr = np.where(ex != (exclude.nodata if exclude.nodata is not None else 255), nodata, arr)
    return np.asarray(arr)


def class_counts(src: Any, nodata: int, exclude: Any = None) -> dict[int, int]:
    """Pixels per class of band 1 of the open raster ``src``, read window by window
    (leaving out the labelled pixels of ``exclude``, an open raster on the same grid)."""
    counts = np.zeros(256, dtype=np.int64)
    for _, window in src.block_windows(1):
        block = _window(src, exclude, window, nodata)
        counts += np.bincount(block.ravel(), minlength=256)[:256]
    counts[nodata] = 0
    return {int(h): int(c) for h, c in enumerate(counts) if c}


def draw(
    src: Any, design: Design, nodata: int, exclude: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and classes of the design's points in the open raster ``src``.

    Each class's points are ranks drawn without replacement among its eligible pixels (not
    labelled in ``exclude``) in reading order (windows in order, row-major within a
    window); a second pass maps ranks to pixels, so only the chosen ranks are held in
    memory.
    """
    rng = np.random.default_rng(design.seed)
    chosen = {
        h: np.sort(rng.choice(design.eligible[h], size=n, replace=False))
        for h, n in sorted(design.sizes.items())
    }
    seen = dict.fromkeys(chosen, 0)
    rows, cols, classes = [], [], []
    for _, w in src.block_windows(1):
        arr = _window(src, exclude, w, nodata)
        for h, ranks in chosen.items():
            r, c = np.nonzero(arr == h)
            lo, hi = np.searchsorted(ranks, [seen[h], seen[h] + r.size])
            pick = ranks[lo:hi] - seen[h]
            rows.append(r[pick] + w.row_off)
            cols.append(c[pick] + w.col_off)
            classes.append(np.full(pick.size, h, dtype=np.int64))
            seen[h] += r.size
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(classes)


def map_class_names(src: Any) -> dict[int, str]:
    """The class names a geoensemble map carries (its ``class_names`` tag), else none."""
    tag = src.tags().get("class_names")
    if tag:
        try:
            return {int(k): str(v) for k, v in json.loads(tag).items()}
        except (ValueError, AttributeError):
            pass
    return {}


def draw_validation_sample(
    map_path: str | Path,
    out: str | Path,
    *,
    target_se: float = 0.01,
    users_accuracy: float | Mapping[int, float] = 0.8,
    min_per_class: int = 50,
    seed: int = 0,
    exclude: str | Path | None = None,
) -> tuple[Path, Design]:
    """Draw a stratified random sample from the class map ``map_path`` and write it to the
    GeoPackage ``out`` (layer ``validation``): one point per sampled pixel centre, in the
    map's CRS, with columns ``map_class``, ``map_class_name``, ``stratum_pixels``,
    ``stratum_sample``, ``inclusion_probability``, ``row``, ``col`` and an empty
    ``reference`` for the analyst to fill with each point's true class name.

    The strata are the map's classes with their pixel counts over the whole map; ``exclude``
    (a raster on the map's grid, e.g. the training ``labels.tif``) names pixels no point may
    fall on, so that the sample stays independent of the training labels.

    Returns
    -------
    (Path, Design)
        The GeoPackage written and its design.

    Raises
    ------
    InputFileError
        If ``map_path`` is not a single-band class map (uint8, no-data 255).
    ConfigError
        For design arguments out of range (see :func:`plan`).
    OutputError
        If ``out`` exists and is not a sample geoensemble wrote.
    """
    import rasterio

    path = Path(map_path)
    if not path.is_file():
        raise InputFileError(f"map_path={path} does not exist: give a class map (GeoTiff)")
    with rasterio.open(path) as src, _opened_exclude(exclude, src) as ex:
        if src.count != 1 or src.dtypes[0] != "uint8":
            raise InputFileError(
                f"map_path={path} has {src.count} band(s) of {src.dtypes[0]}: give a class "
                f"map (one uint8 band, no-data 255), such as the predict stage writes"
            )
        nodata = int(src.nodata) if src.nodata is not None else NODATA
        pixels = class_counts(src, nodata)
        if not pixels:
            raise InputFileError(f"map_path={path} has no classified pixel (all no-data)")
        design = plan(
            pixels,
            target_se=target_se,
            users_accuracy=users_accuracy,
            min_per_class=min_per_class,
            seed=seed,
            eligible=class_counts(src, nodata, ex) if ex is not None else None,
        )
        rows, cols, classes = draw(src, design, nodata, ex)
        xs, ys = rasterio.transform.xy(src.transform, rows, cols, offset="center")
        crs = src.crs
        names = map_class_names(src)
    return write_sample(Path(out), design, rows, cols, classes, xs, ys, crs, names), design


@contextlib.contextmanager
def _opened_exclude(exclude: str | Path | None, src: Any) -> Iterator[Any]:
    """``exclude`` opened, checked to lie on ``src``'s grid (None: nothing excluded)."""
    import rasterio

    if exclude is None:
        yield None
        return
    p = Path(exclude)
    if not p.is_file():
        raise InputFileError(f"exclude={p} does not exist: give the training labels raster")
    with rasterio.open(p) as ex:
        if (ex.width, ex.height, ex.transform) != (src.width, src.height, src.transform):
            raise InputFileError(
                f"exclude={p} is not on the map's grid ({ex.width} x {ex.height} px against "
                f"{src.width} x {src.height}): give the labels raster of the map's features"
            )
        yield ex


def write_sample(
    out: Path,
    design: Design,
    rows: np.ndarray,
    cols: np.ndarray,
    classes: np.ndarray,
    xs: Any,
    ys: Any,
    crs: Any,
    names: Mapping[int, str],
) -> Path:
    """Write the points and their design as the GeoPackage ``out`` (atomically, replacing
    only a sample of ours)."""
    import geopandas as gpd

    from geoensemble.io.atomic import atomic_path

    order = np.lexsort((cols, rows))
    gdf = gpd.GeoDataFrame(
        {
            "point": np.arange(order.size, dtype=np.int64),
            "map_class": classes[order],
            "map_class_name": [names.get(int(h), f"class_{int(h)}") for h in classes[order]],
            "stratum_pixels": [design.pixels[int(h)] for h in classes[order]],
            "stratum_sample": [design.sizes[int(h)] for h in classes[order]],
            "inclusion_probability": [
                design.sizes[int(h)] / design.eligible[int(h)] for h in classes[order]
            ],
            "row": rows[order],
            "col": cols[order],
            REFERENCE: [""] * order.size,
        },
        geometry=gpd.points_from_xy(np.asarray(xs)[order], np.asarray(ys)[order]),
        crs=crs,
    )
    meta = {
        SAMPLE_MARK: "stratified random, strata = map classes (Olofsson et al. 2014)",
        "target_se": str(design.target_se),
        "total": str(design.total),
        "seed": str(design.seed),
        "users_accuracy": json.dumps({str(h): u for h, u in design.users_accuracy.items()}),
    }
    with atomic_path(out, replace_if=_refusal, key="out") as tmp, warnings.catch_warnings():
        # the temporary name lacks the .gpkg the final name has
        warnings.filterwarnings("ignore", message="The filename extension should be")
        gdf.to_file(tmp, layer="validation", driver="GPKG", dataset_metadata=meta)
    return out


def _refusal(path: Path) -> str | None:
    """Why the existing ``path`` is not a sample geoensemble drew (None: it is, and may be
    replaced): a labelled sample is the analyst's work."""
    import pyogrio

    try:
        info = pyogrio.read_info(path, layer="validation")
    except Exception:  # not a GeoPackage, or no such layer
        return "it is not a validation sample geoensemble drew"
    if SAMPLE_MARK not in (info.get("dataset_metadata") or {}):
        return "it is not a validation sample geoensemble drew"
    ref = pyogrio.read_dataframe(path, layer="validation", columns=[REFERENCE], read_geometry=False)
    labelled = int(ref[REFERENCE].fillna("").astype(str).str.strip().ne("").sum())
    if labelled:
        return f"{labelled} of its points are labelled (your work): choose another out"
    return None
