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
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import xarray as xr
from tqdm import tqdm

from geoensemble.errors import DiskFullError, GeoEnsembleError, OutputError
from geoensemble.io.atomic import disk_full, full_error
from geoensemble.io.memory import ensure_fits
from geoensemble.io.profiles import BLOCK_SIZE
from geoensemble.io.stack import grid_attrs
from geoensemble.predict.blocks import (
    blocks,
    feature_array,
    predicted_blocks,
    scene_block_edge,
    threads_for,
    trim_heap,
)
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
    #: The regularised copy of the main map: what was applied, speckle before and after.
    regularisation: dict[str, Any] = field(default_factory=dict)

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
    block_size: int = BLOCK_SIZE,
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
        Block edge in pixels; rounded to whole 512-px tiles from 512 up, and up to the
        features' chunks when these are larger (:func:`scene_block_edge`).
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
    edge = scene_block_edge(arr, block_size)
    threads = threads_for(edge, len(predictor.features), threads)
    todo = _blocks_that_fit(predictor, height, width, edge, client, threads, scene)
    step = thumbnail_step(height, width) if thumbnails else 0
    layout = _Layout(width, height, crs, transform, compress, tags, overviews, step)
    ph = phases if phases is not None else Phases()
    with _predicted(predictor, arr, todo, threads, client, ph) as results:
        written = _write_maps(
            results, len(todo), predictor, paths, layout, late_tags, scene, progress, ph
        )
    return written.summary(scene, height * width, t0)


@dataclass(frozen=True)
class _Layout:
    """How every map of one scene is written: its grid and the file's options."""

    width: int
    height: int
    crs: Any
    transform: Any
    compress: str
    tags: dict[str, str] | None
    overviews: bool
    thumbnail_step: int  # 0: no thumbnail


@dataclass
class _Written:
    """What writing one scene's maps produced."""

    maps: dict[str, Path]
    valid: int
    histogram: dict[int, int]
    waited: float  # seconds waiting for the late tags: not the scene's own time
    thumbnails: dict[str, np.ndarray]

    def summary(self, scene: str, pixels: int, t0: float) -> SceneSummary:
        """The summary of ``scene``, begun at ``t0`` (``time.perf_counter``)."""
        return SceneSummary(
            scene=scene,
            maps=self.maps,
            pixels=pixels,
            valid_pixels=self.valid,
            seconds=time.perf_counter() - t0 - self.waited,
            histogram=self.histogram,
            thumbnails=self.thumbnails,
        )


def _blocks_that_fit(
    predictor: BlockPredictor,
    height: int,
    width: int,
    edge: int,
    client: Any,
    threads: int,
    scene: str,
) -> list[Any]:
    """The scene's blocks, once the blocks in flight at once are known to fit in memory."""
    # Each block in flight holds its features (float32), their table and the outputs.
    per_block = min(edge, height) * min(edge, width) * (len(predictor.features) * 4 * 2 + 64)
    in_flight = 4 if client is not None else max(1, threads)
    try:
        ensure_fits(
            per_block * in_flight,
            what=f"predicting scene '{scene}' in blocks of {edge} x {edge} pixels "
            f"({len(predictor.features)} features, {in_flight} block(s) at once)",
            fix="lower block_size (e.g. 1024) or threads",
        )
    except GeoEnsembleError as exc:  # the fix names predict_scene's arguments
        exc.arguments.setdefault("block_size", "predict_scene.block_size")
        exc.arguments.setdefault("threads", "predict_scene.threads")
        raise
    return blocks(height, width, edge)


@contextmanager
def _predicted(
    predictor: BlockPredictor,
    arr: Any,
    todo: list[Any],
    threads: int,
    client: Any,
    phases: Phases,
) -> Iterator[Iterable[tuple[Any, Any]]]:
    """The predicted blocks as they complete, under GDAL's settings for writing the maps."""
    with (
        rasterio.Env(**GDAL_ENV),
        predicted_blocks(
            predictor, arr, todo, threads=threads, client=client, phases=phases
        ) as results,
    ):
        yield results


def _write_maps(
    results: Iterable[tuple[Any, Any]],
    total: int,
    predictor: BlockPredictor,
    paths: dict[str, Path],
    layout: _Layout,
    late_tags: Callable[[], Mapping[str, str]] | None,
    scene: str,
    progress: bool,
    phases: Phases,
) -> _Written:
    """Write the ``total`` predicted blocks into a map per output key and finish the maps; on
    any error, every map is aborted."""
    writers: dict[str, MapWriter] = {}
    hist = np.zeros(max(predictor.scheme.labels.size, 1), dtype=np.int64)
    try:
        # filled as they open: the ones opened before an error are aborted
        for key, path in paths.items():
            writers[key] = _writer(key, path, predictor, layout)
        bar = tqdm(
            results, total=total, unit="block", desc=f"predict {scene}", disable=not progress
        )
        valid = _write_blocks(bar, writers, hist, phases)
        waited = _add_late_tags(writers, late_tags)
        with phases.time("cog"):
            maps = {key: w.finish() for key, w in writers.items()}
    except BaseException as exc:
        for w in writers.values():
            w.abort()
        _raise_if_disk_full(exc, paths, scene)
        raise
    thumbnails = {k: w.thumbnail for k, w in writers.items() if w.thumbnail is not None}
    return _Written(maps, valid, _histogram(predictor.scheme, hist), waited, thumbnails)


def _write_blocks(
    results: Iterable[tuple[Any, Any]],
    writers: dict[str, MapWriter],
    hist: np.ndarray,
    phases: Phases,
) -> int:
    """Write each block's outputs, add its class counts to ``hist``; the valid pixels."""
    valid = 0
    for b, res in results:
        with phases.time("write"):
            for key, a in res.arrays.items():
                writers[key].write(b, a)
        valid += res.n_valid
        if res.histogram is not None:
            hist += res.histogram
        del res
        trim_heap()  # freed blocks back to the system: the peak stays that of a few blocks
    return valid


def _add_late_tags(
    writers: dict[str, MapWriter], late_tags: Callable[[], Mapping[str, str]] | None
) -> float:
    """Tag every map with ``late_tags()``; the seconds spent waiting for them."""
    if late_tags is None:
        return 0.0
    t_wait = time.perf_counter()
    more = late_tags()
    waited = time.perf_counter() - t_wait
    for w in writers.values():
        w.add_tags(more)
    return waited


def _raise_if_disk_full(exc: BaseException, paths: dict[str, Path], scene: str) -> None:
    """Raise the one-line disk-full error naming the maps' folder (``out_dir`` of
    :func:`map_paths`) if ``exc`` is one."""
    where = next(iter(paths.values())).parent if paths else None
    # the writers name a file; the user needs the argument that places the maps
    if isinstance(exc, DiskFullError) or (
        isinstance(exc, Exception) and not isinstance(exc, OutputError) and disk_full(exc, where)
    ):
        err = full_error(f"the maps of scene '{scene}' in {where}", "out_dir")
        err.arguments.setdefault("out_dir", "map_paths.out_dir")
        raise err from None


def _histogram(scheme: ClassScheme, hist: np.ndarray) -> dict[int, int]:
    """Pixels per class code (none for a regressor's maps)."""
    if scheme.kind == REGRESSOR:
        return {}
    return {int(c): int(n) for c, n in zip(scheme.codes, hist, strict=False)}


def has_quicklook(key: str) -> bool:
    """Whether the map of output ``key`` gets a PNG quicklook (class, mean and agreement
    maps)."""
    return key.startswith("member:") or key in ("vote", "mean", "agreement")


def thumbnail_step(height: int, width: int) -> int:
    """The stride of the quicklook's pixels (see :func:`geoensemble.plots.thin_step`)."""
    from geoensemble.plots import thin_step

    return thin_step((height, width))


def _writer(key: str, path: Path, predictor: BlockPredictor, layout: _Layout) -> MapWriter:
    """The writer of output ``key``'s map (keeping a thumbnail if it gets a quicklook)."""
    dtype, nodata, bands = predictor.layout(key)
    scheme = predictor.scheme
    out_tags = {**(layout.tags or {}), "geoensemble_output": key.split(":")[0]}
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
        classes = scheme.legend(key)
        out_tags["class_source"] = scheme.source or "none"
    ramp = None
    if key in ("agreement", "max_probability"):
        scales = [0.01]
        band_names = [key]
        ramp = (0.0, 1.0)  # QGIS applies the scale: 0-100 stored, 0-1 shown
    if key == "probabilities":
        scales = [0.01] * bands
        band_names = list(scheme.names)
    writer = MapWriter(
        path,
        width=layout.width,
        height=layout.height,
        count=bands,
        dtype=dtype,
        nodata=nodata,
        crs=layout.crs,
        transform=layout.transform,
        compress=layout.compress,
        tags=out_tags,
        classes=classes,
        band_names=band_names,
        scales=scales,
        ramp=ramp,
    )
    writer.overviews = layout.overviews
    if layout.thumbnail_step and has_quicklook(key):
        writer.keep_thumbnail(layout.thumbnail_step)
    return writer


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
        if key == "agreement":  # uint8 percent, no-data 255: a fixed 0-100 % scale
            pct = np.where(arr == 255, np.nan, arr.astype(np.float32))
            plots.ramp_png(png, pct, title=f"{title} (%)", ramp="magma", limits=(0, 100))
        elif scheme.kind == REGRESSOR:
            plots.ramp_png(png, arr.astype(np.float32), title=title, ramp="viridis")
        else:
            plots.class_map_png(
                png,
                arr,
                nodata=int(nodata if nodata is not None else scheme.nodata),
                names=scheme.names_of(key),
                colours=[colours[int(c)] for c in scheme.codes],
                codes=[int(c) for c in scheme.codes],
                title=title,
            )
        out.append(png)
    return out
