"""Log an ensemble to MLflow member by member (through :mod:`geoensemble.tracking`).

What each run holds, so that the runs table and the compare charts show what differs:

- the parent run (``ensemble-<family>``): a few key params (see
  :func:`geoensemble.app.train.key_params`), the resolved config as the artifact
  ``config.yaml``, and the metric ``best_<metric>`` with one value per generation (step = the
  generation): the best score of the members of that generation and the earlier ones, so its
  last value is the champion's; ``search_history.json`` holds each generation's own best;
- each member run (``member-000``, ``member-001``..., numbered in the order the search created
  them): params only for what varies between members: ``model.<key>`` for each key of
  the searched space (the same keys for every member) and ``seed`` (which sorts after them, so
  that the MLflow compare page's scatter plots the first searched key against the first
  metric, ``aic`` for clusterers); metrics: for
  clusterers the partition criterion in the common space (``aic``, ``bic``,
  ``log_likelihood``, ``n_params``, ``n_clusters``, ``inertia``, ``elm_aic``; see
  :mod:`geoensemble.ensemble.scoring`) and for mixtures their own-space
  ``member_space_aic``/``_bic``/``_log_likelihood``; for classifiers ``accuracy``, ``kappa``,
  ``f1_macro``, ``log_loss``, for regressors ``rmse``, ``mae``, ``r2``, and for both
  ``n_params``, ``heldout_log_likelihood`` and ``heldout_penalized_nll`` (not an AIC, see
  :mod:`geoensemble.ensemble.supervised`); ``fit_seconds``, ``generation``, ``rank``,
  ``front``, ``mean_agreement`` (the member's mean agreement with the others, logged at the end:
  see :mod:`geoensemble.ensemble.agreement`); tags ``geoensemble.role`` (member or
  consensus), ``ensemble_run_id``, ``rank``, ``kept`` (and ``consensus_of``,
  ``n_params_family`` where they apply); artifact ``preview.png``, the member's map over a
  thinned grid;
- each kept member's registered version: tags ``family``, ``criterion``, ``<metric>`` (the
  score), ``model.<key>`` (its hyperparameters), ``rank``, ``generation``, ``member``,
  ``ensemble``, ``ensemble_run_id``, and a one-line description saying the same.

Members are logged on a background thread as they finish, while the others still fit; the
stage waits for those calls only at the end (:class:`geoensemble.tracking.Background`).
``seconds`` counts the time the stage itself waits on MLflow, so that the share of its wall
time spent in MLflow can be reported.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import numpy as np

from geoensemble import tracking
from geoensemble.classes import CLASS_NAMES_TAG
from geoensemble.ensemble.agreement import NAME as AGREEMENT
from geoensemble.ensemble.search import EnsembleResult, Member
from geoensemble.tracking import Tracker


class MemberLogger:
    """Logs each member as a child run of one parent run as soon as it finishes.

    Use it as a context manager. With :meth:`start`, the logger opens the store and starts
    the parent run itself, in the background, and ends it on leaving: FINISHED, or FAILED
    (KILLED on an interruption) with its members, once the background calls have stopped.

    Parameters
    ----------
    tracker
        The store the runs go to.
    experiment_id, parent_id
        Where the child runs go, for a parent run the caller started and ends; ``None`` when
        :meth:`start` starts it.
    family
        The model config's name (``kmeans``, ``random_forest``...).
    space_keys
        The searched parameter names, logged for every member (``""`` when a member lacks one)
        so that every run has the same parameter columns.
    tags
        Provenance tags for every child run.
    """

    def __init__(
        self,
        experiment_id: str | None = None,
        parent_id: str | None = None,
        *,
        tracker: Tracker,
        family: str,
        space_keys: list[str],
        tags: dict[str, str],
    ) -> None:
        self.tracker = tracker
        self.experiment_id = experiment_id or ""
        self.parent_id = parent_id or ""
        self._owned: bool | None = None  # started by start(): is it mlflow run's run?
        self.run_name = "ensemble"
        self.family = family
        self.space_keys = space_keys
        self.tags = tags
        self.runs: dict[int, str] = {}
        self.versions: dict[int, str] = {}
        self.model_ids: dict[int, str] = {}  # the kept members' logged models
        self.seconds = 0.0
        self.background = tracking.Background()
        # Loads model logging's modules while the members fit; finish() waits for it.
        self._warm = tracking.warm_model_logging()

    def __enter__(self) -> MemberLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # On success finish() has waited for every call; on an error, no call may still
        # write while the runs are closed.
        with self.timed():
            self.background.close()
            if self._owned is not None and self.parent_id:
                self.tracker.end_parent(self.parent_id, not self._owned, failed=exc)

    def start(
        self,
        *,
        run_name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        config: dict[str, Any],
    ) -> None:
        """Open the store, start the parent run and log ``config`` as its ``config.yaml``, in
        the background: importing MLflow alone takes seconds, which the members' fits hide.

        Call :meth:`geoensemble.tracking.Tracker.check` first, so that a store that cannot be
        used fails the stage before any fit.
        """

        def open_parent() -> None:
            exp = self.tracker.open()
            run_id, outer = self.tracker.start_parent(
                exp, run_name=run_name, params=params, tags=tags
            )
            self.parent_id, self._owned = run_id, not outer
            self.experiment_id = self.tracker.experiment_of(run_id)  # mlflow run may choose it
            self.tracker.log_config(run_id, config)

        self._owned = True  # until open_parent() says
        self.run_name = run_name
        self.background.submit(open_parent)

    def check(self) -> None:
        """Raise the error of a background call now (a store that failed while members fit)
        rather than after the search."""
        if self.background.error is not None:
            raise self.background.error

    @contextmanager
    def timed(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - t0

    def params_of(self, m: Member) -> dict[str, Any]:
        """What varies between members: the searched values and the seed."""
        params: dict[str, Any] = {f"model.{k}": m.params.get(k, "") for k in self.space_keys}
        params["seed"] = m.seed  # sorts after model.*: the compare scatter plots a searched key
        return params

    def tags_of(self, m: Member) -> dict[str, str]:
        tags = {
            **self.tags,
            "geoensemble.role": "consensus" if m.consensus else "member",
            "ensemble_run_id": self.parent_id,
        }
        if m.consensus:
            tags["consensus_of"] = str(m.params.get("consensus_of", ""))
        if m.family:
            tags["n_params_family"] = m.family
        return tags

    def log_member(self, m: Member) -> None:
        """Log one member as a child run (an ``on_member`` callback: called as it finishes);
        the calls run in the background."""
        self.check()
        # Called as the fit ends: the run spans the fit, whenever the background logs it.
        ended = int(time.time() * 1000)
        fit = m.fit_seconds if math.isfinite(m.fit_seconds) and m.fit_seconds > 0 else 0.0
        self.background.submit(self._log_member, m, ended - math.ceil(fit * 1000), ended)

    def _log_member(self, m: Member, started: int | None = None, ended: int | None = None) -> None:
        run_id = self.tracker.log_child_run(
            self.experiment_id,
            self.parent_id,
            run_name=m.name,
            params=self.params_of(m),
            metrics={**m.scores, "generation": float(m.generation)},
            tags=self.tags_of(m),
            start_time=started,
            end_time=ended,
        )
        self.runs[m.number] = run_id
        if m.preview is not None:
            self.tracker.log_image(run_id, m.preview, "preview.png")

    def finish(
        self,
        result: EnsembleResult,
        *,
        feature_names: list[str],
        example: np.ndarray,
        model_name: str,
        ensemble_name: str | None = None,
        lineage: Mapping[str, str] | None = None,
        class_names: Mapping[str, str] | None = None,
        register: bool = True,
        model_description: str | None = None,
    ) -> dict[int, str]:
        """Final ranks on every run; kept members logged as models and, with ``register``,
        registered as candidates of ``model_name`` (described by ``model_description``),
        tagged with ``lineage`` and their criterion (no alias: see
        :mod:`geoensemble.app.promote`). A member whose content is already registered keeps
        that version. The logged models' ids are kept in ``model_ids``.

        ``ensemble_name`` (a tag of the versions) defaults to the parent run's name and the
        start of its id.

        Returns
        -------
        dict
            Member number to registered version, for the kept members registered.
        """
        with self.timed():
            self._warm.join()
            # on the background thread, after the parent and every member's run: see
            # Background.run (an interruption stops it between two kept members)
            self.background.run(
                self._finish,
                result,
                feature_names=feature_names,
                example=example,
                model_name=model_name,
                ensemble_name=ensemble_name,
                lineage=lineage,
                class_names=class_names,
                register=register,
                model_description=model_description,
            )
        return self.versions

    def _finish(
        self,
        result: EnsembleResult,
        *,
        feature_names: list[str],
        example: np.ndarray,
        model_name: str,
        ensemble_name: str | None,
        lineage: Mapping[str, str] | None,
        class_names: Mapping[str, str] | None,
        register: bool,
        model_description: str | None,
    ) -> None:
        """:meth:`finish`'s calls, on the background thread."""
        ensemble_name = ensemble_name or f"{self.run_name}-{self.parent_id[:8]}"
        for m in result.members:
            self.tracker.log_batch(
                self.runs[m.number],
                # mean_agreement: final only once every member is in (ensemble.agreement)
                metrics={"rank": m.rank, "front": m.front, **_agreement_of(m)},
                tags={"rank": str(m.rank), "kept": str(m in result.kept)},
            )
        for m in result.kept:
            if self.background.stopping.is_set():
                return
            logged = self.tracker.log_member_model(
                self.runs[m.number],
                m.pipeline,
                feature_names=feature_names,
                example=example,
                model_name=model_name,
                tags={
                    "ensemble_run_id": self.parent_id,
                    "ensemble": ensemble_name,
                    "member": m.name,
                    "rank": str(m.rank),
                    "generation": str(m.generation),
                    "consensus": str(m.consensus),
                    **self.version_tags(m, result),
                    # What the codes mean, for every map predicted from it.
                    **({CLASS_NAMES_TAG: json.dumps(dict(class_names))} if class_names else {}),
                    **(lineage or {}),
                    **candidate_tags(m.scores, m.pipeline, result.metric),
                },
                description=self.version_description(m, result, ensemble_name),
                experiment_id=self.experiment_id,
                register=register,
                model_description=model_description,
            )
            self.model_ids[m.number] = logged.model_id
            if logged.version is not None:
                self.versions[m.number] = logged.version
        self.tracker.log_metric_steps(
            self.parent_id, {f"best_{result.metric}": best_by_generation(result)}
        )
        self.tracker.log_dict(self.parent_id, result.history, "search_history.json")

    def hyperparameters(self, m: Member) -> dict[str, Any]:
        """The member's searched values (a consensus member: its number of clusters)."""
        keys = [k for k in self.space_keys if k in m.params]
        if m.consensus and "n_clusters" in m.params and "n_clusters" not in keys:
            keys.append("n_clusters")
        return {k: m.params[k] for k in keys}

    def version_tags(self, m: Member, result: EnsembleResult) -> dict[str, str]:
        """Family, criterion, score and hyperparameters of a registered version."""
        return {
            "family": self.family,
            "criterion": result.metric,
            result.metric: f"{m.scores[result.metric]:.6g}",
            **{f"model.{k}": str(v) for k, v in self.hyperparameters(m).items()},
        }

    def version_description(self, m: Member, result: EnsembleResult, ensemble_name: str) -> str:
        """One line: what the version is, its score and rank, and how it was made."""
        metric = result.metric
        direction = dict(result.objectives).get(metric, "")
        scores = ", ".join(
            f"{k}={m.scores[k]:.6g}"
            for k in dict.fromkeys([metric, *(o for o, _ in result.objectives), "aic", "bic"])
            if k in m.scores and isinstance(m.scores[k], int | float)
        )
        hyper = ", ".join(f"{k}={v}" for k, v in self.hyperparameters(m).items())
        what = "consensus member" if m.consensus else "member"
        return (
            f"{self.family} {what} {m.name} of ensemble {ensemble_name}: rank {m.rank} of "
            f"{len(result.members)} by {metric}"
            f"{f' ({direction})' if direction else ''}; {scores}"
            f"{f'; {hyper}' if hyper else ''}; generation {m.generation}, seed {m.seed}"
        )


def _agreement_of(m: Member) -> dict[str, float]:
    value = m.scores.get(AGREEMENT)
    return {AGREEMENT: value} if value is not None and math.isfinite(value) else {}


def best_by_generation(result: EnsembleResult) -> list[tuple[int, float]]:
    """``(generation, best score so far)``: the best ``result.metric`` among the members of
    that generation and the earlier ones (a consensus member counts in its generation)."""
    metric = result.metric
    direction = dict(result.objectives).get(metric, "minimize")
    sign = 1.0 if direction == "minimize" else -1.0
    series: list[tuple[int, float]] = []
    best = math.nan
    for gen in sorted({m.generation for m in result.members}):
        for m in result.members:
            v = m.scores.get(metric, math.nan)
            if m.generation == gen and math.isfinite(v) and not (sign * v >= sign * best):
                best = v
        series.append((gen, best))
    return series


def timed_call(logger: MemberLogger, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` on the logger's background thread (:meth:`Background.run
    <geoensemble.tracking.background.Background.run>`) and count its time as MLflow time."""
    with logger.timed():
        return logger.background.run(fn, *args, **kwargs)


def tag_number(value: float | None) -> str:
    """A score as a tag value (``nan`` for a missing or non-finite one)."""
    return "nan" if value is None or not math.isfinite(value) else f"{value:.10g}"


def candidate_tags(scores: Mapping[str, float], pipeline: Any, metric: str) -> dict[str, str]:
    """Version tags of one member: its criterion value and how many classes it uses."""
    tags = {"criterion_value": tag_number(scores.get(metric))}
    est = pipeline[-1] if hasattr(pipeline, "steps") else pipeline
    if "n_clusters" in scores:  # clusterers: the clusters of its partition of the sample
        tags["n_classes"] = tag_number(scores["n_clusters"])
    elif getattr(est, "classes_", None) is not None:
        tags["n_classes"] = str(len(est.classes_))
    if "kappa" in scores:
        tags["kappa"] = tag_number(scores["kappa"])
    return tags
