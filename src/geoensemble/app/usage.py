"""What ``geoensemble --help`` and ``geoensemble <stage> --help`` print.

Kept apart from :mod:`geoensemble.app.cli` so that help answers without importing Hydra, MLflow or
the stages (help must be instant).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class StageHelp:
    """One stage: a line for the list, what it reads and writes, its main keys."""

    summary: str
    reads: str
    writes: str
    keys: tuple[str, ...]
    usage: str = "[--params params.yaml | key=value ...]"


STAGE_HELP: dict[str, StageHelp] = {
    "scene": StageHelp(
        "write the embedded default scene (seeded Landsat-8-like bands, truth, points)",
        "nothing",
        "paths.raw: data/raw/scene/B1..B7.TIF, data/raw/labels/{truth.tif,points.geojson}",
        ("data.scene.width", "data.scene.height", "data.scene.seed", "paths.raw"),
    ),
    "ingest": StageHelp(
        "read the raster layers onto one grid (float32, NaN = no-data)",
        "data.path (a GeoTiff folder, NetCDF, HDF5 or HDF4 file; a COG URL, a .txt listing "
        "of URLs, a STAC item/collection) with data.layers or data.product",
        "paths.stack (Zarr store), reports/ingest.json",
        (
            "data",
            "data.path",
            "data.pattern",
            "data.layers",
            "data.product",
            "data.align",
            "data.reference",
        ),
    ),
    "featurize": StageHelp(
        "compute the feature layers (bands, indices, derived and custom layers)",
        "paths.stack",
        "paths.features (Zarr store), reports/figures/features/*.png",
        ("features", "features.sensor", "features.bands", "features.indices", "features.custom"),
    ),
    "labels": StageHelp(
        "rasterize training labels onto the features' grid",
        "data.labels.path (raster, or points/polygons any OGR format reads), paths.features",
        "paths.labels: labels.tif, classes.json",
        ("data.labels.path", "data.labels.attribute", "data.labels.buffer"),
    ),
    "train": StageHelp(
        "fit the ensemble, score and log every member to MLflow, register the kept ones",
        "paths.features (and paths.labels for classifiers and regressors)",
        "MLflow runs and model versions (tracking.uri), reports/train.json",
        (
            "model",
            "model.space",
            "ensemble.size",
            "ensemble.generations",
            "ensemble.keep",
            "ensemble.metric",
            "tracking.uri",
            "compute",
        ),
    ),
    "evaluate": StageHelp(
        "score the trained ensemble (AIC by generation, agreement with truth, accuracy)",
        "reports/train.json, paths.features, data.truth, paths.labels",
        "reports/metrics.json (headline), reports/evaluation.json, reports/plots/*.json, "
        "reports/figures/evaluate/*.png",
        ("data.truth", "ensemble.cv.folds"),
    ),
    "predict": StageHelp(
        "apply registered models to scenes block by block and write classified maps",
        "models (predict.model_uri, predict.ensemble), paths.features or predict.scenes",
        "predict.output_dir: Cloud-Optimized GeoTiffs, PNG quicklooks, .qml styles",
        (
            "predict.model_uri",
            "predict.ensemble",
            "predict.scenes",
            "predict.output_dir",
            "predict.overwrite",
        ),
    ),
    "all": StageHelp(
        "every stage above in order, in one process (predict uses the model train made)",
        "as the stages",
        "as the stages",
        (),
    ),
    "promote": StageHelp(
        "move @champion to a registered version, by number or by rule, and record why",
        "registered versions of tracking.model_name and their tags (criterion, score_space)",
        "the alias predict.alias (champion); tags promoted_by, promoted_at, promotion_reason, "
        "previous_champion on the version",
        ("promote.version", "promote.rule", "promote.ensemble", "promote.reason", "predict.alias"),
        usage="version=N | rule=best ensemble=<run id|latest|key:value> [reason=...]",
    ),
    "registry": StageHelp(
        "list the versions geoensemble registered; prune those no alias holds",
        "the registered versions tagged geoensemble.registered_by in tracking.uri's store",
        "nothing (list); prune deletes the versions no alias holds (runs and models stay)",
        ("registry.action", "registry.dry_run", "tracking.uri"),
        usage="list | prune [--dry-run]",
    ),
    "sample": StageHelp(
        "draw a stratified random sample of a class map to label, for design-based accuracy",
        "validation_sample.map (a class map, e.g. a predict output), paths.labels (excluded)",
        "validation_sample.out: a GeoPackage of points with an empty 'reference' column",
        (
            "validation_sample.map",
            "validation_sample.out",
            "validation_sample.target_se",
            "validation_sample.min_per_class",
        ),
        usage="map=<class map> [out=...] [target_se=0.01] [min_per_class=50]",
    ),
}


def main_help() -> str:
    """The text of ``geoensemble --help``."""
    width = max(len(s) for s in STAGE_HELP)
    lines = [
        "usage: geoensemble <stage> [--params params.yaml | key=value ...]",
        "",
        "Turn a stack of raster layers into classified maps with tracked model ensembles.",
        "",
        "stages:",
        *(f"  {name:<{width}}  {h.summary}" for name, h in STAGE_HELP.items()),
        "",
        "geoensemble <stage> --help says what a stage reads and writes and its main keys.",
        "Overrides use Hydra's syntax (model=gmm ensemble.size=6); --params runs on a composed",
        "file as dvc repro does; GEOENSEMBLE_DEBUG=1 adds tracebacks to errors.",
    ]
    return "\n".join(lines)


def stage_help(stage: str) -> str:
    """The text of ``geoensemble <stage> --help``."""
    h = STAGE_HELP[stage]
    script = "run_all" if stage == "all" else stage
    lines = [
        f"usage: geoensemble {stage} {h.usage}",
        f"       python pipelines/{script}.py {h.usage}",
        "",
        f"{h.summary}.",
        "",
        f"reads:  {h.reads}",
        f"writes: {h.writes}",
    ]
    if h.keys:
        lines += textwrap.wrap(f"main keys: {', '.join(h.keys)}", width=92, subsequent_indent="  ")
    lines += [
        "",
        f"python pipelines/{script}.py --cfg job prints every key with its value;",
        "conf/<group>/*.yaml lists the options of a group (data=rmnp, model=gmm, ...).",
    ]
    return "\n".join(lines)
