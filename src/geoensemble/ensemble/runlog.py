"""Log an ensemble to MLflow member by member (through :mod:`geoensemble.tracking`).

Naming, so that the MLflow UI's parallel-coordinates and scatter charts line up members:

- params of every child run: ``model.<param>`` for each searched parameter (the same keys for
  every member), ``model.family``, ``generation``, ``member.seed``, ``member.consensus``;
- metrics: for clusterers the partition criterion in the common space (``aic``, ``bic``,
  ``log_likelihood``, ``n_params``, ``n_clusters``, ``inertia``, ``elm_aic``; see
  :mod:`geoensemble.ensemble.scoring`) and for mixtures their own-space ``member_space_aic``/
  ``_bic``/``_log_likelihood``; for classifiers ``accuracy``, ``kappa``, ``f1_macro``,
  ``log_loss``, for regressors ``rmse``, ``mae``, ``r2``, and for both ``n_params``,
  ``heldout_log_likelihood`` and ``heldout_penalized_nll`` (not an AIC, see
  :mod:`geoensemble.ensemble.supervised`); ``fit_seconds``, ``generation``, ``rank``, ``front``;
- artifact ``preview.png``: the member's map over a thinned grid.

Every call is timed, so the share of wall time spent in MLflow can be reported.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from geoensemble import tracking
from geoensemble.classes import CLASS_NAMES_TAG
from geoensemble.ensemble.search import EnsembleResult, Member
from geoensemble.promote import candidate_tags


class MemberLogger:
    """Logs each member as a child run of one parent run as soon as it finishes.

    Parameters
    ----------
    experiment_id, parent_id
        Where the child runs go.
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
        experiment_id: str,
        parent_id: str,
        *,
        family: str,
        space_keys: list[str],
        tags: dict[str, str],
    ) -> None:
        self.experiment_id = experiment_id
        self.parent_id = parent_id
        self.family = family
        self.space_keys = space_keys
        self.tags = tags
        self.runs: dict[int, str] = {}
        self.versions: dict[int, str] = {}
        self.seconds = 0.0
        # Loads model logging's modules while the members fit; finish() waits for it.
        self._warm = tracking.warm_model_logging()

    @contextmanager
    def timed(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - t0

    def params_of(self, m: Member) -> dict[str, Any]:
        params: dict[str, Any] = {f"model.{k}": m.params.get(k, "") for k in self.space_keys}
        params.update({f"model.{k}": v for k, v in m.params.items()})
        params.update(
            {
                "model.family": self.family,
                "generation": m.generation,
                "member.seed": m.seed,
                "member.consensus": m.consensus,
            }
        )
        if m.family:
            params["model.n_params_family"] = m.family
        return params

    def log_member(self, m: Member) -> None:
        """Log one member as a child run (an ``on_member`` callback: called as it finishes)."""
        with self.timed():
            role = "consensus" if m.consensus else "member"
            run_id = tracking.log_child_run(
                self.experiment_id,
                self.parent_id,
                run_name=m.name,
                params=self.params_of(m),
                metrics={**m.scores, "generation": float(m.generation)},
                tags={**self.tags, "geoensemble.role": role, "ensemble_run_id": self.parent_id},
            )
            self.runs[m.number] = run_id
            if m.preview is not None:
                tracking.log_image(run_id, m.preview, "preview.png")

    def finish(
        self,
        result: EnsembleResult,
        *,
        feature_names: list[str],
        example: np.ndarray,
        model_name: str,
        ensemble_name: str,
        lineage: Mapping[str, str],
        class_names: Mapping[str, str] | None = None,
    ) -> dict[int, str]:
        """Final ranks on every run; kept members logged and registered as candidates, tagged
        with ``lineage`` and their criterion (no alias: see :mod:`geoensemble.promote`).

        Returns
        -------
        dict
            Member number to registered version, for the kept members.
        """
        with self.timed():
            self._warm.join()
            for m in result.members:
                tracking.log_batch(
                    self.runs[m.number],
                    metrics={"rank": m.rank, "front": m.front},
                    tags={"rank": str(m.rank), "kept": str(m in result.kept)},
                )
            for m in result.kept:
                with warnings.catch_warnings():
                    # MLflow checks the input example as a DataFrame against a pipeline
                    # fitted on arrays; sklearn's feature-name warning is noise here.
                    warnings.filterwarnings("ignore", message="X has feature names")
                    version = tracking.log_model(
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
                            result.metric: f"{m.scores[result.metric]:.6g}",
                            # What the codes mean, for every map predicted from it.
                            **(
                                {CLASS_NAMES_TAG: json.dumps(dict(class_names))}
                                if class_names
                                else {}
                            ),
                            **lineage,
                            **candidate_tags(m.scores, m.pipeline, result.metric),
                        },
                    )
                self.versions[m.number] = version
            history = result.history
            tracking.log_metric_steps(
                self.parent_id,
                {
                    f"best_{result.metric}_by_generation": [
                        (int(h["generation"]), h["best"]) for h in history
                    ],
                    f"generation_best_{result.metric}": [
                        (int(h["generation"]), h["generation_best"]) for h in history
                    ],
                },
            )
            tracking.log_dict(self.parent_id, history, "search_history.json")
        return self.versions


def timed_call(logger: MemberLogger, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` and count its time as MLflow time."""
    with logger.timed():
        return fn(*args, **kwargs)
