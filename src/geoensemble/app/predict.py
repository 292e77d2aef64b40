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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xarray as xr

from geoensemble.app.config import AppConfig, PredictScheduler
from geoensemble.app.keys import KEYS, keyed
from geoensemble.app.legend import scheme_for
from geoensemble.app.members import nan_policy, resolve_members
from geoensemble.app.sweep import job_tags
from geoensemble.clock import process_age
from geoensemble.errors import OutputError
from geoensemble.io.atomic import remove_stale_partials
from geoensemble.predict.blocks import (
    block_edge,
    trim_heap,
)
from geoensemble.predict.classmap import Merge, merge_by_class
from geoensemble.predict.combine import (
    REGRESSOR,
    BlockPredictor,
    ClassScheme,
    output_keys,
)
from geoensemble.predict.legend import Legend
from geoensemble.predict.models import (
    CLUSTER,
    LoadedMember,
    check_features,
    env_threads,
    task_modules,
)
from geoensemble.predict.scene import SceneSummary, map_paths, predict_scene, quicklooks
from geoensemble.predict.timing import Phases

if TYPE_CHECKING:
    from geoensemble.tracking import Tracker
    from geoensemble.tracking.runbook import RunBook

log = logging.getLogger("geoensemble")


def scene_sources(cfg: AppConfig) -> list[tuple[str, str, Callable[[], xr.Dataset]]]:
    """``(name, input path, open)`` of each scene: the training features by default, else
    every ``predict.scenes`` entry, ingested and featurized in memory (lazily)."""
    from geoensemble.io.stack import open_store

    if not cfg.predict.scenes:
        return [(cfg.data.name, cfg.paths.features, lambda: open_store(cfg.paths.features))]

    def opener(i: int, d: Any) -> Callable[[], xr.Dataset]:
        def _open() -> xr.Dataset:
            from geoensemble.app.settings import read_spec_of, recipe_of
            from geoensemble.errors import GeoEnsembleError, LayerNotFoundError
            from geoensemble.features.build import build_features
            from geoensemble.io.stack import build_stack

            key = f"predict.scenes[{i}]"
            # chunks of the block edge: a block reads whole chunks, each once
            spec = replace(read_spec_of(d), chunk_size=block_edge(cfg.predict.block_size))
            try:
                stack = build_stack(spec, max_pixels=cfg.limits.max_pixels)
            except GeoEnsembleError as exc:
                # The readers name their arguments (path...), which the stage would render
                # as the training data's keys (data.path...); here the culprit is this
                # scene's entry.
                raise keyed(exc, scene_keys(key)) from None
            try:
                return build_features(
                    stack, recipe_of(cfg.features), trusted_modules=cfg.trust.modules
                )
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


def scene_keys(prefix: str) -> dict[str, str]:
    """:data:`~geoensemble.app.keys.KEYS` for a scene read with the settings of ``prefix``
    (``predict.scenes[0]``): the readers' parameters that ``data.<field>`` feeds are fed by
    ``<prefix>.<field>``."""
    return {
        p: f"{prefix}.{k.removeprefix('data.')}" if k.startswith("data.") else k
        for p, k in KEYS.items()
    }


def scene_feature_names(cfg: AppConfig, ds: xr.Dataset, path: str) -> list[str]:
    from geoensemble.io.stack import store_meta

    if not cfg.predict.scenes:
        return list(store_meta(path).get("feature_names") or ds.data_vars)
    return [str(n) for n in ds.data_vars]


def scene_union(
    cfg: AppConfig, members: list[LoadedMember], ds: xr.Dataset, name: str, path: str, index: int
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
    from geoensemble.app.provenance import dvc_managed
    from geoensemble.io.owned import tif_refusal

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
def _client(cfg: AppConfig, members: list[LoadedMember]) -> Iterator[Any]:
    if cfg.predict.scheduler != PredictScheduler.distributed:
        yield None
        return
    from geoensemble.app.settings import cluster_of
    from geoensemble.compute import dask_client, wait_for_workers

    # A LocalCluster's workers fork from a server that has imported what the blocks need.
    preload = task_modules(m.model for m in members)
    with dask_client(cluster_of(cfg.compute), preload=preload) as client:
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
    from geoensemble.app.tracker import tracker_for
    from geoensemble.tracking.runbook import RunBook

    phases = Phases()
    phases.add("startup", process_age())
    tracker = tracker_for(cfg.tracking)
    # The predict run's bookkeeping (starting the run, its tags, legend, metrics and end)
    # runs in order on a thread while the stage loads its models and writes its maps; the
    # stage waits for it at the end (and for the run's id before it finishes a map), and
    # fails with its error. A store that cannot be used fails now, before any model or map.
    with phases.time("tracking"):
        tracker.open()
        book = RunBook(tracker, tracking.Background())
    try:
        summaries = _predict_all(cfg, tracker, book, phases)
    except BaseException as exc:
        book.fail(exc)
        raise
    run_id = book.run_id()
    book.close()
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
                **({"regularisation": s.regularisation} if s.regularisation else {}),
            }
            for s in summaries
        },
    }


@dataclass(frozen=True)
class Plan:
    """What every scene of one prediction shares: its members, output keys and the name of
    their set, the scenes (name, input path, opener) and each scene's map paths."""

    members: list[LoadedMember]
    keys: list[str]
    set_label: str
    sources: list[tuple[str, str, Callable[[], xr.Dataset]]]
    paths: dict[str, dict[str, Path]]
    out_dir: Path
    extra: dict[str, dict[str, Path]]  # per scene: its main map's class map, regularised copy


def _predict_all(
    cfg: AppConfig, tracker: Tracker, book: RunBook, phases: Phases
) -> list[SceneSummary]:
    """Every scene of :func:`predict_many`, the predict run recorded by ``book``."""
    plan = plan_outputs(cfg, tracker, phases)
    # The legend (aligned cluster codes, names, colours) holds for every scene; clusters are
    # aligned on the first one.
    name0, path0, open0 = plan.sources[0]
    with phases.time("open"):
        first = open0()
        union = scene_union(cfg, plan.members, first, name0, path0, 0)
        legend = scheme_for(cfg, plan.members, first, union)
    trim_heap()  # the sampling's freed strips: not part of every later step's peak
    base_tags = map_tags(cfg, plan.members, legend.scheme.kind)
    start_predict_run(cfg, book, plan, legend, base_tags)
    summaries = predict_scenes(cfg, plan, first, legend, base_tags, book, phases)
    metrics = run_metrics(summaries, phases)
    with phases.time("tracking"):
        book.finish(artifacts=[str(q) for s in summaries for q in s.quicklooks], metrics=metrics)
    return summaries


def plan_outputs(cfg: AppConfig, tracker: Tracker, phases: Phases) -> Plan:
    """The members and scenes of this prediction, with the maps' paths checked before any
    work, and the leftovers of an interrupted earlier run removed."""
    p = cfg.predict
    with phases.time("models"):
        members = resolve_members(cfg, tracker)
    keys = output_keys(members, p.outputs)
    set_label = f"{cfg.tracking.model_name}_ensemble"
    sources = scene_sources(cfg)
    out_dir = Path(p.output_dir)
    all_paths = {name: map_paths(out_dir, name, members, keys, set_label) for name, *_ in sources}
    extra = extra_paths(cfg, all_paths, keys, members[0].kind)
    written = [q for d in [*all_paths.values(), *extra.values()] for q in d.values()]
    check_outputs(written, p.overwrite)
    stale = remove_stale_partials(out_dir, partial_names({**all_paths, **_prefixed(extra)}))
    if stale:
        log.info("predict: removed %d leftover(s) of an interrupted run in %s", len(stale), out_dir)
    return Plan(members, keys, set_label, sources, all_paths, out_dir, extra)


def _prefixed(extra: dict[str, dict[str, Path]]) -> dict[str, dict[str, Path]]:
    return {f"extra:{k}": v for k, v in extra.items()}


def extra_paths(
    cfg: AppConfig, paths: dict[str, dict[str, Path]], keys: list[str], kind: str
) -> dict[str, dict[str, Path]]:
    """Per scene, the maps made from its main map (the vote, else the only class map):
    ``<main>_classes.tif`` (clusters merged by class, ``predict.class_map``, clusterers) and
    ``<main>_regularised.tif`` (``predict.regularise``)."""
    main = "vote" if "vote" in keys else next((k for k in keys if k.startswith("member:")), None)
    if main is None or kind == REGRESSOR:
        return {}
    wanted = [
        suffix
        for suffix, on in (
            ("classes", cfg.predict.class_map and kind == CLUSTER),
            ("regularised", cfg.predict.regularise.enabled),
        )
        if on
    ]
    return {
        name: {s: p[main].with_name(f"{p[main].stem}_{s}.tif") for s in wanted}
        for name, p in paths.items()
        if main in p and wanted
    }


def write_classes(cfg: AppConfig, summary: SceneSummary, out: Path, merge: Merge) -> None:
    """The class map of the scene's main cluster map: clusters named after one class merged."""
    from geoensemble.predict.classmap import write_class_map

    p = cfg.predict
    summary.maps["classes"] = write_class_map(
        summary.path,
        out,
        merge,
        block_size=p.block_size,
        compress=p.compress,
        overviews=p.overviews,
    )
    log.info(
        "predict: %s: class map %s: %s",
        summary.scene,
        out.name,
        "; ".join(f"{n} <- clusters {c}" for n, c in merge.members.items()),
    )


def regularise_main_map(cfg: AppConfig, summary: SceneSummary, out: Path) -> None:
    """Write the regularised copy of the scene's main map; log and keep its speckle figures
    before and after."""
    from geoensemble.predict.regularise_file import regularise_file

    r, p = cfg.predict.regularise, cfg.predict
    done = regularise_file(
        summary.path,
        out,
        radius=r.majority_radius,
        min_pixels=r.min_pixels,
        min_hectares=r.min_hectares,
        connectivity=r.connectivity,
        block_size=max(p.block_size, 256),
        compress=p.compress,
        overviews=p.overviews,
    )
    summary.maps["regularised"] = done.path
    summary.regularisation = done.as_dict()
    log.info(
        "predict: %s: regularised (%s) into %s: %.2f %% of pixels off their 3x3 majority "
        "before, %.2f %% after; patches under %d px: %d before, %d after",
        summary.scene,
        done.applied,
        done.path.name,
        100 * done.before.share,
        100 * done.after.share,
        done.min_pixels or 5,
        done.before.small_patches,
        done.after.small_patches,
    )


def map_tags(cfg: AppConfig, members: list[LoadedMember], kind: str) -> dict[str, str]:
    """The tags every map and the predict run carry: the job, the config's hash and the
    models used."""
    from geoensemble import tracking
    from geoensemble.app.provenance import config_hash

    return {
        **tracking.run_tags(job_tags()),
        "config_sha256": config_hash(cfg),
        "model_uris": ",".join(m.uri for m in members),
        "model_names": ",".join(m.name or "" for m in members),
        "model_versions": ",".join(m.version or "" for m in members),
        "member_run_ids": ",".join(m.run_id or "" for m in members),
        "n_members": str(len(members)),
        "model_kind": kind,
    }


def start_predict_run(
    cfg: AppConfig, book: RunBook, plan: Plan, legend: Legend, base_tags: dict[str, str]
) -> None:
    """Start the predict run (in the background): its name, params, the champion's tags and
    the legend, linked to the models it uses."""
    p, members = cfg.predict, plan.members
    champion = members[0]
    run_tags = {
        **base_tags,
        "model_uri": champion.uri,
        "model_name": champion.name or "",
        "model_version": champion.version or "",
        "model_run_id": champion.run_id or "",
        **legend_tags(legend),
    }
    who = champion.label if len(members) == 1 else plan.set_label
    scenes = [n for n, *_ in plan.sources]
    book.start(
        run_name=f"predict-{'+'.join(scenes)}-{who}",
        params={
            "models": run_tags["model_uris"],
            "scenes": ",".join(scenes),
            "outputs": ",".join(plan.keys),
            "block_size": block_edge(p.block_size),
            "scheduler": p.scheduler.value,
        },
        tags=run_tags,
        model_ids=[m.model_id for m in members if m.model_id],
        legend=legend.as_dict() if legend.scheme.kind != REGRESSOR else None,
    )


def predict_scenes(
    cfg: AppConfig,
    plan: Plan,
    first: xr.Dataset,
    legend: Legend,
    base_tags: dict[str, str],
    book: RunBook,
    phases: Phases,
) -> list[SceneSummary]:
    """Every scene's maps (and quicklooks), in order, on this process's threads or on the
    dask cluster; ``first`` is the first scene, already open."""

    def run_id_tag() -> dict[str, str]:
        """The run's id for the maps' tags: waits for the run to be started."""
        with phases.time("tracking"):
            return {"predict_run_id": book.run_id()}

    summaries: list[SceneSummary] = []
    threads = cfg.predict.threads or env_threads()
    with _client(cfg, plan.members) as client:
        if client is None and threads >= env_threads():
            # No core is left while the blocks are predicted here: MLflow's calls on a
            # thread of the stage (pure Python, holding the GIL) would slow the block
            # threads by more than they take (measured: 21 Mpx, 2 cores), so they are
            # waited for before the blocks.
            with phases.time("tracking"):
                book.run_id()
        for i, (name, _, open_scene) in enumerate(plan.sources):
            with phases.time("open"):
                ds = first if i == 0 else open_scene()
            summary = predict_one(
                cfg,
                plan,
                i,
                ds,
                legend.scheme,
                base_tags,
                client=client,
                threads=threads,
                late_tags=run_id_tag,
                phases=phases,
                merge=merge_by_class(legend.clusters) if legend.clusters else None,
            )
            summaries.append(summary)
            log.info(
                "predict: %s: %d of %d px valid (%.1f %%), %.2f s, %d map(s) in %s",
                name,
                summary.valid_pixels,
                summary.pixels,
                100 * summary.valid_fraction,
                summary.seconds,
                len(summary.maps),
                plan.out_dir,
            )
    return summaries


def predict_one(
    cfg: AppConfig,
    plan: Plan,
    index: int,
    ds: xr.Dataset,
    scheme: ClassScheme,
    base_tags: dict[str, str],
    *,
    client: Any,
    threads: int,
    late_tags: Callable[[], dict[str, str]],
    phases: Phases,
    merge: Merge | None = None,
) -> SceneSummary:
    """Scene ``index``'s maps: its features checked against the members, the NaN policy
    applied, its blocks predicted and written, its quicklooks drawn."""
    from geoensemble.app.provenance import dvc_hashes

    p = cfg.predict
    name, in_path, _ = plan.sources[index]
    union = scene_union(cfg, plan.members, ds, name, in_path, index)
    scene_members, policy_tags = nan_policy(plan.members, ds, cfg, scene=name)
    predictor = BlockPredictor(
        scene_members, union, scheme, plan.keys, nan_threshold=cfg.features.nan_threshold
    )
    tags = {
        **base_tags,
        **policy_tags,
        "scene": name,
        "scene_path": str(in_path),
        "dvc_inputs": json.dumps(dvc_hashes([str(in_path)])),
        "n_classes": str(scheme.labels.size),
    }
    summary = predict_scene(
        ds,
        predictor,
        plan.paths[name],
        block_size=p.block_size,
        threads=threads,
        client=client,
        compress=p.compress,
        tags=tags,
        late_tags=late_tags,
        progress=p.progress,
        scene=name,
        overviews=p.overviews,
        thumbnails=p.quicklook,
        phases=phases,
    )
    phases.add("blocks", summary.seconds)
    trim_heap()  # each post-pass starts from the imports' footprint, not the blocks' peak
    if p.quicklook:
        with phases.time("quicklook"):
            summary.quicklooks = quicklooks(summary, scheme, plan.members)
        trim_heap()
    from_main_map(cfg, summary, plan.extra.get(name, {}), merge, phases)
    return summary


def from_main_map(
    cfg: AppConfig,
    summary: SceneSummary,
    extra: dict[str, Path],
    merge: Merge | None,
    phases: Phases,
) -> None:
    """The maps made from the scene's main map: its class map, its regularised copy."""
    if "classes" in extra and merge is not None:
        with phases.time("classes"):
            write_classes(cfg, summary, extra["classes"], merge)
    if "regularised" in extra:
        with phases.time("regularise"):
            regularise_main_map(cfg, summary, extra["regularised"])


def speckle_metrics(s: SceneSummary, pre: str) -> dict[str, float]:
    """The main map's speckle before and after regularisation (none when it is off)."""
    if not s.regularisation:
        return {}
    return {
        f"{pre}{k}_{when}": s.regularisation[when][field]
        for when in ("before", "after")
        for k, field in (("speckle_share", "share"), ("small_patches", "small_patches"))
    }


def run_metrics(summaries: list[SceneSummary], phases: Phases) -> dict[str, float]:
    """The predict run's metrics: each scene's pixels, valid share, seconds and class
    histogram (prefixed with its name when there are several), then the time by phase."""
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
                **speckle_metrics(s, pre),
            }
        )
    # What the stage spent so far, by phase (the run's last calls are in the log line).
    metrics.update(phases.metrics())
    return metrics
