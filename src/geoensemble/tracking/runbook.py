"""A predict run's MLflow bookkeeping, on a background thread of the stage.

The predict stage records one run: started with its params, tags, linked models and legend,
finished with its quicklooks and metrics, or ended as FAILED/KILLED. :class:`RunBook` does
that in order on one background thread while the stage loads its models and writes maps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geoensemble.tracking.background import Background
    from geoensemble.tracking.tracker import Tracker


def start_predict(
    tracker: Tracker,
    *,
    run_name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    model_ids: Sequence[str],
    legend: Mapping[str, Any] | None,
) -> str:
    """Open the store if needed, start the predict run, link its models, log its legend."""
    import contextlib

    if tracker.experiment_id is None:
        tracker.open()
    assert tracker.experiment_id is not None
    run_id = tracker.start_predict_run(
        tracker.experiment_id, run_name=run_name[:250], params=params, tags=tags
    )
    with contextlib.suppress(Exception):  # older stores cannot link models to runs
        tracker.link_models(run_id, list(model_ids))
    if legend is not None:
        tracker.log_dict(run_id, dict(legend), "maps/legend.json")
    return run_id


def finish_predict(
    tracker: Tracker, run_id: str, *, artifacts: Sequence[str], metrics: Mapping[str, float]
) -> None:
    """Log the run's quicklooks (under ``maps/``) and metrics, and end it FINISHED."""
    for path in artifacts:
        tracker.log_artifact(run_id, path, "maps")
    tracker.log_metrics(run_id, dict(metrics))
    tracker.end_run(run_id)


class RunBook:
    """The predict run's bookkeeping on ``background`` (one thread, calls in order)."""

    def __init__(self, tracker: Tracker, background: Background) -> None:
        self.tracker, self.background = tracker, background
        self.id: str | None = None
        self.ended = False

    def start(self, **spec: Any) -> None:
        """:func:`start_predict` with ``spec``, on the background thread."""

        def call() -> None:
            self.id = start_predict(self.tracker, **spec)

        self.background.submit(call)

    def run_id(self) -> str:
        """The run's id, once started (raises the bookkeeping's first error)."""
        if self.id is None:
            self.background.wait()
        assert self.id is not None
        return self.id

    def finish(self, *, artifacts: Sequence[str], metrics: Mapping[str, float]) -> None:
        def call() -> None:
            assert self.id is not None
            finish_predict(self.tracker, self.id, artifacts=artifacts, metrics=metrics)
            self.ended = True

        self.background.submit(call)
        self.background.wait()

    def fail(self, exc: BaseException) -> None:
        """End the run, if it was started and not ended, as ``exc`` ended the stage."""
        self.background.close()  # nothing may still write while the run is closed
        if self.id is not None and not self.ended:
            self.tracker.end_run(self.id, failed=exc)

    def close(self) -> None:
        self.background.close()
