"""One MLflow store and the client that talks to it: runs, artifacts, sweeps, the registry.

A :class:`Tracker` is built from plain values and never changes MLflow's process-wide
tracking URI: every call goes through its own client, so a process can use several stores.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from geoensemble.errors import GeoEnsembleError, TrackingError
from geoensemble.redact import redact_uri, redact_value, redacted_config
from geoensemble.tracking import session
from geoensemble.tracking.background import wait_for_import
from geoensemble.tracking.closing import PARENT_TAG, Closing
from geoensemble.tracking.registry import Registry
from geoensemble.tracking.sqlite import check_store, init_sqlite_store, schema_error
from geoensemble.tracking.store import (
    artifact_base,
    check_server,
    default_uri,
    guarded,
    is_local_store,
    local_error,
    server_error,
    sqlite_path,
)
from geoensemble.tracking.sweeps import Sweeps
from geoensemble.tracking.tags import SWEEP_RUN_VAR, owner_tags

log = logging.getLogger("geoensemble")

MAX_PARAM_LEN = 6000
DEFAULT_EXPERIMENT_ID = "0"  # MLflow's "Default" experiment, where `mlflow run` puts runs
VIEW_TAG = "mlflow.sharedViewState."  # the MLflow UI's saved views of an experiment's runs
# The experiment kind the MLflow 3 UI reads to open an experiment on its runs table (the
# "Machine learning" choice of its experiment-type selector writes this tag and value).
KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
UI_ADDRESS = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
NOTE_TAG = "mlflow.note.content"  # the description of an experiment or a run in the UI
EXPERIMENT_NOTE = (
    "geoensemble ensembles: one parent run per ensemble fit (its config, search history and "
    "best score per generation), one child run per member with its aic, bic, generation, "
    "rank and searched parameters; the kept members are logged as models, and the workspace "
    "pipeline registers them (see docs/mlflow-registry.md)."
)


class Tracker(Sweeps, Closing, Registry):
    """An MLflow store (tracking and registry) and one client of it.

    Parameters
    ----------
    uri
        The store: ``sqlite:///<path>``, ``http(s)://host:port``...; ``None``:
        ``MLFLOW_TRACKING_URI``, else ``sqlite:///<project root>/mlflow.db``.
    experiment
        The experiment :meth:`open` uses (created if needed).
    timeout
        Seconds each call to a tracking server, or a wait for a locked SQLite store, may
        take; MLflow's retries are turned off.
    artifact_root
        Where a new experiment of a local store keeps its artifacts; relative to the
        SQLite file's folder.

    Building one costs nothing (no MLflow import); :meth:`open` checks or creates the store
    and the experiment. ``down`` holds the error of a tracking server that stopped
    answering: later calls fail at once with it instead of each waiting ``timeout`` again.
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        experiment: str = "geoensemble",
        timeout: float = 10.0,
        artifact_root: str = "mlartifacts",
    ) -> None:
        self.uri = default_uri(uri)
        self.experiment = experiment
        self.timeout = float(timeout)
        self.artifact_root = artifact_root
        self.experiment_id: str | None = None  # set by open()
        self.down: TrackingError | None = None
        self._client: Any = None

    def __repr__(self) -> str:
        return f"Tracker({redact_uri(self.uri)!r}, experiment={self.experiment!r})"

    @property
    def client(self) -> Any:
        """The ``MlflowClient`` of this store (built on first use)."""
        if self._client is None:
            wait_for_import()
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    def fault(self, exc: BaseException) -> TrackingError | None:
        """The one-line error for a fault of this store (``None``: not a store fault)."""
        err = server_error(exc, self.uri, self.timeout, runs_left=bool(session.open_runs(self.uri)))
        if err is not None:
            self.down = err
            return err
        local = is_local_store(self.uri)
        artifacts = artifact_base(self.uri) / self.artifact_root if local else None
        return local_error(exc, self.uri, self.timeout, artifacts=artifacts)

    # ----------------------------------------------------------------------- the store
    def check(self) -> bool:
        """Check the store without loading MLflow (see :func:`~.sqlite.check_store`); False
        when it does not exist yet (:meth:`open` creates it)."""
        return check_store(self.uri, timeout=self.timeout)

    def open(self) -> str:
        """Check (or create) the store, close runs that dead processes left RUNNING, and
        return the id of the experiment (created if needed); also kept as
        ``experiment_id``. (The command line bounds MLflow's HTTP calls by ``timeout``:
        :func:`geoensemble.app.tracker.bounded_mlflow`.)

        Raises
        ------
        TrackingError
            When the store cannot be used, in one line naming it and the fix.
        """
        wait_for_import()
        from mlflow.exceptions import MlflowException

        uri, self.down = self.uri, None
        check_server(uri, timeout=self.timeout)
        init_sqlite_store(uri, timeout=self.timeout)
        try:
            self.experiment_id = self._experiment()
        except GeoEnsembleError:
            raise
        except Exception as exc:
            path = sqlite_path(uri)
            schema = schema_error(exc, path) if path is not None else None
            if schema is not None:
                raise schema from None
            if isinstance(exc, MlflowException):
                raise TrackingError(
                    f"cannot use the MLflow store {redact_uri(uri)}: {exc.message}. Check "
                    f"uri (is the server running?)",
                    arguments={"uri": "Tracker.uri"},
                ) from None
            if isinstance(exc, OSError):  # e.g. the folder of a sqlite:/// store does not exist
                raise TrackingError(
                    f"cannot open the MLflow store {redact_uri(uri)}: {exc.strerror or exc} "
                    f"({exc.filename or uri}). Set uri to sqlite:///<existing "
                    f"folder>/mlflow.db or a server's http://host:port",
                    arguments={"uri": "Tracker.uri"},
                ) from None
            raise
        return self.experiment_id

    @guarded
    def _experiment(self) -> str:
        """The id of the experiment, created if needed; closes orphaned runs."""
        from mlflow.exceptions import MlflowException

        client = self.client  # refuses unsupported URI schemes
        exp = client.get_experiment_by_name(self.experiment)
        if exp is not None:
            closed = self.close_orphaned_runs(exp.experiment_id)
            if closed:
                log.info(
                    "MLflow: marked KILLED %d run(s) left RUNNING by processes that no longer "
                    "exist: %s",
                    len(closed),
                    ", ".join(closed),
                )
            self._mark_training(exp)
            return str(exp.experiment_id)
        # A server chooses (and proxies) the artifact store itself; a local path would only
        # be valid on this machine.
        location = (
            (artifact_base(self.uri) / self.artifact_root).as_uri()
            if is_local_store(self.uri)
            else None
        )
        try:
            return str(
                client.create_experiment(
                    self.experiment,
                    artifact_location=location,
                    tags={KIND_TAG: TRAINING_KIND, NOTE_TAG: EXPERIMENT_NOTE},
                )
            )
        except MlflowException:
            # Two jobs starting at once on a new store: the other one created it first.
            exp = client.get_experiment_by_name(self.experiment)
            if exp is None:
                raise
            return str(exp.experiment_id)

    def _mark_training(self, exp: Any) -> None:
        """Give an experiment made before geoensemble set them the training kind and a
        description; a kind or description someone chose is left as it is."""
        tags = dict(exp.tags or {})
        for key, value in ((KIND_TAG, TRAINING_KIND), (NOTE_TAG, EXPERIMENT_NOTE)):
            if key not in tags:
                self.client.set_experiment_tag(exp.experiment_id, key, value)

    @guarded
    def experiment_of(self, run_id: str) -> str:
        """The experiment a run belongs to (``mlflow run`` may have chosen another one)."""
        return str(self.client.get_run(run_id).info.experiment_id)

    @guarded
    def experiment_name(self, experiment_id: str) -> str:
        return str(self.client.get_experiment(experiment_id).name)

    def ui_url(self, fragment: str) -> tuple[str, str | None]:
        """The MLflow UI's address of ``fragment`` (``#/experiments/...``) and, for a store
        without a server, the command that serves the UI there (else ``None``).

        A server's own address is used (credentials redacted); a SQLite or other local store
        is opened with ``mlflow ui --backend-store-uri <store> --host 127.0.0.1 --port 5000``, at
        ``http://127.0.0.1:5000``. ``workflowType=machine_learning`` makes the MLflow 3 UI
        show the runs table, whatever view the browser used last.
        """
        fragment = fragment.lstrip("/")
        if "workflowType=" not in fragment:
            fragment += ("&" if "?" in fragment else "?") + "workflowType=machine_learning"
        if self.uri.startswith(("http://", "https://")):
            return f"{redact_uri(self.uri).rstrip('/')}/{fragment}", None
        # the address spelled out: the UI on loopback only, where the printed URL points
        command = (
            f"mlflow ui --backend-store-uri {redact_uri(self.uri)} --host 127.0.0.1 --port 5000"
        )
        return f"{UI_ADDRESS}/{fragment}", command

    # ----------------------------------------------------------------------- logging
    @guarded
    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        steps: Mapping[str, list[tuple[int, float]]] | None = None,
    ) -> None:
        """Batched calls of at most 100 params and 1000 metrics (MLflow's limits): single
        calls cost ~10 ms each on SQLite. ``steps`` are metrics with one value per step.
        Param values are redacted (see :func:`~.redact.redact_value`)."""
        from mlflow.entities import Metric, Param, RunTag

        ts = int(time.time() * 1000)
        points = [(k, v, 0) for k, v in (metrics or {}).items()]
        points += [(k, v, step) for k, series in (steps or {}).items() for step, v in series]
        ms = [
            Metric(k, float(v), ts, int(step))
            for k, v, step in points
            if v is not None and np.isfinite(v)
        ]
        ps = [Param(k, redact_value(k, v)[:MAX_PARAM_LEN]) for k, v in (params or {}).items()]
        ts_ = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        for n in range(max(-(-len(ps) // 100), -(-len(ms) // 1000), 1)):
            self.client.log_batch(
                run_id,
                metrics=ms[n * 1000 : (n + 1) * 1000],
                params=ps[n * 100 : (n + 1) * 100],
                tags=ts_ if n == 0 else [],
            )

    def log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        self.log_batch(run_id, metrics=metrics)

    def log_metric_steps(self, run_id: str, series: Mapping[str, list[tuple[int, float]]]) -> None:
        """Metrics with one value per step (e.g. the best AIC per generation), batched."""
        self.log_batch(run_id, steps=series)

    @guarded
    def log_artifact(
        self, run_id: str, path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    @guarded
    def log_image(self, run_id: str, image: np.ndarray, artifact_file: str) -> None:
        """An RGB(A) uint8 array saved as a PNG artifact of the run (a member's map preview)."""
        self.client.log_image(run_id, image, artifact_file=artifact_file)

    @guarded
    def log_dict(self, run_id: str, obj: Any, artifact_file: str) -> None:
        """A JSON/YAML-serialisable object as an artifact (e.g. the search history)."""
        self.client.log_dict(run_id, obj, artifact_file)

    def log_config(
        self, run_id: str, config: Mapping[str, Any], artifact_file: str = "config.yaml"
    ) -> None:
        """The resolved config as one YAML artifact of the run, secrets and home paths hidden."""
        self.log_dict(run_id, redacted_config(config), artifact_file)

    @guarded
    def set_runs_view(self, experiment_id: str, key: str, view: Mapping[str, Any]) -> None:
        """Save a view of the experiment's runs table (filter, sort, columns) that the MLflow
        UI opens at ``#/experiments/<id>/runs?viewStateShareKey=<key>``: an experiment tag
        ``mlflow.sharedViewState.<key>`` holding the JSON of the UI's own "share" format."""
        import json

        from mlflow.exceptions import MlflowException

        tag, value = VIEW_TAG + key, json.dumps(view)
        try:
            self.client.set_experiment_tag(experiment_id, tag, value)
        except MlflowException as exc:
            # Two trainings saving the same view of a new experiment at once: the SQL store
            # inserts for both, one loses on the unique key; written again, it updates the row.
            if "UNIQUE constraint" not in str(exc) and "Duplicate entry" not in str(exc):
                raise
            self.client.set_experiment_tag(experiment_id, tag, value)

    @guarded
    def link_models(self, run_id: str, model_ids: list[str]) -> None:
        """Record the logged models a run used as its model inputs (shown in the MLflow UI)."""
        from mlflow.entities import LoggedModelInput

        if model_ids:
            self.client.log_inputs(run_id, models=[LoggedModelInput(m) for m in model_ids])

    # ----------------------------------------------------------------------- runs
    def _opened(self, run_id: str, parent_id: str | None = None) -> str:
        """Remember a run this process started, so it is closed however the process ends."""
        return session.opened(self.uri, str(run_id), parent_id, self.close_open_runs)

    @contextlib.contextmanager
    def parent_run(
        self,
        experiment_id: str,
        *,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
    ) -> Iterator[str]:
        """The ensemble's parent run; marked FAILED with the reason if the body raises.

        Under ``mlflow run`` the run it created (``MLFLOW_RUN_ID``) becomes the parent; in a
        Hydra sweep each job's parent run is a child of the sweep's run instead.
        """
        run_id, outer = self.start_parent(
            experiment_id, run_name=run_name, params=params, tags=tags
        )
        try:
            yield run_id
        except BaseException as exc:
            self.end_parent(run_id, outer, failed=exc)
            raise
        self.end_parent(run_id, outer)

    def start_parent(
        self,
        experiment_id: str,
        *,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
    ) -> tuple[str, bool]:
        """Start an ensemble's parent run (see :meth:`parent_run`) with its params and tags;
        return its id and whether ``mlflow run`` owns it (and ends it)."""
        run_id, outer = self._start_parent(experiment_id, run_name)
        try:
            self.log_batch(run_id, params=params, tags={**tags, "geoensemble.role": "ensemble"})
        except BaseException as exc:
            self.end_parent(run_id, outer, failed=exc)
            raise
        return run_id, outer

    def end_parent(self, run_id: str, outer: bool, *, failed: BaseException | None = None) -> None:
        """End a parent run: FINISHED (unless ``mlflow run`` owns it), or, with ``failed``,
        FAILED or KILLED with its member runs (see :meth:`end_run`)."""
        if failed is not None:
            self.end_run(run_id, failed=failed)  # and its members' runs
        elif not outer:
            self.end_run(run_id)

    @guarded
    def _start_parent(self, experiment_id: str, run_name: str) -> tuple[str, bool]:
        """Create (or adopt) the parent run; return its id and whether ``mlflow run`` owns it."""
        client = self.client
        sweep_run = os.environ.get(SWEEP_RUN_VAR)
        outer, bystander = (None, None) if sweep_run else self._outer_run(experiment_id)
        if sweep_run:
            run_id = client.create_run(
                self.experiment_of(sweep_run),
                run_name=run_name,
                tags={PARENT_TAG: sweep_run, **owner_tags()},
            ).info.run_id
        elif outer:
            run_id = outer
            client.set_tag(run_id, "mlflow.runName", run_name)
        else:
            run_id = client.create_run(
                experiment_id, run_name=run_name, tags=owner_tags()
            ).info.run_id
        if bystander:
            self._link_outer_run(bystander, str(run_id))
        if not outer:
            self._opened(str(run_id))
            session.started_parent(self.uri, str(run_id))
        return str(run_id), bool(outer)

    @guarded
    def log_child_run(
        self,
        experiment_id: str,
        parent_id: str,
        *,
        run_name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        start_time: int | None = None,
        end_time: int | None = None,
    ) -> str:
        """A finished child run with its params, metrics and tags in one batched call.

        ``start_time`` and ``end_time`` (ms since the epoch) are when the work the run
        records began and ended (a member's fit): the run's duration in the UI is then that
        work's, not the logging's; ``None``: now.
        """
        run = self.client.create_run(
            experiment_id,
            start_time=start_time,
            run_name=run_name,
            tags={PARENT_TAG: parent_id, **owner_tags(), **tags},
        )
        run_id = self._opened(str(run.info.run_id), parent_id)
        self.log_batch(run_id, params=params, metrics=metrics)
        self._terminate(run_id, "FINISHED", end_time=end_time)
        return run_id

    @guarded
    def start_predict_run(
        self,
        experiment_id: str,
        *,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
    ) -> str:
        run = self.client.create_run(
            experiment_id,
            run_name=run_name,
            tags={**tags, **owner_tags(), "geoensemble.role": "predict"},
        )
        run_id = self._opened(str(run.info.run_id))
        self.log_batch(run_id, params=params)
        return run_id

    # ----------------------------------------------------------------------- mlflow run
    def _outer_run(self, experiment_id: str) -> tuple[str | None, str | None]:
        """``(run to adopt, run to leave)`` of the run ``mlflow run`` created (``MLFLOW_RUN_ID``).

        ``mlflow run`` without ``--experiment-name`` creates its run in MLflow's Default
        experiment (artifacts under ``./mlruns/0``), and an MLproject cannot choose another
        one. That run is adopted as the stage's run only when it is in the tracker's
        experiment or in one the user chose (``--experiment-name``/``--experiment-id``, or
        ``MLFLOW_EXPERIMENT_NAME``/``_ID`` in the shell); in Default, the stage logs into its
        own run and only links the two (see :meth:`_link_outer_run`).
        """
        outer = os.environ.get("MLFLOW_RUN_ID")
        if not outer:
            return None, None
        in_exp = str(self.client.get_run(outer).info.experiment_id)
        if in_exp == DEFAULT_EXPERIMENT_ID and experiment_id != DEFAULT_EXPERIMENT_ID:
            return None, outer
        return outer, None

    def _link_outer_run(self, outer: str, run_id: str) -> None:
        """Point the run ``mlflow run`` left in Default at the stage's run, and back."""
        from mlflow.entities import RunTag

        client = self.client
        theirs = client.get_run(outer).data.tags
        copied = {
            k: v for k, v in theirs.items() if k.startswith(("mlflow.project.", "mlflow.source."))
        }
        client.log_batch(
            run_id, tags=[RunTag(k, v) for k, v in {**copied, "mlflow_run_id": outer}.items()]
        )
        note = (
            f"geoensemble logged this entry point's work in experiment "
            f"{self.experiment_name(self.experiment_of(run_id))}, run {run_id} (the "
            f"experiment geoensemble is set to use); this run only records that `mlflow run` "
            f"was called"
        )
        client.log_batch(
            outer,
            tags=[RunTag("geoensemble.run_id", run_id), RunTag("mlflow.note.content", note)],
        )
