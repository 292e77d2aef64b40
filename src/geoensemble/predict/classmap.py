"""Classes from clusters: a class map in which clusters named after the same reference class
merge (five ``water`` clusters become one ``water``), with the shares recomputed.

A cluster is named after the reference class that holds most of its reference pixels, with
that share (:func:`geoensemble.classes.match_clusters`). Merging the clusters of one class
gives that class the pixels of all of them; its share is then the part of their reference
pixels that are that class: ``sum(share_i * pixels_i) / sum(pixels_i)``, exact because the
class is each merged cluster's majority. Clusters that match no class keep a code and a
neutral ``cluster N`` name of their own. The cluster map itself is left as it is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoensemble.classes import RGB, class_colours, neutral_greys


@dataclass(frozen=True)
class Merge:
    """How cluster codes become class codes.

    Attributes
    ----------
    lut
        ``lut[cluster code]`` = class code (256 entries; no-data maps to itself).
    classes
        ``{class code: (name, rgb)}``: ``water (93 %)`` for merged classes, ``cluster N``
        for clusters that match none.
    members
        ``{class name: [cluster codes]}`` merged into each class.
    """

    lut: np.ndarray
    classes: dict[int, tuple[str, RGB]]
    members: dict[str, list[int]]


def merge_by_class(clusters: Sequence[Mapping[str, Any]], nodata: int = 255) -> Merge | None:
    """The merge of the predict legend's ``clusters`` (``code``, ``class``, ``share``,
    ``reference_pixels`` each); ``None`` when no cluster matches a class."""
    by_class: dict[str, list[Mapping[str, Any]]] = {}
    unmatched = []
    for c in sorted(clusters, key=lambda c: int(c["code"])):
        if c.get("class"):
            by_class.setdefault(str(c["class"]), []).append(c)
        else:
            unmatched.append(int(c["code"]))
    if not by_class:
        return None
    names = sorted(by_class)
    labels = []
    for name in names:
        group = by_class[name]
        pixels = sum(int(c["reference_pixels"]) for c in group)
        held = sum(float(c["share"]) * int(c["reference_pixels"]) for c in group)
        labels.append(f"{name} ({round(100 * held / pixels)} %)" if pixels else name)
    lut = np.arange(256, dtype=np.uint8)
    classes: dict[int, tuple[str, RGB]] = {}
    colours = class_colours(names)
    for code, (name, label, rgb) in enumerate(zip(names, labels, colours, strict=True)):
        for c in by_class[name]:
            lut[int(c["code"])] = code
        classes[code] = (label, rgb)
    for i, (cluster, rgb) in enumerate(zip(unmatched, neutral_greys(len(unmatched)), strict=True)):
        lut[cluster] = len(names) + i
        classes[len(names) + i] = (f"cluster {cluster}", rgb)
    lut[nodata] = nodata
    members = {n: [int(c["code"]) for c in by_class[n]] for n in names}
    return Merge(lut, classes, members)


def write_class_map(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    merge: Merge,
    *,
    block_size: int = 1024,
    compress: str = "lzw",
    overviews: bool = True,
) -> Path:
    """The cluster map ``path`` recoded by ``merge`` into the class map ``out`` (a COG with
    the class names, colours and the clusters each class holds, tag ``merged_clusters``),
    window by window."""
    import rasterio
    from rasterio.windows import Window

    from geoensemble.predict.blocks import Block
    from geoensemble.predict.writer import GDAL_ENV, MapWriter

    with rasterio.Env(**GDAL_ENV), rasterio.open(path) as src:
        tags = {
            **src.tags(),
            "geoensemble_output": "classes",
            "merged_clusters": json.dumps(merge.members),
            "description": f"classes from the clusters of {Path(path).name}",
        }
        tags.pop("class_names", None)  # the writer sets the merged ones
        writer = MapWriter(
            Path(out),
            width=src.width,
            height=src.height,
            count=1,
            dtype="uint8",
            nodata=src.nodata if src.nodata is not None else 255,
            crs=src.crs,
            transform=src.transform,
            compress=compress,
            tags=tags,
            classes=merge.classes,
            overviews=overviews,
        )
        try:
            for r in range(0, src.height, block_size):
                for c in range(0, src.width, block_size):
                    h, w = min(block_size, src.height - r), min(block_size, src.width - c)
                    arr = src.read(1, window=Window(c, r, w, h))
                    writer.write(Block(r, c, h, w), merge.lut[arr])
            return writer.finish()
        except BaseException:
            writer.abort()
            raise
