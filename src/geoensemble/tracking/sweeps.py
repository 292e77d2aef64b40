"""The run a Hydra sweep's jobs nest under, and its summary (a mixin of
:class:`~geoensemble.tracking.Tracker`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from geoensemble.tracking.base import TrackerBase
from geoensemble.tracking.store import guarded
from geoensemble.tracking.tags import owner_tags


class Sweeps(TrackerBase):
    """Sweep methods of :class:`~geoensemble.tracking.Tracker`."""

    if TYPE_CHECKING:

        def log_batch(
            self,
            run_id: str,
            *,
            metrics: Mapping[str, float] | None = None,
            params: Mapping[str, Any] | None = None,
            tags: Mapping[str, str] | None = None,
            steps: Mapping[str, list[tuple[int, float]]] | None = None,
        ) -> None: ...

        def log_artifact(self, run_id: str, path: str | os.PathLike[str]) -> None: ...

        def _opened(self, run_id: str, parent_id: str | None = None) -> str: ...

        def _outer_run(self, experiment_id: str) -> tuple[str | None, str | None]: ...

        def _link_outer_run(self, outer: str, run_id: str) -> None: ...

        def _terminate(
            self,
            run_id: str,
            status: str,
            reason: str | None = None,
            end_time: int | None = None,
        ) -> None: ...

    @guarded
    def start_sweep_run(
        self,
        experiment_id: str,
        *,
        sweep_id: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
    ) -> tuple[str, bool]:
        """The run every job of a Hydra sweep nests under; return ``(run_id, created)``.

        Under ``mlflow run`` (``MLFLOW_RUN_ID`` set) that run is the sweep run and ``mlflow
        run`` ends it, so ``created`` is False.
        """
        client = self.client
        outer, bystander = self._outer_run(experiment_id)
        if outer:
            run_id = outer
            client.set_tag(run_id, "mlflow.runName", f"sweep-{sweep_id}")
        else:
            run_id = client.create_run(
                experiment_id, run_name=f"sweep-{sweep_id}", tags=owner_tags()
            ).info.run_id
            self._opened(run_id)
            if bystander:
                self._link_outer_run(bystander, str(run_id))
        self.log_batch(
            run_id, params=params, tags={**tags, "sweep_id": sweep_id, "geoensemble.role": "sweep"}
        )
        return str(run_id), not outer

    @guarded
    def sweep_ensembles(self, sweep_run_id: str, sweep_id: str) -> list[dict[str, Any]]:
        """The ensemble runs of a sweep: run id, status, job number, overrides and metrics."""
        runs = self.client.search_runs(
            [self.experiment_of(sweep_run_id)],
            f"tags.sweep_id = '{sweep_id}' and tags.`geoensemble.role` = 'ensemble'",
            max_results=5000,
        )
        return [
            {
                "run_id": r.info.run_id,
                "run_name": r.info.run_name,
                "status": r.info.status,
                "job": int(r.data.tags.get("sweep_job", -1)),
                "overrides": r.data.tags.get("sweep_overrides", ""),
                "metrics": dict(r.data.metrics),
                "tags": dict(r.data.tags),
            }
            for r in runs
        ]

    @guarded
    def finish_sweep_run(
        self,
        run_id: str,
        *,
        created: bool,
        failed: bool,
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        summary: str | os.PathLike[str] | None = None,
    ) -> None:
        """Record the sweep's outcome on its run and end it (if this process created it)."""
        self.log_batch(run_id, metrics=metrics, tags=tags)
        if summary is not None:
            self.log_artifact(run_id, summary)
        if created:
            self._terminate(run_id, "FAILED" if failed else "FINISHED")
