"""predict_many: every member on every scene, blockwise, into COGs with provenance.

One MLflow predict run records the models it used (linked as its model inputs), the scenes,
per scene the pixel count, valid fraction, seconds and class histogram, and the legend: what
each code means, where the names come from (tag ``class_names``, artifact
``maps/legend.json``; see :mod:`geoensemble.predict.legend`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import xarray as xr
from tqdm import tqdm

from geoensemble.config import AppConfig, PredictScheduler
from geoensemble.errors import DiskFullError, OutputError
from geoensemble.io.atomic import disk_full, full_error, remove_stale_partials
from geoensemble.io.memory import ensure_fits
from geoensemble.io.stack import grid_attrs
from geoensemble.predict.blocks import (
    Block,
    block_edge,
    blocks,
    feature_array,
    read_block,
    run_distributed,
    run_threads,
)
from geoensemble.predict.combine import (
    REGRESSOR,
    BlockPredictor,
    ClassScheme,
    output_keys,
)
from geoensemble.predict.legend import Legend, scheme_for
from geoensemble.predict.models import (
    Member,
    check_features,
    env_threads,
    nan_policy,
    resolve_members,
)
from geoensemble.predict.timing import Phases, process_age
from geoensemble.predict.writer import GDAL_ENV, MapWriter

log = logging.getLogger("geoensemble")

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
    out_dir: Path, scene: str, members: list[Member], keys: list[str], set_label: str
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
    writers: dict[str, MapWriter] = {}
    ph = phases if phases is not None else Phases()
    step = thumbnail_step(height, width) if thumbnails else 0
    with rasterio.Env(**GDAL_ENV):
        try:
            for key, path in paths.items():
                writers[key] = _writer(
                    key, path, predictor, width, height, crs, transform, compress, tags
                )
                writers[key].overviews = overviews
                if step and has_quicklook(key):
                    writers[key].keep_thumbnail(step)
            results: Iterator[tuple[Any, Any]]
            if client is not None:
                results = run_distributed(client, predictor, arr, todo, in_flight=4)
            else:

                def fn(b: Block) -> Any:
                    t0 = time.perf_counter()
                    a = read_block(arr, b)
                    t1 = time.perf_counter()
                    out = predictor(a)
                    ph.add("read", t1 - t0)
                    ph.add("predict", time.perf_counter() - t1)
                    return out

                results = run_threads(fn, todo, threads=threads)
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
        seconds=time.perf_counter() - t0,
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


def scene_sources(cfg: AppConfig) -> list[tuple[str, str, Callable[[], xr.Dataset]]]:
    """``(name, input path, open)`` of each scene: the training features by default, else
    every ``predict.scenes`` entry, ingested and featurized in memory (lazily)."""
    from geoensemble.io.stack import open_store

    if not cfg.predict.scenes:
        return [(cfg.data.name, cfg.paths.features, lambda: open_store(cfg.paths.features))]

    def opener(i: int, d: Any) -> Callable[[], xr.Dataset]:
        def _open() -> xr.Dataset:
            from geoensemble.errors import GeoEnsembleError, LayerNotFoundError
            from geoensemble.features.build import build_features
            from geoensemble.io.stack import build_stack

            key = f"predict.scenes[{i}]"
            try:
                stack = build_stack(d)
            except GeoEnsembleError as exc:
                # The readers name the training data's keys (data.path...); here the
                # culprit is this scene's entry.
                raise type(exc)(scene_keys(str(exc), key)) from None
            try:
                return build_features(stack, cfg.features, trusted_modules=cfg.trust.modules)
            except LayerNotFoundError as exc:
                # The features config was trained with; the scene is what lacks the layer.
                what = str(exc).split(": fix ", 1)[0]
                raise LayerNotFoundError(
                    f"{key} (scene '{d.name}', {d.path}): {what}. Give this scene the layers "
                    f"the model was trained on (same names, see {key}.layers and "
                    f"{key}.pattern)"
                ) from None

        return _open

    names = [d.name for d in cfg.predict.scenes]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        from geoensemble.errors import ConfigError

        raise ConfigError(
            f"predict.scenes has several scenes named {dupes}: give each a distinct name "
            f"(it prefixes the map file names)"
        )
    return [(d.name, d.path, opener(i, d)) for i, d in enumerate(cfg.predict.scenes)]


def scene_keys(message: str, prefix: str) -> str:
    """``message`` with the config keys ``data.<field>`` renamed ``<prefix>.<field>``
    (file paths that merely contain ``data.`` are left alone)."""
    import dataclasses
    import re

    from geoensemble.config import DataConfig

    fields = "|".join(f.name for f in dataclasses.fields(DataConfig))
    return re.sub(rf"(?<![\w/.-])data\.(?=(?:{fields})\b)", f"{prefix}.", message)


def scene_feature_names(cfg: AppConfig, ds: xr.Dataset, path: str) -> list[str]:
    from geoensemble.io.stack import store_meta

    if not cfg.predict.scenes:
        return list(store_meta(path).get("feature_names") or ds.data_vars)
    return [str(n) for n in ds.data_vars]


def scene_union(
    cfg: AppConfig, members: list[Member], ds: xr.Dataset, name: str, path: str, index: int
) -> list[str]:
    """The features every member needs from scene ``index``, in reading order (an error
    naming the scene, and its ``predict.scenes`` entry, when it lacks some)."""
    scene_names = scene_feature_names(cfg, ds, path)
    where = f"scene '{name}' ({path})"
    if cfg.predict.scenes:
        where = f"predict.scenes[{index}] {where}"
    union: list[str] = []
    for m in members:
        for n in check_features(m.feature_names, scene_names, where=where):
            if n not in union:
                union.append(n)
    return union


#: MLflow's limit on a tag value (characters); longer class lists go to the artifact only.
TAG_LIMIT = 5000


def legend_tags(legend: Legend) -> dict[str, str]:
    """Tags of the predict run saying what the map codes mean and where that comes from."""
    s = legend.scheme
    if s.kind == REGRESSOR:
        return {}
    names = json.dumps({str(int(c)): n for c, n in zip(s.codes, s.names, strict=True)})
    if len(names) > TAG_LIMIT:
        names = json.dumps({"see": "artifact maps/legend.json"})
    return {"class_names": names, "class_source": legend.source}


def check_outputs(paths: list[Path], overwrite: bool) -> None:
    """Refuse to replace existing maps outside DVC-managed outputs unless asked, and any
    file at a map's name that geoensemble did not write (even when asked)."""
    from geoensemble.io.owned import tif_refusal
    from geoensemble.predict.provenance import dvc_managed

    existing = [p for p in paths if p.exists() and not dvc_managed(p)]
    if existing and not overwrite:
        raise OutputError(
            f"map(s) {', '.join(str(p) for p in existing[:3])}"
            f"{' ...' if len(existing) > 3 else ''} already exist outside DVC-managed "
            f"outputs: delete them, choose another predict.output_dir, or set "
            f"predict.overwrite=true"
        )
    for p in paths:
        why = tif_refusal(p) if p.exists() or p.is_symlink() else None
        if why:
            raise OutputError(
                f"refusing to replace {p}: {why}; move it away or choose another predict.output_dir"
            )


def partial_names(all_paths: dict[str, dict[str, Path]]) -> list[str]:
    """File names of every output of this run (maps, sidecars, quicklooks), whose
    ``.name.partial-xxxx`` leftovers an interrupted earlier run may have left."""
    out = []
    for paths in all_paths.values():
        for q in paths.values():
            out += [q.name, f"{q.name}.aux.xml", q.with_suffix(".qml").name]
            out.append(q.with_suffix(".png").name)
    return out


@contextlib.contextmanager
def _client(cfg: AppConfig) -> Iterator[Any]:
    if cfg.predict.scheduler != PredictScheduler.distributed:
        yield None
        return
    from geoensemble.compute import dask_client, wait_for_workers

    with dask_client(cfg.compute) as client:
        wait_for_workers(client, cfg.compute.timeout)  # the model is broadcast to all of them
        yield client


def predict_many(cfg: AppConfig) -> dict[str, Any]:
    """Every member on every scene: maps, quicklooks and one MLflow predict run.

    Returns
    -------
    dict
        ``run_id``, and per scene the map paths, pixel counts, seconds and class histogram;
        ``path``/``valid_pixels``/``histogram`` repeat the first scene's main map.
    """
    from geoensemble import tracking
    from geoensemble.app_tracking import tracker_for
    from geoensemble.predict.provenance import config_hash, dvc_hashes

    phases = Phases()
    phases.add("startup", process_age())
    p = cfg.predict
    with phases.time("tracking"):
        tracker = tracker_for(cfg.tracking)
        exp_id = tracker.open()
    with phases.time("models"):
        members = resolve_members(cfg, tracker)
    keys = output_keys(members, p.outputs)
    set_label = f"{cfg.tracking.model_name}_ensemble"
    sources = scene_sources(cfg)
    out_dir = Path(p.output_dir)
    all_paths = {name: map_paths(out_dir, name, members, keys, set_label) for name, *_ in sources}
    check_outputs([q for d in all_paths.values() for q in d.values()], p.overwrite)
    stale = remove_stale_partials(out_dir, partial_names(all_paths))
    if stale:
        log.info("predict: removed %d leftover(s) of an interrupted run in %s", len(stale), out_dir)

    # The legend (aligned cluster codes, names, colours) holds for every scene; clusters are
    # aligned on the first one.
    name0, path0, open0 = sources[0]
    with phases.time("open"):
        first = open0()
        legend = scheme_for(cfg, members, first, scene_union(cfg, members, first, name0, path0, 0))
    scheme = legend.scheme

    base_tags = {
        **tracking.run_tags(),
        "config_sha256": config_hash(cfg),
        "model_uris": ",".join(m.uri for m in members),
        "model_names": ",".join(m.name or "" for m in members),
        "model_versions": ",".join(m.version or "" for m in members),
        "member_run_ids": ",".join(m.run_id or "" for m in members),
        "n_members": str(len(members)),
        "model_kind": scheme.kind,
    }
    champion = members[0]
    run_tags = {
        **base_tags,
        "model_uri": champion.uri,
        "model_name": champion.name or "",
        "model_version": champion.version or "",
        "model_run_id": champion.run_id or "",
        **legend_tags(legend),
    }
    who = champion.label if len(members) == 1 else set_label
    run_name = f"predict-{'+'.join(n for n, *_ in sources)}-{who}"
    t_run = time.perf_counter()
    run_id = tracker.start_predict_run(
        exp_id,
        run_name=run_name[:250],
        params={
            "models": run_tags["model_uris"],
            "scenes": ",".join(n for n, *_ in sources),
            "outputs": ",".join(keys),
            "block_size": block_edge(p.block_size),
            "scheduler": p.scheduler.value,
        },
        tags=run_tags,
    )
    summaries: list[SceneSummary] = []
    try:
        with contextlib.suppress(Exception):  # older stores cannot link models to runs
            tracker.link_models(run_id, [m.model_id for m in members if m.model_id])
        if scheme.kind != REGRESSOR:
            tracker.log_dict(run_id, legend.as_dict(), "maps/legend.json")
        phases.add("tracking", time.perf_counter() - t_run)
        threads = p.threads or env_threads()
        with _client(cfg) as client:
            for i, (name, in_path, open_scene) in enumerate(sources):
                with phases.time("open"):
                    ds = first if i == 0 else open_scene()
                union = scene_union(cfg, members, ds, name, in_path, i)
                scene_members, policy_tags = nan_policy(members, ds, cfg, scene=name)
                predictor = BlockPredictor(
                    scene_members, union, scheme, keys, nan_threshold=cfg.features.nan_threshold
                )
                tags = {
                    **base_tags,
                    **policy_tags,
                    "scene": name,
                    "scene_path": str(in_path),
                    "predict_run_id": run_id,
                    "dvc_inputs": json.dumps(dvc_hashes([str(in_path)])),
                    "n_classes": str(scheme.labels.size),
                }
                summary = predict_scene(
                    ds,
                    predictor,
                    all_paths[name],
                    block_size=p.block_size,
                    threads=threads,
                    client=client,
                    compress=p.compress,
                    tags=tags,
                    progress=p.progress,
                    scene=name,
                    overviews=p.overviews,
                    thumbnails=p.quicklook,
                    phases=phases,
                )
                phases.add("blocks", summary.seconds)
                if p.quicklook:
                    with phases.time("quicklook"):
                        summary.quicklooks = quicklooks(summary, scheme, members)
                summaries.append(summary)
                log.info(
                    "predict: %s: %d of %d px valid (%.1f %%), %.2f s, %d map(s) in %s",
                    name,
                    summary.valid_pixels,
                    summary.pixels,
                    100 * summary.valid_fraction,
                    summary.seconds,
                    len(summary.maps),
                    out_dir,
                )
        t_run = time.perf_counter()
        metrics: dict[str, float] = {}
        for s in summaries:
            pre = f"{s.scene}/" if len(summaries) > 1 else ""
            metrics.update(
                {
                    f"{pre}pixels": s.pixels,
                    f"{pre}valid_pixels": s.valid_pixels,
                    f"{pre}valid_fraction": s.valid_fraction,
                    f"{pre}seconds": s.seconds,
                    **{f"{pre}class_{k}_pixels": v for k, v in s.histogram.items()},
                }
            )
            for q in s.quicklooks:
                tracker.log_artifact(run_id, q, "maps")
        # What the run spent so far, by phase (closing the run itself is in the log line).
        phases.add("tracking", time.perf_counter() - t_run)
        tracker.log_metrics(run_id, {**metrics, **phases.metrics()})
    except BaseException as exc:
        tracker.end_run(run_id, failed=exc)
        raise
    with phases.time("tracking"):
        tracker.end_run(run_id)
    log.info("predict: %s", phases.line())
    main = summaries[0]
    return {
        "run_id": run_id,
        "path": str(main.path),
        "valid_pixels": main.valid_pixels,
        "histogram": main.histogram,
        "scenes": {
            s.scene: {
                "maps": {k: str(v) for k, v in s.maps.items()},
                "pixels": s.pixels,
                "valid_pixels": s.valid_pixels,
                "valid_fraction": s.valid_fraction,
                "seconds": s.seconds,
                "histogram": s.histogram,
            }
            for s in summaries
        },
    }


def quicklooks(summary: SceneSummary, scheme: ClassScheme, members: list[Member]) -> list[Path]:
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
