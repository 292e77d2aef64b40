"""What the codes of a map mean: aligned clusters, class names and colours.

Classifiers
    A class is named, in this order, by the model itself (string classes such as
    ``developed``), by the names recorded with the registered model at training
    (:data:`geoensemble.classes.CLASS_NAMES_TAG`), or by the project's labels
    (the ``classes.json`` beside the rasterized labels) when they name every class of the
    model; otherwise ``class <code>``.

Clusterers
    Cluster codes of different members mean nothing to each other, so before any vote every
    member's codes are matched to the first member's (the champion's) on a seeded sample of
    valid pixels (:func:`alignment_sample`: of whole chunks spread over a large scene) by
    :func:`geoensemble.predict.combine.align_clusters`. Then, when a reference
    exists (a truth raster, else the rasterized training labels), every
    shared code is named after the reference class it mostly holds on a seeded sample of the
    training features (:func:`geoensemble.classes.match_clusters`: ``water (91 %)``, or
    ``cluster 3`` below the threshold), and coloured with that class's colour.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from geoensemble.predict.combine import CLUSTER, ClassScheme, align_clusters, vote
from geoensemble.predict.models import LoadedMember, n_classes_of

log = logging.getLogger("geoensemble")

#: Pixels sampled to align cluster codes, and to name clusters after the reference.
ALIGN_SEED = 0
ALIGN_SAMPLE = 20_000
NAME_SAMPLE = 50_000
#: Most pixels read to draw the alignment sample: a larger scene is sampled in chunks spread
#: over it, so aligning members reads a few chunks, not the whole scene (measured at 21 Mpx,
#: 6 layers: 6.2 s and 127 MB for the whole scene).
ALIGN_READ_PIXELS = 4 << 20


@dataclass
class Legend:
    """The scheme of a run and how its names were found (for tags and the MLflow run)."""

    scheme: ClassScheme
    source: str  # e.g. "truth data/raw/labels/truth.tif", "model", "none"
    clusters: list[dict[str, Any]] = field(default_factory=list)  # ClusterMatch.as_dict()

    def as_dict(self) -> dict[str, Any]:
        s = self.scheme
        colours = s.colour_table()
        out: dict[str, Any] = {
            "kind": s.kind,
            "source": self.source,
            "classes": [
                {
                    "code": int(c),
                    "name": n,
                    "colour": "#{:02x}{:02x}{:02x}".format(*colours[int(c)]),
                }
                for c, n in zip(s.codes, s.names, strict=True)
            ],
        }
        if s.kind == CLUSTER:
            from geoensemble.classes import MATCH_MIN_PIXELS, MATCH_SHARE

            out["match_rule"] = {"min_share": MATCH_SHARE, "min_pixels": MATCH_MIN_PIXELS}
            out["clusters"] = self.clusters
            out["aligned_to"] = "member 0 (the first model: the champion)"
        return out


def member_tables(X: np.ndarray, union: list[str], members: list[LoadedMember]) -> list[np.ndarray]:
    """Each member's columns of a table whose columns are ``union``."""
    idx = {n: i for i, n in enumerate(union)}
    return [np.ascontiguousarray(X[:, [idx[n] for n in m.feature_names]]) for m in members]


def aligned_scheme(members: list[LoadedMember], scene: xr.Dataset, union: list[str]) -> ClassScheme:
    """The class scheme of clustering ``members`` with their codes matched to the first's.

    The matching sample is drawn with a fixed seed, so the stage and the Python API align the
    same members the same way.
    """
    recode = None
    if len(members) > 1:
        X = alignment_sample(scene, union)
        preds = [
            np.asarray(m.model.predict(x))
            for m, x in zip(members, member_tables(X, union, members), strict=True)
        ]
        recode = align_clusters(preds, [n_classes_of(m.model) for m in members])
    return ClassScheme.of(members, recode=recode)


def alignment_sample(scene: xr.Dataset, union: list[str]) -> np.ndarray:
    """The seeded table (columns ``union``) members are aligned on: :data:`ALIGN_SAMPLE`
    fully valid pixels (every member can predict them whatever its NaN handling) of the
    whole scene when it has at most :data:`ALIGN_READ_PIXELS`, else of chunks spread evenly
    over it (the whole scene again if none of those holds a valid pixel)."""
    from dask.local import get_sync

    from geoensemble.errors import EmptyLayerError
    from geoensemble.features.sample import sample_pixels

    windows = spread_windows(scene, union, ALIGN_READ_PIXELS)
    if windows:
        per = -(-ALIGN_SAMPLE // len(windows))
        parts = []
        for i, (rows, cols) in enumerate(windows):
            # one chunk of each layer, read here and once (layers that share a band share
            # its read); the function, not its name, so dask does not look for a cluster
            window = scene[union].isel(y=rows, x=cols).compute(scheduler=get_sync)
            try:
                part = sample_pixels(window, union, size=per, seed=ALIGN_SEED + i)
            except EmptyLayerError:  # a chunk outside the footprint
                continue
            parts.append(part.X)
        if parts:
            return np.concatenate(parts)
    return sample_pixels(scene, union, size=ALIGN_SAMPLE, seed=ALIGN_SEED).X


def spread_windows(ds: xr.Dataset, names: list[str], most_pixels: int) -> list[tuple[slice, slice]]:
    """Whole chunks of ``ds`` (its ``y, x`` chunks, 1024 px unchunked) spread evenly over the
    scene in row-major order, together at most ``most_pixels``; ``[]`` when the scene itself
    is no larger."""
    height, width = int(ds.sizes["y"]), int(ds.sizes["x"])
    if height * width <= most_pixels:
        return []
    sizes = ds[names[0]].chunksizes if names else {}
    cy = int(sizes["y"][0]) if "y" in sizes else 1024
    cx = int(sizes["x"][0]) if "x" in sizes else 1024
    ny, nx = -(-height // cy), -(-width // cx)
    n = max(1, min(ny * nx, most_pixels // (cy * cx)))
    # the middle cell of each of n equal runs of cells: spread, and off the corners, where
    # a tilted footprint leaves no data
    cells = ((np.arange(n) + 0.5) * (ny * nx) / n).astype(int)
    return [
        (slice(r * cy, min(height, (r + 1) * cy)), slice(c * cx, min(width, (c + 1) * cx)))
        for r, c in (divmod(int(k), nx) for k in cells)
    ]


def name_clusters(
    features: str,
    members: list[LoadedMember],
    scheme: ClassScheme,
    codes: np.ndarray,
    class_names: dict[int, str],
    *,
    sample_size: int,
    seed: int,
    nan_threshold: int,
) -> tuple[list[Any], dict[str, list[str]]] | None:
    """:class:`~geoensemble.classes.ClusterMatch` of every shared code, from each code's own
    member (the champion for its codes, the member an extra code belongs to otherwise), and
    the names each map gives its codes by its own shares (``member:<i>``, and ``vote`` when
    there are several members), on a seeded sample (``sample_size`` pixels at most
    :data:`NAME_SAMPLE`) of the reference pixels of the feature store ``features``. None when
    that store cannot be used (missing, other grid or features)."""
    from geoensemble.classes import match_clusters
    from geoensemble.errors import GeoEnsembleError
    from geoensemble.features.sample import sample_pixels
    from geoensemble.io.stack import open_store

    union = list(dict.fromkeys(n for m in members for n in m.feature_names))
    try:
        feats = open_store(features)
        missing = [n for n in union if n not in feats]
        if missing or codes.shape != (feats.sizes["y"], feats.sizes["x"]):
            why = f"it lacks {missing}" if missing else f"its grid is not {codes.shape}"
            log.warning(
                "predict: clusters keep neutral names: the reference cannot be compared with "
                "the training features %s (%s)",
                features,
                why,
            )
            return None
        sample = sample_pixels(
            feats,
            union,
            size=min(sample_size, NAME_SAMPLE),
            seed=seed,
            nan_threshold=nan_threshold,
            labels=codes.astype(np.int64),
        )
    except GeoEnsembleError as exc:
        log.warning(
            "predict: clusters keep neutral names: %s", exc, extra={"arguments": exc.arguments}
        )
        return None
    assert sample.y is not None
    tables = member_tables(sample.X, union, members)
    aligned = [
        scheme.positions(np.asarray(m.model.predict(x)), i)
        for i, (m, x) in enumerate(zip(members, tables, strict=True))
    ]
    # Each code is judged on the pixels of the member it belongs to: the champion for its
    # own codes, the member an extra code was created for otherwise.
    k0 = n_classes_of(members[0].model)
    owner = np.zeros(scheme.labels.size, dtype=np.int64)
    for i, lookup in enumerate(scheme.recode):
        owner[lookup[lookup >= k0]] = i
    clusters = np.concatenate([a[owner[a] == i] for i, a in enumerate(aligned)])
    ref = np.concatenate([sample.y[owner[a] == i] for i, a in enumerate(aligned)])
    codes_ = [int(c) for c in scheme.codes]
    shared = match_clusters(clusters, ref, codes_, class_names)
    maps = {f"member:{i}": a for i, a in enumerate(aligned)}
    if len(aligned) > 1:
        maps["vote"] = vote(np.stack(aligned))[0]
    by_map = {
        key: [m.name for m in match_clusters(a, sample.y, codes_, class_names)]
        for key, a in maps.items()
    }
    return shared, by_map
