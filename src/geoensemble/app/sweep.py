"""Hydra multirun sweeps: one sweep id and parent run for all jobs, and a summary at the end.

``python pipelines/train.py -m model=kmeans,gmm model.n_clusters=4,8`` runs one ensemble per
job. :class:`SweepCallback` (registered in ``conf/config.yaml`` under ``hydra.callbacks``)
runs in the launching process: before the jobs it creates the sweep's MLflow run and exports
its id and the sweep id in the environment, which every job inherits (also the joblib
launcher's worker processes, started later); after the jobs it names the best job by the
ensemble metric (AIC by default) in ``<sweep dir>/sweep_summary.json``, on the sweep run and
on stdout.

Jobs are compared only on a score that is comparable across them: every finished job must have
the same model family and the same scoring space (tag ``score_space``, see
:func:`geoensemble.app.candidates.scoring_space`: data, sample, features before the
member-specific steps, seed, metric). Otherwise no best job is named and the summary says why
(``not_compared``); every job's score is still listed.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from geoensemble.app.config import EnsembleConfig, TrackingConfig
from geoensemble.app.keys import keyed
from geoensemble.ensemble.agreement import NAME as AGREEMENT
from geoensemble.ensemble.agreement import RELATIVE
from geoensemble.errors import ConfigError, GeoEnsembleError
from geoensemble.tracking import Tracker

SUMMARY_NAME = "sweep_summary.json"
T = TypeVar("T")


@dataclass
class _Sweep:
    sweep_id: str
    run_id: str
    created: bool
    metric: str
    direction: str
    sweep_dir: Path
    tracker: Tracker


_active: _Sweep | None = None


def new_sweep_id() -> str:
    """A sortable, unique sweep id: ``YYYYmmdd-HHMMSS-<6 hex>``."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def check_launcher(config: DictConfig, uri: str) -> None:
    """Refuse parallel jobs writing to one SQLite file: they lose runs to locking.

    Raises
    ------
    ConfigError
        If the launcher runs jobs in parallel and the tracking store is SQLite.
    """
    launcher = OmegaConf.select(config, "hydra.launcher") or {}
    target = str(launcher.get("_target_", ""))
    n_jobs = launcher.get("n_jobs", 1)
    if "joblib" in target.lower() and n_jobs != 1 and uri.startswith("sqlite:"):
        raise ConfigError(
            f"hydra/launcher=joblib runs jobs in parallel (hydra.launcher.n_jobs={n_jobs}) but "
            f"tracking.uri is the SQLite file {uri}, which parallel writers lock: start "
            f"`mlflow server` and add tracking=server (tracking.uri=http://127.0.0.1:5000), or "
            f"set hydra.launcher.n_jobs=1"
        )


def _section(config: DictConfig, key: str, schema: type[T]) -> T:
    """One validated section of the launching process's config."""
    try:
        node = OmegaConf.to_container(config[key], resolve=True)
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))
    except OmegaConfBaseException as exc:
        raise ConfigError(
            f"invalid config at key '{key}': {str(exc).splitlines()[0]}. Check it against "
            f"conf/{key}/"
        ) from None
    assert isinstance(obj, schema)
    return obj


def start(config: DictConfig) -> _Sweep:
    """Create (or adopt, under ``mlflow run``) the sweep run and export the sweep ids."""
    global _active
    from geoensemble import tracking
    from geoensemble.app.tracker import tracker_for

    # Only what the sweep itself needs: other keys may interpolate job values
    # (${hydra:job.num}) that exist only in the jobs, which validate everything themselves.
    tcfg = _section(config, "tracking", TrackingConfig)
    ecfg = _section(config, "ensemble", EnsembleConfig)
    tracker = tracker_for(tcfg)
    uri = tracker.uri
    check_launcher(config, uri)
    sweep_id = os.environ.get(tracking.SWEEP_ID_VAR) or new_sweep_id()
    exp_id = tracker.open()
    # unresolved: overrides may hold job interpolations (paths.reports=out/${hydra:job.num})
    overrides = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    assert isinstance(overrides, list)
    tags = {k: v for k, v in tracking.run_tags().items() if not k.startswith("sweep_")}
    run_id, created = tracker.start_sweep_run(
        exp_id,
        sweep_id=sweep_id,
        params={"sweep.overrides": " ".join(map(str, overrides))},
        tags=tags,
    )
    os.environ[tracking.SWEEP_ID_VAR] = sweep_id
    os.environ[tracking.SWEEP_RUN_VAR] = run_id
    _active = _Sweep(
        sweep_id=sweep_id,
        run_id=run_id,
        created=created,
        metric=ecfg.metric,
        direction=ecfg.direction.value,
        sweep_dir=Path(str(OmegaConf.select(config, "hydra.sweep.dir") or ".")),
        tracker=tracker,
    )
    print(f"sweep {sweep_id}: MLflow run {run_id} at {uri}", flush=True)
    return _active


def summarize(
    rows: list[dict[str, Any]], *, metric: str, direction: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], str | None]:
    """The best finished job by ``best_<metric>``, every job's row (by job number), and why
    no best job is named when the jobs' scores are not comparable (else None).

    Parameters
    ----------
    rows
        Ensemble runs as returned by :meth:`geoensemble.tracking.Tracker.sweep_ensembles`.
    metric, direction
        The ensemble's selection metric and ``minimize`` or ``maximize``.
    """
    key = f"best_{metric}"
    jobs = [
        {
            "job": r["job"],
            "overrides": r["overrides"],
            "run_id": r["run_id"],
            "status": r["status"],
            "model_family": r.get("tags", {}).get("model_family"),
            "score_space": r.get("tags", {}).get("score_space"),
            key: r["metrics"].get(key),
        }
        for r in sorted(rows, key=lambda r: (r["job"], r["run_id"]))
    ]
    # What tells the jobs apart: the overrides that not every job shares.
    tokens = [j["overrides"].split(" ") for j in jobs]
    common = set.intersection(*map(set, tokens)) if len(tokens) > 1 else set()
    for j, toks in zip(jobs, tokens, strict=True):
        j["changed"] = " ".join(t for t in toks if t not in common)
    done = [j for j in jobs if j["status"] == "FINISHED" and j[key] is not None]
    if not done:
        return None, jobs, None
    families = sorted({str(j["model_family"]) for j in done})
    if len(families) > 1:
        return (
            None,
            jobs,
            f"the jobs differ in model family ({', '.join(families)}): their {key} values "
            f"are not comparable, so no best job is named; compare jobs of one model family",
        )
    if len({str(j["score_space"]) for j in done}) > 1:
        return (
            None,
            jobs,
            f"the jobs score their members on different data (features, sample, seed or "
            f"metric differ: see each job's overrides): their {key} values are not "
            f"comparable, so no best job is named; sweep only the model or member-specific "
            f"steps (features.steps.*) to compare",
        )
    if metric == AGREEMENT and len(done) > 1:
        return (None, jobs, f"{key}: {AGREEMENT} {RELATIVE}, so no best job is named")
    pick = min if direction == "minimize" else max
    return pick(done, key=lambda j: j[key]), jobs, None


def finish(*, failed: bool) -> dict[str, Any] | None:
    """Write the summary, record it on the sweep run and clear the exported ids."""
    global _active
    from geoensemble import tracking
    from geoensemble.io.atomic import write_json

    sweep, _active = _active, None
    if sweep is None:
        return None
    try:
        rows = sweep.tracker.sweep_ensembles(sweep.run_id, sweep.sweep_id)
        best, jobs, not_compared = summarize(rows, metric=sweep.metric, direction=sweep.direction)
        failed = failed or any(j["status"] != "FINISHED" for j in jobs)
        summary = {
            "sweep_id": sweep.sweep_id,
            "sweep_run_id": sweep.run_id,
            "metric": sweep.metric,
            "direction": sweep.direction,
            "status": "FAILED" if failed else "FINISHED",
            "best": best,
            "not_compared": not_compared,
            "jobs": jobs,
        }
        path = write_json(sweep.sweep_dir / SUMMARY_NAME, summary)
        _record_on_run(sweep, best, failed, path, n_jobs=len(jobs))
        _print_summary(sweep, jobs, best, not_compared, path)
        return summary
    finally:
        os.environ.pop(tracking.SWEEP_ID_VAR, None)
        os.environ.pop(tracking.SWEEP_RUN_VAR, None)


def _record_on_run(
    sweep: _Sweep, best: dict[str, Any] | None, failed: bool, path: Path, *, n_jobs: int
) -> None:
    """End the sweep run with the number of jobs, the best job's score and tags, and the
    summary file."""
    key = f"best_{sweep.metric}"
    metrics: dict[str, float] = {"n_jobs": n_jobs}
    tags = {}
    if best is not None:
        metrics[key] = best[key]
        tags = {
            "best_job": str(best["job"]),
            "best_run_id": best["run_id"],
            "best_overrides": best["changed"],
        }
    sweep.tracker.finish_sweep_run(
        sweep.run_id,
        created=sweep.created,
        failed=failed,
        metrics=metrics,
        tags=tags,
        summary=path,
    )


def _print_summary(
    sweep: _Sweep,
    jobs: list[dict[str, Any]],
    best: dict[str, Any] | None,
    not_compared: str | None,
    path: Path,
) -> None:
    """One line per job, then the best job (or why none is named)."""
    key = f"best_{sweep.metric}"
    for j in jobs:
        print(
            f"sweep {sweep.sweep_id}: job {j['job']:>3} {j['status']:<8} "
            f"{key}={'-' if j[key] is None else format(j[key], '.6g')} [{j['changed']}]",
            flush=True,
        )
    if best is not None:
        print(
            f"sweep {sweep.sweep_id}: best job {best['job']} by {sweep.metric} "
            f"({sweep.direction}): {key}={best[key]:.6g} [{best['changed']}] "
            f"run {best['run_id']}; summary in {path}",
            flush=True,
        )
    elif not_compared:
        print(f"sweep {sweep.sweep_id}: no best job: {not_compared}", flush=True)


def active() -> bool:
    """Whether a sweep started in this process has not been finished yet."""
    return _active is not None


class SweepCallback(Callback):
    """Hydra callback that brackets a multirun with :func:`start` and :func:`finish`."""

    # Hydra turns a callback's exception into a mere warning: exit instead, so a sweep never
    # runs without its id, nor ends without its summary, unnoticed.
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            start(config)
        except Exception as exc:
            _exit(exc, "cannot start the sweep")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            finish(failed=False)
        except Exception as exc:
            _exit(exc, "cannot summarize the sweep")


def _exit(exc: Exception, what: str) -> None:
    if os.environ.get("GEOENSEMBLE_DEBUG"):
        traceback.print_exc()
    msg = (
        str(keyed(exc))
        if isinstance(exc, GeoEnsembleError)
        else f"{what}: {type(exc).__name__}: {exc}"
    )
    print(f"geoensemble sweep: error: {msg}", file=sys.stderr)
    raise SystemExit(2) from None


def job_tags() -> dict[str, str]:
    """``sweep_job`` and ``sweep_overrides`` of the running Hydra multirun job (empty
    outside one): what :func:`geoensemble.tracking.run_tags` records of the job."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return {}
    hc: Any = HydraConfig.get()  # a DictConfig at run time
    tags = {}
    num = OmegaConf.select(hc, "job.num")
    if num is not None:
        tags["sweep_job"] = str(num)
    tags["sweep_overrides"] = " ".join(OmegaConf.select(hc, "overrides.task") or [])
    return tags
