"""Copy a whole MLflow store to another (e.g. the project's SQLite file to a team's server over
PostgreSQL) through MLflow's public client APIs only: experiments, runs (parameters, tags,
every metric's history, status and times, artifacts), logged models with their artifacts,
registered models, versions (tags, descriptions) and aliases.

MLflow gives every copied run, logged model and version a new id in the target store (ids are
not kept, as with MLflow's own export tools); the copy tags each run with the id it had in the
source (``geoensemble.copied_from``) and maps parents, models and versions accordingly.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoensemble.errors import TrackingError

COPIED_FROM = "geoensemble.copied_from"  # run tag: the run's id in the source store
BATCH = 1000  # MLflow's log_batch limit on metrics per call
PAGE = 1000


@dataclass
class CopyReport:
    """What was copied, and the id each source run and version got in the target."""

    experiments: int = 0
    runs: dict[str, str] = field(default_factory=dict)  # source run id -> target run id
    models: dict[str, str] = field(default_factory=dict)  # source model id -> target model id
    versions: int = 0
    aliases: int = 0


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _pages(call: Any, *args: Any, **kwargs: Any) -> list[Any]:
    out: list[Any] = []
    token = None
    while True:
        page = call(*args, page_token=token, **kwargs)
        out.extend(page)
        token = page.token
        if not token:
            return out


def check_empty(dst: Any, to_uri: str) -> None:
    """Refuse a target that already holds runs or registered models (no merging, no
    overwriting)."""
    exps = _pages(dst.search_experiments, max_results=PAGE)
    runs = dst.search_runs([e.experiment_id for e in exps], max_results=1) if exps else []
    if runs or dst.search_registered_models(max_results=1):
        raise TrackingError(
            f"{to_uri} already holds runs or registered models: copy into an empty store "
            "(a new database: mlflow server creates its tables on first start)"
        )


def copy_store(from_uri: str, to_uri: str) -> CopyReport:
    """Copy everything of the store at ``from_uri`` into the empty store at ``to_uri``.

    Raises
    ------
    TrackingError
        The target is not empty.
    """
    src, dst = _client(from_uri), _client(to_uri)
    check_empty(dst, to_uri)
    report = CopyReport()
    with tempfile.TemporaryDirectory(prefix="geoensemble-copy-") as tmp:
        for exp in _pages(src.search_experiments, max_results=PAGE):
            target = dst.get_experiment_by_name(exp.name)
            exp_id = (
                target.experiment_id
                if target is not None
                else dst.create_experiment(exp.name, tags=dict(exp.tags))
            )
            for key, value in exp.tags.items():
                dst.set_experiment_tag(exp_id, key, value)
            report.experiments += 1
            _copy_runs(src, dst, exp.experiment_id, exp_id, Path(tmp), report)
            _copy_models(src, dst, exp.experiment_id, exp_id, from_uri, Path(tmp), report)
        _copy_registry(src, dst, report)
    return report


def _copy_runs(src: Any, dst: Any, exp: str, exp_id: str, tmp: Path, report: CopyReport) -> None:
    from mlflow.entities import Metric, Param

    runs = _pages(src.search_runs, [exp], max_results=PAGE, order_by=["attributes.start_time"])
    # parents first, so a child's mlflow.parentRunId can name its parent's new id
    runs.sort(key=lambda r: "mlflow.parentRunId" in r.data.tags)
    for r in runs:
        tags = dict(r.data.tags)
        parent = tags.get("mlflow.parentRunId")
        if parent is not None:
            tags["mlflow.parentRunId"] = report.runs.get(parent, parent)
        tags[COPIED_FROM] = r.info.run_id
        new = dst.create_run(
            exp_id, start_time=r.info.start_time, tags=tags, run_name=r.info.run_name
        ).info.run_id
        report.runs[r.info.run_id] = new
        params = [Param(k, v) for k, v in r.data.params.items()]
        for i in range(0, len(params), 100):
            dst.log_batch(new, params=params[i : i + 100])
        # the run's metrics, without the source store's model ids (they do not exist here)
        history = [
            Metric(m.key, m.value, m.timestamp, m.step)
            for key in r.data.metrics
            for m in src.get_metric_history(r.info.run_id, key)
        ]
        for i in range(0, len(history), BATCH):
            dst.log_batch(new, metrics=history[i : i + BATCH])
        if src.list_artifacts(r.info.run_id):
            local = src.download_artifacts(r.info.run_id, "", str(tmp / r.info.run_id))
            dst.log_artifacts(new, local)
        dst.set_terminated(new, status=r.info.status, end_time=r.info.end_time)


def _copy_models(
    src: Any, dst: Any, exp: str, exp_id: str, from_uri: str, tmp: Path, report: CopyReport
) -> None:
    import mlflow.artifacts

    for m in _pages(src.search_logged_models, [exp], max_results=PAGE):
        new = dst.create_logged_model(
            exp_id,
            name=m.name,
            source_run_id=report.runs.get(m.source_run_id or "", None),
            tags=dict(m.tags),
            params=dict(m.params),
            model_type=m.model_type,
        )
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=m.artifact_location,
            dst_path=str(tmp / m.model_id),
            tracking_uri=from_uri,
        )
        dst.log_model_artifacts(new.model_id, local)
        dst.finalize_logged_model(new.model_id, str(m.status))
        report.models[m.model_id] = new.model_id


def _source_model(version: Any) -> str:
    """The id of the logged model a version was made from: its ``model_id``, else the one its
    source names (``models:/m-...`` or the model's artifact folder ``.../models/m-.../...``)."""
    import re

    if getattr(version, "model_id", None):
        return str(version.model_id)
    found = re.search(r"\bm-[0-9a-f]{32}\b", version.source or "")
    return found.group(0) if found else ""


def _copy_registry(src: Any, dst: Any, report: CopyReport) -> None:
    for rm in _pages(src.search_registered_models, max_results=PAGE):
        dst.create_registered_model(rm.name, tags=dict(rm.tags), description=rm.description)
        versions = _pages(src.search_model_versions, f"name = '{rm.name}'", max_results=PAGE)
        numbers: dict[str, str] = {}
        for v in sorted(versions, key=lambda v: int(v.version)):
            model_id = report.models.get(_source_model(v), None)
            source = f"models:/{model_id}" if model_id else v.source
            new = dst.create_model_version(
                rm.name,
                source=source,
                run_id=report.runs.get(v.run_id or "", None),
                tags=dict(v.tags),
                description=v.description,
                model_id=model_id,
            )
            numbers[str(v.version)] = str(new.version)
            report.versions += 1
        for alias, version in (rm.aliases or {}).items():
            dst.set_registered_model_alias(rm.name, alias, numbers[str(version)])
            report.aliases += 1
