"""One scene through a set of members, block by block, into Cloud-Optimized GeoTiffs.

:func:`predict_scene` reads the scene's feature blocks, runs the
:class:`~geoensemble.predict.combine.BlockPredictor` on threads or a dask cluster, and hands
every block to a :class:`~geoensemble.predict.writer.MapWriter` per output; :func:`quicklooks`
draws PNGs from the thumbnails kept while writing. The predict stage
(:mod:`geoensemble.app.predict`) and the Python API (:func:`geoensemble.predict_many`) both
call it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import xarray as xr
from tqdm import tqdm

from geoensemble.errors import DiskFullError, OutputError
from geoensemble.io.atomic import disk_full, full_error
from geoensemble.io.memory import ensure_fits
from geoensemble.io.stack import grid_attrs
from geoensemble.predict.blocks import block_edge, blocks, feature_array, predicted_blocks
from geoensemble.predict.combine import REGRESSOR, BlockPredictor, ClassScheme
from geoensemble.predict.models import LoadedMember
from geoensemble.predict.timing import Phases
from geoensemble.predict.writer import GDAL_ENV, MapWriter

SUFFIX = {
    "vote": "vote",
    "agreement": "agreement",
    "probabilities": "probabilities",
    "max_probability": "max_probability",
    "mean": "mean",
}
DESCRIPTION = {
    "vote": "majority vote of the members",
    "agreement": "share of members voting for the winning class (percent)",
    "probabilities": "mean class probability of the members (percent)",
    "max_probability": "highest mean class probability (percent)",
    "mean": "mean prediction of the members",
}


@dataclass
class SceneSummary:
    """What predicting one scene produced."""

    scene: str
    maps: dict[str, Path]
    pixels: int
    valid_pixels: int
    seconds: float
    histogram: dict[int, int] = field(default_factory=dict)
    quicklooks: list[Path] = field(default_factory=list)
    #: Every n-th pixel of band 1 of the maps that get a quicklook, kept while writing.
    thumbnails: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def valid_fraction(self) -> float:
        return self.valid_pixels / self.pixels if self.pixels else 0.0

    @property
    def path(self) -> Path:
        """The main map: the vote, or the only member's map."""
        return self.maps.get("vote") or next(iter(self.maps.values()))


def map_paths(
    out_dir: Path, scene: str, members: list[LoadedMember], keys: list[str], set_label: str
) -> dict[str, Path]:
    """Output path of every output key of one scene."""
    out = {}
    for key in keys:
        if key.startswith("member:"):
            out[key] = out_dir / f"{scene}_{members[int(key[7:])].label}.tif"
        else:
            label = set_label if len(members) > 1 else members[0].label
            out[key] = out_dir / f"{scene}_{label}_{SUFFIX[key]}.tif"
    return out


def predict_scene(
    features: xr.Dataset,
    predictor: BlockPredictor,
    paths: dict[str, Path],
    *,
    block_size: int = 1024,
    threads: int = 1,
    client: Any = None,
    compress: str = "lzw",
    tags: dict[str, str] | None = None,
    late_tags: Callable[[], Mapping[str, str]] | None = None,
    progress: bool = False,
    scene: str = "scene",
    overviews: bool = True,
    thumbnails: bool = False,
    phases: Phases | None = None,
) -> SceneSummary:
    """Predict every valid pixel of one scene block by block and write its maps.

    Parameters
    ----------
    features
        The scene's feature layers (lazy or in memory) with its grid (``set_grid``).
    predictor
        The members and outputs (:class:`~geoensemble.predict.combine.BlockPredictor`).
    paths
        Target path of each output key.
    block_size
        Block edge in pixels; rounded to whole 512-px tiles from 512 up.
    threads
        Blocks predicted in parallel (ignored with ``client``).
    client
        A ``distributed.Client``: run the blocks as tasks on its cluster.
    late_tags
        Tags that may take a while to be known (the predict run's id, while its MLflow
        store opens in the background): asked for once the blocks are written, before the
        maps are finished; if it raises, no map is finished.
    overviews
        Give the COGs overviews.
    thumbnails
        Keep a decimated copy of the maps that get a quicklook (:func:`quicklooks`).
    phases
        Where the seconds spent reading, predicting, writing and converting go.
    """
    t0 = time.perf_counter()
    height, width = int(features.sizes["y"]), int(features.sizes["x"])
    crs, transform = grid_attrs(features)
    arr = feature_array(features, predictor.features)
    edge = block_edge(block_size)
    # Each block in flight holds its features (float32), their table and the outputs.
    per_block = min(edge, height) * min(edge, width) * (len(predictor.features) * 4 * 2 + 64)
    in_flight = 4 if client is not None else max(1, threads)
    ensure_fits(
        per_block * in_flight,
        what=f"predicting scene '{scene}' in blocks of predict.block_size={block_size} pixels "
        f"({len(predictor.features)} features, {in_flight} block(s) at once)",
        fix="lower predict.block_size (e.g. 1024) or predict.threads",
    )
    todo = blocks(height, width, edge)
    scheme = predictor.scheme
    hist = np.zeros(max(scheme.labels.size, 1), dtype=np.int64)
    valid = 0
    waited = 0.0
    writers: dict[str, MapWriter] = {}
    ph = phases if phases is not None else Phases()
    step = thumbnail_step(height, width) if thumbnails else 0
    with (
        rasterio.Env(**GDAL_ENV),
        predicted_blocks(
            predictor, arr, todo, threads=threads, client=client, phases=ph
        ) as results,
    ):
        try:
            for key, path in paths.items():
                writers[key] = _writer(
                    key, path, predictor, width, height, crs, transform, compress, tags
                )
                writers[key].overviews = overviews
                if step and has_quicklook(key):
                    writers[key].keep_thumbnail(step)
            bar = tqdm(
                results,
                total=len(todo),
                unit="block",
                desc=f"predict {scene}",
                disable=not progress,
            )
            for b, res in bar:
                with ph.time("write"):
                    for key, a in res.arrays.items():
                        writers[key].write(b, a)
                valid += res.n_valid
                if res.histogram is not None:
                    hist += res.histogram
            if late_tags is not None:
                t_wait = time.perf_counter()
                more = late_tags()
                waited = time.perf_counter() - t_wait  # not the scene's own time
                for w in writers.values():
                    w.add_tags(more)
            with ph.time("cog"):
                maps = {key: w.finish() for key, w in writers.items()}
        except BaseException as exc:
            for w in writers.values():
                w.abort()
            where = next(iter(paths.values())).parent if paths else None
            # the writers name a file; the user needs the key that places the maps
            if isinstance(exc, DiskFullError) or (
                isinstance(exc, Exception)
                and not isinstance(exc, OutputError)
                and disk_full(exc, where)
            ):
                raise full_error(
                    f"the maps of scene '{scene}' in {where}", "predict.output_dir"
                ) from None
            raise
    histogram = (
        {}
        if scheme.kind == REGRESSOR
        else {int(c): int(n) for c, n in zip(scheme.codes, hist, strict=False)}
    )
    return SceneSummary(
        scene=scene,
        maps=maps,
        pixels=height * width,
        valid_pixels=valid,
        seconds=time.perf_counter() - t0 - waited,
        histogram=histogram,
        thumbnails={k: w.thumbnail for k, w in writers.items() if w.thumbnail is not None},
    )


def has_quicklook(key: str) -> bool:
    """Whether the map of output ``key`` gets a PNG quicklook (class and mean maps)."""
    return key.startswith("member:") or key in ("vote", "mean")


def thumbnail_step(height: int, width: int) -> int:
    """The stride of the quicklook's pixels (see :func:`geoensemble.plots.thin_step`)."""
    from geoensemble.plots import thin_step

    return thin_step((height, width))


def _writer(
    key: str,
    path: Path,
    predictor: BlockPredictor,
    width: int,
    height: int,
    crs: Any,
    transform: Any,
    compress: str,
    tags: dict[str, str] | None,
) -> MapWriter:
    dtype, nodata, bands = predictor.layout(key)
    scheme = predictor.scheme
    out_tags = {**(tags or {}), "geoensemble_output": key.split(":")[0]}
    if key.startswith("member:"):
        m = predictor.members[int(key[7:])]
        out_tags.update(
            model_uri=m.uri,
            model_name=m.name or "",
            model_version=m.version or "",
            model_run_id=m.run_id or "",
            description=f"{scheme.kind} map of {m.uri}",
        )
    else:
        out_tags["description"] = DESCRIPTION[key]
    classes = None
    band_names = None
    scales = None
    if scheme.kind != REGRESSOR and (key == "vote" or key.startswith("member:")):
        classes = scheme.legend()
        out_tags["class_source"] = scheme.source or "none"
    if key in ("agreement", "max_probability"):
        scales = [0.01]
        band_names = [key]
    if key == "probabilities":
        scales = [0.01] * bands
        band_names = list(scheme.names)
    return MapWriter(
        path,
        width=width,
        height=height,
        count=bands,
        dtype=dtype,
        nodata=nodata,
        crs=crs,
        transform=transform,
        compress=compress,
        tags=out_tags,
        classes=classes,
        band_names=band_names,
        scales=scales,
    )


def quicklooks(
    summary: SceneSummary, scheme: ClassScheme, members: list[LoadedMember]
) -> list[Path]:
    """A PNG with legend beside each class map (or a colour-bar PNG for regression maps),
    drawn from the thumbnails kept while writing (else from the COG's overviews)."""
    from geoensemble import plots
    from geoensemble.io.geotiff import read_thumbnail

    out = []
    colours = scheme.colour_table()
    for key, path in summary.maps.items():
        if not has_quicklook(key):
            continue
        nodata: float | None = scheme.nodata
        if key in summary.thumbnails:
            arr = summary.thumbnails[key]
        else:
            arr, nodata = read_thumbnail(path)
        title = f"{path.stem}"
        png = path.with_suffix(".png")
        if scheme.kind == REGRESSOR:
            plots.layer_png(png, arr.astype(np.float32), title=title, cmap="viridis")
        else:
            plots.class_map_png(
                png,
                arr,
                nodata=int(nodata if nodata is not None else scheme.nodata),
                names=scheme.names,
                colours=[colours[int(c)] for c in scheme.codes],
                codes=[int(c) for c in scheme.codes],
                title=title,
            )
        out.append(png)
    return out
