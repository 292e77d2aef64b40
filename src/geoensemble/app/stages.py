"""The stages as plain functions of a validated config.

``dvc repro`` (via ``params.yaml``), ``mlflow run`` and Hydra (sweeps included) all call these
same functions; only the wrapper in :mod:`geoensemble.app.cli` differs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from geoensemble.app.config import AppConfig
from geoensemble.app.keys import with_config_keys
from geoensemble.io.atomic import remove_stale_partials, write_report
from geoensemble.io.writable import check_store_target, check_writable

log = logging.getLogger("geoensemble")


def reports_dir(cfg: AppConfig) -> Path:
    return Path(cfg.paths.reports)


def configured_paths(cfg: AppConfig) -> dict[str, str | None]:
    """Every file or folder the configuration names, by key (inputs, outputs, stores).

    A store output may not replace a folder holding any of them.
    """
    out: dict[str, str | None] = {  # the user's inputs first: the likeliest to be named
        "data.path": cfg.data.path,
        "data.truth": cfg.data.truth,
        "data.labels.path": cfg.data.labels.path,
        **{f"paths.{k}": v for k, v in vars(cfg.paths).items() if isinstance(v, str)},
        "predict.output_dir": cfg.predict.output_dir,
        "predict.external.path": cfg.predict.external.path,
        "tracking.artifact_root": cfg.tracking.artifact_root,
    }
    out.update({f"predict.scenes[{i}].path": d.path for i, d in enumerate(cfg.predict.scenes)})
    uri = cfg.tracking.uri or ""
    if uri.startswith("sqlite:///"):
        out["tracking.uri"] = uri.removeprefix("sqlite:///")
    return out


def check_store(cfg: AppConfig, key: str, kind: str) -> Path:
    """Remove what an interrupted earlier write of the store named by ``key`` left (hidden,
    beside it), then check, before any work, that the store may be (re)written there."""
    target = Path(getattr(cfg.paths, key.removeprefix("paths.")))
    others = {k: v for k, v in configured_paths(cfg).items() if k != key}
    clean_leftovers(target)  # first: it may move back a store a killed swap renamed aside
    check_store_target(target, key=key, kind=kind, others=others)
    return target


def clean_leftovers(*targets: str | Path, folders: tuple[str | Path, ...] = ()) -> None:
    """Remove the hidden leftovers (``.name.partial-xxxx``, ``.name.old-xxxx``) that a killed
    earlier run of the stage left beside its own outputs ``targets`` and in the ``folders``
    only it writes; nothing else is touched."""
    removed = [p for t in map(Path, targets) for p in remove_stale_partials(t.parent, [t.name])]
    removed += [p for f in folders for p in remove_stale_partials(f)]
    if removed:
        log.info("removed %d leftover(s) of an interrupted run: %s", len(removed), removed[:3])


# --------------------------------------------------------------------------- scene
@with_config_keys
def scene(cfg: AppConfig) -> dict[str, Path]:
    """Write the embedded default scene under ``paths.raw``."""
    from geoensemble.synthetic import BANDS, write_scene

    check_writable(cfg.paths.raw, key="paths.raw")
    raw = Path(cfg.paths.raw)
    clean_leftovers(
        *(raw / "scene" / f"{b}.TIF" for b in BANDS),
        raw / "labels" / "truth.tif",
        raw / "labels" / "points.geojson",
    )
    s = cfg.data.scene
    out = write_scene(
        cfg.paths.raw,
        width=s.width,
        height=s.height,
        seed=s.seed,
        pixel_size=s.pixel_size,
        crs=s.crs,
        n_points=s.n_points,
    )
    log.info("scene: wrote %s x %s px scene to %s", s.width, s.height, out["scene"])
    return out


# --------------------------------------------------------------------------- ingest
@with_config_keys
def ingest(cfg: AppConfig) -> dict[str, Any]:
    """Read the layers named by ``data`` onto one grid and store them as ``paths.stack``."""
    from geoensemble.app.settings import read_spec_of
    from geoensemble.io.layers import source_format
    from geoensemble.io.stack import build_stack, write_stack
    from geoensemble.redact import redact_uri

    check_store(cfg, "paths.stack", "stack")
    check_writable(cfg.paths.reports, key="paths.reports")
    clean_leftovers(reports_dir(cfg) / "ingest.json")
    spec = read_spec_of(cfg.data)
    ds = build_stack(spec, max_pixels=cfg.limits.max_pixels)
    meta: dict[str, Any] = {
        "source": redact_uri(cfg.data.path),
        "format": source_format(spec),
        "shape": [int(ds.sizes["y"]), int(ds.sizes["x"])],
        "geotransform": ds.attrs["geotransform"],
        "categorical": [str(n) for n, v in ds.data_vars.items() if v.attrs.get("categorical")],
    }
    # One pass over the data: the store is written chunk by chunk while the report is summed.
    report = write_stack(ds, cfg.paths.stack, meta=meta, key="paths.stack")
    meta = {"layers": report, **meta}
    write_report(reports_dir(cfg) / "ingest.json", meta)
    for name, r in report.items():
        log.info(
            "ingest: %-12s valid %5.1f %%  min %-10.4g max %.4g",
            name,
            100 * r["valid_fraction"],
            r["min"],
            r["max"],
        )
    return meta


# --------------------------------------------------------------------------- featurize
@with_config_keys
def featurize(cfg: AppConfig) -> list[str]:
    """Bands and indices from the stack, stored as ``paths.features``, plus quicklooks.

    The features are computed and written chunk by chunk (the stack's chunks); the quicklooks
    read thinned views of the written store, so memory stays bounded by the chunk size.
    """
    from geoensemble import plots
    from geoensemble.app.settings import recipe_of
    from geoensemble.features.build import build_features
    from geoensemble.io.stack import open_store, write_store

    check_store(cfg, "paths.features", "features")
    check_writable(cfg.paths.reports, key="paths.reports")
    fig_dir = reports_dir(cfg) / "figures" / "features"
    clean_leftovers(folders=(fig_dir,))
    feats = build_features(
        open_store(cfg.paths.stack), recipe_of(cfg.features), trusted_modules=cfg.trust.modules
    )
    names = [str(n) for n in feats.data_vars]
    write_store(
        feats,
        cfg.paths.features,
        meta={
            "feature_names": names,
            "features": cfg.features.name,
            "sensor": cfg.features.sensor,
        },
        kind="features",
        key="paths.features",
    )
    written = open_store(cfg.paths.features)
    for name in cfg.features.quicklooks:
        if name not in written:
            log.warning("featurize: no quicklook of %r: not a feature (%s)", name, names)
            continue
        plots.layer_png(
            fig_dir / f"{name}.png", written[name], title=name.upper(), cmap=plots.cmap_for(name)
        )
    rgb = cfg.features.false_colour
    if rgb:
        missing = [n for n in rgb if n not in written]
        if missing:
            log.warning("featurize: no false-colour picture: %s are not features", missing)
        else:
            plots.false_colour_png(
                fig_dir / "false_colour.png",
                written[list(rgb)].to_dataarray("band"),
                title="RGB = " + ", ".join(rgb),
            )
    log.info("featurize: %d features: %s", len(names), ", ".join(names))
    return names


# --------------------------------------------------------------------------- labels
@with_config_keys
def labels(cfg: AppConfig) -> dict[str, Any]:
    """Training labels from ``data.labels`` rasterized onto the features' grid, or none."""
    from geoensemble.io.grid import Grid
    from geoensemble.io.labels import (
        CLASSES_FILE,
        LABELS_FILE,
        check_labels_target,
        read_labels,
        write_labels,
        write_no_labels,
    )
    from geoensemble.io.stack import grid_attrs, open_store

    lc = cfg.data.labels
    out = Path(cfg.paths.labels)
    check_writable(out, key="paths.labels")
    check_labels_target(out)
    clean_leftovers(out / LABELS_FILE, out / CLASSES_FILE)
    if not lc.path:
        write_no_labels(out)
        log.info("labels: data.labels.path is null: no labels (unsupervised models only)")
        return {"labelled_pixels": 0}
    feats = open_store(cfg.paths.features)
    crs, transform = grid_attrs(feats)
    grid = Grid(crs, transform, (int(feats.sizes["y"]), int(feats.sizes["x"])))
    lab = read_labels(
        lc.path,
        grid,
        attribute=lc.attribute,
        code_attribute=lc.code_attribute,
        target=lc.target.value,
        layer=lc.layer,
        buffer=lc.buffer,
        all_touched=lc.all_touched,
    )
    write_labels(lab, out, grid)
    counts = lab.counts()
    log.info(
        "labels: %d labelled pixels from %s (%s)%s",
        int(lab.mask.sum()),
        lc.path,
        ", ".join(f"{k}: {v}" for k, v in counts.items()),
        f"; {lab.outside} feature(s) off the grid" if lab.outside else "",
    )
    return {"labelled_pixels": int(lab.mask.sum()), "counts": counts, "outside": lab.outside}


# --------------------------------------------------------------------------- train
@with_config_keys
def train(cfg: AppConfig) -> dict[str, Any]:
    """Fit the ensemble (see :mod:`geoensemble.app.train`) and write ``train.json``."""
    from geoensemble.app.train import train_ensemble

    # before the fit: a report that cannot be written would leave registered models behind
    check_writable(cfg.paths.reports, key="paths.reports")
    clean_leftovers(reports_dir(cfg) / "train.json")
    report = train_ensemble(cfg)
    write_report(reports_dir(cfg) / "train.json", report)
    return report


# --------------------------------------------------------------------------- evaluate
@with_config_keys
def evaluate(cfg: AppConfig) -> dict[str, Any]:
    """Metrics and plots of the ensemble (see :mod:`geoensemble.app.evaluate`)."""
    from geoensemble.app.evaluate import FIGURES, PLOTS, evaluate_ensemble

    check_writable(cfg.paths.reports, key="paths.reports")
    rep = reports_dir(cfg)
    clean_leftovers(
        rep / "metrics.json", rep / "evaluation.json", folders=(rep / PLOTS, rep / FIGURES)
    )
    return evaluate_ensemble(cfg)


# --------------------------------------------------------------------------- predict
@with_config_keys
def predict(cfg: AppConfig) -> dict[str, Any]:
    """Every selected model on every scene: COG maps, quicklooks and an MLflow predict run.

    See :func:`geoensemble.app.predict.predict_many`.
    """
    from geoensemble.app.predict import predict_many

    check_writable(cfg.predict.output_dir, key="predict.output_dir")
    out = predict_many(cfg)
    for name, s in out["scenes"].items():
        log.info(
            "predict: %s: wrote %s (%d valid of %d px, %.2f s)",
            name,
            ", ".join(s["maps"].values()),
            s["valid_pixels"],
            s["pixels"],
            s["seconds"],
        )
    return out


def stage_outputs(cfg: AppConfig, stage: str) -> list[tuple[str, Path]]:
    """``(config key, path)`` of everything ``stage`` writes on disk."""
    rep, raw = Path(cfg.paths.reports), Path(cfg.paths.raw)
    table: dict[str, list[tuple[str, Path]]] = {
        "scene": [("paths.raw", raw / "scene"), ("paths.raw", raw / "labels")],
        "ingest": [("paths.stack", Path(cfg.paths.stack)), ("paths.reports", rep / "ingest.json")],
        "featurize": [
            ("paths.features", Path(cfg.paths.features)),
            ("paths.reports", rep / "figures" / "features"),
        ],
        "labels": [("paths.labels", Path(cfg.paths.labels))],
        "train": [("paths.reports", rep / "train.json")],
        "evaluate": [
            ("paths.reports", rep / "metrics.json"),
            ("paths.reports", rep / "plots"),
            ("paths.reports", rep / "figures" / "evaluate"),
        ],
        "predict": [("predict.output_dir", Path(cfg.predict.output_dir))],
    }
    if stage == "all":
        return [o for name in PIPELINE for o in table[name]]
    return table.get(stage, [])


DVC_STAGE_VAR = "DVC_STAGE"  # set by DVC for every stage command it runs


def check_dvc_outputs(cfg: AppConfig, stage: str) -> None:
    """Refuse, before any work, a stage started outside DVC that would write into an output
    of the DVC pipeline (``dvc.yaml`` in the working folder) unless ``paths.dvc_outputs=allow``:
    DVC would then find its outputs changed behind its back.

    Raises
    ------
    OutputError
        Naming the key, the output, the DVC stage that owns it and the fixes.
    """
    import os

    from geoensemble.app.dvcfiles import dvc_owner
    from geoensemble.errors import OutputError

    if os.environ.get(DVC_STAGE_VAR) or cfg.paths.dvc_outputs == "allow":
        return
    for key, path in stage_outputs(cfg, stage):
        owner = dvc_owner(path)
        if owner is not None:
            out, dvc_stage = owner
            raise OutputError(
                f"{key}={_shown(cfg, key)} would write {out}, an output of the DVC stage "
                f"{dvc_stage!r} (dvc.yaml), outside dvc repro: run it through DVC (dvc repro "
                f"{dvc_stage}, or dvc exp run -S key=value for a variant), write elsewhere "
                f"({key}=<another folder>), or allow it with paths.dvc_outputs=allow"
            )


def _shown(cfg: AppConfig, key: str) -> str:
    section, name = key.split(".")
    return str(getattr(getattr(cfg, section), name))


@with_config_keys
def run_all(cfg: AppConfig) -> dict[str, Any]:
    """Every stage in order on one config (the ``main`` MLflow entry point).

    Unless models are named (``predict.model_uri``, ``models``, ``ensemble``, ``external``),
    predict uses the version this train registered, as the pipeline does, not ``@champion``.
    """
    import copy

    from geoensemble.app.members import TRAIN_REPORT

    p = cfg.predict
    if not (p.model_uri or p.models or p.ensemble or p.external.path):
        cfg = copy.deepcopy(cfg)
        cfg.predict.model_uri = TRAIN_REPORT
    return {name: fn(cfg) for name, fn in PIPELINE.items()}


# --------------------------------------------------------------------------- registry
@with_config_keys
def registry(cfg: AppConfig) -> dict[str, Any]:
    """List or prune the versions geoensemble registered (see :mod:`geoensemble.app.registry`)."""
    from geoensemble.app.registry import registry as list_or_prune

    return list_or_prune(cfg)


# --------------------------------------------------------------------------- promote
@with_config_keys
def promote(cfg: AppConfig) -> dict[str, Any]:
    """Move ``@champion`` deliberately (see :mod:`geoensemble.app.promote`)."""
    from geoensemble.app.promote import promote as promote_version

    return promote_version(cfg)


# --------------------------------------------------------------------------- sample
@with_config_keys
def sample(cfg: AppConfig) -> dict[str, Any]:
    """Draw the validation sample ``validation_sample`` asks for: a GeoPackage of points to
    label (see :func:`geoensemble.predict.validation.draw_validation_sample`)."""
    from geoensemble.errors import ConfigError
    from geoensemble.predict.validation import draw_validation_sample

    v = cfg.validation_sample
    if v.map is None:
        maps = sorted(Path(cfg.predict.output_dir).glob("*.tif"))
        raise ConfigError(
            "validation_sample.map is not set: name the class map to sample, e.g. "
            f"geoensemble sample map={maps[0] if maps else 'outputs/maps/<map>.tif'}"
        )
    labels = Path(cfg.paths.labels) / "labels.tif"
    out, design = draw_validation_sample(
        v.map,
        v.out,
        target_se=v.target_se,
        users_accuracy=v.users_accuracy,
        min_per_class=v.min_per_class,
        seed=cfg.seed,
        exclude=labels if v.exclude_labels and labels.is_file() else None,
    )
    log.info(
        "sample: %d points in %d classes (%s) written to %s: fill its 'reference' column with "
        "each point's class name, then evaluate with data.validation.path=%s "
        "data.validation.attribute=reference data.validation.design=stratified",
        design.total,
        len(design.sizes),
        ", ".join(f"{h}: {n}" for h, n in sorted(design.sizes.items())),
        out,
        out,
    )
    return {"path": str(out), "points": design.total, "sizes": design.sizes}


PIPELINE = {
    "scene": scene,
    "ingest": ingest,
    "featurize": featurize,
    "labels": labels,
    "train": train,
    "evaluate": evaluate,
    "predict": predict,
}
STAGES = {**PIPELINE, "all": run_all, "promote": promote, "registry": registry, "sample": sample}
